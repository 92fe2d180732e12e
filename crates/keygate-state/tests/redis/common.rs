// Test fixtures: the shared Redis on 6379 (unique prefix per test, keys deleted afterwards) and
// private redis-server children for tests that kill, stop or flush Redis. Never touches other keys.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keygate_state::RedisState;

pub const SHARED_URL: &str = "redis://127.0.0.1:6379/0";

/// `kgtest:<tag>:<16 random hex>:` — no glob or hash-tag characters, so `SCAN MATCH prefix*`
/// matches exactly this test's keys.
pub fn unique_prefix(tag: &str) -> String {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).expect("read /dev/urandom");
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("kgtest:{tag}:{hex}:")
}

/// Panics (the test fails, it is not skipped) when the shared Redis does not answer PING.
pub fn require_shared_redis() {
    if !ping_port(6379) {
        panic!("the shared Redis on 127.0.0.1:6379 does not answer PING (start it with scripts/services up)");
    }
}

pub async fn shared(prefix: &str, timeout: Duration) -> RedisState {
    require_shared_redis();
    RedisState::connect(SHARED_URL, prefix, timeout).await.expect("connect to the shared Redis")
}

/// Deletes every key under `prefix` when dropped, also when the test panics.
pub struct Cleanup {
    url: String,
    prefix: String,
}

impl Cleanup {
    pub fn new(url: &str, prefix: &str) -> Self {
        Self { url: url.into(), prefix: prefix.into() }
    }

    pub fn keys(&self) -> Vec<String> {
        scan_prefix(&self.url, &self.prefix)
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else { return };
        let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(1)) else { return };
        for k in scan_prefix(&self.url, &self.prefix) {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&k).query(&mut con);
        }
    }
}

pub fn scan_prefix(url: &str, prefix: &str) -> Vec<String> {
    let mut con = sync_conn(url);
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)
            .expect("SCAN");
        out.extend(batch);
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

pub fn sync_conn(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("url")
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Redis server time in microseconds.
pub fn redis_time_us(url: &str) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query(&mut sync_conn(url)).expect("TIME");
    s * 1_000_000 + us
}

pub fn ping_port(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A private `redis-server` child on a free loopback port, killed on drop.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut r = Self { port, child: None };
        r.spawn();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let t0 = Instant::now();
        while !ping_port(self.port) {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "own redis-server on {} did not come up",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the process and its sockets vanish at once.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a new server on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGSTOP / SIGCONT: the server keeps its sockets open but stops answering, like a hung
    /// or overloaded Redis.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().expect("kill").success();
        assert!(ok, "kill {sig} {pid}");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        // SIGKILL also ends a SIGSTOPped server, so a test that panics while paused leaves nothing.
        self.kill();
    }
}

/// `INFO commandstats` as (command, calls).
pub fn commandstats(url: &str) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut sync_conn(url)).expect("INFO");
    info.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

pub fn calls(stats: &[(String, u64)], cmd: &str) -> u64 {
    stats.iter().find(|(n, _)| n == cmd).map_or(0, |(_, c)| *c)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `MONITOR` on a private server: every command the server executes, one line each; commands
/// run inside a Lua script are tagged `[<db> lua]`, client commands carry the client address.
pub struct Monitor {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    url: String,
}

impl Monitor {
    pub fn start(port: u16) -> Self {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect for MONITOR");
        s.write_all(b"MONITOR\r\n").expect("MONITOR");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(s);
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut r, &mut line).map(|n| n > 0).unwrap_or(false) {
                let done = line.contains("\"kg-monitor-end\"");
                sink.lock().expect("monitor lines").push(std::mem::take(&mut line));
                if done {
                    return;
                }
            }
        });
        // MONITOR answers +OK once it is active.
        let t0 = Instant::now();
        while lines.lock().expect("monitor lines").is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(2), "MONITOR did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        Self { lines, reader: Some(reader), url: format!("redis://127.0.0.1:{port}/0") }
    }

    /// Stops recording and returns the commands seen since `start` (without the end marker).
    pub fn finish(mut self) -> Vec<String> {
        let _: String =
            redis::cmd("ECHO").arg("kg-monitor-end").query(&mut sync_conn(&self.url)).expect("ECHO");
        if let Some(r) = self.reader.take() {
            r.join().expect("monitor reader");
        }
        let mut lines = std::mem::take(&mut *self.lines.lock().expect("monitor lines"));
        lines.retain(|l| l.starts_with('+') && l != "+OK\r\n" && !l.contains("\"kg-monitor-end\""));
        lines
    }
}
