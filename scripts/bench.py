"""End-to-end benchmark: keygate vs nginx as a plain reverse proxy, same upstream, same run.

Every configuration is measured `--reps` times, interleaved (A B C A B C ...) so drift on a shared
machine hits all of them alike; the table reports the median and the spread (min–max) of RPS and
the median p50/p99/p99.9, plus the ratio to nginx's median RPS from the same run. All traffic is
on 127.0.0.1.
"""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
UPSTREAM, NGINX, KEYGATE, KEYGATE_REDIS, KEYGATE_AUDIT = 19000, 19001, 19002, 19003, 19004
KEYGATE_OUT, OUT_LISTENER, OUT_ADMIN = 19005, 19006, 19007
KEYGATE_HYPER = 19008
MASTER = "v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
SECRET = "bench-secret-0123456789abcdef"


def wait_port(port, timeout=20):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("port %d did not open" % port)


def start_upstream(threads):
    p = subprocess.Popen([os.path.join(REL, "kg-upstream"), "--listen", "127.0.0.1:%d" % UPSTREAM,
                          "--threads", str(threads)], stdout=subprocess.DEVNULL)
    wait_port(UPSTREAM)
    return p


def nginx_conf(tmp, port, workers=1, extra=""):
    """nginx as a plain reverse proxy to the upstream: keep-alive pool of 256, no access log.
    `extra` goes into the main context (e.g. `master_process off;` for callgrind)."""
    conf = os.path.join(tmp, "nginx-%d.conf" % port)
    with open(conf, "w") as f:
        f.write("""
worker_processes %d;
%s
daemon off;
pid %s/nginx-%d.pid;
error_log %s/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream up { server 127.0.0.1:%d; keepalive 256; }
  server {
    listen 127.0.0.1:%d;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
""" % (workers, extra, tmp, port, tmp, UPSTREAM, port))
    return conf


def start_nginx(tmp, workers):
    conf = nginx_conf(tmp, NGINX, workers)
    p = subprocess.Popen(["nginx", "-c", conf, "-p", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(NGINX)
    return p


def start_keygate(tmp, threads, port=KEYGATE, name="base", extra="", server="", wrap=()):
    """One keygate instance. `extra` is appended to the config ([state], [audit] ...), `server`
    to its [server] table."""
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "keygate.toml")
    audit = "" if "[audit]" in extra else "[audit]\nenabled = false\n"
    state = "" if "[state]" in extra else "[state]\nnonce_capacity = 20000000\n"
    with open(cfg, "w") as f:
        f.write("""
[server]
inbound = "127.0.0.1:%d"
worker_threads = %d
%s
[store]
url = "sqlite://%s/keygate.db"
%s%s%s
[[routes]]
path_prefix = "/plain"
upstream = "http://127.0.0.1:%d"
auth = "none"
[[routes]]
path_prefix = "/"
upstream = "http://127.0.0.1:%d"
[[apps]]
id = "bench"
[[apps.keys]]
access_key = "AKBENCH000001"
secret_env = "BENCH_SK"
[[apps.keys]]
access_key = "LEGACYBENCH1"
secret_env = "BENCH_SK"
scheme = "legacy-sorted"
[[apps.keys]]
access_key = "AKLIMITED0001"
secret_env = "BENCH_SK"
rate_limit = { rate_per_sec = 1000000, burst = 1000000 }
""" % (port, threads, server, d, state, audit, extra, UPSTREAM, UPSTREAM))
    env = dict(os.environ, KEYGATE_MASTER_KEY=MASTER, BENCH_SK=SECRET, KEYGATE_LOG="warn")
    p = subprocess.Popen([*wrap, os.path.join(REL, "keygate"), "serve", "--config", cfg], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, 180 if wrap else 20)
    return p


def setup_outbound(tmp):
    """The outbound instance's provider `up`: the same upstream, signed with the HMAC recipe."""
    import urllib.request
    cfg = os.path.join(tmp, "outbound", "keygate.toml")
    env = dict(os.environ, KEYGATE_MASTER_KEY=MASTER)
    out = subprocess.run([os.path.join(REL, "keygate"), "admin-token", "create", "-c", cfg, "--name", "bench", "--json"],
                         env=env, capture_output=True, text=True, check=True).stdout
    token = json.loads(out)["token"]

    def put(path, body):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (OUT_ADMIN, path), data=json.dumps(body).encode(), method="PUT",
                                     headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        urllib.request.urlopen(req).read()
    put("/admin/providers/up", {"tenant_id": "default", "config": {
        "base_url": "http://127.0.0.1:%d" % UPSTREAM, "allow_private_addresses": True, "paths": ["* /*"],
        "granted_apps": ["bench"], "retry": {"max_attempts": 1}, "breaker": {"failure_threshold": 0},
        "recipe": {"type": "hmac_header"}}})
    put("/admin/providers/up/secrets/secret", {"value": "provider-secret-0123456789abcdef"})
    put("/admin/providers/up/secrets/key_id", {"value": "kid-1"})
    time.sleep(1)  # reload


def psql(sql):
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc", sql], check=True,
                   stdout=subprocess.DEVNULL)


def parse_wrk_latency(text, label):
    m = re.search(r"^\s*%s\s+([\d.]+)(us|ms|s)\s*$" % re.escape(label), text, re.M)
    if not m:
        return None
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1000, "s": 1e6}[unit]


def run_wrk(url, conns, duration, threads):
    out = subprocess.run(["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration, "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "p50_us": parse_wrk_latency(out, "50%"), "p99_us": parse_wrk_latency(out, "99%"),
            "p999_us": None, "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def stop_all(procs, tmp):
    """Stops every process (kill after 10 s) and removes the run's temporary directory."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(tmp, ignore_errors=True)


def run_load(url, scheme, conns, duration, threads, key="AKBENCH000001", rate=0, body=0, warmup=1):
    cmd = [os.path.join(REL, "kg-load"), url, "--scheme", scheme, "--key", key, "--secret", SECRET,
           "-c", str(conns), "-d", str(duration), "--threads", str(threads), "--warmup-secs", str(warmup)]
    if rate:
        cmd += ["--rate", str(rate)]
    if body:
        cmd += ["--body-bytes", str(body)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def machine_facts():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return {"cores": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "nginx": nginx_v}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--proxy-threads", type=int, default=1, help="keygate worker threads = nginx workers")
    ap.add_argument("--load-threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the markdown table here")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kgbench-")
    procs = []
    audit_db = "kg_bench_audit_%d" % os.getpid()
    psql("CREATE DATABASE %s" % audit_db)
    try:
        procs.append(start_upstream(1))
        procs.append(start_nginx(tmp, a.proxy_threads))
        procs.append(start_keygate(tmp, a.proxy_threads))
        # Cluster state: nonce + per-key token bucket on Redis (one Lua call per request).
        procs.append(start_keygate(tmp, a.proxy_threads, KEYGATE_REDIS, "redis",
                                   '[state]\nredis = "redis://127.0.0.1:6379"\nkey_prefix = "kgbench:%d:"\ntimeout_ms = 200\n'
                                   % os.getpid()))
        # Every request audited to PostgreSQL (batched writer), plus the metrics observer.
        procs.append(start_keygate(tmp, a.proxy_threads, KEYGATE_AUDIT, "audit",
                                   '[audit]\nurl = "postgres://postgres@127.0.0.1:5432/%s"\n' % audit_db))
        # Outbound: /out/up/... verified like inbound (KG1 + nonce), then HMAC-signed to the upstream.
        procs.append(start_keygate(tmp, a.proxy_threads, KEYGATE_OUT, "outbound",
                                   server='outbound = "127.0.0.1:%d"\nadmin = "127.0.0.1:%d"' % (OUT_LISTENER, OUT_ADMIN)))
        setup_outbound(tmp)
        # The same pipeline with hyper-util's pooled client instead of the lean HTTP/1.1 pool (A/B).
        procs.append(start_keygate(tmp, a.proxy_threads, KEYGATE_HYPER, "hyper", server='upstream_pool = "hyper"'))
        c, d, t = a.connections, a.duration, a.load_threads
        base = "http://127.0.0.1:%d"
        configs = [
            ("direct to upstream (wrk)", lambda: run_wrk(base % UPSTREAM + "/x", c, d, t)),
            ("nginx plain proxy (wrk)", lambda: run_wrk(base % NGINX + "/x", c, d, t)),
            ("keygate proxy only, auth none (wrk)", lambda: run_wrk(base % KEYGATE + "/plain/x", c, d, t)),
            ("direct to upstream (kg-load)", lambda: run_load(base % UPSTREAM + "/x", "none", c, d, t)),
            ("nginx plain proxy (kg-load)", lambda: run_load(base % NGINX + "/x", "none", c, d, t)),
            ("keygate proxy only (kg-load)", lambda: run_load(base % KEYGATE + "/plain/x", "none", c, d, t)),
            ("keygate proxy only, hyper-util pool (kg-load)",
             lambda: run_load(base % KEYGATE_HYPER + "/plain/x", "none", c, d, t)),
            ("keygate KG1 verify + memory nonce", lambda: run_load(base % KEYGATE + "/v1/x?a=1&b=2", "kg1", c, d, t)),
            ("keygate KG1, hyper-util pool", lambda: run_load(base % KEYGATE_HYPER + "/v1/x?a=1&b=2", "kg1", c, d, t)),
            ("keygate KG1, 1 KiB POST body", lambda: run_load(base % KEYGATE + "/v1/x", "kg1", c, d, t, body=1024)),
            ("keygate legacy MD5", lambda: run_load(base % KEYGATE + "/v1/x", "legacy", c, d, t, key="LEGACYBENCH1")),
            ("keygate rejection (bad signature)", lambda: run_load(base % KEYGATE + "/v1/x", "kg1-bad", c, d, t)),
            ("keygate KG1 + Redis nonce + rate limit",
             lambda: run_load(base % KEYGATE_REDIS + "/v1/x?a=1&b=2", "kg1", c, d, t, key="AKLIMITED0001")),
            ("keygate KG1 + audit to PostgreSQL",
             lambda: run_load(base % KEYGATE_AUDIT + "/v1/x?a=1&b=2", "kg1", c, d, t)),
            ("keygate outbound: KG1 caller + HMAC recipe",
             lambda: run_load(base % OUT_LISTENER + "/out/up/x?a=1", "kg1", c, d, t)),
        ]
        results = {name: [] for name, _ in configs}
        for rep in range(a.reps):
            for name, fn in configs:
                r = fn()
                results[name].append(r)
                print("rep %d  %-40s %9.0f rps  p99 %s us" % (rep + 1, name, r["rps"], r.get("p99_us")), file=sys.stderr)
        nginx_wrk = statistics.median(r["rps"] for r in results["nginx plain proxy (wrk)"])
        nginx_load = statistics.median(r["rps"] for r in results["nginx plain proxy (kg-load)"])
        facts = machine_facts()
        lines = [
            "Machine: %d cores, %s, kernel %s, %s. %d connections, %d s per run, %d runs each (interleaved), "
            "keygate worker threads = nginx workers = %d, load generator threads = %d."
            % (facts["cores"], facts["cpu"], facts["kernel"], facts["nginx"], c, d, a.reps, a.proxy_threads, t),
            "",
            "| configuration | RPS median | RPS min–max | × nginx | p50 µs | p99 µs | p99.9 µs | non-2xx |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, _ in configs:
            rs = results[name]
            rps = [r["rps"] for r in rs]
            ref = nginx_wrk if "(wrk)" in name else nginx_load

            def med(k):
                vals = [r[k] for r in rs if r.get(k) is not None]
                return "%.0f" % statistics.median(vals) if vals else "–"
            lines.append("| %s | %.0f | %.0f–%.0f | %.2f | %s | %s | %s | %d |" % (
                name, statistics.median(rps), min(rps), max(rps), statistics.median(rps) / ref,
                med("p50_us"), med("p99_us"), med("p999_us"), sum(r.get("non_2xx", 0) for r in rs)))
        table = "\n".join(lines)
        print(table)
        if a.out:
            with open(a.out, "w") as f:
                f.write(table + "\n")
    finally:
        stop_all(procs, tmp)
        psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % audit_db)


if __name__ == "__main__":
    main()
