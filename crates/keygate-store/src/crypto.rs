// Envelope encryption of secrets at rest: a fresh data key per secret, wrapped by a versioned
// master key, both AES-256-GCM. Plaintext leaves this module only inside zeroizing buffers.

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::StoreError;

const FORMAT_V1: u8 = 1;
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
// version byte | nonce | wrapped data key + tag | nonce | ciphertext + tag
const HEADER_LEN: usize = 1 + NONCE_LEN + KEY_LEN + TAG_LEN + NONCE_LEN;

/// One master key. Only its version is ever printed.
pub struct MasterKey {
    version: u32,
    key: LessSafeKey,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("version", &self.version).finish_non_exhaustive()
    }
}

impl MasterKey {
    /// Builds a master key from 32 raw bytes.
    pub fn from_bytes(version: u32, bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() != KEY_LEN {
            return Err(StoreError::MasterKey(format!(
                "master key must be {KEY_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        let key =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| StoreError::MasterKey("invalid key".into()))?;
        Ok(Self { version, key: LessSafeKey::new(key) })
    }

    /// Parses the text form used in `KEYGATE_MASTER_KEY` and key files: `[v<N>:]<base64 of 32 bytes>`
    /// (standard or URL-safe alphabet, padding optional). Without a prefix the version is 1.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let text = text.trim();
        let (version, b64) = match text.split_once(':') {
            Some((v, rest)) if v.starts_with('v') => {
                let version = v[1..]
                    .parse::<u32>()
                    .map_err(|_| StoreError::MasterKey("version prefix must look like v1:".into()))?;
                (version, rest)
            }
            _ => (1, text),
        };
        let b64 = b64.trim_end_matches('=');
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(b64)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64))
                .map_err(|_| StoreError::MasterKey("master key is not valid base64".into()))?,
        );
        Self::from_bytes(version, &bytes)
    }

    /// A new random key, returned with its text form (for `serve --demo` and `master-key generate`).
    pub fn generate(version: u32) -> Result<(Self, Zeroizing<String>), StoreError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        random(&mut bytes[..])?;
        let text = Zeroizing::new(format!(
            "v{version}:{}",
            base64::engine::general_purpose::STANDARD.encode(&bytes[..])
        ));
        Ok((Self::from_bytes(version, &bytes[..])?, text))
    }

    /// The key's version, stored beside each ciphertext it wraps.
    pub fn version(&self) -> u32 {
        self.version
    }
}

/// All master keys this process can unwrap with; new secrets are sealed with the newest.
#[derive(Debug)]
pub struct Keyring {
    keys: BTreeMap<u32, MasterKey>,
}

impl Keyring {
    /// A keyring with one or more master keys (the highest version seals).
    pub fn new(keys: impl IntoIterator<Item = MasterKey>) -> Result<Self, StoreError> {
        let keys: BTreeMap<u32, MasterKey> = keys.into_iter().map(|k| (k.version, k)).collect();
        if keys.is_empty() {
            return Err(StoreError::MasterKey("no master key configured".into()));
        }
        Ok(Self { keys })
    }

    /// Version that [`Keyring::seal`] uses.
    pub fn current_version(&self) -> u32 {
        self.keys.keys().next_back().copied().unwrap_or(0)
    }

    /// Encrypts `plaintext` under a fresh data key. `aad` binds the ciphertext to its row, so a
    /// ciphertext copied onto another key's row fails to open.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<(u32, Vec<u8>), StoreError> {
        let (version, master) =
            self.keys.iter().next_back().ok_or_else(|| StoreError::MasterKey("empty keyring".into()))?;
        let mut dek = Zeroizing::new([0u8; KEY_LEN]);
        random(&mut dek[..])?;
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.push(FORMAT_V1);

        let wrap_nonce = random_nonce()?;
        out.extend_from_slice(&wrap_nonce);
        // Sized for the tag up front so sealing never reallocates (a reallocation would leave a
        // plaintext copy of the data key in freed memory).
        let mut wrapped = Vec::with_capacity(KEY_LEN + TAG_LEN);
        wrapped.extend_from_slice(&dek[..]);
        master
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(wrap_nonce),
                Aad::from(wrap_aad(aad)),
                &mut wrapped,
            )
            .map_err(|_| StoreError::Crypto)?;
        out.extend_from_slice(&wrapped);

        let data_key =
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &dek[..]).map_err(|_| StoreError::Crypto)?);
        let data_nonce = random_nonce()?;
        out.extend_from_slice(&data_nonce);
        let mut body = Vec::with_capacity(plaintext.len() + TAG_LEN);
        body.extend_from_slice(plaintext);
        data_key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(data_nonce), Aad::from(aad), &mut body)
            .map_err(|_| StoreError::Crypto)?;
        out.extend_from_slice(&body);
        Ok((*version, out))
    }

    /// Decrypts a blob sealed under master key `version` with the same `aad`.
    pub fn open(&self, version: u32, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let master = self.keys.get(&version).ok_or(StoreError::UnknownMasterKeyVersion(version))?;
        if blob.len() < HEADER_LEN + TAG_LEN || blob[0] != FORMAT_V1 {
            return Err(StoreError::Crypto);
        }
        let mut pos = 1;
        let wrap_nonce = nonce_at(blob, pos)?;
        pos += NONCE_LEN;
        let mut wrapped = Zeroizing::new(blob[pos..pos + KEY_LEN + TAG_LEN].to_vec());
        pos += KEY_LEN + TAG_LEN;
        let dek = master
            .key
            .open_in_place(wrap_nonce, Aad::from(wrap_aad(aad)), &mut wrapped[..])
            .map_err(|_| StoreError::Crypto)?;
        let data_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, dek).map_err(|_| StoreError::Crypto)?);
        let data_nonce = nonce_at(blob, pos)?;
        pos += NONCE_LEN;
        let mut body = Zeroizing::new(blob[pos..].to_vec());
        let plain_len = data_key
            .open_in_place(data_nonce, Aad::from(aad), &mut body[..])
            .map_err(|_| StoreError::Crypto)?
            .len();
        body.truncate(plain_len);
        Ok(body)
    }

    /// Re-wraps a blob's data key under the current master key (what `master-key rotate` does per
    /// row). Only the 32-byte data key is unwrapped, into a zeroizing buffer, and re-sealed at
    /// once; the secret's own ciphertext is copied unchanged and never decrypted.
    pub fn rewrap(&self, version: u32, aad: &[u8], blob: &[u8]) -> Result<(u32, Vec<u8>), StoreError> {
        let old = self.keys.get(&version).ok_or(StoreError::UnknownMasterKeyVersion(version))?;
        let (new_version, new) =
            self.keys.iter().next_back().ok_or_else(|| StoreError::MasterKey("empty keyring".into()))?;
        if blob.len() < HEADER_LEN + TAG_LEN || blob[0] != FORMAT_V1 {
            return Err(StoreError::Crypto);
        }
        let wrapped_at = 1 + NONCE_LEN;
        let data_at = wrapped_at + KEY_LEN + TAG_LEN;
        let mut dek = Zeroizing::new(blob[wrapped_at..data_at].to_vec());
        let dek_len = old
            .key
            .open_in_place(nonce_at(blob, 1)?, Aad::from(wrap_aad(aad)), &mut dek[..])
            .map_err(|_| StoreError::Crypto)?
            .len();
        dek.truncate(dek_len);

        let wrap_nonce = random_nonce()?;
        let mut out = Vec::with_capacity(blob.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&wrap_nonce);
        let mut rewrapped = Vec::with_capacity(KEY_LEN + TAG_LEN);
        rewrapped.extend_from_slice(&dek[..]);
        new.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(wrap_nonce),
                Aad::from(wrap_aad(aad)),
                &mut rewrapped,
            )
            .map_err(|_| StoreError::Crypto)?;
        out.extend_from_slice(&rewrapped);
        out.extend_from_slice(&blob[data_at..]);
        Ok((*new_version, out))
    }
}

fn wrap_aad(aad: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(aad.len() + 4);
    v.extend_from_slice(b"dek:");
    v.extend_from_slice(aad);
    v
}

fn nonce_at(blob: &[u8], pos: usize) -> Result<Nonce, StoreError> {
    let bytes: [u8; NONCE_LEN] =
        blob.get(pos..pos + NONCE_LEN).and_then(|s| s.try_into().ok()).ok_or(StoreError::Crypto)?;
    Ok(Nonce::assume_unique_for_key(bytes))
}

fn random_nonce() -> Result<[u8; NONCE_LEN], StoreError> {
    let mut n = [0u8; NONCE_LEN];
    random(&mut n)?;
    Ok(n)
}

/// Fills `buf` from the system CSPRNG.
pub fn random(buf: &mut [u8]) -> Result<(), StoreError> {
    SystemRandom::new().fill(buf).map_err(|_| StoreError::Crypto)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::new([MasterKey::from_bytes(1, &[7u8; 32]).unwrap()]).unwrap()
    }

    #[test]
    fn seal_open_round_trip() {
        let r = ring();
        let (v, blob) = r.seal(b"AK1", b"super secret").unwrap();
        assert_eq!(v, 1);
        assert_eq!(&r.open(v, b"AK1", &blob).unwrap()[..], b"super secret");
        // The plaintext does not appear in the blob.
        assert!(!blob.windows(12).any(|w| w == b"super secret"));
    }

    #[test]
    fn wrong_aad_or_tampered_blob_fails() {
        let r = ring();
        let (v, mut blob) = r.seal(b"AK1", b"s").unwrap();
        assert!(matches!(r.open(v, b"AK2", &blob), Err(StoreError::Crypto)));
        let last = blob.len() - 1;
        blob[last] ^= 1;
        assert!(matches!(r.open(v, b"AK1", &blob), Err(StoreError::Crypto)));
        assert!(matches!(r.open(v, b"AK1", &blob[..10]), Err(StoreError::Crypto)));
        assert!(matches!(r.open(9, b"AK1", &blob), Err(StoreError::UnknownMasterKeyVersion(9))));
    }

    #[test]
    fn rewrap_moves_to_newest_master_key() {
        let old = Keyring::new([MasterKey::from_bytes(1, &[1u8; 32]).unwrap()]).unwrap();
        let (v1, blob) = old.seal(b"AK", b"s3cret").unwrap();
        let both = Keyring::new([
            MasterKey::from_bytes(1, &[1u8; 32]).unwrap(),
            MasterKey::from_bytes(2, &[2u8; 32]).unwrap(),
        ])
        .unwrap();
        let (v2, blob2) = both.rewrap(v1, b"AK", &blob).unwrap();
        assert_eq!(v2, 2);
        let new_only = Keyring::new([MasterKey::from_bytes(2, &[2u8; 32]).unwrap()]).unwrap();
        assert_eq!(&new_only.open(v2, b"AK", &blob2).unwrap()[..], b"s3cret");
        // Only the wrapped data key changed; the secret's ciphertext was carried over untouched.
        let data_at = 1 + NONCE_LEN + KEY_LEN + TAG_LEN;
        assert_eq!(blob[data_at..], blob2[data_at..]);
        assert_ne!(blob[..data_at], blob2[..data_at]);
        // The data key stays bound to its row.
        assert!(matches!(both.rewrap(v1, b"OTHER", &blob), Err(StoreError::Crypto)));
    }

    #[test]
    fn parse_text_forms() {
        let (k, text) = MasterKey::generate(3).unwrap();
        assert_eq!(k.version(), 3);
        assert_eq!(MasterKey::parse(&text).unwrap().version(), 3);
        let plain = text.split_once(':').unwrap().1;
        assert_eq!(MasterKey::parse(plain).unwrap().version(), 1);
        assert!(MasterKey::parse("v1:c2hvcnQ=").is_err());
        assert!(MasterKey::parse("not base64 !!").is_err());
        assert!(!format!("{k:?}").contains(plain));
    }
}
