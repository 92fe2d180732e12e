// `keygate config export|import` end to end on SQLite, PostgreSQL and MariaDB: a store populated
// through the admin API and CLI is exported (no secret value in the text), re-imported as a no-op,
// edited (key changed, app added, key removed), dry-run diffed with and without --prune, applied,
// and exported again; a running gateway on the same store picks the change up. Invalid documents
// exit 2 and write nothing.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

fn unique(tag: &str) -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("kg_{tag}_{}_{}", std::process::id(), n % 1_000_000_000)
}

/// A store of its own: a SQLite file in a temp dir, or a database on the PostgreSQL or MariaDB
/// server, dropped at the end.
struct Db {
    kind: &'static str,
    name: String,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    fn new(kind: &'static str) -> Self {
        let name = unique(&format!("cio_{kind}"));
        match kind {
            "sqlite" => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/store.db", dir.path().display());
                Self { kind, name, url, _dir: Some(dir) }
            }
            "postgres" => {
                let ok = Command::new("psql")
                    .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
                    .arg(format!("CREATE DATABASE {name}"))
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "creating database {name} on postgres");
                let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
                Self { kind, name, url, _dir: None }
            }
            _ => {
                let ok = Command::new("mariadb")
                    .args(["-h", "127.0.0.1", "-u", "root", "-e"])
                    .arg(format!("CREATE DATABASE {name}"))
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "creating database {name} on mariadb");
                let url = format!("mysql://root@127.0.0.1:3306/{name}");
                Self { kind, name, url, _dir: None }
            }
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        match self.kind {
            "postgres" => {
                let _ = Command::new("psql")
                    .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
                    .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                    .status();
            }
            "mysql" => {
                // MariaDB waits for open sessions on the database before dropping it: end them.
                let ids = Command::new("mariadb")
                    .args(["-h", "127.0.0.1", "-u", "root", "-N", "-e"])
                    .arg(format!("SELECT id FROM information_schema.processlist WHERE db = '{}'", self.name))
                    .output();
                if let Ok(out) = ids {
                    for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                        let _ = Command::new("mariadb")
                            .args(["-h", "127.0.0.1", "-u", "root", "-e"])
                            .arg(format!("KILL {id}"))
                            .output();
                    }
                }
                let _ = Command::new("mariadb")
                    .args(["-h", "127.0.0.1", "-u", "root", "-e"])
                    .arg(format!("DROP DATABASE IF EXISTS {}", self.name))
                    .status();
            }
            _ => {}
        }
    }
}

fn rand_secret(tag: &str) -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut b).unwrap();
    let s = format!("{tag}-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>());
    note_secret(&s);
    s
}

/// Runs the CLI; returns (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("KEYGATE_MASTER_KEY", MASTER_KEY)
        .env_remove("KEYGATE_ADMIN_TOKEN")
        .env_remove("KEYGATE_STORE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn export(cfg: &str) -> String {
    let (code, out, err) = run(&["config", "export", "-c", cfg], &[]);
    assert_eq!(code, 0, "export failed: {err}");
    out
}

fn import(cfg: &str, file: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut args = vec!["config", "import", file.to_str().unwrap(), "-c", cfg];
    args.extend_from_slice(extra);
    run(&args, env)
}

fn parsed(text: &str) -> toml::Table {
    toml::from_str(text).unwrap_or_else(|e| panic!("export is not valid TOML: {e}\n{text}"))
}

/// The document's blocks (separated by blank lines), so a test can edit one object like a person
/// would in an editor.
fn blocks(text: &str) -> Vec<String> {
    text.split("\n\n").map(str::to_string).collect()
}

fn block_index(blocks: &[String], header: &str, line: &str) -> usize {
    blocks
        .iter()
        .position(|b| b.starts_with(header) && b.lines().any(|l| l == line))
        .unwrap_or_else(|| panic!("no {header} block with {line}"))
}

async fn signed_status(kg: &Keygate, ak: &str, secret: &str, path: &str) -> (u16, Value) {
    let url = kg.url(path);
    let headers = sign(ak, secret, "GET", &url, &[], b"", &[]);
    let (status, _, body, _) = send("GET", &url, &headers, b"", false).await;
    (status.as_u16(), serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn wait_for_code(kg: &Keygate, ak: &str, secret: &str, want: (u16, Option<&str>)) {
    let t = Instant::now();
    loop {
        let (s, v) = signed_status(kg, ak, secret, "/v1/orders").await;
        if (s, v["code"].as_str()) == want {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{ak}: wanted {want:?}, still {s} {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const AK_SYNC: &str = "AKCIO0000000001";
const AK_MIGRATED: &str = "AKCIO0000000002";
const AK_LEGACY: &str = "zs001cio";
const AK_GONE: &str = "AKCIO0000000004";

async fn round_trip(kind: &'static str) {
    let db = Db::new(kind);
    let upstream = start_upstream();
    let cfg = format!(
        r#"
[server]
admin = "127.0.0.1:0"
reload_interval_ms = 100
snapshot_cache = ""
[store]
url = "{}"
[[routes]]
path_prefix = "/"
upstream = "http://{}"
"#,
        db.url,
        upstream.addr()
    );
    let kg = start_keygate(&cfg, &[]);
    let cfg_path = kg.dir.path().join("keygate.toml");
    let cfg_s = cfg_path.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();

    // ---- populate through the CLI and the admin API ----
    let (ok, out, err) = cli(&["admin-token", "create", "-c", cfg_s, "--name", "ops", "--json"], &[]);
    assert!(ok, "{err}");
    let token = serde_json::from_str::<Value>(&out).unwrap()["token"].as_str().unwrap().to_string();
    note_secret(&token);
    let admin = kg.admin.unwrap();
    let admin_url = format!("http://{admin}");
    let env = [("KEYGATE_ADMIN_URL", admin_url.as_str()), ("KEYGATE_ADMIN_TOKEN", token.as_str())];
    assert!(cli(&["tenants", "create", "t1", "--name", "Tenant One"], &env).0);
    assert!(cli(&["apps", "create", "billing", "--tenant", "t1", "--name", "Billing"], &env).0);
    assert!(cli(&["apps", "create", "erp", "--tenant", "t1"], &env).0);
    let mut secrets = vec![token.clone(), MASTER_KEY.trim_start_matches("v1:").to_string()];

    let (ok, out, err) = cli(
        &[
            "keys",
            "create",
            "--app",
            "billing",
            "--access-key",
            AK_SYNC,
            "--description",
            "erp sync",
            "--scope",
            "orders:read",
            "--endpoint",
            "GET /v1/*",
            "--cidr",
            "127.0.0.0/8",
            "--rate",
            "50",
            "--burst",
            "100",
            "--json",
        ],
        &env,
    );
    assert!(ok, "{err}");
    let sync_secret = serde_json::from_str::<Value>(&out).unwrap()["secret"].as_str().unwrap().to_string();
    note_secret(&sync_secret);
    secrets.push(sync_secret.clone());

    let migrated_secret = rand_secret("migrated");
    secrets.push(migrated_secret.clone());
    let mut import_env = env.to_vec();
    import_env.push(("IMPORTED_SK", migrated_secret.as_str()));
    let (ok, _, err) = cli(
        &[
            "keys",
            "import",
            "--app",
            "billing",
            "--access-key",
            AK_MIGRATED,
            "--secret-env",
            "IMPORTED_SK",
            "--description",
            "migrated from the old gateway",
            "--auth-policy",
            "both",
        ],
        &import_env,
    );
    assert!(ok, "{err}");

    let legacy_secret = rand_secret("legacy");
    secrets.push(legacy_secret.clone());
    let (s, v) = admin_call(
        admin,
        &token,
        "POST",
        "/admin/apps/erp/keys",
        Some(json!({
            "access_key": AK_LEGACY,
            "scheme": "legacy-sorted",
            "scheme_settings": {"digest": "sha256", "hex_case": "lower", "location": "headers",
                "access_key_field": "appId", "timestamp_field": "timeStamp", "nonce_field": "nonce",
                "sign_field": "sign", "timestamp_unit": "s", "nonce_min_len": 10},
            "secret": legacy_secret,
            "description": "legacy partner\nsecond line: 'quoted' and \"double\"",
            "valid_from": 1_700_000_000i64,
            "valid_to": 1_900_000_000i64,
            "timestamp_window_secs": 120,
        })),
    )
    .await;
    assert_eq!(s, 201, "{v}");

    let (ok, out, err) = cli(&["keys", "create", "--app", "erp", "--access-key", AK_GONE, "--json"], &env);
    assert!(ok, "{err}");
    let gone_secret = serde_json::from_str::<Value>(&out).unwrap()["secret"].as_str().unwrap().to_string();
    note_secret(&gone_secret);
    secrets.push(gone_secret.clone());

    // Providers: a built-in recipe with two secrets, and a scripted one with saved versions.
    let put = |id: &'static str, config: Value| {
        let token = token.clone();
        async move {
            let (s, v) = admin_call(
                admin,
                &token,
                "PUT",
                &format!("/admin/providers/{id}"),
                Some(json!({"tenant_id": "t1", "config": config})),
            )
            .await;
            assert_eq!(s, 200, "{v}");
        }
    };
    put(
        "pay",
        json!({"base_url": "http://127.0.0.1:9", "allow_private_addresses": true,
               "paths": ["POST /orders/*"], "granted_apps": ["billing"], "timeout_ms": 5000,
               "retry": {"max_attempts": 2}, "recipe": {"type": "hmac_header"}}),
    )
    .await;
    let script = |n: u32| {
        format!(
            "function (reqHeaders, reqParams, reqBody, ApiKey) {{\n  // version {n}\n  reqHeaders.set('x-v', '{n}');\n  reqHeaders.set('x-api-key', ApiKey);\n}}\n"
        )
    };
    put(
        "scripted",
        json!({"base_url": "http://127.0.0.1:9", "allow_private_addresses": true, "paths": ["GET /*"],
               "granted_apps": ["billing", "erp"], "recipe": {"type": "script", "source": script(0), "vars": {}}}),
    )
    .await;
    for (provider, name) in [("pay", "key_id"), ("pay", "secret"), ("scripted", "ApiKey")] {
        let value = rand_secret(&format!("{provider}-{name}"));
        secrets.push(value.clone());
        let (s, v) = admin_call(
            admin,
            &token,
            "PUT",
            &format!("/admin/providers/{provider}/secrets/{name}"),
            Some(json!({"value": value})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    for n in [1, 2] {
        let (s, v) = admin_call(
            admin,
            &token,
            "POST",
            "/admin/providers/scripted/scripts",
            Some(json!({"source": script(n), "comment": format!("v{n}")})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    // The key works before any import.
    wait_for_code(&kg, AK_SYNC, &sync_secret, (200, None)).await;

    // ---- export: every object, no secret value ----
    let exported = export(cfg_s);
    for s in &secrets {
        assert!(!exported.contains(s.as_str()), "{kind}: a secret value is in the export");
    }
    assert!(exported.starts_with("# keygate config export"), "{exported}");
    assert!(exported.contains("\nversion = 1\n"));
    assert_eq!(exported.matches("secret = { ref = \"store\" }").count(), 4, "{exported}");
    assert!(!exported.contains("last_used_at"));
    assert!(exported.contains("rate_limit = { rate_per_sec = 50.0, burst = 100 }"), "{exported}");
    assert!(
        exported.contains("scheme_settings = { access_key_field = \"appId\", digest = \"sha256\""),
        "{exported}"
    );
    assert!(exported.contains("description = '''\nlegacy partner\nsecond line"), "{exported}");
    assert!(exported.contains("secrets = [\"key_id\", \"secret\"]"), "{exported}");
    assert!(exported.contains("[providers.script]\nactive_version = 2\nsource_sha256 = \""), "{exported}");
    assert!(exported.contains(&format!("source = '''\n{}'''", script(2))), "{exported}");
    let doc = parsed(&exported);
    assert_eq!(doc["keys"].as_array().unwrap().len(), 4);
    assert_eq!(doc["providers"].as_array().unwrap().len(), 2);
    // The same through --store-url, and twice in a row: identical but for the timestamp comment.
    let (code, by_url, err) = run(&["config", "export", "--store-url", &db.url], &[]);
    assert_eq!(code, 0, "{err}");
    let body = |t: &str| t.lines().filter(|l| !l.starts_with("# exported_at")).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&by_url), body(&exported));
    let (code, one_tenant, err) = run(&["config", "export", "-c", cfg_s, "--tenant", "t1"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(body(&one_tenant), body(&exported));
    let (code, _, err) = run(&["config", "export", "-c", cfg_s, "--tenant", "nope"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("tenant nope not found"), "{err}");

    // ---- re-importing the export is a no-op ----
    let file = work.path().join("keygate-config.toml");
    std::fs::write(&file, &exported).unwrap();
    let counter_before = export(cfg_s);
    for extra in [&["--dry-run"][..], &["--dry-run", "--prune"][..], &[][..]] {
        let (code, out, err) = import(cfg_s, &file, extra, &[]);
        assert_eq!(code, 0, "{kind} {extra:?}: {out}{err}");
        assert!(
            out.contains("0 to create, 0 to update, 0 to delete, 9 unchanged"),
            "{kind} {extra:?}: {out}"
        );
        assert!(!out.contains("+ ") && !out.contains("~ ") && !out.contains("- "), "{out}");
    }
    assert_eq!(body(&export(cfg_s)), body(&counter_before));

    // ---- edit: a key changed, an app added, a key removed ----
    let mut b = blocks(&exported);
    let i = block_index(&b, "[[keys]]", &format!("access_key = \"{AK_SYNC}\""));
    assert!(b[i].contains("description = \"erp sync\"") && b[i].contains("enabled = true"), "{}", b[i]);
    b[i] = b[i]
        .replace("description = \"erp sync\"", "description = \"erp sync (paused)\"")
        .replace("enabled = true", "enabled = false");
    let gone = block_index(&b, "[[keys]]", &format!("access_key = \"{AK_GONE}\""));
    b.remove(gone);
    let last_app = b.iter().rposition(|x| x.starts_with("[[apps]]")).unwrap();
    b.insert(
        last_app + 1,
        "[[apps]]\nid = \"reports\"\ntenant = \"t1\"\nname = \"Reports\"\nenabled = true".into(),
    );
    let edited = b.join("\n\n");
    std::fs::write(&file, &edited).unwrap();

    let (code, out, err) = import(cfg_s, &file, &["--dry-run"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("+ create app reports (tenant t1)\n"), "{out}");
    assert!(out.contains(&format!("~ update key {AK_SYNC}\n")), "{out}");
    assert!(out.contains("description: \"erp sync\" → \"erp sync (paused)\"\n"), "{out}");
    assert!(out.contains("enabled: true → false\n"), "{out}");
    assert!(!out.contains("- delete"), "without --prune nothing is deleted: {out}");
    assert!(out.contains("1 to create, 1 to update, 0 to delete, 7 unchanged"), "{out}");
    assert!(out.contains("dry run: nothing was written"), "{out}");
    let (code, out, err) = import(cfg_s, &file, &["--dry-run", "--prune"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("- delete key {AK_GONE} (app erp)\n")), "{out}");
    assert!(out.contains("1 to create, 1 to update, 1 to delete, 7 unchanged"), "{out}");
    assert_eq!(out.matches("~ update").count(), 1, "{out}");
    // Dry runs wrote nothing.
    assert_eq!(body(&export(cfg_s)), body(&exported));

    // ---- apply ----
    let (code, out, err) = import(cfg_s, &file, &["--prune"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied: 1 created, 1 updated, 1 deleted, 7 unchanged"), "{out}");
    // The import became a config version of its tenant (docs/versions.md).
    assert!(out.lines().any(|l| l.starts_with("tenant ") && l.contains(": version ")), "{out}");
    for s in &secrets {
        assert!(!out.contains(s.as_str()) && !err.contains(s.as_str()), "a secret was printed");
    }
    let after = export(cfg_s);
    assert_eq!(
        parsed(&after),
        parsed(&edited),
        "{kind}: export after import differs:\n{after}\n---\n{edited}"
    );
    let (code, out, _) = import(cfg_s, &file, &["--dry-run", "--prune"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("0 to create, 0 to update, 0 to delete, 9 unchanged"), "{out}");

    // The running gateway reloads: the edited key is disabled, the removed one unknown.
    wait_for_code(&kg, AK_SYNC, &sync_secret, (401, Some("key_disabled"))).await;
    wait_for_code(&kg, AK_GONE, &gone_secret, (401, Some("unknown_key"))).await;

    // Every write is in the admin audit trail under the import's actor.
    let (s, audit) = admin_call(admin, &token, "GET", "/admin/audit?limit=20", None).await;
    assert_eq!(s, 200);
    let rows: Vec<&Value> =
        audit.as_array().unwrap().iter().filter(|r| r["actor"] == "config-import").collect();
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    for want in ["app.create", "key.update", "key.delete"] {
        assert!(actions.contains(&want), "{kind}: {actions:?}");
    }

    // ---- a new key from an environment variable; a script change makes a new version ----
    let new_secret = rand_secret("new-key");
    secrets.push(new_secret.clone());
    let mut b = blocks(&after);
    let last_key = b.iter().rposition(|x| x.starts_with("[[keys]]")).unwrap();
    b.insert(
        last_key + 1,
        "[[keys]]\naccess_key = \"AKCIONEW0000001\"\napp_id = \"reports\"\nsecret = { env = \"CIO_NEW_SK\" }"
            .into(),
    );
    let i = b.iter().position(|x| x.starts_with("[providers.script]")).unwrap();
    b[i] = b[i].replace("// version 2", "// version 3 (from git)");
    std::fs::write(&file, b.join("\n\n")).unwrap();
    let (code, out, err) = import(cfg_s, &file, &[], &[("CIO_NEW_SK", new_secret.as_str())]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "+ create key AKCIONEW0000001 (app reports, scheme kg1-hmac-sha256, secret from env CIO_NEW_SK)"
        ),
        "{out}"
    );
    assert!(out.contains("~ update provider scripted\n"), "{out}");
    assert!(out.contains("(new version)"), "{out}");
    assert!(out.contains("applied: 1 created, 1 updated, 0 deleted, 8 unchanged"), "{out}");
    assert!(!out.contains(&new_secret) && !err.contains(&new_secret));
    wait_for_code(&kg, "AKCIONEW0000001", &new_secret, (200, None)).await;
    let (_, list) = admin_call(admin, &token, "GET", "/admin/providers/scripted/scripts", None).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(
        (list[2]["active"].as_bool(), list[2]["created_by"].as_str()),
        (Some(true), Some("config-import"))
    );
    let now = export(cfg_s);
    assert!(now.contains("active_version = 3"), "{now}");
    assert!(now.contains("created_by = \"config-import\""), "{now}");
    let (code, out, _) = import(cfg_s, &file, &["--dry-run"], &[("CIO_NEW_SK", new_secret.as_str())]);
    assert_eq!(code, 0);
    assert!(out.contains("0 to create, 0 to update, 0 to delete, 10 unchanged"), "{out}");
    // Reverting the source in the file re-activates the saved version instead of saving a copy.
    std::fs::write(&file, &after).unwrap();
    let (code, out, err) = import(cfg_s, &file, &[], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(activate saved version 2)"), "{out}");
    let (_, list) = admin_call(admin, &token, "GET", "/admin/providers/scripted/scripts", None).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(list[1]["active"], true);

    // ---- invalid documents: exit 2, a message naming the field, nothing written ----
    let before = export(cfg_s);
    let base = blocks(&before);
    let with = |extra: &str| {
        let mut b = base.clone();
        b.push(extra.to_string());
        b.join("\n\n")
    };
    let mut typo = base.clone();
    let i = block_index(&typo, "[[keys]]", &format!("access_key = \"{AK_MIGRATED}\""));
    typo[i] = typo[i].replace("description = ", "descripton = ");
    let typo_index = typo.iter().take(i).filter(|b| b.starts_with("[[keys]]")).count();
    let cases = [
        (typo.join("\n\n"), format!("keys[{typo_index}].descripton: unknown field")),
        (with("[[apps]]\nid = \"bad id\"\ntenant = \"t1\""), "apps[3].id: must be printable ASCII".to_string()),
        (
            with("[[keys]]\naccess_key = \"AKCIONEW0000002\"\napp_id = \"billing\"\nsecret = { ref = \"store\" }"),
            "key AKCIONEW0000002 is not in the store".to_string(),
        ),
        (with("[[keys]]\naccess_key = \"AKCIONEW0000003\"\napp_id = \"billing\"\nsecret = { value = \"x\" }"), ".secret.value: unknown field".to_string()),
        (with("[[apps]]\nid = \"x\"\ntenant = \"elsewhere\""), "tenant elsewhere is not in the document".to_string()),
        (
            with("[[keys]]\naccess_key = \"AKCIONEW0000004\"\napp_id = \"billing\"\nallowed_cidrs = [\"10.0.0.1/8\"]\nsecret = { env = \"CIO_NEW_SK\" }"),
            ".allowed_cidrs[0]: host bits are set".to_string(),
        ),
        ("version = 1\n[[tenants]\n".to_string(), "not valid TOML".to_string()),
    ];
    for (text, want) in &cases {
        std::fs::write(&file, text).unwrap();
        for extra in [&[][..], &["--dry-run"][..]] {
            let (code, out, err) = import(cfg_s, &file, extra, &[("CIO_NEW_SK", new_secret.as_str())]);
            assert_eq!(code, 2, "{kind} {want}: {out}{err}");
            assert!(err.contains("invalid document, nothing was written"), "{err}");
            assert!(err.contains(want.as_str()), "{kind}: wanted {want:?} in:\n{err}");
            assert!(!err.contains(&new_secret));
        }
    }
    assert_eq!(parsed(&export(cfg_s)), parsed(&before), "{kind}: an invalid document changed the store");
    drop(kg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_round_trip_on_sqlite() {
    round_trip("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_round_trip_on_postgres() {
    round_trip("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_round_trip_on_mariadb() {
    round_trip("mysql").await;
}
