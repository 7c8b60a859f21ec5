//! The store: directory records, mailboxes, messages, message contents, the outbound queue,
//! the quarantine and the spam models.
//!
//! Everything that persists goes through the [`Store`] trait so that the embedded backend
//! (default, [`embedded::EmbeddedStore`] on fjall) and the PostgreSQL backend of cluster mode
//! are interchangeable. [`Store`] is the sum of the parts a backend implements:
//! [`DirectoryStore`], [`MailStore`], [`QueueStore`], [`FilterStore`], [`ScriptStore`] and
//! [`ChangeFeed`].
//! `use tern_store::prelude::*` brings them all into scope.
//!
//! # The contract every backend keeps
//! The `conformance` suite (feature `conformance`) checks these on each backend.
//! - **Durable on return.** A mutating call returns `Ok` only after its effects survive a crash
//!   of the process and of the machine (fsync; one fsync may serve many concurrent callers:
//!   group commit). An `Err` means nothing of the call happened, except where a method says
//!   otherwise.
//! - **Atomic.** Each call is one transaction: a delivery to many mailboxes, a move (copies and
//!   expunge), an account with its mailboxes, a quarantine release are all or nothing.
//! - **UIDs and modseqs.** Within a mailbox, UIDs are handed out in increasing order and never
//!   again, even after an expunge, a restart or by another node; UIDVALIDITY never changes for
//!   a mailbox's life. Every change to a mailbox (delivery, flags, expunge) gets a modseq higher
//!   than any before it in that mailbox.
//! - **Contents by hash.** A message content is stored once however many mailboxes, copies and
//!   queue entries use it, and freed with the last of them.
//! - **Queue leases.** [`QueueStore::queue_claim`] leases entries to one claimer until the lease
//!   ends or the claimer reports; two claims never return the same entry at once. A lease may
//!   outlive its claimer (crash): the entry is due again when it ends, so delivery is at least
//!   once and never lost.
//! - **Change events.** Every committed change is given to the [`ChangeFeed`] hooks before the
//!   caller that made it is answered, and to subscribers in commit order per mailbox. A backend
//!   shared by several processes also reports the changes others make (later, but in order).

pub mod acl;
pub mod codec;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod embedded;
mod error;
mod model;

pub use acl::{AclEntry, Identifier, Rights};
pub use error::{StoreError, StoreResult};
pub use model::*;
pub use tern_mime::MessageSummary;

use async_trait::async_trait;

/// See [`ChangeFeed::on_change`].
pub type ChangeHook = std::sync::Arc<dyn Fn(&StoreChange) + Send + Sync>;
use tokio::sync::broadcast;

/// Domains, accounts and aliases.
#[async_trait]
pub trait DirectoryStore: Send + Sync + 'static {
    async fn domain_list(&self) -> StoreResult<Vec<Domain>>;
    async fn domain_get(&self, name: &str) -> StoreResult<Option<Domain>>;
    /// Creates or replaces a domain.
    async fn domain_put(&self, domain: Domain) -> StoreResult<()>;
    async fn domain_remove(&self, name: &str) -> StoreResult<bool>;
    async fn account_list(&self) -> StoreResult<Vec<Account>>;
    async fn account_get(&self, id: AccountId) -> StoreResult<Option<Account>>;
    async fn account_by_address(&self, address: &str) -> StoreResult<Option<Account>>;
    /// Creates an account and its initial mailboxes atomically.
    async fn account_create(&self, account: NewAccount, mailboxes: Vec<NewMailbox>) -> StoreResult<Account>;
    /// Replaces an account's record (password, quota); the address cannot change.
    async fn account_update(&self, account: Account) -> StoreResult<()>;
    /// Removes an account with all its mailboxes and messages.
    async fn account_remove(&self, id: AccountId) -> StoreResult<bool>;
    async fn alias_list(&self) -> StoreResult<Vec<Alias>>;
    async fn alias_get(&self, address: &str) -> StoreResult<Option<Alias>>;
    async fn alias_put(&self, alias: Alias) -> StoreResult<()>;
    async fn alias_remove(&self, address: &str) -> StoreResult<bool>;
    /// The REST API's tokens, by name.
    async fn api_token_list(&self) -> StoreResult<Vec<ApiToken>>;
    /// Creates or replaces a token.
    async fn api_token_put(&self, token: ApiToken) -> StoreResult<()>;
    async fn api_token_remove(&self, name: &str) -> StoreResult<bool>;
    /// The web admin's session with this key. Sessions are not directory changes: their
    /// writes send no [`StoreChange`].
    async fn web_session_get(&self, key: &str) -> StoreResult<Option<WebSession>>;
    /// An account's sessions.
    async fn web_sessions_of(&self, account: AccountId) -> StoreResult<Vec<WebSession>>;
    /// Creates or replaces a session; durable on return.
    async fn web_session_put(&self, session: WebSession) -> StoreResult<()>;
    /// Removes sessions; how many.
    async fn web_session_remove(&self, which: WebSessionsToRemove) -> StoreResult<usize>;
}

/// Mailboxes, messages and their contents, summaries and search.
#[async_trait]
pub trait MailStore: Send + Sync + 'static {
    async fn mailbox_list(&self, account: AccountId) -> StoreResult<Vec<Mailbox>>;
    async fn mailbox_get(&self, id: MailboxId) -> StoreResult<Option<Mailbox>>;
    async fn mailbox_by_name(&self, account: AccountId, name: &str) -> StoreResult<Option<Mailbox>>;
    async fn mailbox_create(&self, account: AccountId, mailbox: NewMailbox) -> StoreResult<Mailbox>;
    /// Renames a mailbox and everything below it (`from/...`); INBOX is special: its messages
    /// move to a new mailbox `to` and INBOX stays, empty (RFC 9051 §6.3.6). Missing parents
    /// of `to` are created.
    async fn mailbox_rename(&self, account: AccountId, from: &str, to: &str) -> StoreResult<()>;
    /// Deletes a mailbox and its messages (not INBOX, not one with children).
    async fn mailbox_delete(&self, account: AccountId, name: &str) -> StoreResult<()>;
    /// Subscribes to a name or ends the subscription; a name without a mailbox can be
    /// subscribed too, and a mailbox's subscription outlives it (RFC 9051 §6.3.7).
    async fn mailbox_subscribe(&self, account: AccountId, name: &str, subscribed: bool) -> StoreResult<()>;
    /// Every subscribed name, of existing mailboxes or not, sorted.
    async fn subscriptions(&self, account: AccountId) -> StoreResult<Vec<String>>;
    /// Claims the `\Recent` messages of a mailbox for one session: returns the UIDs that are
    /// recent to the caller (from the first unclaimed one up to UIDNEXT) and marks them as no
    /// longer recent to anyone else.
    async fn mailbox_claim_recent(&self, mailbox: MailboxId) -> StoreResult<std::ops::Range<u32>>;
    /// Sets (`Some`) or removes (`None`) the rights `identifier` has on a mailbox (RFC 4314);
    /// the mailbox as it is now. `Limit` past [`acl::MAX_ACL_ENTRIES`].
    async fn mailbox_set_acl(
        &self,
        mailbox: MailboxId,
        identifier: Identifier,
        rights: Option<Rights>,
    ) -> StoreResult<Mailbox>;
    /// Every mailbox whose ACL has an entry for one of `identifiers` (see
    /// [`Identifier::naming`]), whoever owns it: what another user may find shared.
    async fn mailboxes_shared_with(&self, identifiers: Vec<Identifier>) -> StoreResult<Vec<Mailbox>>;
    /// The annotations of a scope (RFC 5464), names lower-cased, in name order.
    async fn metadata_get(&self, scope: MetadataScope) -> StoreResult<Vec<(String, Vec<u8>)>>;
    /// Sets (`Some`) or removes (`None`) annotations of a scope in one commit; a mailbox's
    /// modseq goes up when one of its annotations changed (RFC 7162 §3.2). `Limit` when the
    /// scope would hold more than [`METADATA_MAX_ENTRIES`]; nothing is changed then.
    async fn metadata_set(&self, scope: MetadataScope, entries: Vec<(String, Option<Vec<u8>>)>) -> StoreResult<()>;
    /// `user`'s private `\Seen` records on a mailbox (see [`PrivateSeen`]) changed after
    /// `since_modseq` (0: all), in UID order. A message without a record is not seen.
    async fn seen_private_get(
        &self,
        mailbox: MailboxId,
        user: AccountId,
        since_modseq: u64,
    ) -> StoreResult<Vec<PrivateSeen>>;
    /// Sets or clears `user`'s private `\Seen` on messages of a mailbox; each change gets a
    /// new modseq of the mailbox (its HIGHESTMODSEQ goes up). With `unchanged_since`, a
    /// message whose own modseq or whose record's is higher is left alone (a conflict).
    async fn seen_private_set(
        &self,
        mailbox: MailboxId,
        user: AccountId,
        uids: Vec<u32>,
        seen: bool,
        unchanged_since: Option<u64>,
    ) -> StoreResult<PrivateSeenUpdate>;
    /// Stores one message for every target (content stored once) and records its envelope.
    async fn deliver(&self, delivery: Delivery) -> StoreResult<DeliveryReceipt>;
    /// Stores every message of `batch` in its mailbox and expunges the one it replaces, in
    /// one commit: `OverQuota` or `NotFound` (mailbox) store nothing.
    async fn append_batch(&self, batch: AppendBatch) -> StoreResult<AppendReceipt>;
    /// Every message of a mailbox in UID order.
    async fn message_list(&self, mailbox: MailboxId) -> StoreResult<Vec<MessageEntry>>;
    async fn message_get(&self, mailbox: MailboxId, uid: u32) -> StoreResult<Option<MessageEntry>>;
    /// How many messages have a UID of at least `uid`.
    async fn message_count_from(&self, mailbox: MailboxId, uid: u32) -> StoreResult<u32>;
    /// What changed in a mailbox after `since_modseq`: messages added or changed since (in UID
    /// order) and UIDs expunged since.
    async fn mailbox_changes(&self, mailbox: MailboxId, since_modseq: u64) -> StoreResult<MailboxChanges>;
    /// Removes messages; returns the UIDs that were present. Contents whose last copy went
    /// are freed.
    async fn expunge(&self, mailbox: MailboxId, uids: Vec<u32>) -> StoreResult<Vec<u32>>;
    /// Changes system flags and keywords. With `unchanged_since`, messages whose modseq is
    /// higher are left alone and reported as conflicts.
    async fn set_flags(
        &self,
        mailbox: MailboxId,
        uids: Vec<u32>,
        mode: FlagMode,
        flags: Flags,
        keywords: Vec<String>,
        unchanged_since: Option<u64>,
    ) -> StoreResult<FlagUpdate>;
    /// Copies messages (flags and keywords kept) to another mailbox (of the same account, or
    /// of another one the caller's rights allow: shared mailboxes); with `remove_source` it
    /// is a move: the copies and the expunge commit together. The target account's quota is
    /// checked for what it gains.
    async fn copy_messages(
        &self,
        from: MailboxId,
        uids: Vec<u32>,
        to: MailboxId,
        remove_source: bool,
    ) -> StoreResult<CopyResult>;
    /// The raw message with this content hash.
    async fn blob_get(&self, hash: BlobHash) -> StoreResult<Option<Vec<u8>>>;
    /// How many stored messages share this content (0 when it is gone).
    async fn blob_refcount(&self, hash: BlobHash) -> StoreResult<u32>;
    async fn summary_get(&self, hash: BlobHash) -> StoreResult<Option<MessageSummary>>;
    /// Summaries of many contents in one go (one blocking task instead of one per content).
    async fn summary_get_many(&self, hashes: Vec<BlobHash>) -> StoreResult<Vec<Option<MessageSummary>>>;
    async fn envelope_get(&self, delivery_id: u64) -> StoreResult<Option<DeliveryEnvelope>>;
    /// Contents whose decoded text contains `needle` (case-insensitive): body text, or header
    /// and body with `with_header`. `None` when the backend cannot look it up (too short a
    /// string, no index); the caller then scans.
    async fn text_search(&self, needle: &str, with_header: bool) -> StoreResult<Option<TextMatches>>;
    /// Takes (or renews) the lock named `key` for `holder` until `seconds` from now, across
    /// every process sharing this store; whether `holder` has it. A lock whose time ran out
    /// (its holder died) goes to the next to ask. For what one session holds against the
    /// sessions of every node (a POP3 maildrop, RFC 1939 §8). The embedded store is opened by
    /// one process, whose own locks decide: it grants every lock.
    async fn lock_take(&self, key: &str, holder: u64, seconds: u64) -> StoreResult<bool> {
        let _ = (key, holder, seconds);
        Ok(true)
    }
    /// Gives the lock up, if `holder` still has it.
    async fn lock_release(&self, key: &str, holder: u64) -> StoreResult<()> {
        let _ = (key, holder);
        Ok(())
    }
}

/// The outbound queue. Entries are made by [`MailStore::deliver`] (its `remote` recipients). A
/// worker claims due entries, which leases them to it (no other claim returns them until the
/// lease ends or the worker reports), attempts delivery and reports with `queue_update`. After
/// a crash an entry is due again once its lease ends, so delivery is at least once.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Up to `limit` entries with a pending recipient due at `now`, leased for `lease_seconds`.
    async fn queue_claim(&self, now: i64, limit: usize, lease_seconds: i64) -> StoreResult<Vec<QueueEntry>>;
    /// Extends the leases this claimer (this process) holds on `ids` to `now + lease_seconds`,
    /// while their attempts go on; a lease that ended and was taken by another is left alone.
    async fn queue_renew(&self, ids: Vec<QueueId>, now: i64, lease_seconds: i64) -> StoreResult<()>;
    /// Records the outcome of an attempt for some recipients (by index) and ends the lease.
    /// An entry whose recipients are all final is removed with its content. Returns the entry
    /// as it now stands (`None` once removed).
    async fn queue_update(
        &self,
        id: QueueId,
        updates: Vec<(usize, QueuedRecipient)>,
    ) -> StoreResult<Option<QueueEntry>>;
    async fn queue_get(&self, id: QueueId) -> StoreResult<Option<QueueEntry>>;
    async fn queue_list(&self) -> StoreResult<Vec<QueueEntry>>;
    /// Queued messages and when the oldest was queued (cheap: for metrics).
    async fn queue_stats(&self) -> StoreResult<QueueStats>;
    /// When the next claim can return something: the earliest due time of an unleased entry,
    /// or (for a backend whose leases outlive their holder) the end of a lease. `None`:
    /// nothing waits.
    async fn queue_next_due(&self) -> StoreResult<Option<i64>>;
    /// Makes the pending recipients of one entry (or of all) due now; returns how many entries.
    async fn queue_retry(&self, id: Option<QueueId>, now: i64) -> StoreResult<usize>;
    /// Drops an entry without delivering or bouncing it.
    async fn queue_remove(&self, id: QueueId) -> StoreResult<bool>;
}

/// What the content filters keep: the quarantine and the spam classifier's models.
#[async_trait]
pub trait FilterStore: Send + Sync + 'static {
    /// Holds a message in the quarantine; durable when it returns. The entry's `id` is
    /// assigned here (the one passed is ignored).
    async fn quarantine_put(&self, entry: QuarantineEntry, raw: Vec<u8>) -> StoreResult<u64>;
    async fn quarantine_list(&self) -> StoreResult<Vec<QuarantineEntry>>;
    async fn quarantine_get(&self, id: u64) -> StoreResult<Option<(QuarantineEntry, Vec<u8>)>>;
    async fn quarantine_remove(&self, id: u64) -> StoreResult<bool>;
    /// Delivers a quarantined message and removes it from the quarantine in one transaction,
    /// so it is released exactly once: `None` when it is no longer there.
    async fn quarantine_release(&self, id: u64, delivery: Delivery) -> StoreResult<Option<DeliveryReceipt>>;
    /// Removes entries that expired before `now`; returns how many.
    async fn quarantine_expire(&self, now: i64) -> StoreResult<usize>;
    /// The spam classifier's model of `owner` (empty if it never learnt).
    async fn spam_model(&self, owner: SpamModelOwner) -> StoreResult<SpamModelData>;
    /// Every model that learnt something, with how many spam and ham messages.
    async fn spam_models(&self) -> StoreResult<Vec<(SpamModelOwner, u64, u64)>>;
    /// The class a message (by content hash) was taught to `owner`'s model as, if it was.
    async fn spam_lesson(&self, owner: SpamModelOwner, message: BlobHash) -> StoreResult<Option<SpamClass>>;
    /// Writes a model change; durable when it returns.
    async fn spam_model_update(&self, update: SpamModelUpdate) -> StoreResult<()>;
}

/// The accounts' Sieve scripts (RFC 5804's model): named scripts per account, at most one of
/// them active. Every change is reported as [`StoreChange::Account`] so that nodes drop their
/// compiled copies. An account's scripts go with the account.
#[async_trait]
pub trait ScriptStore: Send + Sync + 'static {
    /// The account's scripts by name.
    async fn sieve_list(&self, account: AccountId) -> StoreResult<Vec<SieveScriptInfo>>;
    async fn sieve_get(&self, account: AccountId, name: &str) -> StoreResult<Option<String>>;
    /// The active script: its name and source.
    async fn sieve_active(&self, account: AccountId) -> StoreResult<Option<(String, String)>>;
    /// Creates or replaces a script (an active one stays active). `NotFound` for an
    /// unknown account.
    async fn sieve_put(&self, account: AccountId, name: &str, source: &str) -> StoreResult<()>;
    /// Makes `name` the active script (`None`: none is). `NotFound` when there is no such
    /// script.
    async fn sieve_activate(&self, account: AccountId, name: Option<&str>) -> StoreResult<()>;
    /// `NotFound` when missing; `Active` when it is the active one (RFC 5804 §2.10: the
    /// active script cannot be deleted).
    async fn sieve_delete(&self, account: AccountId, name: &str) -> StoreResult<()>;
    /// Renames a script, keeping whether it is active. `NotFound`, or `Exists` for the new name.
    async fn sieve_rename(&self, account: AccountId, from: &str, to: &str) -> StoreResult<()>;
    /// Whether `id` (a duplicate id of RFC 7352, a vacation reply's sender and handle of
    /// RFC 5230) was remembered for the account and has not expired at `now`.
    async fn sieve_seen(&self, account: AccountId, id: &str, now: i64) -> StoreResult<bool>;
    /// Remembers ids until their expiry (unix seconds), replacing an earlier expiry. Expired
    /// records are dropped by the backend in its own time.
    async fn sieve_remember(&self, account: AccountId, ids: Vec<(String, i64)>) -> StoreResult<()>;
}

/// Committed changes, for IMAP IDLE, the queue's wake-up and the caches.
pub trait ChangeFeed: Send + Sync + 'static {
    /// Changes as they are committed, for IMAP IDLE and friends.
    fn subscribe(&self) -> broadcast::Receiver<StoreChange>;
    /// Registers a function called with every committed change before the caller that made
    /// it is answered, so a session that sees the answer also sees the change. It must be
    /// quick and must not block.
    fn on_change(&self, hook: ChangeHook);
    /// Sends one line (no line breaks) to the other nodes of a cluster: state that is shared
    /// but not stored, such as the guard's counts of failed logins. Not durable; a store of one
    /// node drops it.
    fn cluster_send(&self, _line: String) {}
    /// The lines the other nodes send; `None` for a store of one node.
    fn cluster_messages(&self) -> Option<broadcast::Receiver<String>> {
        None
    }
}

/// Persistent state of a Tern server: every part, and the operations on the whole.
#[async_trait]
pub trait Store: DirectoryStore + MailStore + QueueStore + FilterStore + ScriptStore + ChangeFeed {
    /// Writes a consistent copy of everything stored (one point in time) into `dir`, made
    /// when missing, while the store stays in use. Durable on return.
    async fn backup(&self, dir: std::path::PathBuf) -> StoreResult<BackupSummary>;
    /// Whether the store can take writes (false after an I/O failure poisoned it).
    fn is_healthy(&self) -> bool;
    /// The secret every node of a cluster shares (made on first use), keying values that must
    /// be the same whichever node answers, such as the made-up SCRAM salts of unknown users.
    /// `None` for a store of one node: the server keeps its secret in its data directory.
    async fn cluster_secret(&self) -> StoreResult<Option<[u8; 32]>> {
        Ok(None)
    }
    /// Flushes and stops the writer; later writes fail.
    async fn shutdown(&self) -> StoreResult<()>;
}

/// Every store trait, for callers that use a `dyn Store` (trait methods need their trait in scope).
pub mod prelude {
    pub use crate::{ChangeFeed, DirectoryStore, FilterStore, MailStore, QueueStore, ScriptStore, Store};
}
