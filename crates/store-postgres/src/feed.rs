//! The change feed across nodes: each transaction sends its changes with `pg_notify` (which
//! PostgreSQL delivers at commit, and only if it commits); every node keeps one connection
//! that LISTENs and hands the other nodes' changes to its hooks (cache invalidation) and
//! subscribers (IMAP IDLE, the queue's wake-up).

use crate::error::pg_error;
use crate::sql::Cached;
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, Weak};
use std::time::Duration;
use tern_store::{ChangeHook, StoreChange, StoreResult};
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

pub const CHANNEL: &str = "tern_changes";
/// Lines of shared, unstored state between nodes (`ChangeFeed::cluster_send`).
pub const CLUSTER_CHANNEL: &str = "tern_cluster";
/// Bytes of cluster lines gathered into one notification at most (the limit is 8,000).
const CLUSTER_PAYLOAD: usize = 7000;
/// Cluster lines waiting to be sent at most; beyond, new ones are dropped (the database is
/// slow or down, and these are only counts).
const CLUSTER_BACKLOG: usize = 10_000;

/// Changes per notification at most (PostgreSQL limits a payload to 8,000 bytes).
const CHANGES_PER_NOTIFY: usize = 100;

pub struct Feed {
    /// Tells this node's notifications from the others'.
    node: u64,
    tx: broadcast::Sender<StoreChange>,
    hooks: RwLock<Vec<ChangeHook>>,
    /// Whether the listening connection is up (the database is reachable).
    connected: AtomicBool,
    /// When a mailbox last changed, on any node (process uptime in milliseconds): the search
    /// indexer yields to the cluster's deliveries, not only to this node's.
    last_mailbox_change: AtomicU64,
    /// Cluster lines from the other nodes.
    cluster_in: broadcast::Sender<String>,
    /// Cluster lines to send, taken by [`send_cluster`].
    cluster_out: tokio::sync::mpsc::Sender<String>,
}

impl Feed {
    /// The feed, and the receiving end of the lines it is to send (for [`send_cluster`]).
    pub fn new() -> (Feed, tokio::sync::mpsc::Receiver<String>) {
        let (tx, _) = broadcast::channel(4096);
        let (cluster_in, _) = broadcast::channel(4096);
        let (cluster_out, outgoing) = tokio::sync::mpsc::channel(CLUSTER_BACKLOG);
        let node = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        let feed = Feed {
            node,
            tx,
            hooks: RwLock::new(Vec::new()),
            connected: AtomicBool::new(false),
            last_mailbox_change: AtomicU64::new(0),
            cluster_in,
            cluster_out,
        };
        (feed, outgoing)
    }

    /// Queues a line for the other nodes (dropped when it cannot be carried or too many wait).
    pub fn cluster_send(&self, line: String) {
        if line.is_empty() || line.len() > CLUSTER_PAYLOAD / 2 || line.contains('\n') {
            return;
        }
        let _ = self.cluster_out.try_send(line);
    }

    pub fn cluster_messages(&self) -> broadcast::Receiver<String> {
        self.cluster_in.subscribe()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StoreChange> {
        self.tx.subscribe()
    }

    pub fn add_hook(&self, hook: ChangeHook) {
        self.hooks.write().unwrap_or_else(|p| p.into_inner()).push(hook);
    }

    /// Whether LISTEN is in effect: only then may a node keep what it read (other nodes'
    /// changes reach it).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// How long ago a mailbox last changed on any node (`None`: not since this node started).
    pub fn since_mailbox_change(&self) -> Option<Duration> {
        match self.last_mailbox_change.load(Ordering::Relaxed) {
            0 => None,
            at => Some(uptime().saturating_sub(Duration::from_millis(at))),
        }
    }

    /// Hands committed changes to the hooks, then to the subscribers.
    pub fn publish(&self, changes: &[StoreChange]) {
        if changes.is_empty() {
            return;
        }
        if changes.iter().any(|c| matches!(c, StoreChange::Mailbox { .. })) {
            self.last_mailbox_change.store((uptime().as_millis() as u64).max(1), Ordering::Relaxed);
        }
        let hooks = self.hooks.read().unwrap_or_else(|p| p.into_inner());
        for change in changes {
            for hook in hooks.iter() {
                hook(change);
            }
            let _ = self.tx.send(change.clone());
        }
    }

    /// Queues the changes for the other nodes in `tx` (sent when it commits).
    pub async fn notify(&self, tx: &deadpool_postgres::Transaction<'_>, changes: &[StoreChange]) -> StoreResult<()> {
        for chunk in changes.chunks(CHANGES_PER_NOTIFY) {
            let payload = encode(self.node, chunk);
            tx.run("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]).await.map_err(pg_error)?;
        }
        Ok(())
    }
}

/// Time since the first call in this process (a monotonic clock in milliseconds).
fn uptime() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// `node change;change;...` with a change as `m account mailbox`, `a account`, `d` or `q`.
fn encode(node: u64, changes: &[StoreChange]) -> String {
    let mut out = format!("{node:x}");
    for (i, c) in changes.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ';' });
        match c {
            StoreChange::Mailbox { account, mailbox } => out.push_str(&format!("m {account} {mailbox}")),
            StoreChange::Account { account } => out.push_str(&format!("a {account}")),
            StoreChange::Directory => out.push('d'),
            StoreChange::Queue => out.push('q'),
        }
    }
    out
}

fn decode(payload: &str) -> Option<(u64, Vec<StoreChange>)> {
    let (node, rest) = payload.split_once(' ')?;
    let node = u64::from_str_radix(node, 16).ok()?;
    let mut changes = Vec::new();
    for part in rest.split(';') {
        let mut words = part.split(' ');
        let change = match words.next()? {
            "m" => StoreChange::Mailbox { account: words.next()?.parse().ok()?, mailbox: words.next()?.parse().ok()? },
            "a" => StoreChange::Account { account: words.next()?.parse().ok()? },
            "d" => StoreChange::Directory,
            "q" => StoreChange::Queue,
            _ => return None,
        };
        changes.push(change);
    }
    Some((node, changes))
}

/// Keeps a LISTEN connection open for as long as the feed lives, reconnecting after a
/// failure. Whenever LISTEN takes effect — the first time too, as a node may have read and
/// cached before it did — and whenever the connection is lost, the caches are told the
/// directory may have changed: what was sent while nobody listened is lost.
pub async fn listen<T>(config: tokio_postgres::Config, tls: T, feed: Weak<Feed>)
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Clone + Send + 'static,
    T::Stream: Send + 'static,
{
    loop {
        let Some(this) = feed.upgrade() else { return };
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                // The connection is driven by polling its messages; LISTEN runs beside it.
                let statement = format!("LISTEN {CHANNEL}; LISTEN {CLUSTER_CHANNEL}");
                let listen = client.batch_execute(&statement);
                tokio::pin!(listen);
                let mut listening = false;
                loop {
                    tokio::select! {
                        done = &mut listen, if !listening => {
                            if let Err(e) = done {
                                tracing::warn!(error = %crate::error::words(&e), "database change feed: LISTEN failed");
                                break;
                            }
                            listening = true;
                            this.connected.store(true, Ordering::SeqCst);
                            this.publish(&[StoreChange::Directory, StoreChange::Queue]);
                            tracing::debug!("database change feed listening");
                        }
                        message = messages.next() => match message {
                            Some(Ok(AsyncMessage::Notification(n))) if n.channel() == CLUSTER_CHANNEL => {
                                let mut lines = n.payload().split('\n');
                                let node = lines.next().and_then(|n| u64::from_str_radix(n, 16).ok());
                                if node.is_some_and(|n| n != this.node) {
                                    for line in lines {
                                        let _ = this.cluster_in.send(line.to_string());
                                    }
                                }
                            }
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if let Some((node, changes)) = decode(n.payload()) {
                                    if node != this.node {
                                        this.publish(&changes);
                                    }
                                } else {
                                    tracing::warn!(payload = n.payload(), "database change feed: unreadable notification");
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %crate::error::words(&e), "database change feed: connection lost");
                                break;
                            }
                            None => break,
                        }
                    }
                }
                this.connected.store(false, Ordering::SeqCst);
                this.publish(&[StoreChange::Directory]);
            }
            Err(e) => {
                this.connected.store(false, Ordering::SeqCst);
                tracing::warn!(error = %crate::error::words(&e), "database change feed: cannot connect");
            }
        }
        drop(this);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Sends the queued cluster lines, as many as fit in one notification at a time.
pub async fn send_cluster(pool: deadpool_postgres::Pool, node: u64, mut outgoing: tokio::sync::mpsc::Receiver<String>) {
    while let Some(first) = outgoing.recv().await {
        let mut payload = format!("{node:x}\n{first}");
        while payload.len() < CLUSTER_PAYLOAD / 2 {
            match outgoing.try_recv() {
                Ok(line) => {
                    payload.push('\n');
                    payload.push_str(&line);
                }
                Err(_) => break,
            }
        }
        let sent = match pool.get().await {
            Ok(client) => client
                .run("SELECT pg_notify($1, $2)", &[&CLUSTER_CHANNEL, &payload])
                .await
                .map(|_| ())
                .map_err(|e| crate::error::words(&e)),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "cluster lines not sent");
        }
    }
}

impl Feed {
    pub fn node(&self) -> u64 {
        self.node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let changes = vec![
            StoreChange::Mailbox { account: 7, mailbox: 42 },
            StoreChange::Account { account: 7 },
            StoreChange::Directory,
            StoreChange::Queue,
        ];
        let payload = encode(0xdead_beef, &changes);
        assert_eq!(decode(&payload), Some((0xdead_beef, changes)));
        assert_eq!(decode("zz m 1 2"), None);
        assert_eq!(decode("1 m 1"), None);
        assert_eq!(decode("1 x"), None);
    }
}
