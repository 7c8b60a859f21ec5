//! The REST API under `/api/v1` (issue 17): JSON over the `http` listener, authenticated by
//! tokens made with `tern token create NAME [--scope read|admin]` and sent as
//! `Authorization: Bearer <token>`. A `read` token may look at everything and change nothing;
//! an `admin` token may do everything. Errors are JSON `{"error": {"code", "message"}}` with a
//! 4xx for anything the client can fix, naming the field at fault.
//!
//! The handlers call the same directory and store operations as the CLI's admin socket.

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

/// A new token's secret: the prefix and 32 random bytes (base64url).
pub fn new_token_secret() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
    format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
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
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
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

type ApiResult<T> = Result<T, ApiError>;

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

impl FromRequestParts<Arc<AdminContext>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<AdminContext>) -> Result<Caller, ApiError> {
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
struct StatusView {
    version: &'static str,
    hostname: String,
    store_healthy: bool,
    queue_messages: u64,
    queue_oldest_seconds: Option<i64>,
    domains: usize,
    users: usize,
}

#[utoipa::path(get, path = "/api/v1/status", summary = "Version, store health, queue and counts", responses((status = 200, body = StatusView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn status(State(ctx): State<Arc<AdminContext>>, _caller: Caller) -> ApiResult<Response> {
    let store = ctx.directory.store();
    let stats = store.queue_stats().await?;
    let now = tern_store::now_unix();
    Ok(json(
        StatusCode::OK,
        StatusView {
            version: env!("CARGO_PKG_VERSION"),
            hostname: ctx.hostname.clone(),
            store_healthy: store.is_healthy(),
            queue_messages: stats.messages as u64,
            queue_oldest_seconds: stats.oldest.map(|t| (now - t).max(0)),
            domains: ctx.directory.domain_list().await?.len(),
            users: ctx.directory.user_list().await?.len(),
        },
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
struct DomainView {
    name: String,
    catch_all: Option<String>,
    created: i64,
    dkim_selectors: Vec<String>,
}

fn domain_view(d: tern_store::Domain) -> DomainView {
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
async fn domains(State(ctx): State<Arc<AdminContext>>, _caller: Caller) -> ApiResult<Response> {
    let list: Vec<DomainView> = ctx.directory.domain_list().await?.into_iter().map(domain_view).collect();
    Ok(json(StatusCode::OK, list))
}

#[utoipa::path(post, path = "/api/v1/domains", summary = "Add a domain (admin)", request_body = NewDomain, responses((status = 201, body = DomainView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn domain_create(State(ctx): State<Arc<AdminContext>>, caller: Caller, bytes: Bytes) -> ApiResult<Response> {
    caller.admin()?;
    let new: NewDomain = body(&bytes)?;
    let d = ctx.directory.domain_add(&new.name, new.catch_all.as_deref()).await?;
    tracing::info!(token = %caller.token, domain = %d.name, "API: domain added");
    Ok(json(StatusCode::CREATED, domain_view(d)))
}

#[utoipa::path(get, path = "/api/v1/domains/{name}", summary = "One domain", params(("name" = String, Path)), responses((status = 200, body = DomainView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn domain_get(
    State(ctx): State<Arc<AdminContext>>,
    _caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let d = ctx.directory.domain_get(&name).await?.ok_or_else(|| ApiError::not_found(format!("domain {name}")))?;
    Ok(json(StatusCode::OK, domain_view(d)))
}

#[utoipa::path(delete, path = "/api/v1/domains/{name}", summary = "Remove a domain without users or aliases (admin)", params(("name" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn domain_delete(
    State(ctx): State<Arc<AdminContext>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    ctx.directory.domain_remove(&name).await?;
    tracing::info!(token = %caller.token, domain = %name.escape_debug(), "API: domain removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
struct UserView {
    email: String,
    shared: bool,
    quota_bytes: Option<u64>,
    used_bytes: u64,
    messages: u64,
    created: i64,
}

async fn user_view(ctx: &AdminContext, a: tern_store::Account) -> ApiResult<UserView> {
    let (mut messages, mut used) = (0u64, 0u64);
    for m in ctx.directory.store().mailbox_list(a.id).await? {
        messages += u64::from(m.total);
        used += m.size;
    }
    Ok(UserView {
        email: a.address,
        shared: a.shared,
        quota_bytes: a.quota_bytes,
        used_bytes: used,
        messages,
        created: a.created,
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
}

/// A field that was sent: `null` is `Some(None)` (absent stays `None` by `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

#[utoipa::path(get, path = "/api/v1/users", summary = "Every user", responses((status = 200, body = [UserView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn users(State(ctx): State<Arc<AdminContext>>, _caller: Caller) -> ApiResult<Response> {
    let mut out = Vec::new();
    for a in ctx.directory.user_list().await? {
        out.push(user_view(&ctx, a).await?);
    }
    Ok(json(StatusCode::OK, out))
}

#[utoipa::path(post, path = "/api/v1/users", summary = "Add a user; a generated password is returned once as `password` (admin)", request_body = NewUser, responses((status = 201, body = UserView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn user_create(State(ctx): State<Arc<AdminContext>>, caller: Caller, bytes: Bytes) -> ApiResult<Response> {
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
    State(ctx): State<Arc<AdminContext>>,
    _caller: Caller,
    Path(email): Path<String>,
) -> ApiResult<Response> {
    let a = ctx.directory.user_get(&email).await?.ok_or_else(|| ApiError::not_found(format!("user {email}")))?;
    Ok(json(StatusCode::OK, user_view(&ctx, a).await?))
}

#[utoipa::path(patch, path = "/api/v1/users/{email}", summary = "Change a password or quota (admin)", params(("email" = String, Path)), request_body = UserChange, responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn user_update(
    State(ctx): State<Arc<AdminContext>>,
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
    tracing::info!(token = %caller.token, user = %a.address, "API: user changed");
    let a = ctx.directory.user_get(&a.address).await?.ok_or_else(|| ApiError::not_found(format!("user {email}")))?;
    Ok(json(StatusCode::OK, user_view(&ctx, a).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/{email}", summary = "Remove a user with all its mail (admin)", params(("email" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn user_delete(
    State(ctx): State<Arc<AdminContext>>,
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
async fn aliases(State(ctx): State<Arc<AdminContext>>, _caller: Caller) -> ApiResult<Response> {
    Ok(json(StatusCode::OK, ctx.directory.alias_list().await?))
}

#[utoipa::path(post, path = "/api/v1/aliases", summary = "Add an alias or targets to one (admin)", request_body = NewAlias, responses((status = 201, body = AliasDoc), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn alias_create(State(ctx): State<Arc<AdminContext>>, caller: Caller, bytes: Bytes) -> ApiResult<Response> {
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
    State(ctx): State<Arc<AdminContext>>,
    caller: Caller,
    Path(address): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    ctx.directory.alias_remove(&address, None).await?;
    tracing::info!(token = %caller.token, alias = %address.escape_debug(), "API: alias removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn queue_id(raw: &str) -> ApiResult<tern_store::QueueId> {
    raw.parse().map_err(|_| ApiError::bad_request(format!("id: {raw:?} is not a queue id (a number)")))
}

#[utoipa::path(get, path = "/api/v1/queue", summary = "The outbound queue", responses((status = 200, body = [QueueEntryDoc]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn queue(State(ctx): State<Arc<AdminContext>>, _caller: Caller) -> ApiResult<Response> {
    Ok(json(StatusCode::OK, ctx.directory.store().queue_list().await?))
}

#[utoipa::path(get, path = "/api/v1/queue/{id}", summary = "One queued message", params(("id" = String, Path)), responses((status = 200, body = QueueEntryDoc), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn queue_get(
    State(ctx): State<Arc<AdminContext>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = queue_id(&id)?;
    let entry =
        ctx.directory.store().queue_get(id).await?.ok_or_else(|| ApiError::not_found(format!("queue entry {id}")))?;
    Ok(json(StatusCode::OK, entry))
}

#[utoipa::path(post, path = "/api/v1/queue/{id}/retry", summary = "Make a queued message due now (admin)", params(("id" = String, Path)), responses((status = 202), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn queue_retry(
    State(ctx): State<Arc<AdminContext>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    let id = queue_id(&id)?;
    let n = ctx.directory.store().queue_retry(Some(id), tern_store::now_unix()).await?;
    if n == 0 {
        return Err(ApiError::not_found(format!("queue entry {id}")));
    }
    if let Some(delivery) = &ctx.delivery {
        delivery.wake();
    }
    tracing::info!(token = %caller.token, id, "API: queue entry retried");
    Ok(json(StatusCode::ACCEPTED, json!({ "retried": n })))
}

#[utoipa::path(delete, path = "/api/v1/queue/{id}", summary = "Drop a queued message without a bounce (admin)", params(("id" = String, Path)), responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
async fn queue_delete(
    State(ctx): State<Arc<AdminContext>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    let id = queue_id(&id)?;
    if !ctx.directory.store().queue_remove(id).await? {
        return Err(ApiError::not_found(format!("queue entry {id}")));
    }
    tracing::info!(token = %caller.token, id, "API: queue entry removed");
    Ok(StatusCode::NO_CONTENT.into_response())
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
    paths(status, domains, domain_create, domain_get, domain_delete, users, user_create, user_get, user_update,
          user_delete, aliases, alias_create, alias_delete, queue, queue_get, queue_retry, queue_delete),
    modifiers(&BearerToken)
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
pub fn router(ctx: Arc<AdminContext>) -> Router {
    let v1 = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/status", get(status))
        .route("/domains", get(domains).post(domain_create))
        .route("/domains/{name}", get(domain_get).delete(domain_delete))
        .route("/users", get(users).post(user_create))
        .route("/users/{email}", get(user_get).patch(user_update).delete(user_delete))
        .route("/aliases", get(aliases).post(alias_create))
        .route("/aliases/{address}", axum::routing::delete(alias_delete))
        .route("/queue", get(queue))
        .route("/queue/{id}", get(queue_get).delete(queue_delete))
        .route("/queue/{id}/retry", post(queue_retry))
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
