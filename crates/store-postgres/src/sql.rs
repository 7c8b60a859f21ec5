//! Statements through each connection's prepared-statement cache: PostgreSQL parses and plans
//! a statement once per connection instead of at every call (a delivery runs about twenty).
//!
//! Statements of one connection whose futures are polled together are pipelined: sent one
//! after the other without waiting, executed by the server in the order sent, answered in one
//! round trip. A cached statement is sent at its future's first poll; one not yet prepared is
//! sent after its preparation's round trip, so where the order matters (a lock before a read
//! that relies on it) the statements are [`Cached::warm`]ed first.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

#[async_trait]
pub(crate) trait Cached: GenericClient {
    async fn run(&self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        let statement = self.prepare_cached(sql).await?;
        self.execute(&statement, params).await
    }

    async fn rows(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query(&statement, params).await
    }

    async fn row(&self, sql: &str, params: Params<'_>) -> Result<Row, Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query_one(&statement, params).await
    }

    /// Prepares (and caches) `sqls` in one round trip, so that statements sent together
    /// afterwards run in the order they are polled.
    async fn warm(&self, sqls: &[&str]) -> Result<(), Error> {
        futures::future::try_join_all(sqls.iter().map(|sql| self.prepare_cached(sql))).await?;
        Ok(())
    }

    async fn maybe_row(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query_opt(&statement, params).await
    }
}

impl<G: GenericClient> Cached for G {}
