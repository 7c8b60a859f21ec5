//! The outbound queue, shared by every node. An entry is claimable when it is due
//! (`next_attempt <= now`) and its lease has ended (`lease_until <= now`); a claim takes due
//! entries with `FOR UPDATE SKIP LOCKED`, so concurrent claimers on any node skip each other's
//! rows instead of waiting, and writes the lease in the same statement. Leases are durable: a
//! node that dies leaves its entries to the others once the leases end.

use crate::PgStore;
use crate::blob::BlobBackend;
use crate::error::pg_error;
use crate::mail::release_contents;
use crate::rows::{self, id};
use crate::sql::Cached;
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use std::collections::BTreeMap;
use tern_store::*;

/// Writes a new entry for a delivery's remote recipients.
pub(crate) async fn insert_entry(tx: &Transaction<'_>, queue_id: QueueId, d: &Delivery) -> StoreResult<()> {
    let entry = QueueEntry::for_delivery(queue_id, d);
    tx.run(
        "INSERT INTO queue (id, entry, next_attempt, created) VALUES ($1, $2, $3, $4)",
        &[&id(queue_id), &rows::to_json(&entry)?, &d.envelope.received_at, &d.envelope.received_at],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Writes `entry` back (ending its lease with `end_lease`: its holder reported), or removes it
/// and releases its content when every recipient is final. Returns whether it is still queued.
async fn store_entry(
    tx: &Transaction<'_>,
    blobs: &dyn BlobBackend,
    entry: &QueueEntry,
    end_lease: bool,
) -> StoreResult<bool> {
    let queue_id = id(entry.message.id);
    match entry.next_attempt() {
        Some(at) => {
            tx.run(
                "UPDATE queue SET entry = $2, next_attempt = $3,
                        lease_until = CASE WHEN $4 THEN 0 ELSE lease_until END
                 WHERE id = $1",
                &[&queue_id, &rows::to_json(entry)?, &at, &end_lease],
            )
            .await
            .map_err(pg_error)?;
            Ok(true)
        }
        None => {
            tx.run("DELETE FROM queue WHERE id = $1", &[&queue_id]).await.map_err(pg_error)?;
            release_contents(tx, blobs, BTreeMap::from([(entry.message.blob, 1)])).await?;
            Ok(false)
        }
    }
}

async fn entry_locked(tx: &Transaction<'_>, queue_id: QueueId) -> StoreResult<Option<QueueEntry>> {
    tx.maybe_row("SELECT entry FROM queue WHERE id = $1 FOR UPDATE", &[&id(queue_id)])
        .await
        .map_err(pg_error)?
        .map(|r| rows::json(&r, 0, "queue entry"))
        .transpose()
}

#[async_trait]
impl QueueStore for PgStore {
    async fn queue_claim(&self, now: i64, limit: usize, lease_seconds: i64) -> StoreResult<Vec<QueueEntry>> {
        let client = self.client().await?;
        let rows = client
            .rows(
                "UPDATE queue SET lease_until = $2, lease_holder = $4 WHERE id IN (
                     SELECT id FROM queue WHERE next_attempt <= $1 AND lease_until <= $1
                     ORDER BY next_attempt, id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING entry, next_attempt, id",
                &[&now, &now.saturating_add(lease_seconds), &(limit as i64), &self.node()],
            )
            .await
            .map_err(pg_error)?;
        let mut claimed: Vec<(i64, i64, QueueEntry)> = Vec::with_capacity(rows.len());
        for row in &rows {
            claimed.push((row.get(1), row.get(2), rows::json(row, 0, "queue entry")?));
        }
        claimed.sort_by_key(|(at, queue_id, _)| (*at, *queue_id));
        Ok(claimed.into_iter().map(|(_, _, e)| e).collect())
    }

    async fn queue_renew(&self, ids: Vec<QueueId>, now: i64, lease_seconds: i64) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = ids.into_iter().map(id).collect();
        let client = self.client().await?;
        client
            .run(
                "UPDATE queue SET lease_until = $2 WHERE id = ANY($1) AND lease_holder = $4 AND lease_until > $3",
                &[&ids, &now.saturating_add(lease_seconds), &now, &self.node()],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn queue_update(
        &self,
        queue_id: QueueId,
        updates: Vec<(usize, QueuedRecipient)>,
    ) -> StoreResult<Option<QueueEntry>> {
        let blobs = self.blobs();
        self.write(move |tx, _changes| {
            Box::pin(async move {
                let blobs = &*blobs;
                let Some(mut entry) = entry_locked(tx, queue_id).await? else { return Ok(None) };
                for (index, recipient) in updates {
                    match entry.recipients.get_mut(index) {
                        Some(slot) => *slot = recipient,
                        None => {
                            return Err(StoreError::NotFound(format!("recipient {index} of queue entry {queue_id}")));
                        }
                    }
                }
                Ok(store_entry(tx, blobs, &entry, true).await?.then_some(entry))
            })
        })
        .await
    }

    async fn queue_get(&self, queue_id: QueueId) -> StoreResult<Option<QueueEntry>> {
        let client = self.client().await?;
        client
            .maybe_row("SELECT entry FROM queue WHERE id = $1", &[&id(queue_id)])
            .await
            .map_err(pg_error)?
            .map(|r| rows::json(&r, 0, "queue entry"))
            .transpose()
    }

    async fn queue_list(&self) -> StoreResult<Vec<QueueEntry>> {
        let client = self.client().await?;
        let rows = client.rows("SELECT entry FROM queue ORDER BY id", &[]).await.map_err(pg_error)?;
        rows.iter().map(|r| rows::json(r, 0, "queue entry")).collect()
    }

    async fn queue_stats(&self) -> StoreResult<QueueStats> {
        let client = self.client().await?;
        let row = client.row("SELECT count(*), min(created) FROM queue", &[]).await.map_err(pg_error)?;
        Ok(QueueStats { messages: row.get::<_, i64>(0) as usize, oldest: row.get(1) })
    }

    async fn queue_next_due(&self) -> StoreResult<Option<i64>> {
        // A leased entry becomes claimable when its lease ends (its holder may be gone).
        let client = self.client().await?;
        let row =
            client.row("SELECT min(greatest(next_attempt, lease_until)) FROM queue", &[]).await.map_err(pg_error)?;
        Ok(row.get(0))
    }

    async fn queue_retry(&self, queue_id: Option<QueueId>, now: i64) -> StoreResult<usize> {
        let blobs = self.blobs();
        self.write(move |tx, changes| {
            Box::pin(async move {
                let blobs = &*blobs;
                let rows = match queue_id {
                    Some(q) => tx
                        .rows("SELECT entry FROM queue WHERE id = $1 FOR UPDATE", &[&id(q)])
                        .await
                        .map_err(pg_error)?,
                    None => tx.rows("SELECT entry FROM queue ORDER BY id FOR UPDATE", &[]).await.map_err(pg_error)?,
                };
                let mut n = 0;
                for row in &rows {
                    let old: QueueEntry = rows::json(row, 0, "queue entry")?;
                    let mut entry = old.clone();
                    for r in entry.recipients.iter_mut().filter(|r| !r.is_final()) {
                        r.next_attempt = r.next_attempt.min(now);
                    }
                    if entry != old {
                        store_entry(tx, blobs, &entry, false).await?;
                    }
                    if entry.next_attempt().is_some() {
                        n += 1;
                    }
                }
                if n > 0 {
                    changes.push(StoreChange::Queue);
                }
                Ok(n)
            })
        })
        .await
    }

    async fn queue_remove(&self, queue_id: QueueId) -> StoreResult<bool> {
        let blobs = self.blobs();
        self.write(move |tx, _changes| {
            Box::pin(async move {
                let blobs = &*blobs;
                let Some(entry) = entry_locked(tx, queue_id).await? else { return Ok(false) };
                tx.run("DELETE FROM queue WHERE id = $1", &[&id(queue_id)]).await.map_err(pg_error)?;
                release_contents(tx, blobs, BTreeMap::from([(entry.message.blob, 1)])).await?;
                Ok(true)
            })
        })
        .await
    }
}
