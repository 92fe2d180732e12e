// Deterministic pseudo-random inputs through every parser: no panic, and a few invariants.
// Must stay fast and dependency-free so CI runs it on stable (the real fuzzing lives in fuzz/).

use http::{HeaderMap, HeaderName, HeaderValue};
use keygate_sign::digest::sha256_hex;
use keygate_sign::kg1::{self, Kg1Auth, RequestParts};
use keygate_sign::legacy::{self, FieldLocation, LegacyConfig};
use keygate_sign::path::check_raw_path;
use keygate_sign::query::canonical_query;
use keygate_sign::{SignError, Signer};
use secrecy::SecretBox;

mod common;

use common::XorShift;

const ROUNDS: usize = 4000;

/// Input builders of this file on top of the shared generator.
trait SmokeInputs {
    fn text(&mut self, max_pieces: usize) -> String;
    fn header_value(&mut self) -> HeaderValue;
}

impl SmokeInputs for XorShift {
    /// A string built from pieces that parsers treat specially, plus random bytes.
    fn text(&mut self, max_pieces: usize) -> String {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "0",
            "9",
            "-",
            "_",
            ".",
            "~",
            "..",
            "/",
            "\\",
            "%",
            "%2e",
            "%2E",
            "%2f",
            "%5C",
            "%00",
            "%41",
            "%e4%bd%a0",
            "%zz",
            "%4",
            "&",
            "=",
            "+",
            " ",
            "\t",
            ";",
            "?",
            "#",
            ":",
            "你",
            "é",
            "\u{7f}",
            "\n",
            "x-kg-",
            "host",
            "appId",
            "sign",
            "nonce",
            "timeStamp",
            "1700000000",
            "abcdefghijklmnop",
        ];
        let n = self.below(max_pieces + 1);
        let mut s = String::new();
        for _ in 0..n {
            if self.below(8) == 0 {
                s.push(char::from(u8::try_from(self.below(128)).expect("ascii")));
            } else {
                s.push_str(PIECES[self.below(PIECES.len())]);
            }
        }
        s
    }

    fn header_value(&mut self) -> HeaderValue {
        let s = self.text(6);
        HeaderValue::from_bytes(s.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static("v"))
    }
}

#[test]
fn canonical_query_never_panics_and_is_idempotent() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..ROUNDS {
        let raw = rng.text(12);
        match canonical_query(&raw) {
            Ok(c) => {
                assert!(
                    c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%=&".contains(&b)),
                    "{raw:?} -> {c:?}"
                );
                assert_eq!(canonical_query(&c).as_deref(), Ok(c.as_str()), "{raw:?}");
            }
            Err(e) => assert_eq!(e, SignError::InvalidPercentEncoding, "{raw:?}"),
        }
    }
}

#[test]
fn check_raw_path_never_panics() {
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    let mut accepted = 0;
    for _ in 0..ROUNDS {
        let raw = format!("{}{}", if rng.below(4) == 0 { "" } else { "/" }, rng.text(8));
        match check_raw_path(&raw) {
            Ok(()) => {
                accepted += 1;
                assert!(raw.starts_with('/') && raw.is_ascii() && !raw.contains(['\\', ' ']), "{raw:?}");
            }
            Err(e) => assert_eq!(e.code(), "invalid_path"),
        }
    }
    assert!(accepted > 100, "the generator reaches accepted paths too ({accepted})");
}

#[test]
fn kg1_auth_parsing_never_panics() {
    let mut rng = XorShift(0xA076_1D64_78BD_642F);
    let names =
        ["x-kg-key", "x-kg-timestamp", "x-kg-nonce", "x-kg-signed-headers", "x-kg-signature", "host", "x-a"];
    let mut parsed = 0;
    for _ in 0..ROUNDS {
        let mut h = HeaderMap::new();
        for name in names {
            // Mostly valid values so that parsing gets past the first checks.
            let value = match (name, rng.below(3)) {
                (_, 0) => rng.header_value(),
                ("x-kg-key", _) => HeaderValue::from_static("AK"),
                ("x-kg-timestamp", _) => HeaderValue::from_static("1700000000"),
                ("x-kg-nonce", _) => HeaderValue::from_static("abcdefghijklmnop"),
                ("x-kg-signed-headers", _) => HeaderValue::from_static("host;x-a"),
                ("x-kg-signature", _) => HeaderValue::from_static(
                    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
                ),
                _ => rng.header_value(),
            };
            for _ in 0..[0, 1, 1, 1, 2][rng.below(5)] {
                h.append(HeaderName::from_static(name), value.clone());
            }
        }
        let Ok(auth) = Kg1Auth::from_headers(&h) else { continue };
        parsed += 1;
        let path = rng.text(4);
        let query = rng.text(6);
        let req = RequestParts {
            method: "GET",
            raw_path: &path,
            raw_query: Some(&query),
            headers: &h,
            authority: None,
        };
        if let Ok(sts) = auth.string_to_sign(&req, &sha256_hex(b"")) {
            assert_eq!(kg1::verify(b"k", &sts, &auth), Err(SignError::SignatureMismatch));
        }
    }
    assert!(parsed > 50, "the generator reaches valid auth headers ({parsed})");
}

#[test]
fn legacy_extract_never_panics() {
    let mut rng = XorShift(0xE703_7ED1_A0B4_28DB);
    let headers_cfg = LegacyConfig { location: FieldLocation::Headers, ..LegacyConfig::default() };
    for i in 0..ROUNDS {
        let cfg = if i % 2 == 0 { LegacyConfig::default() } else { headers_cfg.clone() };
        let query = rng.text(12);
        let body = rng.text(8);
        let mut h = HeaderMap::new();
        for name in ["appid", "timestamp", "nonce", "sign"] {
            if rng.below(2) == 0 {
                h.append(HeaderName::from_static(name), rng.header_value());
            }
        }
        let body = if rng.below(2) == 0 { Some(body.as_bytes()) } else { None };
        if let Ok(auth) = legacy::extract(&cfg, &h, Some(&query), body) {
            let _ = legacy::verify(&cfg, &auth, b"secret");
            assert!(auth.params.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }
}

#[test]
fn whatever_the_signer_signs_the_verifier_accepts() {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let signer = Signer::new("AK-FUZZ", SecretBox::from(b"fuzz".to_vec()))
        .with_signed_headers(["x-a", "x-b"])
        .expect("names");
    let mut signed = 0;
    for _ in 0..ROUNDS {
        // `?` and `#` delimit the target's parts; inside them they would change the split.
        let path = format!("/{}", rng.text(5)).replace(['?', '#'], "");
        let query = rng.text(6).replace('#', "");
        let mut h = HeaderMap::new();
        for _ in 0..rng.below(3) + 1 {
            h.append("x-a", rng.header_value());
        }
        h.append("x-b", rng.header_value());
        let body = rng.text(4);
        let uri = format!("{path}?{query}");
        let Ok(out) = signer.sign_at("GET", &uri, &h, body.as_bytes(), 1_700_000_000, "abcdefghijklmnop")
        else {
            continue;
        };
        signed += 1;
        out.apply(&mut h);
        let auth = Kg1Auth::from_headers(&h).expect("own headers parse");
        let req = RequestParts {
            method: "GET",
            raw_path: &path,
            raw_query: Some(&query),
            headers: &h,
            authority: None,
        };
        assert_eq!(auth.verify_request(b"fuzz", &req, &sha256_hex(body.as_bytes())), Ok(()), "{uri:?}");
    }
    assert!(signed > 100, "the generator reaches signable requests ({signed})");
}
