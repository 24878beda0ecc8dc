import hmac
import math
import os
import stat
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verticalize.data.pii_detect import id_card_check_char
from verticalize.errors import ServeError
from verticalize.serve import security
from verticalize.serve.security import (
    AllowList,
    Key,
    KeyStore,
    RateLimiter,
    add_key,
    hash_key,
    mask_for_log,
    new_key,
)

ID = "11010519491231002" + id_card_check_char("11010519491231002")  # GB 11643's example


def test_hash_key_is_salted_sha256():
    salt = bytes(range(16))
    h = hash_key("vz-secret", salt)
    algo, salt_hex, digest = h.split("$")
    assert (algo, salt_hex, len(digest)) == ("sha256", salt.hex(), 64)
    assert hash_key("vz-secret", salt) == h
    assert hash_key("vz-secret") != hash_key("vz-secret")  # a fresh salt each time
    assert hash_key("vz-other", salt) != h


def test_new_keys_are_long_and_distinct():
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("vz-") and len(k) == 46 for k in keys)


def test_add_key_creates_a_private_file_and_verifies(tmp_path):
    path = tmp_path / "conf" / "api-keys"
    user = add_key(path, "billing", "user")
    admin = add_key(path, "ops", role="admin")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert user not in text and admin not in text  # only hashes at rest
    assert [line.split(":")[:2] for line in text.splitlines()] == [
        ["billing", "user"],
        ["ops", "admin"],
    ]
    store = KeyStore.from_file(path)
    assert store.enabled
    assert store.verify(user) == Key("billing", "user")
    assert store.verify(admin) == Key("ops", "admin")
    assert store.verify(user + "x") is None
    assert store.verify("") is None and store.verify(None) is None
    assert store.verify("x" * 10_000) is None


def test_add_key_refuses_duplicates_and_bad_ids(tmp_path):
    path = tmp_path / "keys"
    add_key(path, "a")
    with pytest.raises(ServeError, match="already exists"):
        add_key(path, "a")
    with pytest.raises(ServeError, match="--id"):
        add_key(path, "has:colon")
    with pytest.raises(ServeError, match="--role"):
        add_key(path, "b", role="root")
    assert len(path.read_text().splitlines()) == 1


def test_add_key_after_a_line_without_newline(tmp_path):
    path = tmp_path / "keys"
    first = add_key(path, "a")
    path.write_text(path.read_text().rstrip("\n"))  # edited by hand, no final newline
    second = add_key(path, "b")
    store = KeyStore.from_file(path)
    assert store.verify(first).id == "a" and store.verify(second).id == "b"


@pytest.mark.parametrize(
    "line, message",
    [
        ("justakey", "expected '<key_id>:<role>:<hash>'"),
        ("a:root:sha256$00$" + "0" * 64, "role 'root'"),
        ("a:user:vz-rawkeyvalue", "no valid 'sha256"),
        ("a:user:sha256$zz$" + "0" * 64, "no valid 'sha256"),
        ("a:user:sha256$00$abcd", "no valid 'sha256"),
        ("bad id:user:sha256$00$" + "0" * 64, "key id 'bad id'"),
    ],
)
def test_bad_keys_file_line_names_file_line_and_fix(tmp_path, line, message):
    path = tmp_path / "keys"
    good = "ok:user:" + hash_key("k")
    path.write_text(f"# comment\n\n{good}\n{line}\n")
    with pytest.raises(ServeError) as e:
        KeyStore.from_file(path)
    assert f"{path}:4" in str(e.value)
    assert message in str(e.value)
    assert "verticalize keys add" in str(e.value)


def test_duplicate_ids_and_missing_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"a:user:{hash_key('x')}\na:admin:{hash_key('y')}\n")
    with pytest.raises(ServeError, match=rf"{path}:2: key id 'a' is already used at {path}:1"):
        KeyStore.from_file(path)
    with pytest.raises(ServeError, match="not found.*verticalize keys add"):
        KeyStore.from_file(tmp_path / "missing")


def test_keys_from_environment(monkeypatch):
    monkeypatch.delenv(security.ENV_KEYS, raising=False)
    assert not KeyStore.from_env().enabled
    assert KeyStore.from_env().verify("anything") is None
    monkeypatch.setenv(security.ENV_KEYS, f"a:user:{hash_key('ka')},b:admin:{hash_key('kb')}")
    store = KeyStore.load(None)
    assert store.verify("kb") == Key("b", "admin") and store.verify("ka") == Key("a", "user")
    monkeypatch.setenv(security.ENV_KEYS, f"a:user:{hash_key('ka')},oops")
    with pytest.raises(ServeError, match=r"\$VERTICALIZE_API_KEYS entry 2"):
        KeyStore.from_env()


def test_verify_compares_every_entry_even_after_a_match(monkeypatch, tmp_path):
    path = tmp_path / "keys"
    first = add_key(path, "first")
    for i in range(4):
        add_key(path, f"k{i}")
    store = KeyStore.from_file(path)
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", counting)
    assert store.verify(first).id == "first"
    assert len(calls) == 5  # no early exit on the first entry's match


def test_rate_limit_window_and_headers():
    limiter = RateLimiter(3)
    for t in (0.5, 1.0, 2.0):
        assert limiter.check("a", now=t).allowed
    denied = limiter.check("a", now=10.0)
    assert not denied.allowed and denied.remaining == 0
    assert denied.reset_s == pytest.approx(50.5)
    assert denied.retry_after_s == 51
    assert denied.headers() == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "51",
        "Retry-After": "51",
    }
    assert limiter.check("b", now=10.0).allowed  # keys are independent
    assert not limiter.check("a", now=60.49).allowed
    ok = limiter.check("a", now=60.5)  # the call at 0.5 left the window
    assert ok.allowed and ok.remaining == 0 and "Retry-After" not in ok.headers()
    assert ok.reset_s == pytest.approx(1.0 + 60 - 60.5)


def test_rate_limit_off():
    limiter = RateLimiter(0)
    decisions = [limiter.check("a", now=1.0) for _ in range(1000)]
    assert all(d.allowed for d in decisions)
    assert decisions[-1].headers() == {}


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 5),
    gaps=st.lists(st.floats(0, 40, allow_nan=False), min_size=1, max_size=60),
)
def test_rate_limit_is_exact(limit, gaps):
    """At most `limit` allowed in any 60 s window, and a call is denied only when the
    window before it is full."""
    limiter = RateLimiter(limit)
    now, allowed = 0.0, []
    for gap in gaps:
        now += gap
        d = limiter.check("k", now=now)
        in_window = [t for t in allowed if t > now - 60]
        assert d.allowed == (len(in_window) < limit)
        if d.allowed:
            allowed.append(now)
        else:
            assert d.retry_after_s == max(1, math.ceil(min(in_window) + 60 - now))
    for i in range(len(allowed) - limit):
        assert allowed[i + limit] - allowed[i] >= 60


def test_rate_limit_is_thread_safe():
    limiter = RateLimiter(50)
    results: list[bool] = []
    lock = threading.Lock()

    def hammer():
        mine = [limiter.check("shared", now=5.0).allowed for _ in range(40)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 320 and sum(results) == 50


def test_allow_list():
    allow = AllowList(["10.0.0.0/8", "192.168.1.7", "fd00::/8"])
    assert allow.allows("10.1.2.3")
    assert allow.allows("192.168.1.7") and not allow.allows("192.168.1.8")
    assert allow.allows("fd12::1") and not allow.allows("fe80::1")
    assert allow.allows("::ffff:10.9.8.7")  # IPv4-mapped IPv6 matches the IPv4 network
    assert not allow.allows("::ffff:11.0.0.1")
    for bad in ("testclient", "", None, "10.0.0.300", "10.0.0.1/32"):
        assert not allow.allows(bad)
    assert AllowList(["0.0.0.0/0", "::/0"]).allows("203.0.113.9")
    assert not AllowList([]).allows("127.0.0.1")


def test_bad_cidr_names_the_entry_and_the_fix():
    with pytest.raises(ServeError, match=r"allow_cidrs\[1\]: '10.0.0.1/8'.*write 10.0.0.0/8"):
        AllowList(["127.0.0.1", "10.0.0.1/8"])
    with pytest.raises(ServeError, match=r"allow_cidrs\[0\]: 'localhost'.*such as 10.0.0.0/8"):
        AllowList(["localhost"])


@pytest.mark.parametrize(
    "text, secrets, kept",
    [
        (
            f"Patient ID {ID}, email john.doe@example.com, phone +86 138 1234 5678, "
            "card 4111 1111 1111 1111, US phone (555) 123-4567.",
            [ID, "john.doe@example.com", "138 1234", "4111 1111 1111 1111", "555) 123"],
            ["Patient ID", "@example.com", "US phone"],
        ),
        (
            f"患者身份证{ID}，手机13812345678，邮箱zhang@example.com，银行卡6222021234567894，"
            "座机010-62345678。",
            [ID, "13812345678", "zhang@example.com", "6222021234567894", "62345678"],
            ["患者身份证", "，手机", "银行卡"],
        ),
    ],
)
def test_mask_for_log_masks_pii_in_english_and_chinese(text, secrets, kept):
    masked = mask_for_log(text)
    for value in secrets:
        assert value not in masked
    for value in kept:
        assert value in masked
    assert "*" in masked


def test_mask_for_log_leaves_ordinary_text_alone():
    text = "version 1.2.3 on 2024-01-15, 3 items, build 1234, 头痛三天"
    assert mask_for_log(text) == text
    assert mask_for_log("") == ""
