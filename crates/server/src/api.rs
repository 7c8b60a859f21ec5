//! The REST API under `/api/v1` (issue 17): JSON over the `http` listener, authenticated by
//! tokens made with `tern token create NAME [--scope read|admin]` and sent as
//! `Authorization: Bearer <token>`. A `read` token may look at everything and change nothing;
//! an `admin` token may do everything. Errors are JSON `{"error": {"code", "message"}}` with a
//! 4xx for anything the client can fix, naming the field at fault.
//!
//! The handlers call the same directory and store operations as the CLI's admin socket.

use crate::activity::{ActivityEntry, MetricHistory, MinuteRates};
use crate::admin::AdminContext;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use tern_directory::DirectoryError;
use tern_store::{ApiScope, ApiToken, StoreError};

/// Prefix of every token, so that one pasted in the wrong place is recognisable.
const TOKEN_PREFIX: &str = "tern_";

/// 32 random bytes, base64url: API token secrets, web session cookies and CSRF tokens.
pub(crate) fn random_secret() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A new token's secret: the prefix and 32 random bytes (base64url).
pub fn new_token_secret() -> String {
    format!("{TOKEN_PREFIX}{}", random_secret())
}

/// What is stored of a secret.
pub fn token_hash(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// Token names: what `tern token` and the API print; letters, digits, `-`, `_`, `.`.
pub fn valid_token_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// An API error: status, a stable code and a message.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tern\""));
        }
        response
    }
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> ApiError {
        match e {
            DirectoryError::Address(_) | DirectoryError::Invalid(_) | DirectoryError::UnknownDomain(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
            }
            DirectoryError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "exists", e.to_string()),
            DirectoryError::NotFound(_) => ApiError::not_found(e.to_string()),
            DirectoryError::DomainInUse { .. } => ApiError::new(StatusCode::CONFLICT, "in_use", e.to_string()),
            DirectoryError::Store(e) => e.into(),
            DirectoryError::Password(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "password hashing failed")
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} does not exist")),
            StoreError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the store cannot be reached; try again")
            }
            e => {
                tracing::error!(error = %e, "API: store error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "store error")
            }
        }
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// What the REST API and the web admin work on: the admin socket's context (directory, store,
/// delivery) and what only a running server has.
pub struct ApiContext {
    pub admin: AdminContext,
    pub config: Arc<tern_config::Config>,
    /// The counters' last hour (the dashboard's rates).
    pub history: Arc<MetricHistory>,
    /// The counters themselves (the dashboard's last minute ends now).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub started: std::time::Instant,
    /// Every listener's addresses, set once all are bound.
    pub listeners: Arc<std::sync::OnceLock<std::collections::BTreeMap<String, Vec<String>>>>,
    /// The web admin's signed-in sessions.
    pub sessions: crate::web::Sessions,
    /// The bytes of mail in all mailboxes when last added up (see [`MAIL_BYTES_FOR`]).
    pub mail_bytes: tokio::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

/// How long a sum of every mailbox's size is shown before it is made again: it reads every
/// user's mailbox list, and each open dashboard asks every 10 s.
pub const MAIL_BYTES_FOR: std::time::Duration = std::time::Duration::from_secs(60);

impl ApiContext {
    /// Bytes of mail in all mailboxes, at most [`MAIL_BYTES_FOR`] old (one sum at a time).
    async fn mail_bytes(&self, users: &[tern_store::Account]) -> ApiResult<u64> {
        let mut last = self.mail_bytes.lock().await;
        if let Some((at, bytes)) = *last
            && at.elapsed() < MAIL_BYTES_FOR
        {
            return Ok(bytes);
        }
        let store = self.directory.store();
        let mut bytes = 0;
        for a in users {
            bytes += store.mailbox_list(a.id).await?.iter().map(|m| m.size).sum::<u64>();
        }
        *last = Some((std::time::Instant::now(), bytes));
        Ok(bytes)
    }
}

impl std::ops::Deref for ApiContext {
    type Target = AdminContext;
    fn deref(&self) -> &AdminContext {
        &self.admin
    }
}

/// The caller, as its token says.
pub struct Caller {
    pub token: String,
    pub scope: ApiScope,
}

impl Caller {
    fn admin(&self) -> ApiResult<()> {
        match self.scope {
            ApiScope::Admin => Ok(()),
            ApiScope::Read => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("token {} may only read (scope read)", self.token),
            )),
        }
    }
}

impl FromRequestParts<Arc<ApiContext>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<ApiContext>) -> Result<Caller, ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        // Failed tokens are slowed and banned per address, as mail logins are.
        let client = parts.extensions.get::<crate::http::ClientAddr>().map(|c| c.0.ip());
        if let (Some(guard), Some(ip)) = (&ctx.auth_guard, client)
            && let tern_guard::AuthVerdict::Banned(left) = guard.check(ip)
        {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "banned",
                format!("too many failed attempts from this address; try again in {} s", left.as_secs().max(1)),
            ));
        }
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized("send Authorization: Bearer <token> (tern token create)"));
        };
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be Bearer <token>"))?;
        let hash = token_hash(secret);
        let tokens = ctx.directory.store().api_token_list().await?;
        // Compared as hashes: equal-length hex, so the comparison's time tells nothing useful.
        match tokens.into_iter().find(|t| constant_time_eq(t.hash.as_bytes(), hash.as_bytes())) {
            Some(t) => Ok(Caller { token: t.name, scope: t.scope }),
            None => {
                tracing::info!(client = ?client, "API: unknown token refused");
                match (&ctx.auth_guard, client) {
                    (Some(guard), Some(ip)) => tokio::time::sleep(guard.failed(ip, "api")).await,
                    _ => metrics::counter!("tern_auth_failures_total", "service" => "api").increment(1),
                }
                Err(unauthorized("unknown token"))
            }
        }
    }
}

/// Whether two secrets (or their hashes) are equal, in a time that does not depend on where
/// they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JSON body, or a 400 that says what is wrong with it and in which field.
fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })
}

fn json<T: Serialize>(status: StatusCode, value: T) -> Response {
    (status, axum::Json(value)).into_response()
}

// --- resources ---

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct StatusView {
    pub version: &'static str,
    pub hostname: String,
    pub uptime_seconds: u64,
    /// Each service's bound addresses.
    pub listeners: std::collections::BTreeMap<String, Vec<String>>,
    pub store_healthy: bool,
    pub queue_messages: u64,
    pub queue_oldest_seconds: Option<i64>,
    pub domains: usize,
    pub users: usize,
    /// Messages and recipients per minute over the last hour (oldest first; a minute before
    /// the server started is zeros).
    pub per_minute: Vec<MinuteRates>,
    /// Refusals in the last hour by reason (`message: spam`, `recipient: unknown`,
    /// `connection: banned`, `failed login: imap`, ...).
    pub refused_last_hour: Vec<(String, f64)>,
    /// Bytes of mail in all mailboxes (added up at most a minute ago).
    pub mail_bytes: u64,
    /// The data directory's file system.
    pub disk_free_bytes: Option<u64>,
    pub disk_size_bytes: Option<u64>,
}

pub(crate) async fn status_view(ctx: &ApiContext) -> ApiResult<StatusView> {
    let store = ctx.directory.store();
    let stats = store.queue_stats().await?;
    let now = tern_store::now_unix();
    let users = ctx.directory.user_list().await?;
    let mail_bytes = ctx.mail_bytes(&users).await?;
    let dir = ctx.data_dir.clone();
    let disk = tokio::task::spawn_blocking(move || crate::disk_space(&dir)).await.ok().and_then(Result::ok);
    Ok(StatusView {
        version: env!("CARGO_PKG_VERSION"),
        hostname: ctx.hostname.clone(),
        uptime_seconds: ctx.started.elapsed().as_secs(),
        listeners: ctx.listeners.get().cloned().unwrap_or_default(),
        store_healthy: store.is_healthy(),
        queue_messages: stats.messages as u64,
        queue_oldest_seconds: stats.oldest.map(|t| (now - t).max(0)),
        domains: ctx.directory.domain_list().await?.len(),
        users: users.len(),
        per_minute: ctx.history.per_minute(60, ctx.metrics.as_ref().map(|m| m.render()).as_deref()),
        refused_last_hour: ctx.history.refused_last_hour(),
        mail_bytes,
        disk_free_bytes: disk.map(|d| d.0),
        disk_size_bytes: disk.map(|d| d.1),
    })
}

#[utoipa::path(get, path = "/api/v1/status", summary = "Version, uptime, listeners, store health, queue, message rates", responses((status = 200, body = StatusView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn status(State(ctx): State<Arc<ApiContext>>, _caller: Caller) -> ApiResult<Response> {
    Ok(json(StatusCode::OK, status_view(&ctx).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DomainView {
    name: String,
    catch_all: Option<String>,
    created: i64,
    dkim_selectors: Vec<String>,
}

pub(crate) fn domain_view(d: tern_store::Domain) -> DomainView {
    DomainView {
        dkim_selectors: d.dkim.iter().map(|k| k.selector.clone()).collect(),
        name: d.name,
        catch_all: d.catch_all,
        created: d.created,
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    name: String,
    #[serde(default)]
    catch_all: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/domains", summary = "Every local domain", responses((status = 200, body = [DomainView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn domains(State(ctx): State<Arc<ApiContext>>, _caller: Caller) -> ApiResult<Response> {
    let list: Vec<DomainView> = ctx.directory.domain_list().await?.into_iter().map(domain_view).collect();
    Ok(json(StatusCode::OK, list))
}

#[utoipa::path(post, path = "/api/v1/domains", summary = "Add a domain (admin)", request_body = NewDomain, responses((status = 201, body = DomainView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn domain_create(State(ctx): State<Arc<ApiContext>>, caller: Caller, bytes: Bytes) -> ApiResult<Response> {
    caller.admin()?;
    let new: NewDomain = body(&bytes)?;
    let d = ctx.directory.domain_add(&new.name, new.catch_all.as_deref()).await?;
    tracing::info!(token = %caller.token, domain = %d.name, "API: domain added");
    Ok(json(StatusCode::CREATED, domain_view(d)))
}

#[utoipa::path(get, path = "/api/v1/domains/{name}", summary = "One domain", params(("name" = String, Path)), responses((status = 200, body = DomainView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn domain_get(
    State(ctx): State<Arc<ApiContext>>,
    _caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let d = ctx.directory.domain_get(&name).await?.ok_or_else(|| ApiError::not_found(format!("domain {name}")))?;
    Ok(json(StatusCode::OK, domain_view(d)))
}

#[utoipa::path(delete, path = "/api/v1/domains/{name}", summary = "Remove a domain without users or aliases (admin)", params(("name" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn domain_delete(
    State(ctx): State<Arc<ApiContext>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    ctx.directory.domain_remove(&name).await?;
    tracing::info!(token = %caller.token, domain = %name.escape_debug(), "API: domain removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct UserView {
    pub email: String,
    pub shared: bool,
    /// Logins refused; mail still received.
    pub disabled: bool,
    /// May sign in to the web admin as an administrator.
    pub admin: bool,
    pub quota_bytes: Option<u64>,
    pub used_bytes: u64,
    pub messages: u64,
    pub created: i64,
    pub app_passwords: Vec<AppPasswordView>,
}

/// An app password as listed (its secret is shown once, when made).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AppPasswordView {
    pub name: String,
    pub created: i64,
}

pub(crate) async fn user_view(ctx: &AdminContext, a: tern_store::Account) -> ApiResult<UserView> {
    let (mut messages, mut used) = (0u64, 0u64);
    for m in ctx.directory.store().mailbox_list(a.id).await? {
        messages += u64::from(m.total);
        used += m.size;
    }
    Ok(UserView {
        email: a.address,
        shared: a.shared,
        disabled: a.disabled,
        admin: a.admin,
        quota_bytes: a.quota_bytes,
        used_bytes: used,
        messages,
        created: a.created,
        app_passwords: a
            .app_passwords
            .into_iter()
            .map(|p| AppPasswordView { name: p.name, created: p.created })
            .collect(),
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    email: String,
    /// Generated (and returned once) when left out.
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    quota_bytes: Option<u64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UserChange {
    #[serde(default)]
    password: Option<String>,
    /// `null` removes the quota; absent leaves it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    quota_bytes: Option<Option<u64>>,
    /// `true` refuses every login (mail is still received).
    #[serde(default)]
    disabled: Option<bool>,
    /// `true` makes the user an administrator of the web admin.
    #[serde(default)]
    admin: Option<bool>,
}

/// A field that was sent: `null` is `Some(None)` (absent stays `None` by `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

#[utoipa::path(get, path = "/api/v1/users", summary = "Every user", responses((status = 200, body = [UserView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn users(State(ctx): State<Arc<ApiContext>>, _caller: Caller) -> ApiResult<Response> {
    let mut out = Vec::new();
    for a in ctx.directory.user_list().await? {
        out.push(user_view(&ctx, a).await?);
    }
    Ok(json(StatusCode::OK, out))
}

#[utoipa::path(post, path = "/api/v1/users", summary = "Add a user; a generated password is returned once as `password` (admin)", request_body = NewUser, responses((status = 201, body = UserView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn user_create(State(ctx): State<Arc<ApiContext>>, caller: Caller, bytes: Bytes) -> ApiResult<Response> {
    caller.admin()?;
    let new: NewUser = body(&bytes)?;
    if new.password.as_deref() == Some("") {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "password: must not be empty"));
    }
    let (account, generated) = ctx.directory.user_add(&new.email, new.password.as_deref()).await?;
    if new.quota_bytes.is_some() {
        ctx.directory.user_set_quota(&account.address, new.quota_bytes).await?;
    }
    tracing::info!(token = %caller.token, user = %account.address, "API: user added");
    let address = account.address.clone();
    let account = ctx.directory.user_get(&address).await?.unwrap_or(account);
    let mut view = serde_json::to_value(user_view(&ctx, account).await?)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    if let (Some(p), Some(obj)) = (generated, view.as_object_mut()) {
        obj.insert("password".into(), serde_json::Value::String(p));
    }
    Ok(json(StatusCode::CREATED, view))
}

#[utoipa::path(get, path = "/api/v1/users/{email}", summary = "One user", params(("email" = String, Path)), responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn user_get(
    State(ctx): State<Arc<ApiContext>>,
    _caller: Caller,
    Path(email): Path<String>,
) -> ApiResult<Response> {
    let a = ctx.directory.user_get(&email).await?.ok_or_else(|| ApiError::not_found(format!("user {email}")))?;
    Ok(json(StatusCode::OK, user_view(&ctx, a).await?))
}

#[utoipa::path(patch, path = "/api/v1/users/{email}", summary = "Change a password, quota, disabled or admin (admin)", params(("email" = String, Path)), request_body = UserChange, responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn user_update(
    State(ctx): State<Arc<ApiContext>>,
    caller: Caller,
    Path(email): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.admin()?;
    let change: UserChange = body(&bytes)?;
    let a = ctx.directory.user_get(&email).await?.ok_or_else(|| ApiError::not_found(format!("user {email}")))?;
    if let Some(p) = &change.password {
        if p.is_empty() {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "password: must not be empty"));
        }
        ctx.directory.user_set_password(&a.address, Some(p)).await?;
    }
    if let Some(q) = change.quota_bytes {
        ctx.directory.user_set_quota(&a.address, q).await?;
    }
    if let Some(d) = change.disabled {
        ctx.directory.user_set_disabled(&a.address, d).await?;
    }
    if let Some(admin) = change.admin {
        ctx.directory.user_set_admin(&a.address, admin).await?;
    }
    tracing::info!(token = %caller.token, user = %a.address, "API: user changed");
    let a = ctx.directory.user_get(&a.address).await?.ok_or_else(|| ApiError::not_found(format!("user {email}")))?;
    Ok(json(StatusCode::OK, user_view(&ctx, a).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/{email}", summary = "Remove a user with all its mail (admin)", params(("email" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn user_delete(
    State(ctx): State<Arc<ApiContext>>,
    caller: Caller,
    Path(email): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    ctx.directory.user_remove(&email).await?;
    tracing::info!(token = %caller.token, user = %email.escape_debug(), "API: user removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAlias {
    address: String,
    targets: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/aliases", summary = "Every alias", responses((status = 200, body = [AliasDoc]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn aliases(State(ctx): State<Arc<ApiContext>>, _caller: Caller) -> ApiResult<Response> {
    Ok(json(StatusCode::OK, ctx.directory.alias_list().await?))
}

#[utoipa::path(post, path = "/api/v1/aliases", summary = "Add an alias or targets to one (admin)", request_body = NewAlias, responses((status = 201, body = AliasDoc), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn alias_create(State(ctx): State<Arc<ApiContext>>, caller: Caller, bytes: Bytes) -> ApiResult<Response> {
    caller.admin()?;
    let new: NewAlias = body(&bytes)?;
    if new.targets.is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "targets: at least one address"));
    }
    let alias = ctx.directory.alias_add(&new.address, &new.targets).await?;
    tracing::info!(token = %caller.token, alias = %alias.address, "API: alias added");
    Ok(json(StatusCode::CREATED, alias))
}

#[utoipa::path(delete, path = "/api/v1/aliases/{address}", summary = "Remove an alias (admin)", params(("address" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn alias_delete(
    State(ctx): State<Arc<ApiContext>>,
    caller: Caller,
    Path(address): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    ctx.directory.alias_remove(&address, None).await?;
    tracing::info!(token = %caller.token, alias = %address.escape_debug(), "API: alias removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Makes a queued message due now and wakes delivery; how many recipients became due.
pub(crate) async fn queue_retry_id(ctx: &ApiContext, id: tern_store::QueueId) -> ApiResult<usize> {
    let n = ctx.directory.store().queue_retry(Some(id), tern_store::now_unix()).await?;
    if n == 0 {
        return Err(ApiError::not_found(format!("queue entry {id}")));
    }
    if let Some(delivery) = &ctx.delivery {
        delivery.wake();
    }
    Ok(n)
}

/// Drops a queued message (no bounce).
pub(crate) async fn queue_delete_id(ctx: &ApiContext, id: tern_store::QueueId) -> ApiResult<()> {
    if !ctx.directory.store().queue_remove(id).await? {
        return Err(ApiError::not_found(format!("queue entry {id}")));
    }
    Ok(())
}

/// Deletes a held message.
pub(crate) async fn quarantine_delete_id(ctx: &ApiContext, id: u64) -> ApiResult<()> {
    if !ctx.directory.store().quarantine_remove(id).await? {
        return Err(ApiError::not_found(format!("quarantine entry {id}")));
    }
    Ok(())
}

fn queue_id(raw: &str) -> ApiResult<tern_store::QueueId> {
    raw.parse().map_err(|_| ApiError::bad_request(format!("id: {raw:?} is not a queue id (a number)")))
}

#[utoipa::path(get, path = "/api/v1/queue", summary = "The outbound queue", responses((status = 200, body = [QueueEntryDoc]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn queue(State(ctx): State<Arc<ApiContext>>, _caller: Caller) -> ApiResult<Response> {
    Ok(json(StatusCode::OK, ctx.directory.store().queue_list().await?))
}

#[utoipa::path(get, path = "/api/v1/queue/{id}", summary = "One queued message", params(("id" = String, Path)), responses((status = 200, body = QueueEntryDoc), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn queue_get(State(ctx): State<Arc<ApiContext>>, _caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let id = queue_id(&id)?;
    let entry =
        ctx.directory.store().queue_get(id).await?.ok_or_else(|| ApiError::not_found(format!("queue entry {id}")))?;
    Ok(json(StatusCode::OK, entry))
}

#[utoipa::path(post, path = "/api/v1/queue/{id}/retry", summary = "Make a queued message due now (admin)", params(("id" = String, Path)), responses((status = 202), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn queue_retry(
    State(ctx): State<Arc<ApiContext>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    let id = queue_id(&id)?;
    let n = queue_retry_id(&ctx, id).await?;
    tracing::info!(token = %caller.token, id, "API: queue entry retried");
    Ok(json(StatusCode::ACCEPTED, json!({ "retried": n })))
}

#[utoipa::path(delete, path = "/api/v1/queue/{id}", summary = "Drop a queued message without a bounce (admin)", params(("id" = String, Path)), responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn queue_delete(
    State(ctx): State<Arc<ApiContext>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    let id = queue_id(&id)?;
    queue_delete_id(&ctx, id).await?;
    tracing::info!(token = %caller.token, id, "API: queue entry removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAppPassword {
    /// What it is for (`phone`, `laptop`): 1-64 printable characters.
    name: String,
}

/// A new app password: its secret, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
struct NewAppPasswordView {
    name: String,
    password: String,
}

#[utoipa::path(post, path = "/api/v1/users/{email}/app-passwords", summary = "Make an app password; its secret is returned once (admin)", params(("email" = String, Path)), request_body = NewAppPassword, responses((status = 201, body = NewAppPasswordView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn app_password_create(
    State(ctx): State<Arc<ApiContext>>,
    caller: Caller,
    Path(email): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.admin()?;
    let new: NewAppPassword = body(&bytes)?;
    let (record, secret) = ctx.directory.app_password_add(&email, &new.name).await?;
    tracing::info!(token = %caller.token, user = %email.escape_debug(), name = %record.name.escape_debug(), "API: app password made");
    Ok(json(StatusCode::CREATED, NewAppPasswordView { name: record.name, password: secret }))
}

#[utoipa::path(delete, path = "/api/v1/users/{email}/app-passwords/{name}", summary = "Remove an app password (admin)", params(("email" = String, Path), ("name" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn app_password_delete(
    State(ctx): State<Arc<ApiContext>>,
    caller: Caller,
    Path((email, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.admin()?;
    ctx.directory.app_password_remove(&email, &name).await?;
    tracing::info!(token = %caller.token, user = %email.escape_debug(), name = %name.escape_debug(), "API: app password removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What a domain should publish and what is published.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DomainDnsView {
    /// The records to publish, required ones first.
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<crate::admin::DnsRecord>,
    /// What the configured resolver sees, item by item, with the fix.
    pub checks: crate::dns_check::Report,
}

pub(crate) async fn domain_dns_view(ctx: &ApiContext, name: &str) -> ApiResult<DomainDnsView> {
    let d = ctx.directory.domain_get(name).await?.ok_or_else(|| ApiError::not_found(format!("domain {name}")))?;
    let expected = crate::admin::expected_dns(&d, &ctx.hostname, &ctx.mta_sts);
    let checks = match tern_dns::Dns::from_config(&ctx.config.dns) {
        Err(e) => {
            let mut r = crate::dns_check::Report::default();
            r.add(crate::dns_check::Status::Warn, "resolver", format!("no DNS resolver: {e}"), None);
            r
        }
        Ok(dns) => {
            // A resolver that does not answer must not hold the page for long.
            match tokio::time::timeout(
                std::time::Duration::from_secs(20),
                crate::dns_check::check_domain(&ctx.config, &dns, &expected),
            )
            .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    let mut r = crate::dns_check::Report::default();
                    r.add(crate::dns_check::Status::Warn, "checks", format!("could not check: {e:#}"), None);
                    r
                }
                Err(_) => {
                    let mut r = crate::dns_check::Report::default();
                    r.add(crate::dns_check::Status::Warn, "checks", "the checks took over 20 s (resolver?)", None);
                    r
                }
            }
        }
    };
    Ok(DomainDnsView { records: expected.records, checks })
}

#[utoipa::path(get, path = "/api/v1/domains/{name}/dns", summary = "The DNS records a domain needs and whether each is published", params(("name" = String, Path)), responses((status = 200, body = DomainDnsView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn domain_dns(
    State(ctx): State<Arc<ApiContext>>,
    _caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(json(StatusCode::OK, domain_dns_view(&ctx, &name).await?))
}

/// Makes new DKIM keys (Ed25519 and RSA) for a domain, replacing the ones in use (their
/// selectors are dated, so the old DNS records do not clash with the new).
pub(crate) async fn dkim_rotate(ctx: &ApiContext, name: &str) -> ApiResult<tern_store::Domain> {
    let d = ctx.directory.domain_get(name).await?.ok_or_else(|| ApiError::not_found(format!("domain {name}")))?;
    let keys = crate::admin::new_dkim_keys().await.map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("key generation failed: {e}"))
    })?;
    Ok(ctx.directory.domain_set_dkim(&d.name, keys).await?)
}

#[utoipa::path(post, path = "/api/v1/domains/{name}/dkim", summary = "Generate (or rotate) the domain's DKIM keys; publish the new records (admin)", params(("name" = String, Path)), responses((status = 200, body = DomainView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn domain_dkim(
    State(ctx): State<Arc<ApiContext>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    let d = dkim_rotate(&ctx, &name).await?;
    tracing::info!(token = %caller.token, domain = %d.name, "API: DKIM keys made");
    Ok(json(StatusCode::OK, domain_view(d)))
}

fn quarantine_id(raw: &str) -> ApiResult<u64> {
    raw.parse().map_err(|_| ApiError::bad_request(format!("id: {raw:?} is not a quarantine id (a number)")))
}

#[utoipa::path(get, path = "/api/v1/quarantine", summary = "Messages held in the quarantine, with the verdict that held each", responses((status = 200, body = [QuarantineDoc]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn quarantine(State(ctx): State<Arc<ApiContext>>, _caller: Caller) -> ApiResult<Response> {
    Ok(json(StatusCode::OK, ctx.directory.store().quarantine_list().await?))
}

/// A held message and its header section.
#[derive(Serialize)]
struct QuarantinedView {
    #[serde(flatten)]
    entry: tern_store::QuarantineEntry,
    headers: String,
}

/// The header section of a raw message (lossy UTF-8, at most 64 KiB).
pub(crate) fn header_section(raw: &[u8]) -> String {
    let end = tern_mime::text::header_len(raw).min(64 * 1024);
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

#[utoipa::path(get, path = "/api/v1/quarantine/{id}", summary = "One held message: why, envelope, verdict and header", params(("id" = String, Path)), responses((status = 200, body = QuarantineDoc), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn quarantine_get(
    State(ctx): State<Arc<ApiContext>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = quarantine_id(&id)?;
    let (entry, raw) = ctx
        .directory
        .store()
        .quarantine_get(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("quarantine entry {id}")))?;
    Ok(json(StatusCode::OK, QuarantinedView { entry, headers: header_section(&raw) }))
}

/// Delivers a held message to its recipients (once).
pub(crate) async fn quarantine_release_id(ctx: &ApiContext, id: u64) -> ApiResult<tern_store::DeliveryReceipt> {
    let receipt = tern_pipeline::release_quarantined(ctx.directory.store(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("quarantine entry {id}")))?;
    if receipt.queued.is_some()
        && let Some(delivery) = &ctx.delivery
    {
        delivery.wake();
    }
    Ok(receipt)
}

#[utoipa::path(post, path = "/api/v1/quarantine/{id}/release", summary = "Deliver a held message to its recipients (admin)", params(("id" = String, Path)), responses((status = 200), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn quarantine_release(
    State(ctx): State<Arc<ApiContext>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    let id = quarantine_id(&id)?;
    let receipt = quarantine_release_id(&ctx, id).await?;
    tracing::info!(token = %caller.token, id, "API: quarantined message released");
    Ok(json(
        StatusCode::OK,
        json!({ "local_copies": receipt.copies.len(), "queued": receipt.queued.map(|q| q.to_string()) }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/quarantine/{id}", summary = "Delete a held message (admin)", params(("id" = String, Path)), responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn quarantine_delete(
    State(ctx): State<Arc<ApiContext>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    let id = quarantine_id(&id)?;
    quarantine_delete_id(&ctx, id).await?;
    tracing::info!(token = %caller.token, id, "API: quarantined message deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LogQuery {
    /// Only events containing this (an address, a queue id, a message id), ignoring case.
    #[serde(default)]
    #[param(nullable = false)]
    q: Option<String>,
    /// At most this many (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000, nullable = false)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/logs", summary = "Recent deliveries and refusals, newest first", params(LogQuery), responses((status = 200, body = [ActivityEntry]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn logs(
    _caller: Caller,
    query: Result<axum::extract::Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let axum::extract::Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit: {limit} is not between 1 and 1000")));
    }
    Ok(json(StatusCode::OK, crate::activity::Activity::global().search(query.q.as_deref(), limit)))
}

/// The error body every failure has (documentation of [`ApiError`]'s JSON).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// Stable: unauthorized, forbidden, banned, bad_request, invalid, exists, in_use,
    /// not_found, unavailable, internal.
    code: String,
    message: String,
}

/// An alias as the API returns it (`tern_store::Alias`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct AliasDoc {
    address: String,
    targets: Vec<String>,
}

/// A held message as the API returns it (`tern_store::QuarantineEntry`): id, reason,
/// envelope with its verdict, recipients, size, when it expires; one message adds `headers`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct QuarantineDoc {
    id: u64,
    reason: String,
    #[schema(value_type = Object)]
    envelope: (),
    #[schema(value_type = Vec<Object>)]
    recipients: (),
}

/// A queued message as the API returns it (`tern_store::QueueEntry`): the message (id,
/// envelope, content hash, when queued) and each recipient with its state and attempts.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct QueueEntryDoc {
    #[schema(value_type = Object)]
    message: (),
    #[schema(value_type = Vec<Object>)]
    recipients: (),
}

/// Adds the error answers any operation may give to every operation that does not list them:
/// bad JSON or parameters (400), no or a wrong token (401), a read token changing something
/// (403), a thing that does not exist (404), a value the server refuses (422), a banned address
/// (429), the store out of reach (503).
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let answers = [
            ("400", "The request is malformed (JSON, a parameter); the message names the field"),
            ("401", "No token, or one that is not known"),
            ("403", "The token's scope does not allow this"),
            ("404", "No such resource"),
            ("422", "A value the server refuses (an address in no local domain, ...)"),
            ("429", "Too many failed attempts from this address"),
            ("503", "The store cannot be reached; try again"),
        ];
        for item in openapi.paths.paths.values_mut() {
            for op in
                [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete, &mut item.put].into_iter().flatten()
            {
                for (code, description) in answers {
                    if op.responses.responses.contains_key(code) {
                        continue;
                    }
                    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
                    let response = ResponseBuilder::new().description(description).content("application/json", content);
                    op.responses.responses.insert(code.to_string(), response.build().into());
                }
            }
        }
    }
}

struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("tern token create")).build(),
            ),
        );
    }
}

/// The API's OpenAPI 3 description, made from the handlers' annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Tern REST API", description = "Administration of a Tern mail server"),
    paths(status, domains, domain_create, domain_get, domain_delete, domain_dns, domain_dkim, users, user_create,
          user_get, user_update, user_delete, app_password_create, app_password_delete, aliases, alias_create,
          alias_delete, queue, queue_get, queue_retry, queue_delete, quarantine, quarantine_get,
          quarantine_release, quarantine_delete, logs),
    modifiers(&BearerToken, &CommonErrors)
)]
pub struct ApiDoc;

async fn openapi() -> Response {
    use utoipa::OpenApi;
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    axum::Json(doc).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such API resource")
}

/// `/api/v1/...`.
pub fn router(ctx: Arc<ApiContext>) -> Router {
    let v1 = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/status", get(status))
        .route("/domains", get(domains).post(domain_create))
        .route("/domains/{name}", get(domain_get).delete(domain_delete))
        .route("/domains/{name}/dns", get(domain_dns))
        .route("/domains/{name}/dkim", post(domain_dkim))
        .route("/users", get(users).post(user_create))
        .route("/users/{email}", get(user_get).patch(user_update).delete(user_delete))
        .route("/users/{email}/app-passwords", post(app_password_create))
        .route("/users/{email}/app-passwords/{name}", axum::routing::delete(app_password_delete))
        .route("/aliases", get(aliases).post(alias_create))
        .route("/aliases/{address}", axum::routing::delete(alias_delete))
        .route("/queue", get(queue))
        .route("/queue/{id}", get(queue_get).delete(queue_delete))
        .route("/queue/{id}/retry", post(queue_retry))
        .route("/quarantine", get(quarantine))
        .route("/quarantine/{id}", get(quarantine_get).delete(quarantine_delete))
        .route("/quarantine/{id}/release", post(quarantine_release))
        .route("/logs", get(logs))
        .fallback(not_found)
        .with_state(ctx);
    Router::new().nest("/api/v1", v1)
}

/// Makes a token (`tern token create`): the stored record and the secret, shown once.
pub fn make_token(name: &str, scope: ApiScope) -> Result<(ApiToken, String), String> {
    if !valid_token_name(name) {
        return Err(format!("{name:?}: a token name is 1-64 letters, digits, '-', '_' or '.'"));
    }
    let secret = new_token_secret();
    Ok((ApiToken { name: name.to_string(), scope, hash: token_hash(&secret), created: tern_store::now_unix() }, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_stored_hashed() {
        let (record, secret) = make_token("ci-1", ApiScope::Read).unwrap();
        assert!(secret.starts_with("tern_") && secret.len() > 40);
        assert_eq!(record.hash, token_hash(&secret));
        assert_ne!(record.hash, secret);
        let (_, other) = make_token("ci-1", ApiScope::Read).unwrap();
        assert_ne!(secret, other);
        assert!(make_token("", ApiScope::Admin).is_err());
        assert!(make_token("a b", ApiScope::Admin).is_err());
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"a", b"ab")
        );
    }
}
