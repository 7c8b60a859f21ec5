//! Deliveries written in batches: one delivery the database refuses fails alone, and its
//! batch's other deliveries are stored (retried one by one).

use std::sync::Arc;
use tern_store::*;
use tern_store_postgres::{PgStore, testing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delivery_fails_alone_and_its_batch_is_stored() {
    let options = testing::database().await.unwrap();
    let store = Arc::new(PgStore::open(&options).await.unwrap());
    let account = store
        .account_create(
            NewAccount { address: "u@example.test".into(), password_hash: "x".into(), quota_bytes: None },
            default_mailboxes(),
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let raw = format!("Subject: m{i}\r\n\r\nbody {i}\r\n").into_bytes();
            // PostgreSQL's JSON cannot hold a NUL: this envelope's row is refused.
            let mail_from = if i == 17 { "bad\0sender@example.test" } else { "good@example.test" };
            let envelope =
                DeliveryEnvelope { mail_from: Some(mail_from.into()), received_at: now_unix(), ..Default::default() };
            (i, store.deliver(Delivery::prepare(raw, envelope, vec![DeliveryTarget::inbox(account.id)])).await)
        }));
    }
    let mut stored = 0;
    for t in tasks {
        match t.await.unwrap() {
            (17, result) => assert!(result.is_err(), "the refused delivery reports its error: {result:?}"),
            (i, result) => {
                let receipt = result.unwrap_or_else(|e| panic!("delivery {i} failed with its neighbour: {e}"));
                stored += receipt.copies.len();
            }
        }
    }
    assert_eq!(stored, 39);
    let inbox = store.mailbox_by_name(account.id, INBOX).await.unwrap().unwrap();
    assert_eq!(inbox.total, 39);
    let uids: Vec<u32> = store.message_list(inbox.id).await.unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(uids.len(), 39);
    assert!(uids.windows(2).all(|w| w[0] < w[1]), "{uids:?}");
    store.shutdown().await.unwrap();
}
