//! The web admin (issue 17) under `/admin` on the `http` listener: plain HTML pages rendered
//! here (forms that work without JavaScript; one small script draws the dashboard's charts),
//! with its stylesheet and script embedded in the binary.
//!
//! - **Sign-in** with a user's address and password — not an app password: those are for
//!   mail clients, and one taken from a device must not change the password. Administrators
//!   (`tern user admin EMAIL on`, or the account `tern setup` made) see every page; other users
//!   see their own account: password, app passwords, vacation reply, quota.
//! - **Sessions** live in the store, so every node of a cluster knows them and a restart signs
//!   nobody out: the cookie is `HttpOnly; Secure; SameSite=Strict`, holds 32 random bytes,
//!   and only its hash is kept. Sign-out forgets the session, so a copied cookie is worthless
//!   afterwards. Idle for 30 minutes or older than 12 hours, a session ends; an account has
//!   at most 16. A message after a change waits in the session for the next page; a
//!   generated password is shown in the answer to the form itself and never stored. The account is read again on every
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
use std::sync::Arc;
use tern_store::{Account, StoreResult, WebNotice, WebSession, WebSessionsToRemove};

/// The session cookie.
const SESSION_COOKIE: &str = "tern_session";
/// The sign-in form's CSRF cookie.
const LOGIN_COOKIE: &str = "tern_login";
/// A session unused this long ends.
const IDLE: i64 = 30 * 60;
/// And any session this old.
const LIFETIME: i64 = 12 * 3600;
/// A session's last use is written at most this often (each write is a durable commit).
const SEEN_EVERY: i64 = 60;
/// Sessions one account may have at once (the oldest goes first).
const MAX_SESSIONS_PER_ACCOUNT: usize = 16;
/// Largest form accepted.
const MAX_FORM: usize = 256 * 1024;

/// A message for the next page the session sees.
#[derive(Debug, Clone)]
pub(crate) enum Flash {
    Done(String),
    Failed(String),
    /// A secret shown once (a generated password), with what it is: shown in the answer to
    /// the form that made it, never stored.
    Secret {
        what: String,
        secret: String,
    },
}

/// The signed-in sessions, in the store by the hash of their cookie: every node of a cluster
/// knows them (no need to keep a browser on one node), and a restart signs nobody out.
pub struct Sessions {
    store: Arc<dyn tern_store::Store>,
}

/// Whether a form's token is the one expected (constant time).
fn same(a: &str, b: &str) -> bool {
    crate::api::constant_time_eq(a.as_bytes(), b.as_bytes())
}

impl Sessions {
    pub fn new(store: Arc<dyn tern_store::Store>) -> Sessions {
        Sessions { store }
    }

    /// Starts a session for `account`; the cookie's value.
    async fn start(&self, account: &Account) -> StoreResult<String> {
        let now = tern_store::now_unix();
        self.store.web_session_remove(WebSessionsToRemove::ExpiredAt(now)).await?;
        let theirs = self.store.web_sessions_of(account.id).await?;
        // Oldest first: make room for this one.
        for old in theirs.iter().take((theirs.len() + 1).saturating_sub(MAX_SESSIONS_PER_ACCOUNT)) {
            self.store.web_session_remove(WebSessionsToRemove::One(old.key.clone())).await?;
        }
        let secret = random_token();
        let session = WebSession {
            key: hash(&secret),
            account: account.id,
            password: hash(&account.password_hash),
            csrf: random_token(),
            created: now,
            seen: now,
            expires: expiry(now, now),
            notice: None,
        };
        self.store.web_session_put(session).await?;
        Ok(secret)
    }

    /// The live session of a cookie, its message taken.
    async fn touch(&self, secret: &str) -> StoreResult<Option<Touched>> {
        let now = tern_store::now_unix();
        let Some(mut session) = self.store.web_session_get(&hash(secret)).await? else {
            return Ok(None);
        };
        if session.expires <= now {
            self.store.web_session_remove(WebSessionsToRemove::One(session.key)).await?;
            return Ok(None);
        }
        let notice = session.notice.take();
        if notice.is_some() || now - session.seen >= SEEN_EVERY {
            session.seen = now;
            session.expires = expiry(session.created, now);
            self.store.web_session_put(session.clone()).await?;
        }
        let flash = notice.map(|n| match n {
            WebNotice::Done(m) => Flash::Done(m),
            WebNotice::Failed(m) => Flash::Failed(m),
        });
        Ok(Some(Touched { account: session.account, password: session.password, csrf: session.csrf, flash }))
    }

    /// Leaves a message for the session's next page.
    async fn notify(&self, secret: &str, notice: WebNotice) -> StoreResult<()> {
        if let Some(mut session) = self.store.web_session_get(&hash(secret)).await? {
            session.notice = Some(notice);
            self.store.web_session_put(session).await?;
        }
        Ok(())
    }

    async fn end(&self, secret: &str) -> StoreResult<()> {
        self.store.web_session_remove(WebSessionsToRemove::One(hash(secret))).await.map(|_| ())
    }

    /// Ends every session of an account but `except`, which now holds the account's new
    /// password (its user changed it).
    async fn end_all_of(&self, account: &Account, except: &str) -> StoreResult<()> {
        let keep = hash(except);
        let which = WebSessionsToRemove::OfAccount { account: account.id, except: Some(keep.clone()) };
        self.store.web_session_remove(which).await?;
        if let Some(mut session) = self.store.web_session_get(&keep).await? {
            session.password = hash(&account.password_hash);
            self.store.web_session_put(session).await?;
        }
        Ok(())
    }
}

/// When a session created at `created` and used at `seen` ends.
fn expiry(created: i64, seen: i64) -> i64 {
    (seen + IDLE).min(created + LIFETIME)
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
#[derive(Clone)]
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
        let touched = ctx.sessions.touch(&secret).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "web admin: cannot read the session");
            None
        });
        let Touched { account, password, csrf, flash } = touched.ok_or_else(refuse)?;
        let account = match ctx.directory.store().account_get(account).await {
            Ok(Some(a)) if !a.disabled && !a.shared && same(&hash(&a.password_hash), &password) => a,
            Ok(_) => {
                if let Err(e) = ctx.sessions.end(&secret).await {
                    tracing::warn!(error = %e, "web admin: cannot end a session");
                }
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

/// Back to `to` with a message: done, or what went wrong. A secret is not stored for the
/// next page: the page `to` is the answer itself, with the secret on it.
pub(crate) async fn after(
    ctx: &Arc<ApiContext>,
    user: &SignedIn,
    to: &str,
    result: Result<Flash, ApiError>,
) -> Response {
    let notice = match result {
        Ok(Flash::Done(m)) => WebNotice::Done(m),
        Ok(Flash::Failed(m)) => WebNotice::Failed(m),
        Err(e) => WebNotice::Failed(e.message),
        Ok(secret @ Flash::Secret { .. }) => {
            let mut user = user.clone();
            user.flash = Some(secret);
            return pages::page_at(ctx, user, to).await;
        }
    };
    if let Err(e) = ctx.sessions.notify(&user.secret, notice).await {
        tracing::warn!(error = %e, "web admin: cannot keep the message for the next page");
    }
    Redirect::to(to).into_response()
}

// --- sign-in and sign-out ---

async fn login_page(axum::extract::State(ctx): axum::extract::State<Arc<ApiContext>>, headers: HeaderMap) -> Response {
    // Already signed in: on to the start page.
    if let Some(secret) = cookie(&headers, SESSION_COOKIE)
        && let Ok(Some(_)) = ctx.sessions.touch(&secret).await
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
    let secret = match ctx.sessions.start(&account).await {
        Ok(secret) => secret,
        Err(e) => {
            tracing::warn!(error = %e, "web admin: cannot start a session");
            return login_form(&ctx, Some("Sign-in is unavailable; try again."), StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let mut response = Redirect::to("/admin").into_response();
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &secret, "/admin", None));
    h.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", "/admin", Some(0)));
    response
}

async fn logout(axum::extract::State(ctx): axum::extract::State<Arc<ApiContext>>, posted: Posted<Empty>) -> Response {
    if let Err(e) = ctx.sessions.end(&posted.user.secret).await {
        // The cookie is cleared below, but a copy of it would still work: say so.
        tracing::error!(error = %e, user = %posted.user.account.address, "web admin: cannot end a session");
        return pages::error_page(StatusCode::SERVICE_UNAVAILABLE, "Signing out failed; try again.");
    }
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

    #[tokio::test]
    async fn sessions_end_on_sign_out_and_keep_only_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn tern_store::Store> =
            Arc::new(tern_store::embedded::EmbeddedStore::open(dir.path(), 8).unwrap());
        let sessions = Sessions::new(Arc::clone(&store));
        let user = |id, password: &str| Account { id, password_hash: password.into(), ..Default::default() };
        let secret = sessions.start(&user(7, "h7")).await.unwrap();
        assert!(store.web_session_get(&secret).await.unwrap().is_none(), "the cookie itself is not kept");
        let kept = store.web_session_get(&hash(&secret)).await.unwrap().unwrap();
        assert!(!kept.password.contains("h7") && kept.expires > kept.created);
        let Touched { account, password, csrf, flash } = sessions.touch(&secret).await.unwrap().unwrap();
        assert_eq!((account, password), (7, hash("h7")), "the password hash is kept hashed");
        assert!(flash.is_none() && csrf.len() >= 40 && csrf != secret);
        sessions.notify(&secret, WebNotice::Done("x".into())).await.unwrap();
        assert!(matches!(sessions.touch(&secret).await.unwrap().unwrap().flash, Some(Flash::Done(_))));
        assert!(sessions.touch(&secret).await.unwrap().unwrap().flash.is_none(), "a message is shown once");
        sessions.end(&secret).await.unwrap();
        assert!(sessions.touch(&secret).await.unwrap().is_none());
        assert!(sessions.touch("made-up").await.unwrap().is_none());
        let a = sessions.start(&user(1, "old")).await.unwrap();
        let b = sessions.start(&user(1, "old")).await.unwrap();
        let c = sessions.start(&user(2, "h2")).await.unwrap();
        sessions.end_all_of(&user(1, "new"), &b).await.unwrap();
        assert!(sessions.touch(&a).await.unwrap().is_none() && sessions.touch(&c).await.unwrap().is_some());
        let b_now = sessions.touch(&b).await.unwrap().map(|t| t.password);
        assert_eq!(b_now, Some(hash("new")), "the changer's session goes on");
        // An ended session (here: idle too long) is refused and removed.
        let mut idle = store.web_session_get(&hash(&c)).await.unwrap().unwrap();
        idle.expires = tern_store::now_unix() - 1;
        store.web_session_put(idle).await.unwrap();
        assert!(sessions.touch(&c).await.unwrap().is_none());
        assert!(store.web_session_get(&hash(&c)).await.unwrap().is_none());
        // An account has a bounded number of sessions: the oldest go (within one second, any
        // of those), never the new one.
        for _ in 0..MAX_SESSIONS_PER_ACCOUNT + 3 {
            let newest = sessions.start(&user(3, "h3")).await.unwrap();
            assert!(sessions.touch(&newest).await.unwrap().is_some());
        }
        assert_eq!(store.web_sessions_of(3).await.unwrap().len(), MAX_SESSIONS_PER_ACCOUNT);
        store.shutdown().await.unwrap();
    }

    #[test]
    fn expiry_is_the_earlier_of_idle_and_lifetime() {
        assert_eq!(expiry(0, 0), IDLE);
        assert_eq!(expiry(0, LIFETIME - 60), LIFETIME);
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
