//! Two stores on one database stand for two nodes: their writers meet only in PostgreSQL.

use std::sync::Arc;
use tern_store::*;
use tern_store_postgres::{PgStore, testing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_appending_to_one_mailbox_never_share_a_uid() {
    let options = testing::database().await.unwrap();
    let (a, b) = (Arc::new(PgStore::open(&options).await.unwrap()), Arc::new(PgStore::open(&options).await.unwrap()));
    let account = a
        .account_create(
            NewAccount { address: "u@example.test".into(), password_hash: "x".into(), quota_bytes: None },
            default_mailboxes(),
        )
        .await
        .unwrap();
    let inbox = b.mailbox_by_name(account.id, INBOX).await.unwrap().unwrap();
    let mut feed = b.subscribe();
    let mut tasks = Vec::new();
    for i in 0..120 {
        let node = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        tasks.push(tokio::spawn(async move {
            let raw = format!("Subject: m{i}\r\nMessage-ID: <m{i}@x>\r\n\r\nbody\r\n").into_bytes();
            let envelope = DeliveryEnvelope { received_at: now_unix(), ..Default::default() };
            let r =
                node.deliver(Delivery::prepare(raw, envelope, vec![DeliveryTarget::inbox(account.id)])).await.unwrap();
            let copy = &r.copies[0];
            node.message_get(copy.mailbox, copy.uid).await.unwrap().unwrap().modseq
        }));
    }
    let mut modseqs = Vec::new();
    for t in tasks {
        modseqs.push(t.await.unwrap());
    }
    let uids: Vec<u32> = a.message_list(inbox.id).await.unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(uids, (1..=120).collect::<Vec<u32>>(), "UIDs 1..120, each once");
    modseqs.sort_unstable();
    modseqs.dedup();
    assert_eq!(modseqs.len(), 120, "every delivery its own modseq");
    let m = b.mailbox_get(inbox.id).await.unwrap().unwrap();
    assert_eq!((m.total, m.uid_next), (120, 121));
    // Node B hears of node A's deliveries through the database (a batch of deliveries to one
    // mailbox is one change): once B's own and earlier ones are drained, one delivery on A.
    let inbox_changed = StoreChange::Mailbox { account: account.id, mailbox: inbox.id };
    let mut heard = 0;
    while let Ok(Ok(change)) = tokio::time::timeout(std::time::Duration::from_millis(500), feed.recv()).await {
        heard += usize::from(change == inbox_changed);
    }
    assert!(heard >= 2, "B's subscribers saw the deliveries of both nodes ({heard} changes)");
    let raw = b"Subject: last\r\n\r\nbody\r\n".to_vec();
    let envelope = DeliveryEnvelope { received_at: now_unix(), ..Default::default() };
    a.deliver(Delivery::prepare(raw, envelope, vec![DeliveryTarget::inbox(account.id)])).await.unwrap();
    let change = tokio::time::timeout(std::time::Duration::from_secs(2), feed.recv()).await;
    assert!(matches!(change, Ok(Ok(ref c)) if *c == inbox_changed), "B heard of A's delivery: {change:?}");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// Node B keeps the domains it read; a domain added or removed on node A reaches it through
/// the change feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_changed_on_one_node_is_seen_by_the_other() {
    let options = testing::database().await.unwrap();
    let (a, b) = (PgStore::open(&options).await.unwrap(), PgStore::open(&options).await.unwrap());
    assert_eq!(b.domain_get("new.test").await.unwrap(), None, "unknown, and remembered as such");
    let domain: Domain = serde_json::from_value(serde_json::json!({ "name": "new.test" })).unwrap();
    a.domain_put(domain).await.unwrap();
    assert!(a.domain_get("new.test").await.unwrap().is_some(), "the writing node sees it at once");
    let seen = async {
        while b.domain_get("new.test").await.unwrap().is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), seen).await.expect("B sees the new domain");
    a.domain_remove("new.test").await.unwrap();
    let gone = async {
        while b.domain_get("new.test").await.unwrap().is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), gone).await.expect("B sees it removed");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// Locks across nodes: one holder at a time, renewed by it, taken over once expired, and a
/// release only by the holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_has_one_holder_across_nodes_until_it_expires() {
    let options = testing::database().await.unwrap();
    let (a, b) = (PgStore::open(&options).await.unwrap(), PgStore::open(&options).await.unwrap());
    assert!(a.lock_take("pop3:1", 10, 1).await.unwrap());
    assert!(!b.lock_take("pop3:1", 20, 60).await.unwrap(), "held by A");
    assert!(b.lock_take("pop3:2", 20, 60).await.unwrap(), "another name is free");
    assert!(a.lock_take("pop3:1", 10, 1).await.unwrap(), "the holder renews");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert!(b.lock_take("pop3:1", 20, 60).await.unwrap(), "expired: taken over");
    a.lock_release("pop3:1", 10).await.unwrap();
    assert!(!a.lock_take("pop3:1", 10, 60).await.unwrap(), "A's release did not free B's lock");
    b.lock_release("pop3:1", 20).await.unwrap();
    assert!(a.lock_take("pop3:1", 10, 60).await.unwrap());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
