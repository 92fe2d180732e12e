"""Cost per request, measured in ways that hold still on a shared two-core machine.

Throughput (scripts/bench.py) swings by ±30 % between runs here (neighbours, steal time). Two
figures move far less, so they are the ones to compare a change by:

  --mode rate   (default) each proxy at the same fixed request rate, open loop: the proxy
                process's user+system CPU (from /proc/<pid>/stat) divided by the requests it
                served, and the latency percentiles at that rate (coordinated-omission corrected;
                the "added p99" is keygate's p99 minus nginx's at the same rate).
  --mode instr  each proxy under valgrind's callgrind: user-space instructions per request
                (counters zeroed after a warm-up, dumped after a fixed-length run). Deterministic
                to ~1 %, blind to kernel time and to cache misses. Under valgrind aws-lc picks its
                AVX SHA-256 instead of the SHA-NI one the real CPU uses, which inflates the KG1 rows.

Variants run interleaved, `--reps` times each; tables give the median and the spread.
Usage: python3 scripts/bench_cpu.py [--mode rate|instr] [--rate 4000] [--duration 6] [--reps 5]
(binaries from `scripts/bench`'s build: target/release/{keygate,kg-load,kg-upstream}).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
REDIS = '[state]\nredis = "redis://127.0.0.1:6379"\nkey_prefix = "kgcpu:%d:"\ntimeout_ms = 200\n' % os.getpid()


def cpu_secs(pid):
    """user+system CPU of `pid` and all its threads, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def keygate_variants():
    """(name, instance, path, scheme, key) rows; instance names the keygate process to use."""
    return [
        ("keygate proxy only, lean pool", "lean", "/plain/x", "none", "AKBENCH000001"),
        ("keygate proxy only, hyper-util pool", "hyper", "/plain/x", "none", "AKBENCH000001"),
        ("keygate KG1 + memory nonce, lean pool", "lean", "/v1/x?a=1&b=2", "kg1", "AKBENCH000001"),
        ("keygate KG1 + memory nonce, hyper-util pool", "hyper", "/v1/x?a=1&b=2", "kg1", "AKBENCH000001"),
    ]


def mode_rate(a, tmp, procs):
    nginx = subprocess.Popen(["nginx", "-c", bench.nginx_conf(tmp, bench.NGINX), "-p", tmp],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(nginx)
    bench.wait_port(bench.NGINX)
    worker = int(subprocess.run(["pgrep", "-P", str(nginx.pid)], capture_output=True, text=True).stdout.split()[0])
    inst = {
        "lean": (bench.start_keygate(tmp, 1), bench.KEYGATE),
        "hyper": (bench.start_keygate(tmp, 1, bench.KEYGATE_HYPER, "hyper", server='upstream_pool = "hyper"'),
                  bench.KEYGATE_HYPER),
        "redis": (bench.start_keygate(tmp, 1, bench.KEYGATE_REDIS, "redis", REDIS), bench.KEYGATE_REDIS),
        "audit": (bench.start_keygate(tmp, 1, bench.KEYGATE_AUDIT, "audit",
                                      '[audit]\nurl = "postgres://postgres@127.0.0.1:5432/%s"\n' % a.audit_db),
                  bench.KEYGATE_AUDIT),
    }
    procs.extend(p for p, _ in inst.values())
    url = "http://127.0.0.1:%d%s"
    rows = [("nginx plain proxy", worker, url % (bench.NGINX, "/x"), "none", "AKBENCH000001")]
    for name, which, path, scheme, key in keygate_variants() + [
        ("keygate KG1 + Redis nonce + rate limit", "redis", "/v1/x?a=1&b=2", "kg1", "AKLIMITED0001"),
        ("keygate KG1 + audit to PostgreSQL (keygate's CPU only)", "audit", "/v1/x?a=1&b=2", "kg1", "AKBENCH000001"),
        ("keygate rejection (bad signature)", "lean", "/v1/x", "kg1-bad", "AKBENCH000001"),
    ]:
        p, port = inst[which]
        rows.append((name, p.pid, url % (port, path), scheme, key))
    results = {r[0]: [] for r in rows}
    for rep in range(a.reps):
        for name, pid, u, scheme, key in rows:
            before = cpu_secs(pid)
            r = bench.run_load(u, scheme, a.connections, a.duration, 1, key=key, rate=a.rate, warmup=0)
            r["cpu_us"] = (cpu_secs(pid) - before) * 1e6 / max(r["requests"], 1)
            results[name].append(r)
            print("rep %d  %-45s %6.1f µs CPU/request  p99 %s µs  (%d requests)"
                  % (rep + 1, name, r["cpu_us"], r.get("p99_us"), r["requests"]), file=sys.stderr)
    ref = statistics.median(r["cpu_us"] for r in results["nginx plain proxy"])
    ref_p99 = statistics.median(r["p99_us"] for r in results["nginx plain proxy"])
    late = [r["pacer_late_p99_us"] for rs in results.values() for r in rs]
    print("%d req/s open loop, %d connections, %d s per run, %d runs each (interleaved). kg-load's "
          "pacer woke late by p99 %d µs (median over runs; part of every row's latency).\n"
          % (a.rate, a.connections, a.duration, a.reps, statistics.median(late)))
    print("| proxy process | CPU µs/request median | min–max | × nginx | p50 µs | p99 µs | p99.9 µs | added p99 µs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, *_ in rows:
        rs = results[name]
        cpu = [r["cpu_us"] for r in rs]

        def med(k):
            return statistics.median(r[k] for r in rs)
        print("| %s | %.1f | %.1f–%.1f | %.2f | %.0f | %.0f | %.0f | %+.0f |" % (
            name, statistics.median(cpu), min(cpu), max(cpu), statistics.median(cpu) / ref,
            med("p50_us"), med("p99_us"), med("p999_us"), med("p99_us") - ref_p99))


def callgrind_total(prefix):
    files = [os.path.join(os.path.dirname(prefix), f) for f in os.listdir(os.path.dirname(prefix))
             if os.path.join(os.path.dirname(prefix), f).startswith(prefix + ".")]
    last = max(files, key=os.path.getmtime)
    txt = subprocess.run(["callgrind_annotate", last], capture_output=True, text=True).stdout
    return int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", txt).group(1).replace(",", ""))


def measure_instr(pid, prefix, u, scheme, key, duration):
    bench.run_load(u, scheme, 8, 2, 1, key=key, warmup=0)  # connections, pools, caches
    subprocess.run(["callgrind_control", "--zero", str(pid)], capture_output=True, check=True)
    r = bench.run_load(u, scheme, 8, duration, 1, key=key, warmup=0)
    subprocess.run(["callgrind_control", "--dump=run", str(pid)], capture_output=True, check=True)
    time.sleep(1)
    return callgrind_total(prefix) / max(r["requests"], 1)


def mode_instr(a, tmp, procs):
    cg = lambda name: ("valgrind", "--tool=callgrind", "--callgrind-out-file=%s/cg-%s.out" % (tmp, name))  # noqa: E731
    conf = bench.nginx_conf(tmp, bench.NGINX, extra="master_process off;")
    nginx = subprocess.Popen([*cg("nginx"), "nginx", "-c", conf, "-p", tmp],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(nginx)
    bench.wait_port(bench.NGINX, 180)
    inst = {
        "lean": (bench.start_keygate(tmp, 1, wrap=cg("lean")), bench.KEYGATE),
        "hyper": (bench.start_keygate(tmp, 1, bench.KEYGATE_HYPER, "hyper", server='upstream_pool = "hyper"',
                                      wrap=cg("hyper")), bench.KEYGATE_HYPER),
    }
    procs.extend(p for p, _ in inst.values())
    url = "http://127.0.0.1:%d%s"
    rows = [("nginx plain proxy", nginx.pid, "nginx", url % (bench.NGINX, "/x"), "none", "AKBENCH000001")]
    for name, which, path, scheme, key in keygate_variants() + [
        ("keygate rejection (bad signature)", "lean", "/v1/x", "kg1-bad", "AKBENCH000001"),
    ]:
        p, port = inst[which]
        rows.append((name, p.pid, which, url % (port, path), scheme, key))
    results = {r[0]: [] for r in rows}
    for rep in range(a.reps):
        for name, pid, which, u, scheme, key in rows:
            ir = measure_instr(pid, "%s/cg-%s.out" % (tmp, which), u, scheme, key, a.duration)
            results[name].append(ir)
            print("rep %d  %-45s %8.0f instructions/request" % (rep + 1, name, ir), file=sys.stderr)
    ref = statistics.median(results["nginx plain proxy"])
    print("callgrind, user space only, %d connections, %d s per run, %d runs each.\n" % (8, a.duration, a.reps))
    print("| proxy process | instructions/request median | min–max | × nginx |")
    print("|---|---:|---:|---:|")
    for name, *_ in rows:
        v = results[name]
        print("| %s | %.0f | %.0f–%.0f | %.2f |" % (name, statistics.median(v), min(v), max(v),
                                                 statistics.median(v) / ref))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["rate", "instr"], default="rate")
    ap.add_argument("--rate", type=int, default=4000)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kgcpu-")
    procs = []
    a.audit_db = "kg_cpu_audit_%d" % os.getpid()
    if a.mode == "rate":
        bench.psql("CREATE DATABASE %s" % a.audit_db)
    try:
        procs.append(bench.start_upstream(1))
        (mode_rate if a.mode == "rate" else mode_instr)(a, tmp, procs)
    finally:
        bench.stop_all(procs, tmp)
        if a.mode == "rate":
            bench.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % a.audit_db)


if __name__ == "__main__":
    main()
