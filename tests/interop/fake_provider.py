#!/usr/bin/env python3
"""A local fake third-party provider for keygate's outbound tests.

It checks what arrives with the providers' published algorithms, implemented here independently
of keygate (Python's hashlib/hmac and the `cryptography` package), and counts token fetches.
Reads its secrets as JSON on stdin, listens on 127.0.0.1 (port 0), prints `PORT <n>` and serves
until killed. Loopback only.

Routes
  POST /seed/token          seed 000 token endpoint: SHA-256 sign + AES-CBC appKey envelope
  POST /seed/api/...        seed 000 API: Bearer token, AES-CBC `data`, SHA-256 sign of sorted body
  POST /oauth/token         OAuth 2.0 client credentials (HTTP Basic)
  ANY  /oauth/api/...       Bearer token from /oauth/token
  ANY  /hmac/...            HMAC-SHA256 header signature (keygate's default template)
  ANY  /sorted/...          sorted params + secret, MD5 upper (seed 001 family), in the query
  POST /aes/...             AES-256-GCM wrapped body; answers with an AES-256-GCM wrapped body
  ANY  /static/...          fixed API key header
  ANY  /flaky/<n>/<id>      503 for the first n calls of <id>, then 200
  ANY  /slow/<ms>           answers after <ms> milliseconds
  POST /alipay/gateway.do   Alipay OpenAPI: RSA2 request sign checked, response node signed
  ANY  /wechat/v3/...       WeChat Pay v3: Authorization checked, response signed, resource encrypted
  ANY  /aws/...             AWS SigV4: recomputed with botocore at the request's X-Amz-Date
  POST /control/revoke      invalidates every issued token (the provider rotated its tokens)
  GET  /stats               counters as JSON (control routes are not counted as requests)
"""
import base64
import hashlib
import hmac
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CFG = json.loads(sys.stdin.read())
LOCK = threading.Lock()
STATE = {"seed_fetches": 0, "oauth_fetches": 0, "tokens": set(), "flaky": {}, "requests": 0, "ok": 0}


def aes_cbc_decrypt(key, iv, data):
    d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = d.update(data) + d.finalize()
    u = padding.PKCS7(128).unpadder()
    return u.update(padded) + u.finalize()


def sign_str(obj):
    """Seed 000's buildSignStr: sorted k=v&..., empty values and `sign` left out."""
    pairs = []
    for k in sorted(obj):
        v = obj[k]
        if k == "sign" or v is None:
            continue
        t = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        if t != "":
            pairs.append(f"{k}={t}")
    return "&".join(pairs)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        if status < 300:
            with LOCK:
                STATE["ok"] += 1

    def fail(self, status, why):
        self.reply(status, {"code": "rejected", "why": why})

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def bearer(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        tok = auth[len("Bearer "):]
        with LOCK:
            return tok if tok in STATE["tokens"] else None

    def handle_any(self):
        u = urllib.parse.urlsplit(self.path)
        path, raw_query = u.path, u.query
        body = self.body()
        if path == "/stats":
            with LOCK:
                s = {k: v for k, v in STATE.items() if k not in ("tokens", "flaky")}
            return self.reply(200, s)
        if path == "/control/revoke":
            with LOCK:
                STATE["tokens"].clear()
            return self.reply(200, {"revoked": True})
        with LOCK:
            STATE["requests"] += 1
        if path == "/echo" or path.startswith("/echo/"):
            return self.reply(200, {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode("utf-8", "replace"), "query": raw_query, "path": path})
        if path == "/seed/token":
            return self.seed_token(body)
        if path.startswith("/seed/api/"):
            return self.seed_api(body)
        if path == "/oauth/token":
            return self.oauth_token(body)
        if path.startswith("/oauth/api/"):
            if not self.bearer():
                return self.fail(401, "invalid token")
            return self.reply(200, {"ok": True, "path": path})
        if path.startswith("/hmac/"):
            return self.hmac_check(path, raw_query, body)
        if path.startswith("/sorted/"):
            return self.sorted_check(raw_query)
        if path.startswith("/aes/"):
            return self.aes(body)
        if path == "/alipay/gateway.do":
            return self.alipay(body)
        if path.startswith("/wechat/v3/"):
            return self.wechat(body)
        if path.startswith("/aws/"):
            return self.aws(body)
        if path.startswith("/static/"):
            if self.headers.get("X-Api-Key") != CFG["static_key"]:
                return self.fail(401, "bad api key")
            return self.reply(200, {"ok": True})
        if path.startswith("/flaky/"):
            _, _, n, ident = path.split("/", 3)
            with LOCK:
                seen = STATE["flaky"].get(ident, 0)
                STATE["flaky"][ident] = seen + 1
            if seen < int(n):
                return self.fail(503, f"flaky {seen + 1}")
            return self.reply(200, {"ok": True, "attempt": seen + 1})
        if path.startswith("/slow/"):
            time.sleep(int(path.split("/")[2]) / 1000)
            return self.reply(200, {"ok": True})
        return self.fail(404, "no such route")

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

    def seed_token(self, body):
        req = json.loads(body)
        s = CFG["seed"]
        expected = hashlib.sha256(f"appKey={req['appKey']}&data={req['data']}&timestamp={req['timestamp']}".encode()).hexdigest().upper()
        if not hmac.compare_digest(expected, req["sign"]):
            return self.fail(400, "token sign mismatch")
        inner = aes_cbc_decrypt(s["aes_key"].encode(), s["aes_iv"].encode(), base64.b64decode(req["data"]))
        if json.loads(inner) != {"appKey": s["app_key"]} or req["appKey"] != s["app_key"]:
            return self.fail(400, "token data mismatch")
        time.sleep(0.05)  # a real token endpoint is slow: concurrent misses pile up here
        with LOCK:
            STATE["seed_fetches"] += 1
            tok = f"seed-{STATE['seed_fetches']}-{time.monotonic_ns()}"
            STATE["tokens"].add(tok)
        return self.reply(200, {"code": "0", "data": {"accessToken": tok, "expireTime": int(s.get("ttl", 7200))}})

    def seed_api(self, body):
        s = CFG["seed"]
        if not self.bearer():
            return self.fail(401, "invalid token")
        obj = json.loads(body)
        expected = hashlib.sha256(sign_str(obj).encode()).hexdigest().upper()
        if not hmac.compare_digest(expected, obj.get("sign", "")):
            return self.fail(400, "sign mismatch")
        if obj.get("appKey") != s["app_key"]:
            return self.fail(400, "appKey mismatch")
        plain = aes_cbc_decrypt(s["aes_key"].encode(), s["aes_iv"].encode(), base64.b64decode(obj["data"])).decode()
        return self.reply(200, {"ok": True, "plain": plain, "timestamp": obj.get("timestamp")})

    def oauth_token(self, body):
        o = CFG["oauth"]
        auth = self.headers.get("Authorization", "")
        want = "Basic " + base64.b64encode(f"{urllib.parse.quote(o['client_id'], safe='')}:{urllib.parse.quote(o['client_secret'], safe='')}".encode()).decode()
        if not hmac.compare_digest(auth, want):
            return self.fail(401, "bad client credentials")
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if form.get("grant_type") != "client_credentials":
            return self.fail(400, "grant_type")
        time.sleep(0.05)
        with LOCK:
            STATE["oauth_fetches"] += 1
            tok = f"oat-{STATE['oauth_fetches']}-{time.monotonic_ns()}"
            STATE["tokens"].add(tok)
        return self.reply(200, {"access_token": tok, "token_type": "Bearer", "expires_in": int(o.get("ttl", 3600)), "scope": form.get("scope", "")})

    def hmac_check(self, path, raw_query, body):
        h = CFG["hmac"]
        if self.headers.get("x-api-key") != h["key_id"]:
            return self.fail(401, "key id")
        ts, nonce, sig = self.headers.get("x-timestamp", ""), self.headers.get("x-nonce", ""), self.headers.get("x-signature", "")
        if abs(int(ts) - time.time()) > 300:
            return self.fail(401, "timestamp")
        pairs = sorted((urllib.parse.quote(k, safe="-._~"), urllib.parse.quote(v, safe="-._~")) for k, v in urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
        query = "&".join(f"{k}={v}" for k, v in pairs)
        sts = "\n".join([self.command, path, query, ts, nonce, hashlib.sha256(body).hexdigest()])
        expected = hmac.new(h["secret"].encode(), sts.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig):
            return self.fail(401, "signature")
        return self.reply(200, {"ok": True})

    def sorted_check(self, raw_query):
        s = CFG["sorted"]
        params = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
        sign = params.pop("sign", "")
        text = "".join(f"{k}{v}" for k, v in sorted(params.items()) if v != "") + s["secret"]
        expected = hashlib.md5(text.encode()).hexdigest().upper()
        if params.get("appId") != s["app_key"] or not hmac.compare_digest(expected, sign):
            return self.fail(401, "sorted sign")
        return self.reply(200, {"ok": True, "params": sorted(params)})

    def aes(self, body):
        key = base64.b64decode(CFG["aes"]["key_b64"])
        wire = base64.b64decode(json.loads(body)["data"])
        try:
            plain = AESGCM(key).decrypt(wire[:12], wire[12:], None)
        except Exception:
            return self.fail(400, "aes-gcm")
        nonce = bytes(12 - len(b"resp")) + b"resp"
        answer = json.dumps({"echo": json.loads(plain), "secret_sauce": 42}).encode()
        return self.reply(200, {"data": base64.b64encode(nonce + AESGCM(key).encrypt(nonce, answer, None)).decode()})


def _rsa_sign(pem, msg):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding as apad
    key = serialization.load_pem_private_key(pem.encode(), None)
    return base64.b64encode(key.sign(msg, apad.PKCS1v15(), hashes.SHA256())).decode()


def _rsa_verify(pem, msg, sig_b64):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding as apad
    key = serialization.load_pem_public_key(pem.encode())
    try:
        key.verify(base64.b64decode(sig_b64), msg, apad.PKCS1v15(), hashes.SHA256())
        return True
    except Exception:
        return False


def _alipay(self, body):
    a = CFG["alipay"]
    params = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
    sign = params.pop("sign", "")
    content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if v != "")
    if not _rsa_verify(a["app_public_pem"], content.encode(), sign):
        return self.fail(400, "alipay sign")
    time.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S")
    if params["app_id"] != a["app_id"] or params["sign_type"] != "RSA2" or params["charset"] != "utf-8":
        return self.fail(400, "alipay params")
    biz = json.loads(params["biz_content"])
    node_name = params["method"].replace(".", "_") + "_response"
    node = json.dumps({"code": "10000", "msg": "Success", "out_trade_no": biz.get("out_trade_no"), "trade_status": "TRADE_SUCCESS"}, separators=(",", ":"))
    sig = _rsa_sign(a["provider_private_pem"], node.encode())
    if biz.get("out_trade_no") == "tamper":
        node = node.replace("TRADE_SUCCESS", "TRADE_CLOSED")
    raw = '{"%s":%s,"sign":"%s"}' % (node_name, node, sig)
    data = raw.encode()
    self.send_response(200)
    self.send_header("Content-Type", "application/json;charset=utf-8")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)


def _wechat(self, body):
    w = CFG["wechat"]
    auth = self.headers.get("Authorization", "")
    if not auth.startswith("WECHATPAY2-SHA256-RSA2048 "):
        return self.fail(401, "wechat scheme")
    fields = dict(part.split("=", 1) for part in auth[len("WECHATPAY2-SHA256-RSA2048 "):].split(","))
    fields = {k: v.strip('"') for k, v in fields.items()}
    msg = f"{self.command}\n{self.path}\n{fields['timestamp']}\n{fields['nonce_str']}\n{body.decode()}\n".encode()
    if fields.get("mchid") != w["mchid"] or fields.get("serial_no") != w["serial_no"] or not _rsa_verify(w["merchant_public_pem"], msg, fields["signature"]):
        return self.fail(401, "wechat signature")
    if not self.headers.get("User-Agent"):
        return self.fail(400, "user agent required")
    nonce12 = "n0nce-abcdef"
    resource = AESGCM(w["apiv3_key"].encode()).encrypt(nonce12.encode(), json.dumps({"trade_state": "SUCCESS"}).encode(), b"transaction")
    answer = json.dumps({"id": "evt-1", "resource": {"algorithm": "AEAD_AES_256_GCM", "nonce": nonce12, "associated_data": "transaction", "ciphertext": base64.b64encode(resource).decode()}})
    ts, nonce = str(int(time.time())), "RESPNONCE"
    sig = _rsa_sign(w["platform_private_pem"], f"{ts}\n{nonce}\n{answer}\n".encode())
    if "tamper" in self.path:
        answer = answer.replace("evt-1", "evt-2")
    data = answer.encode()
    self.send_response(200)
    for k, v in (("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Wechatpay-Timestamp", ts), ("Wechatpay-Nonce", nonce), ("Wechatpay-Signature", sig), ("Wechatpay-Serial", w["platform_serial"])):
        self.send_header(k, v)
    self.end_headers()
    self.wfile.write(data)


def _aws(self, body):
    import datetime
    from unittest import mock
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    a = CFG["aws"]
    got = self.headers.get("Authorization", "")
    signed = got.split("SignedHeaders=")[1].split(",")[0].split(";") if "SignedHeaders=" in got else []
    headers = {h: self.headers.get(h) for h in signed if h != "host" and h != "x-amz-date" and h != "x-amz-security-token"}
    req = AWSRequest(method=self.command, url=f"http://{self.headers.get('Host')}{self.path}", data=body, headers=headers)
    when = datetime.datetime.strptime(self.headers.get("X-Amz-Date", ""), "%Y%m%dT%H%M%SZ")
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(Credentials(a["access_key"], a["secret_key"]), a["service"], a["region"]).add_auth(req)
    if not hmac.compare_digest(req.headers["Authorization"], got):
        return self.fail(403, "SignatureDoesNotMatch")
    return self.reply(200, {"ok": True, "signed_headers": signed})


Handler.alipay = _alipay
Handler.wechat = _wechat
Handler.aws = _aws


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2048


if __name__ == "__main__":
    srv = Server(("127.0.0.1", 0), Handler)
    print(f"PORT {srv.server_address[1]}", flush=True)
    srv.serve_forever()
