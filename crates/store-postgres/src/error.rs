//! PostgreSQL's errors in the store's backend-neutral terms: a database that cannot be
//! reached is [`StoreError::Unavailable`] (the protocols answer with a temporary error and the
//! client retries), anything else [`StoreError::Backend`] in words.

use tern_store::StoreError;
use tokio_postgres::error::SqlState;

/// The error in words: the server's message (and detail) when it sent one.
pub fn words(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        // The causes too: "error performing TLS handshake: invalid peer certificate: ...".
        None => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                let more = c.to_string();
                if !text.contains(&more) {
                    text.push_str(": ");
                    text.push_str(&more);
                }
                cause = c.source();
            }
            text
        }
    }
}

/// Whether the error means the database is out of reach for now rather than a refused query.
pub fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Class 08: connection exception; 57P01-03: shutting down, cannot connect now;
        // 53300: too many connections.
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
        }
        // No SQLSTATE: unreachable when the cause is I/O (connection refused, reset, TLS);
        // otherwise a value that did not convert, which is not the database's fault.
        None => {
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                if c.is::<std::io::Error>() {
                    return true;
                }
                cause = c.source();
            }
            false
        }
    }
}

pub fn pg_error(e: tokio_postgres::Error) -> StoreError {
    if is_unavailable(&e) {
        StoreError::Unavailable(format!("database: {}", words(&e)))
    } else {
        StoreError::Backend(format!("database: {}", words(&e)))
    }
}

pub fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => StoreError::Unavailable(format!("database connection: {other}")),
    }
}

/// Whether a query broke a unique constraint (a name already taken).
pub fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

pub fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { what: what.to_string(), detail: detail.to_string() }
}
