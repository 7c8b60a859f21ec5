//! Time for the guards and the queue: bans, rate windows, greylisting, delivery backoff,
//! queue leases and expiry read it from a [`Clock`], so their tests move time on by hand
//! ([`ManualClock`]) instead of sleeping.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Monotonic time, for intervals.
    fn now(&self) -> Instant;
    /// Wall-clock time in seconds since the Unix epoch, for what is stored (retry times,
    /// leases, message ages).
    fn unix(&self) -> i64;
}

/// The real clocks.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    }
}

/// The clock the server runs on.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that stands still until told to move (tests). It starts at the real time.
pub struct ManualClock {
    now: Mutex<(Instant, i64)>,
}

impl ManualClock {
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock { now: Mutex::new((Instant::now(), SystemClock.unix())) })
    }

    /// Moves both clocks on by `by` (whole seconds count for [`Clock::unix`]).
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        now.0 += by;
        now.1 += by.as_secs() as i64;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.now.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    fn unix(&self) -> i64 {
        self.now.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}
