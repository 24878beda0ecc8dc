"""Tasks: how records become model inputs, and how outputs become predictions."""
