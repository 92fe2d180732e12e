// Owns the primitive operations recipes (built-in and scripted) compose: digests, HMAC, AES-CBC
// and AES-GCM, encodings, randomness. aws-lc-rs underneath; MD5 from RustCrypto (aws-lc-rs has
// none). Failures are reported without any input value.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use aws_lc_rs::cipher::{
    DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey,
    UnboundCipherKey, AES_128, AES_256,
};
use aws_lc_rs::iv::FixedLength;
use base64::Engine as _;
use md5::Digest as _;

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn sha1(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, data).as_ref().to_vec()
}

pub fn md5(data: &[u8]) -> Vec<u8> {
    md5::Md5::digest(data).to_vec()
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::sign(&k, data).as_ref().to_vec()
}

pub fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    aws_lc_rs::hmac::sign(&k, data).as_ref().to_vec()
}

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn b64_decode(text: &str) -> Result<Vec<u8>, &'static str> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| "invalid base64")
}

/// Cryptographically random bytes.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], &'static str> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| "random generator unavailable")?;
    Ok(b)
}

/// 32 lowercase hex characters of fresh randomness (nonces).
pub fn random_hex16() -> Result<String, &'static str> {
    Ok(hex::encode(random_bytes::<16>()?))
}

fn cbc_key(key: &[u8]) -> Result<UnboundCipherKey, &'static str> {
    let alg = match key.len() {
        16 => &AES_128,
        32 => &AES_256,
        _ => return Err("AES-CBC key must be 16 or 32 bytes"),
    };
    UnboundCipherKey::new(alg, key).map_err(|_| "invalid AES key")
}

fn iv16(iv: &[u8]) -> Result<[u8; 16], &'static str> {
    iv.try_into().map_err(|_| "AES-CBC IV must be 16 bytes")
}

/// AES-CBC with PKCS#5/#7 padding and the given IV.
pub fn aes_cbc_encrypt(key: &[u8], iv: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, &'static str> {
    let k = PaddedBlockEncryptingKey::cbc_pkcs7(cbc_key(key)?).map_err(|_| "invalid AES key")?;
    let mut buf = plaintext.to_vec();
    k.less_safe_encrypt(&mut buf, EncryptionContext::Iv128(FixedLength::from(iv16(iv)?)))
        .map_err(|_| "AES-CBC encryption failed")?;
    Ok(buf)
}

pub fn aes_cbc_decrypt(key: &[u8], iv: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, &'static str> {
    let k = PaddedBlockDecryptingKey::cbc_pkcs7(cbc_key(key)?).map_err(|_| "invalid AES key")?;
    let mut buf = ciphertext.to_vec();
    let plain = k
        .decrypt(&mut buf, DecryptionContext::Iv128(FixedLength::from(iv16(iv)?)))
        .map_err(|_| "AES-CBC decryption failed")?;
    Ok(plain.to_vec())
}

fn gcm_key(key: &[u8]) -> Result<LessSafeKey, &'static str> {
    let alg = match key.len() {
        16 => &AES_128_GCM,
        32 => &AES_256_GCM,
        _ => return Err("AES-GCM key must be 16 or 32 bytes"),
    };
    Ok(LessSafeKey::new(UnboundKey::new(alg, key).map_err(|_| "invalid AES key")?))
}

/// AES-GCM with an explicit 12-byte nonce; returns ciphertext ‖ tag.
pub fn aes_gcm_seal(key: &[u8], nonce: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, &'static str> {
    let n = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "AES-GCM nonce must be 12 bytes")?;
    let mut buf = plaintext.to_vec();
    gcm_key(key)?
        .seal_in_place_append_tag(n, Aad::from(aad), &mut buf)
        .map_err(|_| "AES-GCM encryption failed")?;
    Ok(buf)
}

/// Opens ciphertext ‖ tag.
pub fn aes_gcm_open(key: &[u8], nonce: &[u8], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, &'static str> {
    let n = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "AES-GCM nonce must be 12 bytes")?;
    let mut buf = sealed.to_vec();
    let plain =
        gcm_key(key)?.open_in_place(n, Aad::from(aad), &mut buf).map_err(|_| "AES-GCM decryption failed")?;
    Ok(plain.to_vec())
}

/// keygate's GCM wire value: nonce12 ‖ ciphertext ‖ tag16, with a fresh nonce.
pub fn aes_gcm_encrypt(key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, &'static str> {
    let nonce = random_bytes::<12>()?;
    let mut out = nonce.to_vec();
    out.extend(aes_gcm_seal(key, &nonce, b"", plaintext)?);
    Ok(out)
}

pub fn aes_gcm_decrypt(key: &[u8], wire: &[u8]) -> Result<Vec<u8>, &'static str> {
    if wire.len() < 12 + 16 {
        return Err("AES-GCM value too short");
    }
    let (nonce, sealed) = wire.split_at(12);
    aes_gcm_open(key, nonce, b"", sealed)
}

/// RFC 3986 percent-encoding: everything but unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

/// Decodes `%XX` and (form convention) `+` as space. Invalid escapes or non-UTF-8 → error.
pub fn url_decode(s: &str) -> Result<String, &'static str> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or("invalid percent-encoding")?;
                let v =
                    u8::from_str_radix(std::str::from_utf8(hex).map_err(|_| "invalid percent-encoding")?, 16)
                        .map_err(|_| "invalid percent-encoding")?;
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "percent-decoded value is not UTF-8")
}

/// `a=1&b=2` → decoded pairs, in order.
pub fn parse_pairs(s: &str) -> Result<Vec<(String, String)>, &'static str> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((url_decode(n)?, url_decode(v)?))
        })
        .collect()
}

/// Pairs → `a=1&b=2` with RFC 3986 encoding.
pub fn encode_pairs(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (n, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&url_encode(n));
        out.push('=');
        out.push_str(&url_encode(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_cbc_matches_nist_sp800_38a() {
        // SP 800-38A F.2.1 CBC-AES128.Encrypt, first block (+ one PKCS#7 padding block).
        let key = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let iv = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let pt = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        let ct = aes_cbc_encrypt(&key, &iv, &pt).unwrap();
        assert_eq!(hex::encode(&ct[..16]), "7649abac8119b246cee98e9b12e9197d");
        assert_eq!(ct.len(), 32);
        assert_eq!(aes_cbc_decrypt(&key, &iv, &ct).unwrap(), pt);
        let mut bad = ct.clone();
        bad[31] ^= 1;
        assert!(aes_cbc_decrypt(&key, &iv, &bad).is_err() || aes_cbc_decrypt(&key, &iv, &bad).unwrap() != pt);
        assert!(aes_cbc_encrypt(&key[..15], &iv, b"x").is_err());
        assert!(aes_cbc_encrypt(&key, &iv[..8], b"x").is_err());
    }

    #[test]
    fn aes_gcm_round_trip_and_tamper() {
        let key = [7u8; 32];
        let w = aes_gcm_encrypt(&key, b"hello").unwrap();
        assert_eq!(aes_gcm_decrypt(&key, &w).unwrap(), b"hello");
        let mut t = w.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert!(aes_gcm_decrypt(&key, &t).is_err());
        assert!(aes_gcm_decrypt(&key, &w[..20]).is_err());
        assert_ne!(aes_gcm_encrypt(&key, b"hello").unwrap(), w, "fresh nonce each time");
    }

    #[test]
    fn digests_and_macs_match_known_answers() {
        assert_eq!(hex::encode(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(hex::encode(sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        // RFC 4231 test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha1(b"key", b"The quick brown fox jumps over the lazy dog")),
            "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"
        );
    }

    #[test]
    fn url_coding_round_trips() {
        assert_eq!(url_encode("a b/ü~"), "a%20b%2F%C3%BC~");
        assert_eq!(url_decode("a+b%2F%C3%BC").unwrap(), "a b/ü");
        assert!(url_decode("%4").is_err());
        assert!(url_decode("%ff").is_err());
        let p = parse_pairs("b=2&a=&c").unwrap();
        assert_eq!(p, vec![("b".into(), "2".into()), ("a".into(), "".into()), ("c".into(), "".into())]);
        assert_eq!(encode_pairs(&p), "b=2&a=&c=");
    }
}
