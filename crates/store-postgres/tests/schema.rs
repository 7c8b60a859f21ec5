//! The schema is made and migrated by Tern: a database left at the first version by an older
//! Tern is brought to the current one with its data intact, and one of a newer version is
//! refused.

use tern_store::{DirectoryStore, MailStore, Store, StoreError};

use tern_store_postgres::schema::{MIGRATIONS, SCHEMA_VERSION};
use tern_store_postgres::{PgStore, testing};

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn a_first_version_database_is_migrated_with_its_data() {
    let options = testing::database().await.unwrap();
    // What the first version of the schema made, with an account an older Tern created.
    let client = connect(&options.url).await;
    client.batch_execute(MIGRATIONS[0]).await.unwrap();
    client
        .batch_execute(
            r#"INSERT INTO tern_meta VALUES ('schema_version', 1);
               INSERT INTO accounts VALUES (7, 'old@example.test',
                 '{"id":7,"address":"old@example.test","password_hash":"$argon2id$x","created":1}');
               INSERT INTO mailboxes VALUES (3, 7, 'INBOX', NULL, true, 1700000000, 5, 9, 0, 0, 0, 0, 5, '{}');
               SELECT setval('account_ids', 7); SELECT setval('mailbox_ids', 3);"#,
        )
        .await
        .unwrap();

    let store = PgStore::open(&options).await.expect("migrates and opens");
    let version: i64 =
        client.query_one("SELECT value FROM tern_meta WHERE key = 'schema_version'", &[]).await.unwrap().get(0);
    assert_eq!(version, SCHEMA_VERSION);
    let old = store.account_by_address("old@example.test").await.unwrap().expect("kept");
    assert_eq!(old.id, 7);
    let inbox = store.mailbox_by_name(7, "INBOX").await.unwrap().unwrap();
    assert_eq!((inbox.uid_validity, inbox.uid_next, inbox.highest_modseq), (1_700_000_000, 5, 9));
    // What version 2 added works, and is the same for every node.
    let secret = store.cluster_secret().await.unwrap().expect("a cluster secret");
    let other = PgStore::open(&options).await.unwrap();
    assert_eq!(other.cluster_secret().await.unwrap(), Some(secret));
    store.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
}

/// Version 5 indexes search text by Tern's own trigram codes: texts indexed by a version-4
/// node (with `pg_trgm`) are indexed again, and searches find them throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_text_of_a_version_4_database_is_indexed_again() {
    let options = testing::database().await.unwrap();
    let client = connect(&options.url).await;
    for (i, sql) in MIGRATIONS.iter().take(4).enumerate() {
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("migration {}: {e}", i + 1));
    }
    let raw = b"Subject: old\r\n\r\nthe password is swordfish\r\n".to_vec();
    let hash = tern_store::BlobHash::of(&raw);
    client
        .batch_execute(
            r#"INSERT INTO tern_meta VALUES ('schema_version', 4);
               INSERT INTO accounts VALUES (7, 'old@example.test',
                 '{"id":7,"address":"old@example.test","password_hash":"$argon2id$x","created":1}');
               INSERT INTO mailboxes VALUES (3, 7, 'INBOX', NULL, true, 1700000000, 2, 2, 1, 1, 40, 0, 1, '{}');"#,
        )
        .await
        .unwrap();
    let key = &hash.0[..];
    client
        .execute(
            "INSERT INTO contents (hash, refcount, size, summary) VALUES ($1, 1, $2, '\\x00')",
            &[&key, &(raw.len() as i64)],
        )
        .await
        .unwrap();
    client.execute("INSERT INTO blobs VALUES ($1, $2)", &[&key, &raw]).await.unwrap();
    client
        .execute("INSERT INTO content_text VALUES ($1, 'subject: old', 'the password is swordfish')", &[&key])
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO messages VALUES (3, 1, $1, $2, 1700000000, 0, '{}', 2, 1, 1, 1)",
            &[&key, &(raw.len() as i64)],
        )
        .await
        .unwrap();

    let store = PgStore::open(&options).await.expect("migrates and opens");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let found = store.text_search("swordfish", false).await.unwrap().expect("indexed search");
        assert_ne!(found.lookup(&hash), Some(false), "never reported as not matching");
        if found.unindexed.is_empty() {
            assert_eq!(found.lookup(&hash), Some(true));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not indexed again");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let other = store.text_search("password is", false).await.unwrap().unwrap();
    assert_eq!(other.lookup(&hash), Some(true), "a needle across words");
    let miss = store.text_search("swordfisk", false).await.unwrap().unwrap();
    assert_eq!(miss.lookup(&hash), Some(false));
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let options = testing::database().await.unwrap();
    let store = PgStore::open(&options).await.unwrap();
    store.shutdown().await.unwrap();
    let client = connect(&options.url).await;
    client
        .execute("UPDATE tern_meta SET value = $1 WHERE key = 'schema_version'", &[&(SCHEMA_VERSION + 1)])
        .await
        .unwrap();
    match PgStore::open(&options).await {
        Err(StoreError::Format { found, supported }) => {
            assert_eq!((i64::from(found), i64::from(supported)), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        Err(e) => panic!("expected a format error, got {e}"),
        Ok(_) => panic!("a newer schema was opened"),
    }
}

#[tokio::test]
async fn nodes_starting_together_migrate_once() {
    let options = testing::database().await.unwrap();
    let opened = futures::future::join_all((0..4).map(|_| PgStore::open(&options))).await;
    for store in opened {
        store.expect("every node opens").shutdown().await.unwrap();
    }
}
