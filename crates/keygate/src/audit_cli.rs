// `keygate audit search|tail|export`: the request audit log from the command line, read straight
// from the audit database named by the config (the admin API offers the same search).

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use keygate_audit::{AuditDb, AuditRecord, Query};

#[derive(Debug, Args)]
pub struct Filters {
    #[arg(long, short = 'c')]
    config: PathBuf,
    #[arg(long)]
    app: Option<String>,
    /// Access key id.
    #[arg(long)]
    key: Option<String>,
    #[arg(long)]
    ip: Option<String>,
    /// Decision code (`ok`, `signature_mismatch`, ...).
    #[arg(long)]
    code: Option<String>,
    /// Only records newer than this: `90s`, `15m`, `2h`, `7d`.
    #[arg(long)]
    since: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Matching records, newest first (table, or --json for JSON lines).
    Search {
        #[command(flatten)]
        filters: Filters,
        #[arg(long)]
        json: bool,
    },
    /// Follow new records as they are written.
    Tail {
        #[command(flatten)]
        filters: Filters,
        #[arg(long)]
        json: bool,
    },
    /// Every matching record as JSON lines, oldest first (for Loki/ELK shipping; `--limit` is
    /// ignored).
    Export {
        #[command(flatten)]
        filters: Filters,
    },
}

pub fn parse_duration(s: &str) -> Result<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("bad duration {s:?} (e.g. 90s, 15m, 2h, 7d)"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => anyhow::bail!("bad duration unit in {s:?} (s, m, h, d)"),
    };
    Ok(Duration::from_secs(secs))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn open(f: &Filters) -> Result<(AuditDb, Query)> {
    let cfg = crate::config::Config::load(&f.config)?;
    let url = cfg.audit.url.clone().unwrap_or(cfg.store.url.clone());
    let db = AuditDb::open(&url).await?;
    let from_ms =
        f.since.as_deref().map(parse_duration).transpose()?.map(|d| now_ms() - d.as_millis() as i64);
    let q = Query {
        app: f.app.clone(),
        key_id: f.key.clone(),
        client_ip: f.ip.clone(),
        code: f.code.clone(),
        from_ms,
        to_ms: None,
        before_id: None,
        limit: Some(f.limit),
    };
    Ok((db, q))
}

fn print(records: &[AuditRecord], json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for r in records {
        if json {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        } else {
            let secs = r.at_ms / 1000;
            writeln!(
                out,
                "{secs}.{:03}  {:<3} {:<22} {:<6} {:<24} {:<16} {:<15} {} {}",
                r.at_ms % 1000,
                r.status,
                r.code,
                r.method,
                r.path.chars().take(24).collect::<String>(),
                r.app.as_deref().unwrap_or("-"),
                r.client_ip,
                r.request_id,
                r.key_id.as_deref().unwrap_or("-"),
            )?;
        }
    }
    Ok(())
}

pub async fn run(cmd: &AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Search { filters, json } => {
            let (db, q) = open(filters).await?;
            print(&db.search(&q).await?, *json)?;
            db.close().await;
        }
        AuditCmd::Export { filters } => {
            let (db, mut q) = open(filters).await?;
            // Page backwards, then print oldest first.
            let mut all = Vec::new();
            q.limit = Some(10_000);
            loop {
                let page = db.search(&q).await?;
                let Some(last) = page.last() else { break };
                q.before_id = Some(last.id.clone());
                let done = page.len() < 10_000;
                all.extend(page);
                if done {
                    break;
                }
            }
            all.reverse();
            print(&all, true)?;
            db.close().await;
        }
        AuditCmd::Tail { filters, json } => {
            let (db, mut q) = open(filters).await?;
            let mut newest: Option<String> =
                db.search(&Query { limit: Some(1), ..q.clone() }).await?.first().map(|r| r.id.clone());
            q.limit = Some(1000);
            loop {
                let mut fresh: Vec<AuditRecord> = db
                    .search(&q)
                    .await?
                    .into_iter()
                    .take_while(|r| newest.as_ref().is_none_or(|n| r.id > *n))
                    .collect();
                if let Some(first) = fresh.first() {
                    newest = Some(first.id.clone());
                }
                fresh.reverse();
                print(&fresh, *json)?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Ok(())
}
