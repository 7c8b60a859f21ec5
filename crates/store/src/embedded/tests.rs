use super::*;
use crate::conformance::{Backend, account, delivery, msg};

/// The embedded store in a temporary directory, for the conformance suite.
struct Embedded(tempfile::TempDir);

#[async_trait]
impl Backend for Embedded {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(EmbeddedStore::open(self.0.path(), 8).unwrap())
    }
}

crate::conformance_tests!(Embedded(tempfile::tempdir().unwrap()));

#[tokio::test]
async fn large_contents_live_in_files_freed_with_the_last_copy() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = blobfile::directory(dir.path());
    let file_count = || walk_files(&blobs);
    let store = EmbeddedStore::open(dir.path(), 8).unwrap();
    let a = account(&store, "a@example.org").await;
    let mut raw = b"Subject: attachment\r\n\r\n".to_vec();
    while raw.len() < 3 * blobfile::FILE_THRESHOLD {
        raw.extend_from_slice(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n");
    }
    let small = msg("small", "");
    let d = delivery(raw.clone(), vec![DeliveryTarget::inbox(a.id)]);
    let hash = d.hash;
    let first = store.deliver(d).await.unwrap().copies[0].clone();
    store.deliver(delivery(small.clone(), vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
    assert_eq!(file_count(), 1, "only the large content has a file");
    assert!(blobfile::present(&blobs, &hash, raw.len() as u64));
    // The same content again: one file, two references.
    let second =
        store.deliver(delivery(raw.clone(), vec![DeliveryTarget::inbox(a.id)])).await.unwrap().copies[0].clone();
    assert_eq!((store.blob_refcount(hash).await.unwrap(), file_count()), (2, 1));
    assert_eq!(store.blob_get(hash).await.unwrap().unwrap(), raw);
    assert_eq!(store.summary_get(hash).await.unwrap().unwrap().subject, "attachment");
    store.expunge(first.mailbox, vec![first.uid]).await.unwrap();
    assert_eq!(file_count(), 1, "still referenced");
    // Survives a restart; an orphan file (a crash between file and transaction) does not.
    store.shutdown().await.unwrap();
    drop(store);
    let orphan = BlobHash::of(b"never committed");
    blobfile::write(&blobs, &orphan, b"never committed").unwrap();
    let store = EmbeddedStore::open(dir.path(), 8).unwrap();
    assert_eq!(file_count(), 1, "the orphan is swept at start");
    assert_eq!(store.blob_get(hash).await.unwrap().unwrap(), raw);
    store.expunge(second.mailbox, vec![second.uid]).await.unwrap();
    assert_eq!((store.blob_refcount(hash).await.unwrap(), file_count()), (0, 0), "freed with the last copy");
    assert_eq!(store.blob_get(hash).await.unwrap(), None);
    // Delivered again after it was freed: the file comes back.
    store.deliver(delivery(raw.clone(), vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
    assert_eq!(store.blob_get(hash).await.unwrap().unwrap(), raw);
    // A delivery that stores no copy (the mailbox is gone) leaves no file behind.
    let mut other = raw.clone();
    other.extend_from_slice(b"different\r\n");
    let gone = DeliveryTarget::inbox(9999);
    let r = store.deliver(delivery(other.clone(), vec![gone])).await.unwrap();
    assert!(r.copies.is_empty());
    assert!(!blobfile::present(&blobs, &BlobHash::of(&other), other.len() as u64));
    store.shutdown().await.unwrap();
}

fn walk_files(dir: &std::path::Path) -> usize {
    let Ok(top) = std::fs::read_dir(dir) else { return 0 };
    top.flatten().filter(|d| d.path().is_dir()).map(|d| std::fs::read_dir(d.path()).map_or(0, |r| r.count())).sum()
}

#[test]
fn a_second_process_is_refused_and_other_formats_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    {
        let _first = EmbeddedStore::open(dir.path(), 8).unwrap();
        match EmbeddedStore::open(dir.path(), 8) {
            Err(StoreError::Locked(_)) => {}
            Err(e) => panic!("expected Locked, got {e}"),
            Ok(_) => panic!("expected Locked, got a second store"),
        }
        rt.block_on(_first.shutdown()).unwrap();
    }
    {
        let engine = Engine::open(dir.path(), 8).unwrap();
        engine.meta.insert(keys::META_FORMAT, 99u32.to_be_bytes()).unwrap();
        engine.db.persist(PersistMode::SyncAll).unwrap();
    }
    match EmbeddedStore::open(dir.path(), 8) {
        Err(StoreError::Format { found: 99, supported: FORMAT_VERSION }) => {}
        Err(e) => panic!("expected a format error, got {e}"),
        Ok(_) => panic!("a store of another format was opened"),
    }
}

#[tokio::test]
async fn summaries_of_an_older_version_are_derived_again_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 8).unwrap();
    let a = account(&store, "a@example.org").await;
    let d = delivery(msg("old", ""), vec![DeliveryTarget::inbox(a.id)]);
    let hash = d.hash;
    store.deliver(d).await.unwrap();
    // Pretend an older Tern wrote it: version 0.
    store.engine.summaries.insert(hash.0, [0u8, 0, 1, 2, 3]).unwrap();
    let got = store.summary_get_many(vec![hash]).await.unwrap();
    assert_eq!(got[0].as_ref().unwrap().subject, "old");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let bytes = store.engine.summaries.get(hash.0).unwrap().unwrap();
        if decode_summary(&bytes).unwrap().is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the upgraded summary was not stored");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    store.shutdown().await.unwrap();
}

/// A backup is one point in time, taken while the store is written to; contents kept as files
/// are in it even when their last copy is expunged during the backup; a restore gives the
/// same store, and a damaged backup is refused before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_written_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store"), 8).unwrap());
    let a = account(&*store, "a@example.org").await;
    let inbox = store.mailbox_by_name(a.id, INBOX).await.unwrap().unwrap();
    let big = |i: usize| msg(&format!("big {i}"), &format!("X-Fill: {}\r\n", "y".repeat(blobfile::FILE_THRESHOLD + i)));
    for i in 0..20 {
        let raw = if i % 5 == 0 { big(i) } else { msg(&format!("m{i}"), "") };
        store.deliver(delivery(raw, vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
    }
    // Writes go on during the backup: new messages, and the large ones expunged.
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for i in 20..60 {
                store.deliver(delivery(msg(&format!("m{i}"), ""), vec![DeliveryTarget::inbox(a.id)])).await.unwrap();
                if i < 24 {
                    store.expunge(inbox.id, vec![1 + (i as u32 - 20) * 5]).await.unwrap();
                }
            }
        })
    };
    let backup_dir = dir.path().join("backup");
    let summary = store.backup(backup_dir.clone()).await.unwrap();
    writer.await.unwrap();
    assert!(summary.records > 20 && summary.files <= 4, "{summary:?}");

    let restored_path = dir.path().join("restored");
    let restored_summary = EmbeddedStore::restore(&restored_path, &backup_dir, 8).unwrap();
    assert_eq!((restored_summary.records, restored_summary.files), (summary.records, summary.files));
    let restored = EmbeddedStore::open(&restored_path, 8).unwrap();
    let b = restored.account_by_address("a@example.org").await.unwrap().unwrap();
    let r_inbox = restored.mailbox_by_name(b.id, INBOX).await.unwrap().unwrap();
    let entries = restored.message_list(r_inbox.id).await.unwrap();
    assert!(entries.len() >= 16, "the 20 messages before the backup, less those expunged: {}", entries.len());
    assert_eq!(r_inbox.total as usize, entries.len());
    for e in &entries {
        let raw = restored.blob_get(e.blob).await.unwrap().expect("every message has its content");
        assert_eq!(raw.len() as u64, e.size);
    }
    // UIDs go on after the restored ones.
    let r = restored.deliver(delivery(msg("after", ""), vec![DeliveryTarget::inbox(b.id)])).await.unwrap();
    assert!(r.copies[0].uid > entries.last().unwrap().uid);
    restored.shutdown().await.unwrap();

    // A store is not restored over another, and a damaged backup is refused whole.
    assert!(matches!(EmbeddedStore::restore(&restored_path, &backup_dir, 8), Err(StoreError::Exists(_))));
    let dump = backup_dir.join("store.dump");
    let mut bytes = std::fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&dump, &bytes).unwrap();
    let damaged = EmbeddedStore::restore(&dir.path().join("other"), &backup_dir, 8);
    assert!(matches!(damaged, Err(StoreError::Corrupt { .. }) | Err(StoreError::Io { .. })), "{damaged:?}");
    assert!(!dir.path().join("other").exists(), "nothing written from a damaged backup");
    store.shutdown().await.unwrap();
}
