"""Number normalization (D3): '1,000,000' → '1000000', '100万' → '1000000', '三千' → '3000'.

Only expressions that are unmistakably numbers are touched. cn2an's own `transform` turns
'一些' into '1些' and '统一' into '统1', so we find candidates with our own patterns, guard
the known traps, and hand cn2an (mode "smart") one candidate at a time to validate and
convert; anything it rejects stays as written.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache

_CN_DIGITS = "零〇一二两三四五六七八九"
_CN_UNITS = "十百千万亿"
_NUMERAL = f"[{_CN_DIGITS}{_CN_UNITS}]"
_UNIT_VALUE = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "亿": 100_000_000}

# '1,000,000' but not '1,2' nor '1,0000'; ASCII comma only, because '100，200' is a Chinese list
_THOUSANDS = re.compile(r"(?<![\d,.])\d{1,3}(?:,\d{3})+(?!,?\d)")

# '100万', '1.5亿', '3千', '3万5千'; a trailing bare digit ('3万5') makes it ambiguous: left alone
_ARABIC_WITH_UNITS = re.compile(r"(?<![\d.])(?:\d+(?:\.\d+)?[百千万亿]+)+(?![\d.])")
_ARABIC_GROUP = re.compile(r"(\d+(?:\.\d+)?)([百千万亿]+)")

# known words whose characters look like a number; matched first so they are skipped whole
_NOT_NUMBERS = ("十万火急", "十万八千里", "十二万分", "二百五")

# a Chinese number starts with a digit or 十, never with 百/千/万/亿 ('万一', '千万不要'),
# and never in the middle of another number
_CHINESE = re.compile(
    "(?P<keep>" + "|".join(_NOT_NUMBERS) + ")"
    rf"|(?<![{_CN_DIGITS}{_CN_UNITS}\d.])(?P<num>[一二两三四五六七八九十]{_NUMERAL}+)"
)
_PERCENT = re.compile(rf"百分之({_NUMERAL}+)")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def drop_thousands_separators(text: str) -> str:
    """'1,000,000' → '1000000' and '1,234.5' → '1234.5'; lists like '1,2' are left alone."""
    if "," not in text:
        return text
    return _THOUSANDS.sub(lambda m: m.group().replace(",", ""), text)


def chinese_numbers_to_digits(text: str) -> str:
    """Turn number expressions into digits ('100万' → '1000000', '三千' → '3000',
    '百分之五十' → '50%'); words such as '一些', '万一', '一样', '统一' are never touched."""
    if not any(u in text for u in _CN_UNITS):  # every expression we convert carries a unit
        return text
    text = _ARABIC_WITH_UNITS.sub(_arabic_with_units, text)
    text = _PERCENT.sub(_percent, text)
    return _CHINESE.sub(_chinese, text)


def normalize_numbers(text: str) -> str:
    """Both steps: thousands separators, then Chinese numerals and units."""
    return chinese_numbers_to_digits(drop_thousands_separators(text))


def _arabic_with_units(m: re.Match) -> str:
    total, last_scale = Decimal(0), None
    for number, units in _ARABIC_GROUP.findall(m.group()):
        scale = 1
        for unit in units:
            scale *= _UNIT_VALUE[unit]
        if last_scale is not None and scale >= last_scale:  # '5千3万' is not a number
            return m.group()
        total += Decimal(number) * scale
        last_scale = scale
    return _plain(total)


def _percent(m: re.Match) -> str:
    value = _cn2an(m.group(1))
    return m.group() if value is None else f"{value}%"


def _chinese(m: re.Match) -> str:
    number = m.group("num")
    if number is None:
        return m.group()
    rest = ""
    # '三千一样' is '三千' + '一样': a trailing 一 after a unit belongs to the next word
    if number.endswith("一") and number[-2] in "百千万亿" and _HAN.match(m.string, m.end()):
        number, rest = number[:-1], "一"
    if len(number) < 2 or not any(u in number for u in _CN_UNITS):
        return m.group()  # '十分', '一二三', '三五成群': not an amount
    value = _cn2an(number)
    return m.group() if value is None else f"{value}{rest}"


def _cn2an(numeral: str) -> str | None:
    """cn2an's value as plain digits, or None when it is not a well-formed number."""
    cn2an = _cn2an_module()
    try:
        value = cn2an.cn2an(numeral, "smart")
    except ValueError:
        return None
    return _plain(Decimal(str(value)))


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")  # never '1.5E+8'


@cache
def _cn2an_module():
    import cn2an  # imported on first use: it loads a few tables

    return cn2an
