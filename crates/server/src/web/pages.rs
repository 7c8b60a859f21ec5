//! The web admin's pages and the actions of their forms. Each action calls the same
//! directory, store and API operations as the REST API, then sends the browser back to the
//! page with what happened (post/redirect/get).

use super::{AdminUser, Empty, Flash, Posted, SignedIn, after};
use crate::api::{ApiContext, ApiError};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use std::sync::Arc;

type Ctx = State<Arc<ApiContext>>;

/// A path segment with everything but unreserved characters and `@` percent-encoded.
fn seg(s: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &percent_encoding::AsciiSet =
        &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'@');
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn date(t: i64) -> String {
    crate::admin::format_date(t)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

fn ago(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

fn csrf(user: &SignedIn) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.csrf); }
}

/// A button that posts the CSRF token to `action` (delete, retry, ...).
fn action_button(user: &SignedIn, action: &str, label: &str, danger: bool) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(user))
            button.danger[danger] type="submit" { (label) }
        }
    }
}

fn flash(f: &Option<Flash>) -> Markup {
    html! {
        @match f {
            Some(Flash::Done(m)) => p.notice.done role="status" { (m) },
            Some(Flash::Failed(m)) => p.notice.failed role="alert" { (m) },
            Some(Flash::Secret { what, secret }) => div.notice.secret role="status" {
                p { (what) " (shown this once; copy it now):" }
                p { code #secret { (secret) } }
            },
            None => {}
        }
    }
}

fn layout(title: &str, user: Option<&SignedIn>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Tern" }
                link rel="stylesheet" href="/admin/assets/tern.css";
                script src="/admin/assets/tern.js" defer {}
            }
            body {
                header {
                    a.brand href="/admin" { "Tern" }
                    @if let Some(u) = user {
                        nav aria-label="Main" {
                            ul {
                                @if u.admin() {
                                    li { a href="/admin/dashboard" { "Dashboard" } }
                                    li { a href="/admin/domains" { "Domains" } }
                                    li { a href="/admin/users" { "Users" } }
                                    li { a href="/admin/aliases" { "Aliases" } }
                                    li { a href="/admin/queue" { "Queue" } }
                                    li { a href="/admin/quarantine" { "Quarantine" } }
                                    li { a href="/admin/logs" { "Logs" } }
                                }
                                li { a href="/admin/account" { "My account" } }
                            }
                        }
                        form.signout method="post" action="/admin/logout" {
                            (csrf(u))
                            span.who { (u.account.address) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(u) = user { (flash(&u.flash)) }
                    (body)
                }
            }
        }
    }
}

fn page(title: &str, user: &SignedIn, body: Markup) -> Response {
    axum::response::Html(layout(title, Some(user), body).into_string()).into_response()
}

pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let body = html! { p.notice.failed role="alert" { (message) } p { a href="/admin" { "Back" } } };
    (status, axum::response::Html(layout(status.canonical_reason().unwrap_or("Error"), None, body).into_string()))
        .into_response()
}

fn api_error(e: ApiError) -> Response {
    error_page(e.status, &e.message)
}

pub(crate) fn login(hostname: &str, token: &str, error: Option<&str>) -> Markup {
    let body = html! {
        p { "Sign in to " (hostname) " with your e-mail address and password." }
        @if let Some(e) = error { p.notice.failed role="alert" { (e) } }
        form.stack method="post" action="/admin/login" {
            input type="hidden" name="csrf" value=(token);
            label for="email" { "E-mail address" }
            input #email type="email" name="email" autocomplete="username" required autofocus;
            label for="password" { "Password" }
            input #password type="password" name="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
    };
    layout("Sign in", None, body)
}

/// The page at `to` for `user` (with the message it carries), as the answer to the form
/// that made a secret: the pages a secret goes back to, else a page with the secret alone.
pub(crate) async fn page_at(ctx: &Arc<ApiContext>, user: SignedIn, to: &str) -> Response {
    let state = State(Arc::clone(ctx));
    if to == "/admin/account" {
        return account(state, user).await;
    }
    if user.admin() {
        if to == "/admin/users" {
            return users(state, AdminUser(user)).await;
        }
        if let Some(email) = to.strip_prefix("/admin/users/")
            && let Ok(email) = percent_encoding::percent_decode_str(email).decode_utf8()
        {
            return user_page(state, AdminUser(user), Path(email.into_owned())).await;
        }
    }
    let body = html! { p { a href=(to) { "Continue" } } };
    page("Done", &user, body)
}

/// The refusal for a user who is not an administrator (`None` for one who is).
fn not_admin(user: &SignedIn) -> Option<Response> {
    (!user.admin()).then(|| error_page(StatusCode::FORBIDDEN, "This is for administrators."))
}

// --- dashboard ---

pub(crate) async fn dashboard(State(ctx): Ctx, AdminUser(user): AdminUser) -> Response {
    let status = match crate::api::status_view(&ctx).await {
        Ok(s) => s,
        Err(e) => return api_error(e),
    };
    let last = status.per_minute.last().cloned().unwrap_or_default();
    let hour = |f: fn(&crate::activity::MinuteRates) -> f64| status.per_minute.iter().map(f).sum::<f64>();
    let body = html! {
        section.cards aria-label="Now" {
            div.card { h2 { "Received" } p.big #received-minute { (last.received) } p { "last minute; " span #received-hour { (hour(|m| m.received)) } " in the hour" } }
            div.card { h2 { "Delivered out" } p.big #delivered-minute { (last.delivered) } p { "last minute; " span #delivered-hour { (hour(|m| m.delivered)) } " in the hour" } }
            div.card { h2 { "Queue" } p.big #queue-depth { (status.queue_messages) } p { "messages; oldest " span #queue-oldest { (status.queue_oldest_seconds.map(ago).unwrap_or_else(|| "-".into())) } } }
            div.card { h2 { "Storage" } p.big #mail-bytes { (bytes(status.mail_bytes)) } p { "of mail; disk " span #disk-free { (status.disk_free_bytes.map(bytes).unwrap_or_else(|| "?".into())) } " free" } }
        }
        section aria-labelledby="rates" {
            h2 #rates { "Messages per minute, last hour" }
            div #chart.chart data-source="/admin/dashboard.json" role="img" aria-label="Messages received and delivered per minute" {}
            p.legend { span.key.received { "received" } " " span.key.delivered { "delivered" } " " span.key.deferred { "deferred" } " " span.key.bounced { "bounced" } }
        }
        section aria-labelledby="refused" {
            h2 #refused { "Refused in the last hour, by reason" }
            table #refused-table {
                thead { tr { th { "Reason" } th.num { "Count" } } }
                tbody {
                    @for (reason, n) in &status.refused_last_hour { tr { td { (reason) } td.num { (n) } } }
                    @if status.refused_last_hour.is_empty() { tr { td colspan="2" { "nothing refused" } } }
                }
            }
        }
        section aria-labelledby="server" {
            h2 #server { "Server" }
            dl {
                dt { "Version" } dd { (status.version) }
                dt { "Host name" } dd { (status.hostname) }
                dt { "Up" } dd #uptime { (ago(status.uptime_seconds as i64)) }
                dt { "Store" } dd #store-health { @if status.store_healthy { "healthy" } @else { strong { "NOT writable" } } }
                dt { "Domains, users" } dd { (status.domains) ", " (status.users) }
                @for (service, addrs) in &status.listeners { dt { (service) } dd { (addrs.join(", ")) } }
            }
        }
    };
    page("Dashboard", &user, body)
}

pub(crate) async fn dashboard_json(State(ctx): Ctx, AdminUser(_user): AdminUser) -> Response {
    match crate::api::status_view(&ctx).await {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => e.into_response(),
    }
}

// --- domains ---

pub(crate) async fn domains(State(ctx): Ctx, AdminUser(user): AdminUser) -> Response {
    let list = match ctx.directory.domain_list().await {
        Ok(l) => l,
        Err(e) => return api_error(e.into()),
    };
    let body = html! {
        table {
            thead { tr { th { "Domain" } th { "Catch-all" } th { "DKIM selectors" } th { "Added" } } }
            tbody {
                @for d in &list {
                    tr {
                        td { a href={"/admin/domains/" (seg(&d.name))} { (d.name) } }
                        td { (d.catch_all.as_deref().unwrap_or("-")) }
                        td { @if d.dkim.is_empty() { strong { "none" } } @else { (d.dkim.iter().map(|k| k.selector.as_str()).collect::<Vec<_>>().join(", ")) } }
                        td { (date(d.created)) }
                    }
                }
                @if list.is_empty() { tr { td colspan="4" { "No domains yet." } } }
            }
        }
        h2 { "Add a domain" }
        form.stack method="post" action="/admin/domains" {
            (csrf(&user))
            label for="name" { "Domain name" }
            input #name name="name" required placeholder="example.org";
            label for="catch_all" { "Catch-all address (optional)" }
            input #catch_all name="catch_all" type="email";
            button type="submit" { "Add domain" }
        }
    };
    page("Domains", &user, body)
}

#[derive(Deserialize)]
pub(crate) struct DomainForm {
    name: String,
    #[serde(default)]
    catch_all: String,
}

pub(crate) async fn domain_add(State(ctx): Ctx, p: Posted<DomainForm>) -> Response {
    if let Some(r) = not_admin(&p.user) {
        return r;
    }
    let catch_all = Some(p.form.catch_all.trim()).filter(|c| !c.is_empty());
    match ctx.directory.domain_add(p.form.name.trim(), catch_all).await {
        Ok(d) => {
            tracing::info!(user = %p.user.account.address, domain = %d.name, "web admin: domain added");
            let to = format!("/admin/domains/{}", seg(&d.name));
            after(&ctx, &p.user, &to, Ok(Flash::Done(format!("Added {}. Publish its DNS records below.", d.name))))
                .await
        }
        Err(e) => after(&ctx, &p.user, "/admin/domains", Err(e.into())).await,
    }
}

pub(crate) async fn domain_page(State(ctx): Ctx, AdminUser(user): AdminUser, Path(name): Path<String>) -> Response {
    let domain = match ctx.directory.domain_get(&name).await {
        Ok(Some(d)) => d,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, &format!("No domain {name}.")),
        Err(e) => return api_error(e.into()),
    };
    let dns = match crate::api::domain_dns_view(&ctx, &domain.name).await {
        Ok(v) => v,
        Err(e) => return api_error(e),
    };
    let base = format!("/admin/domains/{}", seg(&domain.name));
    let body = html! {
        p { "Catch-all: " (domain.catch_all.as_deref().unwrap_or("none")) ". Added " (date(domain.created)) "." }
        h2 { "DNS records to publish" }
        table.records {
            thead { tr { th { "Name" } th { "Type" } th { "Value" } th { "Needed" } } }
            tbody {
                @for r in &dns.records {
                    tr { td { code { (r.name) "." } } td { (r.rtype) } td.value { code { (r.value) } } td { @if r.required { "required" } @else { "recommended" } } }
                }
            }
        }
        h2 { "What is published now" }
        table.checks #checks {
            thead { tr { th { "Result" } th { "Item" } th { "Detail" } th { "Fix" } } }
            tbody {
                @for i in &dns.checks.items {
                    tr class={"status-" (i.status.word())} {
                        td { (i.status.word()) } td { (i.what) } td { (i.detail) } td { @if let Some(f) = &i.fix { code { (f) } } }
                    }
                }
            }
        }
        h2 { "DKIM" }
        p { @if domain.dkim.is_empty() { "No signing keys yet: mail from this domain is not signed." } @else { "Signing with selectors " (domain.dkim.iter().map(|k| k.selector.as_str()).collect::<Vec<_>>().join(" and ")) ". Rotating makes new keys at once: publish their records (above, after the change) before the old ones are removed." } }
        (action_button(&user, &format!("{base}/dkim"), if domain.dkim.is_empty() { "Generate DKIM keys" } else { "Rotate DKIM keys" }, false))
        h2 { "Remove" }
        p { "A domain with users or aliases cannot be removed." }
        (action_button(&user, &format!("{base}/delete"), "Remove domain", true))
    };
    page(&format!("Domain {}", domain.name), &user, body)
}

pub(crate) async fn domain_dkim(State(ctx): Ctx, Path(name): Path<String>, p: Posted<Empty>) -> Response {
    if let Some(r) = not_admin(&p.user) {
        return r;
    }
    let to = format!("/admin/domains/{}", seg(&name));
    let result = crate::api::dkim_rotate(&ctx, &name).await.map(|d| {
        tracing::info!(user = %p.user.account.address, domain = %d.name, "web admin: DKIM keys made");
        Flash::Done(format!(
            "New DKIM keys for {} ({}): publish their TXT records.",
            d.name,
            d.dkim.iter().map(|k| k.selector.as_str()).collect::<Vec<_>>().join(", ")
        ))
    });
    after(&ctx, &p.user, &to, result).await
}

pub(crate) async fn domain_delete(State(ctx): Ctx, Path(name): Path<String>, p: Posted<Empty>) -> Response {
    if let Some(r) = not_admin(&p.user) {
        return r;
    }
    match ctx.directory.domain_remove(&name).await {
        Ok(()) => {
            tracing::info!(user = %p.user.account.address, domain = %name.escape_debug(), "web admin: domain removed");
            after(&ctx, &p.user, "/admin/domains", Ok(Flash::Done(format!("Removed {name}.")))).await
        }
        Err(e) => after(&ctx, &p.user, &format!("/admin/domains/{}", seg(&name)), Err(e.into())).await,
    }
}

// --- users ---

pub(crate) async fn users(State(ctx): Ctx, AdminUser(user): AdminUser) -> Response {
    let mut views = Vec::new();
    match ctx.directory.user_list().await {
        Ok(list) => {
            for a in list {
                match crate::api::user_view(&ctx, a).await {
                    Ok(v) => views.push(v),
                    Err(e) => return api_error(e),
                }
            }
        }
        Err(e) => return api_error(e.into()),
    }
    let body = html! {
        table #users {
            thead { tr { th { "User" } th.num { "Messages" } th.num { "Used" } th.num { "Quota" } th { "" } } }
            tbody {
                @for u in &views {
                    tr {
                        td { a href={"/admin/users/" (seg(&u.email))} { (u.email) } }
                        td.num { (u.messages) }
                        td.num { (bytes(u.used_bytes)) }
                        td.num { (u.quota_bytes.map(bytes).unwrap_or_else(|| "none".into())) }
                        td {
                            @if u.admin { span.tag { "admin" } " " }
                            @if u.disabled { span.tag.warn { "disabled" } " " }
                            @if u.shared { span.tag { "shared" } }
                        }
                    }
                }
                @if views.is_empty() { tr { td colspan="5" { "No users yet." } } }
            }
        }
        h2 { "Add a user" }
        form.stack method="post" action="/admin/users" {
            (csrf(&user))
            label for="email" { "E-mail address" }
            input #email name="email" type="email" required;
            label for="password" { "Password (leave empty to generate one)" }
            input #password name="password" type="password" autocomplete="new-password";
            label for="quota_mb" { "Quota in MiB (empty: none)" }
            input #quota_mb name="quota_mb" type="number" min="1";
            label.check { input name="admin" type="checkbox" value="on"; " Administrator" }
            button type="submit" { "Add user" }
        }
    };
    page("Users", &user, body)
}

#[derive(Deserialize)]
pub(crate) struct NewUserForm {
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    quota_mb: String,
    #[serde(default)]
    admin: Option<String>,
}

/// A quota in MiB from a form: empty is none.
fn quota(raw: &str) -> Result<Option<u64>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<u64>()
        .ok()
        .filter(|mb| *mb > 0)
        .and_then(|mb| mb.checked_mul(1024 * 1024))
        .map(Some)
        .ok_or_else(|| ApiError::bad_request(format!("quota: {raw:?} is not a number of MiB")))
}

pub(crate) async fn user_add(State(ctx): Ctx, p: Posted<NewUserForm>) -> Response {
    if let Some(r) = not_admin(&p.user) {
        return r;
    }
    let f = &p.form;
    let result = async {
        let quota = quota(&f.quota_mb)?;
        let password = Some(f.password.as_str()).filter(|p| !p.is_empty());
        let (account, generated) = ctx.directory.user_add(f.email.trim(), password).await?;
        if quota.is_some() {
            ctx.directory.user_set_quota(&account.address, quota).await?;
        }
        if f.admin.is_some() {
            ctx.directory.user_set_admin(&account.address, true).await?;
        }
        tracing::info!(user = %p.user.account.address, added = %account.address, "web admin: user added");
        Ok::<_, ApiError>(match generated {
            Some(secret) => Flash::Secret { what: format!("Added {}; its password", account.address), secret },
            None => Flash::Done(format!("Added {}.", account.address)),
        })
    }
    .await;
    after(&ctx, &p.user, "/admin/users", result).await
}

pub(crate) async fn user_page(State(ctx): Ctx, AdminUser(user): AdminUser, Path(email): Path<String>) -> Response {
    let account = match ctx.directory.user_get(&email).await {
        Ok(Some(a)) => a,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, &format!("No user {email}.")),
        Err(e) => return api_error(e.into()),
    };
    let view = match crate::api::user_view(&ctx, account).await {
        Ok(v) => v,
        Err(e) => return api_error(e),
    };
    let base = format!("/admin/users/{}", seg(&view.email));
    let body = html! {
        dl {
            dt { "Messages" } dd { (view.messages) }
            dt { "Used" } dd { (bytes(view.used_bytes)) " of " (view.quota_bytes.map(bytes).unwrap_or_else(|| "no quota".into())) }
            dt { "Added" } dd { (date(view.created)) }
            dt { "State" } dd { @if view.disabled { "disabled: logins refused, mail still received" } @else { "active" } @if view.admin { ", administrator" } @if view.shared { ", shared account" } }
        }
        @if !view.shared {
            h2 { "Reset the password" }
            form.stack method="post" action=(base) {
                (csrf(&user))
                input type="hidden" name="action" value="password";
                label for="password" { "New password (leave empty to generate one)" }
                input #password name="password" type="password" autocomplete="new-password";
                button type="submit" { "Set password" }
            }
        }
        h2 { "Quota" }
        form.stack method="post" action=(base) {
            (csrf(&user))
            input type="hidden" name="action" value="quota";
            label for="quota_mb" { "Quota in MiB (empty: none)" }
            input #quota_mb name="quota_mb" type="number" min="1" value=[view.quota_bytes.map(|q| q / (1024 * 1024))];
            button type="submit" { "Set quota" }
        }
        h2 { "Access" }
        form.inline method="post" action=(base) {
            (csrf(&user))
            input type="hidden" name="action" value=(if view.disabled { "enable" } else { "disable" });
            button type="submit" { @if view.disabled { "Enable logins" } @else { "Disable logins" } }
        }
        @if !view.shared {
            form.inline method="post" action=(base) {
                (csrf(&user))
                input type="hidden" name="action" value=(if view.admin { "unadmin" } else { "admin" });
                button type="submit" { @if view.admin { "Remove administrator" } @else { "Make administrator" } }
            }
            h2 { "App passwords" }
            (app_password_list(&user, &view, &format!("{base}/app-passwords")))
        }
        h2 { "Remove" }
        p { "Removes the user and all their mail." }
        (action_button(&user, &format!("{base}/delete"), "Remove user", true))
    };
    page(&format!("User {}", view.email), &user, body)
}

fn app_password_list(user: &SignedIn, view: &crate::api::UserView, base: &str) -> Markup {
    html! {
        p { "A separate password for each device or program, removable one by one. It works for IMAP, POP3, submission and ManageSieve (not with SCRAM)." }
        table.app-passwords {
            thead { tr { th { "Name" } th { "Made" } th { "" } } }
            tbody {
                @for a in &view.app_passwords {
                    tr { td { (a.name) } td { (date(a.created)) } td { (action_button(user, &format!("{base}/{}/delete", seg(&a.name)), "Remove", true)) } }
                }
                @if view.app_passwords.is_empty() { tr { td colspan="3" { "none" } } }
            }
        }
        form.stack method="post" action=(base) {
            (csrf(user))
            label for="app_name" { "New app password for" }
            input #app_name name="name" required maxlength="64" placeholder="phone";
            button type="submit" { "Make app password" }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct UserForm {
    action: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    quota_mb: String,
}

pub(crate) async fn user_update(State(ctx): Ctx, Path(email): Path<String>, p: Posted<UserForm>) -> Response {
    if let Some(r) = not_admin(&p.user) {
        return r;
    }
    let to = format!("/admin/users/{}", seg(&email));
    let dir = &ctx.directory;
    let result = async {
        let flash = match p.form.action.as_str() {
            "password" => {
                let password = Some(p.form.password.as_str()).filter(|p| !p.is_empty());
                match dir.user_set_password(&email, password).await? {
                    Some(secret) => Flash::Secret { what: format!("The new password of {email}"), secret },
                    None => Flash::Done("Password changed.".into()),
                }
            }
            "quota" => {
                dir.user_set_quota(&email, quota(&p.form.quota_mb)?).await?;
                Flash::Done("Quota set.".into())
            }
            "disable" | "enable" => {
                dir.user_set_disabled(&email, p.form.action == "disable").await?;
                Flash::Done(if p.form.action == "disable" { "Logins disabled." } else { "Logins enabled." }.into())
            }
            "admin" | "unadmin" => {
                if p.form.action == "unadmin" && email.eq_ignore_ascii_case(&p.user.account.address) {
                    return Err(ApiError::bad_request("you cannot remove your own administrator rights"));
                }
                dir.user_set_admin(&email, p.form.action == "admin").await?;
                Flash::Done("Done.".into())
            }
            other => return Err(ApiError::bad_request(format!("unknown action {other:?}"))),
        };
        tracing::info!(user = %p.user.account.address, changed = %email.escape_debug(), action = %p.form.action.escape_debug(), "web admin: user changed");
        Ok(flash)
    }
    .await;
    after(&ctx, &p.user, &to, result).await
}

pub(crate) async fn user_delete(State(ctx): Ctx, Path(email): Path<String>, p: Posted<Empty>) -> Response {
    if let Some(r) = not_admin(&p.user) {
        return r;
    }
    if email.eq_ignore_ascii_case(&p.user.account.address) {
        return after(
            &ctx,
            &p.user,
            &format!("/admin/users/{}", seg(&email)),
            Err(ApiError::bad_request("you cannot remove yourself")),
        )
        .await;
    }
    match ctx.directory.user_remove(&email).await {
        Ok(()) => {
            tracing::info!(user = %p.user.account.address, removed = %email.escape_debug(), "web admin: user removed");
            after(&ctx, &p.user, "/admin/users", Ok(Flash::Done(format!("Removed {email}.")))).await
        }
        Err(e) => after(&ctx, &p.user, "/admin/users", Err(e.into())).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct AppPasswordForm {
    name: String,
}

async fn make_app_password(ctx: &ApiContext, email: &str, name: &str) -> Result<Flash, ApiError> {
    let (record, secret) = ctx.directory.app_password_add(email, name.trim()).await?;
    tracing::info!(user = %email.escape_debug(), name = %record.name.escape_debug(), "web admin: app password made");
    Ok(Flash::Secret { what: format!("App password {:?}", record.name), secret })
}

async fn remove_app_password(ctx: &ApiContext, email: &str, name: &str) -> Result<Flash, ApiError> {
    ctx.directory.app_password_remove(email, name).await?;
    tracing::info!(user = %email.escape_debug(), name = %name.escape_debug(), "web admin: app password removed");
    Ok(Flash::Done(format!("Removed app password {name:?}.")))
}

pub(crate) async fn user_app_password_add(
    State(ctx): Ctx,
    Path(email): Path<String>,
    p: Posted<AppPasswordForm>,
) -> Response {
    if let Some(r) = not_admin(&p.user) {
        return r;
    }
    let result = make_app_password(&ctx, &email, &p.form.name).await;
    after(&ctx, &p.user, &format!("/admin/users/{}", seg(&email)), result).await
}

pub(crate) async fn user_app_password_delete(
    State(ctx): Ctx,
    Path((email, name)): Path<(String, String)>,
    p: Posted<Empty>,
) -> Response {
    if let Some(r) = not_admin(&p.user) {
        return r;
    }
    let result = remove_app_password(&ctx, &email, &name).await;
    after(&ctx, &p.user, &format!("/admin/users/{}", seg(&email)), result).await
}

// --- aliases ---

pub(crate) async fn aliases(State(ctx): Ctx, AdminUser(user): AdminUser) -> Response {
    let list = match ctx.directory.alias_list().await {
        Ok(l) => l,
        Err(e) => return api_error(e.into()),
    };
    let body = html! {
        table #aliases {
            thead { tr { th { "Alias" } th { "Delivers to" } th { "" } } }
            tbody {
                @for a in &list {
                    tr {
                        td { (a.address) }
                        td { (a.targets.join(", ")) }
                        td { (action_button(&user, &format!("/admin/aliases/{}/delete", seg(&a.address)), "Remove", true)) }
                    }
                }
                @if list.is_empty() { tr { td colspan="3" { "No aliases." } } }
            }
        }
        h2 { "Add an alias (or targets to one)" }
        form.stack method="post" action="/admin/aliases" {
            (csrf(&user))
            label for="address" { "Alias address" }
            input #address name="address" type="email" required;
            label for="targets" { "Delivers to (addresses, separated by commas)" }
            input #targets name="targets" required;
            button type="submit" { "Add alias" }
        }
    };
    page("Aliases", &user, body)
}

#[derive(Deserialize)]
pub(crate) struct AliasForm {
    address: String,
    targets: String,
}

pub(crate) async fn alias_add(State(ctx): Ctx, p: Posted<AliasForm>) -> Response {
    if let Some(r) = not_admin(&p.user) {
        return r;
    }
    let targets: Vec<String> =
        p.form.targets.split([',', ' ', '\n']).map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect();
    let result = if targets.is_empty() {
        Err(ApiError::bad_request("targets: at least one address"))
    } else {
        ctx.directory.alias_add(p.form.address.trim(), &targets).await.map_err(ApiError::from).map(|a| {
            tracing::info!(user = %p.user.account.address, alias = %a.address, "web admin: alias added");
            Flash::Done(format!("{} delivers to {}.", a.address, a.targets.join(", ")))
        })
    };
    after(&ctx, &p.user, "/admin/aliases", result).await
}

pub(crate) async fn alias_delete(State(ctx): Ctx, Path(address): Path<String>, p: Posted<Empty>) -> Response {
    if let Some(r) = not_admin(&p.user) {
        return r;
    }
    let result = ctx.directory.alias_remove(&address, None).await.map_err(ApiError::from).map(|()| {
        tracing::info!(user = %p.user.account.address, alias = %address.escape_debug(), "web admin: alias removed");
        Flash::Done(format!("Removed {address}."))
    });
    after(&ctx, &p.user, "/admin/aliases", result).await
}

// --- queue ---

#[derive(Deserialize)]
pub(crate) struct Search {
    #[serde(default)]
    q: String,
}

fn search_form(action: &str, q: &str, label: &str) -> Markup {
    html! {
        form.search method="get" action=(action) role="search" {
            label for="q" { (label) }
            input #q name="q" type="search" value=(q);
            button type="submit" { "Search" }
        }
    }
}

pub(crate) async fn queue(State(ctx): Ctx, AdminUser(user): AdminUser, Query(search): Query<Search>) -> Response {
    let list = match ctx.directory.store().queue_list().await {
        Ok(l) => l,
        Err(e) => return api_error(e.into()),
    };
    let q = search.q.trim().to_lowercase();
    let now = tern_store::now_unix();
    let shown: Vec<_> = list
        .iter()
        .filter(|e| {
            q.is_empty()
                || e.message.id.to_string() == q
                || e.message.envelope.mail_from.as_deref().unwrap_or("").to_lowercase().contains(&q)
                || e.recipients.iter().any(|r| r.address.to_lowercase().contains(&q))
        })
        .collect();
    let body = html! {
        (search_form("/admin/queue", &search.q, "Sender, recipient or queue number"))
        p { (shown.len()) " of " (list.len()) " queued messages." }
        table #queue {
            thead { tr { th { "Queue" } th { "From" } th { "Recipients" } th { "Queued" } th { "Next attempt" } th { "" } } }
            tbody {
                @for e in &shown {
                    tr {
                        td { (e.message.id) }
                        td { (e.message.envelope.mail_from.as_deref().unwrap_or("<>")) }
                        td {
                            ul.plain {
                                @for r in &e.recipients {
                                    li { (r.address) " — " (format!("{:?}", r.status).to_lowercase()) ", " (r.attempts) " attempts" @if let Some(res) = &r.last_result { ": " small { (res) } } }
                                }
                            }
                        }
                        td { (ago(now - e.message.created)) " ago" }
                        td { (e.next_attempt().map(|t| if t <= now { "due".to_string() } else { format!("in {}", ago(t - now)) }).unwrap_or_else(|| "-".into())) }
                        td {
                            (action_button(&user, &format!("/admin/queue/{}/retry", e.message.id), "Retry now", false))
                            (action_button(&user, &format!("/admin/queue/{}/delete", e.message.id), "Delete", true))
                        }
                    }
                }
                @if shown.is_empty() { tr { td colspan="6" { "Nothing queued." } } }
            }
        }
    };
    page("Queue", &user, body)
}

pub(crate) async fn queue_retry(State(ctx): Ctx, Path(id): Path<u64>, p: Posted<Empty>) -> Response {
    if let Some(r) = not_admin(&p.user) {
        return r;
    }
    let result = crate::api::queue_retry_id(&ctx, id).await.map(|_| {
        tracing::info!(user = %p.user.account.address, id, "web admin: queue entry retried");
        Flash::Done(format!("Queue entry {id} is due now."))
    });
    after(&ctx, &p.user, "/admin/queue", result).await
}

pub(crate) async fn queue_delete(State(ctx): Ctx, Path(id): Path<u64>, p: Posted<Empty>) -> Response {
    if let Some(r) = not_admin(&p.user) {
        return r;
    }
    let result = crate::api::queue_delete_id(&ctx, id).await.map(|()| {
        tracing::info!(user = %p.user.account.address, id, "web admin: queue entry removed");
        Flash::Done(format!("Queue entry {id} deleted (no bounce sent)."))
    });
    after(&ctx, &p.user, "/admin/queue", result).await
}

// --- quarantine ---

pub(crate) async fn quarantine(State(ctx): Ctx, AdminUser(user): AdminUser) -> Response {
    let list = match ctx.directory.store().quarantine_list().await {
        Ok(l) => l,
        Err(e) => return api_error(e.into()),
    };
    let body = html! {
        table #quarantine {
            thead { tr { th { "Id" } th { "Held" } th { "From" } th { "To" } th { "Why" } th.num { "Size" } } }
            tbody {
                @for q in &list {
                    tr {
                        td { a href={"/admin/quarantine/" (q.id)} { (q.id) } }
                        td { (date(q.created_at)) }
                        td { (q.envelope.mail_from.as_deref().unwrap_or("<>")) }
                        td { (q.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>().join(", ")) }
                        td { (q.reason) }
                        td.num { (bytes(q.size)) }
                    }
                }
                @if list.is_empty() { tr { td colspan="6" { "The quarantine is empty." } } }
            }
        }
    };
    page("Quarantine", &user, body)
}

pub(crate) async fn quarantine_item(State(ctx): Ctx, AdminUser(user): AdminUser, Path(id): Path<u64>) -> Response {
    let (q, raw) = match ctx.directory.store().quarantine_get(id).await {
        Ok(Some(x)) => x,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, &format!("No quarantine entry {id}.")),
        Err(e) => return api_error(e.into()),
    };
    let verdict = serde_json::to_string_pretty(&q.envelope).unwrap_or_default();
    let body = html! {
        dl {
            dt { "Why" } dd { (q.reason) }
            dt { "From" } dd { (q.envelope.mail_from.as_deref().unwrap_or("<>")) }
            dt { "To" } dd { (q.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>().join(", ")) }
            dt { "Client" } dd { (q.envelope.client_ip.as_deref().unwrap_or("?")) }
            dt { "Held" } dd { (date(q.created_at)) ", until " (date(q.expires_at)) }
            dt { "Size" } dd { (bytes(q.size)) }
        }
        (action_button(&user, &format!("/admin/quarantine/{id}/release"), "Release (deliver)", false))
        (action_button(&user, &format!("/admin/quarantine/{id}/delete"), "Delete", true))
        h2 { "Header" }
        pre.headers { (crate::api::header_section(&raw)) }
        details { summary { "Envelope and verdict" } pre { (verdict) } }
    };
    page(&format!("Quarantined message {id}"), &user, body)
}

pub(crate) async fn quarantine_release(State(ctx): Ctx, Path(id): Path<u64>, p: Posted<Empty>) -> Response {
    if let Some(r) = not_admin(&p.user) {
        return r;
    }
    let result = crate::api::quarantine_release_id(&ctx, id).await.map(|receipt| {
        tracing::info!(user = %p.user.account.address, id, "web admin: quarantined message released");
        Flash::Done(format!(
            "Released {id}: {} local copies{}.",
            receipt.copies.len(),
            receipt.queued.map(|q| format!(", queued as {q}")).unwrap_or_default()
        ))
    });
    after(&ctx, &p.user, "/admin/quarantine", result).await
}

pub(crate) async fn quarantine_delete(State(ctx): Ctx, Path(id): Path<u64>, p: Posted<Empty>) -> Response {
    if let Some(r) = not_admin(&p.user) {
        return r;
    }
    let result = crate::api::quarantine_delete_id(&ctx, id).await.map(|()| {
        tracing::info!(user = %p.user.account.address, id, "web admin: quarantined message deleted");
        Flash::Done(format!("Deleted {id}."))
    });
    after(&ctx, &p.user, "/admin/quarantine", result).await
}

// --- logs ---

pub(crate) async fn logs(AdminUser(user): AdminUser, Query(search): Query<Search>) -> Response {
    let entries = crate::activity::Activity::global().search(Some(&search.q), 300);
    let body = html! {
        (search_form("/admin/logs", &search.q, "Address, queue id or message id"))
        p { "The newest deliveries and refusals first (the last " (crate::activity::ACTIVITY_CAPACITY) " events are kept in memory; the full log is the server's own)." }
        table #logs {
            thead { tr { th { "Time" } th { "Where" } th { "What" } th { "Details" } } }
            tbody {
                @for e in &entries {
                    tr class={"level-" (e.level)} { td { (date(e.time)) } td { (e.source) } td { (e.message) } td.value { code { (e.fields) } } }
                }
                @if entries.is_empty() { tr { td colspan="4" { "Nothing found." } } }
            }
        }
    };
    page("Logs", &user, body)
}

// --- the signed-in user's own account ---

/// The vacation script the form writes, and reads back.
const VACATION_SCRIPT: &str = "tern-vacation";

fn sieve_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A quoted string at the start of `s` (RFC 5228 §2.4.2): its value and the rest.
fn unquote(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// Subject and text of a vacation script made by [`vacation_script`].
fn vacation_of(script: &str) -> Option<(String, String)> {
    let rest = &script[script.find(":subject")? + ":subject".len()..];
    let (subject, rest) = unquote(rest)?;
    let (text, _) = unquote(rest)?;
    Some((subject, text))
}

fn vacation_script(subject: &str, text: &str) -> String {
    format!(
        "# Made by the web admin's vacation form; edits here are replaced by the next change there.\r\n\
         require [\"vacation\"];\r\nvacation :days 1 :subject {} {};\r\n",
        sieve_string(subject),
        sieve_string(text)
    )
}

pub(crate) async fn account(State(ctx): Ctx, user: SignedIn) -> Response {
    let store = ctx.directory.store();
    let id = user.account.id;
    let view = match crate::api::user_view(&ctx, user.account.clone()).await {
        Ok(v) => v,
        Err(e) => return api_error(e),
    };
    let (scripts, active) = match (store.sieve_list(id).await, store.sieve_get(id, VACATION_SCRIPT).await) {
        (Ok(list), Ok(script)) => (list, script),
        (Err(e), _) | (_, Err(e)) => return api_error(e.into()),
    };
    let vacation_on = scripts.iter().any(|s| s.name == VACATION_SCRIPT && s.active);
    let other_active = scripts.iter().find(|s| s.active && s.name != VACATION_SCRIPT).map(|s| s.name.clone());
    let (subject, text) = active.as_deref().and_then(vacation_of).unwrap_or_default();
    let body = html! {
        h2 { "Storage" }
        p #quota { (bytes(view.used_bytes)) " used in " (view.messages) " messages" @if let Some(q) = view.quota_bytes { " of " (bytes(q)) " (" (view.used_bytes.saturating_mul(100) / q.max(1)) " %)" } @else { "; no quota" } "." }
        h2 { "Change your password" }
        form.stack method="post" action="/admin/account/password" {
            (csrf(&user))
            label for="current" { "Current password" }
            input #current name="current" type="password" autocomplete="current-password" required;
            label for="new" { "New password" }
            input #new name="new" type="password" autocomplete="new-password" required minlength="8";
            label for="again" { "New password again" }
            input #again name="again" type="password" autocomplete="new-password" required minlength="8";
            button type="submit" { "Change password" }
        }
        h2 { "App passwords" }
        (app_password_list(&user, &view, "/admin/account/app-passwords"))
        h2 { "Vacation reply" }
        @if let Some(other) = &other_active { p.notice { "Your Sieve script " (other) " is active; turning the vacation reply on replaces it until you turn it off." } }
        form.stack method="post" action="/admin/account/vacation" {
            (csrf(&user))
            label.check { input name="enabled" type="checkbox" value="on" checked[vacation_on]; " Answer mail while I am away (once a day per sender)" }
            label for="subject" { "Subject" }
            input #subject name="subject" value=(subject) maxlength="200";
            label for="text" { "Message" }
            textarea #text name="text" rows="6" maxlength="10000" { (text) }
            button type="submit" { "Save" }
        }
    };
    page("My account", &user, body)
}

#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    current: String,
    new: String,
    again: String,
}

pub(crate) async fn account_password(State(ctx): Ctx, p: Posted<PasswordForm>) -> Response {
    let me = p.user.account.address.clone();
    let result = async {
        if p.form.new != p.form.again {
            return Err(ApiError::bad_request("the new passwords differ"));
        }
        if p.form.new.chars().count() < 8 {
            return Err(ApiError::bad_request("the new password must have at least 8 characters"));
        }
        if ctx.directory.authenticate_account_password(&me, &p.form.current).await?.is_none() {
            return Err(ApiError::bad_request("the current password is wrong"));
        }
        ctx.directory.user_set_password(&me, Some(&p.form.new)).await?;
        // Other browsers signed in with the old password are signed out; this one goes on.
        if let Some(changed) = ctx.directory.store().account_get(p.user.account.id).await? {
            ctx.sessions.end_all_of(&changed, &p.user.secret).await?;
        }
        tracing::info!(user = %me, "web admin: own password changed");
        Ok(Flash::Done("Your password is changed; other sessions are signed out.".into()))
    }
    .await;
    after(&ctx, &p.user, "/admin/account", result).await
}

pub(crate) async fn account_app_password_add(State(ctx): Ctx, p: Posted<AppPasswordForm>) -> Response {
    let result = make_app_password(&ctx, &p.user.account.address, &p.form.name).await;
    after(&ctx, &p.user, "/admin/account", result).await
}

pub(crate) async fn account_app_password_delete(
    State(ctx): Ctx,
    Path(name): Path<String>,
    p: Posted<Empty>,
) -> Response {
    let result = remove_app_password(&ctx, &p.user.account.address, &name).await;
    after(&ctx, &p.user, "/admin/account", result).await
}

#[derive(Deserialize)]
pub(crate) struct VacationForm {
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    text: String,
}

pub(crate) async fn account_vacation(State(ctx): Ctx, p: Posted<VacationForm>) -> Response {
    let store = ctx.directory.store();
    let id = p.user.account.id;
    let result = async {
        let subject = p.form.subject.trim();
        if subject.len() > 200 || p.form.text.len() > 10_000 || subject.chars().any(char::is_control) {
            return Err(ApiError::bad_request("the subject (200) or the message (10,000 characters) is too long"));
        }
        let text = p.form.text.replace("\r\n", "\n").replace('\n', "\r\n");
        let subject = if subject.is_empty() { "Away" } else { subject };
        let script = vacation_script(subject, &text);
        tern_sieve::compile(&script).map_err(|e| ApiError::bad_request(format!("the reply cannot be made: {e}")))?;
        store.sieve_put(id, VACATION_SCRIPT, &script).await?;
        let on = p.form.enabled.is_some();
        let active = store.sieve_list(id).await?.into_iter().find(|s| s.active).map(|s| s.name);
        if on {
            store.sieve_activate(id, Some(VACATION_SCRIPT)).await?;
        } else if active.as_deref() == Some(VACATION_SCRIPT) {
            store.sieve_activate(id, None).await?;
        }
        tracing::info!(user = %p.user.account.address, on, "web admin: vacation reply saved");
        Ok(Flash::Done(if on { "Vacation reply on." } else { "Vacation reply off." }.into()))
    }
    .await;
    after(&ctx, &p.user, "/admin/account", result).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vacation_scripts_compile_and_read_back() {
        let s = vacation_script("Away \"until\" Monday", "Back soon.\r\nC:\\path \\\" quote");
        tern_sieve::compile(&s).unwrap();
        assert_eq!(
            vacation_of(&s),
            Some(("Away \"until\" Monday".to_string(), "Back soon.\r\nC:\\path \\\" quote".to_string()))
        );
        assert_eq!(vacation_of("require \"x\";"), None);
    }

    #[test]
    fn path_segments_and_quotas() {
        assert_eq!(seg("alice@example.org"), "alice@example.org");
        assert_eq!(seg("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(quota("").unwrap(), None);
        assert_eq!(quota(" 2 ").unwrap(), Some(2 * 1024 * 1024));
        assert!(quota("0").is_err() && quota("x").is_err() && quota("99999999999999999").is_err());
    }

    #[test]
    fn text_is_escaped() {
        let page = login("<script>alert(1)</script>", "t\"x", Some("<b>"));
        let html = page.into_string();
        assert!(!html.contains("<script>alert") && html.contains("&lt;script&gt;"));
        assert!(html.contains("value=\"t&quot;x\""));
        assert!(!html.contains("style="), "no inline styles (the CSP forbids them)");
    }
}
