//! The PostgreSQL store: cluster mode's backend, where every node of a cluster keeps its
//! state in one database.
//!
//! - **Durable on return**: every mutating call is one transaction, committed with the
//!   server's `synchronous_commit` (on by default) before it returns. PostgreSQL flushes the
//!   WAL of concurrent commits together (group commit across sessions and nodes).
//! - **Concurrency**: a mailbox's row is locked (`SELECT ... FOR UPDATE`) by every transaction
//!   that hands out its UIDs or modseqs, so writers on different nodes are serialized per
//!   mailbox and UIDs are never given twice. Rows are always locked in one order (mailboxes by
//!   id, then contents by hash), so transactions never deadlock one another.
//! - **Queue**: entries are leased with a durable `lease_until` chosen with `FOR UPDATE SKIP
//!   LOCKED`; a node that dies holding leases leaves its entries to the others once the leases
//!   end.
//! - **Change feed**: each transaction sends its changes with `NOTIFY tern_changes` (delivered
//!   at commit); every node listens and passes the changes of the others to its hooks and
//!   subscribers (IDLE, caches), and its own directly, before the caller is answered.

mod blob;
mod deliver;
mod domains;
mod error;
mod feed;
mod filter;
mod indexer;
mod mail;
pub mod migrate;
mod queue;
mod rows;
pub mod schema;
mod scripts;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;
mod text;

use crate::sql::Cached;
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use error::{pg_error, pool_error};
use feed::Feed;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tern_store::*;
use tokio::sync::broadcast;

pub use blob::{BlobBackend, TableBlobs};
pub use error::is_unavailable;

/// How to reach the database (`[store]` with `backend = "postgres"`).
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user:pass@host:port/db`, or the key/value form (`host=/run/postgresql
    /// dbname=tern user=tern`); `sslmode=require` asks for TLS.
    pub url: String,
    /// Connections this node keeps open at most.
    pub pool_size: usize,
    /// PEM file of the CA that signed the database's certificate, besides the public roots.
    pub ca_file: Option<PathBuf>,
}

/// A Tern store in PostgreSQL. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Where contents' bytes live.
    blobs: Arc<dyn BlobBackend>,
    /// Wakes this node's search indexer after a delivery.
    index_wake: Arc<tokio::sync::Notify>,
    feed: Arc<Feed>,
    /// To this node's delivery writers ([`deliver`]).
    deliveries: deliver::Deliveries,
    /// Domains as last read, emptied by directory changes.
    domains: Arc<domains::DomainCache>,
    /// Deliveries handed to the writers and not answered yet (the indexer yields to them).
    in_flight: AtomicUsize,
    closed: AtomicBool,
    /// The change feed's listener and the cluster lines' sender.
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl PgStore {
    /// Connects, creates or migrates the schema, and starts listening for other nodes'
    /// changes.
    pub async fn open(options: &PgOptions) -> StoreResult<PgStore> {
        let config = tokio_postgres::Config::from_str(&options.url)
            .map_err(|e| StoreError::Backend(format!("database url: {}", error::words(&e))))?;
        let tls = tls_connector(options.ca_file.as_deref())?;
        // One connection of our own for the schema, then the pool.
        let (mut client, connection) = config.connect(tls.clone()).await.map_err(pg_error)?;
        let driver = tokio::spawn(connection);
        schema::migrate(&mut client).await?;
        drop(client);
        let _ = driver.await;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend(format!("database pool: {e}")))?;
        let (feed, outgoing) = Feed::new();
        let feed = Arc::new(feed);
        let listener = tokio::spawn(feed::listen(config, tls, Arc::downgrade(&feed)));
        let sender = tokio::spawn(feed::send_cluster(pool.clone(), feed.node(), outgoing));
        let index_wake = Arc::new(tokio::sync::Notify::new());
        let (deliveries, waiting) = deliver::channel();
        let domains = Arc::new(domains::DomainCache::default());
        let cache = Arc::clone(&domains);
        feed.add_hook(Arc::new(move |change: &StoreChange| cache.on_change(change)));
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                blobs: Arc::new(TableBlobs),
                index_wake: Arc::clone(&index_wake),
                feed,
                deliveries,
                domains,
                in_flight: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                tasks: std::sync::Mutex::new(vec![listener, sender]),
            }),
        };
        let mut started = vec![tokio::spawn(indexer::run(store.clone(), index_wake))];
        for _ in 0..deliver::WRITERS {
            started.push(tokio::spawn(deliver::run(store.clone(), Arc::clone(&waiting))));
        }
        if let Ok(mut tasks) = store.inner.tasks.lock() {
            tasks.extend(started);
        }
        Ok(store)
    }

    /// Tells this node's indexer that a content may wait for it.
    pub(crate) fn wake_indexer(&self) {
        self.inner.index_wake.notify_one();
    }

    pub(crate) async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        self.inner.pool.get().await.map_err(pool_error)
    }

    /// This process's identity among the nodes (lease holder, change feed sender).
    pub(crate) fn node(&self) -> i64 {
        self.inner.feed.node() as i64
    }

    pub(crate) fn blobs(&self) -> Arc<dyn BlobBackend> {
        Arc::clone(&self.inner.blobs)
    }

    pub(crate) fn deliveries(&self) -> &deliver::Deliveries {
        &self.inner.deliveries
    }

    pub(crate) fn domains(&self) -> &domains::DomainCache {
        &self.inner.domains
    }

    pub(crate) fn in_flight(&self) -> &AtomicUsize {
        &self.inner.in_flight
    }

    pub(crate) fn feed(&self) -> &Feed {
        &self.inner.feed
    }

    /// Runs `work` in one transaction, sends its changes to the other nodes with the commit and
    /// to this node's hooks and subscribers after it.
    pub(crate) async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        F: for<'t> FnOnce(
            &'t deadpool_postgres::Transaction<'t>,
            &'t mut Vec<StoreChange>,
        ) -> futures::future::BoxFuture<'t, StoreResult<T>>,
    {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let mut changes = Vec::new();
        let value = work(&tx, &mut changes).await?;
        self.commit(tx, &changes).await?;
        Ok(value)
    }

    /// Commits `tx` with its changes: sent to the other nodes with the commit (NOTIFY), to this
    /// node's hooks and subscribers after it.
    pub(crate) async fn commit(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        changes: &[StoreChange],
    ) -> StoreResult<()> {
        self.feed().notify(&tx, changes).await?;
        tx.commit().await.map_err(pg_error)?;
        self.feed().publish(changes);
        Ok(())
    }

    /// A read-only transaction on one snapshot (several reads that must agree).
    pub(crate) async fn snapshot(
        client: &mut deadpool_postgres::Object,
    ) -> StoreResult<deadpool_postgres::Transaction<'_>> {
        client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg_error)
    }
}

/// TLS for database connections: the public roots and the admin's CA. Used only when the
/// connection asks for it (`sslmode=prefer`, the default, tries it; `require` insists).
fn tls_connector(ca_file: Option<&std::path::Path>) -> StoreResult<tokio_postgres_rustls::MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| StoreError::Backend(format!("database CA file {}: {e}", path.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| StoreError::Backend(format!("database CA file {}: {e}", path.display())))?;
            roots.add(cert).map_err(|e| StoreError::Backend(format!("database CA file {}: {e}", path.display())))?;
        }
    }
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl ChangeFeed for PgStore {
    fn subscribe(&self) -> broadcast::Receiver<StoreChange> {
        self.feed().subscribe()
    }

    fn on_change(&self, hook: ChangeHook) {
        self.feed().add_hook(hook);
    }

    fn cluster_send(&self, line: String) {
        self.feed().cluster_send(line);
    }

    fn cluster_messages(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.feed().cluster_messages())
    }
}

#[async_trait]
impl Store for PgStore {
    async fn backup(&self, _dir: PathBuf) -> StoreResult<BackupSummary> {
        Err(StoreError::Backend(
            "a PostgreSQL store is backed up with PostgreSQL's own tools (pg_dump, or a streaming replica)".into(),
        ))
    }

    async fn cluster_secret(&self) -> StoreResult<Option<[u8; 32]>> {
        let mut secret = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut secret[..]);
        let client = self.client().await?;
        // The first node to ask makes it; every other gets the same.
        client
            .run("INSERT INTO tern_secrets (name, value) VALUES ('server', $1) ON CONFLICT DO NOTHING", &[&&secret[..]])
            .await
            .map_err(pg_error)?;
        let row = client.row("SELECT value FROM tern_secrets WHERE name = 'server'", &[]).await.map_err(pg_error)?;
        let value: &[u8] = row.get(0);
        value.try_into().map(Some).map_err(|_| error::corrupt("server secret", "not 32 bytes"))
    }

    fn is_healthy(&self) -> bool {
        !self.inner.closed.load(Ordering::Relaxed) && self.feed().connected()
    }

    async fn shutdown(&self) -> StoreResult<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let tasks = self.inner.tasks.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        for task in tasks {
            task.abort();
        }
        self.inner.pool.close();
        Ok(())
    }
}
