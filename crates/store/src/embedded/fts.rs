//! Keeping the full-text index in step with the store.
//!
//! New contents are queued in `fts_pending` by the same batch that stores them, freed ones
//! in `fts_removed`. A background thread indexes the queue, commits the index, and only then
//! removes the entries. A search reads the pending set *before* querying the index: a
//! content not pending at that moment is already committed to the index, and a pending one
//! is scanned by the caller, so answers are exact however far the index lags.
//!
//! Both keyspaces are mirrored in memory ([`FtsQueue`]): every indexed entry leaves a
//! tombstone, and reading the keyspaces meant scanning 100,000 of them per SEARCH after a
//! large delivery. The writer updates the mirror before it commits the batch that queues a
//! content, so a session can never see a message whose content is neither pending nor indexed.

use super::Engine;
use super::writer::{Op, Request};
use crate::model::{BlobHash, TextMatches};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tern_fts::{FtsIndex, MAX_TEXT, Scope};
use tokio::sync::{mpsc, oneshot};

/// Value of a pending entry whose text is too large to index: it is always scanned.
pub(crate) const SCAN_ONLY: &[u8] = b"scan";
/// Bump when what is indexed changes; a different version rebuilds the index.
const INDEX_VERSION: &str = "1";
/// Contents indexed into one commit at most, and how long after the first of them the commit
/// comes at the latest. Every commit makes a segment that tantivy merges with others later:
/// committing every 256 contents cost ~40 % more CPU per message than every 2,048 (measured
/// with `cargo run --release -p tern-fts --example index_cost`). Searches scan what is not
/// committed yet, so answers stay exact.
const COMMIT_DOCS: usize = 2048;
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Opens the index in `dir`, rebuilding it (queueing every content) when it is new or of
/// another version.
pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<FtsIndex, String> {
    let version_file = dir.join("tern-fts-version");
    let current = std::fs::read_to_string(&version_file).ok();
    let rebuild = current.as_deref() != Some(INDEX_VERSION);
    if rebuild && dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("cannot reset {}: {e}", dir.display()))?;
    }
    let index = FtsIndex::open(dir).map_err(|e| e.to_string())?;
    if rebuild {
        let mut queued = 0usize;
        for item in engine.blob_refs.iter() {
            let key = item.key().map_err(|e| e.to_string())?;
            if let Some(h) = hash_of(&key) {
                engine.fts_queue().add(h);
            }
            engine.fts_pending.insert(key, Vec::<u8>::new()).map_err(|e| e.to_string())?;
            queued += 1;
        }
        std::fs::write(&version_file, INDEX_VERSION).map_err(|e| e.to_string())?;
        if queued > 0 {
            tracing::info!(queued, "full-text index (re)built in the background");
        }
    }
    Ok(index)
}

/// What the indexer has to do, in memory (see the module documentation).
#[derive(Default)]
pub(crate) struct FtsQueue {
    pending: HashMap<BlobHash, Pending>,
    removed: HashSet<BlobHash>,
    /// Numbers each queueing, so the indexer never drops a content queued again while it
    /// was indexing the previous copy.
    generation: u64,
    /// The pending set as searches last read it, until it changes (a SEARCH with 50 BODY
    /// keys reads it 50 times).
    snapshot: Option<Arc<tern_fts::KeySet<BlobHash>>>,
}

#[derive(Clone, Copy)]
struct Pending {
    generation: u64,
    /// Too large to index: always scanned.
    scan_only: bool,
}

/// A content the indexer took, with the generation it was queued under.
pub(crate) type Taken = (BlobHash, u64);

impl FtsQueue {
    /// Loads the keyspaces once, at startup.
    pub(crate) fn load(pending: &fjall::Keyspace, removed: &fjall::Keyspace) -> fjall::Result<FtsQueue> {
        let mut q = FtsQueue::default();
        for item in pending.iter() {
            let (key, value) = item.into_inner()?;
            if let Some(h) = hash_of(&key) {
                q.generation += 1;
                q.pending.insert(h, Pending { generation: q.generation, scan_only: !value.is_empty() });
            }
        }
        for item in removed.iter() {
            if let Some(h) = hash_of(&item.key()?) {
                q.removed.insert(h);
            }
        }
        Ok(q)
    }

    /// A content to index. A pending removal of the same content is dropped: indexing it
    /// replaces any older document anyway.
    pub(crate) fn add(&mut self, hash: BlobHash) {
        self.snapshot = None;
        self.generation += 1;
        self.pending.insert(hash, Pending { generation: self.generation, scan_only: false });
        self.removed.remove(&hash);
    }

    /// A content that was freed: its document is to be deleted.
    pub(crate) fn free(&mut self, hash: BlobHash) {
        self.snapshot = None;
        self.pending.remove(&hash);
        self.removed.insert(hash);
    }

    /// Up to `limit` contents to index and `4 × limit` documents to delete, leaving out the
    /// ones taken already (indexed, not committed yet).
    fn take(&self, limit: usize, taken: &HashSet<BlobHash>) -> (Vec<Taken>, Vec<BlobHash>) {
        let pending = self
            .pending
            .iter()
            .filter(|(h, p)| !p.scan_only && !taken.contains(h))
            .take(limit)
            .map(|(h, p)| (*h, p.generation))
            .collect();
        let removed = self.removed.iter().filter(|h| !taken.contains(h)).take(limit * 4).copied().collect();
        (pending, removed)
    }

    /// The indexer committed this work; returns which contents leave `fts_pending` and which
    /// stay there as scan-only (those queued again meanwhile stay pending).
    pub(crate) fn done(
        &mut self,
        indexed: &[Taken],
        scan_only: &[Taken],
        removed: &[BlobHash],
    ) -> (Vec<BlobHash>, Vec<BlobHash>) {
        self.snapshot = None;
        let mut dropped = Vec::new();
        for (h, generation) in indexed {
            if self.pending.get(h).is_some_and(|p| p.generation == *generation) {
                self.pending.remove(h);
                dropped.push(*h);
            }
        }
        let mut scan = Vec::new();
        for (h, generation) in scan_only {
            if let Some(p) = self.pending.get_mut(h)
                && p.generation == *generation
            {
                p.scan_only = true;
                scan.push(*h);
            }
        }
        for h in removed {
            self.removed.remove(h);
        }
        (dropped, scan)
    }

    /// Every content the index cannot answer for yet.
    fn unindexed(&mut self) -> Arc<tern_fts::KeySet<BlobHash>> {
        let pending = &self.pending;
        Arc::clone(self.snapshot.get_or_insert_with(|| Arc::new(pending.keys().copied().collect())))
    }
}

fn hash_of(key: &[u8]) -> Option<BlobHash> {
    Some(BlobHash(key.try_into().ok()?))
}

/// Background work runs under `SCHED_IDLE`: it gets a CPU only when no session wants one, and
/// a session thread that wakes takes the CPU from it at once. Nice 15 (what it was) still gave
/// an indexing thread that held a CPU the rest of its slice before a woken session ran, which
/// showed in the SMTP benchmark's p99.
#[cfg(target_os = "linux")]
fn run_only_when_idle(tid: libc::pid_t) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler only reads its arguments; with a thread id Linux changes the
    // policy of that one thread.
    if unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) } != 0 {
        tracing::debug!(tid, "could not lower a background thread's priority");
    }
}

/// This thread, and tantivy's indexing and merge threads (found by name in /proc), which
/// do most of the work.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        run_only_when_idle(unsafe { libc::gettid() });
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return };
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let background = comm.starts_with("thrd-tantivy")
                || comm.starts_with("merge_thread")
                || comm.starts_with("segment_updater");
            if background && let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
                run_only_when_idle(tid);
            }
        }
    }
}

/// The indexer thread: runs until `stop`.
pub(crate) fn run(engine: Arc<Engine>, index: Arc<FtsIndex>, writer: mpsc::Sender<Request>, stop: Arc<AtomicBool>) {
    lower_priority();
    let mut work = Uncommitted::default();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let room = COMMIT_DOCS.saturating_sub(work.indexed.len() + work.scan_only.len());
        let (pending, removed) =
            if stopping || room == 0 { Default::default() } else { engine.fts_queue().take(room, &work.taken) };
        let idle = pending.is_empty() && removed.is_empty();
        for (h, generation) in pending {
            work.taken.insert(h);
            match engine.blob(&h) {
                Ok(Some(raw)) => {
                    let Some((header, body)) = tern_mime::text::search_texts_within(&raw, MAX_TEXT) else {
                        work.scan_only.push((h, generation));
                        continue;
                    };
                    drop(raw);
                    if let Err(e) = index.add(&h.0, &header, &body) {
                        tracing::warn!(error = %e, "cannot index a message");
                        continue;
                    }
                    work.indexed.push((h, generation));
                }
                // Freed meanwhile: nothing to index.
                Ok(None) => work.indexed.push((h, generation)),
                Err(e) => tracing::warn!(error = %e, "cannot read a message to index"),
            }
        }
        for h in removed {
            index.delete(&h.0);
            work.taken.insert(h);
            work.removed.push(h);
        }
        let due = work.started.is_some_and(|t| t.elapsed() >= COMMIT_INTERVAL) || room == 0 || stopping;
        if !work.taken.is_empty() {
            work.started.get_or_insert_with(Instant::now);
        }
        if work.taken.is_empty() || !due {
            if stopping {
                break;
            }
            if idle {
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        // tantivy starts new worker threads after a commit: keep them all in the background.
        if let Err(e) = index.commit() {
            tracing::error!(error = %e, "full-text index commit failed; retrying");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        lower_priority();
        metrics::counter!("tern_fts_indexed_total").increment(work.indexed.len() as u64);
        let done = std::mem::take(&mut work);
        let (reply, answered) = oneshot::channel();
        let op = Op::FtsDone { indexed: done.indexed, scan_only: done.scan_only, removed: done.removed };
        if writer.blocking_send(Request { op, reply }).is_err() {
            break;
        }
        let _ = answered.blocking_recv();
        if stopping {
            break;
        }
    }
}

/// What the indexer did since its last commit.
#[derive(Default)]
struct Uncommitted {
    indexed: Vec<Taken>,
    scan_only: Vec<Taken>,
    removed: Vec<BlobHash>,
    /// Every content of the three lists (not to be taken again before the commit).
    taken: HashSet<BlobHash>,
    /// When the first of them was taken.
    started: Option<Instant>,
}

/// See the module documentation for why the pending set is read first.
pub(crate) fn search(
    engine: &Engine,
    index: &FtsIndex,
    needle: &str,
    with_header: bool,
) -> Result<Option<TextMatches>, String> {
    let unindexed = engine.fts_queue().unindexed();
    let scope = if with_header { Scope::All } else { Scope::Body };
    match index.search(needle, scope).map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(matched) => Ok(Some(TextMatches { matched, unindexed })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> BlobHash {
        BlobHash([n; 32])
    }

    #[test]
    fn contents_taken_before_the_commit_are_not_taken_again() {
        let mut q = FtsQueue::default();
        q.add(h(5));
        q.add(h(6));
        q.free(h(7));
        let mut taken = HashSet::new();
        let (pending, removed) = q.take(1, &taken);
        taken.extend(pending.iter().map(|(h, _)| *h).chain(removed.iter().copied()));
        let (more, removed_again) = q.take(10, &taken);
        assert_eq!(more.len(), 1, "only the one not taken yet");
        assert!(!taken.contains(&more[0].0));
        assert!(removed_again.is_empty());
    }

    #[test]
    fn a_content_queued_again_while_indexing_stays_pending() {
        let none = HashSet::new();
        let mut q = FtsQueue::default();
        q.add(h(1));
        let (taken, _) = q.take(10, &none);
        assert_eq!(taken.len(), 1);
        q.add(h(1)); // stored again (freed and re-delivered) while the indexer worked
        let (dropped, _) = q.done(&taken, &[], &[]);
        assert!(dropped.is_empty());
        assert!(q.unindexed().contains(&h(1)));
        let (taken, _) = q.take(10, &none);
        let (dropped, _) = q.done(&taken, &[], &[]);
        assert_eq!(dropped, vec![h(1)]);
        assert!(q.unindexed().is_empty());
    }

    #[test]
    fn freeing_and_requeueing() {
        let none = HashSet::new();
        let mut q = FtsQueue::default();
        q.add(h(2));
        q.free(h(2));
        assert!(q.unindexed().is_empty());
        assert_eq!(q.take(10, &none), (vec![], vec![h(2)]));
        // Delivered again before the removal ran: indexing replaces the old document, and
        // the removal must not delete the new one.
        q.add(h(2));
        let (pending, removed) = q.take(10, &none);
        assert_eq!(pending.len(), 1);
        assert!(removed.is_empty());
        // Too large to index: stays pending for good, as scan-only, and is not taken again.
        let (dropped, scan) = q.done(&[], &pending, &[]);
        assert!(dropped.is_empty());
        assert_eq!(scan, vec![h(2)]);
        assert!(q.unindexed().contains(&h(2)));
        assert_eq!(q.take(10, &none), (vec![], vec![]));
    }
}
