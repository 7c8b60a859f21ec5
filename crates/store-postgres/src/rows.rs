//! Rows to records and back. Identifiers and counters are BIGINT (PostgreSQL has no unsigned
//! types; every value Tern stores fits).

use crate::error::corrupt;
use tern_store::*;
use tokio_postgres::Row;

pub const MAILBOX_COLUMNS: &str = "id, account, name, special_use, subscribed, uid_validity, uid_next, \
     highest_modseq, total, unseen, size, deleted, recent_uid, keywords, acl";

pub const MESSAGE_COLUMNS: &str = "mailbox, uid, blob, size, internal_date, flags, keywords, modseq, email_id, thread_id, delivery_id, \
     COALESCE(saved, internal_date)";

pub fn special_use_name(u: SpecialUse) -> &'static str {
    match u {
        SpecialUse::All => "all",
        SpecialUse::Archive => "archive",
        SpecialUse::Drafts => "drafts",
        SpecialUse::Flagged => "flagged",
        SpecialUse::Junk => "junk",
        SpecialUse::Sent => "sent",
        SpecialUse::Trash => "trash",
    }
}

fn special_use_of(name: &str) -> Option<SpecialUse> {
    Some(match name {
        "all" => SpecialUse::All,
        "archive" => SpecialUse::Archive,
        "drafts" => SpecialUse::Drafts,
        "flagged" => SpecialUse::Flagged,
        "junk" => SpecialUse::Junk,
        "sent" => SpecialUse::Sent,
        "trash" => SpecialUse::Trash,
        _ => return None,
    })
}

fn u32_of(row: &Row, i: usize, what: &str) -> StoreResult<u32> {
    let v: i64 = row.try_get(i).map_err(|e| corrupt(what, e))?;
    u32::try_from(v).map_err(|_| corrupt(what, format!("{v} out of range")))
}

fn u64_of(row: &Row, i: usize, what: &str) -> StoreResult<u64> {
    let v: i64 = row.try_get(i).map_err(|e| corrupt(what, e))?;
    u64::try_from(v).map_err(|_| corrupt(what, format!("{v} out of range")))
}

pub fn hash_of(bytes: &[u8]) -> StoreResult<BlobHash> {
    bytes.try_into().map(BlobHash).map_err(|_| corrupt("content hash", "not 32 bytes"))
}

pub fn mailbox(row: &Row) -> StoreResult<Mailbox> {
    let special: Option<String> = row.try_get(3).map_err(|e| corrupt("mailbox", e))?;
    Ok(Mailbox {
        id: u64_of(row, 0, "mailbox id")?,
        account: u64_of(row, 1, "mailbox account")?,
        name: row.try_get(2).map_err(|e| corrupt("mailbox", e))?,
        special_use: special.as_deref().and_then(special_use_of),
        subscribed: row.try_get(4).map_err(|e| corrupt("mailbox", e))?,
        uid_validity: u32_of(row, 5, "uidvalidity")?,
        uid_next: u32_of(row, 6, "uidnext")?,
        highest_modseq: u64_of(row, 7, "modseq")?,
        total: u32_of(row, 8, "mailbox total")?,
        unseen: u32_of(row, 9, "mailbox unseen")?,
        size: u64_of(row, 10, "mailbox size")?,
        deleted: u32_of(row, 11, "mailbox deleted")?,
        recent_uid: u32_of(row, 12, "recent uid")?,
        keywords: row.try_get(13).map_err(|e| corrupt("mailbox", e))?,
        acl: json(row, 14, "mailbox acl")?,
    })
}

pub fn message(row: &Row) -> StoreResult<MessageEntry> {
    let blob: &[u8] = row.try_get(2).map_err(|e| corrupt("message", e))?;
    let flags: i16 = row.try_get(5).map_err(|e| corrupt("message", e))?;
    Ok(MessageEntry {
        mailbox: u64_of(row, 0, "message mailbox")?,
        uid: u32_of(row, 1, "uid")?,
        blob: hash_of(blob)?,
        size: u64_of(row, 3, "message size")?,
        internal_date: row.try_get(4).map_err(|e| corrupt("message", e))?,
        flags: Flags(u8::try_from(flags).map_err(|_| corrupt("message flags", flags))?),
        keywords: row.try_get(6).map_err(|e| corrupt("message", e))?,
        modseq: u64_of(row, 7, "modseq")?,
        email_id: u64_of(row, 8, "email id")?,
        thread_id: u64_of(row, 9, "thread id")?,
        delivery_id: u64_of(row, 10, "delivery id")?,
        saved: row.try_get(11).map_err(|e| corrupt("message", e))?,
    })
}

/// A JSON record column.
pub fn json<T: serde::de::DeserializeOwned>(row: &Row, i: usize, what: &str) -> StoreResult<T> {
    let value: serde_json::Value = row.try_get(i).map_err(|e| corrupt(what, e))?;
    serde_json::from_value(value).map_err(|e| corrupt(what, e))
}

pub fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| corrupt("record (encode)", e))
}

pub fn id(v: u64) -> i64 {
    v as i64
}

/// A spam model's owner as a row key: 0 for the global model, else the account id.
pub fn owner_key(owner: SpamModelOwner) -> i64 {
    match owner {
        SpamModelOwner::Global => 0,
        SpamModelOwner::Account(a) => a as i64,
    }
}

pub fn owner_of(key: i64) -> SpamModelOwner {
    if key == 0 { SpamModelOwner::Global } else { SpamModelOwner::Account(key as u64) }
}
