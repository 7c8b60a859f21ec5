//! Change signals for selected mailboxes. The store calls [`Notifier::changed`] for every
//! committed change before it answers the session that made it, and only the sessions that
//! have that mailbox selected wake up, so ten thousand idle sessions cost nothing when
//! unrelated mail arrives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tern_store::{MailboxId, StoreChange};
use tokio::sync::Notify;

#[derive(Default)]
pub struct MailboxSignal {
    version: AtomicU64,
    notify: Notify,
}

impl MailboxSignal {
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// A future that completes at the next change; create it before checking the version to
    /// not miss a change that happens in between.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }
}

#[derive(Default)]
pub struct Notifier {
    mailboxes: Mutex<HashMap<MailboxId, Weak<MailboxSignal>>>,
}

impl Notifier {
    /// The signal of a mailbox, shared by every session that selects it.
    pub fn signal(&self, mailbox: MailboxId) -> Arc<MailboxSignal> {
        let mut map = self.mailboxes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = map.get(&mailbox).and_then(Weak::upgrade) {
            return existing;
        }
        // Occasionally drop entries whose sessions are gone.
        if map.len() > 1024 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let signal = Arc::new(MailboxSignal::default());
        map.insert(mailbox, Arc::downgrade(&signal));
        signal
    }

    fn bump(&self, mailbox: MailboxId) {
        let signal = {
            let map = self.mailboxes.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&mailbox).and_then(Weak::upgrade)
        };
        if let Some(s) = signal {
            s.bump();
        }
    }

    /// Called by the store for every committed change, before the client that made it is
    /// answered.
    pub fn changed(&self, change: &StoreChange) {
        if let StoreChange::Mailbox { mailbox, .. } = change {
            self.bump(*mailbox);
        }
    }
}
