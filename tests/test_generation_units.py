"""Generation task units: assistant-only loss masks through the real chat template, packing
without cross-contamination, LoRA merge equality, prompt tuning trains only virtual tokens,
layer reduction, conversation layouts."""

import math

import pytest
import torch

from verticalize.config import InstructionTemplate, ModelConfig
from verticalize.data.conversations import ConversationError, from_row, from_templates
from verticalize.errors import ModelError
from verticalize.models.adapt import adapt, count_parameters, merged, reduce_layers
from verticalize.models.load import load_causal_lm, load_tokenizer, resolve_base
from verticalize.models.text_batches import bucketed_order
from verticalize.tasks.generation.lm import (
    IGNORE,
    Encoded,
    balance_rows,
    encode_conversation,
    lm_logits,
    lm_loss,
    make_lm_collate,
    pack,
    packed_row,
    padded_row,
    stop_token_ids,
    use_chat_template,
)

CONVERSATION = [
    {"role": "system", "content": "You answer about drugs."},
    {"role": "user", "content": "Which condition is this review about? It cleared my skin."},
    {"role": "assistant", "content": "Acne"},
    {"role": "user", "content": "And which drug?"},
    {"role": "assistant", "content": "Isotretinoin"},
]


@pytest.fixture(scope="module")
def smol_tokenizer():
    return load_tokenizer(resolve_base("SmolLM2-135M-Instruct"))


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(cfg).eval()


# ---------------------------------------------------------------- template masking


def test_only_assistant_tokens_are_supervised(smol_tokenizer):
    enc = encode_conversation(smol_tokenizer, CONVERSATION, max_length=512)
    supervised = [t for t in enc.labels if t != IGNORE]
    decoded = smol_tokenizer.decode(supervised)
    # both answers with their end-of-turn markers, nothing of the prompt
    assert decoded == "Acne<|im_end|>\nIsotretinoin<|im_end|>\n"
    prompt_part = smol_tokenizer.decode(
        [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab == IGNORE]
    )
    assert "Which condition" in prompt_part and "You answer about drugs." in prompt_part
    assert "Acne" not in prompt_part and "Isotretinoin" not in prompt_part
    assert len(enc.input_ids) == len(enc.labels)


def test_truncation_keeps_the_start_and_says_so(smol_tokenizer):
    enc = encode_conversation(smol_tokenizer, CONVERSATION, max_length=20)
    assert enc.truncated and len(enc.input_ids) == 20
    assert enc.n_supervised == 0  # answers were cut away: the train stage drops such records


def test_stop_tokens_include_the_end_of_turn_marker(smol_tokenizer):
    im_end = smol_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in stop_token_ids(smol_tokenizer)


def test_missing_chat_template_is_a_clear_error(smol_tokenizer, tmp_path):
    import copy

    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = None
    with pytest.raises(ModelError, match="generation.chat_template"):
        use_chat_template(tok, None, None)
    with pytest.raises(ModelError, match="neither Jinja text nor a file"):
        use_chat_template(tok, "missing.jinja", tmp_path)
    (tmp_path / "t.jinja").write_text(
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    use_chat_template(tok, "t.jinja", tmp_path)
    enc = encode_conversation(tok, CONVERSATION[1:3], max_length=128)
    assert tok.decode([t for t in enc.labels if t != IGNORE]) == "Acne</s>"


# ---------------------------------------------------------------- packing


def _seq(ids: list[int]) -> Encoded:
    return Encoded(ids, list(ids))


def test_pack_respects_the_block_and_keeps_every_sequence():
    g = torch.Generator().manual_seed(0)
    seqs = [
        _seq(torch.randint(1, 90, (int(n),), generator=g).tolist())
        for n in torch.randint(1, 60, (80,), generator=g)
    ]
    bins = pack(seqs, 64)
    assert all(sum(len(s.input_ids) for s in b) <= 64 for b in bins)
    assert sorted(id(s) for b in bins for s in b) == sorted(id(s) for s in seqs)
    # first-fit-decreasing is within 11/9 of the optimum, which needs ≥ total/64 rows
    total = sum(len(s.input_ids) for s in seqs)
    assert len(bins) <= math.ceil(total / 64) * 11 / 9 + 1


def test_packed_row_never_attends_or_predicts_across_sequences():
    model = tiny_llama()
    g = torch.Generator().manual_seed(1)
    seqs = [_seq(torch.randint(1, 90, (n,), generator=g).tolist()) for n in (7, 11, 5)]
    row = packed_row(seqs)
    assert [row["labels"][i] for i in (0, 7, 18)] == [IGNORE] * 3  # no label from the previous one
    batch = make_lm_collate(0)([row])
    assert "attention_mask" not in batch
    with torch.no_grad():  # through the training code path
        packed = lm_logits(model, batch)[0]
        alone = [model(input_ids=torch.tensor([s.input_ids])).logits[0] for s in seqs]
        naive = model(input_ids=batch["input_ids"]).logits[0]  # plain concatenation
    start = 0
    for s, ref in zip(seqs, alone, strict=True):
        n = len(s.input_ids)
        torch.testing.assert_close(packed[start : start + n], ref, atol=1e-5, rtol=1e-4)
        start += n
    # the control: without restarting positions, later sequences see earlier ones
    assert not torch.allclose(naive[7:18], alone[1], atol=1e-3)


def test_packed_batch_with_padding_matches_padded_batch_loss():
    model = tiny_llama()
    g = torch.Generator().manual_seed(2)
    seqs = [_seq(torch.randint(1, 90, (n,), generator=g).tolist()) for n in (9, 4, 13, 6)]
    packed = make_lm_collate(0)([packed_row(b) for b in pack(seqs, 20)])
    padded = make_lm_collate(0)([padded_row(s) for s in seqs])
    with torch.no_grad():
        loss_p, n_p = lm_loss(model, packed)
        loss_d, n_d = lm_loss(model, padded)
    assert n_p == n_d == sum(len(s.input_ids) - 1 for s in seqs)
    torch.testing.assert_close(loss_p, loss_d, atol=1e-5, rtol=1e-5)


def test_a_batch_of_uneven_packed_rows_is_rebalanced_with_the_same_loss():
    model = tiny_llama()
    g = torch.Generator().manual_seed(3)
    sizes = (15, 14, 13, 12, 10, 9, 8, 6, 5)
    seqs = [_seq(torch.randint(1, 90, (n,), generator=g).tolist()) for n in sizes]
    rows = [packed_row(b) for b in pack(seqs, 40)]
    assert [len(r["input_ids"]) for r in rows] == [39, 40, 13]  # first-fit-decreasing
    balanced = balance_rows(rows)
    widths = [len(r["input_ids"]) for r in balanced]
    assert len(balanced) == 3 and max(widths) < 40 and sum(widths) == sum(sizes)
    batch = make_lm_collate(0)(rows)
    assert batch["input_ids"].shape[1] == max(widths)  # the collate balances
    with torch.no_grad():
        loss_b, n_b = lm_loss(model, batch)
        alone = [lm_loss(model, make_lm_collate(0)([r])) for r in rows]  # the rows as packed
    n_u = sum(n for _, n in alone)
    loss_u = sum(loss * n for loss, n in alone) / n_u
    assert n_b == n_u == sum(n - 1 for n in sizes)
    torch.testing.assert_close(loss_b, loss_u, atol=1e-5, rtol=1e-5)
    # rows that are already even stay as they are
    even = [packed_row(seqs[:1]), packed_row(seqs[1:2])]
    assert balance_rows(even) is even


# ---------------------------------------------------------------- methods


def test_merged_lora_gives_the_adapter_models_logits():
    model, tok = load_causal_lm("SmolLM2-135M-Instruct")
    cfg = ModelConfig(
        method="lora",
        lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
    )
    peft_model = adapt(model, cfg, "CAUSAL_LM")
    torch.manual_seed(0)
    with torch.no_grad():  # LoRA B starts at zero: make the adapter actually change something
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    ids = torch.tensor([tok("The patient reported headaches after the first dose.")["input_ids"]])
    peft_model.eval()
    with torch.no_grad():
        with_adapter = peft_model(input_ids=ids).logits
        with peft_model.disable_adapter():
            without = peft_model(input_ids=ids).logits
        plain = merged(peft_model)
        after_merge = plain(input_ids=ids).logits
    assert not torch.allclose(with_adapter, without, atol=1e-3)  # the adapter matters
    assert "Peft" not in type(plain).__name__
    torch.testing.assert_close(after_merge, with_adapter, atol=2e-4, rtol=1e-4)


def test_prompt_tuning_trains_only_the_virtual_tokens():
    model, tok = load_causal_lm("SmolLM2-135M-Instruct")
    cfg = ModelConfig(method="prompt_tuning", prompt={"virtual_tokens": 8})
    model = adapt(model, cfg, "CAUSAL_LM")
    total, trainable = count_parameters(model)
    hidden = model.config.hidden_size
    assert trainable == 8 * hidden
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("prompt_encoder" in n for n in names)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    enc = encode_conversation(tok, CONVERSATION[1:3], max_length=128)
    batch = make_lm_collate(tok.pad_token_id)([padded_row(enc)])
    model.train()
    for _ in range(2):
        loss, n = lm_loss(model, batch)
        assert n == enc.n_supervised
        loss.backward()
        opt.step()
        opt.zero_grad()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(names)


def test_layer_reduction_keeps_a_working_model():
    model = tiny_llama()
    reduce_layers(model, keep=2, which="spread")
    assert len(model.model.layers) == 2 and model.config.num_hidden_layers == 2
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1]
    out = model.generate(input_ids=torch.tensor([[1, 2, 3]]), max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 7)
    with pytest.raises(Exception, match="keep"):
        reduce_layers(model, keep=5, which="first")


# ---------------------------------------------------------------- conversation layouts


def test_the_three_layouts_become_one_shape():
    alpaca = from_row(
        {
            "instruction": "Name the drug.",
            "input": "Took ibuprofen.",
            "output": "Ibuprofen",
            "system": "Be brief.",
        },
        "alpaca",
    )
    assert [m["role"] for m in alpaca] == ["system", "user", "assistant"]
    assert alpaca[1]["content"] == "Name the drug.\n\nTook ibuprofen."
    share = from_row(
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
        "sharegpt",
    )
    openai = from_row(
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ]
        },
        "messages",
    )
    assert (
        share
        == openai
        == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    )
    history = from_row({"instruction": "q2", "output": "a2", "history": [["q1", "a1"]]}, "alpaca")
    assert [m["content"] for m in history] == ["q1", "a1", "q2", "a2"]


@pytest.mark.parametrize(
    ("row", "layout", "why"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "messages", "end with an assistant"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages", "use one of"),
        ({"conversations": "hi"}, "sharegpt", "non-empty list"),
        ({"instruction": "q", "output": ""}, "alpaca", "is empty"),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": "b"},
                    {"role": "assistant", "content": "c"},
                ]
            },
            "messages",
            "alternate",
        ),
    ],
)
def test_bad_conversations_say_what_is_wrong(row, layout, why):
    with pytest.raises(ConversationError, match=why):
        from_row(row, layout)


def test_templates_fill_fields_and_truncate():
    t = [
        InstructionTemplate(
            name="condition", instruction="Which condition? {review:.5}", output="{condition}"
        )
    ]
    [(name, msgs)] = from_templates({"review": "abcdefghij", "condition": "Acne"}, t)
    assert (
        name == "condition"
        and msgs[0]["content"] == "Which condition? abcde"
        and msgs[1]["content"] == "Acne"
    )
    with pytest.raises(ConversationError, match="'condition' is empty"):
        from_templates({"review": "x", "condition": ""}, t)


def test_prefix_tuning_trains_only_the_prefix():
    model = tiny_llama()
    model.config.pad_token_id = 0
    model = adapt(
        model, ModelConfig(method="prefix_tuning", prompt={"virtual_tokens": 4}), "CAUSAL_LM"
    )
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names == ["prompt_encoder.default.embedding.weight"]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    seqs = [Encoded([5, 6, 7, 8, 9], [IGNORE, IGNORE, 7, 8, 9]), Encoded([3, 4, 5], [IGNORE, 4, 5])]
    batch = make_lm_collate(0)([padded_row(s) for s in seqs])
    loss, n = lm_loss(model, batch)
    assert n == 5 and torch.isfinite(loss)
    loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(names)


def test_bucketed_order_is_a_permutation_of_similar_lengths():
    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(5, 500, (400,), generator=g).tolist()
    order = bucketed_order(lengths, 8, torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(400))
    spread = [
        max(lengths[i] for i in order[k : k + 8]) - min(lengths[i] for i in order[k : k + 8])
        for k in range(0, 400, 8)
    ]
    random_spread = [max(lengths[k : k + 8]) - min(lengths[k : k + 8]) for k in range(0, 400, 8)]
    assert sum(spread) < sum(random_spread) / 4  # batches hold similar lengths: little padding
    assert order != bucketed_order(
        lengths, 8, torch.Generator().manual_seed(1)
    )  # reshuffled per epoch


@pytest.mark.parametrize("method", ["full", "lora"])
def test_gradient_checkpointing_gives_the_same_gradients(method):
    model = tiny_llama()
    model.config.pad_token_id = 0
    cfg = ModelConfig(method=method, lora={"target_modules": ["q_proj", "v_proj"]})
    model = adapt(model, cfg, "CAUSAL_LM")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    model.train()
    batch = make_lm_collate(0)([packed_row([_seq([5, 6, 7, 8, 9]), _seq([3, 4, 5, 6])])])

    def grads():
        torch.manual_seed(0)  # the same LoRA dropout masks
        loss, _ = lm_loss(model, batch)
        loss.backward()
        out = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        model.zero_grad()
        return out

    plain = grads()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert model.is_gradient_checkpointing
    again = grads()
    for name, g in plain.items():
        torch.testing.assert_close(again[name], g)
