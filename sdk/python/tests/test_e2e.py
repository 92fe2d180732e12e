"""Against the real keygate binary (env KEYGATE_BIN) and a small upstream."""

import http.server
import json
import os
import socket
import subprocess
import tempfile
import threading
import time

import pytest
import requests

import keygate

BIN = os.environ.get("KEYGATE_BIN")
if not BIN or not os.path.exists(BIN):
    if os.environ.get("CI") == "true":
        raise RuntimeError("KEYGATE_BIN is not set or missing: build it with `cargo build -p keygate`")
    pytest.skip("KEYGATE_BIN not set (set it to run the e2e tests)", allow_module_level=True)

AK, SECRET = "AKSDKPY000000001", "sdk-e2e-secret"
MASTER = "v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


class Upstream(http.server.BaseHTTPRequestHandler):
    seen = []

    def _any(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        Upstream.seen.append((self.command, self.path, body))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = do_PUT = do_DELETE = _any

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def gw():
    up = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=up.serve_forever, daemon=True).start()
    d = tempfile.mkdtemp()
    cfg = os.path.join(d, "keygate.toml")
    with open(cfg, "w") as f:
        f.write('[store]\nurl = "sqlite://%s/keygate.db"\n\n[[routes]]\npath_prefix = "/"\nupstream = "http://127.0.0.1:%d"\n'
                '\n[[apps]]\nid = "sdk"\n[[apps.keys]]\naccess_key = "%s"\nsecret_env = "SDK_SK"\n'
                '\n[[apps]]\nid = "legacy"\n[[apps.keys]]\naccess_key = "zs001"\nsecret = "miyao"\n'
                'scheme = "legacy-sorted"\n' % (d, up.server_port, AK))
    env = dict(os.environ, KEYGATE_MASTER_KEY=MASTER, KEYGATE_LOG="info", SDK_SK=SECRET)
    p = subprocess.Popen([BIN, "--log-format", "json", "serve", "--config", cfg, "--listen", "127.0.0.1:0"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    addr = None
    deadline = time.time() + 30
    while time.time() < deadline and addr is None:
        line = p.stderr.readline()
        if not line:
            break
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if str(v.get("message", "")).startswith("inbound listening"):
            addr = v.get("addr")
    if addr is None:
        p.kill()
        raise RuntimeError("keygate did not start")
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    yield "http://" + addr
    p.kill()
    p.wait()
    up.shutdown()


TRICKY = "/v1/things/a%20b;v=1?b=2&a=1&a=0&p=%2B+x&u=%E4%BD%A0&e=&k=!*'()"


def test_signed_requests_accepted(gw):
    s = keygate.Signer(AK, SECRET, ("host", "content-type"))
    auth = keygate.RequestsAuth(s)
    r = requests.get(gw + TRICKY, auth=auth)
    assert r.status_code == 200, r.text
    body = bytes(range(256)) * 4
    r = requests.post(gw + TRICKY, data=body, headers={"Content-Type": "application/octet-stream"}, auth=auth)
    assert r.status_code == 200, r.text
    assert Upstream.seen[-1][2] == body
    with tempfile.TemporaryFile() as f:
        f.write(body)
        f.seek(0)
        r = requests.put(gw + "/v1/upload", data=f, auth=auth)
        assert r.status_code == 200, r.text


def test_httpx(gw):
    httpx = pytest.importorskip("httpx")
    with httpx.Client(auth=keygate.HttpxAuth(keygate.Signer(AK, SECRET))) as c:
        r = c.post(gw + TRICKY, content=b"\x00\xff" * 300)
        assert r.status_code == 200, r.text


def test_tampered_refused(gw):
    s = keygate.Signer(AK, SECRET)
    body = b"\x00binary\xff"
    h = s.sign("POST", gw + "/v1/x?a=1", {}, body)
    r = requests.post(gw + "/v1/x?a=2", data=body, headers=h)
    with pytest.raises(keygate.GatewayError) as ei:
        keygate.raise_for_keygate(r.status_code, r.headers, r.content)
    assert ei.value.code == "signature_mismatch" and ei.value.status == 401 and ei.value.request_id
    h = s.sign("POST", gw + "/v1/x", {}, body)
    r = requests.post(gw + "/v1/x", data=body + b"!", headers=h)
    assert r.json()["code"] == "signature_mismatch"
    r = requests.get(gw + "/v1/x", auth=keygate.RequestsAuth(keygate.Signer(AK, "wrong")))
    assert r.json()["code"] == "signature_mismatch"


def test_clock_skew_corrected(gw):
    s = keygate.Signer(AK, SECRET, clock=lambda: time.time() - 3600)
    r = requests.get(gw + "/v1/skew?x=1", auth=keygate.RequestsAuth(s))
    assert r.status_code == 200, r.text
    assert len(r.history) == 1 and r.history[0].status_code == 401
    assert abs(s.offset - 3600) <= 2
    s2 = keygate.Signer(AK, SECRET, clock=lambda: time.time() + 7200)
    httpx = pytest.importorskip("httpx")
    with httpx.Client(auth=keygate.HttpxAuth(s2)) as c:
        assert c.get(gw + "/v1/skew").status_code == 200
    assert abs(s2.offset + 7200) <= 2


def test_legacy_scheme(gw):
    from urllib.parse import urlencode

    params = keygate.legacy.sign_params([("method", "cancel"), ("memo", "a b+c")], "miyao", access_key="zs001")
    r = requests.get(gw + "/legacy/cancel?" + urlencode(params))
    assert r.status_code == 200, r.text
    tampered = [(n, "dropped" if n == "method" else v) for n, v in params]
    r = requests.get(gw + "/legacy/cancel?" + urlencode(tampered))
    assert r.status_code == 401 and r.json()["code"] == "signature_mismatch"
