//! Where message contents' bytes live, by hash. Reference counts, summaries and search text
//! stay in the `contents` tables; a [`BlobBackend`] only keeps bytes. Every call takes the
//! transaction that references or frees a content: the default, [`TableBlobs`], writes in it
//! (one commit for both, so bytes and references never disagree). An object store (later)
//! would put before the transaction commits (contents are addressed by their hash, so a put
//! is idempotent) and record removals in it, deleting the objects once it committed.

use crate::error::pg_error;
use crate::sql::Cached;
use async_trait::async_trait;
use deadpool_postgres::{Client, Transaction};
use tern_store::{BlobHash, StoreResult};

#[async_trait]
pub trait BlobBackend: Send + Sync + 'static {
    /// Stores a content that `tx` starts referencing (it may be there already).
    async fn put(&self, tx: &Transaction<'_>, hash: &BlobHash, raw: &[u8]) -> StoreResult<()>;
    /// Stores contents that `tx` starts referencing, in the order given (by hash).
    async fn put_many(&self, tx: &Transaction<'_>, contents: &[(BlobHash, &[u8])]) -> StoreResult<()> {
        for (hash, raw) in contents {
            self.put(tx, hash, raw).await?;
        }
        Ok(())
    }
    async fn get(&self, client: &Client, hash: &BlobHash) -> StoreResult<Option<Vec<u8>>>;
    /// Removes a content whose last reference `tx` drops.
    async fn remove(&self, tx: &Transaction<'_>, hash: &BlobHash) -> StoreResult<()>;
}

/// Contents in PostgreSQL's `blobs` table (TOAST compresses and stores them out of line).
pub struct TableBlobs;

#[async_trait]
impl BlobBackend for TableBlobs {
    async fn put(&self, tx: &Transaction<'_>, hash: &BlobHash, raw: &[u8]) -> StoreResult<()> {
        tx.run("INSERT INTO blobs (hash, data) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING", &[&&hash.0[..], &raw])
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn put_many(&self, tx: &Transaction<'_>, contents: &[(BlobHash, &[u8])]) -> StoreResult<()> {
        if contents.is_empty() {
            return Ok(());
        }
        let hashes: Vec<&[u8]> = contents.iter().map(|(h, _)| &h.0[..]).collect();
        let data: Vec<&[u8]> = contents.iter().map(|(_, raw)| *raw).collect();
        tx.run(
            "INSERT INTO blobs (hash, data) SELECT * FROM unnest($1::bytea[], $2::bytea[]) ON CONFLICT (hash) DO NOTHING",
            &[&hashes, &data],
        )
        .await
        .map_err(pg_error)?;
        Ok(())
    }

    async fn get(&self, client: &Client, hash: &BlobHash) -> StoreResult<Option<Vec<u8>>> {
        let row =
            client.maybe_row("SELECT data FROM blobs WHERE hash = $1", &[&&hash.0[..]]).await.map_err(pg_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn remove(&self, tx: &Transaction<'_>, hash: &BlobHash) -> StoreResult<()> {
        tx.run("DELETE FROM blobs WHERE hash = $1", &[&&hash.0[..]]).await.map_err(pg_error)?;
        Ok(())
    }
}
