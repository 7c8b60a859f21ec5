//! The web admin (issue 17) under `/admin` on the `http` listener: plain HTML pages rendered
//! here (forms that work without JavaScript; one small script draws the dashboard's charts),
//! with its stylesheet and script embedded in the binary.
//!
//! - **Sign-in** with a user's address and password — not an app password: those are for
//!   mail clients, and one taken from a device must not change the password. Administrators
//!   (`tern user admin EMAIL on`, or the account `tern setup` made) see every page; other users
//!   see their own account: password, app passwords, vacation reply, quota.
//! - **Sessions** live in this process's memory (a restart signs everyone out): the cookie is
//!   `HttpOnly; Secure; SameSite=Strict`, holds 32 random bytes, and only its hash is kept.
//!   Sign-out forgets the session, so a copied cookie is worthless afterwards. Idle for 30
//!   minutes or older than 12 hours, a session ends. The account is read again on every
//!   request: a disabled user, an admin who is one no longer, or a user whose password
//!   changed since the sign-in (by the web admin, the API, the CLI or another node) is out
//!   at once.
//! - **CSRF**: every form carries the session's token (a second random value), checked before
//!   anything changes; the sign-in form carries one bound to a cookie of its own. A request
//!   whose `Origin` names another site is refused as well.
//! - **Failed sign-ins** are slowed and banned per address by the same guard as IMAP, POP3 and
//!   SMTP AUTH (service `web`).
//! - Every page is sent with a Content-Security-Policy without `unsafe-inline`
//!   (`default-src 'none'`; scripts, styles and fetches from this origin only), no framing,
//!   `no-store` caching and no referrer to other sites (`same-origin`: with `no-referrer`
//!   browsers send `Origin: null` even on this site's own forms).

mod pages;

use crate::api::{ApiContext, ApiError, random_secret as random_token, token_hash as hash};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tern_store::Account;

/// The session cookie.
const SESSION_COOKIE: &str = "tern_session";
/// The sign-in form's CSRF cookie.
const LOGIN_COOKIE: &str = "tern_login";
/// A session unused this long ends.
const IDLE: Duration = Duration::from_secs(30 * 60);
/// And any session this old.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once (the oldest goes first).
const MAX_SESSIONS: usize = 4096;
/// Largest form accepted.
const MAX_FORM: usize = 256 * 1024;

/// A message for the next page the session sees.
#[derive(Debug, Clone)]
pub(crate) enum Flash {
    Done(String),
    Failed(String),
    /// A secret shown once (a generated password), with what it is.
    Secret {
        what: String,
        secret: String,
    },
}

struct WebSession {
    account: tern_store::AccountId,
    /// The hash of the account's password hash at the sign-in: when the password changes,
    /// wherever it is changed, the session ends.
    password: String,
    csrf: String,
    created: Instant,
    seen: Instant,
    flash: Option<Flash>,
}

/// The signed-in sessions, by the hash of their cookie.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, WebSession>>,
}

/// Whether a form's token is the one expected (constant time).
fn same(a: &str, b: &str) -> bool {
    crate::api::constant_time_eq(a.as_bytes(), b.as_bytes())
}

impl Sessions {
    /// Starts a session for `account`; the cookie's value.
    fn start(&self, account: &Account) -> String {
        let secret = random_token();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, s| now.duration_since(s.seen) < IDLE && now.duration_since(s.created) < LIFETIME);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        let session = WebSession {
            account: account.id,
            password: hash(&account.password_hash),
            csrf: random_token(),
            created: now,
            seen: now,
            flash: None,
        };
        map.insert(hash(&secret), session);
        secret
    }

    /// The live session of a cookie.
    fn touch(&self, secret: &str) -> Option<Touched> {
        let now = Instant::now();
        let key = hash(secret);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let live = map
            .get(&key)
            .is_some_and(|s| now.duration_since(s.seen) < IDLE && now.duration_since(s.created) < LIFETIME);
        if !live {
            map.remove(&key);
            return None;
        }
        let s = map.get_mut(&key)?;
        s.seen = now;
        Some(Touched { account: s.account, password: s.password.clone(), csrf: s.csrf.clone(), flash: s.flash.take() })
    }

    fn flash(&self, secret: &str, flash: Flash) {
        if let Some(s) = self.map.lock().unwrap_or_else(PoisonError::into_inner).get_mut(&hash(secret)) {
            s.flash = Some(flash);
        }
    }

    fn end(&self, secret: &str) {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).remove(&hash(secret));
    }

    /// Ends every session of an account but `except`, which now holds the account's new
    /// password (its user changed it).
    fn end_all_of(&self, account: &Account, except: &str) {
        let keep = hash(except);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|k, s| s.account != account.id || *k == keep);
        if let Some(s) = map.get_mut(&keep) {
            s.password = hash(&account.password_hash);
        }
    }
}

/// What a live session holds.
struct Touched {
    account: tern_store::AccountId,
    password: String,
    csrf: String,
    flash: Option<Flash>,
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age.map(|a| format!("; Max-Age={a}")).unwrap_or_default();
    let text = format!("{name}={value}; Path={path}; HttpOnly; Secure; SameSite=Strict{age}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// Whether a changing request comes from a page of this site: an `Origin` header, when sent,
/// must name the host the request was sent to.
fn same_origin(parts: &Parts) -> bool {
    let Some(origin) = parts.headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else { return true };
    let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// A signed-in user, as the request's session cookie says.
pub(crate) struct SignedIn {
    pub account: Account,
    pub csrf: String,
    pub flash: Option<Flash>,
    secret: String,
}

impl SignedIn {
    pub fn admin(&self) -> bool {
        self.account.admin
    }
}

/// Where an unsigned request goes: the sign-in page (a changing request is refused).
pub(crate) struct SignInFirst(Method);

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        if self.0 == Method::GET || self.0 == Method::HEAD {
            Redirect::to("/admin/login").into_response()
        } else {
            pages::error_page(StatusCode::FORBIDDEN, "Your session has ended: sign in again.")
        }
    }
}

impl FromRequestParts<Arc<ApiContext>> for SignedIn {
    type Rejection = SignInFirst;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<ApiContext>) -> Result<SignedIn, SignInFirst> {
        let refuse = || SignInFirst(parts.method.clone());
        let secret = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(refuse)?;
        let Touched { account, password, csrf, flash } = ctx.sessions.touch(&secret).ok_or_else(refuse)?;
        let account = match ctx.directory.store().account_get(account).await {
            Ok(Some(a)) if !a.disabled && !a.shared && same(&hash(&a.password_hash), &password) => a,
            Ok(_) => {
                ctx.sessions.end(&secret);
                return Err(refuse());
            }
            Err(e) => {
                tracing::warn!(error = %e, "web admin: cannot read the signed-in account");
                return Err(refuse());
            }
        };
        Ok(SignedIn { account, csrf, flash, secret })
    }
}

/// An administrator (else a 403 page).
pub(crate) struct AdminUser(pub SignedIn);

pub(crate) enum AdminRefusal {
    SignIn(SignInFirst),
    NotAdmin,
}

impl IntoResponse for AdminRefusal {
    fn into_response(self) -> Response {
        match self {
            AdminRefusal::SignIn(s) => s.into_response(),
            AdminRefusal::NotAdmin => pages::error_page(StatusCode::FORBIDDEN, "This page is for administrators."),
        }
    }
}

impl FromRequestParts<Arc<ApiContext>> for AdminUser {
    type Rejection = AdminRefusal;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<ApiContext>) -> Result<AdminUser, AdminRefusal> {
        let user = SignedIn::from_request_parts(parts, ctx).await.map_err(AdminRefusal::SignIn)?;
        if !user.admin() {
            return Err(AdminRefusal::NotAdmin);
        }
        Ok(AdminUser(user))
    }
}

/// A form posted by a signed-in user, its CSRF token checked. `T` is the form's other fields.
pub(crate) struct Posted<T> {
    pub user: SignedIn,
    pub form: T,
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T> FromRequest<Arc<ApiContext>> for Posted<T>
where
    T: for<'de> Deserialize<'de>,
{
    type Rejection = Response;

    async fn from_request(req: Request, ctx: &Arc<ApiContext>) -> Result<Posted<T>, Response> {
        let (mut parts, body) = req.into_parts();
        let user = SignedIn::from_request_parts(&mut parts, ctx).await.map_err(IntoResponse::into_response)?;
        let client = parts.extensions.get::<crate::http::ClientAddr>().map(|c| c.0);
        if !same_origin(&parts) {
            tracing::warn!(client = ?client, user = %user.account.address, "web admin: request from another origin refused");
            return Err(pages::error_page(StatusCode::FORBIDDEN, "Refused: the form was not sent from this site."));
        }
        let bytes = axum::body::to_bytes(body, MAX_FORM)
            .await
            .map_err(|_| pages::error_page(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."))?;
        let token: CsrfField = serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField { csrf: String::new() });
        if !same(&token.csrf, &user.csrf) {
            tracing::warn!(client = ?client, user = %user.account.address, "web admin: CSRF token missing or wrong; refused");
            return Err(pages::error_page(
                StatusCode::FORBIDDEN,
                "Refused: the form's security token is missing or out of date. Reload the page and try again.",
            ));
        }
        let form = serde_urlencoded::from_bytes::<T>(&bytes)
            .map_err(|e| pages::error_page(StatusCode::BAD_REQUEST, &format!("The form is not valid: {e}")))?;
        Ok(Posted { user, form })
    }
}

/// Back to `to` with a message: done, or what went wrong.
pub(crate) fn after(ctx: &ApiContext, user: &SignedIn, to: &str, result: Result<Flash, ApiError>) -> Response {
    let flash = match result {
        Ok(f) => f,
        Err(e) => Flash::Failed(e.message),
    };
    ctx.sessions.flash(&user.secret, flash);
    Redirect::to(to).into_response()
}

// --- sign-in and sign-out ---

async fn login_page(axum::extract::State(ctx): axum::extract::State<Arc<ApiContext>>, headers: HeaderMap) -> Response {
    // Already signed in: on to the start page.
    if let Some(secret) = cookie(&headers, SESSION_COOKIE)
        && ctx.sessions.touch(&secret).is_some()
    {
        return Redirect::to("/admin").into_response();
    }
    login_form(&ctx, None, StatusCode::OK)
}

fn login_form(ctx: &ApiContext, error: Option<&str>, status: StatusCode) -> Response {
    let token = random_token();
    let mut response =
        (status, axum::response::Html(pages::login(&ctx.hostname, &token, error).into_string())).into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &token, "/admin", Some(600)));
    response
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login_submit(
    axum::extract::State(ctx): axum::extract::State<Arc<ApiContext>>,
    client: Option<axum::Extension<crate::http::ClientAddr>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let ip = client.map(|c| c.0.0.ip());
    if let (Some(guard), Some(ip)) = (&ctx.auth_guard, ip)
        && let tern_guard::AuthVerdict::Banned(left) = guard.check(ip)
    {
        return login_form(
            &ctx,
            Some(&format!("Too many failed sign-ins from this address; try again in {} s.", left.as_secs().max(1))),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&bytes) else {
        return login_form(&ctx, Some("The form is not valid."), StatusCode::BAD_REQUEST);
    };
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(&expected, &form.csrf) {
        tracing::warn!(client = ?ip, "web admin: sign-in without its CSRF token refused");
        return login_form(&ctx, Some("The sign-in form expired; try again."), StatusCode::FORBIDDEN);
    }
    let account = match ctx.directory.authenticate_account_password(form.email.trim(), &form.password).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "web admin: sign-in could not be checked");
            return login_form(&ctx, Some("Sign-in is unavailable; try again."), StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let Some(account) = account else {
        tracing::info!(client = ?ip, user = %form.email.escape_debug(), "web admin: sign-in failed");
        match (&ctx.auth_guard, ip) {
            (Some(guard), Some(ip)) => tokio::time::sleep(guard.failed(ip, "web")).await,
            _ => metrics::counter!("tern_auth_failures_total", "service" => "web").increment(1),
        }
        return login_form(&ctx, Some("Wrong address or password."), StatusCode::UNAUTHORIZED);
    };
    if let (Some(guard), Some(ip)) = (&ctx.auth_guard, ip) {
        guard.succeeded(ip);
    }
    tracing::info!(client = ?ip, user = %account.address, admin = account.admin, "web admin: signed in");
    let secret = ctx.sessions.start(&account);
    let mut response = Redirect::to("/admin").into_response();
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &secret, "/admin", None));
    h.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", "/admin", Some(0)));
    response
}

async fn logout(axum::extract::State(ctx): axum::extract::State<Arc<ApiContext>>, posted: Posted<Empty>) -> Response {
    ctx.sessions.end(&posted.user.secret);
    tracing::info!(user = %posted.user.account.address, "web admin: signed out");
    let mut response = Redirect::to("/admin/login").into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", "/admin", Some(0)));
    response
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
pub(crate) struct Empty {}

async fn start(user: SignedIn) -> Redirect {
    if user.admin() { Redirect::to("/admin/dashboard") } else { Redirect::to("/admin/account") }
}

// --- assets and headers ---

const CSS: &str = include_str!("assets/tern.css");
const JS: &str = include_str!("assets/tern.js");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

/// The policy every page is sent with: nothing inline, nothing from elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn not_found() -> Response {
    pages::error_page(StatusCode::NOT_FOUND, "No such page.")
}

/// `/admin/...`.
pub fn router(ctx: Arc<ApiContext>) -> Router {
    use pages::*;
    let admin = Router::new()
        .route("/", get(start))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/assets/tern.css", get(css))
        .route("/assets/tern.js", get(js))
        .route("/dashboard", get(dashboard))
        .route("/dashboard.json", get(dashboard_json))
        .route("/domains", get(domains).post(domain_add))
        .route("/domains/{name}", get(domain_page))
        .route("/domains/{name}/dkim", post(domain_dkim))
        .route("/domains/{name}/delete", post(domain_delete))
        .route("/users", get(users).post(user_add))
        .route("/users/{email}", get(user_page).post(user_update))
        .route("/users/{email}/delete", post(user_delete))
        .route("/users/{email}/app-passwords", post(user_app_password_add))
        .route("/users/{email}/app-passwords/{name}/delete", post(user_app_password_delete))
        .route("/aliases", get(aliases).post(alias_add))
        .route("/aliases/{address}/delete", post(alias_delete))
        .route("/queue", get(queue))
        .route("/queue/{id}/retry", post(queue_retry))
        .route("/queue/{id}/delete", post(queue_delete))
        .route("/quarantine", get(quarantine))
        .route("/quarantine/{id}", get(quarantine_item))
        .route("/quarantine/{id}/release", post(quarantine_release))
        .route("/quarantine/{id}/delete", post(quarantine_delete))
        .route("/logs", get(logs))
        .route("/account", get(account))
        .route("/account/password", post(account_password))
        .route("/account/app-passwords", post(account_app_password_add))
        .route("/account/app-passwords/{name}/delete", post(account_app_password_delete))
        .route("/account/vacation", post(account_vacation))
        .fallback(not_found)
        .with_state(ctx)
        .layer(axum::middleware::map_response(security_headers));
    // `/admin` itself is the nested `/`; `/admin/`, as people type it, leads there.
    Router::new().route("/admin/", get(|| async { Redirect::permanent("/admin") })).nest("/admin", admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_on_sign_out_and_keep_only_their_hash() {
        let sessions = Sessions::default();
        let user = |id, password: &str| Account { id, password_hash: password.into(), ..Default::default() };
        let secret = sessions.start(&user(7, "h7"));
        assert!(!sessions.map.lock().unwrap().contains_key(&secret), "the cookie itself is not kept");
        let Touched { account, password, csrf, flash } = sessions.touch(&secret).unwrap();
        assert_eq!((account, password), (7, hash("h7")), "the password hash is kept hashed");
        assert!(flash.is_none() && csrf.len() >= 40 && csrf != secret);
        sessions.flash(&secret, Flash::Done("x".into()));
        assert!(matches!(sessions.touch(&secret).unwrap().flash, Some(Flash::Done(_))));
        assert!(sessions.touch(&secret).unwrap().flash.is_none(), "a message is shown once");
        sessions.end(&secret);
        assert!(sessions.touch(&secret).is_none());
        assert!(sessions.touch("made-up").is_none());
        let a = sessions.start(&user(1, "old"));
        let b = sessions.start(&user(1, "old"));
        let c = sessions.start(&user(2, "h2"));
        sessions.end_all_of(&user(1, "new"), &b);
        assert!(sessions.touch(&a).is_none() && sessions.touch(&c).is_some());
        assert_eq!(sessions.touch(&b).map(|t| t.password), Some(hash("new")), "the changer's session goes on");
    }

    #[test]
    fn cookies_and_origins() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; tern_session=abc; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        let v = set_cookie(SESSION_COOKIE, "abc", "/admin", None);
        assert_eq!(v.to_str().unwrap(), "tern_session=abc; Path=/admin; HttpOnly; Secure; SameSite=Strict");
        let parts = |origin: Option<&'static str>| {
            let mut b = axum::http::Request::builder().uri("/admin/users").header(header::HOST, "127.0.0.1:8080");
            if let Some(o) = origin {
                b = b.header(header::ORIGIN, o);
            }
            b.body(()).unwrap().into_parts().0
        };
        assert!(same_origin(&parts(None)));
        assert!(same_origin(&parts(Some("http://127.0.0.1:8080"))));
        assert!(!same_origin(&parts(Some("http://evil.example"))));
        assert!(!same_origin(&parts(Some("null"))));
    }
}
