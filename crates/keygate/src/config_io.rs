// `keygate config export|import`: the store's tenants, apps, keys and providers as one TOML
// document for GitOps (docs/config-io.md), in the spirit of decK or APISIX standalone.
//
// Secrets never appear in a document: a key carries a reference (`secret = { ref = "store" }`,
// or for a new key `{ env = "VAR" }` / `{ file = "path" }`, resolved at import), a provider the
// names of its secrets. Script sources are configuration and are exported in full.
//
// Import validates the whole document before it touches the store — its own checks, the
// outbound gateway's provider parser, and the store's validation, run by writing the document
// into a scratch in-memory SQLite store — then diffs it against the store and, unless
// `--dry-run`, applies the differences through the Store API as actor `config-import`: every
// write is one audited transaction that bumps the change counter, so running gateways reload.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use keygate_store::{
    AppRecord, KeyRecord, ObjectKind, ProviderRecord, RateLimit, ScriptVersion, Store, StoreError,
    TenantObject, TenantRecord,
};
use serde_json::Value as Json;
use zeroize::Zeroizing;

/// Who the admin audit trail names for writes of `config import`.
pub const ACTOR: &str = "config-import";
/// The document format this build reads and writes.
const FORMAT_VERSION: i64 = 1;
/// Exit code for a document that is invalid (nothing was written).
const EXIT_INVALID: u8 = 2;
/// Most problems listed for one invalid document.
const MAX_PROBLEMS: usize = 50;

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print tenants, apps, keys and providers as TOML (secrets as references, never values).
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this tenant (repeatable). Default: every tenant.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
    },
    /// Apply a document: validate, print the diff, then write what changed (see --dry-run).
    Import {
        /// The document (TOML); `-` reads stdin.
        file: PathBuf,
        /// Print the diff and a summary; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also delete apps, keys, providers (and provider secrets), routes and alert rules of the document's tenants
        /// that the document does not list.
        #[arg(long)]
        prune: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Where the store is: a keygate config file's `[store]`, or a URL.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// keygate config file whose [store] (url, master_key_file) to use; wins over --store-url.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Store URL instead of a config file (master key from KEYGATE_MASTER_KEY). Prefer the
    /// environment variable when the URL has a password: flags show in `ps`.
    #[arg(long, env = "KEYGATE_STORE_URL", hide_env_values = true)]
    store_url: Option<String>,
}

/// A document that cannot be applied; nothing was written. Exit code 2.
#[derive(Debug)]
struct Invalid(Vec<String>);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n  "))
    }
}

impl std::error::Error for Invalid {}

fn invalid(problems: Vec<String>) -> anyhow::Error {
    anyhow::Error::new(Invalid(problems))
}

/// Runs a `config` subcommand; returns the process exit code.
pub fn run(cmd: &ConfigCmd) -> Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = match cmd {
        ConfigCmd::Export { store, tenants } => rt.block_on(async {
            let store = open(store).await?;
            let text = export(&store, tenants).await;
            store.close().await;
            std::io::stdout().lock().write_all(text?.as_bytes())?;
            Ok(0)
        }),
        ConfigCmd::Import { file, dry_run, prune, store } => {
            let (text, base_dir) = read_document(file)?;
            match parse(&text) {
                Err(e) => Err(e),
                Ok(doc) => rt.block_on(async {
                    let policy = policy_of(store)?;
                    let store = open(store).await?;
                    let opts = ImportOptions { dry_run: *dry_run, prune: *prune };
                    let result =
                        import(&store.with_actor(ACTOR), doc, &base_dir, &opts, policy.as_ref()).await;
                    store.close().await;
                    result
                }),
            }
        }
    };
    match result {
        Err(e) => match e.downcast_ref::<Invalid>() {
            Some(inv) => {
                eprintln!("error: invalid document, nothing was written:\n  {inv}");
                Ok(EXIT_INVALID)
            }
            None => Err(e),
        },
        ok => ok,
    }
}

fn read_document(file: &Path) -> Result<(String, PathBuf)> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading the document from stdin")?;
        return Ok((text, std::env::current_dir()?));
    }
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((text, base))
}

/// The gateway's `[tenant_routes]` policy, when the store is given by a keygate config file.
fn policy_of(args: &StoreArgs) -> Result<Option<crate::tenant_objects::Policy>> {
    let Some(path) = &args.config else { return Ok(None) };
    let cfg = crate::config::Config::load(path)?;
    Ok(Some(crate::serve::RouteSet::new(&cfg)?.policy))
}

async fn open(args: &StoreArgs) -> Result<Store> {
    let (url, key_file) = match (&args.config, &args.store_url) {
        (Some(path), _) => {
            let cfg = crate::config::Config::load(path)?;
            (cfg.store.url, cfg.store.master_key_file)
        }
        (None, Some(url)) => (url.clone(), None),
        (None, None) => bail!("give the store with -c keygate.toml or --store-url URL"),
    };
    let keyring = Arc::new(crate::serve::load_keyring(key_file.as_deref())?);
    Ok(Store::open(&url, keyring).await?)
}

// ---------------------------------------------------------------------------------------------
// The document model
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
pub(crate) struct Doc {
    tenants: Vec<TenantRecord>,
    apps: Vec<AppRecord>,
    keys: Vec<KeyEntry>,
    providers: Vec<ProviderEntry>,
    /// Tenants' routes and alert rules (`[[routes]]`, `[[alert_rules]]`).
    objects: Vec<TenantObject>,
}

#[derive(Debug)]
struct KeyEntry {
    /// Metadata only; the store-maintained fields are left at their defaults.
    record: KeyRecord,
    secret: SecretRef,
}

/// Where a key's secret comes from. Never the value itself.
#[derive(Debug, Clone, PartialEq)]
enum SecretRef {
    /// Already in the store (the only form export writes).
    Store,
    Env(String),
    File(PathBuf),
}

#[derive(Debug)]
struct ProviderEntry {
    id: String,
    tenant: String,
    /// The provider document without `recipe.source`/`recipe.version` of a script recipe (those
    /// live in `script`).
    config: Json,
    /// Names of the provider's secrets.
    secrets: Vec<String>,
    script: Option<ScriptEntry>,
}

#[derive(Debug)]
struct ScriptEntry {
    /// The store's number of the active version (informational: the store numbers versions).
    active_version: Option<i64>,
    source_sha256: Option<String>,
    source: String,
}

/// Fields of each object, in the order export writes them.
const ROOT_FIELDS: &[&str] = &["version", "tenants", "apps", "keys", "providers", "routes", "alert_rules"];
const OBJECT_FIELDS: &[&str] = &["tenant", "name", "config"];

/// The document's array for each kind of tenant object.
fn object_array(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Route => "routes",
        ObjectKind::AlertRule => "alert_rules",
    }
}
const TENANT_FIELDS: &[&str] = &["id", "name"];
const APP_FIELDS: &[&str] = &["id", "tenant", "name", "enabled"];
const KEY_FIELDS: &[&str] = &[
    "access_key",
    "app_id",
    "scheme",
    "scheme_settings",
    "enabled",
    "valid_from",
    "valid_to",
    "timestamp_window_secs",
    "description",
    "scopes",
    "allowed_endpoints",
    "allowed_cidrs",
    "rate_limit",
    "auth_policy",
    // Store-owned: exported for reviewers, ignored by import.
    "created_by",
    "successor",
    "overlap_until",
    "secret",
];
/// Key fields import compares and writes (the rest are the store's).
const KEY_POLICY_FIELDS: &[&str] = &[
    "app_id",
    "scheme",
    "scheme_settings",
    "enabled",
    "valid_from",
    "valid_to",
    "timestamp_window_secs",
    "description",
    "scopes",
    "allowed_endpoints",
    "allowed_cidrs",
    "rate_limit",
    "auth_policy",
];
const RATE_FIELDS: &[&str] = &["rate_per_sec", "burst"];
const SECRET_FIELDS: &[&str] = &["ref", "env", "file"];
const PROVIDER_FIELDS: &[&str] = &["id", "tenant", "secrets", "config", "script"];
const SCRIPT_FIELDS: &[&str] = &["active_version", "source_sha256", "source"];

// ---------------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------------

async fn export(store: &Store, only: &[String]) -> Result<String> {
    let mut tenants = store.list_tenants().await?;
    for t in only {
        if !tenants.iter().any(|x| &x.id == t) {
            bail!("tenant {t} not found");
        }
    }
    if !only.is_empty() {
        tenants.retain(|t| only.contains(&t.id));
    }
    tenants.sort_by(|a, b| a.id.cmp(&b.id));
    let tenant_ids: BTreeSet<&str> = tenants.iter().map(|t| t.id.as_str()).collect();
    let mut apps: Vec<AppRecord> =
        store.list_apps().await?.into_iter().filter(|a| tenant_ids.contains(a.tenant_id.as_str())).collect();
    apps.sort_by(|a, b| a.id.cmp(&b.id));
    let app_ids: BTreeSet<&str> = apps.iter().map(|a| a.id.as_str()).collect();
    let mut keys: Vec<KeyRecord> =
        store.list_keys(None).await?.into_iter().filter(|k| app_ids.contains(k.app_id.as_str())).collect();
    keys.sort_by(|a, b| (&a.app_id, &a.access_key).cmp(&(&b.app_id, &b.access_key)));
    let mut providers: Vec<ProviderRecord> = store
        .list_providers(None)
        .await?
        .into_iter()
        .filter(|p| tenant_ids.contains(p.tenant_id.as_str()))
        .collect();
    providers.sort_by(|a, b| a.id.cmp(&b.id));
    let mut provider_entries = Vec::with_capacity(providers.len());
    for p in providers {
        let mut secrets: Vec<String> =
            store.list_provider_secrets(&p.id).await?.into_iter().map(|s| s.name).collect();
        secrets.sort();
        let (config, script) = split_script(&p.config);
        let script = script.map(|(source, version)| ScriptEntry {
            active_version: version,
            source_sha256: Some(sha256_hex(&source)),
            source,
        });
        provider_entries.push(ProviderEntry { id: p.id, tenant: p.tenant_id, config, secrets, script });
    }
    let objects: Vec<TenantObject> = store
        .list_tenant_objects(None, None)
        .await?
        .into_iter()
        .filter(|o| tenant_ids.contains(o.tenant_id.as_str()))
        .collect();

    let mut w = Writer::default();
    w.line("# keygate config export (docs/config-io.md). Secrets are references, never values;");
    w.line("# created_by, successor and overlap_until are the store's and are ignored by import.");
    w.line(&format!("# exported_at: {}", rfc3339(now_secs())));
    w.line(&format!("version = {FORMAT_VERSION}"));
    for t in &tenants {
        w.blank();
        w.line("[[tenants]]");
        w.kv("id", &quote(&t.id));
        w.kv("name", &quote(&t.name));
    }
    for a in &apps {
        w.blank();
        w.line("[[apps]]");
        w.kv("id", &quote(&a.id));
        w.kv("tenant", &quote(&a.tenant_id));
        w.kv("name", &quote(&a.name));
        w.kv("enabled", &a.enabled.to_string());
    }
    for k in &keys {
        w.blank();
        w.line("[[keys]]");
        write_key(&mut w, k).with_context(|| format!("exporting key {}", k.access_key))?;
    }
    for p in &provider_entries {
        w.blank();
        w.line("[[providers]]");
        w.kv("id", &quote(&p.id));
        w.kv("tenant", &quote(&p.tenant));
        w.kv("secrets", &format!("[{}]", p.secrets.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")));
        w.blank();
        write_table(&mut w, "providers.config", &p.config)
            .with_context(|| format!("exporting provider {}", p.id))?;
        if let Some(s) = &p.script {
            w.blank();
            w.line("[providers.script]");
            if let Some(v) = s.active_version {
                w.kv("active_version", &v.to_string());
            }
            if let Some(h) = &s.source_sha256 {
                w.kv("source_sha256", &quote(h));
            }
            w.kv("source", &multiline(&s.source));
        }
    }
    for kind in ObjectKind::ALL {
        let array = object_array(kind);
        for o in objects.iter().filter(|o| o.kind == kind) {
            w.blank();
            w.line(&format!("[[{array}]]"));
            w.kv("tenant", &quote(&o.tenant_id));
            w.kv("name", &quote(&o.name));
            w.blank();
            write_table(&mut w, &format!("{array}.config"), &o.config)
                .with_context(|| format!("exporting {} {}", kind, o.target()))?;
        }
    }
    Ok(w.out)
}

fn write_key(w: &mut Writer, k: &KeyRecord) -> Result<()> {
    w.kv("access_key", &quote(&k.access_key));
    w.kv("app_id", &quote(&k.app_id));
    w.kv("scheme", &quote(&k.scheme));
    w.kv("scheme_settings", &inline(&strip_nulls(&k.scheme_settings), "scheme_settings")?);
    w.kv("enabled", &k.enabled.to_string());
    if let Some(v) = k.valid_from {
        w.kv("valid_from", &v.to_string());
    }
    if let Some(v) = k.valid_to {
        w.kv("valid_to", &v.to_string());
    }
    w.kv("timestamp_window_secs", &k.timestamp_window_secs.to_string());
    w.kv("description", &multiline(&k.description));
    w.kv("scopes", &string_list(&k.scopes));
    w.kv("allowed_endpoints", &string_list(&k.allowed_endpoints));
    w.kv("allowed_cidrs", &string_list(&k.allowed_cidrs));
    if let Some(r) = &k.rate_limit {
        w.kv("rate_limit", &format!("{{ rate_per_sec = {}, burst = {} }}", float(r.rate_per_sec), r.burst));
    }
    w.kv("auth_policy", &quote(&k.auth_policy));
    w.kv("created_by", &quote(&k.created_by));
    if let Some(s) = &k.successor {
        w.kv("successor", &quote(s));
    }
    if let Some(v) = k.overlap_until {
        w.kv("overlap_until", &v.to_string());
    }
    w.kv("secret", "{ ref = \"store\" }");
    Ok(())
}

/// A script recipe's document without its source and version, and those two.
fn split_script(config: &Json) -> (Json, Option<(String, Option<i64>)>) {
    let mut config = config.clone();
    let Some(recipe) = config.get_mut("recipe").and_then(Json::as_object_mut) else {
        return (config, None);
    };
    if recipe.get("type").and_then(Json::as_str) != Some("script") {
        return (config, None);
    }
    let version = recipe.remove("version").and_then(|v| v.as_i64());
    match recipe.remove("source") {
        Some(Json::String(source)) => (config, Some((source, version))),
        Some(other) => {
            // Not a string: leave it where it was, the parser reports it.
            recipe.insert("source".into(), other);
            (config, None)
        }
        None => (config, None),
    }
}

/// `config` with the script's source and version put back into its recipe.
fn join_script(config: &Json, source: &str, version: Option<i64>) -> Json {
    let mut config = config.clone();
    if let Some(recipe) = config.get_mut("recipe").and_then(Json::as_object_mut) {
        recipe.insert("source".into(), Json::String(source.to_string()));
        match version {
            Some(v) => recipe.insert("version".into(), Json::from(v)),
            None => recipe.remove("version"),
        };
    }
    config
}

fn sha256_hex(text: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref())
}

// ---- TOML writing (by hand: stable order, inline tables and multi-line strings where they read
// best) ----

#[derive(Debug, Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }
    fn blank(&mut self) {
        self.out.push('\n');
    }
    fn kv(&mut self, k: &str, v: &str) {
        let _ = writeln!(self.out, "{} = {v}", bare_or_quoted(k));
    }
}

fn bare_or_quoted(k: &str) -> String {
    if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        k.to_string()
    } else {
        quote(k)
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A multi-line literal string (`'''`, read back byte for byte) for text with newlines, when
/// that form can hold it; otherwise a basic string.
fn multiline(s: &str) -> String {
    let literal_ok = s.contains('\n')
        && !s.contains("'''")
        && !s.ends_with('\'')
        && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    if literal_ok {
        format!("'''\n{s}'''")
    } else {
        quote(s)
    }
}

fn string_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", "))
}

/// A TOML float that reads back as the same f64.
fn float(f: f64) -> String {
    let s = format!("{f:?}");
    if s.contains(['.', 'e', 'E']) || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// A JSON value as an inline TOML value. Object members that are null are left out (TOML has
/// no null, and an absent member reads the same); a null elsewhere is an error.
fn inline(v: &Json, path: &str) -> Result<String> {
    Ok(match v {
        Json::Null => bail!("{path} is null, which TOML cannot hold"),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(f) = n.as_f64().filter(|_| n.as_u64().is_none()) {
                float(f)
            } else {
                bail!("{path}: {n} does not fit a TOML integer")
            }
        }
        Json::String(s) => quote(s),
        Json::Array(a) => {
            let items: Result<Vec<String>> =
                a.iter().enumerate().map(|(i, x)| inline(x, &format!("{path}[{i}]"))).collect();
            format!("[{}]", items?.join(", "))
        }
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k).collect();
            keys.sort();
            if keys.is_empty() {
                return Ok("{}".into());
            }
            let mut parts = Vec::with_capacity(keys.len());
            for k in keys {
                parts.push(format!("{} = {}", bare_or_quoted(k), inline(&m[k], &format!("{path}.{k}"))?));
            }
            format!("{{ {} }}", parts.join(", "))
        }
    })
}

/// A JSON object as a `[header]` table: scalars, arrays and empty objects inline first (sorted),
/// then each non-empty object as its own sub-table.
fn write_table(w: &mut Writer, header: &str, v: &Json) -> Result<()> {
    let Json::Object(m) = v else { bail!("{header} must be an object") };
    w.line(&format!("[{header}]"));
    let mut keys: Vec<&String> = m.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k).collect();
    keys.sort();
    let is_section = |v: &Json| matches!(v, Json::Object(o) if o.values().any(|x| !x.is_null()));
    for k in &keys {
        let v = &m[*k];
        if !is_section(v) {
            let text = match v {
                Json::String(s) => multiline(s),
                other => inline(other, &format!("{header}.{k}"))?,
            };
            w.kv(k, &text);
        }
    }
    for k in &keys {
        let v = &m[*k];
        if is_section(v) {
            w.blank();
            write_table(w, &format!("{header}.{}", bare_or_quoted(k)), v)?;
        }
    }
    Ok(())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (Howard Hinnant's civil_from_days).
fn rfc3339(secs: i64) -> String {
    let c = keygate_sign::civil::Civil::from_unix(secs);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", c.year, c.month, c.day, c.hour, c.minute, c.second)
}

// ---------------------------------------------------------------------------------------------
// Parsing (every error names its field path, e.g. `keys[2].descripton`)
// ---------------------------------------------------------------------------------------------

fn parse(text: &str) -> Result<Doc> {
    let root: toml::Table =
        toml::from_str(text).map_err(|e| invalid(vec![format!("not valid TOML: {e}")]))?;
    let mut problems = Vec::new();
    let root_obj = Obj::new("document".into(), &root, ROOT_FIELDS);
    if let Err(e) = &root_obj {
        problems.push(e.clone());
    }
    match root.get("version") {
        None => problems.push("version: missing (this build reads version = 1)".into()),
        Some(toml::Value::Integer(FORMAT_VERSION)) => {}
        Some(v) => problems.push(format!("version: {v} is not supported (this build reads version = 1)")),
    }
    let mut doc = Doc::default();
    for (i, v) in array_of_tables(&root, "tenants", &mut problems).iter().enumerate() {
        match parse_tenant(&format!("tenants[{i}]"), v) {
            Ok(t) => doc.tenants.push(t),
            Err(e) => problems.push(e),
        }
    }
    for (i, v) in array_of_tables(&root, "apps", &mut problems).iter().enumerate() {
        match parse_app(&format!("apps[{i}]"), v) {
            Ok(a) => doc.apps.push(a),
            Err(e) => problems.push(e),
        }
    }
    for (i, v) in array_of_tables(&root, "keys", &mut problems).iter().enumerate() {
        match parse_key(&format!("keys[{i}]"), v) {
            Ok(k) => doc.keys.push(k),
            Err(e) => problems.push(e),
        }
    }
    for (i, v) in array_of_tables(&root, "providers", &mut problems).iter().enumerate() {
        match parse_provider(&format!("providers[{i}]"), v) {
            Ok(p) => doc.providers.push(p),
            Err(e) => problems.push(e),
        }
    }
    for kind in ObjectKind::ALL {
        let array = object_array(kind);
        for (i, v) in array_of_tables(&root, array, &mut problems).iter().enumerate() {
            match parse_object(&format!("{array}[{i}]"), v, kind) {
                Ok(o) => doc.objects.push(o),
                Err(e) => problems.push(e),
            }
        }
    }
    if problems.is_empty() {
        Ok(doc)
    } else {
        problems.truncate(MAX_PROBLEMS);
        Err(invalid(problems))
    }
}

fn array_of_tables<'a>(
    root: &'a toml::Table,
    name: &str,
    problems: &mut Vec<String>,
) -> Vec<&'a toml::Value> {
    match root.get(name) {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a.iter().collect(),
        Some(_) => {
            problems.push(format!("{name}: must be an array of tables ([[{name}]])"));
            Vec::new()
        }
    }
}

/// One table of the document, with its path for error messages.
struct Obj<'a> {
    path: String,
    t: &'a toml::Table,
}

type Field<T> = std::result::Result<T, String>;

impl<'a> Obj<'a> {
    fn new(path: String, t: &'a toml::Table, allowed: &[&str]) -> Field<Self> {
        for k in t.keys() {
            if !allowed.contains(&k.as_str()) {
                let sep = if path == "document" { String::new() } else { format!("{path}.") };
                return Err(format!("{sep}{k}: unknown field (expected one of: {})", allowed.join(", ")));
            }
        }
        Ok(Self { path, t })
    }

    fn of(path: String, v: &'a toml::Value, allowed: &[&str]) -> Field<Self> {
        match v.as_table() {
            Some(t) => Self::new(path, t, allowed),
            None => Err(format!("{path}: must be a table")),
        }
    }

    fn at(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    fn get(&self, name: &str) -> Option<&'a toml::Value> {
        self.t.get(name)
    }

    fn opt_str(&self, name: &str) -> Field<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{}: must be a string", self.at(name))),
        }
    }

    fn str(&self, name: &str) -> Field<String> {
        self.opt_str(name)?.ok_or_else(|| format!("{}: missing", self.at(name)))
    }

    fn bool(&self, name: &str, default: bool) -> Field<bool> {
        match self.get(name) {
            None => Ok(default),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(_) => Err(format!("{}: must be true or false", self.at(name))),
        }
    }

    fn opt_int(&self, name: &str) -> Field<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(*i)),
            Some(_) => Err(format!("{}: must be an integer", self.at(name))),
        }
    }

    /// Unix seconds, or a TOML datetime with an offset.
    fn opt_time(&self, name: &str) -> Field<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(*i)),
            Some(toml::Value::Datetime(dt)) => {
                crate::time::datetime_to_unix(dt).map(Some).map_err(|e| format!("{}: {e}", self.at(name)))
            }
            Some(_) => Err(format!("{}: must be Unix seconds or a datetime with offset", self.at(name))),
        }
    }

    fn strs(&self, name: &str) -> Field<Vec<String>> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    _ => Err(format!("{}[{i}]: must be a string", self.at(name))),
                })
                .collect(),
            Some(_) => Err(format!("{}: must be an array of strings", self.at(name))),
        }
    }
}

fn parse_tenant(path: &str, v: &toml::Value) -> Field<TenantRecord> {
    let o = Obj::of(path.into(), v, TENANT_FIELDS)?;
    let id = o.str("id")?;
    let name = o.opt_str("name")?.unwrap_or_else(|| id.clone());
    Ok(TenantRecord { id, name })
}

fn parse_app(path: &str, v: &toml::Value) -> Field<AppRecord> {
    let o = Obj::of(path.into(), v, APP_FIELDS)?;
    let id = o.str("id")?;
    Ok(AppRecord {
        tenant_id: o.str("tenant")?,
        name: o.opt_str("name")?.unwrap_or_else(|| id.clone()),
        enabled: o.bool("enabled", true)?,
        id,
    })
}

fn parse_key(path: &str, v: &toml::Value) -> Field<KeyEntry> {
    let o = Obj::of(path.into(), v, KEY_FIELDS)?;
    let d = KeyRecord::default();
    let scheme_settings = match o.get("scheme_settings") {
        None => d.scheme_settings.clone(),
        Some(v @ toml::Value::Table(_)) => to_json(v, &o.at("scheme_settings"))?,
        Some(_) => return Err(format!("{}: must be a table", o.at("scheme_settings"))),
    };
    let window = match o.opt_int("timestamp_window_secs")? {
        None => d.timestamp_window_secs,
        Some(w) => u32::try_from(w)
            .map_err(|_| format!("{}: must be between 1 and 86400", o.at("timestamp_window_secs")))?,
    };
    let rate_limit = match o.get("rate_limit") {
        None => None,
        Some(v) => {
            let r = Obj::of(o.at("rate_limit"), v, RATE_FIELDS)?;
            let rate = match r.get("rate_per_sec") {
                Some(toml::Value::Float(f)) => *f,
                Some(toml::Value::Integer(i)) => *i as f64,
                Some(_) => return Err(format!("{}: must be a number", r.at("rate_per_sec"))),
                None => return Err(format!("{}: missing", r.at("rate_per_sec"))),
            };
            let burst = r.opt_int("burst")?.ok_or_else(|| format!("{}: missing", r.at("burst")))?;
            let burst = u32::try_from(burst)
                .map_err(|_| format!("{}: must be between 1 and {}", r.at("burst"), u32::MAX))?;
            Some(RateLimit { rate_per_sec: rate, burst })
        }
    };
    let secret = match o.get("secret") {
        None => SecretRef::Store,
        Some(v) => {
            let s = Obj::of(o.at("secret"), v, SECRET_FIELDS)?;
            match (s.opt_str("ref")?, s.opt_str("env")?, s.opt_str("file")?) {
                (Some(r), None, None) if r == "store" => SecretRef::Store,
                (Some(_), None, None) => return Err(format!("{}: the only reference is \"store\"", s.at("ref"))),
                (None, Some(var), None) if !var.is_empty() => SecretRef::Env(var),
                (None, None, Some(file)) if !file.is_empty() => SecretRef::File(PathBuf::from(file)),
                _ => {
                    return Err(format!(
                        "{}: give exactly one of {{ ref = \"store\" }}, {{ env = \"VAR\" }} or {{ file = \"path\" }}",
                        o.at("secret")
                    ))
                }
            }
        }
    };
    // Store-owned fields are read for their type only.
    o.opt_str("created_by")?;
    o.opt_str("successor")?;
    o.opt_int("overlap_until")?;
    let record = KeyRecord {
        access_key: o.str("access_key")?,
        app_id: o.str("app_id")?,
        scheme: o.opt_str("scheme")?.unwrap_or(d.scheme),
        scheme_settings,
        enabled: o.bool("enabled", true)?,
        valid_from: o.opt_time("valid_from")?,
        valid_to: o.opt_time("valid_to")?,
        timestamp_window_secs: window,
        description: o.opt_str("description")?.unwrap_or_default(),
        scopes: o.strs("scopes")?,
        allowed_endpoints: o.strs("allowed_endpoints")?,
        allowed_cidrs: o.strs("allowed_cidrs")?,
        rate_limit,
        auth_policy: o.opt_str("auth_policy")?.unwrap_or(d.auth_policy),
        ..KeyRecord::default()
    };
    Ok(KeyEntry { record, secret })
}

fn parse_provider(path: &str, v: &toml::Value) -> Field<ProviderEntry> {
    let o = Obj::of(path.into(), v, PROVIDER_FIELDS)?;
    let id = o.str("id")?;
    let tenant = o.str("tenant")?;
    let secrets = o.strs("secrets")?;
    let config = match o.get("config") {
        Some(v @ toml::Value::Table(_)) => to_json(v, &o.at("config"))?,
        Some(_) => return Err(format!("{}: must be a table", o.at("config"))),
        None => return Err(format!("{}: missing", o.at("config"))),
    };
    let (config, inline_script) = split_script(&config);
    let script = match o.get("script") {
        None => {
            inline_script.map(|(source, _)| ScriptEntry { active_version: None, source_sha256: None, source })
        }
        Some(v) => {
            let s = Obj::of(o.at("script"), v, SCRIPT_FIELDS)?;
            let is_script = config
                .get("recipe")
                .and_then(|r| r.get("type"))
                .and_then(Json::as_str)
                .is_some_and(|t| t == "script");
            if !is_script {
                return Err(format!(
                    "{}: only for a provider whose config.recipe.type is \"script\"",
                    s.path
                ));
            }
            let entry = ScriptEntry {
                active_version: s.opt_int("active_version")?,
                source_sha256: s.opt_str("source_sha256")?,
                source: s.str("source")?,
            };
            if inline_script.is_some_and(|(inline, _)| inline != entry.source) {
                return Err(format!(
                    "{}: differs from {}; keep the source in [providers.script] only",
                    o.at("config.recipe.source"),
                    s.at("source")
                ));
            }
            Some(entry)
        }
    };
    Ok(ProviderEntry { id, tenant, config, secrets, script })
}

fn parse_object(path: &str, v: &toml::Value, kind: ObjectKind) -> Field<TenantObject> {
    let o = Obj::of(path.into(), v, OBJECT_FIELDS)?;
    let config = match o.get("config") {
        Some(v @ toml::Value::Table(_)) => to_json(v, &o.at("config"))?,
        Some(_) => return Err(format!("{}: must be a table", o.at("config"))),
        None => return Err(format!("{}: missing", o.at("config"))),
    };
    Ok(TenantObject {
        tenant_id: o.str("tenant")?,
        kind,
        name: o.str("name")?,
        config,
        created_at: 0,
        updated_at: 0,
        updated_by: String::new(),
    })
}

/// A TOML value as JSON (for scheme settings and provider documents).
fn to_json(v: &toml::Value, path: &str) -> Field<Json> {
    Ok(match v {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| format!("{path}: inf and nan are not allowed"))?,
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(_) => {
            return Err(format!("{path}: a TOML datetime is not allowed here; write it as a string"))
        }
        toml::Value::Array(a) => Json::Array(
            a.iter().enumerate().map(|(i, x)| to_json(x, &format!("{path}[{i}]"))).collect::<Field<_>>()?,
        ),
        toml::Value::Table(t) => Json::Object(
            t.iter()
                .map(|(k, x)| Ok((k.clone(), to_json(x, &format!("{path}.{k}"))?)))
                .collect::<Field<_>>()?,
        ),
    })
}

/// `v` without null object members, recursively (TOML cannot hold them; absent reads the same).
fn strip_nulls(v: &Json) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.iter().filter(|(_, x)| !x.is_null()).map(|(k, x)| (k.clone(), strip_nulls(x))).collect(),
        ),
        Json::Array(a) => Json::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Import: validate, diff, apply
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct ImportOptions {
    dry_run: bool,
    prune: bool,
}

/// What the store holds that the document is compared with.
#[derive(Debug)]
struct Current {
    tenants: BTreeMap<String, TenantRecord>,
    apps: BTreeMap<String, AppRecord>,
    keys: BTreeMap<String, KeyRecord>,
    providers: BTreeMap<String, ProviderRecord>,
    objects: BTreeMap<(String, ObjectKind, String), TenantObject>,
}

impl Current {
    async fn load(store: &Store) -> Result<Self> {
        Ok(Self {
            tenants: store.list_tenants().await?.into_iter().map(|t| (t.id.clone(), t)).collect(),
            apps: store.list_apps().await?.into_iter().map(|a| (a.id.clone(), a)).collect(),
            keys: store.list_keys(None).await?.into_iter().map(|k| (k.access_key.clone(), k)).collect(),
            providers: store.list_providers(None).await?.into_iter().map(|p| (p.id.clone(), p)).collect(),
            objects: store
                .list_tenant_objects(None, None)
                .await?
                .into_iter()
                .map(|o| ((o.tenant_id.clone(), o.kind, o.name.clone()), o))
                .collect(),
        })
    }

    fn tenant_of_key(&self, k: &KeyRecord) -> Option<&str> {
        self.apps.get(&k.app_id).map(|a| a.tenant_id.as_str())
    }
}

/// One line of the diff.
#[derive(Debug)]
struct Entry {
    change: Change,
    what: String,
    details: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Create,
    Update,
    Same,
    Delete,
}

/// A write, in apply order.
enum Op {
    CreateTenant(TenantRecord),
    UpdateTenant(TenantRecord),
    CreateApp(AppRecord),
    UpdateApp(AppRecord),
    /// A new key, or an existing one whose secret is replaced: metadata and secret together.
    UpsertKey(KeyRecord, Zeroizing<Vec<u8>>),
    UpdateKey(KeyRecord),
    PutProvider(ProviderPlan),
    PutObject(TenantObject),
    DeleteObject(TenantObject),
    DeleteKey(String),
    DeleteProvider(String),
    DeleteApp(String),
}

impl Op {
    /// What the write does, for error messages. Never the secret of `UpsertKey`.
    fn label(&self) -> String {
        match self {
            Op::CreateTenant(t) => format!("create tenant {}", t.id),
            Op::UpdateTenant(t) => format!("update tenant {}", t.id),
            Op::CreateApp(a) => format!("create app {}", a.id),
            Op::UpdateApp(a) => format!("update app {}", a.id),
            Op::UpsertKey(k, _) => format!("write key {}", k.access_key),
            Op::UpdateKey(k) => format!("update key {}", k.access_key),
            Op::PutProvider(p) => format!("write provider {}", p.record.id),
            Op::PutObject(o) => format!("write {} {}", o.kind, o.target()),
            Op::DeleteObject(o) => format!("delete {} {}", o.kind, o.target()),
            Op::DeleteKey(id) => format!("delete key {id}"),
            Op::DeleteProvider(id) => format!("delete provider {id}"),
            Op::DeleteApp(id) => format!("delete app {id}"),
        }
    }
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Op({})", self.label())
    }
}

#[derive(Debug)]
struct ProviderPlan {
    /// The document to store (with the script's source, and its version unless `new_script`).
    record: ProviderRecord,
    /// Write the document (it changed, or the script did).
    write_config: bool,
    /// Save the source as the next script version and activate it.
    new_script: Option<String>,
    delete_secrets: Vec<String>,
    exists: bool,
}

/// What an import would do (the diff, in lines) and the writes that do it. Building it writes
/// nothing: the document is validated and compared with the store first.
pub(crate) struct Prepared {
    pub lines: Vec<String>,
    pub summary: String,
    pub warnings: Vec<String>,
    pub counts: [usize; 4],
    ops: Vec<Op>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("summary", &self.summary).finish_non_exhaustive()
    }
}

impl Prepared {
    /// True when applying would write nothing.
    pub fn is_noop(&self) -> bool {
        self.counts[0] + self.counts[1] + self.counts[2] == 0
    }
}

pub(crate) async fn prepare(
    store: &Store,
    doc: Doc,
    base_dir: &Path,
    prune: bool,
    policy: Option<&crate::tenant_objects::Policy>,
) -> Result<Prepared> {
    let opts = ImportOptions { dry_run: true, prune };
    check_document(&doc, policy)?;
    validate_in_scratch_store(&doc).await?;
    check_keys_for_gateway(&doc)?;
    let cur = Current::load(store).await?;
    let Plan { entries, ops, warnings, .. } = plan(store, &doc, &cur, base_dir, &opts).await?;
    let mut lines = Vec::new();
    let mut counts = [0usize; 4];
    for e in &entries {
        let (sign, word, slot) = match e.change {
            Change::Create => ('+', "create", 0),
            Change::Update => ('~', "update", 1),
            Change::Delete => ('-', "delete", 2),
            Change::Same => ('=', "unchanged", 3),
        };
        counts[slot] += 1;
        lines.push(format!("{sign} {word} {}", e.what));
        for d in &e.details {
            lines.push(format!("      {d}"));
        }
    }
    let summary = format!(
        "{} to create, {} to update, {} to delete, {} unchanged",
        counts[0], counts[1], counts[2], counts[3]
    );
    Ok(Prepared { lines, summary, warnings, counts, ops })
}

/// Applies a prepared import, one audited store write per object, in plan order.
pub(crate) async fn apply_prepared(store: &Store, p: Prepared) -> Result<()> {
    for op in p.ops {
        let label = op.label();
        apply(store, op).await.with_context(|| {
            format!("applying {label} (earlier writes are kept; re-run import to converge)")
        })?;
    }
    Ok(())
}

/// A tenant's configuration as stored in a version: the export without its timestamp line, so
/// the same configuration always gives the same document.
pub(crate) async fn tenant_document(store: &Store, tenant: &str) -> Result<String> {
    let text = export(store, &[tenant.to_string()]).await?;
    Ok(text.lines().filter(|l| !l.starts_with("# exported_at:")).map(|l| format!("{l}\n")).collect())
}

/// How long an import or rollback may hold the publish fence; a dead publisher's fence expires.
pub(crate) const PUBLISH_FENCE_SECS: i64 = 120;

/// Parses a stored or uploaded document.
pub(crate) fn parse_document(text: &str) -> Result<Doc> {
    parse(text)
}

async fn import(
    store: &Store,
    doc: Doc,
    base_dir: &Path,
    opts: &ImportOptions,
    policy: Option<&crate::tenant_objects::Policy>,
) -> Result<u8> {
    let tenants: Vec<String> = doc.tenants.iter().map(|t| t.id.clone()).collect();
    if policy.is_none() && doc.objects.iter().any(|o| o.kind == ObjectKind::Route) {
        eprintln!(
            "warning: routes were checked without the gateway's [tenant_routes] policy (give -c keygate.toml); \
             a gateway refuses to load routes that break it"
        );
    }
    let p = prepare(store, doc, base_dir, opts.prune, policy).await?;
    let mut out = std::io::stdout().lock();
    for l in &p.lines {
        writeln!(out, "{l}")?;
    }
    for w in &p.warnings {
        eprintln!("warning: {w}");
    }
    writeln!(out, "{}", p.summary)?;
    if opts.dry_run {
        writeln!(out, "dry run: nothing was written")?;
        return Ok(0);
    }
    drop(out);
    let counts = p.counts;
    if !p.is_noop() {
        // Behind the publish fence: running replicas keep their snapshot until the whole
        // document is written, then load it at once (docs/versions.md).
        if !store.begin_publish(PUBLISH_FENCE_SECS).await? {
            bail!("another change is being published (a rollback or an import); retry in a moment");
        }
        let applied = apply_prepared(store, p).await;
        let ended = store.end_publish().await;
        applied?;
        ended?;
        // Each tenant of the document gets a config version, as admin API changes do.
        for t in &tenants {
            let doc = tenant_document(store, t).await?;
            if let Some(v) = store.add_config_version(t, "config import", &doc).await? {
                println!("tenant {t}: version {}", v.version);
            }
        }
    }
    println!(
        "applied: {} created, {} updated, {} deleted, {} unchanged (audited as {})",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        store.actor()
    );
    Ok(0)
}

/// Checks needing no store: duplicates and references inside the document, and tenant objects
/// against the operator's policy (when the caller has it; else their own syntax only).
fn check_document(doc: &Doc, policy: Option<&crate::tenant_objects::Policy>) -> Result<()> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, t) in doc.tenants.iter().enumerate() {
        if !seen.insert(t.id.as_str()) {
            problems.push(format!("tenants[{i}].id: duplicate tenant {}", t.id));
        }
    }
    let tenants = seen;
    let mut apps = BTreeMap::new();
    for (i, a) in doc.apps.iter().enumerate() {
        if apps.insert(a.id.as_str(), a.tenant_id.as_str()).is_some() {
            problems.push(format!("apps[{i}].id: duplicate app {}", a.id));
        }
        if !tenants.contains(a.tenant_id.as_str()) {
            problems.push(format!(
                "apps[{i}].tenant: tenant {} is not in the document's [[tenants]]",
                a.tenant_id
            ));
        }
    }
    let mut keys = BTreeSet::new();
    for (i, k) in doc.keys.iter().enumerate() {
        let r = &k.record;
        if !keys.insert(r.access_key.as_str()) {
            problems.push(format!("keys[{i}].access_key: duplicate key {}", r.access_key));
        }
        if !apps.contains_key(r.app_id.as_str()) {
            problems.push(format!("keys[{i}].app_id: app {} is not in the document's [[apps]]", r.app_id));
        }
    }
    let mut providers = BTreeSet::new();
    for (i, p) in doc.providers.iter().enumerate() {
        if !providers.insert(p.id.as_str()) {
            problems.push(format!("providers[{i}].id: duplicate provider {}", p.id));
        }
        if !tenants.contains(p.tenant.as_str()) {
            problems.push(format!(
                "providers[{i}].tenant: tenant {} is not in the document's [[tenants]]",
                p.tenant
            ));
        }
        let mut names = BTreeSet::new();
        for (j, s) in p.secrets.iter().enumerate() {
            if !names.insert(s.as_str()) {
                problems.push(format!("providers[{i}].secrets[{j}]: duplicate secret name {s}"));
            }
        }
        let full = desired_config(p, None);
        if let Err((field, reason)) = crate::outbound::validate_provider(&full) {
            let field = match (field.as_str(), &p.script) {
                ("recipe.source", Some(_)) => format!("providers[{i}].script.source"),
                ("", _) => format!("providers[{i}].config"),
                (f, _) => format!("providers[{i}].config.{f}"),
            };
            problems.push(format!("{field}: {reason}"));
        }
    }
    let mut objects = BTreeSet::new();
    for kind in ObjectKind::ALL {
        let array = object_array(kind);
        let of_kind: Vec<&TenantObject> = doc.objects.iter().filter(|o| o.kind == kind).collect();
        for (i, o) in of_kind.iter().enumerate() {
            if !objects.insert((o.tenant_id.as_str(), kind, o.name.as_str())) {
                problems.push(format!(
                    "{array}[{i}].name: duplicate {kind} {} of tenant {}",
                    o.name, o.tenant_id
                ));
            }
            if !tenants.contains(o.tenant_id.as_str()) {
                problems.push(format!(
                    "{array}[{i}].tenant: tenant {} is not in the document's [[tenants]]",
                    o.tenant_id
                ));
            }
            let siblings: Vec<TenantObject> =
                of_kind.iter().filter(|s| s.tenant_id == o.tenant_id).map(|s| (*s).clone()).collect();
            if let Err(reason) = crate::tenant_objects::check_object(policy, o, &siblings) {
                problems.push(format!("{array}[{i}].config: {reason}"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.truncate(MAX_PROBLEMS);
        Err(invalid(problems))
    }
}

/// Runs the gateway's own key check (`serve::validate_key`) on every key (after the store's checks, which name fields more
/// precisely for what both check).
fn check_keys_for_gateway(doc: &Doc) -> Result<()> {
    let mut problems = Vec::new();
    for (i, k) in doc.keys.iter().enumerate() {
        if let Err((field, reason)) = crate::serve::validate_key(&k.record) {
            let field = field.strip_prefix("key.").unwrap_or(&field);
            problems.push(format!("keys[{i}].{field}: {reason}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.truncate(MAX_PROBLEMS);
        Err(invalid(problems))
    }
}

/// The full provider document: the script's source and version put back.
fn desired_config(p: &ProviderEntry, version: Option<i64>) -> Json {
    match &p.script {
        Some(s) => join_script(&p.config, &s.source, version),
        None => p.config.clone(),
    }
}

/// Writes the document into a throwaway in-memory store, so the store's own validation (field
/// syntax, lengths, CIDRs, endpoint patterns, …) judges every object before the real store is
/// touched. Errors name the document's path (`keys[3].allowed_cidrs[0]`).
async fn validate_in_scratch_store(doc: &Doc) -> Result<()> {
    let (mk, _) = keygate_store::MasterKey::generate(1)?;
    let keyring = Arc::new(keygate_store::Keyring::new([mk])?);
    let scratch = Store::open("sqlite::memory:", keyring).await.context("opening a scratch store")?;
    let result = scratch_writes(&scratch, doc).await;
    scratch.close().await;
    let problems = result?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(invalid(problems))
    }
}

async fn scratch_writes(s: &Store, doc: &Doc) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    // Placeholder for keys whose secret is resolved later (its length is checked then).
    let placeholder = [b'x'; 32];
    for (i, t) in doc.tenants.iter().enumerate() {
        if let Err(e) = s.create_tenant(t).await {
            problems.push(store_problem(e, &format!("tenants[{i}]"), "tenant", &[("id", "id")])?);
        }
    }
    for (i, a) in doc.apps.iter().enumerate() {
        if let Err(e) = s.create_app(a).await {
            problems.push(store_problem(e, &format!("apps[{i}]"), "app", &[("tenant_id", "tenant")])?);
        }
    }
    for (i, k) in doc.keys.iter().enumerate() {
        if let Err(e) = s.import_key(&k.record, &placeholder).await {
            problems.push(store_problem(e, &format!("keys[{i}]"), "key", &[])?);
        }
    }
    for (i, p) in doc.providers.iter().enumerate() {
        let path = format!("providers[{i}]");
        let rec = ProviderRecord {
            id: p.id.clone(),
            tenant_id: p.tenant.clone(),
            config: desired_config(p, None),
            created_at: 0,
            updated_at: 0,
            updated_by: String::new(),
        };
        if let Err(e) = s.put_provider(&rec).await {
            problems.push(store_problem(e, &path, "provider", &[("tenant_id", "tenant")])?);
            continue;
        }
        for (j, name) in p.secrets.iter().enumerate() {
            if let Err(e) = s.put_provider_secret(&p.id, name, b"x").await {
                problems.push(store_problem(e, &format!("{path}.secrets[{j}]"), "secret.name", &[])?);
            }
        }
        if let Some(script) = &p.script {
            if let Err(e) = s.add_provider_script(&p.id, &script.source, ACTOR).await {
                problems.push(store_problem(e, &format!("{path}.script"), "script", &[])?);
            }
        }
    }
    for (i, o) in doc.objects.iter().enumerate() {
        let idx = doc.objects[..i].iter().filter(|x| x.kind == o.kind).count();
        let path = format!("{}[{idx}]", object_array(o.kind));
        if let Err(e) = s.put_tenant_object(o).await {
            problems.push(store_problem(e, &path, "object", &[("tenant_id", "tenant")])?);
        }
    }
    problems.truncate(MAX_PROBLEMS);
    Ok(problems)
}

/// A store refusal as a document problem: `invalid key.scopes[1]: …` of `keys[3]` becomes
/// `keys[3].scopes[1]: …`. Errors other than refusals (the scratch store failing) pass through.
fn store_problem(e: StoreError, path: &str, prefix: &str, renames: &[(&str, &str)]) -> Result<String> {
    match e {
        StoreError::Invalid { field, reason } => {
            let rest = field.strip_prefix(prefix).unwrap_or(&field);
            let rest = rest.strip_prefix('.').unwrap_or(rest);
            let rest = renames.iter().find(|(from, _)| *from == rest).map_or(rest, |(_, to)| to);
            if rest.is_empty() {
                Ok(format!("{path}: {reason}"))
            } else {
                Ok(format!("{path}.{rest}: {reason}"))
            }
        }
        StoreError::Conflict(m) | StoreError::NotFound(m) => Ok(format!("{path}: {m}")),
        other => Err(other.into()),
    }
}

/// A JSON value for a diff line.
fn show(v: Option<&Json>) -> String {
    match v {
        None | Some(Json::Null) => "(none)".into(),
        Some(v) => v.to_string(),
    }
}

/// Paths where two JSON documents differ, as `path: old → new`.
fn json_diff(path: &str, old: Option<&Json>, new: Option<&Json>, out: &mut Vec<String>) {
    match (old, new) {
        (Some(Json::Object(a)), Some(Json::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                json_diff(&format!("{path}.{k}"), a.get(k), b.get(k), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {} → {}", show(a), show(b))),
    }
}

/// Key policy fields as JSON, for comparing and printing.
fn key_fields(k: &KeyRecord) -> Result<serde_json::Map<String, Json>> {
    let Json::Object(mut m) = serde_json::to_value(k)? else { bail!("a key record is not an object") };
    m.retain(|name, _| KEY_POLICY_FIELDS.contains(&name.as_str()));
    if let Some(s) = m.get_mut("scheme_settings") {
        *s = strip_nulls(s);
    }
    Ok(m)
}

fn resolve_secret(r: &SecretRef, base_dir: &Path) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
    let bytes = match r {
        SecretRef::Store => return Err("no secret to resolve".into()),
        SecretRef::Env(var) => Zeroizing::new(
            std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?.into_bytes(),
        ),
        SecretRef::File(file) => {
            let path = if file.is_absolute() { file.clone() } else { base_dir.join(file) };
            let raw = Zeroizing::new(
                std::fs::read(&path).map_err(|e| format!("reading secret file {}: {e}", path.display()))?,
            );
            let trimmed = raw.strip_suffix(b"\n").unwrap_or(&raw);
            let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
            Zeroizing::new(trimmed.to_vec())
        }
    };
    if bytes.is_empty() || bytes.len() > keygate_store::limits::MAX_SECRET_LEN {
        return Err(format!("the secret must be 1 to {} bytes", keygate_store::limits::MAX_SECRET_LEN));
    }
    Ok(bytes)
}

fn describe_ref(r: &SecretRef) -> String {
    match r {
        SecretRef::Store => "in the store".into(),
        SecretRef::Env(v) => format!("from env {v}"),
        SecretRef::File(f) => format!("from file {}", f.display()),
    }
}

/// The diff, the writes that make the store match the document, warnings, and problems that
/// make the document inapplicable.
#[derive(Debug, Default)]
struct Plan {
    entries: Vec<Entry>,
    ops: Vec<Op>,
    warnings: Vec<String>,
    problems: Vec<String>,
}

impl Plan {
    fn entry(&mut self, change: Change, what: String, details: Vec<String>, op: Option<Op>) {
        self.entries.push(Entry { change, what, details });
        self.ops.extend(op);
    }
}

/// Compares the document with the store. Refuses (as invalid) what cannot be applied.
async fn plan(
    store: &Store,
    doc: &Doc,
    cur: &Current,
    base_dir: &Path,
    opts: &ImportOptions,
) -> Result<Plan> {
    let mut plan = Plan::default();
    plan_tenants(&mut plan, doc, cur);
    plan_apps(&mut plan, doc, cur);
    plan_keys(&mut plan, store, doc, cur, base_dir).await?;
    plan_providers(&mut plan, store, doc, cur, opts).await?;
    plan_objects(&mut plan, doc, cur);
    if opts.prune {
        plan_prune(&mut plan, doc, cur);
    }
    if !plan.problems.is_empty() {
        plan.problems.truncate(MAX_PROBLEMS);
        return Err(invalid(std::mem::take(&mut plan.problems)));
    }
    Ok(plan)
}

fn plan_tenants(plan: &mut Plan, doc: &Doc, cur: &Current) {
    for t in &doc.tenants {
        let what = format!("tenant {}", t.id);
        match cur.tenants.get(&t.id) {
            None => plan.entry(Change::Create, what, vec![], Some(Op::CreateTenant(t.clone()))),
            Some(old) if old == t => plan.entry(Change::Same, what, vec![], None),
            Some(old) => {
                let details = vec![format!("name: {} → {}", quote(&old.name), quote(&t.name))];
                plan.entry(Change::Update, what, details, Some(Op::UpdateTenant(t.clone())));
            }
        }
    }
}

fn plan_apps(plan: &mut Plan, doc: &Doc, cur: &Current) {
    for (i, a) in doc.apps.iter().enumerate() {
        match cur.apps.get(&a.id) {
            None => plan.entry(
                Change::Create,
                format!("app {} (tenant {})", a.id, a.tenant_id),
                vec![],
                Some(Op::CreateApp(a.clone())),
            ),
            Some(old) if old.tenant_id != a.tenant_id => plan.problems.push(format!(
                "apps[{i}].tenant: app {} belongs to tenant {} in the store; import does not move apps between tenants",
                a.id, old.tenant_id
            )),
            Some(old) if old == a => plan.entry(Change::Same, format!("app {}", a.id), vec![], None),
            Some(old) => {
                let mut details = Vec::new();
                if old.name != a.name {
                    details.push(format!("name: {} → {}", quote(&old.name), quote(&a.name)));
                }
                if old.enabled != a.enabled {
                    details.push(format!("enabled: {} → {}", old.enabled, a.enabled));
                }
                plan.entry(Change::Update, format!("app {}", a.id), details, Some(Op::UpdateApp(a.clone())));
            }
        }
    }
}

async fn plan_keys(plan: &mut Plan, store: &Store, doc: &Doc, cur: &Current, base_dir: &Path) -> Result<()> {
    let doc_apps: BTreeMap<&str, &AppRecord> = doc.apps.iter().map(|a| (a.id.as_str(), a)).collect();
    // Secrets the document gives by env var or file; for existing keys, compared with the store.
    let mut resolved: HashMap<&str, Zeroizing<Vec<u8>>> = HashMap::new();
    for (i, k) in doc.keys.iter().enumerate() {
        let ak = k.record.access_key.as_str();
        match (&k.secret, cur.keys.contains_key(ak)) {
            (SecretRef::Store, true) => {}
            (SecretRef::Store, false) => plan.problems.push(format!(
                "keys[{i}].secret: key {ak} is not in the store, so its secret cannot be a store reference \
                 (secret = {{ ref = \"store\" }}, also the default); give a new key \
                 secret = {{ env = \"VAR\" }} or {{ file = \"path\" }}"
            )),
            (r, _) => match resolve_secret(r, base_dir) {
                Ok(b) => {
                    if b.len() < 16 {
                        plan.warnings.push(format!(
                            "key {ak}: the secret is shorter than 16 bytes; generated keys use 32"
                        ));
                    }
                    resolved.insert(ak, b);
                }
                Err(e) => plan.problems.push(format!("keys[{i}].secret: {e}")),
            },
        }
    }
    let mut secret_differs: HashMap<String, bool> = HashMap::new();
    if resolved.keys().any(|ak| cur.keys.contains_key(*ak)) {
        store
            .load_keys_with(|k| {
                if let Some(want) = resolved.get(k.record.access_key.as_str()) {
                    use secrecy::ExposeSecret as _;
                    let same =
                        aws_lc_rs::constant_time::verify_slices_are_equal(k.secret.expose_secret(), want)
                            .is_ok();
                    secret_differs.insert(k.record.access_key.clone(), !same);
                }
            })
            .await?;
    }
    for (i, k) in doc.keys.iter().enumerate() {
        let ak = k.record.access_key.as_str();
        let Some(old) = cur.keys.get(ak) else {
            if let Some(secret) = resolved.remove(ak) {
                let mut rec = k.record.clone();
                rec.created_by = store.actor().to_string();
                let what = format!(
                    "key {ak} (app {}, scheme {}, secret {})",
                    rec.app_id,
                    rec.scheme,
                    describe_ref(&k.secret)
                );
                plan.entry(Change::Create, what, vec![], Some(Op::UpsertKey(rec, secret)));
            }
            continue;
        };
        if let Some(old_tenant) = cur.tenant_of_key(old) {
            let new_tenant = doc_apps.get(k.record.app_id.as_str()).map(|a| a.tenant_id.as_str());
            if Some(old_tenant) != new_tenant {
                plan.problems.push(format!(
                    "keys[{i}].app_id: key {ak} belongs to tenant {old_tenant} in the store; import does not move keys between tenants"
                ));
                continue;
            }
        }
        let mut want = k.record.clone();
        want.created_by.clone_from(&old.created_by);
        want.last_used_at = old.last_used_at;
        want.successor.clone_from(&old.successor);
        want.overlap_until = old.overlap_until;
        let (a, b) = (key_fields(old)?, key_fields(&want)?);
        let mut details = Vec::new();
        for f in KEY_POLICY_FIELDS {
            if a.get(*f) != b.get(*f) {
                details.push(format!("{f}: {} → {}", show(a.get(*f)), show(b.get(*f))));
            }
        }
        let new_secret = secret_differs.get(ak).copied().unwrap_or(false);
        if new_secret {
            details.push(format!("secret: replaced ({})", describe_ref(&k.secret)));
        }
        let what = format!("key {ak}");
        if details.is_empty() {
            plan.entry(Change::Same, what, details, None);
            continue;
        }
        let op = match resolved.remove(ak) {
            Some(secret) if new_secret => Op::UpsertKey(want, secret),
            _ => Op::UpdateKey(want),
        };
        plan.entry(Change::Update, what, details, Some(op));
    }
    Ok(())
}

async fn plan_providers(
    plan: &mut Plan,
    store: &Store,
    doc: &Doc,
    cur: &Current,
    opts: &ImportOptions,
) -> Result<()> {
    let doc_apps: BTreeMap<&str, &AppRecord> = doc.apps.iter().map(|a| (a.id.as_str(), a)).collect();
    for (i, p) in doc.providers.iter().enumerate() {
        let old = cur.providers.get(&p.id);
        if let Some(old) = old {
            if old.tenant_id != p.tenant {
                plan.problems.push(format!(
                    "providers[{i}].tenant: provider {} belongs to tenant {} in the store; providers never move between tenants",
                    p.id, old.tenant_id
                ));
                continue;
            }
        }
        for (j, g) in p.config.get("granted_apps").and_then(Json::as_array).into_iter().flatten().enumerate()
        {
            let g = g.as_str().unwrap_or_default();
            let in_doc = doc_apps.get(g).is_some_and(|a| a.tenant_id == p.tenant);
            let in_store = !opts.prune && cur.apps.get(g).is_some_and(|a| a.tenant_id == p.tenant);
            if !in_doc && !in_store {
                plan.problems.push(format!(
                    "providers[{i}].config.granted_apps[{j}]: app {g} is not an app of tenant {}",
                    p.tenant
                ));
            }
        }
        if let Some(s) = &p.script {
            if s.source_sha256.as_ref().is_some_and(|h| !h.eq_ignore_ascii_case(&sha256_hex(&s.source))) {
                plan.warnings.push(format!(
                    "provider {}: script.source_sha256 does not match script.source (informational; export recomputes it)",
                    p.id
                ));
            }
        }

        // Secrets: names only. Missing ones are warnings (values never travel in a document).
        let stored_secrets: BTreeSet<String> = match old {
            Some(_) => store.list_provider_secrets(&p.id).await?.into_iter().map(|s| s.name).collect(),
            None => BTreeSet::new(),
        };
        for name in p.secrets.iter().filter(|n| !stored_secrets.contains(*n)) {
            plan.warnings.push(format!(
                "provider {}: binding missing: secret {name} is not in the store (set it with PUT /admin/providers/{}/secrets/{name})",
                p.id, p.id
            ));
        }
        if let Ok(required) = crate::outbound::validate_provider(&desired_config(p, None)) {
            let missing: BTreeSet<&str> = required
                .iter()
                .map(String::as_str)
                .filter(|b| !stored_secrets.contains(*b) && !p.secrets.iter().any(|s| s == b))
                .collect();
            for b in missing {
                plan.warnings.push(format!(
                    "provider {}: binding missing: the recipe reads secret {b}, which is not in the store",
                    p.id
                ));
            }
        }
        let delete_secrets: Vec<String> = if opts.prune {
            stored_secrets.iter().filter(|s| !p.secrets.contains(s)).cloned().collect()
        } else {
            Vec::new()
        };

        // The document, then the script: unchanged, an earlier saved version again, or new.
        let (old_config, old_script) = match old {
            Some(o) => split_script(&o.config),
            None => (Json::Null, None),
        };
        let mut details = Vec::new();
        if old.is_some() {
            json_diff("config", Some(&strip_nulls(&old_config)), Some(&strip_nulls(&p.config)), &mut details);
        }
        let config_changed = !details.is_empty();
        let mut version = None;
        let mut new_script = None;
        let mut script_changed = false;
        if let Some(s) = &p.script {
            match &old_script {
                Some((src, v)) if *src == s.source => version = *v,
                _ => {
                    script_changed = true;
                    let saved: Vec<ScriptVersion> = match old {
                        Some(_) => store.list_provider_scripts(&p.id).await?,
                        None => Vec::new(),
                    };
                    let old_sha =
                        old_script.as_ref().map_or_else(|| "(none)".into(), |(src, _)| short_sha(src));
                    let new_sha = short_sha(&s.source);
                    match saved.iter().rev().find(|v| v.source == s.source) {
                        Some(v) => {
                            version = Some(v.version);
                            details.push(format!(
                                "script: {old_sha} → {new_sha} (activate saved version {})",
                                v.version
                            ));
                        }
                        None => {
                            new_script = Some(s.source.clone());
                            details.push(format!("script: {old_sha} → {new_sha} (new version)"));
                        }
                    }
                }
            }
        } else if old_script.is_some() {
            script_changed = true;
            details.push("script: removed from the recipe".into());
        }
        for s in &delete_secrets {
            details.push(format!("secrets: delete {s}"));
        }
        let op = Op::PutProvider(ProviderPlan {
            record: ProviderRecord {
                id: p.id.clone(),
                tenant_id: p.tenant.clone(),
                config: desired_config(p, version),
                created_at: 0,
                updated_at: 0,
                updated_by: String::new(),
            },
            write_config: old.is_none() || config_changed || script_changed,
            new_script,
            delete_secrets,
            exists: old.is_some(),
        });
        match old {
            None => plan.entry(
                Change::Create,
                format!("provider {} (tenant {})", p.id, p.tenant),
                vec![],
                Some(op),
            ),
            Some(_) if details.is_empty() => {
                plan.entry(Change::Same, format!("provider {}", p.id), details, None)
            }
            Some(_) => plan.entry(Change::Update, format!("provider {}", p.id), details, Some(op)),
        }
    }
    Ok(())
}

/// With `--prune`: what the store holds in the document's tenants and the document does not
/// list. Keys first, apps last (deleting an app deletes its keys).
fn plan_objects(plan: &mut Plan, doc: &Doc, cur: &Current) {
    for o in &doc.objects {
        let what = format!("{} {} (tenant {})", o.kind.as_str().replace('_', " "), o.name, o.tenant_id);
        match cur.objects.get(&(o.tenant_id.clone(), o.kind, o.name.clone())) {
            None => plan.entry(Change::Create, what, vec![], Some(Op::PutObject(o.clone()))),
            Some(old) if strip_nulls(&old.config) == strip_nulls(&o.config) => {
                plan.entry(Change::Same, what, vec![], None)
            }
            Some(old) => {
                let mut details = Vec::new();
                json_diff(
                    "config",
                    Some(&strip_nulls(&old.config)),
                    Some(&strip_nulls(&o.config)),
                    &mut details,
                );
                plan.entry(Change::Update, what, details, Some(Op::PutObject(o.clone())));
            }
        }
    }
}

fn plan_prune(plan: &mut Plan, doc: &Doc, cur: &Current) {
    let scope: BTreeSet<&str> = doc.tenants.iter().map(|t| t.id.as_str()).collect();
    let doc_objects: BTreeSet<(&str, ObjectKind, &str)> =
        doc.objects.iter().map(|o| (o.tenant_id.as_str(), o.kind, o.name.as_str())).collect();
    for ((t, kind, name), o) in &cur.objects {
        if scope.contains(t.as_str()) && !doc_objects.contains(&(t.as_str(), *kind, name.as_str())) {
            let what = format!("{} {name} (tenant {t})", kind.as_str().replace('_', " "));
            plan.entry(Change::Delete, what, vec![], Some(Op::DeleteObject(o.clone())));
        }
    }
    let doc_keys: BTreeSet<&str> = doc.keys.iter().map(|k| k.record.access_key.as_str()).collect();
    let doc_providers: BTreeSet<&str> = doc.providers.iter().map(|p| p.id.as_str()).collect();
    let doc_apps: BTreeSet<&str> = doc.apps.iter().map(|a| a.id.as_str()).collect();
    for k in cur.keys.values() {
        let in_scope = cur.tenant_of_key(k).is_some_and(|t| scope.contains(t));
        if in_scope && !doc_keys.contains(k.access_key.as_str()) {
            let what = format!("key {} (app {})", k.access_key, k.app_id);
            plan.entry(Change::Delete, what, vec![], Some(Op::DeleteKey(k.access_key.clone())));
        }
    }
    for p in cur.providers.values() {
        if scope.contains(p.tenant_id.as_str()) && !doc_providers.contains(p.id.as_str()) {
            let what = format!("provider {} (tenant {})", p.id, p.tenant_id);
            plan.entry(Change::Delete, what, vec![], Some(Op::DeleteProvider(p.id.clone())));
        }
    }
    for a in cur.apps.values() {
        if scope.contains(a.tenant_id.as_str()) && !doc_apps.contains(a.id.as_str()) {
            let what = format!("app {} (tenant {})", a.id, a.tenant_id);
            plan.entry(Change::Delete, what, vec![], Some(Op::DeleteApp(a.id.clone())));
        }
    }
}

fn short_sha(source: &str) -> String {
    let mut h = sha256_hex(source);
    h.truncate(12);
    format!("sha256:{h}")
}

async fn apply(store: &Store, op: Op) -> Result<()> {
    match op {
        Op::CreateTenant(t) => {
            store.create_tenant(&t).await?;
        }
        Op::UpdateTenant(t) => {
            store.update_tenant(&t).await?;
        }
        Op::CreateApp(a) => {
            store.create_app(&a).await?;
        }
        Op::UpdateApp(a) => {
            store.update_app(&a).await?;
        }
        Op::UpsertKey(k, secret) => {
            store.upsert_key(&k, &secret).await?;
        }
        Op::UpdateKey(k) => {
            store.update_key(&k).await?;
        }
        Op::PutProvider(p) => apply_provider(store, p).await?,
        Op::DeleteKey(ak) => store.delete_key(&ak).await?,
        Op::DeleteProvider(id) => store.delete_provider(&id).await?,
        Op::PutObject(o) => {
            store.put_tenant_object(&o).await?;
        }
        Op::DeleteObject(o) => store.delete_tenant_object(&o.tenant_id, o.kind, &o.name).await?,
        Op::DeleteApp(id) => store.delete_app(&id).await?,
    }
    Ok(())
}

/// Like the admin API's script save: the version is recorded, then activated in the document.
async fn apply_provider(store: &Store, p: ProviderPlan) -> Result<()> {
    let mut record = p.record;
    if let Some(source) = &p.new_script {
        if !p.exists {
            // A script version needs its provider: store the document first (no version yet).
            store.put_provider(&record).await?;
        }
        let saved = store.add_provider_script(&record.id, source, ACTOR).await?;
        record.config = join_script(&record.config, source, Some(saved.version));
        store.put_provider(&record).await?;
    } else if p.write_config {
        store.put_provider(&record).await?;
    }
    for name in &p.delete_secrets {
        store.delete_provider_secret(&record.id, name).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_read_back_exactly() {
        for s in [
            "plain",
            "with \"quotes\" and \\",
            "tab\there",
            "line1\nline2\n",
            "ends '",
            "a'''b\n",
            "cr\r\n",
            "\u{1}x",
        ] {
            for text in [quote(s), multiline(s)] {
                let doc = format!("v = {text}\n");
                let t: toml::Table = toml::from_str(&doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
                assert_eq!(t["v"].as_str(), Some(s), "{doc}");
            }
        }
        assert!(multiline("a\nb\n").starts_with("'''"));
    }

    #[test]
    fn json_round_trips_through_toml() {
        let v = serde_json::json!({
            "base_url": "http://x", "n": 5, "neg": -3, "f": 1.5, "whole": 10.0, "tiny": 1e-7,
            "list": [1, "a", {"k": true}], "nested": {"deep": {"x": "y"}, "empty": {}}, "gone": null,
            "odd key": "v", "multi": "a\nb\n"
        });
        let mut w = Writer::default();
        write_table(&mut w, "config", &v).unwrap();
        let t: toml::Table = toml::from_str(&w.out).unwrap_or_else(|e| panic!("{}: {e}", w.out));
        let back = to_json(&t["config"], "config").unwrap();
        assert_eq!(back, strip_nulls(&v), "{}", w.out);
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let doc = "version = 1\n[[tenants]]\nid = \"t\"\n[[apps]]\nid = \"a\"\ntenant = \"t\"\n\
                   [[keys]]\naccess_key = \"AK\"\napp_id = \"a\"\ndescripton = \"x\"\n";
        let e = parse(doc).unwrap_err();
        assert!(e.to_string().contains("keys[0].descripton: unknown field"), "{e}");
        let e =
            parse("version = 1\n[[keys]]\naccess_key = \"AK\"\napp_id = \"a\"\nsecret = { value = \"s\" }\n")
                .unwrap_err();
        assert!(e.to_string().contains("keys[0].secret.value: unknown field"), "{e}");
        let e = parse("version = 2\n").unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
        let e = parse("version = 1\nextra = 1\n").unwrap_err();
        assert!(e.to_string().contains("extra: unknown field"), "{e}");
    }

    #[test]
    fn dates_format_like_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_825_600), "2000-02-29T12:00:00Z");
        assert_eq!(rfc3339(1_612_691_221), "2021-02-07T09:47:01Z");
    }

    #[test]
    fn scripts_split_and_join() {
        let cfg = serde_json::json!({"recipe": {"type": "script", "source": "function(){}", "version": 3, "vars": {}}});
        let (rest, script) = split_script(&cfg);
        assert_eq!(script, Some(("function(){}".to_string(), Some(3))));
        assert_eq!(rest, serde_json::json!({"recipe": {"type": "script", "vars": {}}}));
        assert_eq!(join_script(&rest, "function(){}", Some(3)), cfg);
    }
}
