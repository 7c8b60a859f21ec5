//! Read deadlines for sessions, shared by SMTP, IMAP and POP3.
//!
//! A timeout that restarts at every byte can be held open forever by a client that sends one
//! byte every few seconds ("slowloris"): a handful of addresses then fill every connection
//! slot. Instead, as Postfix's per-record deadlines and minimum data rate do:
//! - after each complete command the client has the idle time for the next one;
//! - while a command (or message data) is arriving, each read earns only the time its bytes
//!   are worth at [`MIN_RATE`] (capped at the idle time), so a command must keep moving;
//! - a session may have a limit of its own (the time to log in, or a whole session's length).

use std::time::Duration;
use tokio::time::Instant;

/// Bytes per second a client must keep up while sending a command or a message (Postfix's
/// `smtpd_min_data_rate` default).
pub const MIN_RATE: u64 = 500;

/// Which limit ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// No complete command in the idle time, or data arriving too slowly.
    Idle,
    /// The session's own limit.
    Session,
}

#[derive(Debug, Clone)]
pub struct Deadlines {
    idle: Duration,
    next: Instant,
    session_end: Option<Instant>,
}

impl Deadlines {
    /// `idle`: time for the next command; `session`: the whole session's limit, if any.
    pub fn new(idle: Duration, session: Option<Duration>) -> Deadlines {
        let now = Instant::now();
        Deadlines { idle, next: now + idle, session_end: session.map(|s| now + s) }
    }

    /// A command was complete: the client has the idle time again for the next one.
    pub fn command_done(&mut self) {
        self.next = Instant::now() + self.idle;
    }

    /// `n` bytes arrived: they buy `n / MIN_RATE` seconds more, up to the idle time from now.
    pub fn received(&mut self, n: usize) {
        let now = Instant::now();
        let earned = Duration::from_millis((n as u64).saturating_mul(1000) / MIN_RATE);
        self.next = (self.next.max(now) + earned).min(now + self.idle).max(self.next);
    }

    /// Changes the idle time (an IMAP session gets a longer one once logged in).
    pub fn set_idle(&mut self, idle: Duration) {
        self.idle = idle;
        self.command_done();
    }

    /// Sets or clears the session's own limit, from now.
    pub fn set_session_limit(&mut self, limit: Option<Duration>) {
        self.session_end = limit.map(|l| Instant::now() + l);
    }

    /// When the next read must have returned, and which limit that is.
    pub fn until(&self) -> (Instant, Expired) {
        match self.session_end {
            Some(end) if end < self.next => (end, Expired::Session),
            _ => (self.next, Expired::Idle),
        }
    }

    /// Runs `read` until the deadline; `Err(which)` when a limit ran out first.
    pub async fn read<F: std::future::Future>(&self, read: F) -> Result<F::Output, Expired> {
        let (at, which) = self.until();
        tokio::time::timeout_at(at, read).await.map_err(|_| which)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_trickle_runs_out_and_a_steady_stream_does_not() {
        let idle = Duration::from_secs(300);
        // One byte every 15 s: each earns 2 ms, so the deadline barely moves.
        let mut d = Deadlines::new(idle, None);
        let start = Instant::now();
        loop {
            tokio::time::advance(Duration::from_secs(15)).await;
            if Instant::now() >= d.until().0 {
                break;
            }
            d.received(1);
        }
        assert!(start.elapsed() <= Duration::from_secs(315), "{:?}", start.elapsed());
        // 1 KB every second keeps a slow upload alive indefinitely.
        let mut d = Deadlines::new(idle, None);
        for _ in 0..2000 {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert!(Instant::now() < d.until().0);
            d.received(1000);
        }
        // A command every 299 s is idle time, not a trickle.
        let mut d = Deadlines::new(idle, Some(Duration::from_secs(1000)));
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(299)).await;
            assert!(Instant::now() < d.until().0);
            d.command_done();
        }
        // ... until the session's own limit.
        assert_eq!(d.until().1, Expired::Session);
        tokio::time::advance(Duration::from_secs(110)).await;
        assert!(d.read(std::future::pending::<()>()).await == Err(Expired::Session));
    }
}
