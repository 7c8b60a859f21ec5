//! Keyspaces and key layouts of the embedded store. All integers are big-endian so that
//! lexicographic key order is numeric order.

use crate::model::{AccountId, BlobHash, MailboxId};

/// On-disk format of the embedded store. Every change ships a migration and a test that
/// opens a store written by the previous version.
pub const FORMAT_VERSION: u32 = 1;

/// Message contents are split into chunks of this size.
pub const CHUNK_SIZE: usize = 64 * 1024;

pub mod ks {
    /// Format version and id counters.
    pub const META: &str = "meta";
    /// domain name → Domain (JSON)
    pub const DOMAINS: &str = "domains";
    /// account id → Account (JSON)
    pub const ACCOUNTS: &str = "accounts";
    /// address → account id
    pub const ACCOUNT_NAMES: &str = "account_names";
    /// address → Alias (JSON)
    pub const ALIASES: &str = "aliases";
    /// mailbox id → Mailbox (JSON)
    pub const MAILBOXES: &str = "mailboxes";
    /// account id ++ mailbox name → mailbox id
    pub const MAILBOX_NAMES: &str = "mailbox_names";
    /// mailbox id ++ uid → MessageEntry (versioned postcard)
    pub const MESSAGES: &str = "messages";
    /// blob hash ++ chunk index → bytes
    pub const BLOBS: &str = "blobs";
    /// blob hash → refcount u32 ++ size u64
    pub const BLOB_REFS: &str = "blob_refs";
    /// blob hash → MessageSummary (versioned postcard)
    pub const SUMMARIES: &str = "summaries";
    /// delivery id → DeliveryEnvelope (JSON)
    pub const ENVELOPES: &str = "envelopes";
    /// account id ++ 16 bytes of BLAKE3(Message-ID) → thread id
    pub const THREADS: &str = "threads";
    /// mailbox id ++ modseq ++ uid → (empty): every message by the modseq of its last change,
    /// so "what changed since modseq X" (CONDSTORE, QRESYNC, IDLE) is one range scan
    pub const CHANGES: &str = "changes";
    /// mailbox id ++ modseq ++ uid → (empty): expunged messages (QRESYNC VANISHED)
    pub const EXPUNGED: &str = "expunged";
    /// blob hash → (empty, or "scan" for text too large to index): contents the full-text
    /// index does not have yet
    pub const FTS_PENDING: &str = "fts_pending";
    /// blob hash → (empty): freed contents to remove from the full-text index
    pub const FTS_REMOVED: &str = "fts_removed";
    /// queue id → QueueEntry (JSON): the outbound queue, one record per message
    pub const QUEUE: &str = "queue";
    /// next attempt (seconds, u64) ++ queue id → (empty): queue entries by when they are due
    pub const QUEUE_DUE: &str = "queue_due";
    /// account id ++ mailbox name → (empty): subscriptions to names that have no mailbox
    /// (RFC 9051 §6.3.7: a subscription outlives its mailbox). Added without a format
    /// change: an older store simply has none.
    pub const SUBSCRIPTIONS: &str = "subscriptions";
    /// The spam classifier's models, per owner ([`super::spam_owner_key`]):
    /// owner ++ `n` → spam learnt u64 ++ ham learnt u64;
    /// owner ++ `f` ++ feature hash u64 → spam u32 ++ ham u32;
    /// owner ++ `l` ++ blob hash → class (`s` or `h`): the messages it learnt;
    /// `T` ++ owner → the same totals as owner ++ `n`, so that all models are listed by one
    /// prefix scan.
    pub const SPAM: &str = "spam";
    /// Quarantined messages: `e` ++ id → QuarantineEntry (JSON); `m` ++ id → the message. The
    /// entries come first under their own prefix, so listing them never reads a message.
    pub const QUARANTINE: &str = "quarantine";
    /// Sieve scripts: `s` ++ account id ++ name → source; `a` ++ account id → the active
    /// script's name; `t` ++ account id ++ hash → a remembered id's expiry. Added without a format change: an older store simply has none.
    pub const SIEVE: &str = "sieve";
    /// identifier ++ 0 ++ mailbox id → (empty): the mailboxes whose ACL names an identifier
    /// (RFC 4314), so a user's shared mailboxes are found without reading every mailbox.
    /// Added without a format change: an older store simply has no ACLs.
    pub const ACL: &str = "acl";
    /// user (0: `/shared`) ++ mailbox (0: the server) ++ entry name → value: RFC 5464
    /// annotations. Added without a format change.
    pub const METADATA: &str = "metadata";
    /// mailbox ++ user ++ uid → seen (1 byte) ++ modseq u64: each reader's own `\Seen` on
    /// another account's mailbox ([`crate::PrivateSeen`]). Added without a format change.
    pub const PRIVATE_SEEN: &str = "private_seen";
    /// name → ApiToken (JSON): the REST API's tokens. Added without a format change.
    pub const API_TOKENS: &str = "api_tokens";
    /// key → WebSession (JSON): the web admin's sign-in sessions. Added without a format
    /// change; not in backups (a restored server asks for a new sign-in).
    pub const WEB_SESSIONS: &str = "web_sessions";
}

/// A private `\Seen` key: mailbox ++ user ++ uid; without the uid, the user's prefix.
pub fn private_seen_key(mailbox: MailboxId, user: AccountId, uid: Option<u32>) -> Vec<u8> {
    let mut k = mailbox.to_be_bytes().to_vec();
    k.extend_from_slice(&user.to_be_bytes());
    if let Some(uid) = uid {
        k.extend_from_slice(&uid.to_be_bytes());
    }
    k
}

/// A private `\Seen` record from its key and value; `None` when malformed.
pub fn read_private_seen(key: &[u8], value: &[u8]) -> Option<crate::PrivateSeen> {
    let uid = u32::from_be_bytes(key.get(16..20)?.try_into().ok()?);
    let seen = *value.first()? == 1;
    let modseq = u64::from_be_bytes(value.get(1..9)?.try_into().ok()?);
    Some(crate::PrivateSeen { uid, seen, modseq })
}

/// The value of a private `\Seen` record.
pub fn private_seen_value(seen: bool, modseq: u64) -> Vec<u8> {
    let mut v = vec![u8::from(seen)];
    v.extend_from_slice(&modseq.to_be_bytes());
    v
}

/// A metadata key (RFC 5464): user (0 for `/shared`) ++ mailbox (0 for the server) ++ name.
pub fn metadata_key(user: Option<AccountId>, mailbox: Option<MailboxId>, name: &str) -> Vec<u8> {
    let mut k = user.unwrap_or(0).to_be_bytes().to_vec();
    k.extend_from_slice(&mailbox.unwrap_or(0).to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

/// An ACL index key: the identifier, a zero byte, the mailbox id.
pub fn acl_key(identifier: &str, mailbox: MailboxId) -> Vec<u8> {
    let mut k = identifier.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&mailbox.to_be_bytes());
    k
}

/// `s` ++ account (++ name): a Sieve script's key, or with an empty name the account's prefix.
pub fn sieve_script_key(account: AccountId, name: &str) -> Vec<u8> {
    let mut k = vec![b's'];
    k.extend_from_slice(&account.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

/// `t` ++ account ++ BLAKE3 of the id: a remembered Sieve id (duplicate, vacation reply)
/// → its expiry (unix seconds, big-endian); with `None` the account's prefix.
pub fn sieve_seen_key(account: AccountId, id: Option<&str>) -> Vec<u8> {
    let mut k = vec![b't'];
    k.extend_from_slice(&account.to_be_bytes());
    if let Some(id) = id {
        k.extend_from_slice(blake3::hash(id.as_bytes()).as_bytes());
    }
    k
}

/// `a` ++ account: where the name of the account's active Sieve script is.
pub fn sieve_active_key(account: AccountId) -> Vec<u8> {
    let mut k = vec![b'a'];
    k.extend_from_slice(&account.to_be_bytes());
    k
}

/// The prefix of a spam model's keys: `g` for the global model, `a` ++ account id.
pub fn spam_owner_key(owner: crate::model::SpamModelOwner) -> Vec<u8> {
    match owner {
        crate::model::SpamModelOwner::Global => vec![b'g'],
        crate::model::SpamModelOwner::Account(id) => {
            let mut k = vec![b'a'];
            k.extend_from_slice(&id.to_be_bytes());
            k
        }
    }
}

/// The owner back from a key after the `T` prefix.
pub fn read_spam_owner(bytes: &[u8]) -> Option<crate::model::SpamModelOwner> {
    match bytes.first()? {
        b'g' => Some(crate::model::SpamModelOwner::Global),
        b'a' => Some(crate::model::SpamModelOwner::Account(read_u64(bytes.get(1..)?)?)),
        _ => None,
    }
}

pub fn spam_key(owner: crate::model::SpamModelOwner, kind: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = spam_owner_key(owner);
    k.push(kind);
    k.extend_from_slice(rest);
    k
}

/// A quarantine entry's keys: `e` ++ id (the entry) or `m` ++ id (the message).
pub fn quarantine_key(id: u64, kind: u8) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = kind;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

pub fn u64_key(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

pub fn mailbox_name_key(account: AccountId, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&account.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn message_key(mailbox: MailboxId, uid: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&mailbox.to_be_bytes());
    k[8..].copy_from_slice(&uid.to_be_bytes());
    k
}

pub fn uid_of_message_key(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.get(8..12)?.try_into().ok()?))
}

/// mailbox ++ modseq ++ uid, for CHANGES and EXPUNGED.
pub fn modseq_key(mailbox: MailboxId, modseq: u64, uid: u32) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..8].copy_from_slice(&mailbox.to_be_bytes());
    k[8..16].copy_from_slice(&modseq.to_be_bytes());
    k[16..].copy_from_slice(&uid.to_be_bytes());
    k
}

pub fn read_modseq_key(key: &[u8]) -> Option<(u64, u32)> {
    let modseq = u64::from_be_bytes(key.get(8..16)?.try_into().ok()?);
    let uid = u32::from_be_bytes(key.get(16..20)?.try_into().ok()?);
    Some((modseq, uid))
}

pub fn chunk_key(hash: &BlobHash, index: u32) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..32].copy_from_slice(&hash.0);
    k[32..].copy_from_slice(&index.to_be_bytes());
    k
}

pub fn thread_key(account: AccountId, message_id: &str) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&account.to_be_bytes());
    k[8..].copy_from_slice(&blake3::hash(message_id.as_bytes()).as_bytes()[..16]);
    k
}

/// next attempt ++ queue id, for QUEUE_DUE (times before 1970 sort first).
pub fn due_key(at: i64, id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(at.max(0) as u64).to_be_bytes());
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

pub fn read_due_key(key: &[u8]) -> Option<(i64, u64)> {
    let at = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let id = u64::from_be_bytes(key.get(8..16)?.try_into().ok()?);
    Some((at.min(i64::MAX as u64) as i64, id))
}

/// The reference count of a content, its size, and where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRef {
    pub count: u32,
    pub size: u64,
    /// In a file of its own ([`super::blobfile`]) rather than in chunks in `blobs`.
    pub in_file: bool,
}

impl BlobRef {
    /// refcount ++ size, then one byte 1 for a content in a file (older stores wrote only the
    /// first twelve bytes: their contents are all in chunks).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(13);
        v.extend_from_slice(&self.count.to_be_bytes());
        v.extend_from_slice(&self.size.to_be_bytes());
        if self.in_file {
            v.push(1);
        }
        v
    }

    pub fn with_count(self, count: u32) -> BlobRef {
        BlobRef { count, ..self }
    }
}

pub fn read_blob_ref(bytes: &[u8]) -> Option<BlobRef> {
    let count = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    let size = u64::from_be_bytes(bytes.get(4..12)?.try_into().ok()?);
    Some(BlobRef { count, size, in_file: bytes.get(12) == Some(&1) })
}

/// Counters kept in META.
pub mod counter {
    pub const ACCOUNT: &str = "seq.account";
    pub const MAILBOX: &str = "seq.mailbox";
    pub const EMAIL: &str = "seq.email";
    pub const DELIVERY: &str = "seq.delivery";
    pub const UIDVALIDITY: &str = "seq.uidvalidity";
    pub const QUEUE: &str = "seq.queue";
    pub const QUARANTINE: &str = "seq.quarantine";
}
pub const META_FORMAT: &str = "format";
