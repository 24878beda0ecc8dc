"""INT8 ONNX vs the original PyTorch classifier: latency, size and the test metric, measured
by the export stage in one run (same test split, same thread count, warm-up first).

- latency_ratio = INT8 median ms / torch median ms, one text at a time (< 1: faster);
- size_ratio = model.int8.onnx bytes / model.safetensors bytes;
- metric_drop = torch metric - INT8 metric on the test split (> 0: INT8 is worse).

    python bench/quantize.py                       # trains a shortened drug-reviews run first
    python bench/quantize.py --run runs/drug-reviews --config examples/drug-reviews/verticalize.yaml

Without --run it builds a run in a temporary folder from the drug-reviews example (data +
train, shortened with --set overrides) and exports it. With --run it exports that trained
run (writing its export/) with the config given. Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VERTICALIZE_QUIET", "1")

from verticalize import api  # noqa: E402
from verticalize.errors import ExportError  # noqa: E402
from verticalize.export import stage  # noqa: E402
from verticalize.runfolder import RunFolder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "drug-reviews" / "verticalize.yaml"
# the example's cross-validation recipe (3 epochs of 64 tokens at a higher LR): 2 epochs at
# the example's LR predict "positive" for everything, and then no drop can show
SHORT = [
    "train.epochs=3",
    "model.max_length=64",
    "train.lr=1.5e-4",
    "eval.cv.enabled=false",
    "eval.robustness.enabled=false",
    "eval.adversarial.fgsm.enabled=false",
    "eval.adversarial.substitution.enabled=false",
]


def export_run(config: Path, run_dir: Path, sets: list[str]) -> dict:
    """The export manifest of `run_dir` (forced, so it is measured now); a refused export
    still gives its manifest."""
    cfg = api.load(config, sets)
    folder = RunFolder(cfg, run_dir)
    try:
        return stage.run(cfg, folder, force=True).manifest
    except ExportError:
        manifest = folder.read_manifest("export")
        if manifest is None:
            raise
        return manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="A trained classification run folder.")
    p.add_argument("--config", type=Path, default=EXAMPLE, help="Its verticalize.yaml.")
    p.add_argument("--set", dest="sets", action="append", default=None, help="a.b=value")
    a = p.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vz-quantize-") as tmp:
        if a.run:
            run_dir, sets = a.run, a.sets or []
        else:
            run_dir, sets = Path(tmp) / "run", a.sets or SHORT
            api.data(a.config, run_dir, sets)
            api.train(a.config, run_dir, sets)
        m = export_run(a.config, run_dir, sets)
        info = json.loads(Path(m["path"]).read_text(encoding="utf-8"))
    result = {
        "model": info["version"],
        "base_model": info["base_model"],
        "run": str(a.run) if a.run else "built: drug-reviews " + " ".join(sets),
        "n": m["test_size"],
        "latency_examples": m["latency_examples"],
        "threads": m["threads"],
        "metric": m["metric"],
        "torch_metric": round(m["metrics"]["torch"], 4),
        "onnx_metric": round(m["metrics"]["onnx"], 4),
        "int8_metric": round(m["metrics"]["onnx_int8"], 4),
        "metric_drop": round(m["metric_drop"], 4),
        "published": m["published"],
        "torch_ms": m["latency_ms"]["torch"],
        "onnx_ms": m["latency_ms"]["onnx"],
        "int8_ms": m["latency_ms"]["onnx_int8"],
        "latency_ratio": round(m["latency_ratio"], 3),
        "torch_bytes": m["size_bytes"]["torch"],
        "onnx_bytes": m["size_bytes"]["onnx"],
        "int8_bytes": m["size_bytes"]["onnx_int8"],
        "size_ratio": round(m["size_ratio"], 3),
        "onnx_fp32_max_prob_diff": m["onnx_fp32_max_prob_diff"],
        "seconds": round(time.perf_counter() - started, 1),
        # above the thread count: something else competed for the cores
        "load_avg_1_5_15m_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
