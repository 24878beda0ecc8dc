"""verticalize: turn a general pretrained language model into a vertical domain model."""

__version__ = "0.1.0"

from verticalize.api import data, evaluate, init, load, predict, run, train  # noqa: E402

__all__ = ["__version__", "data", "evaluate", "init", "load", "predict", "run", "train"]
