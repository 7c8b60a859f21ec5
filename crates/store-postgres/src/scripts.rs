//! The accounts' Sieve scripts (`sieve_scripts`, at most one active per account by a
//! partial unique index). Each change locks the account's row first, so changes to one
//! account's scripts from several nodes run one after the other.

use crate::PgStore;
use crate::error::pg_error;
use crate::rows::id;
use crate::sql::Cached;
use async_trait::async_trait;
use tern_store::*;

type Tx<'a> = deadpool_postgres::Transaction<'a>;

async fn lock_account(tx: &Tx<'_>, account: AccountId) -> StoreResult<()> {
    tx.maybe_row("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", &[&id(account)])
        .await
        .map_err(pg_error)?
        .map(|_| ())
        .ok_or_else(|| StoreError::NotFound(format!("account {account}")))
}

/// Whether the script exists, and whether it is the active one.
async fn script_state(tx: &Tx<'_>, account: AccountId, name: &str) -> StoreResult<Option<bool>> {
    let row = tx
        .maybe_row("SELECT active FROM sieve_scripts WHERE account = $1 AND name = $2", &[&id(account), &name])
        .await
        .map_err(pg_error)?;
    Ok(row.map(|r| r.get(0)))
}

#[async_trait]
impl ScriptStore for PgStore {
    async fn sieve_list(&self, account: AccountId) -> StoreResult<Vec<SieveScriptInfo>> {
        let client = self.client().await?;
        let rows = client
            .rows(
                "SELECT name, active, octet_length(source) FROM sieve_scripts WHERE account = $1 ORDER BY name",
                &[&id(account)],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| SieveScriptInfo { name: r.get(0), active: r.get(1), size: r.get::<_, i32>(2) as u64 })
            .collect())
    }

    async fn sieve_get(&self, account: AccountId, name: &str) -> StoreResult<Option<String>> {
        let client = self.client().await?;
        let row = client
            .maybe_row("SELECT source FROM sieve_scripts WHERE account = $1 AND name = $2", &[&id(account), &name])
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn sieve_active(&self, account: AccountId) -> StoreResult<Option<(String, String)>> {
        let client = self.client().await?;
        let row = client
            .maybe_row("SELECT name, source FROM sieve_scripts WHERE account = $1 AND active", &[&id(account)])
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    async fn sieve_put(&self, account: AccountId, name: &str, source: &str) -> StoreResult<()> {
        let (name, source) = (name.to_string(), source.to_string());
        self.write(move |tx, changes| {
            Box::pin(async move {
                lock_account(tx, account).await?;
                tx.run(
                    "INSERT INTO sieve_scripts (account, name, source) VALUES ($1, $2, $3)
                     ON CONFLICT (account, name) DO UPDATE SET source = excluded.source",
                    &[&id(account), &name, &source],
                )
                .await
                .map_err(pg_error)?;
                changes.push(StoreChange::Account { account });
                Ok(())
            })
        })
        .await
    }

    async fn sieve_activate(&self, account: AccountId, name: Option<&str>) -> StoreResult<()> {
        let name = name.map(str::to_string);
        self.write(move |tx, changes| {
            Box::pin(async move {
                lock_account(tx, account).await?;
                if let Some(name) = &name
                    && script_state(tx, account, name).await?.is_none()
                {
                    return Err(StoreError::NotFound(format!("script {name}")));
                }
                tx.run("UPDATE sieve_scripts SET active = false WHERE account = $1 AND active", &[&id(account)])
                    .await
                    .map_err(pg_error)?;
                if let Some(name) = &name {
                    tx.run(
                        "UPDATE sieve_scripts SET active = true WHERE account = $1 AND name = $2",
                        &[&id(account), name],
                    )
                    .await
                    .map_err(pg_error)?;
                }
                changes.push(StoreChange::Account { account });
                Ok(())
            })
        })
        .await
    }

    async fn sieve_delete(&self, account: AccountId, name: &str) -> StoreResult<()> {
        let name = name.to_string();
        self.write(move |tx, changes| {
            Box::pin(async move {
                lock_account(tx, account).await?;
                match script_state(tx, account, &name).await? {
                    None => return Err(StoreError::NotFound(format!("script {name}"))),
                    Some(true) => return Err(StoreError::Active(format!("script {name}"))),
                    Some(false) => {}
                }
                tx.run("DELETE FROM sieve_scripts WHERE account = $1 AND name = $2", &[&id(account), &name])
                    .await
                    .map_err(pg_error)?;
                changes.push(StoreChange::Account { account });
                Ok(())
            })
        })
        .await
    }

    async fn sieve_rename(&self, account: AccountId, from: &str, to: &str) -> StoreResult<()> {
        let (from, to) = (from.to_string(), to.to_string());
        self.write(move |tx, changes| {
            Box::pin(async move {
                lock_account(tx, account).await?;
                if script_state(tx, account, &from).await?.is_none() {
                    return Err(StoreError::NotFound(format!("script {from}")));
                }
                if script_state(tx, account, &to).await?.is_some() {
                    return Err(StoreError::Exists(format!("script {to}")));
                }
                tx.run(
                    "UPDATE sieve_scripts SET name = $3 WHERE account = $1 AND name = $2",
                    &[&id(account), &from, &to],
                )
                .await
                .map_err(pg_error)?;
                changes.push(StoreChange::Account { account });
                Ok(())
            })
        })
        .await
    }

    async fn sieve_seen(&self, account: AccountId, seen_id: &str, now: i64) -> StoreResult<bool> {
        let client = self.client().await?;
        let row = client
            .maybe_row(
                "SELECT 1 FROM sieve_seen WHERE account = $1 AND id = sha256(convert_to($2, 'UTF8')) AND expires_at >= $3",
                &[&id(account), &seen_id, &now],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.is_some())
    }

    async fn sieve_remember(&self, account: AccountId, ids: Vec<(String, i64)>) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let (texts, expiries): (Vec<String>, Vec<i64>) = ids.into_iter().unzip();
        // Now and then (about one write in 64), the account's expired records go.
        let prune = texts.first().is_some_and(|t| t.bytes().fold(0u8, |h, b| h.wrapping_mul(31).wrapping_add(b)) < 4);
        self.write(move |tx, _changes| {
            Box::pin(async move {
                tx.run(
                    "INSERT INTO sieve_seen (account, id, expires_at)
                     SELECT $1, sha256(convert_to(t, 'UTF8')), e FROM unnest($2::text[], $3::bigint[]) AS u(t, e)
                     ON CONFLICT (account, id) DO UPDATE SET expires_at = excluded.expires_at",
                    &[&id(account), &texts, &expiries],
                )
                .await
                .map_err(pg_error)?;
                if prune {
                    tx.run(
                        "DELETE FROM sieve_seen WHERE account = $1 AND expires_at < $2",
                        &[&id(account), &tern_store::now_unix()],
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
