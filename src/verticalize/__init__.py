"""verticalize: turn a general pretrained language model into a vertical domain model."""

from verticalize.api import data, evaluate, init, load, predict, run, train  # noqa: E402
from verticalize.version import __version__

__all__ = ["__version__", "data", "evaluate", "init", "load", "predict", "run", "train"]
