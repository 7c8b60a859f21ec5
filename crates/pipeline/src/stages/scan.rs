//! Content scanning: the outside scanners (clamd, rspamd, HTTP) asked concurrently with Tern's
//! classifier, and with the heuristic rules added up to one verdict (`tern_scan::verdict`),
//! recorded in an `X-Tern-Spam:` header and with the delivery, and acted on:
//!
//! - a virus: `554 5.7.1` (or, as configured per scanner, quarantine or discard);
//! - spam: Junk per recipient when that recipient's own verdict says so; `550 5.7.1` only
//!   when every recipient's verdict says so (a shared message is never refused for the one
//!   who wants it);
//! - a scanner that failed: `451 4.7.1` or accepted with the failure noted, as configured;
//!   one over its size: accepted, `451 4.7.1` or `552 5.3.4`, as configured.
//!
//! `X-Tern-Spam` fields already in the message are removed first: nobody outside may speak for
//! //! this server. Authenticated submissions are scanned for viruses only (a virus sent by a
//! user is refused and logged as an alert: the account may be compromised).

use crate::alerts::{Alert, Alerts};
use crate::spam::SpamFilter;
use crate::{MessageContext, Refusal, Stage, Verdict};
use async_trait::async_trait;
use std::sync::Arc;
use tern_scan::classifier::Features;
use tern_scan::scanner::{ConfiguredScanner, FailureMode, ScanRequest, TooLargeMode, scan_all};
use tern_scan::verdict::{Action, RuleInput, ScannerOutcome, ScannerResult, Thresholds, decide};
use tern_scan::{Facts, Verdict as ScanVerdict};
use tern_store::{MailboxSelector, SpecialUse};

pub const HEADER: &str = "X-Tern-Spam";

/// Messages up to this size are read on the session's task; larger ones on the blocking pool.
const INLINE_MAX: usize = 64 * 1024;

pub struct ContentScan {
    /// Tern's classifier and rules; `None` when `[spam] enabled = false`.
    pub filter: Option<Arc<SpamFilter>>,
    pub scanners: Vec<ConfiguredScanner>,
    pub thresholds: Thresholds,
    /// Where virus finds and scanner failures are reported, when configured.
    pub alerts: Option<Arc<Alerts>>,
}

/// The facts a message arrived with, as the classifier and rules read them.
pub fn arrival_facts(ctx: &MessageContext) -> Facts {
    let mut facts = ctx.auth_results.as_deref().map(Facts::from_authentication_results).unwrap_or_default();
    facts.dnsbl = ctx.session.dnsbl.clone();
    facts.tls = ctx.session.tls.is_some();
    facts.authenticated = ctx.session.authenticated_as.is_some();
    facts
}

/// Features of a message, off the session's task when it is large.
pub async fn features_of(message: Arc<Vec<u8>>, facts: Facts) -> Features {
    if message.len() <= INLINE_MAX {
        return Features::extract(&message, &facts);
    }
    let fallback = facts.clone();
    match tokio::task::spawn_blocking(move || Features::extract(&message, &facts)).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "feature extraction task failed");
            Features::extract(b"", &fallback)
        }
    }
}

/// Lends the message to the scanners and the classifier without copying it (a message may be
/// tens of megabytes); [`take_back`] returns it once they are done.
fn lend(ctx: &mut MessageContext) -> Arc<Vec<u8>> {
    Arc::new(std::mem::take(&mut ctx.message))
}

/// Puts the lent message back. Every scanner task and the feature extraction have finished,
/// so this is the last reference; a copy is made only if one were still held.
fn take_back(ctx: &mut MessageContext, message: Arc<Vec<u8>>) {
    ctx.message = Arc::try_unwrap(message).unwrap_or_else(|shared| shared.as_ref().clone());
}

fn scan_request(ctx: &MessageContext, message: Arc<Vec<u8>>) -> ScanRequest {
    ScanRequest {
        message,
        client_ip: Some(ctx.session.client_ip),
        helo: ctx.session.helo.clone(),
        mail_from: ctx.mail_from.clone(),
        recipients: ctx.recipients.iter().map(|r| r.address.clone()).collect(),
        authenticated_as: ctx.session.authenticated_as.clone(),
        queue_id: ctx.queue_id.clone(),
    }
}

impl ContentScan {
    fn alert(&self, alert: Alert) {
        if let Some(alerts) = &self.alerts {
            alerts.raise(alert);
        }
    }

    async fn verdict_for(
        &self,
        features: Option<&Features>,
        facts: &Facts,
        account: Option<tern_store::AccountId>,
        scanners: &[ScannerResult],
    ) -> ScanVerdict {
        let (judgement, abstained) = match (&self.filter, features) {
            (Some(filter), Some(features)) => match filter.judge(features, account).await {
                Ok(Ok(j)) => (Some(j), None),
                Ok(Err(why)) => (None, Some(why)),
                Err(e) => {
                    tracing::warn!(error = %e, "spam model unavailable; judging by rules alone");
                    (None, Some(format!("model unavailable: {e}")))
                }
            },
            _ => (None, None),
        };
        // Without the classifier (`[spam] enabled = false`) the rules are off too: only the
        // scanners count.
        let no_facts = Facts::default();
        let rules = match features {
            Some(f) if self.filter.is_some() => RuleInput { facts, meta: f.meta() },
            _ => RuleInput { facts: &no_facts, meta: &[] },
        };
        decide(judgement, abstained, &rules, scanners.to_vec(), &self.thresholds)
    }

    /// A failed or over-size scanner whose policy refuses the message now.
    fn refusal_for_scanner_trouble(&self, ctx: &MessageContext, results: &[ScannerResult]) -> Option<Verdict> {
        for (result, configured) in results.iter().zip(&self.scanners) {
            match &result.outcome {
                ScannerOutcome::Failed { error } => {
                    metrics::counter!("tern_scanner_failures_total", "scanner" => result.scanner.clone()).increment(1);
                    tracing::warn!(queue_id = %ctx.queue_id, scanner = %result.scanner, error = ?error, alert = true, "scanner failed");
                    self.alert(Alert {
                        kind: "scanner_failed",
                        key: result.scanner.clone(),
                        summary: format!("scanner {} failed: {error}", result.scanner),
                        details: vec![
                            ("scanner".into(), result.scanner.clone()),
                            ("error".into(), error.clone()),
                            (
                                "action".into(),
                                match configured.on_failure {
                                    FailureMode::Tempfail => "mail is refused with 451 until it answers".into(),
                                    FailureMode::Accept => "mail is accepted without this scanner".into(),
                                },
                            ),
                            ("queue_id".into(), ctx.queue_id.clone()),
                        ],
                    });
                    if configured.on_failure == FailureMode::Tempfail {
                        return Some(Verdict::Defer(Refusal::new(
                            451,
                            (4, 7, 1),
                            "Content scanner unavailable, try again later",
                        )));
                    }
                }
                ScannerOutcome::TooLarge => match configured.on_too_large {
                    TooLargeMode::Accept => {
                        tracing::info!(queue_id = %ctx.queue_id, scanner = %result.scanner, "message too large for the scanner; accepted unscanned by it");
                    }
                    TooLargeMode::Tempfail => {
                        return Some(Verdict::Defer(Refusal::new(
                            451,
                            (4, 7, 1),
                            "Message too large for the content scanner, try again later",
                        )));
                    }
                    TooLargeMode::Reject => {
                        return Some(Verdict::Reject(Refusal::new(
                            552,
                            (5, 3, 4),
                            "Message too large for the content scanner",
                        )));
                    }
                },
                _ => {}
            }
        }
        None
    }
}

fn virus_names(results: &[ScannerResult]) -> Option<String> {
    let names: Vec<String> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            ScannerOutcome::Virus { names } => Some(names.join(" ")),
            _ => None,
        })
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

#[async_trait]
impl Stage for ContentScan {
    fn name(&self) -> &'static str {
        "scan"
    }

    async fn process(&self, ctx: &mut MessageContext) -> Verdict {
        ctx.remove_header_fields(HEADER);
        let started = std::time::Instant::now();
        let submission = ctx.session.authenticated_as.is_some();

        if submission {
            // Viruses only; a virus from a user is an alert (a compromised account?).
            let scanners: Vec<ConfiguredScanner> =
                self.scanners.iter().filter(|s| s.scan_submissions).cloned().collect();
            if scanners.is_empty() {
                return Verdict::Continue;
            }
            let message = lend(ctx);
            let results = scan_all(&scanners, Arc::new(scan_request(ctx, Arc::clone(&message)))).await;
            take_back(ctx, message);
            let configured = ContentScan {
                filter: None,
                scanners,
                thresholds: self.thresholds.clone(),
                alerts: self.alerts.clone(),
            };
            if let Some(refusal) = configured.refusal_for_scanner_trouble(ctx, &results) {
                return refusal;
            }
            if let Some(names) = virus_names(&results) {
                metrics::counter!("tern_virus_found_total", "direction" => "outbound").increment(1);
                tracing::warn!(
                    queue_id = %ctx.queue_id,
                    user = ctx.session.authenticated_as.as_deref().unwrap_or(""),
                    virus = ?names,
                    alert = true,
                    "virus in mail from an authenticated user: refused; the account may be compromised"
                );
                let user = ctx.session.authenticated_as.clone().unwrap_or_default();
                self.alert(Alert {
                    kind: "outbound_virus",
                    key: user.clone(),
                    summary: format!("virus {names} in mail sent by {user}: refused; the account may be compromised"),
                    details: vec![
                        ("user".into(), user),
                        ("virus".into(), names.clone()),
                        ("client".into(), ctx.session.client_ip.to_string()),
                        ("queue_id".into(), ctx.queue_id.clone()),
                    ],
                });
                return Verdict::Reject(Refusal::new(554, (5, 7, 1), format!("Virus found: {names}")));
            }
            return Verdict::Continue;
        }

        let facts = arrival_facts(ctx);
        let message = lend(ctx);
        let request = Arc::new(scan_request(ctx, Arc::clone(&message)));
        let classify = async {
            match &self.filter {
                Some(_) => Some(features_of(Arc::clone(&message), facts.clone()).await),
                None => None,
            }
        };
        let (results, features) = tokio::join!(scan_all(&self.scanners, request), classify);
        take_back(ctx, message);
        if let Some(refusal) = self.refusal_for_scanner_trouble(ctx, &results) {
            return refusal;
        }

        // One verdict per local account (its model with the global one); the first is the
        // message's (header, stored verdict). Mail with no local recipient is judged globally.
        let accounts: Vec<tern_store::AccountId> =
            ctx.recipients.iter().flat_map(|r| r.accounts.iter().copied()).collect();
        let mut per_account: Vec<(tern_store::AccountId, ScanVerdict)> = Vec::new();
        for account in &accounts {
            if per_account.iter().any(|(a, _)| a == account) {
                continue;
            }
            per_account.push((*account, self.verdict_for(features.as_ref(), &facts, Some(*account), &results).await));
        }
        let message_verdict = match per_account.first() {
            Some((_, v)) => v.clone(),
            None => self.verdict_for(features.as_ref(), &facts, None, &results).await,
        };
        metrics::histogram!("tern_scan_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("tern_scan_verdicts_total", "action" => message_verdict.action.as_str()).increment(1);

        if let Some(names) = virus_names(&results) {
            metrics::counter!("tern_virus_found_total", "direction" => "inbound").increment(1);
            tracing::warn!(
                queue_id = %ctx.queue_id,
                from = ctx.mail_from.as_deref().unwrap_or("<>"),
                client = %ctx.session.client_ip,
                virus = ?names,
                action = message_verdict.action.as_str(),
                alert = true,
                "virus found"
            );
            let from = ctx.mail_from.clone().unwrap_or_else(|| "<>".into());
            self.alert(Alert {
                kind: "virus",
                key: from.clone(),
                summary: format!("virus {names} in mail from {from}: {}", message_verdict.action.as_str()),
                details: vec![
                    ("virus".into(), names.clone()),
                    ("sender".into(), from),
                    (
                        "recipients".into(),
                        ctx.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>().join(", "),
                    ),
                    ("client".into(), ctx.session.client_ip.to_string()),
                    ("action".into(), message_verdict.action.as_str().into()),
                    ("queue_id".into(), ctx.queue_id.clone()),
                ],
            });
            match message_verdict.action {
                Action::Discard => {
                    return Verdict::Discard(format!("virus {names}"));
                }
                Action::Quarantine => {
                    ctx.scan_verdict = serde_json::to_string(&message_verdict).ok();
                    return Verdict::Quarantine(message_verdict.because.clone());
                }
                Action::Reject => {
                    return Verdict::Reject(Refusal::new(554, (5, 7, 1), format!("Virus found: {names}")));
                }
                _ => {}
            }
        }

        // Refusal and the quarantine act on the whole message: only when every local
        // recipient's verdict (or, without local recipients, the message's) calls for them.
        let all_at_least = |action: Action| match per_account.is_empty() {
            true => message_verdict.action >= action,
            false => per_account.iter().all(|(_, v)| v.action >= action),
        };
        if all_at_least(Action::Reject) {
            tracing::info!(
                queue_id = %ctx.queue_id,
                score = message_verdict.score,
                because = ?message_verdict.because,
                "refused as spam"
            );
            return Verdict::Reject(Refusal::new(
                550,
                (5, 7, 1),
                format!("Message refused as spam (score {:.1})", message_verdict.score),
            ));
        }
        if all_at_least(Action::Quarantine) {
            tracing::info!(
                queue_id = %ctx.queue_id,
                score = message_verdict.score,
                because = ?message_verdict.because,
                "quarantined as spam"
            );
            ctx.prepend_header(HEADER, &message_verdict.header_value());
            ctx.scan_verdict = serde_json::to_string(&message_verdict).ok();
            return Verdict::Quarantine(message_verdict.because.clone());
        }
        for r in &mut ctx.recipients {
            let junk = r.accounts.iter().any(|a| per_account.iter().any(|(b, v)| a == b && v.action >= Action::Junk));
            if junk && matches!(r.mailbox, MailboxSelector::Inbox | MailboxSelector::Posted(_)) {
                r.mailbox = MailboxSelector::SpecialUse(SpecialUse::Junk);
            }
        }
        tracing::debug!(
            queue_id = %ctx.queue_id,
            score = message_verdict.score,
            action = message_verdict.action.as_str(),
            "scan verdict"
        );
        ctx.prepend_header(HEADER, &message_verdict.header_value());
        ctx.scan_verdict = serde_json::to_string(&message_verdict).ok();
        Verdict::Continue
    }
}
