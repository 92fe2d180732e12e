#!/usr/bin/env python3
"""Fills the `expected` outputs of docs/vectors/*.json from their inputs with the independent
Python signers, or (--markdown) rewrites the vector listing at the end of docs/signing.md.

The Rust counterpart is `KEYGATE_REGENERATE_VECTORS=1 cargo test -p keygate-sign --test vectors`;
both must produce identical files.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import kg1_sign  # noqa: E402
import legacy_sign  # noqa: E402

KG1_PATH = os.path.join(ROOT, "docs", "vectors", "kg1.json")
LEGACY_PATH = os.path.join(ROOT, "docs", "vectors", "legacy.json")
DOC_PATH = os.path.join(ROOT, "docs", "signing.md")


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def dump(path, data):
    # Same layout as serde_json's pretty printer (sorted keys, 2 spaces, raw UTF-8).
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def kg1_body(v):
    return bytes.fromhex(v["body_hex"]) if "body_hex" in v else v.get("body_utf8", "").encode("utf-8")


def kg1_secret(v):
    return bytes.fromhex(v["secret_hex"]) if "secret_hex" in v else v["secret_utf8"].encode("utf-8")


def kg1_expected(v):
    body = kg1_body(v)
    sts = kg1_sign.string_to_sign(v["method"], v["raw_path"], v["raw_query"], v["headers"], body,
                                  v["access_key"], v["timestamp"], v["nonce"], v["signed_headers"],
                                  v["authority"])
    import hashlib
    import hmac
    return {
        "canonical_query": kg1_sign.canonical_query(v["raw_query"]),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "string_to_sign": sts,
        "signature": hmac.new(kg1_secret(v), sts.encode("ascii"), hashlib.sha256).hexdigest(),
    }


def legacy_config(v):
    cfg = dict(legacy_sign.DEFAULT_CONFIG)
    cfg.update(v.get("config", {}))
    return cfg


def legacy_expected(v):
    cfg = legacy_config(v)
    params = legacy_sign.collect_params(cfg, v["raw_query"], v["form_body"], v["headers"])
    signed = sorted(((n, val) for n, val in params if val != "" and n != cfg["sign_field"]),
                    key=lambda p: p[0].encode("utf-8"))
    return {
        "params": [list(p) for p in signed],
        "string_to_sign": legacy_sign.string_to_sign(cfg, params, v["secret_utf8"]),
        "signature": legacy_sign.sign(cfg, params, v["secret_utf8"]),
    }


def show(text):
    lines = text.split("\n")
    return "\n".join(line + ("\\n" if i < len(lines) - 1 else "") for i, line in enumerate(lines))


def markdown():
    kg1 = load(KG1_PATH)
    legacy = load(LEGACY_PATH)
    out = ["", "### KG1 vectors", ""]
    for v in kg1["vectors"]:
        e = v["expected"]
        out.append("#### `%s`" % v["name"])
        out.append("")
        out.append(v["description"])
        out.append("")
        target = (v["raw_path"] or "") + ("" if v["raw_query"] is None else "?" + v["raw_query"])
        out.append("- request: `%s %s`" % (v["method"], target))
        for n, val in v["headers"]:
            out.append("- header: `%s: %s`" % (n, val.replace("\t", "\\t")) if val else "- header: `%s:` (empty)" % n)
        if v["authority"] is not None:
            out.append("- HTTP/2 `:authority`: `%s` (no Host header)" % v["authority"])
        if "body_hex" in v:
            out.append("- body (hex): `%s`" % v["body_hex"] if v["body_hex"] else "- body: empty")
        else:
            out.append("- body: `%s`" % v["body_utf8"] if v["body_utf8"] else "- body: empty")
        out.append("- access key `%s`, timestamp `%s`, nonce `%s`, signed headers `%s`"
                   % (v["access_key"], v["timestamp"], v["nonce"], ";".join(v["signed_headers"]) or "(none)"))
        if "secret_hex" in v:
            out.append("- secret (hex): `%s`" % v["secret_hex"])
        else:
            out.append("- secret: `%s`" % v["secret_utf8"])
        out.append("- canonical query: `%s`" % e["canonical_query"] if e["canonical_query"] else "- canonical query: (empty)")
        out.append("")
        out.append("```")
        out.append(show(e["string_to_sign"]))
        out.append("```")
        out.append("")
        out.append("signature: `%s`" % e["signature"])
        out.append("")
    out += ["### Canonical query cases", "", "| raw query | canonical query |", "|---|---|"]
    for c in kg1["canonical_query_cases"]:
        raw = "`%s`" % c["raw"] if c["raw"] else "(empty)"
        if "error" in c:
            result = "error `%s`" % c["error"]
        else:
            result = "`%s`" % c["canonical"] if c["canonical"] else "(empty)"
        out.append("| %s | %s |" % (raw.replace("|", "\\|"), result.replace("|", "\\|")))
    out += ["", "### Path cases", "", "| raw path | accepted |", "|---|---|"]
    for c in kg1["path_cases"]:
        raw = "`%s`" % c["raw_path"] if c["raw_path"] else "(empty)"
        out.append("| %s | %s |" % (raw, "yes" if c["valid"] else "no (`invalid_path`)"))
    out += ["", "### legacy-sorted vectors", ""]
    for v in legacy["vectors"]:
        e = v["expected"]
        cfg = legacy_config(v)
        out.append("#### `%s`" % v["name"])
        out.append("")
        out.append(v["description"])
        out.append("")
        out.append("- settings: " + ", ".join("%s `%s`" % (k, cfg[k]) for k in sorted(cfg)))
        if v["raw_query"] is not None:
            out.append("- query: `%s`" % v["raw_query"])
        if v["form_body"] is not None:
            out.append("- form body: `%s`" % v["form_body"])
        for n, val in v["headers"]:
            out.append("- header: `%s: %s`" % (n, val))
        out.append("- secret: `%s`" % v["secret_utf8"])
        out.append("")
        out.append("```")
        out.append(e["string_to_sign"])
        out.append("```")
        out.append("")
        out.append("signature (`%s`): `%s`" % (cfg["sign_field"], e["signature"]))
        out.append("")
    with open(DOC_PATH, encoding="utf-8") as f:
        doc = f.read()
    begin = doc.index("<!-- BEGIN VECTORS")
    begin = doc.index("\n", begin) + 1
    end = doc.index("<!-- END VECTORS -->")
    doc = doc[:begin] + "\n".join(out) + "\n" + doc[end:]
    with open(DOC_PATH, "w", encoding="utf-8") as f:
        f.write(doc)


def main():
    if "--markdown" in sys.argv[1:]:
        markdown()
        return
    kg1 = load(KG1_PATH)
    for v in kg1["vectors"]:
        v["expected"] = kg1_expected(v)
    dump(KG1_PATH, kg1)
    legacy = load(LEGACY_PATH)
    for v in legacy["vectors"]:
        v["expected"] = legacy_expected(v)
    dump(LEGACY_PATH, legacy)


if __name__ == "__main__":
    main()
