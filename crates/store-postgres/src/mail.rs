//! Directory, mailboxes and messages.
//!
//! Each write follows the embedded writer's rules (same counters, same modseq steps, same
//! results) on rows: the mailbox rows it changes are locked first, in id order; then the
//! contents it references, in hash order.

use crate::PgStore;
use crate::blob::BlobBackend;
use crate::error::{corrupt, is_unique_violation, pg_error};
use crate::rows::{self, MAILBOX_COLUMNS, MESSAGE_COLUMNS, id};
use crate::sql::Cached;
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use std::collections::{BTreeMap, HashMap, HashSet};
use tern_store::codec::{decode_summary, encode_summary};
use tern_store::*;
use tokio_postgres::types::ToSql;

type Tx<'a> = Transaction<'a>;

// ---------------------------------------------------------------------------------------
// Reads and writes inside a transaction, shared by the methods below.

pub(crate) async fn mailbox_by_id(tx: &Tx<'_>, mailbox: MailboxId, lock: bool) -> StoreResult<Option<Mailbox>> {
    let sql = format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE id = $1{}", if lock { " FOR UPDATE" } else { "" });
    tx.maybe_row(&sql, &[&id(mailbox)]).await.map_err(pg_error)?.as_ref().map(rows::mailbox).transpose()
}

async fn mailbox_named(tx: &Tx<'_>, account: AccountId, name: &str, lock: bool) -> StoreResult<Option<Mailbox>> {
    let sql = format!(
        "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE account = $1 AND name = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    tx.maybe_row(&sql, &[&id(account), &name]).await.map_err(pg_error)?.as_ref().map(rows::mailbox).transpose()
}

/// The account's mailboxes, locked, in id order.
async fn account_mailboxes_locked(tx: &Tx<'_>, account: AccountId) -> StoreResult<Vec<Mailbox>> {
    let sql = format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE account = $1 ORDER BY id FOR UPDATE");
    tx.rows(&sql, &[&id(account)]).await.map_err(pg_error)?.iter().map(rows::mailbox).collect()
}

/// Writes a mailbox's counters, keywords and name back.
pub(crate) async fn save_mailbox(tx: &Tx<'_>, m: &Mailbox) -> StoreResult<()> {
    tx.run(
        "UPDATE mailboxes SET name = $2, subscribed = $3, uid_next = $4, highest_modseq = $5, total = $6,
                unseen = $7, size = $8, deleted = $9, recent_uid = $10, keywords = $11
         WHERE id = $1",
        &[
            &id(m.id),
            &m.name,
            &m.subscribed,
            &i64::from(m.uid_next),
            &id(m.highest_modseq),
            &i64::from(m.total),
            &i64::from(m.unseen),
            &id(m.size),
            &i64::from(m.deleted),
            &i64::from(m.recent_uid),
            &m.keywords,
        ],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Adds a mailbox (the caller checked the name is free; a race still ends in `Exists`).
async fn create_mailbox(tx: &Tx<'_>, account: AccountId, new: NewMailbox) -> StoreResult<Mailbox> {
    let now = now_unix().clamp(1, u32::MAX as i64);
    // UIDVALIDITY: strictly increasing across all mailboxes ever created, starting from the
    // clock, so a mailbox re-created under an old name never reuses a value.
    let validity: i64 = tx
        .row(
            "UPDATE tern_meta SET value = CASE WHEN greatest(value + 1, $1) > 4294967295 THEN 1
                                               ELSE greatest(value + 1, $1) END
             WHERE key = 'uidvalidity' RETURNING value",
            &[&now],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    // A subscription that outlived an earlier mailbox of this name applies again.
    let had_subscription = tx
        .run("DELETE FROM subscriptions WHERE account = $1 AND name = $2", &[&id(account), &new.name])
        .await
        .map_err(pg_error)?
        > 0;
    let mailbox_id: i64 = tx.row("SELECT nextval('mailbox_ids')", &[]).await.map_err(pg_error)?.get(0);
    let mailbox = Mailbox {
        id: mailbox_id as u64,
        account,
        name: new.name,
        special_use: new.special_use,
        subscribed: new.subscribed || had_subscription,
        uid_validity: validity as u32,
        uid_next: 1,
        highest_modseq: 1,
        total: 0,
        unseen: 0,
        size: 0,
        deleted: 0,
        recent_uid: 1,
        keywords: Vec::new(),
        acl: Vec::new(),
    };
    let special = mailbox.special_use.map(rows::special_use_name);
    let inserted = tx
        .run(
            "INSERT INTO mailboxes (id, account, name, special_use, subscribed, uid_validity, uid_next,
                 highest_modseq, total, unseen, size, deleted, recent_uid, keywords)
             VALUES ($1, $2, $3, $4, $5, $6, 1, 1, 0, 0, 0, 0, 1, '{}')",
            &[&mailbox_id, &id(account), &mailbox.name, &special, &mailbox.subscribed, &validity],
        )
        .await;
    match inserted {
        Ok(_) => Ok(mailbox),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Exists(format!("mailbox {}", mailbox.name))),
        Err(e) => Err(pg_error(e)),
    }
}

/// Creates the missing superiors of a hierarchical name (RFC 9051 §6.3.4).
async fn create_parents(tx: &Tx<'_>, account: AccountId, name: &str) -> StoreResult<()> {
    let parts: Vec<&str> = name.split('/').collect();
    let mut prefix = String::new();
    for part in &parts[..parts.len().saturating_sub(1)] {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if mailbox_named(tx, account, &prefix, false).await?.is_none() {
            create_mailbox(tx, account, NewMailbox::new(&prefix, None)).await?;
        }
    }
    Ok(())
}

/// Removes messages from a (locked) mailbox, adjusting its counters; returns the UIDs that
/// were present, in the order asked. Content references go into `released`.
async fn remove_messages(
    tx: &Tx<'_>,
    mailbox: &mut Mailbox,
    uids: &[u32],
    released: &mut BTreeMap<BlobHash, i64>,
    record_vanished: bool,
) -> StoreResult<Vec<u32>> {
    if uids.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<i64> = uids.iter().map(|&u| i64::from(u)).collect();
    let gone = tx
        .rows(
            "DELETE FROM messages WHERE mailbox = $1 AND uid = ANY($2) RETURNING uid, blob, size, flags",
            &[&id(mailbox.id), &wanted],
        )
        .await
        .map_err(pg_error)?;
    if gone.is_empty() {
        return Ok(Vec::new());
    }
    mailbox.highest_modseq += 1;
    let mut present = HashSet::new();
    for row in &gone {
        let uid: i64 = row.get(0);
        let blob = rows::hash_of(row.get::<_, &[u8]>(1))?;
        let size: i64 = row.get(2);
        let flags = Flags(row.get::<_, i16>(3) as u8);
        mailbox.count_removed(flags, size as u64);
        *released.entry(blob).or_default() += 1;
        present.insert(uid as u32);
    }
    let removed: Vec<u32> = uids.iter().copied().filter(|u| present.remove(u)).collect();
    if record_vanished {
        let vanished: Vec<i64> = removed.iter().map(|&u| i64::from(u)).collect();
        tx.run(
            "INSERT INTO expunged (mailbox, modseq, uid) SELECT $1::bigint, $2::bigint, u FROM unnest($3::bigint[]) AS u",
            &[&id(mailbox.id), &id(mailbox.highest_modseq), &vanished],
        )
        .await
        .map_err(pg_error)?;
    }
    if !mailbox.acl.is_empty() {
        // The readers' own \Seen on what went (only a shared mailbox has readers).
        let gone: Vec<i64> = removed.iter().map(|&u| i64::from(u)).collect();
        tx.run("DELETE FROM private_seen WHERE mailbox = $1 AND uid = ANY($2)", &[&id(mailbox.id), &gone])
            .await
            .map_err(pg_error)?;
    }
    Ok(removed)
}

/// Drops references to contents (in hash order), freeing those that reach zero.
pub(crate) async fn release_contents(
    tx: &Tx<'_>,
    blobs: &dyn BlobBackend,
    released: BTreeMap<BlobHash, i64>,
) -> StoreResult<()> {
    for (hash, n) in released {
        let left = tx
            .maybe_row(
                "UPDATE contents SET refcount = refcount - $2 WHERE hash = $1 RETURNING refcount",
                &[&&hash.0[..], &n],
            )
            .await
            .map_err(pg_error)?;
        match left {
            None => tracing::warn!(blob = %hash, "released a message content with no reference count"),
            Some(row) if row.get::<_, i64>(0) <= 0 => {
                tx.run("DELETE FROM contents WHERE hash = $1", &[&&hash.0[..]]).await.map_err(pg_error)?;
                blobs.remove(tx, &hash).await?;
                tx.run("DELETE FROM content_text WHERE hash = $1", &[&&hash.0[..]]).await.map_err(pg_error)?;
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Adds `n` references to a content that is known to exist (copies).
async fn reference_content(tx: &Tx<'_>, hash: &BlobHash, n: i64) -> StoreResult<()> {
    let updated = tx
        .run("UPDATE contents SET refcount = refcount + $2 WHERE hash = $1", &[&&hash.0[..], &n])
        .await
        .map_err(pg_error)?;
    if updated == 0 {
        return Err(corrupt(&format!("content {hash}"), "copied message without reference count"));
    }
    Ok(())
}

pub(crate) async fn insert_message(tx: &Tx<'_>, m: &MessageEntry) -> StoreResult<()> {
    tx.run(
        "INSERT INTO messages (mailbox, uid, blob, size, internal_date, flags, keywords, modseq, email_id,
                               thread_id, delivery_id, saved)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
    Ok(())
}

pub(crate) async fn next_ids(tx: &Tx<'_>, sequence: &str, n: usize) -> StoreResult<Vec<u64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT nextval('{sequence}') FROM generate_series(1, $1::bigint)");
    let rows = tx.rows(&sql, &[&(n as i64)]).await.map_err(pg_error)?;
    Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
}

/// Messages of a mailbox by UID (those that exist).
async fn messages_by_uid(tx: &Tx<'_>, mailbox: MailboxId, uids: &[u32]) -> StoreResult<HashMap<u32, MessageEntry>> {
    let wanted: Vec<i64> = uids.iter().map(|&u| i64::from(u)).collect();
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox = $1 AND uid = ANY($2)");
    let mut out = HashMap::new();
    for row in tx.rows(&sql, &[&id(mailbox), &wanted]).await.map_err(pg_error)? {
        let m = rows::message(&row)?;
        out.insert(m.uid, m);
    }
    Ok(out)
}

/// (limit, bytes used) of an account with a quota.
async fn quota_of(tx: &Tx<'_>, account: AccountId) -> StoreResult<Option<(u64, u64)>> {
    let Some(row) =
        tx.maybe_row("SELECT record FROM accounts WHERE id = $1", &[&id(account)]).await.map_err(pg_error)?
    else {
        return Ok(None);
    };
    let record: Account = rows::json(&row, 0, "account")?;
    let Some(limit) = record.quota_bytes else { return Ok(None) };
    let used: i64 = tx
        .row("SELECT COALESCE(sum(size), 0)::bigint FROM mailboxes WHERE account = $1", &[&id(account)])
        .await
        .map_err(pg_error)?
        .get(0);
    Ok(Some((limit, used as u64)))
}

/// The messages of `uids` that exist, in the order asked.
fn in_order(found: &HashMap<u32, MessageEntry>, uids: &[u32]) -> Vec<MessageEntry> {
    uids.iter().filter_map(|u| found.get(u).cloned()).collect()
}

/// Copies (or moves) messages (`originals`, of `source`) between two locked mailbox records;
/// the caller writes the records. With `same`, `target` is also the source (one record).
async fn copy_in(
    tx: &Tx<'_>,
    blobs: &dyn BlobBackend,
    source: &mut Mailbox,
    target: &mut Mailbox,
    originals: &[MessageEntry],
    remove_source: bool,
    same: bool,
) -> StoreResult<Vec<(u32, u32)>> {
    if originals.is_empty() {
        return Ok(Vec::new());
    }
    let new_ids = if remove_source { Vec::new() } else { next_ids(tx, "email_ids", originals.len()).await? };
    let modseq = target.highest_modseq + 1;
    let mut pairs = Vec::new();
    let mut added: BTreeMap<BlobHash, i64> = BTreeMap::new();
    for (i, old) in originals.iter().enumerate() {
        let new_uid = target.uid_next;
        target.uid_next = target.uid_next.checked_add(1).ok_or_else(|| corrupt("mailbox", "UID space exhausted"))?;
        target.count_added(old.flags, old.size);
        let keywords = target.register_keywords(&old.keywords);
        let entry = MessageEntry {
            mailbox: target.id,
            uid: new_uid,
            modseq,
            // A moved message keeps its EMAILID (RFC 8474 §5.1); a copy gets a new one.
            email_id: if remove_source { old.email_id } else { new_ids[i] },
            keywords,
            saved: tern_store::now_unix(),
            ..old.clone()
        };
        insert_message(tx, &entry).await?;
        *added.entry(old.blob).or_default() += 1;
        pairs.push((old.uid, new_uid));
    }
    target.highest_modseq = modseq;
    let mut released = BTreeMap::new();
    if remove_source {
        let moved: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let from = if same { &mut *target } else { source };
        remove_messages(tx, from, &moved, &mut released, true).await?;
    }
    // Net change per content: + copies, - removed originals (a move changes nothing).
    for (hash, n) in added {
        let removed = released.remove(&hash).unwrap_or(0);
        if n != removed {
            reference_content(tx, &hash, n - removed).await?;
        }
    }
    release_contents(tx, blobs, released).await?;
    Ok(pairs)
}

// ---------------------------------------------------------------------------------------

impl PgStore {
    /// The JSON records `sql` finds with `params`, in the order it gives.
    async fn directory_records<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &str,
    ) -> StoreResult<Vec<T>> {
        let client = self.client().await?;
        let rows = client.rows(sql, params).await.map_err(pg_error)?;
        rows.iter().map(|r| rows::json(r, 0, what)).collect()
    }

    /// The JSON record `sql` finds by `key`.
    async fn directory_record<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        key: &(dyn ToSql + Sync),
        what: &str,
    ) -> StoreResult<Option<T>> {
        let client = self.client().await?;
        let row = client.maybe_row(sql, &[key]).await.map_err(pg_error)?;
        row.map(|r| rows::json(&r, 0, what)).transpose()
    }

    /// Runs `sql` (an upsert or a delete of one record by key) as a directory change; returns
    /// whether a row was touched.
    async fn directory_write(
        &self,
        sql: &'static str,
        key: String,
        record: Option<serde_json::Value>,
    ) -> StoreResult<bool> {
        self.write(move |tx, changes| {
            Box::pin(async move {
                let n = match &record {
                    Some(record) => tx.run(sql, &[&key, record]).await,
                    None => tx.run(sql, &[&key]).await,
                }
                .map_err(pg_error)?;
                if n > 0 {
                    changes.push(StoreChange::Directory);
                }
                Ok(n > 0)
            })
        })
        .await
    }
}

#[async_trait]
impl DirectoryStore for PgStore {
    async fn domain_list(&self) -> StoreResult<Vec<Domain>> {
        self.directory_records("SELECT record FROM domains ORDER BY name", &[], "domain").await
    }

    async fn domain_get(&self, name: &str) -> StoreResult<Option<Domain>> {
        // Kept only while the change feed listens: without it another node's change would
        // not empty the cache (the feed empties it again once it listens).
        let cacheable = self.feed().connected();
        if cacheable && let Some(known) = self.domains().get(name) {
            return Ok(known);
        }
        let generation = self.domains().generation();
        let found: Option<Domain> =
            self.directory_record("SELECT record FROM domains WHERE name = $1", &name, "domain").await?;
        if cacheable {
            self.domains().fill(generation, name, found.clone());
        }
        Ok(found)
    }

    async fn domain_put(&self, domain: Domain) -> StoreResult<()> {
        let record = rows::to_json(&domain)?;
        self.directory_write(
            "INSERT INTO domains (name, record) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET record = excluded.record",
            domain.name,
            Some(record),
        )
        .await
        .map(|_| ())
    }

    async fn domain_remove(&self, name: &str) -> StoreResult<bool> {
        self.directory_write("DELETE FROM domains WHERE name = $1", name.to_string(), None).await
    }

    async fn account_list(&self) -> StoreResult<Vec<Account>> {
        self.directory_records("SELECT record FROM accounts ORDER BY id", &[], "account").await
    }

    async fn account_get(&self, account: AccountId) -> StoreResult<Option<Account>> {
        self.directory_record("SELECT record FROM accounts WHERE id = $1", &id(account), "account").await
    }

    async fn account_by_address(&self, address: &str) -> StoreResult<Option<Account>> {
        self.directory_record("SELECT record FROM accounts WHERE address = $1", &address, "account").await
    }

    async fn account_create(&self, new: NewAccount, mailboxes: Vec<NewMailbox>) -> StoreResult<Account> {
        self.write(move |tx, changes| {
            Box::pin(async move {
                let taken = tx
                    .maybe_row("SELECT 1 FROM accounts WHERE address = $1", &[&new.address])
                    .await
                    .map_err(pg_error)?;
                if taken.is_some() {
                    return Err(StoreError::Exists(format!("account {}", new.address)));
                }
                let account = Account {
                    id: next_ids(tx, "account_ids", 1).await?[0],
                    address: new.address,
                    password_hash: new.password_hash,
                    quota_bytes: new.quota_bytes,
                    created: now_unix(),
                    scram: None,
                    shared: false,
                    disabled: false,
                    admin: false,
                    app_passwords: Vec::new(),
                };
                let inserted = tx
                    .run(
                        "INSERT INTO accounts (id, address, record) VALUES ($1, $2, $3)",
                        &[&id(account.id), &account.address, &rows::to_json(&account)?],
                    )
                    .await;
                match inserted {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => {
                        return Err(StoreError::Exists(format!("account {}", account.address)));
                    }
                    Err(e) => return Err(pg_error(e)),
                }
                let mut names = HashSet::new();
                for m in mailboxes {
                    if names.insert(m.name.clone()) {
                        create_mailbox(tx, account.id, m).await?;
                    }
                }
                changes.push(StoreChange::Directory);
                Ok(account)
            })
        })
        .await
    }

    async fn account_update(&self, account: Account) -> StoreResult<()> {
        self.write(move |tx, changes| {
            Box::pin(async move {
                let stored = tx
                    .maybe_row("SELECT address FROM accounts WHERE id = $1 FOR UPDATE", &[&id(account.id)])
                    .await
                    .map_err(pg_error)?
                    .ok_or_else(|| StoreError::NotFound(format!("account {}", account.id)))?;
                if stored.get::<_, &str>(0) != account.address {
                    return Err(corrupt("account update", "the address of an account cannot change"));
                }
                tx.run("UPDATE accounts SET record = $2 WHERE id = $1", &[&id(account.id), &rows::to_json(&account)?])
                    .await
                    .map_err(pg_error)?;
                changes.push(StoreChange::Directory);
                Ok(())
            })
        })
        .await
    }

    async fn account_remove(&self, account: AccountId) -> StoreResult<bool> {
        let blobs = self.blobs();
        self.write(move |tx, changes| {
            Box::pin(async move {
                let blobs = &*blobs;
                let exists = tx
                    .maybe_row("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", &[&id(account)])
                    .await
                    .map_err(pg_error)?;
                if exists.is_none() {
                    return Ok(false);
                }
                let mut released = BTreeMap::new();
                for mut mailbox in account_mailboxes_locked(tx, account).await? {
                    let uids = mailbox_uids(tx, mailbox.id).await?;
                    remove_messages(tx, &mut mailbox, &uids, &mut released, false).await?;
                    tx.run("DELETE FROM expunged WHERE mailbox = $1", &[&id(mailbox.id)]).await.map_err(pg_error)?;
                    tx.run("DELETE FROM metadata WHERE mailbox = $1", &[&id(mailbox.id)]).await.map_err(pg_error)?;
                    tx.run("DELETE FROM private_seen WHERE mailbox = $1", &[&id(mailbox.id)])
                        .await
                        .map_err(pg_error)?;
                    tx.run("DELETE FROM mailboxes WHERE id = $1", &[&id(mailbox.id)]).await.map_err(pg_error)?;
                }
                for table in ["subscriptions", "threads", "sieve_scripts", "sieve_seen", "metadata", "private_seen"] {
                    tx.run(&format!("DELETE FROM {table} WHERE account = $1"), &[&id(account)])
                        .await
                        .map_err(pg_error)?;
                }
                release_contents(tx, blobs, released).await?;
                // Entries that name the removed user go too: a later account of the same
                // address must not inherit what was shared with this one.
                let address: Option<String> = tx
                    .maybe_row("SELECT address FROM accounts WHERE id = $1", &[&id(account)])
                    .await
                    .map_err(pg_error)?
                    .map(|r| r.get(0));
                if let Some(address) = address {
                    let gone = Identifier::User(address).to_string();
                    tx.run(
                        "UPDATE mailboxes SET acl = COALESCE((SELECT jsonb_agg(e) FROM jsonb_array_elements(acl) AS e
                                                              WHERE e->>'identifier' <> $1), '[]')
                         WHERE id IN (SELECT mailbox FROM mailbox_acl WHERE identifier = $1)",
                        &[&gone],
                    )
                    .await
                    .map_err(pg_error)?;
                    tx.run("DELETE FROM mailbox_acl WHERE identifier = $1", &[&gone]).await.map_err(pg_error)?;
                }
                tx.run("DELETE FROM accounts WHERE id = $1", &[&id(account)]).await.map_err(pg_error)?;
                changes.push(StoreChange::Account { account });
                changes.push(StoreChange::Directory);
                Ok(true)
            })
        })
        .await
    }

    async fn alias_list(&self) -> StoreResult<Vec<Alias>> {
        self.directory_records("SELECT record FROM aliases ORDER BY address", &[], "alias").await
    }

    async fn alias_get(&self, address: &str) -> StoreResult<Option<Alias>> {
        self.directory_record("SELECT record FROM aliases WHERE address = $1", &address, "alias").await
    }

    async fn alias_put(&self, alias: Alias) -> StoreResult<()> {
        let record = rows::to_json(&alias)?;
        self.directory_write(
            "INSERT INTO aliases (address, record) VALUES ($1, $2)
             ON CONFLICT (address) DO UPDATE SET record = excluded.record",
            alias.address,
            Some(record),
        )
        .await
        .map(|_| ())
    }

    async fn alias_remove(&self, address: &str) -> StoreResult<bool> {
        self.directory_write("DELETE FROM aliases WHERE address = $1", address.to_string(), None).await
    }

    async fn api_token_list(&self) -> StoreResult<Vec<ApiToken>> {
        self.directory_records("SELECT record FROM api_tokens ORDER BY name", &[], "api token").await
    }

    async fn api_token_put(&self, token: ApiToken) -> StoreResult<()> {
        let record = rows::to_json(&token)?;
        self.directory_write(
            "INSERT INTO api_tokens (name, record) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET record = excluded.record",
            token.name,
            Some(record),
        )
        .await
        .map(|_| ())
    }

    async fn api_token_remove(&self, name: &str) -> StoreResult<bool> {
        self.directory_write("DELETE FROM api_tokens WHERE name = $1", name.to_string(), None).await
    }

    async fn web_session_get(&self, key: &str) -> StoreResult<Option<WebSession>> {
        self.directory_record("SELECT record FROM web_sessions WHERE key = $1", &key, "web session").await
    }

    async fn web_sessions_of(&self, account: AccountId) -> StoreResult<Vec<WebSession>> {
        let sql = "SELECT record FROM web_sessions WHERE account = $1 ORDER BY (record->>'created')::BIGINT";
        self.directory_records(sql, &[&id(account)], "web session").await
    }

    // Sessions are no directory change: single statements (each its own durable commit),
    // no NOTIFY, no cache emptied.
    async fn web_session_put(&self, session: WebSession) -> StoreResult<()> {
        let record = rows::to_json(&session)?;
        let client = self.client().await?;
        client
            .run(
                "INSERT INTO web_sessions (key, account, expires, record) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO UPDATE SET expires = excluded.expires, record = excluded.record",
                &[&session.key, &id(session.account), &session.expires, &record],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn web_session_remove(&self, which: WebSessionsToRemove) -> StoreResult<usize> {
        let client = self.client().await?;
        let n = match which {
            WebSessionsToRemove::One(key) => client.run("DELETE FROM web_sessions WHERE key = $1", &[&key]).await,
            WebSessionsToRemove::OfAccount { account, except } => {
                client
                    .run(
                        "DELETE FROM web_sessions WHERE account = $1 AND key IS DISTINCT FROM $2",
                        &[&id(account), &except],
                    )
                    .await
            }
            WebSessionsToRemove::ExpiredAt(now) => {
                client.run("DELETE FROM web_sessions WHERE expires <= $1", &[&now]).await
            }
        }
        .map_err(pg_error)?;
        Ok(n as usize)
    }
}

async fn mailbox_uids(tx: &Tx<'_>, mailbox: MailboxId) -> StoreResult<Vec<u32>> {
    let rows =
        tx.rows("SELECT uid FROM messages WHERE mailbox = $1 ORDER BY uid", &[&id(mailbox)]).await.map_err(pg_error)?;
    Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u32).collect())
}

#[async_trait]
impl MailStore for PgStore {
    async fn mailbox_list(&self, account: AccountId) -> StoreResult<Vec<Mailbox>> {
        let client = self.client().await?;
        let sql = format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE account = $1 ORDER BY name");
        client.rows(&sql, &[&id(account)]).await.map_err(pg_error)?.iter().map(rows::mailbox).collect()
    }

    async fn mailbox_get(&self, mailbox: MailboxId) -> StoreResult<Option<Mailbox>> {
        let client = self.client().await?;
        let sql = format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE id = $1");
        client.maybe_row(&sql, &[&id(mailbox)]).await.map_err(pg_error)?.as_ref().map(rows::mailbox).transpose()
    }

    async fn mailbox_by_name(&self, account: AccountId, name: &str) -> StoreResult<Option<Mailbox>> {
        let client = self.client().await?;
        let sql = format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE account = $1 AND name = $2");
        client.maybe_row(&sql, &[&id(account), &name]).await.map_err(pg_error)?.as_ref().map(rows::mailbox).transpose()
    }

    async fn mailbox_create(&self, account: AccountId, mailbox: NewMailbox) -> StoreResult<Mailbox> {
        self.write(move |tx, changes| {
            Box::pin(async move {
                let exists = tx
                    .maybe_row("SELECT 1 FROM accounts WHERE id = $1 FOR SHARE", &[&id(account)])
                    .await
                    .map_err(pg_error)?;
                if exists.is_none() {
                    return Err(StoreError::NotFound(format!("account {account}")));
                }
                if mailbox_named(tx, account, &mailbox.name, false).await?.is_some() {
                    return Err(StoreError::Exists(format!("mailbox {}", mailbox.name)));
                }
                create_parents(tx, account, &mailbox.name).await?;
                let created = create_mailbox(tx, account, mailbox).await?;
                changes.push(StoreChange::Account { account });
                Ok(created)
            })
        })
        .await
    }

    async fn mailbox_rename(&self, account: AccountId, from: &str, to: &str) -> StoreResult<()> {
        let (from, to) = (from.to_string(), to.to_string());
        let blobs = self.blobs();
        self.write(move |tx, changes| {
            Box::pin(async move {
                let blobs = &*blobs;
                if mailbox_named(tx, account, &to, false).await?.is_some() {
                    return Err(StoreError::Exists(format!("mailbox {to}")));
                }
                let Some(source) = mailbox_named(tx, account, &from, true).await? else {
                    return Err(StoreError::NotFound(format!("mailbox {from}")));
                };
                create_parents(tx, account, &to).await?;
                if from == INBOX {
                    // RFC 9051 §6.3.6: the messages move to a new mailbox; INBOX stays, empty.
                    let mut inbox = source;
                    let mut target = create_mailbox(tx, account, NewMailbox::new(&to, None)).await?;
                    let uids = mailbox_uids(tx, inbox.id).await?;
                    let originals = in_order(&messages_by_uid(tx, inbox.id, &uids).await?, &uids);
                    copy_in(tx, blobs, &mut inbox, &mut target, &originals, true, false).await?;
                    save_mailbox(tx, &inbox).await?;
                    save_mailbox(tx, &target).await?;
                    changes.push(StoreChange::Account { account });
                    changes.push(StoreChange::Mailbox { account, mailbox: inbox.id });
                    return Ok(());
                }
                let renamed = tx
                    .run(
                        "UPDATE mailboxes SET name = $3 || substr(name, char_length($2) + 1)
                         WHERE account = $1 AND (name = $2 OR starts_with(name, $2 || '/'))",
                        &[&id(account), &from, &to],
                    )
                    .await;
                match renamed {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => {
                        return Err(StoreError::Exists(format!("a mailbox below {to}")));
                    }
                    Err(e) => return Err(pg_error(e)),
                }
                changes.push(StoreChange::Account { account });
                Ok(())
            })
        })
        .await
    }

    async fn mailbox_delete(&self, account: AccountId, name: &str) -> StoreResult<()> {
        let name = name.to_string();
        let blobs = self.blobs();
        self.write(move |tx, changes| {
            Box::pin(async move {
                let blobs = &*blobs;
                if name == INBOX {
                    return Err(corrupt("mailbox delete", "INBOX cannot be deleted"));
                }
                let Some(mut mailbox) = mailbox_named(tx, account, &name, true).await? else {
                    return Err(StoreError::NotFound(format!("mailbox {name}")));
                };
                let children = tx
                    .maybe_row(
                        "SELECT 1 FROM mailboxes WHERE account = $1 AND starts_with(name, $2 || '/') LIMIT 1",
                        &[&id(account), &name],
                    )
                    .await
                    .map_err(pg_error)?;
                if children.is_some() {
                    return Err(StoreError::HasChildren(format!("mailbox {name}")));
                }
                let mut released = BTreeMap::new();
                let uids = mailbox_uids(tx, mailbox.id).await?;
                remove_messages(tx, &mut mailbox, &uids, &mut released, false).await?;
                tx.run("DELETE FROM expunged WHERE mailbox = $1", &[&id(mailbox.id)]).await.map_err(pg_error)?;
                release_contents(tx, blobs, released).await?;
                // Every annotation on it, shared and private (RFC 5464).
                tx.run("DELETE FROM metadata WHERE mailbox = $1", &[&id(mailbox.id)]).await.map_err(pg_error)?;
                tx.run("DELETE FROM private_seen WHERE mailbox = $1", &[&id(mailbox.id)]).await.map_err(pg_error)?;
                tx.run("DELETE FROM mailboxes WHERE id = $1", &[&id(mailbox.id)]).await.map_err(pg_error)?;
                if mailbox.subscribed {
                    // The subscription stays (RFC 9051 §6.3.7); LIST shows it \NonExistent.
                    tx.run(
                        "INSERT INTO subscriptions (account, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&id(account), &name],
                    )
                    .await
                    .map_err(pg_error)?;
                }
                changes.push(StoreChange::Account { account });
                changes.push(StoreChange::Mailbox { account, mailbox: mailbox.id });
                Ok(())
            })
        })
        .await
    }

    async fn mailbox_subscribe(&self, account: AccountId, name: &str, subscribed: bool) -> StoreResult<()> {
        let name = name.to_string();
        self.write(move |tx, changes| {
            Box::pin(async move {
                let updated = tx
                    .run(
                        "UPDATE mailboxes SET subscribed = $3 WHERE account = $1 AND name = $2",
                        &[&id(account), &name, &subscribed],
                    )
                    .await
                    .map_err(pg_error)?;
                if updated == 0 {
                    let sql = if subscribed {
                        "INSERT INTO subscriptions (account, name) VALUES ($1, $2) ON CONFLICT DO NOTHING"
                    } else {
                        "DELETE FROM subscriptions WHERE account = $1 AND name = $2"
                    };
                    tx.run(sql, &[&id(account), &name]).await.map_err(pg_error)?;
                }
                changes.push(StoreChange::Account { account });
                Ok(())
            })
        })
        .await
    }

    async fn subscriptions(&self, account: AccountId) -> StoreResult<Vec<String>> {
        let client = self.client().await?;
        let rows = client
            .rows(
                "SELECT name FROM mailboxes WHERE account = $1 AND subscribed
                 UNION SELECT name FROM subscriptions WHERE account = $1",
                &[&id(account)],
            )
            .await
            .map_err(pg_error)?;
        let mut names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn mailbox_claim_recent(&self, mailbox: MailboxId) -> StoreResult<std::ops::Range<u32>> {
        self.write(move |tx, _changes| {
            Box::pin(async move {
                let mut m = mailbox_by_id(tx, mailbox, true)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
                let first = m.recent_uid.max(1);
                if m.recent_uid != m.uid_next {
                    m.recent_uid = m.uid_next;
                    tx.run(
                        "UPDATE mailboxes SET recent_uid = $2 WHERE id = $1",
                        &[&id(mailbox), &i64::from(m.recent_uid)],
                    )
                    .await
                    .map_err(pg_error)?;
                }
                Ok(first..m.uid_next.max(first))
            })
        })
        .await
    }

    async fn deliver(&self, delivery: Delivery) -> StoreResult<DeliveryReceipt> {
        self.deliver_batched(delivery).await
    }

    async fn mailbox_set_acl(
        &self,
        mailbox: MailboxId,
        identifier: Identifier,
        rights: Option<Rights>,
    ) -> StoreResult<Mailbox> {
        self.write(move |tx, changes| {
            Box::pin(async move {
                let mut m = mailbox_by_id(tx, mailbox, true)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
                if !tern_store::acl::set_entry(&mut m.acl, identifier.clone(), rights) {
                    return Err(StoreError::Limit(format!("at most {} ACL entries", tern_store::acl::MAX_ACL_ENTRIES)));
                }
                tx.run("UPDATE mailboxes SET acl = $2 WHERE id = $1", &[&id(mailbox), &rows::to_json(&m.acl)?])
                    .await
                    .map_err(pg_error)?;
                let name = identifier.to_string();
                if rights.is_some() {
                    tx.run(
                        "INSERT INTO mailbox_acl (identifier, mailbox) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&name, &id(mailbox)],
                    )
                    .await
                    .map_err(pg_error)?;
                } else {
                    tx.run("DELETE FROM mailbox_acl WHERE identifier = $1 AND mailbox = $2", &[&name, &id(mailbox)])
                        .await
                        .map_err(pg_error)?;
                }
                // Sessions that have it selected look at their rights again.
                changes.push(StoreChange::Account { account: m.account });
                changes.push(StoreChange::Mailbox { account: m.account, mailbox });
                Ok(m)
            })
        })
        .await
    }

    async fn mailboxes_shared_with(&self, identifiers: Vec<Identifier>) -> StoreResult<Vec<Mailbox>> {
        let client = self.client().await?;
        let names: Vec<String> = identifiers.iter().map(ToString::to_string).collect();
        let sql = format!(
            "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE id IN
                 (SELECT mailbox FROM mailbox_acl WHERE identifier = ANY($1)) ORDER BY account, name"
        );
        client.rows(&sql, &[&names]).await.map_err(pg_error)?.iter().map(rows::mailbox).collect()
    }

    async fn metadata_get(&self, scope: MetadataScope) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let client = self.client().await?;
        let rows = client
            .rows(
                "SELECT name, value FROM metadata WHERE account = $1 AND mailbox = $2 ORDER BY name",
                &[&id(scope.user.unwrap_or(0)), &id(scope.mailbox.unwrap_or(0))],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn metadata_set(&self, scope: MetadataScope, entries: Vec<(String, Option<Vec<u8>>)>) -> StoreResult<()> {
        self.write(move |tx, changes| {
            Box::pin(async move {
                let (user, mailbox) = (id(scope.user.unwrap_or(0)), id(scope.mailbox.unwrap_or(0)));
                let locked = match scope.mailbox {
                    Some(m) => Some(
                        mailbox_by_id(tx, m, true)
                            .await?
                            .ok_or_else(|| StoreError::NotFound(format!("mailbox {m}")))?,
                    ),
                    None => None,
                };
                for (name, value) in &entries {
                    match value {
                        Some(v) => tx
                            .run(
                                "INSERT INTO metadata (account, mailbox, name, value) VALUES ($1, $2, $3, $4)
                                 ON CONFLICT (account, mailbox, name) DO UPDATE SET value = excluded.value",
                                &[&user, &mailbox, name, v],
                            )
                            .await
                            .map_err(pg_error)?,
                        None => tx
                            .run(
                                "DELETE FROM metadata WHERE account = $1 AND mailbox = $2 AND name = $3",
                                &[&user, &mailbox, name],
                            )
                            .await
                            .map_err(pg_error)?,
                    };
                }
                let n: i64 = tx
                    .row("SELECT count(*) FROM metadata WHERE account = $1 AND mailbox = $2", &[&user, &mailbox])
                    .await
                    .map_err(pg_error)?
                    .get(0);
                if n as usize > METADATA_MAX_ENTRIES {
                    return Err(StoreError::Limit(format!("at most {METADATA_MAX_ENTRIES} annotations")));
                }
                if let Some(mut m) = locked {
                    // RFC 7162 §3.2: an annotation change is a change of the mailbox.
                    m.highest_modseq += 1;
                    save_mailbox(tx, &m).await?;
                    changes.push(StoreChange::Mailbox { account: m.account, mailbox: m.id });
                }
                Ok(())
            })
        })
        .await
    }

    async fn seen_private_get(
        &self,
        mailbox: MailboxId,
        user: AccountId,
        since_modseq: u64,
    ) -> StoreResult<Vec<PrivateSeen>> {
        let client = self.client().await?;
        let rows = client
            .rows(
                "SELECT uid, seen, modseq FROM private_seen WHERE mailbox = $1 AND account = $2 AND modseq > $3
                 ORDER BY uid",
                &[&id(mailbox), &id(user), &id(since_modseq)],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| PrivateSeen { uid: r.get::<_, i64>(0) as u32, seen: r.get(1), modseq: r.get::<_, i64>(2) as u64 })
            .collect())
    }

    async fn seen_private_set(
        &self,
        mailbox: MailboxId,
        user: AccountId,
        uids: Vec<u32>,
        seen: bool,
        unchanged_since: Option<u64>,
    ) -> StoreResult<PrivateSeenUpdate> {
        self.write(move |tx, changes| {
            Box::pin(async move {
                let mut m = mailbox_by_id(tx, mailbox, true)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
                let mut result = PrivateSeenUpdate::default();
                let new_modseq = m.highest_modseq + 1;
                let found = messages_by_uid(tx, mailbox, &uids).await?;
                let wanted: Vec<i64> = uids.iter().map(|&u| i64::from(u)).collect();
                let mut records: HashMap<u32, (bool, u64)> = HashMap::new();
                for row in tx
                    .rows(
                        "SELECT uid, seen, modseq FROM private_seen WHERE mailbox = $1 AND account = $2
                         AND uid = ANY($3)",
                        &[&id(mailbox), &id(user), &wanted],
                    )
                    .await
                    .map_err(pg_error)?
                {
                    records.insert(row.get::<_, i64>(0) as u32, (row.get(1), row.get::<_, i64>(2) as u64));
                }
                let mut changed: Vec<i64> = Vec::new();
                for uid in uids {
                    let Some(entry) = found.get(&uid) else {
                        result.missing.push(uid);
                        continue;
                    };
                    let (current, modseq) = records.get(&uid).copied().unwrap_or((false, 0));
                    if let Some(since) = unchanged_since
                        && entry.modseq.max(modseq) > since
                    {
                        result.conflicts.push(uid);
                        continue;
                    }
                    if current == seen {
                        continue;
                    }
                    changed.push(i64::from(uid));
                    result.updated.push(PrivateSeen { uid, seen, modseq: new_modseq });
                }
                if !changed.is_empty() {
                    tx.run(
                        "INSERT INTO private_seen (mailbox, account, uid, seen, modseq)
                         SELECT $1::bigint, $2::bigint, u, $4, $5::bigint FROM unnest($3::bigint[]) AS u
                         ON CONFLICT (mailbox, account, uid) DO UPDATE SET seen = excluded.seen, modseq = excluded.modseq",
                        &[&id(mailbox), &id(user), &changed, &seen, &id(new_modseq)],
                    )
                    .await
                    .map_err(pg_error)?;
                    m.highest_modseq = new_modseq;
                    save_mailbox(tx, &m).await?;
                    changes.push(StoreChange::Mailbox { account: m.account, mailbox });
                }
                Ok(result)
            })
        })
        .await
    }

    async fn append_batch(&self, batch: AppendBatch) -> StoreResult<AppendReceipt> {
        let mut prepared = Vec::with_capacity(batch.messages.len());
        for d in &batch.messages {
            prepared.push(crate::deliver::prepare(d).await?);
        }
        let blobs = self.blobs();
        let receipt = self
            .write(move |tx, changes| {
                Box::pin(async move {
                    let blobs = &*blobs;
                    let target = mailbox_by_id(tx, batch.mailbox, false)
                        .await?
                        .ok_or_else(|| StoreError::NotFound(format!("mailbox {}", batch.mailbox)))?;
                    let items: Vec<_> = batch.messages.iter().zip(&prepared).collect();
                    // The deliveries of one transaction see each other: the quota counts them all.
                    let receipts = crate::deliver::deliver_in(tx, blobs, &items, changes).await?;
                    if receipts.iter().any(|r| !r.over_quota.is_empty()) {
                        return Err(StoreError::OverQuota(format!("account {}", target.account)));
                    }
                    let mut uids = Vec::with_capacity(receipts.len());
                    for r in &receipts {
                        match r.copies.first() {
                            Some(copy) if copy.mailbox == batch.mailbox => uids.push(copy.uid),
                            _ => return Err(StoreError::NotFound(format!("mailbox {}", batch.mailbox))),
                        }
                    }
                    let mut replaced = false;
                    if let Some((from, uid)) = batch.replaces {
                        let mut m = mailbox_by_id(tx, from, true)
                            .await?
                            .ok_or_else(|| StoreError::NotFound(format!("mailbox {from}")))?;
                        if m.account != target.account {
                            return Err(StoreError::NotFound(format!("mailbox {from}")));
                        }
                        let mut released = BTreeMap::new();
                        replaced = !remove_messages(tx, &mut m, &[uid], &mut released, true).await?.is_empty();
                        release_contents(tx, blobs, released).await?;
                        save_mailbox(tx, &m).await?;
                        changes.push(StoreChange::Mailbox { account: m.account, mailbox: from });
                    }
                    Ok(AppendReceipt { uid_validity: target.uid_validity, uids, replaced })
                })
            })
            .await?;
        self.wake_indexer();
        Ok(receipt)
    }

    async fn message_list(&self, mailbox: MailboxId) -> StoreResult<Vec<MessageEntry>> {
        let client = self.client().await?;
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox = $1 ORDER BY uid");
        client.rows(&sql, &[&id(mailbox)]).await.map_err(pg_error)?.iter().map(rows::message).collect()
    }

    async fn message_get(&self, mailbox: MailboxId, uid: u32) -> StoreResult<Option<MessageEntry>> {
        let client = self.client().await?;
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox = $1 AND uid = $2");
        client
            .maybe_row(&sql, &[&id(mailbox), &i64::from(uid)])
            .await
            .map_err(pg_error)?
            .as_ref()
            .map(rows::message)
            .transpose()
    }

    async fn message_count_from(&self, mailbox: MailboxId, uid: u32) -> StoreResult<u32> {
        let client = self.client().await?;
        let n: i64 = client
            .row("SELECT count(*) FROM messages WHERE mailbox = $1 AND uid >= $2", &[&id(mailbox), &i64::from(uid)])
            .await
            .map_err(pg_error)?
            .get(0);
        Ok(n as u32)
    }

    async fn mailbox_changes(&self, mailbox: MailboxId, since_modseq: u64) -> StoreResult<MailboxChanges> {
        let mut client = self.client().await?;
        // One snapshot for the three reads.
        let tx = PgStore::snapshot(&mut client).await?;
        let since = id(since_modseq);
        let highest_modseq = mailbox_by_id(&tx, mailbox, false).await?.map(|m| m.highest_modseq).unwrap_or(0);
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox = $1 AND modseq > $2 ORDER BY uid");
        let changed = tx
            .rows(&sql, &[&id(mailbox), &since])
            .await
            .map_err(pg_error)?
            .iter()
            .map(rows::message)
            .collect::<StoreResult<Vec<_>>>()?;
        let expunged = tx
            .rows("SELECT uid FROM expunged WHERE mailbox = $1 AND modseq > $2 ORDER BY uid", &[&id(mailbox), &since])
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| r.get::<_, i64>(0) as u32)
            .collect();
        tx.commit().await.map_err(pg_error)?;
        Ok(MailboxChanges { changed, expunged, highest_modseq })
    }

    async fn expunge(&self, mailbox: MailboxId, uids: Vec<u32>) -> StoreResult<Vec<u32>> {
        let blobs = self.blobs();
        self.write(move |tx, changes| {
            Box::pin(async move {
                let blobs = &*blobs;
                let mut m = mailbox_by_id(tx, mailbox, true)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
                let mut released = BTreeMap::new();
                let removed = remove_messages(tx, &mut m, &uids, &mut released, true).await?;
                if removed.is_empty() {
                    return Ok(removed);
                }
                release_contents(tx, blobs, released).await?;
                save_mailbox(tx, &m).await?;
                changes.push(StoreChange::Mailbox { account: m.account, mailbox });
                Ok(removed)
            })
        })
        .await
    }

    async fn set_flags(
        &self,
        mailbox: MailboxId,
        uids: Vec<u32>,
        mode: FlagMode,
        flags: Flags,
        keywords: Vec<String>,
        unchanged_since: Option<u64>,
    ) -> StoreResult<FlagUpdate> {
        self.write(move |tx, changes| {
            Box::pin(async move {
                let mut m = mailbox_by_id(tx, mailbox, true)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
                let mut result = FlagUpdate::default();
                let before = m.keywords.len();
                let mut unique: Vec<String> = Vec::new();
                for k in keywords {
                    if !unique.iter().any(|x| x.eq_ignore_ascii_case(&k)) {
                        unique.push(k);
                    }
                }
                let keywords = m.register_keywords(&unique);
                result.keywords_refused = keywords.len() < unique.len();
                let new_modseq = m.highest_modseq + 1;
                let found = messages_by_uid(tx, mailbox, &uids).await?;
                // Rows that end with the same flags and keywords are written together.
                let mut groups: HashMap<(u8, Vec<String>), Vec<i64>> = HashMap::new();
                for uid in uids {
                    let Some(mut entry) = found.get(&uid).cloned() else {
                        result.missing.push(uid);
                        continue;
                    };
                    if let Some(since) = unchanged_since
                        && entry.modseq > since
                    {
                        result.conflicts.push(uid);
                        continue;
                    }
                    let old_flags = entry.flags;
                    if !entry.apply_flags(mode, flags, &keywords) {
                        continue;
                    }
                    m.count_flag_change(old_flags, entry.flags);
                    entry.modseq = new_modseq;
                    groups.entry((entry.flags.0, entry.keywords.clone())).or_default().push(i64::from(uid));
                    result.updated.push(entry);
                }
                for ((bits, words), group) in &groups {
                    tx.run(
                        "UPDATE messages SET flags = $3, keywords = $4, modseq = $5
                         WHERE mailbox = $1 AND uid = ANY($2)",
                        &[&id(mailbox), group, &i16::from(*bits), words, &id(new_modseq)],
                    )
                    .await
                    .map_err(pg_error)?;
                }
                if !result.updated.is_empty() || m.keywords.len() != before {
                    if !result.updated.is_empty() {
                        m.highest_modseq = new_modseq;
                    }
                    save_mailbox(tx, &m).await?;
                    changes.push(StoreChange::Mailbox { account: m.account, mailbox });
                }
                Ok(result)
            })
        })
        .await
    }

    async fn copy_messages(
        &self,
        from: MailboxId,
        uids: Vec<u32>,
        to: MailboxId,
        remove_source: bool,
    ) -> StoreResult<CopyResult> {
        let blobs = self.blobs();
        self.write(move |tx, changes| {
            Box::pin(async move {
                let blobs = &*blobs;
                // Lock both rows in id order.
                let (first, second) = (from.min(to), from.max(to));
                let a = mailbox_by_id(tx, first, true).await?;
                let b = if first == second { a.clone() } else { mailbox_by_id(tx, second, true).await? };
                let (source, target) = if first == from { (a, b) } else { (b, a) };
                let mut source = source.ok_or_else(|| StoreError::NotFound(format!("mailbox {from}")))?;
                let mut target = target.ok_or_else(|| StoreError::NotFound(format!("mailbox {to}")))?;
                let found = messages_by_uid(tx, from, &uids).await?;
                // A copy adds to the target account's storage; a move within one account does
                // not. (Between accounts — a shared mailbox, RFC 4314 — the caller checked the
                // rights.)
                let adds = !remove_source || source.account != target.account;
                if adds && let Some((limit, used)) = quota_of(tx, target.account).await? {
                    let added: u64 = found.values().map(|m| m.size).sum();
                    if used + added > limit {
                        return Err(StoreError::OverQuota(format!("account {}", target.account)));
                    }
                }
                let originals = in_order(&found, &uids);
                let pairs = if from == to {
                    let mut same = source.clone();
                    let pairs = copy_in(tx, blobs, &mut source, &mut same, &originals, remove_source, true).await?;
                    target = same;
                    pairs
                } else {
                    copy_in(tx, blobs, &mut source, &mut target, &originals, remove_source, false).await?
                };
                if pairs.is_empty() {
                    return Ok(CopyResult { uid_validity: target.uid_validity, pairs });
                }
                save_mailbox(tx, &target).await?;
                if remove_source && from != to {
                    save_mailbox(tx, &source).await?;
                    changes.push(StoreChange::Mailbox { account: source.account, mailbox: from });
                }
                changes.push(StoreChange::Mailbox { account: target.account, mailbox: to });
                Ok(CopyResult { uid_validity: target.uid_validity, pairs })
            })
        })
        .await
    }

    async fn blob_get(&self, hash: BlobHash) -> StoreResult<Option<Vec<u8>>> {
        let client = self.client().await?;
        self.blobs().get(&client, &hash).await
    }

    async fn blob_refcount(&self, hash: BlobHash) -> StoreResult<u32> {
        let client = self.client().await?;
        let row = client
            .maybe_row("SELECT refcount FROM contents WHERE hash = $1", &[&&hash.0[..]])
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get::<_, i64>(0).max(0) as u32).unwrap_or(0))
    }

    async fn summary_get(&self, hash: BlobHash) -> StoreResult<Option<MessageSummary>> {
        Ok(self.summary_get_many(vec![hash]).await?.pop().flatten())
    }

    async fn summary_get_many(&self, hashes: Vec<BlobHash>) -> StoreResult<Vec<Option<MessageSummary>>> {
        let client = self.client().await?;
        let keys: Vec<&[u8]> = hashes.iter().map(|h| &h.0[..]).collect();
        let rows =
            client.rows("SELECT hash, summary FROM contents WHERE hash = ANY($1)", &[&keys]).await.map_err(pg_error)?;
        let mut stored: HashMap<BlobHash, Option<Vec<u8>>> = HashMap::new();
        for row in rows {
            stored.insert(rows::hash_of(row.get::<_, &[u8]>(0))?, row.get(1));
        }
        drop(client);
        let mut out = Vec::with_capacity(hashes.len());
        for hash in &hashes {
            let current = match stored.get(hash) {
                None => {
                    out.push(None);
                    continue;
                }
                Some(Some(bytes)) => decode_summary(bytes)?,
                Some(None) => None,
            };
            let summary = match current {
                Some(s) => Some(s),
                // Missing or of an older version: derived again from the content and stored.
                None => match self.blob_get(*hash).await? {
                    None => None,
                    Some(raw) => {
                        let summary = tokio::task::spawn_blocking(move || tern_mime::summarize(&raw))
                            .await
                            .map_err(|e| StoreError::Task(e.to_string()))?;
                        let bytes = encode_summary(&summary)?;
                        if let Ok(client) = self.client().await
                            && let Err(e) = client
                                .run("UPDATE contents SET summary = $2 WHERE hash = $1", &[&&hash.0[..], &bytes])
                                .await
                        {
                            tracing::debug!(error = %crate::error::words(&e), "could not store an upgraded summary");
                        }
                        Some(summary)
                    }
                },
            };
            out.push(summary);
        }
        Ok(out)
    }

    async fn envelope_get(&self, delivery_id: u64) -> StoreResult<Option<DeliveryEnvelope>> {
        let client = self.client().await?;
        let row = client
            .maybe_row("SELECT envelope FROM envelopes WHERE delivery_id = $1", &[&id(delivery_id)])
            .await
            .map_err(pg_error)?;
        row.map(|r| rows::json(&r, 0, "envelope")).transpose()
    }

    async fn lock_take(&self, key: &str, holder: u64, seconds: u64) -> StoreResult<bool> {
        let now = now_unix();
        let until = now.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX / 2));
        let client = self.client().await?;
        // Taken when free, expired, or already ours (a renewal).
        let taken = client
            .maybe_row(
                "INSERT INTO locks (key, holder, until) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE locks.until < $4 OR locks.holder = excluded.holder
                 RETURNING 1",
                &[&key, &id(holder), &until, &now],
            )
            .await
            .map_err(pg_error)?;
        Ok(taken.is_some())
    }

    async fn lock_release(&self, key: &str, holder: u64) -> StoreResult<()> {
        let client = self.client().await?;
        client.run("DELETE FROM locks WHERE key = $1 AND holder = $2", &[&key, &id(holder)]).await.map_err(pg_error)?;
        Ok(())
    }

    async fn text_search(&self, needle: &str, with_header: bool) -> StoreResult<Option<TextMatches>> {
        let needle = needle.to_lowercase();
        // Without three alphanumeric characters in a row the index cannot help, and PostgreSQL's
        // text holds no NUL: the caller scans.
        let body_grams = crate::text::needle_grams(&needle, false);
        if body_grams.is_empty() || needle.contains('\0') {
            return Ok(None);
        }
        let mut client = self.client().await?;
        // One snapshot: a content the indexer finished is either in the text table or still
        // listed as unindexed, never neither.
        let tx = PgStore::snapshot(&mut client).await?;
        // Candidates by trigrams, kept when the text holds the needle (see `text.rs`).
        let rows = if with_header {
            let header_grams = crate::text::needle_grams(&needle, true);
            tx.rows(
                "SELECT hash FROM content_text
                 WHERE (grams @> $1 AND strpos(body, $3) > 0) OR (grams @> $2 AND strpos(header, $3) > 0)",
                &[&body_grams, &header_grams, &needle],
            )
            .await
        } else {
            tx.rows("SELECT hash FROM content_text WHERE grams @> $1 AND strpos(body, $2) > 0", &[&body_grams, &needle])
                .await
        };
        let mut matched = tern_fts::KeySet::default();
        for row in rows.map_err(pg_error)? {
            let hash = rows::hash_of(row.get::<_, &[u8]>(0))?;
            matched.insert(tern_fts::content_key(&hash.0));
        }
        let mut unindexed = tern_fts::KeySet::default();
        for row in tx.rows("SELECT hash FROM contents WHERE scan_only OR NOT indexed", &[]).await.map_err(pg_error)? {
            unindexed.insert(rows::hash_of(row.get::<_, &[u8]>(0))?);
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(Some(TextMatches { matched, unindexed: std::sync::Arc::new(unindexed) }))
    }
}
