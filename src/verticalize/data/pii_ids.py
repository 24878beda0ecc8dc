"""PII detectors for identifiers with a published structure (D5): US SSN, IPv6, e-mail with
internationalised (Unicode) names, Hong Kong / Macau / Taiwan identity numbers, the unified
social credit code (GB 32100) and Chinese vehicle plates.

Each works on the one-to-one NFKC view of pii_detect and yields (start, end) spans; a
candidate found by a pattern is kept only when its check digit or number rules hold.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

Span = tuple[int, int]

# ---------------------------------------------------------------- US social security number

_SSN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
_SSN_CTX = re.compile(
    r"(?i:ssn|social\s+security(?:\s+(?:number|no\.?|#))?)\D{0,12}?(?<!\d)(\d{9})(?!\d)"
)


_VOID_SSNS = frozenset({"078-05-1120", "219-09-9999"})  # printed in ads, voided by the SSA


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 900–999; group not 00; serial not 0000."""
    a = int(area)
    if f"{area}-{group}-{serial}" in _VOID_SSNS:
        return False
    return a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"


def find_ssns(view: str) -> Iterator[Span]:
    """123-45-6789 or 123 45 6789; nine bare digits only right after 'SSN' / 'social security'."""
    for m in _SSN.finditer(view):
        if ssn_valid(m.group(1), m.group(3), m.group(4)):
            yield m.span()
    for m in _SSN_CTX.finditer(view):
        d = m.group(1)
        if ssn_valid(d[:3], d[3:5], d[5:]):
            yield m.span(1)


# ---------------------------------------------------------------- IPv6

_IPV6 = re.compile(
    r"(?<![0-9A-Za-z_.])(?:[0-9A-Fa-f]{1,4}|:)?:(?:[0-9A-Fa-f]{0,4}:){1,6}"
    r"(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})(?![0-9A-Za-z_:]|\.\d)"
)


def find_ipv6(view: str) -> Iterator[Span]:
    """IPv6 addresses in full, compressed (::) or IPv4-embedded form, validated."""
    pos = 0
    while m := _IPV6.search(view, pos):
        try:
            ipaddress.IPv6Address(m.group())
        except ValueError:  # e.g. '::' + a full-width colon before it: try one further on
            pos = m.start() + 1
            continue
        yield m.span()
        pos = m.end()


# ---------------------------------------------------------------- internationalised e-mail

# a Chinese local part is taken only after a delimiter: in running text the characters
# before '@' would otherwise swallow the sentence (联系张三@…)
_CJK_TLDS = "中国|中國|公司|网络|網絡|香港|台湾|台灣|澳门|新加坡|在线|集团|商城|网址|移动|手机"
_IDN_EMAIL = re.compile(
    r"(?<![\w.%+-])[^\W_](?:[\w.%+-]{0,63}[^\W_])?"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+"
    rf"(?:xn--[a-z0-9-]{{2,59}}|{_CJK_TLDS}|[^\W\d_\u3400-\u9fff]{{2,24}})(?![\w-])"
)
_CJK = re.compile(r"[\u3400-\u9fff]")
_CJK_LOCAL = re.compile(r"[\u3400-\u9fff]{1,4}(?:[._-]?\d{1,6})?")  # 张伟@, 李娜2024@


def find_idn_emails(view: str) -> Iterator[Span]:
    """E-mail addresses with a non-ASCII local part or domain (用户@例子.中国, josé@correo.es)."""
    for m in _IDN_EMAIL.finditer(view):
        if m.group().isascii():
            continue  # the ASCII pattern of pii_detect finds these
        local = m.group().split("@")[0]
        if _CJK.search(local) and not _CJK_LOCAL.fullmatch(local):
            continue  # 邮箱j.smith@…, 我的邮箱是张伟@…: the sentence ran into the address
        yield m.span()


# ---------------------------------------------------------------- HK / Macau / Taiwan IDs

_HK_ID = re.compile(
    r"(?<![A-Za-z0-9])([A-Z]{1,2})(\d{6}) ?(?:\(([0-9A])\)|([0-9A]))(?![A-Za-z0-9])"
)


def hk_id_valid(letters: str, digits: str, check: str) -> bool:
    """HKID check digit: weights 9..2 over (space-padded letters, digits), check ≡ −sum mod 11."""
    values = [36] * (2 - len(letters)) + [ord(c) - 55 for c in letters] + [int(d) for d in digits]
    total = sum(v * w for v, w in zip(values, range(9, 1, -1), strict=True))
    return (total + (10 if check == "A" else int(check))) % 11 == 0


def find_hk_ids(view: str) -> Iterator[Span]:
    """Hong Kong identity card numbers, A123456(3) or AB9876543, with a valid check digit."""
    for m in _HK_ID.finditer(view):
        check = m.group(3) or m.group(4)
        if hk_id_valid(m.group(1), m.group(2), check):
            yield m.span()


# Macau: 8 digits, first 1, 5 or 7, the last in parentheses; no check algorithm is published,
# so a bare 8-digit number counts only next to a Macau ID word
_MO_ID = re.compile(r"(?<![A-Za-z0-9/])[157]\d{6}\(\d\)(?!\d)")
_MO_CTX = re.compile(
    r"(?:澳门|澳門|Macau|Macao)[^\n]{0,12}?(?:身份证|身份證|居民身份|BIR|ID)[^\n\d]{0,10}?"
    r"(?<![\d/])([157]\d{6}[ /]?\d)(?!\d)"
)


def find_mo_ids(view: str) -> Iterator[Span]:
    """Macau resident identity numbers: 1234567(8), or 12345678 after a Macau ID word."""
    for m in _MO_ID.finditer(view):
        yield m.span()
    for m in _MO_CTX.finditer(view):
        yield m.span(1)


_TW_ID = re.compile(r"(?<![A-Za-z0-9])([A-Z])([1289]\d{8})(?![A-Za-z0-9])")
_TW_LETTERS = "ABCDEFGHJKLMNPQRSTUVXYWZIO"  # A=10, B=11, … in this order


def tw_id_valid(letter: str, digits: str) -> bool:
    """Taiwan ID check: letter code (two digits) and nine digits, weights 1,9,8…1,1, mod 10."""
    code = _TW_LETTERS.index(letter) + 10
    values = [code // 10, code % 10, *map(int, digits)]
    weights = (1, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1)
    return sum(v * w for v, w in zip(values, weights, strict=True)) % 10 == 0


def find_tw_ids(view: str) -> Iterator[Span]:
    """Taiwan national IDs (and resident certificates, 8/9 as the second digit), checked."""
    for m in _TW_ID.finditer(view):
        if tw_id_valid(m.group(1), m.group(2)):
            yield m.span()


# ---------------------------------------------------------------- unified social credit code

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC = re.compile(
    r"(?<![A-Za-z0-9])[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}(?![A-Za-z0-9])"
)


def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character: 31 − (weighted sum mod 31), over its 31 characters."""
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31]


def find_usccs(view: str) -> Iterator[Span]:
    """18-character unified social credit codes whose check character is right."""
    for m in _USCC.finditer(view):
        code = m.group()
        if code[0] in "0Z" or code[:17].isdigit() and code[17].isdigit():
            continue  # registering bodies 1-9, A-G, Y; all-digit runs are IDs or numbers
        if uscc_check_char(code[:17]) == code[17]:
            yield m.span()


# ---------------------------------------------------------------- vehicle plates

_PROVINCE_ABBR = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_L = "A-HJ-NP-Z"  # plate letters: no I or O
_PLATE = re.compile(
    rf"(?<![A-Za-z0-9])[{_PROVINCE_ABBR}][{_L}][·•.\- ]?"
    rf"(?:[DF][{_L}0-9]\d{{4}}|\d{{5}}[DF]"  # new-energy plates: 8 characters
    rf"|[{_L}0-9]{{4}}[{_L}0-9挂学警港澳领使])(?![A-Za-z0-9])"
)


def find_plates(view: str) -> Iterator[Span]:
    """Mainland vehicle plates (京A·12345, 粤B D12345 new energy), at least two digits."""
    for m in _PLATE.finditer(view):
        serial = m.group()[2:].lstrip("·•.- ")
        if sum(c.isdigit() for c in serial) >= 2:
            yield m.span()
