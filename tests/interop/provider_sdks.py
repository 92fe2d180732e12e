#!/usr/bin/env python3
"""Runs the providers' own client SDKs so keygate's algorithms can be compared with them.

Usage: provider_sdks.py <mode>, a JSON case on stdin, a JSON answer on stdout.

  keys            fresh RSA-2048 key pairs in the encodings providers hand out
  sigv4           botocore SigV4Auth / S3SigV4Auth headers for a request at a frozen time
  sigv4_presign   botocore SigV4QueryAuth / S3SigV4QueryAuth presigned URL
  alipay_sign     python-alipay-sdk's `sign` for the given params (its sign_data)
  alipay_verify   python-alipay-sdk's verification of a synchronous response
  wechat_auth     wechatpayv3's Authorization header at a frozen time and nonce
  wechat_verify   wechatpayv3's rsa_verify of a response signature
  wechat_sign_response  a response signed the way WeChat Pay signs (platform private key)
  wechat_decrypt  wechatpayv3's aes_decrypt of a resource
  aesgcm_encrypt  AES-256-GCM encryption with `cryptography` (what WeChat Pay sends)
"""
import base64
import json
import sys
from unittest import mock


def keys(_):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    out = {}
    for name in ("app", "provider"):
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        out[f"{name}_pkcs1_pem"] = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()).decode()
        out[f"{name}_pkcs8_pem"] = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        pkcs8_der = k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        out[f"{name}_pkcs8_b64"] = base64.b64encode(pkcs8_der).decode()
        pub = k.public_key()
        out[f"{name}_public_pem"] = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        out[f"{name}_public_b64"] = base64.b64encode(pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    # A self-signed certificate for the provider key (WeChat Pay platform certificate).
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    pk = serialization.load_pem_private_key(out["provider_pkcs8_pem"].encode(), None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(pk.public_key()).serial_number(0x5157F09EFDC096DE15EBE81A47057A7232F1B8E1).not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365)).sign(pk, hashes.SHA256())
    out["provider_cert_pem"] = cert.public_bytes(serialization.Encoding.PEM).decode()
    out["provider_cert_serial"] = format(cert.serial_number, "X")
    return out


def sigv4(case):
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    import datetime

    creds = Credentials(case["access_key"], case["secret_key"], case.get("session_token"))
    req = AWSRequest(method=case["method"], url=case["url"], data=case["body"].encode(), headers=case.get("headers", {}))
    cls = S3SigV4Auth if case["service"] == "s3" else SigV4Auth
    fixed = datetime.datetime.fromtimestamp(case["time"], tz=datetime.timezone.utc).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=fixed):
        cls(creds, case["service"], case["region"]).add_auth(req)
    return {k.lower(): v for k, v in req.headers.items()}


def sigv4_presign(case):
    from botocore.auth import S3SigV4QueryAuth, SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    import datetime

    creds = Credentials(case["access_key"], case["secret_key"], case.get("session_token"))
    req = AWSRequest(method=case["method"], url=case["url"], data=case.get("body", "").encode(), headers=case.get("headers", {}))
    cls = S3SigV4QueryAuth if case["service"] == "s3" else SigV4QueryAuth
    fixed = datetime.datetime.fromtimestamp(case["time"], tz=datetime.timezone.utc).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=fixed):
        cls(creds, case["service"], case["region"], expires=case.get("expires", 3600)).add_auth(req)
    return {"url": req.url}


def rfc9421_sign(case):
    """Signs a request with http-message-signatures (RFC 9421) and returns the headers."""
    import datetime
    import requests
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

    body = case.get("body", "").encode()
    req = requests.Request(case["method"], case["url"], headers=case.get("headers", {}), data=body or None).prepare()
    out = {}
    if case["alg"] == "hmac-sha256":
        alg, key = algorithms.HMAC_SHA256, case["secret"].encode()
    else:
        if case.get("private_key_pem"):
            key = case["private_key_pem"].encode()
            private = serialization.load_pem_private_key(key, None)
        else:
            private = ed25519.Ed25519PrivateKey.generate()
            key = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        out["private_key_pem"] = key.decode()
        out["public_key_b64"] = base64.b64encode(private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()
        alg = algorithms.ED25519
    signer = HTTPMessageSigner(signature_algorithm=alg, key_resolver=MappingKeyResolver(public_keys={}, private_keys={case["key_id"]: key}))
    created = datetime.datetime.fromtimestamp(case["created"], tz=datetime.timezone.utc)
    signer.sign(req, key_id=case["key_id"], created=created, nonce=case["nonce"], label="sig1",
                covered_component_ids=tuple(case["components"]), body=body if body else None)
    out["headers"] = {k.lower(): v for k, v in req.headers.items()}
    return out


def alipay_client(case):
    from alipay import AliPay
    return AliPay(appid=case["app_id"], app_notify_url=None, app_private_key_string=case["app_private_key"], alipay_public_key_string=case["alipay_public_key"], sign_type="RSA2")


def alipay_sign(case):
    client = alipay_client(case)
    signed = client.sign_data(dict(case["params"]))
    import urllib.parse
    pairs = dict(urllib.parse.parse_qsl(signed, keep_blank_values=True))
    return {"sign": pairs["sign"], "signed_string": signed}


def alipay_verify(case):
    client = alipay_client(case)
    try:
        node = client._verify_and_return_sync_response(case["body"], case["response_type"])
        return {"ok": True, "node": node}
    except Exception as e:  # the SDK raises on a bad signature
        return {"ok": False, "error": type(e).__name__}


def wechat_auth(case):
    from wechatpayv3.utils import build_authorization, load_private_key
    with mock.patch("wechatpayv3.utils.time.time", return_value=case["timestamp"]):
        auth = build_authorization(case["path"], case["method"], case["mchid"], case["serial_no"], load_private_key(case["private_key"]), data=case["body"] or None, nonce_str=case["nonce"])
    return {"authorization": auth}


def wechat_verify(case):
    from wechatpayv3.utils import load_certificate, rsa_verify
    cert = load_certificate(case["certificate"])
    return {"ok": rsa_verify(case["timestamp"], case["nonce"], case["body"], case["signature"], cert.public_key())}


def wechat_sign_response(case):
    from wechatpayv3.utils import load_private_key, rsa_sign
    key = load_private_key(case["private_key"])
    return {"signature": rsa_sign(key, "%s\n%s\n%s\n" % (case["timestamp"], case["nonce"], case["body"]))}


def wechat_decrypt(case):
    from wechatpayv3.utils import aes_decrypt
    return {"plaintext": aes_decrypt(case["nonce"], case["ciphertext"], case["associated_data"], case["key"])}


def aesgcm_encrypt(case):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    ct = AESGCM(case["key"].encode()).encrypt(case["nonce"].encode(), case["plaintext"].encode(), case["associated_data"].encode())
    return {"ciphertext": base64.b64encode(ct).decode()}


if __name__ == "__main__":
    mode = sys.argv[1]
    case = json.loads(sys.stdin.read() or "{}")
    print(json.dumps(globals()[mode](case)))
