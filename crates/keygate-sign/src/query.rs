// Owns the KG1 canonical query string (decode, re-encode, sort) on the verify hot path.
// Must not apply form-urlencoding rules (`+` is a literal plus here) nor allocate per pair.

use std::cmp::Ordering;

use crate::error::SignError;
use crate::path::hex_val;

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Bytes left as they are; everything else becomes `%XX` (RFC 3986 unreserved).
const UNRESERVED: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        c += 1;
    }
    t
};

/// One encoded pair inside the output buffer: `name` is `start..eq`, `value` is `eq+1..end`.
#[derive(Clone, Copy, Default)]
struct Pair {
    start: usize,
    eq: usize,
    end: usize,
}

/// Pairs kept on the stack before spilling to the heap; real queries rarely have more.
const INLINE_PAIRS: usize = 16;

/// Builds the canonical query of the KG1 string to sign from a raw query (without `?`).
///
/// Pieces are split on `&` (empty pieces dropped) and on the first `=` (no `=` means an
/// empty value); names and values are percent-decoded to bytes (`+` stays a plus) and
/// re-encoded with every byte outside `A-Z a-z 0-9 - . _ ~` as uppercase `%XX`; pairs
/// are sorted by (encoded name, encoded value) bytewise and joined as `name=value` with `&`.
///
/// Errors: [`SignError::InvalidPercentEncoding`] for a `%` not followed by two hex digits.
pub fn canonical_query(raw_query: &str) -> Result<String, SignError> {
    // Encoding usually keeps the length; the slack covers a few escapes without regrowth.
    let mut out: Vec<u8> = Vec::with_capacity(raw_query.len() + 16);
    canonical_query_into(&mut out, raw_query)?;
    // Only ASCII was written, so this cannot fail; mapping keeps the function panic-free.
    String::from_utf8(out).map_err(|_| SignError::InvalidPercentEncoding)
}

/// [`canonical_query`] appended to `out` (the string to sign is built in one buffer). Writes
/// only ASCII. On error `out` may hold part of the output; callers drop it.
pub(crate) fn canonical_query_into(out: &mut Vec<u8>, raw_query: &str) -> Result<(), SignError> {
    let raw = raw_query.as_bytes();
    if raw.is_empty() {
        return Ok(());
    }
    let base = out.len();
    let mut inline = [Pair::default(); INLINE_PAIRS];
    let mut count = 0;
    let mut spill: Vec<Pair> = Vec::new();
    let mut sorted = true;
    let mut prev = Pair::default();
    for piece in raw.split(|&b| b == b'&') {
        if piece.is_empty() {
            continue;
        }
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &[][..]),
        };
        if count > 0 {
            out.push(b'&');
        }
        let start = out.len();
        encode_into(out, name)?;
        let eq = out.len();
        out.push(b'=');
        encode_into(out, value)?;
        let pair = Pair { start, eq, end: out.len() };
        if count > 0 && sorted && compare(out, prev, pair) == Ordering::Greater {
            sorted = false;
        }
        prev = pair;
        if count < INLINE_PAIRS {
            inline[count] = pair;
        } else {
            if spill.is_empty() {
                spill.extend_from_slice(&inline);
            }
            spill.push(pair);
        }
        count += 1;
    }
    // Most clients already send sorted parameters: then the pairs are already in place.
    if !sorted {
        let pairs: &mut [Pair] = if spill.is_empty() { &mut inline[..count] } else { &mut spill };
        // Equal pairs are byte-identical, so an unstable sort gives the same string.
        pairs.sort_unstable_by(|a, b| compare(out, *a, *b));
        let encoded = out[base..].to_vec();
        out.truncate(base);
        for (i, p) in pairs.iter().enumerate() {
            if i > 0 {
                out.push(b'&');
            }
            out.extend_from_slice(&encoded[p.start - base..p.end - base]);
        }
    }
    Ok(())
}

fn compare(buf: &[u8], a: Pair, b: Pair) -> Ordering {
    buf[a.start..a.eq].cmp(&buf[b.start..b.eq]).then_with(|| buf[a.eq + 1..a.end].cmp(&buf[b.eq + 1..b.end]))
}

/// Percent-decodes `input` and appends its canonical encoding to `out`.
fn encode_into(out: &mut Vec<u8>, input: &[u8]) -> Result<(), SignError> {
    let mut i = 0;
    while i < input.len() {
        // Runs of unreserved bytes are copied in one go.
        let run = i;
        while i < input.len() && UNRESERVED[usize::from(input[i])] {
            i += 1;
        }
        out.extend_from_slice(&input[run..i]);
        let Some(&b) = input.get(i) else { break };
        let b = if b == b'%' {
            let decoded = match (input.get(i + 1), input.get(i + 2)) {
                (Some(&h), Some(&l)) => match (hex_val(h), hex_val(l)) {
                    (Some(h), Some(l)) => (h << 4) | l,
                    _ => return Err(SignError::InvalidPercentEncoding),
                },
                _ => return Err(SignError::InvalidPercentEncoding),
            };
            i += 3;
            decoded
        } else {
            i += 1;
            b
        };
        if UNRESERVED[usize::from(b)] {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX_UPPER[usize::from(b >> 4)], HEX_UPPER[usize::from(b & 0x0f)]]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_input_is_returned_as_is() {
        assert_eq!(canonical_query("a=1&b=2").as_deref(), Ok("a=1&b=2"));
    }

    #[test]
    fn pair_order_is_name_then_value_not_joined_string() {
        // Joined strings would put "a-b=1" before "a=2" ('-' < '='); pairs compare names first.
        assert_eq!(canonical_query("a-b=1&a=2").as_deref(), Ok("a=2&a-b=1"));
    }

    #[test]
    fn appends_after_existing_bytes() {
        let mut out = b"prefix\n".to_vec();
        canonical_query_into(&mut out, "b=2&a=%7e&c").expect("valid");
        assert_eq!(out, b"prefix\na=~&b=2&c=");
        let mut out = b"p\n".to_vec();
        canonical_query_into(&mut out, "").expect("valid");
        assert_eq!(out, b"p\n");
    }

    #[test]
    fn many_pairs_sort() {
        let raw: Vec<String> = (0..40).rev().map(|i| format!("k{i:02}=v")).collect();
        let want: Vec<String> = (0..40).map(|i| format!("k{i:02}=v")).collect();
        assert_eq!(canonical_query(&raw.join("&")), Ok(want.join("&")));
    }
}
