"""The trained models the playground tries: which folder of a project's run holds one, and a
small per-process cache of loaded models (classification and NER predictors, generation
engines), each used by one thread at a time."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verticalize.errors import VerticalizeError
from verticalize.plugins import get_task
from verticalize.web.projects import Project, run_dir

CACHE_SIZE = 2  # loaded models kept per console process: each can take hundreds of MB


@dataclass
class Loaded:
    """A loaded model: `predict` (texts -> result dicts) or, for generation, `engine`."""

    task: str
    predict: Any = None
    engine: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # tokenizers are not shared


def project_model(project: Project) -> tuple[Path, str] | None:
    """(model folder, task) of the project's run: model/ as `verticalize predict` uses it,
    else the export's merged export/model/; None before training."""
    from verticalize.predict import model_task

    folder = run_dir(project)
    if folder is None:
        return None
    for candidate in (folder / "model", folder / "export" / "model"):
        if not candidate.is_dir():
            continue
        try:
            return candidate, model_task(candidate)
        except VerticalizeError:
            continue
    return None


def _stamp(folder: Path) -> int:
    """The newest modification time in the folder: a retrained model is loaded again."""
    times = [folder.stat().st_mtime_ns]
    times += [p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()]
    return max(times)


class ModelCache:
    """The last `size` models used, keyed by folder and its modification time."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self.models: OrderedDict[tuple[str, int], Loaded] = OrderedDict()
        self.loading = threading.Lock()  # one load at a time: two would double the memory

    def get(self, folder: Path, task: str) -> Loaded:
        """The loaded model of `folder` (blocking: call it from a worker thread)."""
        key = (str(folder.resolve()), _stamp(folder))
        with self.loading:
            if key in self.models:
                self.models.move_to_end(key)
                return self.models[key]
            for old in [k for k in self.models if k[0] == key[0]]:  # a stale version
                del self.models[old]
            loaded = _load(folder, task)
            self.models[key] = loaded
            while len(self.models) > self.size:
                self.models.popitem(last=False)
            return loaded


def chats(task: str) -> bool:
    """Whether the task's model answers as a chat: its plugin serves no /v1/<route> (an
    unknown task, e.g. a remote service's plugin not installed here, does not)."""
    try:
        return not get_task(task).routes
    except VerticalizeError:
        return False


def _load(folder: Path, task: str) -> Loaded:
    if chats(task):
        from verticalize.serve.engines import load_engine

        return Loaded(task, engine=load_engine(folder, task))
    from verticalize.predict import load_predictor

    return Loaded(task, predict=load_predictor(folder))


CACHE = ModelCache()


def predict_text(folder: Path, task: str, text: str) -> dict:
    """One prediction (blocking: load and run it in a worker thread)."""
    loaded = CACHE.get(folder, task)
    with loaded.lock:
        return loaded.predict([text])[0]
