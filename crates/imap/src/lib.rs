//! The IMAP service: IMAP4rev2 (RFC 9051) for clients that enable it, IMAP4rev1 (RFC 3501)
//! behaviour for the others, and the extensions real clients use.

mod compress;
pub mod mailbox;
pub mod notify;
pub mod search;
pub mod section;
mod session;

use notify::Notifier;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tern_directory::Directory;
use tern_guard::{AuthGuard, ComputePool, ConnectionLimits};
use tern_mime::MessageSummary;
use tern_store::{BlobHash, Store, StoreResult};
use tern_tls::TlsAcceptor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// IMAP settings from the configuration.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub hostname: String,
    /// Autologout after authentication.
    pub timeout: Duration,
    /// Time allowed to log in.
    pub login_timeout: Duration,
    pub idle_keepalive: Duration,
    /// Largest message APPEND accepts (advertised as APPENDLIMIT).
    pub append_limit: u64,
    pub plaintext_on_loopback: bool,
    /// Memory for cached message summaries.
    pub summary_cache_bytes: usize,
    /// Budget of one SEARCH, SORT or THREAD on the compute pool.
    pub command_time_limit: Duration,
    /// Load balancers that send PROXY headers (`listen.proxy_from`).
    pub proxy_from: Vec<tern_config::Cidr>,
    /// How often long commands report progress (RFC 9585); `None`: never.
    pub progress_every: Option<Duration>,
}

impl ImapSettings {
    pub fn from_config(config: &tern_config::Config) -> ImapSettings {
        ImapSettings {
            proxy_from: config.proxy_from(),
            hostname: config.hostname.clone(),
            timeout: Duration::from_secs(config.imap.timeout_seconds),
            login_timeout: Duration::from_secs(config.imap.login_timeout_seconds),
            idle_keepalive: Duration::from_secs(config.imap.idle_keepalive_seconds),
            append_limit: config.smtp.max_message_size,
            plaintext_on_loopback: config.auth.plaintext_on_loopback,
            summary_cache_bytes: (config.imap.summary_cache_mb as usize).saturating_mul(1024 * 1024),
            command_time_limit: Duration::from_secs(config.imap.command_time_limit_seconds),
            progress_every: (config.imap.progress_interval_ms > 0)
                .then(|| Duration::from_millis(config.imap.progress_interval_ms)),
        }
    }
}

/// Summaries are read for every ENVELOPE, BODYSTRUCTURE, SEARCH and SORT: keep them in memory
/// up to a byte budget. Eviction is random, not first-in-first-out: clients read whole
/// mailboxes in turn, and with a working set larger than the budget a FIFO (or LRU) cache
/// misses every time, while random eviction still hits in proportion to the budget.
struct CacheState<V> {
    map: HashMap<BlobHash, CacheEntry<V>>,
    /// Keys in no order, for picking a victim.
    keys: Vec<BlobHash>,
    bytes: usize,
    budget: usize,
    /// xorshift state for victim choice.
    seed: u64,
}

struct CacheEntry<V> {
    value: Arc<V>,
    slot: usize,
    size: usize,
}

/// Memory a cached value holds besides its own struct.
trait HeapSize {
    fn heap_size(&self) -> usize;
}

impl HeapSize for Summary {
    fn heap_size(&self) -> usize {
        self.message.heap_size() + self.forms.as_ref().map_or(0, |f| f.heap_size())
    }
}

impl HeapSize for SearchFields {
    fn heap_size(&self) -> usize {
        SearchFields::heap_size(self)
    }
}

/// A summary as the IMAP server holds it: the store's summary and, when cached, its ENVELOPE,
/// BODY and BODYSTRUCTURE rendered once when it was read from the store (the store does not
/// know IMAP; a FETCH of these items then copies bytes).
#[derive(Debug)]
pub struct Summary {
    pub message: MessageSummary,
    /// `None` for a full summary: it is read for one FETCH, which renders what it asks for.
    forms: Option<tern_imap_proto::render::ImapForms>,
}

impl Summary {
    /// The summary with its whole MIME tree (section fetches need it); nothing pre-rendered.
    pub fn full(message: MessageSummary) -> Summary {
        Summary { message, forms: None }
    }

    /// What the cache keeps: the forms, rendered from the whole tree, and everything but the
    /// MIME tree below the top level, which only section fetches need (they read the full
    /// summary from the store). That makes an entry about two thirds of the size.
    pub fn hot(mut message: MessageSummary) -> Summary {
        let forms = tern_imap_proto::render::ImapForms::of(&message);
        message.body.kind = tern_mime::PartKind::Leaf;
        Summary { message, forms: Some(forms) }
    }

    /// The pre-rendered forms when they are what this client gets: not for a full summary, and
    /// not for a UTF-8 client when the message has 8-bit text (it gets quoted strings).
    pub fn forms_for(&self, utf8: bool) -> Option<&tern_imap_proto::render::ImapForms> {
        self.forms.as_ref().filter(|f| !(utf8 && f.eight_bit))
    }
}

/// Per-entry bookkeeping on top of the value itself (map entry, key slot, Arc).
const CACHE_ENTRY_OVERHEAD: usize = 128;

impl<V: HeapSize> CacheState<V> {
    fn new(budget: usize) -> CacheState<V> {
        CacheState { map: HashMap::new(), keys: Vec::new(), bytes: 0, budget, seed: 0x9E37_79B9_7F4A_7C15 }
    }

    fn get(&self, hash: &BlobHash) -> Option<Arc<V>> {
        self.map.get(hash).map(|e| Arc::clone(&e.value))
    }

    fn insert(&mut self, hash: BlobHash, value: Arc<V>) {
        if self.map.contains_key(&hash) {
            return;
        }
        let size = value.heap_size() + std::mem::size_of::<V>() + CACHE_ENTRY_OVERHEAD;
        while self.bytes + size > self.budget && !self.keys.is_empty() {
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            let victim = (self.seed % self.keys.len() as u64) as usize;
            let key = self.keys.swap_remove(victim);
            if let Some(moved) = self.keys.get(victim).copied()
                && let Some(e) = self.map.get_mut(&moved)
            {
                e.slot = victim;
            }
            if let Some(e) = self.map.remove(&key) {
                self.bytes -= e.size;
            }
        }
        if size > self.budget {
            return;
        }
        self.keys.push(hash);
        self.map.insert(hash, CacheEntry { value, slot: self.keys.len() - 1, size });
        self.bytes += size;
    }
}

/// What SEARCH compares header keys with, cached apart from the summaries: a tenth of their
/// size, so a 100,000-message mailbox's fields stay in memory while its summaries cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchFields {
    pub search: tern_mime::SearchForms,
    pub sent_day: Option<i64>,
}

impl SearchFields {
    pub fn of(summary: &MessageSummary) -> SearchFields {
        SearchFields { search: summary.search.clone(), sent_day: summary.sent_day }
    }

    fn heap_size(&self) -> usize {
        let s = &self.search;
        s.subject.capacity() + s.from.capacity() + s.to.capacity() + s.cc.capacity() + s.bcc.capacity()
    }
}

/// The summary cache, and the search-field cache beside it: the configured budget for
/// summaries, and a quarter of it more for search fields (taking it from the summaries made
/// 32 sessions over 64,000 messages thrash again). No code holds both locks at
/// once (holding them in two orders deadlocked the runtime).
pub(crate) struct SummaryCache {
    summaries: Mutex<CacheState<Summary>>,
    fields: Mutex<CacheState<SearchFields>>,
}

fn lock<V>(m: &Mutex<CacheState<V>>) -> std::sync::MutexGuard<'_, CacheState<V>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SummaryCache {
    fn new(budget_bytes: usize) -> SummaryCache {
        SummaryCache {
            summaries: Mutex::new(CacheState::new(budget_bytes)),
            fields: Mutex::new(CacheState::new(budget_bytes / 4)),
        }
    }

    /// Loads every summary of `hashes` that is not cached yet, in one store call per chunk.
    pub(crate) async fn prefetch(&self, store: &Arc<dyn Store>, hashes: &[BlobHash]) -> StoreResult<()> {
        let missing: Vec<BlobHash> = {
            let guard = lock(&self.summaries);
            let mut seen = std::collections::HashSet::new();
            hashes.iter().filter(|h| !guard.map.contains_key(*h) && seen.insert(**h)).copied().collect()
        };
        for chunk in missing.chunks(1024) {
            let loaded = store.summary_get_many(chunk.to_vec()).await?;
            self.insert_loaded(chunk, loaded);
        }
        Ok(())
    }

    /// Caches summaries read from the store, and their search fields.
    fn insert_loaded(&self, hashes: &[BlobHash], loaded: Vec<Option<MessageSummary>>) {
        let mut fields = Vec::with_capacity(hashes.len());
        {
            let mut summaries = lock(&self.summaries);
            for (hash, summary) in hashes.iter().zip(loaded) {
                if let Some(s) = summary {
                    fields.push((*hash, Arc::new(SearchFields::of(&s))));
                    summaries.insert(*hash, Arc::new(Summary::hot(s)));
                }
            }
        }
        let mut cache = lock(&self.fields);
        for (hash, f) in fields {
            cache.insert(hash, f);
        }
    }

    /// The summary without the MIME tree below the top level (enough for ENVELOPE,
    /// BODYSTRUCTURE, SEARCH, SORT, THREAD and whole-message sections).
    pub(crate) async fn get(&self, store: &Arc<dyn Store>, hash: BlobHash) -> StoreResult<Option<Arc<Summary>>> {
        if let Some(summary) = lock(&self.summaries).get(&hash) {
            return Ok(Some(summary));
        }
        let Some(summary) = store.summary_get(hash).await? else { return Ok(None) };
        let summary = Arc::new(Summary::hot(summary));
        lock(&self.fields).insert(hash, Arc::new(SearchFields::of(&summary.message)));
        lock(&self.summaries).insert(hash, Arc::clone(&summary));
        Ok(Some(summary))
    }

    /// The search fields of each of `hashes` (`None` for a content without a summary). Misses
    /// are read from the store in batches and only fill the field cache: one large SEARCH
    /// does not push every other session's summaries out.
    pub(crate) async fn search_fields(
        &self,
        store: &Arc<dyn Store>,
        hashes: &[BlobHash],
    ) -> StoreResult<Vec<Option<Arc<SearchFields>>>> {
        let (mut out, missing) = self.cached_fields(hashes);
        for chunk in missing.chunks(1024) {
            let loaded = store.summary_get_many(chunk.iter().map(|&i| hashes[i]).collect()).await?;
            let mut fields = lock(&self.fields);
            for (&i, summary) in chunk.iter().zip(loaded) {
                if let Some(s) = summary {
                    let f = Arc::new(SearchFields::of(&s));
                    fields.insert(hashes[i], Arc::clone(&f));
                    out[i] = Some(f);
                }
            }
        }
        Ok(out)
    }

    /// The search fields the caches hold for `hashes`, and the positions of those they lack.
    #[allow(clippy::type_complexity)]
    fn cached_fields(&self, hashes: &[BlobHash]) -> (Vec<Option<Arc<SearchFields>>>, Vec<usize>) {
        let mut out: Vec<Option<Arc<SearchFields>>> = Vec::with_capacity(hashes.len());
        let mut missing = Vec::new();
        // One lock at a time, here as everywhere: the two caches are never held together.
        {
            let fields = lock(&self.fields);
            out.extend(hashes.iter().map(|h| fields.get(h)));
        }
        {
            let summaries = lock(&self.summaries);
            for (i, h) in hashes.iter().enumerate() {
                if out[i].is_none() {
                    out[i] = summaries.get(h).map(|s| Arc::new(SearchFields::of(&s.message)));
                    if out[i].is_none() {
                        missing.push(i);
                    }
                }
            }
        }
        (out, missing)
    }

    /// The whole summary, MIME tree included (for BODY[part], BINARY and re-rendered body
    /// structures); read from the store, not cached.
    pub(crate) async fn get_full(&self, store: &Arc<dyn Store>, hash: BlobHash) -> StoreResult<Option<Arc<Summary>>> {
        Ok(store.summary_get(hash).await?.map(|s| Arc::new(Summary::full(s))))
    }
}

/// Told when a user files messages as spam or as not spam, so that the spam classifier learns
/// from it: moved or copied into the Junk mailbox, or `$Junk` set (spam); moved or copied out
/// of Junk into anything but Trash, or `$NotJunk` set (ham). Called after the change is
/// committed; it must not block.
pub trait JunkFeedback: Send + Sync {
    fn filed(&self, account: tern_store::AccountId, messages: Vec<tern_store::MessageEntry>, spam: bool);
}

pub struct ImapServer {
    pub(crate) settings: ImapSettings,
    pub(crate) junk_feedback: std::sync::OnceLock<Arc<dyn JunkFeedback>>,
    pub(crate) directory: Directory,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tls: Option<TlsAcceptor>,
    limits: Arc<ConnectionLimits>,
    pub(crate) auth: Arc<AuthGuard>,
    pub(crate) notifier: Arc<Notifier>,
    pub(crate) summaries: SummaryCache,
    /// Where SEARCH, SORT and THREAD compute.
    pub(crate) compute: Arc<ComputePool>,
    /// Memory for APPENDed messages, shared with SMTP (`smtp.max_inflight_bytes`).
    pub(crate) memory: Arc<tern_guard::MessageMemory>,
    pub(crate) shutdown: CancellationToken,
    tracker: TaskTracker,
    next_session: AtomicU64,
}

impl ImapServer {
    pub fn new(
        settings: ImapSettings,
        directory: Directory,
        tls: Option<TlsAcceptor>,
        limits: Arc<ConnectionLimits>,
        auth: Arc<AuthGuard>,
        memory: Arc<tern_guard::MessageMemory>,
        shutdown: CancellationToken,
    ) -> Arc<ImapServer> {
        let store = Arc::clone(directory.store());
        let notifier = Arc::new(Notifier::default());
        let hook = Arc::clone(&notifier);
        store.on_change(Arc::new(move |change| hook.changed(change)));
        Arc::new(ImapServer {
            summaries: SummaryCache::new(settings.summary_cache_bytes),
            junk_feedback: std::sync::OnceLock::new(),
            compute: ComputePool::for_server(settings.command_time_limit),
            settings,
            directory,
            store,
            tls,
            limits,
            auth,
            notifier,
            memory,
            shutdown,
            tracker: TaskTracker::new(),
            next_session: AtomicU64::new(1),
        })
    }

    /// Where users' spam and not-spam filing is reported (set once, at start).
    pub fn set_junk_feedback(&self, feedback: Arc<dyn JunkFeedback>) {
        let _ = self.junk_feedback.set(feedback);
    }

    /// Accepts connections until shutdown; `implicit_tls` for port 993 (RFC 8314).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, implicit_tls: bool) {
        tern_guard::accept_until_shutdown(
            &listener,
            if implicit_tls { "imaps" } else { "imap" },
            &self.shutdown,
            &self.tracker,
            |stream, peer| {
                let server = Arc::clone(&self);
                async move { server.connection(stream, peer, implicit_tls).await }
            },
        )
        .await
    }

    pub async fn drain(&self) {
        self.tracker.close();
        self.tracker.wait().await;
        self.compute.stop();
    }

    async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream, peer: SocketAddr, implicit_tls: bool) {
        let service = if implicit_tls { "imaps" } else { "imap" };
        let tls = if implicit_tls {
            let Some(acceptor) = self.tls.clone() else { return };
            Some(acceptor)
        } else {
            None
        };
        let refusals = tern_guard::Refusals {
            busy: b"* BYE [UNAVAILABLE] Too many connections\r\n"[..].into(),
            banned: b"* BYE [UNAVAILABLE] Too many failed logins, try later\r\n"[..].into(),
        };
        let gate = tern_guard::Gate {
            protocol: tern_guard::Protocol::Imap,
            service,
            implicit_tls: tls.as_ref(),
            limits: &self.limits,
            auth: &self.auth,
            refusals: &refusals,
            proxy_from: &self.settings.proxy_from,
        };
        let Some(tern_guard::Admitted { stream, client, ticket, .. }) =
            tern_guard::admit(gate, stream, peer, &tern_guard::NoScreen).await
        else {
            return;
        };
        Arc::clone(&self).run_session(stream, client).await;
        drop(ticket);
    }

    /// One IMAP session from the greeting to the end: what every admitted connection runs.
    /// Tests run it in-process on an in-memory stream (`Stream::Wrapped` over a duplex).
    pub async fn run_session(self: Arc<Self>, stream: tern_tls::Stream<tokio::net::TcpStream>, client: SocketAddr) {
        let id = format!("{:x}", self.next_session.fetch_add(1, Ordering::Relaxed));
        let span = tracing::info_span!("imap", sid = %id, client = %client);
        let session = session::Session::new(self, stream, client);
        tracing::Instrument::instrument(session.run(), span).await;
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    fn summary(i: usize) -> (BlobHash, Arc<Summary>) {
        let raw = format!("From: a{i}@example.org\r\nSubject: message number {i}\r\n\r\nbody {i}\r\n");
        (BlobHash::of(raw.as_bytes()), Arc::new(Summary::hot(tern_mime::summarize(raw.as_bytes()))))
    }

    /// Sessions filling the summary cache and sessions searching run at once on the
    /// runtime's threads: the two caches' locks must never be taken in two orders.
    #[test]
    fn filling_and_searching_at_once_never_deadlock() {
        let all: Vec<_> = (0..64).map(summary).collect();
        let one = summary(0).1.heap_size() + std::mem::size_of::<Summary>() + CACHE_ENTRY_OVERHEAD;
        // Small enough that inserts keep evicting.
        let cache = Arc::new(SummaryCache::new(one * 40));
        let hashes: Arc<Vec<BlobHash>> = Arc::new(all.iter().map(|(h, _)| *h).collect());
        let summaries: Arc<Vec<MessageSummary>> = Arc::new(all.iter().map(|(_, s)| s.message.clone()).collect());
        let (done, finished) = std::sync::mpsc::channel();
        for t in 0..4 {
            let (cache, hashes, summaries, done) =
                (Arc::clone(&cache), Arc::clone(&hashes), Arc::clone(&summaries), done.clone());
            std::thread::spawn(move || {
                for round in 0..2000 {
                    if (t + round) % 2 == 0 {
                        cache.insert_loaded(&hashes, summaries.iter().cloned().map(Some).collect());
                    } else {
                        let (found, missing) = cache.cached_fields(&hashes);
                        assert_eq!(found.len(), hashes.len());
                        assert!(missing.len() <= hashes.len());
                    }
                }
                let _ = done.send(());
            });
        }
        for _ in 0..4 {
            finished.recv_timeout(Duration::from_secs(60)).expect("the caches deadlocked");
        }
    }

    /// The cache drops the MIME tree below the top level, but BODYSTRUCTURE still describes
    /// every part: the forms are rendered before the tree is cut.
    #[test]
    fn a_cached_summary_keeps_the_whole_body_structure() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: image/png\r\n\r\nxx\r\n--b--\r\n";
        let whole = tern_imap_proto::render::ImapForms::of(&tern_mime::summarize(raw));
        let hot = Summary::hot(tern_mime::summarize(raw));
        assert!(matches!(hot.message.body.kind, tern_mime::PartKind::Leaf));
        let forms = hot.forms_for(false).expect("a cached summary has its forms");
        assert_eq!(forms, &whole);
        let bodystructure = String::from_utf8_lossy(&forms.bodystructure);
        assert!(bodystructure.contains("\"image\" \"png\""), "{bodystructure}");
        assert!(bodystructure.contains("\"mixed\""), "{bodystructure}");
    }

    #[test]
    fn the_budget_holds_and_cyclic_reads_still_hit() {
        let one = summary(0).1.heap_size() + std::mem::size_of::<Summary>() + CACHE_ENTRY_OVERHEAD;
        let mut cache = CacheState::<Summary>::new(one * 100);
        let all: Vec<_> = (0..150).map(summary).collect();
        // Read the 150 in a cycle, ten times, through a cache that holds about 100.
        let mut hits = 0;
        for _ in 0..10 {
            for (hash, s) in &all {
                if cache.get(hash).is_some() {
                    hits += 1;
                } else {
                    cache.insert(*hash, Arc::clone(s));
                }
            }
        }
        let (entries, bytes) = (cache.map.len(), cache.bytes);
        assert!(bytes <= one * 100 + one, "{bytes} > budget");
        assert!(entries > 80 && entries <= 101, "{entries}");
        // FIFO would hit 0 times here; random eviction keeps a good share.
        assert!(hits > 150 * 10 / 3, "only {hits} hits");
    }
}
