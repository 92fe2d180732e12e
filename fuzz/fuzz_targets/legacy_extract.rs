// Fuzzes legacy-sorted extraction for both field locations (query, form body, headers).
// Must not assert anything the spec does not promise.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use keygate_sign::legacy::{self, FieldLocation, LegacyConfig};
use libfuzzer_sys::fuzz_target;

/// Bytes 0x01..=0x08 stand for these words, so that the fuzzer reaches full extraction.
const WORDS: [&[u8]; 8] = [
    b"appId=",
    b"timeStamp=",
    b"nonce=",
    b"sign=",
    b"1612691221000",
    b"1234567890",
    b"25E2725052CC7B4824C67FCB747321BB",
    b"&",
];

fn expand(part: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(part.len());
    for &b in part {
        match b {
            0x01..=0x08 => out.extend_from_slice(WORDS[usize::from(b - 1)]),
            _ => out.push(b),
        }
    }
    out
}

/// Valid auth fields that bits 2..=5 of the mode byte switch on, so that the fuzzer starts
/// from requests that get past the presence checks.
const DEFAULTS: [(&str, &str); 4] = [
    ("appId", "zs001"),
    ("timeStamp", "1612691221000"),
    ("nonce", "1234567890"),
    ("sign", "25E2725052CC7B4824C67FCB747321BB"),
];

// Input: a mode byte (bit 0: fields in headers, bit 1: no body, bits 2..=5: default fields);
// then "query\nbody\nheader lines" ("name=value" lines).
fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let cfg = LegacyConfig {
        location: if mode & 1 == 0 { FieldLocation::Params } else { FieldLocation::Headers },
        ..LegacyConfig::default()
    };
    let mut parts = rest.split(|&b| b == b'\n').map(expand);
    let mut query = parts.next().unwrap_or_default();
    let body = if mode & 2 == 0 { parts.next() } else { None };
    let mut headers = HeaderMap::new();
    for (i, (name, value)) in DEFAULTS.iter().enumerate() {
        if mode & (4 << i) == 0 {
            continue;
        }
        match cfg.location {
            FieldLocation::Params => query.extend_from_slice(format!("&{name}={value}").as_bytes()),
            FieldLocation::Headers => {
                if let Ok(n) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                    headers.append(n, HeaderValue::from_static(value));
                }
            }
        }
    }
    let query = std::str::from_utf8(&query).ok();
    for line in parts {
        let Some(eq) = line.iter().position(|&b| b == b'=') else { continue };
        if let (Ok(n), Ok(v)) =
            (HeaderName::from_bytes(&line[..eq]), HeaderValue::from_bytes(&line[eq + 1..]))
        {
            headers.append(n, v);
        }
    }
    if let Ok(auth) = legacy::extract(&cfg, &headers, query, body.as_deref()) {
        assert!(auth.params.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(auth.params.iter().all(|(n, v)| !v.is_empty() && *n != cfg.sign_field));
        let _ = legacy::verify(&cfg, &auth, b"secret");
    }
});
