"""Generation requests for the OpenAI-compatible routes: sampling settings, results, stop
strings. The engine that runs them is the generation task's (tasks/generation/engine.py)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch


class PromptError(ValueError):
    """The request cannot be turned into a prompt (the message says why; a 400)."""


class Sampling(NamedTuple):
    """Settings that requests in one generation batch must share (part of the batch key)."""

    temperature: float  # 0 = greedy
    top_p: float
    seed: int | None


@dataclass
class GenRequest:
    prompt_ids: list[int]
    max_tokens: int
    stop: list[str] = field(default_factory=list)
    streamer: Any = None  # set for a streaming request (batch of one)
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class GenResult:
    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """`text` up to the earliest stop string, and whether one was found."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


class StopScanner:
    """Streams text while holding back a tail that could still become a stop string."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text that is safe to send now; after a stop string, nothing more."""
        if self.stopped:
            return ""
        self.pending += piece
        text, found = cut_at_stop(self.pending, self.stops)
        if found:
            self.stopped, self.pending = True, ""
            return text
        hold = max((_overlap(self.pending, s) for s in self.stops), default=0)
        out, self.pending = (
            self.pending[: len(self.pending) - hold],
            self.pending[-hold:] if hold else "",
        )
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `stop`."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


class Cancelled:
    """A stopping criterion: true once the client went away or a stop string was seen."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)
