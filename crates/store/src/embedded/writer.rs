//! The single writer of the embedded store.
//!
//! Every mutation is sent here and applied in arrival order, each as its own atomic fjall
//! batch; then one fsync covers every batch of the group and all callers are answered
//! (group commit). One writer means UID and id allocation need no locks, and a caller's reply
//! always means "on disk".

use super::Engine;
use super::blobfile;
use super::keys::{self, counter};
use crate::codec::*;
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::{Identifier, Rights};
use fjall::{OwnedWriteBatch, PersistMode};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot};

/// The most requests applied before one fsync.
const MAX_GROUP: usize = 512;
/// References looked at when threading a message.
const MAX_THREAD_REFS: usize = 64;

pub(crate) enum Op {
    DomainPut(Domain),
    DomainRemove(String),
    AccountCreate(NewAccount, Vec<NewMailbox>),
    AccountUpdate(Account),
    AccountRemove(AccountId),
    AliasPut(Alias),
    AliasRemove(String),
    ApiTokenPut(ApiToken),
    ApiTokenRemove(String),
    WebSessionPut(Box<WebSession>),
    WebSessionRemove(WebSessionsToRemove),
    MailboxCreate(AccountId, NewMailbox),
    Deliver(Box<Delivery>),
    AppendBatch(Box<AppendBatch>),
    SetAcl(MailboxId, Identifier, Option<Rights>),
    MetadataSet(MetadataScope, Vec<(String, Option<Vec<u8>>)>),
    SeenPrivate {
        mailbox: MailboxId,
        user: AccountId,
        uids: Vec<u32>,
        seen: bool,
        unchanged_since: Option<u64>,
    },
    Expunge(MailboxId, Vec<u32>),
    SetFlags {
        mailbox: MailboxId,
        uids: Vec<u32>,
        mode: FlagMode,
        flags: Flags,
        keywords: Vec<String>,
        unchanged_since: Option<u64>,
    },
    Copy {
        from: MailboxId,
        uids: Vec<u32>,
        to: MailboxId,
        remove_source: bool,
    },
    MailboxRename {
        account: AccountId,
        from: String,
        to: String,
    },
    MailboxDelete {
        account: AccountId,
        name: String,
    },
    MailboxSubscribe {
        account: AccountId,
        name: String,
        subscribed: bool,
    },
    ClaimRecent(MailboxId),
    /// Attempt results for some recipients of a queue entry.
    QueueUpdate(QueueId, Vec<(usize, QueuedRecipient)>),
    /// Makes pending recipients due now (one entry, or all).
    QueueRetry(Option<QueueId>, i64),
    QueueRemove(QueueId),
    /// Summaries derived again in the current version.
    PutSummaries(Vec<(BlobHash, Vec<u8>)>),
    /// The full-text indexer committed these: (pending contents indexed, removals applied).
    FtsDone {
        indexed: Vec<super::fts::Taken>,
        scan_only: Vec<super::fts::Taken>,
        removed: Vec<BlobHash>,
    },
    SpamModelUpdate(Box<SpamModelUpdate>),
    QuarantinePut(Box<QuarantineEntry>, Vec<u8>),
    QuarantineRemove(u64),
    /// Deliver and remove from the quarantine in one batch.
    QuarantineRelease(u64, Box<Delivery>),
    Sieve(AccountId, SieveOp),
    Shutdown,
}

/// A remembered Sieve id's expiry (unix seconds; a damaged value counts as expired).
pub(crate) fn read_expiry(value: &[u8]) -> i64 {
    value.try_into().map(i64::from_be_bytes).unwrap_or(i64::MIN)
}

/// A change to an account's Sieve scripts (see [`crate::ScriptStore`]).
pub(crate) enum SieveOp {
    Put(String, String),
    Activate(Option<String>),
    Delete(String),
    Rename(String, String),
    /// Ids to remember with their expiry (not a change of the scripts).
    Remember(Vec<(String, i64)>),
}

pub(crate) enum OpResult {
    Unit,
    Bool(bool),
    Account(Account),
    Mailbox(Mailbox),
    Receipt(DeliveryReceipt),
    Appended(AppendReceipt),
    Uids(Vec<u32>),
    Flags(FlagUpdate),
    PrivateSeen(PrivateSeenUpdate),
    Copied(CopyResult),
    Recent(std::ops::Range<u32>),
    Queue(Option<Box<QueueEntry>>),
    Count(usize),
    Id(u64),
}

pub(crate) struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<StoreResult<OpResult>>,
}

struct Counters {
    account: u64,
    mailbox: u64,
    email: u64,
    delivery: u64,
    uidvalidity: u64,
    queue: u64,
    quarantine: u64,
}

pub(crate) struct Writer {
    engine: Arc<Engine>,
    counters: Counters,
    /// Changes to the in-memory due index of the queue, applied once their batch is durable:
    /// (insert?, due, id).
    due_changes: Vec<(bool, i64, QueueId)>,
    /// Content files whose last reference went in this group: removed once it is durable,
    /// unless a later operation of the group referenced the content again.
    files_to_remove: Vec<BlobHash>,
    changes: broadcast::Sender<StoreChange>,
    hooks: Arc<std::sync::RwLock<Vec<crate::ChangeHook>>>,
    healthy: Arc<AtomicBool>,
}

impl Writer {
    pub fn new(
        engine: Arc<Engine>,
        changes: broadcast::Sender<StoreChange>,
        hooks: Arc<std::sync::RwLock<Vec<crate::ChangeHook>>>,
        healthy: Arc<AtomicBool>,
    ) -> StoreResult<Writer> {
        let read = |name: &str| -> StoreResult<u64> {
            Ok(engine.meta.get(name)?.as_deref().and_then(keys::read_u64).unwrap_or(0))
        };
        let counters = Counters {
            account: read(counter::ACCOUNT)?,
            mailbox: read(counter::MAILBOX)?,
            email: read(counter::EMAIL)?,
            delivery: read(counter::DELIVERY)?,
            uidvalidity: read(counter::UIDVALIDITY)?,
            queue: read(counter::QUEUE)?,
            quarantine: read(counter::QUARANTINE)?,
        };
        Ok(Writer { engine, counters, due_changes: Vec::new(), files_to_remove: Vec::new(), changes, hooks, healthy })
    }

    /// Runs until a Shutdown request or until every sender is gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut group: Vec<Request> = Vec::with_capacity(MAX_GROUP);
        let mut replies = Vec::with_capacity(MAX_GROUP);
        let mut changes = Vec::new();
        loop {
            let Some(first) = rx.blocking_recv() else { break };
            group.push(first);
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            let seqno_before = self.engine.db.seqno();
            let mut shutdown = false;
            let size = group.len();
            for req in group.drain(..) {
                if matches!(req.op, Op::Shutdown) {
                    shutdown = true;
                    replies.push((req.reply, Ok(OpResult::Unit)));
                    continue;
                }
                let mark = self.due_changes.len();
                let result = self.apply(req.op, &mut changes);
                if let Err(e) = &result {
                    tracing::warn!(error = %e, "store operation failed");
                    self.due_changes.truncate(mark);
                }
                replies.push((req.reply, result));
            }
            // One fsync for the whole group: nothing is acknowledged before it returns. A group
            // that wrote nothing (reads of the writer's state, refused operations) needs none.
            let wrote = self.engine.db.seqno() != seqno_before;
            let applied = started.elapsed();
            let persisted = if wrote { self.engine.db.persist(PersistMode::SyncAll) } else { Ok(()) };
            let total = started.elapsed();
            metrics::histogram!("tern_store_commit_seconds").record(total.as_secs_f64());
            if wrote {
                metrics::histogram!("tern_store_fsync_seconds").record((total - applied).as_secs_f64());
            }
            metrics::histogram!("tern_store_commit_group_size").record(size as f64);
            match &persisted {
                Ok(()) => {
                    // A running backup may still copy them: they go after it (checked again
                    // then, in case the content came back meanwhile).
                    if self.engine.backups_running.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                        for hash in self.files_to_remove.drain(..) {
                            if !self.engine.blob_refs.contains_key(hash.0).unwrap_or(true) {
                                blobfile::remove(&self.engine.blob_dir, &hash);
                            }
                        }
                    }
                    if !self.due_changes.is_empty() {
                        let mut due = self.engine.due.lock().unwrap_or_else(|p| p.into_inner());
                        for (insert, at, id) in self.due_changes.drain(..) {
                            if insert {
                                due.insert((at, id));
                            } else {
                                due.remove(&(at, id));
                            }
                        }
                    }
                    let hooks = self.hooks.read().unwrap_or_else(|p| p.into_inner());
                    for c in changes.drain(..) {
                        for hook in hooks.iter() {
                            hook(&c);
                        }
                        let _ = self.changes.send(c);
                    }
                }
                Err(e) => {
                    self.due_changes.clear();
                    self.files_to_remove.clear();
                    tracing::error!(error = %e, "store fsync failed; the store refuses further writes");
                    self.healthy.store(false, Ordering::SeqCst);
                    changes.clear();
                }
            }
            for (reply, result) in replies.drain(..) {
                let result = match (&persisted, result) {
                    (Err(e), Ok(_)) => Err(StoreError::Task(format!("fsync failed: {e}"))),
                    (_, r) => r,
                };
                let _ = reply.send(result);
            }
            if shutdown {
                break;
            }
        }
        if let Err(e) = self.engine.db.persist(PersistMode::SyncAll) {
            tracing::error!(error = %e, "final store flush failed");
        }
    }

    fn apply(&mut self, op: Op, changes: &mut Vec<StoreChange>) -> StoreResult<OpResult> {
        match op {
            Op::DomainPut(d) => {
                self.engine.domains.insert(d.name.as_bytes(), to_json(&d)?)?;
                changes.push(StoreChange::Directory);
                Ok(OpResult::Unit)
            }
            Op::DomainRemove(name) => {
                let existed = self.engine.domains.contains_key(name.as_bytes())?;
                if existed {
                    self.engine.domains.remove(name.as_bytes())?;
                    changes.push(StoreChange::Directory);
                }
                Ok(OpResult::Bool(existed))
            }
            Op::AccountCreate(new, mailboxes) => self.account_create(new, mailboxes, changes).map(OpResult::Account),
            Op::AccountUpdate(account) => {
                let stored = self
                    .engine
                    .account(account.id)?
                    .ok_or_else(|| StoreError::NotFound(format!("account {}", account.id)))?;
                if stored.address != account.address {
                    return Err(StoreError::corrupt("account update", "the address of an account cannot change"));
                }
                self.engine.accounts.insert(keys::u64_key(account.id), to_json(&account)?)?;
                changes.push(StoreChange::Directory);
                Ok(OpResult::Unit)
            }
            Op::AccountRemove(id) => self.account_remove(id, changes).map(OpResult::Bool),
            Op::AliasPut(alias) => {
                self.engine.aliases.insert(alias.address.as_bytes(), to_json(&alias)?)?;
                changes.push(StoreChange::Directory);
                Ok(OpResult::Unit)
            }
            Op::ApiTokenPut(token) => {
                self.engine.api_tokens.insert(token.name.as_bytes(), to_json(&token)?)?;
                changes.push(StoreChange::Directory);
                Ok(OpResult::Unit)
            }
            Op::ApiTokenRemove(name) => {
                let existed = self.engine.api_tokens.contains_key(name.as_bytes())?;
                if existed {
                    self.engine.api_tokens.remove(name.as_bytes())?;
                    changes.push(StoreChange::Directory);
                }
                Ok(OpResult::Bool(existed))
            }
            // Sessions are no directory change: no event, no cache emptied.
            Op::WebSessionPut(session) => {
                self.engine.web_sessions.insert(session.key.as_bytes(), to_json(&*session)?)?;
                Ok(OpResult::Unit)
            }
            Op::WebSessionRemove(which) => {
                let sessions = &self.engine.web_sessions;
                let mut keys = Vec::new();
                if let WebSessionsToRemove::One(key) = &which {
                    if sessions.contains_key(key.as_bytes())? {
                        keys.push(key.as_bytes().to_vec());
                    }
                } else {
                    // Few: one pass over all of them.
                    for item in sessions.iter() {
                        let (key, value) = item.into_inner()?;
                        let session: WebSession = from_json("web session", &value)?;
                        let goes = match &which {
                            WebSessionsToRemove::OfAccount { account, except } => {
                                session.account == *account && except.as_deref() != Some(session.key.as_str())
                            }
                            WebSessionsToRemove::ExpiredAt(now) => session.expires <= *now,
                            WebSessionsToRemove::One(_) => false,
                        };
                        if goes {
                            keys.push(key.to_vec());
                        }
                    }
                }
                for key in &keys {
                    self.engine.web_sessions.remove(key.as_slice())?;
                }
                Ok(OpResult::Count(keys.len()))
            }
            Op::AliasRemove(address) => {
                let existed = self.engine.aliases.contains_key(address.as_bytes())?;
                if existed {
                    self.engine.aliases.remove(address.as_bytes())?;
                    changes.push(StoreChange::Directory);
                }
                Ok(OpResult::Bool(existed))
            }
            Op::MailboxCreate(account, new) => {
                if self.engine.account(account)?.is_none() {
                    return Err(StoreError::NotFound(format!("account {account}")));
                }
                let mut batch = self.engine.db.batch();
                // RFC 9051 §6.3.4: create the superiors a hierarchical name needs.
                self.create_parents(&mut batch, account, &new.name, &mut HashSet::new())?;
                let mailbox = self.mailbox_create(&mut batch, account, new)?;
                self.save_counters(&mut batch);
                batch.commit()?;
                changes.push(StoreChange::Account { account });
                Ok(OpResult::Mailbox(mailbox))
            }
            Op::Deliver(d) => self.deliver(*d, None, changes).map(OpResult::Receipt),
            Op::AppendBatch(b) => self.append_batch(*b, changes).map(OpResult::Appended),
            Op::MetadataSet(scope, entries) => self.metadata_set(scope, entries, changes).map(|_| OpResult::Unit),
            Op::SeenPrivate { mailbox, user, uids, seen, unchanged_since } => {
                self.seen_private_set(mailbox, user, uids, seen, unchanged_since, changes).map(OpResult::PrivateSeen)
            }
            Op::SetAcl(id, identifier, rights) => {
                let e = Arc::clone(&self.engine);
                let mut mailbox = e.mailbox(id)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {id}")))?;
                if !crate::acl::set_entry(&mut mailbox.acl, identifier.clone(), rights) {
                    return Err(StoreError::Limit(format!("at most {} ACL entries", crate::acl::MAX_ACL_ENTRIES)));
                }
                let mut batch = e.db.batch();
                batch.insert(&e.mailboxes, keys::u64_key(id).to_vec(), to_json(&mailbox)?);
                let key = keys::acl_key(&identifier.to_string(), id);
                if mailbox.acl.iter().any(|a| a.identifier == identifier) {
                    batch.insert(&e.acl, key, Vec::new());
                } else {
                    batch.remove(&e.acl, key);
                }
                batch.commit()?;
                // Sessions that have it selected look at their rights again.
                changes.push(StoreChange::Account { account: mailbox.account });
                changes.push(StoreChange::Mailbox { account: mailbox.account, mailbox: id });
                Ok(OpResult::Mailbox(mailbox))
            }
            Op::QuarantinePut(entry, raw) => {
                let mut entry = *entry;
                self.counters.quarantine += 1;
                entry.id = self.counters.quarantine;
                let mut batch = self.engine.db.batch();
                batch.insert(&self.engine.quarantine, keys::quarantine_key(entry.id, b'm').to_vec(), raw);
                batch.insert(&self.engine.quarantine, keys::quarantine_key(entry.id, b'e').to_vec(), to_json(&entry)?);
                self.save_counters(&mut batch);
                batch.commit()?;
                Ok(OpResult::Id(entry.id))
            }
            Op::Sieve(account, op) => {
                let remember = matches!(op, SieveOp::Remember(_));
                self.sieve(account, op)?;
                if !remember {
                    changes.push(StoreChange::Account { account });
                }
                Ok(OpResult::Unit)
            }
            Op::QuarantineRemove(id) => {
                let existed = self.engine.quarantine.get(keys::quarantine_key(id, b'e'))?.is_some();
                if existed {
                    let mut batch = self.engine.db.batch();
                    batch.remove(&self.engine.quarantine, keys::quarantine_key(id, b'e').to_vec());
                    batch.remove(&self.engine.quarantine, keys::quarantine_key(id, b'm').to_vec());
                    batch.commit()?;
                }
                Ok(OpResult::Bool(existed))
            }
            Op::QuarantineRelease(id, d) => {
                if self.engine.quarantine.get(keys::quarantine_key(id, b'e'))?.is_none() {
                    return Ok(OpResult::Bool(false));
                }
                self.deliver(*d, Some(id), changes).map(OpResult::Receipt)
            }
            Op::QueueUpdate(id, updates) => self.queue_update(id, updates).map(|e| OpResult::Queue(e.map(Box::new))),
            Op::QueueRetry(id, now) => self.queue_retry(id, now, changes).map(OpResult::Count),
            Op::QueueRemove(id) => self.queue_remove(id).map(OpResult::Bool),
            Op::Expunge(mailbox, uids) => self.expunge(mailbox, uids, changes).map(OpResult::Uids),
            Op::SetFlags { mailbox, uids, mode, flags, keywords, unchanged_since } => {
                self.set_flags(mailbox, uids, mode, flags, keywords, unchanged_since, changes).map(OpResult::Flags)
            }
            Op::Copy { from, uids, to, remove_source } => {
                self.copy(from, uids, to, remove_source, changes).map(OpResult::Copied)
            }
            Op::MailboxRename { account, from, to } => {
                self.mailbox_rename(account, &from, &to, changes).map(|_| OpResult::Unit)
            }
            Op::MailboxDelete { account, name } => self.mailbox_delete(account, &name, changes).map(|_| OpResult::Unit),
            Op::MailboxSubscribe { account, name, subscribed } => {
                match self.mailbox_named(account, &name) {
                    Ok(mut mailbox) => {
                        mailbox.subscribed = subscribed;
                        self.engine.mailboxes.insert(keys::u64_key(mailbox.id), to_json(&mailbox)?)?;
                    }
                    Err(StoreError::NotFound(_)) => {
                        let key = keys::mailbox_name_key(account, &name);
                        if subscribed {
                            self.engine.subscriptions.insert(key, Vec::new())?;
                        } else {
                            self.engine.subscriptions.remove(key)?;
                        }
                    }
                    Err(e) => return Err(e),
                }
                changes.push(StoreChange::Account { account });
                Ok(OpResult::Unit)
            }
            Op::SpamModelUpdate(update) => {
                let owner = update.owner;
                let mut totals = [0u8; 16];
                totals[..8].copy_from_slice(&update.spam_learned.to_be_bytes());
                totals[8..].copy_from_slice(&update.ham_learned.to_be_bytes());
                self.engine.spam.insert(keys::spam_key(owner, b'n', &[]), totals)?;
                let mut listed = vec![b'T'];
                listed.extend_from_slice(&keys::spam_owner_key(owner));
                self.engine.spam.insert(listed, totals)?;
                for (hash, spam, ham) in &update.features {
                    let key = keys::spam_key(owner, b'f', &hash.to_be_bytes());
                    if *spam == 0 && *ham == 0 {
                        self.engine.spam.remove(key)?;
                    } else {
                        let mut value = [0u8; 8];
                        value[..4].copy_from_slice(&spam.to_be_bytes());
                        value[4..].copy_from_slice(&ham.to_be_bytes());
                        self.engine.spam.insert(key, value)?;
                    }
                }
                if let Some((message, class)) = update.lesson {
                    let class = match class {
                        SpamClass::Spam => b"s",
                        SpamClass::Ham => b"h",
                    };
                    self.engine.spam.insert(keys::spam_key(owner, b'l', &message.0), class)?;
                }
                Ok(OpResult::Unit)
            }
            Op::ClaimRecent(id) => {
                let mut mailbox =
                    self.engine.mailbox(id)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {id}")))?;
                let first = mailbox.recent_uid.max(1);
                if mailbox.recent_uid != mailbox.uid_next {
                    mailbox.recent_uid = mailbox.uid_next;
                    self.engine.mailboxes.insert(keys::u64_key(id), to_json(&mailbox)?)?;
                }
                Ok(OpResult::Recent(first..mailbox.uid_next.max(first)))
            }
            Op::PutSummaries(list) => {
                let e = &self.engine;
                let mut batch = e.db.batch();
                for (hash, bytes) in list {
                    // Only for contents that still exist.
                    if e.blob_refs.contains_key(hash.0)? {
                        batch.insert(&e.summaries, hash.0.to_vec(), bytes);
                    }
                }
                batch.commit()?;
                Ok(OpResult::Unit)
            }
            Op::FtsDone { indexed, scan_only, removed } => {
                let e = &self.engine;
                let (indexed, scan_only) = e.fts_queue().done(&indexed, &scan_only, &removed);
                let mut batch = e.db.batch();
                for h in indexed {
                    batch.remove(&e.fts_pending, h.0.to_vec());
                }
                for h in scan_only {
                    batch.insert(&e.fts_pending, h.0.to_vec(), super::fts::SCAN_ONLY.to_vec());
                }
                for h in removed {
                    batch.remove(&e.fts_removed, h.0.to_vec());
                }
                batch.commit()?;
                Ok(OpResult::Unit)
            }
            Op::Shutdown => Ok(OpResult::Unit),
        }
    }

    fn save_counters(&self, batch: &mut OwnedWriteBatch) {
        let c = &self.counters;
        for (name, value) in [
            (counter::ACCOUNT, c.account),
            (counter::MAILBOX, c.mailbox),
            (counter::EMAIL, c.email),
            (counter::DELIVERY, c.delivery),
            (counter::UIDVALIDITY, c.uidvalidity),
            (counter::QUEUE, c.queue),
            (counter::QUARANTINE, c.quarantine),
        ] {
            batch.insert(&self.engine.meta, name, keys::u64_key(value).to_vec());
        }
    }

    fn account_create(
        &mut self,
        new: NewAccount,
        mailboxes: Vec<NewMailbox>,
        changes: &mut Vec<StoreChange>,
    ) -> StoreResult<Account> {
        let e = Arc::clone(&self.engine);
        if e.account_names.contains_key(new.address.as_bytes())? {
            return Err(StoreError::Exists(format!("account {}", new.address)));
        }
        self.counters.account += 1;
        let account = Account {
            id: self.counters.account,
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
        let mut batch = e.db.batch();
        batch.insert(&e.accounts, keys::u64_key(account.id).to_vec(), to_json(&account)?);
        batch.insert(&e.account_names, account.address.as_bytes().to_vec(), keys::u64_key(account.id).to_vec());
        let mut names = HashSet::new();
        for m in mailboxes {
            if names.insert(m.name.clone()) {
                self.mailbox_create(&mut batch, account.id, m)?;
            }
        }
        self.save_counters(&mut batch);
        batch.commit()?;
        changes.push(StoreChange::Directory);
        Ok(account)
    }

    /// Adds a mailbox to `batch` (the caller commits).
    fn mailbox_create(
        &mut self,
        batch: &mut OwnedWriteBatch,
        account: AccountId,
        new: NewMailbox,
    ) -> StoreResult<Mailbox> {
        let e = &self.engine;
        let name_key = keys::mailbox_name_key(account, &new.name);
        if e.mailbox_names.contains_key(&name_key)? {
            return Err(StoreError::Exists(format!("mailbox {}", new.name)));
        }
        self.counters.mailbox += 1;
        // UIDVALIDITY: strictly increasing across all mailboxes ever created, starting from
        // the clock, so a mailbox re-created under an old name never reuses a value.
        self.counters.uidvalidity = (self.counters.uidvalidity + 1).max(now_unix().clamp(1, u32::MAX as i64) as u64);
        if self.counters.uidvalidity > u32::MAX as u64 {
            self.counters.uidvalidity = 1;
        }
        // A subscription that outlived an earlier mailbox of this name applies again.
        let subscribed = new.subscribed || e.subscriptions.contains_key(&name_key)?;
        batch.remove(&e.subscriptions, name_key.clone());
        let mailbox = Mailbox {
            id: self.counters.mailbox,
            account,
            name: new.name,
            special_use: new.special_use,
            subscribed,
            uid_validity: self.counters.uidvalidity as u32,
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
        batch.insert(&e.mailboxes, keys::u64_key(mailbox.id).to_vec(), to_json(&mailbox)?);
        batch.insert(&e.mailbox_names, name_key, keys::u64_key(mailbox.id).to_vec());
        Ok(mailbox)
    }

    fn resolve_mailbox(&self, account: AccountId, selector: &MailboxSelector) -> StoreResult<Option<MailboxId>> {
        let e = &self.engine;
        let by_name = |name: &str| -> StoreResult<Option<MailboxId>> {
            Ok(e.mailbox_names.get(keys::mailbox_name_key(account, name))?.as_deref().and_then(keys::read_u64))
        };
        let found = match selector {
            MailboxSelector::Inbox => None,
            MailboxSelector::Name(name) => by_name(name)?,
            MailboxSelector::Posted(name) => match by_name(name)? {
                Some(id) => e.mailbox(id)?.filter(crate::acl::anyone_may_post).map(|m| m.id),
                None => None,
            },
            MailboxSelector::Id(id) => e.mailbox(*id)?.filter(|m| m.account == account).map(|m| m.id),
            MailboxSelector::SpecialUse(use_) => {
                e.account_mailboxes(account)?.into_iter().find(|m| m.special_use == Some(*use_)).map(|m| m.id)
            }
        };
        match found {
            Some(id) => Ok(Some(id)),
            None => by_name(INBOX),
        }
    }

    fn thread_for(
        &self,
        batch: &mut OwnedWriteBatch,
        cache: &mut HashMap<(AccountId, String), u64>,
        account: AccountId,
        summary: &tern_mime::MessageSummary,
        email_id: u64,
    ) -> StoreResult<u64> {
        let e = &self.engine;
        let related: Vec<&String> =
            summary.references.iter().chain(summary.in_reply_to.iter()).take(MAX_THREAD_REFS).collect();
        let mut found = None;
        for id in &related {
            if let Some(t) = cache.get(&(account, (*id).clone())) {
                found = Some(*t);
                break;
            }
            if let Some(t) = e.threads.get(keys::thread_key(account, id))?.as_deref().and_then(keys::read_u64) {
                found = Some(t);
                break;
            }
        }
        let thread = found.unwrap_or(email_id);
        for id in summary.message_id.iter().chain(related.iter().copied()) {
            if cache.contains_key(&(account, id.clone())) || e.threads.contains_key(keys::thread_key(account, id))? {
                continue;
            }
            batch.insert(&e.threads, keys::thread_key(account, id).to_vec(), keys::u64_key(thread).to_vec());
            cache.insert((account, id.clone()), thread);
        }
        Ok(thread)
    }

    /// Stores a delivery; with `release`, also removes that quarantine entry in the same batch.
    fn deliver(
        &mut self,
        d: Delivery,
        release: Option<u64>,
        changes: &mut Vec<StoreChange>,
    ) -> StoreResult<DeliveryReceipt> {
        let e = Arc::clone(&self.engine);
        let mut batch = e.db.batch();
        if let Some(id) = release {
            batch.remove(&e.quarantine, keys::quarantine_key(id, b'e').to_vec());
            batch.remove(&e.quarantine, keys::quarantine_key(id, b'm').to_vec());
        }
        self.counters.delivery += 1;
        let delivery_id = self.counters.delivery;
        let size = d.raw.len() as u64;
        let mut mailboxes: HashMap<MailboxId, Mailbox> = HashMap::new();
        let mut threads = HashMap::new();
        let mut copies = Vec::new();
        let mut skipped = Vec::new();
        let mut over_quota = Vec::new();
        // (limit, bytes used) of the accounts with a quota, this delivery's copies included.
        let mut quotas: HashMap<AccountId, (u64, u64)> = HashMap::new();
        for target in &d.targets {
            let Some(mailbox_id) = self.resolve_mailbox(target.account, &target.mailbox)? else {
                skipped.push(target.account);
                continue;
            };
            if mailboxes.contains_key(&mailbox_id) {
                continue; // one copy per mailbox, however many recipients lead there
            }
            let Some(mut mailbox) = e.mailbox(mailbox_id)? else {
                skipped.push(target.account);
                continue;
            };
            if let Some(limit) = self.quota_of(target.account, &mut quotas)? {
                if limit.1 + size > limit.0 {
                    if !over_quota.contains(&target.account) {
                        over_quota.push(target.account);
                    }
                    continue;
                }
                quotas.insert(target.account, (limit.0, limit.1 + size));
            }
            let mut entry = mailbox.add_delivered(&d, target, delivery_id)?;
            let uid = entry.uid;
            self.counters.email += 1;
            entry.email_id = self.counters.email;
            entry.thread_id = self.thread_for(&mut batch, &mut threads, target.account, &d.summary, entry.email_id)?;
            batch.insert(&e.messages, keys::message_key(mailbox_id, uid).to_vec(), encode_message(&entry)?);
            batch.insert(&e.changes, keys::modseq_key(mailbox_id, entry.modseq, uid).to_vec(), Vec::new());
            copies.push(StoredCopy { account: target.account, mailbox: mailbox_id, uid });
            mailboxes.insert(mailbox_id, mailbox);
        }
        let queued = if d.remote.is_empty() {
            None
        } else {
            self.counters.queue += 1;
            let id = self.counters.queue;
            let entry = QueueEntry::for_delivery(id, &d);
            batch.insert(&e.queue, keys::u64_key(id).to_vec(), to_json(&entry)?);
            batch.insert(&e.queue_due, keys::due_key(d.envelope.received_at, id).to_vec(), Vec::new());
            self.due_changes.push((true, d.envelope.received_at, id));
            changes.push(StoreChange::Queue);
            Some(id)
        };
        // One reference per mailbox copy and one for the queue entry.
        let references = copies.len() as u32 + u32::from(queued.is_some());
        if references == 0 && d.raw.len() >= blobfile::FILE_THRESHOLD {
            // Every target was over quota or gone: the file written for it goes again.
            self.files_to_remove.push(d.hash);
        }
        if references > 0 {
            self.add_content_refs(&mut batch, &d, references, !copies.is_empty())?;
        }
        if !copies.is_empty() {
            batch.insert(&e.envelopes, keys::u64_key(delivery_id).to_vec(), to_json(&d.envelope)?);
        }
        for mailbox in mailboxes.values() {
            batch.insert(&e.mailboxes, keys::u64_key(mailbox.id).to_vec(), to_json(mailbox)?);
            changes.push(StoreChange::Mailbox { account: mailbox.account, mailbox: mailbox.id });
        }
        self.save_counters(&mut batch);
        batch.commit()?;
        Ok(DeliveryReceipt { delivery_id, content: d.hash, copies, skipped, over_quota, queued })
    }

    /// Stores the messages of `b` into one mailbox and expunges the one they replace, in one
    /// batch (see [`crate::MailStore::append_batch`]). Everything that can refuse is checked
    /// before anything is written.
    fn append_batch(&mut self, b: AppendBatch, changes: &mut Vec<StoreChange>) -> StoreResult<AppendReceipt> {
        let e = Arc::clone(&self.engine);
        let big: Vec<BlobHash> =
            b.messages.iter().filter(|d| d.raw.len() >= blobfile::FILE_THRESHOLD).map(|d| d.hash).collect();
        let checked = || -> StoreResult<(Mailbox, Option<Mailbox>)> {
            let mailbox =
                e.mailbox(b.mailbox)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {}", b.mailbox)))?;
            let source = match b.replaces {
                Some((m, _)) if m != b.mailbox => {
                    let source = e.mailbox(m)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {m}")))?;
                    if source.account != mailbox.account {
                        return Err(StoreError::NotFound(format!("mailbox {m}")));
                    }
                    Some(source)
                }
                _ => None,
            };
            let total: u64 = b.messages.iter().map(|d| d.raw.len() as u64).sum();
            if let Some((limit, used)) = self.quota_of(mailbox.account, &mut HashMap::new())?
                && used + total > limit
            {
                return Err(StoreError::OverQuota(format!("account {}", mailbox.account)));
            }
            Ok((mailbox, source))
        };
        let (mut mailbox, mut source) = match checked() {
            Ok(m) => m,
            Err(refused) => {
                // Content files written for it go again unless something else holds them.
                self.files_to_remove.extend(big);
                return Err(refused);
            }
        };
        let account = mailbox.account;
        let mut batch = e.db.batch();
        let mut threads = HashMap::new();
        // Per content: references added, and one message that has it.
        let mut added: HashMap<BlobHash, (u32, usize)> = HashMap::new();
        let mut uids = Vec::with_capacity(b.messages.len());
        for (i, d) in b.messages.iter().enumerate() {
            let target = d.targets.first().ok_or_else(|| StoreError::corrupt("append", "a message without target"))?;
            self.counters.delivery += 1;
            let delivery_id = self.counters.delivery;
            let mut entry = mailbox.add_delivered(d, target, delivery_id)?;
            self.counters.email += 1;
            entry.email_id = self.counters.email;
            entry.thread_id = self.thread_for(&mut batch, &mut threads, account, &d.summary, entry.email_id)?;
            batch.insert(&e.messages, keys::message_key(mailbox.id, entry.uid).to_vec(), encode_message(&entry)?);
            batch.insert(&e.changes, keys::modseq_key(mailbox.id, entry.modseq, entry.uid).to_vec(), Vec::new());
            batch.insert(&e.envelopes, keys::u64_key(delivery_id).to_vec(), to_json(&d.envelope)?);
            added.entry(d.hash).or_insert((0, i)).0 += 1;
            uids.push(entry.uid);
        }
        let mut released = HashMap::new();
        let mut replaced = false;
        if let Some((_, uid)) = b.replaces {
            let from = source.as_mut().unwrap_or(&mut mailbox);
            replaced = !self.remove_messages(&mut batch, from, &[uid], &mut released, true)?.is_empty();
        }
        // Net reference change per content (a replacement may have the same content).
        for (hash, (count, i)) in added {
            let removed = released.remove(&hash).unwrap_or(0);
            if count > removed {
                self.add_content_refs(&mut batch, &b.messages[i], count - removed, true)?;
            } else if removed > count {
                released.insert(hash, removed - count);
            }
        }
        self.release_blobs(&mut batch, released)?;
        for m in std::iter::once(&mailbox).chain(source.as_ref()) {
            batch.insert(&e.mailboxes, keys::u64_key(m.id).to_vec(), to_json(m)?);
        }
        self.save_counters(&mut batch);
        batch.commit()?;
        for m in std::iter::once(&mailbox).chain(source.as_ref()) {
            changes.push(StoreChange::Mailbox { account: m.account, mailbox: m.id });
        }
        Ok(AppendReceipt { uid_validity: mailbox.uid_validity, uids, replaced })
    }

    /// One user's private `\Seen` on messages of a mailbox: one new modseq for every record
    /// that changes.
    fn seen_private_set(
        &mut self,
        mailbox_id: MailboxId,
        user: AccountId,
        uids: Vec<u32>,
        seen: bool,
        unchanged_since: Option<u64>,
        changes: &mut Vec<StoreChange>,
    ) -> StoreResult<PrivateSeenUpdate> {
        let e = Arc::clone(&self.engine);
        let mut mailbox =
            e.mailbox(mailbox_id)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox_id}")))?;
        let mut result = PrivateSeenUpdate::default();
        let new_modseq = mailbox.highest_modseq + 1;
        let mut batch = e.db.batch();
        for uid in uids {
            let Some(bytes) = e.messages.get(keys::message_key(mailbox_id, uid))? else {
                result.missing.push(uid);
                continue;
            };
            let key = keys::private_seen_key(mailbox_id, user, Some(uid));
            let current = match e.private_seen.get(&key)? {
                Some(v) => keys::read_private_seen(&key, &v)
                    .ok_or_else(|| StoreError::corrupt("private seen", "malformed record"))?,
                None => PrivateSeen { uid, seen: false, modseq: 0 },
            };
            if let Some(since) = unchanged_since
                && decode_message(&bytes)?.modseq.max(current.modseq) > since
            {
                result.conflicts.push(uid);
                continue;
            }
            if current.seen == seen {
                continue;
            }
            batch.insert(&e.private_seen, key, keys::private_seen_value(seen, new_modseq));
            result.updated.push(PrivateSeen { uid, seen, modseq: new_modseq });
        }
        if !result.updated.is_empty() {
            mailbox.highest_modseq = new_modseq;
            batch.insert(&e.mailboxes, keys::u64_key(mailbox_id).to_vec(), to_json(&mailbox)?);
            batch.commit()?;
            changes.push(StoreChange::Mailbox { account: mailbox.account, mailbox: mailbox_id });
        }
        Ok(result)
    }

    /// Every annotation on these mailboxes: the shared ones and every user's private ones
    /// (RFC 5464 §3.2: they go with the mailbox). Private ones are keyed by their user first,
    /// so this is one pass over the annotations, which are few.
    fn drop_mailbox_metadata(&self, batch: &mut OwnedWriteBatch, mailboxes: &HashSet<MailboxId>) -> StoreResult<()> {
        if mailboxes.is_empty() {
            return Ok(());
        }
        let e = &self.engine;
        for item in e.metadata.iter() {
            let key = item.key()?;
            if key.get(8..).and_then(keys::read_u64).is_some_and(|mailbox| mailboxes.contains(&mailbox)) {
                batch.remove(&e.metadata, key.to_vec());
            }
        }
        Ok(())
    }

    /// Drops the private `\Seen` records of every reader of a mailbox: all of them, or those
    /// of `uids` (expunged). Only a shared mailbox (one with an ACL) has readers to look at.
    fn drop_private_seen(
        &self,
        batch: &mut OwnedWriteBatch,
        mailbox: &Mailbox,
        uids: Option<&[u32]>,
    ) -> StoreResult<()> {
        let e = &self.engine;
        if uids.is_some() && mailbox.acl.is_empty() {
            return Ok(());
        }
        let uids: Option<HashSet<u32>> = uids.map(|list| list.iter().copied().collect());
        for item in e.private_seen.prefix(mailbox.id.to_be_bytes()) {
            let key = item.key()?;
            let uid = key.get(16..20).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
            if uids.as_ref().is_none_or(|set| uid.is_some_and(|u| set.contains(&u))) {
                batch.remove(&e.private_seen, key.to_vec());
            }
        }
        Ok(())
    }

    /// RFC 5464 annotations of one scope, checked against the entry limit first.
    fn metadata_set(
        &mut self,
        scope: MetadataScope,
        entries: Vec<(String, Option<Vec<u8>>)>,
        changes: &mut Vec<StoreChange>,
    ) -> StoreResult<()> {
        let e = Arc::clone(&self.engine);
        let prefix = keys::metadata_key(scope.user, scope.mailbox, "");
        let mut names = std::collections::BTreeSet::new();
        for item in e.metadata.prefix(&prefix) {
            names.insert(item.key()?[prefix.len()..].to_vec());
        }
        let mut mailbox = match scope.mailbox {
            Some(id) => Some(e.mailbox(id)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {id}")))?),
            None => None,
        };
        let mut batch = e.db.batch();
        for (name, value) in &entries {
            let key = keys::metadata_key(scope.user, scope.mailbox, name);
            match value {
                Some(v) => {
                    names.insert(name.as_bytes().to_vec());
                    batch.insert(&e.metadata, key, v.clone());
                }
                None => {
                    names.remove(name.as_bytes());
                    batch.remove(&e.metadata, key);
                }
            }
        }
        if names.len() > METADATA_MAX_ENTRIES {
            return Err(StoreError::Limit(format!("at most {METADATA_MAX_ENTRIES} annotations")));
        }
        if let Some(m) = mailbox.as_mut() {
            // RFC 7162 §3.2: an annotation change is a change of the mailbox.
            m.highest_modseq += 1;
            batch.insert(&e.mailboxes, keys::u64_key(m.id).to_vec(), to_json(&*m)?);
        }
        batch.commit()?;
        if let Some(m) = mailbox {
            changes.push(StoreChange::Mailbox { account: m.account, mailbox: m.id });
        }
        Ok(())
    }

    /// Adds `references` to the content of `d`, storing it first when it is new; `in_mailbox`
    /// when a mailbox holds it (its summary is kept and it waits for the full-text index).
    fn add_content_refs(
        &mut self,
        batch: &mut OwnedWriteBatch,
        d: &Delivery,
        references: u32,
        in_mailbox: bool,
    ) -> StoreResult<()> {
        let e = Arc::clone(&self.engine);
        let size = d.raw.len() as u64;
        match e.blob_refs.get(d.hash.0)?.as_deref().and_then(keys::read_blob_ref) {
            Some(stored) if stored.count > 0 => {
                batch.insert(&e.blob_refs, d.hash.0.to_vec(), stored.with_count(stored.count + references).encode());
                // Contents first stored for the queue alone have no summary and are not
                // in the full-text index yet.
                if in_mailbox && !e.summaries.contains_key(d.hash.0)? {
                    batch.insert(&e.summaries, d.hash.0.to_vec(), encode_summary(&d.summary)?);
                    batch.insert(&e.fts_pending, d.hash.0.to_vec(), Vec::new());
                    batch.remove(&e.fts_removed, d.hash.0.to_vec());
                    e.fts_queue().add(d.hash);
                }
            }
            _ => {
                let in_file = d.raw.len() >= blobfile::FILE_THRESHOLD;
                if in_file {
                    // Written by the caller before it queued the delivery; again here only
                    // if the last reference of the same content was dropped (and its file
                    // removed) in between.
                    if !blobfile::present(&e.blob_dir, &d.hash, size) {
                        blobfile::write(&e.blob_dir, &d.hash, &d.raw)
                            .map_err(|e| StoreError::Backend(e.to_string()))?;
                    }
                    self.files_to_remove.retain(|h| *h != d.hash);
                } else {
                    for (i, chunk) in d.raw.chunks(keys::CHUNK_SIZE).enumerate() {
                        batch.insert(&e.blobs, keys::chunk_key(&d.hash, i as u32).to_vec(), chunk.to_vec());
                    }
                }
                let r = keys::BlobRef { count: references, size, in_file };
                batch.insert(&e.blob_refs, d.hash.0.to_vec(), r.encode());
                if in_mailbox {
                    batch.insert(&e.summaries, d.hash.0.to_vec(), encode_summary(&d.summary)?);
                    batch.insert(&e.fts_pending, d.hash.0.to_vec(), Vec::new());
                    batch.remove(&e.fts_removed, d.hash.0.to_vec());
                    e.fts_queue().add(d.hash);
                }
            }
        }
        Ok(())
    }

    /// (limit, bytes used) of an account with a quota, from `known` or the store (RFC 9208
    /// STORAGE: the sizes of the messages in all its mailboxes); `None` without a quota.
    fn quota_of(
        &self,
        account: AccountId,
        known: &mut HashMap<AccountId, (u64, u64)>,
    ) -> StoreResult<Option<(u64, u64)>> {
        if let Some(k) = known.get(&account) {
            return Ok(Some(*k));
        }
        let Some(limit) = self.engine.account(account)?.and_then(|a| a.quota_bytes) else { return Ok(None) };
        let used = self.engine.account_mailboxes(account)?.iter().map(|m| m.size).sum();
        known.insert(account, (limit, used));
        Ok(Some((limit, used)))
    }

    fn queue_entry(&self, id: QueueId) -> StoreResult<Option<QueueEntry>> {
        self.engine.queue.get(keys::u64_key(id))?.map(|v| from_json("queue entry", &v)).transpose()
    }

    /// Writes `entry` (and its due-index key) in place of `old`, or removes it and releases its
    /// content when every recipient is final.
    fn queue_store(&mut self, batch: &mut OwnedWriteBatch, old: &QueueEntry, entry: &QueueEntry) -> StoreResult<bool> {
        let e = Arc::clone(&self.engine);
        let id = entry.message.id;
        if let Some(at) = old.next_attempt() {
            batch.remove(&e.queue_due, keys::due_key(at, id).to_vec());
            self.due_changes.push((false, at, id));
        }
        match entry.next_attempt() {
            Some(at) => {
                batch.insert(&e.queue, keys::u64_key(id).to_vec(), to_json(entry)?);
                batch.insert(&e.queue_due, keys::due_key(at, id).to_vec(), Vec::new());
                self.due_changes.push((true, at, id));
                Ok(true)
            }
            None => {
                batch.remove(&e.queue, keys::u64_key(id).to_vec());
                self.release_blobs(batch, HashMap::from([(entry.message.blob, 1)]))?;
                Ok(false)
            }
        }
    }

    fn queue_update(&mut self, id: QueueId, updates: Vec<(usize, QueuedRecipient)>) -> StoreResult<Option<QueueEntry>> {
        let Some(old) = self.queue_entry(id)? else { return Ok(None) };
        let mut entry = old.clone();
        for (index, recipient) in updates {
            match entry.recipients.get_mut(index) {
                Some(slot) => *slot = recipient,
                None => return Err(StoreError::NotFound(format!("recipient {index} of queue entry {id}"))),
            }
        }
        let mut batch = self.engine.db.batch();
        let kept = self.queue_store(&mut batch, &old, &entry)?;
        batch.commit()?;
        Ok(kept.then_some(entry))
    }

    fn queue_retry(&mut self, id: Option<QueueId>, now: i64, changes: &mut Vec<StoreChange>) -> StoreResult<usize> {
        let entries: Vec<QueueEntry> = match id {
            Some(id) => self.queue_entry(id)?.into_iter().collect(),
            None => {
                let mut all = Vec::new();
                for item in self.engine.queue.iter() {
                    all.push(from_json("queue entry", &item.value()?)?);
                }
                all
            }
        };
        let mut batch = self.engine.db.batch();
        let mut n = 0;
        for old in entries {
            let mut entry = old.clone();
            for r in entry.recipients.iter_mut().filter(|r| !r.is_final()) {
                r.next_attempt = r.next_attempt.min(now);
            }
            if entry != old {
                self.queue_store(&mut batch, &old, &entry)?;
            }
            if entry.next_attempt().is_some() {
                n += 1;
            }
        }
        batch.commit()?;
        if n > 0 {
            changes.push(StoreChange::Queue);
        }
        Ok(n)
    }

    fn queue_remove(&mut self, id: QueueId) -> StoreResult<bool> {
        let Some(entry) = self.queue_entry(id)? else { return Ok(false) };
        let e = Arc::clone(&self.engine);
        let mut batch = e.db.batch();
        if let Some(at) = entry.next_attempt() {
            batch.remove(&e.queue_due, keys::due_key(at, id).to_vec());
            self.due_changes.push((false, at, id));
        }
        batch.remove(&e.queue, keys::u64_key(id).to_vec());
        self.release_blobs(&mut batch, HashMap::from([(entry.message.blob, 1)]))?;
        batch.commit()?;
        Ok(true)
    }

    /// Removes messages from a mailbox inside `batch`, adjusting counters; returns the removed
    /// entries. Blob references are collected into `released`.
    fn remove_messages(
        &self,
        batch: &mut OwnedWriteBatch,
        mailbox: &mut Mailbox,
        uids: &[u32],
        released: &mut HashMap<BlobHash, u32>,
        record_vanished: bool,
    ) -> StoreResult<Vec<u32>> {
        let e = &self.engine;
        let mut removed = Vec::new();
        if !uids.is_empty() {
            mailbox.highest_modseq += 1;
        }
        for &uid in uids {
            let key = keys::message_key(mailbox.id, uid);
            let Some(bytes) = e.messages.get(key)? else { continue };
            let entry = decode_message(&bytes)?;
            batch.remove(&e.messages, key.to_vec());
            batch.remove(&e.changes, keys::modseq_key(mailbox.id, entry.modseq, uid).to_vec());
            if record_vanished {
                batch.insert(
                    &e.expunged,
                    keys::modseq_key(mailbox.id, mailbox.highest_modseq, uid).to_vec(),
                    Vec::new(),
                );
            }
            mailbox.count_removed(entry.flags, entry.size);
            *released.entry(entry.blob).or_default() += 1;
            removed.push(uid);
        }
        self.drop_private_seen(batch, mailbox, Some(&removed))?;
        Ok(removed)
    }

    /// Drops references to contents, freeing those that reach zero.
    fn release_blobs(&mut self, batch: &mut OwnedWriteBatch, released: HashMap<BlobHash, u32>) -> StoreResult<()> {
        let e = Arc::clone(&self.engine);
        for (hash, n) in released {
            let Some(stored) = e.blob_refs.get(hash.0)?.as_deref().and_then(keys::read_blob_ref) else {
                tracing::warn!(blob = %hash, "released a message content with no reference count");
                continue;
            };
            if stored.count > n {
                batch.insert(&e.blob_refs, hash.0.to_vec(), stored.with_count(stored.count - n).encode());
            } else {
                if stored.in_file {
                    // Removed once this transaction is durable (see `run`).
                    self.files_to_remove.push(hash);
                } else {
                    let chunks = stored.size.div_ceil(keys::CHUNK_SIZE as u64).max(1);
                    for i in 0..chunks {
                        batch.remove(&e.blobs, keys::chunk_key(&hash, i as u32).to_vec());
                    }
                }
                batch.remove(&e.blob_refs, hash.0.to_vec());
                // Contents that only ever sat in the outbound queue have no summary and were
                // never indexed: nothing to remove from the full-text index.
                if e.summaries.contains_key(hash.0)? {
                    batch.remove(&e.summaries, hash.0.to_vec());
                    batch.remove(&e.fts_pending, hash.0.to_vec());
                    batch.insert(&e.fts_removed, hash.0.to_vec(), Vec::new());
                    e.fts_queue().free(hash);
                }
            }
        }
        Ok(())
    }

    fn expunge(
        &mut self,
        mailbox_id: MailboxId,
        uids: Vec<u32>,
        changes: &mut Vec<StoreChange>,
    ) -> StoreResult<Vec<u32>> {
        let e = Arc::clone(&self.engine);
        let mut mailbox =
            e.mailbox(mailbox_id)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox_id}")))?;
        let mut batch = e.db.batch();
        let mut released = HashMap::new();
        let removed = self.remove_messages(&mut batch, &mut mailbox, &uids, &mut released, true)?;
        if removed.is_empty() {
            return Ok(removed);
        }
        self.release_blobs(&mut batch, released)?;
        batch.insert(&e.mailboxes, keys::u64_key(mailbox.id).to_vec(), to_json(&mailbox)?);
        batch.commit()?;
        changes.push(StoreChange::Mailbox { account: mailbox.account, mailbox: mailbox.id });
        Ok(removed)
    }

    fn mailbox_named(&self, account: AccountId, name: &str) -> StoreResult<Mailbox> {
        let id = self
            .engine
            .mailbox_names
            .get(keys::mailbox_name_key(account, name))?
            .as_deref()
            .and_then(keys::read_u64)
            .ok_or_else(|| StoreError::NotFound(format!("mailbox {name}")))?;
        self.engine.mailbox(id)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {name}")))
    }

    #[allow(clippy::too_many_arguments)]
    fn set_flags(
        &mut self,
        mailbox_id: MailboxId,
        uids: Vec<u32>,
        mode: FlagMode,
        flags: Flags,
        keywords: Vec<String>,
        unchanged_since: Option<u64>,
        changes: &mut Vec<StoreChange>,
    ) -> StoreResult<FlagUpdate> {
        let e = Arc::clone(&self.engine);
        let mut mailbox =
            e.mailbox(mailbox_id)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox_id}")))?;
        let mut result = FlagUpdate::default();
        let before = mailbox.keywords.len();
        let mut unique: Vec<String> = Vec::new();
        for k in keywords {
            if !unique.iter().any(|x| x.eq_ignore_ascii_case(&k)) {
                unique.push(k);
            }
        }
        let keywords = mailbox.register_keywords(&unique);
        result.keywords_refused = keywords.len() < unique.len();
        let new_modseq = mailbox.highest_modseq + 1;
        let mut batch = e.db.batch();
        for uid in uids {
            let key = keys::message_key(mailbox_id, uid);
            let Some(bytes) = e.messages.get(key)? else {
                result.missing.push(uid);
                continue;
            };
            let mut entry = decode_message(&bytes)?;
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
            mailbox.count_flag_change(old_flags, entry.flags);
            batch.remove(&e.changes, keys::modseq_key(mailbox_id, entry.modseq, uid).to_vec());
            entry.modseq = new_modseq;
            batch.insert(&e.changes, keys::modseq_key(mailbox_id, new_modseq, uid).to_vec(), Vec::new());
            batch.insert(&e.messages, key.to_vec(), encode_message(&entry)?);
            result.updated.push(entry);
        }
        if !result.updated.is_empty() || mailbox.keywords.len() != before {
            if !result.updated.is_empty() {
                mailbox.highest_modseq = new_modseq;
            }
            batch.insert(&e.mailboxes, keys::u64_key(mailbox_id).to_vec(), to_json(&mailbox)?);
            batch.commit()?;
            changes.push(StoreChange::Mailbox { account: mailbox.account, mailbox: mailbox_id });
        }
        Ok(result)
    }

    fn copy(
        &mut self,
        from: MailboxId,
        uids: Vec<u32>,
        to: MailboxId,
        remove_source: bool,
        changes: &mut Vec<StoreChange>,
    ) -> StoreResult<CopyResult> {
        let e = Arc::clone(&self.engine);
        let mut source = e.mailbox(from)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {from}")))?;
        let mut target = e.mailbox(to)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {to}")))?;
        // A copy adds to the target account's storage; a move within one account does not.
        // (Between accounts — a shared mailbox, RFC 4314 — the caller checked the rights.)
        let adds = !remove_source || source.account != target.account;
        if adds && let Some((limit, used)) = self.quota_of(target.account, &mut HashMap::new())? {
            let mut added = 0u64;
            for &uid in &uids {
                if let Some(bytes) = e.messages.get(keys::message_key(from, uid))? {
                    added += decode_message(&bytes)?.size;
                }
            }
            if used + added > limit {
                return Err(StoreError::OverQuota(format!("account {}", target.account)));
            }
        }
        let mut batch = e.db.batch();
        let pairs = if from == to {
            // COPY or MOVE into the same mailbox (RFC 9051 §6.4.7, RFC 6851 §3.3): source and
            // target are one record; the copies get new UIDs, a move expunges the originals.
            let mut same = source.clone();
            let pairs = self.copy_in(&mut batch, &mut source, &mut same, &uids, remove_source, true)?;
            target = same;
            pairs
        } else {
            self.copy_in(&mut batch, &mut source, &mut target, &uids, remove_source, false)?
        };
        if pairs.is_empty() {
            return Ok(CopyResult { uid_validity: target.uid_validity, pairs });
        }
        batch.insert(&e.mailboxes, keys::u64_key(to).to_vec(), to_json(&target)?);
        if remove_source && from != to {
            batch.insert(&e.mailboxes, keys::u64_key(from).to_vec(), to_json(&source)?);
            changes.push(StoreChange::Mailbox { account: source.account, mailbox: from });
        }
        self.save_counters(&mut batch);
        batch.commit()?;
        changes.push(StoreChange::Mailbox { account: target.account, mailbox: to });
        Ok(CopyResult { uid_validity: target.uid_validity, pairs })
    }

    /// Copies (or moves) messages between two mailbox records inside `batch`; the caller
    /// writes the records and commits. With `same_mailbox`, `target` is the record of the
    /// source mailbox too (the one written), and a move removes the originals from it.
    fn copy_in(
        &mut self,
        batch: &mut OwnedWriteBatch,
        source: &mut Mailbox,
        target: &mut Mailbox,
        uids: &[u32],
        remove_source: bool,
        same_mailbox: bool,
    ) -> StoreResult<Vec<(u32, u32)>> {
        let e = Arc::clone(&self.engine);
        let mut pairs = Vec::new();
        let mut added_refs: HashMap<BlobHash, u32> = HashMap::new();
        let mut moved = Vec::new();
        let modseq = target.highest_modseq + 1;
        for &uid in uids {
            let Some(bytes) = e.messages.get(keys::message_key(source.id, uid))? else { continue };
            let old = decode_message(&bytes)?;
            let new_uid = target.uid_next;
            target.uid_next =
                target.uid_next.checked_add(1).ok_or_else(|| StoreError::corrupt("mailbox", "UID space exhausted"))?;
            target.count_added(old.flags, old.size);
            let keywords = target.register_keywords(&old.keywords);
            self.counters.email += 1;
            let entry = MessageEntry {
                mailbox: target.id,
                uid: new_uid,
                modseq,
                // A moved message keeps its EMAILID (RFC 8474 §5.1); a copy gets a new one.
                email_id: if remove_source { old.email_id } else { self.counters.email },
                keywords,
                saved: crate::now_unix(),
                ..old.clone()
            };
            batch.insert(&e.messages, keys::message_key(target.id, new_uid).to_vec(), encode_message(&entry)?);
            batch.insert(&e.changes, keys::modseq_key(target.id, modseq, new_uid).to_vec(), Vec::new());
            *added_refs.entry(old.blob).or_default() += 1;
            pairs.push((uid, new_uid));
            moved.push(uid);
        }
        if pairs.is_empty() {
            return Ok(pairs);
        }
        target.highest_modseq = modseq;
        let mut released = HashMap::new();
        if remove_source {
            let from = if same_mailbox { target } else { source };
            self.remove_messages(batch, from, &moved, &mut released, true)?;
        }
        // Net reference change per content: + copies, - removed originals.
        for (hash, added) in added_refs {
            let removed = released.remove(&hash).unwrap_or(0);
            let stored = e.blob_refs.get(hash.0)?.as_deref().and_then(keys::read_blob_ref).ok_or_else(|| {
                StoreError::corrupt(format!("content {hash}"), "copied message without reference count")
            })?;
            batch.insert(
                &e.blob_refs,
                hash.0.to_vec(),
                stored.with_count((stored.count + added).saturating_sub(removed)).encode(),
            );
        }
        self.release_blobs(batch, released)?;
        Ok(pairs)
    }

    /// Creates `name`'s missing parents in `batch`.
    fn create_parents(
        &mut self,
        batch: &mut OwnedWriteBatch,
        account: AccountId,
        name: &str,
        created: &mut HashSet<String>,
    ) -> StoreResult<()> {
        let mut prefix = String::new();
        let parts: Vec<&str> = name.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if created.contains(&prefix)
                || self.engine.mailbox_names.contains_key(keys::mailbox_name_key(account, &prefix))?
            {
                continue;
            }
            self.mailbox_create(batch, account, NewMailbox::new(&prefix, None))?;
            created.insert(prefix.clone());
        }
        Ok(())
    }

    fn mailbox_rename(
        &mut self,
        account: AccountId,
        from: &str,
        to: &str,
        changes: &mut Vec<StoreChange>,
    ) -> StoreResult<()> {
        let e = Arc::clone(&self.engine);
        if e.mailbox_names.contains_key(keys::mailbox_name_key(account, to))? {
            return Err(StoreError::Exists(format!("mailbox {to}")));
        }
        let source = self.mailbox_named(account, from)?;
        let mut batch = e.db.batch();
        let mut created = HashSet::new();
        self.create_parents(&mut batch, account, to, &mut created)?;
        if from == INBOX {
            // RFC 9051 §6.3.6: the messages move to a new mailbox; INBOX stays, empty. One
            // batch: a crash leaves either the old state or the new one.
            let mut inbox = source;
            let mut target = self.mailbox_create(&mut batch, account, NewMailbox::new(to, None))?;
            let uids = e.message_uids(inbox.id)?;
            self.copy_in(&mut batch, &mut inbox, &mut target, &uids, true, false)?;
            batch.insert(&e.mailboxes, keys::u64_key(inbox.id).to_vec(), to_json(&inbox)?);
            batch.insert(&e.mailboxes, keys::u64_key(target.id).to_vec(), to_json(&target)?);
            self.save_counters(&mut batch);
            batch.commit()?;
            changes.push(StoreChange::Account { account });
            changes.push(StoreChange::Mailbox { account, mailbox: inbox.id });
            return Ok(());
        }
        let child_prefix = format!("{from}/");
        let mut renamed = vec![source];
        for m in e.account_mailboxes(account)? {
            if m.name.starts_with(&child_prefix) {
                renamed.push(m);
            }
        }
        for mut m in renamed {
            let new_name = format!("{to}{}", &m.name[from.len()..]);
            if e.mailbox_names.contains_key(keys::mailbox_name_key(account, &new_name))? {
                return Err(StoreError::Exists(format!("mailbox {new_name}")));
            }
            batch.remove(&e.mailbox_names, keys::mailbox_name_key(account, &m.name));
            batch.insert(&e.mailbox_names, keys::mailbox_name_key(account, &new_name), keys::u64_key(m.id).to_vec());
            m.name = new_name;
            batch.insert(&e.mailboxes, keys::u64_key(m.id).to_vec(), to_json(&m)?);
        }
        self.save_counters(&mut batch);
        batch.commit()?;
        changes.push(StoreChange::Account { account });
        Ok(())
    }

    fn mailbox_delete(&mut self, account: AccountId, name: &str, changes: &mut Vec<StoreChange>) -> StoreResult<()> {
        let e = Arc::clone(&self.engine);
        if name == INBOX {
            return Err(StoreError::corrupt("mailbox delete", "INBOX cannot be deleted"));
        }
        let mut mailbox = self.mailbox_named(account, name)?;
        let child_prefix = format!("{name}/");
        if e.account_mailboxes(account)?.iter().any(|m| m.name.starts_with(&child_prefix)) {
            return Err(StoreError::HasChildren(format!("mailbox {name}")));
        }
        let mut batch = e.db.batch();
        let mut released = HashMap::new();
        let uids = e.message_uids(mailbox.id)?;
        self.remove_messages(&mut batch, &mut mailbox, &uids, &mut released, false)?;
        for item in e.expunged.prefix(keys::u64_key(mailbox.id)) {
            batch.remove(&e.expunged, item.key()?);
        }
        self.release_blobs(&mut batch, released)?;
        for entry in &mailbox.acl {
            batch.remove(&e.acl, keys::acl_key(&entry.identifier.to_string(), mailbox.id));
        }
        self.drop_private_seen(&mut batch, &mailbox, None)?;
        self.drop_mailbox_metadata(&mut batch, &HashSet::from([mailbox.id]))?;
        batch.remove(&e.mailboxes, keys::u64_key(mailbox.id).to_vec());
        batch.remove(&e.mailbox_names, keys::mailbox_name_key(account, name));
        if mailbox.subscribed {
            // The subscription stays (RFC 9051 §6.3.7); LIST shows it \NonExistent.
            batch.insert(&e.subscriptions, keys::mailbox_name_key(account, name), Vec::new());
        }
        batch.commit()?;
        changes.push(StoreChange::Account { account });
        changes.push(StoreChange::Mailbox { account, mailbox: mailbox.id });
        Ok(())
    }

    fn sieve(&mut self, account: AccountId, op: SieveOp) -> StoreResult<()> {
        let e = Arc::clone(&self.engine);
        if e.account(account)?.is_none() {
            return Err(StoreError::NotFound(format!("account {account}")));
        }
        let active_key = keys::sieve_active_key(account);
        let active = e.sieve.get(&active_key)?.map(|v| String::from_utf8_lossy(&v).into_owned());
        let exists =
            |name: &str| -> StoreResult<bool> { Ok(e.sieve.contains_key(keys::sieve_script_key(account, name))?) };
        let mut batch = e.db.batch();
        match op {
            SieveOp::Put(name, source) => {
                batch.insert(&e.sieve, keys::sieve_script_key(account, &name), source.into_bytes())
            }
            SieveOp::Activate(None) => batch.remove(&e.sieve, active_key),
            SieveOp::Activate(Some(name)) => {
                if !exists(&name)? {
                    return Err(StoreError::NotFound(format!("script {name}")));
                }
                batch.insert(&e.sieve, active_key, name.into_bytes());
            }
            SieveOp::Delete(name) => {
                if !exists(&name)? {
                    return Err(StoreError::NotFound(format!("script {name}")));
                }
                if active.as_deref() == Some(name.as_str()) {
                    return Err(StoreError::Active(format!("script {name}")));
                }
                batch.remove(&e.sieve, keys::sieve_script_key(account, &name));
            }
            SieveOp::Rename(from, to) => {
                let Some(source) = e.sieve.get(keys::sieve_script_key(account, &from))? else {
                    return Err(StoreError::NotFound(format!("script {from}")));
                };
                if exists(&to)? {
                    return Err(StoreError::Exists(format!("script {to}")));
                }
                batch.remove(&e.sieve, keys::sieve_script_key(account, &from));
                batch.insert(&e.sieve, keys::sieve_script_key(account, &to), source.to_vec());
                if active.as_deref() == Some(from.as_str()) {
                    batch.insert(&e.sieve, active_key, to.into_bytes());
                }
            }
            SieveOp::Remember(ids) => {
                let now = crate::now_unix();
                for (id, expires) in &ids {
                    batch.insert(&e.sieve, keys::sieve_seen_key(account, Some(id)), expires.to_be_bytes().to_vec());
                }
                // Now and then (about one write in 64), the account's expired records go.
                if ids.first().is_some_and(|(id, _)| blake3::hash(id.as_bytes()).as_bytes()[0] < 4) {
                    for item in e.sieve.prefix(keys::sieve_seen_key(account, None)) {
                        let (key, value) = item.into_inner()?;
                        if read_expiry(&value) < now {
                            batch.remove(&e.sieve, key);
                        }
                    }
                }
            }
        }
        batch.commit()?;
        Ok(())
    }

    fn account_remove(&mut self, id: AccountId, changes: &mut Vec<StoreChange>) -> StoreResult<bool> {
        let e = Arc::clone(&self.engine);
        let Some(account) = e.account(id)? else { return Ok(false) };
        let mut batch = e.db.batch();
        let mut released = HashMap::new();
        let mut removed_mailboxes = HashSet::new();
        for mut mailbox in e.account_mailboxes(id)? {
            let uids: Vec<u32> = e.message_uids(mailbox.id)?;
            self.remove_messages(&mut batch, &mut mailbox, &uids, &mut released, false)?;
            for item in e.expunged.prefix(keys::u64_key(mailbox.id)) {
                batch.remove(&e.expunged, item.key()?);
            }
            for entry in &mailbox.acl {
                batch.remove(&e.acl, keys::acl_key(&entry.identifier.to_string(), mailbox.id));
            }
            self.drop_private_seen(&mut batch, &mailbox, None)?;
            removed_mailboxes.insert(mailbox.id);
            batch.remove(&e.mailboxes, keys::u64_key(mailbox.id).to_vec());
            batch.remove(&e.mailbox_names, keys::mailbox_name_key(id, &mailbox.name));
        }
        self.drop_mailbox_metadata(&mut batch, &removed_mailboxes)?;
        // Every private annotation of the user, on any mailbox or the server.
        for item in e.metadata.prefix(id.to_be_bytes()) {
            batch.remove(&e.metadata, item.key()?.to_vec());
        }
        // The user's own \Seen on the mailboxes shared with it (one revoked earlier keeps its
        // records until that mailbox goes: nothing reads them).
        for identifier in Identifier::naming(&account.address) {
            let mut prefix = identifier.to_string().into_bytes();
            prefix.push(0);
            for item in e.acl.prefix(&prefix) {
                let key = item.key()?;
                let Some(mailbox_id) = key.get(prefix.len()..).and_then(keys::read_u64) else { continue };
                for record in e.private_seen.prefix(keys::private_seen_key(mailbox_id, id, None)) {
                    batch.remove(&e.private_seen, record.key()?.to_vec());
                }
            }
        }
        // Entries that name the removed user go too: a later account of the same address
        // must not inherit what was shared with this one.
        let gone = Identifier::User(account.address.clone());
        let mut prefix = gone.to_string().into_bytes();
        prefix.push(0);
        for item in e.acl.prefix(&prefix) {
            let key = item.key()?;
            batch.remove(&e.acl, key.to_vec());
            let Some(mailbox_id) = key.get(prefix.len()..).and_then(keys::read_u64) else { continue };
            if let Some(mut other) = e.mailbox(mailbox_id)?
                && other.account != id
            {
                other.acl.retain(|entry| entry.identifier != gone);
                batch.insert(&e.mailboxes, keys::u64_key(mailbox_id).to_vec(), to_json(&other)?);
            }
        }
        for item in e.subscriptions.prefix(keys::u64_key(id)) {
            batch.remove(&e.subscriptions, item.key()?);
        }
        for item in e.threads.prefix(keys::u64_key(id)) {
            batch.remove(&e.threads, item.key()?);
        }
        for item in e.sieve.prefix(keys::sieve_script_key(id, "")) {
            batch.remove(&e.sieve, item.key()?);
        }
        batch.remove(&e.sieve, keys::sieve_active_key(id));
        for item in e.sieve.prefix(keys::sieve_seen_key(id, None)) {
            batch.remove(&e.sieve, item.key()?);
        }
        self.release_blobs(&mut batch, released)?;
        batch.remove(&e.accounts, keys::u64_key(id).to_vec());
        batch.remove(&e.account_names, account.address.as_bytes().to_vec());
        batch.commit()?;
        changes.push(StoreChange::Account { account: id });
        changes.push(StoreChange::Directory);
        Ok(true)
    }
}
