//! The vendored lsm-tree (see `vendor/README.md`) writes a tree's version file while holding no
//! lock on its version history, so that writers do not wait for that fsync. This test drives
//! fjall the way the store does — several writers, group commits, tiny memtables so that
//! flushes and compactions run all the time, a key-value separated keyspace like `blobs` —
//! while readers check every acknowledged key, and then reopens the database and checks every
//! key again: a version installed wrongly (a lost table, a dropped memtable, a stale version
//! file) shows up as a missing or wrong value.

use fjall::{Database, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const WRITERS: u64 = 4;
const KEYS_PER_WRITER: u64 = 6_000;

fn key(writer: u64, i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&writer.to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn value(writer: u64, i: u64, len: usize) -> Vec<u8> {
    let seed = (writer * 1_000_003 + i) as u8;
    (0..len).map(|n| seed.wrapping_add(n as u8)).collect()
}

fn open(path: &std::path::Path) -> (Database, fjall::Keyspace, fjall::Keyspace) {
    let db = Database::builder(path).manual_journal_persist(true).worker_threads(1).open().expect("open database");
    let small = || KeyspaceCreateOptions::default().max_memtable_size(64 * 1024);
    let plain = db.keyspace("plain", small).expect("open plain keyspace");
    let separated = db
        .keyspace("separated", || {
            small().with_kv_separation(Some(KvSeparationOptions::default().separation_threshold(512)))
        })
        .expect("open separated keyspace");
    (db, plain, separated)
}

#[test]
fn flushes_and_compactions_under_concurrent_writes_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, plain, separated) = open(dir.path());
    let acknowledged: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());

    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let (db, plain, separated, acknowledged) = (&db, &plain, &separated, &acknowledged);
            scope.spawn(move || {
                for i in 0..KEYS_PER_WRITER {
                    let mut batch = db.batch();
                    batch.insert(plain, key(writer, i), value(writer, i, 200));
                    batch.insert(separated, key(writer, i), value(writer, i, 2_000));
                    batch.commit().expect("commit");
                    if i % 16 == 15 {
                        db.persist(PersistMode::SyncData).expect("persist");
                        acknowledged[writer as usize].store(i + 1, Ordering::Release);
                    }
                }
            });
        }
        for reader in 0..2u64 {
            let (plain, separated, acknowledged) = (&plain, &separated, &acknowledged);
            scope.spawn(move || {
                let mut rounds = 0u64;
                loop {
                    let mut all_done = true;
                    for writer in 0..WRITERS {
                        let done = acknowledged[writer as usize].load(Ordering::Acquire);
                        all_done &= done == KEYS_PER_WRITER;
                        // A spread of keys: the newest, and older ones by a stride.
                        let mut i = done;
                        while i > 0 {
                            i -= 1;
                            let got = plain.get(key(writer, i)).expect("read plain");
                            assert_eq!(Some(value(writer, i, 200).as_slice()), got.as_deref(), "plain {writer}/{i}");
                            let got = separated.get(key(writer, i)).expect("read separated");
                            assert_eq!(
                                Some(value(writer, i, 2_000).as_slice()),
                                got.as_deref(),
                                "separated {writer}/{i}"
                            );
                            i = i.saturating_sub(97 + reader);
                        }
                    }
                    rounds += 1;
                    if all_done {
                        break;
                    }
                }
                assert!(rounds > 1, "the readers ran beside the writers");
            });
        }
    });

    let tables = plain.table_count() + separated.table_count();
    assert!(tables > 0, "memtables were flushed ({tables} tables)");
    drop((plain, separated, db));

    let (_db, plain, separated) = open(dir.path());
    for writer in 0..WRITERS {
        for i in 0..KEYS_PER_WRITER {
            let got = plain.get(key(writer, i)).expect("read plain after reopen");
            assert_eq!(Some(value(writer, i, 200).as_slice()), got.as_deref(), "plain {writer}/{i} after reopen");
            let got = separated.get(key(writer, i)).expect("read separated after reopen");
            assert_eq!(Some(value(writer, i, 2_000).as_slice()), got.as_deref(), "separated {writer}/{i} after reopen");
        }
    }
}
