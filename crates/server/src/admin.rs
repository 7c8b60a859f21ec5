//! Administration: the operations behind `tern domain|user|alias|mail ...`.
//!
//! While the server runs it owns the store (one process per database), so the CLI sends its
//! request over a Unix socket in the data directory (mode 0600) and the server executes it.
//! When no server runs, the CLI opens the store itself and calls [`execute`] directly: both
//! paths run the same code.
//!
//! Wire format: the request is one JSON line; the reply is one JSON line `{"ok":..,"len":N}`
//! followed by N bytes of output (text, or a raw message for `mail show`).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tern_directory::Directory;
use tern_store::INBOX;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

pub const SOCKET_NAME: &str = "admin.sock";
/// Requests are small except messages to learn or classify (base64); anything longer is
/// refused.
const MAX_REQUEST: usize = 64 * 1024 * 1024;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AdminRequest {
    Ping,
    DomainAdd {
        name: String,
        catch_all: Option<String>,
    },
    DomainCatchAll {
        name: String,
        target: Option<String>,
    },
    DomainList,
    DomainRemove {
        name: String,
    },
    UserAdd {
        email: String,
        password: Option<String>,
        /// A shared mailbox account (`support@`): no login, read through its ACLs.
        #[serde(default)]
        shared: bool,
    },
    UserPasswd {
        email: String,
        password: Option<String>,
    },
    UserList,
    UserRemove {
        email: String,
    },
    UserQuota {
        email: String,
        bytes: Option<u64>,
    },
    /// Refuses (or allows again) a user's logins; mail is still received.
    UserDisabled {
        email: String,
        disabled: bool,
    },
    /// Makes a user an administrator of the web admin, or no longer one.
    UserAdmin {
        email: String,
        admin: bool,
    },
    /// Makes an app password; the reply carries its secret, shown this once.
    AppPasswordAdd {
        email: String,
        name: String,
    },
    AppPasswordRemove {
        email: String,
        name: String,
    },
    AliasAdd {
        address: String,
        targets: Vec<String>,
    },
    AliasList,
    AliasRemove {
        address: String,
        target: Option<String>,
    },
    MailList {
        email: String,
        mailbox: Option<String>,
    },
    MailShow {
        email: String,
        mailbox: String,
        uid: u32,
    },
    QueueList,
    /// `id`: the message's id (`queued as ...`), or the queue's number for it.
    QueueShow {
        id: String,
    },
    /// One entry, or all (`id: None`).
    QueueRetry {
        id: Option<String>,
    },
    QueueRemove {
        id: String,
    },
    DkimGenerate {
        domain: String,
    },
    Dns {
        domain: String,
    },
    /// The records of `Dns` as JSON ([`ExpectedDns`]), for `tern doctor`.
    DnsExpected {
        domain: String,
    },
    /// `tern setup DOMAIN`: the domain, an admin account (postmaster@ and abuse@ aliases to
    /// it), DKIM keys, each made only when missing, then the DNS records. Safe to repeat.
    Setup {
        domain: String,
        /// The admin's address (else `admin@DOMAIN`).
        admin: Option<String>,
        /// The admin's password (else one is generated and printed, once).
        password: Option<String>,
    },
    /// What the spam models have learnt: the global one, or one user's.
    SpamStatus {
        email: Option<String>,
    },
    /// Teaches one message (base64 of its bytes) as spam or ham, to a user's model or the
    /// global one.
    SpamLearn {
        email: Option<String>,
        spam: bool,
        message: String,
    },
    /// Judges one message (base64) without delivering it, and explains the verdict.
    SpamClassify {
        email: Option<String>,
        message: String,
        /// One line (`score <TAB> action <TAB> probability`) instead of the explanation.
        #[serde(default)]
        brief: bool,
    },
    QuarantineList,
    QuarantineShow {
        id: u64,
    },
    /// Delivers a held message to its recipients, once; `learn_ham` also teaches it as ham to
    /// the recipients' models and the global one.
    QuarantineRelease {
        id: u64,
        learn_ham: bool,
    },
    QuarantineDelete {
        id: u64,
    },
    /// A user's Sieve scripts (the one delivery runs is marked active).
    SieveList {
        email: String,
    },
    SieveGet {
        email: String,
        name: String,
    },
    /// Stores a script once it compiles (errors name the line and column).
    SievePut {
        email: String,
        name: String,
        source: String,
    },
    /// Makes a script the active one (`name: None`: none is).
    SieveActivate {
        email: String,
        name: Option<String>,
    },
    SieveDelete {
        email: String,
        name: String,
    },
    /// Makes a REST API token; the reply carries its secret, shown this once.
    TokenCreate {
        name: String,
        scope: tern_store::ApiScope,
    },
    TokenList,
    TokenRemove {
        name: String,
    },
    /// Gives `identifier` (an address, `@domain`, `anyone`) `rights` (RFC 4314 letters, e.g.
    /// `lrs`) on a user's mailbox; empty rights take the entry away.
    ShareSet {
        email: String,
        mailbox: String,
        identifier: String,
        rights: String,
    },
    /// The ACLs of a user's mailboxes (all of them, or one), and what others share with
    /// the user.
    ShareList {
        email: String,
        #[serde(default)]
        mailbox: Option<String>,
    },
    /// Stores messages in a mailbox (made when missing), in order (`tern import`). With
    /// `skip_duplicates`, a message whose content the mailbox already holds is left out (the
    /// first batch of a resumed import). Replies with a JSON [`ImportResult`].
    MailImport {
        email: String,
        mailbox: String,
        messages: Vec<TransferredMessage>,
        #[serde(default)]
        skip_duplicates: bool,
    },
    /// A user's mailboxes as a JSON array of [`MailboxInfo`] (`tern export`).
    MailboxList {
        email: String,
    },
    /// Messages of a mailbox with a UID above `after_uid`, in UID order, up to about
    /// `max_bytes`; a JSON [`ExportBatch`] (`tern export`).
    MailExport {
        email: String,
        mailbox: String,
        after_uid: u32,
        max_bytes: u64,
    },
    /// A backup of the store and the data directory's files into `dir` (absolute; made, and
    /// empty), taken while the server runs.
    Backup {
        dir: PathBuf,
    },
    /// Why a delivered message went where it went.
    MailExplain {
        email: String,
        mailbox: String,
        uid: u32,
    },
}

/// A message moved in or out by `tern import` / `tern export`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TransferredMessage {
    /// Its UID (export; 0 on import).
    #[serde(default)]
    pub uid: u32,
    pub flags: tern_store::Flags,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// IMAP INTERNALDATE, Unix seconds.
    pub internal_date: i64,
    /// The message, base64.
    pub raw: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImportResult {
    pub imported: u64,
    /// Left out: the mailbox held them already (`skip_duplicates`).
    pub duplicates: u64,
    /// Left out: they would take the account over its quota.
    pub over_quota: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MailboxInfo {
    pub name: String,
    pub uid_validity: u32,
    pub total: u32,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportBatch {
    pub uid_validity: u32,
    pub messages: Vec<TransferredMessage>,
    /// Messages with higher UIDs remain.
    pub more: bool,
}

/// What admin requests act on.
#[derive(Clone)]
pub struct AdminContext {
    pub directory: Directory,
    /// This server's name (`hostname`), for `tern dns`.
    pub hostname: String,
    /// The MTA-STS policy settings, for `tern dns`.
    pub mta_sts: tern_config::MtaSts,
    /// The data directory (`tern backup` copies its files).
    pub data_dir: PathBuf,
    /// The running delivery service (woken after `queue retry`); `None` when the CLI works on
    /// the store directly.
    pub delivery: Option<std::sync::Arc<tern_delivery::DeliveryService>>,
    /// The spam classifier (the running server's, so what is learnt shows at once).
    pub spam: std::sync::Arc<tern_pipeline::spam::SpamFilter>,
    /// Its score thresholds.
    pub spam_thresholds: tern_scan::Thresholds,
    /// The running server's failed-login guard: REST API token failures are slowed and
    /// banned like mail logins. `None` when the CLI works on the store directly.
    pub auth_guard: Option<std::sync::Arc<tern_guard::AuthGuard>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminReply {
    pub ok: bool,
    pub output: Vec<u8>,
}

impl AdminReply {
    fn ok(text: impl Into<String>) -> AdminReply {
        AdminReply { ok: true, output: text.into().into_bytes() }
    }
    fn err(text: impl std::fmt::Display) -> AdminReply {
        AdminReply { ok: false, output: format!("{text}\n").into_bytes() }
    }
}

#[derive(Serialize, Deserialize)]
struct ReplyHeader {
    ok: bool,
    len: usize,
}

/// Runs one request against the directory and store.
pub async fn execute(ctx: &AdminContext, req: AdminRequest) -> AdminReply {
    match run(ctx, req).await {
        Ok(reply) => reply,
        Err(e) => AdminReply::err(e),
    }
}

async fn run(ctx: &AdminContext, req: AdminRequest) -> anyhow::Result<AdminReply> {
    match req {
        AdminRequest::Ping => Ok(AdminReply::ok("pong\n")),
        req @ (AdminRequest::DomainAdd { .. }
        | AdminRequest::DomainCatchAll { .. }
        | AdminRequest::DomainList
        | AdminRequest::DomainRemove { .. }
        | AdminRequest::UserAdd { .. }
        | AdminRequest::UserPasswd { .. }
        | AdminRequest::UserList
        | AdminRequest::UserQuota { .. }
        | AdminRequest::UserDisabled { .. }
        | AdminRequest::UserAdmin { .. }
        | AdminRequest::AppPasswordAdd { .. }
        | AdminRequest::AppPasswordRemove { .. }
        | AdminRequest::UserRemove { .. }
        | AdminRequest::AliasAdd { .. }
        | AdminRequest::AliasList
        | AdminRequest::AliasRemove { .. }) => directory_request(ctx, req).await,
        req @ (AdminRequest::MailList { .. }
        | AdminRequest::MailExplain { .. }
        | AdminRequest::MailShow { .. }
        | AdminRequest::MailImport { .. }
        | AdminRequest::MailboxList { .. }
        | AdminRequest::MailExport { .. }
        | AdminRequest::Backup { .. }) => mail_request(ctx, req).await,
        req @ (AdminRequest::SpamStatus { .. }
        | AdminRequest::SpamLearn { .. }
        | AdminRequest::SpamClassify { .. }
        | AdminRequest::QuarantineList
        | AdminRequest::QuarantineShow { .. }
        | AdminRequest::QuarantineRelease { .. }
        | AdminRequest::QuarantineDelete { .. }) => filter_request(ctx, req).await,
        req @ (AdminRequest::SieveList { .. }
        | AdminRequest::SieveGet { .. }
        | AdminRequest::SievePut { .. }
        | AdminRequest::SieveActivate { .. }
        | AdminRequest::SieveDelete { .. }) => sieve_request(ctx, req).await,
        req @ (AdminRequest::ShareSet { .. } | AdminRequest::ShareList { .. }) => share_request(ctx, req).await,
        req @ (AdminRequest::TokenCreate { .. } | AdminRequest::TokenList | AdminRequest::TokenRemove { .. }) => {
            token_request(ctx, req).await
        }
        req @ (AdminRequest::QueueList
        | AdminRequest::QueueShow { .. }
        | AdminRequest::QueueRetry { .. }
        | AdminRequest::QueueRemove { .. }) => queue_request(ctx, req).await,
        req @ (AdminRequest::DkimGenerate { .. }
        | AdminRequest::Setup { .. }
        | AdminRequest::DnsExpected { .. }
        | AdminRequest::Dns { .. }) => dns_request(ctx, req).await,
    }
}

/// Domains, users and aliases.
async fn directory_request(ctx: &AdminContext, req: AdminRequest) -> anyhow::Result<AdminReply> {
    use std::fmt::Write;
    let dir = &ctx.directory;
    let mut out = String::new();
    match req {
        AdminRequest::DomainAdd { name, catch_all } => {
            let d = dir.domain_add(&name, catch_all.as_deref()).await?;
            writeln!(out, "added domain {}", d.name)?;
            if dir.resolve(&format!("postmaster@{}", d.name)).await? == tern_directory::Resolution::Unknown {
                writeln!(out, "hint: create postmaster@{} (a user or an alias): RFC 5321 requires it", d.name)?;
            }
        }
        AdminRequest::DomainCatchAll { name, target } => {
            let d = dir.domain_set_catch_all(&name, target.as_deref()).await?;
            match d.catch_all {
                Some(t) => writeln!(out, "catch-all of {} is {t}", d.name)?,
                None => writeln!(out, "{} has no catch-all", d.name)?,
            }
        }
        AdminRequest::DomainList => {
            for d in dir.domain_list().await? {
                match d.catch_all {
                    Some(c) => writeln!(out, "{}\tcatch-all={c}", d.name)?,
                    None => writeln!(out, "{}", d.name)?,
                }
            }
        }
        AdminRequest::DomainRemove { name } => {
            dir.domain_remove(&name).await?;
            writeln!(out, "removed domain {name}")?;
        }
        AdminRequest::UserAdd { email, password, shared: true } => {
            if password.is_some() {
                return Err(anyhow::anyhow!("a shared account has no password: nobody logs in as it"));
            }
            let account = dir.shared_account_add(&email).await?;
            writeln!(out, "added shared account {}", account.address)?;
            writeln!(
                out,
                "share its mailboxes with: tern share set {} INBOX <user or @domain> lrswite",
                account.address
            )?;
        }
        AdminRequest::UserAdd { email, password, shared: false } => {
            let (account, generated) = dir.user_add(&email, password.as_deref()).await?;
            writeln!(out, "added user {}", account.address)?;
            if let Some(p) = generated {
                writeln!(out, "password: {p}")?;
            }
        }
        AdminRequest::UserPasswd { email, password } => {
            let generated = dir.user_set_password(&email, password.as_deref()).await?;
            writeln!(out, "password changed for {email}")?;
            if let Some(p) = generated {
                writeln!(out, "password: {p}")?;
            }
        }
        AdminRequest::UserList => {
            let store = dir.store();
            for a in dir.user_list().await? {
                let (mut count, mut bytes) = (0u64, 0u64);
                for m in store.mailbox_list(a.id).await? {
                    count += u64::from(m.total);
                    bytes += m.size;
                }
                let quota = a.quota_bytes.map(|q| format!("\tquota={q}")).unwrap_or_default();
                let shared = if a.shared { "\tshared" } else { "" };
                let admin = if a.admin { "\tadmin" } else { "" };
                let disabled = if a.disabled { "\tdisabled" } else { "" };
                let apps = if a.app_passwords.is_empty() {
                    String::new()
                } else {
                    let names: Vec<&str> = a.app_passwords.iter().map(|p| p.name.as_str()).collect();
                    format!("\tapp_passwords={}", one_line(&names.join(",")))
                };
                writeln!(out, "{}\tmessages={count}\tbytes={bytes}{quota}{shared}{admin}{disabled}{apps}", a.address)?;
            }
        }
        AdminRequest::UserQuota { email, bytes } => {
            dir.user_set_quota(&email, bytes).await?;
            match bytes {
                Some(b) => writeln!(out, "quota of {email} is {b} bytes")?,
                None => writeln!(out, "{email} has no quota")?,
            }
        }
        AdminRequest::UserDisabled { email, disabled } => {
            let a = dir.user_set_disabled(&email, disabled).await?;
            if disabled {
                writeln!(out, "{}: logins refused (mail is still received)", a.address)?;
            } else {
                writeln!(out, "{}: logins allowed", a.address)?;
            }
        }
        AdminRequest::UserAdmin { email, admin } => {
            let a = dir.user_set_admin(&email, admin).await?;
            if admin {
                writeln!(out, "{} is an administrator (web admin: /admin on the http listener)", a.address)?;
            } else {
                writeln!(out, "{} is no longer an administrator", a.address)?;
            }
        }
        AdminRequest::AppPasswordAdd { email, name } => {
            let (record, secret) = dir.app_password_add(&email, &name).await?;
            writeln!(out, "app password {:?} for {email}: {secret}", record.name)?;
            writeln!(out, "(shown only now; it logs in like the password, except with SCRAM)")?;
        }
        AdminRequest::AppPasswordRemove { email, name } => {
            dir.app_password_remove(&email, &name).await?;
            writeln!(out, "removed app password {name:?} of {email}")?;
        }
        AdminRequest::UserRemove { email } => {
            dir.user_remove(&email).await?;
            writeln!(out, "removed user {email} and all its mail")?;
        }
        AdminRequest::AliasAdd { address, targets } => {
            let a = dir.alias_add(&address, &targets).await?;
            writeln!(out, "{} -> {}", a.address, a.targets.join(", "))?;
        }
        AdminRequest::AliasList => {
            for a in dir.alias_list().await? {
                writeln!(out, "{}\t{}", a.address, a.targets.join(","))?;
            }
        }
        AdminRequest::AliasRemove { address, target } => {
            dir.alias_remove(&address, target.as_deref()).await?;
            writeln!(out, "removed")?;
        }
        _ => anyhow::bail!("internal: request routed to directory_request by mistake"),
    }
    Ok(AdminReply::ok(out))
}

/// Mailboxes and messages: listing, showing, import and export, backup.
async fn mail_request(ctx: &AdminContext, req: AdminRequest) -> anyhow::Result<AdminReply> {
    use std::fmt::Write;
    let dir = &ctx.directory;
    let mut out = String::new();
    match req {
        AdminRequest::MailList { email, mailbox } => {
            let store = dir.store();
            let mailbox = find_mailbox(dir, &email, mailbox.as_deref().unwrap_or(INBOX)).await?;
            for m in store.message_list(mailbox.id).await? {
                let summary = store.summary_get(m.blob).await?;
                let (from, subject) = summary.map(|s| (s.from, s.subject)).unwrap_or_default();
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}",
                    m.uid,
                    format_date(m.internal_date),
                    m.size,
                    one_line(&from),
                    one_line(&subject)
                )?;
            }
        }
        AdminRequest::MailExplain { email, mailbox, uid } => {
            let (mailbox, entry) = find_message(dir, &email, &mailbox, uid).await?;
            let envelope = dir.store().envelope_get(entry.delivery_id).await?;
            let Some(verdict) = envelope.as_ref().and_then(|e| e.verdict.as_deref()) else {
                let source = envelope.map(|e| e.source).unwrap_or_default();
                let _ = writeln!(out, "delivered to {} without a scan verdict (arrived by {source})", mailbox.name);
                return Ok(AdminReply::ok(out));
            };
            let verdict: tern_scan::Verdict =
                serde_json::from_str(verdict).map_err(|e| anyhow::anyhow!("stored verdict unreadable: {e}"))?;
            let _ = writeln!(out, "delivered to {}", mailbox.name);
            out.push_str(&explain(&verdict));
        }
        AdminRequest::MailShow { email, mailbox, uid } => {
            let (_, entry) = find_message(dir, &email, &mailbox, uid).await?;
            let raw =
                dir.store().blob_get(entry.blob).await?.ok_or_else(|| anyhow::anyhow!("message content missing"))?;
            return Ok(AdminReply { ok: true, output: raw });
        }
        AdminRequest::MailImport { email, mailbox, messages, skip_duplicates } => {
            let result = import(dir, &email, &mailbox, messages, skip_duplicates).await?;
            return Ok(AdminReply { ok: true, output: serde_json::to_vec(&result)? });
        }
        AdminRequest::MailboxList { email } => {
            let account = account_of(dir, &email).await?;
            let list: Vec<MailboxInfo> = dir
                .store()
                .mailbox_list(account.id)
                .await?
                .into_iter()
                .map(|m| MailboxInfo { name: m.name, uid_validity: m.uid_validity, total: m.total, size: m.size })
                .collect();
            return Ok(AdminReply { ok: true, output: serde_json::to_vec(&list)? });
        }
        AdminRequest::MailExport { email, mailbox, after_uid, max_bytes } => {
            use base64::Engine;
            let mailbox = find_mailbox(dir, &email, &mailbox).await?;
            let store = dir.store();
            let mut batch = ExportBatch { uid_validity: mailbox.uid_validity, messages: Vec::new(), more: false };
            let mut bytes = 0u64;
            for entry in store.message_list(mailbox.id).await?.into_iter().filter(|e| e.uid > after_uid) {
                if !batch.messages.is_empty() && bytes + entry.size > max_bytes {
                    batch.more = true;
                    break;
                }
                // Expunged since the listing: nothing to export.
                let Some(raw) = store.blob_get(entry.blob).await? else { continue };
                bytes += raw.len() as u64;
                batch.messages.push(TransferredMessage {
                    uid: entry.uid,
                    flags: entry.flags,
                    keywords: entry.keywords,
                    internal_date: entry.internal_date,
                    raw: base64::engine::general_purpose::STANDARD.encode(&raw),
                });
            }
            return Ok(AdminReply { ok: true, output: serde_json::to_vec(&batch)? });
        }
        AdminRequest::Backup { dir: dest } => {
            anyhow::ensure!(dest.is_absolute(), "the backup directory must be an absolute path");
            out.push_str(&crate::backup::backup(dir.store().as_ref(), &ctx.data_dir, &dest).await?);
        }
        _ => anyhow::bail!("internal: request routed to mail_request by mistake"),
    }
    Ok(AdminReply::ok(out))
}

/// The spam classifier and the quarantine.
async fn filter_request(ctx: &AdminContext, req: AdminRequest) -> anyhow::Result<AdminReply> {
    use std::fmt::Write;
    let dir = &ctx.directory;
    let mut out = String::new();
    match req {
        AdminRequest::SpamStatus { email } => {
            let owner = spam_owner(dir, email.as_deref()).await?;
            let status = ctx.spam.status(owner).await?;
            let min = ctx.spam.settings().min_learned;
            let _ = writeln!(
                out,
                "{}: learnt {} spam and {} ham messages, {} features{}",
                email.as_deref().unwrap_or("global model"),
                status.spam_learned,
                status.ham_learned,
                status.features,
                if status.spam_learned >= min && status.ham_learned >= min {
                    String::new()
                } else {
                    format!(" (judges once the models together have learnt {min} of each)")
                }
            );
            if email.is_none() {
                // Every user's model too, without loading them.
                for (owner, spam, ham) in dir.store().spam_models().await? {
                    let tern_store::SpamModelOwner::Account(id) = owner else { continue };
                    let name = match dir.store().account_get(id).await? {
                        Some(a) => a.address,
                        None => format!("account {id} (removed)"),
                    };
                    let _ = writeln!(out, "{name}: learnt {spam} spam and {ham} ham messages");
                }
            }
        }
        AdminRequest::SpamLearn { email, spam, message } => {
            let owner = spam_owner(dir, email.as_deref()).await?;
            let raw = decode_message(&message)?;
            let blob = tern_store::BlobHash::of(&raw);
            let features =
                tern_pipeline::stages::features_of(std::sync::Arc::new(raw), tern_scan::Facts::default()).await;
            let class = if spam { tern_scan::classifier::Class::Spam } else { tern_scan::classifier::Class::Ham };
            let outcome = ctx.spam.learn(owner, blob, class, &features).await?;
            let _ = writeln!(out, "{outcome:?}");
        }
        AdminRequest::SpamClassify { email, message, brief } => {
            let account = match &email {
                Some(e) => Some(account_of(dir, e).await?.id),
                None => None,
            };
            let raw = decode_message(&message)?;
            let features =
                tern_pipeline::stages::features_of(std::sync::Arc::new(raw), tern_scan::Facts::default()).await;
            let (judgement, abstained) = match ctx.spam.judge(&features, account).await? {
                Ok(j) => (Some(j), None),
                Err(why) => (None, Some(why)),
            };
            let rules = tern_scan::verdict::RuleInput { facts: &tern_scan::Facts::default(), meta: features.meta() };
            let verdict = tern_scan::verdict::decide(judgement, abstained, &rules, Vec::new(), &ctx.spam_thresholds);
            if brief {
                let p =
                    verdict.judgement.as_ref().map(|j| format!("{:.4}", j.probability)).unwrap_or_else(|| "-".into());
                let _ = writeln!(out, "{:.2}\t{}\t{p}", verdict.score, verdict.action.as_str());
            } else {
                out.push_str(&explain(&verdict));
            }
        }
        AdminRequest::QuarantineList => {
            let held = dir.store().quarantine_list().await?;
            if held.is_empty() {
                out.push_str("the quarantine is empty\n");
            }
            for q in held {
                let rcpts: Vec<&str> = q.recipients.iter().map(|r| r.address.as_str()).collect();
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{} B\t{}\texpires {}",
                    q.id,
                    format_date(q.created_at),
                    one_line(q.envelope.mail_from.as_deref().unwrap_or("<>")),
                    one_line(&rcpts.join(",")),
                    q.size,
                    one_line(&q.reason),
                    format_date(q.expires_at)
                );
            }
        }
        AdminRequest::QuarantineShow { id } => {
            let (q, raw) =
                dir.store().quarantine_get(id).await?.ok_or_else(|| anyhow::anyhow!("no quarantine entry {id}"))?;
            let rcpts: Vec<&str> = q.recipients.iter().map(|r| r.address.as_str()).collect();
            let _ = writeln!(out, "id {}: {}", q.id, one_line(&q.reason));
            let _ = writeln!(
                out,
                "from {} to {}",
                one_line(q.envelope.mail_from.as_deref().unwrap_or("<>")),
                one_line(&rcpts.join(", "))
            );
            let _ = writeln!(
                out,
                "client {} ({}), held {}, expires {}",
                one_line(q.envelope.client_ip.as_deref().unwrap_or("?")),
                one_line(q.envelope.helo.as_deref().unwrap_or("?")),
                format_date(q.created_at),
                format_date(q.expires_at)
            );
            if let Some(v) =
                q.envelope.verdict.as_deref().and_then(|v| serde_json::from_str::<tern_scan::Verdict>(v).ok())
            {
                out.push_str(&explain(&v));
            }
            let header_end = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 2).unwrap_or(raw.len());
            let _ = writeln!(out, "\n{}", String::from_utf8_lossy(&raw[..header_end.min(16 * 1024)]));
        }
        AdminRequest::QuarantineRelease { id, learn_ham } => {
            let store = dir.store();
            let held = store.quarantine_get(id).await?;
            let receipt = tern_pipeline::release_quarantined(store, id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no quarantine entry {id} (released or deleted already?)"))?;
            let _ = writeln!(
                out,
                "released {id}: {} local cop{}{}{}",
                receipt.copies.len(),
                if receipt.copies.len() == 1 { "y" } else { "ies" },
                receipt.queued.map(|q| format!(", queued as {q}")).unwrap_or_default(),
                if receipt.over_quota.is_empty() {
                    String::new()
                } else {
                    format!(", {} over quota", receipt.over_quota.len())
                }
            );
            if let (true, Some((q, raw))) = (learn_ham, held) {
                let blob = tern_store::BlobHash::of(&raw);
                let features =
                    tern_pipeline::stages::features_of(std::sync::Arc::new(raw), tern_scan::Facts::default()).await;
                let mut owners = vec![tern_store::SpamModelOwner::Global];
                owners.extend(
                    q.recipients
                        .iter()
                        .flat_map(|r| r.accounts.iter().map(|a| tern_store::SpamModelOwner::Account(*a))),
                );
                owners.dedup();
                for owner in owners {
                    ctx.spam.learn(owner, blob, tern_scan::classifier::Class::Ham, &features).await?;
                }
                out.push_str("learnt as ham\n");
            }
        }
        AdminRequest::QuarantineDelete { id } => {
            if !dir.store().quarantine_remove(id).await? {
                anyhow::bail!("no quarantine entry {id}");
            }
            let _ = writeln!(out, "deleted {id}");
        }
        _ => anyhow::bail!("internal: request routed to filter_request by mistake"),
    }
    Ok(AdminReply::ok(out))
}

/// The outbound queue.
async fn queue_request(ctx: &AdminContext, req: AdminRequest) -> anyhow::Result<AdminReply> {
    use std::fmt::Write;
    let dir = &ctx.directory;
    let mut out = String::new();
    match req {
        AdminRequest::QueueList => {
            let now = tern_store::now_unix();
            let entries = dir.store().queue_list().await?;
            for e in &entries {
                let pending: Vec<&tern_store::QueuedRecipient> =
                    e.recipients.iter().filter(|r| !r.is_final()).collect();
                let next = e.next_attempt().map(|t| format!("in {}s", (t - now).max(0))).unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "{}	{}	{}	{} bytes	age {}s	next {next}	{}",
                    message_id(e),
                    format_date(e.message.created),
                    e.message.envelope.mail_from.as_deref().unwrap_or("<>"),
                    e.message.size,
                    now - e.message.created,
                    pending.iter().map(|r| r.address.as_str()).collect::<Vec<_>>().join(",")
                )?;
            }
            writeln!(out, "{} queued message(s)", entries.len())?;
        }
        AdminRequest::QueueShow { id } => {
            let number = queue_number(dir, &id).await?;
            let e = dir.store().queue_get(number).await?.ok_or_else(|| anyhow::anyhow!("no queue entry {id}"))?;
            let env = &e.message.envelope;
            writeln!(out, "id: {}", message_id(&e))?;
            writeln!(out, "queue number: {}", e.message.id)?;
            writeln!(out, "queued: {}", format_date(e.message.created))?;
            writeln!(out, "from: {}", env.mail_from.as_deref().unwrap_or("<>"))?;
            writeln!(out, "size: {}", e.message.size)?;
            writeln!(out, "source: {} {}", env.source, env.authenticated_as.as_deref().unwrap_or(""))?;
            if let Some(envid) = &env.envid {
                writeln!(out, "envid: {envid}")?;
            }
            if env.requiretls {
                writeln!(out, "requiretls: yes")?;
            }
            for r in &e.recipients {
                writeln!(
                    out,
                    "rcpt: {}	status={:?}	attempts={}	next={}	mta={}	last={}",
                    r.address,
                    r.status,
                    r.attempts,
                    format_date(r.next_attempt),
                    r.remote_mta.as_deref().unwrap_or("-"),
                    r.last_result.as_deref().unwrap_or("-")
                )?;
            }
        }
        AdminRequest::QueueRetry { id } => {
            let number = match &id {
                Some(id) => Some(queue_number(dir, id).await?),
                None => None,
            };
            let n = dir.store().queue_retry(number, tern_store::now_unix()).await?;
            if let Some(d) = &ctx.delivery {
                d.wake();
            }
            match id {
                Some(id) if n == 0 => anyhow::bail!("no queue entry {id} with recipients left"),
                _ => writeln!(out, "{n} message(s) due for delivery now")?,
            }
        }
        AdminRequest::QueueRemove { id } => {
            let number = queue_number(dir, &id).await?;
            if !dir.store().queue_remove(number).await? {
                anyhow::bail!("no queue entry {id}");
            }
            writeln!(out, "removed queue entry {id} (not delivered, not bounced)")?;
        }
        _ => anyhow::bail!("internal: request routed to queue_request by mistake"),
    }
    Ok(AdminReply::ok(out))
}

/// DKIM keys, first setup and the DNS records a domain needs.
async fn dns_request(ctx: &AdminContext, req: AdminRequest) -> anyhow::Result<AdminReply> {
    use std::fmt::Write;
    let dir = &ctx.directory;
    let mut out = String::new();
    match req {
        AdminRequest::DkimGenerate { domain } => {
            let d = dir.domain_get(&domain).await?.ok_or_else(|| anyhow::anyhow!("{domain} is not a local domain"))?;
            let d = dir.domain_set_dkim(&d.name, new_dkim_keys().await?).await?;
            writeln!(out, "new DKIM keys for {} (the old ones, if any, are replaced); publish:", d.name)?;
            for k in &d.dkim {
                writeln!(
                    out,
                    "{}._domainkey.{}. IN TXT {}",
                    k.selector,
                    d.name,
                    txt_strings(&tern_mailauth::dkim::dns_record(&tern_pipeline::signing_key(k)))
                )?;
            }
        }
        AdminRequest::Setup { domain, admin, password } => {
            let d = match dir.domain_get(&domain).await? {
                Some(d) => {
                    writeln!(out, "domain {}: exists", d.name)?;
                    d
                }
                None => {
                    let d = dir.domain_add(&domain, None).await?;
                    writeln!(out, "domain {}: added", d.name)?;
                    d
                }
            };
            let admin = admin.unwrap_or_else(|| format!("admin@{}", d.name));
            let account = match dir.user_get(&admin).await? {
                Some(a) => {
                    writeln!(out, "admin {}: exists (password unchanged)", a.address)?;
                    a
                }
                None => {
                    let (a, generated) = dir.user_add(&admin, password.as_deref()).await?;
                    match generated {
                        Some(p) => writeln!(out, "admin {}: added, password {p} (shown only now)", a.address)?,
                        None => writeln!(out, "admin {}: added, with the password given", a.address)?,
                    }
                    a
                }
            };
            let account = if account.admin {
                account
            } else {
                let a = dir.user_set_admin(&account.address, true).await?;
                writeln!(out, "admin {}: may sign in to the web admin (/admin on the http listener)", a.address)?;
                a
            };
            // RFC 5321 §4.5.1 (postmaster) and RFC 2142 (abuse): the admin reads them.
            for role in ["postmaster", "abuse"] {
                let address = format!("{role}@{}", d.name);
                if dir.resolve(&address).await? == tern_directory::Resolution::Unknown {
                    dir.alias_add(&address, std::slice::from_ref(&account.address)).await?;
                    writeln!(out, "alias {address} -> {}: added", account.address)?;
                }
            }
            let d = if d.dkim.is_empty() {
                let d = dir.domain_set_dkim(&d.name, new_dkim_keys().await?).await?;
                writeln!(
                    out,
                    "DKIM keys: made ({})",
                    d.dkim.iter().map(|k| k.selector.as_str()).collect::<Vec<_>>().join(", ")
                )?;
                d
            } else {
                writeln!(out, "DKIM keys: exist (unchanged)")?;
                d
            };
            writeln!(out)?;
            out.push_str(&dns_records(&d, &ctx.hostname, &ctx.mta_sts));
        }
        AdminRequest::DnsExpected { domain } => {
            let d = dir.domain_get(&domain).await?.ok_or_else(|| anyhow::anyhow!("{domain} is not a local domain"))?;
            let expected = expected_dns(&d, &ctx.hostname, &ctx.mta_sts);
            return Ok(AdminReply { ok: true, output: serde_json::to_vec(&expected)? });
        }
        AdminRequest::Dns { domain } => {
            let d = dir.domain_get(&domain).await?.ok_or_else(|| anyhow::anyhow!("{domain} is not a local domain"))?;
            out.push_str(&dns_records(&d, &ctx.hostname, &ctx.mta_sts));
        }
        _ => anyhow::bail!("internal: request routed to dns_request by mistake"),
    }
    Ok(AdminReply::ok(out))
}

/// A fresh Ed25519 and RSA key pair for DKIM (RFC 8463 and RFC 6376: receivers that know
/// only RSA check the second signature).
pub(crate) async fn new_dkim_keys() -> anyhow::Result<Vec<tern_store::DomainKey>> {
    use tern_mailauth::dkim::{DkimAlgorithm, generate, selector_for};
    let now = tern_store::now_unix();
    let mut keys = Vec::new();
    for alg in [DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa] {
        let selector = selector_for(alg, now);
        let key = tokio::task::spawn_blocking(move || generate(alg, &selector, now)).await??;
        keys.push(tern_pipeline::stored_key(key));
    }
    Ok(keys)
}

/// A TXT value as quoted strings of at most 255 bytes (RFC 1035 §3.3.14).
fn txt_strings(value: &str) -> String {
    value.as_bytes().chunks(255).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect::<Vec<_>>().join(" ")
}

/// A DNS record a domain served by Tern should publish.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsRecord {
    /// The owner name, without the final dot.
    pub name: String,
    /// `MX`, `TXT`, `CNAME`, `SRV`.
    pub rtype: String,
    /// As in a zone file, unquoted (TXT: the text itself).
    pub value: String,
    /// Without it mail is lost or refused (else: recommended).
    pub required: bool,
}

/// What a domain should publish, and the MTA-STS policy Tern serves for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExpectedDns {
    pub domain: String,
    pub hostname: String,
    pub records: Vec<DnsRecord>,
    pub mta_sts_policy: String,
}

/// Every record a domain should publish, required ones first.
pub fn expected_dns(domain: &tern_store::Domain, hostname: &str, mta_sts: &tern_config::MtaSts) -> ExpectedDns {
    let d = domain.name.as_str();
    let h = hostname.trim_end_matches('.');
    let record = |name: String, rtype: &str, value: String, required: bool| DnsRecord {
        name,
        rtype: rtype.to_string(),
        value,
        required,
    };
    let mut records = vec![
        record(d.to_string(), "MX", format!("10 {h}."), true),
        record(d.to_string(), "TXT", "v=spf1 mx -all".to_string(), true),
    ];
    for k in &domain.dkim {
        records.push(record(
            format!("{}._domainkey.{d}", k.selector),
            "TXT",
            tern_mailauth::dkim::dns_record(&tern_pipeline::signing_key(k)),
            true,
        ));
    }
    records.push(record(
        format!("_dmarc.{d}"),
        "TXT",
        format!("v=DMARC1; p=quarantine; rua=mailto:postmaster@{d}"),
        true,
    ));
    let policy = crate::mta_sts::policy(h, mta_sts);
    records.push(record(
        format!("_mta-sts.{d}"),
        "TXT",
        format!("v=STSv1; id={}", crate::mta_sts::policy_id(&policy)),
        false,
    ));
    records.push(record(format!("mta-sts.{d}"), "CNAME", format!("{h}."), false));
    records.push(record(format!("_smtp._tls.{d}"), "TXT", format!("v=TLSRPTv1; rua=mailto:postmaster@{d}"), false));
    records.push(record(format!("autoconfig.{d}"), "CNAME", format!("{h}."), false));
    records.push(record(format!("autodiscover.{d}"), "CNAME", format!("{h}."), false));
    for (service, port) in
        [("submissions", 465), ("submission", 587), ("imaps", 993), ("imap", 143), ("pop3s", 995), ("pop3", 110)]
    {
        records.push(record(format!("_{service}._tcp.{d}"), "SRV", format!("0 1 {port} {h}."), false));
    }
    ExpectedDns { domain: d.to_string(), hostname: h.to_string(), records, mta_sts_policy: policy }
}

/// The records as zone-file lines, required ones first, with what to do about the rest.
pub fn dns_records(domain: &tern_store::Domain, hostname: &str, mta_sts: &tern_config::MtaSts) -> String {
    use std::fmt::Write;
    let expected = expected_dns(domain, hostname, mta_sts);
    let (d, h) = (&expected.domain, &expected.hostname);
    let mut out = format!("; DNS records for {d}, served by {h}\n");
    let line = |r: &DnsRecord| {
        let value = if r.rtype == "TXT" { txt_strings(&r.value) } else { r.value.clone() };
        format!("{}. IN {} {value}\n", r.name, r.rtype)
    };
    let _ = writeln!(out, "; Required: without these, mail to and from {d} is lost or refused");
    for r in expected.records.iter().filter(|r| r.required) {
        out.push_str(&line(r));
    }
    if domain.dkim.is_empty() {
        let _ = writeln!(out, "; no DKIM keys yet: run `tern dkim generate {d}`");
    }
    let _ = writeln!(out, "; Recommended: TLS policy and its reports, mail client autoconfiguration");
    for r in expected.records.iter().filter(|r| !r.required) {
        out.push_str(&line(r));
    }
    let _ = writeln!(
        out,
        "; And for the server itself: {h}. IN A (and AAAA) with its public addresses, and a PTR\n\
         ; record for each address naming {h} (set by whoever gives you the address)."
    );
    let _ = writeln!(out, "; MTA-STS policy, served by Tern at https://mta-sts.{d}/.well-known/mta-sts.txt:");
    for l in expected.mta_sts_policy.lines() {
        let _ = writeln!(out, ";   {l}");
    }
    out
}

async fn find_mailbox(dir: &Directory, email: &str, name: &str) -> anyhow::Result<tern_store::Mailbox> {
    let account = dir.user_get(email).await?.ok_or_else(|| anyhow::anyhow!("no user {email}"))?;
    let name = if name.eq_ignore_ascii_case(INBOX) { INBOX } else { name };
    dir.store().mailbox_by_name(account.id, name).await?.ok_or_else(|| anyhow::anyhow!("{email} has no mailbox {name}"))
}

fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

pub(crate) fn format_date(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&f).unwrap_or_default()
}

/// Serves admin requests on the Unix socket until `shutdown`.
pub async fn serve_socket(
    path: PathBuf,
    ctx: AdminContext,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    // We hold the store lock, so no other server owns this socket: a leftover is stale.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| anyhow::anyhow!("cannot bind admin socket {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                _ = shutdown.cancelled() => break,
                c = listener.accept() => c,
            };
            let Ok((stream, _)) = conn else { continue };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(stream, ctx).await {
                    tracing::debug!(error = %e, "admin connection failed");
                }
            });
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

async fn handle(stream: tokio::net::UnixStream, ctx: AdminContext) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let reply = match serde_json::from_str::<AdminRequest>(&line) {
        Ok(req) => {
            tracing::info!(request = ?redact(&req), "admin request");
            execute(&ctx, req).await
        }
        Err(e) => AdminReply::err(format!("bad admin request: {e}")),
    };
    let header = serde_json::to_string(&ReplyHeader { ok: reply.ok, len: reply.output.len() })?;
    write.write_all(header.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.write_all(&reply.output).await?;
    write.shutdown().await?;
    Ok(())
}

/// The request without passwords, for logs.
fn redact(req: &AdminRequest) -> AdminRequest {
    match req {
        AdminRequest::UserAdd { email, password, shared } => AdminRequest::UserAdd {
            email: email.clone(),
            password: password.as_ref().map(|_| "***".into()),
            shared: *shared,
        },
        AdminRequest::UserPasswd { email, password } => {
            AdminRequest::UserPasswd { email: email.clone(), password: password.as_ref().map(|_| "***".into()) }
        }
        other => other.clone(),
    }
}

/// Sends a request to a running server. `Err` with `NotFound`/`ConnectionRefused` means no
/// server is listening.
pub async fn send(path: &Path, req: &AdminRequest) -> std::io::Result<AdminReply> {
    let stream = tokio::net::UnixStream::connect(path).await?;
    let (read, mut write) = stream.into_split();
    let mut body = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    body.push(b'\n');
    write.write_all(&body).await?;
    let mut reader = BufReader::new(read);
    let mut header = String::new();
    reader.read_line(&mut header).await?;
    let header: ReplyHeader = serde_json::from_str(&header).map_err(std::io::Error::other)?;
    let mut output = vec![0; header.len];
    reader.read_exact(&mut output).await?;
    Ok(AdminReply { ok: header.ok, output })
}

/// A stored message by user, mailbox name and UID.
async fn find_message(
    dir: &Directory,
    email: &str,
    mailbox: &str,
    uid: u32,
) -> anyhow::Result<(tern_store::Mailbox, tern_store::MessageEntry)> {
    let mailbox = find_mailbox(dir, email, mailbox).await?;
    let entry = dir
        .store()
        .message_get(mailbox.id, uid)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no message with UID {uid} in {}", mailbox.name))?;
    Ok((mailbox, entry))
}

/// Stores imported messages in order, each durable before the next (see
/// [`AdminRequest::MailImport`]).
async fn import(
    dir: &Directory,
    email: &str,
    mailbox: &str,
    messages: Vec<TransferredMessage>,
    skip_duplicates: bool,
) -> anyhow::Result<ImportResult> {
    use base64::Engine;
    let account = account_of(dir, email).await?;
    let store = dir.store();
    let name = if mailbox.eq_ignore_ascii_case(INBOX) { INBOX } else { mailbox };
    let target = match store.mailbox_by_name(account.id, name).await? {
        Some(m) => m,
        None => store.mailbox_create(account.id, tern_store::NewMailbox::new(name, None)).await?,
    };
    // One import into a mailbox at a time: a request whose client went away (an import killed
    // mid-batch) still runs to its end, and the resumed import's duplicate check must see all
    // it stored.
    let lock = {
        static LOCKS: std::sync::LazyLock<
            std::sync::Mutex<std::collections::HashMap<tern_store::MailboxId, std::sync::Arc<tokio::sync::Mutex<()>>>>,
        > = std::sync::LazyLock::new(Default::default);
        let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| std::sync::Arc::strong_count(l) > 1);
        std::sync::Arc::clone(locks.entry(target.id).or_default())
    };
    let _serialized = lock.lock().await;
    let known: std::collections::HashSet<tern_store::BlobHash> = if skip_duplicates {
        store.message_list(target.id).await?.into_iter().map(|e| e.blob).collect()
    } else {
        Default::default()
    };
    let mut result = ImportResult::default();
    for m in messages {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&m.raw)
            .map_err(|e| anyhow::anyhow!("message is not base64: {e}"))?;
        let envelope = tern_store::DeliveryEnvelope {
            source: "import".into(),
            received_at: m.internal_date,
            authenticated_as: Some(account.address.clone()),
            ..Default::default()
        };
        let mailbox_target = tern_store::DeliveryTarget {
            account: account.id,
            mailbox: tern_store::MailboxSelector::Id(target.id),
            flags: m.flags,
            keywords: m.keywords,
        };
        let delivery =
            tokio::task::spawn_blocking(move || tern_store::Delivery::prepare(raw, envelope, vec![mailbox_target]))
                .await?;
        if known.contains(&delivery.hash) {
            result.duplicates += 1;
            continue;
        }
        let receipt = store.deliver(delivery).await?;
        if receipt.over_quota.is_empty() {
            result.imported += 1;
        } else {
            result.over_quota += 1;
        }
    }
    Ok(result)
}

/// Whose model a spam request is about.
async fn spam_owner(dir: &Directory, email: Option<&str>) -> anyhow::Result<tern_store::SpamModelOwner> {
    Ok(match email {
        Some(e) => tern_store::SpamModelOwner::Account(account_of(dir, e).await?.id),
        None => tern_store::SpamModelOwner::Global,
    })
}

/// The users' Sieve scripts (`tern sieve`), as ManageSieve keeps them.
async fn sieve_request(ctx: &AdminContext, req: AdminRequest) -> anyhow::Result<AdminReply> {
    use std::fmt::Write;
    let dir = &ctx.directory;
    let store = dir.store();
    let mut out = String::new();
    match req {
        AdminRequest::SieveList { email } => {
            let account = account_of(dir, &email).await?;
            for script in store.sieve_list(account.id).await? {
                let mark = if script.active { "\tactive" } else { "" };
                writeln!(out, "{}\t{} bytes{mark}", script.name, script.size)?;
            }
        }
        AdminRequest::SieveGet { email, name } => {
            let account = account_of(dir, &email).await?;
            let source =
                store.sieve_get(account.id, &name).await?.ok_or_else(|| anyhow::anyhow!("no script {name}"))?;
            out.push_str(&source);
        }
        AdminRequest::SievePut { email, name, source } => {
            let account = account_of(dir, &email).await?;
            tern_sieve::compile(&source).map_err(|e| anyhow::anyhow!("the script does not compile: {e}"))?;
            store.sieve_put(account.id, &name, &source).await?;
            writeln!(out, "stored {name} for {email}")?;
        }
        AdminRequest::SieveActivate { email, name } => {
            let account = account_of(dir, &email).await?;
            store.sieve_activate(account.id, name.as_deref()).await?;
            match name {
                Some(n) => writeln!(out, "{n} is the active script of {email}")?,
                None => writeln!(out, "{email} has no active script")?,
            }
        }
        AdminRequest::SieveDelete { email, name } => {
            let account = account_of(dir, &email).await?;
            store.sieve_delete(account.id, &name).await?;
            writeln!(out, "deleted {name}")?;
        }
        _ => anyhow::bail!("internal: request routed to sieve_request by mistake"),
    }
    Ok(AdminReply::ok(out))
}

/// REST API tokens (`tern token`).
async fn token_request(ctx: &AdminContext, req: AdminRequest) -> anyhow::Result<AdminReply> {
    use std::fmt::Write;
    let store = ctx.directory.store();
    let mut out = String::new();
    let scope_name = |s: tern_store::ApiScope| match s {
        tern_store::ApiScope::Read => "read",
        tern_store::ApiScope::Admin => "admin",
    };
    match req {
        AdminRequest::TokenCreate { name, scope } => {
            let (record, secret) = crate::api::make_token(&name, scope).map_err(|e| anyhow::anyhow!(e))?;
            if store.api_token_list().await?.iter().any(|t| t.name == name) {
                anyhow::bail!("a token named {name} exists (tern token remove {name} first)");
            }
            store.api_token_put(record).await?;
            writeln!(out, "token {name} (scope {}); send it as Authorization: Bearer <token>", scope_name(scope))?;
            writeln!(out, "{secret}")?;
        }
        AdminRequest::TokenList => {
            for t in store.api_token_list().await? {
                writeln!(out, "{}	{}	created={}", t.name, scope_name(t.scope), t.created)?;
            }
        }
        AdminRequest::TokenRemove { name } => {
            if !store.api_token_remove(&name).await? {
                anyhow::bail!("no token named {name}");
            }
            writeln!(out, "token {name} removed")?;
        }
        _ => anyhow::bail!("internal: request routed to token_request by mistake"),
    }
    Ok(AdminReply::ok(out))
}

/// Shared mailboxes (`tern share`): the ACLs IMAP clients change with SETACL.
async fn share_request(ctx: &AdminContext, req: AdminRequest) -> anyhow::Result<AdminReply> {
    use std::fmt::Write;
    use tern_store::{Identifier, Rights};
    let dir = &ctx.directory;
    let store = dir.store();
    let mut out = String::new();
    match req {
        AdminRequest::ShareSet { email, mailbox, identifier, rights } => {
            let account = account_of(dir, &email).await?;
            let m = store
                .mailbox_by_name(account.id, &mailbox)
                .await?
                .ok_or_else(|| anyhow::anyhow!("{email} has no mailbox {mailbox}"))?;
            let who = Identifier::parse(&identifier)
                .ok_or_else(|| anyhow::anyhow!("{identifier} is not an address, @domain, anyone or authenticated"))?;
            if who == Identifier::User(account.address.clone()) {
                anyhow::bail!("the owner always has every right");
            }
            let rights = Rights::parse(&rights).map_err(|c| anyhow::anyhow!("{c} is not a right (lrswipkxtea)"))?;
            let given = (!rights.is_empty()).then_some(rights);
            store.mailbox_set_acl(m.id, who.clone(), given).await?;
            match given {
                Some(r) => writeln!(out, "{who} has {} on {email} {mailbox}", r.letters())?,
                None => writeln!(out, "{who} has no rights on {email} {mailbox}")?,
            }
        }
        AdminRequest::ShareList { email, mailbox } => {
            let account = account_of(dir, &email).await?;
            for m in store.mailbox_list(account.id).await? {
                if mailbox.as_ref().is_some_and(|want| *want != m.name) || m.acl.is_empty() && mailbox.is_none() {
                    continue;
                }
                for entry in &m.acl {
                    writeln!(out, "{}\t{}\t{}", m.name, entry.identifier, entry.rights.letters())?;
                }
            }
            if mailbox.is_none() {
                for m in store.mailboxes_shared_with(Identifier::naming(&account.address)).await? {
                    if m.account == account.id {
                        continue;
                    }
                    let owner = store.account_get(m.account).await?.map(|a| a.address).unwrap_or_default();
                    let rights = tern_store::acl::rights_of(&account, &m);
                    writeln!(out, "shared with {email}: {owner} {}\t{}", m.name, rights.letters())?;
                }
            }
        }
        _ => anyhow::bail!("internal: request routed to share_request by mistake"),
    }
    Ok(AdminReply::ok(out))
}

async fn account_of(dir: &Directory, email: &str) -> anyhow::Result<tern_store::Account> {
    dir.user_get(email).await?.ok_or_else(|| anyhow::anyhow!("no user {email}"))
}

fn decode_message(b64: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| anyhow::anyhow!("message is not base64: {e}"))
}

/// A verdict in words: score, action and why, every reason, the classifier's strongest
/// features both ways, the thresholds.
pub fn explain(v: &tern_scan::Verdict) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "score {:.2}, action {}: {}", v.score, v.action.as_str(), v.because);
    let _ = write!(out, "thresholds: junk {:.1}", v.junk_threshold);
    if let Some(q) = v.quarantine_threshold {
        let _ = write!(out, ", quarantine {q:.1}");
    }
    match v.reject_threshold {
        Some(r) => {
            let _ = writeln!(out, ", reject {r:.1}");
        }
        None => out.push_str(", reject off\n"),
    }
    if let Some(why) = &v.abstained {
        let _ = writeln!(out, "classifier: abstained ({why})");
    }
    if let Some(j) = &v.judgement {
        let _ = writeln!(
            out,
            "classifier: spam probability {:.3} (models learnt {} spam, {} ham; {} features decided)",
            j.probability, j.spam_learned, j.ham_learned, j.clue_count
        );
        let (spam, ham) = j.top(10);
        for (title, list) in [("towards spam", spam), ("towards ham", ham)] {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(out, "  {title}:");
            for c in list {
                let _ = writeln!(out, "    {:.3}  {}  (in {} spam, {} ham)", c.probability, c.feature, c.spam, c.ham);
            }
        }
    }
    for s in &v.scanners {
        let _ = writeln!(out, "scanner {}: {:?} ({} ms)", s.scanner, s.outcome, s.millis);
    }
    let scored: Vec<&tern_scan::Reason> = v.reasons.iter().filter(|r| r.points != 0.0).collect();
    if !scored.is_empty() {
        let _ = writeln!(out, "points:");
        for r in scored {
            let _ = writeln!(out, "  {:+6.2}  {} ({})", r.points, r.name, r.source);
        }
    }
    out
}

/// The id people see for a queued message: its transaction id (the SMTP reply's `queued as`,
/// the `Received:` field's `id`, the logs' `queue_id`), or the queue's number for entries made
/// before messages carried one.
fn message_id(e: &tern_store::QueueEntry) -> String {
    e.message.envelope.transaction_id.clone().unwrap_or_else(|| e.message.id.to_string())
}

/// The queue's number for a message named by its id (or by the number itself).
async fn queue_number(dir: &Directory, id: &str) -> anyhow::Result<tern_store::QueueId> {
    let entries = dir.store().queue_list().await?;
    if let Some(e) = entries
        .iter()
        .find(|e| e.message.envelope.transaction_id.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(id)))
    {
        return Ok(e.message.id);
    }
    match id.parse::<tern_store::QueueId>() {
        Ok(n) if entries.iter().any(|e| e.message.id == n) => Ok(n),
        _ => anyhow::bail!("no queue entry {id}"),
    }
}
