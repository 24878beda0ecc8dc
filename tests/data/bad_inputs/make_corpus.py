"""Writes the bad-input corpus (run once; the outputs are committed). Each file mixes good
records with broken ones; EXPECTED says how many of each file's records must be quarantined."""

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
GOOD = [
    ("This medicine worked well for my migraines, no side effects at all.", "positive"),
    ("Terrible nausea for three days, I had to stop taking it.", "negative"),
    ("Helped my sleep a lot after the second week of treatment.", "positive"),
    ("Gave me a rash and headaches; the doctor switched me to another drug.", "negative"),
]

# truncated JSON lines, a non-object line, a line with a missing label, deep nesting
lines = [json.dumps({"text": t, "label": lab}) for t, lab in GOOD]
lines.insert(1, '{"text": "Worked great for my back pain", "lab')  # cut off mid-record
lines.insert(3, '["not", "an", "object"]')
lines.append(json.dumps({"text": "No label on this one"}))
lines.append("[" * 100000)  # would overflow a recursive parser
(HERE / "truncated.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

# a CSV saved as GBK while the YAML says utf-8: every Chinese row is undecodable
gbk = "text,label\n" + "\n".join(
    [f'"{t}",{lab}' for t, lab in GOOD[:2]]
    + ["这个药效果很好，没有副作用,positive", "吃了以后一直头疼,negative"]
)
(HERE / "gbk.csv").write_bytes(gbk.encode("gbk"))

(HERE / "empty.jsonl").write_bytes(b"")
(HERE / "empty.csv").write_bytes(b"")

# ragged rows: too few and too many columns, a NUL byte, an unterminated quote at the end
ragged = (
    "text,label,date\n"
    f'"{GOOD[0][0]}",positive,2020-01-01\n'
    "only one column\n"
    f'"{GOOD[1][0]}",negative,2020-01-02,extra,columns\n'
    f'"{GOOD[2][0]}",positive,2020-01-03\n'
    "nul\x00byte here,negative,2020-01-04\n"
    f'"{GOOD[3][0]}",negative,2020-01-05\n'
    '"an unterminated quote,positive,2020-01-06\n'
)
(HERE / "ragged.csv").write_text(ragged, encoding="utf-8")


# a Label Studio export: tasks missing data.text, with no result list, cancelled, fine
def task(i, data, annotations):
    return {"id": i, "data": data, "annotations": annotations}


def choice(label, user=1):
    return {
        "completed_by": user,
        "result": [
            {
                "from_name": "sentiment",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": [label]},
            }
        ],
    }


ls = [
    task(1, {"text": GOOD[0][0]}, [choice("positive")]),
    task(2, {"review": "the text is under another key"}, [choice("negative")]),
    task(3, {"text": GOOD[1][0]}, [{"completed_by": 2}]),  # annotation without result
    task(4, {"text": GOOD[2][0]}, [{**choice("positive"), "was_cancelled": True}]),  # no label
    task(5, {"text": GOOD[3][0]}, [choice("negative")]),
    {"id": 6},  # no data at all
]
(HERE / "labelstudio_missing.json").write_text(json.dumps(ls, indent=1), encoding="utf-8")

# binary garbage read as one-text-per-line
rng = random.Random(0)
(HERE / "binary.bin").write_bytes(bytes(rng.randrange(256) for _ in range(3000)))
