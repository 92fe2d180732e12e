// Owns WeChat Pay API v3: the `WECHATPAY2-SHA256-RSA2048` Authorization (SHA256withRSA over
// `METHOD\nURL\ntimestamp\nnonce\nbody\n`), verification of responses and callbacks
// (`timestamp\nnonce\nbody\n` with the platform key named by `Wechatpay-Serial`), and
// AEAD_AES_256_GCM resource decryption with the APIv3 key. Checked against wechatpayv3.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use crate::error::SignError;
use crate::rsa::{b64, b64_decode, RsaSigner, RsaVerifier};

/// The string a request signature covers. `url` is path + query as sent.
pub fn request_message(method: &str, url: &str, timestamp: i64, nonce: &str, body: &str) -> String {
    format!("{method}\n{url}\n{timestamp}\n{nonce}\n{body}\n")
}

/// The merchant identity requests are signed with.
#[derive(Debug, Clone, Copy)]
pub struct Merchant<'a> {
    pub mchid: &'a str,
    /// Serial number of the merchant API certificate.
    pub serial_no: &'a str,
    pub key: &'a RsaSigner,
}

/// The `Authorization` header value.
pub fn authorization(
    merchant: &Merchant<'_>,
    method: &str,
    url: &str,
    timestamp: i64,
    nonce: &str,
    body: &str,
) -> Result<String, SignError> {
    let Merchant { mchid, serial_no, key } = *merchant;
    let sig = b64(&key.sign_sha256(request_message(method, url, timestamp, nonce, body).as_bytes())?);
    Ok(format!(
        "WECHATPAY2-SHA256-RSA2048 mchid=\"{mchid}\",nonce_str=\"{nonce}\",signature=\"{sig}\",timestamp=\"{timestamp}\",serial_no=\"{serial_no}\""
    ))
}

/// The headers WeChat Pay signs its responses and callbacks with.
#[derive(Debug, Clone, Copy)]
pub struct ResponseSignature<'a> {
    pub timestamp: &'a str,
    pub nonce: &'a str,
    pub signature: &'a str,
    pub serial: &'a str,
}

/// Verifies a response or callback: the platform key with the given serial, a timestamp within
/// `window_secs` of `now`, and the signature over `timestamp\nnonce\nbody\n`.
pub fn verify_response(
    sig: &ResponseSignature<'_>,
    body: &[u8],
    keys: &[(String, RsaVerifier)],
    now: i64,
    window_secs: i64,
) -> Result<(), SignError> {
    let key = keys
        .iter()
        .find(|(serial, _)| serial == sig.serial)
        .map(|(_, k)| k)
        .ok_or_else(|| SignError::MissingParam(format!("platform key {}", sig.serial)))?;
    let ts: i64 = sig
        .timestamp
        .parse()
        .map_err(|_| SignError::Malformed { field: "Wechatpay-Timestamp".into(), reason: "not a number" })?;
    if (now - ts).abs() > window_secs {
        return Err(SignError::Malformed {
            field: "Wechatpay-Timestamp".into(),
            reason: "outside the allowed window",
        });
    }
    let mut msg = format!("{}\n{}\n", sig.timestamp, sig.nonce).into_bytes();
    msg.extend_from_slice(body);
    msg.push(b'\n');
    key.verify_sha256(&msg, &b64_decode("Wechatpay-Signature", sig.signature)?)
}

fn gcm(apiv3_key: &[u8]) -> Result<LessSafeKey, SignError> {
    let k = UnboundKey::new(&AES_256_GCM, apiv3_key)
        .map_err(|_| SignError::Malformed { field: "apiv3 key".into(), reason: "must be 32 bytes" })?;
    Ok(LessSafeKey::new(k))
}

/// Decrypts an `AEAD_AES_256_GCM` resource (`ciphertext` is base64 of ciphertext ‖ tag).
pub fn decrypt_resource(
    apiv3_key: &[u8],
    nonce: &str,
    associated_data: &str,
    ciphertext_b64: &str,
) -> Result<Vec<u8>, SignError> {
    let n = Nonce::try_assume_unique_for_key(nonce.as_bytes())
        .map_err(|_| SignError::Malformed { field: "nonce".into(), reason: "must be 12 bytes" })?;
    let mut buf = b64_decode("ciphertext", ciphertext_b64)?;
    let plain = gcm(apiv3_key)?
        .open_in_place(n, Aad::from(associated_data.as_bytes()), &mut buf)
        .map_err(|_| SignError::SignatureMismatch)?;
    Ok(plain.to_vec())
}

/// The inverse of [`decrypt_resource`] (for fake servers and tests).
pub fn encrypt_resource(
    apiv3_key: &[u8],
    nonce: &str,
    associated_data: &str,
    plaintext: &[u8],
) -> Result<String, SignError> {
    let n = Nonce::try_assume_unique_for_key(nonce.as_bytes())
        .map_err(|_| SignError::Malformed { field: "nonce".into(), reason: "must be 12 bytes" })?;
    let mut buf = plaintext.to_vec();
    gcm(apiv3_key)?
        .seal_in_place_append_tag(n, Aad::from(associated_data.as_bytes()), &mut buf)
        .map_err(|_| SignError::Unavailable("AES-GCM encryption failed"))?;
    Ok(b64(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_round_trip_and_tamper() {
        let key = [7u8; 32];
        let ct = encrypt_resource(&key, "0123456789ab", "certificate", b"{\"a\":1}").unwrap();
        assert_eq!(decrypt_resource(&key, "0123456789ab", "certificate", &ct).unwrap(), b"{\"a\":1}");
        assert!(decrypt_resource(&key, "0123456789ab", "other", &ct).is_err());
        assert!(decrypt_resource(&key, "short", "certificate", &ct).is_err());
        assert!(decrypt_resource(&key[..16], "0123456789ab", "certificate", &ct).is_err());
        assert!(decrypt_resource(&key, "0123456789ab", "certificate", "%%%").is_err());
    }

    #[test]
    fn message_shape() {
        assert_eq!(
            request_message("GET", "/v3/certificates", 1554208460, "N1", ""),
            "GET\n/v3/certificates\n1554208460\nN1\n\n"
        );
    }
}
