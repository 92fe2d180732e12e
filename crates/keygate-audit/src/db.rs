// The audit table on SQLite, PostgreSQL or MySQL: created if missing (plain DDL, so it can share
// the store's database without touching the store's migration history), batched multi-row
// inserts that ignore ids already present (replays are idempotent), bounded retention deletes,
// and search.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::{MySql, Postgres, QueryBuilder, Sqlite};

use crate::record::AuditRecord;

/// Rows per INSERT statement (well under every backend's bind-parameter limit).
pub const INSERT_CHUNK: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("audit database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("unsupported audit database url {0}")]
    Url(String),
    #[error("audit database: {0}")]
    Sql(#[from] sqlx::Error),
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
}

/// Handle to the audit table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditDb {
    pool: Pool,
}

/// Filters of a search; all optional. Results are newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Query {
    pub app: Option<String>,
    pub key_id: Option<String>,
    pub client_ip: Option<String>,
    pub code: Option<String>,
    /// Unix ms, inclusive.
    pub from_ms: Option<i64>,
    /// Unix ms, exclusive.
    pub to_ms: Option<i64>,
    /// Only records with an id below this (the last id of the previous page).
    pub before_id: Option<String>,
    /// Default 100, at most 10,000.
    pub limit: Option<u32>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    at_ms: i64,
    request_id: String,
    direction: String,
    app: Option<String>,
    key_id: Option<String>,
    scheme: Option<String>,
    client_ip: String,
    method: String,
    route: String,
    path: String,
    status: i32,
    code: String,
    latency_us: i64,
    upstream_latency_us: Option<i64>,
    bytes_in: i64,
    bytes_out: i64,
    request_body: Option<String>,
    response_body: Option<String>,
    headers: Option<String>,
}

impl From<Row> for AuditRecord {
    fn from(r: Row) -> Self {
        Self {
            id: r.id,
            at_ms: r.at_ms,
            request_id: r.request_id,
            direction: r.direction,
            app: r.app,
            key_id: r.key_id,
            scheme: r.scheme,
            client_ip: r.client_ip,
            method: r.method,
            route: r.route,
            path: r.path,
            status: u16::try_from(r.status).unwrap_or(0),
            code: r.code,
            latency_us: r.latency_us,
            upstream_latency_us: r.upstream_latency_us,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            request_body: r.request_body,
            response_body: r.response_body,
            headers: r.headers,
        }
    }
}

const COLUMNS: &str =
    "id, at_ms, request_id, direction, app, key_id, scheme, client_ip, method, route, path, \
                       status, code, latency_us, upstream_latency_us, bytes_in, bytes_out, request_body, \
                       response_body, headers";

fn ddl(kind: &str) -> Vec<String> {
    const COLS: &str = "id CHAR(32) NOT NULL PRIMARY KEY, at_ms BIGINT NOT NULL, request_id {text} NOT NULL, \
        direction VARCHAR(16) NOT NULL, app {text} NULL, key_id {text} NULL, scheme VARCHAR(64) NULL, \
        client_ip VARCHAR(64) NOT NULL, method VARCHAR(16) NOT NULL, route {text} NOT NULL, path TEXT NOT NULL, \
        status INT NOT NULL, code VARCHAR(64) NOT NULL, latency_us BIGINT NOT NULL, upstream_latency_us BIGINT NULL, \
        bytes_in BIGINT NOT NULL, bytes_out BIGINT NOT NULL, request_body TEXT NULL, response_body TEXT NULL, \
        headers TEXT NULL";
    const INDEXES: [(&str, &str); 5] = [
        ("audit_log_at", "at_ms"),
        ("audit_log_app", "app, at_ms"),
        ("audit_log_key", "key_id, at_ms"),
        ("audit_log_ip", "client_ip, at_ms"),
        ("audit_log_code", "code, at_ms"),
    ];
    if kind == "mysql" {
        // One idempotent statement (indexes inline): two replicas starting at once cannot race.
        let keys: String = INDEXES.iter().map(|(n, c)| format!(", KEY {n} ({c})")).collect();
        return vec![format!(
            "CREATE TABLE IF NOT EXISTS audit_log ({}{keys}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
            COLS.replace("{text}", "VARCHAR(255)")
        )];
    }
    let mut v = vec![format!("CREATE TABLE IF NOT EXISTS audit_log ({})", COLS.replace("{text}", "TEXT"))];
    v.extend(INDEXES.iter().map(|(n, c)| format!("CREATE INDEX IF NOT EXISTS {n} ON audit_log ({c})")));
    v
}

macro_rules! push_filters {
    ($qb:expr, $q:expr) => {{
        $qb.push(" WHERE 1=1");
        if let Some(v) = &$q.app {
            $qb.push(" AND app = ").push_bind(v.clone());
        }
        if let Some(v) = &$q.key_id {
            $qb.push(" AND key_id = ").push_bind(v.clone());
        }
        if let Some(v) = &$q.client_ip {
            $qb.push(" AND client_ip = ").push_bind(v.clone());
        }
        if let Some(v) = &$q.code {
            $qb.push(" AND code = ").push_bind(v.clone());
        }
        if let Some(v) = $q.from_ms {
            $qb.push(" AND at_ms >= ").push_bind(v);
        }
        if let Some(v) = $q.to_ms {
            $qb.push(" AND at_ms < ").push_bind(v);
        }
        if let Some(v) = &$q.before_id {
            $qb.push(" AND id < ").push_bind(v.clone());
        }
        $qb.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from($q.limit.unwrap_or(100).clamp(1, 10_000)));
    }};
}

macro_rules! push_rows {
    ($qb:expr, $rows:expr) => {{
        $qb.push_values($rows, |mut b, r| {
            b.push_bind(r.id.clone())
                .push_bind(r.at_ms)
                .push_bind(r.request_id.clone())
                .push_bind(r.direction.clone())
                .push_bind(r.app.clone())
                .push_bind(r.key_id.clone())
                .push_bind(r.scheme.clone())
                .push_bind(r.client_ip.clone())
                .push_bind(r.method.clone())
                .push_bind(r.route.clone())
                .push_bind(r.path.clone())
                .push_bind(i32::from(r.status))
                .push_bind(r.code.clone())
                .push_bind(r.latency_us)
                .push_bind(r.upstream_latency_us)
                .push_bind(r.bytes_in)
                .push_bind(r.bytes_out)
                .push_bind(r.request_body.clone())
                .push_bind(r.response_body.clone())
                .push_bind(r.headers.clone());
        });
    }};
}

impl AuditDb {
    /// Connects (short timeouts: an unreachable database must fail fast, records then spill)
    /// and creates the table if missing.
    pub async fn open(url: &str) -> Result<Self, DbError> {
        let err = |source| DbError::Connect { url: keygate_store::redact_url(url), source };
        let timeout = Duration::from_secs(3);
        let pool = match keygate_store::backend_kind(url) {
            Some(keygate_store::BackendKind::Sqlite) => {
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                    .map_err(err)?
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(5));
                Pool::Sqlite(
                    sqlx::sqlite::SqlitePoolOptions::new()
                        .max_connections(2)
                        .acquire_timeout(timeout)
                        .connect_with(opts)
                        .await
                        .map_err(err)?,
                )
            }
            Some(keygate_store::BackendKind::Postgres) => Pool::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(timeout)
                    .connect(url)
                    .await
                    .map_err(err)?,
            ),
            Some(keygate_store::BackendKind::Mysql) => Pool::Mysql(
                sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(timeout)
                    .connect(url)
                    .await
                    .map_err(err)?,
            ),
            None => return Err(DbError::Url(keygate_store::redact_url(url))),
        };
        let db = Self { pool };
        db.create_table().await?;
        Ok(db)
    }

    async fn create_table(&self) -> Result<(), DbError> {
        match &self.pool {
            Pool::Sqlite(p) => {
                // SQLite serializes DDL on its file lock.
                for s in ddl("sqlite") {
                    sqlx::query(&s).execute(p).await?;
                }
            }
            Pool::Postgres(p) => {
                // `CREATE ... IF NOT EXISTS` is not safe against a concurrent creator on
                // PostgreSQL (catalog unique violation): serialize replicas on an advisory lock.
                let mut tx = p.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7365817256171)").execute(&mut *tx).await?;
                for s in ddl("postgres") {
                    sqlx::query(&s).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Pool::Mysql(p) => {
                for s in ddl("mysql") {
                    sqlx::query(&s).execute(p).await?;
                }
            }
        }
        Ok(())
    }

    /// Inserts `rows` (in chunks of [`INSERT_CHUNK`], one transaction); ids already present are
    /// skipped. Returns rows actually inserted.
    pub async fn insert(&self, rows: &[AuditRecord]) -> Result<u64, DbError> {
        let mut inserted = 0;
        match &self.pool {
            Pool::Sqlite(p) => {
                let mut tx = p.begin().await?;
                for chunk in rows.chunks(INSERT_CHUNK) {
                    let mut qb =
                        QueryBuilder::<Sqlite>::new(format!("INSERT OR IGNORE INTO audit_log ({COLUMNS}) "));
                    push_rows!(qb, chunk);
                    inserted += qb.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                for chunk in rows.chunks(INSERT_CHUNK) {
                    let mut qb = QueryBuilder::<Postgres>::new(format!("INSERT INTO audit_log ({COLUMNS}) "));
                    push_rows!(qb, chunk);
                    qb.push(" ON CONFLICT (id) DO NOTHING");
                    inserted += qb.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
            }
            Pool::Mysql(p) => {
                let mut tx = p.begin().await?;
                for chunk in rows.chunks(INSERT_CHUNK) {
                    let mut qb =
                        QueryBuilder::<MySql>::new(format!("INSERT IGNORE INTO audit_log ({COLUMNS}) "));
                    push_rows!(qb, chunk);
                    inserted += qb.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
            }
        }
        Ok(inserted)
    }

    /// Records matching `q`, newest first.
    pub async fn search(&self, q: &Query) -> Result<Vec<AuditRecord>, DbError> {
        let head = format!("SELECT {COLUMNS} FROM audit_log");
        let rows: Vec<Row> = match &self.pool {
            Pool::Sqlite(p) => {
                let mut qb = QueryBuilder::<Sqlite>::new(head);
                push_filters!(qb, q);
                qb.build_query_as().fetch_all(p).await?
            }
            Pool::Postgres(p) => {
                let mut qb = QueryBuilder::<Postgres>::new(head);
                push_filters!(qb, q);
                qb.build_query_as().fetch_all(p).await?
            }
            Pool::Mysql(p) => {
                let mut qb = QueryBuilder::<MySql>::new(head);
                push_filters!(qb, q);
                qb.build_query_as().fetch_all(p).await?
            }
        };
        Ok(rows.into_iter().map(AuditRecord::from).collect())
    }

    /// Total rows (tests, figures).
    pub async fn count(&self) -> Result<i64, DbError> {
        let sql = "SELECT COUNT(*) FROM audit_log";
        Ok(match &self.pool {
            Pool::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
            Pool::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
            Pool::Mysql(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
        })
    }

    /// Deletes records older than `cutoff_ms`, `batch` rows per statement with `pause` between
    /// statements, so no statement holds locks for long. Returns rows deleted.
    pub async fn delete_older_than(
        &self,
        cutoff_ms: i64,
        batch: u32,
        pause: Duration,
    ) -> Result<u64, DbError> {
        let batch = i64::from(batch.max(1));
        let mut total = 0;
        loop {
            let n = match &self.pool {
                Pool::Sqlite(p) => sqlx::query(
                    "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at_ms < ? ORDER BY at_ms LIMIT ?)",
                )
                .bind(cutoff_ms)
                .bind(batch)
                .execute(p)
                .await?
                .rows_affected(),
                Pool::Postgres(p) => sqlx::query(
                    "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at_ms < $1 ORDER BY at_ms LIMIT $2)",
                )
                .bind(cutoff_ms)
                .bind(batch)
                .execute(p)
                .await?
                .rows_affected(),
                Pool::Mysql(p) => sqlx::query("DELETE FROM audit_log WHERE at_ms < ? ORDER BY at_ms LIMIT ?")
                    .bind(cutoff_ms)
                    .bind(batch)
                    .execute(p)
                    .await?
                    .rows_affected(),
            };
            total += n;
            if n < batch as u64 {
                return Ok(total);
            }
            tokio::time::sleep(pause).await;
        }
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
            Pool::Mysql(p) => p.close().await,
        }
    }
}
