//! Failed logins per client address: each failure is answered after a growing delay, and an
//! address with too many recent failures is refused for a while. Shared by every protocol,
//! so guessing over IMAP also locks out POP3 and submission.

use crate::clock::Clock;
use crate::shared::{GuardEvent, Outbox, Sharing};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tern_config::Cidr;

/// Failures are remembered this long.
const WINDOW: Duration = Duration::from_secs(600);
/// Longest delay before answering a failed attempt.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// Addresses tracked at most (oldest forgotten first).
const MAX_TRACKED: usize = 100_000;

#[derive(Debug)]
struct Record {
    failures: u32,
    first: Instant,
    banned_until: Option<Instant>,
}

pub struct AuthGuard {
    max_failures: u32,
    ban: Duration,
    exempt: Vec<Cidr>,
    records: Mutex<HashMap<IpAddr, Record>>,
    clock: Arc<dyn Clock>,
    /// The other nodes of a cluster, told of every failure and ban.
    sharing: Sharing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVerdict {
    Allowed,
    /// Refuse without checking the password; the ban lasts this much longer.
    Banned(Duration),
}

impl AuthGuard {
    pub fn new(max_failures: u32, ban: Duration, exempt: Vec<Cidr>) -> AuthGuard {
        AuthGuard::with_clock(max_failures, ban, exempt, crate::clock::system())
    }

    pub fn with_clock(max_failures: u32, ban: Duration, exempt: Vec<Cidr>, clock: Arc<dyn Clock>) -> AuthGuard {
        AuthGuard { max_failures, ban, exempt, records: Mutex::new(HashMap::new()), clock, sharing: Sharing::default() }
    }

    pub fn from_config(config: &tern_config::Config) -> AuthGuard {
        AuthGuard::new(
            config.limits.auth_failures_before_ban,
            Duration::from_secs(config.limits.ban_seconds),
            config.limit_exempt(),
        )
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        self.exempt.iter().any(|c| c.contains(ip))
    }

    /// Whether an address may try to log in (or connect) now.
    pub fn check(&self, ip: IpAddr) -> AuthVerdict {
        if self.exempt(ip) {
            return AuthVerdict::Allowed;
        }
        let now = self.clock.now();
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        match records.get(&ip).and_then(|r| r.banned_until) {
            Some(until) if until > now => AuthVerdict::Banned(until - now),
            Some(_) => {
                records.remove(&ip);
                AuthVerdict::Allowed
            }
            None => AuthVerdict::Allowed,
        }
    }

    /// Records a failed login; returns how long to wait before answering it.
    pub fn failed(&self, ip: IpAddr, service: &'static str) -> Duration {
        metrics::counter!("tern_auth_failures_total", "service" => service).increment(1);
        self.sharing.send(|| GuardEvent::LoginFailed { ip });
        self.count_failure(ip, service)
    }

    /// Counts a failure (here, or on another node of the cluster), banning at the threshold.
    fn count_failure(&self, ip: IpAddr, service: &'static str) -> Duration {
        let now = self.clock.now();
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        make_room(&mut records, now);
        let r = records.entry(ip).or_insert(Record { failures: 0, first: now, banned_until: None });
        if now.duration_since(r.first) > WINDOW {
            *r = Record { failures: 0, first: now, banned_until: None };
        }
        r.failures += 1;
        let exempt = self.exempt.iter().any(|c| c.contains(ip));
        if r.failures >= self.max_failures && !exempt && r.banned_until.is_none() {
            r.banned_until = Some(now + self.ban);
            metrics::counter!("tern_auth_bans_total", "service" => service).increment(1);
            tracing::warn!(client = %ip, failures = r.failures, ban_seconds = self.ban.as_secs(), "too many failed logins; address banned");
        }
        // 0.5 s, 1 s, 1.5 s, ... up to 5 s: slows guessing without hurting a typo.
        Duration::from_millis(500 * u64::from(r.failures)).min(MAX_DELAY)
    }

    /// Bans an address at once (directory harvesting, for instance).
    pub fn ban(&self, ip: IpAddr, reason: &'static str) {
        if self.exempt(ip) {
            return;
        }
        if self.ban_for(ip, self.ban, reason) {
            self.sharing.send(|| GuardEvent::Banned { ip, seconds: self.ban.as_secs() });
        }
    }

    /// Bans `ip` for `length` unless it is banned already; returns whether it was not.
    fn ban_for(&self, ip: IpAddr, length: Duration, reason: &'static str) -> bool {
        let now = self.clock.now();
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        make_room(&mut records, now);
        let r = records.entry(ip).or_insert(Record { failures: 0, first: now, banned_until: None });
        if r.banned_until.is_none_or(|u| u <= now) {
            r.banned_until = Some(now + length);
            metrics::counter!("tern_auth_bans_total", "service" => reason).increment(1);
            tracing::warn!(client = %ip, reason, ban_seconds = length.as_secs(), "address banned");
            return true;
        }
        false
    }

    /// Tells the other nodes of a cluster of every failure and ban from now on.
    pub fn share(&self, outbox: Outbox) {
        self.sharing.set(outbox);
    }

    /// Takes in what another node counted; returns whether the event was the guard's.
    pub fn apply(&self, event: &GuardEvent) -> bool {
        match event {
            GuardEvent::LoginFailed { ip } => {
                if !self.exempt(*ip) {
                    self.count_failure(*ip, "cluster");
                }
                true
            }
            GuardEvent::Banned { ip, seconds } => {
                if !self.exempt(*ip) {
                    self.ban_for(
                        *ip,
                        Duration::from_secs(*seconds).min(self.ban.max(Duration::from_secs(1))),
                        "cluster",
                    );
                }
                true
            }
            _ => false,
        }
    }

    /// Whether `ip` is in an exempt (trusted) network.
    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        self.exempt(ip)
    }

    /// Forgets failures after a successful login.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.get(&ip).is_some_and(|r| r.banned_until.is_none()) {
            records.remove(&ip);
        }
    }
}

/// Keeps the table under [`MAX_TRACKED`] addresses (those of this node and, in a cluster,
/// of the others): stale ones go first, then everything.
fn make_room(records: &mut HashMap<IpAddr, Record>, now: Instant) {
    if records.len() >= MAX_TRACKED {
        records.retain(|_, r| now.duration_since(r.first) < WINDOW || r.banned_until.is_some_and(|u| u > now));
        if records.len() >= MAX_TRACKED {
            records.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_ban_then_expire() {
        let clock = crate::ManualClock::new();
        let g = AuthGuard::with_clock(3, Duration::from_secs(600), vec![], clock.clone());
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(g.check(ip), AuthVerdict::Allowed);
        assert_eq!(g.failed(ip, "test"), Duration::from_millis(500));
        assert_eq!(g.failed(ip, "test"), Duration::from_millis(1000));
        g.failed(ip, "test");
        assert_eq!(g.check(ip), AuthVerdict::Banned(Duration::from_secs(600)));
        clock.advance(Duration::from_secs(599));
        assert_eq!(g.check(ip), AuthVerdict::Banned(Duration::from_secs(1)), "still banned a second before the end");
        clock.advance(Duration::from_secs(1));
        assert_eq!(g.check(ip), AuthVerdict::Allowed, "bans expire");
        assert_eq!(g.failed(ip, "test"), Duration::from_millis(500), "and the count starts over");
    }

    #[test]
    fn success_resets_and_exempt_networks_are_never_banned() {
        let g = AuthGuard::new(2, Duration::from_secs(60), vec![Cidr::parse("127.0.0.0/8").unwrap()]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        g.failed(ip, "test");
        g.succeeded(ip);
        g.failed(ip, "test");
        assert_eq!(g.check(ip), AuthVerdict::Allowed);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..10 {
            g.failed(lo, "test");
        }
        assert_eq!(g.check(lo), AuthVerdict::Allowed);
    }
}
