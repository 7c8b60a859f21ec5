//! `tern store migrate`: an embedded store copied into PostgreSQL keeps every identifier
//! clients know (UIDs, UIDVALIDITY, modseqs, flags, EMAILID), its queue and quarantine, and
//! a second run copies nothing twice.

use std::sync::Arc;
use tern_store::embedded::EmbeddedStore;
use tern_store::*;
use tern_store_postgres::migrate::migrate;
use tern_store_postgres::{PgStore, testing};

fn message(subject: &str) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: {subject}\r\nMessage-ID: <{subject}@x>\r\n\r\nbody {subject}\r\n")
        .into_bytes()
}

fn delivery(raw: Vec<u8>, targets: Vec<DeliveryTarget>) -> Delivery {
    let envelope =
        DeliveryEnvelope { mail_from: Some("a@example.org".into()), received_at: now_unix(), ..Default::default() };
    Delivery::prepare(raw, envelope, targets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_moves_to_postgres_with_every_identifier() {
    let dir = tempfile::tempdir().unwrap();
    let source = Arc::new(EmbeddedStore::open(dir.path(), 8).unwrap());
    source.domain_put(Domain { name: "example.test".into(), catch_all: None, created: 1, dkim: vec![] }).await.unwrap();
    source
        .alias_put(Alias { address: "info@example.test".into(), targets: vec!["a@example.test".into()] })
        .await
        .unwrap();
    let a = source
        .account_create(
            NewAccount {
                address: "a@example.test".into(),
                password_hash: "$argon2id$x".into(),
                quota_bytes: Some(1 << 30),
            },
            default_mailboxes(),
        )
        .await
        .unwrap();
    let inbox = source.mailbox_by_name(a.id, INBOX).await.unwrap().unwrap();
    let archive = source.mailbox_by_name(a.id, "Archive").await.unwrap().unwrap();
    for i in 0..450 {
        source.deliver(delivery(message(&format!("m{i}")), vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
    }
    source.set_flags(inbox.id, vec![1, 2, 3], FlagMode::Add, Flags::SEEN, vec!["$Work".into()], None).await.unwrap();
    source.copy_messages(inbox.id, vec![1, 2], archive.id, false).await.unwrap();
    source.expunge(inbox.id, vec![5, 6]).await.unwrap();
    let before_expunge_modseq = inbox.highest_modseq;
    source.mailbox_subscribe(a.id, "Gone/Folder", true).await.unwrap();
    let mut outgoing = delivery(message("out"), vec![]);
    outgoing.remote =
        vec![NewQueueRecipient { address: "x@remote.test".into(), orcpt: None, notify: None, sender: None }];
    let queued = source.deliver(outgoing).await.unwrap().queued.unwrap();
    let held = source
        .quarantine_put(
            QuarantineEntry {
                id: 0,
                created_at: 1,
                expires_at: i64::MAX,
                reason: "virus".into(),
                recipients: vec![],
                envelope: DeliveryEnvelope::default(),
                size: 3,
            },
            b"bad".to_vec(),
        )
        .await
        .unwrap();
    source
        .spam_model_update(SpamModelUpdate {
            owner: SpamModelOwner::Global,
            spam_learned: 3,
            ham_learned: 4,
            features: vec![(7, 1, 2), (9, 3, 0)],
            lesson: None,
        })
        .await
        .unwrap();

    // A reader of the shared INBOX with their own \Seen, and annotations of every scope.
    let reader = source
        .account_create(
            NewAccount { address: "r@example.test".into(), password_hash: "x".into(), quota_bytes: None },
            default_mailboxes(),
        )
        .await
        .unwrap();
    source.mailbox_set_acl(inbox.id, Identifier::Anyone, Some(Rights::parse("lrs").unwrap())).await.unwrap();
    source.seen_private_set(inbox.id, reader.id, vec![4, 7], true, None).await.unwrap();
    let scopes = [
        MetadataScope { mailbox: Some(inbox.id), user: None },
        MetadataScope { mailbox: Some(inbox.id), user: Some(reader.id) },
        MetadataScope { mailbox: None, user: Some(a.id) },
    ];
    for scope in scopes {
        source.metadata_set(scope, vec![("/x/comment".into(), Some(b"kept".to_vec()))]).await.unwrap();
    }

    source.sieve_put(a.id, "rules", "require \"fileinto\"; fileinto \"x\";").await.unwrap();
    source.sieve_put(a.id, "spare", "keep;").await.unwrap();
    source.sieve_activate(a.id, Some("rules")).await.unwrap();

    let options = testing::database().await.unwrap();
    let target = PgStore::open(&options).await.unwrap();
    let mut lines = Vec::new();
    let summary = migrate(&*source, &target, Some([7u8; 32]), &mut |l| lines.push(l.to_string())).await.unwrap();
    assert_eq!((summary.accounts, summary.mailboxes, summary.messages), (2, 12, 450 - 2 + 2));
    for scope in scopes {
        assert_eq!(target.metadata_get(scope).await.unwrap(), vec![("/x/comment".to_string(), b"kept".to_vec())]);
    }
    let private = source.seen_private_get(inbox.id, reader.id, 0).await.unwrap();
    assert_eq!(private.len(), 2);
    assert_eq!(target.seen_private_get(inbox.id, reader.id, 0).await.unwrap(), private);
    assert_eq!((summary.queued, summary.quarantined, summary.spam_models, summary.sieve_scripts), (1, 1, 1, 2));
    assert!(lines.iter().any(|l| l.contains("INBOX: 448 messages")), "{lines:?}");

    // Everything a client sees is the same.
    assert_eq!(target.mailbox_list(a.id).await.unwrap(), source.mailbox_list(a.id).await.unwrap());
    for m in source.mailbox_list(a.id).await.unwrap() {
        assert_eq!(target.message_list(m.id).await.unwrap(), source.message_list(m.id).await.unwrap(), "{}", m.name);
    }
    let first = source.message_get(inbox.id, 1).await.unwrap().unwrap();
    assert_eq!(target.blob_get(first.blob).await.unwrap(), source.blob_get(first.blob).await.unwrap());
    assert_eq!(target.blob_refcount(first.blob).await.unwrap(), 2, "INBOX and Archive");
    assert_eq!(target.account_by_address("a@example.test").await.unwrap(), Some(a.clone()));
    assert_eq!(target.alias_list().await.unwrap(), source.alias_list().await.unwrap());
    assert_eq!(target.domain_list().await.unwrap(), source.domain_list().await.unwrap());
    assert_eq!(target.subscriptions(a.id).await.unwrap(), source.subscriptions(a.id).await.unwrap());
    assert_eq!(target.sieve_list(a.id).await.unwrap(), source.sieve_list(a.id).await.unwrap());
    assert_eq!(target.sieve_active(a.id).await.unwrap(), source.sieve_active(a.id).await.unwrap());
    assert_eq!(target.queue_get(queued).await.unwrap(), source.queue_get(queued).await.unwrap());
    assert_eq!(target.quarantine_get(held).await.unwrap(), source.quarantine_get(held).await.unwrap());
    assert_eq!(
        target.spam_model(SpamModelOwner::Global).await.unwrap(),
        source.spam_model(SpamModelOwner::Global).await.unwrap()
    );
    assert_eq!(target.cluster_secret().await.unwrap(), Some([7u8; 32]));
    // A QRESYNC client behind the expunge learns of it.
    let changes = target.mailbox_changes(inbox.id, before_expunge_modseq).await.unwrap();
    assert!(changes.expunged.contains(&5) && changes.expunged.contains(&6), "{:?}", changes.expunged);
    // Search finds the copied text.
    let found = target.text_search("body m449", false).await.unwrap().unwrap();
    let last = source.message_get(inbox.id, 450).await.unwrap().unwrap();
    assert_eq!(found.lookup(&last.blob), Some(true));

    // Run again (an interrupted copy resumed): nothing twice.
    let again = migrate(&*source, &target, Some([7u8; 32]), &mut |_| {}).await.unwrap();
    assert_eq!((again.accounts, again.messages, again.queued), (0, 0, 0));
    assert_eq!(target.seen_private_get(inbox.id, reader.id, 0).await.unwrap(), private);
    assert_eq!(again.skipped_messages, 450);
    assert_eq!(target.blob_refcount(first.blob).await.unwrap(), 2);

    // New mail continues the numbering.
    let inbox_now = target.mailbox_get(inbox.id).await.unwrap().unwrap();
    let r = target.deliver(delivery(message("new"), vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
    assert_eq!(r.copies[0].uid, inbox_now.uid_next);
    let new = target.message_get(inbox.id, r.copies[0].uid).await.unwrap().unwrap();
    let max_email = source.message_list(archive.id).await.unwrap().iter().map(|m| m.email_id).max().unwrap();
    assert!(new.email_id > max_email);
    let b = target
        .account_create(
            NewAccount { address: "b@example.test".into(), password_hash: "x".into(), quota_bytes: None },
            default_mailboxes(),
        )
        .await
        .unwrap();
    assert!(b.id > a.id);
    let b_inbox = target.mailbox_by_name(b.id, INBOX).await.unwrap().unwrap();
    assert!(b_inbox.uid_validity > inbox.uid_validity && b_inbox.id > archive.id);
    source.shutdown().await.unwrap();
    target.shutdown().await.unwrap();
}
