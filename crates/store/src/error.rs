#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine or database failed (an I/O error, a constraint the data broke): in
    /// words, whatever the backend.
    #[error("store: {0}")]
    Backend(String),
    /// The store cannot be reached for now (database down, connections exhausted): the
    /// caller answers with a temporary error (SMTP 451, IMAP `NO [UNAVAILABLE]`) and retries.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store record {what} is corrupt: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("store format version {found} is not supported by this Tern (supports {supported})")]
    Format { found: u32, supported: u32 },
    #[error("{0} already exists")]
    Exists(String),
    /// A mailbox cannot be deleted while it has children (RFC 9051 §6.3.4, `HASCHILDREN`).
    #[error("{0} has children")]
    HasChildren(String),
    /// The active Sieve script cannot be deleted (RFC 5804 §2.10, `ACTIVE`).
    #[error("{0} is active")]
    Active(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The change would take an account over its storage quota (RFC 9208 OVERQUOTA).
    #[error("quota of {0} exceeded")]
    OverQuota(String),
    /// A record would grow past a fixed bound (ACL entries).
    #[error("limit reached: {0}")]
    Limit(String),
    #[error("store is shut down")]
    Closed,
    #[error("store is locked by another process (is `tern serve` running on this data directory?): {0}")]
    Locked(String),
    #[error("store task failed: {0}")]
    Task(String),
    /// A file outside the engine (backup, restore): what was done, and the error, in words.
    #[error("{context}: {error}")]
    Io { context: String, error: std::io::Error },
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    pub(crate) fn corrupt(what: impl Into<String>, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt { what: what.into(), detail: detail.to_string() }
    }
}
