//! Commit of a message that passed the pipeline: local copies and the outbound queue entry in
//! one durable store transaction.

use crate::MessageContext;
use std::sync::Arc;
use tern_store::{
    Delivery, DeliveryEnvelope, DeliveryReceipt, DeliveryTarget, EnvelopeRecipient, NewQueueRecipient, Store,
    StoreError,
};

/// Stores the message for every local recipient and queues it for every remote one; durable
/// when it returns. Hashing and parsing run on the blocking pool.
pub async fn commit_message(store: &Arc<dyn Store>, ctx: &mut MessageContext) -> Result<DeliveryReceipt, StoreError> {
    let raw = ctx.take_final_message();
    let envelope = DeliveryEnvelope {
        mail_from: ctx.mail_from.clone(),
        recipients: ctx
            .recipients
            .iter()
            .map(|r| EnvelopeRecipient { address: r.address.clone(), orcpt: r.orcpt.clone(), notify: r.notify.clone() })
            .collect(),
        ret: ctx.ret.clone(),
        envid: ctx.envid.clone(),
        body: ctx.body.clone(),
        smtputf8: ctx.smtputf8,
        requiretls: ctx.requiretls,
        auth_results: ctx.auth_results.clone(),
        client_ip: Some(ctx.session.client_ip.to_string()),
        helo: Some(ctx.session.helo.clone()),
        tls: ctx.session.tls.as_ref().map(|t| format!("{} {}", t.version, t.cipher)),
        authenticated_as: ctx.session.authenticated_as.clone(),
        source: ctx.session.service.to_string(),
        received_at: ctx.received_at,
    };
    let mut targets = Vec::new();
    let mut remote: Vec<NewQueueRecipient> = Vec::new();
    for r in &ctx.recipients {
        for account in &r.accounts {
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
            remote.push(NewQueueRecipient { address: address.clone(), orcpt, notify: r.notify.clone() });
        }
    }
    let mut delivery = tokio::task::spawn_blocking(move || Delivery::prepare(raw, envelope, targets))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
    delivery.remote = remote;
    store.deliver(delivery).await
}
