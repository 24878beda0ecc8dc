"""Adaptation methods on the real bundled MiniLM: which parameters train; LoRA merges."""

import copy

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from verticalize.config import ModelConfig, load_config
from verticalize.errors import ModelError
from verticalize.models.adapt import adapt, count_parameters, merged, transformer_layers
from verticalize.models.load import load_sequence_classifier, resolve_base

LABELS = ["neg", "neu", "pos"]


@pytest.fixture
def minilm():
    torch.manual_seed(0)
    return load_sequence_classifier("all-MiniLM-L6-v2", LABELS)


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_full_trains_everything(minilm):
    model, tok = minilm
    model = adapt(model, ModelConfig(method="full"))
    total, trainable = count_parameters(model)
    assert total == trainable and 22_000_000 < total < 23_000_000
    assert model.config.id2label == {0: "neg", 1: "neu", 2: "pos"}


def test_freeze_embeddings_and_first_layers(minilm):
    model, _ = minilm
    model = adapt(model, ModelConfig(method="freeze", freeze={"layers": 2}))
    names = trainable_names(model)
    assert not any(".embeddings." in n for n in names)
    assert not any(".layer.0." in n or ".layer.1." in n for n in names)
    assert any(".layer.2." in n for n in names) and "classifier.weight" in names
    assert len(transformer_layers(model)) == 6


def test_freeze_head_only(minilm):
    model, _ = minilm
    model = adapt(model, ModelConfig(method="freeze", freeze={"head_only": True}))
    assert trainable_names(model) == {"classifier.weight", "classifier.bias"}


@pytest.mark.parametrize("method", ["full", "freeze", "lora"])
def test_freeze_embeddings_from_the_yaml_fixes_the_word_embeddings(minilm, csv_project, method):
    cfg = load_config(
        csv_project("model:\n  base: all-MiniLM-L6-v2\n"),
        [f"model.method={method}", "model.freeze_embeddings=true"],
    )
    assert cfg.model.freeze_embeddings is True
    model, _ = minilm
    _, before = count_parameters(
        adapt(copy.deepcopy(model), cfg.model.model_copy(update={"freeze_embeddings": False}))
    )
    model = adapt(model, cfg.model)
    words = model.get_input_embeddings().weight
    total, trainable = count_parameters(model)
    assert not words.requires_grad and words.numel() == 30522 * 384
    if method == "full":  # only the word embeddings stop: positions and LayerNorm train on
        assert trainable == before - words.numel() == total - words.numel()
        assert "bert.embeddings.position_embeddings.weight" in trainable_names(model)
    else:  # freeze already fixed them, LoRA trains adapters only: nothing more to take
        assert trainable == before


def test_freeze_more_layers_than_exist_is_a_config_error(minilm):
    from verticalize.errors import ConfigError

    with pytest.raises(ConfigError, match="model.freeze.layers: 9 but the model has 6"):
        adapt(minilm[0], ModelConfig(method="freeze", freeze={"layers": 9}))


def test_lora_trains_adapters_and_head_then_merges(minilm, tmp_path):
    model, tok = minilm
    model = adapt(
        model, ModelConfig(method="lora", lora={"r": 4, "target_modules": ["query", "value"]})
    )
    names = trainable_names(model)
    total, trainable = count_parameters(model)
    assert trainable < 0.02 * total
    assert all("lora_" in n or "classifier" in n for n in names)
    assert any("classifier" in n for n in names)
    with torch.no_grad():  # make the adapters non-trivial, as training would
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    batch = tok(["the pills helped", "awful side effects"], return_tensors="pt", padding=True)
    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
    plain = merged(model)
    plain.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        after = reloaded(**batch).logits
    assert not any("lora" in k for k in reloaded.state_dict())
    torch.testing.assert_close(before, after, atol=1e-4, rtol=1e-4)


def test_bad_lora_targets_are_a_config_error(minilm):
    from verticalize.errors import ConfigError

    with pytest.raises(ConfigError, match="model.lora.target_modules"):
        adapt(minilm[0], ModelConfig(method="lora", lora={"target_modules": ["q_proj_nope"]}))


def test_unknown_base_offline_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="cannot load 'no-such-org/no-such-model'"):
        load_sequence_classifier("no-such-org/no-such-model", LABELS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="without config.json"):
        resolve_base(str(tmp_path / "empty"))


def test_layer_reduction_saves_and_reloads_a_smaller_encoder(minilm, tmp_path):
    model, tok = minilm
    model = adapt(model, ModelConfig(method="layer_reduction", layer_reduction={"keep": 3}))
    assert len(transformer_layers(model)) == 3 and model.config.num_hidden_layers == 3
    total, trainable = count_parameters(model)
    assert total == trainable and total < 20_000_000
    model.eval()
    ids = tok(["the tablets helped a lot"], return_tensors="pt")
    with torch.no_grad():
        before = model(**ids).logits
    model.save_pretrained(tmp_path)
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**ids).logits, before)
