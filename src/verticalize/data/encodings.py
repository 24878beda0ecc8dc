"""Which codec reads a source file (D1/D2): a byte-order mark decides, else the declared
`encoding:`, else (`encoding: auto`) a detection over the head of the file.

Detection prefers UTF-8: a file whose non-ASCII lines mostly decode as UTF-8 is UTF-8, and
the lines that do not are quarantined one by one (a mixed file keeps its good lines). Any
other file goes to `charset-normalizer`; its guess is trusted only when no other codec
decodes the head into different, equally clean text.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from verticalize.errors import DataError

AUTO = "auto"
HEAD_BYTES = 1 << 20  # detection reads at most this much of a file
LOW_CONFIDENCE = 0.6  # below this, `encoding: auto` stops and asks for `encoding:`
# longest first: the UTF-32 LE mark starts with the UTF-16 LE one
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# codecs that read the same text: a rival from the same family is no rival
_FAMILY = {"gb2312": "gb18030", "gbk": "gb18030", "hz": "gb18030", "ascii": "utf-8"}


@dataclass(frozen=True)
class Encoding:
    """How one file is decoded: `codec` for Python, `name` for people and the manifest."""

    codec: str
    name: str
    confidence: float | None = None  # set when detected; None when declared or from a BOM
    bom: bool = False

    def as_dict(self) -> dict:
        return {"encoding": self.name, "confidence": self.confidence, "bom": self.bom}


def codec_name(name: str) -> str:
    """Python's canonical spelling of a codec ('GBK' → 'gbk', 'utf8' → 'utf-8')."""
    return codecs.lookup(name).name.replace("_", "-")


def bom_encoding(head: bytes) -> Encoding | None:
    """The encoding a byte-order mark at the start of `head` announces (the codec drops it)."""
    for mark, codec in _BOMS:
        if head.startswith(mark):
            name = "utf-8" if codec == "utf-8-sig" else codec
            return Encoding(codec, name, bom=True)
    return None


def choose_encoding(head: bytes, declared: str, where: str) -> Encoding:
    """The encoding of a file whose first bytes are `head`: its BOM, else the declared one,
    else (declared 'auto') the detected one; a DataError naming `where` and the fix when the
    detection is not confident."""
    found = bom_encoding(head)
    if found is not None:
        return found
    if declared.lower() != AUTO:
        name = codec_name(declared)
        return Encoding("utf-8-sig" if name == "utf-8" else name, name)
    found = detect_encoding(head)
    if found.confidence < LOW_CONFIDENCE:
        guess = f"the best guess is {found.name}" if found.name else "no codec fits"
        hint = found.name or "gb18030"
        raise DataError(
            f"{where}: cannot tell the file's encoding ({guess}, confidence "
            f"{found.confidence:.2f}). Fix: set `encoding: {hint}` (or the codec the file was "
            "saved in) on this source in data.sources, or re-save the file as UTF-8."
        )
    return found


def detect_encoding(head: bytes) -> Encoding:
    """UTF-8 when most non-ASCII lines of `head` are UTF-8, else charset-normalizer's guess,
    with a confidence in [0, 1] (name '' when nothing decodes)."""
    head = _whole_lines(head)
    if b"\x00" not in head:  # NUL bytes: UTF-16/32 without a mark, never UTF-8 text
        lines = [line for line in head.split(b"\n") if not line.isascii()]
        if not lines:
            return Encoding("utf-8-sig", "utf-8", 1.0)
        share = sum(_is_utf8(line) for line in lines) / len(lines)
        if share >= 0.5:
            return Encoding("utf-8-sig", "utf-8", round(share, 3))
    import charset_normalizer

    results = charset_normalizer.from_bytes(head)
    best = results.best()
    if best is None:
        return Encoding("utf-8-sig", "", 0.0)
    name = _family(best.encoding)
    text = str(best)
    rivals = [r.chaos for r in results if _family(r.encoding) != name and str(r) != text]
    margin = min(rivals, default=1.0) - best.chaos
    confidence = (1.0 - best.chaos) * min(1.0, 0.5 + 5 * margin)
    return Encoding(name, name, round(confidence, 3))


def _family(encoding: str) -> str:
    name = codec_name(encoding)
    return _FAMILY.get(name, name)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _whole_lines(head: bytes) -> bytes:
    """`head` cut after its last newline when it fills the detection window, so a character
    split at the cut does not count against a codec."""
    if len(head) < HEAD_BYTES:
        return head
    cut = head.rfind(b"\n")
    return head[: cut + 1] if cut > 0 else head
