//! The message pipeline.
//!
//! After the last byte of a message arrives and before anything is committed, the message
//! passes through an ordered list of [`Stage`]s. Each stage sees the whole [`MessageContext`]
//! (session facts, envelope, message) and returns a [`Verdict`]: continue, accept now, reject
//! with a reply, or defer with a temporary reply; it may also add headers, tag the message, or
//! redirect recipients to another mailbox. New capabilities (authentication results, virus and
//! spam scanning, Sieve, quarantine) are new stages; the SMTP session does not change.

pub mod alerts;
mod context;
mod deliver;
pub mod dsn;
mod signing_keys;
pub mod spam;
pub mod stages;

pub use context::{FollowUp, MessageContext, Recipient, SessionInfo, TlsInfo};
pub use deliver::{
    ReportError, commit_message, deliver_report, follow_up, quarantine_message, release_quarantined, report_over_quota,
};
pub use signing_keys::{signing_key, signing_keys, stored_key};

use async_trait::async_trait;
use std::sync::Arc;

/// A protocol-neutral refusal: SMTP reply code, enhanced status code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub enhanced: (u8, u16, u16),
    pub text: String,
}

impl Refusal {
    pub fn new(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Refusal {
        Refusal { code, enhanced, text: text.into() }
    }
}

/// What a stage decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on with the next stage.
    Continue,
    /// Deliver now; later stages are skipped.
    Accept,
    /// Refuse the message permanently (5xx).
    Reject(Refusal),
    /// Refuse the message for now (4xx); the client retries.
    Defer(Refusal),
    /// Accept the message and drop it (logged with the reason); later stages are skipped.
    Discard(String),
    /// Accept the message into the quarantine instead of delivering it (the reason is kept
    /// with it); later stages are skipped.
    Quarantine(String),
}

#[async_trait]
pub trait Stage: Send + Sync {
    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;
    async fn process(&self, ctx: &mut MessageContext) -> Verdict;
}

/// How the pipeline as a whole decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Deliver,
    Reject {
        stage: &'static str,
        refusal: Refusal,
    },
    Defer {
        stage: &'static str,
        refusal: Refusal,
    },
    /// Accepted and dropped.
    Discard {
        stage: &'static str,
        reason: String,
    },
    /// Accepted into the quarantine.
    Quarantine {
        stage: &'static str,
        reason: String,
    },
}

#[derive(Clone, Default)]
pub struct Pipeline {
    stages: Vec<Arc<dyn Stage>>,
}

impl Pipeline {
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    pub fn with(mut self, stage: impl Stage + 'static) -> Pipeline {
        self.stages.push(Arc::new(stage));
        self
    }

    pub fn stage_names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    pub async fn run(&self, ctx: &mut MessageContext) -> Outcome {
        for stage in &self.stages {
            let verdict = stage.process(ctx).await;
            match verdict {
                Verdict::Continue => {}
                Verdict::Accept => {
                    tracing::debug!(stage = stage.name(), "stage accepted the message");
                    return Outcome::Deliver;
                }
                Verdict::Reject(refusal) => {
                    metrics::counter!("tern_pipeline_rejected_total", "stage" => stage.name()).increment(1);
                    return Outcome::Reject { stage: stage.name(), refusal };
                }
                Verdict::Defer(refusal) => {
                    metrics::counter!("tern_pipeline_deferred_total", "stage" => stage.name()).increment(1);
                    return Outcome::Defer { stage: stage.name(), refusal };
                }
                Verdict::Discard(reason) => {
                    metrics::counter!("tern_pipeline_discarded_total", "stage" => stage.name()).increment(1);
                    return Outcome::Discard { stage: stage.name(), reason };
                }
                Verdict::Quarantine(reason) => {
                    metrics::counter!("tern_pipeline_quarantined_total", "stage" => stage.name()).increment(1);
                    return Outcome::Quarantine { stage: stage.name(), reason };
                }
            }
        }
        Outcome::Deliver
    }
}

/// The recipients' Sieve scripts, then the sender rewriting of what they and the aliases
/// forward (last: it covers every redirect).
fn with_sieve(p: Pipeline, sieve: Option<stages::SieveFilter>) -> Pipeline {
    match sieve {
        Some(sieve) => {
            let rewriting = sieve.sender_rewriting();
            p.with(sieve).with(rewriting)
        }
        None => p,
    }
}

/// The stages of the inbound path without authentication checks: spam scanning when given,
/// trace headers, then the recipients' Sieve scripts when given.
pub fn inbound(spam: Option<stages::ContentScan>, sieve: Option<stages::SieveFilter>) -> Pipeline {
    let mut p = Pipeline::new();
    if let Some(spam) = spam {
        p = p.with(spam);
    }
    p = p.with(stages::ReceivedHeader).with(stages::ReturnPath);
    with_sieve(p, sieve)
}

/// The inbound path: SPF/DKIM/ARC/DMARC (results header, policy), spam scanning when given,
/// trace headers, then the recipients' Sieve scripts (which see all of them) when given.
pub fn inbound_verified(
    stage: stages::InboundAuthentication,
    spam: Option<stages::ContentScan>,
    sieve: Option<stages::SieveFilter>,
) -> Pipeline {
    let mut p = Pipeline::new().with(stage);
    if let Some(spam) = spam {
        p = p.with(spam);
    }
    p = p.with(stages::ReceivedHeader).with(stages::ReturnPath);
    with_sieve(p, sieve)
}

/// The stages of the submission path: sender check, virus scanning when given, RFC 6409
/// fix-ups, trace headers, 7-bit bodies, DKIM, then the local recipients' Sieve scripts when
/// given (a user's script sorts mail from colleagues as it sorts mail from outside).
pub fn submission(
    directory: tern_directory::Directory,
    hostname: &str,
    dkim: bool,
    scan: Option<stages::ContentScan>,
    sieve: Option<stages::SieveFilter>,
) -> Pipeline {
    let mut p = Pipeline::new().with(stages::SenderOwnership { directory: directory.clone() });
    if let Some(scan) = scan {
        p = p.with(scan);
    }
    p = p
        .with(stages::SubmissionFixups { hostname: hostname.to_string() })
        .with(stages::ReceivedHeader)
        .with(stages::SevenBitBody);
    if dkim {
        p = p.with(stages::DkimSign::new(directory));
    }
    // Last, so that it sits on top where delivery removes it from copies that leave (RFC 5321
    // §4.4: Return-Path is added at final delivery only).
    p = p.with(stages::ReturnPath);
    with_sieve(p, sieve)
}

#[cfg(test)]
mod tests;
