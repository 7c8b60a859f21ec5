//! Stages of the submission path (RFC 6409): the sender check, the fix-ups of §8, and DKIM
//! signing of mail from local domains.

use crate::{MessageContext, Refusal, Stage, Verdict};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tern_directory::Directory;

/// Refuses a message whose `From:` names an address the authenticated user does not own
/// (own address, sub-address, or an alias leading to the user), like Postfix's
/// `reject_sender_login_mismatch` applied to the header too.
pub struct SenderOwnership {
    pub directory: Directory,
}

#[async_trait]
impl Stage for SenderOwnership {
    fn name(&self) -> &'static str {
        "sender_ownership"
    }

    async fn process(&self, ctx: &mut MessageContext) -> Verdict {
        let Some(user) = ctx.session.authenticated_as.clone() else {
            return Verdict::Reject(Refusal::new(530, (5, 7, 0), "Authentication required"));
        };
        let account = match self.directory.user_get(&user).await {
            Ok(Some(a)) => a,
            Ok(None) => return Verdict::Reject(Refusal::new(553, (5, 7, 1), "Unknown user")),
            Err(e) => {
                tracing::error!(error = %e, "user lookup failed");
                return Verdict::Defer(Refusal::new(451, (4, 3, 0), "Temporary lookup failure"));
            }
        };
        let header = ctx.header_block().to_vec();
        let parsed = mail_parser::MessageParser::new().parse_headers(&header);
        let from: Vec<String> = parsed
            .as_ref()
            .and_then(|m| m.from())
            .map(|a| a.iter().filter_map(|addr| addr.address().map(str::to_string)).collect())
            .unwrap_or_default();
        if from.is_empty() {
            return Verdict::Reject(Refusal::new(553, (5, 7, 1), "The message has no From: address"));
        }
        for address in &from {
            match self.directory.may_send_as(&account, address).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(user = %account.address, from = %address, "From: header not owned by the user");
                    return Verdict::Reject(Refusal::new(
                        553,
                        (5, 7, 1),
                        format!("Sender address rejected: <{address}> in From: is not owned by {}", account.address),
                    ));
                }
                Err(e) => {
                    tracing::error!(error = %e, "ownership lookup failed");
                    return Verdict::Defer(Refusal::new(451, (4, 3, 0), "Temporary lookup failure"));
                }
            }
        }
        Verdict::Continue
    }
}

/// RFC 6409 §8.3 and §8.1: adds `Message-ID:` and `Date:` when the client left them out.
pub struct SubmissionFixups {
    pub hostname: String,
}

#[async_trait]
impl Stage for SubmissionFixups {
    fn name(&self) -> &'static str {
        "submission_fixups"
    }

    async fn process(&self, ctx: &mut MessageContext) -> Verdict {
        if !ctx.has_header("Date") {
            let date = crate::stages::rfc5322_date(ctx.received_at);
            ctx.prepend_header("Date", &date);
        }
        if !ctx.has_header("Message-ID") {
            let id = format!("<{}.{:016x}@{}>", ctx.queue_id, rand::random::<u64>(), self.hostname);
            ctx.prepend_header("Message-ID", &id);
        }
        Verdict::Continue
    }
}

/// Re-encodes 8-bit bodies as quoted-printable or base64 before DKIM signs them (RFC 6376
/// §5.3): a receiver or relay without 8BITMIME (RFC 6152) then needs no conversion that
/// would break the signature, and delivery never has to refuse the message for it. Messages
/// with 8-bit headers (SMTPUTF8) have no 7-bit form and pass unchanged.
pub struct SevenBitBody;

#[async_trait]
impl Stage for SevenBitBody {
    fn name(&self) -> &'static str {
        "seven_bit_body"
    }

    async fn process(&self, ctx: &mut MessageContext) -> Verdict {
        if ctx.message.is_ascii() {
            return Verdict::Continue;
        }
        let raw = std::mem::take(&mut ctx.message);
        let converted = tokio::task::spawn_blocking(move || {
            let converted = tern_mime::seven_bit::to_seven_bit(&raw);
            (raw, converted)
        })
        .await;
        match converted {
            Ok((_, Some(converted))) => {
                ctx.message = converted;
                ctx.body = None;
                ctx.tag("seven_bit", "converted");
            }
            Ok((raw, None)) => ctx.message = raw,
            Err(e) => {
                tracing::error!(error = %e, "8-bit conversion failed");
                return Verdict::Defer(Refusal::new(451, (4, 3, 0), "Local error in processing"));
            }
        }
        Verdict::Continue
    }
}

/// A domain's signer with the keys it was built from (`selector:created`).
type CachedSigner = (Vec<String>, Arc<tern_mailauth::dkim::Signer>);

/// Signs mail whose `From:` domain is local and has DKIM keys.
pub struct DkimSign {
    pub directory: Directory,
    /// Signers by domain (rebuilt when the keys change).
    cache: Mutex<HashMap<String, CachedSigner>>,
}

impl DkimSign {
    pub fn new(directory: Directory) -> DkimSign {
        DkimSign { directory, cache: Mutex::new(HashMap::new()) }
    }

    async fn signer(&self, domain: &str) -> Option<Arc<tern_mailauth::dkim::Signer>> {
        let record = match self.directory.domain_get(domain).await {
            Ok(Some(d)) if !d.dkim.is_empty() => d,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(domain, error = %e, "cannot read DKIM keys");
                return None;
            }
        };
        let selectors: Vec<String> = record.dkim.iter().map(|k| format!("{}:{}", k.selector, k.created)).collect();
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((cached, signer)) = cache.get(&record.name)
                && *cached == selectors
            {
                return Some(Arc::clone(signer));
            }
        }
        match tern_mailauth::dkim::Signer::new(&record.name, &crate::signing_keys(&record.dkim)) {
            Ok(signer) => {
                let signer = Arc::new(signer);
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                cache.insert(record.name.clone(), (selectors, Arc::clone(&signer)));
                Some(signer)
            }
            Err(e) => {
                tracing::error!(domain, error = %e, "DKIM keys unusable; sending unsigned");
                None
            }
        }
    }
}

/// The `From:` domain of a header section, lower-cased.
fn from_domain(header: &[u8]) -> Option<String> {
    mail_parser::MessageParser::new()
        .parse_headers(header)
        .as_ref()
        .and_then(|m| m.from())
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .and_then(|a| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
}

impl DkimSign {
    /// Signs a message the server writes itself (a vacation reply) when its `From:` domain
    /// has keys; unsigned otherwise or on failure.
    pub async fn sign_message(&self, mut message: Vec<u8>) -> Vec<u8> {
        let Some(domain) = from_domain(&message) else { return message };
        let Some(signer) = self.signer(&domain).await else { return message };
        if let Err(e) = signer.sign(&mut message) {
            tracing::error!(domain = ?domain, error = %e, "DKIM signing failed; sending unsigned");
        }
        message
    }
}

#[async_trait]
impl Stage for DkimSign {
    fn name(&self) -> &'static str {
        "dkim_sign"
    }

    async fn process(&self, ctx: &mut MessageContext) -> Verdict {
        let Some(domain) = from_domain(ctx.header_block()) else { return Verdict::Continue };
        let Some(signer) = self.signer(&domain).await else { return Verdict::Continue };
        let mut message = ctx.take_final_message();
        let signing = tokio::task::spawn_blocking(move || {
            let result = signer.sign(&mut message);
            (result, message)
        });
        match signing.await {
            Ok((result, message)) => {
                ctx.replace_message(message);
                match result {
                    Ok(()) => ctx.tag("dkim", format!("signed d={domain}")),
                    Err(e) => tracing::error!(domain, error = %e, "DKIM signing failed; sending unsigned"),
                }
            }
            // The message went down with the task: nothing was accepted, the client retries.
            Err(e) => {
                tracing::error!(domain, error = %e, "DKIM signing task failed");
                return Verdict::Defer(Refusal::new(451, (4, 3, 0), "Local error in processing, try again later"));
            }
        }
        Verdict::Continue
    }
}
