"""Stream rows out of a source, one at a time and each with its 1-based line number (D1).

Each file's codec comes from data.encodings (a BOM, the declared `encoding:`, or detection).
Files are decoded with `surrogateescape`, so bytes that are not valid in that codec survive
as lone surrogates: such a row is reported (with a guess at the real encoding) instead of
silently carrying U+FFFD replacement characters into training data.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import sqlite3
import sys
import zipfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import IO

from verticalize.config import Source
from verticalize.data.encodings import AUTO, HEAD_BYTES, Encoding, choose_encoding
from verticalize.data.exports import doccano_fields, labelstudio_fields
from verticalize.data.tags import detect_scheme, read_tags
from verticalize.errors import DataError
from verticalize.source_paths import ResolvedSource, open_sqlite, sqlite_statement

csv.field_size_limit(sys.maxsize)
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_GUESSES = ("gb18030", "big5", "shift_jis", "cp1252")


@dataclass
class Row:
    line: int
    fields: dict | None  # None when the row could not be read
    error: str | None = None  # "<reason>: <detail>"
    source: str | None = None  # set when one source yields several files (txt_folder)


@contextmanager
def open_text(
    res: ResolvedSource, declared: str, seen: list[Encoding] | None = None
) -> Iterator[tuple[IO[str], str]]:
    """(text stream, codec) for the file: its BOM, the declared encoding or the detected one
    (appended to `seen`); a BOM never reaches the text."""
    with _open_binary(res) as raw:
        enc = choose_encoding(raw.read(HEAD_BYTES), declared, res.display)
    if seen is not None:
        seen.append(enc)
    with _open_binary(res) as raw:
        text = io.TextIOWrapper(raw, encoding=enc.codec, errors="surrogateescape", newline="")
        yield text, enc.name


@contextmanager
def _open_binary(res: ResolvedSource) -> Iterator[IO[bytes]]:
    if res.member:
        with zipfile.ZipFile(res.file) as zf, zf.open(res.member) as raw:
            yield raw
    else:
        with open(res.file, "rb") as raw:
            yield raw


def encoding_error(text: str, encoding: str) -> str | None:
    """None, or 'bad_encoding: …' naming the column and the encoding the bytes fit."""
    m = _UNDECODABLE.search(text)
    if not m:
        return None
    raw = text.encode(encoding, "surrogateescape").removeprefix(codecs.BOM_UTF8)
    guess = next((g for g in _GUESSES if _decodes(raw, g)), None)
    hint = f"; they decode as {guess}: set encoding: {guess} on this source" if guess else ""
    return f"bad_encoding: bytes at column {m.start() + 1} are not valid {encoding}{hint}"


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def read_rows(
    res: ResolvedSource, src: Source, encodings: list[Encoding] | None = None
) -> Iterator[Row]:
    """Every row of the source in file order; unreadable rows carry an error. `encodings`
    gets how each file was decoded (one entry per file read)."""
    seen = encodings if encodings is not None else []
    reader = {
        "jsonl": _jsonl,
        "doccano": _jsonl,
        "csv": _csv,
        "tsv": _csv,
        "lines": _lines,
        "parquet": _parquet,
        "txt_folder": _txt_folder,
        "labelstudio": _labelstudio,
        "conll": _conll,
        "sqlite": _sqlite,
    }[res.format]
    for row in reader(res, src, seen):
        if row.fields is not None and res.format == "doccano":
            fields, error = doccano_fields(row.fields, src)
            row = Row(row.line, fields, error)
        yield row


def _jsonl(res: ResolvedSource, src: Source, seen: list[Encoding]) -> Iterator[Row]:
    with open_text(res, src.encoding, seen) as (fh, encoding):
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            yield _json_row(n, line, encoding)


def _json_row(n: int, text: str, encoding: str) -> Row:
    bad = encoding_error(text, encoding)
    if bad:
        return Row(n, None, bad)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return Row(n, None, f"bad_json: {e.msg} at column {e.colno}")
    except RecursionError:
        return Row(n, None, "bad_json: nested too deeply")
    if not isinstance(obj, dict):
        return Row(n, None, f"bad_json: expected an object, got {type(obj).__name__}")
    return Row(n, obj)


def _csv(res: ResolvedSource, src: Source, seen: list[Encoding]) -> Iterator[Row]:
    with open_text(res, src.encoding, seen) as (fh, encoding):
        reader = csv.reader(fh, delimiter="\t" if res.format == "tsv" else ",")
        try:
            header = next(reader)
        except (StopIteration, csv.Error):
            return
        start = reader.line_num + 1
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield Row(start, None, f"bad_row: {e}")
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            if not any(v.strip() for v in values):
                continue
            bad = encoding_error("\t".join(values), encoding)
            if bad:
                yield Row(line, None, bad)
            elif len(values) != len(header):
                yield Row(line, None, f"bad_row: {len(values)} columns, header has {len(header)}")
            else:
                yield Row(line, dict(zip(header, values, strict=True)))


def _lines(res: ResolvedSource, src: Source, seen: list[Encoding]) -> Iterator[Row]:
    with open_text(res, src.encoding, seen) as (fh, encoding):
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            line = line.rstrip("\r\n")
            bad = encoding_error(line, encoding)
            yield Row(n, None, bad) if bad else Row(n, {"text": line})


def _parquet(res: ResolvedSource, src: Source, seen: list[Encoding]) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(res.file)
        batches = pf.iter_batches(batch_size=2048)
        n = 0
        for batch in batches:  # row groups are read one at a time: memory stays flat
            for row in batch.to_pylist():
                n += 1
                yield Row(n, row)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        yield Row(0, None, f"bad_parquet: {type(e).__name__}: {e}")


def _txt_folder(res: ResolvedSource, src: Source, seen: list[Encoding]) -> Iterator[Row]:
    """One record per .txt file; `file` and `folder` (the parent folder's name) are fields, so a
    folder-per-class layout can use `label: folder`."""
    for path in sorted(res.file.rglob("*.txt")):
        rel = path.relative_to(res.file)
        where = f"{res.file.name}/{rel}"
        raw = path.read_bytes()
        try:
            enc = choose_encoding(raw[:HEAD_BYTES], src.encoding, where)
        except DataError as e:  # one unreadable file is one bad record, not a failed run
            yield Row(1, None, f"bad_encoding: {e}", source=where)
            continue
        seen.append(enc)
        text = raw.decode(enc.codec, "surrogateescape")
        bad = encoding_error(text, enc.name)
        fields = {"text": text, "file": str(rel), "folder": path.parent.name}
        yield Row(1, None if bad else fields, bad, source=where)


def _sqlite(res: ResolvedSource, src: Source, seen: list[Encoding]) -> Iterator[Row]:
    """One record per row of the source's table or query (opened read-only), fields by column
    name, `line` the 1-based row number. The cursor is iterated: rows are never all in memory.
    BLOB columns are decoded with the source's encoding."""
    statement = sqlite_statement(src.table, src.query)
    codec = "utf-8-sig" if src.encoding.lower() == AUTO else src.encoding  # per value: no sniffing
    try:
        with closing(open_sqlite(res.file)) as conn:
            cursor = conn.execute(statement)
            columns = [d[0] for d in cursor.description]
            for n, values in enumerate(cursor, start=1):
                fields = dict(zip(columns, values, strict=True))
                bad = None
                for key, value in fields.items():
                    if isinstance(value, bytes):
                        fields[key] = value.decode(codec, "surrogateescape")
                        bad = bad or encoding_error(fields[key], codec)
                yield Row(n, None, bad) if bad else Row(n, fields)
    except sqlite3.Error as e:
        raise DataError(
            f"{res.display}: {statement!r} failed: {e}. Fix: correct data.sources[].table or "
            "query (`verticalize data` checks them up front and names the YAML line)."
        ) from None


_CONLL_TAG = re.compile(r"O|[BIESM]-\S+")
_CONLL_SPLIT = re.compile(r"[ \t]+")
SCHEME_PREFIXES = {"bio": "BI", "iob1": "BI", "bioes": "BIES", "bmes": "BMES"}


def _conll(res: ResolvedSource, src: Source, seen: list[Encoding]) -> Iterator[Row]:
    """One record per sentence of a CoNLL file (a token and its tag a line, the tag in the last
    column, whitespace-only lines between sentences, -DOCSTART- lines skipped): the tokens
    joined into `text` (without spaces when every token is one character, as in character-level
    Chinese corpora), the tags read leniently into character `spans`. A sentence with a bad line
    is one bad row, at the line number of its first bad line."""
    lines: list[tuple[int, str, list[str]]] = []  # the current sentence: (line, text, columns)
    with open_text(res, src.encoding, seen) as (fh, encoding):
        for n, line in enumerate(fh, start=1):
            cols = _CONLL_SPLIT.split(line.strip(" \t\r\n")) if line.strip() else []
            if cols and cols[0] != "-DOCSTART-":
                lines.append((n, line, cols))
            elif lines:
                yield _conll_sentence(lines, src, encoding)
                lines = []
    if lines:
        yield _conll_sentence(lines, src, encoding)


def _conll_sentence(lines: list[tuple[int, str, list[str]]], src: Source, encoding: str) -> Row:
    allowed = SCHEME_PREFIXES.get(src.tag_scheme)
    tags = [cols[-1] for _, _, cols in lines if len(cols) > 1 and _CONLL_TAG.fullmatch(cols[-1])]
    for n, line, cols in lines:
        bad = encoding_error(line, encoding)
        if bad:
            return Row(n, None, bad)
        if len(cols) < 2:
            got = line.rstrip("\r\n")
            return Row(
                n,
                None,
                f"bad_conll_line: expected '<token> <tag>' (separated by tabs or spaces), "
                f"got {got!r}",
            )
        tag = cols[-1]
        if not _CONLL_TAG.fullmatch(tag):
            return Row(
                n,
                None,
                f"bad_tag: {tag!r} (token {cols[0]!r}) is not O or P-TYPE with P one of "
                "B, I, E, S, M",
            )
        if allowed and tag != "O" and tag[0] not in allowed:
            return Row(
                n,
                None,
                f"tag_not_in_scheme: {tag!r} has no place in tag_scheme {src.tag_scheme} "
                f"(prefixes {', '.join(allowed)}). Fix: set tag_scheme: {detect_scheme(tags)}",
            )
    tokens = [cols[0] for _, _, cols in lines]
    sep = "" if all(len(t) == 1 for t in tokens) else " "
    starts, pos = [], 0
    for tok in tokens:
        starts.append(pos)
        pos += len(tok) + len(sep)
    spans = [
        [starts[a], starts[b - 1] + len(tokens[b - 1]), kind] for kind, a, b in read_tags(tags)
    ]
    return Row(lines[0][0], {"text": sep.join(tokens), "spans": spans, "n_tokens": len(tokens)})


def _labelstudio(res: ResolvedSource, src: Source, seen: list[Encoding]) -> Iterator[Row]:
    with open_text(res, src.encoding, seen) as (fh, encoding):
        for line, obj, error in iter_json_array(fh):
            if error:
                yield Row(line, None, error)
            elif not isinstance(obj, dict):
                yield Row(line, None, f"bad_json: expected a task object, got {type(obj).__name__}")
            else:
                fields, err = labelstudio_fields(obj, src)
                yield Row(line, fields, err)


def iter_json_array(fh: IO[str], chunk: int = 1 << 16) -> Iterator[tuple[int, object, str | None]]:
    """Yield (line, element, error) from a top-level JSON array without loading the whole file
    (Label Studio exports are one array that can be large). A file that is not an array is
    read as JSON lines."""
    decoder = json.JSONDecoder()
    buf, line, pos, started = "", 1, 0, False
    eof = False
    while True:
        if not eof and len(buf) - pos < chunk:
            more = fh.read(chunk)
            eof = not more
            buf = buf[pos:] + more
            pos = 0
        while pos < len(buf) and buf[pos] in " \t\r\n,":
            line += buf[pos] == "\n"
            pos += 1
        if pos >= len(buf):
            if eof:
                return
            continue
        if not started:
            started = True
            if buf[pos] != "[":
                yield from (
                    (n, *_parsed(_json_row(n, t, "utf-8")))
                    for n, t in _rest_lines(buf[pos:], fh, line)
                )
                return
            pos += 1
            continue
        if buf[pos] == "]":
            return
        try:
            obj, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError as e:
            if not eof:  # maybe the element continues in the next chunk
                more = fh.read(chunk)
                if more:
                    buf = buf[pos:] + more
                    pos = 0
                    continue
                eof = True
            yield line, None, f"bad_json: {e.msg} (the export is cut off or malformed here)"
            return
        yield line, obj, None
        line += buf.count("\n", pos, end)
        pos = end


def _parsed(row: Row) -> tuple[object, str | None]:
    return row.fields, row.error


def _rest_lines(head: str, fh: IO[str], first_line: int) -> Iterator[tuple[int, str]]:
    n = first_line
    for text in io.StringIO(head + fh.read()):  # a non-array export is small JSON lines
        if text.strip():
            yield n, text
        n += 1
