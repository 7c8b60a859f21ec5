//! Outbound delivery: the workers of the persistent queue.
//!
//! The queue lives in the store (`Store::queue_*`). [`DeliveryService::run`] claims due
//! entries (a lease: no other worker gets them meanwhile), and for each entry delivers the due
//! recipients, one SMTP transaction per destination domain, on connections that are kept open
//! a few seconds for more mail to the same domain. The outcome of every recipient is written
//! back in one store update: delivered, deferred (retried with exponential backoff until the
//! message's lifetime ends) or failed; failures (and delays, and successes when asked for) are
//! reported to the sender with a DSN before the update, so a crash can repeat a report but
//! never lose one.

mod attempt;
pub mod client;
pub mod dns;
pub mod mta_sts;
pub mod reports;
pub mod tls;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tern_directory::Directory;
pub use tern_pipeline::dsn;
use tern_store::{QueueEntry, QueueId, QueuedRecipient, RecipientStatus, Store, StoreChange};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use attempt::{Outcome, OutcomeKind};
pub use tern_guard::Clock;

/// Carries one message to one destination domain and says what happened to each recipient.
/// The server's courier is SMTP over the network ([`attempt`]: MX or smarthost, TLS policy,
/// connection reuse); tests of the queue (backoff, DSNs, expiry, leases) give a scripted one
/// to [`DeliveryService::with_courier`] and need no network.
#[async_trait::async_trait]
pub trait Courier: Send + Sync {
    async fn carry(&self, parcel: Parcel<'_>) -> Vec<(usize, Outcome)>;
}

/// One message for one destination domain.
pub struct Parcel<'a> {
    pub entry: &'a QueueEntry,
    pub raw: &'a Arc<Vec<u8>>,
    pub domain: &'a str,
    /// The recipients to deliver: indices into `entry.recipients`.
    pub recipients: &'a [usize],
}

/// Most queue entries claimed and not finished at once, per allowed concurrent transaction.
const ENTRIES_PER_SLOT: usize = 4;
/// Longest sleep of the scheduler without anything waking it.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Transactions on one connection before it is closed anyway.
const MAX_TRANSACTIONS_PER_CONNECTION: u32 = 1000;

/// Delivery settings, from `[delivery]` and `[dns]`.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub hostname: String,
    pub ehlo_name: String,
    pub smtp_port: u16,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// How long a claimed entry stays this worker's without a renewal.
    pub lease: Duration,
    pub lifetime: Duration,
    pub delay_notice: Option<Duration>,
    pub max_concurrency: usize,
    pub per_domain_concurrency: usize,
    pub per_domain_rate: f64,
    pub max_mx_hosts: usize,
    pub connection_idle: Duration,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub mta_sts: bool,
    pub dane: bool,
    pub smarthost: Option<tern_config::Smarthost>,
}

impl DeliverySettings {
    pub fn from_config(config: &tern_config::Config) -> DeliverySettings {
        let d = &config.delivery;
        DeliverySettings {
            hostname: config.hostname.clone(),
            ehlo_name: d.ehlo_name.clone().unwrap_or_else(|| config.hostname.clone()),
            smtp_port: d.smtp_port,
            retry_initial: Duration::from_secs(d.retry_initial_seconds),
            lease: Duration::from_secs(d.lease_seconds),
            retry_max: Duration::from_secs(d.retry_max_seconds),
            lifetime: Duration::from_secs(d.lifetime_seconds),
            delay_notice: (d.delay_notice_seconds > 0).then(|| Duration::from_secs(d.delay_notice_seconds)),
            max_concurrency: d.max_concurrency,
            per_domain_concurrency: d.per_domain_concurrency,
            per_domain_rate: d.per_domain_rate,
            max_mx_hosts: d.max_mx_hosts,
            connection_idle: Duration::from_secs(d.connection_idle_seconds),
            connect_timeout: Duration::from_secs(d.connect_timeout_seconds),
            command_timeout: Duration::from_secs(d.command_timeout_seconds),
            mta_sts: d.mta_sts,
            dane: d.dane,
            smarthost: d.smarthost.clone(),
        }
    }

    /// Wait before attempt `attempts + 1`: the initial delay, doubled per attempt, capped.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.retry_initial.saturating_mul(factor).min(self.retry_max)
    }
}

/// A recipient to report on: the recipient, what happened, status code, diagnostic.
type Report = (QueuedRecipient, dsn::Action, String, Option<String>);

/// Per destination domain: its concurrency limit and its pace.
struct Destination {
    slots: Arc<Semaphore>,
    next_send: Mutex<Instant>,
}

/// An open connection waiting for more mail to the same destination.
struct IdleConnection {
    client: client::SmtpClient,
    since: Instant,
}

pub struct DeliveryService {
    pub(crate) settings: DeliverySettings,
    pub(crate) store: Arc<dyn Store>,
    directory: Directory,
    pub(crate) dns: dns::Dns,
    pub(crate) tls: tls::TlsConfigs,
    pub(crate) mta_sts: mta_sts::MtaSts,
    slots: Arc<Semaphore>,
    destinations: Mutex<HashMap<String, Arc<Destination>>>,
    idle: Mutex<HashMap<String, Vec<IdleConnection>>>,
    in_progress: Mutex<HashSet<QueueId>>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// `None`: SMTP over the network.
    courier: Option<Arc<dyn Courier>>,
    clock: Arc<dyn Clock>,
}

impl DeliveryService {
    pub fn new(
        config: &tern_config::Config,
        directory: Directory,
        dns: dns::Dns,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<DeliveryService>> {
        Self::build(config, directory, dns, shutdown, None, tern_guard::clock::system())
    }

    /// A service that hands its mail to `courier` and reads the time from `clock` (tests).
    pub fn with_courier(
        config: &tern_config::Config,
        directory: Directory,
        dns: dns::Dns,
        shutdown: CancellationToken,
        courier: Arc<dyn Courier>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<DeliveryService>> {
        Self::build(config, directory, dns, shutdown, Some(courier), clock)
    }

    fn build(
        config: &tern_config::Config,
        directory: Directory,
        dns: dns::Dns,
        shutdown: CancellationToken,
        courier: Option<Arc<dyn Courier>>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<DeliveryService>> {
        let settings = DeliverySettings::from_config(config);
        let tls = tls::TlsConfigs::new(config.delivery.ca_file.as_deref())?;
        let mta_sts = mta_sts::MtaSts::new(tls.roots(), config.delivery.mta_sts_port);
        let store = Arc::clone(directory.store());
        let wake = Arc::new(Notify::new());
        let hook = Arc::clone(&wake);
        store.on_change(Arc::new(move |change| {
            if matches!(change, StoreChange::Queue) {
                hook.notify_one();
            }
        }));
        Ok(Arc::new(DeliveryService {
            slots: Arc::new(Semaphore::new(settings.max_concurrency)),
            settings,
            store,
            directory,
            dns,
            tls,
            mta_sts,
            destinations: Mutex::new(HashMap::new()),
            idle: Mutex::new(HashMap::new()),
            in_progress: Mutex::new(HashSet::new()),
            wake,
            shutdown,
            tracker: TaskTracker::new(),
            courier,
            clock,
        }))
    }

    pub fn hostname(&self) -> &str {
        &self.settings.hostname
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Queues a message the server itself writes (reports) for `to`, with a null reverse path.
    pub async fn queue_message(&self, to: &str, message: Vec<u8>) -> anyhow::Result<()> {
        self.inject_report(to, message).await
    }

    /// Wakes the scheduler (after `tern queue retry`, for instance).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The scheduler: claims due entries and starts their delivery, until shutdown.
    pub async fn run(self: Arc<Self>) {
        tracing::info!(
            smarthost = self.settings.smarthost.as_ref().map(|s| s.host.as_str()).unwrap_or("none"),
            "delivery started"
        );
        let reaper = {
            let me = Arc::clone(&self);
            tokio::spawn(async move { me.reap_idle_connections().await })
        };
        let max_entries = self.settings.max_concurrency.saturating_mul(ENTRIES_PER_SLOT).max(1);
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            let busy = self.in_progress.lock().unwrap_or_else(|p| p.into_inner()).len();
            let free = max_entries.saturating_sub(busy);
            let mut claimed = 0;
            if free > 0 {
                let limit = free.min(256);
                match self.store.queue_claim(self.clock.unix(), limit, self.settings.lease.as_secs() as i64).await {
                    Ok(entries) => {
                        claimed = entries.len();
                        for entry in entries {
                            let id = entry.message.id;
                            if !self.in_progress.lock().unwrap_or_else(|p| p.into_inner()).insert(id) {
                                continue;
                            }
                            let me = Arc::clone(&self);
                            self.tracker.spawn(async move { me.process(entry).await });
                        }
                        if claimed == limit {
                            tokio::task::yield_now().await;
                            continue;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot read the queue"),
                }
            }
            let _ = claimed;
            let sleep = match self.store.queue_next_due().await {
                Ok(Some(at)) => Duration::from_secs(at.saturating_sub(self.clock.unix()).max(0) as u64).min(MAX_SLEEP),
                _ => MAX_SLEEP,
            };
            // A due entry that is still in progress would make us spin: wait for a wake-up.
            let sleep = if sleep.is_zero() { Duration::from_millis(500) } else { sleep };
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        self.tracker.close();
        self.tracker.wait().await;
        reaper.abort();
        let idle: Vec<IdleConnection> =
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).drain().flat_map(|(_, v)| v).collect();
        for c in idle {
            c.client.quit().await;
        }
        tracing::info!("delivery stopped");
    }

    async fn reap_idle_connections(&self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut metrics_due = Instant::now();
        let mut renew_due = Instant::now() + self.settings.lease / 3;
        loop {
            tick.tick().await;
            let expired: Vec<IdleConnection> = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let mut out = Vec::new();
                for list in idle.values_mut() {
                    let (old, keep): (Vec<_>, Vec<_>) =
                        list.drain(..).partition(|c| c.since.elapsed() >= self.settings.connection_idle);
                    *list = keep;
                    out.extend(old);
                }
                idle.retain(|_, l| !l.is_empty());
                out
            };
            for c in expired {
                tokio::spawn(c.client.quit());
            }
            if metrics_due <= Instant::now() {
                metrics_due = Instant::now() + Duration::from_secs(15);
                self.record_queue_metrics().await;
            }
            if renew_due <= Instant::now() {
                renew_due = Instant::now() + self.settings.lease / 3;
                self.renew_leases().await;
            }
        }
    }

    /// Keeps the entries this worker holds (waiting for a slot or in an attempt) its own.
    async fn renew_leases(&self) {
        let held: Vec<QueueId> = self.in_progress.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
        if held.is_empty() {
            return;
        }
        if let Err(e) = self.store.queue_renew(held, self.clock.unix(), self.settings.lease.as_secs() as i64).await {
            tracing::warn!(error = %e, "cannot renew queue leases");
        }
    }

    async fn record_queue_metrics(&self) {
        if let Ok(stats) = self.store.queue_stats().await {
            metrics::gauge!("tern_queue_messages").set(stats.messages as f64);
            let age = stats.oldest.map(|t| (self.clock.unix() - t).max(0)).unwrap_or(0);
            metrics::gauge!("tern_queue_oldest_age_seconds").set(age as f64);
        }
    }

    fn destination(&self, key: &str) -> Arc<Destination> {
        let mut map = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(key.to_string()).or_insert_with(|| {
            Arc::new(Destination {
                slots: Arc::new(Semaphore::new(self.settings.per_domain_concurrency)),
                next_send: Mutex::new(Instant::now()),
            })
        }))
    }

    /// Waits for this destination's pace (`per_domain_rate` messages per second).
    async fn pace(&self, destination: &Destination) {
        if self.settings.per_domain_rate <= 0.0 {
            return;
        }
        let interval = Duration::from_secs_f64(1.0 / self.settings.per_domain_rate);
        let at = {
            let mut next = destination.next_send.lock().unwrap_or_else(|p| p.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + interval;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }

    pub(crate) fn take_idle(&self, key: &str) -> Option<client::SmtpClient> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        while let Some(c) = list.pop() {
            if c.since.elapsed() < self.settings.connection_idle {
                return Some(c.client);
            }
            tokio::spawn(c.client.quit());
        }
        None
    }

    pub(crate) fn put_idle(&self, key: &str, client: client::SmtpClient) {
        if self.shutdown.is_cancelled() || client.transactions >= MAX_TRANSACTIONS_PER_CONNECTION {
            tokio::spawn(client.quit());
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.entry(key.to_string()).or_default().push(IdleConnection { client, since: Instant::now() });
    }

    async fn process(self: Arc<Self>, entry: QueueEntry) {
        let id = entry.message.id;
        if let Err(e) = self.attempt_entry(&entry).await {
            tracing::error!(queue = id, error = %e, "delivery attempt could not be recorded; retrying later");
            // Push the due recipients back so the entry is not retried in a loop.
            let later = self.clock.unix() + self.settings.retry_initial.as_secs() as i64;
            let updates: Vec<(usize, QueuedRecipient)> = entry
                .recipients
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.is_final())
                .map(|(i, r)| {
                    let mut r = r.clone();
                    r.next_attempt = r.next_attempt.max(later);
                    (i, r)
                })
                .collect();
            if let Err(e) = self.store.queue_update(id, updates).await {
                tracing::error!(queue = id, error = %e, "cannot update the queue");
            }
        }
        self.in_progress.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.wake.notify_one();
    }

    /// One attempt for the due recipients of an entry, then the DSNs, then the update.
    async fn attempt_entry(&self, entry: &QueueEntry) -> anyhow::Result<()> {
        let now = self.clock.unix();
        let id = entry.message.id;
        // One transaction per destination domain and reverse path (forwarded copies carry
        // their own, rewritten one).
        let mut groups: BTreeMap<(String, Option<String>), Vec<usize>> = BTreeMap::new();
        for (i, r) in entry.recipients.iter().enumerate() {
            if !r.is_final() && r.next_attempt <= now {
                groups.entry((r.domain.clone(), r.sender.clone())).or_default().push(i);
            }
        }
        if groups.is_empty() {
            self.store.queue_update(id, Vec::new()).await?;
            return Ok(());
        }
        // The content is read once, by the first domain group that gets a connection slot:
        // entries waiting for a slot hold no message in memory.
        let raw: tokio::sync::OnceCell<Option<Arc<Vec<u8>>>> = tokio::sync::OnceCell::new();
        let groups: Vec<(String, Vec<usize>, Option<QueueEntry>)> = groups
            .into_iter()
            .map(|((domain, sender), indices)| {
                let own = sender.map(|sender| {
                    let mut copy = entry.clone();
                    copy.message.envelope.mail_from = Some(sender);
                    copy
                });
                (domain, indices, own)
            })
            .collect();
        let attempts = groups.iter().map(|(domain, indices, own)| {
            let raw = &raw;
            let entry = own.as_ref().unwrap_or(entry);
            async move { self.deliver_domain(entry, raw, domain, indices).await }
        });
        let outcomes: Vec<(usize, Outcome)> =
            futures::future::try_join_all(attempts).await?.into_iter().flatten().collect();
        self.record(entry, outcomes).await
    }

    async fn deliver_domain(
        &self,
        entry: &QueueEntry,
        raw: &tokio::sync::OnceCell<Option<Arc<Vec<u8>>>>,
        domain: &str,
        indices: &[usize],
    ) -> anyhow::Result<Vec<(usize, Outcome)>> {
        let key = match &self.settings.smarthost {
            Some(sh) => format!("smarthost:{}", sh.host),
            None => domain.to_string(),
        };
        let destination = self.destination(&key);
        let Ok(_global) = Arc::clone(&self.slots).acquire_owned().await else { return Ok(Vec::new()) };
        let Ok(_local) = Arc::clone(&destination.slots).acquire_owned().await else { return Ok(Vec::new()) };
        let raw = raw
            .get_or_try_init(|| async {
                Ok::<_, tern_store::StoreError>(self.store.blob_get(entry.message.blob).await?.map(Arc::new))
            })
            .await?;
        let Some(raw) = raw else {
            let missing = Outcome::permanent("554 5.3.0 The message content is missing from the store", None);
            return Ok(indices.iter().map(|&i| (i, missing.clone())).collect());
        };
        self.pace(&destination).await;
        let started = Instant::now();
        let outcomes = match &self.courier {
            Some(courier) => courier.carry(Parcel { entry, raw, domain, recipients: indices }).await,
            None => attempt::deliver(self, entry, raw, domain, &key, indices).await,
        };
        metrics::histogram!("tern_delivery_attempt_seconds").record(started.elapsed().as_secs_f64());
        Ok(outcomes)
    }

    /// Applies the outcomes: DSNs first, then one store update.
    async fn record(&self, entry: &QueueEntry, outcomes: Vec<(usize, Outcome)>) -> anyhow::Result<()> {
        let now = self.clock.unix();
        let s = &self.settings;
        let message = &entry.message;
        let age = now - message.created;
        let expired = age >= s.lifetime.as_secs() as i64;
        let mut updates = Vec::new();
        // Reports by kind (failed, delayed, relayed): recipient, action, status, diagnostic.
        let mut reports: BTreeMap<u8, Vec<Report>> = BTreeMap::new();
        for (i, outcome) in outcomes {
            let Some(before) = entry.recipients.get(i) else { continue };
            let mut r = before.clone();
            r.attempts += 1;
            r.remote_mta = outcome.remote_mta.clone().or(r.remote_mta);
            r.last_result = Some(outcome.text.clone());
            match outcome.kind {
                attempt::OutcomeKind::Delivered { remote_dsn } => {
                    r.status = RecipientStatus::Delivered;
                    metrics::counter!("tern_delivery_recipients_total", "result" => "delivered").increment(1);
                    metrics::histogram!("tern_delivery_latency_seconds").record(age.max(0) as f64);
                    tracing::info!(queue = message.id, rcpt = %r.address, mta = r.remote_mta.as_deref().unwrap_or("-"), tls = outcome.tls.as_deref().unwrap_or("none"), reply = %outcome.text, "delivered");
                    // The next server takes over DSN duty when it speaks DSN (RFC 3461 §4.2).
                    if !remote_dsn && dsn::Action::Relayed.wanted_by(r.notify) {
                        reports.entry(2).or_default().push((
                            r.clone(),
                            dsn::Action::Relayed,
                            outcome.status.clone(),
                            Some(outcome.text.clone()),
                        ));
                    }
                }
                attempt::OutcomeKind::Permanent => {
                    r.status = RecipientStatus::Failed;
                    metrics::counter!("tern_delivery_recipients_total", "result" => "bounced").increment(1);
                    tracing::info!(queue = message.id, rcpt = %r.address, mta = r.remote_mta.as_deref().unwrap_or("-"), reply = %outcome.text, "bounced");
                    if dsn::Action::Failed.wanted_by(r.notify) {
                        reports.entry(0).or_default().push((
                            r.clone(),
                            dsn::Action::Failed,
                            outcome.status.clone(),
                            Some(outcome.text.clone()),
                        ));
                    }
                }
                attempt::OutcomeKind::Temporary if expired => {
                    r.status = RecipientStatus::Failed;
                    metrics::counter!("tern_delivery_recipients_total", "result" => "expired").increment(1);
                    tracing::info!(queue = message.id, rcpt = %r.address, reply = %outcome.text, "gave up: message too old");
                    if dsn::Action::Failed.wanted_by(r.notify) {
                        let text = format!("{} (gave up after {} attempts)", outcome.text, r.attempts);
                        reports.entry(0).or_default().push((
                            r.clone(),
                            dsn::Action::Failed,
                            "5.4.7".into(),
                            Some(text),
                        ));
                    }
                }
                attempt::OutcomeKind::Temporary => {
                    let wait = s.backoff(r.attempts);
                    r.next_attempt = now + wait.as_secs() as i64;
                    metrics::counter!("tern_delivery_recipients_total", "result" => "deferred").increment(1);
                    tracing::info!(queue = message.id, rcpt = %r.address, mta = r.remote_mta.as_deref().unwrap_or("-"), reply = %outcome.text, retry_in = wait.as_secs(), "deferred");
                    if let Some(notice) = s.delay_notice
                        && !r.delay_notified
                        && age >= notice.as_secs() as i64
                        && dsn::Action::Delayed.wanted_by(r.notify)
                    {
                        r.delay_notified = true;
                        reports.entry(1).or_default().push((
                            r.clone(),
                            dsn::Action::Delayed,
                            outcome.status.clone(),
                            Some(outcome.text.clone()),
                        ));
                    }
                }
            }
            updates.push((i, r));
        }
        // Never report on a report: a null reverse path gets nothing (RFC 5321 §6.1).
        if message.envelope.mail_from.is_some() && !reports.is_empty() {
            let raw = self.store.blob_get(message.blob).await?.unwrap_or_default();
            let retry_until = message.created + s.lifetime.as_secs() as i64;
            for (_, list) in reports {
                let reported: Vec<dsn::ReportedRecipient<'_>> = list
                    .iter()
                    .map(|(r, action, status, diagnostic)| dsn::ReportedRecipient {
                        recipient: r,
                        action: *action,
                        status: status.clone(),
                        diagnostic: diagnostic.clone(),
                    })
                    .collect();
                let report = dsn::build(&s.hostname, message, &raw, &reported, now, Some(retry_until));
                if let Err(e) = self.inject_report(message.envelope.mail_from.as_deref().unwrap_or(""), report).await {
                    tracing::error!(queue = message.id, error = %e, "cannot queue the delivery report");
                    return Err(e);
                }
            }
        }
        self.store.queue_update(message.id, updates).await?;
        Ok(())
    }

    /// Delivers a report to `to` (see [`tern_pipeline::deliver_report`]).
    async fn inject_report(&self, to: &str, report: Vec<u8>) -> anyhow::Result<()> {
        tern_pipeline::deliver_report(&self.store, &self.directory, to, report).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut config = tern_config::Config::default();
        config.delivery.retry_initial_seconds = 300;
        config.delivery.retry_max_seconds = 4 * 3600;
        let s = DeliverySettings::from_config(&config);
        assert_eq!(s.backoff(1), Duration::from_secs(300));
        assert_eq!(s.backoff(2), Duration::from_secs(600));
        assert_eq!(s.backoff(3), Duration::from_secs(1200));
        assert_eq!(s.backoff(10), Duration::from_secs(4 * 3600));
        assert_eq!(s.backoff(1000), Duration::from_secs(4 * 3600));
    }
}
