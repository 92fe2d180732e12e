// Owns the rule for which raw request paths may be verified and forwarded unchanged.
// Must not normalise or rewrite a path: a path is accepted byte for byte or refused.

use crate::error::SignError;

/// Checks that `raw_path` (the path of the request target exactly as sent, without `?query`)
/// means the same thing to every parser between the caller and the upstream.
///
/// The signature covers the raw bytes, so a path that an upstream would normalise
/// (`/a/../admin`, `/a%2Fb`, `\`) could route somewhere the signer did not intend;
/// such paths are refused instead of being normalised.
///
/// Refused (`InvalidPath`): empty or not starting with `/`; a `.` or `..` segment,
/// literally or percent-encoded in any mix (`%2e`, `.%2E`), also when followed by
/// `;params` (`/..;/`, which some servers strip to `..`); an encoded slash or
/// backslash (`%2F`, `%5C`, either case) or a literal backslash; a `%` not followed by
/// two hex digits; `%00`; any byte that is a control character, space or non-ASCII.
pub fn check_raw_path(raw_path: &str) -> Result<(), SignError> {
    let bytes = raw_path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(SignError::InvalidPath("path must start with /"));
    }
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let decoded = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) => match (hex_val(h), hex_val(l)) {
                        (Some(h), Some(l)) => (h << 4) | l,
                        _ => return Err(SignError::InvalidPath("invalid percent-encoding")),
                    },
                    _ => return Err(SignError::InvalidPath("invalid percent-encoding")),
                };
                match decoded {
                    0 => return Err(SignError::InvalidPath("encoded NUL")),
                    b'/' | b'\\' => return Err(SignError::InvalidPath("encoded slash or backslash")),
                    _ => {}
                }
                i += 3;
            }
            b'\\' => return Err(SignError::InvalidPath("backslash")),
            0x21..=0x7e => i += 1,
            _ => return Err(SignError::InvalidPath("control character, space or non-ASCII byte")),
        }
    }
    // The byte scan above guarantees every `%` is followed by two hex digits.
    for segment in raw_path[1..].split('/') {
        let before_params = segment.split(';').next().unwrap_or(segment);
        if is_dot_segment(before_params) {
            return Err(SignError::InvalidPath("dot segment"));
        }
    }
    Ok(())
}

/// `.` or `..`, each dot possibly written as `%2e`/`%2E`.
fn is_dot_segment(segment: &str) -> bool {
    let b = segment.as_bytes();
    let mut dots = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
        } else if b[i] == b'%' && b.get(i + 1) == Some(&b'2') && matches!(b.get(i + 2), Some(b'e' | b'E')) {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots == 1 || dots == 2
}

pub(crate) fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_paths() {
        for p in [
            "/",
            "/v1/orders",
            "/v1/a%20b",
            "/v1/orders/123;v=1",
            "/a//b",
            "/a/.../b",
            "/a/.b/c.",
            "/a/..b",
            "/a/b..",
            "/%2e%2e%2e",
            "/a%2eb",
            "/a/%41%7e",
            "/a/b/",
            "/~user/!$&'()*+,;=:@",
            "/a%25",
            "/%252e%252e/",
        ] {
            assert_eq!(check_raw_path(p), Ok(()), "{p:?}");
        }
    }

    #[test]
    fn rejected_paths() {
        let cases: &[(&str, &str)] = &[
            ("", "path must start with /"),
            ("v1/orders", "path must start with /"),
            ("*", "path must start with /"),
            ("http://h/a", "path must start with /"),
            ("/a/./b", "dot segment"),
            ("/a/../b", "dot segment"),
            ("/..", "dot segment"),
            ("/.", "dot segment"),
            ("/a/..", "dot segment"),
            ("/a/%2e/b", "dot segment"),
            ("/a/%2E%2E/b", "dot segment"),
            ("/a/.%2e/b", "dot segment"),
            ("/a/%2E./b", "dot segment"),
            ("/a/%2e%2E", "dot segment"),
            ("/a/..;/b", "dot segment"),
            ("/a/.;x=1/b", "dot segment"),
            ("/a%2fb", "encoded slash or backslash"),
            ("/a%2Fb", "encoded slash or backslash"),
            ("/a%5cb", "encoded slash or backslash"),
            ("/a%5Cb", "encoded slash or backslash"),
            ("/a\\b", "backslash"),
            ("/a%zz", "invalid percent-encoding"),
            ("/a%4", "invalid percent-encoding"),
            ("/a%", "invalid percent-encoding"),
            ("/a%%41", "invalid percent-encoding"),
            ("/a%00b", "encoded NUL"),
            ("/a b", "control character, space or non-ASCII byte"),
            ("/a\tb", "control character, space or non-ASCII byte"),
            ("/a\nb", "control character, space or non-ASCII byte"),
            ("/a\0b", "control character, space or non-ASCII byte"),
            ("/a\u{7f}", "control character, space or non-ASCII byte"),
            ("/caf\u{e9}", "control character, space or non-ASCII byte"),
        ];
        for (p, reason) in cases {
            let err = check_raw_path(p).expect_err(p);
            assert_eq!(err, SignError::InvalidPath(reason), "{p:?}");
            assert_eq!(err.code(), "invalid_path");
        }
    }
}
