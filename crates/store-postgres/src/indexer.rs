//! Each node's search indexer: contents a mailbox holds for the first time are stored with
//! `indexed = false`, and this task extracts their text and writes it to `content_text` (whose
//! trigram indexes cost the database several milliseconds of CPU per message) after the
//! delivery's commit, in batches. Nodes share the work (`FOR UPDATE SKIP LOCKED`). Until a
//! content is indexed, searches list it as unindexed and the caller scans it, so answers stay
//! exact however far the indexer lags.

use crate::PgStore;
use crate::error::pg_error;
use crate::rows;
use crate::sql::Cached;
use std::sync::Arc;
use std::time::Duration;
use tern_store::{BlobHash, StoreError, StoreResult};
use tokio::sync::Notify;

/// Contents indexed per transaction at most.
const BATCH: i64 = 64;
/// How often the indexer looks without being woken (other nodes' deliveries).
const POLL: Duration = Duration::from_secs(1);

pub async fn run(store: PgStore, wake: Arc<Notify>) {
    loop {
        match index_batch(&store).await {
            Ok(n) if n as i64 >= BATCH => continue,
            Ok(_) => {}
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
    let texts: Vec<(BlobHash, Option<(String, String)>)> = tokio::task::spawn_blocking(move || {
        contents
            .into_iter()
            .map(|(hash, raw)| {
                let text = raw.and_then(|raw| tern_mime::text::search_texts_within(&raw, tern_fts::MAX_TEXT));
                // PostgreSQL's text holds no NUL.
                (hash, text.map(|(h, b)| (h.replace('\0', " "), b.replace('\0', " "))))
            })
            .collect()
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))?;
    for (hash, text) in &texts {
        let key = &hash.0[..];
        if let Some((header, body)) = text {
            tx.run(
                "INSERT INTO content_text (hash, header, body) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&key, header, body],
            )
            .await
            .map_err(pg_error)?;
        }
        // Too large to index (or unreadable): always scanned.
        tx.run("UPDATE contents SET indexed = true, scan_only = $2 WHERE hash = $1", &[&key, &text.is_none()])
            .await
            .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)?;
    metrics::counter!("tern_fts_indexed_total").increment(texts.len() as u64);
    Ok(texts.len())
}
