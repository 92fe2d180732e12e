// The writer: off the request path. Requests hand records to a bounded queue (never blocking);
// one task on its own thread batches them into multi-row inserts. The thread matters: a batch of
// ~200 rows (50 ms at 4k req/s) costs the writer ~2.5 ms of CPU, and building and encoding the
// insert does not yield; on a request worker, requests queued behind it waited. When the database fails, batches go to the spill
// file instead — and keep going there, in order, until a replay of the whole spill succeeds —
// so every record lands exactly once and in order.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::db::AuditDb;
use crate::record::AuditRecord;
use crate::spill::{Spill, SpillError};

/// What to do when the spill file is at its size limit and the database is still down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpillFullPolicy {
    /// Refuse new requests (`503 audit_unavailable`) until records can be stored again: no
    /// request goes unaudited. The default.
    Reject,
    /// Keep serving and count the records that could not be kept (`dropped`).
    Drop,
}

/// Settings of the sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub url: String,
    pub spill_dir: PathBuf,
    pub max_spill_bytes: u64,
    pub on_spill_full: SpillFullPolicy,
    /// Rows per batch, and the longest a record waits for its batch.
    pub batch_rows: usize,
    pub batch_wait: Duration,
    pub queue: usize,
    /// While the database is down, how often a replay is tried.
    pub retry_every: Duration,
}

impl SinkConfig {
    pub fn new(url: &str, spill_dir: PathBuf) -> Self {
        Self {
            url: url.to_string(),
            spill_dir,
            max_spill_bytes: 1 << 30,
            on_spill_full: SpillFullPolicy::Reject,
            batch_rows: 500,
            batch_wait: Duration::from_millis(50),
            queue: 65_536,
            retry_every: Duration::from_secs(1),
        }
    }
}

/// Counters of the sink (also exported as metrics by the binary).
#[derive(Debug, Default)]
pub struct AuditStats {
    pub written: AtomicU64,
    pub spilled: AtomicU64,
    pub replayed: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
    pub spill_bytes: AtomicU64,
    pub db_up: AtomicBool,
}

enum Msg {
    Record(Box<AuditRecord>),
    Flush(oneshot::Sender<()>),
}

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spill(#[from] SpillError),
    #[error("audit writer thread: {0}")]
    Thread(std::io::Error),
}

/// Handle to the audit writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Msg>,
    stats: Arc<AuditStats>,
    accepting: Arc<AtomicBool>,
}

impl AuditSink {
    /// Starts the writer. An unreachable database is not an error: records spill until it
    /// answers. A spill file left by an earlier run is replayed first.
    ///
    /// The writer runs on a dedicated thread with its own single-threaded runtime (database pool
    /// and timers included), so batching never occupies a request worker. The thread ends once
    /// every handle is dropped and the last batch is stored; `flush` waits for queued records.
    pub fn start(cfg: SinkConfig) -> Result<(Self, std::thread::JoinHandle<()>), StartError> {
        let spill = Spill::open(&cfg.spill_dir, cfg.max_spill_bytes)?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let stats = Arc::new(AuditStats::default());
        stats.spill_bytes.store(spill.bytes(), Ordering::Relaxed);
        let accepting = Arc::new(AtomicBool::new(true));
        let w = Writer {
            cfg,
            spill,
            db: None,
            down: true,
            last_try: None,
            stats: stats.clone(),
            accepting: accepting.clone(),
        };
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(StartError::Thread)?;
        let thread = std::thread::Builder::new()
            .name("keygate-audit".into())
            .spawn(move || rt.block_on(w.run(rx)))
            .map_err(StartError::Thread)?;
        Ok((Self { tx, stats, accepting }, thread))
    }

    /// Queues a record; never blocks. A full queue drops it (counted).
    pub fn record(&self, rec: AuditRecord) {
        if self.tx.try_send(Msg::Record(Box::new(rec))).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// False while the `reject` policy is refusing requests (spill full, database down).
    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &AuditStats {
        &self.stats
    }

    /// Records queued and not yet handled.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Waits until everything queued before this call is in the database or the spill file.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Writer {
    cfg: SinkConfig,
    spill: Spill,
    db: Option<AuditDb>,
    /// True from startup (until the first successful replay/connect) and after any failure.
    down: bool,
    last_try: Option<Instant>,
    stats: Arc<AuditStats>,
    accepting: Arc<AtomicBool>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        self.recover().await;
        let mut batch: Vec<AuditRecord> = Vec::with_capacity(self.cfg.batch_rows);
        loop {
            let mut flush: Option<oneshot::Sender<()>> = None;
            // Wait for the first record (or a periodic wake-up to retry while down).
            let first = if self.down {
                tokio::time::timeout(self.cfg.retry_every, rx.recv()).await.ok()
            } else {
                Some(rx.recv().await)
            };
            match first {
                Some(None) => {
                    self.store(std::mem::take(&mut batch)).await;
                    return; // every sender dropped
                }
                Some(Some(Msg::Record(r))) => batch.push(*r),
                Some(Some(Msg::Flush(f))) => flush = Some(f),
                None => {}
            }
            // Fill the batch for at most `batch_wait`.
            if flush.is_none() && !batch.is_empty() {
                let deadline = tokio::time::Instant::now() + self.cfg.batch_wait;
                while batch.len() < self.cfg.batch_rows {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(Msg::Record(r))) => batch.push(*r),
                        Ok(Some(Msg::Flush(f))) => {
                            flush = Some(f);
                            break;
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            if self.down {
                self.recover().await;
            }
            if !batch.is_empty() {
                self.store(std::mem::take(&mut batch)).await;
            }
            if let Some(f) = flush {
                let _ = f.send(());
            }
        }
    }

    /// Straight to the database when it is up and nothing is spilled; else to the spill file.
    async fn store(&mut self, batch: Vec<AuditRecord>) {
        if batch.is_empty() {
            return;
        }
        if !self.down {
            if let Some(db) = &self.db {
                match tokio::time::timeout(Duration::from_secs(5), db.insert(&batch)).await {
                    Ok(Ok(_)) => {
                        self.stats.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        return;
                    }
                    Ok(Err(e)) => self.failed(&e.to_string()),
                    Err(_) => self.failed("insert timed out"),
                }
            }
        }
        let n = batch.len() as u64;
        let spill = &mut self.spill;
        // File I/O with fsync, blocking: fine on the writer's own thread.
        match spill.append(&batch) {
            Ok(()) => {
                self.stats.spilled.fetch_add(n, Ordering::Relaxed);
                self.stats.spill_bytes.store(self.spill.bytes(), Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                if self.cfg.on_spill_full == SpillFullPolicy::Reject {
                    self.accepting.store(false, Ordering::Relaxed);
                }
                tracing::error!(error = %e, records = n, "audit records lost: database down and spill unavailable");
            }
        }
    }

    fn failed(&mut self, why: &str) {
        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        if !self.down {
            tracing::warn!(
                error = why,
                "audit database unreachable; spilling to {}",
                self.spill.path().display()
            );
        }
        self.down = true;
        self.stats.db_up.store(false, Ordering::Relaxed);
        self.last_try = Some(Instant::now());
    }

    /// While down: at most once per `retry_every`, (re)connect and replay the whole spill in
    /// order; on success the database is up again.
    async fn recover(&mut self) {
        if self.last_try.is_some_and(|t| t.elapsed() < self.cfg.retry_every) {
            return;
        }
        self.last_try = Some(Instant::now());
        if self.db.is_none() {
            match AuditDb::open(&self.cfg.url).await {
                Ok(db) => self.db = Some(db),
                Err(e) => {
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "audit database still unreachable");
                    return;
                }
            }
        }
        let Some(db) = &self.db else { return };
        let spill = &mut self.spill;
        let pending = match spill.read_all() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the audit spill file");
                return;
            }
        };
        for chunk in pending.records.chunks(5_000) {
            match tokio::time::timeout(Duration::from_secs(30), db.insert(chunk)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "audit replay failed; will retry");
                    return;
                }
                Err(_) => return,
            }
        }
        let n = pending.records.len() as u64;
        let spill = &mut self.spill;
        if let Err(e) = spill.clear() {
            tracing::error!(error = %e, "cannot remove the replayed audit spill file");
            return;
        }
        if n > 0 {
            tracing::info!(records = n, "audit spill replayed; database is back");
        }
        self.stats.replayed.fetch_add(n, Ordering::Relaxed);
        self.stats.written.fetch_add(n, Ordering::Relaxed);
        self.stats.spill_bytes.store(0, Ordering::Relaxed);
        self.stats.db_up.store(true, Ordering::Relaxed);
        self.accepting.store(true, Ordering::Relaxed);
        self.down = false;
    }
}
