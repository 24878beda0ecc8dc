"""PII desensitization (D5): validators, detection, the four actions, spans, k-anonymity,
the key file and encryption at rest."""

import os
import stat
from pathlib import Path

import pytest

from verticalize.config import PiiConfig
from verticalize.data.crypto import (
    decrypt_file,
    decrypt_lines,
    derive_key,
    encrypt_file,
    load_or_create_key,
    read_vault,
    write_vault,
)
from verticalize.data.pii import PiiMasker, detect_pii, k_anonymity, reidentify, score_detection
from verticalize.data.pii_detect import id_card_check_char, id_card_valid, luhn_valid
from verticalize.errors import ConfigError, DataError
from verticalize.runfolder import read_jsonl

LABELLED = Path(__file__).parent / "data" / "pii_labelled.jsonl"
KEY = bytes(range(32))
ID_BODY = "11010519491231002"  # the GB 11643 standard's own worked example
ID = ID_BODY + "X"
CARD = "4111111111111111"


def found(text: str, kinds=("id_card", "mobile", "landline", "email", "bank_card", "ipv4")):
    return [(m.kind, m.value) for m in detect_pii(text, kinds)]


def test_id_card_checksum_and_birth_date():
    assert id_card_check_char(ID_BODY) == "X"
    assert id_card_valid(ID) and id_card_valid(ID.lower())
    assert not id_card_valid(ID_BODY + "1")  # wrong check character
    assert not id_card_valid("11010519491331002" + id_card_check_char("11010519491331002"))
    assert id_card_valid("110105491231002")  # legacy 15 digits, 1949-12-31
    assert not id_card_valid("110105491341002")  # month 13
    assert found(f"身份证{ID_BODY}1号") == []


def test_luhn():
    assert luhn_valid(CARD) and luhn_valid("6222021234567894")
    assert not luhn_valid("4111111111111112")
    assert found(f"卡号 {CARD} 与 4111 1111 1111 1112") == [("bank_card", CARD)]
    assert found("卡号 4111-1111-1111-1111。") == [("bank_card", "4111-1111-1111-1111")]


def test_numbers_inside_longer_digit_runs_are_not_pii():
    assert found(f"流水号123{ID}4567") == []
    assert found("批次号991381234567800") == []
    assert found(f"号码9{CARD}0") == []
    assert found("999.1.1.1 和 10.0.0.256") == []
    assert found("ip 10.0.0.25 ok") == [("ipv4", "10.0.0.25")]


def test_full_width_digits_keep_original_offsets():
    wide = "１３８１２３４５６７８"
    text = (
        f"电话：{wide}，身份证{ID.translate(str.maketrans('0123456789', '０１２３４５６７８９'))}"
    )
    matches = detect_pii(text, ["mobile", "id_card"])
    assert [(m.kind, m.start, m.end) for m in matches] == [("mobile", 3, 14), ("id_card", 18, 36)]
    assert matches[0].value == wide and text[matches[1].start : matches[1].end] == matches[1].value


def test_phone_formats():
    text = "手机+86 138-1234-5678，座机(010)62345678或0755-82345678，热线400-123-4567"
    assert found(text) == [
        ("mobile", "+86 138-1234-5678"),
        ("landline", "(010)62345678"),
        ("landline", "0755-82345678"),
        ("landline", "400-123-4567"),
    ]


def test_names_in_context_keep_the_title():
    text = "患者张三因发热入院，请李先生到3号诊室。Dr. Jane Smith saw patient Tom Lee."
    names = [(m.kind, m.value) for m in detect_pii(text, ["cn_name", "en_name"])]
    assert names == [
        ("cn_name", "张三"),
        ("cn_name", "李"),
        ("en_name", "Jane Smith"),
        ("en_name", "Tom Lee"),
    ]
    assert detect_pii("医生查房后说明天复查", ["cn_name"]) == []


TEXT = f"患者张三，身份证{ID}，手机13812345678，邮箱zhang@example.com，IP 192.168.1.10"


def test_mask():
    masker = PiiMasker(PiiConfig(action="mask"))
    out, matches = masker.apply(TEXT)
    assert out == (
        "患者张*，身份证110105********002X，手机138****5678，邮箱z****@example.com，IP 192.*.*.*"
    )
    assert len(matches) == 5 and masker.counts["mobile"] == 1


def test_redact():
    out, _ = PiiMasker(PiiConfig(action="redact", kinds=["id_card", "email"])).apply(TEXT)
    assert out == "患者张三，身份证[ID_CARD]，手机13812345678，邮箱[EMAIL]，IP 192.168.1.10"


def test_hash_is_keyed_and_consistent():
    cfg = PiiConfig(action="hash", kinds=["mobile"])
    a, _ = PiiMasker(cfg, KEY).apply("13812345678 / 138-1234-5678 / 13912345678")
    digests = a.split(" / ")
    assert digests[0] == digests[1] != digests[2]  # one number, two spellings, one digest
    assert digests[0].startswith("[MOBILE:") and "1381234" not in a
    other, _ = PiiMasker(cfg, bytes(32)).apply("13812345678")
    assert other != digests[0]


def test_pseudonym_round_trip_and_wrong_key(tmp_path):
    masker = PiiMasker(PiiConfig(action="pseudonym"), KEY)
    out, _ = masker.apply(TEXT)
    assert "13812345678" not in out and "<MOBILE_" in out
    write_vault(tmp_path / "vault.jsonl", masker.vault)
    vault = read_vault(tmp_path / "vault.jsonl")
    assert stat.S_IMODE(os.stat(tmp_path / "vault.jsonl").st_mode) == 0o600
    assert reidentify(out, vault, KEY) == TEXT
    with pytest.raises(DataError, match="wrong key"):
        reidentify(out, vault, bytes(32))
    with pytest.raises(ConfigError, match="key_file"):
        PiiMasker(PiiConfig(action="pseudonym"), None)


def test_record_spans_follow_replacements_and_meta_fields():
    record = {
        "text": "患者张三头痛，电话13812345678。",
        "spans": [[0, 2, "ROLE"], [2, 4, "PER"], [4, 6, "SYM"], [3, 5, "X"], [9, 20, "TEL"]],
        "meta": {"doctor": "李华医生", "note": "患者王五", "age": 40},
    }
    out = PiiMasker(PiiConfig(action="redact")).apply_to_record(record, ["doctor"])
    assert out["text"] == "患者[CN_NAME]头痛，电话[MOBILE]。"
    spans = {tag: out["text"][s:e] for s, e, tag in out["spans"]}
    assert spans == {
        "ROLE": "患者",
        "PER": "[CN_NAME]",
        "SYM": "头痛",
        "X": "[CN_NAME]头",
        "TEL": "[MOBILE]",
    }
    assert out["meta"] == {"doctor": "[CN_NAME]医生", "note": "患者王五", "age": 40}
    every = PiiMasker(PiiConfig(action="redact")).apply_to_record(record, None)
    assert every["meta"]["note"] == "患者[CN_NAME]"
    assert record["text"].startswith("患者张三")  # the input record is not modified


def test_k_anonymity_counts_only():
    rows = [{"age": "30-39", "city": "Beijing"}] * 3 + [{"age": "40-49", "city": "Shanghai"}] * 2
    rows += [{"age": "50-59", "city": "Wuhan"}]
    report = k_anonymity(rows, ["age", "city"], target=3)
    assert report["k"] == 1 and report["n_classes"] == 3 and report["n_records"] == 6
    assert report["n_classes_below_target"] == 2 and report["n_records_below_target"] == 3
    assert not report["meets_target"]
    assert "Wuhan" not in str(report) and "30-39" not in str(report)


def test_detection_quality_on_labelled_set():
    examples = read_jsonl(LABELLED)
    assert len(examples) >= 150
    score = score_detection(examples)
    assert score["n_entities"] >= 200
    assert score["precision"] >= 0.9, score["errors"]
    assert score["recall"] >= 0.9, score["errors"]


def test_key_file_outside_run_folder_only(tmp_path):
    run = tmp_path / "runs" / "demo"
    with pytest.raises(ConfigError, match="inside the run folder"):
        load_or_create_key(run / "data" / "key", run)
    key, created = load_or_create_key(tmp_path / "secrets" / "key", run)
    assert created and len(key) == 32
    assert stat.S_IMODE(os.stat(tmp_path / "secrets" / "key").st_mode) == 0o600
    assert load_or_create_key(tmp_path / "secrets" / "key", run) == (key, False)
    os.chmod(tmp_path / "secrets" / "key", 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_key(tmp_path / "secrets" / "key", run)
    assert len({derive_key(key, p) for p in ("file", "pii-token", "pii-vault")}) == 3


@pytest.fixture
def encrypted(tmp_path):
    plain = tmp_path / "train.jsonl"
    lines = [f'{{"text": "第{i}条记录 ünïcode {"x" * (i % 50)}"}}\n' for i in range(300)]
    plain.write_text("".join(lines), encoding="utf-8")
    enc = tmp_path / "train.jsonl.enc"
    encrypt_file(plain, enc, KEY, chunk_bytes=1000)  # ~20 chunks, characters split across them
    return plain, enc, lines


def test_encryption_round_trip_multi_chunk(encrypted, tmp_path):
    plain, enc, lines = encrypted
    assert b"ecode" not in enc.read_bytes()
    assert list(decrypt_lines(enc, KEY)) == lines
    decrypt_file(enc, tmp_path / "back.jsonl", KEY)
    assert (tmp_path / "back.jsonl").read_bytes() == plain.read_bytes()


def test_tampering_truncation_and_wrong_key_are_detected(encrypted, tmp_path):
    _, enc, _ = encrypted
    data = enc.read_bytes()
    flipped = tmp_path / "flipped.enc"
    flipped.write_bytes(data[:5000] + bytes([data[5000] ^ 1]) + data[5001:])
    cut = tmp_path / "cut.enc"
    cut.write_bytes(data[: 18 + 4 * (4 + 1016)])  # header + the first four whole chunks
    for path, key in ((flipped, KEY), (cut, KEY), (enc, bytes(32))):
        with pytest.raises(DataError, match="wrong key or the file was modified"):
            list(decrypt_lines(path, key))
    with pytest.raises(DataError):
        decrypt_file(flipped, tmp_path / "out.jsonl", KEY)
    assert not (tmp_path / "out.jsonl").exists()
