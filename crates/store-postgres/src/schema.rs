//! The database schema, created and migrated by Tern itself.
//!
//! `MIGRATIONS[i]` takes a database from schema version `i` to `i + 1`; version 0 is an empty
//! database. Each runs in one transaction under an advisory lock, so nodes starting together
//! migrate once, and a failed migration leaves the previous version whole. A database of a
//! newer version than this Tern knows is refused (an older node must not write a format it
//! does not understand).

use crate::error::pg_error;
use tern_store::{StoreError, StoreResult};

/// Version this Tern writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Key of the advisory lock held while migrating ("tern" in ASCII).
const MIGRATION_LOCK: i64 = 0x7465_726e;

pub const MIGRATIONS: &[&str] = &[
    // 1: everything the Store trait keeps.
    r#"
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE TABLE tern_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
    -- Identifiers handed out across every node.
    CREATE SEQUENCE account_ids;
    CREATE SEQUENCE mailbox_ids;
    CREATE SEQUENCE email_ids;
    CREATE SEQUENCE delivery_ids;
    CREATE SEQUENCE queue_ids;
    CREATE SEQUENCE quarantine_ids;
    -- UIDVALIDITY: strictly increasing over all mailboxes ever made, from the clock.
    INSERT INTO tern_meta VALUES ('uidvalidity', 0);

    CREATE TABLE domains (name TEXT PRIMARY KEY, record JSONB NOT NULL);
    CREATE TABLE accounts (id BIGINT PRIMARY KEY, address TEXT NOT NULL UNIQUE, record JSONB NOT NULL);
    CREATE TABLE aliases (address TEXT PRIMARY KEY, record JSONB NOT NULL);

    CREATE TABLE mailboxes (
        id BIGINT PRIMARY KEY,
        account BIGINT NOT NULL,
        name TEXT NOT NULL,
        special_use TEXT,
        subscribed BOOLEAN NOT NULL,
        uid_validity BIGINT NOT NULL,
        uid_next BIGINT NOT NULL,
        highest_modseq BIGINT NOT NULL,
        total BIGINT NOT NULL,
        unseen BIGINT NOT NULL,
        size BIGINT NOT NULL,
        deleted BIGINT NOT NULL,
        recent_uid BIGINT NOT NULL,
        keywords TEXT[] NOT NULL,
        UNIQUE (account, name)
    );
    -- Subscribed names without a mailbox (RFC 9051 §6.3.7).
    CREATE TABLE subscriptions (account BIGINT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (account, name));

    -- Message contents, once per content, with how many copies and queue entries use them.
    CREATE TABLE contents (
        hash BYTEA PRIMARY KEY,
        refcount BIGINT NOT NULL,
        size BIGINT NOT NULL,
        summary BYTEA,
        -- The text is too large to index: searches scan it.
        scan_only BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX contents_scan_only ON contents (hash) WHERE scan_only;
    CREATE TABLE blobs (hash BYTEA PRIMARY KEY, data BYTEA NOT NULL);
    -- Decoded, lower-cased text for SEARCH BODY/TEXT (exact substrings through trigrams).
    CREATE TABLE content_text (hash BYTEA PRIMARY KEY, header TEXT NOT NULL, body TEXT NOT NULL);
    CREATE INDEX content_text_header ON content_text USING gin (header gin_trgm_ops);
    CREATE INDEX content_text_body ON content_text USING gin (body gin_trgm_ops);

    CREATE TABLE messages (
        mailbox BIGINT NOT NULL,
        uid BIGINT NOT NULL,
        blob BYTEA NOT NULL,
        size BIGINT NOT NULL,
        internal_date BIGINT NOT NULL,
        flags SMALLINT NOT NULL,
        keywords TEXT[] NOT NULL,
        modseq BIGINT NOT NULL,
        email_id BIGINT NOT NULL,
        thread_id BIGINT NOT NULL,
        delivery_id BIGINT NOT NULL,
        PRIMARY KEY (mailbox, uid)
    );
    CREATE INDEX messages_modseq ON messages (mailbox, modseq);
    CREATE TABLE expunged (mailbox BIGINT NOT NULL, modseq BIGINT NOT NULL, uid BIGINT NOT NULL);
    CREATE INDEX expunged_mailbox ON expunged (mailbox, modseq);
    CREATE TABLE threads (account BIGINT NOT NULL, message_id TEXT NOT NULL, thread BIGINT NOT NULL,
                          PRIMARY KEY (account, message_id));
    CREATE TABLE envelopes (delivery_id BIGINT PRIMARY KEY, envelope JSONB NOT NULL);

    -- The outbound queue, shared by every node: an entry is due at next_attempt and leased
    -- to one node until lease_until (durable, so a dead node's leases end by themselves).
    CREATE TABLE queue (
        id BIGINT PRIMARY KEY,
        entry JSONB NOT NULL,
        next_attempt BIGINT NOT NULL,
        lease_until BIGINT NOT NULL DEFAULT 0,
        created BIGINT NOT NULL
    );
    CREATE INDEX queue_due ON queue (next_attempt);

    CREATE TABLE quarantine (id BIGINT PRIMARY KEY, entry JSONB NOT NULL, raw BYTEA NOT NULL,
                             expires_at BIGINT NOT NULL);
    -- Spam models; owner 0 is the global model, otherwise an account id.
    CREATE TABLE spam_totals (owner BIGINT PRIMARY KEY, spam BIGINT NOT NULL, ham BIGINT NOT NULL);
    CREATE TABLE spam_features (owner BIGINT NOT NULL, feature BIGINT NOT NULL, spam BIGINT NOT NULL,
                                ham BIGINT NOT NULL, PRIMARY KEY (owner, feature));
    CREATE TABLE spam_lessons (owner BIGINT NOT NULL, message BYTEA NOT NULL, spam BOOLEAN NOT NULL,
                               PRIMARY KEY (owner, message));
    "#,
    // 2: secrets the nodes share (the server secret keying made-up SCRAM salts).
    r#"
    CREATE TABLE tern_secrets (name TEXT PRIMARY KEY, value BYTEA NOT NULL);
    "#,
    // 3: which node holds a queue entry's lease, so that it alone renews it.
    r#"
    ALTER TABLE queue ADD COLUMN lease_holder BIGINT NOT NULL DEFAULT 0;
    "#,
    // 4: search text indexed after the commit (by each node's indexer), not inside it: a
    // content's trigrams cost several milliseconds of the database's CPU. Contents stored so
    // far were indexed when stored. Contents' bytes and texts compressed with lz4 where the
    // server has it (cheaper than pglz).
    r#"
    ALTER TABLE contents ADD COLUMN indexed BOOLEAN NOT NULL DEFAULT true;
    CREATE INDEX contents_unindexed ON contents (hash) WHERE NOT indexed;
    DO $$ BEGIN
        ALTER TABLE blobs ALTER COLUMN data SET COMPRESSION lz4;
        ALTER TABLE content_text ALTER COLUMN header SET COMPRESSION lz4;
        ALTER TABLE content_text ALTER COLUMN body SET COMPRESSION lz4;
    EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN NULL;
    END $$;
    "#,
    // 5: search text indexed by trigram codes Tern computes (one GIN index over an integer
    // array) instead of `pg_trgm`'s two indexes, whose extraction was most of the database's
    // CPU per delivery (see `text.rs`). Texts stored so far are indexed again by the nodes'
    // indexers; until then searches scan them.
    r#"
    DROP INDEX content_text_header;
    DROP INDEX content_text_body;
    DELETE FROM content_text;
    ALTER TABLE content_text ADD COLUMN grams INT4[] NOT NULL;
    CREATE INDEX content_text_grams ON content_text USING gin (grams);
    UPDATE contents SET indexed = false WHERE summary IS NOT NULL AND NOT scan_only;
    "#,
    // 6: locks one session holds against every node's (POP3 maildrops), with an end.
    r#"
    CREATE TABLE locks (key TEXT PRIMARY KEY, holder BIGINT NOT NULL, until BIGINT NOT NULL);
    "#,
    // 7: the accounts' Sieve scripts, at most one active per account.
    r#"
    CREATE TABLE sieve_scripts (account BIGINT NOT NULL, name TEXT NOT NULL, source TEXT NOT NULL,
                                active BOOLEAN NOT NULL DEFAULT false, PRIMARY KEY (account, name));
    CREATE UNIQUE INDEX sieve_scripts_active ON sieve_scripts (account) WHERE active;
    "#,
    // 8: ids a Sieve script asked to remember (RFC 7352 duplicates, RFC 5230 vacation
    // replies), by SHA-256, until they expire.
    r#"
    CREATE TABLE sieve_seen (account BIGINT NOT NULL, id BYTEA NOT NULL, expires_at BIGINT NOT NULL,
                             PRIMARY KEY (account, id));
    "#,
    // 9: when each message was saved in its mailbox (RFC 8514 SAVEDATE); older rows read
    // their arrival instead (no table rewrite).
    r#"
    ALTER TABLE messages ADD COLUMN saved BIGINT;
    "#,
    // 10: mailbox ACLs (RFC 4314), with the mailboxes each identifier is named in.
    r#"
    ALTER TABLE mailboxes ADD COLUMN acl JSONB NOT NULL DEFAULT '[]';
    CREATE TABLE mailbox_acl (identifier TEXT NOT NULL,
                              mailbox BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
                              PRIMARY KEY (identifier, mailbox));
    CREATE INDEX mailbox_acl_mailbox ON mailbox_acl (mailbox);
    "#,
    // 11: RFC 5464 annotations: user 0 for /shared, mailbox 0 for the server's.
    r#"
    CREATE TABLE metadata (account BIGINT NOT NULL, mailbox BIGINT NOT NULL, name TEXT NOT NULL,
                           value BYTEA NOT NULL, PRIMARY KEY (account, mailbox, name));
    CREATE INDEX metadata_mailbox ON metadata (mailbox);
    "#,
    // 12: each reader's own \Seen on another account's mailbox.
    r#"
    CREATE TABLE private_seen (mailbox BIGINT NOT NULL, account BIGINT NOT NULL, uid BIGINT NOT NULL,
                               seen BOOLEAN NOT NULL, modseq BIGINT NOT NULL,
                               PRIMARY KEY (mailbox, account, uid));
    "#,
    // 13: the REST API's tokens (hashes only).
    r#"
    CREATE TABLE api_tokens (name TEXT PRIMARY KEY, record JSONB NOT NULL);
    "#,
    // 14: the web admin's sign-in sessions, shared by the nodes (cookie hashes only).
    r#"
    CREATE TABLE web_sessions (key TEXT PRIMARY KEY, account BIGINT NOT NULL, expires BIGINT NOT NULL,
                               record JSONB NOT NULL);
    CREATE INDEX web_sessions_account ON web_sessions (account);
    CREATE INDEX web_sessions_expires ON web_sessions (expires);
    "#,
];

/// Brings the database to [`SCHEMA_VERSION`]; returns the version it found.
pub async fn migrate(client: &mut tokio_postgres::Client) -> StoreResult<i64> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_error)?;
    let encoding: String = tx.query_one("SHOW server_encoding", &[]).await.map_err(pg_error)?.get(0);
    if !encoding.eq_ignore_ascii_case("UTF8") {
        return Err(StoreError::Backend(format!(
            "the database's encoding is {encoding}; Tern needs UTF8 (CREATE DATABASE ... ENCODING 'UTF8')"
        )));
    }
    let has_meta: bool =
        tx.query_one("SELECT to_regclass('tern_meta') IS NOT NULL", &[]).await.map_err(pg_error)?.get(0);
    let found: i64 = if has_meta {
        tx.query_opt("SELECT value FROM tern_meta WHERE key = 'schema_version'", &[])
            .await
            .map_err(pg_error)?
            .map(|r| r.get(0))
            .unwrap_or(0)
    } else {
        0
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::Format { found: found as u32, supported: SCHEMA_VERSION as u32 });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError::Backend(format!("schema migration to version {}: {}", i + 1, crate::error::words(&e)))
        })?;
        tx.execute(
            "INSERT INTO tern_meta VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&(i as i64 + 1)],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)?;
    if found < SCHEMA_VERSION {
        tracing::info!(from = found, to = SCHEMA_VERSION, "database schema migrated");
    }
    Ok(found)
}
