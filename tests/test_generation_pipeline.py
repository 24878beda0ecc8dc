"""Generation end to end on real reviews and the real SmolLM2: report contract, LoRA resume
from a mid-run checkpoint, incremental training on new records only."""

import json
import shutil

import pytest
from conftest import ROOT, run_cli, shortened
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "drug-assistant" / "verticalize.yaml"
SMALL = (
    "data.sources.0.sample=6",
    "data.sources.1.sample=24",
    "model.max_length=160",
    "generation.block_size=512",
    "generation.eval_generations=4",
    "generation.report_samples=3",
    "generation.max_new_tokens=8",
    "train.batch_size=1",
    "train.grad_accum_steps=1",  # one packed row a step, as before the example accumulated 4
    "train.eval_batch_size=8",
)


def _ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def _data_and_train(run_dir, opts):
    _ok(run_cli("data", str(EXAMPLE), *shortened(run_dir, *opts)))
    return _ok(run_cli("train", str(EXAMPLE), *shortened(run_dir, *opts)))


def test_example_shortened_reports_the_contract(tmp_path):
    run_dir = tmp_path / "run"
    _ok(run_cli("run", str(EXAMPLE), *shortened(run_dir, *SMALL)))
    report = json.loads((run_dir / "eval/report.json").read_text())
    assert report["task"] == "generation"
    for block in ("model", "base_model"):
        m = report[block]["metrics"]
        assert {"perplexity", "rouge_l", "bleu", "exact_match", "rouge_1", "rouge_2"} <= set(m)
        assert m["perplexity"] > 1 and 0 <= m["rouge_l"] <= 1 and m["n"] == 4
    assert set(report["train"]["stages"]) == {"continued_pretraining", "sft"}
    assert report["train"]["packing"] is True
    assert len(report["samples"]) == 3 and {"prompt", "reference", "base", "model"} <= set(
        report["samples"][0]
    )
    html = (run_dir / "eval/report.html").read_text()
    assert 'id="samples"' in html and "<svg" in html and "http" not in html.split("<body>")[1]
    # model/ is a plain merged causal LM with the tokenizer's chat template
    assert (run_dir / "model/config.json").is_file()
    assert not (run_dir / "model/adapter_config.json").exists()
    train = json.loads((run_dir / "train/manifest.json").read_text())
    assert train["in"] == train["out"] + sum(train["dropped"].values())


def test_lora_run_resumes_from_a_checkpoint_and_ends_the_same(tmp_path):
    opts = (
        *SMALL,
        "generation.stages=[sft]",
        "train.checkpoint_every=1",
        "train.keep_checkpoints=20",
    )
    first = tmp_path / "first"
    _data_and_train(first, opts)
    sft = first / "train/sft"
    steps = sorted((sft / "checkpoints").glob("step-*"))
    assert len(steps) >= 3
    reference = load_file(str(first / "model/model.safetensors"))
    curve = [json.loads(x) for x in (sft / "metrics.jsonl").read_text().splitlines()]

    # a run killed after its second checkpoint: later checkpoints, best weights, model and
    # manifest never got written
    for later in steps[2:]:
        shutil.rmtree(later)
    shutil.rmtree(sft / "best")
    shutil.rmtree(first / "model")
    (first / "train/manifest.json").unlink()
    r = _ok(run_cli("train", str(EXAMPLE), *shortened(first, *opts)))
    assert "resumed from" in r.stdout + r.stderr
    manifest = json.loads((first / "train/manifest.json").read_text())
    assert manifest["stages"]["sft"]["resumed_from"].endswith(steps[1].name)
    resumed = load_file(str(first / "model/model.safetensors"))
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert (resumed[k] - reference[k]).abs().max() < 1e-4, k
    again = [json.loads(x) for x in (sft / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["step"], round(r["loss"], 4)) for r in curve if r["event"] == "train"]
    assert [(r["step"], round(r["loss"], 4)) for r in again if r["event"] == "train"] == losses


def test_incremental_run_trains_only_on_new_records(tmp_path):
    opts = (
        *SMALL,
        "generation.stages=[sft]",
        "train.epochs=1",
        "train.gradient_checkpointing=true",
    )
    first = tmp_path / "first"
    _data_and_train(first, opts)
    second = tmp_path / "second"
    _data_and_train(
        second, (*opts, "data.sources.1.sample=40", f"generation.incremental_from={first}")
    )
    m = json.loads((second / "train/manifest.json").read_text())

    def rows(run):
        return [json.loads(x) for x in (run / "data/train.jsonl").read_text().splitlines()]

    trained = {r["text"] for r in rows(first)}
    new_chats = [r for r in rows(second) if r.get("messages") and r["text"] not in trained]
    seen = sum(r["text"] in trained for r in rows(second))
    assert seen > 0 and m["dropped"]["incremental_already_trained"] == seen
    assert m["stages"]["sft"]["records"] == len(new_chats) > 0
    assert m["base_model"] == str((first / "model").resolve())
