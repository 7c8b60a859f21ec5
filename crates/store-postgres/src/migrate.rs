//! `tern store migrate --to postgres://...`: a single-node store copied into PostgreSQL with
//! every identifier kept — account and mailbox ids, UIDs, UIDVALIDITY, modseqs, flags,
//! EMAILID/THREADID — so that clients do not resync, and the queue, quarantine, DKIM keys
//! (in the domain records) and spam models with it.
//!
//! Every row is written with `ON CONFLICT DO NOTHING` under its original key, and a content's
//! reference is added only with the row that holds it, so an interrupted copy is resumed by
//! running it again: what is there is skipped.

use crate::PgStore;
use crate::error::pg_error;
use crate::rows::{self, id};
use crate::sql::Cached;
use std::collections::HashSet;
use tern_store::codec::encode_summary;
use tern_store::*;

/// Messages copied per transaction.
const BATCH: usize = 200;

/// What was copied (rows new in the database; rows already there are not counted).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationSummary {
    pub domains: usize,
    pub accounts: usize,
    pub aliases: usize,
    pub mailboxes: usize,
    pub messages: usize,
    pub skipped_messages: usize,
    pub queued: usize,
    pub quarantined: usize,
    pub spam_models: usize,
    pub sieve_scripts: usize,
}

/// Copies everything of `from` into `to`; `progress` is told what is being copied.
pub async fn migrate(
    from: &dyn Store,
    to: &PgStore,
    server_secret: Option<[u8; 32]>,
    progress: &mut (dyn FnMut(&str) + Send),
) -> StoreResult<MigrationSummary> {
    let mut summary = MigrationSummary::default();
    if let Some(secret) = server_secret {
        // Unknown users' made-up SCRAM salts stay what they were.
        let client = to.client().await?;
        client
            .run("INSERT INTO tern_secrets (name, value) VALUES ('server', $1) ON CONFLICT DO NOTHING", &[&&secret[..]])
            .await
            .map_err(pg_error)?;
    }
    for domain in from.domain_list().await? {
        if to.domain_get(&domain.name).await?.is_none() {
            to.domain_put(domain).await?;
            summary.domains += 1;
        }
    }
    for token in from.api_token_list().await? {
        to.api_token_put(token).await?;
    }
    for alias in from.alias_list().await? {
        if to.alias_get(&alias.address).await?.is_none() {
            to.alias_put(alias).await?;
            summary.aliases += 1;
        }
    }
    let accounts = from.account_list().await?;
    for (n, account) in accounts.iter().enumerate() {
        progress(&format!("account {}/{}: {}", n + 1, accounts.len(), account.address));
        summary.accounts += usize::from(import_account(to, account).await?);
        let mailboxes = from.mailbox_list(account.id).await?;
        let names: HashSet<&str> = mailboxes.iter().map(|m| m.name.as_str()).collect();
        for mailbox in &mailboxes {
            summary.mailboxes += usize::from(import_mailbox(to, mailbox).await?);
            let entries = from.message_list(mailbox.id).await?;
            progress(&format!("  {}: {} messages", mailbox.name, entries.len()));
            for batch in entries.chunks(BATCH) {
                let (copied, skipped) = import_messages(from, to, account.id, batch).await?;
                summary.messages += copied;
                summary.skipped_messages += skipped;
            }
            // UIDs expunged before the copy, for QRESYNC clients that are behind (RFC 7162
            // §3.2.5.2): reported as vanished to anyone who knew a modseq below today's.
            let vanished = from.mailbox_changes(mailbox.id, 0).await?.expunged;
            import_vanished(to, mailbox, &vanished).await?;
        }
        // Sieve scripts, the active one active again (a script already there is kept).
        for script in from.sieve_list(account.id).await? {
            if to.sieve_get(account.id, &script.name).await?.is_some() {
                continue;
            }
            if let Some(source) = from.sieve_get(account.id, &script.name).await? {
                to.sieve_put(account.id, &script.name, &source).await?;
                if script.active {
                    to.sieve_activate(account.id, Some(&script.name)).await?;
                }
                summary.sieve_scripts += 1;
            }
        }
        // Subscriptions to names without a mailbox (RFC 9051 §6.3.7).
        let client = to.client().await?;
        for name in from.subscriptions(account.id).await? {
            if !names.contains(name.as_str()) {
                client
                    .run(
                        "INSERT INTO subscriptions (account, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&id(account.id), &name],
                    )
                    .await
                    .map_err(pg_error)?;
            }
        }
    }
    // Annotations (RFC 5464) and the readers' own \Seen on shared mailboxes: the server's and
    // each mailbox's, per user where they are private.
    progress("annotations and private \\Seen");
    let mut readers: Vec<Option<AccountId>> = vec![None];
    readers.extend(accounts.iter().map(|a| Some(a.id)));
    for account in &accounts {
        import_annotations(from, to, MetadataScope { mailbox: None, user: Some(account.id) }).await?;
        for mailbox in from.mailbox_list(account.id).await? {
            // Only a shared mailbox has readers other than its owner.
            let users: Vec<Option<AccountId>> =
                if mailbox.acl.is_empty() { vec![None, Some(account.id)] } else { readers.clone() };
            for user in users {
                import_annotations(from, to, MetadataScope { mailbox: Some(mailbox.id), user }).await?;
                if let Some(user) = user.filter(|u| *u != account.id) {
                    import_private_seen(from, to, mailbox.id, user).await?;
                }
            }
        }
    }
    let queue = from.queue_list().await?;
    progress(&format!("queue: {} messages", queue.len()));
    for entry in &queue {
        summary.queued += usize::from(import_queue_entry(from, to, entry).await?);
    }
    let held = from.quarantine_list().await?;
    progress(&format!("quarantine: {} messages", held.len()));
    for entry in held {
        if let Some((entry, raw)) = from.quarantine_get(entry.id).await? {
            summary.quarantined += usize::from(import_quarantined(to, &entry, raw).await?);
        }
    }
    let known: Vec<SpamModelOwner> = to.spam_models().await?.into_iter().map(|(o, _, _)| o).collect();
    for (owner, spam, ham) in from.spam_models().await? {
        if !known.contains(&owner) {
            let model = from.spam_model(owner).await?;
            to.spam_model_update(SpamModelUpdate {
                owner,
                spam_learned: spam,
                ham_learned: ham,
                features: model.features,
                lesson: None,
            })
            .await?;
            summary.spam_models += 1;
        }
    }
    advance_sequences(to).await?;
    progress("done");
    Ok(summary)
}

async fn import_annotations(from: &dyn Store, to: &PgStore, scope: MetadataScope) -> StoreResult<()> {
    let entries = from.metadata_get(scope).await?;
    if entries.is_empty() {
        return Ok(());
    }
    let client = to.client().await?;
    for (name, value) in entries {
        client
            .run(
                "INSERT INTO metadata (account, mailbox, name, value) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&id(scope.user.unwrap_or(0)), &id(scope.mailbox.unwrap_or(0)), &name, &value],
            )
            .await
            .map_err(pg_error)?;
    }
    Ok(())
}

/// A reader's own `\Seen` records with their modseqs (already below the mailbox's).
async fn import_private_seen(from: &dyn Store, to: &PgStore, mailbox: MailboxId, user: AccountId) -> StoreResult<()> {
    let records = from.seen_private_get(mailbox, user, 0).await?;
    if records.is_empty() {
        return Ok(());
    }
    let uids: Vec<i64> = records.iter().map(|r| i64::from(r.uid)).collect();
    let seen: Vec<bool> = records.iter().map(|r| r.seen).collect();
    let modseqs: Vec<i64> = records.iter().map(|r| id(r.modseq)).collect();
    to.client()
        .await?
        .run(
            "INSERT INTO private_seen (mailbox, account, uid, seen, modseq)
             SELECT $1::bigint, $2::bigint, u, s, m FROM unnest($3::bigint[], $4::boolean[], $5::bigint[]) AS t(u, s, m)
             ON CONFLICT DO NOTHING",
            &[&id(mailbox), &id(user), &uids, &seen, &modseqs],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

async fn import_account(to: &PgStore, account: &Account) -> StoreResult<bool> {
    let client = to.client().await?;
    let n = client
        .run(
            "INSERT INTO accounts (id, address, record) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&id(account.id), &account.address, &rows::to_json(account)?],
        )
        .await
        .map_err(pg_error)?;
    Ok(n > 0)
}

async fn import_mailbox(to: &PgStore, m: &Mailbox) -> StoreResult<bool> {
    let client = to.client().await?;
    let special = m.special_use.map(rows::special_use_name);
    // Counters start empty and grow with the messages copied; UIDNEXT, modseq and the
    // rest are the source's.
    let n = client
        .run(
            "INSERT INTO mailboxes (id, account, name, special_use, subscribed, uid_validity, uid_next,
                 highest_modseq, total, unseen, size, deleted, recent_uid, keywords, acl)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, 0, 0, $9, $10, $11) ON CONFLICT DO NOTHING",
            &[
                &id(m.id),
                &id(m.account),
                &m.name,
                &special,
                &m.subscribed,
                &i64::from(m.uid_validity),
                &i64::from(m.uid_next),
                &id(m.highest_modseq),
                &i64::from(m.recent_uid),
                &m.keywords,
                &rows::to_json(&m.acl)?,
            ],
        )
        .await
        .map_err(pg_error)?;
    for entry in &m.acl {
        client
            .run(
                "INSERT INTO mailbox_acl (identifier, mailbox) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&entry.identifier.to_string(), &id(m.id)],
            )
            .await
            .map_err(pg_error)?;
    }
    Ok(n > 0)
}

/// Copies messages of one mailbox in one transaction; returns (copied, already there).
async fn import_messages(
    from: &dyn Store,
    to: &PgStore,
    account: AccountId,
    batch: &[MessageEntry],
) -> StoreResult<(usize, usize)> {
    let mut summaries = from.summary_get_many(batch.iter().map(|m| m.blob).collect()).await?.into_iter();
    let mut loaded = Vec::with_capacity(batch.len());
    for entry in batch {
        let Some(raw) = from.blob_get(entry.blob).await? else {
            return Err(StoreError::Corrupt {
                what: format!("message {} of mailbox {}", entry.uid, entry.mailbox),
                detail: "its content is missing".into(),
            });
        };
        let summary = summaries.next().flatten();
        let envelope = from.envelope_get(entry.delivery_id).await?;
        loaded.push((entry.clone(), raw, summary, envelope));
    }
    let mut client = to.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let (mut copied, mut skipped) = (0, 0);
    for (m, raw, summary, envelope) in loaded {
        let inserted = tx
            .run(
                "INSERT INTO messages (mailbox, uid, blob, size, internal_date, flags, keywords, modseq, email_id,
                                       thread_id, delivery_id, saved)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
                &[
                    &id(m.mailbox),
                    &i64::from(m.uid),
                    &&m.blob.0[..],
                    &id(m.size),
                    &m.internal_date,
                    &i16::from(m.flags.0),
                    &m.keywords,
                    &id(m.modseq),
                    &id(m.email_id),
                    &id(m.thread_id),
                    &id(m.delivery_id),
                    &m.saved,
                ],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 0 {
            skipped += 1;
            continue;
        }
        copied += 1;
        let text = {
            let raw = raw.clone();
            tokio::task::spawn_blocking(move || crate::text::extract(&raw))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?
        };
        let summary = match summary {
            Some(s) => s,
            None => tern_mime::summarize(&raw),
        };
        add_content(to, &tx, &m.blob, &raw, Some(&encode_summary(&summary)?), text, 1).await?;
        tx.run(
            "UPDATE mailboxes SET total = total + 1, unseen = unseen + $2, deleted = deleted + $3, size = size + $4
             WHERE id = $1",
            &[
                &id(m.mailbox),
                &i64::from(!m.flags.contains(Flags::SEEN)),
                &i64::from(m.flags.contains(Flags::DELETED)),
                &id(m.size),
            ],
        )
        .await
        .map_err(pg_error)?;
        if let Some(envelope) = envelope {
            tx.run(
                "INSERT INTO envelopes (delivery_id, envelope) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&id(m.delivery_id), &rows::to_json(&envelope)?],
            )
            .await
            .map_err(pg_error)?;
        }
        // New replies join the thread of the message they answer.
        if let Some(message_id) = &summary.message_id {
            tx.run(
                "INSERT INTO threads (account, message_id, thread) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&id(account), message_id, &id(m.thread_id)],
            )
            .await
            .map_err(pg_error)?;
        }
    }
    tx.commit().await.map_err(pg_error)?;
    Ok((copied, skipped))
}

/// Adds references to a content, storing it (with its summary and search text) when new.
async fn add_content(
    to: &PgStore,
    tx: &deadpool_postgres::Transaction<'_>,
    hash: &BlobHash,
    raw: &[u8],
    summary: Option<&[u8]>,
    text: Option<crate::text::SearchText>,
    references: i64,
) -> StoreResult<()> {
    let key = &hash.0[..];
    let scan_only = summary.is_some() && text.is_none();
    tx.run(
        "INSERT INTO contents (hash, refcount, size, summary, scan_only) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (hash) DO UPDATE SET refcount = contents.refcount + excluded.refcount,
             summary = COALESCE(contents.summary, excluded.summary)",
        &[&key, &references, &(raw.len() as i64), &summary, &scan_only],
    )
    .await
    .map_err(pg_error)?;
    to.blobs().put(tx, hash, raw).await?;
    if let Some(text) = &text {
        crate::text::insert(tx, &[(*hash, text)]).await?;
    }
    Ok(())
}

async fn import_vanished(to: &PgStore, mailbox: &Mailbox, uids: &[u32]) -> StoreResult<()> {
    if uids.is_empty() {
        return Ok(());
    }
    let client = to.client().await?;
    let already: i64 = client
        .row("SELECT count(*) FROM expunged WHERE mailbox = $1", &[&id(mailbox.id)])
        .await
        .map_err(pg_error)?
        .get(0);
    if already > 0 {
        return Ok(());
    }
    let uids: Vec<i64> = uids.iter().map(|&u| i64::from(u)).collect();
    client
        .run(
            "INSERT INTO expunged (mailbox, modseq, uid) SELECT $1::bigint, $2::bigint, u FROM unnest($3::bigint[]) AS u",
            &[&id(mailbox.id), &id(mailbox.highest_modseq), &uids],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

async fn import_queue_entry(from: &dyn Store, to: &PgStore, entry: &QueueEntry) -> StoreResult<bool> {
    let Some(raw) = from.blob_get(entry.message.blob).await? else {
        return Err(StoreError::Corrupt {
            what: format!("queue entry {}", entry.message.id),
            detail: "its content is missing".into(),
        });
    };
    let mut client = to.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let next = entry.next_attempt().unwrap_or(entry.message.created);
    let n = tx
        .run(
            "INSERT INTO queue (id, entry, next_attempt, created) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&id(entry.message.id), &rows::to_json(entry)?, &next, &entry.message.created],
        )
        .await
        .map_err(pg_error)?;
    if n > 0 {
        add_content(to, &tx, &entry.message.blob, &raw, None, None, 1).await?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(n > 0)
}

async fn import_quarantined(to: &PgStore, entry: &QuarantineEntry, raw: Vec<u8>) -> StoreResult<bool> {
    let client = to.client().await?;
    let n = client
        .run(
            "INSERT INTO quarantine (id, entry, raw, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&id(entry.id), &rows::to_json(entry)?, &raw, &entry.expires_at],
        )
        .await
        .map_err(pg_error)?;
    Ok(n > 0)
}

/// Identifiers handed out from now on come after every copied one.
async fn advance_sequences(to: &PgStore) -> StoreResult<()> {
    let client = to.client().await?;
    for (sequence, query) in [
        ("account_ids", "SELECT max(id) FROM accounts"),
        ("mailbox_ids", "SELECT max(id) FROM mailboxes"),
        ("email_ids", "SELECT max(email_id) FROM messages"),
        (
            "delivery_ids",
            "SELECT greatest((SELECT max(delivery_id) FROM messages), (SELECT max(delivery_id) FROM envelopes))",
        ),
        ("queue_ids", "SELECT max(id) FROM queue"),
        ("quarantine_ids", "SELECT max(id) FROM quarantine"),
    ] {
        let max: Option<i64> = client.row(query, &[]).await.map_err(pg_error)?.get(0);
        if let Some(max) = max.filter(|m| *m > 0) {
            client
                .run(
                    &format!("SELECT setval('{sequence}', greatest($1, (SELECT last_value FROM {sequence})))"),
                    &[&max],
                )
                .await
                .map_err(pg_error)?;
        }
    }
    client
        .run(
            "UPDATE tern_meta SET value = greatest(value, (SELECT COALESCE(max(uid_validity), 0) FROM mailboxes))
             WHERE key = 'uidvalidity'",
            &[],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}
