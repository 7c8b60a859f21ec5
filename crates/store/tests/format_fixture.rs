//! Upgrade safety: `tests/data/store-v1` is a store written by on-disk format 1. Every later
//! Tern must open it (migrating if the format changed) and find what was written.
//! Regenerate only when deliberately starting a new fixture:
//! `cargo test -p tern-store --test format_fixture -- --ignored write_v1_fixture`.

use std::path::{Path, PathBuf};
use tern_store::embedded::EmbeddedStore;
use tern_store::*;

fn fixture() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/data/store-v1")
}

const MESSAGE: &[u8] = b"From: a@example.org\r\nTo: alice@example.org\r\nSubject: fixture\r\nMessage-ID: <fixture@example.org>\r\n\r\nwritten by format 1\r\n";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
#[ignore]
async fn write_v1_fixture() {
    let path = fixture();
    let _ = std::fs::remove_dir_all(&path);
    let store = EmbeddedStore::open(&path, 8).unwrap();
    store.domain_put(Domain { name: "example.org".into(), catch_all: None, created: 1, dkim: vec![] }).await.unwrap();
    let a = store
        .account_create(
            NewAccount {
                address: "alice@example.org".into(),
                password_hash: "$argon2id$fixture".into(),
                quota_bytes: None,
            },
            default_mailboxes(),
        )
        .await
        .unwrap();
    store
        .alias_put(Alias { address: "info@example.org".into(), targets: vec!["alice@example.org".into()] })
        .await
        .unwrap();
    let envelope =
        DeliveryEnvelope { mail_from: Some("a@example.org".into()), received_at: 1_790_000_000, ..Default::default() };
    store.deliver(Delivery::prepare(MESSAGE.to_vec(), envelope, vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn opens_a_store_written_by_format_1() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), dir.path());
    let store = EmbeddedStore::open(dir.path(), 8).expect("a format 1 store must open");
    assert!(store.domain_get("example.org").await.unwrap().is_some());
    assert_eq!(store.alias_get("info@example.org").await.unwrap().unwrap().targets, vec!["alice@example.org"]);
    let alice = store.account_by_address("alice@example.org").await.unwrap().unwrap();
    let inbox = store.mailbox_by_name(alice.id, INBOX).await.unwrap().unwrap();
    assert_eq!((inbox.total, inbox.uid_next), (1, 2));
    let messages = store.message_list(inbox.id).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(store.blob_get(messages[0].blob).await.unwrap().unwrap(), MESSAGE);
    assert_eq!(store.summary_get(messages[0].blob).await.unwrap().unwrap().subject, "fixture");
    assert_eq!(store.mailbox_changes(inbox.id, 0).await.unwrap().changed.len(), 1);
    // And it keeps working: UIDs continue.
    let envelope = DeliveryEnvelope { received_at: now_unix(), ..Default::default() };
    let r = store
        .deliver(Delivery::prepare(
            b"Subject: new\r\n\r\nx\r\n".to_vec(),
            envelope,
            vec![DeliveryTarget::inbox(alice.id)],
        ))
        .await
        .unwrap();
    assert_eq!(r.copies[0].uid, 2);
    store.shutdown().await.unwrap();
}
