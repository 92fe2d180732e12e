// One handler per endpoint: authenticate, authorize (rbac.rs), call the store, shape the reply.
// The store validates and audits every write; handlers add what only the API knows (who the
// actor is, generated ids and secrets, the gateway's own key checks).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use keygate_store::{
    AdminRole, AdminTokenRecord, AppRecord, KeyRecord, ObjectKind, RateLimit, Store, TenantRecord,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::OpenApi;
use zeroize::Zeroizing;

use crate::api::*;
use crate::rbac::{check, sees, Action};
use crate::{AdminError, AdminState};

type R<T> = Result<T, AdminError>;

/// Shortest imported secret: anything shorter is guessable offline from one signed request.
const MIN_IMPORTED_SECRET: usize = 16;
const MAX_SECRET: usize = 4096;

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "keygate admin API", description = "Tenants, apps, keys, admin tokens and the admin audit trail. \
        Authenticate with `Authorization: Bearer kgadm_...`. Errors use the envelope {code, message, request_id, field}."),
    paths(
        whoami, list_tenants, create_tenant, get_tenant, delete_tenant, list_apps, create_app, get_app,
        update_app, delete_app, revoke_app, list_keys, create_key, get_key, update_key, delete_key,
        rotate_key, revoke_key, enable_key, list_tokens, create_token, get_token, revoke_token, list_audit,
        search_requests, list_providers, get_provider, put_provider, delete_provider, list_provider_secrets,
        put_provider_secret, delete_provider_secret, list_scripts, save_script, activate_script, test_run,
        create_user_token, revoke_app_tokens, revoke_api_token, list_versions, get_version, diff_version,
        save_version, rollback_version, alerts_view, tenant_alerts_view, list_routes, get_route, put_route,
        delete_route, list_alert_rules, get_alert_rule, put_alert_rule, delete_alert_rule
    ),
    components(schemas(
        Tenant, App, CreateApp, UpdateApp, Rate, Key, CreateKey, UpdateKey, CreatedKey, RotateKey, Rotated,
        AppRevoked, AdminToken, CreateAdminToken, CreatedAdminToken, AuditEntry, ErrorEnvelope, WhoAmI,
        Provider, ProviderSecret, PutProvider, PutSecret, SaveScript, ScriptVersionView, SavedScript,
        CreateUserToken, IssuedToken, RevokeAppTokens, RevokeToken, TokensRevoked, VersionInfo, VersionView,
        VersionDiff, SaveVersion, RollbackRequest, RollbackResult, TenantObjectView, PutTenantObject
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

/// The authenticated caller.
pub struct Principal(pub AdminTokenRecord);

impl Principal {
    /// The store, with audit rows naming this token.
    fn store(&self, state: &AdminState) -> Store {
        state.store.with_actor(&format!("{} ({})", self.0.id, self.0.name))
    }
}

impl FromRequestParts<AdminState> for Principal {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> R<Self> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or(AdminError::Unauthorized)?;
        let text = value.to_str().map_err(|_| AdminError::Unauthorized)?;
        let token = text.strip_prefix("Bearer ").ok_or(AdminError::Unauthorized)?.trim();
        state.store.authenticate_admin_token(token).await?.map(Principal).ok_or(AdminError::Unauthorized)
    }
}

/// `Json<T>` whose rejection is our envelope.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AdminState> for Body<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &AdminState) -> R<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(AdminError::BadJson("Content-Type must be application/json".into()))
            }
            Err(e) => Err(AdminError::BadJson(e.body_text())),
        }
    }
}

fn created<T: serde::Serialize>(v: T) -> (StatusCode, Json<T>) {
    (StatusCode::CREATED, Json(v))
}

fn changed(state: &AdminState) {
    (state.on_change)();
}

/// After a change to a tenant's configuration: records it as the tenant's next config version
/// (author = the calling token, comment = what changed), then notifies replicas.
async fn changed_in(state: &AdminState, p: &Principal, tenant: &str, what: &str) {
    if let Some(v) = &state.versions {
        if let Err(e) = v.record(&p.store(state), tenant, what).await {
            tracing::warn!(tenant, error = %e, "could not record a config version");
        }
    }
    (state.on_change)();
}

// ---- alerts ----

/// Alert rules, channel kinds (never their URLs), delivery counters and the newest fired alerts.
/// Gateway-wide, so gateway admins only.
#[utoipa::path(get, path = "/admin/alerts", responses((status = 200, body = Object)))]
pub async fn alerts_view(State(s): State<AdminState>, p: Principal) -> R<Json<serde_json::Value>> {
    check(&p.0, Action::ManageGateway, String::new)?;
    Ok(Json(match &s.alerts {
        Some(view) => view(None),
        None => serde_json::json!({"rules": [], "channels": [], "stats": {}, "recent": []}),
    }))
}

/// One tenant's own alert rules, how often they fired, and their newest alerts (never another
/// tenant's, never the operator's channels).
#[utoipa::path(get, path = "/admin/tenants/{tenant}/alerts", responses((status = 200, body = Object)))]
pub async fn tenant_alerts_view(
    State(s): State<AdminState>,
    p: Principal,
    Path(tenant): Path<String>,
) -> R<Json<serde_json::Value>> {
    check(&p.0, Action::Read { tenant: &tenant }, || format!("tenant {tenant}"))?;
    s.store.get_tenant(&tenant).await?;
    Ok(Json(match &s.alerts {
        Some(view) => view(Some(&tenant)),
        None => serde_json::json!({"rules": [], "stats": {"fired": 0}, "recent": []}),
    }))
}

// ---- tenant routes and alert rules ----

async fn list_objects(
    s: &AdminState,
    p: &Principal,
    tenant: &str,
    kind: ObjectKind,
) -> R<Vec<TenantObjectView>> {
    check(&p.0, Action::Read { tenant }, || format!("tenant {tenant}"))?;
    s.store.get_tenant(tenant).await?;
    Ok(s.store
        .list_tenant_objects(Some(tenant), Some(kind))
        .await?
        .into_iter()
        .map(TenantObjectView::from)
        .collect())
}

async fn get_object(
    s: &AdminState,
    p: &Principal,
    tenant: &str,
    kind: ObjectKind,
    name: &str,
) -> R<TenantObjectView> {
    check(&p.0, Action::Read { tenant }, || format!("tenant {tenant}"))?;
    Ok(s.store.get_tenant_object(tenant, kind, name).await?.into())
}

async fn put_object(
    s: &AdminState,
    p: &Principal,
    tenant: String,
    kind: ObjectKind,
    name: String,
    config: serde_json::Value,
) -> R<(StatusCode, Json<TenantObjectView>)> {
    check(&p.0, Action::ManageTenant { tenant: &tenant }, || format!("tenant {tenant}"))?;
    s.store.get_tenant(&tenant).await?;
    let validate = s
        .validate_object
        .as_ref()
        .ok_or_else(|| AdminError::invalid("config", "this gateway does not accept tenant objects"))?;
    let rec = keygate_store::TenantObject {
        tenant_id: tenant,
        kind,
        name,
        config,
        created_at: 0,
        updated_at: 0,
        updated_by: String::new(),
    };
    let siblings = s.store.list_tenant_objects(Some(&rec.tenant_id), Some(kind)).await?;
    validate(&rec, &siblings).map_err(|reason| AdminError::Invalid { field: "config".into(), reason })?;
    let (rec, outcome) = p.store(s).put_tenant_object(&rec).await?;
    let status = match outcome {
        keygate_store::Upsert::Created => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    if outcome != keygate_store::Upsert::Unchanged {
        let verb = if status == StatusCode::CREATED { "create" } else { "update" };
        changed_in(s, p, &rec.tenant_id, &format!("{verb} {} {}", kind.as_str().replace('_', " "), rec.name))
            .await;
    }
    Ok((status, Json(rec.into())))
}

async fn delete_object(
    s: &AdminState,
    p: &Principal,
    tenant: &str,
    kind: ObjectKind,
    name: &str,
) -> R<StatusCode> {
    check(&p.0, Action::ManageTenant { tenant }, || format!("tenant {tenant}"))?;
    p.store(s).delete_tenant_object(tenant, kind, name).await?;
    changed_in(s, p, tenant, &format!("delete {} {name}", kind.as_str().replace('_', " "))).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's own routes (`path_prefix` inside the tenant's subtree, upstream on the
/// operator's allowlist; only the tenant's apps may call them).
#[utoipa::path(get, path = "/admin/tenants/{tenant}/routes", responses((status = 200, body = [TenantObjectView])))]
pub async fn list_routes(
    State(s): State<AdminState>,
    p: Principal,
    Path(tenant): Path<String>,
) -> R<Json<Vec<TenantObjectView>>> {
    Ok(Json(list_objects(&s, &p, &tenant, ObjectKind::Route).await?))
}

#[utoipa::path(get, path = "/admin/tenants/{tenant}/routes/{name}", responses((status = 200, body = TenantObjectView)))]
pub async fn get_route(
    State(s): State<AdminState>,
    p: Principal,
    Path((tenant, name)): Path<(String, String)>,
) -> R<Json<TenantObjectView>> {
    Ok(Json(get_object(&s, &p, &tenant, ObjectKind::Route, &name).await?))
}

/// Creates (201) or replaces (200) a route; `config` has the fields of a `[[routes]]` entry.
#[utoipa::path(put, path = "/admin/tenants/{tenant}/routes/{name}", request_body = PutTenantObject,
    responses((status = 200, body = TenantObjectView), (status = 201, body = TenantObjectView)))]
pub async fn put_route(
    State(s): State<AdminState>,
    p: Principal,
    Path((tenant, name)): Path<(String, String)>,
    Body(body): Body<PutTenantObject>,
) -> R<(StatusCode, Json<TenantObjectView>)> {
    put_object(&s, &p, tenant, ObjectKind::Route, name, body.config).await
}

#[utoipa::path(delete, path = "/admin/tenants/{tenant}/routes/{name}", responses((status = 204)))]
pub async fn delete_route(
    State(s): State<AdminState>,
    p: Principal,
    Path((tenant, name)): Path<(String, String)>,
) -> R<StatusCode> {
    delete_object(&s, &p, &tenant, ObjectKind::Route, &name).await
}

/// The tenant's own alert rules (evaluated over its apps' traffic only).
#[utoipa::path(get, path = "/admin/tenants/{tenant}/alert-rules", responses((status = 200, body = [TenantObjectView])))]
pub async fn list_alert_rules(
    State(s): State<AdminState>,
    p: Principal,
    Path(tenant): Path<String>,
) -> R<Json<Vec<TenantObjectView>>> {
    Ok(Json(list_objects(&s, &p, &tenant, ObjectKind::AlertRule).await?))
}

#[utoipa::path(get, path = "/admin/tenants/{tenant}/alert-rules/{name}", responses((status = 200, body = TenantObjectView)))]
pub async fn get_alert_rule(
    State(s): State<AdminState>,
    p: Principal,
    Path((tenant, name)): Path<(String, String)>,
) -> R<Json<TenantObjectView>> {
    Ok(Json(get_object(&s, &p, &tenant, ObjectKind::AlertRule, &name).await?))
}

/// Creates (201) or replaces (200) an alert rule; `config` is a rule as in `[[alerts.rules]]`
/// (`kind`, `per`, `threshold`, …) except `gauge_above`.
#[utoipa::path(put, path = "/admin/tenants/{tenant}/alert-rules/{name}", request_body = PutTenantObject,
    responses((status = 200, body = TenantObjectView), (status = 201, body = TenantObjectView)))]
pub async fn put_alert_rule(
    State(s): State<AdminState>,
    p: Principal,
    Path((tenant, name)): Path<(String, String)>,
    Body(body): Body<PutTenantObject>,
) -> R<(StatusCode, Json<TenantObjectView>)> {
    put_object(&s, &p, tenant, ObjectKind::AlertRule, name, body.config).await
}

#[utoipa::path(delete, path = "/admin/tenants/{tenant}/alert-rules/{name}", responses((status = 204)))]
pub async fn delete_alert_rule(
    State(s): State<AdminState>,
    p: Principal,
    Path((tenant, name)): Path<(String, String)>,
) -> R<StatusCode> {
    delete_object(&s, &p, &tenant, ObjectKind::AlertRule, &name).await
}

// ---- config versions ----

fn versions_hook(s: &AdminState) -> Result<&std::sync::Arc<dyn crate::ConfigVersions>, AdminError> {
    s.versions
        .as_ref()
        .ok_or_else(|| AdminError::invalid("versions", "config versions are not available here"))
}

async fn version_of(s: &AdminState, tenant: &str, version: i64) -> R<keygate_store::ConfigVersion> {
    s.store
        .list_config_versions(tenant)
        .await?
        .into_iter()
        .find(|v| v.version == version)
        .ok_or_else(|| AdminError::NotFound(format!("version {version} of tenant {tenant}")))
}

/// Every saved configuration version of a tenant, newest first (documents not included).
#[utoipa::path(get, path = "/admin/tenants/{tenant}/versions", responses((status = 200, body = [VersionInfo])))]
pub async fn list_versions(
    State(s): State<AdminState>,
    p: Principal,
    Path(tenant): Path<String>,
) -> R<Json<Vec<VersionInfo>>> {
    check(&p.0, Action::Read { tenant: &tenant }, || format!("tenant {tenant}"))?;
    s.store.get_tenant(&tenant).await?;
    let mut all: Vec<VersionInfo> =
        s.store.list_config_versions(&tenant).await?.into_iter().map(Into::into).collect();
    all.reverse();
    Ok(Json(all))
}

/// One version with its document (secrets appear as references only).
#[utoipa::path(get, path = "/admin/tenants/{tenant}/versions/{version}", responses((status = 200, body = VersionView)))]
pub async fn get_version(
    State(s): State<AdminState>,
    p: Principal,
    Path((tenant, version)): Path<(String, i64)>,
) -> R<Json<VersionView>> {
    check(&p.0, Action::Read { tenant: &tenant }, || format!("tenant {tenant}"))?;
    let v = version_of(&s, &tenant, version).await?;
    Ok(Json(VersionView { document: v.document.clone(), info: v.into() }))
}

/// Line diff of a version's document against another version (`from`, default the previous one).
#[utoipa::path(get, path = "/admin/tenants/{tenant}/versions/{version}/diff", responses((status = 200, body = VersionDiff)))]
pub async fn diff_version(
    State(s): State<AdminState>,
    p: Principal,
    Path((tenant, version)): Path<(String, i64)>,
    Query(q): Query<DiffQuery>,
) -> R<Json<VersionDiff>> {
    check(&p.0, Action::Read { tenant: &tenant }, || format!("tenant {tenant}"))?;
    let to = version_of(&s, &tenant, version).await?;
    let from = q.from.unwrap_or(version - 1);
    let old = if from < 1 { String::new() } else { version_of(&s, &tenant, from).await?.document };
    Ok(Json(VersionDiff { from, to: version, diff: crate::diff::line_diff(&old, &to.document, 3) }))
}

/// Saves the tenant's current configuration as a version now (with a comment), unless unchanged.
#[utoipa::path(post, path = "/admin/tenants/{tenant}/versions", request_body = SaveVersion,
    responses((status = 201, body = VersionInfo), (status = 200, body = VersionInfo)))]
pub async fn save_version(
    State(s): State<AdminState>,
    p: Principal,
    Path(tenant): Path<String>,
    Body(req): Body<SaveVersion>,
) -> R<(StatusCode, Json<VersionInfo>)> {
    check(&p.0, Action::ManageTenant { tenant: &tenant }, || format!("tenant {tenant}"))?;
    s.store.get_tenant(&tenant).await?;
    let hook = versions_hook(&s)?;
    match hook.record(&p.store(&s), &tenant, &req.comment).await.map_err(|e| {
        tracing::error!(tenant, error = %e, "recording a config version failed");
        AdminError::Internal
    })? {
        Some(v) => Ok((StatusCode::CREATED, Json(v.into()))),
        None => {
            let latest = s.store.list_config_versions(&tenant).await?.pop().ok_or(AdminError::Internal)?;
            Ok((StatusCode::OK, Json(latest.into())))
        }
    }
}

/// Rolls the tenant's configuration back (or forward) to a saved version in one publish: the
/// replicas keep their snapshot until the whole change is written, then load it at once.
/// Secrets are not versioned: a version naming a key or provider secret deleted since cannot
/// be restored (400, nothing written).
#[utoipa::path(post, path = "/admin/tenants/{tenant}/versions/{version}/rollback", request_body = RollbackRequest,
    responses((status = 200, body = RollbackResult), (status = 409, body = ErrorEnvelope)))]
pub async fn rollback_version(
    State(s): State<AdminState>,
    p: Principal,
    Path((tenant, version)): Path<(String, i64)>,
    Body(req): Body<RollbackRequest>,
) -> R<Json<RollbackResult>> {
    check(&p.0, Action::ManageTenant { tenant: &tenant }, || format!("tenant {tenant}"))?;
    let hook = versions_hook(&s)?;
    let v = version_of(&s, &tenant, version).await?;
    let comment = if req.comment.is_empty() {
        format!("rollback to version {version}")
    } else {
        format!("rollback to version {version}: {}", req.comment)
    };
    let out = hook.rollback(&p.store(&s), &tenant, &v.document, &comment, req.dry_run).await.map_err(
        |e| match e {
            crate::RollbackError::Invalid(reason) => AdminError::invalid("version", reason),
            crate::RollbackError::Busy => {
                AdminError::Conflict("another change is being published; retry".into())
            }
            crate::RollbackError::Failed(reason) => {
                tracing::error!(tenant, version, error = %reason, "rollback failed part-way");
                AdminError::Internal
            }
        },
    )?;
    if !req.dry_run {
        changed(&s);
    }
    Ok(Json(RollbackResult {
        dry_run: req.dry_run,
        plan: out.plan,
        summary: out.summary,
        warnings: out.warnings,
        version: out.version.map(Into::into),
    }))
}

/// `AK` + 20 uppercase hex digits (80 random bits): unique enough to be an id, not a secret.
fn new_access_key() -> R<String> {
    let mut raw = [0u8; 10];
    keygate_store::crypto::random(&mut raw).map_err(|_| AdminError::Internal)?;
    Ok(format!("AK{}", raw.iter().map(|b| format!("{b:02X}")).collect::<String>()))
}

fn gateway_check(state: &AdminState, k: &KeyRecord) -> R<()> {
    (state.validate_key)(k).map_err(|(field, reason)| AdminError::Invalid { field, reason })
}

async fn app_and_tenant(store: &Store, p: &Principal, app: &str) -> R<AppRecord> {
    let rec = store.get_app(app).await?;
    check(&p.0, Action::Read { tenant: &rec.tenant_id }, || format!("app {app}"))?;
    Ok(rec)
}

async fn key_and_app(store: &Store, p: &Principal, key: &str) -> R<(KeyRecord, AppRecord)> {
    let k = store.get_key(key).await?;
    let app = store.get_app(&k.app_id).await?;
    check(&p.0, Action::Read { tenant: &app.tenant_id }, || format!("key {key}"))?;
    Ok((k, app))
}

// ---- whoami ----

#[utoipa::path(get, path = "/admin/whoami", responses((status = 200, body = WhoAmI), (status = 401, body = ErrorEnvelope)))]
pub async fn whoami(p: Principal) -> Json<WhoAmI> {
    Json(WhoAmI { token: p.0.into() })
}

// ---- tenants ----

#[utoipa::path(get, path = "/admin/tenants", responses((status = 200, body = [Tenant])))]
pub async fn list_tenants(State(s): State<AdminState>, p: Principal) -> R<Json<Vec<Tenant>>> {
    let all = s.store.list_tenants().await?;
    Ok(Json(all.into_iter().filter(|t| sees(&p.0, &t.id)).map(Tenant::from).collect()))
}

#[utoipa::path(post, path = "/admin/tenants", request_body = Tenant,
    responses((status = 201, body = Tenant), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create_tenant(
    State(s): State<AdminState>,
    p: Principal,
    Body(t): Body<Tenant>,
) -> R<impl IntoResponse> {
    check(&p.0, Action::ManageGateway, String::new)?;
    let rec = p.store(&s).create_tenant(&TenantRecord { id: t.id, name: t.name }).await?;
    changed_in(&s, &p, &rec.id, "create tenant").await;
    Ok(created(Tenant::from(rec)))
}

#[utoipa::path(get, path = "/admin/tenants/{tenant}", responses((status = 200, body = Tenant), (status = 404, body = ErrorEnvelope)))]
pub async fn get_tenant(
    State(s): State<AdminState>,
    p: Principal,
    Path(tenant): Path<String>,
) -> R<Json<Tenant>> {
    check(&p.0, Action::Read { tenant: &tenant }, || format!("tenant {tenant}"))?;
    Ok(Json(s.store.get_tenant(&tenant).await?.into()))
}

#[utoipa::path(delete, path = "/admin/tenants/{tenant}", responses((status = 204), (status = 409, body = ErrorEnvelope)))]
pub async fn delete_tenant(
    State(s): State<AdminState>,
    p: Principal,
    Path(tenant): Path<String>,
) -> R<StatusCode> {
    check(&p.0, Action::ManageGateway, String::new)?;
    p.store(&s).delete_tenant(&tenant).await?;
    changed(&s);
    Ok(StatusCode::NO_CONTENT)
}

// ---- apps ----

#[utoipa::path(get, path = "/admin/tenants/{tenant}/apps", responses((status = 200, body = [App])))]
pub async fn list_apps(
    State(s): State<AdminState>,
    p: Principal,
    Path(tenant): Path<String>,
) -> R<Json<Vec<App>>> {
    check(&p.0, Action::Read { tenant: &tenant }, || format!("tenant {tenant}"))?;
    s.store.get_tenant(&tenant).await?;
    Ok(Json(s.store.list_apps_of_tenant(&tenant).await?.into_iter().map(App::from).collect()))
}

#[utoipa::path(post, path = "/admin/tenants/{tenant}/apps", request_body = CreateApp, responses((status = 201, body = App)))]
pub async fn create_app(
    State(s): State<AdminState>,
    p: Principal,
    Path(tenant): Path<String>,
    Body(a): Body<CreateApp>,
) -> R<impl IntoResponse> {
    check(&p.0, Action::ManageTenant { tenant: &tenant }, || format!("tenant {tenant}"))?;
    let rec = AppRecord {
        name: a.name.unwrap_or_else(|| a.id.clone()),
        id: a.id,
        tenant_id: tenant,
        enabled: a.enabled,
    };
    let rec = p.store(&s).create_app(&rec).await?;
    changed_in(&s, &p, &rec.tenant_id, &format!("create app {}", rec.id)).await;
    Ok(created(App::from(rec)))
}

#[utoipa::path(get, path = "/admin/apps/{app}", responses((status = 200, body = App)))]
pub async fn get_app(State(s): State<AdminState>, p: Principal, Path(app): Path<String>) -> R<Json<App>> {
    Ok(Json(app_and_tenant(&s.store, &p, &app).await?.into()))
}

#[utoipa::path(patch, path = "/admin/apps/{app}", request_body = UpdateApp, responses((status = 200, body = App)))]
pub async fn update_app(
    State(s): State<AdminState>,
    p: Principal,
    Path(app): Path<String>,
    Body(u): Body<UpdateApp>,
) -> R<Json<App>> {
    let mut rec = app_and_tenant(&s.store, &p, &app).await?;
    check(&p.0, Action::ManageTenant { tenant: &rec.tenant_id }, || format!("app {app}"))?;
    if let Some(n) = u.name {
        rec.name = n;
    }
    if let Some(e) = u.enabled {
        rec.enabled = e;
    }
    let rec = p.store(&s).update_app(&rec).await?;
    changed_in(&s, &p, &rec.tenant_id, &format!("update app {}", rec.id)).await;
    Ok(Json(rec.into()))
}

#[utoipa::path(delete, path = "/admin/apps/{app}", responses((status = 204)))]
pub async fn delete_app(State(s): State<AdminState>, p: Principal, Path(app): Path<String>) -> R<StatusCode> {
    let rec = app_and_tenant(&s.store, &p, &app).await?;
    check(&p.0, Action::ManageTenant { tenant: &rec.tenant_id }, || format!("app {app}"))?;
    p.store(&s).delete_app(&app).await?;
    changed_in(&s, &p, &rec.tenant_id, &format!("delete app {app}")).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Emergency revoke: disables the app and every one of its keys in one transaction.
#[utoipa::path(post, path = "/admin/apps/{app}/revoke", responses((status = 200, body = AppRevoked)))]
pub async fn revoke_app(
    State(s): State<AdminState>,
    p: Principal,
    Path(app): Path<String>,
) -> R<Json<AppRevoked>> {
    let rec = app_and_tenant(&s.store, &p, &app).await?;
    check(&p.0, Action::ManageTenant { tenant: &rec.tenant_id }, || format!("app {app}"))?;
    let n = p.store(&s).disable_app(&app).await?;
    changed_in(&s, &p, &rec.tenant_id, &format!("revoke app {app}")).await;
    let rec = s.store.get_app(&app).await?;
    Ok(Json(AppRevoked { app: rec.into(), keys_disabled: n }))
}

// ---- API tokens ----

fn token_issuer(s: &AdminState) -> Result<&crate::TokenIssuer, AdminError> {
    s.tokens.as_ref().ok_or_else(|| {
        AdminError::invalid("tokens", "API tokens are not enabled on this gateway ([tokens] enabled = true)")
    })
}

fn actor(p: &Principal) -> String {
    format!("{} ({})", p.0.id, p.0.name)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Issues a user token (for a login service): bound to the app and the user id, accepted on
/// routes with `user_tokens = true`, forwarded as `X-Kg-User-Id`. Shown once.
#[utoipa::path(post, path = "/admin/apps/{app}/user-tokens", request_body = CreateUserToken,
    responses((status = 201, body = IssuedToken), (status = 400, body = ErrorEnvelope)))]
pub async fn create_user_token(
    State(s): State<AdminState>,
    p: Principal,
    Path(app): Path<String>,
    Body(req): Body<CreateUserToken>,
) -> R<impl IntoResponse> {
    let rec = app_and_tenant(&s.store, &p, &app).await?;
    check(&p.0, Action::CreateKey { tenant: &rec.tenant_id, app: &app }, || format!("app {app}"))?;
    let t = token_issuer(&s)?;
    if req.user_id.is_empty()
        || req.user_id.chars().count() > 128
        || req.user_id.chars().any(char::is_control)
    {
        return Err(AdminError::invalid("user_id", "1 to 128 characters, no control characters"));
    }
    if !rec.enabled {
        return Err(AdminError::invalid("app", "the app is disabled"));
    }
    let ttl = req.ttl_secs.unwrap_or(t.default_ttl.as_secs());
    if ttl == 0 || ttl > t.max_ttl.as_secs() {
        return Err(AdminError::invalid(
            "ttl_secs",
            format!("must be between 1 and {}", t.max_ttl.as_secs()),
        ));
    }
    let (token, hash) = keygate_state::new_token().map_err(|_| AdminError::Internal)?;
    let grant = keygate_state::TokenGrant {
        app_id: app.clone(),
        access_key: None,
        user_id: Some(req.user_id.clone()),
        expires_at: unix_now() + ttl as i64,
    };
    t.store.issue(&hash, &grant, std::time::Duration::from_secs(ttl)).await.map_err(AdminError::state)?;
    s.store
        .append_admin_audit(
            &actor(&p),
            "user_token.issue",
            &format!("app {app}"),
            None,
            Some(&serde_json::json!({"user_id": req.user_id, "ttl_secs": ttl})),
        )
        .await?;
    let body = IssuedToken {
        access_token: token,
        token_type: "Bearer",
        expires_in: ttl,
        expires_at: grant.expires_at,
        app_id: app,
        user_id: grant.user_id,
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// Revokes every token of an app (or only one user's), on every replica at once.
#[utoipa::path(post, path = "/admin/apps/{app}/tokens/revoke", request_body = RevokeAppTokens,
    responses((status = 200, body = TokensRevoked)))]
pub async fn revoke_app_tokens(
    State(s): State<AdminState>,
    p: Principal,
    Path(app): Path<String>,
    Body(req): Body<RevokeAppTokens>,
) -> R<Json<TokensRevoked>> {
    let rec = app_and_tenant(&s.store, &p, &app).await?;
    check(&p.0, Action::CreateKey { tenant: &rec.tenant_id, app: &app }, || format!("app {app}"))?;
    let t = token_issuer(&s)?;
    let revoked = t.store.revoke_app(&app, req.user_id.as_deref()).await.map_err(AdminError::state)?;
    s.store
        .append_admin_audit(
            &actor(&p),
            "tokens.revoke",
            &format!("app {app}"),
            None,
            Some(&serde_json::json!({"user_id": req.user_id, "revoked": revoked})),
        )
        .await?;
    Ok(Json(TokensRevoked { revoked }))
}

/// Revokes one token by its value (e.g. reported leaked). Tokens of other tenants' apps answer
/// 404 like unknown ones.
#[utoipa::path(post, path = "/admin/api-tokens/revoke", request_body = RevokeToken,
    responses((status = 200, body = TokensRevoked), (status = 404, body = ErrorEnvelope)))]
pub async fn revoke_api_token(
    State(s): State<AdminState>,
    p: Principal,
    Body(req): Body<RevokeToken>,
) -> R<Json<TokensRevoked>> {
    let t = token_issuer(&s)?;
    let hash = keygate_state::token_hash(req.token.trim());
    let unavailable = AdminError::state;
    let grant = t.store.lookup(&hash).await.map_err(unavailable)?;
    let Some(grant) = grant else { return Err(AdminError::NotFound("token".into())) };
    let rec = app_and_tenant(&s.store, &p, &grant.app_id)
        .await
        .map_err(|_| AdminError::NotFound("token".into()))?;
    check(&p.0, Action::CreateKey { tenant: &rec.tenant_id, app: &grant.app_id }, || "token".into())?;
    let revoked = u64::from(t.store.revoke(&hash).await.map_err(unavailable)?);
    s.store
        .append_admin_audit(
            &actor(&p),
            "token.revoke",
            &format!("app {}", grant.app_id),
            None,
            Some(&serde_json::json!({"user_id": grant.user_id, "access_key": grant.access_key})),
        )
        .await?;
    Ok(Json(TokensRevoked { revoked }))
}

// ---- keys ----

#[utoipa::path(get, path = "/admin/apps/{app}/keys", responses((status = 200, body = [Key])))]
pub async fn list_keys(
    State(s): State<AdminState>,
    p: Principal,
    Path(app): Path<String>,
) -> R<Json<Vec<Key>>> {
    app_and_tenant(&s.store, &p, &app).await?;
    Ok(Json(s.store.list_keys(Some(&app)).await?.into_iter().map(Key::from).collect()))
}

#[utoipa::path(post, path = "/admin/apps/{app}/keys", request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorEnvelope)))]
pub async fn create_key(
    State(s): State<AdminState>,
    p: Principal,
    Path(app): Path<String>,
    Body(mut req): Body<CreateKey>,
) -> R<impl IntoResponse> {
    let app_rec = app_and_tenant(&s.store, &p, &app).await?;
    check(&p.0, Action::CreateKey { tenant: &app_rec.tenant_id, app: &app }, || format!("app {app}"))?;
    let mut imported = req.secret.take().map(|t| Zeroizing::new(t.into_bytes()));
    let mut rec = KeyRecord {
        access_key: match req.access_key {
            Some(a) => a,
            None => new_access_key()?,
        },
        app_id: app,
        scheme: req.scheme,
        scheme_settings: req.scheme_settings,
        enabled: req.enabled,
        valid_from: req.valid_from,
        valid_to: req.valid_to,
        timestamp_window_secs: req.timestamp_window_secs,
        description: req.description,
        scopes: req.scopes,
        allowed_endpoints: req.allowed_endpoints,
        allowed_cidrs: req.allowed_cidrs,
        rate_limit: req.rate_limit.map(|r| RateLimit { rate_per_sec: r.rate_per_sec, burst: r.burst }),
        auth_policy: req.auth_policy,
        created_by: format!("{} ({})", p.0.id, p.0.name),
        ..KeyRecord::default()
    };
    gateway_check(&s, &rec)?;
    if rec.scheme == "field-rsa" {
        // The app's key pair for encrypted fields: generated here unless imported (PKCS#8 PEM).
        // The private key becomes the sealed secret and is never shown; the public key is kept
        // in the settings for partners to download.
        let pair = match &imported {
            Some(pem) => keygate_sign::fields::FieldKeyPair::from_pem(pem).map_err(|e| {
                AdminError::invalid(
                    "secret",
                    format!("a field-rsa secret is a PKCS#8 PEM RSA private key: {e}"),
                )
            })?,
            None => {
                let bits =
                    rec.scheme_settings.get("bits").and_then(serde_json::Value::as_u64).unwrap_or(2048);
                keygate_sign::fields::FieldKeyPair::generate(usize::try_from(bits).unwrap_or(0))
                    .map_err(|e| AdminError::invalid("key.scheme_settings.bits", e.to_string()))?
            }
        };
        let pem = pair.to_pkcs8_pem().map_err(|_| AdminError::Internal)?;
        rec.scheme_settings["public_key_pem"] = pair.public_key_pem().into();
        imported = Some(Zeroizing::new(pem.as_bytes().to_vec()));
    }
    let store = p.store(&s);
    let (rec, shown) = match imported {
        Some(secret) => {
            if secret.len() < MIN_IMPORTED_SECRET || secret.len() > MAX_SECRET {
                return Err(AdminError::invalid(
                    "secret",
                    format!("an imported secret must be {MIN_IMPORTED_SECRET} to {MAX_SECRET} bytes"),
                ));
            }
            (store.import_key(&rec, &secret).await?, None)
        }
        None => {
            let secret = keygate_store::generate_secret()?;
            let rec = store.create_key(&rec, &secret).await?;
            let text = String::from_utf8(secret.to_vec()).map_err(|_| AdminError::Internal)?;
            (rec, Some(OnceSecret::new(text)))
        }
    };
    changed_in(&s, &p, &app_rec.tenant_id, &format!("create key {}", rec.access_key)).await;
    Ok(created(CreatedKey { key: rec.into(), secret: shown }))
}

#[utoipa::path(get, path = "/admin/keys/{key}", responses((status = 200, body = Key)))]
pub async fn get_key(State(s): State<AdminState>, p: Principal, Path(key): Path<String>) -> R<Json<Key>> {
    Ok(Json(key_and_app(&s.store, &p, &key).await?.0.into()))
}

#[utoipa::path(patch, path = "/admin/keys/{key}", request_body = UpdateKey, responses((status = 200, body = Key)))]
pub async fn update_key(
    State(s): State<AdminState>,
    p: Principal,
    Path(key): Path<String>,
    Body(u): Body<UpdateKey>,
) -> R<Json<Key>> {
    let (mut rec, app) = key_and_app(&s.store, &p, &key).await?;
    check(&p.0, Action::ManageTenant { tenant: &app.tenant_id }, || format!("key {key}"))?;
    u.apply(&mut rec);
    gateway_check(&s, &rec)?;
    let rec = p.store(&s).update_key(&rec).await?;
    changed_in(&s, &p, &app.tenant_id, &format!("update key {key}")).await;
    Ok(Json(rec.into()))
}

#[utoipa::path(delete, path = "/admin/keys/{key}", responses((status = 204)))]
pub async fn delete_key(State(s): State<AdminState>, p: Principal, Path(key): Path<String>) -> R<StatusCode> {
    let (_, app) = key_and_app(&s.store, &p, &key).await?;
    check(&p.0, Action::ManageTenant { tenant: &app.tenant_id }, || format!("key {key}"))?;
    p.store(&s).delete_key(&key).await?;
    changed_in(&s, &p, &app.tenant_id, &format!("delete key {key}")).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a rotation: a new key (new secret, same policy) and an overlap window during which
/// both verify; after it the old key stops (`key_rotated`).
#[utoipa::path(post, path = "/admin/keys/{key}/rotate", request_body = RotateKey, responses((status = 201, body = Rotated)))]
pub async fn rotate_key(
    State(s): State<AdminState>,
    p: Principal,
    Path(key): Path<String>,
    Body(req): Body<RotateKey>,
) -> R<impl IntoResponse> {
    let (old, app) = key_and_app(&s.store, &p, &key).await?;
    check(&p.0, Action::ManageTenant { tenant: &app.tenant_id }, || format!("key {key}"))?;
    if matches!(old.scheme.as_str(), "mtls" | "field-rsa" | "field-partner") {
        return Err(AdminError::invalid(
            "key.scheme",
            format!("{} keys hold no signing secret: add a new key (new kid or certificate), then revoke this one", old.scheme),
        ));
    }
    let new = KeyRecord {
        access_key: match req.new_access_key {
            Some(a) => a,
            None => new_access_key()?,
        },
        successor: None,
        overlap_until: None,
        last_used_at: None,
        enabled: true,
        created_by: format!("{} ({})", p.0.id, p.0.name),
        ..old.clone()
    };
    let secret = keygate_store::generate_secret()?;
    let rotation = p.store(&s).rotate_key(&key, &new, &secret, req.overlap_secs).await?;
    changed_in(&s, &p, &app.tenant_id, &format!("rotate key {key}")).await;
    let text = String::from_utf8(secret.to_vec()).map_err(|_| AdminError::Internal)?;
    Ok(created(Rotated { old: rotation.old.into(), new: rotation.new.into(), secret: OnceSecret::new(text) }))
}

/// Emergency revoke of one key: disabled at once on every replica.
#[utoipa::path(post, path = "/admin/keys/{key}/revoke", responses((status = 200, body = Key)))]
pub async fn revoke_key(State(s): State<AdminState>, p: Principal, Path(key): Path<String>) -> R<Json<Key>> {
    set_enabled(s, p, key, false).await
}

#[utoipa::path(post, path = "/admin/keys/{key}/enable", responses((status = 200, body = Key)))]
pub async fn enable_key(State(s): State<AdminState>, p: Principal, Path(key): Path<String>) -> R<Json<Key>> {
    set_enabled(s, p, key, true).await
}

async fn set_enabled(s: AdminState, p: Principal, key: String, enabled: bool) -> R<Json<Key>> {
    let (_, app) = key_and_app(&s.store, &p, &key).await?;
    check(&p.0, Action::ManageTenant { tenant: &app.tenant_id }, || format!("key {key}"))?;
    let rec = p.store(&s).set_key_enabled(&key, enabled).await?;
    changed_in(&s, &p, &app.tenant_id, &format!("{} key {key}", if enabled { "enable" } else { "revoke" }))
        .await;
    Ok(Json(rec.into()))
}

// ---- admin tokens ----

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    tenant: Option<String>,
}

#[utoipa::path(get, path = "/admin/tokens", params(("tenant" = Option<String>, Query, description = "only this tenant's tokens")),
    responses((status = 200, body = [AdminToken])))]
pub async fn list_tokens(
    State(s): State<AdminState>,
    p: Principal,
    Query(q): Query<TokenQuery>,
) -> R<Json<Vec<AdminToken>>> {
    let tenant = match (p.0.role, q.tenant) {
        (AdminRole::GatewayAdmin, t) => t,
        (_, Some(t)) => Some(t),
        (_, None) => p.0.tenant_id.clone(),
    };
    match &tenant {
        Some(t) => check(&p.0, Action::ManageMembers { tenant: t }, || format!("tenant {t}"))?,
        None => check(&p.0, Action::ManageGateway, String::new)?,
    }
    let list = s.store.list_admin_tokens(tenant.as_deref()).await?;
    Ok(Json(list.into_iter().map(AdminToken::from).collect()))
}

#[utoipa::path(post, path = "/admin/tokens", request_body = CreateAdminToken, responses((status = 201, body = CreatedAdminToken)))]
pub async fn create_token(
    State(s): State<AdminState>,
    p: Principal,
    Body(req): Body<CreateAdminToken>,
) -> R<impl IntoResponse> {
    let role = req.role()?;
    match (&req.tenant_id, role) {
        (_, AdminRole::GatewayAdmin) | (None, _) => check(&p.0, Action::ManageGateway, String::new)?,
        (Some(t), _) => check(&p.0, Action::ManageMembers { tenant: t }, || format!("tenant {t}"))?,
    }
    let mut rec = AdminTokenRecord::new(&req.name, role, req.tenant_id.as_deref());
    rec.app_grants = req.app_grants;
    rec.expires_at = req.expires_at;
    let (rec, token) = p.store(&s).create_admin_token(&rec).await?;
    Ok(created(CreatedAdminToken { record: rec.into(), token: OnceSecret::new(token.to_string()) }))
}

async fn token_in_scope(s: &AdminState, p: &Principal, id: &str) -> R<AdminTokenRecord> {
    let rec = s.store.get_admin_token(id).await?;
    match &rec.tenant_id {
        Some(t) => check(&p.0, Action::ManageMembers { tenant: t }, || format!("admin token {id}"))?,
        None => check(&p.0, Action::ManageGateway, || format!("admin token {id}"))?,
    }
    Ok(rec)
}

#[utoipa::path(get, path = "/admin/tokens/{id}", responses((status = 200, body = AdminToken)))]
pub async fn get_token(
    State(s): State<AdminState>,
    p: Principal,
    Path(id): Path<String>,
) -> R<Json<AdminToken>> {
    Ok(Json(token_in_scope(&s, &p, &id).await?.into()))
}

/// Revokes an admin token; it stops working with the next request.
#[utoipa::path(delete, path = "/admin/tokens/{id}", responses((status = 200, body = AdminToken)))]
pub async fn revoke_token(
    State(s): State<AdminState>,
    p: Principal,
    Path(id): Path<String>,
) -> R<Json<AdminToken>> {
    token_in_scope(&s, &p, &id).await?;
    Ok(Json(p.store(&s).revoke_admin_token(&id).await?.into()))
}

// ---- admin audit ----

#[derive(Debug, Deserialize)]
pub struct Page {
    limit: Option<u32>,
    offset: Option<u64>,
}

#[utoipa::path(get, path = "/admin/audit", params(("limit" = Option<u32>, Query), ("offset" = Option<u64>, Query)),
    responses((status = 200, body = [AuditEntry])))]
pub async fn list_audit(
    State(s): State<AdminState>,
    p: Principal,
    Query(q): Query<Page>,
) -> R<Json<Vec<AuditEntry>>> {
    check(&p.0, Action::ManageGateway, String::new)?;
    let rows = s.store.list_admin_audit(q.limit.unwrap_or(100), q.offset.unwrap_or(0)).await?;
    Ok(Json(rows.into_iter().map(AuditEntry::from).collect()))
}

// ---- request audit log ----

#[derive(Debug, Deserialize)]
pub struct RequestQuery {
    app: Option<String>,
    key: Option<String>,
    ip: Option<String>,
    code: Option<String>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    before_id: Option<String>,
    limit: Option<u32>,
}

/// Audit records of requests, newest first. Tenant roles must name an app of their tenant.
#[utoipa::path(get, path = "/admin/requests", params(
        ("app" = Option<String>, Query), ("key" = Option<String>, Query), ("ip" = Option<String>, Query),
        ("code" = Option<String>, Query), ("from_ms" = Option<i64>, Query), ("to_ms" = Option<i64>, Query),
        ("before_id" = Option<String>, Query, description = "last id of the previous page"), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = [Object])))]
pub async fn search_requests(
    State(s): State<AdminState>,
    p: Principal,
    Query(q): Query<RequestQuery>,
) -> R<Json<Vec<keygate_audit::AuditRecord>>> {
    match &q.app {
        Some(app) => {
            app_and_tenant(&s.store, &p, app).await?;
        }
        None => check(&p.0, Action::ManageGateway, String::new)?,
    }
    let db = s.audit.as_ref().ok_or_else(|| AdminError::NotFound("request audit log (disabled)".into()))?;
    let rows = db
        .search(&keygate_audit::Query {
            app: q.app,
            key_id: q.key,
            client_ip: q.ip,
            code: q.code,
            from_ms: q.from_ms,
            to_ms: q.to_ms,
            before_id: q.before_id,
            limit: q.limit,
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "audit search failed");
            AdminError::StoreUnavailable
        })?;
    Ok(Json(rows))
}

// ---- outbound providers ----

async fn provider_view(s: &AdminState, rec: keygate_store::ProviderRecord) -> R<Provider> {
    let secrets: Vec<ProviderSecret> =
        s.store.list_provider_secrets(&rec.id).await?.into_iter().map(Into::into).collect();
    let required = match &s.validate_provider {
        Some(v) => v(&rec.config).unwrap_or_default(),
        None => Vec::new(),
    };
    let mut missing: Vec<String> =
        required.into_iter().filter(|b| !secrets.iter().any(|sec| &sec.name == b)).collect();
    missing.sort();
    missing.dedup();
    Ok(Provider {
        id: rec.id,
        tenant_id: rec.tenant_id,
        config: rec.config,
        created_at: rec.created_at,
        updated_at: rec.updated_at,
        updated_by: rec.updated_by,
        secrets,
        missing_bindings: missing,
    })
}

async fn provider_of(s: &AdminState, p: &Principal, id: &str) -> R<keygate_store::ProviderRecord> {
    let rec = s.store.get_provider(id).await?;
    check(&p.0, Action::Read { tenant: &rec.tenant_id }, || format!("provider {id}"))?;
    Ok(rec)
}

#[utoipa::path(get, path = "/admin/tenants/{tenant}/providers", responses((status = 200, body = [Provider])))]
pub async fn list_providers(
    State(s): State<AdminState>,
    p: Principal,
    Path(tenant): Path<String>,
) -> R<Json<Vec<Provider>>> {
    check(&p.0, Action::Read { tenant: &tenant }, || format!("tenant {tenant}"))?;
    s.store.get_tenant(&tenant).await?;
    let mut out = Vec::new();
    for rec in s.store.list_providers(Some(&tenant)).await? {
        out.push(provider_view(&s, rec).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/admin/providers/{id}", responses((status = 200, body = Provider)))]
pub async fn get_provider(
    State(s): State<AdminState>,
    p: Principal,
    Path(id): Path<String>,
) -> R<Json<Provider>> {
    let rec = provider_of(&s, &p, &id).await?;
    Ok(Json(provider_view(&s, rec).await?))
}

/// Creates or replaces a provider. The document is validated by the outbound gateway's parser;
/// granted apps must belong to the provider's tenant.
#[utoipa::path(put, path = "/admin/providers/{id}", request_body = PutProvider, responses((status = 200, body = Provider)))]
pub async fn put_provider(
    State(s): State<AdminState>,
    p: Principal,
    Path(id): Path<String>,
    Body(body): Body<PutProvider>,
) -> R<Json<Provider>> {
    check(&p.0, Action::ManageTenant { tenant: &body.tenant_id }, || format!("tenant {}", body.tenant_id))?;
    if let Ok(existing) = s.store.get_provider(&id).await {
        check(&p.0, Action::ManageTenant { tenant: &existing.tenant_id }, || format!("provider {id}"))?;
    }
    let validate = s
        .validate_provider
        .as_ref()
        .ok_or_else(|| AdminError::invalid("config", "this gateway has no outbound support"))?;
    validate(&body.config)
        .map_err(|(field, reason)| AdminError::Invalid { field: format!("config.{field}"), reason })?;
    if let Some(apps) = body.config.get("granted_apps").and_then(|v| v.as_array()) {
        for (i, a) in apps.iter().enumerate() {
            let a = a.as_str().unwrap_or_default();
            match s.store.get_app(a).await {
                Ok(app) if app.tenant_id == body.tenant_id => {}
                _ => {
                    return Err(AdminError::invalid(
                        &format!("config.granted_apps[{i}]"),
                        format!("app {a} does not exist in tenant {}", body.tenant_id),
                    ))
                }
            }
        }
    }
    let rec = keygate_store::ProviderRecord {
        id,
        tenant_id: body.tenant_id,
        config: body.config,
        created_at: 0,
        updated_at: 0,
        updated_by: String::new(),
    };
    let (rec, _) = p.store(&s).put_provider(&rec).await?;
    changed_in(&s, &p, &rec.tenant_id, &format!("put provider {}", rec.id)).await;
    Ok(Json(provider_view(&s, rec).await?))
}

#[utoipa::path(delete, path = "/admin/providers/{id}", responses((status = 204)))]
pub async fn delete_provider(
    State(s): State<AdminState>,
    p: Principal,
    Path(id): Path<String>,
) -> R<StatusCode> {
    let rec = provider_of(&s, &p, &id).await?;
    check(&p.0, Action::ManageTenant { tenant: &rec.tenant_id }, || format!("provider {id}"))?;
    p.store(&s).delete_provider(&id).await?;
    changed_in(&s, &p, &rec.tenant_id, &format!("delete provider {id}")).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/admin/providers/{id}/secrets", responses((status = 200, body = [ProviderSecret])))]
pub async fn list_provider_secrets(
    State(s): State<AdminState>,
    p: Principal,
    Path(id): Path<String>,
) -> R<Json<Vec<ProviderSecret>>> {
    provider_of(&s, &p, &id).await?;
    Ok(Json(s.store.list_provider_secrets(&id).await?.into_iter().map(Into::into).collect()))
}

/// Stores a secret of the provider. Write-only: the value is never returned by any call.
#[utoipa::path(put, path = "/admin/providers/{id}/secrets/{name}", request_body = PutSecret, responses((status = 200, body = ProviderSecret)))]
pub async fn put_provider_secret(
    State(s): State<AdminState>,
    p: Principal,
    Path((id, name)): Path<(String, String)>,
    Body(body): Body<PutSecret>,
) -> R<Json<ProviderSecret>> {
    let rec = provider_of(&s, &p, &id).await?;
    check(&p.0, Action::ManageTenant { tenant: &rec.tenant_id }, || format!("provider {id}"))?;
    let raw = Zeroizing::new(match body.encoding.as_deref().unwrap_or("utf8") {
        "utf8" => body.value.expose().as_bytes().to_vec(),
        "base64" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(body.value.expose().trim())
                .map_err(|_| AdminError::invalid("value", "not valid base64"))?
        }
        "hex" => hex_decode(body.value.expose().trim())
            .ok_or_else(|| AdminError::invalid("value", "not valid hex"))?,
        _ => return Err(AdminError::invalid("encoding", "must be utf8, base64 or hex")),
    });
    let meta = p.store(&s).put_provider_secret(&id, &name, &raw).await?;
    changed_in(&s, &p, &rec.tenant_id, &format!("put secret {name} of provider {id}")).await;
    Ok(Json(meta.into()))
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[utoipa::path(delete, path = "/admin/providers/{id}/secrets/{name}", responses((status = 204)))]
pub async fn delete_provider_secret(
    State(s): State<AdminState>,
    p: Principal,
    Path((id, name)): Path<(String, String)>,
) -> R<StatusCode> {
    let rec = provider_of(&s, &p, &id).await?;
    check(&p.0, Action::ManageTenant { tenant: &rec.tenant_id }, || format!("provider {id}"))?;
    p.store(&s).delete_provider_secret(&id, &name).await?;
    changed_in(&s, &p, &rec.tenant_id, &format!("delete secret {name} of provider {id}")).await;
    Ok(StatusCode::NO_CONTENT)
}

// ---- scripted recipes ----

fn active_version(config: &serde_json::Value) -> Option<i64> {
    let r = config.get("recipe")?;
    (r.get("type")?.as_str()? == "script")
        .then(|| r.get("version").and_then(serde_json::Value::as_i64))
        .flatten()
}

/// Puts `source` (as `version`) into the provider's script recipe, validates and stores it.
async fn activate(
    s: &AdminState,
    p: &Principal,
    mut rec: keygate_store::ProviderRecord,
    source: &str,
    version: i64,
    vars: &std::collections::BTreeMap<String, String>,
) -> R<keygate_store::ProviderRecord> {
    let recipe = rec.config.get("recipe").cloned().unwrap_or_default();
    let mut next = if recipe.get("type").and_then(|t| t.as_str()) == Some("script") {
        recipe
    } else {
        serde_json::json!({"type": "script", "vars": vars})
    };
    next["source"] = source.into();
    next["version"] = version.into();
    rec.config["recipe"] = next;
    let validate = s
        .validate_provider
        .as_ref()
        .ok_or_else(|| AdminError::invalid("config", "this gateway has no outbound support"))?;
    validate(&rec.config)
        .map_err(|(field, reason)| AdminError::Invalid { field: format!("config.{field}"), reason })?;
    let (rec, _) = p.store(s).put_provider(&rec).await?;
    Ok(rec)
}

#[utoipa::path(get, path = "/admin/providers/{id}/scripts", responses((status = 200, body = [ScriptVersionView])))]
pub async fn list_scripts(
    State(s): State<AdminState>,
    p: Principal,
    Path(id): Path<String>,
) -> R<Json<Vec<ScriptVersionView>>> {
    let rec = provider_of(&s, &p, &id).await?;
    let active = active_version(&rec.config);
    let all = s.store.list_provider_scripts(&id).await?;
    Ok(Json(
        all.into_iter()
            .map(|v| ScriptVersionView {
                active: Some(v.version) == active,
                version: v.version,
                comment: v.comment,
                created_at: v.created_at,
                created_by: v.created_by,
                source: v.source,
            })
            .collect(),
    ))
}

/// Saves a new script version (validated: syntax and function shape) and makes it active.
#[utoipa::path(post, path = "/admin/providers/{id}/scripts", request_body = SaveScript, responses((status = 201, body = SavedScript)))]
pub async fn save_script(
    State(s): State<AdminState>,
    p: Principal,
    Path(id): Path<String>,
    Body(body): Body<SaveScript>,
) -> R<(StatusCode, Json<SavedScript>)> {
    let rec = provider_of(&s, &p, &id).await?;
    check(&p.0, Action::ManageTenant { tenant: &rec.tenant_id }, || format!("provider {id}"))?;
    // Validate before a version is recorded: a version that cannot run is never saved.
    let mut probe = rec.clone();
    let mut recipe = probe.config.get("recipe").cloned().unwrap_or_default();
    if recipe.get("type").and_then(|t| t.as_str()) != Some("script") {
        recipe = serde_json::json!({"type": "script", "vars": body.vars});
    }
    recipe["source"] = body.source.clone().into();
    probe.config["recipe"] = recipe;
    if let Some(v) = &s.validate_provider {
        v(&probe.config)
            .map_err(|(field, reason)| AdminError::Invalid { field: format!("config.{field}"), reason })?;
    }
    let saved = p.store(&s).add_provider_script(&id, &body.source, &body.comment).await?;
    let rec = activate(&s, &p, rec, &body.source, saved.version, &body.vars).await?;
    changed_in(&s, &p, &rec.tenant_id, &format!("save script v{} of provider {id}", saved.version)).await;
    Ok((
        StatusCode::CREATED,
        Json(SavedScript { version: saved.version, provider: provider_view(&s, rec).await? }),
    ))
}

/// Rollback (or forward): makes an earlier saved version the active one.
#[utoipa::path(post, path = "/admin/providers/{id}/scripts/{version}/activate", responses((status = 200, body = Provider)))]
pub async fn activate_script(
    State(s): State<AdminState>,
    p: Principal,
    Path((id, version)): Path<(String, i64)>,
) -> R<Json<Provider>> {
    let rec = provider_of(&s, &p, &id).await?;
    check(&p.0, Action::ManageTenant { tenant: &rec.tenant_id }, || format!("provider {id}"))?;
    let v = s
        .store
        .list_provider_scripts(&id)
        .await?
        .into_iter()
        .find(|v| v.version == version)
        .ok_or_else(|| AdminError::NotFound(format!("script version {version} of provider {id}")))?;
    let rec = activate(&s, &p, rec, &v.source, v.version, &Default::default()).await?;
    changed_in(&s, &p, &rec.tenant_id, &format!("activate script v{version} of provider {id}")).await;
    Ok(Json(provider_view(&s, rec).await?))
}

/// Runs the provider's script (or `source`) on a sample request with mocked host calls and
/// stand-in bindings; returns the outgoing request and a step trace. Contacts no provider.
#[utoipa::path(post, path = "/admin/providers/{id}/test-run", responses((status = 200, body = Object)))]
pub async fn test_run(
    State(s): State<AdminState>,
    p: Principal,
    Path(id): Path<String>,
    Body(body): Body<serde_json::Value>,
) -> R<Json<serde_json::Value>> {
    let rec = provider_of(&s, &p, &id).await?;
    let tester = s.script_tester.as_ref().ok_or_else(|| {
        AdminError::invalid("provider", "test runs need the outbound listener in this process")
    })?;
    let report =
        tester(rec.id, body).await.map_err(|(field, reason)| AdminError::Invalid { field, reason })?;
    Ok(Json(report))
}
