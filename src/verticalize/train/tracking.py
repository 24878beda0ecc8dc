"""MLflow experiment tracking (T5). PLACEHOLDER: helper B replaces this module."""

from __future__ import annotations


def open_tracker(cfg, folder):
    """The MLflow tracker of this run's training, or None (train.mlflow off / not rank 0)."""
    return None
