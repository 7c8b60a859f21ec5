//! Sender rewriting (SRS) for forwarded copies: mail that an alias or a Sieve `redirect`
//! sends on to another domain leaves with a reverse path in the forwarding domain, so that
//! the destination's SPF check sees this server allowed (the original sender's SPF policy
//! does not list it). Bounces to the rewritten address are decoded by the directory and go
//! back to the original sender. Mail from our own domains, and bounces (`<>`), keep their
//! reverse path: it already passes, or there is none.

use crate::{MessageContext, Stage, Verdict};
use async_trait::async_trait;
use tern_directory::Directory;

pub struct SenderRewriting {
    pub directory: Directory,
}

#[async_trait]
impl Stage for SenderRewriting {
    fn name(&self) -> &'static str {
        "sender_rewriting"
    }

    async fn process(&self, ctx: &mut MessageContext) -> Verdict {
        let Some(sender) = ctx.mail_from.clone() else { return Verdict::Continue };
        let forwards = |r: &crate::Recipient| r.remote.iter().any(|a| !a.eq_ignore_ascii_case(&r.address));
        if !ctx.recipients.iter().any(forwards) {
            return Verdict::Continue;
        }
        let sender_domain = sender.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        match self.directory.store().domain_get(&sender_domain).await {
            Ok(Some(_)) => return Verdict::Continue,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot tell whether the sender's domain is ours; rewriting"),
        }
        let now = tern_store::now_unix();
        for r in ctx.recipients.iter_mut().filter(|r| forwards(r)) {
            let Some((_, domain)) = r.address.rsplit_once('@') else { continue };
            let rewritten = self.directory.srs().forward(&sender, &domain.to_ascii_lowercase(), now);
            tracing::debug!(rcpt = ?r.address, sender = ?sender, srs = ?rewritten, "forwarded copies leave with a rewritten sender");
            r.forward_sender = Some(rewritten);
        }
        Verdict::Continue
    }
}
