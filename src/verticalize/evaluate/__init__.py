"""Evaluation: metrics, baselines on the same splits, and the JSON + HTML report."""
