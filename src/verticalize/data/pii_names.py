"""Person-name detectors for PII desensitization (D5).

Names are found only in context, because a bare surname character is also an ordinary
word: Chinese names after a trigger such as 患者/姓名：/我叫 or before a title such as
先生/医生, English names after a title (Mr/Dr …), "my name is", "patient" or "Name:".
Spans cover the name only; the trigger and the title stay readable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# ~380 common single-character surnames (by population), minus function words such as
# 和/来/都/那/由/但 that would fire on ordinary text after a trigger
SINGLE_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶"
    "程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾"
    "毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关"
    "兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻"
    "祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿"
    "桂全佟应臧闵苟邬边卞姬师仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝官封谈匡鞠惠"
    "荆乐冀郁胥南储栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强帅屠豆朴盖练廉禹井祖"
    "漆巴丰支卿国狄平计索宣晋初云容敬扈晁芮普阙浦戈伏鹿薄邸雍辜羊乌母裘亓修邰赫杭况宿鲜印逯"
    "隆茹诸战慕危玉银亢嵇哈湛宾戎勾茅利呼居揭干尉冶斯元束檀衣展阴昝智幸奉植衡富尧闭"
)
COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 夏侯 轩辕 令狐 钟离 端木 "
    "百里 呼延 南宫 西门 独孤 澹台 万俟 闻人 申屠 太史 赫连 濮阳 公冶 宗政 单于 拓跋 第五 "
    "东郭 左丘 谷梁 梁丘 司空 乐正".split()
)
# characters that end a name when they follow one: particles, verbs and time words
# ("患者张三说", "患者李华于今日") and the placeholder 某 ("张某" is already anonymous)
_NOT_GIVEN = frozenset(
    "说的了是在和与跟因于今昨来去也都就已服用入出住称反表诉自主前后曾被把对向从到给让这那有"
    "没不很又还再等及或但却近本每上下男女年月日岁天周次手术发感咳头腹胸血病诊治检查复医院科"
    "护药吃喝打做看听想觉得着过会能要需应可问答请您你我他她它们先家属地之其所某先生士姐师夫"
    "陪签电联投咨询预约挂办接送拿取交缴退换买购订回走离现刚将仍通告嘱"
)
# a name before a title starts at one of these (or at a non-CJK character)
_LEFT_BOUNDARY = frozenset("的了是在和与跟给找问请向位叫谢见被让对把说称系由经及或同像为者人属天")
# words that start with a surname character and often follow 医生/护士 (医生查房, 护士解释)
_COMMON_WORDS = frozenset(
    "查房 查看 查体 解释 解答 安排 安慰 安抚 计划 管理 应该 应用 宣布 常规 方便 方案 于是 "
    "向我 向他 向她 强调 叶酸 包扎 明确 明天 平时 利尿 支持 刘海 全程 全部 时间 余下 任何".split()
)

_BEFORE = re.compile(
    r"(?:患者|患儿|病人|病患|姓名|医生|医师|护士|家属|我叫|联系人|收件人|就诊人|签名)[:：\s]?"
)
_AFTER = re.compile(r"先生|女士|小姐|医生|大夫|老师|阿姨|护士|主任|教授|经理|师傅")
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _is_given(ch: str) -> bool:
    return bool(_CJK.fullmatch(ch)) and ch not in _NOT_GIVEN


def _is_given_before_title(ch: str) -> bool:
    # 刚 ends a name in running text (患者李华刚出院) but not right before a title (王刚医生)
    return ch == "刚" or _is_given(ch)


def _surname_len(text: str, i: int) -> int:
    if text[i : i + 2] in COMPOUND_SURNAMES:
        return 2
    return 1 if text[i : i + 1] in SINGLE_SURNAMES else 0


def _name_after_trigger(text: str, i: int) -> int:
    """End of a surname + 1–2 given-name characters starting at i, or i when none."""
    n = _surname_len(text, i)
    if not n or text[i : i + 2] in _COMMON_WORDS:
        return i
    end = i + n
    while end < len(text) and end - i - n < 2 and _is_given(text[end]):
        end += 1
    return end if end > i + n else i  # a bare surname after 患者 is too ambiguous


def _name_before_title(text: str, t: int) -> int:
    """Start of the longest surname(+given) ending at t whose left neighbour is a boundary."""
    for start in range(max(t - 4, 0), t):
        n = _surname_len(text, start)
        given = text[start + n : t]
        if not n or len(given) > 2 or not all(_is_given_before_title(c) for c in given):
            continue
        left = text[start - 1] if start else ""
        if not left or not _CJK.fullmatch(left) or left in _LEFT_BOUNDARY:
            return start
    return t


def find_cn_names(text: str) -> Iterator[tuple[int, int]]:
    """Chinese names in context, e.g. 患者[张三], [李]先生, 姓名：[欧阳娜娜]."""
    for m in _BEFORE.finditer(text):
        end = _name_after_trigger(text, m.end())
        if end > m.end():
            yield m.end(), end
    for m in _AFTER.finditer(text):
        start = _name_before_title(text, m.start())
        if start < m.start():
            yield start, m.start()


_TOKEN = r"[A-Z](?:[a-z]+(?:[A-Z][a-z]+)?|'[A-Z][a-z]+)(?:-[A-Z][a-z]+)?"
_EN_TRIGGER = re.compile(
    r"\b(?:(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+|(?i:my\s+name\s+is)\s+|(?i:patient)\s+"
    r"|Name\s*[:：]\s*)"
    rf"({_TOKEN}(?:\s+[A-Z]\.)?(?:\s+{_TOKEN}){{0,2}})"
)
# capitalized words that follow a trigger but are not names
_NOT_NAME = frozenset(
    "The A An I He She They We It This That These Those Was Is Has Had Who With And But Or In "
    "On At To From For Of By As Today Yesterday Tomorrow Monday Tuesday Wednesday Thursday "
    "Friday Saturday Sunday January February March April May June July August September "
    "October November December Hospital Clinic Department Center Centre Doctor Nurse Patient "
    "Pharmacy Health Medical Care Please Thanks Thank Called Said Told Prescribed Reported "
    "Stated Says Gave Added Recommended Suggested Switched Started".split()
)


def find_en_names(text: str) -> Iterator[tuple[int, int]]:
    """English names after a title or trigger, e.g. Dr. [Jane Doe], my name is [Tom Lee]."""
    for m in _EN_TRIGGER.finditer(text):
        end = m.start(1)
        for tok in re.finditer(r"\S+", m.group(1)):
            if tok.group() in _NOT_NAME:
                break
            end = m.start(1) + tok.end()
        if end > m.start(1):
            yield m.start(1), end
