"""The Hugging Face model card (README.md) of an exported model (X1): YAML front matter, then
what the run measured — model, intended use, training data, evaluation, quantization,
limitations (configured and found), and how to serve it."""

from __future__ import annotations

import math
import re

import yaml

from verticalize.config import Config
from verticalize.plugins import get_task

# bundled short names -> their Hugging Face Hub ids (front matter needs a Hub id)
HUB_IDS = {
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "gemma-3-270m": "google/gemma-3-270m",
    "SmolLM2-135M-Instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "multilingual-e5-small": "intfloat/multilingual-e5-small",
}
# base models pretrained (almost) only on English text
ENGLISH_BASES = {
    "sentence-transformers/all-MiniLM-L6-v2",
    "HuggingFaceTB/SmolLM2-135M-Instruct",
}
_HAN = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_ENGLISH_WORDS = {"the", "and", "is", "was", "it", "to", "of", "my", "i", "this", "for", "with"}


def hub_id(base: str) -> str | None:
    """The Hub id of a base model name, or None for a local folder."""
    if base in HUB_IDS:
        return HUB_IDS[base]
    if base.count("/") == 1 and not base.startswith((".", "/", "~")):
        return base
    return None


def guess_language(texts: list[str]) -> str | None:
    """ "zh" when most texts are mostly Han characters, "en" when they are Latin script with
    English function words; None otherwise (the card then names no language)."""
    texts = [t for t in texts if t.strip()][:500]
    if not texts:
        return None
    han = sum(len(_HAN.findall(t)) > len(_LATIN.findall(t)) for t in texts)
    if han > len(texts) / 2:
        return "zh"
    words = [w for t in texts for w in re.findall(r"[a-z']+", t.lower())]
    if words and sum(w in _ENGLISH_WORDS for w in words) / len(words) > 0.08:
        return "en"
    return None


def front_matter(cfg: Config, base: str, language: str | None, has_onnx: bool) -> str:
    meta: dict = {}
    if hub_id(base):
        meta["base_model"] = hub_id(base)
    if language:
        meta["language"] = [language]
    if cfg.export.card.license:
        meta["license"] = cfg.export.card.license
    meta["library_name"] = "transformers"
    if tag := get_task(cfg.task).pipeline_tag:
        meta["pipeline_tag"] = tag
    meta["tags"] = ["verticalize", cfg.task, cfg.domain] + (["onnx", "int8"] if has_onnx else [])
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4f}"
    return "–" if x is None else str(x)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines + [""]


def intended_use(cfg: Config, labels: list[str]) -> str:
    if cfg.export.card.intended_use:
        return cfg.export.card.intended_use
    plugin = get_task(cfg.task)
    what = (
        plugin.intended_use(cfg, labels)
        if plugin.intended_use
        else f"{plugin.card_words or plugin.name} on {cfg.domain} texts"
    )
    return (
        f"{what[0].upper() + what[1:]}, for texts like those it was trained on. It is a "
        "starting point to be checked against your own data, not a system to act on unreviewed."
    )


def model_section(cfg: Config, info: dict, train_m: dict, merged: bool) -> list[str]:
    method = train_m.get("method", cfg.model.method)
    rows = [
        ["Task", cfg.task],
        ["Domain", cfg.domain],
        ["Base model", info["base_model"]],
        ["Method", method],
        ["Parameters", f"{train_m['parameters']:,}" if "parameters" in train_m else None],
        ["Max length (tokens)", cfg.model.max_length],
        ["Labels", ", ".join(info.get("labels") or []) or None],
        ["Training steps / epochs", f"{train_m.get('steps')} / {train_m.get('epochs_run')}"],
        ["Version", info["version"]],
    ]
    best = train_m.get("best_metric") or {}
    rows += [[f"Best validation {k}", v] for k, v in best.items()]
    if not merged:
        note = (
            "Prompt / prefix tuning cannot be merged: the folder holds a PEFT adapter that "
            "loads over its base model."
        )
    elif method == "lora":
        note = "The LoRA adapters are merged into the base weights: a plain transformers model."
    else:
        note = "A plain transformers model: no adapter to load."
    return ["## Model", "", *_table(["", ""], rows), note, ""]


def class_counts(data_m: dict) -> dict:
    """Records per label per split; none for a task without classes (labels [], as
    regression's numbers), whose label_counts count distinct values."""
    return {} if data_m.get("labels") == [] else data_m.get("label_counts") or {}


def data_section(data_m: dict) -> list[str]:
    out = ["## Training data", ""]
    for s in data_m.get("sources") or []:
        pkg = f" (PyPI `{s['package']}=={s['package_version']}`)" if s.get("package") else ""
        rows = f", {s['rows']} rows" if s.get("rows") is not None else ""
        out.append(f"- `{s.get('path')}`{pkg}{rows}")
    out += [
        "",
        f"{data_m.get('in')} records in, {data_m.get('out')} kept after rules, cleaning, "
        "PII handling and deduplication.",
        "",
    ]
    dropped = data_m.get("dropped") or {}
    if dropped:
        out += _table(["Dropped because", "Records"], [[k, v] for k, v in dropped.items()])
    if data_m.get("quarantined"):
        out += [
            f"The {data_m['quarantined']} dropped records are kept, each with its reason, in "
            "the run's data/quarantine.jsonl.",
            "",
        ]
    pii = data_m.get("pii")
    if isinstance(pii, dict):
        found = ", ".join(f"{k} ×{v}" for k, v in (pii.get("detections") or {}).items())
        out += [f"Personal data: action `{pii.get('action')}` ({found or 'none found'}).", ""]
    splits = data_m.get("splits") or {}
    counts = class_counts(data_m)
    labels = data_m.get("labels") or sorted({k for c in counts.values() for k in c})
    if splits:
        header = ["Split", "Records"] + (labels if counts else [])
        rows = [
            [name, n] + [counts.get(name, {}).get(lab, 0) for lab in labels if counts]
            for name, n in splits.items()
        ]
        out += _table(header, rows)
    return out


def evaluation_section(report: dict | None, export_metric: tuple[str, float] | None) -> list[str]:
    out = ["## Evaluation", ""]
    if not report:
        out.append("`verticalize eval` has not scored this model version.")
        if export_metric:
            out.append(
                f"On the test split (export check) its {export_metric[0]} is "
                f"{export_metric[1]:.4f}."
            )
        return out + [""]
    model_m = report["model"]["metrics"]
    baselines = report.get("baselines") or {}
    names = [m for m in report.get("summary_metrics") or [] if isinstance(model_m.get(m), float)]
    out.append(f"On the held-out test split ({report.get('test_size')} records):")
    out.append("")
    rows = [[m, model_m[m]] + [b["metrics"].get(m) for b in baselines.values()] for m in names]
    out += _table(["Metric", "This model", *[f"{n} baseline" for n in baselines]], rows)
    if report.get("verdict"):
        out += [report["verdict"], ""]
    targets = report.get("targets") or []
    if targets:
        out += _table(
            ["Target", "Wanted", "Achieved", "Met"],
            [
                [
                    t["metric"],
                    f"{'≥' if t['direction'] == 'max' else '≤'} {t['target']}",
                    t["achieved"],
                    "yes" if t["met"] else "**no**",
                ]
                for t in targets
            ],
        )
    return out


def quantization_section(export_m: dict) -> list[str]:
    out = ["## Quantization (ONNX Runtime)", ""]
    if not export_m.get("onnx"):
        return out + [f"No ONNX model: {export_m.get('onnx_reason')}.", ""]
    metric = export_m["metric"]
    names = {"torch": "PyTorch fp32", "onnx": "ONNX fp32", "onnx_int8": "ONNX INT8 (dynamic)"}
    rows = [
        [
            label,
            export_m["metrics"].get(key),
            f"{export_m['latency_ms'][key]:.1f}" if key in export_m["latency_ms"] else None,
            f"{export_m['size_bytes'][key] / 1e6:.1f}" if key in export_m["size_bytes"] else None,
        ]
        for key, label in names.items()
        if export_m["metrics"].get(key) is not None
    ]
    out += _table(["Runtime", f"Test {metric}", "Latency ms (median, 1 text)", "MB"], rows)
    if export_m.get("metric_drop") is not None:
        out.append(
            f"INT8 is ×{export_m['latency_ratio']:.2f} the latency and ×"
            f"{export_m['size_ratio']:.2f} the size of the original; its {metric} drops by "
            f"{export_m['metric_drop']:+.4f} (allowed {export_m['max_metric_drop']}). "
            f"Timed on {export_m['latency_examples']} test texts, {export_m['threads']} threads."
        )
    out += [
        "",
        "**Published.**" if export_m["published"] else f"**Not published**: {export_m['reason']}.",
    ]
    return out + [""]


def limitations(
    cfg: Config, info: dict, data_m: dict, train_m: dict, report: dict | None, uncased: bool
) -> list[str]:
    """The configured limitations, then the ones the run's own numbers show."""
    found = list(cfg.export.card.limitations)
    base = hub_id(info["base_model"]) or info["base_model"]
    if base in ENGLISH_BASES:
        found.append(
            f"The base model ({base}) was pretrained on English text; other "
            "languages are outside what it can be expected to handle."
        )
    if uncased:
        found.append(
            "The encoder is uncased: it cannot see capitalisation (e.g. 'US' vs "
            "'us'), a strong cue for names and acronyms."
        )
    n_train, cut = train_m.get("in"), train_m.get("truncated_to_max_length")
    if n_train and cut:
        found.append(
            f"Inputs are cut at {cfg.model.max_length} tokens; {cut} of {n_train} "
            f"training texts ({cut / n_train:.0%}) were longer and lost their ends."
        )
    train_counts = class_counts(data_m).get("train") or {}
    total = sum(train_counts.values())
    rare = [k for k, v in train_counts.items() if total and v / total < 0.1]
    if rare:
        found.append(
            f"Few training examples of {', '.join(rare)} (under 10% each): expect "
            "lower recall on them."
        )
    sources = ", ".join(str(s.get("path")) for s in data_m.get("sources") or [])
    found.append(
        f"Trained only on {cfg.domain} data ({sources}); texts from other sources or "
        "periods may score lower than the test split suggests."
    )
    if report:
        m = report["model"]["metrics"]
        n = report.get("test_size") or 0
        if isinstance(m.get("accuracy"), float) and n:
            half = 1.96 * math.sqrt(m["accuracy"] * (1 - m["accuracy"]) / n)
            found.append(
                f"The test split has {n} records: accuracy {m['accuracy']:.3f} is "
                f"uncertain by about ±{half:.3f} (95% normal interval)."
            )
        per_class = m.get("per_class") or m.get("per_type") or {}
        weak = [
            f"{k} (F1 {v['f1']:.2f}, {v['support']} in test)"
            for k, v in per_class.items()
            if isinstance(v, dict) and v.get("support") and v.get("f1", 1) < 0.2
        ]
        if weak:
            found.append(
                f"It is weakest on {', '.join(weak)}: treat those predictions as unreliable."
            )
        missed = [t["metric"] for t in report.get("targets") or [] if not t["met"]]
        if missed:
            found.append(f"Missed its own targets on: {', '.join(missed)}.")
        if "NOT better" in (report.get("verdict") or ""):
            found.append(
                "It does not beat every simple baseline (see Evaluation): consider "
                "the baseline for this use."
            )
    found += get_task(cfg.task).card_limitations
    return ["## Limitations", "", *[f"- {x}" for x in found], ""]


def usage(cfg: Config, info: dict) -> list[str]:
    """How to serve and call the model: the task's own lines (TaskPlugin.card_usage)."""
    plugin = get_task(cfg.task)
    if plugin.card_usage is not None:
        return plugin.card_usage(cfg, info)
    return usage_lines(info, plugin.routes[0] if plugin.routes else None, [])


def usage_lines(info: dict, route: str | None, python: list[str]) -> list[str]:
    """The "How to use" section: serve the folder, call `/v1/<route>` (or chat completions
    when route is None), then the `python` lines."""
    out = ["## How to use", "", "Serve this folder over HTTP (OpenAI-compatible routes too):", ""]
    out += ["```bash", "verticalize serve path/to/this/folder --port 8000"]
    if info.get("onnx_int8"):
        out.append("verticalize serve path/to/this/folder --runtime onnx   # the INT8 model")
    if route:
        out.append(
            f"curl -s localhost:8000/v1/{route} -H 'content-type: application/json' "
            '-d \'{"input": ["a text to score"]}\''
        )
    else:
        out.append(
            "curl -s localhost:8000/v1/chat/completions -H 'content-type: "
            'application/json\' -d \'{"messages": [{"role": "user", '
            '"content": "…"}]}\''
        )
    if python:
        out += ["```", "", "From Python:", "", "```python", *python]
    return out + ["```", ""]


def model_card(
    cfg: Config,
    info: dict,
    data_m: dict,
    train_m: dict,
    report: dict | None,
    export_m: dict,
    language: str | None,
    uncased: bool,
    merged: bool,
) -> str:
    """README.md text for the exported folder. `info` is verticalize.json, `export_m` the
    export manifest (published, onnx, metrics, latency, sizes), `report` eval/report.json
    when it scores this model version."""
    labels = info.get("labels") or []
    export_metric = None
    if export_m.get("metrics", {}).get("torch") is not None:
        export_metric = (export_m["metric"], export_m["metrics"]["torch"])
    lines = [
        front_matter(cfg, info["base_model"], language, bool(export_m.get("onnx"))),
        f"# {cfg.name}",
        "",
        f"A {get_task(cfg.task).card_words or cfg.task} model for the {cfg.domain} domain, fine-tuned from "
        f"`{info['base_model']}` with [verticalize](https://pypi.org/project/verticalize/). "
        f"Version `{info['version']}`"
        + ("." if info.get("published") else " — **not published** (see Quantization)."),
        "",
        *model_section(cfg, info, train_m, merged),
        "## Intended use",
        "",
        intended_use(cfg, labels),
        "",
        *data_section(data_m),
        *evaluation_section(report, export_metric),
        *quantization_section(export_m),
        *limitations(cfg, info, data_m, train_m, report, uncased),
        *usage(cfg, info),
    ]
    return "\n".join(lines)
