//! Each node's search indexer: contents a mailbox holds for the first time are stored with
//! `indexed = false`, and this task extracts their text and trigrams and writes them to
//! `content_text` ([`crate::text`]) after the delivery's commit, in batches. Nodes share the
//! work (`FOR UPDATE SKIP LOCKED`). Until a content is indexed, searches list it as unindexed
//! and the caller scans it, so answers stay exact however far the indexer lags. While
//! deliveries are being written, by this node or (seen through the change feed) another, the
//! indexer waits, for half a minute at most (then it indexes beside them until it has caught
//! up).

use crate::PgStore;
use crate::error::pg_error;
use crate::rows;
use crate::sql::Cached;
use crate::text::{self, SearchText};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tern_store::{BlobHash, StoreError, StoreResult};
use tokio::sync::Notify;

/// Contents indexed per transaction at most.
const BATCH: i64 = 64;
/// How often the indexer looks without being woken (other nodes' deliveries).
const POLL: Duration = Duration::from_secs(1);

/// How long the indexer yields to deliveries at most before it indexes beside them (and
/// then until it has caught up).
const YIELD_FOR: Duration = Duration::from_secs(30);
/// How often it looks again while yielding.
const YIELD_STEP: Duration = Duration::from_millis(100);
/// A mailbox changed this recently on some node: deliveries are being written there (an IMAP
/// session's writes count too; the wait is bounded either way).
const RECENT: Duration = Duration::from_millis(500);

pub async fn run(store: PgStore, wake: Arc<Notify>) {
    // Since when the indexer has had contents waiting while deliveries were written: ingest
    // comes first (the indexing costs the database about as much CPU as the delivery), but
    // for YIELD_FOR at most, so the backlog searches scan stays bounded.
    let mut behind_since: Option<Instant> = None;
    loop {
        let delivering = store.in_flight().load(Ordering::Relaxed) > 0
            || store.feed().since_mailbox_change().is_some_and(|ago| ago < RECENT);
        if delivering {
            let since = *behind_since.get_or_insert_with(Instant::now);
            if since.elapsed() < YIELD_FOR {
                tokio::time::sleep(YIELD_STEP).await;
                continue;
            }
        }
        match index_batch(&store).await {
            Ok(n) if n as i64 >= BATCH => continue,
            Ok(_) => behind_since = None,
            Err(StoreError::Closed) => return,
            Err(e) => tracing::warn!(error = %e, "search indexer"),
        }
        let _ = tokio::time::timeout(POLL, wake.notified()).await;
    }
}

/// Indexes one batch; returns how many contents it took.
async fn index_batch(store: &PgStore) -> StoreResult<usize> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let waiting = tx
        .rows("SELECT hash FROM contents WHERE NOT indexed LIMIT $1 FOR UPDATE SKIP LOCKED", &[&BATCH])
        .await
        .map_err(pg_error)?;
    if waiting.is_empty() {
        return Ok(0);
    }
    let mut contents = Vec::with_capacity(waiting.len());
    {
        let reader = store.client().await?;
        let blobs = store.blobs();
        for row in &waiting {
            let hash = rows::hash_of(row.get::<_, &[u8]>(0))?;
            let raw = blobs.get(&reader, &hash).await?;
            contents.push((hash, raw));
        }
    }
    let texts: Vec<(BlobHash, Option<SearchText>)> = tokio::task::spawn_blocking(move || {
        contents.into_iter().map(|(hash, raw)| (hash, raw.and_then(|raw| text::extract(&raw)))).collect()
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))?;
    let stored: Vec<(BlobHash, &SearchText)> =
        texts.iter().filter_map(|(hash, text)| text.as_ref().map(|t| (*hash, t))).collect();
    text::insert(&tx, &stored).await?;
    // Too large to index (or unreadable): always scanned.
    let hashes: Vec<&[u8]> = texts.iter().map(|(hash, _)| &hash.0[..]).collect();
    let scan_only: Vec<bool> = texts.iter().map(|(_, text)| text.is_none()).collect();
    tx.run(
        "UPDATE contents SET indexed = true, scan_only = c.scan_only
         FROM unnest($1::bytea[], $2::bool[]) AS c(hash, scan_only) WHERE contents.hash = c.hash",
        &[&hashes, &scan_only],
    )
    .await
    .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    metrics::counter!("tern_fts_indexed_total").increment(texts.len() as u64);
    Ok(texts.len())
}
