"""Build tests/data/pii_cases.jsonl: labelled PII cases for the kinds added in issue 20
(addresses, plates, names before a title, SSN, IPv6, IDN e-mail, HK / Macau / Taiwan IDs,
credit codes) and hard negatives (drug approval numbers, orders, dates, dosages, times…).

Values are drawn at random and their check digits computed here, independently of the
detectors; each kind appears in several formats, sentence positions and languages, and
every sentence frame is also used with a near-miss value (a wrong check digit, a void SSN
area, an admin area without a street). Seeded: the file is the same on every run.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "pii_cases.jsonl"
R = random.Random(20)


# ---------------------------------------------------------------- values


def ssn(valid: bool = True) -> str:
    if valid:
        area = R.choice([R.randint(1, 665), R.randint(667, 899)])
        group, serial = R.randint(1, 99), R.randint(1, 9999)
    else:
        area, group, serial = R.choice(
            [
                (0, R.randint(1, 99), 1234),
                (666, 12, 3456),
                (R.randint(900, 999), 45, 6789),
                (123, 0, 4567),
                (321, 54, 0),
            ]
        )
    return f"{area:03d}-{group:02d}-{serial:04d}"


def ipv6() -> str:
    groups = [f"{R.randint(0, 0xFFFF):x}" for _ in range(8)]
    if R.random() < 0.3:
        groups = ["2001", "db8", *groups[2:]]
    style = R.choice(["full", "zero", "compress", "upper", "v4"])
    if style == "zero":
        groups = [g.zfill(4) for g in groups]
    if style in ("compress", "v4"):
        i = R.randint(1, 5)
        head, tail = groups[:i], groups[i + R.randint(1, 2) :]
        if style == "v4":
            v4 = ".".join(str(R.randint(1, 254)) for _ in range(4))
            return "::ffff:" + v4 if R.random() < 0.5 else ":".join(head) + "::" + v4
        return ":".join(head) + "::" + ":".join(tail)
    text = ":".join(groups)
    return text.upper() if style == "upper" else text


_HK_VALUE = {c: i + 10 for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}


def hk_id(valid: bool = True, paren: bool = True) -> str:
    letters = "".join(R.choice("ABCDEGHKMPRVWYZ") for _ in range(R.choice([1, 1, 1, 2])))
    digits = "".join(str(R.randint(0, 9)) for _ in range(6))
    vals = ([36] if len(letters) == 1 else []) + [_HK_VALUE[c] for c in letters]
    vals += [int(d) for d in digits]
    total = sum(v * (9 - i) for i, v in enumerate(vals))
    check = (11 - total % 11) % 11
    check = (check + R.randint(1, 9)) % 11 if not valid else check
    c = "A" if check == 10 else str(check)
    return f"{letters}{digits}({c})" if paren else f"{letters}{digits}{c}"


_TW_CODE = dict(zip("ABCDEFGHJKLMNPQRSTUVXYWZIO", range(10, 36), strict=True))


def tw_id(valid: bool = True) -> str:
    letter = R.choice("ABCDEFGHJKLMNPQRSTUVXYWZ")
    body = R.choice("12") + "".join(str(R.randint(0, 9)) for _ in range(7))
    code = _TW_CODE[letter]
    total = (
        code // 10
        + 9 * (code % 10)
        + sum(int(d) * w for d, w in zip(body, range(8, 0, -1), strict=True))
    )
    check = (10 - total % 10) % 10
    if not valid:
        check = (check + R.randint(1, 9)) % 10
    return f"{letter}{body}{check}"


def mo_id() -> str:
    return f"{R.choice('157')}{R.randint(0, 999999):06d}({R.randint(0, 9)})"


_USCC = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_W = [pow(3, i, 31) for i in range(17)]


def uscc(valid: bool = True) -> str:
    head = R.choice("159Y") + R.choice("1239")
    region = R.choice(["110108", "310115", "440300", "330106", "510107", "350100", "120116"])
    org = "".join(R.choice(_USCC) for _ in range(9))
    body = head + region + org
    check = (31 - sum(_USCC.index(c) * w for c, w in zip(body, _USCC_W, strict=True)) % 31) % 31
    if not valid:
        check = (check + R.randint(1, 30)) % 31
    return body + _USCC[check]


_PROV = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PL = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def plate() -> str:
    p, letter = R.choice(_PROV), R.choice(_PL)
    kind = R.choice(["plain", "plain", "nev_small", "nev_large", "letters"])
    if kind == "nev_small":
        serial = R.choice("DF") + R.choice(_PL + "0123456789") + f"{R.randint(0, 9999):04d}"
    elif kind == "nev_large":
        serial = f"{R.randint(0, 99999):05d}" + R.choice("DF")
    elif kind == "letters":
        serial = R.choice(_PL) + f"{R.randint(0, 999):03d}" + R.choice(_PL + "0123456789")
    else:
        serial = f"{R.randint(0, 99999):05d}"
    sep = R.choice(["", "", "·", " "])
    return f"{p}{letter}{sep}{serial}"


_PLACES = [
    ("浙江省", "杭州市", "西湖区"),
    ("广东省", "深圳市", "南山区"),
    ("", "北京市", "朝阳区"),
    ("", "上海市", "浦东新区"),
    ("江苏省", "南京市", "鼓楼区"),
    ("四川省", "成都市", "武侯区"),
    ("湖北省", "武汉市", "洪山区"),
    ("", "重庆市", "渝中区"),
    ("山东省", "青岛市", "市南区"),
    ("河南省", "郑州市", "金水区"),
    ("福建省", "厦门市", "思明区"),
    ("陕西省", "西安市", "雁塔区"),
    ("辽宁省", "大连市", "中山区"),
    ("湖南省", "长沙市", "岳麓区"),
    ("云南省", "昆明市", "五华区"),
    ("广东省", "广州市", "天河区"),
    ("", "天津市", "和平区"),
    ("安徽省", "合肥市", "蜀山区"),
]
_ROADS = "人民路 中山北路 解放大道 建设街 文三路 科苑路 长江西路 学府大街 和平里 幸福巷".split()


def address() -> str:
    prov, city, dist = R.choice(_PLACES)
    parts = R.choice([[prov, city, dist], [city, dist], [prov, city], [city], [dist]])
    road = R.choice(_ROADS)
    number = R.choice(
        [
            f"{R.randint(1, 999)}号",
            f"{R.randint(1, 300)}号{R.randint(1, 30)}栋{R.randint(1, 6)}单元"
            f"{R.randint(1, 30)}0{R.randint(1, 4)}室",
            f"{R.randint(1, 200)}弄{R.randint(1, 40)}号",
            f"{R.randint(1, 99)}号院{R.randint(1, 12)}号楼",
            f"{R.randint(1, 500)}号{R.randint(2, 28)}楼",
        ]
    )
    return "".join(parts) + road + number


_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐"
_GIVEN = "建国伟芳娜秀英敏静丽强磊军洋勇艳杰涛明超霞平刚桂兰志华"
_TITLES = "先生 女士 医生 大夫 老师 主任 教授 经理 护士 阿姨 师傅".split()


def name_title(full: bool = True) -> tuple[str, str]:
    name = R.choice(_SURNAMES)
    if full:
        name += "".join(R.choice(_GIVEN) for _ in range(R.choice([1, 2])))
    return name, R.choice(_TITLES)


_IDN = [
    "张伟@例子.中国",
    "用户@邮件.公司",
    "josé.garcía@correo.es",
    "müller@bücher.de",
    "иван@почта.рф",
    "info@münchen.de",
    "contact@大学.中国",
    "李娜@公司.香港",
    "françois@société.fr",
    "søren@kø.dk",
    "admin@пример.рф",
    "王芳@网络.中国",
]


# ---------------------------------------------------------------- frames

POSITIVE = {
    "ssn": [
        "My SSN is {v}.",
        "SSN: {v}",
        "Patient social security number {v} on file.",
        "{v} is the SSN we have for you",
        "Please verify SSN ({v}) before the visit.",
        "患者美国社保号 {v}，请核对。",
    ],
    "ipv6": [
        "Login from {v} was blocked.",
        "服务器地址 {v} 无法访问。",
        "{v} is the gateway",
        "client={v} path=/records",
        "IPv6：{v}，端口 443",
    ],
    "email": [
        "邮箱：{v}",
        "Email me at {v}.",
        "请发送至 {v} 谢谢",
        "Contact: {v}, tel below",
        "联系方式 {v}（工作日回复）",
    ],
    "hk_id": [
        "香港身份证号码 {v}",
        "HKID {v} verified.",
        "持证人证件号：{v}，有效",
        "ID card no. {v}",
        "{v} 为申请人身份证号",
    ],
    "tw_id": [
        "台湾身份证字号 {v}",
        "身分證字號：{v}",
        "Taiwan ID {v} on record.",
        "證號{v}，請核對",
    ],
    "mo_id": [
        "澳门居民身份证 {v}",
        "Macau ID card: {v}",
        "澳門身份證編號{v}",
        "BIR {v} (Macau)",
    ],
    "uscc": [
        "统一社会信用代码：{v}",
        "企业信用代码 {v}，法定代表人见附件",
        "USCC {v} registered.",
        "{v}（统一社会信用代码）",
        "供应商代码{v}已备案",
    ],
    "plate": [
        "车牌号 {v}",
        "送检车辆{v}停在B2层",
        "The car ({v}) was towed.",
        "{v}违章停车，请挪车",
        "陪诊车辆：{v}，司机在门口",
    ],
    "cn_address": [
        "住址：{v}",
        "家住{v}，电话见病历",
        "请寄到{v}，谢谢",
        "患者现住{v}。",
        "收货地址：{v}（工作日收货）",
        "{v}的住户反映噪音问题",
    ],
}

NEGATIVE = [
    "国药准字H20044455，每次{n}片，每日3次。",
    "批准文号：国药准字Z{d8}",
    "订单号 {d16} 已发货",
    "订单编号：{d12}，请保留",
    "复查日期 2024-03-15，剂量 0.5 mg",
    "2023年12月15日 门诊",
    "阿莫西林胶囊 0.25g×24粒，口服",
    "剂量 500 mg bid × 7 d",
    "Order #{d9} shipped on 2024-02-01",
    "Invoice 2023-{d4}-{d4} paid",
    "Meeting at 12:30:45 in room 3",
    "MAC 00:1A:2B:3C:4D:5E reset",
    "Ratio 3:2:1 by volume",
    "call std::vector::push_back here",
    "批号 {d8}，有效期至2026-06",
    "体温 36.5℃，血压 120/80 mmHg",
    "杭州市西湖区天气晴朗",
    "北京市朝阳区卫健委发布通知",
    "上海市第一人民医院心内科",
    "医生建议多喝水",
    "先生们女士们，请入座",
    "李白的诗很好",
    "型号A12345，规格 10ml",
    "京东订单 {d12}",
    "粤语版本已上线",
    "沪深300指数上涨1.2%",
    "ZIP 94105-1234, suite 200",
    "Call 555-123-4567 for refills",
    "Test code 912-34-5678 (ITIN)",
    "SSN field left blank (000-00-0000)",
    "品号 ISBN 978-7-111-{d5}-3",
    "产品序列号 SN{d10}",
    "@张三 你好，明天见",
    "微博@人民日报 发布消息",
    "第{n}条 规定如下",
    "Lot AB1234567 expired",
    "Version 2.0.1.4 released",
    "Dose: 1-2 tablets every 4-6 hours",
    "编号 Q/{d6}-2023",
    "邮编 310012，区号 0571",
    "医保卡余额 {n}.50 元",
    "病历号 ZY{d8} 已归档",
]


def _digits(n: int) -> str:
    return str(R.randint(1, 9)) + "".join(str(R.randint(0, 9)) for _ in range(n - 1))


def _fill_negative(frame: str) -> str:
    return frame.format(
        n=R.randint(1, 9),
        d4=_digits(4),
        d5=_digits(5),
        d6=_digits(6),
        d8=_digits(8),
        d9=_digits(9),
        d10=_digits(10),
        d12=_digits(12),
        d16=_digits(16),
    )


def _case(frame: str, value: str, kind: str | None) -> dict:
    start = frame.index("{v}")
    text = frame.replace("{v}", value)
    spans = [[start, start + len(value), kind]] if kind else []
    return {"text": text, "entities": spans}


def build() -> list[dict]:
    makers = {
        "ssn": (lambda: ssn(True), lambda: ssn(False)),
        "ipv6": (ipv6, None),
        "email": (lambda: R.choice(_IDN), None),
        "hk_id": (lambda: hk_id(True, R.random() < 0.7), lambda: hk_id(False)),
        "tw_id": (lambda: tw_id(True), lambda: tw_id(False)),
        "mo_id": (mo_id, None),
        "uscc": (lambda: uscc(True), lambda: uscc(False)),
        "plate": (plate, None),
        "cn_address": (address, None),
    }
    cases = []
    for kind, frames in POSITIVE.items():
        good, bad = makers[kind]
        for _ in range(8):
            for frame in frames:
                cases.append(_case(frame, good(), kind))
        if bad is not None:  # the same frames with a value whose check fails
            for frame in frames:
                cases.append(_case(frame, bad(), None))
    for _ in range(50):  # names before a title, full or surname only, in several frames
        name, title = name_title(R.random() < 0.7)
        frame = R.choice(
            [
                "请{v}{t}到3号诊室",
                "今天{v}{t}值班。",
                "感谢{v}{t}的耐心解答",
                "{v}{t}，您好！",
                "患者家属找{v}{t}签字",
            ]
        )
        start = frame.index("{v}")
        text = frame.replace("{v}", name).replace("{t}", title)
        cases.append({"text": text, "entities": [[start, start + len(name), "cn_name"]]})
    for _ in range(3):
        for frame in NEGATIVE:
            cases.append({"text": _fill_negative(frame), "entities": []})
    # two kinds in one sentence, to test position and overlap
    for _ in range(20):
        a, p = address(), plate()
        text = f"车主住在{a}，车牌{p}。"
        s1 = text.index(a)
        s2 = text.index(p, s1 + len(a))
        cases.append(
            {
                "text": text,
                "entities": [[s1, s1 + len(a), "cn_address"], [s2, s2 + len(p), "plate"]],
            }
        )
    R.shuffle(cases)
    return cases


def main() -> None:
    cases = build()
    with open(OUT, "w", encoding="utf-8") as fh:
        for c in cases:
            fh.write(json.dumps(c, ensure_ascii=False) + "\n")
    print(json.dumps({"cases": len(cases), "file": str(OUT)}))


if __name__ == "__main__":
    main()
