#!/usr/bin/env python3
"""Encrypted JSON fields (docs/encrypted-fields.md) with the `cryptography` package only, written
from the document and independent of keygate's Rust code.

Usage: field_crypto.py <mode>, a JSON case on stdin, a JSON answer on stdout.

  keygen   {"bits": 2048}
           -> {"private_key_pem": PKCS#8 PEM, "public_key_pem": SPKI PEM}
  encrypt  {"public_key_pem", "kid", "mode": "direct"|"hybrid"|"auto",
            "plaintexts": [text, ...]   (UTF-8 bytes encrypted as given)
            or "values": [json, ...]}   (each value's compact JSON encrypted)
           -> {"envelopes": [str, ...]}
  decrypt  {"private_key_pem", "envelopes": [str, ...]}
           -> {"plaintexts": [text or null (failed), ...]}

The block between the "snippet" markers is the snippet in docs/encrypted-fields.md, verbatim
(crates/keygate-sign/tests/fields_interop.rs checks that they are identical).
"""
import sys

# --- snippet: docs/encrypted-fields.md ---
import base64
import json
import os
import re

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
KID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    text = text.rstrip("=")
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def kge1_encrypt(public_key_pem: bytes, kid: str, plaintext: bytes, mode: str = "auto") -> str:
    """Encrypts plaintext bytes into a kge1 envelope (mode: "direct", "hybrid" or "auto")."""
    if not KID.fullmatch(kid):
        raise ValueError("kid must be 1-32 characters of [A-Za-z0-9_-]")
    public_key = serialization.load_pem_public_key(public_key_pem)
    max_direct = public_key.key_size // 8 - 66  # 190 bytes for RSA-2048
    if mode == "direct" or (mode == "auto" and len(plaintext) <= max_direct):
        return f"kge1.o.{kid}." + b64url(public_key.encrypt(plaintext, OAEP))
    aes_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    aad = f"kge1.h.{kid}".encode("ascii")
    sealed = AESGCM(aes_key).encrypt(nonce, plaintext, aad)  # ciphertext || 16-byte tag
    wrapped = public_key.encrypt(aes_key, OAEP)
    return f"kge1.h.{kid}.{b64url(wrapped)}.{b64url(nonce)}.{b64url(sealed)}"


def encrypt_field(public_key_pem: bytes, kid: str, value, mode: str = "auto") -> str:
    """Encrypts one JSON value (any type): its compact JSON text is the plaintext."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return kge1_encrypt(public_key_pem, kid, text.encode("utf-8"), mode)


def kge1_decrypt(private_key_pem: bytes, envelope: str) -> bytes:
    """Opens a kge1 envelope (e.g. a response field keygate encrypted for you)."""
    parts = envelope.split(".")
    if parts[0] != "kge1" or len(parts) < 4 or not KID.fullmatch(parts[2]):
        raise ValueError("not a kge1 envelope")
    private_key = serialization.load_pem_private_key(private_key_pem, password=None)
    if parts[1] == "o" and len(parts) == 4:
        return private_key.decrypt(unb64url(parts[3]), OAEP)
    if parts[1] == "h" and len(parts) == 6:
        aes_key = private_key.decrypt(unb64url(parts[3]), OAEP)
        nonce = unb64url(parts[4])
        if len(aes_key) != 32 or len(nonce) != 12:
            raise ValueError("bad hybrid envelope")
        aad = f"kge1.h.{parts[2]}".encode("ascii")
        return AESGCM(aes_key).decrypt(nonce, unb64url(parts[5]), aad)
    raise ValueError("not a kge1 envelope")
# --- end snippet ---


def keygen(case):
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=case.get("bits", 2048))
    return {
        "private_key_pem": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "public_key_pem": key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    }


def encrypt(case):
    pem = case["public_key_pem"].encode()
    mode = case.get("mode", "auto")
    if "values" in case:
        envelopes = [encrypt_field(pem, case["kid"], v, mode) for v in case["values"]]
    else:
        envelopes = [kge1_encrypt(pem, case["kid"], p.encode("utf-8"), mode) for p in case["plaintexts"]]
    return {"envelopes": envelopes}


def decrypt(case):
    pem = case["private_key_pem"].encode()
    out = []
    for envelope in case["envelopes"]:
        try:
            out.append(kge1_decrypt(pem, envelope).decode("utf-8"))
        except Exception:  # any failure is the one answer "could not be decrypted"
            out.append(None)
    return {"plaintexts": out}


if __name__ == "__main__":
    handler = {"keygen": keygen, "encrypt": encrypt, "decrypt": decrypt}[sys.argv[1]]
    json.dump(handler(json.load(sys.stdin)), sys.stdout)
