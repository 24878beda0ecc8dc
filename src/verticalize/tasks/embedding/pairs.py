"""Retrieval records and the corpus they are ranked against.

A kept record is a query (`text`, cleaned like any text) whose label is the key of its
positive passage; the passages travel, as read, in the record's `meta` under the fields the
`embedding:` section names (`positive`, optionally `negative`). So the data stage's exact
dedup drops a repeated (query, passage) pair and quarantines one query given two different
passages (`conflicting_labels`), and `split_group` keeps every query of one passage in one
split. The corpus is every distinct passage: positives of all splits, hard negatives, and the
section's extra `corpus` sources.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from verticalize.config import Config, Source
from verticalize.data.dedup import text_key
from verticalize.errors import ConfigError, DataError
from verticalize.tasks.embedding.settings import EmbeddingConfig, settings_of


def passage_key(text: str) -> str:
    """The identity of a passage: equal for texts equal up to case and whitespace (the data
    stage's notion of an exact copy)."""
    return "p" + text_key(text)[:16]


def _passage(value) -> tuple[str | None, str | None]:
    """(text or None when absent, None) or (None, "not_text")."""
    if isinstance(value, list | dict):
        return None, "not_text"
    if value is None or str(value).strip() == "":
        return None, None
    return str(value), None


def parse_pair(
    row: dict, src, data_cfg, section: EmbeddingConfig | None = None
) -> tuple[str | None, str | None]:
    """(key of the row's positive passage, None) or (None, quarantine reason):
    missing_positive, positive_not_text, negative_not_text, negative_is_positive."""
    s = section or EmbeddingConfig()
    positive, problem = _passage(row.get(s.positive))
    if problem:
        return None, f"positive_{problem}"
    if positive is None:
        return None, "missing_positive"
    key = passage_key(positive)
    if s.negative:
        negative, problem = _passage(row.get(s.negative))
        if problem:
            return None, f"negative_{problem}"
        if negative is not None and passage_key(negative) == key:
            return None, "negative_is_positive"
    return key, None


@dataclass(frozen=True)
class Pair:
    """One training or test example: a query, its passage and maybe a hard negative."""

    query: str
    positive: str
    negative: str | None = None


def pair_of(record: dict, s: EmbeddingConfig) -> Pair:
    meta = record.get("meta") or {}
    negative = _passage(meta.get(s.negative))[0] if s.negative else None
    return Pair(record["text"], str(meta[s.positive]), negative)


def pairs_of(records: list[dict], s: EmbeddingConfig) -> list[Pair]:
    return [pair_of(r, s) for r in records]


@dataclass
class Corpus:
    """Distinct passages in a fixed order; `counts` says where they came from."""

    keys: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    index: dict[str, int] = field(default_factory=dict)

    def add(self, text: str, kind: str) -> None:
        key = passage_key(text)
        if key in self.index:
            return
        self.index[key] = len(self.keys)
        self.keys.append(key)
        self.texts.append(text)
        self.counts[kind] += 1

    def __len__(self) -> int:
        return len(self.keys)


def passages_of(pairs: list[Pair], corpus: Corpus | None = None) -> Corpus:
    """The positives, then the hard negatives, of `pairs` (added to `corpus`, if given)."""
    corpus = corpus if corpus is not None else Corpus()
    for p in pairs:
        corpus.add(p.positive, "positives")
    for p in pairs:
        if p.negative is not None:
            corpus.add(p.negative, "hard_negatives")
    return corpus


def resolved_corpus_sources(cfg: Config) -> list[tuple[int, Source, object]]:
    """(index, source, resolved source) of each `embedding.corpus` entry; a ConfigError
    naming the entry when its file is missing."""
    from verticalize.assets import AssetMissing
    from verticalize.source_paths import resolve

    base = cfg.source_file.parent if cfg.source_file else Path.cwd()
    out = []
    for i, src in enumerate(settings_of(cfg).corpus):
        where = f"{cfg.source_file}: embedding.corpus[{i}].path: {src.path!r}"
        try:
            res = resolve(src.path, src.format, base)
        except (AssetMissing, ConfigError) as e:
            raise ConfigError(f"{where}: {e}") from None
        if not res.file.exists():
            raise ConfigError(
                f"{where}: not found (looked for {res.file}). Fix: correct the path; relative "
                f"paths start at the YAML's folder {base}."
            )
        out.append((i, src, res))
    return out


def corpus_digests(cfg: Config) -> list[str]:
    """Content hashes of the extra corpus files (a change re-runs data, hence eval)."""
    from verticalize.data.sources import file_digest

    return [file_digest(res) for _, _, res in resolved_corpus_sources(cfg)]


def add_extra_passages(cfg: Config, corpus: Corpus) -> dict:
    """Read every `embedding.corpus` source into `corpus`; returns what was read and set
    aside (rows that could not be read, or without text), per source."""
    from verticalize.data.readers import read_rows

    read: dict = {}
    for i, src, res in resolved_corpus_sources(cfg):
        tally = Counter()
        for row in read_rows(res, src):
            text = (row.fields or {}).get(src.text)
            if row.fields is None:
                tally[row.error.partition(":")[0]] += 1
            elif not isinstance(text, str) or not text.strip():
                tally["missing_text"] += 1
            else:
                tally["read"] += 1
                corpus.add(text, "extra")
        read[f"embedding.corpus[{i}] {src.path}"] = dict(tally)
    if read and not sum(t.get("read", 0) for t in read.values()):
        raise DataError(
            f"{cfg.source_file}: embedding.corpus gave no passage ({read}). Fix: point its "
            "`text` at the field holding the passages."
        )
    return read
