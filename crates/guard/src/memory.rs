//! The memory that message data may take, process-wide.
//!
//! Every byte of a message that a session holds in memory is reserved against one budget
//! (`smtp.max_inflight_bytes`), by the capacity of the buffer that holds it: a growing buffer
//! briefly holds its old and its new contents, and its capacity is what that costs at most.
//! When the budget is spent, the data goes on arriving into a spool file instead of being
//! refused; once it is complete, the session waits (holding nothing) until the budget can take
//! the whole message, then reads it back. Memory stays bounded, the sender gets its `250` a
//! little later rather than a `452`, and no session can hold part of the budget while waiting
//! for more (which could deadlock).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Reservations are counted in KiB (a semaphore has fewer permits than a u64 has bytes).
const UNIT: u64 = 1024;

/// The process-wide budget for message data in memory, and where data beyond it is spooled.
pub struct MessageMemory {
    permits: Arc<Semaphore>,
    units: u64,
    spool_dir: PathBuf,
}

impl MessageMemory {
    pub fn new(bytes: u64, spool_dir: PathBuf) -> Arc<MessageMemory> {
        let units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS as u64);
        Arc::new(MessageMemory { permits: Arc::new(Semaphore::new(units as usize)), units, spool_dir })
    }

    /// Bytes of the budget not reserved now.
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }

    pub fn capacity(&self) -> u64 {
        self.units * UNIT
    }

    pub fn spool_dir(&self) -> &Path {
        &self.spool_dir
    }

    /// Removes spool files a previous run left (their messages were never accepted).
    pub fn clear_spool(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.spool_dir)?;
        for entry in std::fs::read_dir(&self.spool_dir)? {
            std::fs::remove_file(entry?.path())?;
        }
        Ok(())
    }
}

/// Part of the budget held by one session.
pub struct Reservation {
    memory: Arc<MessageMemory>,
    permit: Option<OwnedSemaphorePermit>,
    units: u64,
}

impl Reservation {
    pub fn new(memory: &Arc<MessageMemory>) -> Reservation {
        Reservation { memory: Arc::clone(memory), permit: None, units: 0 }
    }

    /// Bytes reserved.
    pub fn bytes(&self) -> u64 {
        self.units * UNIT
    }

    /// Grows the reservation to `bytes` if the budget has them now.
    pub fn try_cover(&mut self, bytes: usize) -> bool {
        let need = (bytes as u64).div_ceil(UNIT);
        if need <= self.units {
            return true;
        }
        let more = (need - self.units).min(u32::MAX as u64) as u32;
        match Arc::clone(&self.memory.permits).try_acquire_many_owned(more) {
            Ok(p) => {
                self.add(p, need);
                true
            }
            Err(_) => false,
        }
    }

    /// Waits until the budget can give `bytes` (capped at the whole budget). Only an empty
    /// reservation may wait: one that held some of the budget while waiting for more could
    /// wait forever on others doing the same.
    pub async fn cover_waiting(&mut self, bytes: u64, deadline: Instant) -> bool {
        debug_assert_eq!(self.units, 0, "only an empty reservation waits");
        self.release();
        let need = bytes.div_ceil(UNIT).clamp(1, self.memory.units);
        let acquire = Arc::clone(&self.memory.permits).acquire_many_owned(need.min(u32::MAX as u64) as u32);
        match tokio::time::timeout_at(deadline, acquire).await {
            Ok(Ok(p)) => {
                self.add(p, need);
                true
            }
            _ => false,
        }
    }

    pub fn release(&mut self) {
        self.permit = None;
        self.units = 0;
    }

    fn add(&mut self, p: OwnedSemaphorePermit, units: u64) {
        match &mut self.permit {
            Some(existing) => existing.merge(p),
            None => self.permit = Some(p),
        }
        self.units = units;
    }
}

/// Why arriving message data could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum IncomingError {
    #[error("spool file: {0}")]
    Spool(#[from] io::Error),
    #[error("no memory for the message within the time allowed")]
    NoMemory,
}

/// The data of one message as it arrives: in memory against the budget, or in a spool file
/// once the budget is spent.
pub struct Incoming {
    reservation: Reservation,
    buf: Vec<u8>,
    spool: Option<Spool>,
    failed: Option<IncomingError>,
}

/// Smallest step a buffer grows by.
const MIN_GROWTH: usize = 64 * 1024;

/// Room left in front of a message loaded from the spool for the header fields the pipeline
/// adds (so that adding them does not copy the message).
const HEADROOM: usize = 64 * 1024;

impl Incoming {
    pub fn new(memory: &Arc<MessageMemory>) -> Incoming {
        Incoming { reservation: Reservation::new(memory), buf: Vec::new(), spool: None, failed: None }
    }

    /// Bytes kept so far (in memory or spooled).
    pub fn len(&self) -> u64 {
        self.buf.len() as u64 + self.spool.as_ref().map_or(0, |s| s.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_spooled(&self) -> bool {
        self.spool.is_some()
    }

    /// Keeps `bytes`. A failure (the spool cannot be written) is kept for [`Incoming::finish`];
    /// later bytes are dropped.
    pub async fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.failed.is_some() {
            return;
        }
        if self.spool.is_none() {
            let needed = self.buf.len() + bytes.len();
            if needed <= self.buf.capacity() {
                self.buf.extend_from_slice(bytes);
                return;
            }
            // Doubling, as Vec does, but reserved before the allocation happens.
            let capacity = needed.max(self.buf.capacity() * 2).max(MIN_GROWTH);
            if self.reservation.try_cover(capacity) {
                self.buf.reserve_exact(capacity - self.buf.len());
                self.buf.extend_from_slice(bytes);
                return;
            }
            match Spool::create(&self.reservation.memory.spool_dir).await {
                Ok(spool) => {
                    tracing::info!(held = self.buf.len(), "message memory budget spent; spooling to disk");
                    metrics::counter!("tern_messages_spooled_total").increment(1);
                    self.spool = Some(spool);
                    let held = std::mem::take(&mut self.buf);
                    self.write(&held).await;
                    drop(held);
                    self.reservation.release();
                }
                Err(e) => {
                    self.fail(e.into());
                    return;
                }
            }
        }
        self.write(bytes).await;
    }

    async fn write(&mut self, bytes: &[u8]) {
        if let Some(spool) = &mut self.spool
            && let Err(e) = spool.write(bytes).await
        {
            self.fail(e.into());
        }
    }

    fn fail(&mut self, e: IncomingError) {
        tracing::warn!(error = %e, "cannot keep message data");
        self.buf = Vec::new();
        self.spool = None;
        self.reservation.release();
        self.failed = Some(e);
    }

    /// The whole message in memory, with the reservation that covers it (to hold until the
    /// message is committed). Spooled data waits for the budget until `deadline`.
    pub async fn finish(mut self, deadline: Instant) -> Result<(Vec<u8>, Reservation), IncomingError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let Some(spool) = self.spool.take() else {
            return Ok((self.buf, self.reservation));
        };
        let size = spool.len + HEADROOM as u64;
        if !self.reservation.cover_waiting(size, deadline).await {
            return Err(IncomingError::NoMemory);
        }
        let data = spool.load(HEADROOM).await?;
        Ok((data, self.reservation))
    }
}

/// A spool file, removed when dropped.
struct Spool {
    file: tokio::io::BufWriter<tokio::fs::File>,
    path: PathBuf,
    len: u64,
}

impl Spool {
    async fn create(dir: &Path) -> io::Result<Spool> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        tokio::fs::create_dir_all(dir).await?;
        let path = dir.join(format!("{}-{}.eml", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let file = tokio::fs::File::create(&path).await?;
        Ok(Spool { file: tokio::io::BufWriter::with_capacity(64 * 1024, file), path, len: 0 })
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes).await?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// The contents, read into a buffer of their size and `headroom` more.
    async fn load(mut self, headroom: usize) -> io::Result<Vec<u8>> {
        self.file.flush().await?;
        let path = self.path.clone();
        let len = self.len as usize + headroom;
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut out = Vec::with_capacity(len);
            std::fs::File::open(&path)?.read_to_end(&mut out)?;
            Ok(out)
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // An unlink: a metadata operation, not worth a thread.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn data_beyond_the_budget_is_spooled_and_waits_for_memory() {
        let dir = tempfile::tempdir().unwrap();
        let memory = MessageMemory::new(1024 * 1024, dir.path().join("spool"));
        memory.clear_spool().unwrap();
        let chunk = vec![b'x'; 100 * 1024];
        // The first message fits in memory.
        let mut first = Incoming::new(&memory);
        for _ in 0..6 {
            first.push(&chunk).await;
        }
        assert!(!first.is_spooled() && first.len() == 600 * 1024);
        assert!(memory.available() < 1024 * 1024 - 600 * 1024 + 1);
        // The second does not: it goes to disk, holding no memory.
        let mut second = Incoming::new(&memory);
        for _ in 0..6 {
            second.push(&chunk).await;
        }
        assert!(second.is_spooled() && second.len() == 600 * 1024);
        assert_eq!(std::fs::read_dir(memory.spool_dir()).unwrap().count(), 1);
        let (one, held) = first.finish(soon()).await.unwrap();
        assert_eq!(one.len(), 600 * 1024);
        // The second cannot load while the first holds its memory...
        let waiting = tokio::spawn(second.finish(Instant::now() + Duration::from_millis(200)));
        assert!(matches!(waiting.await.unwrap(), Err(IncomingError::NoMemory)));
        assert_eq!(std::fs::read_dir(memory.spool_dir()).unwrap().count(), 0, "the spool file went");
        // ... and loads as soon as it is released.
        let mut third = Incoming::new(&memory);
        third.push(&vec![b'y'; 900 * 1024]).await;
        third.push(&chunk).await;
        assert!(third.is_spooled());
        let loading = tokio::spawn(third.finish(soon()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        let (data, reservation) = loading.await.unwrap().unwrap();
        assert_eq!(data.len(), 1000 * 1024);
        assert!(data.starts_with(b"yyy") && data.ends_with(b"xxx"));
        assert!(reservation.bytes() >= 1000 * 1024);
        drop(reservation);
        assert_eq!(memory.available(), memory.capacity());
    }
}
