//! The records the store keeps. Directory records and mailboxes are JSON (small, rarely
//! written, easy to extend with `#[serde(default)]`); message entries and summaries are
//! compact postcard behind a version byte.

use serde::{Deserialize, Serialize};
use tern_smtp_proto::{Body, Notify, Ret};

pub type AccountId = u64;
pub type MailboxId = u64;

/// BLAKE3 of a message's bytes: the key its content is stored under, once.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobHash(pub [u8; 32]);

impl BlobHash {
    pub fn of(bytes: &[u8]) -> BlobHash {
        BlobHash(*blake3::hash(bytes).as_bytes())
    }

    pub fn parse(hex_text: &str) -> Option<BlobHash> {
        let bytes = hex::decode(hex_text).ok()?;
        Some(BlobHash(bytes.try_into().ok()?))
    }
}

impl std::fmt::Display for BlobHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobHash({})", &hex::encode(self.0)[..16])
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A domain Tern receives mail for. `name` is lower-case ASCII (IDNA A-labels).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub name: String,
    /// Where mail for unknown local parts goes (an address), if anywhere.
    #[serde(default)]
    pub catch_all: Option<String>,
    #[serde(default)]
    pub created: i64,
    /// Signing keys for outgoing mail (`tern dkim generate`), as stored; what they mean and
    /// how they sign is `tern-mailauth`'s (`tern_pipeline::signing_keys` turns them into its
    /// keys).
    #[serde(default)]
    pub dkim: Vec<DomainKey>,
}

/// A signing key of a domain as the store keeps it (the field named `dkim` in the domain
/// record: its serialized form is unchanged since the first format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainKey {
    pub selector: String,
    pub algorithm: KeyAlgorithm,
    /// PKCS#8 DER, base64.
    pub private_key: String,
    /// The public half as the DNS record publishes it (base64).
    pub public_key: String,
    pub created: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    Ed25519,
    Rsa,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    /// Canonical address: lower-case local part, A-label domain.
    pub address: String,
    /// PHC string (argon2id).
    pub password_hash: String,
    /// Storage limit in bytes; `None` is unlimited.
    #[serde(default)]
    pub quota_bytes: Option<u64>,
    #[serde(default)]
    pub created: i64,
    /// SCRAM-SHA-256 keys derived from the password (RFC 5802 §3), for SASL SCRAM.
    #[serde(default)]
    pub scram: Option<String>,
    /// A shared mailbox account (`support@`): it receives mail but nobody logs in as it; its
    /// mailboxes are read by the users its ACLs name, in the shared namespace (RFC 2342 §5).
    #[serde(default)]
    pub shared: bool,
    /// Logins refused (IMAP, POP3, submission, ManageSieve, the web admin); mail is still
    /// received.
    #[serde(default)]
    pub disabled: bool,
    /// May sign in to the web admin and manage everything (else only the user's own settings).
    #[serde(default)]
    pub admin: bool,
    /// Extra passwords for one device or program each, removable one by one.
    #[serde(default)]
    pub app_passwords: Vec<AppPassword>,
}

/// An app password: a random secret made by Tern, of which only a hash is kept. It logs in
/// like the account's password (not with SCRAM, whose keys come from the main password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPassword {
    pub name: String,
    /// BLAKE3 of the secret, hex: the secret is random and long, so a fast hash is enough.
    pub hash: String,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub address: String,
    pub password_hash: String,
    pub quota_bytes: Option<u64>,
}

/// A token for the REST API (issue 17): its name, what it may do, and the hash of its secret
/// (the secret itself is shown once, when it is made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub name: String,
    pub scope: ApiScope,
    /// BLAKE3 of the secret, hex. The secret is 32 random bytes: a fast hash is enough.
    pub hash: String,
    pub created: i64,
}

/// A web admin sign-in session (issue 17), shared by every node of a cluster and kept across
/// restarts. Found by `key`, the hash of the cookie's secret (the secret itself is never
/// stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSession {
    pub key: String,
    pub account: AccountId,
    /// A hash of the account's password hash at the sign-in: when the password changes, the
    /// session ends.
    pub password: String,
    /// The token every form of the session carries.
    pub csrf: String,
    pub created: i64,
    /// When it was last used (updated at most once a minute).
    pub seen: i64,
    /// When it ends unless used again: the earlier of idle and lifetime limits.
    pub expires: i64,
    /// A message for the next page it sees.
    pub notice: Option<WebNotice>,
}

/// A message a web admin page shows once, after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "text", rename_all = "lowercase")]
pub enum WebNotice {
    Done(String),
    Failed(String),
}

/// Which web sessions to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebSessionsToRemove {
    /// The one with this key (a sign-out).
    One(String),
    /// Every one of an account but `except` (its password changed there).
    OfAccount { account: AccountId, except: Option<String> },
    /// Every one that ended before this time.
    ExpiredAt(i64),
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiScope {
    /// Read everything, change nothing.
    Read,
    /// Everything.
    Admin,
}

/// One address that forwards to one or more targets (local or external addresses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub address: String,
    pub targets: Vec<String>,
}

/// A user's Sieve script as listed (RFC 5804 LISTSCRIPTS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SieveScriptInfo {
    pub name: String,
    /// The one script that runs on delivery (at most one per account).
    pub active: bool,
    /// Bytes of its source.
    pub size: u64,
}

/// RFC 6154 special-use attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpecialUse {
    All,
    Archive,
    Drafts,
    Flagged,
    Junk,
    Sent,
    Trash,
}

impl SpecialUse {
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::All => "\\All",
            SpecialUse::Archive => "\\Archive",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Flagged => "\\Flagged",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Trash => "\\Trash",
        }
    }
}

pub const INBOX: &str = "INBOX";

/// The mailboxes every new account starts with.
pub fn default_mailboxes() -> Vec<NewMailbox> {
    vec![
        NewMailbox::new(INBOX, None),
        NewMailbox::new("Sent", Some(SpecialUse::Sent)),
        NewMailbox::new("Drafts", Some(SpecialUse::Drafts)),
        NewMailbox::new("Trash", Some(SpecialUse::Trash)),
        NewMailbox::new("Junk", Some(SpecialUse::Junk)),
        NewMailbox::new("Archive", Some(SpecialUse::Archive)),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMailbox {
    pub name: String,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
}

impl NewMailbox {
    pub fn new(name: &str, special_use: Option<SpecialUse>) -> NewMailbox {
        NewMailbox { name: name.to_string(), special_use, subscribed: true }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub id: MailboxId,
    pub account: AccountId,
    /// Full hierarchical name with `/` separators; `INBOX` is always spelled so.
    pub name: String,
    #[serde(default)]
    pub special_use: Option<SpecialUse>,
    #[serde(default)]
    pub subscribed: bool,
    pub uid_validity: u32,
    /// The UID the next message will get; never decreases, so UIDs are never reused.
    pub uid_next: u32,
    pub highest_modseq: u64,
    /// Messages in the mailbox.
    pub total: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    /// Sum of message sizes (RFC 8438 STATUS=SIZE).
    pub size: u64,
    /// Messages with `\Deleted` (RFC 9051 STATUS DELETED).
    #[serde(default)]
    pub deleted: u32,
    /// Messages with UID at or above this are `\Recent` to the next session that claims them
    /// (IMAP4rev1).
    #[serde(default)]
    pub recent_uid: u32,
    /// Keywords in use in this mailbox (for the FLAGS response), at most [`MAX_KEYWORDS`].
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Who else may do what with it (RFC 4314); its owner may do everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<crate::AclEntry>,
}

impl Mailbox {
    /// A delivered copy of `d` for `target` in this mailbox: takes the next UID and modseq and
    /// counts it. Its EMAILID and THREADID are the caller's to set (each backend numbers them).
    pub fn add_delivered(
        &mut self,
        d: &Delivery,
        target: &DeliveryTarget,
        delivery_id: u64,
    ) -> Result<MessageEntry, crate::StoreError> {
        let uid = self.uid_next;
        self.uid_next =
            self.uid_next.checked_add(1).ok_or_else(|| crate::StoreError::corrupt("mailbox", "UID space exhausted"))?;
        self.highest_modseq += 1;
        let size = d.raw.len() as u64;
        self.count_added(target.flags, size);
        let keywords = self.register_keywords(&target.keywords);
        Ok(MessageEntry {
            mailbox: self.id,
            uid,
            blob: d.hash,
            size,
            internal_date: d.envelope.received_at,
            flags: target.flags,
            keywords,
            modseq: self.highest_modseq,
            email_id: 0,
            thread_id: 0,
            delivery_id,
            saved: crate::now_unix(),
        })
    }

    /// Counts a message added with these flags (a delivery, a copy).
    pub fn count_added(&mut self, flags: Flags, size: u64) {
        self.total += 1;
        if !flags.contains(Flags::SEEN) {
            self.unseen += 1;
        }
        if flags.contains(Flags::DELETED) {
            self.deleted += 1;
        }
        self.size += size;
    }

    /// Counts a message removed.
    pub fn count_removed(&mut self, flags: Flags, size: u64) {
        self.total = self.total.saturating_sub(1);
        if !flags.contains(Flags::SEEN) {
            self.unseen = self.unseen.saturating_sub(1);
        }
        if flags.contains(Flags::DELETED) {
            self.deleted = self.deleted.saturating_sub(1);
        }
        self.size = self.size.saturating_sub(size);
    }

    /// Counts a message whose flags went from `old` to `new`.
    pub fn count_flag_change(&mut self, old: Flags, new: Flags) {
        match (old.contains(Flags::SEEN), new.contains(Flags::SEEN)) {
            (false, true) => self.unseen = self.unseen.saturating_sub(1),
            (true, false) => self.unseen += 1,
            _ => {}
        }
        match (old.contains(Flags::DELETED), new.contains(Flags::DELETED)) {
            (false, true) => self.deleted += 1,
            (true, false) => self.deleted = self.deleted.saturating_sub(1),
            _ => {}
        }
    }

    /// Adds new keywords to the mailbox's registry (up to [`MAX_KEYWORDS`]); returns the
    /// keywords that may be stored (known ones in the registry's spelling, new ones that fitted).
    pub fn register_keywords(&mut self, wanted: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for k in wanted {
            let known = self.keywords.iter().find(|x| x.eq_ignore_ascii_case(k)).cloned();
            let k = match known {
                Some(k) => k,
                None if self.keywords.len() < MAX_KEYWORDS => {
                    self.keywords.push(k.clone());
                    k.clone()
                }
                None => continue,
            };
            if !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }
}

/// Distinct keywords a mailbox can hold.
pub const MAX_KEYWORDS: usize = 128;

/// System flags as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Flags(pub u8);

impl Flags {
    pub const SEEN: Flags = Flags(1);
    pub const ANSWERED: Flags = Flags(2);
    pub const FLAGGED: Flags = Flags(4);
    pub const DELETED: Flags = Flags(8);
    pub const DRAFT: Flags = Flags(16);

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }
    pub fn remove(&mut self, other: Flags) {
        self.0 &= !other.0;
    }
    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

/// How a flag update combines with the current flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagMode {
    Replace,
    Add,
    Remove,
}

/// Result of a flag update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagUpdate {
    /// Messages whose flags changed, with their new flags and modseq.
    pub updated: Vec<MessageEntry>,
    /// UIDs not updated because they changed after UNCHANGEDSINCE (RFC 7162 §3.1.3).
    pub conflicts: Vec<u32>,
    /// UIDs that no longer exist.
    pub missing: Vec<u32>,
    /// New keywords were refused because the mailbox holds too many.
    pub keywords_refused: bool,
}

/// One user's own `\Seen` on a message of a mailbox another account owns (as Cyrus and
/// Dovecot's private flags): each reader of a shared mailbox has their own. `modseq` comes
/// from the mailbox's modseq sequence, so a change is found by the same CHANGEDSINCE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivateSeen {
    pub uid: u32,
    pub seen: bool,
    pub modseq: u64,
}

/// Answer to [`crate::MailStore::seen_private_set`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivateSeenUpdate {
    /// The records that changed, with their new modseq.
    pub updated: Vec<PrivateSeen>,
    /// UIDs left alone because the message or the user's record changed after
    /// UNCHANGEDSINCE (RFC 7162 §3.1.3).
    pub conflicts: Vec<u32>,
    /// UIDs that no longer exist.
    pub missing: Vec<u32>,
}

/// Where an RFC 5464 annotation lives: on a mailbox or on the server, private to one user
/// (`/private/...`) or shared by all who see the mailbox (`/shared/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetadataScope {
    /// `None`: the server's annotations.
    pub mailbox: Option<MailboxId>,
    /// The user a `/private` entry belongs to; `None` for `/shared` entries.
    pub user: Option<AccountId>,
}

/// Most bytes one annotation value holds, and most entries one scope holds (RFC 5464 §4.3
/// `MAXSIZE` and `TOOMANY`). The value limit is below the IMAP literal limit (64 KiB), so a
/// value too large is answered `NO [METADATA MAXSIZE]`, not refused while it is read.
pub const METADATA_MAX_VALUE: usize = 32 * 1024;
pub const METADATA_MAX_ENTRIES: usize = 100;

/// Messages stored into one mailbox in one commit, all of them or none (RFC 3502
/// MULTIAPPEND), optionally in place of a message (RFC 8508 REPLACE).
#[derive(Debug, Clone)]
pub struct AppendBatch {
    pub mailbox: MailboxId,
    /// Each with its one target in `mailbox` (flags, keywords) and its own envelope.
    pub messages: Vec<Delivery>,
    /// A message (mailbox, UID) of the same account expunged in the same commit.
    pub replaces: Option<(MailboxId, u32)>,
}

/// What [`AppendBatch`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendReceipt {
    pub uid_validity: u32,
    /// The new messages' UIDs, in the order given.
    pub uids: Vec<u32>,
    /// Whether the replaced message was there to expunge.
    pub replaced: bool,
}

/// Result of a copy or move: (source UID, new UID) pairs and the target's UIDVALIDITY.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyResult {
    pub uid_validity: u32,
    pub pairs: Vec<(u32, u32)>,
}

/// One message in one mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEntry {
    pub mailbox: MailboxId,
    pub uid: u32,
    pub blob: BlobHash,
    pub size: u64,
    /// IMAP INTERNALDATE: when the message arrived, Unix seconds.
    pub internal_date: i64,
    pub flags: Flags,
    pub keywords: Vec<String>,
    pub modseq: u64,
    /// Unique per stored message (RFC 8474 EMAILID).
    pub email_id: u64,
    /// Conversation (RFC 8474 THREADID).
    pub thread_id: u64,
    /// The delivery (SMTP transaction or APPEND) that created it.
    pub delivery_id: u64,
    /// When it was saved in this mailbox (delivered, appended, copied or moved here), Unix
    /// seconds: RFC 8514 SAVEDATE.
    pub saved: i64,
}

impl MessageEntry {
    /// Applies a flag update (`keywords` as the mailbox's registry spells them); returns
    /// whether the flags or keywords changed.
    pub fn apply_flags(&mut self, mode: FlagMode, flags: Flags, keywords: &[String]) -> bool {
        let (old_flags, old_keywords) = (self.flags, self.keywords.clone());
        match mode {
            FlagMode::Replace => {
                self.flags = flags;
                self.keywords = keywords.to_vec();
            }
            FlagMode::Add => {
                self.flags.insert(flags);
                for k in keywords {
                    if !self.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                        self.keywords.push(k.clone());
                    }
                }
            }
            FlagMode::Remove => {
                self.flags.remove(flags);
                self.keywords.retain(|x| !keywords.iter().any(|k| k.eq_ignore_ascii_case(x)));
            }
        }
        self.flags != old_flags || self.keywords != old_keywords
    }
}

/// Where in an account a delivered message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MailboxSelector {
    Inbox,
    /// The mailbox carrying this special use (INBOX if the account has none).
    SpecialUse(SpecialUse),
    Id(MailboxId),
    /// By name (INBOX if it does not exist).
    Name(String),
    /// Mail to `user+name@`: the mailbox of that name when its ACL lets anyone post to it
    /// (RFC 4314 `p`), INBOX otherwise, so strangers cannot file mail into any folder.
    Posted(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryTarget {
    pub account: AccountId,
    pub mailbox: MailboxSelector,
    pub flags: Flags,
    pub keywords: Vec<String>,
}

impl DeliveryTarget {
    pub fn inbox(account: AccountId) -> DeliveryTarget {
        DeliveryTarget { account, mailbox: MailboxSelector::Inbox, flags: Flags::default(), keywords: vec![] }
    }
}

/// The SMTP envelope of a delivery, kept with the message (DSN parameters, RFC 3461).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryEnvelope {
    /// Reverse path; `None` is `<>`.
    pub mail_from: Option<String>,
    pub recipients: Vec<EnvelopeRecipient>,
    /// RET (stored as `FULL` or `HDRS`).
    #[serde(default)]
    pub ret: Option<Ret>,
    #[serde(default)]
    pub envid: Option<String>,
    /// BODY (stored as `7BIT`, `8BITMIME`, `BINARYMIME`).
    #[serde(default)]
    pub body: Option<Body>,
    #[serde(default)]
    pub smtputf8: bool,
    /// RFC 8689 REQUIRETLS: relay only over verified TLS.
    #[serde(default)]
    pub requiretls: bool,
    /// SPF/DKIM/ARC/DMARC results as recorded in Authentication-Results (inbound mail).
    #[serde(default)]
    pub auth_results: Option<String>,
    /// The message's id as the SMTP reply (`queued as ...`), the `Received:` field and the logs
    /// give it; `tern queue` shows and accepts it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The scan verdict (`tern_scan::Verdict`, JSON) the message was delivered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(default)]
    pub client_ip: Option<String>,
    #[serde(default)]
    pub helo: Option<String>,
    /// e.g. `TLSv1.3 TLS13_AES_256_GCM_SHA384`.
    #[serde(default)]
    pub tls: Option<String>,
    #[serde(default)]
    pub authenticated_as: Option<String>,
    /// `smtp`, `submission`, `imap-append`, ...
    #[serde(default)]
    pub source: String,
    pub received_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeRecipient {
    /// The address as given in RCPT TO.
    pub address: String,
    /// RFC 3461 ORCPT (type, address).
    #[serde(default)]
    pub orcpt: Option<(String, String)>,
    /// RFC 3461 NOTIFY (stored as written: `SUCCESS,FAILURE`, `NEVER`).
    #[serde(default)]
    pub notify: Option<Notify>,
}

/// A message to store: content once, one copy per local target, and one queue entry for
/// the remote recipients — all in one commit.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub raw: std::sync::Arc<Vec<u8>>,
    pub hash: BlobHash,
    pub summary: tern_mime::MessageSummary,
    pub envelope: DeliveryEnvelope,
    pub targets: Vec<DeliveryTarget>,
    /// Recipients to deliver elsewhere (the outbound queue).
    pub remote: Vec<NewQueueRecipient>,
}

impl Delivery {
    /// Hashes and summarises `raw` (CPU work: call it off the async runtime for big messages).
    pub fn prepare(raw: Vec<u8>, envelope: DeliveryEnvelope, targets: Vec<DeliveryTarget>) -> Delivery {
        let hash = BlobHash::of(&raw);
        // Only mailbox copies need the summary; a message that only goes out is not parsed.
        let summary = if targets.is_empty() { tern_mime::MessageSummary::empty() } else { tern_mime::summarize(&raw) };
        Delivery { raw: std::sync::Arc::new(raw), hash, summary, envelope, targets, remote: Vec::new() }
    }
}

pub type QueueId = u64;

/// A recipient handed to the outbound queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQueueRecipient {
    pub address: String,
    pub orcpt: Option<(String, String)>,
    pub notify: Option<Notify>,
    /// The reverse path for this recipient when it is not the message's: the rewritten
    /// (SRS) sender of a forwarded copy.
    pub sender: Option<String>,
}

/// A message in the outbound queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    pub id: QueueId,
    pub blob: BlobHash,
    pub size: u64,
    pub envelope: DeliveryEnvelope,
    pub created: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipientStatus {
    /// Waiting for (another) attempt.
    Pending,
    Delivered,
    /// Given up: bounced (or not, per NOTIFY).
    Failed,
}

/// One recipient of a queued message and where its delivery stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRecipient {
    pub address: String,
    /// Lower-case A-label domain: recipients of one domain travel together.
    pub domain: String,
    #[serde(default)]
    pub orcpt: Option<(String, String)>,
    #[serde(default)]
    pub notify: Option<Notify>,
    /// The reverse path for this recipient when it is not the message's (a forwarded copy's
    /// SRS sender); recipients travel together only with the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    pub status: RecipientStatus,
    pub attempts: u32,
    /// Last reply or error, for `tern queue show` and DSNs.
    #[serde(default)]
    pub last_result: Option<String>,
    /// The remote host that gave the last reply.
    #[serde(default)]
    pub remote_mta: Option<String>,
    pub next_attempt: i64,
    #[serde(default)]
    pub delay_notified: bool,
}

impl QueuedRecipient {
    pub fn is_final(&self) -> bool {
        self.status != RecipientStatus::Pending
    }
}

impl QueueEntry {
    /// The entry for a delivery's remote recipients, every one due when it was received.
    pub fn for_delivery(id: QueueId, d: &Delivery) -> QueueEntry {
        let received = d.envelope.received_at;
        let recipients = d
            .remote
            .iter()
            .map(|r| QueuedRecipient {
                address: r.address.clone(),
                domain: address_domain(&r.address),
                orcpt: r.orcpt.clone(),
                notify: r.notify,
                sender: r.sender.clone(),
                status: RecipientStatus::Pending,
                attempts: 0,
                last_result: None,
                remote_mta: None,
                next_attempt: received,
                delay_notified: false,
            })
            .collect();
        let message = QueuedMessage {
            id,
            blob: d.hash,
            size: d.raw.len() as u64,
            envelope: d.envelope.clone(),
            created: received,
        };
        QueueEntry { message, recipients }
    }

    /// When the next attempt is due: the earliest of the pending recipients (`None` when
    /// every recipient is final).
    pub fn next_attempt(&self) -> Option<i64> {
        self.recipients.iter().filter(|r| !r.is_final()).map(|r| r.next_attempt).min()
    }
}

/// Size of the outbound queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub messages: usize,
    /// `created` of the oldest queued message.
    pub oldest: Option<i64>,
}

/// The domain part of an address, lower-cased (`""` when there is none).
pub fn address_domain(address: &str) -> String {
    address.rsplit_once('@').map(|(_, d)| d.trim_end_matches('.').to_lowercase()).unwrap_or_default()
}

/// A queued message with its recipients (index = position).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub message: QueuedMessage,
    pub recipients: Vec<QueuedRecipient>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    pub account: AccountId,
    pub mailbox: MailboxId,
    pub uid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReceipt {
    pub delivery_id: u64,
    /// The content stored (or that would have been).
    pub content: BlobHash,
    pub copies: Vec<StoredCopy>,
    /// Targets whose account no longer exists.
    pub skipped: Vec<AccountId>,
    /// Targets left out because the message would take their account over its quota.
    pub over_quota: Vec<AccountId>,
    /// The queue entry made for remote recipients.
    pub queued: Option<QueueId>,
}

/// Answer to [`crate::Store::text_search`]: contents whose text contains the string, by
/// [`tern_fts::content_key`], and contents the index cannot answer for yet (to be scanned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextMatches {
    pub matched: tern_fts::KeySet<u128>,
    /// Shared by every lookup made while the index's work list stays the same.
    pub unindexed: std::sync::Arc<tern_fts::KeySet<BlobHash>>,
}

impl TextMatches {
    /// `Some(answer)` when the index knows, `None` when the content must be scanned.
    pub fn lookup(&self, hash: &BlobHash) -> Option<bool> {
        if !self.unindexed.is_empty() && self.unindexed.contains(hash) {
            return None;
        }
        Some(self.matched.contains(&tern_fts::content_key(&hash.0)))
    }
}

/// Answer to [`crate::Store::mailbox_changes`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailboxChanges {
    pub changed: Vec<MessageEntry>,
    pub expunged: Vec<u32>,
    pub highest_modseq: u64,
}

/// A committed change, broadcast to interested sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChange {
    /// Messages were added, removed or changed in a mailbox.
    Mailbox { account: AccountId, mailbox: MailboxId },
    /// Mailboxes were created, renamed or removed, or the account itself changed.
    Account { account: AccountId },
    /// Domains, accounts or aliases changed.
    Directory,
    /// Something was queued or a queue entry became due (wakes the delivery workers).
    Queue,
}

/// Whose spam classifier model: the server's own (learnt from every user's training and the
/// admin's) or one account's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SpamModelOwner {
    Global,
    Account(AccountId),
}

/// The class a message was taught as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpamClass {
    Spam,
    Ham,
}

/// One model as stored: how many messages of each class it learnt, and per feature hash the
/// number of spam and ham messages it was seen in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpamModelData {
    pub spam_learned: u64,
    pub ham_learned: u64,
    pub features: Vec<(u64, u32, u32)>,
}

/// A change to a model after one lesson (or a pruning), as absolute values (the classifier
/// computes them under its per-model lock, the store writes them blindly): new totals, new
/// counts of the features it touched (`(hash, 0, 0)` removes one), and the class the message is
/// now known as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpamModelUpdate {
    pub owner: SpamModelOwner,
    pub spam_learned: u64,
    pub ham_learned: u64,
    pub features: Vec<(u64, u32, u32)>,
    /// The message (its content hash) and the class it was taught as; `None` for a pruning.
    pub lesson: Option<(BlobHash, SpamClass)>,
}

/// A recipient a quarantined message was for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedRecipient {
    /// As given in RCPT TO.
    pub address: String,
    /// Local accounts it resolved to (released into their INBOX).
    #[serde(default)]
    pub accounts: Vec<AccountId>,
    /// Addresses elsewhere (released into the outbound queue).
    #[serde(default)]
    pub remote: Vec<String>,
    #[serde(default)]
    pub orcpt: Option<(String, String)>,
    #[serde(default)]
    pub notify: Option<Notify>,
}

/// A message held in the quarantine: not delivered, invisible to users, until an admin
/// releases or deletes it or it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub id: u64,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
    /// Why, in words (`virus Eicar (clamav)`, `score 12.3 >= quarantine 10.0`).
    pub reason: String,
    pub recipients: Vec<QuarantinedRecipient>,
    /// The envelope it arrived with (its verdict included).
    pub envelope: DeliveryEnvelope,
    pub size: u64,
}

/// What a backup or a restore moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    /// Records (keys and values) copied.
    pub records: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
    /// Message contents copied as files of their own.
    pub files: u64,
}

#[cfg(test)]
mod envelope_format_tests {
    use super::*;

    /// Queue records written before the DSN parameters were typed held them as strings;
    /// postcard writes a struct as its fields in a row, so field-level equality is format
    /// equality: old records read as typed values, and new ones are written as before.
    #[test]
    fn typed_dsn_parameters_keep_the_stored_format() {
        let old = postcard::to_allocvec(&(Some("SUCCESS,DELAY".to_string()), Some("HDRS"), Some("8BITMIME"))).unwrap();
        let typed: (Option<Notify>, Option<Ret>, Option<Body>) = postcard::from_bytes(&old).unwrap();
        assert_eq!(typed, (Notify::parse("SUCCESS,DELAY"), Some(Ret::Hdrs), Some(Body::EightBitMime)));
        assert_eq!(postcard::to_allocvec(&typed).unwrap(), old);
        let none: (Option<Notify>, Option<Ret>) =
            postcard::from_bytes(&postcard::to_allocvec(&(None::<String>, None::<String>)).unwrap()).unwrap();
        assert_eq!(none, (None, None));
        // A whole recipient record round-trips.
        let r = EnvelopeRecipient {
            address: "bob@example.org".into(),
            orcpt: Some(("rfc822".into(), "bob@example.org".into())),
            notify: Notify::parse("NEVER"),
        };
        assert_eq!(postcard::from_bytes::<EnvelopeRecipient>(&postcard::to_allocvec(&r).unwrap()).unwrap(), r);
    }
}
