"""The SDK against docs/vectors/*.json (every case)."""

import hashlib
import io
import json
import os

import pytest

import keygate
from keygate import legacy

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def load(name):
    with open(os.path.join(ROOT, "docs", "vectors", name), encoding="utf-8") as f:
        return json.load(f)


KG1 = load("kg1.json")
LEGACY = load("legacy.json")


def body_of(v):
    return bytes.fromhex(v["body_hex"]) if "body_hex" in v else v["body_utf8"].encode("utf-8")


def secret_of(v):
    return bytes.fromhex(v["secret_hex"]) if "secret_hex" in v else v["secret_utf8"].encode("utf-8")


def url_of(v):
    url = v["raw_path"] + ("" if v["raw_query"] is None else "?" + v["raw_query"])
    return url if v["authority"] is None else "https://" + v["authority"] + url


@pytest.mark.parametrize("v", KG1["vectors"], ids=lambda v: v["name"])
def test_kg1_vector(v):
    e = v["expected"]
    assert keygate.canonical_query(v["raw_query"]) == e["canonical_query"]
    assert hashlib.sha256(body_of(v)).hexdigest() == e["body_sha256"]
    sts = keygate.string_to_sign(v["method"], v["raw_path"], v["raw_query"], v["headers"], body_of(v),
                                 v["access_key"], v["timestamp"], v["nonce"], v["signed_headers"], v["authority"])
    assert sts == e["string_to_sign"]
    out = keygate.sign(v["method"], url_of(v), v["headers"], body_of(v), v["access_key"], secret_of(v),
                       v["signed_headers"], v["timestamp"], v["nonce"])
    assert out["X-Kg-Signature"] == e["signature"]
    # The same through Signer, with the body given as a file object (hashed as sent, then rewound).
    s = keygate.Signer(v["access_key"], secret_of(v), v["signed_headers"])
    f = io.BytesIO(body_of(v))
    out2 = s.sign(v["method"], url_of(v), v["headers"], f, timestamp=v["timestamp"], nonce=v["nonce"])
    assert out2["X-Kg-Signature"] == e["signature"]
    assert f.tell() == 0


@pytest.mark.parametrize("c", KG1["canonical_query_cases"], ids=lambda c: repr(c["raw"]))
def test_canonical_query(c):
    if "error" in c:
        with pytest.raises(keygate.SignError) as ei:
            keygate.canonical_query(c["raw"])
        assert ei.value.code == c["error"]
    else:
        assert keygate.canonical_query(c["raw"]) == c["canonical"]


@pytest.mark.parametrize("c", KG1["path_cases"], ids=lambda c: repr(c["raw_path"]))
def test_path(c):
    if c["valid"]:
        keygate.check_raw_path(c["raw_path"])
    else:
        with pytest.raises(keygate.SignError) as ei:
            keygate.check_raw_path(c["raw_path"])
        assert ei.value.code == "invalid_path"


@pytest.mark.parametrize("v", LEGACY["vectors"], ids=lambda v: v["name"])
def test_legacy_vector(v):
    cfg = dict(legacy.DEFAULT_CONFIG)
    cfg.update(v.get("config", {}))
    params = legacy.collect_params(cfg, v["raw_query"], v["form_body"], v["headers"])
    e = v["expected"]
    assert legacy.string_to_sign(cfg, params, v["secret_utf8"]) == e["string_to_sign"]
    assert legacy.sign(cfg, params, v["secret_utf8"]) == e["signature"]


def test_legacy_sign_params_adds_fields():
    out = legacy.sign_params([("k1", "v1")], "miyao", access_key="zs001", now_ms=1612691221000, nonce="1234567890")
    d = dict(out)
    assert d["appId"] == "zs001" and d["timeStamp"] == "1612691221000" and d["nonce"] == "1234567890"
    assert d["sign"] == legacy.sign(dict(legacy.DEFAULT_CONFIG), out, "miyao")


def test_nonces_are_random_and_valid():
    s = keygate.Signer("AK", "s")
    nonces = {s.sign("GET", "/a")["X-Kg-Nonce"] for _ in range(100)}
    assert len(nonces) == 100
    assert all(len(n) == 32 for n in nonces)


def test_secret_not_in_repr():
    s = keygate.Signer("AK", "topsecret-value")
    assert "topsecret" not in repr(s) and "topsecret" not in repr(s.__dict__)


def test_skew_learning_from_envelope_and_date():
    s = keygate.Signer("AK", "s", clock=lambda: 1000)
    body = json.dumps({"code": "timestamp_out_of_window", "message": "x", "request_id": "r", "server_time": 1600})
    assert s.learn_skew(401, {"date": "Thu, 01 Jan 1970 00:00:00 GMT"}, body.encode())
    assert s.offset == 600 and s.now() == 1600
    body = json.dumps({"code": "timestamp_out_of_window", "message": "x", "request_id": "r"})
    assert s.learn_skew(401, {"date": "Thu, 01 Jan 1970 00:20:00 GMT"}, body.encode())
    assert s.offset == 200
    assert not s.learn_skew(401, {}, b'{"code":"signature_mismatch","message":"","request_id":"r"}')
    assert not s.learn_skew(200, {}, body.encode())
    assert s.offset == 200


def test_typed_error():
    with pytest.raises(keygate.GatewayError) as ei:
        keygate.raise_for_keygate(401, {"x-request-id": "abc"}, b'{"code":"unknown_key","message":"m"}')
    assert ei.value.code == "unknown_key" and ei.value.request_id == "abc" and ei.value.status == 401
    keygate.raise_for_keygate(200, {}, b'{"code":"x"}')


def test_outbound_url():
    assert keygate.outbound_url("http://gw/", "stripe", "/v1/charges?a=1") == "http://gw/out/stripe/v1/charges?a=1"
    with pytest.raises(keygate.SignError):
        keygate.outbound_url("http://gw", "a/b", "x")


def test_unseekable_stream_refused():
    with pytest.raises(keygate.SignError):
        keygate.Signer("AK", "s").sign("POST", "/a", {}, iter([b"x"]))


def test_destroy_wipes_secret():
    s = keygate.Signer("AK", "s3cret")
    before = s.sign("GET", "/a", timestamp=1, nonce="n" * 16)["X-Kg-Signature"]
    held = s._secret._value
    s.destroy()
    assert held == bytearray(6)
    with pytest.raises(ValueError):
        s.sign("GET", "/a", timestamp=1, nonce="n" * 16)
    assert before
