// Test harness: one fresh database per test on each real backend (SQLite file, PostgreSQL,
// MariaDB/MySQL), dropped afterwards. A server that is down fails the test; nothing is faked.

#![allow(clippy::unwrap_used, dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use keygate_store::{Keyring, MasterKey};
use sqlx::{Executor, QueryBuilder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
    Mysql,
}

/// Admin URLs of the servers; the defaults are the machine's loopback services.
fn admin_url(kind: Kind) -> String {
    match kind {
        Kind::Sqlite => String::new(),
        Kind::Postgres => std::env::var("KEYGATE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        Kind::Mysql => std::env::var("KEYGATE_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
    }
}

/// Same server, another database.
fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{db}")
}

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    keygate_store::crypto::random(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One test's private database.
pub struct TestDb {
    pub kind: Kind,
    pub url: String,
    /// Database name on PostgreSQL/MySQL; empty for SQLite.
    name: String,
    dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("kg.db").display());
                Self { kind, url, name: String::new(), dir: Some(dir) }
            }
            Kind::Postgres | Kind::Mysql => {
                let admin = admin_url(kind);
                let name = format!("kg_test_{}", random_hex(8));
                // DDL cannot bind identifiers; `name` is our own hex, never input.
                exec_admin(kind, &admin, &format!("CREATE DATABASE {name}")).await.unwrap_or_else(|e| {
                    panic!(
                        "{kind:?} server at {} is not usable ({e}); scripts/services up starts it",
                        keygate_store::redact_url(&admin)
                    )
                });
                Self { kind, url: with_database(&admin, &name), name, dir: None }
            }
        }
    }

    pub fn sqlite_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().to_path_buf())
    }

    /// Runs raw SQL (test fixtures: triggers, scans) on this database.
    pub async fn exec(&self, sql: &str) {
        match self.kind {
            Kind::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                pool.execute(sqlx::raw_sql(sql)).await.unwrap();
                pool.close().await;
            }
            Kind::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                pool.execute(sqlx::raw_sql(sql)).await.unwrap();
                pool.close().await;
            }
            Kind::Mysql => {
                let pool = sqlx::MySqlPool::connect(&self.url).await.unwrap();
                pool.execute(sqlx::raw_sql(sql)).await.unwrap();
                pool.close().await;
            }
        }
    }

    /// Every byte the database holds for keys, audit rows and admin tokens, as one value per row: text columns
    /// and the raw ciphertext.
    pub async fn raw_rows(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        match self.kind {
            Kind::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                for sql in [
                    "SELECT CAST(access_key || '|' || app_id || '|' || scheme_settings || '|' || description || '|' \
                     || scopes || '|' || allowed_endpoints || '|' || allowed_cidrs || '|' || created_by AS BLOB) FROM keys",
                    "SELECT secret_ciphertext FROM keys",
                    "SELECT CAST(actor || '|' || action || '|' || target || '|' || COALESCE(before_json, '') || '|' \
                     || COALESCE(after_json, '') AS BLOB) FROM admin_audit",
                    "SELECT CAST(id || '|' || name || '|' || token_hash || '|' || role || '|' || COALESCE(tenant_id, '') \
                     || '|' || app_grants AS BLOB) FROM admin_tokens",
                    "SELECT CAST(id || '|' || tenant_id || '|' || config AS BLOB) FROM providers",
                    "SELECT ciphertext FROM provider_secrets",
                ] {
                    out.extend(sqlx::query_scalar::<_, Vec<u8>>(sql).fetch_all(&pool).await.unwrap());
                }
                pool.close().await;
            }
            Kind::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                for sql in [
                    "SELECT t::text FROM keys t",
                    "SELECT t::text FROM admin_audit t",
                    "SELECT t::text FROM admin_tokens t",
                    "SELECT t::text FROM providers t",
                    "SELECT t::text FROM provider_secrets t",
                ] {
                    let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
                    out.extend(rows.into_iter().map(String::into_bytes));
                }
                out.extend(
                    sqlx::query_scalar::<_, Vec<u8>>("SELECT ciphertext FROM provider_secrets")
                        .fetch_all(&pool)
                        .await
                        .unwrap(),
                );
                out.extend(
                    sqlx::query_scalar::<_, Vec<u8>>("SELECT secret_ciphertext FROM keys")
                        .fetch_all(&pool)
                        .await
                        .unwrap(),
                );
                pool.close().await;
            }
            Kind::Mysql => {
                let pool = sqlx::MySqlPool::connect(&self.url).await.unwrap();
                for sql in [
                    "SELECT CONCAT_WS('|', access_key, app_id, scheme_settings, description, scopes, \
                     allowed_endpoints, allowed_cidrs, created_by, HEX(secret_ciphertext)) FROM `keys`",
                    "SELECT secret_ciphertext FROM `keys`",
                    "SELECT CONCAT_WS('|', actor, action, target, before_json, after_json) FROM admin_audit",
                    "SELECT CONCAT_WS('|', id, name, token_hash, role, tenant_id, app_grants) FROM admin_tokens",
                    "SELECT CONCAT_WS('|', id, tenant_id, config) FROM providers",
                    "SELECT ciphertext FROM provider_secrets",
                ] {
                    out.extend(sqlx::query_scalar::<_, Vec<u8>>(sql).fetch_all(&pool).await.unwrap());
                }
                pool.close().await;
            }
        }
        out
    }

    /// `(access_key, master_key_version, secret_ciphertext)` of every key, straight from SQL.
    pub async fn raw_ciphertexts(&self) -> Vec<(String, i64, Vec<u8>)> {
        let sql = format!(
            "SELECT CAST(access_key AS {}), master_key_version, secret_ciphertext FROM {} ORDER BY access_key",
            if self.kind == Kind::Mysql { "CHAR" } else { "TEXT" },
            self.keys_table()
        );
        match self.kind {
            Kind::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                let rows = sqlx::query_as(&sql).fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows
            }
            Kind::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                let rows = sqlx::query_as(&sql).fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows
            }
            Kind::Mysql => {
                let pool = sqlx::MySqlPool::connect(&self.url).await.unwrap();
                let rows = sqlx::query_as(&sql).fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows
            }
        }
    }

    fn keys_table(&self) -> &'static str {
        if self.kind == Kind::Mysql {
            "`keys`"
        } else {
            "keys"
        }
    }

    /// Inserts `n` keys `<prefix><i>` of `app_id` directly (multi-row INSERTs, 1000 per statement),
    /// sealed with `keyring` exactly as the store seals them. For volumes the repository's
    /// one-transaction-per-key API would take minutes to create.
    pub async fn bulk_seed(&self, keyring: &Keyring, app_id: &str, prefix: &str, n: usize) {
        let rows: Vec<(String, i64, Vec<u8>)> = (0..n)
            .map(|i| {
                let ak = format!("{prefix}{i:07}");
                let (v, blob) = keyring.seal(ak.as_bytes(), seed_secret(&ak).as_bytes()).unwrap();
                (ak, i64::from(v), blob)
            })
            .collect();
        let head = format!(
            "INSERT INTO {} (access_key, app_id, scheme, scheme_settings, enabled, timestamp_window_secs, \
             description, scopes, allowed_endpoints, allowed_cidrs, created_by, secret_ciphertext, \
             master_key_version, created_at, updated_at) ",
            self.keys_table()
        );
        macro_rules! seed {
            ($pool:expr) => {{
                let pool = $pool;
                let mut tx = pool.begin().await.unwrap();
                for chunk in rows.chunks(1000) {
                    let mut qb = QueryBuilder::new(&head);
                    qb.push_values(chunk, |mut b, (ak, v, blob)| {
                        b.push_bind(ak.as_str())
                            .push_bind(app_id)
                            .push_bind("kg1-hmac-sha256")
                            .push_bind("{}")
                            .push_bind(true)
                            .push_bind(300_i64)
                            .push_bind("seeded")
                            .push_bind(r#"["orders:read"]"#)
                            .push_bind(r#"["GET /v1/orders/*"]"#)
                            .push_bind(r#"["10.0.0.0/8"]"#)
                            .push_bind("bench")
                            .push_bind(blob.as_slice())
                            .push_bind(*v)
                            .push_bind(0_i64)
                            .push_bind(0_i64);
                    });
                    qb.build().execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
                pool.close().await;
            }};
        }
        match self.kind {
            Kind::Sqlite => seed!(sqlx::SqlitePool::connect(&self.url).await.unwrap()),
            Kind::Postgres => seed!(sqlx::PgPool::connect(&self.url).await.unwrap()),
            Kind::Mysql => seed!(sqlx::MySqlPool::connect(&self.url).await.unwrap()),
        }
    }
}

/// The secret `bulk_seed` gives a key.
pub fn seed_secret(access_key: &str) -> String {
    format!("seed-secret-{access_key}-0123456789abcdef")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        // Async drop does not exist: run the DROP on a private runtime on its own thread, so it
        // also happens when the test panicked.
        let (kind, admin, name) = (self.kind, admin_url(self.kind), self.name.clone());
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let sql = match kind {
                Kind::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                _ => format!("DROP DATABASE IF EXISTS {name}"),
            };
            if kind == Kind::Mysql {
                // MySQL has no `WITH (FORCE)`: a connection of the test's pool that still holds a
                // transaction (its rollback queued on a task this blocked thread cannot poll)
                // would make the DROP wait for the metadata lock forever. End those sessions first.
                rt.block_on(kill_mysql_sessions(&admin, &name));
            }
            rt.block_on(exec_admin(kind, &admin, &sql))
        })
        .join();
        if let Ok(Err(e)) = joined {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}

async fn kill_mysql_sessions(admin: &str, db: &str) {
    let Ok(pool) = sqlx::mysql::MySqlPoolOptions::new().max_connections(1).connect(admin).await else {
        return;
    };
    let ids: Vec<u64> =
        sqlx::query_scalar("SELECT CAST(id AS UNSIGNED) FROM information_schema.processlist WHERE db = ?")
            .bind(db)
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    for id in ids {
        let _ = pool.execute(sqlx::raw_sql(&format!("KILL {id}"))).await;
    }
    pool.close().await;
}

async fn exec_admin(kind: Kind, admin: &str, sql: &str) -> Result<(), sqlx::Error> {
    match kind {
        Kind::Postgres => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(std::time::Duration::from_secs(10))
                .connect(admin)
                .await?;
            pool.execute(sqlx::raw_sql(sql)).await?;
            pool.close().await;
        }
        Kind::Mysql => {
            let pool = sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(std::time::Duration::from_secs(10))
                .connect(admin)
                .await?;
            pool.execute(sqlx::raw_sql(sql)).await?;
            pool.close().await;
        }
        Kind::Sqlite => {}
    }
    Ok(())
}

pub fn keyring_of(versions: &[u32]) -> Arc<Keyring> {
    Arc::new(
        Keyring::new(versions.iter().map(|v| MasterKey::from_bytes(*v, &[*v as u8 + 40; 32]).unwrap()))
            .unwrap(),
    )
}

/// Current RSS of this process in bytes (Linux).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}
