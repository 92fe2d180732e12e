// The audit writer on real SQLite, PostgreSQL and MariaDB/MySQL, each test in its own database.
// Outages are made with a TCP relay in front of the server that the test cuts and restores, so
// the shared servers are never touched.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keygate_audit::{AuditDb, AuditRecord, AuditSink, Query, SinkConfig, Spill, SpillFullPolicy};
use sqlx::Executor as _;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Sqlite,
    Postgres,
    Mysql,
}

/// A private database, dropped at the end.
struct TestDb {
    kind: Kind,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

fn random_name() -> String {
    // The random part of a record id: 80 bits from the system RNG.
    format!("kg_audit_{}", &keygate_audit::new_id(0)[12..28])
}

impl TestDb {
    async fn new(kind: Kind) -> Self {
        let name = random_name();
        match kind {
            Kind::Sqlite => Self { kind, name, _dir: Some(tempfile::tempdir().unwrap()) },
            Kind::Postgres => {
                let p = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/test").await.unwrap();
                p.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
                p.close().await;
                Self { kind, name, _dir: None }
            }
            Kind::Mysql => {
                let p = sqlx::MySqlPool::connect("mysql://root@127.0.0.1:3306/test").await.unwrap();
                p.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
                p.close().await;
                Self { kind, name, _dir: None }
            }
        }
    }

    /// URL through `port` (a relay) or straight to the server.
    fn url_via(&self, port: Option<u16>) -> String {
        match self.kind {
            Kind::Sqlite => {
                format!("sqlite://{}", self._dir.as_ref().unwrap().path().join("audit.db").display())
            }
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{}/{}", port.unwrap_or(5432), self.name),
            Kind::Mysql => format!("mysql://root@127.0.0.1:{}/{}", port.unwrap_or(3306), self.name),
        }
    }

    fn server(&self) -> SocketAddr {
        match self.kind {
            Kind::Postgres => "127.0.0.1:5432".parse().unwrap(),
            _ => "127.0.0.1:3306".parse().unwrap(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (kind, name) = (self.kind, self.name.clone());
        if kind == Kind::Sqlite {
            return;
        }
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                match kind {
                    Kind::Postgres => {
                        if let Ok(p) = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/test").await
                        {
                            let _ = p
                                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                                .await;
                        }
                    }
                    _ => {
                        if let Ok(p) = sqlx::MySqlPool::connect("mysql://root@127.0.0.1:3306/test").await {
                            // No `WITH (FORCE)` on MySQL: end sessions still holding a transaction
                            // in the test database, or the DROP waits for its metadata lock.
                            let ids: Vec<u64> = sqlx::query_scalar(
                                "SELECT CAST(id AS UNSIGNED) FROM information_schema.processlist WHERE db = ?",
                            )
                            .bind(&name)
                            .fetch_all(&p)
                            .await
                            .unwrap_or_default();
                            for id in ids {
                                let _ = p.execute(format!("KILL {id}").as_str()).await;
                            }
                            let _ = p.execute(format!("DROP DATABASE IF EXISTS {name}").as_str()).await;
                        }
                    }
                }
            })
        })
        .join();
    }
}

/// A TCP relay to the database server that the test can cut (closing every connection and
/// refusing new ones) and restore.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (c, cs) = (cut.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                cs.lock().unwrap().push(h);
            }
        });
        Self { port, cut, conns }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn rec(i: i64, app: &str, code: &str) -> AuditRecord {
    let at_ms = 1_800_000_000_000 + i;
    AuditRecord {
        id: keygate_audit::new_id(at_ms),
        at_ms,
        request_id: format!("req-{i}"),
        direction: "inbound".into(),
        app: Some(app.into()),
        key_id: Some(format!("AK-{app}")),
        scheme: Some("kg1-hmac-sha256".into()),
        client_ip: format!("192.0.2.{}", i % 200),
        method: "POST".into(),
        route: "/api".into(),
        path: format!("/api/orders/{i}?q='; DROP TABLE audit_log;--"),
        status: if code == "ok" { 200 } else { 401 },
        code: code.into(),
        latency_us: 150 + i,
        upstream_latency_us: (code == "ok").then_some(90),
        bytes_in: 512,
        bytes_out: 64,
        request_body: (i % 100 == 0).then(|| r#"{"card":"***","n":1}"#.to_string()),
        response_body: (i % 100 == 0).then(|| "[binary body, 3 bytes]".to_string()),
        headers: (i % 100 == 0).then(|| r#"{"content-type":"application/json"}"#.to_string()),
    }
}

fn config(url: &str, dir: &std::path::Path) -> SinkConfig {
    let mut c = SinkConfig::new(url, dir.to_path_buf());
    c.batch_wait = Duration::from_millis(10);
    c.retry_every = Duration::from_millis(100);
    c
}

async fn wait_for<F: Fn() -> Fut, Fut: std::future::Future<Output = bool>>(what: &str, f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

macro_rules! backend_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::Kind::Sqlite).await })* }
        mod postgres { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::Kind::Postgres).await })* }
        mod mysql { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::Kind::Mysql).await })* }
    };
}

backend_tests!(batches_search_and_paging, crash_mid_replay_is_idempotent, retention_deletes_in_small_batches);

async fn batches_search_and_paging(kind: Kind) {
    let db = TestDb::new(kind).await;
    let spill = tempfile::tempdir().unwrap();
    let (sink, _task) = AuditSink::start(config(&db.url_via(None), spill.path())).unwrap();
    for i in 0..1200 {
        sink.record(rec(
            i,
            if i % 3 == 0 { "shop" } else { "erp" },
            if i % 10 == 0 { "signature_mismatch" } else { "ok" },
        ));
    }
    sink.flush().await;
    let adb = AuditDb::open(&db.url_via(None)).await.unwrap();
    assert_eq!(adb.count().await.unwrap(), 1200);
    assert_eq!(sink.stats().written.load(Ordering::Relaxed), 1200);

    let shop_fail = adb
        .search(&Query {
            app: Some("shop".into()),
            code: Some("signature_mismatch".into()),
            limit: Some(1000),
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(shop_fail.len(), 40, "i % 30 == 0");
    assert!(shop_fail.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(shop_fail[0], rec_with_id(&shop_fail[0]), "round trip, SQL metacharacters included");
    let by_ip = adb
        .search(&Query { client_ip: Some("192.0.2.7".into()), limit: Some(100), ..Query::default() })
        .await
        .unwrap();
    assert_eq!(by_ip.len(), 6);
    let window = adb
        .search(&Query {
            from_ms: Some(1_800_000_000_100),
            to_ms: Some(1_800_000_000_200),
            limit: Some(500),
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 100);
    // Paging with before_id walks everything exactly once.
    let mut seen = 0;
    let mut cursor = None;
    loop {
        let page = adb
            .search(&Query { before_id: cursor.clone(), limit: Some(250), ..Query::default() })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        seen += page.len();
        cursor = page.last().map(|r| r.id.clone());
    }
    assert_eq!(seen, 1200);
    adb.close().await;
}

fn rec_with_id(r: &AuditRecord) -> AuditRecord {
    let i: i64 = r.request_id.trim_start_matches("req-").parse().unwrap();
    let mut expect = rec(i, r.app.as_deref().unwrap(), &r.code);
    expect.id = r.id.clone();
    expect
}

async fn crash_mid_replay_is_idempotent(kind: Kind) {
    let db = TestDb::new(kind).await;
    let spill_dir = tempfile::tempdir().unwrap();
    // A previous run spilled 1000 records, replayed 400 of them, then crashed before clearing
    // the spill; and its last append was torn.
    let records: Vec<AuditRecord> = (0..1000).map(|i| rec(i, "shop", "ok")).collect();
    let mut spill = Spill::open(spill_dir.path(), 1 << 30).unwrap();
    spill.append(&records).unwrap();
    spill.append_raw(&[0, 0, 1, 0, 1, 2, 3]).unwrap();
    let adb = AuditDb::open(&db.url_via(None)).await.unwrap();
    adb.insert(&records[..400]).await.unwrap();
    // Restart: the sink replays everything, the database keeps each record once.
    let (sink, _task) = AuditSink::start(config(&db.url_via(None), spill_dir.path())).unwrap();
    sink.record(rec(5000, "shop", "ok"));
    sink.flush().await;
    wait_for("replay", || async { adb.count().await.unwrap() == 1001 }).await;
    assert!(!spill_dir.path().join("audit-spill.log").exists(), "spill removed after replay");
    assert_eq!(sink.stats().replayed.load(Ordering::Relaxed), 1000);
    adb.close().await;
}

async fn retention_deletes_in_small_batches(kind: Kind) {
    let db = TestDb::new(kind).await;
    let adb = AuditDb::open(&db.url_via(None)).await.unwrap();
    let old: Vec<AuditRecord> = (0..2500).map(|i| rec(i, "shop", "ok")).collect();
    let new: Vec<AuditRecord> = (1_000_000..1_000_010).map(|i| rec(i, "shop", "ok")).collect();
    adb.insert(&old).await.unwrap();
    adb.insert(&new).await.unwrap();
    assert_eq!(adb.insert(&old[..10]).await.unwrap(), 0, "duplicates ignored");
    let deleted = adb.delete_older_than(1_800_000_100_000, 1000, Duration::from_millis(1)).await.unwrap();
    assert_eq!(deleted, 2500);
    assert_eq!(adb.count().await.unwrap(), 10);
    adb.close().await;
}

/// PostgreSQL and MySQL: the database goes away mid-stream and comes back; every record lands
/// exactly once, the ones made during the outage via the spill file.
async fn outage(kind: Kind) {
    let db = TestDb::new(kind).await;
    let relay = Relay::start(db.server()).await;
    let spill_dir = tempfile::tempdir().unwrap();
    let url = db.url_via(Some(relay.port));
    let (sink, _task) = AuditSink::start(config(&url, spill_dir.path())).unwrap();
    for i in 0..200 {
        sink.record(rec(i, "shop", "ok"));
    }
    sink.flush().await;
    let direct = AuditDb::open(&db.url_via(None)).await.unwrap();
    assert_eq!(direct.count().await.unwrap(), 200);

    relay.cut();
    for i in 200..700 {
        sink.record(rec(i, "shop", "ok"));
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    sink.flush().await;
    assert!(sink.stats().spilled.load(Ordering::Relaxed) > 0, "records went to the spill");
    assert!(sink.stats().spill_bytes.load(Ordering::Relaxed) > 0);
    assert!(direct.count().await.unwrap() < 700);
    assert!(sink.accepting(), "the spill has room: requests keep flowing");

    relay.restore();
    for i in 700..800 {
        sink.record(rec(i, "shop", "ok"));
    }
    sink.flush().await;
    wait_for("replay after the outage", || async { direct.count().await.unwrap() == 800 }).await;
    sink.flush().await;
    assert_eq!(direct.count().await.unwrap(), 800, "exactly once");
    let all = direct.search(&Query { limit: Some(10_000), ..Query::default() }).await.unwrap();
    let mut ids: Vec<&str> = all.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 800);
    assert_eq!(sink.stats().dropped.load(Ordering::Relaxed), 0);
    direct.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_spills_and_replays_exactly_once() {
    outage(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_outage_spills_and_replays_exactly_once() {
    outage(Kind::Mysql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_policy_refuses_while_the_spill_is_full_and_recovers() {
    let db = TestDb::new(Kind::Postgres).await;
    let relay = Relay::start(db.server()).await;
    let spill_dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&db.url_via(Some(relay.port)), spill_dir.path());
    cfg.max_spill_bytes = 4096;
    cfg.on_spill_full = SpillFullPolicy::Reject;
    relay.cut();
    let (sink, _task) = AuditSink::start(cfg).unwrap();
    for i in 0..100 {
        sink.record(rec(i, "shop", "ok"));
    }
    sink.flush().await;
    assert!(!sink.accepting(), "spill full while the database is down: refuse");
    assert!(sink.stats().dropped.load(Ordering::Relaxed) > 0);
    relay.restore();
    wait_for("recovery", || async { sink.accepting() }).await;
    let direct = AuditDb::open(&db.url_via(None)).await.unwrap();
    assert_eq!(
        direct.count().await.unwrap() as u64 + sink.stats().dropped.load(Ordering::Relaxed),
        100,
        "every record is either stored or counted as dropped"
    );
    direct.close().await;
}
