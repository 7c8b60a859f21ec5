//! The store contract as executable checks, run against every backend: the embedded store's
//! tests call them with a fresh directory, the PostgreSQL backend's with a fresh database.
//! Each check takes a [`Backend`], opens the store (and opens it again to check what survives
//! a restart), and panics on the first broken promise. [`conformance_tests!`] turns the
//! list into one `#[tokio::test]` per check.
//!
//! Compiled for this crate's tests and, with the `conformance` feature, for other backends'.

use crate::*;
use async_trait::async_trait;
use std::sync::Arc;

/// Where a backend under test keeps its data: one per check.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Opens the store: empty the first time, the same data after a `shutdown` (a restart).
    async fn open(&self) -> Arc<dyn Store>;
}

pub(crate) fn msg(subject: &str, extra: &str) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: {subject}\r\n{extra}\r\nbody of {subject}\r\n").into_bytes()
}

pub(crate) fn delivery(raw: Vec<u8>, targets: Vec<DeliveryTarget>) -> Delivery {
    let envelope =
        DeliveryEnvelope { mail_from: Some("a@example.org".into()), received_at: now_unix(), ..Default::default() };
    Delivery::prepare(raw, envelope, targets)
}

pub(crate) async fn account(store: &dyn Store, address: &str) -> Account {
    store
        .account_create(
            NewAccount { address: address.into(), password_hash: "x".into(), quota_bytes: None },
            default_mailboxes(),
        )
        .await
        .unwrap()
}

async fn inbox_with(store: &dyn Store, n: usize) -> (Account, Mailbox) {
    let a = account(store, "a@example.org").await;
    for i in 0..n {
        store.deliver(delivery(msg(&format!("m{i}"), ""), vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
    }
    let inbox = store.mailbox_by_name(a.id, INBOX).await.unwrap().unwrap();
    (a, inbox)
}

fn remote(address: &str) -> NewQueueRecipient {
    NewQueueRecipient { address: address.into(), orcpt: None, notify: None, sender: None }
}

pub async fn accounts_get_default_mailboxes_and_names_are_unique(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = account(&*store, "alice@example.org").await;
    let names: Vec<String> = store.mailbox_list(a.id).await.unwrap().into_iter().map(|m| m.name).collect();
    for n in ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"] {
        assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
    }
    let junk = store.mailbox_by_name(a.id, "Junk").await.unwrap().unwrap();
    assert_eq!(junk.special_use, Some(SpecialUse::Junk));
    let dup = store
        .account_create(
            NewAccount { address: "alice@example.org".into(), password_hash: "y".into(), quota_bytes: None },
            vec![],
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Exists(_))));
    assert_eq!(store.account_by_address("alice@example.org").await.unwrap().unwrap().id, a.id);
    store.shutdown().await.unwrap();
}

pub async fn content_is_stored_once_and_freed_with_the_last_copy(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = account(&*store, "a@example.org").await;
    let b = account(&*store, "b@example.org").await;
    let d = delivery(
        msg("shared", ""),
        vec![DeliveryTarget::inbox(a.id), DeliveryTarget::inbox(b.id), DeliveryTarget::inbox(a.id)],
    );
    let hash = d.hash;
    let receipt = store.deliver(d).await.unwrap();
    assert_eq!(receipt.copies.len(), 2, "one copy per mailbox even when targeted twice");
    assert_eq!(store.blob_refcount(hash).await.unwrap(), 2);
    let copy_a = &receipt.copies[0];
    let copy_b = &receipt.copies[1];
    assert_eq!(store.expunge(copy_a.mailbox, vec![copy_a.uid]).await.unwrap(), vec![copy_a.uid]);
    assert_eq!(store.blob_refcount(hash).await.unwrap(), 1);
    assert!(store.blob_get(hash).await.unwrap().is_some());
    store.expunge(copy_b.mailbox, vec![copy_b.uid, 999]).await.unwrap();
    assert_eq!(store.blob_refcount(hash).await.unwrap(), 0);
    assert_eq!(store.blob_get(hash).await.unwrap(), None);
    let inbox = store.mailbox_get(copy_b.mailbox).await.unwrap().unwrap();
    assert_eq!((inbox.total, inbox.unseen, inbox.size), (0, 0, 0));
    store.shutdown().await.unwrap();
}

pub async fn uids_increase_are_never_reused_and_survive_reopen(backend: &dyn Backend) {
    let (inbox_id, validity) = {
        let store = backend.open().await;
        let a = account(&*store, "a@example.org").await;
        let mut uids = vec![];
        for i in 0..3 {
            let r =
                store.deliver(delivery(msg(&format!("m{i}"), ""), vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
            uids.push(r.copies[0].uid);
        }
        assert_eq!(uids, vec![1, 2, 3]);
        let inbox = store.mailbox_by_name(a.id, INBOX).await.unwrap().unwrap();
        store.expunge(inbox.id, vec![3]).await.unwrap();
        store.shutdown().await.unwrap();
        (inbox.id, inbox.uid_validity)
    };
    let store = backend.open().await;
    let a = store.account_by_address("a@example.org").await.unwrap().unwrap();
    let r = store.deliver(delivery(msg("m4", ""), vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
    assert_eq!(r.copies[0].uid, 4, "UID 3 was expunged and must not come back");
    let inbox = store.mailbox_get(inbox_id).await.unwrap().unwrap();
    assert_eq!(inbox.uid_validity, validity);
    assert_eq!(inbox.total, 3);
    let uids: Vec<u32> = store.message_list(inbox_id).await.unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(uids, vec![1, 2, 4]);
    let b = account(&*store, "b@example.org").await;
    assert!(b.id > a.id, "account ids continue after reopen");
    let b_inbox = store.mailbox_by_name(b.id, INBOX).await.unwrap().unwrap();
    assert!(b_inbox.uid_validity > validity, "every mailbox gets a new UIDVALIDITY");
    store.shutdown().await.unwrap();
}

pub async fn large_message_round_trips_through_chunks(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = account(&*store, "a@example.org").await;
    let mut raw = b"Subject: big\r\n\r\n".to_vec();
    for i in 0..50_000 {
        raw.extend_from_slice(format!("line {i} of a big message\r\n").as_bytes());
    }
    let d = delivery(raw.clone(), vec![DeliveryTarget::inbox(a.id)]);
    let hash = d.hash;
    let r = store.deliver(d).await.unwrap();
    assert_eq!(store.blob_get(hash).await.unwrap().unwrap(), raw);
    let entry = store.message_get(r.copies[0].mailbox, r.copies[0].uid).await.unwrap().unwrap();
    assert_eq!(entry.size, raw.len() as u64);
    assert_eq!(store.summary_get(hash).await.unwrap().unwrap().subject, "big");
    store.shutdown().await.unwrap();
}

pub async fn concurrent_deliveries_get_distinct_uids(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = account(&*store, "a@example.org").await;
    let mut tasks = vec![];
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.deliver(delivery(msg(&format!("c{i}"), ""), vec![DeliveryTarget::inbox(a.id)])).await.unwrap().copies
                [0]
            .uid
        }));
    }
    let mut uids = vec![];
    for t in tasks {
        uids.push(t.await.unwrap());
    }
    uids.sort();
    assert_eq!(uids, (1..=200).collect::<Vec<u32>>());
    store.shutdown().await.unwrap();
}

/// Deliveries arriving together (which a backend may write as one batch) follow every rule
/// each follows alone: quotas counted across them, one content stored once with a reference
/// per copy, threads, flags and keywords per copy, and the mailbox's counters.
pub async fn concurrent_deliveries_keep_quota_contents_threads_and_flags(backend: &dyn Backend) {
    let store = backend.open().await;
    // 40 messages of one size at an account with room for 30.
    let size = msg("q00", "").len() as u64;
    let q = store
        .account_create(
            NewAccount { address: "q@example.org".into(), password_hash: "x".into(), quota_bytes: Some(30 * size) },
            default_mailboxes(),
        )
        .await
        .unwrap();
    let mut tasks = vec![];
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.deliver(delivery(msg(&format!("q{i:02}"), ""), vec![DeliveryTarget::inbox(q.id)])).await.unwrap()
        }));
    }
    let (mut stored, mut refused) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        stored += r.copies.len();
        refused += usize::from(r.over_quota == vec![q.id]);
    }
    assert_eq!((stored, refused), (30, 10), "the quota holds across concurrent deliveries");
    let inbox = store.mailbox_by_name(q.id, INBOX).await.unwrap().unwrap();
    assert_eq!((inbox.total, inbox.size, inbox.uid_next), (30, 30 * size, 31));

    // At another account: one content 20 times, 10 replies to a stored message, 10 copies
    // with \Seen and a keyword, all at once.
    let b = account(&*store, "b@example.org").await;
    let root =
        store.deliver(delivery(msg("root", "Message-ID: <root@x>\r\n"), vec![DeliveryTarget::inbox(b.id)])).await;
    let root = root.unwrap().copies[0].clone();
    let root_thread = store.message_get(root.mailbox, root.uid).await.unwrap().unwrap().thread_id;
    let same = msg("same", "Message-ID: <same@x>\r\n");
    let mut tasks = vec![];
    for i in 0..40 {
        let store = store.clone();
        let (raw, target) = match i % 4 {
            0 | 1 => (same.clone(), DeliveryTarget::inbox(b.id)),
            2 => (msg(&format!("re{i}"), "In-Reply-To: <root@x>\r\n"), DeliveryTarget::inbox(b.id)),
            _ => (
                msg(&format!("kw{i}"), ""),
                DeliveryTarget { flags: Flags::SEEN, keywords: vec!["$Label1".into()], ..DeliveryTarget::inbox(b.id) },
            ),
        };
        tasks.push(tokio::spawn(async move {
            let r = store.deliver(delivery(raw, vec![target])).await.unwrap();
            (i, r.copies[0].clone())
        }));
    }
    let mut uids = vec![];
    for t in tasks {
        let (i, copy) = t.await.unwrap();
        let m = store.message_get(copy.mailbox, copy.uid).await.unwrap().unwrap();
        match i % 4 {
            0 | 1 => assert_eq!(m.blob, BlobHash::of(&same)),
            2 => assert_eq!(m.thread_id, root_thread, "a reply joins its parent's thread"),
            _ => assert_eq!((m.flags, m.keywords.clone()), (Flags::SEEN, vec!["$Label1".to_string()])),
        }
        uids.push(copy.uid);
    }
    uids.sort_unstable();
    assert_eq!(uids, (2..=41).collect::<Vec<u32>>());
    assert_eq!(store.blob_refcount(BlobHash::of(&same)).await.unwrap(), 20, "one content, a reference per copy");
    let inbox = store.mailbox_by_name(b.id, INBOX).await.unwrap().unwrap();
    assert_eq!((inbox.total, inbox.unseen, inbox.uid_next), (41, 31, 42));
    assert!(inbox.keywords.contains(&"$Label1".to_string()), "{:?}", inbox.keywords);
    let changes = store.mailbox_changes(inbox.id, 0).await.unwrap();
    assert_eq!(changes.highest_modseq, inbox.highest_modseq);
    let mut modseqs: Vec<u64> = changes.changed.iter().map(|m| m.modseq).collect();
    modseqs.sort_unstable();
    modseqs.dedup();
    assert_eq!(modseqs.len(), 41, "each copy its own modseq");
    store.shutdown().await.unwrap();
}

pub async fn replies_join_the_thread_of_their_parent(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = account(&*store, "a@example.org").await;
    let deliver = |raw| {
        let store = store.clone();
        async move {
            let r = store.deliver(delivery(raw, vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
            store.message_get(r.copies[0].mailbox, r.copies[0].uid).await.unwrap().unwrap().thread_id
        }
    };
    let t1 = deliver(msg("root", "Message-ID: <root@x>\r\n")).await;
    let t2 = deliver(msg("re", "Message-ID: <re@x>\r\nIn-Reply-To: <root@x>\r\n")).await;
    let t3 = deliver(msg("re re", "Message-ID: <rere@x>\r\nReferences: <root@x> <re@x>\r\n")).await;
    let other = deliver(msg("other", "Message-ID: <other@x>\r\n")).await;
    assert_eq!(t1, t2);
    assert_eq!(t1, t3);
    assert_ne!(t1, other);
    store.shutdown().await.unwrap();
}

pub async fn account_removal_frees_everything(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = account(&*store, "a@example.org").await;
    let d = delivery(msg("gone", ""), vec![DeliveryTarget::inbox(a.id)]);
    let hash = d.hash;
    store.deliver(d).await.unwrap();
    assert!(store.account_remove(a.id).await.unwrap());
    assert_eq!(store.blob_refcount(hash).await.unwrap(), 0);
    assert!(store.account_by_address("a@example.org").await.unwrap().is_none());
    assert!(store.mailbox_list(a.id).await.unwrap().is_empty());
    assert!(!store.account_remove(a.id).await.unwrap());
    // The address can be used again, with fresh mailboxes.
    let again = account(&*store, "a@example.org").await;
    assert_ne!(again.id, a.id);
    store.shutdown().await.unwrap();
}

pub async fn sieve_scripts_one_active_survive_restart_and_go_with_the_account(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = account(&*store, "a@example.org").await;
    let b = account(&*store, "b@example.org").await;
    assert!(matches!(store.sieve_put(999_999, "x", "keep;").await, Err(StoreError::NotFound(_))));
    store.sieve_put(a.id, "main", "keep;").await.unwrap();
    store.sieve_put(a.id, "other", "discard;").await.unwrap();
    store.sieve_put(b.id, "main", "stop;").await.unwrap();
    assert!(store.sieve_active(a.id).await.unwrap().is_none());
    assert!(matches!(store.sieve_activate(a.id, Some("nope")).await, Err(StoreError::NotFound(_))));
    store.sieve_activate(a.id, Some("main")).await.unwrap();
    store.sieve_activate(a.id, Some("other")).await.unwrap();
    // One active at a time; replacing a script keeps it active.
    store.sieve_put(a.id, "other", "discard; # v2").await.unwrap();
    assert_eq!(store.sieve_active(a.id).await.unwrap(), Some(("other".into(), "discard; # v2".into())));
    let list = store.sieve_list(a.id).await.unwrap();
    let active: Vec<&str> = list.iter().filter(|s| s.active).map(|s| s.name.as_str()).collect();
    assert_eq!(active, ["other"]);
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().find(|s| s.name == "main").map(|s| s.size), Some(5));
    assert!(matches!(store.sieve_delete(a.id, "other").await, Err(StoreError::Active(_))));
    assert!(matches!(store.sieve_rename(a.id, "other", "main").await, Err(StoreError::Exists(_))));
    store.sieve_rename(a.id, "other", "renamed").await.unwrap();
    assert_eq!(store.sieve_active(a.id).await.unwrap().map(|(n, _)| n).as_deref(), Some("renamed"));
    store.sieve_delete(a.id, "main").await.unwrap();
    assert!(matches!(store.sieve_delete(a.id, "main").await, Err(StoreError::NotFound(_))));
    assert!(store.sieve_get(a.id, "main").await.unwrap().is_none());
    // b's scripts are its own.
    assert_eq!(store.sieve_get(b.id, "main").await.unwrap().as_deref(), Some("stop;"));
    assert!(store.sieve_active(b.id).await.unwrap().is_none());
    store.shutdown().await.unwrap();
    drop(store);

    let store = backend.open().await;
    assert_eq!(store.sieve_active(a.id).await.unwrap().map(|(n, _)| n).as_deref(), Some("renamed"));
    store.sieve_activate(a.id, None).await.unwrap();
    assert!(store.sieve_active(a.id).await.unwrap().is_none());
    store.sieve_delete(a.id, "renamed").await.unwrap();
    store.sieve_put(b.id, "x", "keep;").await.unwrap();
    store.sieve_activate(b.id, Some("x")).await.unwrap();
    assert!(store.account_remove(b.id).await.unwrap());
    assert!(store.sieve_list(b.id).await.unwrap().is_empty());
    assert!(store.sieve_active(b.id).await.unwrap().is_none());
    store.shutdown().await.unwrap();
}

pub async fn sieve_ids_are_remembered_until_they_expire(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = account(&*store, "a@example.org").await;
    let b = account(&*store, "b@example.org").await;
    let now = crate::now_unix();
    assert!(!store.sieve_seen(a.id, "dup\u{1}<m1@x>", now).await.unwrap());
    let long = "v".repeat(10_000);
    store
        .sieve_remember(
            a.id,
            vec![("dup\u{1}<m1@x>".into(), now + 60), ("old".into(), now - 1), (long.clone(), now + 5)],
        )
        .await
        .unwrap();
    assert!(store.sieve_seen(a.id, "dup\u{1}<m1@x>", now).await.unwrap());
    assert!(store.sieve_seen(a.id, &long, now).await.unwrap(), "long ids are kept by their hash");
    assert!(!store.sieve_seen(a.id, "old", now).await.unwrap(), "expired");
    assert!(!store.sieve_seen(a.id, "dup\u{1}<m1@x>", now + 61).await.unwrap(), "expired later");
    assert!(!store.sieve_seen(b.id, "dup\u{1}<m1@x>", now).await.unwrap(), "per account");
    // A new expiry replaces the old one.
    store.sieve_remember(a.id, vec![("old".into(), now + 100)]).await.unwrap();
    assert!(store.sieve_seen(a.id, "old", now + 99).await.unwrap());
    store.shutdown().await.unwrap();
    drop(store);

    let store = backend.open().await;
    assert!(store.sieve_seen(a.id, "dup\u{1}<m1@x>", now).await.unwrap(), "survives a restart");
    assert!(store.account_remove(a.id).await.unwrap());
    let again = account(&*store, "a@example.org").await;
    assert!(!store.sieve_seen(again.id, "dup\u{1}<m1@x>", now).await.unwrap());
    assert!(!store.sieve_seen(a.id, "dup\u{1}<m1@x>", now).await.unwrap(), "gone with the account");
    store.shutdown().await.unwrap();
}

pub async fn special_use_target_falls_back_to_inbox(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = store
        .account_create(
            NewAccount { address: "a@x.org".into(), password_hash: "x".into(), quota_bytes: None },
            vec![NewMailbox::new(INBOX, None)],
        )
        .await
        .unwrap();
    let target =
        DeliveryTarget { mailbox: MailboxSelector::SpecialUse(SpecialUse::Junk), ..DeliveryTarget::inbox(a.id) };
    let r = store.deliver(delivery(msg("spam", ""), vec![target])).await.unwrap();
    let inbox = store.mailbox_by_name(a.id, INBOX).await.unwrap().unwrap();
    assert_eq!(r.copies[0].mailbox, inbox.id);
    store.shutdown().await.unwrap();
}

pub async fn changes_since_a_modseq(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = account(&*store, "a@example.org").await;
    let inbox = store.mailbox_by_name(a.id, INBOX).await.unwrap().unwrap();
    for i in 0..3 {
        store.deliver(delivery(msg(&format!("m{i}"), ""), vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
    }
    let all = store.mailbox_changes(inbox.id, 0).await.unwrap();
    assert_eq!(all.changed.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(all.expunged.is_empty());
    let mark = all.highest_modseq;
    assert_eq!(store.mailbox_changes(inbox.id, mark).await.unwrap().changed.len(), 0);
    store.expunge(inbox.id, vec![2]).await.unwrap();
    store.deliver(delivery(msg("m3", ""), vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
    let since = store.mailbox_changes(inbox.id, mark).await.unwrap();
    assert_eq!(since.expunged, vec![2]);
    assert_eq!(since.changed.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![4]);
    assert!(since.highest_modseq > mark);
    // Everything still listed from the start, except what is gone.
    let all = store.mailbox_changes(inbox.id, 0).await.unwrap();
    assert_eq!(all.changed.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 3, 4]);
    store.shutdown().await.unwrap();
}

pub async fn flags_change_counters_and_modseq(backend: &dyn Backend) {
    let store = backend.open().await;
    let (_a, inbox) = inbox_with(&*store, 3).await;
    let u = store
        .set_flags(
            inbox.id,
            vec![1, 2, 9],
            FlagMode::Add,
            Flags::SEEN.union(Flags::DELETED),
            vec!["$Junk".into(), "$junk".into()],
            None,
        )
        .await
        .unwrap();
    assert_eq!(u.updated.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(u.missing, vec![9]);
    assert_eq!(u.updated[0].keywords, vec!["$Junk".to_string()]);
    let m = store.mailbox_get(inbox.id).await.unwrap().unwrap();
    assert_eq!((m.unseen, m.deleted), (1, 2));
    assert_eq!(m.keywords, vec!["$Junk".to_string()]);
    assert!(m.highest_modseq > inbox.highest_modseq);
    let modseq = u.updated[0].modseq;
    // Nothing changes: no new modseq.
    let again = store.set_flags(inbox.id, vec![1], FlagMode::Add, Flags::SEEN, vec![], None).await.unwrap();
    assert!(again.updated.is_empty());
    // UNCHANGEDSINCE below the message's modseq is a conflict.
    let c =
        store.set_flags(inbox.id, vec![1, 3], FlagMode::Remove, Flags::SEEN, vec![], Some(modseq - 1)).await.unwrap();
    assert_eq!(c.conflicts, vec![1]);
    assert_eq!(c.updated.iter().map(|m| m.uid).collect::<Vec<_>>(), Vec::<u32>::new(), "3 was not seen");
    let r = store.set_flags(inbox.id, vec![1], FlagMode::Replace, Flags::FLAGGED, vec![], Some(modseq)).await.unwrap();
    assert_eq!(r.updated[0].flags, Flags::FLAGGED);
    assert!(r.updated[0].keywords.is_empty());
    let m = store.mailbox_get(inbox.id).await.unwrap().unwrap();
    assert_eq!((m.unseen, m.deleted), (2, 1));
    let changed = store.mailbox_changes(inbox.id, modseq).await.unwrap();
    assert_eq!(changed.changed.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1]);
    store.shutdown().await.unwrap();
}

pub async fn copy_and_move_keep_flags_and_references(backend: &dyn Backend) {
    let store = backend.open().await;
    let (a, inbox) = inbox_with(&*store, 3).await;
    let archive = store.mailbox_by_name(a.id, "Archive").await.unwrap().unwrap();
    store.set_flags(inbox.id, vec![1], FlagMode::Add, Flags::FLAGGED, vec!["work".into()], None).await.unwrap();
    let first = store.message_get(inbox.id, 1).await.unwrap().unwrap();
    let copied = store.copy_messages(inbox.id, vec![1, 2, 77], archive.id, false).await.unwrap();
    assert_eq!(copied.pairs, vec![(1, 1), (2, 2)]);
    assert_eq!(copied.uid_validity, archive.uid_validity);
    let copy = store.message_get(archive.id, 1).await.unwrap().unwrap();
    assert_eq!((copy.flags, copy.keywords.clone()), (first.flags, first.keywords.clone()));
    assert_ne!(copy.email_id, first.email_id);
    assert_eq!(store.blob_refcount(first.blob).await.unwrap(), 2);
    let moved = store.copy_messages(inbox.id, vec![1, 3], archive.id, true).await.unwrap();
    assert_eq!(moved.pairs, vec![(1, 3), (3, 4)]);
    assert_eq!(store.blob_refcount(first.blob).await.unwrap(), 2, "a move does not change reference counts");
    assert_eq!(
        store.message_get(archive.id, 3).await.unwrap().unwrap().email_id,
        first.email_id,
        "EMAILID survives a move"
    );
    let inbox_now = store.mailbox_get(inbox.id).await.unwrap().unwrap();
    assert_eq!(inbox_now.total, 1);
    let vanished = store.mailbox_changes(inbox.id, inbox.highest_modseq).await.unwrap();
    assert_eq!(vanished.expunged, vec![1, 3]);
    let archive_now = store.mailbox_get(archive.id).await.unwrap().unwrap();
    assert_eq!((archive_now.total, archive_now.uid_next), (4, 5));
    // Copy into the same mailbox.
    let same = store.copy_messages(archive.id, vec![1], archive.id, false).await.unwrap();
    assert_eq!(same.pairs, vec![(1, 5)]);
    assert_eq!(store.mailbox_get(archive.id).await.unwrap().unwrap().total, 5);
    // RFC 8514: saved when it reaches a mailbox (delivered, copied), whatever its internal date.
    let before = now_unix();
    let mut old = delivery(msg("old", ""), vec![DeliveryTarget::inbox(a.id)]);
    old.envelope.received_at = 1_577_836_800;
    let uid = store.deliver(old).await.unwrap().copies[0].uid;
    let delivered = store.message_get(inbox.id, uid).await.unwrap().unwrap();
    let copied = store.copy_messages(inbox.id, vec![uid], archive.id, false).await.unwrap();
    let copy = store.message_get(archive.id, copied.pairs[0].1).await.unwrap().unwrap();
    let after = now_unix();
    for e in [&delivered, &copy] {
        assert_eq!(e.internal_date, 1_577_836_800);
        assert!((before..=after).contains(&e.saved), "saved {} not in {before}..={after}", e.saved);
    }
    store.shutdown().await.unwrap();
}

/// RFC 3502 MULTIAPPEND and RFC 8508 REPLACE: several messages in one commit, all or none.
pub async fn append_batches_are_all_or_nothing(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = account(&*store, "a@example.org").await;
    let inbox = store.mailbox_by_name(a.id, INBOX).await.unwrap().unwrap();
    let archive = store.mailbox_by_name(a.id, "Archive").await.unwrap().unwrap();
    let to = |m: &Mailbox, raw: Vec<u8>, flags: Flags| {
        let target = DeliveryTarget { account: a.id, mailbox: MailboxSelector::Id(m.id), flags, keywords: vec![] };
        delivery(raw, vec![target])
    };
    let same = msg("same", "");
    let batch = AppendBatch {
        mailbox: inbox.id,
        messages: vec![
            to(&inbox, same.clone(), Flags::SEEN),
            to(&inbox, msg("other", ""), Flags::default()),
            to(&inbox, same.clone(), Flags::default()),
        ],
        replaces: None,
    };
    let hash = batch.messages[0].hash;
    let r = store.append_batch(batch).await.unwrap();
    assert_eq!((r.uids, r.uid_validity, r.replaced), (vec![1, 2, 3], inbox.uid_validity, false));
    let m = store.mailbox_get(inbox.id).await.unwrap().unwrap();
    assert_eq!((m.total, m.unseen, m.uid_next), (3, 2, 4));
    assert_eq!(store.blob_refcount(hash).await.unwrap(), 2, "one content, two messages");
    assert_eq!(store.message_get(inbox.id, 1).await.unwrap().unwrap().flags, Flags::SEEN);
    // REPLACE into another mailbox, with the same content: the reference moves.
    let batch = AppendBatch {
        mailbox: archive.id,
        messages: vec![to(&archive, same.clone(), Flags::DRAFT)],
        replaces: Some((inbox.id, 3)),
    };
    let r = store.append_batch(batch).await.unwrap();
    assert_eq!((r.uids, r.replaced), (vec![1], true));
    assert_eq!(store.blob_refcount(hash).await.unwrap(), 2);
    assert_eq!(store.mailbox_get(inbox.id).await.unwrap().unwrap().total, 2);
    assert_eq!(store.mailbox_changes(inbox.id, m.highest_modseq).await.unwrap().expunged, vec![3]);
    // REPLACE within one mailbox, of a message already gone: appended, nothing expunged.
    let batch = AppendBatch {
        mailbox: inbox.id,
        messages: vec![to(&inbox, msg("new", ""), Flags::default())],
        replaces: Some((inbox.id, 3)),
    };
    let r = store.append_batch(batch).await.unwrap();
    assert_eq!((r.uids, r.replaced), (vec![4], false));
    let batch = AppendBatch {
        mailbox: inbox.id,
        messages: vec![to(&inbox, msg("newer", ""), Flags::default())],
        replaces: Some((inbox.id, 4)),
    };
    assert_eq!(store.append_batch(batch).await.unwrap().uids, vec![5]);
    let uids: Vec<u32> = store.message_list(inbox.id).await.unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(uids, vec![1, 2, 5]);
    // Over the quota with the last message: none of them is stored.
    let mut limited = store.account_get(a.id).await.unwrap().unwrap();
    let used: u64 = store.mailbox_list(a.id).await.unwrap().iter().map(|m| m.size).sum();
    limited.quota_bytes = Some(used + 150);
    store.account_update(limited).await.unwrap();
    let before = store.mailbox_get(inbox.id).await.unwrap().unwrap();
    let batch = AppendBatch {
        mailbox: inbox.id,
        messages: vec![
            to(&inbox, msg("fits", ""), Flags::default()),
            to(&inbox, msg("does not", &"x".repeat(200)), Flags::default()),
        ],
        replaces: Some((inbox.id, 1)),
    };
    assert!(matches!(store.append_batch(batch).await, Err(StoreError::OverQuota(_))));
    let after = store.mailbox_get(inbox.id).await.unwrap().unwrap();
    assert_eq!(
        (after.total, after.uid_next, after.highest_modseq),
        (before.total, before.uid_next, before.highest_modseq)
    );
    assert!(store.message_get(inbox.id, 1).await.unwrap().is_some(), "the replaced message stays");
    // A mailbox that does not exist.
    let batch =
        AppendBatch { mailbox: 999_999, messages: vec![to(&inbox, msg("x", ""), Flags::default())], replaces: None };
    assert!(matches!(store.append_batch(batch).await, Err(StoreError::NotFound(_))));
    store.shutdown().await.unwrap();
}

/// RFC 4314 ACLs: entries per identifier, found by whom they name, gone with the mailbox or
/// the user they name.
pub async fn acls_name_users_and_go_with_mailboxes_and_users(backend: &dyn Backend) {
    use crate::acl::rights_of;
    let store = backend.open().await;
    let a = account(&*store, "a@example.org").await;
    let b = account(&*store, "b@example.org").await;
    let archive = store.mailbox_by_name(a.id, "Archive").await.unwrap().unwrap();
    let inbox = store.mailbox_by_name(a.id, INBOX).await.unwrap().unwrap();
    let lr = Rights::parse("lr").unwrap();
    let m = store.mailbox_set_acl(archive.id, Identifier::User(b.address.clone()), Some(lr)).await.unwrap();
    assert_eq!(m.acl, vec![AclEntry { identifier: Identifier::User(b.address.clone()), rights: lr }]);
    assert_eq!((rights_of(&b, &m), rights_of(&a, &m)), (lr, Rights::ALL));
    store
        .mailbox_set_acl(inbox.id, Identifier::Domain("example.org".into()), Some(Rights::parse("lrs").unwrap()))
        .await
        .unwrap();
    store
        .mailbox_set_acl(inbox.id, Identifier::Domain("other.org".into()), Some(Rights::parse("l").unwrap()))
        .await
        .unwrap();
    let shared = |store: Arc<dyn Store>, who: Account| async move {
        let found = store.mailboxes_shared_with(Identifier::naming(&who.address)).await.unwrap();
        found.into_iter().map(|m| m.name).collect::<Vec<_>>()
    };
    assert_eq!(shared(store.clone(), b.clone()).await, vec!["Archive".to_string(), INBOX.to_string()]);
    // Changed in place, kept across a restart.
    store.mailbox_set_acl(archive.id, Identifier::User(b.address.clone()), Some(Rights::ALL)).await.unwrap();
    store.shutdown().await.unwrap();
    drop(store);
    let store = backend.open().await;
    let archive = store.mailbox_get(archive.id).await.unwrap().unwrap();
    assert_eq!(rights_of(&b, &archive), Rights::ALL);
    assert_eq!(archive.acl.len(), 1);
    // Removed: no longer found.
    store.mailbox_set_acl(archive.id, Identifier::User(b.address.clone()), None).await.unwrap();
    assert_eq!(shared(store.clone(), b.clone()).await, vec![INBOX.to_string()]);
    assert!(matches!(store.mailbox_set_acl(999_999, Identifier::Anyone, Some(lr)).await, Err(StoreError::NotFound(_))));
    // Bounded.
    for i in 0..crate::acl::MAX_ACL_ENTRIES - 2 {
        store.mailbox_set_acl(inbox.id, Identifier::User(format!("u{i}@x.org")), Some(lr)).await.unwrap();
    }
    assert!(matches!(store.mailbox_set_acl(inbox.id, Identifier::Anyone, Some(lr)).await, Err(StoreError::Limit(_))));
    // A deleted mailbox is no longer found.
    let team = store
        .mailbox_create(a.id, NewMailbox { name: "Team".into(), special_use: None, subscribed: false })
        .await
        .unwrap();
    store.mailbox_set_acl(team.id, Identifier::Anyone, Some(lr)).await.unwrap();
    assert_eq!(shared(store.clone(), b.clone()).await, vec![INBOX.to_string(), "Team".to_string()]);
    store.mailbox_delete(a.id, "Team").await.unwrap();
    assert_eq!(shared(store.clone(), b.clone()).await, vec![INBOX.to_string()]);
    // RFC 4314 `p`: `user+Team@` files into Team only when anyone may post there.
    let posted = |store: Arc<dyn Store>, team: MailboxId| async move {
        let target = DeliveryTarget {
            account: a.id,
            mailbox: MailboxSelector::Posted("Team".into()),
            flags: Flags::default(),
            keywords: vec![],
        };
        let r = store.deliver(delivery(msg("posted", ""), vec![target])).await.unwrap();
        r.copies[0].mailbox == team
    };
    let team = store
        .mailbox_create(a.id, NewMailbox { name: "Team".into(), special_use: None, subscribed: false })
        .await
        .unwrap();
    assert!(!posted(store.clone(), team.id).await, "no ACL: INBOX");
    store.mailbox_set_acl(team.id, Identifier::Anyone, Some(Rights::parse("lr").unwrap())).await.unwrap();
    assert!(!posted(store.clone(), team.id).await, "no p: INBOX");
    store.mailbox_set_acl(team.id, Identifier::Anyone, Some(Rights::parse("p").unwrap())).await.unwrap();
    assert!(posted(store.clone(), team.id).await, "p for anyone: Team");
    store.mailbox_delete(a.id, "Team").await.unwrap();
    // Copies and moves between accounts (into and out of a shared mailbox): counted against
    // the target account, contents referenced once more per copy.
    let b_inbox = store.mailbox_by_name(b.id, INBOX).await.unwrap().unwrap();
    let uid =
        store.deliver(delivery(msg("shared", ""), vec![DeliveryTarget::inbox(a.id)])).await.unwrap().copies[0].uid;
    let blob = store.message_get(inbox.id, uid).await.unwrap().unwrap().blob;
    let copied = store.copy_messages(inbox.id, vec![uid], b_inbox.id, false).await.unwrap();
    assert_eq!(copied.pairs.len(), 1);
    assert_eq!(store.blob_refcount(blob).await.unwrap(), 2);
    let moved = store.copy_messages(b_inbox.id, vec![copied.pairs[0].1], archive.id, true).await.unwrap();
    assert_eq!(moved.pairs.len(), 1);
    assert_eq!(store.mailbox_get(b_inbox.id).await.unwrap().unwrap().total, 0);
    let mut limited = store.account_get(b.id).await.unwrap().unwrap();
    limited.quota_bytes = Some(10);
    store.account_update(limited).await.unwrap();
    assert!(matches!(store.copy_messages(inbox.id, vec![uid], b_inbox.id, true).await, Err(StoreError::OverQuota(_))));
    // A removed user's entries go: an account later made with the address gets nothing.
    let team = store
        .mailbox_create(a.id, NewMailbox { name: "Team".into(), special_use: None, subscribed: false })
        .await
        .unwrap();
    store.mailbox_set_acl(team.id, Identifier::User(b.address.clone()), Some(lr)).await.unwrap();
    assert!(store.account_remove(b.id).await.unwrap());
    let b2 = account(&*store, "b@example.org").await;
    let found = store.mailboxes_shared_with(vec![Identifier::User(b2.address.clone())]).await.unwrap();
    assert!(found.is_empty(), "{found:?}");
    assert!(store.mailbox_get(team.id).await.unwrap().unwrap().acl.is_empty());
    store.shutdown().await.unwrap();
}

/// RFC 5464 annotations: per scope, replaced and removed, bounded, bumping the mailbox's
/// modseq, surviving a restart, gone with their mailbox.
pub async fn annotations_keep_their_scope(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = account(&*store, "a@example.org").await;
    let b = account(&*store, "b@example.org").await;
    let team = store
        .mailbox_create(a.id, NewMailbox { name: "Team".into(), special_use: None, subscribed: false })
        .await
        .unwrap();
    let shared = MetadataScope { mailbox: Some(team.id), user: None };
    let a_private = MetadataScope { mailbox: Some(team.id), user: Some(a.id) };
    let b_private = MetadataScope { mailbox: Some(team.id), user: Some(b.id) };
    let server = MetadataScope { mailbox: None, user: Some(a.id) };
    store.metadata_set(shared, vec![("/shared/comment".into(), Some(b"team box".to_vec()))]).await.unwrap();
    store.metadata_set(a_private, vec![("/private/comment".into(), Some(b"mine".to_vec()))]).await.unwrap();
    store.metadata_set(server, vec![("/private/vendor/x/y".into(), Some(vec![0, 1, 2]))]).await.unwrap();
    assert_eq!(store.metadata_get(shared).await.unwrap(), vec![("/shared/comment".to_string(), b"team box".to_vec())]);
    assert_eq!(store.metadata_get(b_private).await.unwrap(), vec![]);
    assert_eq!(store.metadata_get(server).await.unwrap()[0].1, vec![0, 1, 2]);
    let modseq = store.mailbox_get(team.id).await.unwrap().unwrap().highest_modseq;
    assert_eq!(modseq, team.highest_modseq + 2, "each change of a mailbox's annotations is a modseq");
    store
        .metadata_set(
            shared,
            vec![("/shared/comment".into(), None), ("/shared/vendor/tern/a".into(), Some(b"1".to_vec()))],
        )
        .await
        .unwrap();
    assert_eq!(store.metadata_get(shared).await.unwrap(), vec![("/shared/vendor/tern/a".to_string(), b"1".to_vec())]);
    // Bounded: a change that would pass the limit changes nothing.
    let many: Vec<(String, Option<Vec<u8>>)> =
        (0..=METADATA_MAX_ENTRIES).map(|i| (format!("/private/n{i:03}"), Some(b"v".to_vec()))).collect();
    assert!(matches!(store.metadata_set(b_private, many).await, Err(StoreError::Limit(_))));
    assert!(store.metadata_get(b_private).await.unwrap().is_empty());
    store.shutdown().await.unwrap();
    drop(store);
    let store = backend.open().await;
    assert_eq!(store.metadata_get(a_private).await.unwrap(), vec![("/private/comment".to_string(), b"mine".to_vec())]);
    // Another user's private annotation on the mailbox (a reader of a shared one) goes with it.
    store.metadata_set(b_private, vec![("/private/comment".into(), Some(b"b's".to_vec()))]).await.unwrap();
    let b_server = MetadataScope { mailbox: None, user: Some(b.id) };
    store.metadata_set(b_server, vec![("/private/comment".into(), Some(b"b".to_vec()))]).await.unwrap();
    store.mailbox_delete(a.id, "Team").await.unwrap();
    assert!(store.metadata_get(shared).await.unwrap().is_empty());
    assert!(store.metadata_get(a_private).await.unwrap().is_empty());
    assert!(store.metadata_get(b_private).await.unwrap().is_empty(), "other users' private ones go too");
    assert!(matches!(store.metadata_set(shared, vec![("/shared/x".into(), None)]).await, Err(StoreError::NotFound(_))));
    // So do they when the owner of the mailbox is removed; B's own annotations stay.
    let box2 = store
        .mailbox_create(a.id, NewMailbox { name: "Box2".into(), special_use: None, subscribed: false })
        .await
        .unwrap();
    let b_on_box2 = MetadataScope { mailbox: Some(box2.id), user: Some(b.id) };
    store.metadata_set(b_on_box2, vec![("/private/comment".into(), Some(b"x".to_vec()))]).await.unwrap();
    assert!(store.account_remove(a.id).await.unwrap());
    assert!(store.metadata_get(server).await.unwrap().is_empty());
    assert!(store.metadata_get(b_on_box2).await.unwrap().is_empty());
    assert_eq!(store.metadata_get(b_server).await.unwrap(), vec![("/private/comment".to_string(), b"b".to_vec())]);
    store.shutdown().await.unwrap();
}

/// Each reader's own `\Seen` on a shared mailbox: separate per user, a modseq of the
/// mailbox for every change, UNCHANGEDSINCE, a restart, gone with expunged messages, the
/// reader and the mailbox.
pub async fn private_seen_is_per_reader(backend: &dyn Backend) {
    let store = backend.open().await;
    let (a, inbox) = inbox_with(&*store, 3).await;
    let b = account(&*store, "b@example.org").await;
    let c = account(&*store, "c@example.org").await;
    let inbox =
        store.mailbox_set_acl(inbox.id, Identifier::User("b@example.org".into()), Some(Rights::ALL)).await.unwrap();
    let before = inbox.highest_modseq;
    let up = store.seen_private_set(inbox.id, b.id, vec![1, 2, 99], true, None).await.unwrap();
    assert_eq!(up.missing, vec![99]);
    assert_eq!(up.updated.iter().map(|r| r.uid).collect::<Vec<_>>(), vec![1, 2]);
    assert!(up.updated.iter().all(|r| r.seen && r.modseq == before + 1));
    let m = store.mailbox_get(inbox.id).await.unwrap().unwrap();
    assert_eq!(m.highest_modseq, before + 1, "a private change is a change of the mailbox");
    assert_eq!(m.unseen, 3, "the mailbox's own \\Seen is untouched");
    assert!(store.seen_private_get(inbox.id, c.id, 0).await.unwrap().is_empty(), "c has its own");
    assert!(store.seen_private_set(inbox.id, b.id, vec![1], true, None).await.unwrap().updated.is_empty());
    // UNCHANGEDSINCE: the record's modseq counts as well as the message's.
    let up = store.seen_private_set(inbox.id, b.id, vec![1, 3], false, Some(before)).await.unwrap();
    assert_eq!(up.conflicts, vec![1]);
    assert!(up.updated.is_empty(), "3 was not seen: nothing to clear");
    let up = store.seen_private_set(inbox.id, b.id, vec![2], false, Some(before + 1)).await.unwrap();
    assert_eq!(up.updated, vec![PrivateSeen { uid: 2, seen: false, modseq: before + 2 }]);
    assert_eq!(store.seen_private_get(inbox.id, b.id, before + 1).await.unwrap(), up.updated, "since a modseq");
    store.shutdown().await.unwrap();
    drop(store);
    let store = backend.open().await;
    let all = store.seen_private_get(inbox.id, b.id, 0).await.unwrap();
    assert_eq!(all.iter().map(|r| (r.uid, r.seen)).collect::<Vec<_>>(), vec![(1, true), (2, false)]);
    store.expunge(inbox.id, vec![1]).await.unwrap();
    assert_eq!(store.seen_private_get(inbox.id, b.id, 0).await.unwrap().len(), 1, "expunged: its records go");
    store
        .mailbox_set_acl(inbox.id, Identifier::Domain("example.org".into()), Some(Rights::parse("lrs").unwrap()))
        .await
        .unwrap();
    store.seen_private_set(inbox.id, c.id, vec![3], true, None).await.unwrap();
    assert!(store.account_remove(c.id).await.unwrap());
    assert!(store.seen_private_get(inbox.id, c.id, 0).await.unwrap().is_empty(), "gone with the reader");
    assert!(store.account_remove(a.id).await.unwrap());
    assert!(store.seen_private_get(inbox.id, b.id, 0).await.unwrap().is_empty(), "gone with the mailbox");
    store.shutdown().await.unwrap();
}

/// The REST API's tokens: put, replaced, listed by name, removed, kept across a restart.
pub async fn api_tokens_are_kept_by_name(backend: &dyn Backend) {
    let store = backend.open().await;
    let token = |name: &str, scope| ApiToken { name: name.into(), scope, hash: format!("h-{name}"), created: 1 };
    store.api_token_put(token("ci", ApiScope::Read)).await.unwrap();
    store.api_token_put(token("admin", ApiScope::Read)).await.unwrap();
    store.api_token_put(token("admin", ApiScope::Admin)).await.unwrap();
    store.shutdown().await.unwrap();
    drop(store);
    let store = backend.open().await;
    let list = store.api_token_list().await.unwrap();
    assert_eq!(list, vec![token("admin", ApiScope::Admin), token("ci", ApiScope::Read)]);
    assert!(store.api_token_remove("ci").await.unwrap());
    assert!(!store.api_token_remove("ci").await.unwrap());
    assert_eq!(store.api_token_list().await.unwrap().len(), 1);
    store.shutdown().await.unwrap();
}

/// The web admin's sessions: found by key, replaced, kept across a restart, removed one by
/// one, by account (all but one) and by expiry.
pub async fn web_sessions_are_kept_and_removed(backend: &dyn Backend) {
    let store = backend.open().await;
    let session = |key: &str, account: AccountId, created: i64, expires: i64| WebSession {
        key: key.into(),
        account,
        password: "p".into(),
        csrf: format!("c-{key}"),
        created,
        seen: created,
        expires,
        notice: None,
    };
    store.web_session_put(session("a1", 1, 10, 100)).await.unwrap();
    store.web_session_put(session("a2", 1, 5, 200)).await.unwrap();
    store.web_session_put(session("a3", 1, 20, 300)).await.unwrap();
    store.web_session_put(session("b1", 2, 10, 100)).await.unwrap();
    let mut noticed = session("b1", 2, 10, 150);
    noticed.notice = Some(WebNotice::Done("Saved.".into()));
    store.web_session_put(noticed.clone()).await.unwrap();
    store.shutdown().await.unwrap();
    drop(store);
    let store = backend.open().await;
    assert_eq!(store.web_session_get("b1").await.unwrap(), Some(noticed));
    assert_eq!(store.web_session_get("nope").await.unwrap(), None);
    let keys = |list: Vec<WebSession>| list.into_iter().map(|s| s.key).collect::<Vec<_>>();
    assert_eq!(keys(store.web_sessions_of(1).await.unwrap()), ["a2", "a1", "a3"], "oldest first");
    assert_eq!(store.web_session_remove(WebSessionsToRemove::One("a1".into())).await.unwrap(), 1);
    assert_eq!(store.web_session_remove(WebSessionsToRemove::One("a1".into())).await.unwrap(), 0);
    let all_but = WebSessionsToRemove::OfAccount { account: 1, except: Some("a3".into()) };
    assert_eq!(store.web_session_remove(all_but).await.unwrap(), 1);
    assert_eq!(keys(store.web_sessions_of(1).await.unwrap()), ["a3"]);
    assert_eq!(store.web_session_remove(WebSessionsToRemove::ExpiredAt(150)).await.unwrap(), 1, "b1 ended at 150");
    assert_eq!(store.web_session_get("b1").await.unwrap(), None);
    assert!(store.web_session_get("a3").await.unwrap().is_some());
    let all = WebSessionsToRemove::OfAccount { account: 1, except: None };
    assert_eq!(store.web_session_remove(all).await.unwrap(), 1);
    assert!(store.web_sessions_of(1).await.unwrap().is_empty());
    store.shutdown().await.unwrap();
}

pub async fn rename_delete_subscribe_recent(backend: &dyn Backend) {
    let store = backend.open().await;
    let (a, inbox) = inbox_with(&*store, 2).await;
    // CREATE a/b/c makes a and a/b.
    store.mailbox_create(a.id, NewMailbox::new("Work/2024/Q1", None)).await.unwrap();
    assert!(store.mailbox_by_name(a.id, "Work").await.unwrap().is_some());
    assert!(store.mailbox_by_name(a.id, "Work/2024").await.unwrap().is_some());
    let q1 = store.mailbox_by_name(a.id, "Work/2024/Q1").await.unwrap().unwrap();
    store.mailbox_rename(a.id, "Work", "Old/Work").await.unwrap();
    let moved = store.mailbox_by_name(a.id, "Old/Work/2024/Q1").await.unwrap().unwrap();
    assert_eq!((moved.id, moved.uid_validity), (q1.id, q1.uid_validity));
    assert!(store.mailbox_by_name(a.id, "Work").await.unwrap().is_none());
    assert!(store.mailbox_by_name(a.id, "Old").await.unwrap().is_some());
    assert!(matches!(store.mailbox_rename(a.id, "Old", "Sent").await, Err(StoreError::Exists(_))));
    assert!(matches!(store.mailbox_delete(a.id, "Old").await, Err(StoreError::HasChildren(_))));
    // Renaming INBOX moves its messages and leaves it empty.
    store.mailbox_rename(a.id, INBOX, "Saved").await.unwrap();
    let saved = store.mailbox_by_name(a.id, "Saved").await.unwrap().unwrap();
    assert_eq!(saved.total, 2);
    let inbox_now = store.mailbox_get(inbox.id).await.unwrap().unwrap();
    assert_eq!((inbox_now.total, inbox_now.uid_validity), (0, inbox.uid_validity));
    let blob = store.message_list(saved.id).await.unwrap()[0].blob;
    store.mailbox_delete(a.id, "Saved").await.unwrap();
    assert_eq!(store.blob_refcount(blob).await.unwrap(), 0);
    store.mailbox_subscribe(a.id, "Sent", false).await.unwrap();
    assert!(!store.mailbox_by_name(a.id, "Sent").await.unwrap().unwrap().subscribed);
    // \Recent: the first claim gets everything, the next nothing.
    store.deliver(delivery(msg("new", ""), vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
    let next = store.mailbox_get(inbox.id).await.unwrap().unwrap().uid_next;
    assert_eq!(store.mailbox_claim_recent(inbox.id).await.unwrap(), 1..next);
    assert_eq!(store.mailbox_claim_recent(inbox.id).await.unwrap(), next..next);
    store.shutdown().await.unwrap();
}

pub async fn full_text_index_catches_up_and_answers_exactly(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = account(&*store, "a@example.org").await;
    let d1 = delivery(msg("one", "X-Tag: alpha\r\n"), vec![DeliveryTarget::inbox(a.id)]);
    let d2 = delivery(
        b"Subject: two\r\nContent-Transfer-Encoding: base64\r\n\r\nc2VjcmV0IHN3b3JkZmlzaA==\r\n".to_vec(),
        vec![DeliveryTarget::inbox(a.id)],
    );
    let (h1, h2) = (d1.hash, d2.hash);
    store.deliver(d1).await.unwrap();
    store.deliver(d2).await.unwrap();
    // Right after delivery the contents may not be indexed: they are reported as such.
    let early = store.text_search("swordfish", false).await.unwrap().unwrap();
    assert!(early.lookup(&h2) != Some(false), "an unindexed content must not be reported as not matching");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let m = store.text_search("swordfish", false).await.unwrap().unwrap();
        if m.unindexed.is_empty() {
            assert_eq!(m.lookup(&h2), Some(true), "decoded base64 text is indexed");
            assert_eq!(m.lookup(&h1), Some(false));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "index did not catch up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let header = store.text_search("alpha", true).await.unwrap().unwrap();
    assert_eq!(header.lookup(&h1), Some(true));
    assert_eq!(
        store.text_search("alpha", false).await.unwrap().unwrap().lookup(&h1),
        Some(false),
        "BODY does not see the header"
    );
    assert_eq!(store.text_search("ab", false).await.unwrap(), None, "too short for the index");
    // A needle with a NUL is answered (by the index or by the caller's scan), never an error.
    if let Some(m) = store.text_search("sword\0fish", false).await.unwrap() {
        assert_eq!(m.lookup(&h2), Some(false));
    }
    // Freed contents leave the index.
    let inbox = store.mailbox_by_name(a.id, INBOX).await.unwrap().unwrap();
    store.expunge(inbox.id, vec![2]).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let m = store.text_search("swordfish", false).await.unwrap().unwrap();
        if m.matched.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "removal not applied");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    store.shutdown().await.unwrap();
}

pub async fn queue_entries_are_claimed_once_updated_and_freed_when_final(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = account(&*store, "a@example.org").await;
    let mut d = delivery(msg("out", ""), vec![DeliveryTarget::inbox(a.id)]);
    d.remote = vec![remote("x@Remote.example"), remote("y@remote.example"), remote("z@other.example")];
    let hash = d.hash;
    let now = d.envelope.received_at;
    let receipt = store.deliver(d).await.unwrap();
    let id = receipt.queued.expect("queued");
    assert_eq!(store.blob_refcount(hash).await.unwrap(), 2, "the mailbox copy and the queue entry");

    let claimed = store.queue_claim(now, 10, 60).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let entry = &claimed[0];
    assert_eq!(entry.message.id, id);
    assert_eq!(entry.recipients[0].domain, "remote.example");
    assert!(store.queue_claim(now, 10, 60).await.unwrap().is_empty(), "leased entries are not handed out twice");
    // The only entry is held: nothing is due before its lease ends (a backend whose leases
    // outlive a crashed holder says when that is; one whose leases die with it, nothing).
    let held = store.queue_next_due().await.unwrap();
    assert!(held.is_none_or(|at| at >= now + 60), "the only entry is held: {held:?}");

    // Two delivered, one deferred.
    let mut updates = Vec::new();
    for (i, r) in entry.recipients.iter().enumerate() {
        let mut r = r.clone();
        r.attempts += 1;
        if r.domain == "other.example" {
            r.next_attempt = now + 300;
            r.last_result = Some("451 4.3.0 try later".into());
        } else {
            r.status = RecipientStatus::Delivered;
        }
        updates.push((i, r));
    }
    let left = store.queue_update(id, updates).await.unwrap().expect("still queued");
    assert_eq!(left.next_attempt(), Some(now + 300));
    assert!(store.queue_claim(now, 10, 60).await.unwrap().is_empty(), "not due yet");
    assert_eq!(store.queue_next_due().await.unwrap(), Some(now + 300));
    assert_eq!(store.queue_retry(Some(id), now).await.unwrap(), 1);
    let again = store.queue_claim(now, 10, 60).await.unwrap();
    assert_eq!(again.len(), 1);
    let mut last = again[0].recipients[2].clone();
    last.status = RecipientStatus::Failed;
    assert!(store.queue_update(id, vec![(2, last)]).await.unwrap().is_none(), "every recipient final");
    assert!(store.queue_get(id).await.unwrap().is_none());
    assert_eq!(store.blob_refcount(hash).await.unwrap(), 1, "the queue's reference is released");
    store.shutdown().await.unwrap();
}

pub async fn queue_survives_a_restart_and_leases_end(backend: &dyn Backend) {
    let store = backend.open().await;
    let mut d = delivery(msg("queued only", ""), vec![]);
    d.remote = vec![remote("x@remote.example")];
    let hash = d.hash;
    let now = d.envelope.received_at;
    let id = store.deliver(d).await.unwrap().queued.unwrap();
    assert_eq!(store.queue_claim(now, 10, 600).await.unwrap().len(), 1);
    store.shutdown().await.unwrap();
    drop(store);

    let store = backend.open().await;
    // A lease may outlive the process that took it (a shared database keeps it) or end with
    // it (the embedded store); either way the entry is due again once the lease ends.
    let claimed = store.queue_claim(now + 601, 10, 600).await.unwrap();
    assert_eq!(claimed.len(), 1, "the entry is claimed again after its lease");
    assert_eq!(claimed[0].message.blob, hash);
    assert_eq!(store.blob_get(hash).await.unwrap().unwrap(), msg("queued only", ""));
    assert!(store.queue_remove(id).await.unwrap());
    assert_eq!(store.blob_refcount(hash).await.unwrap(), 0);
    assert!(store.queue_list().await.unwrap().is_empty());
    store.shutdown().await.unwrap();
}

pub async fn quarantine_holds_releases_once_and_expires(backend: &dyn Backend) {
    let store = backend.open().await;
    let a = account(&*store, "alice@example.org").await;
    let entry = |expires_at| QuarantineEntry {
        id: 0,
        created_at: 1,
        expires_at,
        reason: "virus Test (clamav)".into(),
        recipients: vec![QuarantinedRecipient {
            address: "alice@example.org".into(),
            accounts: vec![a.id],
            remote: vec![],
            orcpt: None,
            notify: None,
        }],
        envelope: DeliveryEnvelope { mail_from: Some("x@remote.example".into()), ..Default::default() },
        size: 10,
    };
    let first = store.quarantine_put(entry(i64::MAX), msg("held", "")).await.unwrap();
    let second = store.quarantine_put(entry(100), msg("old", "")).await.unwrap();
    assert_ne!(first, second);
    let listed = store.quarantine_list().await.unwrap();
    assert_eq!(vec![first, second], listed.iter().map(|q| q.id).collect::<Vec<_>>());
    let (held, raw) = store.quarantine_get(first).await.unwrap().unwrap();
    assert_eq!("virus Test (clamav)", held.reason);
    assert_eq!(msg("held", ""), raw);
    // Nothing of it is in the mailbox.
    let inbox = store.mailbox_by_name(a.id, "INBOX").await.unwrap().unwrap();
    assert!(store.message_list(inbox.id).await.unwrap().is_empty());

    // Released: delivered and gone from the quarantine, in one step; a second release finds nothing.
    let target =
        DeliveryTarget { account: a.id, mailbox: MailboxSelector::Inbox, flags: Flags::default(), keywords: vec![] };
    let receipt = store.quarantine_release(first, delivery(raw.clone(), vec![target.clone()])).await.unwrap();
    assert_eq!(1, receipt.map(|r| r.copies.len()).unwrap_or(0));
    assert!(store.quarantine_release(first, delivery(raw, vec![target])).await.unwrap().is_none());
    assert_eq!(1, store.message_list(inbox.id).await.unwrap().len());
    assert!(store.quarantine_get(first).await.unwrap().is_none());

    // Expiry removes what is past its time; ids are not reused after a restart.
    assert_eq!(1, store.quarantine_expire(1_000).await.unwrap());
    assert!(store.quarantine_list().await.unwrap().is_empty());
    store.shutdown().await.unwrap();
    drop(store);
    let store = backend.open().await;
    let third = store.quarantine_put(entry(i64::MAX), msg("later", "")).await.unwrap();
    assert!(third > second);
    assert!(!store.quarantine_remove(first).await.unwrap());
    assert!(store.quarantine_remove(third).await.unwrap());
}

/// Many workers claiming at once (threads of one node, or nodes of a cluster) never get the
/// same entry, and together they get every due entry.
pub async fn concurrent_claims_are_exclusive(backend: &dyn Backend) {
    let store = backend.open().await;
    let mut ids = Vec::new();
    let mut now = 0;
    for i in 0..40 {
        let mut d = delivery(msg(&format!("out {i}"), ""), vec![]);
        d.remote = vec![remote("x@remote.example")];
        now = d.envelope.received_at;
        ids.push(store.deliver(d).await.unwrap().queued.unwrap());
    }
    let mut workers = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let claimed = store.queue_claim(now, 3, 600).await.unwrap();
                if claimed.is_empty() {
                    return got;
                }
                got.extend(claimed.into_iter().map(|e| e.message.id));
            }
        }));
    }
    let mut claimed = Vec::new();
    for w in workers {
        claimed.extend(w.await.unwrap());
    }
    claimed.sort();
    ids.sort();
    assert_eq!(claimed, ids, "every entry claimed exactly once");
    // An update ends the lease: a deferred recipient is due again at its time, not before.
    let entry = store.queue_get(ids[0]).await.unwrap().unwrap();
    let mut r = entry.recipients[0].clone();
    r.next_attempt = now + 10;
    store.queue_update(ids[0], vec![(0, r)]).await.unwrap().unwrap();
    assert!(store.queue_claim(now + 9, 10, 600).await.unwrap().is_empty());
    let again = store.queue_claim(now + 10, 10, 600).await.unwrap();
    assert_eq!(again.iter().map(|e| e.message.id).collect::<Vec<_>>(), vec![ids[0]]);
    // A renewed lease holds the entry past its first end; the others end by themselves.
    store.queue_renew(vec![ids[1]], now + 500, 600).await.unwrap();
    let late = store.queue_claim(now + 601, 100, 600).await.unwrap();
    assert!(!late.iter().any(|e| e.message.id == ids[1]), "the renewed lease still holds");
    assert_eq!(late.len(), ids.len() - 2, "every other lease but the fresh one has ended");
    store.shutdown().await.unwrap();
}

/// Hooks see a change before its caller is answered; subscribers get them in order.
pub async fn changes_reach_hooks_before_the_answer_and_subscribers_in_order(backend: &dyn Backend) {
    let store = backend.open().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let seen = Arc::clone(&seen);
        store.on_change(Arc::new(move |c: &StoreChange| seen.lock().unwrap().push(c.clone())));
    }
    let mut feed = store.subscribe();
    let a = account(&*store, "a@example.org").await;
    let inbox = store.mailbox_by_name(a.id, INBOX).await.unwrap().unwrap();
    store.deliver(delivery(msg("one", ""), vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
    let expected = StoreChange::Mailbox { account: a.id, mailbox: inbox.id };
    assert!(seen.lock().unwrap().contains(&expected), "the hook ran before deliver returned");
    store.set_flags(inbox.id, vec![1], FlagMode::Add, Flags::SEEN, vec![], None).await.unwrap();
    store.expunge(inbox.id, vec![1]).await.unwrap();
    let mut mailbox_events = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while mailbox_events < 3 {
        let change = tokio::time::timeout_at(deadline, feed.recv()).await.expect("change feed").unwrap();
        if change == expected {
            mailbox_events += 1;
        }
    }
    store.shutdown().await.unwrap();
}

/// One `#[tokio::test]` per conformance check, each with its own backend from `$make` (an
/// async expression giving a [`Backend`]).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make; accounts_get_default_mailboxes_and_names_are_unique, content_is_stored_once_and_freed_with_the_last_copy, uids_increase_are_never_reused_and_survive_reopen, large_message_round_trips_through_chunks, concurrent_deliveries_get_distinct_uids, concurrent_deliveries_keep_quota_contents_threads_and_flags, replies_join_the_thread_of_their_parent, account_removal_frees_everything, sieve_scripts_one_active_survive_restart_and_go_with_the_account, sieve_ids_are_remembered_until_they_expire, special_use_target_falls_back_to_inbox, changes_since_a_modseq, flags_change_counters_and_modseq, copy_and_move_keep_flags_and_references, append_batches_are_all_or_nothing, acls_name_users_and_go_with_mailboxes_and_users, annotations_keep_their_scope, private_seen_is_per_reader, api_tokens_are_kept_by_name, web_sessions_are_kept_and_removed, rename_delete_subscribe_recent, full_text_index_catches_up_and_answers_exactly, queue_entries_are_claimed_once_updated_and_freed_when_final, queue_survives_a_restart_and_leases_end, quarantine_holds_releases_once_and_expires, concurrent_claims_are_exclusive, changes_reach_hooks_before_the_answer_and_subscribers_in_order);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let backend = $make;
                $crate::conformance::$name(&backend).await;
            }
        )*
    };
}
