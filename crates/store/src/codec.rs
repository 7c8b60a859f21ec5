//! Record encodings: JSON for small extensible records, postcard behind a version byte for
//! the hot ones. Shared by the backends (the PostgreSQL one keeps summaries in this form too).

use crate::error::{StoreError, StoreResult};
use crate::model::MessageEntry;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tern_mime::{MessageSummary, SUMMARY_VERSION};

pub fn to_json<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::corrupt("record (encode)", e))
}

pub fn from_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(what, e))
}

const MESSAGE_V1: u8 = 1;

pub fn encode_message(entry: &MessageEntry) -> StoreResult<Vec<u8>> {
    let mut out = vec![MESSAGE_V1];
    out.extend(postcard::to_stdvec(entry).map_err(|e| StoreError::corrupt("message (encode)", e))?);
    Ok(out)
}

pub fn decode_message(bytes: &[u8]) -> StoreResult<MessageEntry> {
    match bytes.split_first() {
        Some((&MESSAGE_V1, rest)) => postcard::from_bytes(rest).map_err(|e| StoreError::corrupt("message entry", e)),
        Some((v, _)) => Err(StoreError::corrupt("message entry", format!("unknown version {v}"))),
        None => Err(StoreError::corrupt("message entry", "empty")),
    }
}

pub fn encode_summary(summary: &MessageSummary) -> StoreResult<Vec<u8>> {
    let mut out = SUMMARY_VERSION.to_be_bytes().to_vec();
    out.extend(postcard::to_stdvec(summary).map_err(|e| StoreError::corrupt("summary (encode)", e))?);
    Ok(out)
}

/// `None` when the cached summary is of another version (the caller recomputes it).
pub fn decode_summary(bytes: &[u8]) -> StoreResult<Option<MessageSummary>> {
    let Some((version, rest)) = bytes.split_first_chunk::<2>() else {
        return Err(StoreError::corrupt("summary", "too short"));
    };
    if u16::from_be_bytes(*version) != SUMMARY_VERSION {
        return Ok(None);
    }
    postcard::from_bytes(rest).map(Some).map_err(|e| StoreError::corrupt("summary", e))
}
