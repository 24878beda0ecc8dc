"""The data stage for task: generation — conversation layouts, templates, pre-training text,
PII masking inside turns, quarantine of broken conversations, config errors."""

import json

from conftest import run_cli, write

from verticalize import api


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return path


def _project(tmp_path, sources: str, extra: str = ""):
    path = write(
        tmp_path / "verticalize.yaml",
        f"""
        name: gen
        task: generation
        data:
          sources:
        {sources}
          pii: {{enabled: true, action: mask}}
          split: {{validation: 0.2, test: 0.2, stratify: false}}
        """,
    )
    path.write_text(path.read_text() + extra)
    return path


def test_layouts_templates_and_text_become_records(tmp_path):
    _jsonl(
        tmp_path / "alpaca.jsonl",
        [
            {"instruction": f"Question {i}?", "input": "", "output": f"Answer {i}."}
            for i in range(10)
        ]
        + [{"instruction": "No answer", "output": ""}],  # broken: quarantined
    )
    _jsonl(
        tmp_path / "share.jsonl",
        [
            {
                "conversations": [
                    {"from": "human", "value": f"Call me at 13812345678, case {i}"},
                    {"from": "gpt", "value": f"Noted for case {i}."},
                ]
            }
            for i in range(6)
        ]
        + [{"conversations": [{"from": "robot", "value": "?"}]}],
    )
    _jsonl(
        tmp_path / "openai.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": f"Dose {i}?"},
                    {"role": "assistant", "content": f"{i} mg."},
                    {"role": "user", "content": "And after?"},
                    {"role": "assistant", "content": "Half."},
                ]
            }
            for i in range(6)
        ],
    )
    (tmp_path / "notes.txt").write_text(
        "\n".join(f"Clinical note {i}: the patient improved." for i in range(8)) + "\n"
    )
    (tmp_path / "drugs.csv").write_text(
        "drug,condition\n" + "\n".join(f"drug{i},condition{i}" for i in range(5)) + "\n"
    )
    cfg = _project(
        tmp_path,
        """
            - {path: alpaca.jsonl, chat: alpaca}
            - {path: share.jsonl, chat: sharegpt}
            - {path: openai.jsonl, chat: messages}
            - {path: notes.txt, format: lines, pretrain: true}
            - path: drugs.csv
              templates:
                - {name: cond, instruction: "Condition for {drug}?", output: "{condition}"}
                - {name: drug, instruction: "Drug for {condition}?", output: "{drug}"}
        """,
    )
    run_dir = tmp_path / "run"
    result = api.data(cfg, run_dir=run_dir)
    m = result.manifest
    # rows read + records the two templates made = out + dropped
    assert m["rows_read"] == 11 + 7 + 6 + 8 + 5 and m["in"] == m["rows_read"] + 5
    assert m["dropped"] == {"bad_conversation": 2}
    records = [
        json.loads(x)
        for split in ("train", "validation", "test")
        for x in (run_dir / "data" / f"{split}.jsonl").read_text().splitlines()
    ]
    assert len(records) == m["out"] == 10 + 6 + 6 + 8 + 10
    by_label = {}
    for r in records:
        by_label.setdefault(r["label"], []).append(r)
    assert set(by_label) == {"chat", "text", "cond", "drug"}
    assert all("messages" not in r for r in by_label["text"])
    multi = [r for r in records if len(r.get("messages", [])) == 5]
    assert len(multi) == 6 and multi[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    # PII is masked inside the turns, and the text is rebuilt from them
    phone = [r for r in records if "case" in r["text"]]
    assert phone and all("13812345678" not in json.dumps(r) for r in phone)
    assert all(r["text"].startswith("user: ") for r in phone)
    # both questions about one row share a split
    split_of = {}
    for split in ("train", "validation", "test"):
        for x in (run_dir / "data" / f"{split}.jsonl").read_text().splitlines():
            r = json.loads(x)
            if r["label"] in ("cond", "drug"):
                split_of.setdefault(r["id"].rsplit(":", 1)[0], set()).add(split)
    assert len(split_of) == 5 and all(len(s) == 1 for s in split_of.values())
    quarantine = [
        json.loads(x) for x in (run_dir / "data/quarantine.jsonl").read_text().splitlines()
    ]
    reasons = {q["line"]: q["detail"] for q in quarantine}
    assert "is empty" in reasons[11] and "use one of" in reasons[7]


def test_generation_source_needs_a_kind(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    cfg = _project(tmp_path, "    - {path: a.jsonl}")
    r = run_cli("data", str(cfg))
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2 and "Traceback" not in out
    assert "verticalize.yaml:5" in out and "exactly one of chat, templates, pretrain" in out


def test_classification_refuses_generation_only_options(tmp_path, csv_project):
    cfg = csv_project(data_extra="", extra="model:\n  method: prompt_tuning\n")
    r = run_cli("data", str(cfg))
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2 and "available for task: generation" in out
    cfg = csv_project(extra="eval:\n  targets:\n    - {metric: rouge_l, target: 0.5}\n")
    r = run_cli("data", str(cfg))
    assert "unknown metric 'rouge_l'" in " ".join((r.stdout + r.stderr).split())


def test_generation_targets_use_generation_metrics(tmp_path):
    (tmp_path / "n.txt").write_text("a note\n")
    cfg = _project(
        tmp_path,
        "    - {path: n.txt, format: lines, pretrain: true}",
        "eval:\n  targets:\n    - {metric: macro_f1, target: 0.5}\n",
    )
    r = run_cli("data", str(cfg))
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2 and "unknown metric 'macro_f1'" in out and "rouge_l" in out
