// Snapshot load of 100k keys per backend: wall time of `load_keys` and the memory it takes.
// Ignored by default (it seeds 100k rows); run with `--ignored --nocapture`, ideally `--release`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{keyring_of, rss_bytes, Kind, TestDb};
use keygate_store::{AppRecord, Store, TenantRecord};

const KEYS: usize = 100_000;

#[tokio::test]
#[ignore = "seeds 100k keys; run explicitly with --ignored --nocapture"]
async fn load_100k_sqlite() {
    bench(Kind::Sqlite).await;
}

#[tokio::test]
#[ignore = "seeds 100k keys; run explicitly with --ignored --nocapture"]
async fn load_100k_postgres() {
    bench(Kind::Postgres).await;
}

#[tokio::test]
#[ignore = "seeds 100k keys; run explicitly with --ignored --nocapture"]
async fn load_100k_mysql() {
    bench(Kind::Mysql).await;
}

/// Seeds a fresh database, then measures in a child process: this process's heap still holds
/// the freed seeding buffers, which would hide the load's own RSS growth.
async fn bench(kind: Kind) {
    let db = TestDb::new(kind).await;
    let keyring = keyring_of(&[1]);
    let store = Store::open(&db.url, keyring.clone()).await.unwrap();
    store.create_tenant(&TenantRecord { id: "t".into(), name: "t".into() }).await.unwrap();
    store
        .create_app(&AppRecord {
            id: "bench".into(),
            tenant_id: "t".into(),
            name: "bench".into(),
            enabled: true,
        })
        .await
        .unwrap();
    store.close().await;
    let t = Instant::now();
    db.bulk_seed(&keyring, "bench", "AKBENCH", KEYS).await;
    println!("{kind:?}: seeded {KEYS} keys in {:.1} s", t.elapsed().as_secs_f64());

    for mode in ["vec", "stream"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "measure_load_in_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env("KG_BENCH_URL", &db.url)
            .env("KG_BENCH_KIND", format!("{kind:?}"))
            .env("KG_BENCH_MODE", mode)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        // The harness prefixes the first line with `test measure_load_in_child ... `.
        for line in stdout.lines().filter_map(|l| l.find("RESULT").map(|i| &l[i..])) {
            println!("{line}");
        }
        assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("RESULT"), "child printed no result:\n{stdout}");
    }
    // The real gateway on the same rows: startup load, reload after a change, RSS per 100k keys.
    if let Ok(bin) = std::env::var("KG_BENCH_GATEWAY_BIN") {
        let empty = TestDb::new(kind).await;
        let base = gateway_run(&bin, &empty.url, false, false).await;
        let full = gateway_run(&bin, &db.url, true, false).await;
        let cached = gateway_run(&bin, &db.url, true, true).await;
        println!(
            "RESULT {kind:?}: keygate serve with {KEYS} keys: startup to listening {:.0} ms; reloads after a change \
             {:?} ms ({:?} ms when also writing the sealed snapshot cache); RSS {:.1} MiB vs {:.1} MiB with no keys \
             = {:.1} MiB per 100k keys",
            full.startup_ms,
            full.reloads,
            cached.reloads,
            full.rss as f64 / 1048576.0,
            base.rss as f64 / 1048576.0,
            full.rss.saturating_sub(base.rss) as f64 / 1048576.0 * (100_000.0 / KEYS as f64),
        );
    }
}

struct GatewayRun {
    startup_ms: f64,
    reloads: Vec<u64>,
    rss: u64,
}

/// Starts `keygate serve` on `url`, waits for it to listen, measures its RSS and (if `reload`)
/// three reloads triggered by store changes; reads figures from its JSON log.
async fn gateway_run(bin: &str, url: &str, reload: bool, cache: bool) -> GatewayRun {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("kg.toml");
    let cache_line = if cache {
        format!("snapshot_cache = \"{}/cache\"\n", dir.path().display())
    } else {
        "snapshot_cache = \"\"\n".into()
    };
    std::fs::write(
        &cfg,
        format!("[server]\ninbound = \"127.0.0.1:0\"\nreload_interval_ms = 50\n{cache_line}[store]\nurl = \"{url}\"\n"),
    )
    .unwrap();
    let b64 = |v: u8| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode([v + 40; 32])
    };
    let t = Instant::now();
    let mut child = std::process::Command::new(bin)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&cfg)
        .env("KEYGATE_MASTER_KEY", format!("v1:{},v2:{}", b64(1), b64(2)))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let wait_for = |msg: &str| loop {
        let v = rx.recv_timeout(Duration::from_secs(120)).expect("keygate log");
        if v["message"].as_str().unwrap_or("").starts_with(msg) {
            return v;
        }
    };
    wait_for("inbound listening");
    let startup_ms = t.elapsed().as_secs_f64() * 1e3;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut reloads = Vec::new();
    if reload {
        let store = Store::open(url, keyring_of(&[1, 2])).await.unwrap();
        let tag = if cache { "c" } else { "n" };
        for i in 0..3 {
            store
                .create_tenant(&TenantRecord { id: format!("bump{tag}{i}"), name: "b".into() })
                .await
                .unwrap();
            let v = wait_for("snapshot reloaded");
            reloads.push(v["reload_ms"].as_u64().unwrap());
        }
        store.close().await;
    }
    let _ = child.kill();
    let _ = child.wait();
    GatewayRun { startup_ms, reloads, rss: kb * 1024 }
}

#[tokio::test]
#[ignore = "child half of the load_100k_* benches"]
async fn measure_load_in_child() {
    let Ok(url) = std::env::var("KG_BENCH_URL") else { return };
    let kind = std::env::var("KG_BENCH_KIND").unwrap();
    // Both versions: the "vec" child re-wraps everything to v2 before the "stream" child runs.
    let store = Store::open(&url, keyring_of(&[1, 2])).await.unwrap();
    // The first load is measured before anything else allocates, so freed-but-kept heap from
    // earlier work cannot hide its growth. The server's caches are warm from the seeding.
    let rss0 = rss_bytes();
    let peak = Arc::new(AtomicU64::new(rss0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let stream = std::env::var("KG_BENCH_MODE").as_deref() == Ok("stream");
    let t = Instant::now();
    // Both results stay alive until after the RSS reading.
    let (n, kept, all) = if stream {
        // What a snapshot builder keeps per key is its business; (access key, secret) stands in.
        let mut kept = Vec::with_capacity(KEYS);
        let n = store.load_keys_with(|k| kept.push((k.record.access_key, k.secret))).await.unwrap();
        (n, Some(kept), None)
    } else {
        let keys = store.load_keys().await.unwrap();
        (keys.len(), None, Some(keys))
    };
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss1 = rss_bytes();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(n, KEYS);
    let peak = peak.load(Ordering::Relaxed).max(rss1);
    drop((kept, all));
    if stream {
        println!(
            "RESULT {kind}: load_keys_with({KEYS}) keeping (access_key, secret) {first_ms:.0} ms; \
             RSS +{:.1} MiB with the kept entries alive, peak +{:.1} MiB",
            (rss1.saturating_sub(rss0)) as f64 / 1048576.0,
            (peak.saturating_sub(rss0)) as f64 / 1048576.0,
        );
        store.close().await;
        return;
    }

    let t = Instant::now();
    let meta = store.list_keys(None).await.unwrap();
    let meta_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(meta.len(), KEYS);
    drop(meta);

    let mut runs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let keys = store.load_keys().await.unwrap();
        runs.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(keys.len(), KEYS);
    }
    runs.sort_by(f64::total_cmp);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "RESULT {kind}: load_keys({KEYS}) first {first_ms:.0} ms, median of next 3 {:.0} ms \
         (list_keys, no decryption: {meta_ms:.0} ms); RSS +{:.1} MiB with the result alive \
         ({:.0} B/key), peak +{:.1} MiB during the load",
        runs[1],
        mib(rss1.saturating_sub(rss0)),
        rss1.saturating_sub(rss0) as f64 / KEYS as f64,
        mib(peak.saturating_sub(rss0)),
    );
    store.close().await;

    // Master-key rotation over the same rows: 200 transactions of 500.
    let both = Store::open(&url, keyring_of(&[1, 2])).await.unwrap();
    let t = Instant::now();
    assert_eq!(both.rewrap_all().await.unwrap(), KEYS);
    println!("RESULT {kind}: rewrap_all({KEYS}) {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    both.close().await;
}
