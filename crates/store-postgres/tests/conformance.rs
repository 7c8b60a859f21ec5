//! The store contract (tern-store's conformance suite) on PostgreSQL: a private server started
//! by the test (initdb + pg_ctl), a fresh database per check.

use std::sync::Arc;
use tern_store::Store;
use tern_store::conformance::Backend;
use tern_store_postgres::{PgOptions, PgStore, testing};

struct Postgres(PgOptions);

#[async_trait::async_trait]
impl Backend for Postgres {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(PgStore::open(&self.0).await.expect("open the PostgreSQL store"))
    }
}

tern_store::conformance_tests!(Postgres(testing::database().await.expect("a test database")));
