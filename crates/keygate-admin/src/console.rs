// The web console: server-rendered pages on the admin listener, no JavaScript. Every page is built
// from the admin API itself, called in-process with the session's admin token, so a page can show
// or do exactly what the API allows that token — one RBAC, never a second implementation.
// Sessions live in memory (HttpOnly, SameSite=Strict cookie); every form carries a per-session
// CSRF token and must come from this origin; failed logins are throttled per client address.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tower::ServiceExt;
use zeroize::Zeroizing;

use crate::AdminState;

const COOKIE: &str = "kg_console";
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Failed logins allowed per client address per window.
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
const CSS: &str = include_str!("console.css");
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

struct Session {
    token: Zeroizing<String>,
    csrf: String,
    expires: Instant,
}

struct Console {
    /// The API router (without the console), called in-process.
    api: Router,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console { .. }")
    }
}

/// The caller of a form POST (session, CSRF token, same origin), or the refusal to return.
macro_rules! post_session {
    ($c:expr, $headers:expr, $csrf:expr) => {
        match $c.post_caller(&$headers, &$csrf).await {
            Ok(me) => me,
            Err(refusal) => return refusal,
        }
    };
}

type Shared = Arc<Console>;

/// The console's routes (`/console/...`), sharing the admin listener.
pub fn routes(state: AdminState) -> Router {
    let console = Arc::new(Console {
        api: crate::api_router(state),
        sessions: Mutex::default(),
        failures: Mutex::default(),
    });
    Router::new()
        .route("/console", get(|| async { redirect("/console/") }))
        .route("/console/", get(overview))
        .route("/console/console.css", get(css))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/tenants/{tenant}", get(tenant_page))
        .route("/console/tenants/{tenant}/apps", post(create_app))
        .route("/console/tenants/{tenant}/routes", post(create_route))
        .route("/console/tenants/{tenant}/routes/{name}", get(route_page).post(save_route))
        .route("/console/tenants/{tenant}/routes/{name}/delete", post(delete_route))
        .route("/console/tenants/{tenant}/alert-rules", post(create_rule))
        .route("/console/tenants/{tenant}/alert-rules/{name}", get(rule_page).post(save_rule))
        .route("/console/tenants/{tenant}/alert-rules/{name}/delete", post(delete_rule))
        .route("/console/tenants/{tenant}/alerts", get(tenant_alerts_page))
        .route("/console/tenants/{tenant}/providers", post(create_provider))
        .route("/console/tenants/{tenant}/versions", get(versions_page))
        .route("/console/tenants/{tenant}/versions/{version}", get(version_page))
        .route("/console/tenants/{tenant}/versions/{version}/rollback", post(rollback))
        .route("/console/apps/{app}", get(app_page))
        .route("/console/apps/{app}/keys", post(create_key))
        .route("/console/keys/{key}/{action}", post(key_action))
        .route("/console/requests", get(requests_page))
        .route("/console/alerts", get(alerts_page))
        .route("/console/tenants/{tenant}/members", get(members_page).post(create_member))
        .route("/console/members/{id}/revoke", post(revoke_member))
        .route("/console/providers/{id}", get(provider_page))
        .route("/console/providers/{id}/document", post(save_provider_document))
        .route("/console/providers/{id}/secrets", post(set_secret))
        .route("/console/providers/{id}/secrets/{name}/delete", post(delete_secret))
        .route("/console/providers/{id}/script", post(save_script))
        .route("/console/providers/{id}/scripts/{version}/activate", post(activate_script))
        .route("/console/providers/{id}/test-run", post(test_run))
        .with_state(console)
}

// ---- plumbing ----

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    // A failing system RNG leaves zeros; the session id is then refused as a collision below.
    let _ = aws_lc_rs::rand::fill(&mut b);
    hex::encode(b)
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Path segments taken from API answers are URL-encoded before they go into links.
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn secure_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(&mut r);
    r
}

fn html(status: StatusCode, title: &str, who: Option<&Value>, csrf: Option<&str>, body: &str) -> Response {
    let mut nav = String::new();
    if let (Some(w), Some(csrf)) = (who, csrf) {
        let _ = write!(
            nav,
            r#"<nav><a href="/console/">Overview</a><a href="/console/requests">Requests</a>{alerts}<span class="who">{name} · {role}{tenant}</span>
<form method="post" action="/console/logout"><input type="hidden" name="csrf" value="{csrf}"><button>Log out</button></form></nav>"#,
            name = esc(w["name"].as_str().unwrap_or("")),
            role = esc(w["role"].as_str().unwrap_or("")),
            tenant = w["tenant_id"].as_str().map(|t| format!(" of {}", esc(t))).unwrap_or_default(),
            alerts = match w["tenant_id"].as_str() {
                _ if w["role"] == "gateway_admin" => r#"<a href="/console/alerts">Alerts</a>"#.to_string(),
                Some(t) => format!(r#"<a href="/console/tenants/{}/alerts">Alerts</a>"#, seg(t)),
                None => String::new(),
            },
            csrf = esc(csrf),
        );
    }
    let page = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · keygate</title><link rel="stylesheet" href="/console/console.css"></head>
<body><header><a class="brand" href="/console/">keygate</a>{nav}</header><main><h1>{title}</h1>{body}</main></body></html>"#,
        title = esc(title),
    );
    let mut r = (status, page).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure_headers(&mut r);
    r
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == COOKIE && v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).then(|| v.to_string())
        })
}

/// A logged-in caller: the session's token, CSRF value and `whoami`.
struct Caller {
    token: Zeroizing<String>,
    csrf: String,
    who: Value,
}

impl Console {
    async fn api(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let Ok(req) = req.body(body) else { return (StatusCode::BAD_REQUEST, Value::Null) };
        let resp = match self.api.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// The session of this request, refreshed from the API (a revoked admin token ends it).
    async fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let id = session_id(headers)?;
        let (token, csrf) = {
            let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            s.retain(|_, v| v.expires > now);
            let v = s.get(&id)?;
            (v.token.clone(), v.csrf.clone())
        };
        let (status, who) = self.api(&token, Method::GET, "/admin/whoami", None).await;
        if status != StatusCode::OK {
            self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return None;
        }
        Some(Caller { token, csrf, who: who["token"].clone() })
    }

    /// For POSTs: a session, a matching CSRF token and a same-origin request.
    async fn post_caller(&self, headers: &HeaderMap, csrf: &str) -> Result<Caller, Response> {
        if !same_origin(headers) {
            return Err(html(
                StatusCode::FORBIDDEN,
                "Refused",
                None,
                None,
                "<p>Cross-site form posts are refused.</p>",
            ));
        }
        let Some(c) = self.caller(headers).await else { return Err(redirect("/console/login")) };
        let ok: bool = subtle::ConstantTimeEq::ct_eq(c.csrf.as_bytes(), csrf.as_bytes()).into();
        if !ok {
            return Err(html(
                StatusCode::FORBIDDEN,
                "Refused",
                Some(&c.who),
                Some(&c.csrf),
                "<p>The form expired; reload the page.</p>",
            ));
        }
        Ok(c)
    }
}

/// `Origin` (or, without it, `Referer`) must name this host; SameSite=Strict already keeps the
/// cookie off cross-site requests, this refuses them outright.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let authority =
        from.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or("")).unwrap_or("");
    !host.is_empty() && authority == host
}

fn api_error(c: &Caller, status: StatusCode, v: &Value) -> Response {
    let status = if status.is_success() { StatusCode::INTERNAL_SERVER_ERROR } else { status };
    let msg = v["message"].as_str().unwrap_or("the request failed");
    let code = v["code"].as_str().unwrap_or("error");
    html(
        status,
        if status == StatusCode::NOT_FOUND {
            "Not found"
        } else if status == StatusCode::FORBIDDEN {
            "Not allowed"
        } else {
            "Error"
        },
        Some(&c.who),
        Some(&c.csrf),
        &format!(r#"<p class="error"><code>{}</code> {}</p>"#, esc(code), esc(msg)),
    )
}

fn is_admin(who: &Value) -> bool {
    matches!(who["role"].as_str(), Some("gateway_admin" | "tenant_admin"))
}

fn can_create_key(who: &Value, app: &str) -> bool {
    is_admin(who) || who["app_grants"].as_array().is_some_and(|g| g.iter().any(|a| a == app))
}

fn csrf_field(csrf: &str) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(csrf))
}

fn time(v: &Value) -> String {
    match v.as_i64() {
        Some(t) => {
            let c = keygate_sign::civil::Civil::from_unix(t);
            format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", c.year, c.month, c.day, c.hour, c.minute)
        }
        None => "—".into(),
    }
}

// ---- pages ----

async fn css() -> Response {
    let mut r = CSS.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    r
}

async fn login_page() -> Response {
    login_form(StatusCode::OK, "")
}

fn login_form(status: StatusCode, error: &str) -> Response {
    let err =
        if error.is_empty() { String::new() } else { format!(r#"<p class="error">{}</p>"#, esc(error)) };
    html(
        status,
        "Log in",
        None,
        None,
        &format!(
            r#"{err}<form method="post" action="/console/login" class="card">
<label for="token">Admin token</label><input id="token" name="token" type="password" autocomplete="off" required placeholder="kgadm_…">
<button type="submit">Log in</button></form>
<p class="hint">Create one with <code>keygate admin-token create</code> or ask your tenant admin. The console can do exactly what the token can do through the admin API.</p>"#
        ),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(c): State<Shared>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return login_form(StatusCode::FORBIDDEN, "Cross-site form posts are refused.");
    }
    let ip = ext.get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let now = Instant::now();
    {
        let mut fails = c.failures.lock().unwrap_or_else(|e| e.into_inner());
        fails.retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
        if fails.get(&ip).is_some_and(|(n, _)| *n >= MAX_FAILURES) {
            let mut r = login_form(StatusCode::TOO_MANY_REQUESTS, "Too many failed logins; wait a minute.");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(FAILURE_WINDOW.as_secs()));
            return r;
        }
    }
    let token = Zeroizing::new(f.token.trim().to_string());
    let (status, _) = c.api(&token, Method::GET, "/admin/whoami", None).await;
    if status != StatusCode::OK {
        let mut fails = c.failures.lock().unwrap_or_else(|e| e.into_inner());
        let e = fails.entry(ip).or_insert((0, now));
        e.0 += 1;
        return login_form(StatusCode::UNAUTHORIZED, "That token is not valid.");
    }
    let id = random_hex(32);
    let csrf = random_hex(32);
    {
        let mut s = c.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if s.contains_key(&id) {
            return login_form(StatusCode::INTERNAL_SERVER_ERROR, "Could not start a session; try again.");
        }
        s.insert(id.clone(), Session { token, csrf, expires: now + SESSION_TTL });
    }
    let mut r = redirect("/console/");
    let secure = headers.get("x-forwarded-proto").is_some_and(|v| v == "https");
    let cookie = format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(c): State<Shared>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    if c.post_caller(&headers, &f.csrf).await.is_ok() {
        if let Some(id) = session_id(&headers) {
            c.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        }
    }
    let mut r = redirect("/console/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("kg_console=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

async fn overview(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let Some(me) = c.caller(&headers).await else { return redirect("/console/login") };
    let (s, tenants) = c.api(&me.token, Method::GET, "/admin/tenants", None).await;
    if !s.is_success() {
        return api_error(&me, s, &tenants);
    }
    let mut rows = String::new();
    let mut traffic: Vec<(String, [u32; 3])> = Vec::new();
    for t in tenants.as_array().into_iter().flatten() {
        let id = t["id"].as_str().unwrap_or("");
        let (_, apps) =
            c.api(&me.token, Method::GET, &format!("/admin/tenants/{}/apps", seg(id)), None).await;
        let n = apps.as_array().map_or(0, Vec::len);
        for a in apps.as_array().into_iter().flatten().filter_map(|a| a["id"].as_str()) {
            traffic.push((a.to_string(), requests_by_outcome(&c, &me, a).await));
        }
        let _ = write!(
            rows,
            r#"<tr><td><a href="/console/tenants/{l}">{id}</a></td><td>{name}</td><td class="num">{n}</td><td><a href="/console/tenants/{l}/versions">versions</a></td></tr>"#,
            l = seg(id),
            id = esc(id),
            name = esc(t["name"].as_str().unwrap_or("")),
        );
    }
    html(
        StatusCode::OK,
        "Overview",
        Some(&me.who),
        Some(&me.csrf),
        &format!(
            r#"<section><h2>Tenants</h2><table><thead><tr><th>Tenant</th><th>Name</th><th class="num">Apps</th><th></th></tr></thead><tbody>{rows}</tbody></table></section>
<section><h2>Requests per app, last 24 hours</h2>{chart}</section>"#,
            chart = traffic_chart(&traffic)
        ),
    )
}

async fn tenant_page(State(c): State<Shared>, headers: HeaderMap, Path(tenant): Path<String>) -> Response {
    let Some(me) = c.caller(&headers).await else { return redirect("/console/login") };
    tenant_view(&c, &me, &tenant, StatusCode::OK, &Draft::default()).await
}

/// A create form the API refused: which form, why (HTML), and what the user typed, so the
/// tenant page can show it again with the reason.
#[derive(Default)]
struct Draft {
    form: &'static str,
    error: String,
    values: Vec<(&'static str, String)>,
}

impl Draft {
    fn new(form: &'static str, error: String, values: Vec<(&'static str, String)>) -> Self {
        Self { form, error, values }
    }

    /// The user's value of `field` in `form`, else `default` (escaped for HTML).
    fn value(&self, form: &str, field: &str, default: &str) -> String {
        let v = if self.form == form {
            self.values.iter().find(|(k, _)| *k == field).map_or(default, |(_, v)| v.as_str())
        } else {
            default
        };
        esc(v)
    }

    fn error(&self, form: &str) -> &str {
        if self.form == form {
            &self.error
        } else {
            ""
        }
    }
}

/// An API refusal shown next to the form that caused it (the message names the field).
fn refusal(id: &str, v: &Value) -> String {
    format!(
        r#"<p class="error" id="{id}" role="alert"><code>{}</code> {}</p>"#,
        esc(v["code"].as_str().unwrap_or("error")),
        esc(v["message"].as_str().unwrap_or("the request failed")),
    )
}

/// Whether an API answer refuses the caller outright (a whole error page), rather than the input
/// (shown next to the form, input kept).
fn refuses_caller(status: StatusCode) -> bool {
    matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND)
}

const RULE_TEMPLATE: &str =
    r#"{"kind": "signature_failures", "per": "app", "threshold": 5, "window_secs": 60}"#;
const PROVIDER_TEMPLATE: &str = "{\n  \"base_url\": \"https://api.provider.example\",\n  \"paths\": [\"POST /*\"],\n  \"granted_apps\": [],\n  \"recipe\": {\"type\": \"hmac_header\"}\n}";

async fn tenant_view(c: &Console, me: &Caller, tenant: &str, status: StatusCode, draft: &Draft) -> Response {
    let t = seg(tenant);
    let (s, apps) = c.api(&me.token, Method::GET, &format!("/admin/tenants/{t}/apps"), None).await;
    if !s.is_success() {
        return api_error(me, s, &apps);
    }
    let admin = is_admin(&me.who);
    let csrf = csrf_field(&me.csrf);
    let mut rows = String::new();
    for a in apps.as_array().into_iter().flatten() {
        let id = a["id"].as_str().unwrap_or("");
        let _ = write!(
            rows,
            r#"<tr><td><a href="/console/apps/{l}">{id}</a></td><td>{name}</td><td>{state}</td></tr>"#,
            l = seg(id),
            id = esc(id),
            name = esc(a["name"].as_str().unwrap_or("")),
            state = if a["enabled"] == true { "enabled" } else { r#"<span class="bad">disabled</span>"# },
        );
    }
    let create_app = if admin {
        format!(
            r#"<form method="post" action="/console/tenants/{t}/apps" class="card inline">{csrf}
<label for="app-id">New app id</label><input id="app-id" name="id" required pattern="[A-Za-z0-9._-]{{1,64}}">
<label for="app-name">Name</label><input id="app-name" name="name"><button type="submit">Create app</button></form>"#
        )
    } else {
        String::new()
    };

    // Routes.
    let (_, routes) = c.api(&me.token, Method::GET, &format!("/admin/tenants/{t}/routes"), None).await;
    let mut rrows = String::new();
    for r in routes.as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or("");
        let cfg = &r["config"];
        let _ = write!(
            rrows,
            r#"<tr><td><a href="/console/tenants/{t}/routes/{l}">{name}</a></td><td><code>{prefix}</code></td><td><code>{upstream}</code></td><td>{auth}</td><td>{by} · {when}</td></tr>"#,
            l = seg(name),
            name = esc(name),
            prefix = esc(cfg["path_prefix"].as_str().unwrap_or("")),
            upstream = esc(cfg["upstream"].as_str().unwrap_or("")),
            auth = esc(cfg["auth"].as_str().unwrap_or("signature")),
            by = esc(r["updated_by"].as_str().unwrap_or("")),
            when = time(&r["updated_at"]),
        );
    }
    if rrows.is_empty() {
        rrows = r#"<tr><td colspan="5" class="hint">No routes of this tenant yet.</td></tr>"#.into();
    }
    let route_form = if admin {
        format!(
            r#"<form method="post" action="/console/tenants/{t}/routes" class="card" id="new-route" autocomplete="off">{csrf}<h3>New route</h3>{err}
<div class="inline"><label for="route-name">Name</label><input id="route-name" name="name" required pattern="[A-Za-z0-9_.-]{{1,64}}" value="{name}">
<label for="route-prefix">Path prefix</label><input id="route-prefix" name="path_prefix" required placeholder="/t/{te}/orders" value="{prefix}">
<label for="route-upstream">Upstream</label><input id="route-upstream" name="upstream" required placeholder="http://orders.svc.internal" value="{upstream}"></div>
<label for="route-more">More settings (optional JSON object merged into the route: <code>strip_prefix</code>, <code>timeout_ms</code>, <code>max_body_bytes</code>, <code>auth</code>, <code>per_ip_rate_limit</code>, …)</label>
<textarea id="route-more" name="more" rows="3" spellcheck="false" placeholder="{{&quot;strip_prefix&quot;: true}}">{more}</textarea>
<button type="submit">Create route</button></form>"#,
            te = esc(tenant),
            err = draft.error("route"),
            name = draft.value("route", "name", ""),
            prefix = draft.value("route", "path_prefix", ""),
            upstream = draft.value("route", "upstream", ""),
            more = draft.value("route", "more", ""),
        )
    } else {
        draft.error("route").to_string()
    };

    // Alert rules.
    let (_, rules) = c.api(&me.token, Method::GET, &format!("/admin/tenants/{t}/alert-rules"), None).await;
    let mut arows = String::new();
    for r in rules.as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or("");
        let cfg = &r["config"];
        let mut kind = esc(cfg["kind"].as_str().unwrap_or(""));
        let codes: Vec<&str> =
            cfg["codes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if !codes.is_empty() {
            let _ = write!(kind, " ({})", esc(&codes.join(", ")));
        }
        let counting = cfg.get("threshold").is_some();
        let _ = write!(
            arows,
            r#"<tr><td><a href="/console/tenants/{t}/alert-rules/{l}">{name}</a></td><td><code>{kind}</code></td><td>{per}</td><td class="num">{threshold}</td><td class="num">{window}</td><td>{by} · {when}</td></tr>"#,
            l = seg(name),
            name = esc(name),
            per = esc(cfg["per"].as_str().unwrap_or("—")),
            threshold = cfg["threshold"].as_u64().map_or_else(|| "—".to_string(), |n| n.to_string()),
            window = if counting {
                format!("{} s", cfg["window_secs"].as_u64().unwrap_or(60))
            } else {
                "—".to_string()
            },
            by = esc(r["updated_by"].as_str().unwrap_or("")),
            when = time(&r["updated_at"]),
        );
    }
    if arows.is_empty() {
        arows = r#"<tr><td colspan="6" class="hint">No alert rules of this tenant yet.</td></tr>"#.into();
    }
    let rule_form = if admin {
        format!(
            r#"<form method="post" action="/console/tenants/{t}/alert-rules" class="card" id="new-rule" autocomplete="off">{csrf}<h3>New alert rule</h3>{err}
<div class="inline"><label for="rule-name">Name</label><input id="rule-name" name="name" required pattern="[A-Za-z0-9_.-]{{1,64}}" value="{name}"></div>
<label for="rule-doc">Rule (JSON: <code>kind</code> signature_failures, replays, code_spike with <code>codes</code>, or new_ip_range; <code>per</code> app or ip; <code>threshold</code>; <code>window_secs</code>)</label>
<textarea id="rule-doc" name="rule" rows="3" spellcheck="false" required>{rule}</textarea>
<button type="submit">Create alert rule</button></form>"#,
            err = draft.error("rule"),
            name = draft.value("rule", "name", ""),
            rule = draft.value("rule", "rule", RULE_TEMPLATE),
        )
    } else {
        draft.error("rule").to_string()
    };

    // Outbound providers.
    let (_, providers) = c.api(&me.token, Method::GET, &format!("/admin/tenants/{t}/providers"), None).await;
    let mut prows = String::new();
    for p in providers.as_array().into_iter().flatten() {
        let id = p["id"].as_str().unwrap_or("");
        let missing: Vec<&str> =
            p["missing_bindings"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let _ = write!(
            prows,
            r#"<tr><td><a href="/console/providers/{l}">{id}</a></td><td>{recipe}</td><td>{base}</td><td>{missing}</td></tr>"#,
            l = seg(id),
            id = esc(id),
            recipe = esc(p["config"]["recipe"]["type"].as_str().unwrap_or("")),
            base = esc(p["config"]["base_url"].as_str().unwrap_or("")),
            missing = if missing.is_empty() {
                "—".to_string()
            } else {
                format!(r#"<span class="bad">{}</span>"#, esc(&missing.join(", ")))
            },
        );
    }
    let provider_form = if admin {
        format!(
            r#"<form method="post" action="/console/tenants/{t}/providers" class="card" id="new-provider" autocomplete="off">{csrf}<h3>New provider</h3>{err}
<div class="inline"><label for="provider-id">Provider id</label><input id="provider-id" name="id" required value="{id}"></div>
<label for="provider-doc">Document (JSON; fields and recipes in docs/outbound.md; bindings are stored on the provider's page, write-only)</label>
<textarea id="provider-doc" name="document" rows="7" spellcheck="false" required>{doc}</textarea>
<button type="submit">Create provider</button></form>"#,
            err = draft.error("provider"),
            id = draft.value("provider", "id", ""),
            doc = draft.value("provider", "document", PROVIDER_TEMPLATE),
        )
    } else {
        draft.error("provider").to_string()
    };

    html(
        status,
        &format!("Tenant {tenant}"),
        Some(&me.who),
        Some(&me.csrf),
        &format!(
            r#"<p><a href="/console/tenants/{t}/versions">Config versions</a> · <a href="/console/tenants/{t}/members">Members</a> · <a href="/console/tenants/{t}/alerts">Alerts</a></p>
<section><h2>Apps</h2><table><thead><tr><th>App</th><th>Name</th><th>State</th></tr></thead><tbody>{rows}</tbody></table>{create_app}</section>
<section id="routes"><h2>Routes</h2><p class="hint">The tenant's own routes: only its apps may call them, within the operator's <code>[tenant_routes]</code> policy (docs/tenant-routes.md).</p>
<table id="route-table"><thead><tr><th>Name</th><th>Path prefix</th><th>Upstream</th><th>Auth</th><th>Updated</th></tr></thead><tbody>{rrows}</tbody></table>{route_form}</section>
<section id="alert-rules"><h2>Alert rules</h2><p class="hint">Evaluated over this tenant's apps only; fired alerts are on the <a href="/console/tenants/{t}/alerts">Alerts</a> page.</p>
<table id="rule-table"><thead><tr><th>Name</th><th>Kind</th><th>Per</th><th class="num">Threshold</th><th class="num">Window</th><th>Updated</th></tr></thead><tbody>{arows}</tbody></table>{rule_form}</section>
<section id="providers"><h2>Outbound providers</h2><table><thead><tr><th>Provider</th><th>Recipe</th><th>Base URL</th><th>Missing bindings</th></tr></thead><tbody>{prows}</tbody></table>{provider_form}</section>"#
        ),
    )
}

#[derive(Deserialize)]
struct AppForm {
    csrf: String,
    id: String,
    #[serde(default)]
    name: String,
}

async fn create_app(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Form(f): Form<AppForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    let mut body = json!({"id": f.id});
    if !f.name.is_empty() {
        body["name"] = f.name.into();
    }
    let (s, v) =
        c.api(&me.token, Method::POST, &format!("/admin/tenants/{}/apps", seg(&tenant)), Some(body)).await;
    if !s.is_success() {
        return api_error(&me, s, &v);
    }
    redirect(&format!("/console/apps/{}", seg(v["id"].as_str().unwrap_or(""))))
}

async fn app_page(State(c): State<Shared>, headers: HeaderMap, Path(app): Path<String>) -> Response {
    let Some(me) = c.caller(&headers).await else { return redirect("/console/login") };
    app_view(&c, &me, &app, None).await
}

async fn app_view(c: &Console, me: &Caller, app: &str, shown: Option<(String, String)>) -> Response {
    let (s, a) = c.api(&me.token, Method::GET, &format!("/admin/apps/{}", seg(app)), None).await;
    if !s.is_success() {
        return api_error(me, s, &a);
    }
    let (s, keys) = c.api(&me.token, Method::GET, &format!("/admin/apps/{}/keys", seg(app)), None).await;
    if !s.is_success() {
        return api_error(me, s, &keys);
    }
    let admin = is_admin(&me.who);
    let mut rows = String::new();
    for k in keys.as_array().into_iter().flatten() {
        let ak = k["access_key"].as_str().unwrap_or("");
        let enabled = k["enabled"] == true;
        let mut actions = String::new();
        if admin {
            for (action, label) in [
                ("rotate", "Rotate"),
                (if enabled { "revoke" } else { "enable" }, if enabled { "Revoke" } else { "Enable" }),
            ] {
                let _ = write!(
                    actions,
                    r#"<form method="post" action="/console/keys/{l}/{action}" class="inline">{csrf}<button class="{action}">{label}</button></form>"#,
                    l = seg(ak),
                    csrf = csrf_field(&me.csrf)
                );
            }
        }
        let _ = write!(
            rows,
            r#"<tr><td><code>{ak}</code></td><td>{scheme}</td><td>{policy}</td><td>{state}</td><td>{used}</td><td>{actions}</td></tr>"#,
            ak = esc(ak),
            scheme = esc(k["scheme"].as_str().unwrap_or("")),
            policy = esc(k["auth_policy"].as_str().unwrap_or("")),
            state = if enabled {
                "enabled".to_string()
            } else {
                r#"<span class="bad">revoked</span>"#.to_string()
            },
            used = time(&k["last_used_at"]),
        );
    }
    let secret = match shown {
        Some((ak, secret)) => format!(
            r#"<section class="card secret"><h2>New secret — shown once</h2><p>Access key <code id="access-key">{}</code></p>
<p>Secret <code id="secret">{}</code></p><p class="hint">Copy it now: keygate stores it encrypted and will never show it again.</p></section>"#,
            esc(&ak),
            esc(&secret)
        ),
        None => String::new(),
    };
    let create = if can_create_key(&me.who, app) {
        format!(
            r#"<form method="post" action="/console/apps/{l}/keys" class="card inline">{csrf}
<label for="key-desc">Description</label><input id="key-desc" name="description">
<label for="key-policy">Auth</label><select id="key-policy" name="auth_policy"><option>signature</option><option>token</option><option>both</option></select>
<button type="submit">Create key</button></form>"#,
            l = seg(app),
            csrf = csrf_field(&me.csrf)
        )
    } else {
        String::new()
    };
    let tenant = a["tenant_id"].as_str().unwrap_or("");
    html(
        StatusCode::OK,
        &format!("App {app}"),
        Some(&me.who),
        Some(&me.csrf),
        &format!(
            r#"<p>Tenant <a href="/console/tenants/{tl}">{t}</a> · {state}</p>{secret}<section><h2>Keys</h2><table><thead><tr><th>Access key</th><th>Scheme</th><th>Auth</th><th>State</th><th>Last used</th><th></th></tr></thead><tbody>{rows}</tbody></table></section>{create}"#,
            tl = seg(tenant),
            t = esc(tenant),
            state = if a["enabled"] == true { "enabled" } else { "disabled" },
        ),
    )
}

#[derive(Deserialize)]
struct KeyForm {
    csrf: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    auth_policy: String,
}

async fn create_key(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(app): Path<String>,
    Form(f): Form<KeyForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    let mut body = json!({"description": f.description});
    if !f.auth_policy.is_empty() {
        body["auth_policy"] = f.auth_policy.into();
    }
    let (s, v) = c.api(&me.token, Method::POST, &format!("/admin/apps/{}/keys", seg(&app)), Some(body)).await;
    if !s.is_success() {
        return api_error(&me, s, &v);
    }
    let shown = v["secret"]
        .as_str()
        .map(|sec| (v["key"]["access_key"].as_str().unwrap_or("").to_string(), sec.to_string()));
    app_view(&c, &me, &app, shown).await
}

async fn key_action(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path((key, action)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    if !matches!(action.as_str(), "rotate" | "revoke" | "enable") {
        return html(
            StatusCode::NOT_FOUND,
            "Not found",
            Some(&me.who),
            Some(&me.csrf),
            "<p>No such action.</p>",
        );
    }
    let body = (action == "rotate").then(|| json!({}));
    let (s, v) = c.api(&me.token, Method::POST, &format!("/admin/keys/{}/{action}", seg(&key)), body).await;
    if !s.is_success() {
        return api_error(&me, s, &v);
    }
    let app = if action == "rotate" { v["new"]["app_id"].as_str() } else { v["app_id"].as_str() }
        .unwrap_or("")
        .to_string();
    let shown = (action == "rotate")
        .then(|| {
            v["secret"]
                .as_str()
                .map(|sec| (v["new"]["access_key"].as_str().unwrap_or("").to_string(), sec.to_string()))
        })
        .flatten();
    app_view(&c, &me, &app, shown).await
}

async fn versions_page(State(c): State<Shared>, headers: HeaderMap, Path(tenant): Path<String>) -> Response {
    let Some(me) = c.caller(&headers).await else { return redirect("/console/login") };
    let (s, list) =
        c.api(&me.token, Method::GET, &format!("/admin/tenants/{}/versions", seg(&tenant)), None).await;
    if !s.is_success() {
        return api_error(&me, s, &list);
    }
    let mut rows = String::new();
    for v in list.as_array().into_iter().flatten() {
        let n = v["version"].as_i64().unwrap_or(0);
        let _ = write!(
            rows,
            r#"<tr><td class="num"><a href="/console/tenants/{t}/versions/{n}">v{n}</a></td><td>{when}</td><td>{by}</td><td>{comment}</td></tr>"#,
            t = seg(&tenant),
            when = time(&v["created_at"]),
            by = esc(v["created_by"].as_str().unwrap_or("")),
            comment = esc(v["comment"].as_str().unwrap_or("")),
        );
    }
    html(
        StatusCode::OK,
        &format!("Config versions of {tenant}"),
        Some(&me.who),
        Some(&me.csrf),
        &format!(
            r#"<p><a href="/console/tenants/{t}">Back to the tenant</a></p><table><thead><tr><th class="num">Version</th><th>When</th><th>By</th><th>Change</th></tr></thead><tbody>{rows}</tbody></table>"#,
            t = seg(&tenant)
        ),
    )
}

async fn version_page(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path((tenant, version)): Path<(String, i64)>,
) -> Response {
    let Some(me) = c.caller(&headers).await else { return redirect("/console/login") };
    version_view(&c, &me, &tenant, version, "").await
}

async fn version_view(c: &Console, me: &Caller, tenant: &str, version: i64, notice: &str) -> Response {
    let base = format!("/admin/tenants/{}/versions/{version}", seg(tenant));
    let (s, d) = c.api(&me.token, Method::GET, &format!("{base}/diff"), None).await;
    if !s.is_success() {
        return api_error(me, s, &d);
    }
    let mut lines = String::new();
    for l in d["diff"].as_array().into_iter().flatten() {
        let l = l.as_str().unwrap_or("");
        let class = match l.chars().next() {
            Some('+') => "add",
            Some('-') => "del",
            Some('@') => "hunk",
            _ => "ctx",
        };
        // Block-level spans: no newline between them, or `pre` shows an empty line each.
        let _ = write!(lines, r#"<span class="{class}">{}</span>"#, esc(l));
    }
    if lines.is_empty() {
        lines.push_str("(no change from the previous version)");
    }
    let rollback = if is_admin(&me.who) {
        format!(
            r#"<form method="post" action="/console/tenants/{t}/versions/{version}/rollback" class="card inline">{csrf}
<label for="rb-comment">Comment</label><input id="rb-comment" name="comment"><button type="submit" class="rollback">Roll back to v{version}</button></form>"#,
            t = seg(tenant),
            csrf = csrf_field(&me.csrf)
        )
    } else {
        String::new()
    };
    html(
        StatusCode::OK,
        &format!("{tenant} v{version}"),
        Some(&me.who),
        Some(&me.csrf),
        &format!(
            r#"{notice}<p><a href="/console/tenants/{t}/versions">All versions</a></p><h2>Changes from v{from}</h2><pre class="diff">{lines}</pre>{rollback}"#,
            t = seg(tenant),
            from = d["from"].as_i64().unwrap_or(version - 1),
        ),
    )
}

#[derive(Deserialize)]
struct RollbackForm {
    csrf: String,
    #[serde(default)]
    comment: String,
}

async fn rollback(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path((tenant, version)): Path<(String, i64)>,
    Form(f): Form<RollbackForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    let path = format!("/admin/tenants/{}/versions/{version}/rollback", seg(&tenant));
    let (s, v) = c.api(&me.token, Method::POST, &path, Some(json!({"comment": f.comment}))).await;
    if !s.is_success() {
        return api_error(&me, s, &v);
    }
    let mut notice = format!(
        r#"<section class="card ok"><h2>Rolled back</h2><p id="rollback-summary">{}</p><pre class="diff">"#,
        esc(v["summary"].as_str().unwrap_or(""))
    );
    for l in
        v["plan"].as_array().into_iter().flatten().filter_map(Value::as_str).filter(|l| !l.starts_with('='))
    {
        let _ = writeln!(notice, "{}", esc(l));
    }
    notice.push_str("</pre></section>");
    match v["version"]["version"].as_i64() {
        Some(n) => version_view(&c, &me, &tenant, n, &notice).await,
        None => version_view(&c, &me, &tenant, version, &notice).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_highlighted_and_escaped() {
        let h = highlight_js("function (a) { // <b>\n return sha256('x\\'y') + 42; /* c */ }");
        assert!(h.contains(r#"<span class="js-keyword">function</span>"#), "{h}");
        assert!(h.contains(r#"<span class="js-comment">// &lt;b&gt;</span>"#), "{h}");
        assert!(h.contains(r#"<span class="js-helper">sha256</span>"#), "{h}");
        assert!(h.contains(r#"<span class="js-string">&#39;x\&#39;y&#39;</span>"#), "{h}");
        assert!(h.contains(r#"<span class="js-number">42</span>"#), "{h}");
        assert!(h.contains(r#"<span class="js-comment">/* c */</span>"#), "{h}");
        assert!(!h.contains("<b>"));
        // Unterminated strings and comments end at the end of the text.
        assert!(highlight_js("'abc").ends_with("</span>"));
        assert!(highlight_js("/* x").ends_with("</span>"));
    }

    #[test]
    fn escaping_and_origins() {
        assert_eq!(esc(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(seg("a b/../c"), "a%20b%2F..%2Fc");
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9090"));
        assert!(!same_origin(&h), "no Origin and no Referer");
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:9090"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:9090.evil.example"));
        assert!(!same_origin(&h));
        assert_eq!(time(&json!(1_764_000_000)), "2025-11-24 16:00 UTC");
        assert_eq!(time(&Value::Null), "—");
    }

    #[test]
    fn refused_forms_keep_the_input_escaped() {
        let d = Draft::new(
            "route",
            refusal(
                "route-error",
                &json!({"code": "invalid_request", "message": "upstream <x> is not allowed"}),
            ),
            vec![("upstream", r#""><script>"#.into())],
        );
        assert_eq!(d.value("route", "upstream", ""), "&quot;&gt;&lt;script&gt;");
        assert_eq!(d.value("rule", "upstream", "dflt"), "dflt", "another form gets its default");
        assert_eq!(d.value("route", "name", "n"), "n");
        assert!(d.error("route").contains("upstream &lt;x&gt; is not allowed"), "{}", d.error("route"));
        assert!(d.error("route").contains(r#"id="route-error""#));
        assert_eq!(d.error("provider"), "");
        assert!(parse_json("e", "More", "{").unwrap_err().contains("More is not JSON"));
        assert!(refuses_caller(StatusCode::FORBIDDEN) && refuses_caller(StatusCode::NOT_FOUND));
        assert!(!refuses_caller(StatusCode::BAD_REQUEST) && !refuses_caller(StatusCode::CONFLICT));
    }

    #[test]
    fn tenant_rules_in_every_shape_carry_their_tenant() {
        let rule = json!({"name": "r", "kind": "replays", "per": "app", "threshold": 1});
        for v in [
            json!({"t1": [rule.clone()]}),
            json!([{"tenant": "t1", "rules": [rule.clone()]}]),
            json!([{"tenant": "t1", "name": "r", "kind": "replays", "per": "app", "threshold": 1}]),
        ] {
            let rows = rule_rows(&tenant_rules(&v), true);
            assert!(rows.contains(r#"<td><a href="/console/tenants/t1">t1</a></td><td>r</td>"#), "{rows}");
            assert!(rows.contains("per = app, threshold = 1"), "{rows}");
            assert!(!rows.contains("tenant ="), "{rows}");
        }
        assert_eq!(rule_rows(&tenant_rules(&Value::Null), true), "");
        let recent = json!([{"at": 0, "rule": "r", "subject": "<app>", "count": 2, "message": "m", "tenant": "t1"}, {"rule": "g"}]);
        let rows = alert_rows(&recent, true);
        assert!(rows.contains("&lt;app&gt;") && rows.contains(r#"<td class="hint">gateway</td>"#), "{rows}");
        assert!(alert_rows(&json!([]), false).contains(r#"colspan="5""#));
    }
}

// ---- outbound providers ----

/// Server-side highlighting of a recipe script (no JavaScript on the page): comments, strings,
/// numbers, keywords and the helper names a script can call.
fn highlight_js(src: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "function",
        "return",
        "var",
        "let",
        "const",
        "if",
        "else",
        "for",
        "while",
        "new",
        "true",
        "false",
        "null",
        "undefined",
        "typeof",
        "throw",
        "try",
        "catch",
        "of",
        "in",
    ];
    const HELPERS: &[&str] = &[
        "md5",
        "sha1",
        "sha256",
        "hmac_sha256",
        "hmac_sha1",
        "aes_cbc_pkcs5_encrypt",
        "aes_cbc_pkcs5_decrypt",
        "aes_gcm_encrypt",
        "aes_gcm_decrypt",
        "rsa_sign_sha256",
        "base64_encode",
        "base64_decode",
        "hex_encode",
        "url_encode",
        "uuid",
        "now_ms",
        "token_load",
        "token_save",
        "http_post_json",
    ];
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let span = |out: &mut String, class: &str, text: &str| {
        let _ = write!(out, r#"<span class="js-{class}">{}</span>"#, esc(text));
    };
    while i < chars.len() {
        let c = chars[i];
        let rest = |j: usize| chars[i..j.min(chars.len())].iter().collect::<String>();
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            let end = (i..chars.len()).find(|&j| chars[j] == '\n').unwrap_or(chars.len());
            span(&mut out, "comment", &rest(end));
            i = end;
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .map_or(chars.len(), |j| j + 2);
            span(&mut out, "comment", &rest(end));
            i = end;
        } else if c == '"' || c == '\'' || c == '`' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(chars.len());
            span(&mut out, "string", &rest(end));
            i = end;
        } else if c.is_ascii_digit() {
            let end = (i..chars.len())
                .find(|&j| !(chars[j].is_ascii_alphanumeric() || chars[j] == '.'))
                .unwrap_or(chars.len());
            span(&mut out, "number", &rest(end));
            i = end;
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let end = (i..chars.len())
                .find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '$'))
                .unwrap_or(chars.len());
            let word = rest(end);
            if KEYWORDS.contains(&word.as_str()) {
                span(&mut out, "keyword", &word);
            } else if HELPERS.contains(&word.as_str()) {
                span(&mut out, "helper", &word);
            } else {
                out.push_str(&esc(&word));
            }
            i = end;
        } else {
            out.push_str(&esc(&c.to_string()));
            i += 1;
        }
    }
    out
}

async fn provider_page(State(c): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some(me) = c.caller(&headers).await else { return redirect("/console/login") };
    provider_view(&c, &me, &id, "", None).await
}

/// `result` goes under the test-run form; `doc` is a notice for the document editor and, after a
/// refused save, the user's text to show again instead of the stored document.
async fn provider_view(
    c: &Console,
    me: &Caller,
    id: &str,
    result: &str,
    doc_edit: Option<(Option<&str>, &str)>,
) -> Response {
    let (s, p) = c.api(&me.token, Method::GET, &format!("/admin/providers/{}", seg(id)), None).await;
    if !s.is_success() {
        return api_error(me, s, &p);
    }
    let admin = is_admin(&me.who);
    let l = seg(id);
    let csrf = csrf_field(&me.csrf);
    let mut secrets = String::new();
    for sec in p["secrets"].as_array().into_iter().flatten() {
        let name = sec["name"].as_str().unwrap_or("");
        let del = if admin {
            format!(
                r#"<form method="post" action="/console/providers/{l}/secrets/{n}/delete" class="inline">{csrf}<button class="revoke">Delete</button></form>"#,
                n = seg(name)
            )
        } else {
            String::new()
        };
        let _ = write!(
            secrets,
            r#"<tr><td><code>{name}</code></td><td class="num">{size} B</td><td>{when}</td><td>{del}</td></tr>"#,
            name = esc(name),
            size = sec["byte_len"].as_i64().or(sec["size"].as_i64()).unwrap_or(0),
            when = time(&sec["updated_at"]),
        );
    }
    let missing: Vec<&str> =
        p["missing_bindings"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let set_secret = if admin {
        format!(
            r#"<form method="post" action="/console/providers/{l}/secrets" class="card inline" autocomplete="off">{csrf}
<label for="secret-name">Binding</label><input id="secret-name" name="name" required pattern="[A-Za-z0-9_.-]{{1,64}}" value="{first}">
<label for="secret-value">Value</label><input id="secret-value" name="value" type="password" required autocomplete="new-password">
<label for="secret-enc">Encoding</label><select id="secret-enc" name="encoding"><option>utf8</option><option>base64</option><option>hex</option></select>
<button type="submit">Store (write-only)</button></form>"#,
            first = esc(missing.first().copied().unwrap_or(""))
        )
    } else {
        String::new()
    };
    let recipe = &p["config"]["recipe"];
    let mut doc = p["config"].clone();
    if let Some(r) = doc.get_mut("recipe").and_then(Value::as_object_mut) {
        r.remove("source");
    }
    let mut script = String::new();
    if recipe["type"] == "script" {
        let src = recipe["source"].as_str().unwrap_or("");
        let (_, versions) =
            c.api(&me.token, Method::GET, &format!("/admin/providers/{l}/scripts"), None).await;
        let mut vrows = String::new();
        for v in versions["versions"].as_array().or(versions.as_array()).into_iter().flatten().rev() {
            let n = v["version"].as_i64().unwrap_or(0);
            let active = v["active"] == true || recipe["version"].as_i64() == Some(n);
            let act = if admin && !active {
                format!(
                    r#"<form method="post" action="/console/providers/{l}/scripts/{n}/activate" class="inline">{csrf}<button class="rotate">Activate</button></form>"#
                )
            } else if active {
                "active".to_string()
            } else {
                String::new()
            };
            let _ = write!(
                vrows,
                r#"<tr><td class="num">v{n}</td><td>{when}</td><td>{by}</td><td>{comment}</td><td>{act}</td></tr>"#,
                when = time(&v["created_at"]),
                by = esc(v["created_by"].as_str().unwrap_or("")),
                comment = esc(v["comment"].as_str().unwrap_or("")),
            );
        }
        let editor = if admin {
            format!(
                r#"<form method="post" action="/console/providers/{l}/script" class="card">{csrf}
<label for="script-source">Edit (saved as a new version after validation)</label>
<textarea id="script-source" name="source" rows="14" spellcheck="false">{src}</textarea>
<div class="inline"><label for="script-comment">Comment</label><input id="script-comment" name="comment"><button type="submit">Save version</button></div></form>"#,
                src = esc(src)
            )
        } else {
            String::new()
        };
        script = format!(
            r#"<section><h2>Script</h2><pre class="code">{hl}</pre>{editor}<table><thead><tr><th class="num">Version</th><th>When</th><th>By</th><th>Comment</th><th></th></tr></thead><tbody>{vrows}</tbody></table></section>"#,
            hl = highlight_js(src)
        );
    }
    let (doc_text, doc_notice) = doc_edit.unwrap_or((None, ""));
    let document = if admin {
        // The whole document, script source included, so saving it keeps everything.
        let text = doc_text.map_or_else(|| pretty(&p["config"]), str::to_string);
        format!(
            r#"{doc_notice}<form method="post" action="/console/providers/{l}/document" class="card">{csrf}
<label for="provider-config">Edit the document (JSON, validated when saved; the tenant stays {t}; <code>recipe.source</code> is the active script — save script changes with the editor above to keep versions; bindings are never part of it)</label>
<textarea id="provider-config" name="config" rows="16" spellcheck="false" required>{text}</textarea>
<button type="submit" id="save-document">Save document</button></form>"#,
            t = esc(p["tenant_id"].as_str().unwrap_or("")),
            text = esc(&text),
        )
    } else {
        format!(r#"<pre class="code">{}</pre>"#, esc(&pretty(&doc)))
    };
    let test_run = format!(
        r#"<section><h2>Test run</h2><p class="hint">Runs the recipe on a sample request with stand-in bindings and mocked host calls; contacts no provider, shows no secret.</p>
<form method="post" action="/console/providers/{l}/test-run" class="card">{csrf}
<div class="inline"><label for="tr-method">Method</label><select id="tr-method" name="method"><option>POST</option><option>GET</option><option>PUT</option></select>
<label for="tr-path">Path</label><input id="tr-path" name="path" value="/"></div>
<label for="tr-body">Body</label><textarea id="tr-body" name="body" rows="4" spellcheck="false">{{}}</textarea>
<label for="tr-mocks">Mocked responses (JSON list of {{"url", "status", "body"}})</label><textarea id="tr-mocks" name="mocks" rows="3" spellcheck="false">[]</textarea>
<button type="submit">Run</button></form>{result}</section>"#
    );
    html(
        StatusCode::OK,
        &format!("Provider {id}"),
        Some(&me.who),
        Some(&me.csrf),
        &format!(
            r#"<p>Tenant <a href="/console/tenants/{tl}">{t}</a> · recipe <code>{rt}</code></p>
<section><h2>Bindings (write-only)</h2>{missing}<table><thead><tr><th>Name</th><th class="num">Size</th><th>Updated</th><th></th></tr></thead><tbody>{secrets}</tbody></table>{set_secret}</section>
{script}{test_run}<section id="document"><h2>Document</h2>{document}</section>"#,
            tl = seg(p["tenant_id"].as_str().unwrap_or("")),
            t = esc(p["tenant_id"].as_str().unwrap_or("")),
            rt = esc(recipe["type"].as_str().unwrap_or("")),
            missing = if missing.is_empty() {
                String::new()
            } else {
                format!(
                    r#"<p class="error">Missing: {} — calls fail with <code>binding_missing</code>.</p>"#,
                    esc(&missing.join(", "))
                )
            },
        ),
    )
}

#[derive(Deserialize)]
struct SecretForm {
    csrf: String,
    name: String,
    value: Zeroizing<String>,
    #[serde(default)]
    encoding: String,
}

async fn set_secret(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<SecretForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    let encoding = if f.encoding.is_empty() { "utf8".to_string() } else { f.encoding.clone() };
    let body = json!({"value": f.value.as_str(), "encoding": encoding});
    let (s, v) = c
        .api(
            &me.token,
            Method::PUT,
            &format!("/admin/providers/{}/secrets/{}", seg(&id), seg(&f.name)),
            Some(body),
        )
        .await;
    if !s.is_success() {
        return api_error(&me, s, &v);
    }
    provider_view(&c, &me, &id, "", None).await
}

async fn delete_secret(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    let (s, v) = c
        .api(
            &me.token,
            Method::DELETE,
            &format!("/admin/providers/{}/secrets/{}", seg(&id), seg(&name)),
            None,
        )
        .await;
    if !s.is_success() {
        return api_error(&me, s, &v);
    }
    provider_view(&c, &me, &id, "", None).await
}

#[derive(Deserialize)]
struct ScriptForm {
    csrf: String,
    source: String,
    #[serde(default)]
    comment: String,
}

async fn save_script(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ScriptForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    // Browsers submit textarea lines with CRLF; scripts are stored with LF.
    let body = json!({"source": f.source.replace("\r\n", "\n"), "comment": f.comment});
    let (s, v) =
        c.api(&me.token, Method::POST, &format!("/admin/providers/{}/scripts", seg(&id)), Some(body)).await;
    if !s.is_success() {
        return api_error(&me, s, &v);
    }
    provider_view(&c, &me, &id, "", None).await
}

async fn activate_script(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path((id, version)): Path<(String, i64)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    let (s, v) = c
        .api(
            &me.token,
            Method::POST,
            &format!("/admin/providers/{}/scripts/{version}/activate", seg(&id)),
            None,
        )
        .await;
    if !s.is_success() {
        return api_error(&me, s, &v);
    }
    provider_view(&c, &me, &id, "", None).await
}

#[derive(Deserialize)]
struct TestRunForm {
    csrf: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    mocks: String,
}

async fn test_run(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<TestRunForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    let mocks: Value = if f.mocks.trim().is_empty() {
        json!([])
    } else {
        match serde_json::from_str(&f.mocks) {
            Ok(v) => v,
            Err(e) => {
                let msg = format!(
                    r#"<p class="error" id="test-run-error">Mocked responses are not JSON: {}</p>"#,
                    esc(&e.to_string())
                );
                return provider_view(&c, &me, &id, &msg, None).await;
            }
        }
    };
    let body = json!({
        "request": {
            "method": if f.method.is_empty() { "POST" } else { f.method.as_str() },
            "path": if f.path.is_empty() { "/" } else { f.path.as_str() },
            "headers": {"content-type": "application/json"},
            "body": f.body,
        },
        "mocks": mocks,
    });
    let (s, v) =
        c.api(&me.token, Method::POST, &format!("/admin/providers/{}/test-run", seg(&id)), Some(body)).await;
    if !s.is_success() {
        return api_error(&me, s, &v);
    }
    let mut out = String::from(r#"<div class="card" id="test-run-result">"#);
    if v["ok"] == true {
        out.push_str(r#"<h3 class="ok-text">Outgoing request</h3>"#);
    } else {
        let e = &v["error"];
        let _ = write!(
            out,
            r#"<p class="error" id="test-run-error"><code>{}</code> {}</p>"#,
            esc(e["code"].as_str().unwrap_or("recipe_failed")),
            esc(e["message"].as_str().unwrap_or("the recipe failed"))
        );
    }
    let r = &v["request"];
    let mut req = format!("{} {}\n", r["method"].as_str().unwrap_or(""), r["url"].as_str().unwrap_or(""));
    // Headers arrive as `[name, value]` pairs (order and repeats kept).
    for pair in r["headers"].as_array().into_iter().flatten() {
        let _ = writeln!(req, "{}: {}", pair[0].as_str().unwrap_or(""), pair[1].as_str().unwrap_or(""));
    }
    if let Some(b) = r["body"].as_str() {
        let _ = write!(req, "\n{b}");
    }
    let _ = write!(
        out,
        r#"<pre class="code" id="test-run-request">{}</pre><h3>Trace</h3><ol class="trace">"#,
        esc(&req)
    );
    for step in v["trace"].as_array().into_iter().flatten() {
        let text = step.as_str().map_or_else(|| step.to_string(), str::to_string);
        let _ = write!(out, "<li>{}</li>", esc(&text));
    }
    out.push_str("</ol></div>");
    provider_view(&c, &me, &id, &out, None).await
}

// ---- traffic and request audit ----

/// Codes that mean "the caller's credentials did not hold" (the signature-failure series).
const AUTH_FAILURES: &[&str] = &[
    "signature_mismatch",
    "nonce_replayed",
    "timestamp_out_of_window",
    "unknown_key",
    "key_disabled",
    "key_expired",
    "key_rotated",
    "missing_auth",
    "malformed_auth",
    "token_invalid",
    "client_cert_unknown",
];

/// The app's last day of requests (at most the 1,000 newest) as `[ok, auth failures, other errors]`.
async fn requests_by_outcome(c: &Console, me: &Caller, app: &str) -> [u32; 3] {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64 - 86_400_000)
        .unwrap_or(0);
    let path = format!("/admin/requests?app={}&from_ms={since}&limit=1000", seg(app));
    let (s, rows) = c.api(&me.token, Method::GET, &path, None).await;
    let mut out = [0u32; 3];
    if s.is_success() {
        for r in rows.as_array().into_iter().flatten() {
            let code = r["code"].as_str().unwrap_or("");
            let slot = if code == "ok" {
                0
            } else if AUTH_FAILURES.contains(&code) {
                1
            } else {
                2
            };
            out[slot] += 1;
        }
    }
    out
}

/// Horizontal stacked bars as inline SVG (presentation attributes only: no inline styles, so
/// the CSP needs no `unsafe-inline`).
fn traffic_chart(rows: &[(String, [u32; 3])]) -> String {
    if rows.is_empty() {
        return r#"<p class="hint">No apps yet.</p>"#.into();
    }
    let max = rows.iter().map(|(_, c)| c.iter().sum::<u32>()).max().unwrap_or(0).max(1);
    let (label_w, bar_w, row_h) = (160.0, 560.0, 26.0);
    let height = row_h * rows.len() as f64 + 30.0;
    let width = label_w + bar_w + 260.0;
    let mut svg = format!(
        r#"<svg class="chart" role="img" aria-label="Requests per app, last 24 hours" width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">"#
    );
    let colors = ["#1e7b34", "#b3261e", "#c98a00"];
    for (i, (app, counts)) in rows.iter().enumerate() {
        let y = i as f64 * row_h + 4.0;
        let _ = write!(
            svg,
            r##"<text x="0" y="{}" font-size="13" fill="#1d2530">{}</text>"##,
            y + 15.0,
            esc(app)
        );
        let mut x = label_w;
        for (k, n) in counts.iter().enumerate() {
            let w = bar_w * f64::from(*n) / f64::from(max);
            if *n > 0 {
                let _ = write!(
                    svg,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="18" fill="{}"><title>{n}</title></rect>"#,
                    colors[k]
                );
            }
            x += w;
        }
        let total: u32 = counts.iter().sum();
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{}" font-size="12" fill="#5b6673">{total} ({} ok, {} auth failures, {} errors)</text>"##,
            x + 6.0,
            y + 14.0,
            counts[0],
            counts[1],
            counts[2]
        );
    }
    let ly = height - 8.0;
    for (k, label) in ["ok", "signature/credential failures", "other errors"].iter().enumerate() {
        let lx = label_w + k as f64 * 200.0;
        let _ = write!(
            svg,
            r##"<rect x="{lx}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{ly}" font-size="12" fill="#5b6673">{label}</text>"##,
            ly - 9.0,
            colors[k],
            lx + 14.0
        );
    }
    svg.push_str("</svg>");
    svg
}

#[derive(Deserialize, Default)]
struct RequestFilter {
    #[serde(default)]
    app: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    key: String,
}

async fn requests_page(
    State(c): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<RequestFilter>,
) -> Response {
    let Some(me) = c.caller(&headers).await else { return redirect("/console/login") };
    // The apps this token can see, for the filter (tenant roles must pick one).
    let (_, tenants) = c.api(&me.token, Method::GET, "/admin/tenants", None).await;
    let mut apps = Vec::new();
    for t in tenants.as_array().into_iter().flatten().filter_map(|t| t["id"].as_str()) {
        let (_, list) = c.api(&me.token, Method::GET, &format!("/admin/tenants/{}/apps", seg(t)), None).await;
        apps.extend(
            list.as_array().into_iter().flatten().filter_map(|a| a["id"].as_str().map(str::to_string)),
        );
    }
    let global = me.who["role"] == "gateway_admin";
    let app =
        if q.app.is_empty() && !global { apps.first().cloned().unwrap_or_default() } else { q.app.clone() };
    let mut options =
        if global { r#"<option value="">all apps</option>"#.to_string() } else { String::new() };
    for a in &apps {
        let _ = write!(options, r#"<option{}>{}</option>"#, if *a == app { " selected" } else { "" }, esc(a));
    }
    let filter = format!(
        r#"<form method="get" action="/console/requests" class="card inline">
<label for="f-app">App</label><select id="f-app" name="app">{options}</select>
<label for="f-code">Code</label><input id="f-code" name="code" value="{code}" placeholder="ok, signature_mismatch, …">
<label for="f-key">Key</label><input id="f-key" name="key" value="{key}"><button type="submit">Search</button></form>"#,
        code = esc(&q.code),
        key = esc(&q.key)
    );
    let mut path = String::from("/admin/requests?limit=100");
    for (k, v) in [("app", &app), ("code", &q.code), ("key", &q.key)] {
        if !v.is_empty() {
            let _ = write!(path, "&{k}={}", seg(v));
        }
    }
    let body = if app.is_empty() && !global {
        format!(r#"{filter}<p class="hint">No app to show.</p>"#)
    } else {
        let (s, rows) = c.api(&me.token, Method::GET, &path, None).await;
        if !s.is_success() {
            return api_error(&me, s, &rows);
        }
        let mut table = String::new();
        for r in rows.as_array().into_iter().flatten() {
            let code = r["code"].as_str().unwrap_or("");
            let mut detail = format!(
                "request id {}\nclient {}\nroute {}\nlatency {} µs (upstream {})\nbytes in {} / out {}",
                r["request_id"].as_str().unwrap_or(""),
                r["client_ip"].as_str().unwrap_or(""),
                r["route"].as_str().unwrap_or(""),
                r["latency_us"].as_i64().unwrap_or(0),
                r["upstream_latency_us"].as_i64().map_or_else(|| "—".to_string(), |v| format!("{v} µs")),
                r["bytes_in"].as_i64().unwrap_or(0),
                r["bytes_out"].as_i64().unwrap_or(0),
            );
            for (label, field) in
                [("headers", "headers"), ("request body", "request_body"), ("response body", "response_body")]
            {
                if let Some(v) = r[field].as_str() {
                    let _ = write!(detail, "\n\n{label} (masked):\n{v}");
                }
            }
            let _ = write!(
                table,
                r#"<tr><td>{when}</td><td>{app}</td><td><code>{key}</code></td><td>{method} {path}</td><td class="num">{status}</td><td class="{cls}">{code}</td><td class="num">{ms:.1} ms</td></tr>
<tr class="detail"><td colspan="7"><details><summary>details</summary><pre class="code">{detail}</pre></details></td></tr>"#,
                when = time(&Value::from(r["at_ms"].as_i64().unwrap_or(0) / 1000)),
                app = esc(r["app"].as_str().unwrap_or("—")),
                key = esc(r["key_id"].as_str().unwrap_or("—")),
                method = esc(r["method"].as_str().unwrap_or("")),
                path = esc(r["path"].as_str().unwrap_or("")),
                status = r["status"].as_u64().unwrap_or(0),
                cls = if code == "ok" { "" } else { "bad" },
                code = esc(code),
                ms = r["latency_us"].as_f64().unwrap_or(0.0) / 1000.0,
                detail = esc(&detail),
            );
        }
        format!(
            r#"{filter}<table class="requests"><thead><tr><th>When</th><th>App</th><th>Key</th><th>Request</th><th class="num">Status</th><th>Code</th><th class="num">Latency</th></tr></thead><tbody>{table}</tbody></table>"#
        )
    };
    html(StatusCode::OK, "Requests", Some(&me.who), Some(&me.csrf), &body)
}

// ---- members (admin tokens of a tenant) ----

async fn members_page(State(c): State<Shared>, headers: HeaderMap, Path(tenant): Path<String>) -> Response {
    let Some(me) = c.caller(&headers).await else { return redirect("/console/login") };
    members_view(&c, &me, &tenant, "").await
}

async fn members_view(c: &Console, me: &Caller, tenant: &str, notice: &str) -> Response {
    let (s, list) =
        c.api(&me.token, Method::GET, &format!("/admin/tokens?tenant={}", seg(tenant)), None).await;
    if !s.is_success() {
        return api_error(me, s, &list);
    }
    let csrf = csrf_field(&me.csrf);
    let mut rows = String::new();
    for t in list.as_array().into_iter().flatten() {
        let id = t["id"].as_str().unwrap_or("");
        let grants: Vec<&str> =
            t["app_grants"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let revoked = !t["revoked_at"].is_null();
        let action = if revoked {
            r#"<span class="bad">revoked</span>"#.to_string()
        } else {
            format!(
                r#"<form method="post" action="/console/members/{l}/revoke" class="inline">{csrf}<button class="revoke">Revoke</button></form>"#,
                l = seg(id)
            )
        };
        let _ = write!(
            rows,
            r#"<tr><td>{name}</td><td>{role}</td><td>{grants}</td><td>{created}</td><td>{action}</td></tr>"#,
            name = esc(t["name"].as_str().unwrap_or("")),
            role = esc(t["role"].as_str().unwrap_or("")),
            grants = if grants.is_empty() { "—".to_string() } else { esc(&grants.join(", ")) },
            created = time(&t["created_at"]),
        );
    }
    let (_, apps) =
        c.api(&me.token, Method::GET, &format!("/admin/tenants/{}/apps", seg(tenant)), None).await;
    let mut app_opts = String::new();
    for a in apps.as_array().into_iter().flatten().filter_map(|a| a["id"].as_str()) {
        let _ = write!(app_opts, "<option>{}</option>", esc(a));
    }
    let create = format!(
        r#"<form method="post" action="/console/tenants/{t}/members" class="card inline" autocomplete="off">{csrf}
<label for="m-name">Name</label><input id="m-name" name="name" required>
<label for="m-role">Role</label><select id="m-role" name="role"><option>tenant_developer</option><option>tenant_admin</option></select>
<label for="m-grant">Granted app (developers)</label><select id="m-grant" name="grant"><option value="">none</option>{app_opts}</select>
<button type="submit">Create token</button></form>"#,
        t = seg(tenant)
    );
    html(
        StatusCode::OK,
        &format!("Members of {tenant}"),
        Some(&me.who),
        Some(&me.csrf),
        &format!(
            r#"{notice}<p><a href="/console/tenants/{t}">Back to the tenant</a></p><table><thead><tr><th>Name</th><th>Role</th><th>Apps</th><th>Created</th><th></th></tr></thead><tbody>{rows}</tbody></table>{create}"#,
            t = seg(tenant)
        ),
    )
}

#[derive(Deserialize)]
struct MemberForm {
    csrf: String,
    name: String,
    role: String,
    #[serde(default)]
    grant: String,
}

async fn create_member(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Form(f): Form<MemberForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    let grants: Vec<&str> = if f.grant.is_empty() { Vec::new() } else { vec![f.grant.as_str()] };
    let body = json!({"name": f.name, "role": f.role, "tenant_id": tenant, "app_grants": grants});
    let (s, v) = c.api(&me.token, Method::POST, "/admin/tokens", Some(body)).await;
    if !s.is_success() {
        return api_error(&me, s, &v);
    }
    let notice = format!(
        r#"<section class="card secret"><h2>New admin token — shown once</h2><p><code id="member-token">{}</code></p><p class="hint">Hand it over now: keygate stores only its hash.</p></section>"#,
        esc(v["token"].as_str().unwrap_or(""))
    );
    members_view(&c, &me, &tenant, &notice).await
}

async fn revoke_member(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    let (s, v) = c.api(&me.token, Method::DELETE, &format!("/admin/tokens/{}", seg(&id)), None).await;
    if !s.is_success() {
        return api_error(&me, s, &v);
    }
    let tenant = v["tenant_id"].as_str().unwrap_or("").to_string();
    members_view(&c, &me, &tenant, "").await
}

// ---- alerts ----

async fn alerts_page(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let Some(me) = c.caller(&headers).await else { return redirect("/console/login") };
    let (s, v) = c.api(&me.token, Method::GET, "/admin/alerts", None).await;
    if !s.is_success() {
        return api_error(&me, s, &v);
    }
    let rules = rule_rows(&v["rules"], false);
    // Tenants' own rules and alerts (docs/tenant-routes.md), when the view has them.
    let trules = rule_rows(&tenant_rules(&v["tenant_rules"]), true);
    let tenant_section = if trules.is_empty() {
        String::new()
    } else {
        format!(
            r#"<section><h2>Tenant rules</h2><table id="tenant-rules"><thead><tr><th>Tenant</th><th>Name</th><th>Kind</th><th>Settings</th></tr></thead><tbody>{trules}</tbody></table></section>"#
        )
    };
    let tenants =
        !trules.is_empty() || v["recent"].as_array().into_iter().flatten().any(|a| a["tenant"].is_string());
    let channels: Vec<&str> =
        v["channels"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let st = &v["stats"];
    let recent = alert_rows(&v["recent"], tenants);
    html(
        StatusCode::OK,
        "Alerts",
        Some(&me.who),
        Some(&me.csrf),
        &format!(
            r#"<p class="hint">Rules and channels are gateway configuration (<code>[alerts]</code>, docs/operations.md); channel addresses are never shown. Tenants' own rules are managed on their tenant pages.</p>
<section><h2>Recent alerts</h2><table id="recent-alerts"><thead><tr><th>When</th>{tenant_th}<th>Rule</th><th>Subject</th><th class="num">Count</th><th>Message</th></tr></thead><tbody>{recent}</tbody></table></section>
<section><h2>Rules</h2><table><thead><tr><th>Name</th><th>Kind</th><th>Settings</th></tr></thead><tbody>{rules}</tbody></table></section>{tenant_section}
<section><h2>Delivery</h2><p>Channels: {channels}. Fired {fired}, delivered {delivered}, failed {failed}, held back by the rate cap {suppressed}, dropped {dropped}.</p></section>"#,
            channels = if channels.is_empty() {
                "none (alerts are only logged)".to_string()
            } else {
                esc(&channels.join(", "))
            },
            tenant_th = if tenants { "<th>Tenant</th>" } else { "" },
            fired = st["fired"].as_u64().unwrap_or(0),
            delivered = st["delivered"].as_u64().unwrap_or(0),
            failed = st["failed"].as_u64().unwrap_or(0),
            suppressed = st["suppressed"].as_u64().unwrap_or(0),
            dropped = st["dropped"].as_u64().unwrap_or(0),
        ),
    )
}

// ---- tenant routes and alert rules ----

/// A tenant object kind, as the console and the admin API name it in paths.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Obj {
    Route,
    Rule,
}

impl Obj {
    fn path(self) -> &'static str {
        match self {
            Obj::Route => "routes",
            Obj::Rule => "alert-rules",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Obj::Route => "route",
            Obj::Rule => "alert rule",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Obj::Route => "Route",
            Obj::Rule => "Alert rule",
        }
    }
}

/// A page answered with the status of the refusal it shows (unless the page is an error itself).
fn with_status(mut page: Response, status: StatusCode) -> Response {
    if page.status().is_success() {
        *page.status_mut() = status;
    }
    page
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A JSON textarea, or the reason it is not JSON (shown next to the form).
fn parse_json(id: &str, what: &str, text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| {
        format!(
            r#"<p class="error" id="{id}" role="alert"><code>invalid_json</code> {} is not JSON: {}</p>"#,
            esc(what),
            esc(&e.to_string())
        )
    })
}

/// Creates a tenant object through the API unless one of that name exists (a create form never
/// replaces silently). `Err` is the response to return.
async fn create_object(
    c: &Console,
    me: &Caller,
    tenant: &str,
    obj: Obj,
    name: &str,
    config: Value,
) -> Result<(), (StatusCode, Value)> {
    let path = format!("/admin/tenants/{}/{}/{}", seg(tenant), obj.path(), seg(name));
    let (s, _) = c.api(&me.token, Method::GET, &path, None).await;
    if s.is_success() {
        return Err((
            StatusCode::CONFLICT,
            json!({"code": "conflict", "message": format!("a {} named {name} already exists; edit it on its page", obj.noun())}),
        ));
    }
    let (s, v) = c.api(&me.token, Method::PUT, &path, Some(json!({"config": config}))).await;
    if s.is_success() {
        Ok(())
    } else {
        Err((s, v))
    }
}

#[derive(Deserialize)]
struct RouteForm {
    csrf: String,
    name: String,
    #[serde(default)]
    path_prefix: String,
    #[serde(default)]
    upstream: String,
    #[serde(default)]
    more: String,
}

async fn create_route(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Form(f): Form<RouteForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    let draft = |error: String| {
        Draft::new(
            "route",
            error,
            vec![
                ("name", f.name.clone()),
                ("path_prefix", f.path_prefix.clone()),
                ("upstream", f.upstream.clone()),
                ("more", f.more.clone()),
            ],
        )
    };
    // The optional settings first; the three fields of the form win over the same keys in them.
    let mut config = if f.more.trim().is_empty() {
        json!({})
    } else {
        match parse_json("route-error", "More settings", &f.more) {
            Ok(v) if v.is_object() => v,
            Ok(_) => {
                let e = r#"<p class="error" id="route-error" role="alert"><code>invalid_json</code> More settings must be a JSON object.</p>"#;
                return tenant_view(&c, &me, &tenant, StatusCode::BAD_REQUEST, &draft(e.into())).await;
            }
            Err(e) => return tenant_view(&c, &me, &tenant, StatusCode::BAD_REQUEST, &draft(e)).await,
        }
    };
    config["path_prefix"] = f.path_prefix.trim().into();
    config["upstream"] = f.upstream.trim().into();
    match create_object(&c, &me, &tenant, Obj::Route, f.name.trim(), config).await {
        Ok(()) => redirect(&format!("/console/tenants/{}#routes", seg(&tenant))),
        Err((s, v)) if refuses_caller(s) => api_error(&me, s, &v),
        Err((s, v)) => tenant_view(&c, &me, &tenant, s, &draft(refusal("route-error", &v))).await,
    }
}

#[derive(Deserialize)]
struct RuleForm {
    csrf: String,
    name: String,
    #[serde(default)]
    rule: String,
}

async fn create_rule(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Form(f): Form<RuleForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    let draft =
        |error: String| Draft::new("rule", error, vec![("name", f.name.clone()), ("rule", f.rule.clone())]);
    let config = match parse_json("rule-error", "The rule", &f.rule) {
        Ok(v) => v,
        Err(e) => return tenant_view(&c, &me, &tenant, StatusCode::BAD_REQUEST, &draft(e)).await,
    };
    match create_object(&c, &me, &tenant, Obj::Rule, f.name.trim(), config).await {
        Ok(()) => redirect(&format!("/console/tenants/{}#alert-rules", seg(&tenant))),
        Err((s, v)) if refuses_caller(s) => api_error(&me, s, &v),
        Err((s, v)) => tenant_view(&c, &me, &tenant, s, &draft(refusal("rule-error", &v))).await,
    }
}

async fn route_page(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path((tenant, name)): Path<(String, String)>,
) -> Response {
    let Some(me) = c.caller(&headers).await else { return redirect("/console/login") };
    object_view(&c, &me, &tenant, Obj::Route, &name, StatusCode::OK, "", None).await
}

async fn rule_page(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path((tenant, name)): Path<(String, String)>,
) -> Response {
    let Some(me) = c.caller(&headers).await else { return redirect("/console/login") };
    object_view(&c, &me, &tenant, Obj::Rule, &name, StatusCode::OK, "", None).await
}

/// One route or alert rule: its document in an editor (admins) or read-only, and Delete.
/// `text` is the user's refused edit, shown again instead of the stored document.
#[allow(clippy::too_many_arguments)]
async fn object_view(
    c: &Console,
    me: &Caller,
    tenant: &str,
    obj: Obj,
    name: &str,
    status: StatusCode,
    notice: &str,
    text: Option<&str>,
) -> Response {
    let t = seg(tenant);
    let action = format!("/console/tenants/{t}/{}/{}", obj.path(), seg(name));
    let (s, v) = c
        .api(&me.token, Method::GET, &format!("/admin/tenants/{t}/{}/{}", obj.path(), seg(name)), None)
        .await;
    if !s.is_success() {
        return api_error(me, s, &v);
    }
    let doc = esc(&text.map_or_else(|| pretty(&v["config"]), str::to_string));
    let csrf = csrf_field(&me.csrf);
    let body = if is_admin(&me.who) {
        format!(
            r#"<form method="post" action="{action}" class="card">{csrf}
<label for="doc">Document (JSON; checked against the operator's policy when saved)</label>
<textarea id="doc" name="config" rows="14" spellcheck="false" required>{doc}</textarea>
<button type="submit" id="save">Save</button></form>
<form method="post" action="{action}/delete" class="card inline">{csrf}<span class="hint">Deleting takes effect at the next reload and is recorded as a config version.</span><button type="submit" class="revoke" id="delete">Delete {noun}</button></form>"#,
            noun = obj.noun(),
        )
    } else {
        format!(
            r#"<label for="doc">Document (read-only)</label><textarea id="doc" rows="14" spellcheck="false" readonly>{doc}</textarea>"#
        )
    };
    let links = match obj {
        Obj::Route => "",
        Obj::Rule => r#" · <a href="/console/tenants/{t}/alerts">fired alerts</a>"#,
    }
    .replace("{t}", &t);
    html(
        status,
        &format!("{} {name}", obj.title()),
        Some(&me.who),
        Some(&me.csrf),
        &format!(
            r#"<p>Tenant <a href="/console/tenants/{t}">{te}</a>{links} · updated {when} by {by}</p>{notice}{body}"#,
            te = esc(tenant),
            when = time(&v["updated_at"]),
            by = esc(v["updated_by"].as_str().unwrap_or("")),
        ),
    )
}

#[derive(Deserialize)]
struct DocForm {
    csrf: String,
    config: String,
}

async fn save_object(
    c: &Console,
    headers: &HeaderMap,
    tenant: &str,
    obj: Obj,
    name: &str,
    f: DocForm,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    let config = match parse_json("doc-error", "The document", &f.config) {
        Ok(v) => v,
        Err(e) => {
            return object_view(c, &me, tenant, obj, name, StatusCode::BAD_REQUEST, &e, Some(&f.config)).await
        }
    };
    let path = format!("/admin/tenants/{}/{}/{}", seg(tenant), obj.path(), seg(name));
    let (s, v) = c.api(&me.token, Method::PUT, &path, Some(json!({"config": config}))).await;
    if refuses_caller(s) {
        return api_error(&me, s, &v);
    }
    if !s.is_success() {
        let e = refusal("doc-error", &v);
        return object_view(c, &me, tenant, obj, name, s, &e, Some(&f.config)).await;
    }
    let saved = r#"<p class="card ok-text" id="saved" role="status">Saved; replicas serve it after their next reload.</p>"#;
    object_view(c, &me, tenant, obj, name, StatusCode::OK, saved, None).await
}

async fn save_route(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path((tenant, name)): Path<(String, String)>,
    Form(f): Form<DocForm>,
) -> Response {
    save_object(&c, &headers, &tenant, Obj::Route, &name, f).await
}

async fn save_rule(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path((tenant, name)): Path<(String, String)>,
    Form(f): Form<DocForm>,
) -> Response {
    save_object(&c, &headers, &tenant, Obj::Rule, &name, f).await
}

async fn delete_object(
    c: &Console,
    headers: &HeaderMap,
    tenant: &str,
    obj: Obj,
    name: &str,
    csrf: &str,
) -> Response {
    let me = post_session!(c, headers, csrf);
    let path = format!("/admin/tenants/{}/{}/{}", seg(tenant), obj.path(), seg(name));
    let (s, v) = c.api(&me.token, Method::DELETE, &path, None).await;
    if !s.is_success() {
        return api_error(&me, s, &v);
    }
    redirect(&format!("/console/tenants/{}#{}", seg(tenant), obj.path()))
}

async fn delete_route(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path((tenant, name)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    delete_object(&c, &headers, &tenant, Obj::Route, &name, &f.csrf).await
}

async fn delete_rule(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path((tenant, name)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    delete_object(&c, &headers, &tenant, Obj::Rule, &name, &f.csrf).await
}

/// Rules of an alerts view as table rows: name, kind, the other settings.
fn rule_rows(rules: &Value, with_tenant: bool) -> String {
    let mut out = String::new();
    for r in rules.as_array().into_iter().flatten() {
        let kind = r["kind"].as_str().unwrap_or("");
        let mut params: Vec<String> = r
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !matches!(k.as_str(), "kind" | "name" | "tenant"))
            .map(|(k, v)| format!("{k} = {}", v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect();
        params.sort();
        let tenant_cell = match (with_tenant, r["tenant"].as_str()) {
            (true, Some(t)) => format!(r#"<td><a href="/console/tenants/{}">{}</a></td>"#, seg(t), esc(t)),
            (true, None) => "<td>—</td>".to_string(),
            (false, _) => String::new(),
        };
        let _ = write!(
            out,
            "<tr>{tenant_cell}<td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(r["name"].as_str().unwrap_or(kind)),
            esc(kind),
            esc(&params.join(", "))
        );
    }
    out
}

/// Fired alerts as table rows (with a tenant column when `tenants`).
fn alert_rows(recent: &Value, tenants: bool) -> String {
    let mut out = String::new();
    for a in recent.as_array().into_iter().flatten() {
        let tenant = if tenants {
            match a["tenant"].as_str() {
                Some(t) => format!(r#"<td><a href="/console/tenants/{}">{}</a></td>"#, seg(t), esc(t)),
                None => r#"<td class="hint">gateway</td>"#.to_string(),
            }
        } else {
            String::new()
        };
        let _ = write!(
            out,
            r#"<tr><td>{}</td>{tenant}<td>{}</td><td>{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            time(&a["at"]),
            esc(a["rule"].as_str().unwrap_or("")),
            esc(a["subject"].as_str().unwrap_or("")),
            a["count"].as_u64().unwrap_or(0),
            esc(a["message"].as_str().unwrap_or("")),
        );
    }
    if out.is_empty() {
        out = format!(
            r#"<tr><td colspan="{}" class="hint">No alert has fired since this process started.</td></tr>"#,
            if tenants { 6 } else { 5 }
        );
    }
    out
}

/// The gateway view's `tenant_rules`, as rules that each carry their `tenant`: accepts a map of
/// tenant → rules, a list of `{tenant, rules}`, or a list of rules with a `tenant` field.
fn tenant_rules(v: &Value) -> Value {
    let mut out = Vec::new();
    let tag = |t: &str, r: &Value| {
        let mut r = r.clone();
        if let Some(m) = r.as_object_mut() {
            m.entry("tenant").or_insert_with(|| t.into());
        }
        r
    };
    match v {
        Value::Object(m) => {
            for (t, rules) in m {
                out.extend(rules.as_array().into_iter().flatten().map(|r| tag(t, r)));
            }
        }
        Value::Array(items) => {
            for it in items {
                match (it["tenant"].as_str(), it["rules"].as_array()) {
                    (Some(t), Some(rules)) => out.extend(rules.iter().map(|r| tag(t, r))),
                    _ => out.push(it.clone()),
                }
            }
        }
        _ => {}
    }
    Value::Array(out)
}

async fn tenant_alerts_page(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Response {
    let Some(me) = c.caller(&headers).await else { return redirect("/console/login") };
    let t = seg(&tenant);
    let (s, v) = c.api(&me.token, Method::GET, &format!("/admin/tenants/{t}/alerts"), None).await;
    if !s.is_success() {
        return api_error(&me, s, &v);
    }
    let mut rules = rule_rows(&v["rules"], false);
    if rules.is_empty() {
        rules = r#"<tr><td colspan="3" class="hint">No alert rules of this tenant.</td></tr>"#.into();
    }
    html(
        StatusCode::OK,
        &format!("Alerts of {tenant}"),
        Some(&me.who),
        Some(&me.csrf),
        &format!(
            r#"<p><a href="/console/tenants/{t}">Back to the tenant</a> · rules are managed under <a href="/console/tenants/{t}#alert-rules">Alert rules</a></p>
<p class="hint">This tenant's rules over its own apps' traffic. Alerts go to the operator's channels, with the tenant named.</p>
<p id="fired">Fired <strong>{fired}</strong> since this process started.</p>
<section><h2>Recent alerts</h2><table id="recent-alerts"><thead><tr><th>When</th><th>Rule</th><th>Subject</th><th class="num">Count</th><th>Message</th></tr></thead><tbody>{recent}</tbody></table></section>
<section><h2>Rules</h2><table id="alert-rule-table"><thead><tr><th>Name</th><th>Kind</th><th>Settings</th></tr></thead><tbody>{rules}</tbody></table></section>"#,
            fired = v["stats"]["fired"].as_u64().unwrap_or(0),
            recent = alert_rows(&v["recent"], false),
        ),
    )
}

// ---- provider documents ----

#[derive(Deserialize)]
struct NewProviderForm {
    csrf: String,
    id: String,
    #[serde(default)]
    document: String,
}

async fn create_provider(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Form(f): Form<NewProviderForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    let id = f.id.trim();
    let draft = |error: String| {
        Draft::new("provider", error, vec![("id", f.id.clone()), ("document", f.document.clone())])
    };
    let config = match parse_json("provider-error", "The document", &f.document) {
        Ok(v) => v,
        Err(e) => return tenant_view(&c, &me, &tenant, StatusCode::BAD_REQUEST, &draft(e)).await,
    };
    let path = format!("/admin/providers/{}", seg(id));
    // A create form never replaces a provider silently.
    let (s, _) = c.api(&me.token, Method::GET, &path, None).await;
    if s.is_success() {
        let v = json!({"code": "conflict", "message": format!("provider {id} already exists; edit it on its page")});
        return tenant_view(&c, &me, &tenant, StatusCode::CONFLICT, &draft(refusal("provider-error", &v)))
            .await;
    }
    let (s, v) =
        c.api(&me.token, Method::PUT, &path, Some(json!({"tenant_id": tenant, "config": config}))).await;
    if refuses_caller(s) {
        return api_error(&me, s, &v);
    }
    if !s.is_success() {
        return tenant_view(&c, &me, &tenant, s, &draft(refusal("provider-error", &v))).await;
    }
    redirect(&format!("/console/providers/{}", seg(v["id"].as_str().unwrap_or(id))))
}

async fn save_provider_document(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<DocForm>,
) -> Response {
    let me = post_session!(c, headers, f.csrf);
    let config = match parse_json("doc-error", "The document", &f.config) {
        Ok(v) => v,
        Err(e) => {
            let page = provider_view(&c, &me, &id, "", Some((Some(&f.config), &e))).await;
            return with_status(page, StatusCode::BAD_REQUEST);
        }
    };
    // The provider stays with its tenant.
    let path = format!("/admin/providers/{}", seg(&id));
    let (s, p) = c.api(&me.token, Method::GET, &path, None).await;
    if !s.is_success() {
        return api_error(&me, s, &p);
    }
    let body = json!({"tenant_id": p["tenant_id"], "config": config});
    let (s, v) = c.api(&me.token, Method::PUT, &path, Some(body)).await;
    if refuses_caller(s) {
        return api_error(&me, s, &v);
    }
    if !s.is_success() {
        let page = provider_view(&c, &me, &id, "", Some((Some(&f.config), &refusal("doc-error", &v)))).await;
        return with_status(page, s);
    }
    let saved = r#"<p class="card ok-text" id="saved" role="status">Document saved.</p>"#;
    provider_view(&c, &me, &id, "", Some((None, saved))).await
}
