"""KG1-HMAC-SHA256 signing (docs/signing.md section 1), standard library only.

Derived from the independent reference signer in tests/interop/kg1_sign.py.

Public entry points are re-exported by the `keygate` package.
"""

import hashlib
import hmac
import secrets
import re
import time

ALGORITHM = "KG1-HMAC-SHA256"
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")
TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
NONCE_RE = re.compile(r"\A[A-Za-z0-9_-]{16,64}\Z")


from .errors import SignError


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
        raise SignError("path must start with /", "invalid_path")
    raw = raw_path.encode("utf-8")
    for i, c in enumerate(raw):
        if c < 0x21 or c > 0x7E:
            raise SignError("control character, space or non-ASCII byte in path", "invalid_path")
        if c == 0x5C:
            raise SignError("backslash in path", "invalid_path")
        if c == 0x25:
            pair = raw[i + 1:i + 3]
            if len(pair) != 2 or not all(b in HEXDIGITS for b in pair):
                raise SignError("invalid percent-encoding in path", "invalid_path")
            if int(pair, 16) in (0x00, 0x2F, 0x5C):
                raise SignError("encoded NUL, slash or backslash in path", "invalid_path")
    for segment in raw_path[1:].split("/"):
        segment = segment.split(";", 1)[0]
        if re.fullmatch(r"(?:\.|%2[eE]){1,2}", segment):
            raise SignError("dot segment in path", "invalid_path")


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
    body = _body_bytes(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    if body is None:
        body = b""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if timestamp is None:
        timestamp = int(time.time())
    if nonce is None:
        nonce = secrets.token_hex(16)
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


def _body_bytes(body):
    """Bytes as they will be sent: bytes-like, str (UTF-8), file objects (read fully, then rewound)."""
    if body is None or isinstance(body, (bytes, str)):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    if hasattr(body, "read"):
        pos = body.tell() if hasattr(body, "tell") else None
        data = body.read()
        if pos is not None and hasattr(body, "seek"):
            body.seek(pos)
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    raise SignError("unsupported body type %s: pass bytes, str or a seekable file" % type(body).__name__)
