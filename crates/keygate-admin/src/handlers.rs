// One handler per endpoint: authenticate, authorize (rbac.rs), call the store, shape the reply.
// The store validates and audits every write; handlers add what only the API knows (who the
// actor is, generated ids and secrets, the gateway's own key checks).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use keygate_store::{AdminRole, AdminTokenRecord, AppRecord, KeyRecord, RateLimit, Store, TenantRecord};
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
        search_requests
    ),
    components(schemas(
        Tenant, App, CreateApp, UpdateApp, Rate, Key, CreateKey, UpdateKey, CreatedKey, RotateKey, Rotated,
        AppRevoked, AdminToken, CreateAdminToken, CreatedAdminToken, AuditEntry, ErrorEnvelope, WhoAmI
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
    changed(&s);
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
    changed(&s);
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
    changed(&s);
    Ok(Json(rec.into()))
}

#[utoipa::path(delete, path = "/admin/apps/{app}", responses((status = 204)))]
pub async fn delete_app(State(s): State<AdminState>, p: Principal, Path(app): Path<String>) -> R<StatusCode> {
    let rec = app_and_tenant(&s.store, &p, &app).await?;
    check(&p.0, Action::ManageTenant { tenant: &rec.tenant_id }, || format!("app {app}"))?;
    p.store(&s).delete_app(&app).await?;
    changed(&s);
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
    changed(&s);
    let rec = s.store.get_app(&app).await?;
    Ok(Json(AppRevoked { app: rec.into(), keys_disabled: n }))
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
    let imported = req.secret.take().map(|t| Zeroizing::new(t.into_bytes()));
    let rec = KeyRecord {
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
        created_by: format!("{} ({})", p.0.id, p.0.name),
        ..KeyRecord::default()
    };
    gateway_check(&s, &rec)?;
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
    changed(&s);
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
    changed(&s);
    Ok(Json(rec.into()))
}

#[utoipa::path(delete, path = "/admin/keys/{key}", responses((status = 204)))]
pub async fn delete_key(State(s): State<AdminState>, p: Principal, Path(key): Path<String>) -> R<StatusCode> {
    let (_, app) = key_and_app(&s.store, &p, &key).await?;
    check(&p.0, Action::ManageTenant { tenant: &app.tenant_id }, || format!("key {key}"))?;
    p.store(&s).delete_key(&key).await?;
    changed(&s);
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
    changed(&s);
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
    changed(&s);
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
