"""The NER report page: self-contained, entity marks at the right characters, text escaped,
per-type rows and charts, robust to missing keys and to odd spans."""

from __future__ import annotations

import copy
from html.parser import HTMLParser

from markupsafe import Markup

from verticalize.evaluate.report import line_chart
from verticalize.tasks.ner.report import highlight, render_ner_html

EN = "Tom said \"<b>AT&T</b>\" & O'Neil <3 New York's 'best' deal"
ZH = "患者因2型糖尿病入院，给予二甲双胍治疗。"


def _at(text: str, sub: str, kind: str, *score) -> list:
    s = text.index(sub)
    return [s, s + len(sub), kind, *score]


EN_GOLD = [
    _at(EN, "Tom", "PER"),
    _at(EN, "AT&T", "ORG"),
    _at(EN, "O'Neil", "PER"),
    _at(EN, "New York", "LOC"),
]
EN_PRED = [
    _at(EN, "New", "LOC", 0.41),  # wrong boundary
    _at(EN, "Tom", "PER", 0.98),  # correct (out of order on purpose)
    _at(EN, "AT&T", "LOC", 0.77),  # wrong type
    [EN.index("AT&T") + 1, EN.index("AT&T") + 8, "ORG", 0.3],  # overlaps AT&T: skipped
    [100, 120, "LOC", 0.5],  # out of bounds: skipped
    ["x", 3, "PER"],  # malformed: skipped
]
ZH_GOLD = [_at(ZH, "2型糖尿病", "DISEASE"), _at(ZH, "二甲双胍", "DRUG")]
ZH_PRED = [_at(ZH, "二甲双胍", "DRUG", 0.95), _at(ZH, "糖尿病", "DISEASE", 0.88)]


def _metrics(f1: float, with_model_extras: bool = True) -> dict:
    per_type = {
        "PER": {
            "precision": f1 + 0.05,
            "recall": f1 - 0.05,
            "f1": f1,
            "support": 120,
            "predicted": 118,
        },
        "ORG": {
            "precision": f1,
            "recall": f1 - 0.1,
            "f1": f1 - 0.05,
            "support": 60,
            "predicted": 55,
        },
        "LOC": {
            "precision": f1 - 0.1,
            "recall": f1,
            "f1": f1 - 0.07,
            "support": 80,
            "predicted": 90,
        },
        "DISEASE": {"precision": f1, "recall": f1, "f1": f1, "support": 40, "predicted": 40},
        "DRUG": {"precision": f1, "recall": f1, "f1": f1 - 0.02, "support": 30, "predicted": 31},
    }
    m = {
        "entity_f1_micro": f1,
        "entity_f1_macro": f1 - 0.03,
        "entity_precision_micro": f1 + 0.02,
        "entity_recall_micro": f1 - 0.02,
        "entity_precision_macro": f1,
        "entity_recall_macro": f1 - 0.04,
        "per_type": per_type,
        "n_gold": 330,
        "n_pred": 334,
        "n_correct": int(330 * f1),
    }
    if with_model_extras:
        m |= {"token_accuracy": 0.9412, "latency_ms_per_example": 3.25}
    return m


def _report() -> dict:
    return {
        "task": "ner",
        "name": "med-ner <demo>",
        "domain": "medical",
        "verdict": "The model beats feature_crf by +0.21 micro F1 & meets 1 of 2 targets.",
        "test_size": 400,
        "model": {"path": "runs/med-ner/model", "metrics": _metrics(0.62)},
        "baselines": {
            "feature_crf": {
                "metrics": _metrics(0.41, with_model_extras=False),
                "fit_seconds": 23.6,
                "description": "CRFsuite, word features",
            }
        },
        "summary_metrics": [
            "entity_f1_micro",
            "entity_f1_macro",
            "entity_precision_micro",
            "entity_recall_micro",
        ],
        "targets": [
            {
                "metric": "entity_f1_micro",
                "target": 0.6,
                "direction": "max",
                "achieved": 0.62,
                "met": True,
            },
            {
                "metric": "entity_f1_macro",
                "target": 0.7,
                "direction": "max",
                "achieved": 0.59,
                "met": False,
            },
        ],
        "worst": [
            {"id": "en-17", "text": EN, "gold": EN_GOLD, "pred": EN_PRED, "errors": 5},
            {"id": "zh-3", "text": ZH, "gold": ZH_GOLD, "pred": ZH_PRED, "errors": 2},
        ],
        "ner": {
            "scheme": "bio",
            "head": "CRF over BERT sub-token 0 (Viterbi)",
            "tags": ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"],
        },
        "train": {
            "base_model": "hfl/chinese-roberta-wwm-ext",
            "method": "full",
            "parameters": 102_300_000,
            "trainable_parameters": 102_300_000,
            "steps": 900,
            "epochs_run": 3,
            "best_metric": 0.615,
            "best_step": 800,
            "learning_rate": 3e-5,
        },
        "data": {"in": 5000, "out": 4890, "quarantined": 110, "sources": ["data/ner.conll"]},
        "timing": {"train_seconds": 812.4, "evaluate_seconds": 12.25},
        "verticalize_version": "0.1.0",
    }


def _loss_chart() -> str:
    return line_chart(
        {
            "train loss": [(i, 2.0 / (i + 1)) for i in range(20)],
            "validation loss": [(5, 0.6), (10, 0.4)],
        },
        "loss curves",
    )


class _Page(HTMLParser):
    """Marks (attrs, their text without the label, offset in the sentence where they start) per
    sentence div, the sentence texts without labels, tag balance of <mark>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.sentences: list[dict] = []  # {"cls", "text", "marks"}
        self.sent = None
        self.sent_depth = 0
        self.skip = 0  # inside span.lab / span.side
        self.mark = None
        self.open_marks = 0
        self.max_open_marks = 0
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag in ("meta", "br", "img", "rect", "polyline", "input"):
            return
        self.stack.append(tag)
        if tag == "mark":
            self.open_marks += 1
            self.max_open_marks = max(self.max_open_marks, self.open_marks)
        if self.skip:
            self.skip += 1
            return
        classes = (a.get("class") or "").split()
        if tag == "div" and "sent" in classes:
            self.sent = {"cls": classes, "text": "", "marks": [], "inner_tags": []}
            self.sent_depth = len(self.stack)
            self.sentences.append(self.sent)
        elif self.sent is not None:
            self.sent["inner_tags"].append(tag)
            if tag == "span" and ("lab" in classes or "side" in classes):
                self.skip = 1
            elif tag == "mark":
                self.mark = {"attrs": a, "text": "", "at": len(self.sent["text"]), "label": ""}
                self.sent["marks"].append(self.mark)
        elif tag == "span" and "side" in classes:
            self.skip = 1

    def handle_endtag(self, tag):
        if tag in ("rect", "polyline"):
            return
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        if self.sent is not None and len(self.stack) == self.sent_depth:
            self.sent = None
        self.stack.pop()
        if tag == "mark":
            self.open_marks -= 1
        if self.skip:
            self.skip -= 1
            return
        if tag == "mark":
            self.mark = None

    def handle_data(self, data):
        if self.sent is None:
            return
        if self.skip:
            if self.mark is not None:
                self.mark["label"] += data
            return
        self.sent["text"] += data
        if self.mark is not None:
            self.mark["text"] += data


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert parser.stack == [], parser.stack[-5:]  # every opened element was closed
    return parser


def test_page_is_self_contained_and_well_formed():
    page = render_ner_html(_report(), _loss_chart())
    assert page.startswith("<!doctype html>")
    lowered = page.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert "<script" not in lowered and "<link" not in lowered and "<img" not in lowered
    assert "@import" not in lowered and "url(" not in lowered
    parser = _parse(page)
    assert parser.open_marks == 0 and parser.max_open_marks == 1  # marks never nest
    assert page.count("<mark") == page.count("</mark>")
    # two charts: loss curves and per-type F1
    assert page.count("<svg") == 2 and "loss curves" in page and "per-type entity F1" in page
    assert "<polyline" in page and "<rect" in page


def test_marks_sit_on_the_exact_characters():
    page = render_ner_html(_report(), _loss_chart())
    sentences = _parse(page).sentences
    # the 8 legend marks are outside sentences; 2 sentences × (gold, predicted)
    assert [s["cls"][1] for s in sentences] == ["gold", "pred", "gold", "pred"]
    texts = [EN, EN, ZH, ZH]
    for sent, text in zip(sentences, texts, strict=True):
        assert sent["text"] == text  # the sentence reads back exactly, escapes undone
        for m in sent["marks"]:
            s, e = int(m["attrs"]["data-start"]), int(m["attrs"]["data-end"])
            assert m["at"] == s and m["text"] == text[s:e]
            assert m["label"] == m["attrs"]["data-type"]
    marks = {
        (cls, m["text"], m["attrs"]["data-type"]): m["attrs"]
        for sent in sentences
        for cls in [sent["cls"][1]]
        for m in sent["marks"]
    }
    status = {k: v["class"].split()[1] for k, v in marks.items()}
    assert status == {
        ("gold", "Tom", "PER"): "ent-ok",
        ("gold", "AT&T", "ORG"): "ent-missed",
        ("gold", "O'Neil", "PER"): "ent-missed",
        ("gold", "New York", "LOC"): "ent-missed",
        ("pred", "Tom", "PER"): "ent-ok",
        ("pred", "AT&T", "LOC"): "ent-wrong",
        ("pred", "New", "LOC"): "ent-wrong",
        ("gold", "2型糖尿病", "DISEASE"): "ent-missed",
        ("gold", "二甲双胍", "DRUG"): "ent-ok",
        ("pred", "二甲双胍", "DRUG"): "ent-ok",
        ("pred", "糖尿病", "DISEASE"): "ent-wrong",
    }
    # overlapping, out-of-bounds and malformed predicted spans were skipped
    assert len(sentences[1]["marks"]) == 3
    # predicted marks carry their score; gold ones none
    assert "score 0.980" in marks[("pred", "Tom", "PER")]["title"]
    assert marks[("pred", "Tom", "PER")]["data-score"] == "0.9800"
    assert "data-score" not in marks[("gold", "Tom", "PER")]
    # one colour per type, the same in gold and predicted
    assert marks[("gold", "Tom", "PER")]["style"] == marks[("pred", "Tom", "PER")]["style"]
    assert marks[("gold", "Tom", "PER")]["style"] != marks[("gold", "AT&T", "ORG")]["style"]


def test_text_is_escaped():
    page = render_ner_html(_report(), _loss_chart())
    assert "<b>AT" not in page and '</b>"' not in page
    assert "&lt;b&gt;" in page and "AT&amp;T" in page and "O&#39;Neil &lt;3 <mark" in page
    assert "med-ner &lt;demo&gt;" in page and "<demo>" not in page
    assert "O&#39;Neil" in page and "&#34;&lt;b&gt;" in page
    # no tag inside a sentence but our marks and their labels
    for sent in _parse(page).sentences:
        assert set(sent["inner_tags"]) <= {"mark", "span"}


def test_tables_rows_and_numbers():
    page = render_ner_html(_report(), _loss_chart())
    for t in ("PER", "ORG", "LOC", "DISEASE", "DRUG"):
        assert f'<tr class="type-row" data-type="{t}">' in page
    # rows ordered by support, largest first
    assert (
        page.index('data-type="PER">')
        < page.index('data-type="LOC">')
        < page.index('data-type="ORG">')
    )
    assert (
        'id="targets"' in page
        and page.count('class="met"') == 1
        and page.count('class="missed"') == 1
    )
    assert "Δ model − feature_crf" in page
    assert '<td class="better">+0.2100</td>' in page  # 0.62 − 0.41 on micro F1
    assert "hfl/chinese-roberta-wwm-ext" in page and "CRF over BERT sub-token 0 (Viterbi)" in page
    assert "102,300,000" in page and "812.40" in page and "fit 23.6 s" in page
    assert "The model beats feature_crf by +0.21 micro F1 &amp; meets 1 of 2 targets." in page
    # the baseline has no token accuracy / latency: a dash, not a crash
    comparison = page[
        page.index('id="comparison"') : page.index("</table>", page.index('id="comparison"'))
    ]
    assert "0.9412" in comparison and "3.25" in comparison and "—" in comparison


def test_missing_optional_keys_do_not_crash():
    bare = render_ner_html({"task": "ner"}, "")
    assert "No targets" in bare and "No per-type scores" in bare and "No sentence errors" in bare
    assert "No training history" in bare and "<mark" not in bare
    _parse(bare)

    r = copy.deepcopy(_report())
    del r["baselines"]["feature_crf"]["metrics"]["per_type"]
    del r["model"]["metrics"]["entity_f1_macro"]
    for k in ("verdict", "timing", "data", "ner", "targets", "summary_metrics"):
        del r[k]
    r["train"] = {"method": "lora"}
    r["worst"] = [
        {"id": "a", "text": "only text"},
        {"text": None, "gold": [[0, 3, "X"]], "pred": None},
        {"id": 7, "text": "x & y", "gold": [[4, 5, "T"], [0, 1, "T"]], "pred": [[0, 1, "T", None]]},
    ]
    page = render_ner_html(r, _loss_chart())
    sentences = _parse(page).sentences
    assert [s["text"] for s in sentences] == ["only text", "only text", "", "", "x & y", "x & y"]
    assert [len(s["marks"]) for s in sentences] == [0, 0, 0, 0, 2, 1]
    assert 'data-type="PER"' in page and "entity_recall_micro" in page  # default summary


def test_highlight_helper():
    out = highlight("a<b & c", [[4, 5, "X", 0.5], [0, 3, "Y"], [1, 2, "Z"]], [[0, 3, "Y"]])
    assert isinstance(out, Markup)
    assert str(out).startswith('<mark class="ent ent-ok"')
    assert "a&lt;b" in out and ">&amp;<span" in out and 'title="X · wrong · score 0.500"' in out
    assert 'data-type="Z"' not in out  # overlaps Y, drawn first
    plain = highlight("<i>", [], None)
    assert str(plain) == "&lt;i&gt;"
    gold = highlight("ab", [[0, 1, "T"], [1, 2, "T"]], [[0, 1, "T", 0.9]], kind="gold")
    assert "ent-ok" in gold and "ent-missed" in gold and "found" in gold and "score" not in gold
    assert 'data-type="&lt;T&gt;"' in highlight("ab", [[0, 2, "<T>"]])
