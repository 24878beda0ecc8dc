"""Evaluate a generation run (E1): held-out perplexity, and BLEU / ROUGE / exact match of
greedy answers, for the fine-tuned model and the base model it started from, plus a table
of sample generations before vs after."""

from __future__ import annotations

import time

from verticalize.config import Config, yaml_dir
from verticalize.console import console
from verticalize.evaluate.text_metrics import generation_metrics, perplexity
from verticalize.models.load import load_causal_lm
from verticalize.tasks.generation.lm import (
    encode_conversation,
    encode_text,
    generate,
    negative_log_likelihood,
    padded_row,
    prompt_ids,
    use_chat_template,
)

SUMMARY = ["perplexity", "rouge_l", "rouge_1", "rouge_2", "bleu", "exact_match"]


def score_model(model, tokenizer, test: list[dict], cfg: Config) -> tuple[dict, list[str]]:
    """Metrics of one model on the test split, and its answers to the generated subset."""
    g = cfg.generation
    chats = [r for r in test if r.get("messages")]
    texts = [r for r in test if not r.get("messages")]
    answer_rows = [
        padded_row(encode_conversation(tokenizer, r["messages"], cfg.model.max_length))
        for r in chats
    ]
    text_rows = [
        padded_row(e) for r in texts for e in encode_text(tokenizer, r["text"], g.block_size)
    ]
    nll_a, n_a = negative_log_likelihood(model, answer_rows, tokenizer.pad_token_id)
    nll_t, n_t = negative_log_likelihood(model, text_rows, tokenizer.pad_token_id)
    m: dict = {"perplexity": perplexity(nll_a + nll_t, n_a + n_t)}
    if answer_rows:
        m["perplexity_answers"] = perplexity(nll_a, n_a)
    if text_rows:
        m["perplexity_text"] = perplexity(nll_t, n_t)
    m["loss"] = (nll_a + nll_t) / max(n_a + n_t, 1)
    m["tokens_scored"] = n_a + n_t
    answers: list[str] = []
    subset = chats[: g.eval_generations]
    if subset:
        tick = time.perf_counter()
        prompts = [prompt_ids(tokenizer, r["messages"]) for r in subset]
        answers = generate(model, tokenizer, prompts, g.max_new_tokens, batch_size=16)
        m["latency_ms_per_example"] = 1000 * (time.perf_counter() - tick) / len(subset)
        refs = [r["messages"][-1]["content"] for r in subset]
        m |= generation_metrics(answers, refs)
    return m, answers


def evaluate_generation(cfg: Config, model_dir, base: str, test: list[dict]) -> dict:
    """{"model": …, "base_model": …, "samples": […], "verdict": …} for report.json."""
    tuned, tok = load_causal_lm(str(model_dir))  # carries the chat template it trained with
    console.print(f"eval: scoring the fine-tuned model on {len(test)} test records")
    model_m, model_answers = score_model(tuned, tok, test, cfg)
    del tuned
    base_model, base_tok = load_causal_lm(base)
    use_chat_template(base_tok, cfg.generation.chat_template, yaml_dir(cfg))
    console.print(f"eval: scoring the base model {base}")
    base_m, base_answers = score_model(base_model, base_tok, test, cfg)
    chats = [r for r in test if r.get("messages")]
    samples = [
        {
            "id": r["id"],
            "prompt": r["messages"][-2]["content"],
            "reference": r["messages"][-1]["content"],
            "base": base_answers[i],
            "model": model_answers[i],
        }
        for i, r in enumerate(chats[: min(cfg.generation.report_samples, len(model_answers))])
    ]
    return {
        "model": {"path": str(model_dir), "metrics": model_m},
        "base_model": {"name": base, "metrics": base_m},
        "samples": samples,
        "verdict": verdict(model_m, base_m),
    }


def verdict(model_m: dict, base_m: dict) -> str:
    """One honest sentence: perplexity and ROUGE-L, fine-tuned vs base, better or not."""
    parts = []
    for key, lower in (("perplexity", True), ("rouge_l", False)):
        if key not in model_m or key not in base_m:
            continue
        a, b = model_m[key], base_m[key]
        better = a < b if lower else a > b
        word = "better than" if better else ("equal to" if a == b else "NOT better than")
        parts.append(f"{key} {a:.4f} vs {b:.4f} for the base model: {word} the base")
    return "The fine-tuned model on the test split — " + "; ".join(parts) + "."
