"""Checks that the independent Python signers reproduce docs/vectors/*.json.

Run from the repository root: python3 -m unittest discover -s tests/interop
"""

import hashlib
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import kg1_sign  # noqa: E402
import legacy_sign  # noqa: E402


def load(name):
    with open(os.path.join(ROOT, "docs", "vectors", name), encoding="utf-8") as f:
        return json.load(f)


def body_of(v):
    return bytes.fromhex(v["body_hex"]) if "body_hex" in v else v["body_utf8"].encode("utf-8")


def secret_of(v):
    return bytes.fromhex(v["secret_hex"]) if "secret_hex" in v else v["secret_utf8"].encode("utf-8")


class Kg1Vectors(unittest.TestCase):
    data = load("kg1.json")

    def test_enough_vectors(self):
        self.assertGreaterEqual(len(self.data["vectors"]), 15)

    def test_string_to_sign_and_signature(self):
        for v in self.data["vectors"]:
            with self.subTest(v["name"]):
                e = v["expected"]
                self.assertEqual(kg1_sign.canonical_query(v["raw_query"]), e["canonical_query"])
                self.assertEqual(hashlib.sha256(body_of(v)).hexdigest(), e["body_sha256"])
                sts = kg1_sign.string_to_sign(v["method"], v["raw_path"], v["raw_query"], v["headers"], body_of(v),
                                              v["access_key"], v["timestamp"], v["nonce"], v["signed_headers"],
                                              v["authority"])
                self.assertEqual(sts, e["string_to_sign"])

    def test_sign_via_url(self):
        # The public sign() entry point, given the request as a URL like an HTTP client would.
        for v in self.data["vectors"]:
            with self.subTest(v["name"]):
                url = v["raw_path"] + ("" if v["raw_query"] is None else "?" + v["raw_query"])
                if v["authority"] is not None:
                    url = "https://" + v["authority"] + url
                out = kg1_sign.sign(v["method"], url, v["headers"], body_of(v), v["access_key"], secret_of(v),
                                    v["signed_headers"], v["timestamp"], v["nonce"])
                self.assertEqual(out["X-Kg-Signature"], v["expected"]["signature"])
                self.assertEqual(out["X-Kg-Timestamp"], str(v["timestamp"]))
                self.assertEqual(out.get("X-Kg-Signed-Headers", ""), ";".join(v["signed_headers"]))

    def test_canonical_query_cases(self):
        for c in self.data["canonical_query_cases"]:
            with self.subTest(c["raw"]):
                if "error" in c:
                    self.assertRaises(kg1_sign.SignError, kg1_sign.canonical_query, c["raw"])
                else:
                    self.assertEqual(kg1_sign.canonical_query(c["raw"]), c["canonical"])

    def test_path_cases(self):
        for c in self.data["path_cases"]:
            with self.subTest(c["raw_path"]):
                if c["valid"]:
                    kg1_sign.check_raw_path(c["raw_path"])
                else:
                    self.assertRaises(kg1_sign.SignError, kg1_sign.check_raw_path, c["raw_path"])

    def test_tampering_changes_signature(self):
        v = self.data["vectors"][0]
        base = kg1_sign.sign("GET", "/a?x=1", [], b"", "AK", b"s", (), 1700000000, "n" * 16)["X-Kg-Signature"]
        for args in [("POST", "/a?x=1", b"", "AK", 1700000000, "n" * 16),
                     ("GET", "/b?x=1", b"", "AK", 1700000000, "n" * 16),
                     ("GET", "/a?x=2", b"", "AK", 1700000000, "n" * 16),
                     ("GET", "/a?x=1", b"!", "AK", 1700000000, "n" * 16),
                     ("GET", "/a?x=1", b"", "AK2", 1700000000, "n" * 16),
                     ("GET", "/a?x=1", b"", "AK", 1700000001, "n" * 16),
                     ("GET", "/a?x=1", b"", "AK", 1700000000, "m" * 16)]:
            m, url, body, ak, ts, nonce = args
            self.assertNotEqual(kg1_sign.sign(m, url, [], body, ak, b"s", (), ts, nonce)["X-Kg-Signature"], base)
        self.assertTrue(v["expected"]["signature"])

    def test_cli_prints_headers(self):
        import io
        from contextlib import redirect_stdout
        v = self.data["vectors"][0]
        buf = io.StringIO()
        with redirect_stdout(buf):
            rc = kg1_sign.main(["--key", v["access_key"], "--secret", v["secret_utf8"], "--timestamp",
                                str(v["timestamp"]), "--nonce", v["nonce"], v["raw_path"]])
        self.assertEqual(rc, 0)
        self.assertEqual(json.loads(buf.getvalue())["X-Kg-Signature"], v["expected"]["signature"])


class LegacyVectors(unittest.TestCase):
    data = load("legacy.json")

    def test_enough_vectors(self):
        self.assertGreaterEqual(len(self.data["vectors"]), 6)

    def test_design_example(self):
        cfg = dict(legacy_sign.DEFAULT_CONFIG)
        params = [("appId", "zs001"), ("timeStamp", "1612691221000"), ("nonce", "1234567890"), ("k1", "v1"),
                  ("k2", "v2"), ("method", "cancel")]
        self.assertEqual(legacy_sign.string_to_sign(cfg, params, "miyao"),
                         "appIdzs001k1v1k2v2methodcancelnonce1234567890timeStamp1612691221000miyao")
        self.assertEqual(legacy_sign.sign(cfg, params, "miyao"), "25E2725052CC7B4824C67FCB747321BB")

    def test_vectors(self):
        for v in self.data["vectors"]:
            with self.subTest(v["name"]):
                cfg = dict(legacy_sign.DEFAULT_CONFIG)
                cfg.update(v.get("config", {}))
                params = legacy_sign.collect_params(cfg, v["raw_query"], v["form_body"], v["headers"])
                e = v["expected"]
                signed = sorted([list(p) for p in params if p[1] != "" and p[0] != cfg["sign_field"]],
                                key=lambda p: p[0].encode("utf-8"))
                self.assertEqual(signed, e["params"])
                self.assertEqual(legacy_sign.string_to_sign(cfg, params, v["secret_utf8"]), e["string_to_sign"])
                self.assertEqual(legacy_sign.sign(cfg, params, v["secret_utf8"]), e["signature"])


if __name__ == "__main__":
    unittest.main()
