//! Sieve at delivery: each local recipient's active script (RFC 5228) decides where that
//! account's copy goes — kept (in the mailbox the earlier stages chose, e.g. Junk), filed
//! into folders with flags, discarded, redirected, or refused. Runs after the scanners, so
//! `spamtest` and `virustest` (RFC 5235) read their verdict.
//!
//! A script that fails (over its budget, a runtime conflict) ends with the implicit keep:
//! the mail is never lost to a script. An admin's global script (`[sieve] before`) runs
//! before each user's own, as Dovecot's `sieve_before` does. Vacation replies (RFC 5230,
//! with RFC 3834's rules) and the ids `duplicate` remembers wait for the commit
//! ([`crate::FollowUp`]). A copy whose header a script edited (`editheader`) is stored as
//! edited, as a content of its own.

use crate::{FollowUp, MessageContext, Refusal, Stage, Verdict};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tern_directory::Directory;
use tern_sieve::{Action, Envelope, Host, Limits, Outcome, Script, VacationReply};
use tern_store::{AccountId, DeliveryTarget, Flags, MailboxSelector, Store, StoreChange};

/// Compiled active scripts by account (`None`: the account has none), dropped when the
/// account's data changes (on any node: the change feed reports it).
#[derive(Default)]
struct Scripts {
    by_account: Mutex<HashMap<AccountId, Option<Arc<Compiled>>>>,
}

/// An account's active script, compiled, with the account's other scripts compiled when it
/// may `include` them (RFC 6609), so that no message reads or compiles them again.
struct Compiled {
    script: Arc<Script>,
    includes: Arc<HashMap<String, Arc<Script>>>,
}

pub struct SieveFilter {
    store: Arc<dyn Store>,
    directory: Directory,
    scripts: Arc<Scripts>,
    limits: Limits,
    hostname: String,
    /// The admin's script run before every user's own.
    before: Option<Arc<Script>>,
    /// The admin's scripts for `include :global`.
    globals: Arc<HashMap<String, Arc<Script>>>,
    /// Signs vacation replies like submitted mail.
    signer: super::DkimSign,
}

impl SieveFilter {
    pub fn new(directory: Directory, hostname: &str) -> SieveFilter {
        let store = Arc::clone(directory.store());
        let scripts = Arc::new(Scripts::default());
        let weak = Arc::downgrade(&scripts);
        store.on_change(Arc::new(move |change: &StoreChange| {
            let Some(scripts) = weak.upgrade() else { return };
            let mut map = scripts.by_account.lock().unwrap_or_else(|p| p.into_inner());
            match change {
                StoreChange::Account { account } => {
                    map.remove(account);
                }
                StoreChange::Directory => map.clear(),
                _ => {}
            }
        }));
        SieveFilter {
            store,
            signer: super::DkimSign::new(directory.clone()),
            directory,
            scripts,
            limits: Limits::default(),
            hostname: hostname.to_string(),
            before: None,
            globals: Arc::default(),
        }
    }

    /// With the admin's scripts that `include :global` finds (RFC 6609 §3.2).
    pub fn with_globals(mut self, scripts: HashMap<String, Arc<Script>>) -> SieveFilter {
        self.globals = Arc::new(scripts);
        self
    }

    /// With the admin's global script, run before each user's own.
    pub fn with_before(mut self, script: Arc<Script>) -> SieveFilter {
        self.before = Some(script);
        self
    }

    /// The stage that gives forwarded copies a rewritten sender; it runs after this one
    /// (whose redirects it covers).
    pub fn sender_rewriting(&self) -> super::SenderRewriting {
        super::SenderRewriting { directory: self.directory.clone() }
    }

    /// The account's active script, compiled (once per change of it), with what it includes.
    async fn script(&self, account: AccountId) -> Option<Arc<Compiled>> {
        if let Some(cached) = self.scripts.by_account.lock().unwrap_or_else(|p| p.into_inner()).get(&account) {
            return cached.clone();
        }
        let script = match self.store.sieve_active(account).await {
            Ok(Some((name, source))) => match tern_sieve::compile(&source) {
                Ok(script) => Some(Arc::new(script)),
                Err(e) => {
                    // Stored scripts were checked on upload; a newer Tern may refuse an old one.
                    tracing::warn!(account, script = ?name, error = ?e.to_string(), "the active Sieve script does not compile; keeping mail");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(account, error = %e, "cannot read the active Sieve script; keeping mail");
                return None;
            }
        };
        let compiled = match script {
            Some(script) => {
                let mut includes = HashMap::new();
                if script.extensions.contains("include") {
                    for info in self.store.sieve_list(account).await.unwrap_or_default() {
                        if let Ok(Some(source)) = self.store.sieve_get(account, &info.name).await
                            && let Ok(s) = tern_sieve::compile(&source)
                        {
                            includes.insert(info.name, Arc::new(s));
                        }
                    }
                }
                Some(Arc::new(Compiled { script, includes: Arc::new(includes) }))
            }
            None => None,
        };
        self.scripts.by_account.lock().unwrap_or_else(|p| p.into_inner()).insert(account, compiled.clone());
        compiled
    }
}

/// What a script may look up, gathered before it runs (the interpreter does no I/O), and
/// the store for the one question that cannot be (the ids `duplicate` asks about): the run
/// is on the blocking pool, where waiting for the store is allowed.
struct Facts {
    /// Name, special use and id (RFC 9042 `mailboxid`, the store's id in decimal), read on
    /// the first test that needs them.
    mailboxes: std::sync::OnceLock<Vec<(String, Option<String>, u64)>>,
    includes: Arc<HashMap<String, Arc<Script>>>,
    globals: Arc<HashMap<String, Arc<Script>>>,
    spam: Option<(u8, u8)>,
    virus: Option<u8>,
    now: i64,
    account: AccountId,
    store: Arc<dyn Store>,
    runtime: tokio::runtime::Handle,
    /// On the session's task, where the store cannot be waited for: a question for it sets
    /// `needs_store` (the run is then done again on the blocking pool).
    inline: bool,
    needs_store: std::cell::Cell<bool>,
}

/// Steps a script may take on the session's own task (about a millisecond at most: a step is
/// a command or test, or 1,000 bytes scanned); more, and it runs on the blocking pool.
const INLINE_STEPS: u64 = 2_000;

/// The admin's script then the user's, as far as there are.
fn run_sequence(
    scripts: &(Option<Arc<Script>>, Option<Arc<Script>>),
    raw: &[u8],
    envelope: &Envelope,
    facts: &Facts,
    limits: &Limits,
) -> Outcome {
    let one = |s: &Script| tern_sieve::run(s, raw, envelope, facts, limits);
    match scripts {
        (Some(b), Some(o)) => tern_sieve::sequence(one(b), || one(o)),
        (Some(b), None) => one(b),
        (None, Some(o)) => one(o),
        (None, None) => Outcome::default(),
    }
}

/// The key under which a duplicate id of RFC 7352 is remembered.
fn duplicate_key(id: &str) -> String {
    format!("duplicate\u{1}{id}")
}

impl Facts {
    fn mailboxes(&self) -> &[(String, Option<String>, u64)] {
        if self.inline {
            self.needs_store.set(true);
            return &[];
        }
        self.mailboxes.get_or_init(|| match self.runtime.block_on(self.store.mailbox_list(self.account)) {
            Ok(list) => list.into_iter().map(|m| (m.name, m.special_use.map(|u| format!("{u:?}")), m.id)).collect(),
            Err(e) => {
                tracing::warn!(account = self.account, error = %e, "cannot list mailboxes for a Sieve test");
                Vec::new()
            }
        })
    }
}

impl Host for Facts {
    fn mailbox_id_exists(&self, id: &str) -> bool {
        id.parse::<u64>().is_ok_and(|id| self.mailboxes().iter().any(|m| m.2 == id))
    }
    fn seen(&self, id: &str) -> bool {
        if self.inline {
            self.needs_store.set(true);
            return false;
        }
        match self.runtime.block_on(self.store.sieve_seen(self.account, &duplicate_key(id), self.now)) {
            Ok(seen) => seen,
            Err(e) => {
                tracing::warn!(account = self.account, error = %e, "cannot read Sieve duplicate ids; taking the message as new");
                false
            }
        }
    }
    fn mailbox_exists(&self, name: &str) -> bool {
        self.mailboxes().iter().any(|(n, _, _)| n == name)
    }
    fn special_use_exists(&self, mailbox: Option<&str>, uses: &[String]) -> bool {
        let carries = |m: &(String, Option<String>, u64), u: &str| {
            m.1.as_deref().is_some_and(|s| u.trim_start_matches('\\').eq_ignore_ascii_case(s))
        };
        match mailbox {
            Some(name) => self.mailboxes().iter().filter(|m| m.0 == name).any(|m| uses.iter().all(|u| carries(m, u))),
            None => uses.iter().all(|u| self.mailboxes().iter().any(|m| carries(m, u))),
        }
    }
    fn include(&self, name: &str, global: bool) -> Result<Option<Arc<Script>>, String> {
        if global {
            return Ok(self.globals.get(name).cloned());
        }
        Ok(self.includes.get(name).cloned())
    }
    fn spam_score(&self) -> Option<(u8, u8)> {
        self.spam
    }
    fn virus_score(&self) -> Option<u8> {
        self.virus
    }
    fn now(&self) -> (i64, i32) {
        (self.now, 0)
    }
}

/// RFC 5235 levels from Tern's verdict: spam 1 (clean) to 10, the junk threshold at 6 and
/// the reject threshold (or twice the junk one) at 10; percent 0-100 with junk at 50; virus
/// 1 (clean) or 5 (infected) when a scanner looked, 0 when none did.
fn scan_levels(verdict: Option<&str>) -> (Option<(u8, u8)>, Option<u8>) {
    let Some(v) = verdict.and_then(|j| serde_json::from_str::<tern_scan::Verdict>(j).ok()) else { return (None, None) };
    let junk = v.junk_threshold.max(0.1);
    let top = v.reject_threshold.unwrap_or(junk * 2.0).max(junk + 0.1);
    let (level, percent) = if v.score < junk {
        let r = (v.score / junk).clamp(0.0, 1.0);
        (1.0 + r * 5.0, r * 50.0)
    } else {
        let r = ((v.score - junk) / (top - junk)).clamp(0.0, 1.0);
        (6.0 + r * 4.0, 50.0 + r * 50.0)
    };
    let virus = if v.scanners.is_empty() {
        None
    } else if v.action == tern_scan::Action::Reject && v.because.starts_with("virus") {
        Some(5)
    } else {
        Some(1)
    };
    (Some((level.floor() as u8, percent.round() as u8)), virus)
}

/// Sieve flags as the store's: system flags by name, the rest as keywords (valid atoms).
fn flags_of(list: &[String]) -> (Flags, Vec<String>) {
    let mut flags = Flags::default();
    let mut keywords = Vec::new();
    for f in list {
        match f.to_ascii_lowercase().as_str() {
            "\\seen" => flags.insert(Flags::SEEN),
            "\\answered" => flags.insert(Flags::ANSWERED),
            "\\flagged" => flags.insert(Flags::FLAGGED),
            "\\deleted" => flags.insert(Flags::DELETED),
            "\\draft" => flags.insert(Flags::DRAFT),
            _ if !f.starts_with('\\') && f.bytes().all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b)) => {
                keywords.push(f.clone())
            }
            _ => {}
        }
    }
    (flags, keywords)
}

/// The fields of a header section, unfolded: `(name, value)`.
fn header_fields(block: &[u8]) -> Vec<(String, String)> {
    tern_mime::structure::header_fields(block)
        .into_iter()
        .map(|f| {
            let name = String::from_utf8_lossy(f.name).trim().to_ascii_lowercase();
            (name, String::from_utf8_lossy(&tern_mime::structure::unfold(f.value)).into_owned())
        })
        .collect()
}

/// The addresses in an address-list field value (lower-cased), read loosely: every word
/// with an `@` between angle brackets, commas, quotes or spaces.
fn addresses_in(value: &str) -> Vec<String> {
    value
        .split(|c: char| c.is_whitespace() || "<>,;\"()".contains(c))
        .filter(|w| w.contains('@') && !w.starts_with('@') && !w.ends_with('@'))
        .map(str::to_ascii_lowercase)
        .collect()
}

/// `local+detail@domain` as `local@domain`.
fn without_detail(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{}@{domain}", local.split('+').next().unwrap_or(local)),
        None => address.to_string(),
    }
}

/// Why RFC 3834 §2 and RFC 5230 §4.5 forbid an automatic reply to this message, if they do.
fn vacation_refusal(fields: &[(String, String)], sender: &str, own: &[String]) -> Option<&'static str> {
    fn field<'a>(fields: &'a [(String, String)], name: &'static str) -> impl Iterator<Item = &'a str> {
        fields.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    let field = |name: &'static str| field(fields, name);
    if field("auto-submitted").any(|v| !v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("no")) {
        return Some("the message is Auto-Submitted");
    }
    if field("precedence").any(|v| ["bulk", "list", "junk"].iter().any(|p| v.eq_ignore_ascii_case(p))) {
        return Some("the message has Precedence bulk, list or junk");
    }
    const LIST: [&str; 7] =
        ["list-id", "list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner", "list-archive"];
    if fields.iter().any(|(n, _)| LIST.contains(&n.as_str())) {
        return Some("the message comes from a mailing list");
    }
    // Microsoft's equivalent of Auto-Submitted for out-of-office replies.
    if field("x-auto-response-suppress")
        .any(|v| v.split(',').any(|t| ["all", "oof", "autoreply"].contains(&t.trim().to_ascii_lowercase().as_str())))
    {
        return Some("the message asks for no automatic reply");
    }
    let sender = sender.to_ascii_lowercase();
    let local = sender.rsplit_once('@').map(|(l, _)| l).unwrap_or(&sender);
    if ["mailer-daemon", "listserv", "majordomo", "postmaster"].contains(&local)
        || local.starts_with("owner-")
        || local.ends_with("-request")
        || local.ends_with("-owner")
        || local.ends_with("-bounces")
    {
        return Some("the sender is a list or a mail system");
    }
    if own.contains(&sender) || own.contains(&without_detail(&sender)) {
        return Some("the sender is the user");
    }
    const RECIPIENT_FIELDS: [&str; 6] = ["to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"];
    let named = fields
        .iter()
        .filter(|(n, _)| RECIPIENT_FIELDS.contains(&n.as_str()))
        .flat_map(|(_, v)| addresses_in(v))
        .any(|a| own.contains(&a) || own.contains(&without_detail(&a)));
    if !named {
        return Some("none of the user's addresses is in To or Cc");
    }
    None
}

/// The reply of RFC 5230 §5: to the sender, from the user, marked auto-replied (RFC 3834 §5),
/// threaded under the original.
fn vacation_message(
    hostname: &str,
    fields: &[(String, String)],
    reply: &VacationReply,
    from: &str,
    now: i64,
) -> Vec<u8> {
    use mail_builder::MessageBuilder;
    use mail_builder::headers::raw::Raw;
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let clean = |s: &str| s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>();
    let subject = match &reply.subject {
        Some(s) => clean(s),
        // RFC 5230 §4.6: "Auto: " and the original subject.
        None => {
            let original = field("subject").map(|s| tern_mime::decode::encoded_words(&s)).unwrap_or_default();
            clean(&format!("Auto: {original}"))
        }
    };
    let mut builder = MessageBuilder::new()
        .from(from)
        .to(reply.to.as_str())
        .subject(subject)
        .date(now)
        .message_id(format!("vacation.{now}.{}@{hostname}", rand::random::<u64>()))
        .header("Auto-Submitted", Raw::new("auto-replied (vacation)"));
    if let Some(id) = field("message-id").map(|v| v.trim().to_string()).filter(|v| v.starts_with('<')) {
        let mut references = field("references").unwrap_or_default();
        references.push(' ');
        references.push_str(&id);
        builder = builder
            .header("In-Reply-To", Raw::new(clean(&id)))
            .header("References", Raw::new(clean(references.trim())));
    }
    if !reply.mime {
        return builder.text_body(reply.reason.clone()).write_to_vec().unwrap_or_default();
    }
    // `:mime`: the reason is a MIME entity, its own header fields and body (RFC 5230 §4.7).
    let whole = builder.text_body(String::new()).write_to_vec().unwrap_or_default();
    let end = whole.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 2).unwrap_or(whole.len());
    let mut out: Vec<u8> = String::from_utf8_lossy(&whole[..end])
        .split_inclusive("\r\n")
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("content-type:") && !l.starts_with("content-transfer-encoding:")
        })
        .collect::<String>()
        .into_bytes();
    let entity = reply.reason.replace("\r\n", "\n").replace('\n', "\r\n");
    let entity = entity.trim_start_matches("\r\n");
    if !entity.contains("\r\n\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(entity.as_bytes());
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl SieveFilter {
    /// The script outcome for one account: the admin's script then the user's own.
    async fn run_scripts(
        &self,
        ctx: &MessageContext,
        raw: &Arc<Vec<u8>>,
        index: usize,
        account: AccountId,
        own: Option<Arc<Compiled>>,
    ) -> Option<Outcome> {
        let (spam, virus) = scan_levels(ctx.scan_verdict.as_deref());
        let includes = own.as_ref().map(|c| Arc::clone(&c.includes)).unwrap_or_default();
        let facts = |inline: bool| Facts {
            mailboxes: std::sync::OnceLock::new(),
            includes: Arc::clone(&includes),
            globals: Arc::clone(&self.globals),
            spam,
            virus,
            now: tern_store::now_unix(),
            account,
            store: Arc::clone(&self.store),
            runtime: tokio::runtime::Handle::current(),
            inline,
            needs_store: std::cell::Cell::new(false),
        };
        let envelope = Envelope {
            from: ctx.mail_from.clone(),
            to: ctx.recipients[index].address.clone(),
            auth: ctx.session.authenticated_as.clone(),
        };
        let scripts = (self.before.clone(), own.map(|c| Arc::clone(&c.script)));
        // Most scripts are a few dozen header tests: run here, on a small budget, rather than
        // pay the hand-over to the blocking pool and back (more than the run itself). A script
        // that wants the store, uses regular expressions or body tests (regex compilation and
        // body decoding happen before the steps count them) or outgrows the budget runs again
        // on the blocking pool in full.
        let heavy = [&scripts.0, &scripts.1]
            .into_iter()
            .flatten()
            .any(|s| s.extensions.contains("regex") || s.extensions.contains("body"));
        if !heavy {
            let inline = facts(true);
            let limits = Limits { steps: INLINE_STEPS, ..self.limits.clone() };
            let started = std::time::Instant::now();
            let outcome = run_sequence(&scripts, raw, &envelope, &inline, &limits);
            let over = matches!(outcome.error, Some(tern_sieve::RuntimeError::Budget(_)));
            if !over && !inline.needs_store.get() {
                metrics::histogram!("tern_sieve_run_seconds").record(started.elapsed().as_secs_f64());
                return Some(outcome);
            }
        }
        let (raw, limits, facts) = (Arc::clone(raw), self.limits.clone(), facts(false));
        let run = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let outcome = run_sequence(&scripts, &raw, &envelope, &facts, &limits);
            metrics::histogram!("tern_sieve_run_seconds").record(started.elapsed().as_secs_f64());
            outcome
        });
        match run.await {
            Ok(outcome) => Some(outcome),
            Err(e) => {
                tracing::error!(account, error = %e, "the Sieve run failed; keeping mail");
                None
            }
        }
    }

    /// A vacation reply, if RFC 3834 and the script's period allow one now: the message
    /// and the id to remember until the period ends.
    async fn vacation(
        &self,
        fields: &[(String, String)],
        account: AccountId,
        recipient: &str,
        reply: &VacationReply,
    ) -> Option<(Vec<u8>, Option<(String, i64)>)> {
        let account_address = match self.store.account_get(account).await {
            Ok(Some(a)) => a.address.to_ascii_lowercase(),
            _ => return None,
        };
        let mut own: Vec<String> = vec![account_address.clone(), recipient.to_ascii_lowercase()];
        own.extend(reply.addresses.iter().flat_map(|a| addresses_in(&format!(" {a} "))));
        if let Some(why) = vacation_refusal(fields, &reply.to, &own) {
            tracing::info!(account, to = ?reply.to, why, "no vacation reply");
            return None;
        }
        let now = tern_store::now_unix();
        let key = format!("vacation\u{1}{}\u{1}{}", reply.handle, reply.to.to_ascii_lowercase());
        if reply.period > 0 {
            match self.store.sieve_seen(account, &key, now).await {
                Ok(false) => {}
                Ok(true) => {
                    tracing::info!(account, to = ?reply.to, "no vacation reply: answered within the period");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(account, error = %e, "cannot read vacation replies sent; not replying");
                    return None;
                }
            }
        }
        // `:from` must be the user's (or of the recipient's domain): a script cannot send as
        // someone else.
        let recipient_domain = recipient.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        let from = reply
            .from
            .as_deref()
            .and_then(|f| addresses_in(&format!(" {f} ")).into_iter().next())
            .filter(|a| own.contains(a) || a.rsplit_once('@').is_some_and(|(_, d)| d == recipient_domain))
            .unwrap_or_else(|| recipient.to_string());
        let message = vacation_message(&self.hostname, fields, reply, &from, now);
        let message = self.signer.sign_message(message).await;
        let period = i64::try_from(reply.period).unwrap_or(i64::MAX);
        Some((message, (reply.period > 0).then(|| (key, now.saturating_add(period)))))
    }

    /// The report to the sender for a recipient whose script refused the message after
    /// others took it (RFC 5429 §2.1: a DSN when it cannot be refused at SMTP time).
    fn refusal_report(&self, ctx: &MessageContext, raw: &[u8], recipient: &str, reason: &str) -> Vec<u8> {
        let message = tern_store::QueuedMessage {
            id: 0,
            blob: tern_store::BlobHash([0; 32]),
            size: raw.len() as u64,
            envelope: tern_store::DeliveryEnvelope {
                mail_from: ctx.mail_from.clone(),
                ret: ctx.ret,
                envid: ctx.envid.clone(),
                received_at: ctx.received_at,
                ..Default::default()
            },
            created: ctx.received_at,
        };
        let queued = tern_store::QueuedRecipient {
            address: recipient.to_string(),
            domain: recipient.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default(),
            orcpt: None,
            notify: None,
            sender: None,
            status: tern_store::RecipientStatus::Failed,
            attempts: 1,
            last_result: None,
            remote_mta: None,
            next_attempt: ctx.received_at,
            delay_notified: false,
        };
        let first_line: String =
            reason.lines().next().unwrap_or("rejected").chars().filter(|c| !c.is_control()).collect();
        let lines = [crate::dsn::ReportedRecipient {
            recipient: &queued,
            action: crate::dsn::Action::Failed,
            status: "5.7.1".into(),
            diagnostic: Some(format!("550 5.7.1 {first_line}")),
        }];
        crate::dsn::build(&self.hostname, &message, raw, &lines, tern_store::now_unix(), None)
    }
}

#[async_trait]
impl Stage for SieveFilter {
    fn name(&self) -> &'static str {
        "sieve"
    }

    async fn process(&self, ctx: &mut MessageContext) -> Verdict {
        // The scripts of the local accounts this message reaches.
        let mut runs: Vec<(usize, AccountId, Option<Arc<Compiled>>)> = Vec::new();
        for (i, r) in ctx.recipients.iter().enumerate() {
            for account in &r.accounts {
                let own = self.script(*account).await;
                if own.is_some() || self.before.is_some() {
                    runs.push((i, *account, own));
                }
            }
        }
        if runs.is_empty() {
            return Verdict::Continue;
        }
        let raw = Arc::new(ctx.final_message());
        let mut fields: Option<Vec<(String, String)>> = None;
        let mut rejected: Vec<(usize, String)> = Vec::new();
        let mut runs_done = 0usize;
        for (i, account, own) in runs {
            let Some(outcome) = self.run_scripts(ctx, &raw, i, account, own).await else { continue };
            runs_done += 1;
            metrics::counter!("tern_sieve_runs_total").increment(1);
            if let Some(e) = &outcome.error {
                metrics::counter!("tern_sieve_errors_total").increment(1);
                tracing::warn!(account, error = ?e.to_string(), steps = outcome.steps, "Sieve script ended early; implicit keep");
            }
            let now = tern_store::now_unix();
            let mut remember: Vec<(String, i64)> = outcome
                .duplicates
                .iter()
                .map(|(id, seconds)| {
                    (duplicate_key(id), now.saturating_add(i64::try_from(*seconds).unwrap_or(i64::MAX)))
                })
                .collect();
            let mut targets = Vec::new();
            let outcome_header = outcome.header;
            for action in outcome.actions {
                let recipient = &mut ctx.recipients[i];
                match action {
                    Action::Keep { flags } => {
                        let (f, k) = flags_of(&flags);
                        let mut keywords = recipient.keywords.clone();
                        keywords.extend(k);
                        targets.push(DeliveryTarget {
                            account,
                            mailbox: recipient.mailbox.clone(),
                            flags: recipient.flags.union(f),
                            keywords,
                        });
                    }
                    Action::FileInto { mailbox, flags, create, special_use, mailbox_id } => {
                        // RFC 9042 §4.1 `:mailboxid`, RFC 8579 §4 `:specialuse`: that mailbox
                        // when it exists, else the one named.
                        let mailbox = match (mailbox_id, special_use) {
                            (None, None) => mailbox,
                            (id, usage) => {
                                let list = self.store.mailbox_list(account).await.unwrap_or_default();
                                let by_id = id
                                    .and_then(|i| i.parse::<u64>().ok())
                                    .and_then(|i| list.iter().find(|m| m.id == i));
                                let by_use = usage.and_then(|u| {
                                    list.iter().find(|m| {
                                        m.special_use.is_some_and(|s| {
                                            format!("{s:?}").eq_ignore_ascii_case(u.trim_start_matches('\\'))
                                        })
                                    })
                                });
                                by_id.or(by_use).map(|m| m.name.clone()).unwrap_or(mailbox)
                            }
                        };
                        if create
                            && let Ok(None) = self.store.mailbox_by_name(account, &mailbox).await
                            && let Err(e) =
                                self.store.mailbox_create(account, tern_store::NewMailbox::new(&mailbox, None)).await
                        {
                            tracing::warn!(account, mailbox = ?mailbox, error = %e, "fileinto :create failed");
                        }
                        let (f, keywords) = flags_of(&flags);
                        targets.push(DeliveryTarget {
                            account,
                            mailbox: MailboxSelector::Name(mailbox),
                            flags: f,
                            keywords,
                        });
                    }
                    Action::Redirect { address } => {
                        if !recipient.remote.iter().any(|a| a.eq_ignore_ascii_case(&address)) {
                            recipient.remote.push(address);
                        }
                    }
                    Action::Reject { reason, .. } => rejected.push((i, reason)),
                    Action::Discard => {}
                    Action::Vacation(reply) => {
                        let to = recipient.address.clone();
                        let fields = fields.get_or_insert_with(|| header_fields(ctx.header_block()));
                        if let Some((message, record)) = self.vacation(fields, account, &to, &reply).await {
                            tracing::info!(account, to = ?reply.to, "Sieve vacation reply");
                            metrics::counter!("tern_sieve_vacation_replies_total").increment(1);
                            ctx.follow_ups.push(FollowUp::Send { to: reply.to.clone(), message });
                            remember.extend(record);
                        }
                    }
                }
            }
            if !remember.is_empty() {
                ctx.follow_ups.push(FollowUp::Remember { account, ids: remember });
            }
            if let Some(fields) = &outcome_header {
                // RFC 5293: the stored copy carries the header as the script left it.
                let body = &raw[tern_mime::text::header_len(&raw).min(raw.len())..];
                let mut content = Vec::with_capacity(raw.len());
                for (name, value) in fields {
                    content.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
                }
                content.extend_from_slice(b"\r\n");
                content.extend_from_slice(body);
                ctx.edited.push((account, content));
            }
            tracing::info!(account, copies = targets.len(), "Sieve filed the message");
            ctx.recipients[i].filed.push((account, targets));
        }
        // RFC 5429 §2.1: a refusal at SMTP time where it is everyone's; otherwise the
        // others get the message and the sender a report for the refusing ones.
        let total: usize = ctx.recipients.iter().map(|r| r.accounts.len() + r.remote.len()).sum();
        if !rejected.is_empty() && rejected.len() == runs_done && rejected.len() == total {
            let reason = rejected.swap_remove(0).1;
            return Verdict::Reject(Refusal::new(
                550,
                (5, 7, 1),
                reason.lines().next().unwrap_or("rejected").to_string(),
            ));
        }
        if let Some(sender) = ctx.mail_from.clone() {
            for (i, reason) in rejected {
                let report = self.refusal_report(ctx, &raw, &ctx.recipients[i].address, &reason);
                ctx.follow_ups.push(FollowUp::Send { to: sender.clone(), message: report });
            }
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<(String, String)> {
        header_fields(text.as_bytes())
    }

    #[test]
    fn vacation_follows_rfc_3834() {
        let own = vec!["alice@example.test".to_string()];
        let plain = "From: Dave <dave@origin.test>\r\nTo: Alice <Alice@Example.test>\r\nSubject: hi\r\n\r\n";
        assert_eq!(vacation_refusal(&fields(plain), "dave@origin.test", &own), None);
        // Named in Cc, folded, or with a detail.
        let cc = "From: d@origin.test\r\nTo: x@y.test\r\nCc: someone@y.test,\r\n alice+work@example.test\r\n\r\n";
        assert_eq!(vacation_refusal(&fields(cc), "d@origin.test", &own), None);
        for (header, sender) in [
            ("Auto-Submitted: auto-replied\r\nTo: alice@example.test\r\n", "d@origin.test"),
            ("Precedence: bulk\r\nTo: alice@example.test\r\n", "d@origin.test"),
            ("List-Id: <x.lists.test>\r\nTo: alice@example.test\r\n", "d@origin.test"),
            ("X-Auto-Response-Suppress: OOF, AutoReply\r\nTo: alice@example.test\r\n", "d@origin.test"),
            ("To: alice@example.test\r\n", "MAILER-DAEMON@origin.test"),
            ("To: alice@example.test\r\n", "owner-list@origin.test"),
            ("To: alice@example.test\r\n", "list-request@origin.test"),
            ("To: alice@example.test\r\n", "alice@example.test"),
            ("To: undisclosed-recipients:;\r\n", "d@origin.test"),
        ] {
            let text = format!("{header}Subject: x\r\n\r\n");
            assert!(vacation_refusal(&fields(&text), sender, &own).is_some(), "{header} from {sender}");
        }
        let fine = "Auto-Submitted: no\r\nTo: alice@example.test\r\n\r\n";
        assert_eq!(vacation_refusal(&fields(fine), "d@origin.test", &own), None);
    }

    #[test]
    fn vacation_reply_is_marked_and_threaded() {
        let original = fields("Message-ID: <m1@origin.test>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n");
        let reply = VacationReply {
            to: "dave@origin.test".into(),
            from: None,
            subject: None,
            reason: "Away until Monday.".into(),
            mime: false,
            handle: String::new(),
            period: 86_400,
            addresses: vec![],
        };
        let text =
            String::from_utf8(vacation_message("mx.example.test", &original, &reply, "alice@example.test", 0)).unwrap();
        assert!(text.contains("Auto-Submitted: auto-replied (vacation)\r\n"), "{text}");
        assert!(text.contains("In-Reply-To: <m1@origin.test>\r\n"), "{text}");
        assert!(text.contains("References: <m1@origin.test>\r\n"), "{text}");
        assert!(text.contains("To: <dave@origin.test>") || text.contains("To: dave@origin.test"), "{text}");
        assert!(text.contains("Away until Monday."), "{text}");
        let parsed = mail_parser::MessageParser::new().parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.subject(), Some("Auto: Grüße"));
        // :mime: the reason is the entity.
        let mime = VacationReply {
            mime: true,
            reason: "Content-Type: text/html; charset=utf-8\n\n<p>Away</p>\n".into(),
            subject: Some("Out".into()),
            ..reply
        };
        let text =
            String::from_utf8(vacation_message("mx.example.test", &original, &mime, "alice@example.test", 0)).unwrap();
        let parsed = mail_parser::MessageParser::new().parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.html_body_count(), 1, "{text}");
        assert_eq!(text.matches("Content-Type:").count(), 1, "{text}");
        assert!(text.contains("<p>Away</p>\r\n"), "{text}");
    }

    #[test]
    fn flags_and_keywords() {
        let (f, k) = flags_of(&["\\Seen".into(), "\\flagged".into(), "$Work".into(), "\\Bogus".into(), "a(b".into()]);
        assert!(f.contains(Flags::SEEN) && f.contains(Flags::FLAGGED) && !f.contains(Flags::DRAFT));
        assert_eq!(k, ["$Work"]);
    }
}
