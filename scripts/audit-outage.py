#!/usr/bin/env python3
"""Audit log under a database outage (issue 8's figure).

Runs keygate (release) with its audit log on PostgreSQL reached through a TCP relay that this
script cuts for --outage seconds while kg-load drives --rate signed requests per second, then
restores it and waits for the spill to replay. Prints requests served (keygate's own
keygate_requests_total, every decision code) and audit rows in PostgreSQL: they must be equal.

Usage: scripts/audit-outage.py [--rate 2000] [--duration 90] [--outage 60] [--cut-at 15]
Needs: cargo, psql, PostgreSQL on 127.0.0.1:5432 (trust). Loopback only.
"""
import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
SECRET = "outage-secret-0123456789abcdef"
MASTER = "v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Relay:
    """TCP relay to PostgreSQL; cut() closes every connection and refuses new ones."""

    def __init__(self, target_port):
        self.port = free_port()
        self.target = target_port
        self.cut_flag = False
        self.writers = set()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result()

    async def _serve(self):
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", self.port)

    async def _pipe(self, r, w):
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                w.write(data)
                await w.drain()
        except Exception:
            pass
        finally:
            w.close()

    async def _conn(self, r, w):
        if self.cut_flag:
            w.close()
            return
        try:
            tr, tw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            w.close()
            return
        self.writers.update({w, tw})
        await asyncio.gather(self._pipe(r, tw), self._pipe(tr, w))
        self.writers.discard(w)
        self.writers.discard(tw)

    def _cut(self):
        self.cut_flag = True
        for w in list(self.writers):
            w.close()

    def cut(self):
        self.loop.call_soon_threadsafe(self._cut)

    def restore(self):
        self.cut_flag = False


def psql(sql, db="test"):
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-tAc", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"port {port} did not open")


def served(metrics_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("keygate_requests_total{"):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--duration", type=int, default=90)
    ap.add_argument("--outage", type=int, default=60)
    ap.add_argument("--cut-at", type=int, default=15)
    a = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "keygate", "-p", "keygate-bench"], cwd=ROOT, check=True)
    db = "kg_outage_" + secrets.token_hex(4)
    psql(f"CREATE DATABASE {db}")
    tmp = tempfile.mkdtemp(prefix="kg-outage-")
    procs = []
    try:
        relay = Relay(5432)
        up_port, gw_port, m_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([os.path.join(REL, "kg-upstream"), "--listen", f"127.0.0.1:{up_port}"],
                                      stdout=subprocess.DEVNULL))
        wait_port(up_port)
        cfg = os.path.join(tmp, "keygate.toml")
        with open(cfg, "w") as f:
            f.write(f"""
[server]
inbound = "127.0.0.1:{gw_port}"
metrics = "127.0.0.1:{m_port}"
[store]
url = "sqlite://{tmp}/keygate.db"
[audit]
url = "postgres://postgres@127.0.0.1:{relay.port}/{db}"
spill_dir = "{tmp}/spill"
[[routes]]
path_prefix = "/"
upstream = "http://127.0.0.1:{up_port}"
[[apps]]
id = "bench"
[[apps.keys]]
access_key = "AKBENCH000001"
secret_env = "SK"
""")
        env = dict(os.environ, KEYGATE_MASTER_KEY=MASTER, SK=SECRET, KEYGATE_LOG="warn")
        log = open(os.path.join(tmp, "keygate.log"), "w")
        procs.append(subprocess.Popen([os.path.join(REL, "keygate"), "serve", "--config", cfg], env=env,
                                      stdout=subprocess.DEVNULL, stderr=log))
        wait_port(gw_port)
        load = subprocess.Popen([os.path.join(REL, "kg-load"), f"http://127.0.0.1:{gw_port}/bench",
                                 "--secret", SECRET, "--rate", str(a.rate), "--duration-secs", str(a.duration),
                                 "--warmup-secs", "0", "--connections", "64"], stdout=subprocess.PIPE, text=True)
        t0 = time.time()
        time.sleep(a.cut_at)
        relay.cut()
        print(f"t={time.time() - t0:.0f}s: database cut", flush=True)
        time.sleep(a.outage)
        spill = os.path.getsize(os.path.join(tmp, "spill", "audit-spill.log")) if os.path.exists(
            os.path.join(tmp, "spill", "audit-spill.log")) else 0
        relay.restore()
        print(f"t={time.time() - t0:.0f}s: database restored; spill {spill / 1e6:.1f} MB", flush=True)
        out, _ = load.communicate()
        result = json.loads(out.strip().splitlines()[-1])
        # Wait for the replay to finish and the count to settle.
        rows, stable = -1, 0
        end = time.time() + 120
        while time.time() < end and stable < 3:
            n = int(psql("SELECT COUNT(*) FROM audit_log", db))
            stable = stable + 1 if n == rows else 0
            rows = n
            time.sleep(1)
        total = served(m_port)
        dupes = int(psql("SELECT COUNT(*) - COUNT(DISTINCT request_id) FROM audit_log", db))
        print(json.dumps({
            "rate": a.rate, "duration_s": a.duration, "outage_s": a.outage,
            "kg_load": {k: result[k] for k in ("requests", "ok", "non_2xx", "errors", "p50_us", "p99_us", "p999_us")},
            "served_by_keygate": total, "audit_rows": rows, "duplicate_request_ids": dupes,
            "spill_bytes_at_restore": spill, "exact": total == rows and dupes == 0,
        }, indent=1))
        if total != rows or dupes:
            sys.exit("MISMATCH")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
