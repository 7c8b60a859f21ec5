//! Commit of a message that passed the pipeline: local copies and the outbound queue entry in
//! one durable store transaction.

use crate::MessageContext;
use std::sync::Arc;
use tern_directory::{Directory, Resolution};
use tern_store::{
    Delivery, DeliveryEnvelope, DeliveryReceipt, DeliveryTarget, EnvelopeRecipient, NewQueueRecipient, Store,
    StoreError,
};

/// Stores the message for every local recipient and queues it for every remote one; durable
/// when it returns. Hashing and parsing run on the blocking pool.
pub async fn commit_message(store: &Arc<dyn Store>, ctx: &mut MessageContext) -> Result<DeliveryReceipt, StoreError> {
    let raw = ctx.take_final_message();
    let envelope = envelope_of(ctx);
    let mut targets = Vec::new();
    let mut edited: Vec<(Vec<u8>, Vec<DeliveryTarget>)> = Vec::new();
    let mut remote: Vec<NewQueueRecipient> = Vec::new();
    for r in &ctx.recipients {
        for account in &r.accounts {
            if let Some((_, filed)) = r.filed.iter().find(|(a, _)| a == account) {
                match ctx.edited.iter().find(|(a, _)| a == account) {
                    Some((_, content)) if !filed.is_empty() => edited.push((content.clone(), filed.clone())),
                    _ => targets.extend(filed.iter().cloned()),
                }
                continue;
            }
            targets.push(DeliveryTarget {
                account: *account,
                mailbox: r.mailbox.clone(),
                flags: r.flags,
                keywords: r.keywords.clone(),
            });
        }
        for address in &r.remote {
            if remote.iter().any(|q| q.address.eq_ignore_ascii_case(address)) {
                continue;
            }
            // RFC 3461 §4.2: the original recipient travels with a forwarded copy.
            let orcpt = r.orcpt.clone().or_else(|| Some(("rfc822".to_string(), r.address.clone())));
            // A forwarded copy (alias target, Sieve redirect) leaves with the rewritten sender.
            let forwarded = !address.eq_ignore_ascii_case(&r.address);
            let sender = if forwarded { r.forward_sender.clone() } else { None };
            remote.push(NewQueueRecipient { address: address.clone(), orcpt, notify: r.notify, sender });
        }
    }
    // Copies a script edited are contents of their own, stored first: a failure after them
    // answers 451 and the retry may store them twice, but nothing accepted is lost.
    let mut edited_receipts = Vec::new();
    for (content, targets) in edited {
        edited_receipts.push(store.deliver(prepare(content, envelope.clone(), targets).await?).await?);
    }
    let mut receipt = if targets.is_empty() && remote.is_empty() && !edited_receipts.is_empty() {
        edited_receipts.remove(0)
    } else {
        let mut delivery = prepare(raw, envelope, targets).await?;
        delivery.remote = remote;
        store.deliver(delivery).await?
    };
    for other in edited_receipts {
        receipt.copies.extend(other.copies);
        receipt.skipped.extend(other.skipped);
        receipt.over_quota.extend(other.over_quota);
    }
    Ok(receipt)
}

/// The envelope a message is stored with.
fn envelope_of(ctx: &MessageContext) -> DeliveryEnvelope {
    DeliveryEnvelope {
        mail_from: ctx.mail_from.clone(),
        recipients: ctx
            .recipients
            .iter()
            .map(|r| EnvelopeRecipient { address: r.address.clone(), orcpt: r.orcpt.clone(), notify: r.notify })
            .collect(),
        ret: ctx.ret,
        envid: ctx.envid.clone(),
        body: ctx.body,
        smtputf8: ctx.smtputf8,
        requiretls: ctx.requiretls,
        auth_results: ctx.auth_results.clone(),
        transaction_id: Some(ctx.queue_id.clone()),
        verdict: ctx.scan_verdict.clone(),
        client_ip: Some(ctx.session.client_ip.to_string()),
        helo: Some(ctx.session.helo.clone()),
        tls: ctx.session.tls.as_ref().map(|t| format!("{} {}", t.version, t.cipher)),
        authenticated_as: ctx.session.authenticated_as.clone(),
        source: ctx.session.service.to_string(),
        received_at: ctx.received_at,
    }
}

/// Holds a message in the quarantine instead of delivering it (durable when it returns), for
/// `retention_seconds`. Returns the quarantine id.
pub async fn quarantine_message(
    store: &Arc<dyn Store>,
    ctx: &mut MessageContext,
    reason: &str,
    retention_seconds: i64,
) -> Result<u64, StoreError> {
    let raw = ctx.take_final_message();
    let entry = tern_store::QuarantineEntry {
        id: 0,
        created_at: ctx.received_at,
        expires_at: ctx.received_at.saturating_add(retention_seconds),
        reason: reason.to_string(),
        recipients: ctx
            .recipients
            .iter()
            .map(|r| tern_store::QuarantinedRecipient {
                address: r.address.clone(),
                accounts: r.accounts.clone(),
                remote: r.remote.clone(),
                orcpt: r.orcpt.clone(),
                notify: r.notify,
            })
            .collect(),
        envelope: envelope_of(ctx),
        size: raw.len() as u64,
    };
    store.quarantine_put(entry, raw).await
}

/// Releases a quarantined message to its recipients (local copies into the INBOX, the rest
/// to the outbound queue) exactly once: `None` when it was released or deleted already.
pub async fn release_quarantined(store: &Arc<dyn Store>, id: u64) -> Result<Option<DeliveryReceipt>, StoreError> {
    let Some((entry, raw)) = store.quarantine_get(id).await? else { return Ok(None) };
    let mut targets = Vec::new();
    let mut remote: Vec<NewQueueRecipient> = Vec::new();
    for r in &entry.recipients {
        for account in &r.accounts {
            targets.push(DeliveryTarget {
                account: *account,
                mailbox: tern_store::MailboxSelector::Inbox,
                flags: Default::default(),
                keywords: Vec::new(),
            });
        }
        for address in &r.remote {
            if remote.iter().any(|q| q.address.eq_ignore_ascii_case(address)) {
                continue;
            }
            let orcpt = r.orcpt.clone().or_else(|| Some(("rfc822".to_string(), r.address.clone())));
            remote.push(NewQueueRecipient { address: address.clone(), orcpt, notify: r.notify, sender: None });
        }
    }
    let mut envelope = entry.envelope;
    envelope.source = format!("{} (released from quarantine {id})", envelope.source);
    let mut delivery = prepare(raw, envelope, targets).await?;
    delivery.remote = remote;
    store.quarantine_release(id, delivery).await
}

/// Messages up to this size are hashed and summarized on the session's own task: that takes
/// tens of microseconds, less than the hand-over to the blocking pool and back costs (a
/// context switch each way, measured in the 32-session SMTP benchmark's profile).
const PREPARE_INLINE_MAX: usize = 64 * 1024;

/// [`Delivery::prepare`], on the blocking pool for a large message.
async fn prepare(
    raw: Vec<u8>,
    envelope: DeliveryEnvelope,
    targets: Vec<DeliveryTarget>,
) -> Result<Delivery, StoreError> {
    if raw.len() <= PREPARE_INLINE_MAX {
        return Ok(Delivery::prepare(raw, envelope, targets));
    }
    tokio::task::spawn_blocking(move || Delivery::prepare(raw, envelope, targets))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("looking up the report's recipient: {0}")]
    Directory(#[from] tern_directory::DirectoryError),
}

/// Delivers a report the server itself writes (a DSN, a DMARC report) to `to`: into the
/// local mailbox, or through the queue, with a null reverse path so that it is never bounced
/// itself (RFC 3464 §2, RFC 5321 §4.5.5). Durable when it returns.
pub async fn deliver_report(
    store: &Arc<dyn Store>,
    directory: &Directory,
    to: &str,
    report: Vec<u8>,
) -> Result<(), ReportError> {
    let mut targets = Vec::new();
    let mut remote = Vec::new();
    match directory.resolve(to).await? {
        Resolution::Deliver { accounts, external } => {
            targets.extend(accounts.into_iter().map(|a| DeliveryTarget::inbox(a.id)));
            remote.extend(external.into_iter().map(|address| NewQueueRecipient {
                address,
                orcpt: None,
                notify: Some(tern_smtp_proto::Notify { never: true, ..Default::default() }),
                sender: None,
            }));
        }
        Resolution::NotLocal => remote.push(NewQueueRecipient {
            address: to.to_string(),
            orcpt: None,
            notify: Some(tern_smtp_proto::Notify { never: true, ..Default::default() }),
            sender: None,
        }),
        Resolution::Unknown => {
            tracing::warn!(to, "report dropped: the sender is a local address that does not exist");
            return Ok(());
        }
    }
    // Final delivery of a report: its reverse path is null (delivery removes this field from
    // a copy that leaves).
    let mut report = report;
    report.splice(0..0, b"Return-Path: <>\r\n".iter().copied());
    let envelope = DeliveryEnvelope {
        mail_from: None,
        recipients: vec![EnvelopeRecipient { address: to.to_string(), orcpt: None, notify: None }],
        source: "dsn".into(),
        received_at: tern_store::now_unix(),
        ..Default::default()
    };
    let mut delivery = prepare(report, envelope, targets).await?;
    delivery.remote = remote;
    let receipt = store.deliver(delivery).await?;
    if !receipt.over_quota.is_empty() {
        tracing::warn!(to, "report not stored: the recipient's mailbox is over its quota");
    }
    metrics::counter!("tern_delivery_reports_total").increment(1);
    Ok(())
}

/// After a committed message: the failure report for recipients over their quota, then what
/// the stages left for after the commit ([`crate::FollowUp`]). Failures are logged; the
/// message is accepted either way.
pub async fn follow_up(
    store: &Arc<dyn Store>,
    directory: &Directory,
    hostname: &str,
    ctx: &mut MessageContext,
    receipt: &DeliveryReceipt,
) {
    if !receipt.over_quota.is_empty()
        && let Err(e) = report_over_quota(store, directory, hostname, ctx, receipt).await
    {
        tracing::error!(queue_id = %ctx.queue_id, error = %e, "cannot send the over-quota report");
    }
    for work in std::mem::take(&mut ctx.follow_ups) {
        match work {
            crate::FollowUp::Remember { account, ids } => {
                if let Err(e) = store.sieve_remember(account, ids).await {
                    tracing::warn!(queue_id = %ctx.queue_id, account, error = %e, "cannot remember Sieve ids");
                }
            }
            crate::FollowUp::Send { to, message } => {
                if let Err(e) = deliver_report(store, directory, &to, message).await {
                    tracing::error!(queue_id = %ctx.queue_id, to = ?to, error = %e, "cannot send an automatic message");
                }
            }
        }
    }
}

/// After a commit that stored the message for some recipients, the recipients that got
/// nothing because every account they lead to is over its quota: the `250` covered the whole
/// transaction, so the sender gets a failure report for them (RFC 3464, status 5.2.2 "mailbox
/// full", RFC 3463). Returns how many recipients were reported.
pub async fn report_over_quota(
    store: &Arc<dyn Store>,
    directory: &Directory,
    hostname: &str,
    ctx: &MessageContext,
    receipt: &DeliveryReceipt,
) -> Result<usize, ReportError> {
    let full: Vec<&crate::Recipient> = ctx
        .recipients
        .iter()
        .filter(|r| {
            !r.accounts.is_empty() && r.remote.is_empty() && r.accounts.iter().all(|a| receipt.over_quota.contains(a))
        })
        .collect();
    for r in &full {
        tracing::info!(queue_id = %ctx.queue_id, rcpt = ?r.address, "not delivered: mailbox over its quota");
    }
    let Some(sender) = ctx.mail_from.clone() else { return Ok(0) };
    let reported: Vec<tern_store::QueuedRecipient> = full
        .iter()
        .filter(|r| crate::dsn::Action::Failed.wanted_by(r.notify))
        .map(|r| tern_store::QueuedRecipient {
            address: r.address.clone(),
            domain: r.address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default(),
            orcpt: r.orcpt.clone(),
            notify: r.notify,
            sender: None,
            status: tern_store::RecipientStatus::Failed,
            attempts: 1,
            last_result: Some("552 5.2.2 Mailbox full".into()),
            remote_mta: None,
            next_attempt: ctx.received_at,
            delay_notified: false,
        })
        .collect();
    if reported.is_empty() {
        return Ok(0);
    }
    let Some(original) = store.blob_get(receipt.content).await? else { return Ok(0) };
    let message = tern_store::QueuedMessage {
        id: receipt.delivery_id,
        blob: receipt.content,
        size: original.len() as u64,
        envelope: DeliveryEnvelope {
            mail_from: Some(sender.clone()),
            ret: ctx.ret,
            envid: ctx.envid.clone(),
            received_at: ctx.received_at,
            ..Default::default()
        },
        created: ctx.received_at,
    };
    let lines: Vec<crate::dsn::ReportedRecipient<'_>> = reported
        .iter()
        .map(|r| crate::dsn::ReportedRecipient {
            recipient: r,
            action: crate::dsn::Action::Failed,
            status: "5.2.2".into(),
            diagnostic: Some("552 5.2.2 Mailbox full: the recipient's storage quota is exceeded".into()),
        })
        .collect();
    let report = crate::dsn::build(hostname, &message, &original, &lines, tern_store::now_unix(), None);
    deliver_report(store, directory, &sender, report).await?;
    Ok(reported.len())
}
