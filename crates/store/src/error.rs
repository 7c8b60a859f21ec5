#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed. Shown in words (fjall's own Display is its Debug form), and
    /// not as a separate cause, so that people read it once.
    #[error("store: {}", engine_words(.0))]
    Engine(fjall::Error),
    #[error("store record {what} is corrupt: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("store format version {found} is not supported by this Tern (supports {supported})")]
    Format { found: u32, supported: u32 },
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The change would take an account over its storage quota (RFC 9208 OVERQUOTA).
    #[error("quota of {0} exceeded")]
    OverQuota(String),
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

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> StoreError {
        StoreError::Engine(e)
    }
}

/// A storage engine error in words: an I/O error as the system says it, anything else as
/// fjall describes it.
fn engine_words(e: &fjall::Error) -> String {
    match e {
        fjall::Error::Io(io) => io.to_string(),
        fjall::Error::Locked => "the store is in use by another process".to_string(),
        other => format!("{other:?}"),
    }
}
