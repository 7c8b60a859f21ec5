//! Domains as this node last read them. Every message asks for its recipients' domains (is
//! it ours? its catch-all?), which in the database was two round trips per message for
//! records that change a few times a year. A directory change — from this node or, through
//! the change feed, another; and any reconnection of the feed, which may have missed some —
//! empties the cache before the writer is answered, so a read after a change sees it.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use tern_store::{Domain, StoreChange};

/// Names kept at most (unknown ones too: external recipients' domains).
const MAX_NAMES: usize = 10_000;

#[derive(Default)]
pub struct DomainCache {
    /// Bumped by every invalidation: a read that began before one does not fill the cache.
    generation: AtomicU64,
    names: RwLock<HashMap<String, Option<Domain>>>,
}

impl DomainCache {
    pub fn get(&self, name: &str) -> Option<Option<Domain>> {
        self.names.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// The generation to pass to [`DomainCache::fill`] with what is read next.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn fill(&self, generation: u64, name: &str, domain: Option<Domain>) {
        let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock: an invalidation between the read and here wins.
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if names.len() >= MAX_NAMES {
            names.clear();
        }
        names.insert(name.to_string(), domain);
    }

    pub fn on_change(&self, change: &StoreChange) {
        if matches!(change, StoreChange::Directory) {
            let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
            self.generation.fetch_add(1, Ordering::SeqCst);
            names.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(name: &str) -> Domain {
        serde_json::from_value(serde_json::json!({ "name": name })).unwrap()
    }

    #[test]
    fn a_directory_change_empties_it_and_a_read_from_before_does_not_refill_it() {
        let cache = DomainCache::default();
        let before = cache.generation();
        cache.fill(before, "example.test", Some(domain("example.test")));
        cache.fill(before, "elsewhere.test", None);
        assert!(cache.get("example.test").is_some_and(|d| d.is_some()));
        assert_eq!(cache.get("elsewhere.test"), Some(None), "unknown names are kept too");
        cache.on_change(&StoreChange::Queue);
        assert!(cache.get("example.test").is_some());
        cache.on_change(&StoreChange::Directory);
        assert_eq!(cache.get("example.test"), None);
        cache.fill(before, "example.test", Some(domain("example.test")));
        assert_eq!(cache.get("example.test"), None, "read before the change: stale, not kept");
    }
}
