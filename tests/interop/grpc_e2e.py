"""gRPC through keygate with real gRPC peers (grpcio on both ends).

Starts a generic grpcio server as the upstream, the keygate binary in front of it (route with
upstream_http2), and calls a unary method through the gateway with KG1 metadata computed by the
independent signer in kg1_sign.py over the exact gRPC frame bytes. Checks: the call succeeds, the
upstream's trailing metadata arrives, a replay and an unsigned call fail as UNAUTHENTICATED.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kg1_sign  # noqa: E402

SECRET = "grpc-secret-0123456789abcdef"
AK = "AKGRPC000001"
METHOD = "/demo.Echo/Say"
MASTER = "v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def start_upstream():
    seen = {}

    def say(request, context):
        seen["metadata"] = dict(context.invocation_metadata())
        context.set_trailing_metadata((("x-upstream-trailer", "present"),))
        return b"echo:" + request

    handler = grpc.method_handlers_generic_handler(
        "demo.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, seen


def start_keygate(binary, upstream_port, tmp):
    cfg = os.path.join(tmp, "keygate.toml")
    with open(cfg, "w") as f:
        f.write(
            '[store]\nurl = "sqlite://%s/keygate.db"\n'
            '[[routes]]\npath_prefix = "/demo.Echo"\nupstream = "http://127.0.0.1:%d"\nupstream_http2 = true\n'
            '[[apps]]\nid = "grpc-app"\n[[apps.keys]]\naccess_key = "%s"\nsecret_env = "SK"\n'
            % (tmp, upstream_port, AK)
        )
    env = dict(os.environ, KEYGATE_MASTER_KEY=MASTER, SK=SECRET, KEYGATE_LOG="info")
    proc = subprocess.Popen(
        [binary, "--log-format", "json", "serve", "--config", cfg, "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True,
    )
    addr = None
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("message", "").startswith("inbound listening"):
            addr = rec["addr"]
            break
    if addr is None:
        proc.kill()
        raise SystemExit("keygate did not start")
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, addr


def grpc_frame(payload):
    # Uncompressed length-prefixed message: the exact bytes grpcio puts in the DATA frame.
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keygate", required=True)
    args = ap.parse_args()
    server, port, seen = start_upstream()
    with tempfile.TemporaryDirectory() as tmp:
        proc, addr = start_keygate(args.keygate, port, tmp)
        try:
            channel = grpc.insecure_channel(addr)
            call = channel.unary_unary(METHOD)  # bytes in, bytes out
            payload = b"hello through keygate"
            headers = kg1_sign.sign(
                "POST", METHOD, [("content-type", "application/grpc")], grpc_frame(payload),
                AK, SECRET, signed_headers=["content-type"],
            )
            metadata = tuple((k.lower(), v) for k, v in headers.items())
            resp, call_info = call.with_call(payload, metadata=metadata, timeout=10)
            assert resp == b"echo:" + payload, resp
            trailers = dict(call_info.trailing_metadata())
            assert trailers.get("x-upstream-trailer") == "present", trailers
            assert seen["metadata"].get("x-kg-app-id") == "grpc-app", seen
            assert "x-kg-signature" not in seen["metadata"], seen

            for label, md in (("replay", metadata), ("unsigned", ())):
                try:
                    call(payload, metadata=md, timeout=10)
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.UNAUTHENTICATED, (label, e.code(), e.details())
                else:
                    raise AssertionError("%s call was accepted" % label)
            print("grpc e2e ok")
        finally:
            proc.kill()
            proc.wait()
            server.stop(0)


if __name__ == "__main__":
    main()
