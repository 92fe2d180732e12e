// Sustained insert throughput of the writer per backend (issue 8: ≥ 20k rows/s on PostgreSQL).
// Ignored by default; run: cargo test --release -p keygate-audit --test throughput -- --ignored --nocapture
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use keygate_audit::{AuditDb, AuditRecord, AuditSink, SinkConfig};
use sqlx::Executor as _;

const N: i64 = 200_000;

fn rec(i: i64) -> AuditRecord {
    let at_ms = 1_800_000_000_000 + i;
    AuditRecord {
        id: keygate_audit::new_id(at_ms),
        at_ms,
        request_id: format!("{i:016x}"),
        direction: "inbound".into(),
        app: Some(format!("app-{}", i % 50)),
        key_id: Some(format!("AK{:018}", i % 500)),
        scheme: Some("kg1-hmac-sha256".into()),
        client_ip: format!("10.{}.{}.{}", i % 250, (i / 250) % 250, i % 7),
        method: "POST".into(),
        route: "/api".into(),
        path: format!("/api/v1/orders/{i}"),
        status: 200,
        code: "ok".into(),
        latency_us: 420,
        upstream_latency_us: Some(300),
        bytes_in: 1024,
        bytes_out: 256,
        request_body: None,
        response_body: None,
        headers: None,
    }
}

async fn run(name: &str, admin: Option<(&str, &str)>) {
    let db_name = format!("kg_tp_{}", &keygate_audit::new_id(0)[12..24]);
    let dir = tempfile::tempdir().unwrap();
    let url = match admin {
        None => format!("sqlite://{}", dir.path().join("a.db").display()),
        Some((admin_url, base)) => {
            if admin_url.starts_with("postgres") {
                let p = sqlx::PgPool::connect(admin_url).await.unwrap();
                p.execute(format!("CREATE DATABASE {db_name}").as_str()).await.unwrap();
                p.close().await;
            } else {
                let p = sqlx::MySqlPool::connect(admin_url).await.unwrap();
                p.execute(format!("CREATE DATABASE {db_name}").as_str()).await.unwrap();
                p.close().await;
            }
            format!("{base}/{db_name}")
        }
    };
    let (sink, _task) = AuditSink::start(SinkConfig::new(&url, dir.path().join("spill"))).unwrap();
    let db = AuditDb::open(&url).await.unwrap();
    let records: Vec<AuditRecord> = (0..N).map(rec).collect();
    let t = Instant::now();
    for r in records {
        sink.record(r);
        if sink.queue_depth() > 60_000 {
            tokio::time::sleep(Duration::from_millis(1)).await; // producer faster than any DB
        }
    }
    sink.flush().await;
    let secs = t.elapsed().as_secs_f64();
    let st = sink.stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        db.count().await.unwrap(),
        N,
        "written {} spilled {} errors {}",
        load(&st.written),
        load(&st.spilled),
        load(&st.write_errors)
    );
    assert_eq!(sink.stats().dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
    println!("RESULT {name}: {N} records through the writer in {secs:.2} s = {:.0} rows/s", N as f64 / secs);
    db.close().await;
    if let Some((admin_url, _)) = admin {
        if admin_url.starts_with("postgres") {
            let p = sqlx::PgPool::connect(admin_url).await.unwrap();
            p.execute(format!("DROP DATABASE {db_name} WITH (FORCE)").as_str()).await.unwrap();
        } else {
            let p = sqlx::MySqlPool::connect(admin_url).await.unwrap();
            p.execute(format!("DROP DATABASE {db_name}").as_str()).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput figure; run explicitly"]
async fn throughput_all_backends() {
    run("sqlite", None).await;
    run("postgres", Some(("postgres://postgres@127.0.0.1:5432/test", "postgres://postgres@127.0.0.1:5432")))
        .await;
    run("mysql", Some(("mysql://root@127.0.0.1:3306/test", "mysql://root@127.0.0.1:3306"))).await;
}
