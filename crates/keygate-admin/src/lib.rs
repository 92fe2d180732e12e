//! Admin REST API (axum) on its own listener: tenants, apps, keys, admin tokens with roles
//! (gateway admin, tenant admin, tenant developer), the admin audit trail, and the OpenAPI
//! document at `/admin/openapi.json`. Every mutation goes through the store, which writes the
//! audit row and bumps the change counter replicas reload on; secrets leave only once, in the
//! creation response.
#![forbid(unsafe_code)]

pub mod api;
mod console;
mod diff;
mod error;
mod handlers;
pub mod rbac;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use keygate_store::{KeyRecord, Store};

pub use error::AdminError;
pub use handlers::ApiDoc;

/// Checks a key the store accepted but only the gateway can judge (known scheme, parsable
/// scheme settings). Returns `(field, reason)` on refusal.
pub type KeyValidator = Arc<dyn Fn(&KeyRecord) -> Result<(), (String, String)> + Send + Sync>;

/// Called after every successful mutation (e.g. to reload this replica at once and nudge the
/// others over Redis).
pub type ChangeHook = Arc<dyn Fn() + Send + Sync>;

/// The alert pipeline's view: gateway-wide for `None`, one tenant's rules and alerts for
/// `Some(tenant)`.
pub type AlertsView = Arc<dyn Fn(Option<&str>) -> serde_json::Value + Send + Sync>;

/// Checks a tenant object before it is written: `Err(reason)` refuses it.
pub type ObjectValidator = Arc<
    dyn Fn(&keygate_store::TenantObject, &[keygate_store::TenantObject]) -> Result<(), String> + Send + Sync,
>;

/// Checks a provider document with the outbound gateway's parser. Returns the binding names
/// the recipe reads, or `(field, reason)`.
pub type ProviderValidator =
    Arc<dyn Fn(&serde_json::Value) -> Result<Vec<String>, (String, String)> + Send + Sync>;

/// Runs a provider's scripted recipe on a sample request (the gateway's outbound engine): takes
/// the provider id and the request body of `/test-run`, returns the report or `(field, reason)`.
pub type ScriptTester = Arc<
    dyn Fn(
            String,
            serde_json::Value,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<serde_json::Value, (String, String)>> + Send>,
        > + Send
        + Sync,
>;

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    /// The request audit log, for `/admin/requests`.
    pub audit: Option<keygate_audit::AuditDb>,
    pub validate_key: KeyValidator,
    /// Without one, provider documents are refused (nothing unvalidated reaches the data plane).
    pub validate_provider: Option<ProviderValidator>,
    /// Without one (no outbound listener in this process), test runs answer 400.
    pub script_tester: Option<ScriptTester>,
    /// API tokens (user tokens, revocation); without it (`[tokens]` off) those calls answer 400.
    pub tokens: Option<TokenIssuer>,
    /// Config versions (record on every change, rollback); without it the version calls answer
    /// 400 and changes are not versioned.
    pub versions: Option<Arc<dyn ConfigVersions>>,
    /// The alert pipeline's view (rules, channel kinds, counters, recent alerts; per tenant for
    /// tenants' own rules).
    pub alerts: Option<AlertsView>,
    /// Checks a tenant's route or alert rule against the operator's policy (the binary's
    /// parsers), given the tenant's other objects of that kind; without one, tenant objects are
    /// refused.
    pub validate_object: Option<ObjectValidator>,
    pub on_change: ChangeHook,
}

/// Config versions, implemented by the binary (export and import of documents live there).
pub trait ConfigVersions: Send + Sync + std::fmt::Debug {
    /// Records the tenant's current configuration as its next version, unless unchanged.
    fn record<'a>(
        &'a self,
        store: &'a keygate_store::Store,
        tenant: &'a str,
        comment: &'a str,
    ) -> BoxFuture<'a, Result<Option<keygate_store::ConfigVersion>, String>>;
    /// Makes the tenant's configuration equal to `document` (pruning what it lacks), behind the
    /// publish fence so replicas switch at once; or, with `dry_run`, only says what would change.
    fn rollback<'a>(
        &'a self,
        store: &'a keygate_store::Store,
        tenant: &'a str,
        document: &'a str,
        comment: &'a str,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<RollbackOutcome, RollbackError>>;
}

/// A boxed future (the hooks are object safe).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What a rollback did (or would do).
#[derive(Debug, Clone, Default)]
pub struct RollbackOutcome {
    pub plan: Vec<String>,
    pub summary: String,
    pub warnings: Vec<String>,
    /// The version recorded after applying (none for a dry run or when nothing changed).
    pub version: Option<keygate_store::ConfigVersion>,
}

/// Why a rollback did not happen.
#[derive(Debug, Clone)]
pub enum RollbackError {
    /// The document cannot be applied (e.g. it names a key whose secret was deleted since).
    Invalid(String),
    /// Another publish holds the fence.
    Busy,
    /// A store write failed part-way (earlier writes are kept).
    Failed(String),
}

/// The gateway's token store, for issuing user tokens and revoking tokens.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    pub store: Arc<dyn keygate_state::TokenStore>,
    pub default_ttl: std::time::Duration,
    pub max_ttl: std::time::Duration,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState").field("store", &self.store.backend_kind()).finish_non_exhaustive()
    }
}

impl AdminState {
    /// A state that accepts any key the store accepts and does nothing on change.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            audit: None,
            validate_key: Arc::new(|_| Ok(())),
            validate_provider: None,
            script_tester: None,
            tokens: None,
            versions: None,
            alerts: None,
            validate_object: None,
            on_change: Arc::new(|| {}),
        }
    }
}

/// The admin API's routes.
pub fn router(state: AdminState) -> Router {
    api_router(state.clone()).merge(console::routes(state))
}

/// The admin API alone (the console calls it in-process).
pub(crate) fn api_router(state: AdminState) -> Router {
    use handlers::*;
    Router::new()
        .route("/admin/openapi.json", get(openapi))
        .route("/admin/whoami", get(whoami))
        .route("/admin/tenants", get(list_tenants).post(create_tenant))
        .route("/admin/tenants/{tenant}", get(get_tenant).delete(delete_tenant))
        .route("/admin/tenants/{tenant}/apps", get(list_apps).post(create_app))
        .route("/admin/tenants/{tenant}/versions", get(list_versions).post(save_version))
        .route("/admin/tenants/{tenant}/versions/{version}", get(get_version))
        .route("/admin/tenants/{tenant}/versions/{version}/diff", get(diff_version))
        .route("/admin/tenants/{tenant}/versions/{version}/rollback", post(rollback_version))
        .route("/admin/apps/{app}", get(get_app).patch(update_app).delete(delete_app))
        .route("/admin/apps/{app}/revoke", post(revoke_app))
        .route("/admin/apps/{app}/keys", get(list_keys).post(create_key))
        .route("/admin/apps/{app}/user-tokens", post(create_user_token))
        .route("/admin/apps/{app}/tokens/revoke", post(revoke_app_tokens))
        .route("/admin/api-tokens/revoke", post(revoke_api_token))
        .route("/admin/keys/{key}", get(get_key).patch(update_key).delete(delete_key))
        .route("/admin/keys/{key}/rotate", post(rotate_key))
        .route("/admin/keys/{key}/revoke", post(revoke_key))
        .route("/admin/keys/{key}/enable", post(enable_key))
        .route("/admin/tokens", get(list_tokens).post(create_token))
        .route("/admin/tokens/{id}", get(get_token).delete(revoke_token))
        .route("/admin/tenants/{tenant}/providers", get(list_providers))
        .route("/admin/providers/{id}", get(get_provider).put(put_provider).delete(delete_provider))
        .route("/admin/providers/{id}/secrets", get(list_provider_secrets))
        .route(
            "/admin/providers/{id}/secrets/{name}",
            axum::routing::put(put_provider_secret).delete(delete_provider_secret),
        )
        .route("/admin/providers/{id}/scripts", get(list_scripts).post(save_script))
        .route("/admin/providers/{id}/scripts/{version}/activate", post(activate_script))
        .route("/admin/providers/{id}/test-run", post(test_run))
        .route("/admin/audit", get(list_audit))
        .route("/admin/alerts", get(alerts_view))
        .route("/admin/tenants/{tenant}/alerts", get(tenant_alerts_view))
        .route("/admin/tenants/{tenant}/routes", get(list_routes))
        .route("/admin/tenants/{tenant}/routes/{name}", get(get_route).put(put_route).delete(delete_route))
        .route("/admin/tenants/{tenant}/alert-rules", get(list_alert_rules))
        .route(
            "/admin/tenants/{tenant}/alert-rules/{name}",
            get(get_alert_rule).put(put_alert_rule).delete(delete_alert_rule),
        )
        .route("/admin/requests", get(search_requests))
        .fallback(|| async { AdminError::NotFound("endpoint".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .with_state(state)
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Peer addresses reach the console's login throttle.
    axum::serve(listener, router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// A request id for envelopes: process-unique, time-ordered.
pub(crate) fn request_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    format!("adm-{now:x}-{:x}", SEQ.fetch_add(1, Ordering::Relaxed))
}
