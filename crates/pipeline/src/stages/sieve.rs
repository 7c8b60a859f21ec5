//! Sieve at delivery: each local recipient's active script (RFC 5228) decides where that
//! account's copy goes — kept (in the mailbox the earlier stages chose, e.g. Junk), filed
//! into folders with flags, discarded, redirected, or refused. Runs after the scanners, so
//! `spamtest` and `virustest` (RFC 5235) read their verdict.
//!
//! A script that fails (over its budget, a runtime conflict) ends with the implicit keep:
//! the mail is never lost to a script. Not yet done at delivery (issue 15): vacation replies,
//! duplicate tracking, editheader changes to the stored copy, SRS on redirects.

use crate::{MessageContext, Refusal, Stage, Verdict};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tern_sieve::{Action, Envelope, Host, Limits, Script};
use tern_store::{AccountId, DeliveryTarget, Flags, MailboxSelector, Store, StoreChange};

/// Compiled active scripts by account (`None`: the account has none), dropped when the
/// account's data changes (on any node: the change feed reports it).
#[derive(Default)]
struct Scripts {
    by_account: Mutex<HashMap<AccountId, Option<Arc<Script>>>>,
}

pub struct SieveFilter {
    store: Arc<dyn Store>,
    scripts: Arc<Scripts>,
    limits: Limits,
}

impl SieveFilter {
    pub fn new(store: Arc<dyn Store>) -> SieveFilter {
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
        SieveFilter { store, scripts, limits: Limits::default() }
    }

    /// The account's active script, compiled (once per change of it).
    async fn script(&self, account: AccountId) -> Option<Arc<Script>> {
        if let Some(cached) = self.scripts.by_account.lock().unwrap_or_else(|p| p.into_inner()).get(&account) {
            return cached.clone();
        }
        let compiled = match self.store.sieve_active(account).await {
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
        self.scripts.by_account.lock().unwrap_or_else(|p| p.into_inner()).insert(account, compiled.clone());
        compiled
    }
}

/// What a script may look up, gathered before it runs (the interpreter does no I/O).
struct Facts {
    mailboxes: Vec<(String, Option<String>)>,
    includes: HashMap<String, Arc<Script>>,
    spam: Option<(u8, u8)>,
    virus: Option<u8>,
    now: i64,
}

impl Host for Facts {
    fn mailbox_exists(&self, name: &str) -> bool {
        self.mailboxes.iter().any(|(n, _)| n == name)
    }
    fn special_use_exists(&self, mailbox: Option<&str>, uses: &[String]) -> bool {
        let carries = |m: &(String, Option<String>), u: &str| {
            m.1.as_deref().is_some_and(|s| u.trim_start_matches('\\').eq_ignore_ascii_case(s))
        };
        match mailbox {
            Some(name) => self.mailboxes.iter().filter(|m| m.0 == name).any(|m| uses.iter().all(|u| carries(m, u))),
            None => uses.iter().all(|u| self.mailboxes.iter().any(|m| carries(m, u))),
        }
    }
    fn include(&self, name: &str, global: bool) -> Result<Option<Arc<Script>>, String> {
        if global {
            return Ok(None);
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

#[async_trait]
impl Stage for SieveFilter {
    fn name(&self) -> &'static str {
        "sieve"
    }

    async fn process(&self, ctx: &mut MessageContext) -> Verdict {
        // The scripts of the local accounts this message reaches.
        let mut runs: Vec<(usize, AccountId, Arc<Script>)> = Vec::new();
        for (i, r) in ctx.recipients.iter().enumerate() {
            for account in &r.accounts {
                if let Some(script) = self.script(*account).await {
                    runs.push((i, *account, script));
                }
            }
        }
        if runs.is_empty() {
            return Verdict::Continue;
        }
        let raw = Arc::new(ctx.final_message());
        let (spam, virus) = scan_levels(ctx.scan_verdict.as_deref());
        let mut rejected: Vec<String> = Vec::new();
        let mut runs_done = 0usize;
        for (i, account, script) in runs {
            let needs = |ext: &str| script.extensions.contains(ext);
            let mailboxes = if needs("mailbox") || needs("special-use") {
                match self.store.mailbox_list(account).await {
                    Ok(list) => list.into_iter().map(|m| (m.name, m.special_use.map(|u| format!("{u:?}")))).collect(),
                    Err(_) => Vec::new(),
                }
            } else {
                Vec::new()
            };
            let mut includes = HashMap::new();
            if needs("include") {
                for info in self.store.sieve_list(account).await.unwrap_or_default() {
                    if let Ok(Some(source)) = self.store.sieve_get(account, &info.name).await
                        && let Ok(s) = tern_sieve::compile(&source)
                    {
                        includes.insert(info.name, Arc::new(s));
                    }
                }
            }
            let facts = Facts { mailboxes, includes, spam, virus, now: tern_store::now_unix() };
            let r = &ctx.recipients[i];
            let envelope = Envelope {
                from: ctx.mail_from.clone(),
                to: r.address.clone(),
                auth: ctx.session.authenticated_as.clone(),
            };
            let (raw_for_run, limits) = (Arc::clone(&raw), self.limits.clone());
            let outcome =
                tokio::task::spawn_blocking(move || tern_sieve::run(&script, &raw_for_run, &envelope, &facts, &limits))
                    .await;
            let Ok(outcome) = outcome else {
                tracing::error!(account, "the Sieve run failed; keeping mail");
                continue;
            };
            runs_done += 1;
            metrics::counter!("tern_sieve_runs_total").increment(1);
            if let Some(e) = &outcome.error {
                metrics::counter!("tern_sieve_errors_total").increment(1);
                tracing::warn!(account, error = ?e.to_string(), steps = outcome.steps, "Sieve script ended early; implicit keep");
            }
            let recipient = &mut ctx.recipients[i];
            let mut targets = Vec::new();
            for action in outcome.actions {
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
                    Action::FileInto { mailbox, flags, create, .. } => {
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
                    Action::Reject { reason, .. } => rejected.push(reason),
                    Action::Discard => {}
                    // Not sent yet (issue 15): logged so the admin sees the script asked.
                    Action::Vacation(reply) => {
                        tracing::info!(account, to = ?reply.to, "Sieve vacation reply not sent (not implemented yet)")
                    }
                }
            }
            tracing::info!(account, copies = targets.len(), "Sieve filed the message");
            recipient.filed.push((account, targets));
        }
        // RFC 5429 §2.1: a refusal at SMTP time where it is everyone's.
        let total: usize = ctx.recipients.iter().map(|r| r.accounts.len() + r.remote.len()).sum();
        if !rejected.is_empty() && rejected.len() == runs_done && rejected.len() == total {
            let reason = rejected.swap_remove(0);
            return Verdict::Reject(Refusal::new(
                550,
                (5, 7, 1),
                reason.lines().next().unwrap_or("rejected").to_string(),
            ));
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_keywords() {
        let (f, k) = flags_of(&["\\Seen".into(), "\\flagged".into(), "$Work".into(), "\\Bogus".into(), "a(b".into()]);
        assert!(f.contains(Flags::SEEN) && f.contains(Flags::FLAGGED) && !f.contains(Flags::DRAFT));
        assert_eq!(k, ["$Work"]);
    }
}
