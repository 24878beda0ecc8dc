import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from verticalize.config import AugmentConfig, BackTranslationConfig
from verticalize.data.augment import augment_records, load_thesaurus, source_language
from verticalize.data.segment import Segmenter
from verticalize.errors import ConfigError, DataError

THESAURUS = {
    "患者": ["病人"],
    "服用": ["口服"],
    "血糖": ["血液葡萄糖"],
    "控制": ["管理"],
    "良好": ["不错"],
    "二甲双胍": ["格华止"],  # a synonym a protected term must never be swapped for
    "patient": ["sufferer"],
    "takes": ["uses"],
}
PROTECTED = {"二甲双胍", "2型糖尿病", "type 2 diabetes"}


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter()


def _record(rid: str, text: str, **extra) -> dict:
    return {
        "id": rid,
        "text": text,
        "label": "内分泌",
        "source": "a.csv",
        "line": 3,
        "meta": {},
    } | extra


def test_load_thesaurus_groups_and_cilin_codes(tmp_path):
    path = tmp_path / "syn.txt"
    path.write_text(
        "# word synonyms\n病人 患者 病患\nbig, large,huge\n"
        "Aa01A01= 人 士 人物\nAa01A02# 男人 女人\nAa01A03@ 孤\n",
        encoding="utf-8",
    )
    syn = load_thesaurus([path])
    assert syn["患者"] == ["病人", "病患"] and syn["病人"] == ["患者", "病患"]
    assert syn["large"] == ["big", "huge"]
    assert syn["人物"] == ["人", "士"]
    assert "男人" not in syn and "孤" not in syn and "Aa01A01=" not in syn


def test_word_ops_keep_protected_terms_and_origin_fields(segmenter):
    records = [
        _record("r1", "患者长期服用二甲双胍，血糖控制良好。", group="patient=7"),
        _record("r2", "2型糖尿病患者服用二甲双胍后血糖控制良好"),
        _record("r3", "The patient with type 2 diabetes takes metformin daily."),
    ]
    cfg = AugmentConfig(ops=["synonym", "insert", "delete", "swap"], copies=8, rate=0.5)
    result = augment_records(records, cfg, 13, PROTECTED, segmenter, THESAURUS)
    assert len(result.records) + sum(result.failed.values()) == 3 * 8
    assert set(result.made) == {"synonym", "insert", "delete", "swap"}
    by_id = {r["id"]: r for r in records}
    for new in result.records:
        origin = by_id[new["origin"]]
        assert new["id"].startswith(f"{origin['id']}~aug") and new["augmented"] is True
        assert new["op"] in cfg.ops and new["text"] != origin["text"]
        for key in ("label", "source", "line", "group"):
            assert new.get(key) == origin.get(key)
        for term in PROTECTED:
            assert new["text"].count(term) == origin["text"].count(term), (term, new)
        assert "格华止" not in new["text"]


def test_words_rejoin_with_spaces_in_english_and_none_in_chinese(segmenter):
    english = _record("e", "The patient takes metformin twice daily, at 8 am.")
    chinese = _record("c", "患者长期服用二甲双胍，血糖控制良好。")
    cfg = AugmentConfig(ops=["synonym"], rate=0.1)
    out = augment_records([english], cfg, 0, set(), segmenter, {"patient": ["sufferer"]})
    assert out.records[0]["text"] == "The sufferer takes metformin twice daily, at 8 am."
    cfg = AugmentConfig(ops=["swap", "delete", "insert"], copies=6, rate=0.3)
    for new in augment_records([english, chinese], cfg, 1, set(), segmenter, THESAURUS).records:
        if new["origin"] == "e":
            assert "  " not in new["text"] and not re.search(r"\s[,.]", new["text"]), new
            assert re.search(r"[a-z] [a-z]", new["text"])
        else:
            assert " " not in new["text"]


def test_seeded_share_copies_and_skips(segmenter):
    records = [_record(f"r{i}", f"患者服用二甲双胍第{i}天，血糖控制良好。") for i in range(10)]
    records.append(_record("ner", "患者服用二甲双胍", spans=[[4, 8, "DRUG"]]))
    records.append(_record("old~aug1", "患者服用二甲双胍", augmented=True, origin="old"))
    cfg = AugmentConfig(ops=["synonym", "swap"], copies=2, share=0.5)
    first = augment_records(records, cfg, 7, PROTECTED, segmenter, THESAURUS)
    again = augment_records(records, cfg, 7, PROTECTED, segmenter, THESAURUS)
    other = augment_records(records, cfg, 8, PROTECTED, segmenter, THESAURUS)
    assert first == again and first.records != other.records
    origins = {r["origin"] for r in first.records}
    assert len(origins) + first.failed["ner_spans"] // 2 == 6  # round(0.5 * 11 candidates)
    assert "old~aug1" not in origins and all(r["id"][-5:-1] == "~aug" for r in first.records)
    assert {r["id"][-1] for r in first.records} == {"1", "2"}


# a deterministic "model": phrase-by-phrase dictionary translation, as a real server answers
ZH_EN = {"病人": "patient", "服用": "takes", "二甲双胍": "metformin", "后": "after"}
ZH_EN |= {"血糖": "blood sugar", "下降": "fell", "头痛": "headache"}
EN_ZH = {"patient": "患者", "takes": "口服", "metformin": "二甲双胍", "after": "后"}
EN_ZH |= {"blood sugar": "血糖", "fell": "降低", "headache": "头疼"}


def _translate(text: str, language: str) -> str:
    if language == "English":
        out, i = [], 0
        while i < len(text):
            match = next(
                (k for k in sorted(ZH_EN, key=len, reverse=True) if text.startswith(k, i)), None
            )
            out.append(ZH_EN[match] if match else text[i])
            i += len(match) if match else 1
        return " ".join(out)
    words, out = text.split(), []
    while words:
        pair = " ".join(words[:2])
        out.append(EN_ZH[pair] if pair in EN_ZH else EN_ZH.get(words[0], words[0]))
        words = words[2:] if pair in EN_ZH else words[1:]
    return "".join(out)


class _ChatHandler(BaseHTTPRequestHandler):
    requests: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, self.headers.get("Authorization"), body))
        if self.path.startswith("/bad/"):
            return self._send(200, b"<html>not an API</html>")
        if self.path != "/v1/chat/completions":
            return self._send(404, b"{}")
        prompt = body["messages"][-1]["content"]
        language, text = re.fullmatch(r"Translate into (\w+):\n(.*)", prompt, re.S).groups()
        if "故障" in text:
            return self._send(500, b'{"error": "model crashed"}')
        answer = {
            "choices": [{"message": {"role": "assistant", "content": _translate(text, language)}}]
        }
        self._send(200, json.dumps(answer).encode())

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def chat_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _bt(url: str, **extra) -> AugmentConfig:
    settings = {"url": url, "model": "mt-small", "timeout": 5} | extra
    return AugmentConfig(
        ops=["back_translation"], back_translation=BackTranslationConfig(**settings)
    )


def test_back_translation_round_trip_on_a_local_server(chat_server, segmenter, monkeypatch):
    monkeypatch.setenv("MT_KEY", "secret")
    _ChatHandler.requests.clear()
    records = [
        _record("ok", "病人服用二甲双胍后血糖下降"),
        _record("crash", "病人服用故障药后血糖下降"),
        _record("lost", "病人服用二甲双胍后头痛"),
    ]
    cfg = _bt(f"{chat_server}/v1/", api_key_env="MT_KEY")
    result = augment_records(records, cfg, 0, {"二甲双胍", "头痛"}, segmenter, {})
    assert [(r["id"], r["text"], r["op"]) for r in result.records] == [
        ("ok~aug1", "患者口服二甲双胍后血糖降低", "back_translation")
    ]
    assert result.failed == {
        "back_translation_http_500": 1,
        "back_translation_lost_a_protected_term": 1,
    }
    path, auth, body = _ChatHandler.requests[0]
    assert path == "/v1/chat/completions" and auth == "Bearer secret"
    assert body["model"] == "mt-small" and body["temperature"] == 0
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][1]["content"] == "Translate into English:\n病人服用二甲双胍后血糖下降"
    assert _ChatHandler.requests[1][2]["messages"][1]["content"].startswith(
        "Translate into Chinese:"
    )


def test_back_translation_errors_name_the_endpoint(chat_server, segmenter, monkeypatch):
    records = [_record("a", "病人服用二甲双胍后血糖下降")]
    with pytest.raises(DataError, match=re.escape(f"{chat_server}/bad/v1/chat/completions")):
        augment_records(records, _bt(f"{chat_server}/bad/v1"), 0, set(), segmenter, {})
    with pytest.raises(DataError, match="HTTP 404"):
        augment_records(records, _bt(chat_server), 0, set(), segmenter, {})
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR"):
        augment_records(
            records, _bt(chat_server, api_key_env="NO_SUCH_KEY_VAR"), 0, set(), segmenter, {}
        )


def test_unreachable_endpoint_is_a_data_error_naming_the_url(segmenter):
    with socket.socket() as sock:  # a port nothing listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(DataError, match=rf"{re.escape(url)}/chat/completions is unreachable"):
        augment_records([_record("a", "病人头痛")], _bt(url), 0, set(), segmenter, {})


def test_source_language_detection():
    assert source_language("患者服用 metformin 后血糖下降") == "Chinese"
    assert source_language("The patient takes 二甲双胍 daily") == "English"
