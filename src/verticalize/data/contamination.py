"""Test-set contamination (D11): the test records that share a long n-gram with a train
record, or with a public benchmark file, after dedup and split.

A text is cut into units after casefolding it as dedup does: each Han or kana character is
one unit, every other run of letters and digits is one word, so Chinese is compared by
characters and English by words; whitespace and punctuation never count. A test record is
contaminated when `ngram` consecutive units of it (13, as in GPT-3's check) also occur in a
reference text.

Memory stays flat as the data grows: each n-gram is a 64-bit hash, written with its record
number to hash-partitioned files in a work folder, and the test and reference partitions are
joined one partition at a time (about `PART_BYTES` of reference text each); the files take
12-16 bytes per n-gram on disk. A false match needs a 64-bit hash collision: about 5e-8 with
a million n-grams on each side.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verticalize.config import CleanConfig, ContaminationConfig, Source
from verticalize.data.clean import normalize_text
from verticalize.data.units import is_cjk, units
from verticalize.errors import DataError
from verticalize.source_paths import resolve

UNIT = "word (Latin and other spaced scripts) / character (Han, kana)"
MAX_LISTED = 200  # records listed in the manifest; contamination.jsonl has every one
PART_BYTES = 1 << 20  # reference text per partition: what one join holds in memory
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd: the polynomial hash below loses no bits
_CHUNK = 1 << 16  # units hashed together (a few MB of arrays)
_REF = np.dtype([("h", "<u8"), ("rec", "<u4")])
_TEST = np.dtype([("h", "<u8"), ("rec", "<u4"), ("pos", "<u4")])
_NONE = np.iinfo(np.uint32).max

Texts = Callable[[], Iterator[tuple[object, str]]]  # (key, text) of each record, re-readable


def ngram_text(window: Iterable[str]) -> str:
    """Units back to readable text: CJK characters joined, words spaced."""
    out, prev_cjk = "", True
    for u in window:
        cjk = is_cjk(u)
        out += u if not out or (cjk and prev_cjk) else " " + u
        prev_cjk = cjk
    return out


def ngram_hashes(
    texts: Iterable[str], n: int, lengths_out: list[int] | None = None
) -> Iterator[np.ndarray]:
    """Chunks of (hash, rec, pos) rows (the `_TEST` dtype): one per window of `n` consecutive
    units of each text; `rec` numbers the texts from 0, `pos` is the window's first unit.
    `lengths_out` gets each text's number of units."""
    pieces: list[np.ndarray] = []
    lengths: list[int] = []
    first = size = 0
    for i, text in enumerate(texts):
        seq = units(text)
        # str hashes are 64-bit SipHash, stable within the process that compares them
        pieces.append(np.fromiter(map(hash, seq), dtype=np.int64, count=len(seq)))
        lengths.append(len(seq))
        if lengths_out is not None:
            lengths_out.append(len(seq))
        size += len(seq)
        if size >= _CHUNK:
            yield _windows(pieces, lengths, first, n)
            pieces, lengths, first, size = [], [], i + 1, 0
    if lengths:
        yield _windows(pieces, lengths, first, n)


def _windows(pieces: list[np.ndarray], lengths: list[int], first: int, n: int) -> np.ndarray:
    h = np.concatenate(pieces).view(np.uint64)
    m = len(h) - n + 1
    if m <= 0:
        return np.empty(0, dtype=_TEST)
    acc = np.zeros(m, dtype=np.uint64)
    for j in range(n):  # uint64 arithmetic wraps: a polynomial hash modulo 2**64
        acc = acc * _BASE + h[j : j + m]
    size = np.asarray(lengths, dtype=np.int64)
    rec = np.repeat(np.arange(len(size)), size)[:m]
    pos = np.arange(m) - (np.cumsum(size) - size)[rec]
    inside = pos <= size[rec] - n  # windows that run into the next text are not n-grams
    out = np.empty(int(inside.sum()), dtype=_TEST)
    out["h"], out["rec"], out["pos"] = acc[inside], rec[inside] + first, pos[inside]
    return out


def _partition(rows: Iterable[np.ndarray], folder: Path, parts: int, dtype) -> None:
    """Append each row to folder/<hash % parts>.bin."""
    files = [open(folder / f"{p}.bin", "ab") for p in range(parts)]
    try:
        for chunk in rows:
            out = np.empty(len(chunk), dtype=dtype)
            for name in dtype.names:
                out[name] = chunk[name]
            part = out["h"] % np.uint64(parts)
            order = np.argsort(part, kind="stable")
            out = out[order]
            bounds = np.searchsorted(part[order], np.arange(parts + 1))
            for p in range(parts):
                out[bounds[p] : bounds[p + 1]].tofile(files[p])
    finally:
        for fh in files:
            fh.close()


@dataclass
class Overlaps:
    """What `find_overlaps` found, per reference name."""

    hits: dict[str, dict[object, dict]]  # {test key: {"with": reference key, "units": …}}
    texts: dict[str, int]  # reference texts read
    test_records: int
    too_short: int  # test texts with fewer units than one n-gram: never flagged


def find_overlaps(
    test: Texts,
    references: dict[str, Texts],
    n: int,
    parts: int = 1,
    work: Path | None = None,
) -> Overlaps:
    """Every test text sharing an n-gram with a text of each reference, with the first shared
    n-gram and the first reference text holding it. Each text is read once, the test texts
    once more for the n-grams found; `parts` partitions bound the memory of a join."""
    with tempfile.TemporaryDirectory(dir=work, prefix="ngrams-") as tmp:
        test_dir = Path(tmp) / "test"
        test_dir.mkdir()
        test_keys: list[object] = []
        lengths: list[int] = []
        rows = ngram_hashes(_keep_keys(test(), test_keys), n, lengths)
        _partition(rows, test_dir, parts, _TEST)
        found: dict[str, tuple[np.ndarray, np.ndarray, list]] = {}
        for name, reference in references.items():
            ref_dir = Path(tmp) / f"reference-{len(found)}"
            ref_dir.mkdir()
            ref_keys: list[object] = []
            _partition(ngram_hashes(_keep_keys(reference(), ref_keys), n), ref_dir, parts, _REF)
            best_pos = np.full(len(test_keys), _NONE, dtype=np.uint32)
            best_ref = np.zeros(len(test_keys), dtype=np.uint32)
            for p in range(parts):
                _join(ref_dir / f"{p}.bin", test_dir / f"{p}.bin", best_pos, best_ref)
            shutil.rmtree(ref_dir)
            found[name] = best_pos, best_ref, ref_keys
    flagged = set()
    for best_pos, _, _ in found.values():
        flagged.update(np.flatnonzero(best_pos != _NONE).tolist())
    hits: dict[str, dict[object, dict]] = {name: {} for name in references}
    for j, (key, text) in enumerate(test()):
        if j not in flagged:
            continue
        seq = units(text)
        for name, (best_pos, best_ref, ref_keys) in found.items():
            if best_pos[j] != _NONE:
                start = int(best_pos[j])
                where = ref_keys[int(best_ref[j])]
                hits[name][key] = {"with": where, "units": seq[start : start + n]}
    texts = {name: len(keys) for name, (_, _, keys) in found.items()}
    return Overlaps(hits, texts, len(test_keys), sum(x < n for x in lengths))


def _keep_keys(texts: Iterator[tuple[object, str]], keys: list) -> Iterator[str]:
    for key, text in texts:
        keys.append(key)
        yield text


def _join(ref_file: Path, test_file: Path, best_pos: np.ndarray, best_ref: np.ndarray) -> None:
    """For each test record, keep its earliest window found in the reference partition, and
    the first reference record holding it."""
    ref, test = np.fromfile(ref_file, dtype=_REF), np.fromfile(test_file, dtype=_TEST)
    if not len(ref) or not len(test):
        return
    order = np.lexsort((ref["rec"], ref["h"]))  # by hash, then the earliest record
    hashes, recs = ref["h"][order], ref["rec"][order]
    del ref, order
    keys = np.ascontiguousarray(test["h"])
    at = np.minimum(np.searchsorted(hashes, keys), len(hashes) - 1)
    hit = hashes[at] == keys
    j, pos, with_ = test["rec"][hit], test["pos"][hit], recs[at[hit]]
    first = np.lexsort((pos, j))
    j, pos, with_ = j[first], pos[first], with_[first]
    one = np.r_[True, j[1:] != j[:-1]] if len(j) else np.zeros(0, dtype=bool)
    j, pos, with_ = j[one], pos[one], with_[one]
    better = pos < best_pos[j]
    best_pos[j[better]], best_ref[j[better]] = pos[better], with_[better]


def parts_for(paths: Iterable[Path]) -> int:
    """Partitions for references read from these files: one per `PART_BYTES` of the
    largest, 1 to 256."""
    largest = max((p.stat().st_size for p in paths), default=0)
    return max(1, min(256, math.ceil(largest / PART_BYTES)))


def _split_texts(path: Path) -> Texts:
    def read() -> Iterator[tuple[object, str]]:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                yield rec["id"], rec.get("text") or ""

    return read


def benchmark_texts(
    path: str, base: Path, fields: list[str] | None, clean: CleanConfig, field: str
) -> Texts:
    """(line, text) of every row of a benchmark file, cleaned as records are (data.clean);
    a row that cannot be read stops the run naming file:line and `field`, the YAML entry."""
    res = resolve(path, None, base)

    def read() -> Iterator[tuple[object, str]]:
        from verticalize.data.readers import read_rows

        for row in read_rows(res, Source(path=path)):
            where = f"{res.display}:{row.line}"
            if row.fields is None:
                raise DataError(
                    f"{where}: {field}: row cannot be read ({row.error}). Fix: correct or "
                    "delete the row, or remove the file from the list."
                )
            texts = _row_texts(row.fields, fields)
            if texts is None:
                missing = sorted(set(fields or ()) - row.fields.keys())
                raise DataError(
                    f"{where}: {field}: the row has no field {missing} (it has "
                    f"{sorted(row.fields)}). Fix: correct data.contamination.fields, or leave "
                    "it out to read every text field."
                )
            yield row.line, normalize_text("\n".join(texts), clean)

    return read


def _row_texts(row: dict, fields: list[str] | None) -> list[str] | None:
    if fields is not None:
        if not set(fields) <= row.keys():
            return None
        values = [row[f] for f in fields]
    else:
        values = list(row.values())
    out: list[str] = []
    for v in values:  # a list of choices counts too
        out += [x for x in (v if isinstance(v, list) else [v]) if isinstance(x, str)]
    return out


def check_contamination(
    out_dir: Path,
    c: ContaminationConfig,
    clean: CleanConfig,
    base: Path,
    show_text: bool,
    work: Path | None = None,
) -> dict:
    """Compare data/test.jsonl with data/train.jsonl and the benchmark files; write every
    flagged test record to data/contamination.jsonl and return the manifest's section.
    `show_text`: False keeps the shared n-grams out of both (encrypted splits)."""
    n = c.ngram
    train = out_dir / "train.jsonl"
    references = {"train": _split_texts(train)}
    for i, path in enumerate(c.benchmarks):
        field = f"data.contamination.benchmarks[{i}]"
        references[path] = benchmark_texts(path, base, c.fields, clean, field)
    files = [train, *(resolve(p, None, base).file for p in c.benchmarks)]
    found = find_overlaps(
        _split_texts(out_dir / "test.jsonl"), references, n, parts_for(files), work
    )

    def shown(seq: list[str]) -> str | None:
        return ngram_text(seq) if show_text else None

    rows: dict[object, dict] = {}
    for rid, hit in found.hits["train"].items():
        rows[rid] = {"id": rid, "train_id": hit["with"], "ngram": shown(hit["units"])}
    benchmarks = []
    for path in c.benchmarks:
        listed = []
        for rid, hit in found.hits[path].items():
            entry = {"path": path, "line": hit["with"], "ngram": shown(hit["units"])}
            rows.setdefault(rid, {"id": rid, "train_id": None, "ngram": None})
            rows[rid].setdefault("benchmarks", []).append(entry)
            listed.append({"id": rid, "line": hit["with"], "ngram": entry["ngram"]})
        n_hits, n_texts = len(found.hits[path]), found.texts[path]
        benchmarks.append(
            {"path": path, "texts": n_texts, "n": n_hits, "records": listed[:MAX_LISTED]}
        )
    with open(out_dir / "contamination.jsonl", "w", encoding="utf-8") as fh:
        for row in rows.values():
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    listed = [
        {k: r[k] for k in ("id", "train_id", "ngram")} for r in rows.values() if r["train_id"]
    ]
    n_test, n_train = found.test_records, len(found.hits["train"])
    return {
        "ngram": n,
        "unit": UNIT,
        "test_records": n_test,
        "too_short": found.too_short,  # fewer units than one n-gram: never flagged
        "n": n_train,
        "share": round(n_train / n_test, 6) if n_test else 0.0,
        "records": listed[:MAX_LISTED],
        "benchmarks": benchmarks,
        "n_flagged": len(rows),
        "file": "contamination.jsonl",
        "texts_shown": show_text,
    }
