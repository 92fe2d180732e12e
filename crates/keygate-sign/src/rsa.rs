// Owns RSA key material for provider algorithms: PEM or bare-base64 DER private keys (PKCS#8 and
// PKCS#1, as providers hand them out), public keys (SPKI or PKCS#1), the public key inside an
// X.509 certificate, and RSA PKCS#1 v1.5 SHA-256 sign/verify. aws-lc-rs does the cryptography
// (never the `rsa` crate for private-key operations).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, RsaKeyPair, UnparsedPublicKey};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, SubjectPublicKeyInfoDer};

use crate::error::SignError;

fn bad(field: &str, reason: &'static str) -> SignError {
    SignError::Malformed { field: field.to_string(), reason }
}

/// An RSA private key for signing.
pub struct RsaSigner(RsaKeyPair);

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaSigner([redacted])")
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn bare_base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(compact).ok()
}

impl RsaSigner {
    /// A PEM (`PRIVATE KEY` or `RSA PRIVATE KEY`) or bare base64 DER key (PKCS#8 or PKCS#1).
    pub fn from_text(text: &[u8]) -> Result<Self, SignError> {
        let der: Vec<u8> = if contains(text, b"-----BEGIN") {
            match PrivateKeyDer::from_pem_slice(text)
                .map_err(|_| bad("private key", "not a PEM private key"))?
            {
                PrivateKeyDer::Pkcs8(k) => return Self::from_pkcs8(k.secret_pkcs8_der()),
                PrivateKeyDer::Pkcs1(k) => k.secret_pkcs1_der().to_vec(),
                _ => return Err(bad("private key", "not an RSA key")),
            }
        } else {
            let t = std::str::from_utf8(text).map_err(|_| bad("private key", "not text"))?;
            bare_base64(t).ok_or_else(|| bad("private key", "neither PEM nor base64"))?
        };
        Self::from_pkcs8(&der).or_else(|_| {
            RsaKeyPair::from_der(&der)
                .map(Self)
                .map_err(|_| bad("private key", "not a usable RSA private key"))
        })
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, SignError> {
        RsaKeyPair::from_pkcs8(der).map(Self).map_err(|_| bad("private key", "not a usable RSA private key"))
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 (deterministic).
    pub fn sign_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut sig = vec![0u8; self.0.public_modulus_len()];
        self.0
            .sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
            .map_err(|_| SignError::Unavailable("RSA signing failed"))?;
        Ok(sig)
    }
}

/// An RSA public key for verification.
#[derive(Debug, Clone)]
pub struct RsaVerifier(Vec<u8>);

impl RsaVerifier {
    /// PEM `PUBLIC KEY` / `RSA PUBLIC KEY`, a PEM `CERTIFICATE` (its key is used), or bare base64
    /// DER SPKI (how Alipay distributes its public key).
    pub fn from_text(text: &[u8]) -> Result<Self, SignError> {
        if contains(text, b"-----BEGIN CERTIFICATE") {
            let cert = CertificateDer::from_pem_slice(text)
                .map_err(|_| bad("certificate", "not a PEM certificate"))?;
            return Ok(Self(spki_of_certificate(&cert)?.to_vec()));
        }
        if contains(text, b"-----BEGIN") {
            if let Ok(spki) = SubjectPublicKeyInfoDer::from_pem_slice(text) {
                return Self::from_der(spki.as_ref());
            }
            let body: String = std::str::from_utf8(text)
                .map_err(|_| bad("public key", "not text"))?
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect();
            return Self::from_der(&bare_base64(&body).ok_or_else(|| bad("public key", "bad PEM body"))?);
        }
        let t = std::str::from_utf8(text).map_err(|_| bad("public key", "not text"))?;
        Self::from_der(&bare_base64(t).ok_or_else(|| bad("public key", "neither PEM nor base64"))?)
    }

    fn from_der(der: &[u8]) -> Result<Self, SignError> {
        // Checked now so a bad key is reported when loaded, not on the first response.
        aws_lc_rs::rsa::PublicEncryptingKey::from_der(der)
            .map_err(|_| bad("public key", "not an RSA public key"))?;
        Ok(Self(der.to_vec()))
    }

    /// Verifies RSASSA-PKCS1-v1_5 with SHA-256 (2048 to 8192-bit keys).
    pub fn verify_sha256(&self, msg: &[u8], sig: &[u8]) -> Result<(), SignError> {
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.0)
            .verify(msg, sig)
            .map_err(|_| SignError::SignatureMismatch)
    }
}

/// Reads one DER TLV: (tag, header length, content length).
fn tlv(d: &[u8]) -> Option<(u8, usize, usize)> {
    let tag = *d.first()?;
    let first = *d.get(1)?;
    let (hdr, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*d.get(2 + i)?);
        }
        (2 + n, len)
    };
    (d.len() >= hdr + len).then_some((tag, hdr, len))
}

/// The `subjectPublicKeyInfo` of an X.509 certificate (DER), found by walking the TBS fields.
pub fn spki_of_certificate(cert: &[u8]) -> Result<&[u8], SignError> {
    let err = || bad("certificate", "malformed X.509 certificate");
    let (t, h, _) = tlv(cert).ok_or_else(err)?;
    if t != 0x30 {
        return Err(err());
    }
    let tbs_all = &cert[h..];
    let (t, h, len) = tlv(tbs_all).ok_or_else(err)?;
    if t != 0x30 {
        return Err(err());
    }
    let mut rest = &tbs_all[h..h + len];
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject, SPKI.
    let mut index = 0;
    loop {
        let (t, h, len) = tlv(rest).ok_or_else(err)?;
        if index == 0 && t == 0xa0 {
            rest = &rest[h + len..];
            continue;
        }
        if index == 5 {
            if t != 0x30 {
                return Err(err());
            }
            return Ok(&rest[..h + len]);
        }
        rest = &rest[h + len..];
        index += 1;
    }
}

/// Standard base64 (what both Alipay and WeChat Pay use for signatures).
pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub(crate) fn b64_decode(field: &str, text: &str) -> Result<Vec<u8>, SignError> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| bad(field, "not valid base64"))
}
