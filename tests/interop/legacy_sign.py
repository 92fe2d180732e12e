#!/usr/bin/env python3
"""Independent legacy-sorted signer, written from docs/signing.md section 2 (standard library only)."""

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
