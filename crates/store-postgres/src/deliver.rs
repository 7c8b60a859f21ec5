//! Deliveries, written in batches: as the embedded store's writer folds the deliveries of
//! concurrent sessions into one fsync, each node's delivery writers fold them into one
//! transaction, with one statement per kind of row for the whole batch (a delivery done
//! alone took about fifteen round trips and a commit of its own, which cost the database
//! more CPU than the rows themselves).
//!
//! Every delivery of a batch is durable when its caller is answered (the batch's commit). A
//! batch that fails is retried one delivery at a time, so one delivery's error (a full
//! mailbox, a broken row) is its own and never its neighbours'.
//!
//! Locks are taken in the store's order — mailboxes by id (one statement for the batch),
//! then thread ids, then contents by hash — so concurrent batches, on this node or others,
//! never deadlock one another or the IMAP writers.

use crate::PgStore;
use crate::blob::BlobBackend;
use crate::error::pg_error;
use crate::mail::{next_ids, save_mailbox};
use crate::rows::{self, MAILBOX_COLUMNS, id};
use crate::sql::Cached;
use deadpool_postgres::Transaction;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tern_store::codec::encode_summary;
use tern_store::*;
use tokio::sync::{Mutex, mpsc, oneshot};

/// References and In-Reply-To ids looked at for threading, at most (as the embedded store).
const MAX_THREAD_REFS: usize = 64;
/// Deliveries per transaction at most, and their bytes (a batch always takes one).
const BATCH_DELIVERIES: usize = 64;
const BATCH_BYTES: usize = 16 << 20;
/// Transactions in flight per node: while one waits for its commit, the next gathers.
pub const WRITERS: usize = 2;
/// Deliveries waiting for a writer at most (then callers wait to hand theirs over).
const BACKLOG: usize = 1024;

/// What a delivery's content needs besides its bytes: the summary, for mailbox copies. (Its
/// search text is extracted and indexed after the commit, by [`crate::indexer`].)
pub(crate) struct Prepared {
    summary: Option<Vec<u8>>,
}

pub(crate) async fn prepare(d: &Delivery) -> StoreResult<Prepared> {
    if d.targets.is_empty() {
        return Ok(Prepared { summary: None });
    }
    Ok(Prepared { summary: Some(encode_summary(&d.summary)?) })
}

pub(crate) struct Pending {
    delivery: Delivery,
    prepared: Prepared,
    reply: oneshot::Sender<StoreResult<DeliveryReceipt>>,
}

/// The sending end of a node's delivery writers.
pub(crate) type Deliveries = mpsc::Sender<Pending>;

pub(crate) fn channel() -> (Deliveries, Arc<Mutex<mpsc::Receiver<Pending>>>) {
    let (tx, rx) = mpsc::channel(BACKLOG);
    (tx, Arc::new(Mutex::new(rx)))
}

impl PgStore {
    /// Hands a delivery to this node's writers and waits for its batch's commit.
    pub(crate) async fn deliver_batched(&self, delivery: Delivery) -> StoreResult<DeliveryReceipt> {
        let _in_flight = InFlight::count(self);
        let prepared = prepare(&delivery).await?;
        let (reply, answer) = oneshot::channel();
        self.deliveries().send(Pending { delivery, prepared, reply }).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// Counts a delivery between its hand-over and its answer (however the caller's future ends).
struct InFlight<'a>(&'a PgStore);

impl<'a> InFlight<'a> {
    fn count(store: &'a PgStore) -> InFlight<'a> {
        store.in_flight().fetch_add(1, Ordering::Relaxed);
        InFlight(store)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight().fetch_sub(1, Ordering::Relaxed);
    }
}

/// One writer: takes what waits (up to a batch), writes it, answers, again.
pub(crate) async fn run(store: PgStore, queue: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    loop {
        let batch = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else { return };
            let mut bytes = first.delivery.raw.len();
            let mut batch = vec![first];
            while batch.len() < BATCH_DELIVERIES && bytes < BATCH_BYTES {
                match queue.try_recv() {
                    Ok(next) => {
                        bytes += next.delivery.raw.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        write_batch(&store, batch).await;
    }
}

async fn write_batch(store: &PgStore, batch: Vec<Pending>) {
    metrics::histogram!("tern_store_commit_group_size").record(batch.len() as f64);
    let result = write(store, batch.iter().map(|p| (&p.delivery, &p.prepared)).collect()).await;
    match result {
        Ok(receipts) => {
            for (pending, receipt) in batch.into_iter().zip(receipts) {
                let _ = pending.reply.send(Ok(receipt));
            }
        }
        Err(e) if batch.len() == 1 || matches!(e, StoreError::Unavailable(_) | StoreError::Closed) => {
            // Unreachable or closed: the same for every delivery of the batch.
            let again = |e: &StoreError| match e {
                StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
                _ => StoreError::Closed,
            };
            let others: Vec<StoreError> = batch.iter().skip(1).map(|_| again(&e)).collect();
            for (pending, error) in batch.into_iter().zip(std::iter::once(e).chain(others)) {
                let _ = pending.reply.send(Err(error));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, deliveries = batch.len(), "delivery batch failed; writing its deliveries one by one");
            for pending in batch {
                let one = write(store, vec![(&pending.delivery, &pending.prepared)]).await;
                let _ = pending.reply.send(one.and_then(|mut r| r.pop().ok_or(StoreError::Closed)));
            }
        }
    }
}

/// One transaction for `items` (committed with its changes by [`PgStore::commit`]).
async fn write(store: &PgStore, items: Vec<(&Delivery, &Prepared)>) -> StoreResult<Vec<DeliveryReceipt>> {
    let blobs = store.blobs();
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let mut changes = Vec::new();
    let receipts = deliver_in(&tx, &*blobs, &items, &mut changes).await?;
    store.commit(tx, &changes).await?;
    if receipts.iter().any(|r| !r.copies.is_empty()) {
        store.wake_indexer();
    }
    Ok(receipts)
}

/// A mailbox as delivery resolves targets to it.
#[derive(Clone)]
struct MailboxName {
    id: MailboxId,
    name: String,
    special_use: Option<String>,
    /// Anyone may post to it (RFC 4314 `p`): `user+name@` delivers into it.
    posting: bool,
}

/// The mailbox a target leads to among its account's (INBOX when the one named is missing).
fn resolve(mailboxes: &[MailboxName], selector: &MailboxSelector) -> Option<MailboxId> {
    let found = match selector {
        MailboxSelector::Inbox => None,
        MailboxSelector::Name(name) => mailboxes.iter().find(|m| &m.name == name),
        MailboxSelector::Posted(name) => mailboxes.iter().find(|m| &m.name == name && m.posting),
        MailboxSelector::Id(wanted) => mailboxes.iter().find(|m| m.id == *wanted),
        // The lowest id carrying it (the list is in id order).
        MailboxSelector::SpecialUse(u) => {
            mailboxes.iter().find(|m| m.special_use.as_deref() == Some(rows::special_use_name(*u)))
        }
    };
    found.or_else(|| mailboxes.iter().find(|m| m.name == INBOX)).map(|m| m.id)
}

/// A content the batch references: how often, and whether for a mailbox.
struct ContentUse<'a> {
    references: i64,
    size: i64,
    summary: Option<&'a [u8]>,
    raw: &'a [u8],
}

/// Statements of [`deliver_in`].
const MAILBOX_NAMES: &str = "SELECT account, id, name, special_use,
            acl <> '[]' AND EXISTS (SELECT 1 FROM jsonb_array_elements(acl) AS e
                                    WHERE e->>'identifier' = 'anyone' AND strpos(e->>'rights', 'p') > 0)
     FROM mailboxes WHERE account = ANY($1) ORDER BY id";
// (limit, bytes in use) of the accounts with a quota, read once their mailboxes are locked (so
// that a concurrent batch's deliveries to them are counted); the sum only where there is a
// limit (most accounts have none).
const QUOTAS: &str = "SELECT a.record,
                             CASE WHEN jsonb_typeof(a.record->'quota_bytes') = 'number' THEN
                                 (SELECT COALESCE(sum(m.size), 0) FROM mailboxes m WHERE m.account = a.id)::bigint
                             END
                      FROM accounts a WHERE a.id = ANY($1)";
const THREADS_KNOWN: &str = "SELECT t.account, t.message_id, t.thread FROM threads t
                             JOIN unnest($1::bigint[], $2::text[]) AS k(account, message_id)
                               ON t.account = k.account AND t.message_id = k.message_id";
const THREADS_INSERT: &str = "INSERT INTO threads (account, message_id, thread)
                              SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[]) ORDER BY 1, 2
                              ON CONFLICT DO NOTHING";
// Keyword lists differ in length, which PostgreSQL's arrays cannot hold side by side: messages
// with keywords are inserted one by one.
const MESSAGES_INSERT: &str = "INSERT INTO messages (mailbox, uid, blob, size, internal_date, flags, keywords, modseq,
                                                     email_id, thread_id, delivery_id, saved)
     SELECT mailbox, uid, blob, size, internal_date, flags, '{}', modseq, email_id, thread_id, delivery_id, saved
     FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bigint[], $5::bigint[], $6::smallint[],
                 $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[])
          AS m(mailbox, uid, blob, size, internal_date, flags, modseq, email_id, thread_id, delivery_id, saved)";
// New contents stored (waiting for the indexer when a mailbox holds them), known ones
// referenced again — a content first stored for the queue alone gets its summary now, and
// waits for the indexer. `xmax = 0`: inserted, not updated.
const CONTENTS_UPSERT: &str = "INSERT INTO contents (hash, refcount, size, summary, indexed)
     SELECT h, r, s, m, m IS NULL FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bytea[])
          AS c(h, r, s, m) ORDER BY h
     ON CONFLICT (hash) DO UPDATE SET
         refcount = contents.refcount + excluded.refcount,
         summary = COALESCE(contents.summary, excluded.summary),
         indexed = CASE WHEN excluded.summary IS NOT NULL AND contents.summary IS NULL
                        THEN false ELSE contents.indexed END
     RETURNING hash, xmax = 0";
const ENVELOPES_INSERT: &str =
    "INSERT INTO envelopes (delivery_id, envelope) SELECT * FROM unnest($1::bigint[], $2::jsonb[])";
const COUNTERS_UPDATE: &str = "UPDATE mailboxes AS m SET uid_next = u.uid_next, highest_modseq = u.modseq,
            total = u.total, unseen = u.unseen, size = u.size, deleted = u.deleted
     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
                 $7::bigint[]) AS u(id, uid_next, modseq, total, unseen, size, deleted)
     WHERE m.id = u.id";

/// `rows` of `sql`, or none without running it when `skip`.
async fn rows_unless(
    tx: &Transaction<'_>,
    skip: bool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> StoreResult<Vec<tokio_postgres::Row>> {
    if skip {
        return Ok(Vec::new());
    }
    tx.rows(sql, params).await.map_err(pg_error)
}

/// Stores deliveries inside `tx` (see [`MailStore::deliver`]), in order: each sees the
/// mailboxes, quotas and threads as the ones before it left them.
///
/// The statements go in five pipelined groups (see [`crate::sql`]), each one round trip:
/// ids and mailbox names; the lock of the mailboxes and then the quotas; more ids and the
/// known threads; every row written; the new contents' bytes.
pub(crate) async fn deliver_in(
    tx: &Transaction<'_>,
    blobs: &dyn BlobBackend,
    batch: &[(&Delivery, &Prepared)],
    changes: &mut Vec<StoreChange>,
) -> StoreResult<Vec<DeliveryReceipt>> {
    let lock = format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE id = ANY($1) ORDER BY id FOR UPDATE");
    // Prepared before anything is sent, so that every group runs in the order written.
    tx.warm(&[MAILBOX_NAMES, &lock, QUOTAS, THREADS_KNOWN, THREADS_INSERT, MESSAGES_INSERT, CONTENTS_UPSERT])
        .await
        .map_err(pg_error)?;

    // The accounts' mailboxes by name, to resolve the targets; then those chosen, locked.
    let mut accounts: Vec<i64> = batch.iter().flat_map(|(d, _)| d.targets.iter().map(|t| id(t.account))).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let (delivery_ids, name_rows) = futures::try_join!(next_ids(tx, "delivery_ids", batch.len()), async {
        rows_unless(tx, accounts.is_empty(), MAILBOX_NAMES, &[&accounts]).await
    },)?;
    let mut names: HashMap<AccountId, Vec<MailboxName>> = HashMap::new();
    for row in name_rows {
        let account: i64 = row.get(0);
        let mailbox: i64 = row.get(1);
        names.entry(account as u64).or_default().push(MailboxName {
            id: mailbox as u64,
            name: row.get(2),
            special_use: row.get(3),
            posting: row.get(4),
        });
    }
    let resolved: Vec<Vec<Option<MailboxId>>> = batch
        .iter()
        .map(|(d, _)| {
            d.targets.iter().map(|t| names.get(&t.account).and_then(|list| resolve(list, &t.mailbox))).collect()
        })
        .collect();
    let mut wanted: Vec<i64> = resolved.iter().flatten().flatten().map(|&m| id(m)).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let (locked, quota_rows) =
        futures::try_join!(async { rows_unless(tx, wanted.is_empty(), &lock, &[&wanted]).await }, async {
            rows_unless(tx, accounts.is_empty(), QUOTAS, &[&accounts]).await
        },)?;
    let mut mailboxes: BTreeMap<MailboxId, Mailbox> = BTreeMap::new();
    for row in &locked {
        let m = rows::mailbox(row)?;
        mailboxes.insert(m.id, m);
    }
    let mut quotas: HashMap<AccountId, (u64, u64)> = HashMap::new();
    for row in &quota_rows {
        let record: Account = rows::json(row, 0, "account")?;
        if let (Some(limit), Some(used)) = (record.quota_bytes, row.get::<_, Option<i64>>(1)) {
            quotas.insert(record.id, (limit, used as u64));
        }
    }
    let keywords_before: HashMap<MailboxId, usize> = mailboxes.values().map(|m| (m.id, m.keywords.len())).collect();

    // Each delivery's copies, in order, as the embedded writer makes them.
    let mut receipts = Vec::with_capacity(batch.len());
    let mut entries: Vec<(usize, AccountId, MessageEntry)> = Vec::new();
    let mut touched: HashSet<MailboxId> = HashSet::new();
    for (n, ((d, _), targets)) in batch.iter().zip(&resolved).enumerate() {
        let delivery_id = delivery_ids[n];
        let size = d.raw.len() as u64;
        let mut used: HashSet<MailboxId> = HashSet::new();
        let mut receipt = DeliveryReceipt {
            delivery_id,
            content: d.hash,
            copies: Vec::new(),
            skipped: Vec::new(),
            over_quota: Vec::new(),
            queued: None,
        };
        for (target, mailbox_id) in d.targets.iter().zip(targets) {
            let Some(mailbox) = (*mailbox_id).and_then(|m| mailboxes.get_mut(&m)) else {
                receipt.skipped.push(target.account);
                continue;
            };
            if !used.insert(mailbox.id) {
                continue; // one copy per mailbox, however many recipients lead there
            }
            if let Some((limit, in_use)) = quotas.get_mut(&target.account) {
                if *in_use + size > *limit {
                    used.remove(&mailbox.id);
                    if !receipt.over_quota.contains(&target.account) {
                        receipt.over_quota.push(target.account);
                    }
                    continue;
                }
                *in_use += size;
            }
            touched.insert(mailbox.id);
            let entry = mailbox.add_delivered(d, target, delivery_id)?;
            let uid = entry.uid;
            entries.push((n, target.account, entry));
            receipt.copies.push(StoredCopy { account: target.account, mailbox: mailbox.id, uid });
        }
        receipts.push(receipt);
    }

    // Ids and threads. A message joins the thread of the first message it refers to that is
    // known (stored before, or earlier in this batch), else its own; every id it names is
    // recorded for the messages that follow (the first record of an id stays).
    let related: Vec<Vec<&String>> = entries
        .iter()
        .map(|(n, _, _)| {
            let s = &batch[*n].0.summary;
            s.references.iter().chain(s.in_reply_to.iter()).take(MAX_THREAD_REFS).collect()
        })
        .collect();
    let (look_accounts, look_ids): (Vec<i64>, Vec<&str>) = entries
        .iter()
        .zip(&related)
        .flat_map(|((_, account, _), ids)| ids.iter().map(move |r| (id(*account), r.as_str())))
        .unzip();
    let outbound: Vec<usize> = (0..batch.len()).filter(|&n| !batch[n].0.remote.is_empty()).collect();
    let (email_ids, queue_ids, known_rows) = futures::try_join!(
        next_ids(tx, "email_ids", entries.len()),
        next_ids(tx, "queue_ids", outbound.len()),
        async { rows_unless(tx, look_ids.is_empty(), THREADS_KNOWN, &[&look_accounts, &look_ids]).await },
    )?;
    let mut known: HashMap<(AccountId, String), u64> = HashMap::new();
    for row in known_rows {
        let account: i64 = row.get(0);
        let thread: i64 = row.get(2);
        known.insert((account as u64, row.get(1)), thread as u64);
    }
    let mut new_threads: BTreeMap<(AccountId, String), u64> = BTreeMap::new();
    for (((n, account, entry), email_id), related) in entries.iter_mut().zip(&email_ids).zip(&related) {
        entry.email_id = *email_id;
        entry.thread_id =
            related.iter().find_map(|r| known.get(&(*account, (*r).clone())).copied()).unwrap_or(*email_id);
        for m in batch[*n].0.summary.message_id.iter().chain(related.iter().copied()) {
            let key = (*account, m.clone());
            if !known.contains_key(&key) {
                known.insert(key.clone(), entry.thread_id);
                new_threads.insert(key, entry.thread_id);
            }
        }
    }
    for (&n, &queue_id) in outbound.iter().zip(&queue_ids) {
        receipts[n].queued = Some(queue_id);
    }

    // Every row, in one round trip: threads, messages, queue entries, contents (once per hash,
    // in hash order), envelopes of the deliveries that reached a mailbox, mailbox counters.
    let (mut thread_accounts, mut thread_message_ids, mut thread_ids) = (Vec::new(), Vec::new(), Vec::new());
    for ((account, message_id), thread) in &new_threads {
        thread_accounts.push(id(*account));
        thread_message_ids.push(message_id.as_str());
        thread_ids.push(id(*thread));
    }

    let (plain, with_keywords): (Vec<_>, Vec<_>) = entries.iter().partition(|(_, _, e)| e.keywords.is_empty());
    let message_column =
        |f: &dyn Fn(&MessageEntry) -> i64| -> Vec<i64> { plain.iter().map(|(_, _, e)| f(e)).collect() };
    let message_columns = [
        message_column(&|e| id(e.mailbox)),
        message_column(&|e| i64::from(e.uid)),
        message_column(&|e| id(e.size)),
        message_column(&|e| e.internal_date),
        message_column(&|e| id(e.modseq)),
        message_column(&|e| id(e.email_id)),
        message_column(&|e| id(e.thread_id)),
        message_column(&|e| id(e.delivery_id)),
        message_column(&|e| e.saved),
    ];
    let message_blobs: Vec<&[u8]> = plain.iter().map(|(_, _, e)| &e.blob.0[..]).collect();
    let message_flags: Vec<i16> = plain.iter().map(|(_, _, e)| i16::from(e.flags.0)).collect();

    let mut contents: BTreeMap<BlobHash, ContentUse<'_>> = BTreeMap::new();
    for ((d, prepared), receipt) in batch.iter().zip(&receipts) {
        let references = receipt.copies.len() as i64 + i64::from(receipt.queued.is_some());
        if references == 0 {
            continue;
        }
        let use_ = contents.entry(d.hash).or_insert(ContentUse {
            references: 0,
            size: d.raw.len() as i64,
            summary: None,
            raw: &d.raw[..],
        });
        use_.references += references;
        if !receipt.copies.is_empty() && use_.summary.is_none() {
            use_.summary = prepared.summary.as_deref();
        }
    }
    let content_hashes: Vec<&[u8]> = contents.keys().map(|h| &h.0[..]).collect();
    let content_references: Vec<i64> = contents.values().map(|c| c.references).collect();
    let content_sizes: Vec<i64> = contents.values().map(|c| c.size).collect();
    let content_summaries: Vec<Option<&[u8]>> = contents.values().map(|c| c.summary).collect();

    let (mut envelope_ids, mut envelopes) = (Vec::new(), Vec::new());
    for ((d, _), receipt) in batch.iter().zip(&receipts) {
        if !receipt.copies.is_empty() {
            envelope_ids.push(id(receipt.delivery_id));
            envelopes.push(rows::to_json(&d.envelope)?);
        }
    }

    // Mailboxes whose keywords a delivery extended are saved whole, one by one.
    let (same_keywords, new_keywords): (Vec<&Mailbox>, Vec<&Mailbox>) = mailboxes
        .values()
        .filter(|m| touched.contains(&m.id))
        .partition(|m| keywords_before.get(&m.id) == Some(&m.keywords.len()));
    let counter_column = |f: &dyn Fn(&Mailbox) -> i64| -> Vec<i64> { same_keywords.iter().map(|m| f(m)).collect() };
    let counters = [
        counter_column(&|m| id(m.id)),
        counter_column(&|m| i64::from(m.uid_next)),
        counter_column(&|m| id(m.highest_modseq)),
        counter_column(&|m| i64::from(m.total)),
        counter_column(&|m| i64::from(m.unseen)),
        counter_column(&|m| id(m.size)),
        counter_column(&|m| i64::from(m.deleted)),
    ];

    let [m_mailbox, m_uid, m_size, m_date, m_modseq, m_email, m_thread, m_delivery, m_saved] = &message_columns;
    let [c_id, c_uid_next, c_modseq, c_total, c_unseen, c_size, c_deleted] = &counters;
    let (_, _, _, _, inserted, _, _, _) = futures::try_join!(
        async {
            if !new_threads.is_empty() {
                tx.run(THREADS_INSERT, &[&thread_accounts, &thread_message_ids, &thread_ids])
                    .await
                    .map_err(pg_error)?;
            }
            Ok::<_, StoreError>(())
        },
        async {
            if !plain.is_empty() {
                tx.run(
                    MESSAGES_INSERT,
                    &[
                        m_mailbox,
                        m_uid,
                        &message_blobs,
                        m_size,
                        m_date,
                        &message_flags,
                        m_modseq,
                        m_email,
                        m_thread,
                        m_delivery,
                        m_saved,
                    ],
                )
                .await
                .map_err(pg_error)?;
            }
            Ok(())
        },
        futures::future::try_join_all(with_keywords.iter().map(|(_, _, e)| crate::mail::insert_message(tx, e))),
        futures::future::try_join_all(
            outbound.iter().zip(&queue_ids).map(|(&n, &queue_id)| crate::queue::insert_entry(tx, queue_id, batch[n].0))
        ),
        async {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&content_hashes, &content_references, &content_sizes, &content_summaries];
            rows_unless(tx, contents.is_empty(), CONTENTS_UPSERT, &params).await
        },
        async {
            if !envelope_ids.is_empty() {
                tx.run(ENVELOPES_INSERT, &[&envelope_ids, &envelopes]).await.map_err(pg_error)?;
            }
            Ok(())
        },
        async {
            if !same_keywords.is_empty() {
                tx.run(COUNTERS_UPDATE, &[c_id, c_uid_next, c_modseq, c_total, c_unseen, c_size, c_deleted])
                    .await
                    .map_err(pg_error)?;
            }
            Ok(())
        },
        futures::future::try_join_all(new_keywords.iter().map(|m| save_mailbox(tx, m))),
    )?;

    // The bytes of the contents this batch stored first.
    let mut new = Vec::new();
    for row in &inserted {
        if row.get::<_, bool>(1) {
            let hash = rows::hash_of(row.get::<_, &[u8]>(0))?;
            if let Some(c) = contents.get(&hash) {
                new.push((hash, c.raw));
            }
        }
    }
    new.sort_by_key(|(h, _)| *h);
    blobs.put_many(tx, &new).await?;

    if !outbound.is_empty() {
        changes.push(StoreChange::Queue);
    }
    for mailbox in mailboxes.values().filter(|m| touched.contains(&m.id)) {
        changes.push(StoreChange::Mailbox { account: mailbox.account, mailbox: mailbox.id });
    }
    Ok(receipts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(id: MailboxId, name: &str, special_use: Option<&str>) -> MailboxName {
        MailboxName { id, name: name.into(), special_use: special_use.map(String::from), posting: name == "Posted" }
    }

    #[test]
    fn targets_resolve_as_the_embedded_store_does() {
        let list = vec![
            named(1, "INBOX", None),
            named(2, "Junk", Some("junk")),
            named(3, "Spam", Some("junk")),
            named(4, "Lists", None),
        ];
        assert_eq!(resolve(&list, &MailboxSelector::Inbox), Some(1));
        assert_eq!(resolve(&list, &MailboxSelector::Name("Lists".into())), Some(4));
        assert_eq!(resolve(&list, &MailboxSelector::Name("lists".into())), Some(1), "names are exact");
        assert_eq!(resolve(&list, &MailboxSelector::Name("Gone".into())), Some(1));
        assert_eq!(resolve(&list, &MailboxSelector::Id(3)), Some(3));
        assert_eq!(resolve(&list, &MailboxSelector::Id(99)), Some(1));
        assert_eq!(resolve(&list, &MailboxSelector::SpecialUse(SpecialUse::Junk)), Some(2), "lowest id");
        assert_eq!(resolve(&list, &MailboxSelector::SpecialUse(SpecialUse::Trash)), Some(1));
        assert_eq!(resolve(&[named(4, "Lists", None)], &MailboxSelector::Inbox), None);
        let mut with_posting = list.clone();
        with_posting.push(named(5, "Posted", None));
        assert_eq!(resolve(&with_posting, &MailboxSelector::Posted("Posted".into())), Some(5));
        assert_eq!(resolve(&with_posting, &MailboxSelector::Posted("Lists".into())), Some(1), "no p: INBOX");
    }
}
