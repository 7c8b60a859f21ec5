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

/// Entries written before save dates were kept (read only).
const MESSAGE_V1: u8 = 1;
/// With `saved` (RFC 8514).
const MESSAGE_V2: u8 = 2;

/// A message entry as version 1 wrote it: without the save date.
#[derive(serde::Deserialize)]
struct MessageEntryV1 {
    mailbox: crate::MailboxId,
    uid: u32,
    blob: crate::BlobHash,
    size: u64,
    internal_date: i64,
    flags: crate::Flags,
    keywords: Vec<String>,
    modseq: u64,
    email_id: u64,
    thread_id: u64,
    delivery_id: u64,
}

pub fn encode_message(entry: &MessageEntry) -> StoreResult<Vec<u8>> {
    let mut out = vec![MESSAGE_V2];
    out.extend(postcard::to_stdvec(entry).map_err(|e| StoreError::corrupt("message (encode)", e))?);
    Ok(out)
}

pub fn decode_message(bytes: &[u8]) -> StoreResult<MessageEntry> {
    match bytes.split_first() {
        Some((&MESSAGE_V2, rest)) => postcard::from_bytes(rest).map_err(|e| StoreError::corrupt("message entry", e)),
        Some((&MESSAGE_V1, rest)) => {
            let v1: MessageEntryV1 = postcard::from_bytes(rest).map_err(|e| StoreError::corrupt("message entry", e))?;
            // The best save date an old entry has is its arrival.
            Ok(MessageEntry {
                mailbox: v1.mailbox,
                uid: v1.uid,
                blob: v1.blob,
                size: v1.size,
                internal_date: v1.internal_date,
                flags: v1.flags,
                keywords: v1.keywords,
                modseq: v1.modseq,
                email_id: v1.email_id,
                thread_id: v1.thread_id,
                delivery_id: v1.delivery_id,
                saved: v1.internal_date,
            })
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries stored before save dates existed still read, saved when they arrived.
    #[test]
    fn version_1_entries_decode_with_their_arrival_as_save_date() {
        let entry = MessageEntry {
            mailbox: 3,
            uid: 9,
            blob: crate::BlobHash([7; 32]),
            size: 120,
            internal_date: 1_700_000_000,
            flags: crate::Flags::SEEN,
            keywords: vec!["work".into()],
            modseq: 44,
            email_id: 5,
            thread_id: 6,
            delivery_id: 8,
            saved: 1_800_000_000,
        };
        let mut v2 = encode_message(&entry).expect("encode");
        assert_eq!(decode_message(&v2).expect("v2"), entry);
        // Version 1 is the same postcard without the last field.
        let tail = postcard::to_stdvec(&entry.saved).expect("tail");
        v2.truncate(v2.len() - tail.len());
        v2[0] = MESSAGE_V1;
        let old = decode_message(&v2).expect("v1");
        assert_eq!(old, MessageEntry { saved: entry.internal_date, ..entry });
    }
}
