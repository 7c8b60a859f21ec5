//! CPU-heavy work of sessions (IMAP SEARCH, SORT, THREAD) runs here, never on the async
//! workers that serve every other connection: on a small machine two searches on the
//! runtime's threads were enough to delay the SMTP greeting by a minute.
//!
//! - A few dedicated threads (one per core) beside the runtime's: the kernel shares the CPU
//!   between them and the sessions, so heavy commands cannot take all of it.
//! - Per-owner concurrency (an owner is an account): one user's commands queue behind each
//!   other and cannot take every thread; the queue is first come, first served, so other
//!   users' commands are interleaved.
//! - Each job gets a [`Budget`] (a deadline) it checks as it goes; the caller turns an
//!   exhausted budget into a protocol answer (IMAP `NO [LIMIT]`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The time one job may take once it runs.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Instant,
}

/// A job ran out of its [`Budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the command needs more time than it is allowed")]
pub struct OverBudget;

impl Budget {
    pub fn new(limit: Duration) -> Budget {
        Budget { deadline: Instant::now() + limit }
    }

    /// `Err(OverBudget)` once the deadline has passed.
    pub fn check(&self) -> Result<(), OverBudget> {
        if Instant::now() >= self.deadline { Err(OverBudget) } else { Ok(()) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    #[error("the compute pool is stopped")]
    Stopped,
    #[error("a compute job panicked")]
    Panicked,
}

/// See the module documentation.
pub struct ComputePool {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    per_owner: usize,
    owners: Mutex<HashMap<String, Arc<Semaphore>>>,
    limit: Duration,
}

impl ComputePool {
    /// `threads` worker threads at nice `nice`; at most `per_owner` jobs of one owner run or
    /// wait for a thread at once; each job's budget is `limit`.
    pub fn new(threads: usize, nice: i32, per_owner: usize, limit: Duration) -> Arc<ComputePool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new().name(format!("tern-compute-{n}")).spawn(move || {
                lower_priority(nice);
                loop {
                    let job = {
                        let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                        rx.recv()
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a compute thread");
            }
        }
        Arc::new(ComputePool {
            queue: Mutex::new(Some(tx)),
            per_owner: per_owner.max(1),
            owners: Mutex::new(HashMap::new()),
            limit,
        })
    }

    /// The pool a server uses: one thread per core (at least two), two jobs per owner, at the
    /// sessions' own priority. Its threads are not the async workers, so the kernel shares the
    /// CPU between them and the sessions; at nice 10 ordinary searches waited behind every
    /// session under load (SEARCH SUBJECT p50 26-30 ms against 17 ms at nice 0, 32 IMAP
    /// clients on two cores).
    pub fn for_server(limit: Duration) -> Arc<ComputePool> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        ComputePool::new(cores.max(2), 0, 2, limit)
    }

    /// Per-job time limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    fn owner_slot(&self, owner: &str) -> Arc<Semaphore> {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        // Forget owners with nothing running or waiting, so the map stays small.
        if owners.len() > 1024 {
            let per_owner = self.per_owner;
            owners.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < per_owner);
        }
        Arc::clone(owners.entry(owner.to_string()).or_insert_with(|| Arc::new(Semaphore::new(self.per_owner))))
    }

    /// Runs `job` on a pool thread once `owner` has a free slot, with a fresh budget; the
    /// caller's task waits without holding a runtime thread.
    pub async fn run<T, F>(&self, owner: &str, job: F) -> Result<T, ComputeError>
    where
        T: Send + 'static,
        F: FnOnce(Budget) -> T + Send + 'static,
    {
        let slot = self.owner_slot(owner);
        let permit: OwnedSemaphorePermit = slot.acquire_owned().await.map_err(|_| ComputeError::Stopped)?;
        let (done, result) = oneshot::channel();
        let limit = self.limit;
        let boxed: Job = Box::new(move || {
            let _permit = permit;
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Budget::new(limit))));
            let _ = done.send(outcome);
        });
        {
            let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let Some(tx) = queue.as_ref() else { return Err(ComputeError::Stopped) };
            tx.send(boxed).map_err(|_| ComputeError::Stopped)?;
        }
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(ComputeError::Panicked),
            Err(_) => Err(ComputeError::Stopped),
        }
    }

    /// Stops taking jobs; threads end when the queue is empty.
    pub fn stop(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority only reads its arguments, and with
        // PRIO_PROCESS and a thread id Linux changes the nice value of that one thread.
        let changed = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
        if changed != 0 {
            tracing::debug!("could not lower a compute thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_owner_cannot_take_every_thread() {
        let pool = ComputePool::new(4, 0, 1, Duration::from_secs(5));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut jobs = Vec::new();
        for _ in 0..6 {
            let (pool, running, peak) = (Arc::clone(&pool), Arc::clone(&running), Arc::clone(&peak));
            jobs.push(tokio::spawn(async move {
                pool.run("alice", move |_| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        // Another owner is served while alice's jobs queue.
        let started = Instant::now();
        pool.run("bob", |_| ()).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(100), "{:?}", started.elapsed());
        for j in jobs {
            j.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn budgets_run_out_and_panics_are_contained() {
        let pool = ComputePool::new(1, 0, 2, Duration::from_millis(30));
        let over = pool
            .run("a", |budget| {
                loop {
                    if budget.check().is_err() {
                        return "over";
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .await
            .unwrap();
        assert_eq!(over, "over");
        assert!(matches!(pool.run("a", |_| panic!("boom")).await, Err(ComputeError::Panicked)));
        assert_eq!(pool.run("a", |_| 7).await.unwrap(), 7);
        pool.stop();
        assert!(matches!(pool.run("a", |_| 1).await, Err(ComputeError::Stopped)));
    }
}
