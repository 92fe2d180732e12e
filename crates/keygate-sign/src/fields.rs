// Owns encrypted JSON fields (issue 10): the `kge1` envelope (RSA-OAEP-SHA256 direct, or hybrid
// RSA-OAEP-wrapped AES-256-GCM), the RSA key pairs an app holds per `kid`, partners' public keys,
// and the helpers that decrypt or encrypt configured field paths of a JSON body. aws-lc-rs does
// all cryptography. Pure: keys, bodies and limits come from the caller.
// Must not reveal why a decryption failed (one error value, similar work on every failure path),
// nor put key or plaintext bytes in an error, a Debug output or an unzeroized buffer it owns.
// The wire format is the contract in docs/encrypted-fields.md.

//! Encrypted JSON fields: the `kge1` envelope.
//!
//! A partner encrypts configured fields of its JSON request with the app's RSA public key; the
//! gateway decrypts them before forwarding ([`decrypt_json_fields`]) and can encrypt configured
//! response fields with the partner's public key ([`encrypt_json_fields`]).
//!
//! # Envelope (a JSON string)
//!
//! ```text
//! direct: kge1.o.<kid>.<b64url(RSA-OAEP(plaintext))>
//! hybrid: kge1.h.<kid>.<b64url(RSA-OAEP(aes_key))>.<b64url(nonce)>.<b64url(AES-256-GCM(plaintext) || tag)>
//! ```
//!
//! - RSA-OAEP is OAEP with SHA-256, MGF1-SHA-256 and no label; keys are 2048, 3072 or 4096 bits.
//! - Hybrid: a fresh 32-byte AES-256 key per value, a 12-byte random nonce, a 16-byte tag
//!   appended to the ciphertext, and the ASCII bytes `kge1.h.<kid>` as additional authenticated
//!   data (so a wrapped key cannot be moved under another `kid`).
//! - `b64url` is the URL-safe base64 alphabet; encoders write no padding, decoders accept
//!   canonical input with or without `=` padding.
//! - `kid` is 1–32 characters of `[A-Za-z0-9_-]` and names the key pair of the app that the
//!   partner encrypted for; during a rotation old and new pairs are both looked up by `kid`.
//! - The plaintext of a field is the UTF-8 JSON text of its original value: the number `42`
//!   encrypts the bytes `42`, the string `"abc"` the five bytes `"abc"` (quotes included), an
//!   object its compact JSON. After decryption the plaintext must be one JSON value and replaces
//!   the envelope string, byte for byte.
//!
//! # Failure behaviour
//!
//! Every failure to open an envelope is [`FieldError::DecryptFailed`], whatever the cause, and
//! the hybrid path runs AES-GCM on the received ciphertext even when the RSA step failed (with
//! a random key), so neither the error nor (to the extent it is practical) the timing says
//! whether the RSA padding was valid. See [`decrypt_value`] for the exact work done per path.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
    OAEP_SHA256_MGF1SHA256,
};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use subtle::{Choice, ConditionallySelectable};
use thiserror::Error;
use zeroize::Zeroizing;

/// The first segment of every envelope.
pub const PREFIX: &str = "kge1";
/// Most `kid` characters.
pub const MAX_KID_LEN: usize = 32;
/// Most envelopes [`decrypt_json_fields`] opens in one body (each costs one RSA private-key
/// operation, so this bounds the CPU one request can demand).
pub const MAX_FIELDS_PER_BODY: usize = 256;
/// Most nesting levels of a body or of a decrypted plaintext (as serde_json's default).
pub const MAX_JSON_DEPTH: usize = 128;

const AES_KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const OAEP_OVERHEAD: usize = 2 * 32 + 2;
const MAX_PATH_LEN: usize = 512;
const MAX_PATH_STEPS: usize = 32;

/// URL-safe base64: written without padding, read with or without it (canonical bits only).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a field could not be decrypted or encrypted.
///
/// Messages name paths and rules, never key bytes, envelope contents or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldError {
    /// An envelope could not be opened. One variant for every cause: malformed envelope, bad
    /// base64, unknown `kid`, wrong lengths, RSA-OAEP or AES-GCM failure, oversized envelope,
    /// or a plaintext that is not one UTF-8 JSON value.
    #[error("an encrypted field could not be decrypted")]
    DecryptFailed,
    /// A configured encrypted field is present but is not a `kge1` envelope string (the
    /// gateway fails closed: a partner cannot skip encryption by sending plaintext).
    #[error("field {path} must be an encrypted kge1 envelope")]
    NotEncrypted {
        /// The field's location in the body, e.g. `items[2].pan`.
        path: String,
    },
    /// The body is not a JSON object or array.
    #[error("body is not a JSON object or array")]
    BodyNotJson,
    /// The body holds more encrypted fields than [`MAX_FIELDS_PER_BODY`].
    #[error("body has more than {max} encrypted fields")]
    TooManyFields {
        /// The limit.
        max: usize,
    },
    /// A field path does not follow the `a.b[*].c` syntax.
    #[error("invalid field path {path:?}: {reason}")]
    InvalidPath {
        /// The configured path.
        path: String,
        /// The rule that was broken.
        reason: &'static str,
    },
    /// Direct mode was asked for a plaintext longer than one RSA-OAEP block holds.
    #[error("plaintext of {len} bytes exceeds the direct-mode limit of {max} bytes for this key")]
    PlaintextTooLarge {
        /// Plaintext length in bytes.
        len: usize,
        /// Most bytes direct mode takes with this key (190 for RSA-2048).
        max: usize,
    },
    /// A public key is not a usable RSA key of a supported size.
    #[error("bad public key: {0}")]
    BadPublicKey(&'static str),
    /// A private key is not a usable RSA key of a supported size.
    #[error("bad private key: {0}")]
    BadPrivateKey(&'static str),
    /// A `kid` given for encryption is not 1–32 characters of `[A-Za-z0-9_-]`.
    #[error("kid must be 1-32 characters of [A-Za-z0-9_-]")]
    InvalidKid,
    /// The random generator or the encryption primitive failed.
    #[error("field encryption failed")]
    EncryptFailed,
}

impl FieldError {
    /// The stable code of the gateway's JSON error envelope for this error.
    ///
    /// The first four are the partner's fault (HTTP 400); the others are gateway
    /// configuration or environment errors (HTTP 500).
    pub fn code(&self) -> &'static str {
        match self {
            FieldError::DecryptFailed => "field_decrypt_failed",
            FieldError::NotEncrypted { .. } => "field_not_encrypted",
            FieldError::BodyNotJson => "field_body_not_json",
            FieldError::TooManyFields { .. } => "too_many_encrypted_fields",
            FieldError::InvalidPath { .. }
            | FieldError::PlaintextTooLarge { .. }
            | FieldError::BadPublicKey(_)
            | FieldError::BadPrivateKey(_)
            | FieldError::InvalidKid
            | FieldError::EncryptFailed => "field_encryption_misconfigured",
        }
    }
}

/// Whether a `kid` is 1–32 characters of `[A-Za-z0-9_-]`.
pub fn valid_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len())
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn supported_bits(bits: usize) -> bool {
    matches!(bits, 2048 | 3072 | 4096)
}

fn pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every 64-byte chunk is a str.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// An RSA public key that field values are encrypted with (a partner's, or our own).
#[derive(Clone)]
pub struct FieldPublicKey {
    key: PublicEncryptingKey,
    spki: Vec<u8>,
}

impl std::fmt::Debug for FieldPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldPublicKey").field("bits", &self.bits()).finish_non_exhaustive()
    }
}

impl FieldPublicKey {
    /// A DER `SubjectPublicKeyInfo` RSA key of 2048, 3072 or 4096 bits.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, FieldError> {
        let key = PublicEncryptingKey::from_der(der)
            .map_err(|_| FieldError::BadPublicKey("not a DER SubjectPublicKeyInfo RSA key"))?;
        if !supported_bits(key.key_size_bits()) {
            return Err(FieldError::BadPublicKey("RSA key must be 2048, 3072 or 4096 bits"));
        }
        Ok(Self { key, spki: der.to_vec() })
    }

    /// A PEM `PUBLIC KEY` (SPKI) block.
    pub fn from_pem(text: &[u8]) -> Result<Self, FieldError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(text)
            .map_err(|_| FieldError::BadPublicKey("not a PEM PUBLIC KEY block"))?;
        Self::from_spki_der(der.as_ref())
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// PEM `PUBLIC KEY` with 64-character lines.
    pub fn to_pem(&self) -> String {
        pem("PUBLIC KEY", &self.spki).to_string()
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.key_size_bits()
    }

    /// Most plaintext bytes direct mode holds with this key (`modulus bytes − 66`).
    pub fn max_direct_plaintext(&self) -> usize {
        self.key.key_size_bytes() - OAEP_OVERHEAD
    }
}

/// An RSA key pair of an app, selected by `kid`: partners encrypt with its public half.
pub struct FieldKeyPair {
    private: PrivateDecryptingKey,
    oaep: OaepPrivateDecryptingKey,
    public: FieldPublicKey,
}

impl std::fmt::Debug for FieldKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldKeyPair").field("bits", &self.bits()).finish_non_exhaustive()
    }
}

impl FieldKeyPair {
    /// A fresh key pair of 2048 or 3072 bits.
    pub fn generate(bits: usize) -> Result<Self, FieldError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            _ => return Err(FieldError::BadPrivateKey("generated keys must be 2048 or 3072 bits")),
        };
        let private = PrivateDecryptingKey::generate(size)
            .map_err(|_| FieldError::BadPrivateKey("RSA key generation failed"))?;
        Self::from_private(private)
    }

    /// A DER PKCS#8 (v1) RSA private key of 2048, 3072 or 4096 bits.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, FieldError> {
        let private = PrivateDecryptingKey::from_pkcs8(der)
            .map_err(|_| FieldError::BadPrivateKey("not a PKCS#8 RSA private key"))?;
        Self::from_private(private)
    }

    /// A PEM `PRIVATE KEY` (PKCS#8) block.
    pub fn from_pem(text: &[u8]) -> Result<Self, FieldError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(text)
            .map_err(|_| FieldError::BadPrivateKey("not a PEM PRIVATE KEY (PKCS#8) block"))?;
        Self::from_pkcs8_der(der.secret_pkcs8_der())
    }

    fn from_private(private: PrivateDecryptingKey) -> Result<Self, FieldError> {
        if !supported_bits(private.key_size_bits()) {
            return Err(FieldError::BadPrivateKey("RSA key must be 2048, 3072 or 4096 bits"));
        }
        let public_der = private
            .public_key()
            .as_der()
            .map_err(|_| FieldError::BadPrivateKey("public key cannot be encoded"))?;
        let public = FieldPublicKey::from_spki_der(public_der.as_ref())
            .map_err(|_| FieldError::BadPrivateKey("public key cannot be encoded"))?;
        let oaep = OaepPrivateDecryptingKey::new(private.clone())
            .map_err(|_| FieldError::BadPrivateKey("not usable for RSA-OAEP"))?;
        Ok(Self { private, oaep, public })
    }

    /// The private key as DER PKCS#8 (v1), for sealing at rest.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, FieldError> {
        let der =
            self.private.as_der().map_err(|_| FieldError::BadPrivateKey("private key cannot be encoded"))?;
        Ok(Zeroizing::new(der.as_ref().to_vec()))
    }

    /// The private key as PEM `PRIVATE KEY` (PKCS#8).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, FieldError> {
        Ok(pem("PRIVATE KEY", &self.to_pkcs8_der()?))
    }

    /// The public half.
    pub fn public_key(&self) -> &FieldPublicKey {
        &self.public
    }

    /// The public half as DER `SubjectPublicKeyInfo`.
    pub fn public_key_spki_der(&self) -> &[u8] {
        self.public.spki_der()
    }

    /// The public half as PEM `PUBLIC KEY`, what partners are given.
    pub fn public_key_pem(&self) -> String {
        self.public.to_pem()
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.oaep.key_size_bits()
    }

    fn modulus_len(&self) -> usize {
        self.oaep.key_size_bytes()
    }

    /// RSA-OAEP-SHA256 decryption of one block into a zeroized buffer.
    fn unwrap_block(&self, block: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if block.len() != self.modulus_len() {
            return None;
        }
        let mut out = Zeroizing::new(vec![0u8; self.oaep.min_output_size()]);
        let len = self.oaep.decrypt(&OAEP_SHA256_MGF1SHA256, block, &mut out, None).ok()?.len();
        out.truncate(len);
        Some(out)
    }
}

/// How [`encrypt_value`] encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// RSA-OAEP of the plaintext itself; at most [`FieldPublicKey::max_direct_plaintext`] bytes.
    Direct,
    /// RSA-OAEP of a fresh AES-256 key, AES-256-GCM of the plaintext; any length.
    Hybrid,
    /// Direct when the plaintext fits, hybrid otherwise.
    #[default]
    Auto,
}

enum Envelope<'a> {
    Direct {
        kid: &'a str,
        block: Vec<u8>,
    },
    Hybrid {
        kid: &'a str,
        aad: &'a str,
        wrapped: Vec<u8>,
        nonce: [u8; NONCE_LEN],
        sealed: Zeroizing<Vec<u8>>,
    },
}

fn unb64(segment: &str) -> Option<Vec<u8>> {
    B64URL.decode(segment).ok()
}

/// Parses the envelope syntax; `None` for anything malformed. Needs no key.
fn parse_envelope(s: &str) -> Option<Envelope<'_>> {
    let mut parts = s.split('.');
    if parts.next()? != PREFIX {
        return None;
    }
    let mode = parts.next()?;
    let kid = parts.next()?;
    if !valid_kid(kid) {
        return None;
    }
    let env = match mode {
        "o" => Envelope::Direct { kid, block: unb64(parts.next()?)? },
        "h" => {
            let wrapped = unb64(parts.next()?)?;
            let nonce = <[u8; NONCE_LEN]>::try_from(unb64(parts.next()?)?.as_slice()).ok()?;
            let sealed = Zeroizing::new(unb64(parts.next()?)?);
            if sealed.len() < TAG_LEN {
                return None;
            }
            let aad = &s[..PREFIX.len() + 3 + kid.len()];
            Envelope::Hybrid { kid, aad, wrapped, nonce, sealed }
        }
        _ => return None,
    };
    parts.next().is_none().then_some(env)
}

/// Opens one envelope with the key pair `keys` returns for its `kid`.
///
/// Every failure is [`FieldError::DecryptFailed`]. The work done before returning it:
///
/// - envelope longer than `max_len` bytes: nothing else (no parsing, no RSA);
/// - malformed envelope (prefix, mode, `kid` syntax, segment count, base64, nonce length, a
///   ciphertext shorter than the tag): parsing only — these are properties of the public
///   envelope text, not of any secret;
/// - direct mode, unknown `kid`: parsing only, no RSA operation (a `kid` is public: partners
///   are told it, so whether it exists is not worth hiding at the price of a dummy key);
/// - direct mode, known `kid`: one RSA-OAEP decryption (a block of the wrong length is refused
///   by length alone);
/// - hybrid mode: a random AES key is always drawn; the wrapped key is RSA-OAEP-decrypted when
///   the `kid` is known and the block has the modulus length; whatever that gives, AES-GCM open
///   runs on the received ciphertext — with the unwrapped key when it is valid and 32 bytes,
///   else with the random key (selected in constant time). So an OAEP failure costs the same
///   AES-GCM work as a GCM failure and the two cannot be told apart by result or by the work
///   done after the RSA step (what differs is the RSA library's own error path and a 32-byte
///   copy). An unknown `kid` skips only the RSA operation.
///
/// The plaintext is not checked further here; [`decrypt_json_fields`] additionally requires
/// one UTF-8 JSON value (and reports `DecryptFailed` otherwise).
pub fn decrypt_value<'k>(
    envelope: &str,
    keys: &impl Fn(&str) -> Option<&'k FieldKeyPair>,
    max_len: usize,
) -> Result<Zeroizing<Vec<u8>>, FieldError> {
    if envelope.len() > max_len {
        return Err(FieldError::DecryptFailed);
    }
    match parse_envelope(envelope).ok_or(FieldError::DecryptFailed)? {
        Envelope::Direct { kid, block } => {
            keys(kid).and_then(|pair| pair.unwrap_block(&block)).ok_or(FieldError::DecryptFailed)
        }
        Envelope::Hybrid { kid, aad, wrapped, nonce, mut sealed } => {
            let mut random_key = Zeroizing::new([0u8; AES_KEY_LEN]);
            aws_lc_rs::rand::fill(&mut random_key[..]).map_err(|_| FieldError::DecryptFailed)?;
            let unwrapped = keys(kid).and_then(|pair| pair.unwrap_block(&wrapped));
            let mut candidate = Zeroizing::new([0u8; AES_KEY_LEN]);
            let mut valid = Choice::from(0);
            if let Some(k) = unwrapped.as_deref() {
                if k.len() == AES_KEY_LEN {
                    candidate.copy_from_slice(k);
                    valid = Choice::from(1);
                }
            }
            let mut key = Zeroizing::new([0u8; AES_KEY_LEN]);
            for ((out, good), fallback) in key.iter_mut().zip(candidate.iter()).zip(random_key.iter()) {
                *out = u8::conditional_select(fallback, good, valid);
            }
            let opened = UnboundKey::new(&AES_256_GCM, &key[..]).ok().and_then(|k| {
                LessSafeKey::new(k)
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad.as_bytes()),
                        &mut sealed,
                    )
                    .ok()
                    .map(|p| p.len())
            });
            match opened {
                Some(len) if bool::from(valid) => {
                    sealed.truncate(len);
                    Ok(sealed)
                }
                _ => Err(FieldError::DecryptFailed),
            }
        }
    }
}

/// Encrypts `plaintext` for the holder of `pk`'s private key, under `kid`.
///
/// Errors: [`FieldError::InvalidKid`], [`FieldError::PlaintextTooLarge`] (direct mode only),
/// [`FieldError::EncryptFailed`] (random generator or primitive failure).
pub fn encrypt_value(
    pk: &FieldPublicKey,
    kid: &str,
    plaintext: &[u8],
    mode: Mode,
) -> Result<String, FieldError> {
    if !valid_kid(kid) {
        return Err(FieldError::InvalidKid);
    }
    let oaep = OaepPublicEncryptingKey::new(pk.key.clone()).map_err(|_| FieldError::EncryptFailed)?;
    let max = pk.max_direct_plaintext();
    let direct = match mode {
        Mode::Direct if plaintext.len() > max => {
            return Err(FieldError::PlaintextTooLarge { len: plaintext.len(), max })
        }
        Mode::Direct => true,
        Mode::Hybrid => false,
        Mode::Auto => plaintext.len() <= max,
    };
    let mut block = vec![0u8; oaep.ciphertext_size()];
    if direct {
        let ct = oaep
            .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut block, None)
            .map_err(|_| FieldError::EncryptFailed)?;
        return Ok(format!("{PREFIX}.o.{kid}.{}", B64URL.encode(ct)));
    }
    let mut key = Zeroizing::new([0u8; AES_KEY_LEN]);
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut key[..]).map_err(|_| FieldError::EncryptFailed)?;
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| FieldError::EncryptFailed)?;
    let wrapped = oaep
        .encrypt(&OAEP_SHA256_MGF1SHA256, &key[..], &mut block, None)
        .map_err(|_| FieldError::EncryptFailed)?;
    let aad = format!("{PREFIX}.h.{kid}");
    let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    buf.extend_from_slice(plaintext);
    let sealing = UnboundKey::new(&AES_256_GCM, &key[..]).map_err(|_| FieldError::EncryptFailed)?;
    LessSafeKey::new(sealing)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut *buf)
        .map_err(|_| FieldError::EncryptFailed)?;
    Ok(format!("{aad}.{}.{}.{}", B64URL.encode(wrapped), B64URL.encode(nonce), B64URL.encode(&buf[..])))
}

// ---------------------------------------------------------------------------------------------
// Field paths

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Each,
}

/// Where encrypted fields are in a body: `card.number`, `items[*].pan`, `[*].pan` (elements of
/// a top-level array), `a.b[*][*].c`.
///
/// Segments are separated by `.`; a segment is an object key (any characters except `.`, `[`,
/// `]` and control characters) followed by zero or more `[*]` (every element of an array). Only
/// the first segment may be a bare `[*]`. At most 512 bytes and 32 steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    raw: String,
    steps: Vec<Step>,
}

impl FieldPath {
    /// Parses a configured path.
    pub fn parse(path: &str) -> Result<Self, FieldError> {
        let err = |reason| FieldError::InvalidPath { path: path.to_string(), reason };
        if path.is_empty() {
            return Err(err("empty path"));
        }
        if path.len() > MAX_PATH_LEN {
            return Err(err("longer than 512 bytes"));
        }
        let mut steps = Vec::new();
        for (i, segment) in path.split('.').enumerate() {
            let (name, mut rest) = segment.split_at(segment.find('[').unwrap_or(segment.len()));
            if name.contains(']') || name.chars().any(char::is_control) {
                return Err(err("a key may not contain ']' or control characters"));
            }
            if name.is_empty() && (i > 0 || rest.is_empty()) {
                return Err(err("empty segment"));
            }
            if !name.is_empty() {
                steps.push(Step::Key(name.to_string()));
            }
            while !rest.is_empty() {
                rest = rest.strip_prefix("[*]").ok_or_else(|| err("only [*] may follow a key"))?;
                steps.push(Step::Each);
            }
        }
        if steps.len() > MAX_PATH_STEPS {
            return Err(err("more than 32 steps"));
        }
        Ok(Self { raw: path.to_string(), steps })
    }

    /// The path as configured.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for FieldPath {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

// ---------------------------------------------------------------------------------------------
// JSON scanning: byte spans of values, so that everything outside the replaced values is kept
// byte for byte (key order, number spelling, whitespace) — nothing is re-serialized.

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `b[i]` is `"`: the index after the closing quote of a valid JSON string.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut i = i + 1;
    loop {
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => match *b.get(i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                b'u' if b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => i += 6,
                _ => return None,
            },
            c if c < 0x20 => return None,
            _ => i += 1,
        }
    }
}

fn digits(b: &[u8], mut i: usize) -> Option<usize> {
    let start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    (i > start).then_some(i)
}

fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match *b.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(b, i)?,
        _ => return None,
    };
    if b.get(i) == Some(&b'.') {
        i = digits(b, i + 1)?;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(b, i)?;
    }
    Some(i)
}

/// Validates one JSON value (RFC 8259 grammar) starting at `i` (after whitespace); returns the
/// index after it.
fn value_end(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    let i = ws(b, i);
    let (close, is_object) = match *b.get(i)? {
        b'"' => return string_end(b, i),
        b'-' | b'0'..=b'9' => return number_end(b, i),
        b't' => return b[i..].starts_with(b"true").then_some(i + 4),
        b'f' => return b[i..].starts_with(b"false").then_some(i + 5),
        b'n' => return b[i..].starts_with(b"null").then_some(i + 4),
        b'{' => (b'}', true),
        b'[' => (b']', false),
        _ => return None,
    };
    if depth >= MAX_JSON_DEPTH {
        return None;
    }
    let mut i = ws(b, i + 1);
    if b.get(i) == Some(&close) {
        return Some(i + 1);
    }
    loop {
        if is_object {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            i = ws(b, string_end(b, i)?);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i += 1;
        }
        i = ws(b, value_end(b, i, depth + 1)?);
        match *b.get(i)? {
            b',' => i = ws(b, i + 1),
            c if c == close => return Some(i + 1),
            _ => return None,
        }
    }
}

/// One UTF-8 JSON value, optionally surrounded by whitespace.
fn is_json_document(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_ok() && value_end(b, 0, 0).is_some_and(|end| ws(b, end) == b.len())
}

/// The end of the (already validated) value at `i`; iterative, so depth does not matter.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    let mut i = ws(b, i);
    let mut depth = 0usize;
    loop {
        match *b.get(i)? {
            b'"' => i = string_end(b, i)?,
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' if depth > 0 => i += 1,
            b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' => return None,
            _ => {
                while b.get(i).is_some_and(|c| !b",:}] \t\n\r".contains(c)) {
                    i += 1;
                }
            }
        }
        if depth == 0 {
            return Some(i);
        }
    }
}

/// The decoded text of the (valid) JSON string at `raw` (quotes included).
fn decode_string(raw: &[u8]) -> Option<String> {
    let inner = raw.get(1..raw.len().checked_sub(1)?)?;
    if inner.contains(&b'\\') {
        serde_json::from_slice(raw).ok()
    } else {
        std::str::from_utf8(inner).ok().map(str::to_string)
    }
}

struct Hit {
    start: usize,
    end: usize,
    path: String,
}

fn render(here: &str, steps: &[Step]) -> String {
    let mut out = here.to_string();
    for s in steps {
        match s {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Each => out.push_str("[*]"),
        }
    }
    out
}

/// Collects the values at `steps` below the value at `i`. A missing key or a `null` on the way
/// means absent. A value of the wrong type on the way (not an object where a key is next, not
/// an array where `[*]` is next) is an error when `strict` (decryption: fail closed), absent
/// otherwise; at the root it is always absent (the path is for another body shape).
fn collect(
    b: &[u8],
    i: usize,
    steps: &[Step],
    here: &mut String,
    strict: bool,
    out: &mut Vec<Hit>,
) -> Result<(), FieldError> {
    let i = ws(b, i);
    let Some((step, rest)) = steps.split_first() else {
        let end = skip_value(b, i).ok_or(FieldError::BodyNotJson)?;
        out.push(Hit { start: i, end, path: here.clone() });
        return Ok(());
    };
    let c = *b.get(i).ok_or(FieldError::BodyNotJson)?;
    let mark = here.len();
    match (step, c) {
        (_, b'n') => Ok(()),
        (Step::Key(name), b'{') => {
            let mut j = ws(b, i + 1);
            if b.get(j) == Some(&b'}') {
                return Ok(());
            }
            loop {
                let key_end = string_end(b, j).ok_or(FieldError::BodyNotJson)?;
                let key = &b[j..key_end];
                j = ws(b, key_end);
                if b.get(j) != Some(&b':') {
                    return Err(FieldError::BodyNotJson);
                }
                let start = ws(b, j + 1);
                let end = skip_value(b, start).ok_or(FieldError::BodyNotJson)?;
                // Every member with this name (duplicates included: a receiver might use any).
                if decode_string(key).is_some_and(|k| k == *name) {
                    if !here.is_empty() {
                        here.push('.');
                    }
                    here.push_str(name);
                    collect(b, start, rest, here, strict, out)?;
                    here.truncate(mark);
                }
                j = ws(b, end);
                match b.get(j) {
                    Some(b',') => j = ws(b, j + 1),
                    Some(b'}') => return Ok(()),
                    _ => return Err(FieldError::BodyNotJson),
                }
            }
        }
        (Step::Each, b'[') => {
            let mut j = ws(b, i + 1);
            if b.get(j) == Some(&b']') {
                return Ok(());
            }
            let mut index = 0usize;
            loop {
                let end = skip_value(b, j).ok_or(FieldError::BodyNotJson)?;
                here.push_str(&format!("[{index}]"));
                collect(b, j, rest, here, strict, out)?;
                here.truncate(mark);
                index += 1;
                j = ws(b, end);
                match b.get(j) {
                    Some(b',') => j = ws(b, j + 1),
                    Some(b']') => return Ok(()),
                    _ => return Err(FieldError::BodyNotJson),
                }
            }
        }
        _ if strict && !here.is_empty() => Err(FieldError::NotEncrypted { path: render(here, steps) }),
        _ => Ok(()),
    }
}

fn find(body: &[u8], path: &FieldPath, strict: bool) -> Result<Vec<Hit>, FieldError> {
    let mut out = Vec::new();
    collect(body, 0, &path.steps, &mut String::new(), strict, &mut out)?;
    Ok(out)
}

fn check_body(body: &[u8]) -> Result<(), FieldError> {
    let first = body.get(ws(body, 0));
    if matches!(first, Some(b'{' | b'[')) && is_json_document(body) {
        Ok(())
    } else {
        Err(FieldError::BodyNotJson)
    }
}

/// Decrypts every field at `paths` in a JSON body and returns the body with each envelope
/// string replaced by its plaintext JSON value. Everything else is kept byte for byte.
///
/// - The body must be a UTF-8 JSON object or array ([`FieldError::BodyNotJson`]).
/// - Paths are applied in order (a later path may reach into a value an earlier one decrypted).
/// - A path that is absent from the body (a missing key, a `null` on the way, or a root of
///   another shape, e.g. `[*].pan` on an object) is skipped.
/// - A value found at a path must be a JSON string starting with `kge1.`; anything else,
///   including `null` or a value of the wrong type on the way (e.g. `card` is a string for
///   `card.number`), is [`FieldError::NotEncrypted`] — checked for every match of a path before
///   any decryption. Every member of a duplicated key is decrypted or refused.
/// - Each envelope is opened by [`decrypt_value`] (`max_len` bounds each envelope string) and
///   its plaintext must be one UTF-8 JSON value (nesting ≤ 128); otherwise
///   [`FieldError::DecryptFailed`].
/// - At most [`MAX_FIELDS_PER_BODY`] envelopes per body ([`FieldError::TooManyFields`]).
pub fn decrypt_json_fields<'k>(
    body: &[u8],
    paths: &[FieldPath],
    keys: &impl Fn(&str) -> Option<&'k FieldKeyPair>,
    max_len: usize,
) -> Result<Vec<u8>, FieldError> {
    check_body(body)?;
    let mut current = Zeroizing::new(body.to_vec());
    let mut opened = 0usize;
    for path in paths {
        let hits = find(&current, path, true)?;
        if hits.is_empty() {
            continue;
        }
        let mut envelopes = Vec::with_capacity(hits.len());
        for hit in &hits {
            let raw = &current[hit.start..hit.end];
            let text = if raw.first() == Some(&b'"') { decode_string(raw) } else { None };
            match text {
                Some(s) if s.starts_with("kge1.") => envelopes.push(s),
                _ => return Err(FieldError::NotEncrypted { path: hit.path.clone() }),
            }
        }
        opened += hits.len();
        if opened > MAX_FIELDS_PER_BODY {
            return Err(FieldError::TooManyFields { max: MAX_FIELDS_PER_BODY });
        }
        // A plaintext is always shorter than its envelope, so this never reallocates (which
        // would leave an unzeroized copy of decrypted bytes behind).
        let mut next = Zeroizing::new(Vec::with_capacity(current.len()));
        let mut last = 0;
        for (hit, envelope) in hits.iter().zip(&envelopes) {
            let plain = decrypt_value(envelope, keys, max_len)?;
            if !is_json_document(&plain) {
                return Err(FieldError::DecryptFailed);
            }
            next.extend_from_slice(&current[last..hit.start]);
            next.extend_from_slice(&plain);
            last = hit.end;
        }
        next.extend_from_slice(&current[last..]);
        current = next;
    }
    Ok(std::mem::take(&mut *current))
}

/// The value's JSON text without insignificant whitespace (key order and numbers as written).
fn compact(raw: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(raw.len()));
    let (mut in_str, mut esc) = (false, false);
    for &c in raw {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(c);
            in_str = c == b'"';
        }
    }
    out
}

/// Encrypts every value at `paths` in a JSON body (for the holder of `pk`, under `kid`) and
/// returns the body with each value replaced by its envelope string; everything else is kept
/// byte for byte. The plaintext of a value is its compact JSON text. Absent paths, and paths
/// that meet a value of another type on the way, are skipped. Paths are applied in order.
pub fn encrypt_json_fields(
    body: &[u8],
    paths: &[FieldPath],
    pk: &FieldPublicKey,
    kid: &str,
    mode: Mode,
) -> Result<Vec<u8>, FieldError> {
    check_body(body)?;
    if !valid_kid(kid) {
        return Err(FieldError::InvalidKid);
    }
    let mut current = body.to_vec();
    for path in paths {
        let hits = find(&current, path, false)?;
        if hits.is_empty() {
            continue;
        }
        let mut next = Vec::with_capacity(current.len() + hits.len() * 512);
        let mut last = 0;
        for hit in &hits {
            let envelope = encrypt_value(pk, kid, &compact(&current[hit.start..hit.end]), mode)?;
            next.extend_from_slice(&current[last..hit.start]);
            next.push(b'"');
            next.extend_from_slice(envelope.as_bytes());
            next.push(b'"');
            last = hit.end;
        }
        next.extend_from_slice(&current[last..]);
        current = next;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::OnceLock;

    use serde_json::{json, Value};

    use super::*;

    const MAX: usize = 1 << 20;

    fn pair_2048() -> &'static FieldKeyPair {
        static K: OnceLock<FieldKeyPair> = OnceLock::new();
        K.get_or_init(|| FieldKeyPair::generate(2048).unwrap())
    }

    fn pair_2048_b() -> &'static FieldKeyPair {
        static K: OnceLock<FieldKeyPair> = OnceLock::new();
        K.get_or_init(|| FieldKeyPair::generate(2048).unwrap())
    }

    fn pair_3072() -> &'static FieldKeyPair {
        static K: OnceLock<FieldKeyPair> = OnceLock::new();
        K.get_or_init(|| FieldKeyPair::generate(3072).unwrap())
    }

    fn only<'a>(kid: &'static str, pair: &'a FieldKeyPair) -> impl Fn(&str) -> Option<&'a FieldKeyPair> {
        move |k: &str| (k == kid).then_some(pair)
    }

    fn open(env: &str, pair: &FieldKeyPair, kid: &'static str) -> Result<Vec<u8>, FieldError> {
        decrypt_value(env, &only(kid, pair), MAX).map(|p| p.to_vec())
    }

    /// Splits an envelope into its segments, with base64 segments decoded.
    fn segments(env: &str) -> Vec<String> {
        env.split('.').map(str::to_string).collect()
    }

    fn rebuild(mut segs: Vec<String>, index: usize, bytes: &[u8]) -> String {
        segs[index] = B64URL.encode(bytes);
        segs.join(".")
    }

    #[test]
    fn round_trips_in_every_mode_at_2048_and_3072() {
        for (pair, bits) in [(pair_2048(), 2048), (pair_3072(), 3072)] {
            assert_eq!(pair.bits(), bits);
            let max = bits / 8 - 66;
            assert_eq!(pair.public_key().max_direct_plaintext(), max);
            for len in [0usize, 1, 16, max - 1, max, max + 1, 1024, 65_536] {
                let plain: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
                for mode in [Mode::Direct, Mode::Hybrid, Mode::Auto] {
                    let env = match encrypt_value(pair.public_key(), "v1", &plain, mode) {
                        Err(FieldError::PlaintextTooLarge { len: l, max: m }) => {
                            assert_eq!((mode, l, m), (Mode::Direct, len, max));
                            assert!(len > max);
                            continue;
                        }
                        other => other.unwrap(),
                    };
                    let expect_direct = mode == Mode::Direct || (mode == Mode::Auto && len <= max);
                    assert_eq!(env.starts_with("kge1.o.v1."), expect_direct, "{bits} {len} {mode:?}");
                    assert_eq!(env.starts_with("kge1.h.v1."), !expect_direct);
                    assert!(!env.contains('='), "no padding");
                    assert_eq!(open(&env, pair, "v1").unwrap(), plain, "{bits} {len} {mode:?}");
                }
            }
        }
    }

    #[test]
    fn direct_mode_limit_is_190_bytes_at_2048() {
        let pk = pair_2048().public_key();
        assert_eq!(pk.max_direct_plaintext(), 190);
        encrypt_value(pk, "k", &[b'x'; 190], Mode::Direct).unwrap();
        assert_eq!(
            encrypt_value(pk, "k", &[b'x'; 191], Mode::Direct),
            Err(FieldError::PlaintextTooLarge { len: 191, max: 190 })
        );
        assert!(encrypt_value(pk, "k", &[b'x'; 191], Mode::Auto).unwrap().starts_with("kge1.h.k."));
        assert_eq!(pair_3072().public_key().max_direct_plaintext(), 318);
    }

    #[test]
    fn each_kid_opens_only_its_own_envelopes() {
        let (old, new) = (pair_2048(), pair_2048_b());
        let both = |kid: &str| match kid {
            "2024-01" => Some(old),
            "2025-01" => Some(new),
            _ => None,
        };
        for mode in [Mode::Direct, Mode::Hybrid] {
            let e_old = encrypt_value(old.public_key(), "2024-01", b"\"old\"", mode).unwrap();
            let e_new = encrypt_value(new.public_key(), "2025-01", b"\"new\"", mode).unwrap();
            assert_eq!(decrypt_value(&e_old, &both, MAX).unwrap().as_slice(), b"\"old\"");
            assert_eq!(decrypt_value(&e_new, &both, MAX).unwrap().as_slice(), b"\"new\"");
            // Relabelled with the other kid: the other key cannot open it.
            let swapped = e_old.replace(".2024-01.", ".2025-01.");
            assert_eq!(decrypt_value(&swapped, &both, MAX), Err(FieldError::DecryptFailed));
            let swapped = e_new.replace(".2025-01.", ".2024-01.");
            assert_eq!(decrypt_value(&swapped, &both, MAX), Err(FieldError::DecryptFailed));
            // A retired kid is unknown.
            assert_eq!(decrypt_value(&e_old, &only("2025-01", new), MAX), Err(FieldError::DecryptFailed));
            assert_eq!(decrypt_value(&e_new, &only("2024-01", old), MAX), Err(FieldError::DecryptFailed));
        }
    }

    #[test]
    fn hybrid_aad_binds_the_kid() {
        // The same key pair under two kids: only the AAD differs, and it must be checked.
        let pair = pair_2048();
        let both = |kid: &str| matches!(kid, "a" | "b").then_some(pair);
        let env = encrypt_value(pair.public_key(), "a", b"{\"x\":1}", Mode::Hybrid).unwrap();
        assert_eq!(decrypt_value(&env, &both, MAX).unwrap().as_slice(), b"{\"x\":1}");
        let moved = env.replacen("kge1.h.a.", "kge1.h.b.", 1);
        assert_eq!(decrypt_value(&moved, &both, MAX), Err(FieldError::DecryptFailed));
        // Direct envelopes have no AAD: relabelling them under a kid of the same key opens.
        let env = encrypt_value(pair.public_key(), "a", b"1", Mode::Direct).unwrap();
        assert_eq!(decrypt_value(&env.replacen(".a.", ".b.", 1), &both, MAX).unwrap().as_slice(), b"1");
    }

    #[test]
    fn every_flipped_byte_of_a_direct_envelope_fails() {
        let pair = pair_2048();
        let env = encrypt_value(pair.public_key(), "v1", b"\"4111111111111111\"", Mode::Direct).unwrap();
        let segs = segments(&env);
        let ct = B64URL.decode(&segs[3]).unwrap();
        assert_eq!(ct.len(), 256);
        for pos in 0..ct.len() {
            for mask in [0x01u8, 0x80] {
                let mut bad = ct.clone();
                bad[pos] ^= mask;
                assert_eq!(open(&rebuild(segs.clone(), 3, &bad), pair, "v1"), Err(FieldError::DecryptFailed));
            }
        }
    }

    fn flip_hybrid(pair: &FieldKeyPair, plain: &[u8], stride: usize) {
        let env = encrypt_value(pair.public_key(), "v1", plain, Mode::Hybrid).unwrap();
        assert_eq!(open(&env, pair, "v1").unwrap(), plain);
        let segs = segments(&env);
        for (index, step) in [(3usize, stride.min(7)), (4, 1), (5, stride)] {
            let bytes = B64URL.decode(&segs[index]).unwrap();
            let mut positions: Vec<usize> = (0..bytes.len()).step_by(step).collect();
            positions.extend([bytes.len() - 1, bytes.len().saturating_sub(TAG_LEN)]);
            for pos in positions {
                let mut bad = bytes.clone();
                bad[pos] ^= 0x04;
                assert_eq!(
                    open(&rebuild(segs.clone(), index, &bad), pair, "v1"),
                    Err(FieldError::DecryptFailed),
                    "segment {index} byte {pos}"
                );
            }
        }
    }

    #[test]
    fn every_flipped_byte_of_a_hybrid_envelope_fails() {
        flip_hybrid(pair_2048(), br#"{"number":"4111111111111111","holder":"A. N. Other","exp":"12/30"}"#, 1);
    }

    #[test]
    fn sampled_flipped_bytes_of_a_64k_hybrid_envelope_fail() {
        let plain: Vec<u8> = (0..65_536u32).map(|i| b'a' + (i % 26) as u8).collect();
        flip_hybrid(pair_2048(), &plain, 1021);
    }

    #[test]
    fn malformed_envelopes_fail_the_same_way() {
        let pair = pair_2048();
        let direct = encrypt_value(pair.public_key(), "v1", b"42", Mode::Direct).unwrap();
        let hybrid = encrypt_value(pair.public_key(), "v1", b"42", Mode::Hybrid).unwrap();
        for env in [&direct, &hybrid] {
            assert_eq!(open(env, pair, "v1").unwrap(), b"42");
            // Every truncation.
            for cut in 0..env.len() {
                assert_eq!(open(&env[..cut], pair, "v1"), Err(FieldError::DecryptFailed), "cut {cut}");
            }
            let segs = segments(env);
            // Each segment duplicated, removed, emptied.
            for i in 0..segs.len() {
                let mut dup = segs.clone();
                dup.insert(i, segs[i].clone());
                assert_eq!(open(&dup.join("."), pair, "v1"), Err(FieldError::DecryptFailed), "dup {i}");
                let mut gone = segs.clone();
                gone.remove(i);
                assert_eq!(open(&gone.join("."), pair, "v1"), Err(FieldError::DecryptFailed), "rm {i}");
                let mut empty = segs.clone();
                empty[i].clear();
                assert_eq!(open(&empty.join("."), pair, "v1"), Err(FieldError::DecryptFailed), "empty {i}");
            }
            for bad in [
                env.replacen("kge1.", "kge2.", 1),
                env.replacen("kge1.", "KGE1.", 1),
                env.replacen(".v1.", ".v 1.", 1),
                env.replacen(".v1.", &format!(".{}.", "v".repeat(33)), 1),
                format!("{env}."),
                format!(" {env}"),
                format!("{env}\n"),
                env.replace('-', "+").replace('_', "/"),
                format!("{env}A"),
                format!("{env}.AAAA"),
            ] {
                if bad != *env {
                    assert_eq!(open(&bad, pair, "v1"), Err(FieldError::DecryptFailed), "{bad}");
                }
            }
            // The mode letter swapped.
            let swapped = if env.starts_with("kge1.o.") {
                env.replacen("kge1.o.", "kge1.h.", 1)
            } else {
                env.replacen("kge1.h.", "kge1.o.", 1)
            };
            assert_eq!(open(&swapped, pair, "v1"), Err(FieldError::DecryptFailed));
            // Too long for max_len: refused without RSA work; exactly max_len is fine.
            assert_eq!(decrypt_value(env, &only("v1", pair), env.len() - 1), Err(FieldError::DecryptFailed));
            assert_eq!(decrypt_value(env, &only("v1", pair), env.len()).unwrap().as_slice(), b"42");
        }
    }

    #[test]
    fn base64_with_or_without_padding_is_accepted() {
        let pair = pair_2048();
        // 1 + 2 mod 3 byte lengths give padded forms of every kind.
        for plain in [&b"1"[..], b"12", b"123", b"1234", b"12345"] {
            let env = encrypt_value(pair.public_key(), "v1", plain, Mode::Hybrid).unwrap();
            let padded: Vec<String> = env
                .split('.')
                .enumerate()
                .map(
                    |(i, s)| {
                        if i >= 3 {
                            format!("{s}{}", "=".repeat((4 - s.len() % 4) % 4))
                        } else {
                            s.into()
                        }
                    },
                )
                .collect();
            let padded = padded.join(".");
            assert_eq!(open(&padded, pair, "v1").unwrap(), plain);
            assert_eq!(open(&env, pair, "v1").unwrap(), plain);
            // Wrong amount of padding is refused.
            let over: String = env
                .split('.')
                .enumerate()
                .map(|(i, s)| if i == 5 { format!("{s}===") } else { s.into() })
                .collect::<Vec<_>>()
                .join(".");
            assert_eq!(open(&over, pair, "v1"), Err(FieldError::DecryptFailed));
        }
        // The standard alphabet is not accepted.
        let env = encrypt_value(pair.public_key(), "v1", &[0xfb; 100], Mode::Hybrid).unwrap();
        assert!(env.contains('-') || env.contains('_'));
        let std_alpha = env.replace('-', "+").replace('_', "/");
        assert_eq!(open(&std_alpha, pair, "v1"), Err(FieldError::DecryptFailed));
    }

    #[test]
    fn invalid_kids_are_refused_on_encryption() {
        let pk = pair_2048().public_key();
        let long = "k".repeat(33);
        for kid in ["", "a.b", "a b", "ключ", long.as_str(), "a/b", "a=b"] {
            assert_eq!(encrypt_value(pk, kid, b"1", Mode::Auto), Err(FieldError::InvalidKid), "{kid:?}");
        }
        for kid in ["a", "A-z_0", &long[1..]] {
            encrypt_value(pk, kid, b"1", Mode::Auto).unwrap();
        }
    }

    #[test]
    fn keys_load_save_and_reject() {
        let pair = pair_2048();
        let der = pair.to_pkcs8_der().unwrap();
        let again = FieldKeyPair::from_pkcs8_der(&der).unwrap();
        assert_eq!(again.public_key_spki_der(), pair.public_key_spki_der());
        let pem = pair.to_pkcs8_pem().unwrap();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----\n") && pem.ends_with("-----END PRIVATE KEY-----\n")
        );
        assert!(pem.lines().all(|l| l.len() <= 64));
        let from_pem = FieldKeyPair::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(from_pem.public_key_spki_der(), pair.public_key_spki_der());
        let pub_pem = pair.public_key_pem();
        assert!(pub_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let pk = FieldPublicKey::from_pem(pub_pem.as_bytes()).unwrap();
        assert_eq!(pk.spki_der(), pair.public_key_spki_der());
        let env = encrypt_value(&pk, "v1", b"true", Mode::Auto).unwrap();
        assert_eq!(open(&env, &from_pem, "v1").unwrap(), b"true");

        // Debug prints no key material.
        let dbg = format!("{pair:?} {pk:?}");
        assert_eq!(dbg, "FieldKeyPair { bits: 2048, .. } FieldPublicKey { bits: 2048, .. }");

        assert!(matches!(FieldKeyPair::generate(1024), Err(FieldError::BadPrivateKey(_))));
        assert!(matches!(FieldKeyPair::generate(4096), Err(FieldError::BadPrivateKey(_))));
        assert!(matches!(FieldKeyPair::from_pkcs8_der(b"junk"), Err(FieldError::BadPrivateKey(_))));
        assert!(matches!(
            FieldKeyPair::from_pkcs8_der(&der[..der.len() - 1]),
            Err(FieldError::BadPrivateKey(_))
        ));
        assert!(matches!(FieldKeyPair::from_pem(pub_pem.as_bytes()), Err(FieldError::BadPrivateKey(_))));
        assert!(matches!(FieldPublicKey::from_pem(pem.as_bytes()), Err(FieldError::BadPublicKey(_))));
        assert!(matches!(FieldPublicKey::from_spki_der(&der), Err(FieldError::BadPublicKey(_))));
        assert!(matches!(FieldPublicKey::from_spki_der(b""), Err(FieldError::BadPublicKey(_))));
    }

    #[test]
    fn error_messages_carry_no_secrets() {
        for e in [
            FieldError::DecryptFailed,
            FieldError::NotEncrypted { path: "card.number".into() },
            FieldError::BodyNotJson,
            FieldError::PlaintextTooLarge { len: 191, max: 190 },
        ] {
            let text = e.to_string();
            assert!(!text.contains("kge1.") && !text.contains("4111"), "{text}");
        }
        assert_eq!(FieldError::DecryptFailed.code(), "field_decrypt_failed");
        assert_eq!(FieldError::DecryptFailed.to_string(), "an encrypted field could not be decrypted");
    }

    #[test]
    fn field_paths_parse() {
        let steps = |p: &str| FieldPath::parse(p).unwrap().steps;
        let k = |s: &str| Step::Key(s.to_string());
        assert_eq!(steps("card.number"), vec![k("card"), k("number")]);
        assert_eq!(steps("items[*].pan"), vec![k("items"), Step::Each, k("pan")]);
        assert_eq!(steps("[*]"), vec![Step::Each]);
        assert_eq!(steps("[*].pan"), vec![Step::Each, k("pan")]);
        assert_eq!(steps("a[*][*].b-c_d e"), vec![k("a"), Step::Each, Step::Each, k("b-c_d e")]);
        assert_eq!(steps("tags[*]"), vec![k("tags"), Step::Each]);
        assert_eq!(steps("名前"), vec![k("名前")]);
        assert_eq!(FieldPath::parse("a.b").unwrap().to_string(), "a.b");
        assert_eq!(steps("*"), vec![k("*")]);
        for bad in
            ["", ".", "a.", ".a", "a..b", "a[0]", "a[]", "a[*", "a]", "a[*]b", "[*]a", "a.[*]", "a\n", "["]
        {
            assert!(
                matches!(FieldPath::parse(bad), Err(FieldError::InvalidPath { .. })),
                "{bad:?} {:?}",
                FieldPath::parse(bad)
            );
        }
        assert!(FieldPath::parse("a.".repeat(32).trim_end_matches('.')).is_ok());
        assert!(FieldPath::parse("a.".repeat(33).trim_end_matches('.')).is_err());
        assert!(FieldPath::parse(&"a".repeat(513)).is_err());
    }

    fn paths(list: &[&str]) -> Vec<FieldPath> {
        list.iter().map(|p| FieldPath::parse(p).unwrap()).collect()
    }

    fn enc(v: &str) -> String {
        encrypt_value(pair_2048().public_key(), "v1", v.as_bytes(), Mode::Auto).unwrap()
    }

    fn dec(body: &str, list: &[&str]) -> Result<String, FieldError> {
        decrypt_json_fields(body.as_bytes(), &paths(list), &only("v1", pair_2048()), MAX)
            .map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn json_fields_decrypt_in_place_keeping_the_rest() {
        let body = format!(
            r#"{{ "id": 12345678901234567890123, "amount": 10.50,
  "card": {{"number": "{}", "exp": "12/30"}},
  "items": [ {{"pan": "{}"}}, {{"sku": 1}}, {{"pan": "{}"}} ],
  "meta": "{}", "z": "kge1.not-configured" }}"#,
            enc(r#""4111111111111111""#),
            enc("42"),
            enc(r#"{"deep":[1,2,{"x":null}]}"#),
            enc(r#"["a", "b"]"#)
        );
        let out = dec(&body, &["card.number", "items[*].pan", "meta", "absent.path", "card.cvv"]).unwrap();
        assert_eq!(
            out,
            r#"{ "id": 12345678901234567890123, "amount": 10.50,
  "card": {"number": "4111111111111111", "exp": "12/30"},
  "items": [ {"pan": 42}, {"sku": 1}, {"pan": {"deep":[1,2,{"x":null}]}} ],
  "meta": ["a", "b"], "z": "kge1.not-configured" }"#
        );
        // Top-level arrays.
        let body = format!(r#"[{{"pan":"{}"}},{{"pan":"{}"}}]"#, enc("1"), enc("2"));
        assert_eq!(dec(&body, &["[*].pan"]).unwrap(), r#"[{"pan":1},{"pan":2}]"#);
        let body = format!(r#"["{}", "{}"]"#, enc("true"), enc("null"));
        assert_eq!(dec(&body, &["[*]"]).unwrap(), "[true, null]");
        // A path for another body shape does not apply.
        assert_eq!(dec(r#"{"pan":1}"#, &["[*].pan"]).unwrap(), r#"{"pan":1}"#);
        // A later path reaches into what an earlier one decrypted.
        let body = format!(r#"{{"card":"{}"}}"#, enc(&format!(r#"{{"number":"{}"}}"#, enc("7"))));
        assert_eq!(dec(&body, &["card", "card.number"]).unwrap(), r#"{"card":{"number":7}}"#);
        // Escaped member names are matched by their value.
        let body = format!(r#"{{"p\u0061n":"{}"}}"#, enc("5"));
        assert_eq!(dec(&body, &["pan"]).unwrap(), r#"{"p\u0061n":5}"#);
        // Paths, absent or null on the way, are skipped.
        let body = r#"{"card":null,"items":null}"#;
        assert_eq!(dec(body, &["card.number", "items[*].pan"]).unwrap(), body);
    }

    #[test]
    fn plaintext_where_an_envelope_is_expected_is_refused() {
        let not = |path: &str| Err(FieldError::NotEncrypted { path: path.to_string() });
        assert_eq!(dec(r#"{"card":{"number":"4111111111111111"}}"#, &["card.number"]), not("card.number"));
        assert_eq!(dec(r#"{"card":{"number":4111111111111111}}"#, &["card.number"]), not("card.number"));
        assert_eq!(dec(r#"{"card":{"number":null}}"#, &["card.number"]), not("card.number"));
        assert_eq!(dec(r#"{"card":{"number":"kge1"}}"#, &["card.number"]), not("card.number"));
        assert_eq!(dec(r#"{"card":"4111111111111111"}"#, &["card.number"]), not("card.number"));
        assert_eq!(dec(r#"{"items":{"pan":"x"}}"#, &["items[*].pan"]), not("items[*].pan"));
        let body = format!(r#"{{"items":[{{"pan":"{}"}},{{"pan":"4111"}}]}}"#, enc("1"));
        assert_eq!(dec(&body, &["items[*].pan"]), not("items[1].pan"));
        // A duplicated member cannot smuggle plaintext past the check.
        let body = format!(r#"{{"pan":"{}","pan":"4111111111111111"}}"#, enc("1"));
        assert_eq!(dec(&body, &["pan"]), not("pan"));
        let body = format!(r#"{{"pan":"{}","pan":"{}"}}"#, enc("1"), enc("2"));
        assert_eq!(dec(&body, &["pan"]).unwrap(), r#"{"pan":1,"pan":2}"#);
        // Every match is checked before any decryption: a broken envelope first in the body
        // still gives NotEncrypted when a later match is plaintext.
        assert_eq!(dec(r#"{"a":"kge1.o.v1.AAAA","b":1}"#, &["a"]), Err(FieldError::DecryptFailed));
        assert_eq!(dec(r#"{"a":["kge1.o.v1.AAAA",1]}"#, &["a[*]"]), not("a[1]"));
    }

    #[test]
    fn decrypted_plaintext_must_be_one_json_value() {
        for bad in ["", "abc", "\"unterminated", "1 2", "{\"a\":}", "[1,]", "01", "\u{0}"] {
            let body = format!(r#"{{"a":"{}"}}"#, enc(bad));
            assert_eq!(dec(&body, &["a"]), Err(FieldError::DecryptFailed), "{bad:?}");
        }
        let env = encrypt_value(pair_2048().public_key(), "v1", &[0xff, 0xfe], Mode::Auto).unwrap();
        assert_eq!(dec(&format!(r#"{{"a":"{env}"}}"#), &["a"]), Err(FieldError::DecryptFailed));
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        assert_eq!(dec(&format!(r#"{{"a":"{}"}}"#, enc(&deep)), &["a"]), Err(FieldError::DecryptFailed));
        let ok = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert!(dec(&format!(r#"{{"a":"{}"}}"#, enc(&ok)), &["a"]).is_ok());
        // Surrounding whitespace is fine and kept.
        assert_eq!(dec(&format!(r#"{{"a":"{}"}}"#, enc(" 1 ")), &["a"]).unwrap(), r#"{"a": 1 }"#);
    }

    #[test]
    fn bodies_must_be_json_objects_or_arrays() {
        let keys = only("v1", pair_2048());
        for bad in
            ["", "1", "\"s\"", "null", "{", "{\"a\":1}}", "{\"a\":1} x", "[1,]", "{'a':1}", "\u{feff}{}"]
        {
            assert_eq!(
                decrypt_json_fields(bad.as_bytes(), &paths(&["a"]), &keys, MAX),
                Err(FieldError::BodyNotJson),
                "{bad:?}"
            );
            assert_eq!(
                encrypt_json_fields(
                    bad.as_bytes(),
                    &paths(&["a"]),
                    pair_2048().public_key(),
                    "v1",
                    Mode::Auto
                ),
                Err(FieldError::BodyNotJson)
            );
        }
        assert_eq!(decrypt_json_fields(b"[1, {}]", &[], &keys, MAX).unwrap(), b"[1, {}]");
        assert_eq!(decrypt_json_fields(&[b'{', 0xff, b'}'], &[], &keys, MAX), Err(FieldError::BodyNotJson));
    }

    #[test]
    fn too_many_fields_are_refused_before_decrypting() {
        let body = format!("[{}]", vec!["\"kge1.o.v1.AA\""; MAX_FIELDS_PER_BODY + 1].join(","));
        assert_eq!(dec(&body, &["[*]"]), Err(FieldError::TooManyFields { max: MAX_FIELDS_PER_BODY }));
    }

    #[test]
    fn json_fields_round_trip_through_encryption() {
        let body = r#"{"card": {"number": "4111111111111111", "exp": "12/30"},
  "items": [{"pan": {"a" : [1, 2.50, "x y"]}}, {"sku": 1}, {"pan": null}],
  "n": -0.0e+10, "s": "k\"e\\y"}"#;
        let list = paths(&["card.number", "items[*].pan", "n", "s", "missing"]);
        let pk = pair_2048().public_key();
        // A path that meets a value of another type is skipped when encrypting.
        let skipped =
            encrypt_json_fields(body.as_bytes(), &paths(&["card.exp.deeper"]), pk, "v1", Mode::Auto);
        assert_eq!(skipped.unwrap(), body.as_bytes());
        let encrypted = encrypt_json_fields(body.as_bytes(), &list, pk, "v1", Mode::Auto).unwrap();
        let v: Value = serde_json::from_slice(&encrypted).unwrap();
        assert!(v["card"]["number"].as_str().unwrap().starts_with("kge1.o.v1."));
        assert_eq!(v["card"]["exp"], "12/30");
        assert!(v["items"][0]["pan"].as_str().unwrap().starts_with("kge1."));
        assert_eq!(v["items"][1], json!({"sku": 1}));
        let back = decrypt_json_fields(&encrypted, &list, &only("v1", pair_2048()), MAX).unwrap();
        // Values come back compacted; everything else is untouched.
        assert_eq!(
            String::from_utf8(back).unwrap(),
            r#"{"card": {"number": "4111111111111111", "exp": "12/30"},
  "items": [{"pan": {"a":[1,2.50,"x y"]}}, {"sku": 1}, {"pan": null}],
  "n": -0.0e+10, "s": "k\"e\\y"}"#
        );
        // Hybrid for everything.
        let encrypted = encrypt_json_fields(body.as_bytes(), &list, pk, "v1", Mode::Hybrid).unwrap();
        let v: Value = serde_json::from_slice(&encrypted).unwrap();
        assert!(v["n"].as_str().unwrap().starts_with("kge1.h.v1."));
        // Direct mode with a value that does not fit is an error, not a silent switch.
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(300));
        assert!(matches!(
            encrypt_json_fields(big.as_bytes(), &paths(&["a"]), pk, "v1", Mode::Direct),
            Err(FieldError::PlaintextTooLarge { .. })
        ));
        assert_eq!(
            encrypt_json_fields(b"{}", &paths(&["a"]), pk, "bad kid", Mode::Auto),
            Err(FieldError::InvalidKid)
        );
    }

    #[test]
    fn json_scanner_agrees_with_serde_json() {
        for text in [
            "{}",
            "[]",
            " [ ] ",
            "{\"a\":[1,-2,3.5e-3,0,-0,1E9,true,false,null,\"\\u00e9\\n\"]}",
            "[01]",
            "[1.]",
            "[.5]",
            "[-]",
            "[1e]",
            "[+1]",
            "[\"\\x\"]",
            "[\"\t\"]",
            "{\"a\" 1}",
            "{1:2}",
            "[1 2]",
            "[tru]",
            "[nulll]",
            "{\"a\":1,}",
            "[\"\\u12\"]",
            "[1]]",
            "[[[]]]",
            "\n{}\n",
        ] {
            let ours = check_body(text.as_bytes()).is_ok();
            let theirs = serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object() || v.is_array());
            assert_eq!(ours, theirs, "{text:?}");
        }
    }

    #[test]
    fn documented_test_vector_opens() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let text = std::fs::read_to_string(root.join("docs/vectors/encrypted-field.json")).unwrap();
        let doc = std::fs::read_to_string(root.join("docs/encrypted-fields.md")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let pem = v["private_key_pkcs8_pem"].as_str().unwrap();
        assert!(doc.contains(pem), "the doc lists the vector's key");
        let pair = FieldKeyPair::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(pair.bits(), 2048);
        assert_eq!(pair.public_key_pem(), v["public_key_spki_pem"].as_str().unwrap());
        let kid = v["kid"].as_str().unwrap();
        let keys = |k: &str| (k == kid).then_some(&pair);
        let cases = v["cases"].as_array().unwrap();
        assert!(cases.iter().any(|c| c["mode"] == "hybrid"));
        for case in cases {
            let env = case["envelope"].as_str().unwrap();
            assert!(doc.contains(env), "the doc lists the envelope");
            let plain = decrypt_value(env, &keys, 4096).unwrap();
            assert_eq!(plain.as_slice(), case["plaintext"].as_str().unwrap().as_bytes());
            assert!(
                env.starts_with(&format!("kge1.{}.{kid}.", if case["mode"] == "hybrid" { "h" } else { "o" }))
            );
        }
        let b = &v["body"];
        let list: Vec<FieldPath> = b["paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| FieldPath::parse(p.as_str().unwrap()).unwrap())
            .collect();
        let encrypted = b["encrypted"].as_str().unwrap();
        assert!(doc.contains(encrypted));
        let out = decrypt_json_fields(encrypted.as_bytes(), &list, &keys, 4096).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), b["decrypted"].as_str().unwrap());
    }
}
