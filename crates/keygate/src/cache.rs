// The last good snapshot on local disk, so a replica restarted during a store outage still
// serves (seed 000: restart falls back to cached configuration). The file holds secrets, so it
// is sealed with the master key (AES-256-GCM under a fresh data key, like a store row) and
// written atomically (temp file + rename) with mode 0600.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use keygate_store::{
    AppRecord, KeyRecord, KeyWithSecret, Keyring, LoadedProvider, ProviderRecord, TenantObject,
};
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Binds the ciphertext to its purpose: a store row can never be passed off as a cache file.
const AAD: &[u8] = b"keygate-snapshot-cache-v1";
const MAGIC: &[u8] = b"KGSNAP1\n";

/// A cache file's contents.
pub struct SnapshotData {
    pub version: i64,
    pub apps: Vec<AppRecord>,
    pub keys: Vec<KeyWithSecret>,
    /// Outbound providers with their secrets (empty in caches written before they existed).
    pub providers: Vec<LoadedProvider>,
    /// Tenants' routes and alert rules (empty in caches written before they existed).
    pub objects: Vec<TenantObject>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    version: i64,
    written_at: i64,
    apps: Vec<AppRecord>,
    #[serde(default)]
    providers: Vec<CachedProvider>,
    #[serde(default)]
    objects: Vec<TenantObject>,
}

#[derive(Serialize, Deserialize)]
struct CachedProvider {
    record: ProviderRecord,
    /// (name, base64 value)
    secrets: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct CachedKey {
    record: KeyRecord,
    secret_b64: String,
}

/// Builds a cache file one key at a time (JSON lines: a header, then one key per line), so a
/// reload never holds every key's full record at once; sealed and written by `finish`.
pub struct CacheWriter {
    buf: Zeroizing<Vec<u8>>,
}

impl CacheWriter {
    pub fn new(
        version: i64,
        apps: &[AppRecord],
        providers: &[LoadedProvider],
        objects: &[TenantObject],
    ) -> Result<Self> {
        let written_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let b64 = base64::engine::general_purpose::STANDARD;
        let providers: Vec<CachedProvider> = providers
            .iter()
            .map(|p| CachedProvider {
                record: p.record.clone(),
                secrets: p.secrets.iter().map(|(n, v)| (n.clone(), b64.encode(v.as_slice()))).collect(),
            })
            .collect();
        let mut buf = Zeroizing::new(Vec::new());
        let header =
            Header { version, written_at, apps: apps.to_vec(), providers, objects: objects.to_vec() };
        serde_json::to_writer(&mut *buf, &header)?;
        for p in header.providers {
            for (_, v) in p.secrets {
                drop(Zeroizing::new(v));
            }
        }
        buf.push(b'\n');
        Ok(Self { buf })
    }

    pub fn push(&mut self, k: &KeyWithSecret) -> Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let line = CachedKey { record: k.record.clone(), secret_b64: b64.encode(k.secret.expose_secret()) };
        let text = Zeroizing::new(serde_json::to_vec(&line)?);
        drop(Zeroizing::new(line.secret_b64));
        self.buf.extend_from_slice(&text);
        self.buf.push(b'\n');
        Ok(())
    }

    /// Seals the buffer with the master key and replaces `path` atomically.
    pub fn finish(self, path: &Path, keyring: &Keyring) -> Result<()> {
        let (version, blob) = keyring.seal(AAD, &self.buf).context("sealing the snapshot cache")?;
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + blob.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&blob);
        let tmp = tmp_path(path);
        write_private(&tmp, &out).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(())
    }
}

/// Writes `data` sealed to `path` (atomically).
#[cfg(test)]
pub fn write(path: &Path, keyring: &Keyring, data: &SnapshotData) -> Result<()> {
    let mut w = CacheWriter::new(data.version, &data.apps, &data.providers, &data.objects)?;
    for k in &data.keys {
        w.push(k)?;
    }
    w.finish(path, keyring)
}

/// Reads a cache written by [`CacheWriter`]. Any tampering or a wrong master key fails.
pub fn read(path: &Path, keyring: &Keyring) -> Result<SnapshotData> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let rest = bytes.strip_prefix(MAGIC).context("not a keygate snapshot cache")?;
    anyhow::ensure!(rest.len() > 4, "snapshot cache is truncated");
    let (v, blob) = rest.split_at(4);
    let version = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    let plain = keyring
        .open(version, AAD, blob)
        .context("opening the snapshot cache (wrong master key or tampered file)")?;
    let mut lines = plain.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let header: Header = serde_json::from_slice(lines.next().context("empty snapshot cache")?)
        .context("snapshot cache header")?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut keys = Vec::new();
    for line in lines {
        let k: CachedKey = serde_json::from_slice(line).context("decoding the snapshot cache")?;
        let secret = Zeroizing::new(b64.decode(k.secret_b64.as_bytes()).context("snapshot cache secret")?);
        drop(Zeroizing::new(k.secret_b64));
        keys.push(KeyWithSecret {
            record: k.record,
            secret: SecretBox::new(secret.to_vec().into_boxed_slice()),
        });
    }
    let mut providers = Vec::with_capacity(header.providers.len());
    for p in header.providers {
        let mut secrets = Vec::with_capacity(p.secrets.len());
        for (n, v) in p.secrets {
            let raw = Zeroizing::new(b64.decode(v.as_bytes()).context("snapshot cache provider secret")?);
            drop(Zeroizing::new(v));
            secrets.push((n, raw));
        }
        providers.push(LoadedProvider { record: p.record, secrets });
    }
    Ok(SnapshotData { version: header.version, apps: header.apps, keys, providers, objects: header.objects })
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_store::MasterKey;

    fn ring(v: u32) -> Keyring {
        Keyring::new([MasterKey::generate(v).unwrap().0]).unwrap()
    }

    #[test]
    fn round_trips_sealed_and_refuses_tampering_or_another_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.cache");
        let k = ring(1);
        let data = SnapshotData {
            version: 42,
            apps: vec![AppRecord { id: "a".into(), tenant_id: "t".into(), name: "A".into(), enabled: true }],
            keys: vec![KeyWithSecret {
                record: KeyRecord { access_key: "AK1".into(), app_id: "a".into(), ..KeyRecord::default() },
                secret: SecretBox::new(b"very-secret-value-123".to_vec().into_boxed_slice()),
            }],
            providers: vec![LoadedProvider {
                record: ProviderRecord {
                    id: "pay".into(),
                    tenant_id: "t".into(),
                    config: serde_json::json!({"base_url": "https://pay.example.com"}),
                    created_at: 1,
                    updated_at: 2,
                    updated_by: "ops".into(),
                },
                secrets: vec![("api_key".into(), Zeroizing::new(b"provider-secret-456".to_vec()))],
            }],
            objects: vec![TenantObject {
                tenant_id: "t".into(),
                kind: keygate_store::ObjectKind::Route,
                name: "orders".into(),
                config: serde_json::json!({"path_prefix": "/t/t/orders", "upstream": "http://127.0.0.1:1"}),
                created_at: 1,
                updated_at: 2,
                updated_by: "ops".into(),
            }],
        };
        write(&path, &k, &data).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(12).any(|w| w == b"very-secret-"), "secret in clear");
        assert!(!raw.windows(3).any(|w| w == b"AK1"), "metadata in clear");
        assert!(!raw.windows(16).any(|w| w == b"provider-secret-"), "provider secret in clear");
        let back = read(&path, &k).unwrap();
        assert_eq!(back.providers.len(), 1);
        assert_eq!(back.providers[0].record.id, "pay");
        assert_eq!(back.providers[0].secrets[0].1.as_slice(), b"provider-secret-456");
        assert_eq!(back.version, 42);
        assert_eq!(back.objects, data.objects, "tenant routes and rules survive a store outage");
        assert_eq!(back.keys[0].record.access_key, "AK1");
        assert_eq!(back.keys[0].secret.expose_secret(), b"very-secret-value-123");
        assert!(read(&path, &ring(1)).is_err(), "another master key");
        let mut bad = raw.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(read(&path, &k).is_err(), "tampered");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            write(&path, &k, &data).unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
