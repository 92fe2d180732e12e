"""Sign time per request with a 1 KB body: python3 sdk/python/bench.py"""
import os
import sys
import timeit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
import keygate  # noqa: E402

s = keygate.Signer("AKBENCH000000001", "bench-secret", ("host", "content-type"))
body = os.urandom(1024)
h = {"Content-Type": "application/octet-stream"}
url = "https://gw.example.com/v1/orders/123?b=2&a=1&q=hello%20world"
n = 20000
t = min(timeit.repeat(lambda: s.sign("POST", url, h, body), number=n, repeat=3))
print("python %s: %.1f us/sign (1 KB body, 2 signed headers)" % (sys.version.split()[0], t / n * 1e6))
