//! The quarantine and the spam classifier's models.

use crate::PgStore;
use crate::deliver::{deliver_in, prepare};
use crate::error::pg_error;
use crate::rows::{self, id, owner_key};
use crate::sql::Cached;
use async_trait::async_trait;
use tern_store::*;

#[async_trait]
impl FilterStore for PgStore {
    async fn quarantine_put(&self, mut entry: QuarantineEntry, raw: Vec<u8>) -> StoreResult<u64> {
        self.write(move |tx, _changes| {
            Box::pin(async move {
                let q: i64 = tx.row("SELECT nextval('quarantine_ids')", &[]).await.map_err(pg_error)?.get(0);
                entry.id = q as u64;
                tx.run(
                    "INSERT INTO quarantine (id, entry, raw, expires_at) VALUES ($1, $2, $3, $4)",
                    &[&q, &rows::to_json(&entry)?, &raw, &entry.expires_at],
                )
                .await
                .map_err(pg_error)?;
                Ok(entry.id)
            })
        })
        .await
    }

    async fn quarantine_list(&self) -> StoreResult<Vec<QuarantineEntry>> {
        let client = self.client().await?;
        let rows = client.rows("SELECT entry FROM quarantine ORDER BY id", &[]).await.map_err(pg_error)?;
        rows.iter().map(|r| rows::json(r, 0, "quarantine entry")).collect()
    }

    async fn quarantine_get(&self, q: u64) -> StoreResult<Option<(QuarantineEntry, Vec<u8>)>> {
        let client = self.client().await?;
        let row =
            client.maybe_row("SELECT entry, raw FROM quarantine WHERE id = $1", &[&id(q)]).await.map_err(pg_error)?;
        row.map(|r| Ok((rows::json(&r, 0, "quarantine entry")?, r.get(1)))).transpose()
    }

    async fn quarantine_remove(&self, q: u64) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client.run("DELETE FROM quarantine WHERE id = $1", &[&id(q)]).await.map_err(pg_error)?;
        Ok(n > 0)
    }

    async fn quarantine_release(&self, q: u64, delivery: Delivery) -> StoreResult<Option<DeliveryReceipt>> {
        let prepared = prepare(&delivery).await?;
        let blobs = self.blobs();
        self.write(move |tx, changes| {
            Box::pin(async move {
                let blobs = &*blobs;
                // The entry's row lock makes a second, concurrent release find nothing.
                let gone = tx.run("DELETE FROM quarantine WHERE id = $1", &[&id(q)]).await.map_err(pg_error)?;
                if gone == 0 {
                    return Ok(None);
                }
                let mut receipts = deliver_in(tx, blobs, &[(&delivery, &prepared)], changes).await?;
                Ok(receipts.pop())
            })
        })
        .await
    }

    async fn quarantine_expire(&self, now: i64) -> StoreResult<usize> {
        let client = self.client().await?;
        let n = client.run("DELETE FROM quarantine WHERE expires_at < $1", &[&now]).await.map_err(pg_error)?;
        Ok(n as usize)
    }

    async fn spam_model(&self, owner: SpamModelOwner) -> StoreResult<SpamModelData> {
        let client = self.client().await?;
        let key = owner_key(owner);
        let mut data = SpamModelData::default();
        if let Some(row) =
            client.maybe_row("SELECT spam, ham FROM spam_totals WHERE owner = $1", &[&key]).await.map_err(pg_error)?
        {
            data.spam_learned = row.get::<_, i64>(0) as u64;
            data.ham_learned = row.get::<_, i64>(1) as u64;
        }
        for row in client
            .rows("SELECT feature, spam, ham FROM spam_features WHERE owner = $1", &[&key])
            .await
            .map_err(pg_error)?
        {
            data.features.push((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u32, row.get::<_, i64>(2) as u32));
        }
        data.features.sort_unstable_by_key(|f| f.0);
        Ok(data)
    }

    async fn spam_models(&self) -> StoreResult<Vec<(SpamModelOwner, u64, u64)>> {
        let client = self.client().await?;
        let rows =
            client.rows("SELECT owner, spam, ham FROM spam_totals ORDER BY owner", &[]).await.map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| (rows::owner_of(r.get(0)), r.get::<_, i64>(1) as u64, r.get::<_, i64>(2) as u64))
            .collect())
    }

    async fn spam_lesson(&self, owner: SpamModelOwner, message: BlobHash) -> StoreResult<Option<SpamClass>> {
        let client = self.client().await?;
        let row = client
            .maybe_row(
                "SELECT spam FROM spam_lessons WHERE owner = $1 AND message = $2",
                &[&owner_key(owner), &&message.0[..]],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| if r.get::<_, bool>(0) { SpamClass::Spam } else { SpamClass::Ham }))
    }

    async fn spam_model_update(&self, update: SpamModelUpdate) -> StoreResult<()> {
        self.write(move |tx, _changes| {
            Box::pin(async move {
                let key = owner_key(update.owner);
                tx.run(
                    "INSERT INTO spam_totals (owner, spam, ham) VALUES ($1, $2, $3)
                     ON CONFLICT (owner) DO UPDATE SET spam = excluded.spam, ham = excluded.ham",
                    &[&key, &id(update.spam_learned), &id(update.ham_learned)],
                )
                .await
                .map_err(pg_error)?;
                // One row per feature (the last value given wins): an upsert may not touch a
                // row twice.
                let features: std::collections::BTreeMap<u64, (u32, u32)> =
                    update.features.iter().map(|&(f, s, h)| (f, (s, h))).collect();
                let (mut gone, mut kept) = (Vec::new(), (Vec::new(), Vec::new(), Vec::new()));
                for (&feature, &(spam, ham)) in &features {
                    if spam == 0 && ham == 0 {
                        gone.push(feature as i64);
                    } else {
                        kept.0.push(feature as i64);
                        kept.1.push(i64::from(spam));
                        kept.2.push(i64::from(ham));
                    }
                }
                if !gone.is_empty() {
                    tx.run("DELETE FROM spam_features WHERE owner = $1 AND feature = ANY($2)", &[&key, &gone])
                        .await
                        .map_err(pg_error)?;
                }
                if !kept.0.is_empty() {
                    tx.run(
                        "INSERT INTO spam_features (owner, feature, spam, ham)
                         SELECT $1::bigint, f, s, h FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS u(f, s, h)
                         ON CONFLICT (owner, feature) DO UPDATE SET spam = excluded.spam, ham = excluded.ham",
                        &[&key, &kept.0, &kept.1, &kept.2],
                    )
                    .await
                    .map_err(pg_error)?;
                }
                if let Some((message, class)) = update.lesson {
                    tx.run(
                        "INSERT INTO spam_lessons (owner, message, spam) VALUES ($1, $2, $3)
                         ON CONFLICT (owner, message) DO UPDATE SET spam = excluded.spam",
                        &[&key, &&message.0[..], &(class == SpamClass::Spam)],
                    )
                    .await
                    .map_err(pg_error)?;
                }
                Ok(())
            })
        })
        .await
    }
}
