"""Word segmentation that keeps domain terms whole (D6).

A `Segmenter` owns its own jieba tokenizer, so loading a medical dictionary never changes
how the rest of the process (or another project) segments text. Terms jieba can hold (Han,
Latin letters, digits) join its dictionary with a frequency that beats any split of the term;
terms it cannot (spaces, brackets, full-width punctuation: "短肢[海豹肢]NOS") are matched
first and handed through whole.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import jieba

from verticalize.errors import DataError

# a term's frequency is this many times what it needs to beat its own pieces, so that a
# neighbouring word rarely wins its edge characters in context
TERM_FREQ_MARGIN = 100

# jieba's dictionary line: "term", "term freq", "term freq tag" (tag: a part-of-speech code)
_DICT_LINE = re.compile(r"^(\S+?)(?: ([0-9]+)(?: ([a-z]{1,4}))?)?$")


def _is_ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


class TermMatcher:
    """Finds non-overlapping occurrences of fixed terms, leftmost first, longest first."""

    def __init__(self, terms: Iterable[str]) -> None:
        self.terms: frozenset[str] = frozenset(t for t in terms if t)
        lengths: dict[str, set[int]] = {}
        for term in self.terms:
            lengths.setdefault(term[0], set()).add(len(term))
        self._lengths = {ch: sorted(ls, reverse=True) for ch, ls in lengths.items()}

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of each match; an ASCII term never matches inside an ASCII word."""
        found: list[tuple[int, int]] = []
        i, n = 0, len(text)
        while i < n:
            for length in self._lengths.get(text[i], ()):
                end = i + length
                if end <= n and text[i:end] in self.terms and self._on_word_edges(text, i, end):
                    found.append((i, end))
                    i = end
                    break
            else:
                i += 1
        return found

    @staticmethod
    def _on_word_edges(text: str, start: int, end: int) -> bool:
        # "type 2 diabetes" must not match inside "subtype 2 diabetes"
        if start > 0 and _is_ascii_alnum(text[start]) and _is_ascii_alnum(text[start - 1]):
            return False
        return not (
            end < len(text) and _is_ascii_alnum(text[end - 1]) and _is_ascii_alnum(text[end])
        )


def read_term_file(path: Path) -> list[tuple[str, int | None]]:
    """(term, frequency or None) per non-blank line of a dictionary file. A line is jieba's
    "term [freq [tag]]", "term<TAB>[freq[<TAB>tag]]", or else a whole term with spaces
    ("type 2 diabetes"); a term with spaces that ends in a number needs the tab form."""
    entries = []
    for line in read_word_lines(path, "user dictionary"):
        fields = [f.strip() for f in line.split("\t")]
        jieba_line = _DICT_LINE.match(line)
        if len(fields) > 1:
            entries.append((fields[0], int(fields[1]) if fields[1].isdigit() else None))
        elif jieba_line:
            word, freq, _tag = jieba_line.groups()
            entries.append((word, int(freq) if freq else None))
        else:
            entries.append((line, None))
    return entries


def read_word_lines(path: Path, what: str) -> list[str]:
    """The stripped, non-blank lines of a UTF-8 word list; DataError naming `what` and the
    path when it is missing or not UTF-8."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{what} {path} does not exist; fix the path in verticalize.yaml") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{what} {path} is not UTF-8 (byte {exc.start}); re-save it as UTF-8"
        ) from None
    return [s for s in (line.strip() for line in text.splitlines()) if s]


class Segmenter:
    """Splits Chinese and English text into words; user-dictionary terms come out whole."""

    def __init__(self, user_dicts: Sequence[Path] = (), stop_words: Path | None = None) -> None:
        held: dict[str, int] = {}
        unheld: list[str] = []
        for path in user_dicts:
            for term, freq in read_term_file(path):
                if jieba.re_han_default.fullmatch(term):
                    held[term] = max(held.get(term, 0), freq or 0)
                else:
                    unheld.append(term)
        self._stop = (
            frozenset(w.casefold() for w in read_word_lines(stop_words, "stop-word file"))
            if stop_words is not None
            else frozenset()
        )
        jieba.setLogLevel(logging.WARNING)  # jieba logs its dictionary loading at INFO
        self._jieba = jieba.Tokenizer()
        self._jieba.initialize()
        # shorter terms first: a term's frequency must beat its pieces, which may be terms too
        for term in sorted(held, key=lambda t: (len(t), t)):
            needed = self._jieba.suggest_freq(term) * TERM_FREQ_MARGIN
            self._jieba.add_word(term, max(needed, held[term]))
        self._unheld = TermMatcher(unheld)
        self._terms = frozenset(held) | self._unheld.terms

    @property
    def terms(self) -> frozenset[str]:
        """Every term from the user dictionaries: the words segmentation keeps whole."""
        return self._terms

    @property
    def stop_words(self) -> frozenset[str]:
        return self._stop

    def tokens(self, text: str) -> list[str]:
        """Every piece of `text`, whitespace included: `"".join(tokens(text)) == text`."""
        pieces: list[str] = []
        last = 0
        for start, end in self._unheld.spans(text):
            pieces += self._jieba.lcut(text[last:start]) if start > last else []
            pieces.append(text[start:end])
            last = end
        if last < len(text):
            pieces += self._jieba.lcut(text[last:])
        return pieces

    def cut(self, text: str) -> list[str]:
        """The words of `text` without whitespace and stop words (compared case-insensitively);
        a user-dictionary term is one word and is never dropped as a stop word."""
        return [
            t
            for t in self.tokens(text)
            if t.strip() and (t in self._terms or t.casefold() not in self._stop)
        ]

    def split_terms(self, terms: Iterable[str] | None = None) -> list[str]:
        """The terms (default: all user-dictionary terms) this segmenter does not return as
        one token when segmented alone: a check that the dictionaries loaded as meant."""
        return [t for t in (self._terms if terms is None else terms) if self.tokens(t) != [t]]
