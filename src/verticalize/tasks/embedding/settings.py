"""The `embedding:` section of verticalize.yaml (TaskPlugin.section)."""

from __future__ import annotations

from pydantic import Field

from verticalize.config import Config, Section, Source

# config.json of a trained model: {"pooling", "normalize", "query_prefix", "passage_prefix"}
SETTINGS_KEY = "sentence_embedding"


class EmbeddingConfig(Section):
    positive: str = Field(
        "positive",
        description="The field holding the passage that answers the record's query (the "
        "query is the source's `text` field). A row without it is quarantined.",
    )
    negative: str | None = Field(
        "negative",
        description="The field holding a hard negative: a passage that looks relevant but "
        "is not. Optional per row; null = ignore such a field.",
    )
    corpus: list[Source] = Field(
        [],
        description="Sources of extra passages (their `text` field) that only widen the "
        "corpus the test queries are ranked against; never trained on.",
    )
    query_prefix: str = Field(
        "", description='Put before every query, e.g. "query: " for e5 models.'
    )
    passage_prefix: str = Field(
        "", description='Put before every passage, e.g. "passage: " for e5 models.'
    )
    scale: float = Field(
        20.0,
        gt=0,
        description="Multiple-negatives ranking loss: cosine similarities are multiplied by "
        "this before the softmax (sentence-transformers' default, 20).",
    )


def settings_of(cfg: Config) -> EmbeddingConfig:
    """The run's embedding section (defaults for a Config built without it)."""
    found = getattr(cfg, "embedding", None)
    return found if isinstance(found, EmbeddingConfig) else EmbeddingConfig()
