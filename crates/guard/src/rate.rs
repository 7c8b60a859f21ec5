//! Event rates per key (client address, sender domain) in fixed windows, and the greylist.

use crate::clock::Clock;
use crate::shared::{GuardEvent, Outbox};
use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Keys tracked at most; beyond, stale windows are dropped, then everything.
const MAX_KEYS: usize = 200_000;

/// Counts events per key in windows of `window`; `allow` says whether one more fits.
pub struct RateLimiter<K> {
    window: Duration,
    counts: Mutex<HashMap<K, (Instant, u32)>>,
    clock: Arc<dyn Clock>,
    /// In a cluster: this limiter's name and where its hits are told to the other nodes.
    sharing: OnceLock<(String, Outbox)>,
}

impl<K: Hash + Eq + Clone + Display> RateLimiter<K> {
    pub fn new(window: Duration) -> RateLimiter<K> {
        RateLimiter::with_clock(window, crate::clock::system())
    }

    pub fn with_clock(window: Duration, clock: Arc<dyn Clock>) -> RateLimiter<K> {
        RateLimiter { window, counts: Mutex::new(HashMap::new()), clock, sharing: OnceLock::new() }
    }

    /// Counts one event for `key`; false when it is over `limit` in the current window
    /// (`limit` 0: no limit).
    pub fn allow(&self, key: &K, limit: u32) -> bool {
        if limit == 0 {
            return true;
        }
        self.hit(key) <= limit
    }

    /// Counts one event and returns the count in the current window.
    pub fn hit(&self, key: &K) -> u32 {
        if let Some((limiter, outbox)) = self.sharing.get() {
            outbox(GuardEvent::Hits { limiter: limiter.clone(), key: key.to_string(), count: 1 });
        }
        self.add(key, 1)
    }

    /// Tells the other nodes of a cluster of every hit, as limiter `name`.
    pub fn share(&self, name: &str, outbox: Outbox) {
        let _ = self.sharing.set((name.to_string(), outbox));
    }

    /// Counts events another node saw.
    pub fn apply(&self, key: &K, count: u32) {
        self.add(key, count);
    }

    fn add(&self, key: &K, n: u32) -> u32 {
        let now = self.clock.now();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= MAX_KEYS && !counts.contains_key(key) {
            counts.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if counts.len() >= MAX_KEYS {
                counts.clear();
            }
        }
        let entry = counts.entry(key.clone()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(n);
        entry.1
    }
}

/// Greylisting (like postgrey): a (client network, sender, recipient) triplet seen for the
/// first time is told to come back; a retry after `delay` passes, and so does anything from
/// that triplet for `keep` afterwards. Unretried triplets are forgotten after `expiry`.
pub struct Greylist {
    delay: Duration,
    expiry: Duration,
    keep: Duration,
    triplets: Mutex<HashMap<(String, String, String), Triplet>>,
    clock: Arc<dyn Clock>,
    /// In a cluster: where new and passed triplets are told to the other nodes.
    sharing: OnceLock<Outbox>,
}

struct Triplet {
    first: Instant,
    /// Passed once: allowed until then.
    allowed_until: Option<Instant>,
}

impl Greylist {
    pub fn new(delay: Duration) -> Greylist {
        Greylist::with_clock(delay, crate::clock::system())
    }

    pub fn with_clock(delay: Duration, clock: Arc<dyn Clock>) -> Greylist {
        Greylist {
            delay,
            expiry: Duration::from_secs(2 * 86400),
            keep: Duration::from_secs(35 * 86400),
            triplets: Mutex::new(HashMap::new()),
            clock,
            sharing: OnceLock::new(),
        }
    }

    /// Whether this delivery may go on now.
    pub fn check(&self, network: &str, sender: &str, recipient: &str) -> bool {
        let now = self.clock.now();
        let key = (network.to_string(), sender.to_ascii_lowercase(), recipient.to_ascii_lowercase());
        let mut triplets = self.triplets.lock().unwrap_or_else(|p| p.into_inner());
        self.make_room(&mut triplets, &key, now);
        let (pass, news) = match triplets.get_mut(&key) {
            Some(t) if t.allowed_until.is_some_and(|u| u > now) => {
                t.allowed_until = Some(now + self.keep);
                (true, None)
            }
            Some(t) if now.duration_since(t.first) >= self.delay && now.duration_since(t.first) < self.expiry => {
                t.allowed_until = Some(now + self.keep);
                (true, Some(true))
            }
            Some(t) if now.duration_since(t.first) >= self.expiry => {
                *t = Triplet { first: now, allowed_until: None };
                (false, Some(false))
            }
            Some(_) => (false, None),
            None => {
                triplets.insert(key.clone(), Triplet { first: now, allowed_until: None });
                (false, Some(false))
            }
        };
        drop(triplets);
        if let (Some(passed), Some(outbox)) = (news, self.sharing.get()) {
            let (network, sender, recipient) = key;
            outbox(if passed {
                GuardEvent::GreylistPassed { network, sender, recipient }
            } else {
                GuardEvent::GreylistSeen { network, sender, recipient }
            });
        }
        pass
    }

    /// Keeps the table under [`MAX_KEYS`] triplets before `key` is added: expired ones go
    /// first, then everything.
    fn make_room(
        &self,
        triplets: &mut HashMap<(String, String, String), Triplet>,
        key: &(String, String, String),
        now: Instant,
    ) {
        if triplets.len() >= MAX_KEYS && !triplets.contains_key(key) {
            triplets.retain(|_, t| match t.allowed_until {
                Some(until) => until > now,
                None => now.duration_since(t.first) < self.expiry,
            });
            // Still full of live triplets (a flood of new senders): start over, as the rate
            // limiters do, rather than grow without bound.
            if triplets.len() >= MAX_KEYS {
                triplets.clear();
            }
        }
    }

    /// Tells the other nodes of a cluster of new and passed triplets.
    pub fn share(&self, outbox: Outbox) {
        let _ = self.sharing.set(outbox);
    }

    /// Takes in a triplet another node saw first or let pass; returns whether the event was
    /// the greylist's.
    pub fn apply(&self, event: &GuardEvent) -> bool {
        let now = self.clock.now();
        let (key, passed) = match event {
            GuardEvent::GreylistSeen { network, sender, recipient } => {
                ((network.clone(), sender.clone(), recipient.clone()), false)
            }
            GuardEvent::GreylistPassed { network, sender, recipient } => {
                ((network.clone(), sender.clone(), recipient.clone()), true)
            }
            _ => return false,
        };
        let mut triplets = self.triplets.lock().unwrap_or_else(|p| p.into_inner());
        // Other nodes' triplets count toward the same bound as this node's.
        self.make_room(&mut triplets, &key, now);
        let t = triplets.entry(key).or_insert(Triplet { first: now, allowed_until: None });
        if passed {
            t.allowed_until = Some(now + self.keep);
        }
        true
    }
}

/// The network a greylist entry covers: /24 for IPv4, /64 for IPv6 (senders with several
/// outbound addresses retry from a neighbour).
pub fn greylist_network(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_reset_with_the_window() {
        let clock = crate::ManualClock::new();
        let r = RateLimiter::with_clock(Duration::from_secs(60), clock.clone());
        assert!(r.allow(&"a", 2));
        assert!(r.allow(&"a", 2));
        assert!(!r.allow(&"a", 2));
        assert!(r.allow(&"b", 2), "keys are separate");
        assert!(r.allow(&"a", 0), "0 is no limit");
        clock.advance(Duration::from_secs(59));
        assert!(!r.allow(&"a", 2), "the same window");
        clock.advance(Duration::from_secs(1));
        assert!(r.allow(&"a", 2), "a new window");
    }

    #[test]
    fn greylist_asks_once_then_remembers_then_forgets() {
        let clock = crate::ManualClock::new();
        let g = Greylist::with_clock(Duration::from_secs(300), clock.clone());
        assert!(!g.check("192.0.2.0/24", "a@x", "b@y"));
        clock.advance(Duration::from_secs(299));
        assert!(!g.check("192.0.2.0/24", "a@x", "b@y"), "too early");
        clock.advance(Duration::from_secs(1));
        assert!(g.check("192.0.2.0/24", "a@x", "b@y"));
        assert!(g.check("192.0.2.0/24", "A@X", "b@y"), "and stays allowed");
        assert!(!g.check("192.0.2.0/24", "other@x", "b@y"));
        // Allowed for 35 days after the last pass, then greylisted again.
        clock.advance(Duration::from_secs(35 * 86400 - 1));
        assert!(g.check("192.0.2.0/24", "a@x", "b@y"), "each pass extends the 35 days");
        clock.advance(Duration::from_secs(35 * 86400));
        assert!(!g.check("192.0.2.0/24", "a@x", "b@y"), "forgotten after 35 quiet days");
        // A first attempt never retried is forgotten after two days: the retry starts over.
        assert!(!g.check("198.51.100.0/24", "c@x", "d@y"));
        clock.advance(Duration::from_secs(2 * 86400));
        assert!(!g.check("198.51.100.0/24", "c@x", "d@y"), "too late: a new first attempt");
        assert_eq!(greylist_network("192.0.2.77".parse().unwrap()), "192.0.2.0/24");
    }

    /// Two nodes of a cluster: what one counts, the other applies.
    #[test]
    fn a_cluster_shares_rates_and_the_greylist() {
        let clock = crate::ManualClock::new();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let outbox: Outbox = {
            let sent = Arc::clone(&sent);
            Arc::new(move |e| sent.lock().unwrap().push(e))
        };
        let take = || std::mem::take(&mut *sent.lock().unwrap());

        let (a, b) = (
            RateLimiter::with_clock(Duration::from_secs(60), clock.clone()),
            RateLimiter::<String>::with_clock(Duration::from_secs(60), clock.clone()),
        );
        a.share("messages_by_domain", Arc::clone(&outbox));
        for _ in 0..3 {
            a.hit(&"example.org".to_string());
        }
        for e in take() {
            let GuardEvent::Hits { limiter, key, count } = e else { panic!("{e:?}") };
            assert_eq!(limiter, "messages_by_domain");
            b.apply(&key, count);
        }
        assert!(!b.allow(&"example.org".to_string(), 3), "node B counts node A's three");

        // The first attempt on node A; the retry, after the delay, on node B passes.
        let (ga, gb) = (
            Greylist::with_clock(Duration::from_secs(300), clock.clone()),
            Greylist::with_clock(Duration::from_secs(300), clock.clone()),
        );
        ga.share(Arc::clone(&outbox));
        assert!(!ga.check("192.0.2.0/24", "a@x", "b@y"));
        for e in take() {
            assert!(gb.apply(&e));
        }
        clock.advance(Duration::from_secs(301));
        assert!(gb.check("192.0.2.0/24", "a@x", "b@y"), "node B knows the first attempt");
        // A pass on node A lets node B pass at once too (a new triplet there).
        assert!(!ga.check("192.0.2.0/24", "c@x", "d@y"));
        clock.advance(Duration::from_secs(301));
        take();
        assert!(ga.check("192.0.2.0/24", "c@x", "d@y"));
        let passed = take();
        assert!(matches!(passed.as_slice(), [GuardEvent::GreylistPassed { .. }]), "{passed:?}");
        let fresh = Greylist::with_clock(Duration::from_secs(300), clock.clone());
        assert!(fresh.apply(&passed[0]));
        assert!(fresh.check("192.0.2.0/24", "c@x", "d@y"));
    }
}
