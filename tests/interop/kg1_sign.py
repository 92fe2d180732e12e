#!/usr/bin/env python3
"""Independent KG1-HMAC-SHA256 signer, written from docs/signing.md (standard library only).

It exists to check the Rust implementation against a second reading of the spec, and as a
starting point for integrators. Use as a module:

    from kg1_sign import sign
    headers = sign("POST", "https://api.example.com/v1/orders?x=1",
                   {"Content-Type": "application/json"}, b'{"a":1}',
                   "AKID", b"secret", signed_headers=("host", "content-type"))

or as a CLI that prints the headers to add as JSON:

    python3 kg1_sign.py --key AKID --secret s3cr3t -X POST -H 'Content-Type: application/json' \
        --data '{"a":1}' --signed-headers host,content-type https://api.example.com/v1/orders
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import sys
import time

ALGORITHM = "KG1-HMAC-SHA256"
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")
TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
NONCE_RE = re.compile(r"\A[A-Za-z0-9_-]{16,64}\Z")


class SignError(ValueError):
    """The request cannot be signed as given (it would be refused by keygate)."""


def _percent_decode(text):
    """Spec 1.4 step 3: %XX -> byte, '+' stays '+', other characters as their UTF-8 bytes."""
    raw = text.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == 0x25:  # '%'
            pair = raw[i + 1:i + 3]
            if len(pair) != 2 or not all(b in HEXDIGITS for b in pair):
                raise SignError("invalid percent-encoding in query")
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return bytes(out)


def _percent_encode(data):
    """Spec 1.4 step 4: keep unreserved bytes, everything else as uppercase %XX."""
    return "".join(chr(b) if b in UNRESERVED else "%%%02X" % b for b in data)


def canonical_query(raw_query):
    """Spec 1.4."""
    pairs = []
    for piece in (raw_query or "").split("&"):
        if piece == "":
            continue
        name, _, value = piece.partition("=")
        pairs.append((_percent_encode(_percent_decode(name)), _percent_encode(_percent_decode(value))))
    # ASCII strings: Python's str ordering equals bytewise ordering; tuples compare name first.
    pairs.sort()
    return "&".join(n + "=" + v for n, v in pairs)


def check_raw_path(raw_path):
    """Spec 1.3: raise SignError for a path keygate refuses with invalid_path."""
    if not raw_path.startswith("/"):
        raise SignError("path must start with /")
    raw = raw_path.encode("utf-8")
    for i, c in enumerate(raw):
        if c < 0x21 or c > 0x7E:
            raise SignError("control character, space or non-ASCII byte in path")
        if c == 0x5C:
            raise SignError("backslash in path")
        if c == 0x25:
            pair = raw[i + 1:i + 3]
            if len(pair) != 2 or not all(b in HEXDIGITS for b in pair):
                raise SignError("invalid percent-encoding in path")
            if int(pair, 16) in (0x00, 0x2F, 0x5C):
                raise SignError("encoded NUL, slash or backslash in path")
    for segment in raw_path[1:].split("/"):
        segment = segment.split(";", 1)[0]
        if re.fullmatch(r"(?:\.|%2[eE]){1,2}", segment):
            raise SignError("dot segment in path")


def canonical_header_value(value):
    """Spec 1.5: trim SP/HTAB, collapse inner runs to one space; visible ASCII only."""
    if any(not (0x20 <= ord(ch) <= 0x7E or ch == "\t") for ch in value):
        raise SignError("header value is not visible ASCII")
    return re.sub(r"[ \t]+", " ", value).strip(" ")


def _header_items(headers):
    """Accepts a dict or a list of (name, value) pairs (a list can repeat a name)."""
    if headers is None:
        return []
    if hasattr(headers, "items"):
        return list(headers.items())
    return list(headers)


def split_url(url):
    """'/path?query' or 'http(s)://host[:port]/path?query' -> (authority|None, path, query|None)."""
    authority = None
    m = re.match(r"(?i)\A(https?)://", url)
    if m:
        scheme = m.group(1).lower()
        rest = url[m.end():]
        end = len(rest)
        for sep in "/?#":
            pos = rest.find(sep)
            if pos != -1:
                end = min(end, pos)
        authority = rest[:end].rpartition("@")[2].lower()
        default = ":80" if scheme == "http" else ":443"
        if authority.endswith(default):
            authority = authority[: -len(default)]
        url = rest[end:]
    url = url.split("#", 1)[0]
    path, qmark, query = url.partition("?")
    return authority, path, (query if qmark else None)


def string_to_sign(method, raw_path, raw_query, headers, body, access_key, timestamp, nonce,
                   signed_headers=(), authority=None):
    """Spec 1.2. `signed_headers` must already be lowercase and sorted."""
    path = raw_path or "/"
    check_raw_path(path)
    lines = [
        ALGORITHM,
        method.upper(),
        path,
        canonical_query(raw_query),
        access_key,
        str(timestamp),
        nonce,
        ";".join(signed_headers),
    ]
    out = "\n".join(lines) + "\n"
    items = _header_items(headers)
    for name in signed_headers:
        values = [v for n, v in items if n.lower() == name]
        if not values and name == "host" and authority is not None:
            values = [authority]
        if not values:
            raise SignError("signed header %s is not in the request" % name)
        out += name + ":" + ",".join(canonical_header_value(v) for v in values) + "\n"
    out += hashlib.sha256(body).hexdigest()
    return out


def _normalise_signed_headers(names):
    result = sorted(set(n.lower() for n in names))
    for n in result:
        if not n or any(ord(c) > 0x7F or ord(c) not in TCHAR for c in n):
            raise SignError("invalid signed header name %r" % n)
        if n.startswith("x-kg-"):
            raise SignError("x-kg-* headers cannot be signed")
    return result


def sign(method, url, headers, body, access_key, secret, signed_headers=(), timestamp=None, nonce=None):
    """Returns the dict of X-Kg-* headers to add to the request.

    url: '/path?query' or an absolute URL; headers: dict or list of (name, value);
    body: bytes (str is UTF-8 encoded); secret: bytes or str.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    if body is None:
        body = b""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if timestamp is None:
        timestamp = int(time.time())
    if nonce is None:
        nonce = os.urandom(16).hex()
    if not NONCE_RE.match(nonce):
        raise SignError("nonce must be 16-64 characters of [A-Za-z0-9_-]")
    if not (1 <= len(access_key) <= 128) or any(not 0x21 <= ord(c) <= 0x7E for c in access_key):
        raise SignError("access key must be 1-128 visible ASCII characters")
    names = _normalise_signed_headers(signed_headers)
    authority, path, query = split_url(url)
    sts = string_to_sign(method, path, query, headers, body, access_key, timestamp, nonce, names, authority)
    out = {
        "X-Kg-Key": access_key,
        "X-Kg-Timestamp": str(timestamp),
        "X-Kg-Nonce": nonce,
    }
    if names:
        out["X-Kg-Signed-Headers"] = ";".join(names)
    out["X-Kg-Signature"] = hmac.new(secret, sts.encode("ascii"), hashlib.sha256).hexdigest()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description="Print the X-Kg-* headers for a request as JSON.")
    p.add_argument("url", help="'/path?query' or absolute URL")
    p.add_argument("-X", "--method", default="GET")
    p.add_argument("-H", "--header", action="append", default=[], help="'Name: value' (repeatable)")
    p.add_argument("--data", default="", help="body as UTF-8 text")
    p.add_argument("--data-file", help="read the body from this file (bytes)")
    p.add_argument("--key", required=True, help="access key")
    p.add_argument("--secret", help="secret (default: env KG_SECRET)")
    p.add_argument("--signed-headers", default="", help="comma-separated names, e.g. host,content-type")
    p.add_argument("--timestamp", type=int)
    p.add_argument("--nonce")
    p.add_argument("--string-to-sign", action="store_true", help="also print the string to sign on stderr")
    a = p.parse_args(argv)
    secret = a.secret if a.secret is not None else os.environ.get("KG_SECRET")
    if secret is None:
        p.error("--secret or KG_SECRET is required")
    headers = []
    for h in a.header:
        name, sep, value = h.partition(":")
        if not sep:
            p.error("header %r is not 'Name: value'" % h)
        headers.append((name.strip(), value.strip()))
    if a.data_file:
        with open(a.data_file, "rb") as f:
            body = f.read()
    else:
        body = a.data.encode("utf-8")
    names = [n for n in a.signed_headers.split(",") if n.strip()]
    try:
        out = sign(a.method, a.url, headers, body, a.key, secret, [n.strip() for n in names], a.timestamp, a.nonce)
    except SignError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    if a.string_to_sign:
        authority, path, query = split_url(a.url)
        sts = string_to_sign(a.method, path, query, headers, body, a.key, int(out["X-Kg-Timestamp"]),
                             out["X-Kg-Nonce"], _normalise_signed_headers(names), authority)
        print(sts.replace("\n", "\\n\n"), file=sys.stderr)
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
