"""A record's label set as one string the data engine can carry, and back (D1, D2).

The data engine moves one label string per record (dedup compares it, the split stratifies
on it, the manifest counts it). A label set travels as its labels sorted and joined by
`SEP` ("billing|shipping"); the empty set ("no label applies") as `NO_LABELS`.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field, field_validator

from verticalize.config import Section

SEP = "|"
NO_LABELS = "(none)"


class MultilabelConfig(Section):
    """The `multilabel:` section of verticalize.yaml."""

    delimiter: str = Field(
        ",",
        min_length=1,
        description="Splits a label field given as one string ('billing, shipping'); a list "
        "field (JSON, Parquet, Label Studio multi-choice, Doccano) needs none.",
    )
    from_spans: bool = Field(
        False,
        description="The labels are the entity types of the record's spans (CoNLL, Doccano or "
        "Label Studio span annotations): 'which kinds of entity does this text mention'.",
    )
    allow_empty: bool = Field(
        True,
        description="An empty label field ('' or []) means no label applies, and the record is "
        "kept; false = it is quarantined as missing_label. A missing field is always missing.",
    )
    tune_thresholds: bool = Field(
        True,
        description="Tune each label's decision threshold on the validation split (max F1 on "
        "a 0.05 grid); saved with the model (thresholds.json), so predict and serve use them.",
    )
    threshold: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="The decision threshold when not tuned, and for labels with fewer than 5 "
        "examples in the validation split.",
    )

    @field_validator("delimiter")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if value.strip() == "":
            raise ValueError("a blank delimiter would split every label on its spaces")
        return value


def join_labels(labels: Iterable[str]) -> str:
    """The canonical string of a label set."""
    return SEP.join(sorted(set(labels))) or NO_LABELS


def split_labels(value: str | None) -> list[str]:
    """The labels of a canonical string (sorted; [] for the empty set)."""
    if value in (None, "", NO_LABELS):
        return []
    return value.split(SEP)


def parse_label(
    fields: dict, src, data, section: MultilabelConfig | None = None
) -> tuple[str | None, str | None]:
    """(canonical label string, None) or (None, quarantine reason) for one row.

    The row's label is a list, a string split on `delimiter`, or (from_spans) the types of its
    spans; labels are stripped, deduplicated and checked against data.labels."""
    section = section or MultilabelConfig()
    if src.label_value is not None:
        raw = src.label_value
    elif section.from_spans:
        spans = fields.get(src.spans or "spans")  # None (no field): missing; []: no entity
        raw = None if spans is None else [s[2] for s in spans if isinstance(s, list | tuple)]
    else:
        raw = fields.get(src.label)
    if raw is None:
        return None, "missing_label"
    if isinstance(raw, str):
        raw = raw.split(section.delimiter) if raw.strip() else []
    elif not isinstance(raw, list | tuple):
        raw = [raw]
    labels = {str(x).strip() for x in raw if x is not None and str(x).strip()}
    if not labels and not section.allow_empty:
        return None, "missing_label"
    if any(SEP in lab or lab == NO_LABELS for lab in labels):
        return None, "label_not_in_set"  # the separator or the empty-set mark is no label
    if data.labels is not None and not labels <= set(data.labels):
        return None, "label_not_in_set"
    return join_labels(labels), None


def labels_of(label_strings: list, entity_types: list) -> list[str]:
    """The run's label list, sorted: data.labels when given (the engine passes them in), else
    every label of the kept records (it passes their label strings)."""
    found = {lab for value in label_strings for lab in split_labels(str(value))}
    return sorted(found)
