"""Precision, recall and throughput of near-duplicate detection (D4) on real Chinese and
English text with planted near-duplicates, with the settings a user gets when they set none.

Corpus and planting: bench/dedup_corpus.py (real zh / en documents of >= --min-chars
normalized characters, exact copies removed; a seeded 12% get an edited copy, a quarter of
those a second one; 5-20% of the units edited: characters of Chinese, words of English).
Nothing is deduplicated beforehand with the detector under test.

- recall, per language: planted copies that end in the same cluster as their original;
- precision, per language: predicted links (duplicate -> representative) that are right,
  over all links. A link is right when both documents are one planted family, or when an
  independent judge calls the pair near-duplicate: difflib's edit-based similarity of their
  unit sequences (characters / words), or the share of the shorter one's units matched in
  order in the longer (a copy cut short, or one with a paragraph added), is at least the
  similarity the least similar 1% of planted pairs reach (`judge_similarity`). So real
  near-duplicates in the corpus count as found, and merely similar documents (same topic,
  a shared template with other names and numbers) count against precision;
- docs_per_s: near-dup stage (signatures + LSH + verification + clustering), one process;
- exact_docs_per_s: sha256 of the normalized text into a dict, same corpus, same run.
--grid also sweeps n-gram size and threshold for each script (signatures once per n).
Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dedup_corpus import load_base, plant  # noqa: E402

from verticalize.config.data import NearDedupConfig  # noqa: E402
from verticalize.data.near_dedup import (  # noqa: E402
    NearDupIndex,
    Shingling,
    normalized_view,
    shingling,
    signature,
    units,
)

JUDGE_QUANTILE = 0.01


def similarity(a: str, b: str) -> float:
    """Edit-based similarity of the two texts' unit sequences (difflib ratio, no junk)."""
    return difflib.SequenceMatcher(None, units(a), units(b), autojunk=False).ratio()


def containment(a: str, b: str) -> float:
    """Share of the shorter text's units that difflib matches, in order, in the longer."""
    ua, ub = units(a), units(b)
    short, long_ = (ua, ub) if len(ua) <= len(ub) else (ub, ua)
    matcher = difflib.SequenceMatcher(None, short, long_, autojunk=False)
    return sum(m.size for m in matcher.get_matching_blocks()) / max(1, len(short))


def judge_level(docs: list[dict]) -> dict[str, float]:
    """Per language: the similarity the least similar 1% of planted copies still reach."""
    text = {d["id"]: d["text"] for d in docs}
    sims: dict[str, list[float]] = {"zh": [], "en": []}
    for d in docs:
        if "edit" in d:
            sims[d["lang"]].append(similarity(d["text"], text[d["family"]]))
    return {lang: round(float(np.quantile(v, JUDGE_QUANTILE)), 4) for lang, v in sims.items()}


class Judge:
    def __init__(self, docs: list[dict]) -> None:
        self.doc = {d["id"]: d for d in docs}
        self.level = judge_level(docs)
        self._cache: dict[tuple[str, str], bool] = {}

    def right(self, dup: str, rep: str) -> bool:
        a, b = self.doc[dup], self.doc[rep]
        if a["family"] == b["family"]:
            return True
        pair = (dup, rep)
        if pair not in self._cache:
            level = self.level[a["lang"]]
            self._cache[pair] = (
                max(similarity(a["text"], b["text"]), containment(a["text"], b["text"])) >= level
            )
        return self._cache[pair]


def score(docs: list[dict], links: dict[str, str], judge: Judge) -> dict:
    lang = {d["id"]: d["lang"] for d in docs}
    cluster = {d["id"]: links.get(d["id"], d["id"]) for d in docs}
    right: Counter = Counter()
    n_links: Counter = Counter()
    wrong: dict[str, list] = {"zh": [], "en": []}
    for dup, rep in links.items():
        n_links[lang[dup]] += 1
        ok = judge.right(dup, rep)
        right[lang[dup]] += ok
        if not ok and len(wrong[lang[dup]]) < 5:
            a, b = judge.doc[dup]["text"], judge.doc[rep]["text"]
            wrong[lang[dup]].append([round(similarity(a, b), 3), a[:80], b[:80]])
    found: Counter = Counter()
    total: Counter = Counter()
    for d in docs:
        if "edit" in d:
            hit = cluster[d["id"]] == cluster[d["family"]]
            band = f"edit_{int(d['edit'] * 20) * 5:02d}-{int(d['edit'] * 20) * 5 + 5:02d}%"
            for group in (d["lang"], f"{d['lang']}_{band}"):
                total[group] += 1
                found[group] += hit
    out = {}
    for g in ("zh", "en"):
        out[g] = {
            "precision": round(right[g] / n_links[g], 4) if n_links[g] else 1.0,
            "recall": round(found[g] / total[g], 4),
            "links": n_links[g],
            "wrong_links": n_links[g] - right[g],
            "wrong_link_examples": wrong[g],  # [judge similarity, duplicate, representative]
            "recall_by_edit": {
                k.split("_", 1)[1]: round(found[k] / total[k], 4)
                for k in sorted(total)
                if k.startswith(f"{g}_edit")
            },
        }
    return out


def cluster(docs: list[dict], sigs: list, settings: dict[str, Shingling], num_perm: int):
    index = NearDupIndex(settings, num_perm)
    for d, sig in zip(docs, sigs, strict=True):
        index.add(d["id"], sig=sig)
    return index.duplicates()


def grid(docs: list[dict], judge: Judge, num_perm: int, vocab: float | None) -> list[dict]:
    """Every (script, ngram, threshold) with its precision / recall for that script, with
    the run's vocabulary threshold."""
    rows = []
    for n in (1, 2, 3, 4):
        settings = shingling(ngram=n)
        sigs = [signature(d["text"], settings, num_perm) for d in docs]
        for t in (0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6):
            links = cluster(docs, sigs, shingling(t, n, vocab), num_perm)
            result = score(docs, links, judge)
            for lang, script in (("zh", "cjk"), ("en", "latin")):
                r = result[lang]
                rows.append(
                    {"script": script, "ngram": n, "threshold": t}
                    | {k: r[k] for k in ("precision", "recall", "wrong_links")}
                )
                print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def exact_dedup_rate(docs: list[dict]) -> float:
    start = time.perf_counter()
    first: dict[str, str] = {}
    for d in docs:
        digest = hashlib.sha256(normalized_view(d["text"]).encode("utf-8")).hexdigest()
        first.setdefault(digest, d["id"])
    return len(docs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n-docs", type=int, default=20000, help="base documents (before planting)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, help="default: the config's (per script)")
    parser.add_argument("--ngram", type=int, help="default: the config's (per script)")
    parser.add_argument(
        "--vocab-threshold", type=float, help="default: the config's (per script); 0 = off"
    )
    parser.add_argument("--num-perm", type=int, help="default: the config's")
    parser.add_argument("--min-chars", type=int, default=50)
    parser.add_argument("--grid", action="store_true", help="also sweep ngram x threshold")
    args = parser.parse_args()
    near = NearDedupConfig()  # what `dedup: {near: {enabled: true}}` gets
    threshold = args.threshold if args.threshold is not None else near.threshold
    vocab = args.vocab_threshold if args.vocab_threshold is not None else near.vocab_threshold
    settings = shingling(threshold, args.ngram or near.ngram, vocab)
    num_perm = args.num_perm or near.num_perm
    rng = random.Random(args.seed)

    pool, counts = load_base(args.min_chars)
    if len(pool) < args.n_docs:
        raise SystemExit(f"only {len(pool)} documents >= {args.min_chars} chars available")
    docs, n_planted = plant(rng.sample(pool, args.n_docs), rng)
    judge = Judge(docs)

    exact_rate = exact_dedup_rate(docs)
    start = time.perf_counter()
    sigs = [signature(d["text"], settings, num_perm) for d in docs]
    links = cluster(docs, sigs, settings, num_perm)
    near_rate = len(docs) / (time.perf_counter() - start)
    result = score(docs, links, judge)
    targets = all(r["precision"] >= 0.99 and r["recall"] >= 0.90 for r in result.values())
    out = {
        **result,
        "meets_targets": targets,
        "settings": {s: vars(x) for s, x in settings.items()} | {"num_perm": num_perm},
        "judge_similarity": judge.level,
        "docs_per_s": round(near_rate, 1),
        "exact_docs_per_s": round(exact_rate, 1),
        "speed_ratio_exact_vs_near": round(exact_rate / near_rate, 1),
        "n_docs": len(docs),
        "n_planted": n_planted,
        "n_by_lang": dict(Counter(d["lang"] for d in docs)),
        "min_chars": args.min_chars,
        "seed": args.seed,
        "pool_by_source": counts,
    }
    if args.grid:
        out["grid"] = grid(docs, judge, num_perm, vocab)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
