//! Recently verified logins, so a client that reconnects every minute does not pay for an
//! argon2 verification each time (what Dovecot's `auth_cache` does).
//!
//! Entries hold a BLAKE3 hash of (address, stored password hash, password) keyed with a
//! random per-process key — never the password. A changed password changes the stored hash
//! and so misses; entries expire after the TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_ENTRIES: usize = 100_000;

pub struct LoginCache {
    key: [u8; 32],
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], Instant>>,
}

impl LoginCache {
    pub fn new(ttl: Duration) -> LoginCache {
        let mut key = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut key);
        LoginCache { key, ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn digest(&self, address: &str, stored_hash: &str, password: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        for part in [address, stored_hash, password] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        *h.finalize().as_bytes()
    }

    pub fn verified(&self, address: &str, stored_hash: &str, password: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let d = self.digest(address, stored_hash, password);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&d).is_some_and(|at| at.elapsed() < self.ttl)
    }

    pub fn remember(&self, address: &str, stored_hash: &str, password: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let d = self.digest(address, stored_hash, password);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, at| at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(d, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_the_same_password_and_hash() {
        let c = LoginCache::new(Duration::from_secs(60));
        c.remember("a@x.test", "$hash1", "pw");
        assert!(c.verified("a@x.test", "$hash1", "pw"));
        assert!(!c.verified("a@x.test", "$hash1", "other"));
        assert!(!c.verified("a@x.test", "$hash2", "pw"), "a password change invalidates");
        assert!(!c.verified("b@x.test", "$hash1", "pw"));
        let off = LoginCache::new(Duration::ZERO);
        off.remember("a@x.test", "$hash1", "pw");
        assert!(!off.verified("a@x.test", "$hash1", "pw"));
    }
}
