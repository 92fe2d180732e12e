// The local spill file: where records go while the audit database is unreachable, replayed in
// order when it returns. Append-only frames `[len: u32 BE][crc32: u32 BE][JSON record]`, fsynced
// per batch. A crash mid-append leaves a torn last frame, which `read_all` detects (short or
// bad CRC) and truncates: at most the record being written is lost. Replay inserts are
// idempotent (unique record id), so a crash mid-replay only replays again.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::record::AuditRecord;

/// Largest frame accepted when reading (a record is far smaller; anything bigger is corruption).
const MAX_FRAME: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("spill file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("spill is full ({bytes} bytes, limit {limit})")]
    Full { bytes: u64, limit: u64 },
}

/// The spill file of one process.
#[derive(Debug)]
pub struct Spill {
    path: PathBuf,
    limit: u64,
    file: Option<File>,
    bytes: u64,
}

/// What reading a spill file found.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub records: Vec<AuditRecord>,
    /// Bytes of a torn or corrupt tail that were cut off.
    pub truncated_bytes: u64,
}

impl Spill {
    /// Opens (or prepares to create) `dir/audit-spill.log`, capped at `limit` bytes.
    pub fn open(dir: &Path, limit: u64) -> Result<Self, SpillError> {
        let path = dir.join("audit-spill.log");
        std::fs::create_dir_all(dir).map_err(|source| SpillError::Io { path: dir.to_path_buf(), source })?;
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Ok(Self { path, limit, file: None, bytes })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes currently spilled.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    fn io(&self, source: std::io::Error) -> SpillError {
        SpillError::Io { path: self.path.clone(), source }
    }

    /// Appends a batch and fsyncs once. Refuses (writing nothing) past the size limit.
    pub fn append(&mut self, batch: &[AuditRecord]) -> Result<(), SpillError> {
        let mut buf = Vec::with_capacity(batch.len() * 300);
        for r in batch {
            let json = serde_json::to_vec(r).map_err(|e| self.io(std::io::Error::other(e)))?;
            buf.extend_from_slice(&(json.len() as u32).to_be_bytes());
            buf.extend_from_slice(&crc32(&json).to_be_bytes());
            buf.extend_from_slice(&json);
        }
        if self.bytes + buf.len() as u64 > self.limit {
            return Err(SpillError::Full { bytes: self.bytes, limit: self.limit });
        }
        if self.file.is_none() {
            let f = OpenOptions::new().create(true).append(true).open(&self.path).map_err(|e| self.io(e))?;
            self.file = Some(f);
        }
        let Some(f) = self.file.as_mut() else { return Ok(()) };
        let written = f.write_all(&buf).and_then(|()| f.sync_data());
        if let Err(e) = written {
            return Err(SpillError::Io { path: self.path.clone(), source: e });
        }
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Every intact record, in order. A torn or corrupt tail is cut off the file.
    pub fn read_all(&mut self) -> Result<ReadOutcome, SpillError> {
        self.file = None;
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReadOutcome::default()),
            Err(e) => return Err(self.io(e)),
        };
        let mut data = Vec::new();
        f.read_to_end(&mut data).map_err(|e| self.io(e))?;
        let mut out = ReadOutcome::default();
        let mut pos = 0usize;
        while pos < data.len() {
            let Some(head) = data.get(pos..pos + 8) else { break };
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
            if len > MAX_FRAME {
                break;
            }
            let Some(body) = data.get(pos + 8..pos + 8 + len as usize) else { break };
            if crc32(body) != crc {
                break;
            }
            match serde_json::from_slice::<AuditRecord>(body) {
                Ok(r) => out.records.push(r),
                Err(_) => break,
            }
            pos += 8 + len as usize;
        }
        if pos < data.len() {
            out.truncated_bytes = (data.len() - pos) as u64;
            tracing::warn!(path = %self.path.display(), bytes = out.truncated_bytes, "audit spill: cut a torn or corrupt tail");
            let f = OpenOptions::new().write(true).open(&self.path).map_err(|e| self.io(e))?;
            f.set_len(pos as u64).map_err(|e| self.io(e))?;
            f.sync_all().map_err(|e| self.io(e))?;
        }
        self.bytes = pos as u64;
        Ok(out)
    }

    /// Removes the file after a complete replay.
    pub fn clear(&mut self) -> Result<(), SpillError> {
        self.file = None;
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io(e)),
        }
        self.bytes = 0;
        Ok(())
    }

    /// For tests of crash recovery: appends raw bytes as a crash would leave them.
    #[doc(hidden)]
    pub fn append_raw(&mut self, bytes: &[u8]) -> Result<(), SpillError> {
        self.file = None;
        let mut f = OpenOptions::new().create(true).append(true).open(&self.path).map_err(|e| self.io(e))?;
        f.seek(SeekFrom::End(0)).map_err(|e| self.io(e))?;
        f.write_all(bytes).map_err(|e| self.io(e))?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }
}

/// CRC-32 (IEEE 802.3), bitwise table-free: a spill is written once per outage, not hot.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn rec(i: i64) -> AuditRecord {
        AuditRecord {
            id: crate::record::new_id(1_700_000_000_000 + i),
            at_ms: 1_700_000_000_000 + i,
            request_id: format!("req-{i}"),
            direction: "inbound".into(),
            app: Some("shop".into()),
            key_id: Some("AK1".into()),
            scheme: Some("kg1-hmac-sha256".into()),
            client_ip: "192.0.2.1".into(),
            method: "GET".into(),
            route: "/api".into(),
            path: format!("/api/{i}"),
            status: 200,
            code: "ok".into(),
            latency_us: 120,
            upstream_latency_us: Some(80),
            bytes_in: 0,
            bytes_out: 33,
            request_body: None,
            response_body: None,
            headers: None,
        }
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trip_then_a_torn_tail_is_cut_and_only_it_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spill::open(dir.path(), 1 << 20).unwrap();
        s.append(&[rec(1), rec(2)]).unwrap();
        s.append(&[rec(3)]).unwrap();
        // A crash in the middle of writing record 4: its header and half its body.
        let json = serde_json::to_vec(&rec(4)).unwrap();
        let mut torn = (json.len() as u32).to_be_bytes().to_vec();
        torn.extend_from_slice(&crc32(&json).to_be_bytes());
        torn.extend_from_slice(&json[..json.len() / 2]);
        s.append_raw(&torn).unwrap();
        let mut reopened = Spill::open(dir.path(), 1 << 20).unwrap();
        let out = reopened.read_all().unwrap();
        assert_eq!(
            out.records.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(),
            ["req-1", "req-2", "req-3"]
        );
        assert_eq!(out.truncated_bytes, torn.len() as u64);
        // The file was repaired: appending continues after record 3.
        reopened.append(&[rec(5)]).unwrap();
        let again = Spill::open(dir.path(), 1 << 20).unwrap().read_all().unwrap();
        assert_eq!(again.records.len(), 4);
        assert_eq!(again.truncated_bytes, 0);
    }

    #[test]
    fn a_flipped_bit_stops_the_read_at_the_bad_frame() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spill::open(dir.path(), 1 << 20).unwrap();
        s.append(&[rec(1), rec(2)]).unwrap();
        let path = s.path().to_path_buf();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let out = Spill::open(dir.path(), 1 << 20).unwrap().read_all().unwrap();
        assert_eq!(out.records.len(), 1);
        assert!(out.truncated_bytes > 0);
    }

    #[test]
    fn the_size_limit_refuses_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spill::open(dir.path(), 600).unwrap();
        s.append(&[rec(1)]).unwrap();
        assert!(matches!(s.append(&[rec(2), rec(3)]), Err(SpillError::Full { .. })));
        assert_eq!(Spill::open(dir.path(), 600).unwrap().read_all().unwrap().records.len(), 1);
        s.clear().unwrap();
        assert!(s.is_empty() && !s.path().exists());
    }

    /// Any file content: read_all never panics, returns only intact frames, and leaves a file
    /// that reads back the same (deterministic fuzz over 2,000 random files and mutations).
    #[test]
    fn arbitrary_files_never_panic_and_repair_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let mut good = Vec::new();
        {
            let mut s = Spill::open(dir.path(), 1 << 20).unwrap();
            s.append(&[rec(1), rec(2), rec(3)]).unwrap();
            good = std::fs::read(s.path()).unwrap_or(good);
        }
        let mut x: u64 = 0xD1B5_4A32_D192_ED03;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..2_000 {
            let mut bytes = if round % 2 == 0 {
                (0..(next() % 64)).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                let mut b = good.clone();
                let i = (next() as usize) % b.len();
                b[i] ^= (next() as u8) | 1;
                b.truncate(b.len() - (next() as usize % 16).min(b.len()));
                b
            };
            if round % 7 == 0 {
                bytes.extend_from_slice(&[0xff; 8]); // an absurd length header
            }
            let path = dir.path().join("audit-spill.log");
            std::fs::write(&path, &bytes).unwrap();
            let mut s = Spill::open(dir.path(), 1 << 20).unwrap();
            let first = s.read_all().unwrap();
            assert!(first.records.len() <= 3);
            let again = Spill::open(dir.path(), 1 << 20).unwrap().read_all().unwrap();
            assert_eq!(again.records.len(), first.records.len());
            assert_eq!(again.truncated_bytes, 0, "the first read repaired the file");
        }
    }
}
