"""legacy-sorted signing (docs/signing.md section 2), standard library only."""

import hashlib
import re

DEFAULT_CONFIG = {
    "digest": "md5",
    "hex_case": "upper",
    "location": "params",
    "access_key_field": "appId",
    "timestamp_field": "timeStamp",
    "nonce_field": "nonce",
    "sign_field": "sign",
    "timestamp_unit": "ms",
    "nonce_min_len": 8,
}


def form_decode(text):
    """application/x-www-form-urlencoded: '+' is a space, %XX a byte; the bytes must be UTF-8."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if re.search(rb"%(?![0-9A-Fa-f]{2})", raw):
        raise ValueError("invalid percent-encoding")
    raw = raw.replace(b"+", b" ")
    raw = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)
    return raw.decode("utf-8")  # UnicodeDecodeError is a ValueError


def parse_form(text):
    """Spec 2.2: split on '&' (empty pieces dropped), then on the first '='."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    pairs = []
    for piece in raw.split(b"&"):
        if piece:
            name, _, value = piece.partition(b"=")
            pairs.append((form_decode(name), form_decode(value)))
    return pairs


def collect_params(config, raw_query=None, form_body=None, headers=()):
    """Spec 2.2: query + form body + (location 'headers') the four auth fields from headers."""
    params = []
    for source in (raw_query, form_body):
        if source:
            params += parse_form(source)
    if config["location"] == "headers":
        wanted = {config[k].lower(): config[k] for k in
                  ("access_key_field", "timestamp_field", "nonce_field", "sign_field")}
        for name, value in headers:
            if name.lower() in wanted:
                params.append((wanted[name.lower()], value))
    names = [n for n, _ in params]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError("parameter %s given more than once" % dupes[0])
    return params


def string_to_sign(config, params, secret):
    """Spec 2.3 steps 1-4."""
    signed = sorted(((n, v) for n, v in params if v != "" and n != config["sign_field"]),
                    key=lambda p: (p[0].encode("utf-8"), p[1].encode("utf-8")))
    return "".join(n + v for n, v in signed) + secret


def sign(config, params, secret):
    """Spec 2.3 step 5."""
    data = string_to_sign(config, params, secret).encode("utf-8")
    digest = hashlib.new(config["digest"], data).hexdigest()
    return digest.upper() if config["hex_case"] == "upper" else digest.lower()


def sign_params(params, secret, config=None, now_ms=None, nonce=None, access_key=None):
    """Adds timestamp, nonce and sign fields to a list of (name, value) params for a legacy key.

    Returns the new list; send it as the query string or form body. `config` overrides DEFAULT_CONFIG.
    """
    import secrets as _secrets
    import time as _time

    cfg = dict(DEFAULT_CONFIG)
    cfg.update(config or {})
    out = [(n, v) for n, v in params if n != cfg["sign_field"]]
    names = {n for n, _ in out}
    if access_key is not None and cfg["access_key_field"] not in names:
        out.append((cfg["access_key_field"], access_key))
    if cfg["timestamp_field"] not in names:
        now = _time.time() if now_ms is None else now_ms / 1000.0
        out.append((cfg["timestamp_field"], str(int(now * 1000) if cfg["timestamp_unit"] == "ms" else int(now))))
    if cfg["nonce_field"] not in names:
        out.append((cfg["nonce_field"], nonce or _secrets.token_hex(8)))
    out.append((cfg["sign_field"], sign(cfg, out, secret)))
    return out
