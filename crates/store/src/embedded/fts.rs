//! Keeping the full-text index in step with the store.
//!
//! New contents are queued in `fts_pending` by the same batch that stores them, freed ones
//! in `fts_removed`. A background thread indexes the queue, commits the index, and only then
//! removes the entries. A search reads the pending set *before* querying the index: a
//! content not pending at that moment is already committed to the index, and a pending one
//! is scanned by the caller, so answers are exact however far the index lags.

use super::Engine;
use super::writer::{Op, Request};
use crate::model::{BlobHash, TextMatches};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tern_fts::{FtsIndex, MAX_TEXT, Scope};
use tokio::sync::{mpsc, oneshot};

/// Value of a pending entry whose text is too large to index: it is always scanned.
pub(crate) const SCAN_ONLY: &[u8] = b"scan";
/// Bump when what is indexed changes; a different version rebuilds the index.
const INDEX_VERSION: &str = "1";
const BATCH: usize = 256;

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

fn hash_of(key: &[u8]) -> Option<BlobHash> {
    Some(BlobHash(key.try_into().ok()?))
}

/// Background work runs at nice 15, so indexing yields to sessions when the machine is busy
/// and catches up when it is not.
const NICE: libc::c_int = 15;

#[cfg(target_os = "linux")]
fn renice(tid: libc::pid_t) {
    // SAFETY: setpriority only reads its arguments; with PRIO_PROCESS and a thread id Linux
    // changes the nice value of that one thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE) } != 0 {
        tracing::debug!(tid, "could not lower a background thread's priority");
    }
}

/// This thread, and tantivy's indexing and merge threads (found by name in /proc), which
/// do most of the work.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        renice(unsafe { libc::gettid() });
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return };
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let background = comm.starts_with("thrd-tantivy")
                || comm.starts_with("merge_thread")
                || comm.starts_with("segment_updater");
            if background && let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
                renice(tid);
            }
        }
    }
}

/// The indexer thread: runs until `stop`.
pub(crate) fn run(engine: Arc<Engine>, index: Arc<FtsIndex>, writer: mpsc::Sender<Request>, stop: Arc<AtomicBool>) {
    lower_priority();
    while !stop.load(Ordering::Relaxed) {
        let mut pending = Vec::new();
        for item in engine.fts_pending.iter() {
            let Ok((key, value)) = item.into_inner() else { break };
            if value.is_empty()
                && let Some(h) = hash_of(&key)
            {
                pending.push(h);
                if pending.len() >= BATCH {
                    break;
                }
            }
        }
        let mut removed = Vec::new();
        for item in engine.fts_removed.iter().take(BATCH * 4) {
            if let Ok(key) = item.key()
                && let Some(h) = hash_of(&key)
            {
                removed.push(h);
            }
        }
        if pending.is_empty() && removed.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let mut indexed = Vec::new();
        let mut scan_only = Vec::new();
        for h in pending {
            match engine.blob(&h) {
                Ok(Some(raw)) => {
                    let (header, body) = tern_mime::text::search_texts(&raw);
                    if header.len() > MAX_TEXT || body.len() > MAX_TEXT {
                        scan_only.push(h);
                        continue;
                    }
                    if let Err(e) = index.add(&h.0, &header, &body) {
                        tracing::warn!(error = %e, "cannot index a message");
                        continue;
                    }
                    indexed.push(h);
                }
                // Freed meanwhile: nothing to index.
                Ok(None) => indexed.push(h),
                Err(e) => tracing::warn!(error = %e, "cannot read a message to index"),
            }
        }
        for h in &removed {
            index.delete(&h.0);
        }
        // tantivy starts new worker threads after a commit: keep them all in the background.
        if let Err(e) = index.commit() {
            tracing::error!(error = %e, "full-text index commit failed; retrying");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        lower_priority();
        metrics::counter!("tern_fts_indexed_total").increment(indexed.len() as u64);
        let (reply, done) = oneshot::channel();
        if writer.blocking_send(Request { op: Op::FtsDone { indexed, scan_only, removed }, reply }).is_err() {
            break;
        }
        let _ = done.blocking_recv();
    }
}

/// See the module documentation for why the pending set is read first.
pub(crate) fn search(
    engine: &Engine,
    index: &FtsIndex,
    needle: &str,
    with_header: bool,
) -> Result<Option<TextMatches>, String> {
    let mut unindexed = HashSet::new();
    for item in engine.fts_pending.iter() {
        let key = item.key().map_err(|e| e.to_string())?;
        if let Some(h) = hash_of(&key) {
            unindexed.insert(h);
        }
    }
    let scope = if with_header { Scope::All } else { Scope::Body };
    match index.search(needle, scope).map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(matched) => Ok(Some(TextMatches { matched, unindexed })),
    }
}
