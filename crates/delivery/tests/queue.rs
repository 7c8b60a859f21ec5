//! The outbound queue in-process: the real scheduler, store and DSNs, with a scripted courier
//! instead of the network and a manual clock instead of waiting. Each test moves time on
//! by hand and waits for the courier to be called, never for a fixed time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tern_delivery::{Courier, DeliveryService, Outcome, Parcel};
use tern_directory::Directory;
use tern_guard::ManualClock;
use tern_store::{Delivery, DeliveryEnvelope, EnvelopeRecipient, NewQueueRecipient, RecipientStatus, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const HOUR: u64 = 3600;

/// What the remote side answers for a domain.
type Answer = fn(&str) -> Outcome;

/// The reverse path of each courier call, with its recipients.
type Senders = Arc<Mutex<Vec<(Option<String>, Vec<String>)>>>;

/// Answers each call with the next scripted outcome and reports the call.
struct Script {
    answers: Mutex<VecDeque<Answer>>,
    calls: mpsc::UnboundedSender<(String, usize)>,
    /// The reverse path of each call, with its recipients.
    senders: Senders,
}

#[async_trait::async_trait]
impl Courier for Script {
    async fn carry(&self, parcel: Parcel<'_>) -> Vec<(usize, Outcome)> {
        let answer = self
            .answers
            .lock()
            .expect("script")
            .pop_front()
            .unwrap_or(|_| Outcome::temporary("451 4.3.0 unscripted", None));
        let rcpts = parcel.recipients.iter().map(|&i| parcel.entry.recipients[i].address.clone()).collect();
        self.senders.lock().expect("senders").push((parcel.entry.message.envelope.mail_from.clone(), rcpts));
        let _ = self.calls.send((parcel.domain.to_string(), parcel.recipients.len()));
        parcel.recipients.iter().map(|&i| (i, answer(parcel.domain))).collect()
    }
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    service: Arc<DeliveryService>,
    calls: mpsc::UnboundedReceiver<(String, usize)>,
    senders: Senders,
    shutdown: CancellationToken,
}

async fn world(answers: Vec<Answer>, lifetime_hours: u64) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(tern_store::embedded::EmbeddedStore::open(&dir.path().join("store"), 8).expect("store"));
    let directory = Directory::new(Arc::clone(&store), Some('+'));
    directory.domain_add("example.test", None).await.expect("domain");
    directory.user_add("alice@example.test", Some("secret")).await.expect("user");
    let mut config = tern_config::Config { hostname: "mx.example.test".into(), ..Default::default() };
    config.delivery.retry_initial_seconds = 600;
    config.delivery.retry_max_seconds = 4 * HOUR;
    config.delivery.lifetime_seconds = lifetime_hours * HOUR;
    config.delivery.delay_notice_seconds = 0;
    let (tx, calls) = mpsc::unbounded_channel();
    let senders = Arc::new(Mutex::new(Vec::new()));
    let courier = Arc::new(Script { answers: Mutex::new(answers.into()), calls: tx, senders: Arc::clone(&senders) });
    let clock = ManualClock::new();
    let dns = tern_dns::Dns::memory(Arc::new(tern_dns::MemoryResolver::new()));
    let shutdown = CancellationToken::new();
    let service =
        DeliveryService::with_courier(&config, directory, dns, shutdown.clone(), courier, Arc::clone(&clock) as _)
            .expect("service");
    tokio::spawn(Arc::clone(&service).run());
    World { _dir: dir, store, clock, service, calls, senders, shutdown }
}

impl World {
    /// Queues a message from alice to `to` (remote addresses), as submission would.
    async fn queue(&self, to: &[&str]) -> u64 {
        let to: Vec<(&str, Option<&str>)> = to.iter().map(|a| (*a, None)).collect();
        self.queue_with(&to).await
    }

    /// Queues a message from alice to `to`, each with its own reverse path when given (a
    /// forwarded copy's SRS sender).
    async fn queue_with(&self, to: &[(&str, Option<&str>)]) -> u64 {
        let raw = b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: queued\r\n\r\nhello\r\n".to_vec();
        let envelope = DeliveryEnvelope {
            mail_from: Some("alice@example.test".into()),
            recipients: to
                .iter()
                .map(|(a, _)| EnvelopeRecipient { address: a.to_string(), orcpt: None, notify: None })
                .collect(),
            source: "test".into(),
            received_at: tern_guard::Clock::unix(&*self.clock),
            ..Default::default()
        };
        let mut delivery = Delivery::prepare(raw, envelope, vec![]);
        delivery.remote = to
            .iter()
            .map(|(a, sender)| NewQueueRecipient {
                address: a.to_string(),
                orcpt: None,
                notify: None,
                sender: sender.map(str::to_string),
            })
            .collect();
        let receipt = self.store.deliver(delivery).await.expect("deliver");
        receipt.queued.expect("queued")
    }

    /// The next call of the courier (fails after 10 s without one).
    async fn next_call(&mut self) -> (String, usize) {
        tokio::time::timeout(Duration::from_secs(10), self.calls.recv())
            .await
            .expect("the courier was not called")
            .expect("channel open")
    }

    /// Waits until the queue holds `entry` in the state `check` accepts.
    async fn until(&self, entry: u64, check: impl Fn(Option<&tern_store::QueueEntry>) -> bool) {
        for _ in 0..1000 {
            let current = self.store.queue_get(entry).await.expect("queue");
            if check(current.as_ref()) {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("queue entry {entry} never reached the expected state");
    }

    /// Messages in alice's INBOX (where her DSNs arrive).
    async fn alice_inbox(&self) -> Vec<Vec<u8>> {
        let account = self.store.account_by_address("alice@example.test").await.expect("lookup").expect("alice");
        let inbox = self.store.mailbox_by_name(account.id, "INBOX").await.expect("lookup").expect("inbox");
        let mut out = Vec::new();
        for m in self.store.message_list(inbox.id).await.expect("list") {
            out.push(self.store.blob_get(m.blob).await.expect("blob").expect("content"));
        }
        out
    }

    /// Moves time on and tells the scheduler to look again.
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.service.wake();
    }
}

fn deferred(_: &str) -> Outcome {
    Outcome::temporary("451 4.7.1 try again later", Some("mx.remote.test".into()))
}

fn accepted(_: &str) -> Outcome {
    Outcome::delivered("250 2.0.0 queued as 42", Some("mx.remote.test".into()))
}

fn refused(_: &str) -> Outcome {
    Outcome::permanent("550 5.1.1 no such user", Some("mx.remote.test".into()))
}

#[tokio::test]
async fn a_deferred_recipient_waits_its_backoff_then_is_delivered() {
    let mut w = world(vec![deferred, deferred, accepted], 120).await;
    let id = w.queue(&["bob@remote.test", "carol@remote.test"]).await;
    assert_eq!(w.next_call().await, ("remote.test".into(), 2), "one transaction for the domain");
    let start = tern_guard::Clock::unix(&*w.clock);
    w.until(id, |e| e.is_some_and(|e| e.recipients.iter().all(|r| r.attempts == 1))).await;
    let entry = w.store.queue_get(id).await.expect("queue").expect("entry");
    for r in &entry.recipients {
        assert_eq!(r.next_attempt, start + 600, "first backoff is retry_initial");
        assert_eq!(r.last_result.as_deref(), Some("451 4.7.1 try again later"));
    }
    // Not due yet: a wake-up finds nothing to do.
    w.advance(Duration::from_secs(599));
    tokio::task::yield_now().await;
    assert!(w.calls.try_recv().is_err(), "no attempt before the backoff ends");
    w.advance(Duration::from_secs(1));
    w.next_call().await;
    w.until(id, |e| e.is_some_and(|e| e.recipients.iter().all(|r| r.attempts == 2))).await;
    let entry = w.store.queue_get(id).await.expect("queue").expect("entry");
    assert_eq!(entry.recipients[0].next_attempt, start + 600 + 1200, "the backoff doubles");
    w.advance(Duration::from_secs(1200));
    w.next_call().await;
    w.until(id, |e| e.is_none_or(|e| e.recipients.iter().all(|r| r.status == RecipientStatus::Delivered))).await;
    assert!(w.alice_inbox().await.is_empty(), "no report for a delivery nobody asked about");
    w.shutdown.cancel();
}

#[tokio::test]
async fn forwarded_copies_travel_with_their_own_reverse_path() {
    let mut w = world(vec![accepted, accepted], 120).await;
    let srs = "SRS0=HHHHHH=AB=origin.test=dave@example.test";
    let id = w.queue_with(&[("bob@remote.test", None), ("fwd@remote.test", Some(srs))]).await;
    // Same domain, two reverse paths: two transactions.
    let calls = [w.next_call().await, w.next_call().await];
    assert_eq!(calls, [("remote.test".to_string(), 1), ("remote.test".to_string(), 1)]);
    w.until(id, |e| e.is_none()).await;
    let mut senders = w.senders.lock().expect("senders").clone();
    senders.sort();
    assert_eq!(
        senders,
        [
            (Some(srs.to_string()), vec!["fwd@remote.test".to_string()]),
            (Some("alice@example.test".to_string()), vec!["bob@remote.test".to_string()]),
        ]
    );
    w.shutdown.cancel();
}

#[tokio::test]
async fn a_refused_recipient_bounces_to_the_sender_at_once() {
    let mut w = world(vec![refused], 120).await;
    let id = w.queue(&["nobody@remote.test"]).await;
    w.next_call().await;
    w.until(id, |e| e.is_none_or(|e| e.recipients.iter().all(|r| r.status == RecipientStatus::Failed))).await;
    let inbox = w.alice_inbox().await;
    assert_eq!(inbox.len(), 1, "one bounce");
    let bounce = String::from_utf8_lossy(&inbox[0]).into_owned();
    assert!(bounce.contains("multipart/report"), "{bounce}");
    assert!(bounce.contains("Final-Recipient: rfc822; nobody@remote.test"), "{bounce}");
    assert!(bounce.contains("Status: 5.1.1"), "{bounce}");
    assert!(bounce.contains("550 5.1.1 no such user"), "{bounce}");
    w.shutdown.cancel();
}

#[tokio::test]
async fn a_message_past_its_lifetime_gives_up_with_a_bounce() {
    let mut w = world(vec![deferred, deferred], 1).await;
    let id = w.queue(&["bob@remote.test"]).await;
    w.next_call().await;
    w.until(id, |e| e.is_some_and(|e| e.recipients[0].attempts == 1)).await;
    assert!(w.alice_inbox().await.is_empty(), "a deferral within the lifetime is silent");
    // Past the one-hour lifetime the next temporary failure is final (RFC 5321 §4.5.4.1).
    w.advance(Duration::from_secs(HOUR));
    w.next_call().await;
    w.until(id, |e| e.is_none_or(|e| e.recipients[0].status == RecipientStatus::Failed)).await;
    let inbox = w.alice_inbox().await;
    assert_eq!(inbox.len(), 1);
    let bounce = String::from_utf8_lossy(&inbox[0]).into_owned();
    assert!(bounce.contains("Status: 5.4.7"), "{bounce}");
    assert!(bounce.contains("gave up after 2 attempts"), "{bounce}");
    w.shutdown.cancel();
}
