//! TLS to the database: with `sslmode=require` the connection is encrypted and the server's
//! certificate verified (against `[store] ca_file` here; an unknown CA is refused).

use tern_store::{DirectoryStore, Store};
use tern_store_postgres::{PgOptions, PgStore, testing};

#[tokio::test]
async fn the_database_is_reached_over_verified_tls() {
    let plain = testing::database().await.unwrap();
    let server = testing::server().unwrap();
    let name = plain.url.split("dbname=").nth(1).unwrap().to_string();
    let tls = PgOptions { url: server.tls_url(&name), pool_size: 4, ca_file: Some(server.ca_file.clone()) };
    let store = PgStore::open(&tls).await.expect("TLS with the test CA");
    assert!(store.domain_list().await.unwrap().is_empty());
    store.shutdown().await.unwrap();

    let unverified = PgOptions { ca_file: None, ..tls };
    match PgStore::open(&unverified).await {
        Err(e) => assert!(e.to_string().to_lowercase().contains("certificate"), "{e}"),
        Ok(_) => panic!("a certificate from an unknown CA was accepted"),
    }
}
