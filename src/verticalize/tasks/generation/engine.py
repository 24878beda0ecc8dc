"""The generation engine behind the OpenAI-compatible routes: prompts through the tokenizer's
own chat template, left-padded batches of requests that share sampling settings, streaming
through a transformers streamer, stop strings, and token counts for `usage`."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

import torch

from verticalize.serve.engines import Engine, encoder_of
from verticalize.serve.generation import (
    Cancelled,
    GenRequest,
    GenResult,
    PromptError,
    Sampling,
    cut_at_stop,
)


class GenerationEngine(Engine):
    task = "generation"
    kinds = ("generate", "stream", "embed")

    def __init__(self, folder: Path, version: str | None = None):
        super().__init__(folder, version)
        from verticalize.models.load import load_causal_lm
        from verticalize.tasks.generation.lm import stop_token_ids

        self.model, tokenizer = load_causal_lm(str(folder))
        self.model.eval()
        limit = getattr(self.model.config, "max_position_embeddings", None)
        self._set_tokenizer(tokenizer, limit)
        self.chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.stops = stop_token_ids(tokenizer) if self.chat_template else [tokenizer.eos_token_id]
        defaults = self.model.generation_config
        self.default_sampling = Sampling(
            float(defaults.temperature or 1.0) if defaults.do_sample else 0.0,
            float(defaults.top_p or 1.0) if defaults.do_sample else 1.0,
            None,
        )

    # ------------------------------------------------------------ prompts (event loop)

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        """Token ids of the conversation rendered by the model's chat template, ending with
        the assistant's generation prompt."""
        if not self.chat_template:
            raise PromptError(
                f"model {self.version} has no chat template, so /v1/chat/completions cannot "
                "render messages. Fix: use /v1/completions with a plain prompt."
            )
        try:
            text = self.counter.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except Exception as e:  # jinja raises for roles or orders the template forbids
            raise PromptError(f"the model's chat template rejected these messages: {e}") from None
        return self.counter(text, add_special_tokens=False)["input_ids"]

    def completion_prompt(self, prompt: str) -> list[int]:
        """Token ids of a plain prompt; an empty one starts from the beginning-of-text token."""
        ids = self.counter(prompt, add_special_tokens=True)["input_ids"]
        start = self.tokenizer.bos_token_id
        return ids or [start if start is not None else self.tokenizer.eos_token_id]

    def sampling(self, temperature: float | None, top_p: float | None, seed: int | None):
        """Request settings over the model's generation_config defaults."""
        t = self.default_sampling.temperature if temperature is None else float(temperature)
        t = t if t >= 1e-3 else 0.0  # logits / 1e-300 overflow: so small a temperature is greedy
        p = self.default_sampling.top_p if top_p is None else float(top_p)
        return Sampling(t, p if t > 0 else 1.0, seed if t > 0 else None)

    # ------------------------------------------------------------ worker thread

    def _config(self, sampling: Sampling, max_new_tokens: int):
        from transformers import GenerationConfig

        sample = sampling.temperature > 0
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=sampling.temperature if sample else None,
            top_p=sampling.top_p if sample else None,
            top_k=None,
            eos_token_id=self.stops,
            pad_token_id=self.tokenizer.pad_token_id,
        )

    @torch.inference_mode()
    def _generate(self, sampling: Sampling, reqs: list[GenRequest]) -> list[GenResult]:
        width = max(len(r.prompt_ids) for r in reqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(reqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(reqs), width), dtype=torch.long)
        for row, r in enumerate(reqs):  # left padding: every row ends where generation starts
            ids[row, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            mask[row, width - len(r.prompt_ids) :] = 1
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        streamer = reqs[0].streamer if len(reqs) == 1 else None
        criteria = [Cancelled(reqs[0].cancelled)] if streamer is not None else None
        try:
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                generation_config=self._config(sampling, max(r.max_tokens for r in reqs)),
                streamer=streamer,
                stopping_criteria=criteria,
            )[:, width:]
        finally:
            if streamer is not None:  # the reader must learn the stream ended, even on error
                streamer.end()
        return [self._result(r, out[row].tolist()) for row, r in enumerate(reqs)]

    def _result(self, req: GenRequest, tokens: list[int]) -> GenResult:
        tokens = tokens[: req.max_tokens]
        cut = next((j for j, t in enumerate(tokens) if t in self.stops), None)
        kept = tokens if cut is None else tokens[:cut]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        text, stopped = cut_at_stop(text, req.stop)
        reason = "stop" if cut is not None or stopped or len(tokens) < req.max_tokens else "length"
        used = len(tokens) if cut is None else cut + 1
        return GenResult(text, reason, len(req.prompt_ids), used)

    def _run_generate(self, key: Hashable, reqs: list[GenRequest]) -> list[GenResult]:
        return self._generate(key[1], reqs)

    def _run_stream(self, key: Hashable, reqs: list[GenRequest]) -> list[GenResult]:
        return self._generate(key[1], reqs)

    def _embed_model(self) -> torch.nn.Module:
        return encoder_of(self.model)
