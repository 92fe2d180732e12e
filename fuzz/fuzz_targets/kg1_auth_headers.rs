// Fuzzes KG1 header parsing and the string to sign from a HeaderMap built out of fuzz bytes.
// Must not assert anything the spec does not promise.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use keygate_sign::kg1::{self, Kg1Auth, RequestParts};
use libfuzzer_sys::fuzz_target;

/// Bytes 0x01..=0x08, 0x0B and 0x0C stand for these words, so that the fuzzer reaches past
/// the header-name lookups (hashing gives libFuzzer no comparison to learn the names from).
const WORDS: [&[u8]; 10] = [
    b"x-kg-key",
    b"x-kg-timestamp",
    b"x-kg-nonce",
    b"x-kg-signed-headers",
    b"x-kg-signature",
    b"host",
    b"1700000000",
    b"abcdefghijklmnop",
    b"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    b"content-type",
];

fn expand(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    for &b in line {
        match b {
            0x01..=0x08 => out.extend_from_slice(WORDS[usize::from(b - 1)]),
            0x0b | 0x0c => out.extend_from_slice(WORDS[usize::from(b - 0x0b) + 8]),
            _ => out.push(b),
        }
    }
    out
}

/// Valid headers the first input byte switches on (bit i: header i), so that the fuzzer
/// starts from requests that get past the presence checks.
const DEFAULTS: [(&str, &str); 7] = [
    ("x-kg-key", "AK"),
    ("x-kg-timestamp", "1700000000"),
    ("x-kg-nonce", "abcdefghijklmnop"),
    ("x-kg-signed-headers", "host;x-a"),
    ("x-kg-signature", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"),
    ("host", "api.example.com"),
    ("x-a", " a \t b "),
];

// Input: a mask byte, then lines "name:value"; a line "@path?query" sets the target.
fuzz_target!(|data: &[u8]| {
    let Some((&mask, data)) = data.split_first() else { return };
    let mut headers = HeaderMap::new();
    for (i, (name, value)) in DEFAULTS.iter().enumerate() {
        if mask & (1 << i) != 0 {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
    }
    let mut target = b"/".to_vec();
    for line in data.split(|&b| b == b'\n') {
        let line = expand(line);
        if let Some(t) = line.strip_prefix(b"@") {
            target = t.to_vec();
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) else {
            continue;
        };
        headers.append(name, value);
    }
    let Ok(auth) = Kg1Auth::from_headers(&headers) else { return };
    let Ok(target) = std::str::from_utf8(&target) else { return };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let req = RequestParts {
        method: "POST",
        raw_path: path,
        raw_query: query,
        headers: &headers,
        authority: Some("a.example"),
    };
    if let Ok(sts) = auth.string_to_sign(&req, keygate_sign::digest::EMPTY_SHA256_HEX) {
        assert!(sts.is_ascii());
        assert_eq!(sts.matches('\n').count(), 8 + auth.signed_headers.len());
        let _ = kg1::verify(b"secret", &sts, &auth);
    }
});
