//! Spam scanning of inbound mail: Tern's classifier and heuristic rules add up to one verdict
//! (`tern_scan::verdict`), recorded in an `X-Tern-Spam:` header and with the delivery, and
//! acted on per recipient: Junk when the recipient's own judgement says so, a refusal at the
//! end of DATA only when it says so for every recipient (a shared message is never refused
//! for the one who wants it).
//!
//! `X-Tern-Spam` fields already in the message are removed first: nobody outside may speak for
//! this server. Authenticated submissions are not judged for spam.

use crate::spam::SpamFilter;
use crate::{MessageContext, Refusal, Stage, Verdict};
use async_trait::async_trait;
use std::sync::Arc;
use tern_scan::classifier::Features;
use tern_scan::verdict::{Action, RuleInput, Thresholds, decide};
use tern_scan::{Facts, Verdict as ScanVerdict};
use tern_store::{MailboxSelector, SpecialUse};

pub const HEADER: &str = "X-Tern-Spam";

/// Messages up to this size are read on the session's task; larger ones on the blocking pool.
const INLINE_MAX: usize = 64 * 1024;

pub struct SpamScan {
    pub filter: Arc<SpamFilter>,
    pub thresholds: Thresholds,
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

impl SpamScan {
    async fn verdict_for(
        &self,
        features: &Features,
        facts: &Facts,
        account: Option<tern_store::AccountId>,
    ) -> ScanVerdict {
        let (judgement, abstained) = match self.filter.judge(features, account).await {
            Ok(Ok(j)) => (Some(j), None),
            Ok(Err(why)) => (None, Some(why)),
            Err(e) => {
                tracing::warn!(error = %e, "spam model unavailable; judging by rules alone");
                (None, Some(format!("model unavailable: {e}")))
            }
        };
        let rules = RuleInput { facts, meta: features.meta() };
        decide(judgement, abstained, &rules, Vec::new(), &self.thresholds)
    }
}

#[async_trait]
impl Stage for SpamScan {
    fn name(&self) -> &'static str {
        "spam"
    }

    async fn process(&self, ctx: &mut MessageContext) -> Verdict {
        ctx.remove_header_fields(HEADER);
        if ctx.session.authenticated_as.is_some() {
            return Verdict::Continue;
        }
        let started = std::time::Instant::now();
        let facts = arrival_facts(ctx);
        let message = Arc::new(ctx.message.clone());
        let features = features_of(message, facts.clone()).await;

        // One verdict per local account (its model with the global one); the first is the
        // message's (header, stored verdict). Mail with no local recipient is judged globally.
        let accounts: Vec<tern_store::AccountId> =
            ctx.recipients.iter().flat_map(|r| r.accounts.iter().copied()).collect();
        let mut per_account: Vec<(tern_store::AccountId, ScanVerdict)> = Vec::new();
        for account in &accounts {
            if per_account.iter().any(|(a, _)| a == account) {
                continue;
            }
            per_account.push((*account, self.verdict_for(&features, &facts, Some(*account)).await));
        }
        let message_verdict = match per_account.first() {
            Some((_, v)) => v.clone(),
            None => self.verdict_for(&features, &facts, None).await,
        };
        metrics::histogram!("tern_spam_scan_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("tern_spam_verdicts_total", "action" => message_verdict.action.as_str()).increment(1);

        let refuse_all = per_account.iter().all(|(_, v)| v.action == Action::Reject)
            && (!per_account.is_empty() || message_verdict.action == Action::Reject);
        if refuse_all {
            tracing::info!(
                queue_id = %ctx.queue_id,
                score = message_verdict.score,
                because = %message_verdict.because,
                "refused as spam"
            );
            return Verdict::Reject(Refusal::new(
                550,
                (5, 7, 1),
                format!("Message refused as spam (score {:.1})", message_verdict.score),
            ));
        }
        for r in &mut ctx.recipients {
            let junk = r.accounts.iter().any(|a| per_account.iter().any(|(b, v)| a == b && v.action >= Action::Junk));
            if junk && r.mailbox == MailboxSelector::Inbox {
                r.mailbox = MailboxSelector::SpecialUse(SpecialUse::Junk);
            }
        }
        tracing::debug!(
            queue_id = %ctx.queue_id,
            score = message_verdict.score,
            action = message_verdict.action.as_str(),
            "spam verdict"
        );
        ctx.prepend_header(HEADER, &message_verdict.header_value());
        ctx.scan_verdict = serde_json::to_string(&message_verdict).ok();
        Verdict::Continue
    }
}
