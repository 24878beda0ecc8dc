"""Training-set augmentation: word edits (EDA) and back-translation (D8).

Each new record copies a train record (label, source, line, group) with `augmented: True`,
`origin` and `op`, so a group-aware split keeps it beside its origin. Protected domain terms
are never deleted, replaced or split, and a back-translation that loses one is dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import unicodedata
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from verticalize.config import AugmentConfig, BackTranslationConfig
from verticalize.data.segment import Segmenter, TermMatcher, read_word_lines
from verticalize.errors import ConfigError, DataError

_THESAURUS_SEP = re.compile(r"[\s,，、;；]+")
_CLOSING = set(",.;:!?)]}%")
_OPENING = set("([{$#")
_LATIN_WORD = re.compile(r"[A-Za-z]+")


@dataclass
class AugmentResult:
    records: list[dict]  # the new records only, in the order of their origins
    made: Counter = field(default_factory=Counter)  # new records per op
    failed: Counter = field(default_factory=Counter)  # copies not made, per reason


def load_thesaurus(paths: Iterable[Path]) -> dict[str, list[str]]:
    """{word: synonyms} from files with one synonym group a line ("word syn1 syn2", space or
    comma separated). Every word of a group is a synonym of the others. A leading 同义词词林
    code ("Aa01A01=") is dropped; groups coded "#" (related) or "@" (alone) are skipped."""
    synonyms: dict[str, list[str]] = {}
    for path in paths:
        for line in read_word_lines(path, "thesaurus"):
            if line.startswith("#"):
                continue
            words = [w for w in _THESAURUS_SEP.split(line) if w]
            if len(words[0]) > 1 and words[0][-1] in "=#@":
                if words.pop(0)[-1] != "=":
                    continue
            group = list(dict.fromkeys(words))
            for word in group:
                known = synonyms.setdefault(word, [])
                known += [w for w in group if w != word and w not in known]
    return {w: syns for w, syns in synonyms.items() if syns}


@dataclass
class _Word:
    text: str
    pos: int | None  # index among the original words; None for an inserted word
    protected: bool


class _Text:
    """A text as words plus the whitespace that followed each, so edits rejoin naturally."""

    def __init__(self, text: str, segmenter: Segmenter, matcher: TermMatcher) -> None:
        spans = matcher.spans(text)
        self.terms = {text[a:b] for a, b in spans}  # protected terms a rewrite must keep
        pieces: list[tuple[str, int | None, bool]] = []  # (text, last span covered, protected)
        j = pos = 0
        for tok in segmenter.tokens(text):
            start, end = pos, pos + len(tok)
            pos = end
            while j < len(spans) and spans[j][1] <= start:
                j += 1
            if j < len(spans) and spans[j][0] < end:
                last = j
                while last + 1 < len(spans) and spans[last + 1][0] < end:
                    last += 1
                if pieces and pieces[-1][1] == j:  # the same term, split by the segmenter
                    pieces[-1] = (pieces[-1][0] + tok, last, True)
                else:
                    pieces.append((tok, last, True))
            elif tok in segmenter.terms:
                self.terms.add(tok)
                pieces.append((tok, None, True))
            else:
                pieces.append((tok, None, False))
        self.words: list[_Word] = []
        self.gaps: list[str] = []  # gaps[i]: the whitespace after original word i
        for piece, _, protected in pieces:
            if not protected and piece.isspace():
                if self.gaps:
                    self.gaps[-1] += piece
                continue
            self.words.append(_Word(piece, len(self.words), protected))
            self.gaps.append("")

    def join(self, words: list[_Word]) -> str:
        out = []
        for prev, word in zip([None, *words], words, strict=False):
            if prev is not None:
                adjacent = prev.pos is not None and word.pos == prev.pos + 1
                out.append(self.gaps[prev.pos] if adjacent else _gap(prev.text, word.text))
            out.append(word.text)
        return "".join(out).strip()


def _gap(left: str, right: str) -> str:
    """The separator between two words that were not neighbours in the original text."""
    a, b = left[-1], right[0]
    if unicodedata.east_asian_width(a) in "WF" or unicodedata.east_asian_width(b) in "WF":
        return ""  # Chinese is written without spaces
    return "" if b in _CLOSING or a in _OPENING else " "


def _editable(word: _Word) -> bool:
    return not word.protected and any(ch.isalnum() for ch in word.text)


def _synonyms(word: str, thesaurus: dict[str, list[str]]) -> list[str]:
    return [s for s in thesaurus.get(word) or thesaurus.get(word.casefold(), []) if s != word]


Op = Callable[[list[_Word], random.Random, int, dict[str, list[str]]], list[_Word] | None]


def _replace_synonyms(words, rng, n, thesaurus):
    chosen = [i for i, w in enumerate(words) if _editable(w) and _synonyms(w.text, thesaurus)]
    if not chosen:
        return None
    for i in rng.sample(chosen, min(n, len(chosen))):
        words[i] = _Word(rng.choice(_synonyms(words[i].text, thesaurus)), words[i].pos, False)
    return words


def _insert_synonyms(words, rng, n, thesaurus):
    sources = [w.text for w in words if _editable(w) and _synonyms(w.text, thesaurus)]
    if not sources:
        return None
    for _ in range(n):
        synonym = rng.choice(_synonyms(rng.choice(sources), thesaurus))
        end = len(words) - (not any(c.isalnum() for c in words[-1].text))  # before a final 。
        words.insert(rng.randint(0, end), _Word(synonym, None, False))
    return words


def _delete_words(words, rng, n, thesaurus):
    editable = [i for i, w in enumerate(words) if _editable(w)]
    if len(editable) < 2:  # never delete the last word that carries meaning
        return None
    gone = set(rng.sample(editable, min(n, len(editable) - 1)))
    return [w for i, w in enumerate(words) if i not in gone]


def _swap_words(words, rng, n, thesaurus):
    editable = [i for i, w in enumerate(words) if _editable(w)]
    if len(editable) < 2:
        return None
    for _ in range(n):
        i, j = rng.sample(editable, 2)
        words[i], words[j] = words[j], words[i]
    return words


WORD_OPS: dict[str, Op] = {
    "synonym": _replace_synonyms,
    "insert": _insert_synonyms,
    "delete": _delete_words,
    "swap": _swap_words,
}


class _Skip(Exception):
    """One record cannot be back-translated; it is counted, and the run goes on."""


def source_language(text: str) -> str:
    """Return "Chinese" when Han characters outnumber Latin-script words, else "English"."""
    han = sum("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in text)
    return "Chinese" if han > len(_LATIN_WORD.findall(text)) else "English"


class BackTranslator:
    """Round trip through a pivot language on an OpenAI-compatible chat endpoint."""

    def __init__(self, cfg: BackTranslationConfig) -> None:
        self.cfg = cfg
        self.endpoint = cfg.url.rstrip("/") + "/chat/completions"
        self.headers = {"Content-Type": "application/json"}
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise ConfigError(
                    f"augment.back_translation.api_key_env names ${cfg.api_key_env}, which is "
                    "not set; export it or remove api_key_env"
                )
            self.headers["Authorization"] = f"Bearer {key}"

    def round_trip(self, text: str) -> str:
        """`text` translated into the pivot language and back; DataError when the endpoint is
        unusable, _Skip when only this text failed."""
        source = source_language(text)
        if source.casefold() == self.cfg.pivot.casefold():
            raise _Skip("back_translation_pivot_is_source_language")
        return self.translate(self.translate(text, self.cfg.pivot), source)

    def translate(self, text: str, language: str) -> str:
        body = {
            "model": self.cfg.model,
            "messages": [
                {
                    "role": "system",
                    "content": "You are a translator. Reply with the translation only.",
                },
                {"role": "user", "content": f"Translate into {language}:\n{text}"},
            ],
            "temperature": 0,
        }
        request = urllib.request.Request(
            self.endpoint, json.dumps(body).encode("utf-8"), self.headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.cfg.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403, 404):
                raise DataError(
                    f"back-translation endpoint {self.endpoint} answered HTTP {exc.code}; check "
                    "augment.back_translation.url (the base URL, e.g. http://127.0.0.1:8000/v1) "
                    "and api_key_env"
                ) from None
            raise _Skip(f"back_translation_http_{exc.code}") from None
        except TimeoutError:
            raise _Skip("back_translation_timeout") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise _Skip("back_translation_timeout") from None
            raise DataError(
                f"back-translation endpoint {self.endpoint} is unreachable ({exc.reason}); start "
                "the server or fix augment.back_translation.url"
            ) from None
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, LookupError, TypeError):
            raise DataError(
                f"back-translation endpoint {self.endpoint} did not answer in the OpenAI chat "
                f"format (choices[0].message.content): {raw[:200]!r}; point "
                "augment.back_translation.url at an OpenAI-compatible /v1 base URL"
            ) from None
        if not isinstance(content, str) or not content.strip():
            raise _Skip("back_translation_empty")
        return content.strip()


def _order_key(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()


def augment_records(
    records: list[dict],
    cfg: AugmentConfig,
    seed: int,
    protected: set[str],
    segmenter: Segmenter | None,
    thesaurus: dict[str, list[str]],
) -> AugmentResult:
    """New records only: `cfg.copies` copies of a seeded `cfg.share` of `records`, each made
    by the first of `cfg.ops`, in a seeded order, that yields a text not seen yet for that
    record. The same inputs and seed give the same records. Records carrying NER spans and
    records already augmented get no copies. `protected` terms and the segmenter's dictionary
    terms are never deleted, replaced or split. Raises DataError when the back-translation
    endpoint is unreachable or not OpenAI-compatible."""
    maker = _CopyMaker(cfg, thesaurus, segmenter or Segmenter(), TermMatcher(protected))
    result = AugmentResult([])
    candidates = [r for r in records if not r.get("augmented")]
    n_chosen = max(1, round(cfg.share * len(candidates))) if candidates else 0
    by_order = sorted(candidates, key=lambda r: _order_key(seed, r["id"]))
    chosen = {r["id"] for r in by_order[:n_chosen]}
    for record in candidates:
        if record["id"] not in chosen:
            continue
        if record.get("spans"):
            result.failed["ner_spans"] += cfg.copies  # an edit would move the entity offsets
            continue
        rng = random.Random(f"{seed}:{record['id']}")
        parsed = _Text(record["text"], maker.segmenter, maker.matcher)
        seen = {record["text"]}
        for k in range(1, cfg.copies + 1):
            text, op_or_reason = maker.make(record["text"], parsed, rng, seen)
            if text is None:
                result.failed[op_or_reason] += 1
                continue
            seen.add(text)
            result.made[op_or_reason] += 1
            result.records.append(_copy(record, k, text, op_or_reason))
    return result


class _CopyMaker:
    def __init__(
        self,
        cfg: AugmentConfig,
        thesaurus: dict[str, list[str]],
        segmenter: Segmenter,
        matcher: TermMatcher,
    ) -> None:
        self.cfg, self.thesaurus, self.segmenter, self.matcher = cfg, thesaurus, segmenter, matcher
        self.translator = None
        self.round_trips: dict[str, str | _Skip] = {}  # one request pair per distinct text
        if "back_translation" in cfg.ops:
            if cfg.back_translation is None:
                raise ConfigError(
                    "augment.ops lists back_translation but augment.back_translation is not "
                    "set; add its url (an OpenAI-compatible endpoint) or remove the op"
                )
            self.translator = BackTranslator(cfg.back_translation)

    def make(
        self, text: str, parsed: _Text, rng: random.Random, seen: set[str]
    ) -> tuple[str | None, str]:
        """(new text, op) from the first op in a seeded order that gives an unseen text, else
        (None, why not)."""
        reason = "no_op_changed_the_text"
        for op in rng.sample(self.cfg.ops, len(self.cfg.ops)):
            if op == "back_translation":
                new = self._round_trip(text)
                if isinstance(new, _Skip):
                    reason = str(new)
                    continue
                if not all(term in new for term in parsed.terms):
                    reason = "back_translation_lost_a_protected_term"
                    continue
            else:
                n = max(1, round(self.cfg.rate * sum(_editable(w) for w in parsed.words)))
                words = WORD_OPS[op](list(parsed.words), rng, n, self.thesaurus)
                new = parsed.join(words) if words is not None else None
            if new and new not in seen:
                return new, op
        return None, reason

    def _round_trip(self, text: str) -> str | _Skip:
        if text not in self.round_trips:
            try:
                self.round_trips[text] = self.translator.round_trip(text)
            except _Skip as skip:
                self.round_trips[text] = skip
        return self.round_trips[text]


def _copy(record: dict, k: int, text: str, op: str) -> dict:
    new = {key: value for key, value in record.items() if key != "annotations"}
    new["meta"] = dict(record.get("meta") or {})
    new |= {"id": f"{record['id']}~aug{k}", "text": text, "augmented": True}
    new |= {"origin": record["id"], "op": op}
    return new
