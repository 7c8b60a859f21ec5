//! The embedded backend: one fjall database (LSM-tree: write-ahead journal, memtables,
//! SSTables) in `data_dir/store`, one writer thread with group commit, and readers on the
//! blocking thread pool.

mod backup;
mod blobfile;

mod fts;
mod keys;
mod writer;

use crate::{Identifier, Rights};
pub use keys::FORMAT_VERSION;

use crate::codec::*;
use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::{ChangeFeed, DirectoryStore, FilterStore, MailStore, MessageSummary, QueueStore, ScriptStore, Store};
use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};
use keys::ks;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, oneshot};
use writer::{Op, OpResult, Request, SieveOp, Writer};

/// Open database handles, shared by the writer and the readers.
pub(crate) struct Engine {
    db: Database,
    meta: Keyspace,
    domains: Keyspace,
    accounts: Keyspace,
    account_names: Keyspace,
    aliases: Keyspace,
    mailboxes: Keyspace,
    mailbox_names: Keyspace,
    messages: Keyspace,
    blobs: Keyspace,
    blob_refs: Keyspace,
    summaries: Keyspace,
    envelopes: Keyspace,
    threads: Keyspace,
    changes: Keyspace,
    expunged: Keyspace,
    fts_pending: Keyspace,
    fts_removed: Keyspace,
    queue: Keyspace,
    queue_due: Keyspace,
    subscriptions: Keyspace,
    spam: Keyspace,
    quarantine: Keyspace,
    sieve: Keyspace,
    acl: Keyspace,
    metadata: Keyspace,
    private_seen: Keyspace,
    api_tokens: Keyspace,
    web_sessions: Keyspace,
    /// Where contents of [`blobfile::FILE_THRESHOLD`] bytes or more live.
    blob_dir: std::path::PathBuf,
    /// The queue's due index (`queue_due`) in memory: claims would otherwise scan the
    /// tombstones that every delivered entry leaves at the front of the keyspace.
    due: Mutex<std::collections::BTreeSet<(i64, QueueId)>>,
    /// `fts_pending` and `fts_removed` in memory, for the same reason.
    fts_queue: Mutex<fts::FtsQueue>,
    /// Backups in progress: while any runs, content files stay (see `backup`).
    backups_running: std::sync::atomic::AtomicUsize,
}

/// fjall's flush and compaction workers. With more than one, worker 0 hands every compaction
/// request back to the queue and takes it again while another worker compacts: it spins,
/// a core's worth of CPU the sessions need (fjall 3.1, `worker_pool.rs`; seen in the
/// 32-session SMTP profile as `worker_tick` and `flume` sends). One worker flushes and
/// compacts in turn, without spinning.
const FJALL_WORKERS: usize = 1;

impl Engine {
    fn open(path: &Path, cache_mb: u64) -> StoreResult<Engine> {
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::Io { context: format!("cannot create {}", path.display()), error: e })?;
        let db = Database::builder(path)
            .cache_size(cache_mb * 1024 * 1024)
            // Tern decides when the journal is synced (group commit); no background fsyncs.
            .manual_journal_persist(true)
            .worker_threads(FJALL_WORKERS)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => StoreError::Locked(path.display().to_string()),
                e => StoreError::from(e),
            })?;
        let plain = KeyspaceCreateOptions::default;
        let open = |name: &str| db.keyspace(name, plain);
        let engine = Engine {
            meta: open(ks::META)?,
            domains: open(ks::DOMAINS)?,
            accounts: open(ks::ACCOUNTS)?,
            account_names: open(ks::ACCOUNT_NAMES)?,
            aliases: open(ks::ALIASES)?,
            mailboxes: open(ks::MAILBOXES)?,
            mailbox_names: open(ks::MAILBOX_NAMES)?,
            messages: open(ks::MESSAGES)?,
            // Message contents are large: keep them out of the LSM's compaction path.
            blobs: db.keyspace(ks::BLOBS, || {
                KeyspaceCreateOptions::default().with_kv_separation(Some(KvSeparationOptions::default()))
            })?,
            blob_refs: open(ks::BLOB_REFS)?,
            summaries: open(ks::SUMMARIES)?,
            envelopes: open(ks::ENVELOPES)?,
            threads: open(ks::THREADS)?,
            changes: open(ks::CHANGES)?,
            expunged: open(ks::EXPUNGED)?,
            fts_pending: open(ks::FTS_PENDING)?,
            fts_removed: open(ks::FTS_REMOVED)?,
            queue: open(ks::QUEUE)?,
            queue_due: open(ks::QUEUE_DUE)?,
            subscriptions: open(ks::SUBSCRIPTIONS)?,
            spam: open(ks::SPAM)?,
            quarantine: db.keyspace(ks::QUARANTINE, || {
                KeyspaceCreateOptions::default().with_kv_separation(Some(KvSeparationOptions::default()))
            })?,
            sieve: open(ks::SIEVE)?,
            acl: open(ks::ACL)?,
            metadata: open(ks::METADATA)?,
            private_seen: open(ks::PRIVATE_SEEN)?,
            api_tokens: open(ks::API_TOKENS)?,
            web_sessions: open(ks::WEB_SESSIONS)?,
            blob_dir: blobfile::directory(path),
            due: Mutex::new(std::collections::BTreeSet::new()),
            fts_queue: Mutex::default(),
            backups_running: std::sync::atomic::AtomicUsize::new(0),
            db,
        };
        engine.check_format()?;
        *engine.fts_queue() = fts::FtsQueue::load(&engine.fts_pending, &engine.fts_removed)?;
        {
            let mut due = engine.due.lock().unwrap_or_else(|p| p.into_inner());
            for item in engine.queue_due.iter() {
                let key = item.key()?;
                let (at, id) = keys::read_due_key(&key).ok_or_else(|| StoreError::corrupt("queue due key", "short"))?;
                due.insert((at, id));
            }
        }
        Ok(engine)
    }

    /// Records the format version in a new store; refuses a store of another version.
    fn check_format(&self) -> StoreResult<()> {
        match self.meta.get(keys::META_FORMAT)? {
            Some(v) => {
                let found = v
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::corrupt("format version", "bad length"))?;
                if found != FORMAT_VERSION {
                    return Err(StoreError::Format { found, supported: FORMAT_VERSION });
                }
            }
            None => {
                self.meta.insert(keys::META_FORMAT, FORMAT_VERSION.to_be_bytes())?;
                self.db.persist(PersistMode::SyncAll)?;
            }
        }
        Ok(())
    }

    fn fts_queue(&self) -> std::sync::MutexGuard<'_, fts::FtsQueue> {
        self.fts_queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        self.accounts.get(keys::u64_key(id))?.map(|v| from_json("account", &v)).transpose()
    }

    fn mailbox(&self, id: MailboxId) -> StoreResult<Option<Mailbox>> {
        self.mailboxes.get(keys::u64_key(id))?.map(|v| from_json("mailbox", &v)).transpose()
    }

    fn account_mailboxes(&self, account: AccountId) -> StoreResult<Vec<Mailbox>> {
        let mut out = Vec::new();
        for item in self.mailbox_names.prefix(keys::u64_key(account)) {
            let value = item.value()?;
            let id = keys::read_u64(&value).ok_or_else(|| StoreError::corrupt("mailbox name", "bad id"))?;
            if let Some(m) = self.mailbox(id)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    fn message_uids(&self, mailbox: MailboxId) -> StoreResult<Vec<u32>> {
        let mut out = Vec::new();
        for item in self.messages.prefix(keys::u64_key(mailbox)) {
            let key = item.key()?;
            out.push(keys::uid_of_message_key(&key).ok_or_else(|| StoreError::corrupt("message key", "short"))?);
        }
        Ok(out)
    }

    /// Messages changed (or added) and messages expunged after `since`, in UID order.
    fn changes_since(&self, mailbox: MailboxId, since: u64) -> StoreResult<MailboxChanges> {
        let highest_modseq = self.mailbox(mailbox)?.map(|m| m.highest_modseq).unwrap_or(0);
        let start = keys::modseq_key(mailbox, since.saturating_add(1), 0);
        let end = keys::modseq_key(mailbox, u64::MAX, u32::MAX);
        let mut changed = Vec::new();
        for item in self.changes.range(start..=end) {
            let key = item.key()?;
            let (_, uid) = keys::read_modseq_key(&key).ok_or_else(|| StoreError::corrupt("change key", "short"))?;
            if let Some(v) = self.messages.get(keys::message_key(mailbox, uid))? {
                changed.push(decode_message(&v)?);
            }
        }
        changed.sort_by_key(|m| m.uid);
        let mut expunged = Vec::new();
        for item in self.expunged.range(start..=end) {
            let key = item.key()?;
            let (_, uid) = keys::read_modseq_key(&key).ok_or_else(|| StoreError::corrupt("expunge key", "short"))?;
            expunged.push(uid);
        }
        expunged.sort_unstable();
        Ok(MailboxChanges { changed, expunged, highest_modseq })
    }

    fn list_json<T: serde::de::DeserializeOwned>(&self, keyspace: &Keyspace, what: &str) -> StoreResult<Vec<T>> {
        let mut out = Vec::new();
        for item in keyspace.iter() {
            out.push(from_json(what, &item.value()?)?);
        }
        Ok(out)
    }

    /// The summary, and whether it had to be derived again (missing or of an older version).
    fn summary(&self, hash: &BlobHash) -> StoreResult<(Option<MessageSummary>, bool)> {
        if let Some(bytes) = self.summaries.get(hash.0)?
            && let Some(summary) = decode_summary(&bytes)?
        {
            return Ok((Some(summary), false));
        }
        Ok((self.blob(hash)?.map(|raw| tern_mime::summarize(&raw)), true))
    }

    fn blob(&self, hash: &BlobHash) -> StoreResult<Option<Vec<u8>>> {
        let Some(r) = self.blob_refs.get(hash.0)?.as_deref().and_then(keys::read_blob_ref) else {
            return Ok(None);
        };
        if r.count == 0 {
            return Ok(None);
        }
        let out = if r.in_file {
            blobfile::read(&self.blob_dir, hash, r.size)
                .map_err(|e| StoreError::corrupt(format!("message content {hash}"), format!("its file: {e}")))?
        } else {
            let mut out = Vec::with_capacity(r.size as usize);
            for item in self.blobs.prefix(hash.0) {
                out.extend_from_slice(&item.value()?);
            }
            out
        };
        if out.len() as u64 != r.size {
            return Err(StoreError::corrupt(
                format!("message content {hash}"),
                format!("{} bytes, expected {}", out.len(), r.size),
            ));
        }
        Ok(Some(out))
    }
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    engine: Arc<Engine>,
    tx: mpsc::Sender<Request>,
    changes: broadcast::Sender<StoreChange>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    closed: Arc<AtomicBool>,
    /// Cleared by the writer when an fsync fails (fjall then refuses writes for good).
    healthy: Arc<AtomicBool>,
    hooks: Arc<std::sync::RwLock<Vec<crate::ChangeHook>>>,
    fts: Option<Arc<tern_fts::FtsIndex>>,
    indexer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    stop_indexer: Arc<AtomicBool>,
    /// Queue entries a worker holds, until when (not durable on purpose: see `queue_claim`).
    leases: Arc<Mutex<std::collections::HashMap<QueueId, i64>>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `path` and starts its writer thread and full-text
    /// indexer. Blocking.
    pub fn open(path: &Path, cache_mb: u64) -> StoreResult<EmbeddedStore> {
        EmbeddedStore::open_with(path, cache_mb, true)
    }

    /// Like [`EmbeddedStore::open`]; without `full_text` no indexer runs and text searches
    /// scan (for short-lived administrative use).
    pub fn open_with(path: &Path, cache_mb: u64, full_text: bool) -> StoreResult<EmbeddedStore> {
        let engine = Arc::new(Engine::open(path, cache_mb)?);
        // Files a crash left without their transaction (or the other way round: see blobfile).
        match blobfile::sweep(&engine.blob_dir, |h| engine.blob_refs.contains_key(h.0).unwrap_or(true)) {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "removed message content files no message refers to"),
            Err(e) => tracing::warn!(error = %e, "cannot check the message content files"),
        }
        let (changes, _) = broadcast::channel(4096);
        let healthy = Arc::new(AtomicBool::new(true));
        let hooks: Arc<std::sync::RwLock<Vec<crate::ChangeHook>>> = Arc::default();
        let writer = Writer::new(Arc::clone(&engine), changes.clone(), Arc::clone(&hooks), Arc::clone(&healthy))?;
        let (tx, rx) = mpsc::channel(4096);
        let handle = std::thread::Builder::new()
            .name("tern-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Task(format!("cannot start the store writer: {e}")))?;
        // The full-text index lives next to the store's files and is maintained in the
        // background; without it searches scan.
        let stop_indexer = Arc::new(AtomicBool::new(false));
        let opened = if full_text { fts::open(&path.join("fts"), &engine).map(Some) } else { Ok(None) };
        let (fts, indexer) = match opened {
            Ok(None) => (None, None),
            Ok(Some(index)) => {
                let index = Arc::new(index);
                let (e, i, t, stop) = (Arc::clone(&engine), Arc::clone(&index), tx.clone(), Arc::clone(&stop_indexer));
                let handle = std::thread::Builder::new()
                    .name("tern-fts-indexer".into())
                    .spawn(move || fts::run(e, i, t, stop))
                    .map_err(|e| StoreError::Task(format!("cannot start the indexer: {e}")))?;
                (Some(index), Some(handle))
            }
            Err(e) => {
                tracing::error!(error = %e, "full-text index unavailable; SEARCH BODY/TEXT will scan");
                (None, None)
            }
        };
        Ok(EmbeddedStore {
            engine,
            tx,
            changes,
            writer: Arc::new(Mutex::new(Some(handle))),
            closed: Arc::new(AtomicBool::new(false)),
            healthy,
            hooks,
            fts,
            indexer: Arc::new(Mutex::new(indexer)),
            stop_indexer,
            leases: Arc::default(),
        })
    }

    async fn write(&self, op: Op) -> StoreResult<OpResult> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request { op, reply }).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let engine = Arc::clone(&self.engine);
        tokio::task::spawn_blocking(move || f(&engine)).await.map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn unexpected<T>() -> StoreResult<T> {
    Err(StoreError::Task("unexpected writer reply".into()))
}

#[async_trait]
impl DirectoryStore for EmbeddedStore {
    async fn domain_list(&self) -> StoreResult<Vec<Domain>> {
        self.read(|e| e.list_json(&e.domains, "domain")).await
    }

    async fn domain_get(&self, name: &str) -> StoreResult<Option<Domain>> {
        let name = name.to_string();
        self.read(move |e| e.domains.get(name.as_bytes())?.map(|v| from_json("domain", &v)).transpose()).await
    }

    async fn domain_put(&self, domain: Domain) -> StoreResult<()> {
        self.write(Op::DomainPut(domain)).await.map(|_| ())
    }

    async fn domain_remove(&self, name: &str) -> StoreResult<bool> {
        match self.write(Op::DomainRemove(name.to_string())).await? {
            OpResult::Bool(b) => Ok(b),
            _ => unexpected(),
        }
    }

    async fn account_list(&self) -> StoreResult<Vec<Account>> {
        self.read(|e| e.list_json(&e.accounts, "account")).await
    }

    async fn account_get(&self, id: AccountId) -> StoreResult<Option<Account>> {
        self.read(move |e| e.account(id)).await
    }

    async fn account_by_address(&self, address: &str) -> StoreResult<Option<Account>> {
        let address = address.to_string();
        self.read(move |e| match e.account_names.get(address.as_bytes())?.as_deref().and_then(keys::read_u64) {
            Some(id) => e.account(id),
            None => Ok(None),
        })
        .await
    }

    async fn account_create(&self, account: NewAccount, mailboxes: Vec<NewMailbox>) -> StoreResult<Account> {
        match self.write(Op::AccountCreate(account, mailboxes)).await? {
            OpResult::Account(a) => Ok(a),
            _ => unexpected(),
        }
    }

    async fn account_update(&self, account: Account) -> StoreResult<()> {
        self.write(Op::AccountUpdate(account)).await.map(|_| ())
    }

    async fn account_remove(&self, id: AccountId) -> StoreResult<bool> {
        match self.write(Op::AccountRemove(id)).await? {
            OpResult::Bool(b) => Ok(b),
            _ => unexpected(),
        }
    }

    async fn alias_list(&self) -> StoreResult<Vec<Alias>> {
        self.read(|e| e.list_json(&e.aliases, "alias")).await
    }

    async fn alias_get(&self, address: &str) -> StoreResult<Option<Alias>> {
        let address = address.to_string();
        self.read(move |e| e.aliases.get(address.as_bytes())?.map(|v| from_json("alias", &v)).transpose()).await
    }

    async fn alias_put(&self, alias: Alias) -> StoreResult<()> {
        self.write(Op::AliasPut(alias)).await.map(|_| ())
    }

    async fn api_token_list(&self) -> StoreResult<Vec<ApiToken>> {
        self.read(|e| e.list_json(&e.api_tokens, "api token")).await
    }

    async fn api_token_put(&self, token: ApiToken) -> StoreResult<()> {
        self.write(Op::ApiTokenPut(token)).await.map(|_| ())
    }

    async fn api_token_remove(&self, name: &str) -> StoreResult<bool> {
        match self.write(Op::ApiTokenRemove(name.to_string())).await? {
            OpResult::Bool(b) => Ok(b),
            _ => unexpected(),
        }
    }

    async fn web_session_get(&self, key: &str) -> StoreResult<Option<WebSession>> {
        let key = key.to_string();
        self.read(move |e| e.web_sessions.get(key.as_bytes())?.map(|v| from_json("web session", &v)).transpose()).await
    }

    async fn web_sessions_of(&self, account: AccountId) -> StoreResult<Vec<WebSession>> {
        // Few: a scan is cheap.
        let all: Vec<WebSession> = self.read(|e| e.list_json(&e.web_sessions, "web session")).await?;
        let mut mine: Vec<WebSession> = all.into_iter().filter(|s| s.account == account).collect();
        mine.sort_by_key(|s| s.created);
        Ok(mine)
    }

    async fn web_session_put(&self, session: WebSession) -> StoreResult<()> {
        self.write(Op::WebSessionPut(Box::new(session))).await.map(|_| ())
    }

    async fn web_session_remove(&self, which: WebSessionsToRemove) -> StoreResult<usize> {
        match self.write(Op::WebSessionRemove(which)).await? {
            OpResult::Count(n) => Ok(n),
            _ => unexpected(),
        }
    }

    async fn alias_remove(&self, address: &str) -> StoreResult<bool> {
        match self.write(Op::AliasRemove(address.to_string())).await? {
            OpResult::Bool(b) => Ok(b),
            _ => unexpected(),
        }
    }
}

#[async_trait]
impl MailStore for EmbeddedStore {
    async fn mailbox_list(&self, account: AccountId) -> StoreResult<Vec<Mailbox>> {
        self.read(move |e| e.account_mailboxes(account)).await
    }

    async fn mailbox_get(&self, id: MailboxId) -> StoreResult<Option<Mailbox>> {
        self.read(move |e| e.mailbox(id)).await
    }

    async fn mailbox_by_name(&self, account: AccountId, name: &str) -> StoreResult<Option<Mailbox>> {
        let name = name.to_string();
        self.read(move |e| {
            match e.mailbox_names.get(keys::mailbox_name_key(account, &name))?.as_deref().and_then(keys::read_u64) {
                Some(id) => e.mailbox(id),
                None => Ok(None),
            }
        })
        .await
    }

    async fn mailbox_create(&self, account: AccountId, mailbox: NewMailbox) -> StoreResult<Mailbox> {
        match self.write(Op::MailboxCreate(account, mailbox)).await? {
            OpResult::Mailbox(m) => Ok(m),
            _ => unexpected(),
        }
    }

    async fn mailbox_rename(&self, account: AccountId, from: &str, to: &str) -> StoreResult<()> {
        self.write(Op::MailboxRename { account, from: from.to_string(), to: to.to_string() }).await.map(|_| ())
    }

    async fn mailbox_delete(&self, account: AccountId, name: &str) -> StoreResult<()> {
        self.write(Op::MailboxDelete { account, name: name.to_string() }).await.map(|_| ())
    }

    async fn subscriptions(&self, account: AccountId) -> StoreResult<Vec<String>> {
        self.read(move |e| {
            let mut names: Vec<String> =
                e.account_mailboxes(account)?.into_iter().filter(|m| m.subscribed).map(|m| m.name).collect();
            let prefix = keys::u64_key(account);
            for item in e.subscriptions.prefix(prefix) {
                let key = item.key()?;
                if let Ok(name) = std::str::from_utf8(&key[prefix.len()..]) {
                    names.push(name.to_string());
                }
            }
            names.sort();
            names.dedup();
            Ok(names)
        })
        .await
    }

    async fn mailbox_subscribe(&self, account: AccountId, name: &str, subscribed: bool) -> StoreResult<()> {
        self.write(Op::MailboxSubscribe { account, name: name.to_string(), subscribed }).await.map(|_| ())
    }

    async fn mailbox_claim_recent(&self, mailbox: MailboxId) -> StoreResult<std::ops::Range<u32>> {
        match self.write(Op::ClaimRecent(mailbox)).await? {
            OpResult::Recent(r) => Ok(r),
            _ => unexpected(),
        }
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
        match self.write(Op::SetFlags { mailbox, uids, mode, flags, keywords, unchanged_since }).await? {
            OpResult::Flags(f) => Ok(f),
            _ => unexpected(),
        }
    }

    async fn copy_messages(
        &self,
        from: MailboxId,
        uids: Vec<u32>,
        to: MailboxId,
        remove_source: bool,
    ) -> StoreResult<CopyResult> {
        match self.write(Op::Copy { from, uids, to, remove_source }).await? {
            OpResult::Copied(c) => Ok(c),
            _ => unexpected(),
        }
    }

    async fn deliver(&self, delivery: Delivery) -> StoreResult<DeliveryReceipt> {
        // A large content is written to its file here, on the blocking pool and in parallel
        // with other sessions, rather than by the single writer thread.
        if delivery.raw.len() >= blobfile::FILE_THRESHOLD
            && !(delivery.targets.is_empty() && delivery.remote.is_empty())
        {
            let (dir, raw, hash) = (self.engine.blob_dir.clone(), Arc::clone(&delivery.raw), delivery.hash);
            tokio::task::spawn_blocking(move || blobfile::write(&dir, &hash, &raw))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?
                .map_err(|e| StoreError::Backend(e.to_string()))?;
        }
        match self.write(Op::Deliver(Box::new(delivery))).await? {
            OpResult::Receipt(r) => Ok(r),
            _ => unexpected(),
        }
    }

    async fn mailbox_set_acl(
        &self,
        mailbox: MailboxId,
        identifier: Identifier,
        rights: Option<Rights>,
    ) -> StoreResult<Mailbox> {
        match self.write(Op::SetAcl(mailbox, identifier, rights)).await? {
            OpResult::Mailbox(m) => Ok(m),
            _ => unexpected(),
        }
    }

    async fn mailboxes_shared_with(&self, identifiers: Vec<Identifier>) -> StoreResult<Vec<Mailbox>> {
        self.read(move |e| {
            let mut ids = std::collections::BTreeSet::new();
            for identifier in &identifiers {
                let mut prefix = identifier.to_string().into_bytes();
                prefix.push(0);
                for item in e.acl.prefix(&prefix) {
                    let key = item.key()?;
                    if let Some(id) = key.get(prefix.len()..).and_then(keys::read_u64) {
                        ids.insert(id);
                    }
                }
            }
            let mut out = Vec::new();
            for id in ids {
                // An entry whose mailbox went (or no longer names the identifier) is skipped.
                if let Some(m) = e.mailbox(id)?
                    && m.acl.iter().any(|a| identifiers.contains(&a.identifier))
                {
                    out.push(m);
                }
            }
            out.sort_by(|a, b| (a.account, &a.name).cmp(&(b.account, &b.name)));
            Ok(out)
        })
        .await
    }

    async fn metadata_get(&self, scope: MetadataScope) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.read(move |e| {
            let prefix = keys::metadata_key(scope.user, scope.mailbox, "");
            let mut out = Vec::new();
            for item in e.metadata.prefix(&prefix) {
                let (key, value) = item.into_inner()?;
                let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                out.push((name, value.to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn metadata_set(&self, scope: MetadataScope, entries: Vec<(String, Option<Vec<u8>>)>) -> StoreResult<()> {
        match self.write(Op::MetadataSet(scope, entries)).await? {
            OpResult::Unit => Ok(()),
            _ => unexpected(),
        }
    }

    async fn seen_private_get(
        &self,
        mailbox: MailboxId,
        user: AccountId,
        since_modseq: u64,
    ) -> StoreResult<Vec<PrivateSeen>> {
        self.read(move |e| {
            let mut out = Vec::new();
            for item in e.private_seen.prefix(keys::private_seen_key(mailbox, user, None)) {
                let (key, value) = item.into_inner()?;
                let record = keys::read_private_seen(&key, &value)
                    .ok_or_else(|| StoreError::corrupt("private seen", "malformed record"))?;
                if record.modseq > since_modseq {
                    out.push(record);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn seen_private_set(
        &self,
        mailbox: MailboxId,
        user: AccountId,
        uids: Vec<u32>,
        seen: bool,
        unchanged_since: Option<u64>,
    ) -> StoreResult<PrivateSeenUpdate> {
        match self.write(Op::SeenPrivate { mailbox, user, uids, seen, unchanged_since }).await? {
            OpResult::PrivateSeen(u) => Ok(u),
            _ => unexpected(),
        }
    }

    async fn append_batch(&self, batch: AppendBatch) -> StoreResult<AppendReceipt> {
        for d in batch.messages.iter().filter(|d| d.raw.len() >= blobfile::FILE_THRESHOLD) {
            let (dir, raw, hash) = (self.engine.blob_dir.clone(), Arc::clone(&d.raw), d.hash);
            tokio::task::spawn_blocking(move || blobfile::write(&dir, &hash, &raw))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?
                .map_err(|e| StoreError::Backend(e.to_string()))?;
        }
        match self.write(Op::AppendBatch(Box::new(batch))).await? {
            OpResult::Appended(r) => Ok(r),
            _ => unexpected(),
        }
    }

    async fn message_list(&self, mailbox: MailboxId) -> StoreResult<Vec<MessageEntry>> {
        self.read(move |e| {
            let mut out = Vec::new();
            for item in e.messages.prefix(keys::u64_key(mailbox)) {
                out.push(decode_message(&item.value()?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn message_get(&self, mailbox: MailboxId, uid: u32) -> StoreResult<Option<MessageEntry>> {
        self.read(move |e| e.messages.get(keys::message_key(mailbox, uid))?.map(|v| decode_message(&v)).transpose())
            .await
    }

    async fn message_count_from(&self, mailbox: MailboxId, uid: u32) -> StoreResult<u32> {
        self.read(move |e| {
            let start = keys::message_key(mailbox, uid);
            let end = keys::message_key(mailbox, u32::MAX);
            let mut n = 0u32;
            for item in e.messages.range(start..=end) {
                item.key()?;
                n += 1;
            }
            Ok(n)
        })
        .await
    }

    async fn mailbox_changes(&self, mailbox: MailboxId, since_modseq: u64) -> StoreResult<MailboxChanges> {
        self.read(move |e| e.changes_since(mailbox, since_modseq)).await
    }

    async fn expunge(&self, mailbox: MailboxId, uids: Vec<u32>) -> StoreResult<Vec<u32>> {
        match self.write(Op::Expunge(mailbox, uids)).await? {
            OpResult::Uids(u) => Ok(u),
            _ => unexpected(),
        }
    }

    async fn blob_get(&self, hash: BlobHash) -> StoreResult<Option<Vec<u8>>> {
        self.read(move |e| e.blob(&hash)).await
    }

    async fn blob_refcount(&self, hash: BlobHash) -> StoreResult<u32> {
        self.read(move |e| {
            Ok(e.blob_refs.get(hash.0)?.as_deref().and_then(keys::read_blob_ref).map(|r| r.count).unwrap_or(0))
        })
        .await
    }

    async fn summary_get(&self, hash: BlobHash) -> StoreResult<Option<MessageSummary>> {
        Ok(self.summary_get_many(vec![hash]).await?.pop().flatten())
    }

    async fn summary_get_many(&self, hashes: Vec<BlobHash>) -> StoreResult<Vec<Option<MessageSummary>>> {
        let (summaries, rederived) = self
            .read(move |e| {
                let mut out = Vec::with_capacity(hashes.len());
                let mut rederived = Vec::new();
                for h in &hashes {
                    let (summary, fresh) = e.summary(h)?;
                    if fresh && let Some(s) = &summary {
                        rederived.push((*h, encode_summary(s)?));
                    }
                    out.push(summary);
                }
                Ok((out, rederived))
            })
            .await?;
        // Summaries of an older version are stored again in the current one, in the
        // background: this read does not wait for a write.
        if !rederived.is_empty() {
            let store = self.clone();
            tokio::spawn(async move {
                if let Err(e) = store.write(Op::PutSummaries(rederived)).await {
                    tracing::debug!(error = %e, "could not store upgraded summaries");
                }
            });
        }
        Ok(summaries)
    }

    async fn envelope_get(&self, delivery_id: u64) -> StoreResult<Option<DeliveryEnvelope>> {
        self.read(move |e| e.envelopes.get(keys::u64_key(delivery_id))?.map(|v| from_json("envelope", &v)).transpose())
            .await
    }

    async fn text_search(&self, needle: &str, with_header: bool) -> StoreResult<Option<TextMatches>> {
        let Some(index) = self.fts.clone() else { return Ok(None) };
        let needle = needle.to_string();
        self.read(move |e| fts::search(e, &index, &needle, with_header).map_err(StoreError::Task)).await
    }
}

#[async_trait]
impl QueueStore for EmbeddedStore {
    async fn queue_claim(&self, now: i64, limit: usize, lease_seconds: i64) -> StoreResult<Vec<QueueEntry>> {
        let leases = Arc::clone(&self.leases);
        self.read(move |e| {
            let due: Vec<QueueId> = {
                let mut leases = leases.lock().unwrap_or_else(|p| p.into_inner());
                leases.retain(|_, until| *until > now);
                let index = e.due.lock().unwrap_or_else(|p| p.into_inner());
                let mut out = Vec::new();
                for &(_, id) in index.range(..=(now, QueueId::MAX)) {
                    if out.len() >= limit {
                        break;
                    }
                    if leases.contains_key(&id) {
                        continue;
                    }
                    leases.insert(id, now.saturating_add(lease_seconds));
                    out.push(id);
                }
                out
            };
            let mut entries = Vec::with_capacity(due.len());
            for id in due {
                if let Some(value) = e.queue.get(keys::u64_key(id))? {
                    entries.push(from_json("queue entry", &value)?);
                }
            }
            Ok(entries)
        })
        .await
    }

    async fn queue_renew(&self, ids: Vec<QueueId>, now: i64, lease_seconds: i64) -> StoreResult<()> {
        // Leases live in this process: every one held is this process's.
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            if let Some(until) = leases.get_mut(&id)
                && *until > now
            {
                *until = now.saturating_add(lease_seconds);
            }
        }
        Ok(())
    }

    async fn queue_update(
        &self,
        id: QueueId,
        updates: Vec<(usize, QueuedRecipient)>,
    ) -> StoreResult<Option<QueueEntry>> {
        let result = self.write(Op::QueueUpdate(id, updates)).await;
        self.leases.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        match result? {
            OpResult::Queue(entry) => Ok(entry.map(|e| *e)),
            _ => unexpected(),
        }
    }

    async fn queue_get(&self, id: QueueId) -> StoreResult<Option<QueueEntry>> {
        self.read(move |e| e.queue.get(keys::u64_key(id))?.map(|v| from_json("queue entry", &v)).transpose()).await
    }

    async fn queue_list(&self) -> StoreResult<Vec<QueueEntry>> {
        self.read(|e| e.list_json(&e.queue, "queue entry")).await
    }

    async fn queue_stats(&self) -> StoreResult<QueueStats> {
        self.read(|e| {
            let messages = e.due.lock().unwrap_or_else(|p| p.into_inner()).len();
            // Ids grow with time: the first entry is the oldest.
            let oldest = match e.queue.first_key_value() {
                Some(item) => {
                    let entry: QueueEntry = from_json("queue entry", &item.value()?)?;
                    Some(entry.message.created)
                }
                None => None,
            };
            Ok(QueueStats { messages, oldest })
        })
        .await
    }

    async fn queue_next_due(&self) -> StoreResult<Option<i64>> {
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let index = self.engine.due.lock().unwrap_or_else(|p| p.into_inner());
        for &(at, id) in index.iter() {
            match leases.get(&id) {
                // A held entry is due again at the latest when its lease ends.
                Some(until) if *until > at => continue,
                _ => return Ok(Some(at)),
            }
        }
        Ok(None)
    }

    async fn queue_retry(&self, id: Option<QueueId>, now: i64) -> StoreResult<usize> {
        match self.write(Op::QueueRetry(id, now)).await? {
            OpResult::Count(n) => Ok(n),
            _ => unexpected(),
        }
    }

    async fn queue_remove(&self, id: QueueId) -> StoreResult<bool> {
        match self.write(Op::QueueRemove(id)).await? {
            OpResult::Bool(b) => Ok(b),
            _ => unexpected(),
        }
    }
}

#[async_trait]
impl ScriptStore for EmbeddedStore {
    async fn sieve_list(&self, account: AccountId) -> StoreResult<Vec<SieveScriptInfo>> {
        self.read(move |e| {
            let active = e.sieve.get(keys::sieve_active_key(account))?;
            let prefix = keys::sieve_script_key(account, "");
            let mut out = Vec::new();
            for item in e.sieve.prefix(&prefix) {
                let (key, value) = item.into_inner()?;
                let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                let is_active = active.as_deref() == Some(name.as_bytes());
                out.push(SieveScriptInfo { name, active: is_active, size: value.len() as u64 });
            }
            Ok(out)
        })
        .await
    }

    async fn sieve_get(&self, account: AccountId, name: &str) -> StoreResult<Option<String>> {
        let key = keys::sieve_script_key(account, name);
        self.read(move |e| Ok(e.sieve.get(&key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))).await
    }

    async fn sieve_active(&self, account: AccountId) -> StoreResult<Option<(String, String)>> {
        self.read(move |e| {
            let Some(name) = e.sieve.get(keys::sieve_active_key(account))? else { return Ok(None) };
            let name = String::from_utf8_lossy(&name).into_owned();
            let source = e.sieve.get(keys::sieve_script_key(account, &name))?;
            Ok(source.map(|s| (name, String::from_utf8_lossy(&s).into_owned())))
        })
        .await
    }

    async fn sieve_put(&self, account: AccountId, name: &str, source: &str) -> StoreResult<()> {
        let op = Op::Sieve(account, SieveOp::Put(name.to_string(), source.to_string()));
        self.write(op).await.map(|_| ())
    }

    async fn sieve_activate(&self, account: AccountId, name: Option<&str>) -> StoreResult<()> {
        self.write(Op::Sieve(account, SieveOp::Activate(name.map(str::to_string)))).await.map(|_| ())
    }

    async fn sieve_delete(&self, account: AccountId, name: &str) -> StoreResult<()> {
        self.write(Op::Sieve(account, SieveOp::Delete(name.to_string()))).await.map(|_| ())
    }

    async fn sieve_rename(&self, account: AccountId, from: &str, to: &str) -> StoreResult<()> {
        self.write(Op::Sieve(account, SieveOp::Rename(from.to_string(), to.to_string()))).await.map(|_| ())
    }

    async fn sieve_seen(&self, account: AccountId, id: &str, now: i64) -> StoreResult<bool> {
        let key = keys::sieve_seen_key(account, Some(id));
        self.read(move |e| Ok(e.sieve.get(&key)?.is_some_and(|v| writer::read_expiry(&v) >= now))).await
    }

    async fn sieve_remember(&self, account: AccountId, ids: Vec<(String, i64)>) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(Op::Sieve(account, SieveOp::Remember(ids))).await.map(|_| ())
    }
}

#[async_trait]
impl FilterStore for EmbeddedStore {
    async fn quarantine_put(&self, entry: QuarantineEntry, raw: Vec<u8>) -> StoreResult<u64> {
        match self.write(Op::QuarantinePut(Box::new(entry), raw)).await? {
            OpResult::Id(id) => Ok(id),
            _ => unexpected(),
        }
    }

    async fn quarantine_list(&self) -> StoreResult<Vec<QuarantineEntry>> {
        self.read(|e| {
            let mut out = Vec::new();
            for item in e.quarantine.prefix(b"e") {
                out.push(from_json("quarantine entry", &item.value()?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn quarantine_get(&self, id: u64) -> StoreResult<Option<(QuarantineEntry, Vec<u8>)>> {
        self.read(move |e| {
            let Some(entry) = e.quarantine.get(keys::quarantine_key(id, b'e'))? else { return Ok(None) };
            let raw = e.quarantine.get(keys::quarantine_key(id, b'm'))?.map(|v| v.to_vec()).unwrap_or_default();
            Ok(Some((from_json("quarantine entry", &entry)?, raw)))
        })
        .await
    }

    async fn quarantine_remove(&self, id: u64) -> StoreResult<bool> {
        match self.write(Op::QuarantineRemove(id)).await? {
            OpResult::Bool(b) => Ok(b),
            _ => unexpected(),
        }
    }

    async fn quarantine_release(&self, id: u64, delivery: Delivery) -> StoreResult<Option<DeliveryReceipt>> {
        match self.write(Op::QuarantineRelease(id, Box::new(delivery))).await? {
            OpResult::Receipt(r) => Ok(Some(r)),
            OpResult::Bool(false) => Ok(None),
            _ => unexpected(),
        }
    }

    async fn quarantine_expire(&self, now: i64) -> StoreResult<usize> {
        let expired: Vec<u64> =
            self.quarantine_list().await?.into_iter().filter(|q| q.expires_at < now).map(|q| q.id).collect();
        let mut removed = 0;
        for id in expired {
            if self.quarantine_remove(id).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn spam_model(&self, owner: SpamModelOwner) -> StoreResult<SpamModelData> {
        self.read(move |e| {
            let mut data = SpamModelData::default();
            if let Some(v) = e.spam.get(keys::spam_key(owner, b'n', &[]))? {
                data.spam_learned = keys::read_u64(&v).unwrap_or(0);
                data.ham_learned = v.get(8..).and_then(keys::read_u64).unwrap_or(0);
            }
            let prefix = keys::spam_key(owner, b'f', &[]);
            for item in e.spam.prefix(&prefix) {
                let (key, value) = item.into_inner()?;
                let (Some(hash), Some(spam), Some(ham)) = (
                    key.get(prefix.len()..).and_then(keys::read_u64),
                    value.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes),
                    value.get(4..8).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes),
                ) else {
                    return Err(StoreError::corrupt("spam feature", "short key or value"));
                };
                data.features.push((hash, spam, ham));
            }
            Ok(data)
        })
        .await
    }

    async fn spam_models(&self) -> StoreResult<Vec<(SpamModelOwner, u64, u64)>> {
        self.read(|e| {
            let mut out = Vec::new();
            for item in e.spam.prefix(b"T") {
                let (key, value) = item.into_inner()?;
                let Some(owner) = key.get(1..).and_then(keys::read_spam_owner) else { continue };
                let spam = keys::read_u64(&value).unwrap_or(0);
                let ham = value.get(8..).and_then(keys::read_u64).unwrap_or(0);
                out.push((owner, spam, ham));
            }
            Ok(out)
        })
        .await
    }

    async fn spam_lesson(&self, owner: SpamModelOwner, message: BlobHash) -> StoreResult<Option<SpamClass>> {
        self.read(move |e| {
            Ok(e.spam.get(keys::spam_key(owner, b'l', &message.0))?.and_then(|v| match v.first() {
                Some(b's') => Some(SpamClass::Spam),
                Some(b'h') => Some(SpamClass::Ham),
                _ => None,
            }))
        })
        .await
    }

    async fn spam_model_update(&self, update: SpamModelUpdate) -> StoreResult<()> {
        self.write(Op::SpamModelUpdate(Box::new(update))).await.map(|_| ())
    }
}

impl ChangeFeed for EmbeddedStore {
    fn subscribe(&self) -> broadcast::Receiver<StoreChange> {
        self.changes.subscribe()
    }

    fn on_change(&self, hook: crate::ChangeHook) {
        self.hooks.write().unwrap_or_else(|p| p.into_inner()).push(hook);
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn backup(&self, dir: std::path::PathBuf) -> StoreResult<BackupSummary> {
        self.read(move |e| e.backup(&dir)).await
    }

    fn is_healthy(&self) -> bool {
        !self.closed.load(Ordering::Relaxed) && !self.tx.is_closed() && self.healthy.load(Ordering::Relaxed)
    }

    async fn shutdown(&self) -> StoreResult<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.stop_indexer.store(true, Ordering::SeqCst);
        let indexer = self.indexer.lock().ok().and_then(|mut h| h.take());
        if let Some(indexer) = indexer {
            let _ = tokio::task::spawn_blocking(move || indexer.join()).await;
        }
        let result = self.write(Op::Shutdown).await.map(|_| ());
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?
                .map_err(|_| StoreError::Task("store writer panicked".into()))?;
        }
        result
    }
}

/// fjall's errors become the backend-neutral [`StoreError::Backend`], in words (fjall's own
/// Display is its Debug form).
impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> StoreError {
        StoreError::Backend(match e {
            fjall::Error::Io(io) => io.to_string(),
            fjall::Error::Locked => "the store is in use by another process".to_string(),
            other => format!("{other:?}"),
        })
    }
}

#[cfg(test)]
mod tests;
