"""Chinese postal addresses for PII desensitization (D5): rules over a gazetteer.

An address starts at a known place (a province, or a city / district / county from jieba's
dictionary, whose place names carry the tag `ns`) or after a word such as 住址 / 家住, then
runs through further divisions, towns, roads, villages or estates and ends at a house
number (88号, 3栋2单元501室). It counts only with a road or estate and either a number or
two divisions, so '杭州市西湖区' alone (a place, not someone's address) is not one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

Span = tuple[int, int]

PROVINCES = (
    "北京 天津 上海 重庆 河北 山西 辽宁 吉林 黑龙江 江苏 浙江 安徽 福建 江西 山东 河南 湖北 "
    "湖南 广东 海南 四川 贵州 云南 陕西 甘肃 青海 台湾 内蒙古 广西 西藏 宁夏 新疆 香港 澳门"
).split()
_PROVINCE_SUFFIX = re.compile(r"省|市|特别行政区|壮族自治区|回族自治区|维吾尔自治区|自治区")
_TRIGGER = re.compile(
    r"(?:住址|地址|住在|家住|现住|居住在|居住于|户籍地|寄到|寄往|寄至|送到|送至|搬到|位于)"
    r"(?:是|为)?[:：\s]*"
)
_NAME = r"[^\W\d_的了是在与及或我你他她它这那有就也都很请把被从到给说号]"  # 和: 和平路
_DIVISION = re.compile(rf"{_NAME}{{1,6}}?(?:新区|自治县|区|县|旗|市|镇|乡|街道)")
_PLACE = re.compile(
    rf"(?:{_NAME}|\d){{1,12}}?"
    r"(?:大道|大街|路|街|巷|胡同|弄|里|村|组|社区|小区|新村|花园|家园|公寓|苑|园|大厦|广场|中心)"
    r"(?:[东南西北中][段路])?(?![路街巷弄]|大道|大街)"  # 科苑路 is a road, not the estate 科苑
)
_ROAD_CHARS = frozenset("路街巷道弄里")
_CN_NUM = "[0-9一二三四五六七八九十百零〇两]"
_PART = rf"(?:(?:{_CN_NUM}+|[A-Z])(?:号楼|栋|幢|座|楼|单元|层|室|户|号))"
_NUMBER = re.compile(
    rf"(?:{_CN_NUM}+(?:-{_CN_NUM}+)?(?:号院|号|弄)|{_CN_NUM}+(?:号楼|栋|幢|座))"
    rf"{_PART}{{0,5}}(?:(?<=单元){_CN_NUM}{{2,4}}室?)?"
)


@functools.cache
def _gazetteer() -> dict[str, int]:
    """Place name → its level (1 province, 2 division) and the longest name's length."""
    places = {p: 1 for p in PROVINCES}
    for p in PROVINCES:
        for suffix in ("省", "市", "自治区", "特别行政区"):
            places[p + suffix] = 1
    import jieba

    with open(Path(jieba.__file__).parent / "dict.txt", encoding="utf-8") as fh:
        for line in fh:
            word, _, tag = line.rstrip("\n").rpartition(" ")
            word = word.rsplit(" ", 1)[0]
            if tag == "ns" and len(word) >= 3 and word[-1] in "市州盟区县旗":
                places.setdefault(word, 2)
                if word[-1] == "市":
                    places.setdefault(word[:-1], 2)  # 杭州西湖区: the city without 市
    return places


@functools.cache
def _prefixes() -> frozenset[str]:
    return frozenset(name[:2] for name in _gazetteer())


def _place_at(text: str, i: int) -> int:
    """End of the longest gazetteer place starting at i, or i."""
    if text[i : i + 2] not in _prefixes():  # most positions: one lookup
        return i
    places = _gazetteer()
    for n in range(min(9, len(text) - i), 1, -1):
        if text[i : i + n] in places:
            return i + n
    return i


def _parse(text: str, start: int, divisions: int) -> int:
    """End of the address that starts at `start` (with `divisions` already read), or start."""
    pos = start
    while True:  # further divisions, known or by their suffix
        end = _place_at(text, pos)
        if text[end : end + 1] in _ROAD_CHARS:  # 赤峰路: a road named after a city
            end = pos
        if end == pos:
            m = _DIVISION.match(text, pos)
            end = m.end() if m and divisions else pos
        if end == pos:
            break
        divisions += 1
        pos = end
    places = 0
    while m := _PLACE.match(text, pos):  # roads, villages, estates (a few, nested)
        pos = m.end()
        places += 1
        if places == 4:
            break
    if not places:
        return start
    if m := _NUMBER.match(text, pos):
        return m.end()
    return pos if divisions >= 2 else start


def find_cn_addresses(text: str) -> Iterator[Span]:
    """Chinese postal addresses, e.g. [浙江省杭州市西湖区文三路90号], 住址：[文三路90号3栋]."""
    if text.isascii():
        return
    i, n = 0, len(text)
    while i < n:
        t = _TRIGGER.match(text, i) if text[i] in "住地家现居户寄送搬位" else None
        if t:
            end = _parse(text, t.end(), 0)
            if end > t.end():
                yield t.end(), end
                i = end
                continue
        place_end = _place_at(text, i)
        if place_end > i:
            end = _parse(text, place_end, 1)
            if end > place_end:
                yield i, end
                i = end
                continue
        i += 1
