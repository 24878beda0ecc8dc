"""Regenerate src/verticalize/evaluate/data/zh_variants.tsv (robustness noise, SPEC E4).

One row per character: `char<TAB>homophones<TAB>similar_shape`, after a header line,
most frequent first. Characters: the 3,500 most frequent in jieba's bundled dictionary
(word frequencies summed per character; characters that OpenCC t2s changes, i.e.
traditional-only ones, left out), plus any member of a curated similar-shape group.
Homophones: the (up to 8) most frequent other characters of that set with the same pinyin
and tone (pypinyin's first reading, Style.TONE3). Similar shape: the other members of the
curated groups below.

pypinyin is needed only here, at development time: `pip install pypinyin`.
Run: python scripts/make_zh_variants.py
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from importlib.resources import files
from pathlib import Path

import opencc
from pypinyin import Style, pinyin

TOP = 3500
MAX_HOMOPHONES = 8
OUT = Path(__file__).resolve().parents[1] / "src/verticalize/evaluate/data" / "zh_variants.tsv"
_CJK = re.compile(r"[\u4e00-\u9fff]")

# Well-known confusable groups (形近字), simplified characters; a character may sit in several.
SIMILAR_SHAPE = tuple(
    """
己已巳 未末 土士 日曰 人入八 大太犬 天夭 王玉主 刀力 贝见 白自 木本术
干千于 今令 厂广 住往 侯候 戍戌戊 拔拨 辨辩辫瓣 睛晴清请情精 历厉
折拆析 栽裁载戴截 免兔 鸟乌 喝渴 汩汨 治冶 壁璧 崇祟 茶荼 徒徙 暑署
籍藉 赢嬴羸 竟竞 衷哀衰 锻煅 祷涛 券卷倦圈 迁迂 抚扰 贷货 准淮 幻幼
粟栗 撤撒 陷馅焰 峰锋蜂 驶驰 狠狼很恨 微徽 项顷 兵乒乓 问间 叨叼 毫毛
仑仓 申甲由田电 旦但 刁习 办为 午牛 失夫 羊半 开井 鸣呜 状伏 休体
外处 杨扬 场汤 肠畅 汗汁 冷泠 练炼拣 即既 概慨既 拾恰洽 纷份粉盼吩
棒捧 凸凹 孤狐 陪倍培赔 编遍偏篇骗 慢漫馒蔓 管馆 梢稍捎哨 抱跑泡炮饱袍
桥轿娇骄 较校饺狡 蓝篮 峡侠狭挟 惋婉碗腕 梅海悔晦 坐座 圆园 辛幸 减咸
缓暖援媛 织职识帜 枝技肢 驱躯岖 距拒矩 茫忙芒 检验险捡剑 蜡腊猎 洒酒
坚竖 宾宴 暮幕墓慕募 蓬篷 漂飘瓢票 访仿纺防妨坊 谈淡痰毯 油邮抽袖 读续
姑估沽咕 冒昌 采菜踩彩 侍待持特诗 词祠 愉偷输榆喻 拍柏泊迫 缸虹扛杠 伐代
仗杖 幅副福富辐 纳呐钠 陈阵 逐遂 冲仲 抵低底 撞憧幢 赏尝掌常堂党偿
宵霄消硝销 桃逃挑跳眺 鬼魁 复夏 亨享亭 廷延 茵菌 刺剌 拖施 贯惯
冈岗刚钢纲 烂栏拦兰 贪贫 季李 苦若 味妹昧 旱早 买卖 卯卵 母毋 寸才
几九凡丸 儿几 戈弋 式武 尖尘 肉内 丙两 冬各 风凤 区巨 斤斥 瓜爪 勿匆
订盯钉叮 丁了 予矛 杆秆竿 决诀块快 宇字 捕浦哺蒲 堤提题踢 博搏傅薄
浇烧绕晓饶 涨胀帐账张 脏赃 脑恼 滤虑 辉挥晖 堆推椎锥 锡赐 缴激邀
暇假瑕霞 蝴湖糊葫 凉谅晾掠 赌堵睹都 辑缉 埋理狸鲤 彻砌切 则侧测厕
粮狼娘浪郎朗 搞稿镐 龙拢笼聋垄 掉悼 卓桌 倘淌躺趟尚 楼搂缕 壤嚷攘镶
戒械诫 侵浸寝 搜嫂瘦艘 趁诊珍疹 歧岐 绣锈秀透诱 逝誓哲 峻俊骏竣 谍碟蝶
娩挽晚勉 锐税说悦脱阅 炸诈榨窄 作昨怎 仰抑 眯咪迷谜 赖懒 瞪澄橙凳登蹬
湿显 棉绵锦 暂渐惭斩 汲吸级极 沿铅 氏民 巾币 帅师 右石 耳且目 米来
东车 西酉 奋夺 钩钓钧 均匀 匀勾句 构沟购 很银根跟 期欺旗棋 淋林琳
洋样祥详 玲铃零龄怜 青请情清静 胆但担 访芳放房 蕉焦礁瞧樵 措错借惜 遭糟槽
晨辰振震 灌罐观欢劝 挡档当 赶赴 析晰淅 吓虾 漠模摸膜寞 祖组阻租粗
鸭鸦 遗遣 辟僻避壁臂 徘排俳 裹裸 旋施族 卸御 戎戒 乞气 麦夌 贼贱 垒叠
疲被坡波披破 蚊纹紊 澈撤辙 姻咽烟 蓄畜 肚杜 绩积迹 缩宿 蔬疏
洗冼 哑亚 挚势 概溉
""".split()
)


def _dict_path():
    """jieba's bundled `dict.txt` (word frequency pos per line)."""
    return files("jieba") / "dict.txt"


def char_frequencies() -> Counter:
    """Summed word frequencies per simplified CJK character (traditional-only ones dropped)."""
    freq: Counter = Counter()
    with _dict_path().open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 2 or not parts[1].isdigit():
                continue
            word, count = parts[0], int(parts[1])
            for ch in word:
                if _CJK.fullmatch(ch):
                    freq[ch] += count
    to_simplified = opencc.OpenCC("t2s")
    return Counter({ch: n for ch, n in freq.items() if to_simplified.convert(ch) == ch})


def reading(ch: str) -> str | None:
    """Most common reading with tone number (TONE3); None when pypinyin has none."""
    syl = pinyin(ch, style=Style.TONE3, heteronym=False)[0][0]
    return None if syl == ch else syl


def shape_groups() -> dict[str, set[str]]:
    similar: dict[str, set[str]] = defaultdict(set)
    for group in SIMILAR_SHAPE:
        members = [c for c in dict.fromkeys(group) if _CJK.fullmatch(c)]
        if len(members) < 2:
            raise ValueError(f"similar-shape group {group!r} needs 2+ distinct characters")
        for ch in members:
            similar[ch] |= set(members) - {ch}
    return similar


def build_rows() -> list[tuple[str, str, str]]:
    freq = char_frequencies()
    rank = {ch: i for i, (ch, _) in enumerate(freq.most_common())}
    top = [ch for ch, _ in freq.most_common(TOP)]
    similar = shape_groups()
    extra = sorted(set(similar) - set(top), key=lambda c: (rank.get(c, len(rank)), c))
    chars = top + extra
    order = {ch: i for i, ch in enumerate(chars)}

    by_reading: dict[str, list[str]] = defaultdict(list)
    readings = {}
    for ch in top:  # homophones come from the frequent set only, most frequent first
        syl = reading(ch)
        readings[ch] = syl
        if syl:
            by_reading[syl].append(ch)

    rows = []
    for ch in chars:
        syl = readings[ch] if ch in readings else reading(ch)
        homophones = [c for c in by_reading.get(syl, []) if c != ch][:MAX_HOMOPHONES]
        shapes = sorted(similar.get(ch, ()), key=lambda c: (order.get(c, len(order)), c))
        rows.append((ch, "".join(homophones), "".join(shapes)))
    return rows


def main() -> None:
    rows = build_rows()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    lines = ["char\thomophones\tsimilar_shape"] + ["\t".join(row) for row in rows]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with_homophones = sum(bool(h) for _, h, _ in rows)
    with_shapes = sum(bool(s) for _, _, s in rows)
    print(
        f"wrote {OUT}: {len(rows)} characters, {with_homophones} with homophones, "
        f"{with_shapes} with similar-shape variants ({len(SIMILAR_SHAPE)} groups)"
    )


if __name__ == "__main__":
    main()
