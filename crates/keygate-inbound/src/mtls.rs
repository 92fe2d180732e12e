// Client certificates (seed 002): what a TLS peer certificate that rustls already verified
// against the configured CAs identifies — its SPKI fingerprint and subject — computed once per
// connection and attached to every request on it. Mapping an identity to an app is the snapshot's job.

use std::fmt;

/// The verified client certificate of a connection.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// SHA-256 of the DER SubjectPublicKeyInfo (the "pin-sha256" of RFC 7469, in hex here):
    /// stable across re-issued certificates for the same key pair.
    pub spki_sha256: [u8; 32],
    /// Subject DN, attributes in certificate order, `CN=client-1, O=Acme` form.
    pub subject: String,
}

impl ClientCert {
    /// Reads the identity of a DER certificate; `None` if it cannot be parsed (rustls has
    /// verified its chain already, so that does not happen for a connection's peer).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        if !rest.is_empty() {
            return None;
        }
        let spki = cert.tbs_certificate.subject_pki.raw;
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
        let mut spki_sha256 = [0u8; 32];
        spki_sha256.copy_from_slice(d.as_ref());
        Some(Self { spki_sha256, subject: cert.subject().to_string() })
    }

    /// Lowercase hex of [`ClientCert::spki_sha256`], as keys are configured with.
    pub fn spki_hex(&self) -> String {
        self.spki_sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCert")
            .field("spki_sha256", &self.spki_hex())
            .field("subject", &self.subject)
            .finish()
    }
}

/// What a route demands of the client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MtlsMode {
    /// Certificates are not looked at (the default).
    #[default]
    Off,
    /// A certificate mapped to an identity authenticates the request on its own; without one
    /// (or with an unmapped one) the request must be signed as usual.
    Optional,
    /// Only a certificate mapped to an identity gets in (`client_cert_required` /
    /// `client_cert_unknown` otherwise); no signature needed.
    Required,
    /// A mapped certificate **and** a valid signature by a key of the same app.
    WithSignature,
}

impl MtlsMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Self::Off),
            "optional" => Some(Self::Optional),
            "required" => Some(Self::Required),
            "with_signature" => Some(Self::WithSignature),
            _ => None,
        }
    }
}

/// Parses a configured SPKI fingerprint: 64 hex digits, optionally `:`-separated (as
/// `openssl … | openssl dgst -sha256 -c` prints it).
pub fn parse_spki_hex(s: &str) -> Option<[u8; 32]> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn identity_of_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["client.example".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Acme");
        params.distinguished_name.push(rcgen::DnType::CommonName, "client-1");
        let cert = params.clone().self_signed(&key).unwrap();
        let id = ClientCert::from_der(cert.der()).unwrap();
        assert_eq!(id.subject, "O=Acme, CN=client-1");
        let want = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &key.public_key_der());
        assert_eq!(&id.spki_sha256[..], want.as_ref());
        assert_eq!(parse_spki_hex(&id.spki_hex()), Some(id.spki_sha256));
        // Same key, new certificate: same SPKI pin.
        let again = params.self_signed(&key).unwrap();
        assert_eq!(ClientCert::from_der(again.der()).unwrap().spki_sha256, id.spki_sha256);
        assert!(ClientCert::from_der(&cert.der()[..100]).is_none());
    }

    #[test]
    fn fingerprints_and_modes_parse_strictly() {
        let colons = (0..32).map(|_| "AB").collect::<Vec<_>>().join(":");
        assert_eq!(parse_spki_hex(&colons), Some([0xab; 32]));
        assert_eq!(parse_spki_hex(&"0".repeat(63)), None);
        assert_eq!(parse_spki_hex(&"g".repeat(64)), None);
        assert_eq!(parse_spki_hex(&"é".repeat(32)), None);
        assert_eq!(MtlsMode::parse("required"), Some(MtlsMode::Required));
        assert_eq!(MtlsMode::parse("Required"), None);
    }
}
