"""The data stage end to end on real files: every format, the bad-input corpus, PII never
leaking into what the stage writes, group-aware splits, k folds, agreement, augmentation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, run_cli, write

from verticalize import api

BAD = ROOT / "tests" / "data" / "bad_inputs"


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _balanced(manifest: dict) -> None:
    assert manifest["in"] == manifest["out"] + sum(manifest["dropped"].values())
    for step in manifest["steps"]:
        assert step["in"] + step.get("added", 0) == step["out"] + sum(step["dropped"].values())
    chain = [s for s in manifest["steps"] if s["step"] != "augment"]
    for a, b in zip(chain, chain[1:], strict=False):
        assert a["out"] == b["in"], (a, b)


def test_bad_input_corpus_is_quarantined_not_fatal(tmp_path):
    res = run_cli("data", str(BAD / "verticalize.yaml"), "--run-dir", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    data = tmp_path / "run" / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    _balanced(manifest)
    quarantine = _rows(data / "quarantine.jsonl")
    assert len(quarantine) == manifest["quarantined"] == sum(manifest["dropped"].values())
    for row in quarantine:
        assert {"source", "line", "rule", "field"} <= row.keys()
    by_file: dict[str, set] = {}
    for row in quarantine:
        if not row["step"].startswith("dedup"):  # the good records repeat across files
            by_file.setdefault(Path(row["source"]).name, set()).add(row["rule"])
    assert {"bad_json", "missing_label"} <= by_file["truncated.jsonl"]
    assert by_file["gbk.csv"] == {"bad_encoding"}
    assert "bad_row" in by_file["ragged.csv"] and "garbage" in by_file["ragged.csv"]
    assert {"missing_field", "missing_label"} <= by_file["labelstudio_missing.json"]
    assert by_file["binary.bin"] <= {"bad_encoding", "garbage"}
    gbk = next(r for r in quarantine if Path(r["source"]).name == "gbk.csv")
    assert "gb18030" in gbk["detail"]  # the message names the encoding that fits
    empty = [s for s in manifest["sources"] if s["empty"]]
    assert {Path(s["path"]).name for s in empty} == {"empty.jsonl", "empty.csv"}
    assert "has no records" in res.stderr
    page = (data / "report.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 2 and 'id="steps"' in page and "bad_encoding=" in page
    for name in ("train", "test"):
        assert _rows(data / f"{name}.jsonl")


def test_error_mode_stops_at_the_first_bad_record_naming_it(tmp_path):
    res = run_cli(
        "data",
        str(BAD / "verticalize.yaml"),
        "--run-dir",
        str(tmp_path / "run"),
        "--set",
        "data.on_bad_record=error",
    )
    assert res.returncode == 3 and "Traceback" not in res.stderr
    assert "truncated.jsonl:2" in res.stderr and "Fix:" in res.stderr


def _write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])


def _yaml(tmp_path: Path, body: str) -> Path:
    return write(tmp_path / "verticalize.yaml", f"name: t\nseed: 3\n{body}")


REVIEWS = [
    ("This medicine worked well for my migraines and had no side effects at all.", "pos"),
    ("Terrible nausea for three days after each dose, I had to stop taking it.", "neg"),
    ("It helped my sleep a lot after the second week of the treatment.", "pos"),
    ("It gave me a rash and headaches so the doctor switched me to another drug.", "neg"),
    ("My blood pressure is finally under control and I feel great every morning.", "pos"),
    ("I gained ten pounds and felt anxious the whole time I was on this pill.", "neg"),
    ("Easy to take, cheap, and my cholesterol dropped within two months.", "pos"),
    ("The worst insomnia of my life started the day I began this medication.", "neg"),
]


def test_every_format_reads_with_source_and_line(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"body": [t for t, _ in REVIEWS[:4]], "y": [lab for _, lab in REVIEWS[:4]]}),
        tmp_path / "a.parquet",
    )
    for i, (text, label) in enumerate(REVIEWS[4:6]):
        write(tmp_path / "folder" / label / f"{i}.txt", text)
    ls = [
        {
            "id": 1,
            "data": {"text": REVIEWS[6][0]},
            "annotations": [
                {
                    "completed_by": 1,
                    "result": [
                        {"type": "choices", "from_name": "label", "value": {"choices": ["pos"]}}
                    ],
                }
            ],
        },
    ]
    write(tmp_path / "ls.json", json.dumps(ls))
    write(
        tmp_path / "min.json", json.dumps([{"text": REVIEWS[7][0], "label": "neg", "annotator": 3}])
    )
    write(
        tmp_path / "doc.jsonl",
        json.dumps({"text": REVIEWS[0][0] + " Again.", "label": ["pos"]})
        + "\n"
        + json.dumps({"text": REVIEWS[1][0] + " Again.", "label": ["neg"]})
        + "\n",
    )
    cfg = _yaml(
        tmp_path,
        """data:
  sources:
    - {path: a.parquet, text: body, label: y}
    - {path: folder, label: folder}
    - {path: ls.json}
    - {path: min.json}
    - {path: doc.jsonl, format: doccano}
  split: {validation: 0.0, test: 0.3}
""",
    )
    result = api.data(cfg, tmp_path / "run")
    m = result.manifest
    _balanced(m)
    assert m["out"] == 10 and m["quarantined"] == 0
    records = [
        r for s in ("train", "test") for r in _rows(tmp_path / "run" / "data" / f"{s}.jsonl")
    ]
    by_text = {r["text"]: r for r in records}
    assert by_text[REVIEWS[0][0]]["line"] == 1 and by_text[REVIEWS[0][0]]["source"].endswith(
        "a.parquet"
    )
    assert by_text[REVIEWS[4][0]]["label"] == "pos"  # folder-per-class layout
    assert by_text[REVIEWS[4][0]]["source"].endswith("pos/0.txt")
    assert by_text[REVIEWS[6][0]]["label"] == "pos" and by_text[REVIEWS[7][0]]["label"] == "neg"
    assert by_text[REVIEWS[7][0]]["meta"]["annotator"] == 3
    assert by_text[REVIEWS[1][0] + " Again."]["line"] == 2


def test_doccano_spans_survive_with_offsets(tmp_path):
    text = "患者服用二甲双胍后出现头晕。"
    lines = [
        {"text": text, "label": [[4, 8, "DRUG"], [11, 13, "SYMPTOM"]]},
        {"text": "坏的标注", "label": [[3, 9, "DRUG"]]},  # span past the end of the text
    ]
    write(tmp_path / "ner.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines))
    cfg = _yaml(
        tmp_path, "data:\n  sources: [{path: ner.jsonl, format: doccano, label_value: x}]\n"
    )
    from verticalize.config import load_config
    from verticalize.data.ingest import ingest
    from verticalize.data.manifest import Quarantine

    loaded = load_config(cfg)
    with open(tmp_path / "q.jsonl", "w") as fh:
        records, tally, _ = ingest(loaded.data, tmp_path, 0, Quarantine(fh))
    assert tally.dropped == {"bad_span": 1}
    rec = records[0]
    assert [rec["text"][s:e] for s, e, _ in rec["spans"]] == ["二甲双胍", "头晕"]


def test_pii_never_reaches_outputs_and_pseudonyms_reverse(tmp_path):
    raw = {
        "id": "110101199003074514",
        "phone": "13812345678",
        "name": "John Smith",
        "mail": "john.smith@example.com",
    }
    rows = [
        (f"患者张三，身份证号{raw['id']}，电话{raw['phone']}，头痛三天。", "neg", 30),
        (f"Mr. {raw['name']} says the drug works; mail {raw['mail']}", "pos", 31),
        (f"Mr. {raw['name']} says this drug works really well for me.", "pos", 31),
        ("⚠" * 30 + f" call {raw['phone']}", "neg", 45),  # garbage: quarantined, masked
    ] + [(t, lab, 40) for t, lab in REVIEWS]
    _write_csv(tmp_path / "d.csv", ["text", "label", "age"], rows)
    key = tmp_path / "keys" / "k.key"
    cfg = _yaml(
        tmp_path,
        f"""data:
  sources: [{{path: d.csv}}]
  pii: {{enabled: true, action: pseudonym, quasi_identifiers: [age], k_anonymity: 2}}
  key_file: {key}
  sensitive: [validation]
  split: {{validation: 0.2, test: 0.3}}
""",
    )
    run = tmp_path / "run"
    res = run_cli("data", str(cfg), "--run-dir", str(run))
    assert res.returncode == 0, res.stderr
    assert "k-anonymity over age is 1" in res.stderr
    written = [p for p in run.rglob("*") if p.is_file()]
    assert (run / "data" / "validation.jsonl.enc").is_file()
    assert not (run / "data" / "validation.jsonl").exists()
    for path in written:
        body = path.read_bytes().decode("utf-8", "replace")
        for value in raw.values():
            assert value not in body, (path, value)
    for value in raw.values():
        assert value not in res.stdout + res.stderr
    manifest = json.loads((run / "data" / "manifest.json").read_text())
    assert manifest["pii"]["detections"]["id_card"] == 1
    assert manifest["dropped"] == {"garbage": 1}
    assert manifest["pii"]["k_anonymity"]["k"] == 1
    # reversible with the key, kept apart from the data
    everything = run / "all.jsonl"
    everything.write_text(
        "".join((run / "data" / f"{s}.jsonl").read_text() for s in ("train", "test"))
    )
    res = run_cli(
        "data",
        "reidentify",
        str(cfg),
        str(everything),
        "--run-dir",
        str(run),
        "-o",
        str(tmp_path / "restored.jsonl"),
    )
    assert res.returncode == 0, res.stderr
    restored = (tmp_path / "restored.jsonl").read_text()
    assert raw["name"] in restored and raw["mail"] in restored or raw["id"] in restored
    # a key inside the run folder is refused
    res = run_cli(
        "data", str(cfg), "--run-dir", str(run), "--force", "--set", f"data.key_file={run}/k.key"
    )
    assert res.returncode == 2 and "outside the run folder" in res.stderr
    # the encrypted split reads back for training with the key
    from verticalize.config import load_config
    from verticalize.data.outputs import read_split

    assert read_split(load_config(cfg), run, "validation")


def test_near_duplicates_never_straddle_splits_and_folds_cover_train(tmp_path):
    base = [t for t, _ in REVIEWS]
    rows = []
    for i, (text, label) in enumerate(REVIEWS * 3):
        copy = i // len(REVIEWS)
        edited = text if copy == 0 else text.replace("the", "teh", 1) + " " * copy + "!" * copy
        rows.append(
            {"text": edited, "label": label if copy < 2 else ("neg" if label == "pos" else "pos")}
        )
    write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    cfg = _yaml(
        tmp_path,
        """data:
  sources: [{path: d.jsonl}]
  dedup: {near: {enabled: true, threshold: 0.5, action: drop}}
  split: {validation: 0.1, test: 0.25, folds: 3}
""",
    )
    m = api.data(cfg, tmp_path / "run").manifest
    _balanced(m)
    data = tmp_path / "run" / "data"
    assert m["dropped"]["near_duplicate"] == len(base)  # same-label copies dropped
    by_script = m["dedup"]["near"]["by_script"]  # the settings each script was compared with
    assert by_script["latin"] == {"ngram": 2, "threshold": 0.5, "vocab_threshold": 0.7}
    assert by_script["cjk"]["threshold"] == 0.5 and by_script["cjk"]["ngram"] == 2
    clusters = [c for c in _rows(data / "dedup_clusters.jsonl") if c["kind"] == "near"]
    assert len(clusters) == len(base)
    split_of = {
        r["id"]: s for s in ("train", "validation", "test") for r in _rows(data / f"{s}.jsonl")
    }
    for c in clusters:  # the other-label copies stay in their original's split
        assert c["grouped"] and {split_of[c["kept"]]} == {split_of[i] for i in c["grouped"]}
    splits = json.loads((data / "splits.json").read_text())
    folded = {rid for ids in splits["folds"].values() for rid in ids}
    assert folded == set(splits["ids"]["train"]) | set(splits["ids"]["validation"])
    assert len(splits["folds"]) == 3


def test_annotator_table_agreement_and_majority_labels(tmp_path):
    lines = ["item,annotator,text,label"]
    for i, (text, label) in enumerate(REVIEWS):
        other = "neg" if label == "pos" else "pos"
        votes = [label, label, label if i % 3 else other]
        if i == 7:
            votes = [label, other]  # a tie
        lines += [f'{i},a{j},"{text}",{v}' for j, v in enumerate(votes)]
    write(tmp_path / "ann.csv", "\n".join(lines) + "\n")
    cfg = _yaml(
        tmp_path,
        """data:
  sources: [{path: ann.csv, item: item, annotator: annotator}]
  split: {validation: 0.0, test: 0.3}
""",
    )
    m = api.data(cfg, tmp_path / "run").manifest
    _balanced(m)
    assert m["dropped"]["annotator_tie"] == 1
    assert m["agreement"]["n_items"] == 8
    report = json.loads((tmp_path / "run" / "data" / "agreement.json").read_text())
    assert -1.0 <= report["alpha"] < 1.0
    records = [
        r for s in ("train", "test") for r in _rows(tmp_path / "run" / "data" / f"{s}.jsonl")
    ]
    assert {r["text"]: r["label"] for r in records} == {t: lab for t, lab in REVIEWS[:7]}


def test_augmented_copies_are_flagged_and_only_in_train(tmp_path):
    write(tmp_path / "syn.txt", "medicine drug medication\nheadaches migraines\n")
    write(
        tmp_path / "d.jsonl",
        "\n".join(json.dumps({"text": t, "label": lab}) for t, lab in REVIEWS * 2),
    )
    cfg = _yaml(
        tmp_path,
        """data:
  sources: [{path: d.jsonl}]
  dedup: {exact: false}
  augment: {enabled: true, copies: 2, ops: [synonym, swap, delete], thesaurus: [syn.txt]}
  split: {validation: 0.1, test: 0.2}
""",
    )
    m = api.data(cfg, tmp_path / "run").manifest
    _balanced(m)
    data = tmp_path / "run" / "data"
    train = _rows(data / "train.jsonl")
    augmented = [r for r in train if r.get("augmented")]
    assert augmented and m["augmented"]["train"] == len(augmented)
    train_ids = {r["id"] for r in train if not r.get("augmented")}
    assert all(r["origin"] in train_ids for r in augmented)
    for name in ("validation", "test"):
        assert not any(r.get("augmented") for r in _rows(data / f"{name}.jsonl"))
    assert m["splits"]["train"] == len(train_ids)


@pytest.mark.slow
def test_ray_engine_gives_the_local_result(tmp_path):
    rows = [
        {"text": f"{t} Review number {i}.", "label": lab} for i, (t, lab) in enumerate(REVIEWS * 40)
    ]
    rows += rows[:30]  # exact copies
    write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    cfg = _yaml(
        tmp_path,
        """data:
  sources: [{path: d.jsonl}]
  dedup: {near: {enabled: true}}
  pii: {enabled: true, action: mask}
  ray: {num_cpus: 2}
""",
    )
    local = api.data(cfg, tmp_path / "local").manifest
    ray_run = api.data(api.load(cfg, ["data.engine=ray"]), tmp_path / "ray").manifest
    assert ray_run["engine"] == "ray"
    assert ray_run["steps"] == local["steps"]
    for name in ("train", "validation", "test"):
        assert (tmp_path / "ray" / "data" / f"{name}.jsonl").read_text() == (
            tmp_path / "local" / "data" / f"{name}.jsonl"
        ).read_text()


@pytest.mark.slow
def test_memory_stays_flat_as_the_input_grows():
    """Streaming: 8x the input bytes must not cost anything like 8x the memory."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from memory import main

    result = main(["--small-mb", "5", "--large-mb", "40"])
    assert result["records"]["large"] > 7 * result["records"]["small"]
    assert result["growth_per_input_byte"] < 0.25, result


def test_error_mode_on_a_rule_names_the_line_without_leaking_pii(tmp_path):
    write(
        tmp_path / "d.csv",
        'text,label\n"fine text here",a\n"\x01\x02\x03\x04 call 13812345678",b\n',
    )
    cfg = _yaml(
        tmp_path,
        "data:\n  sources: [{path: d.csv}]\n  pii: {enabled: true}\n  on_bad_record: error\n",
    )
    res = run_cli("data", str(cfg), "--run-dir", str(tmp_path / "run"))
    assert res.returncode == 3 and "Traceback" not in res.stderr
    assert "d.csv:3" in res.stderr and "garbage" in res.stderr and "Fix:" in res.stderr
    assert "13812345678" not in res.stderr and "138****5678" in res.stderr
