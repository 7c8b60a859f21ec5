//! Typed IMAP commands (RFC 9051, RFC 3501 and the extensions Tern supports).

/// A message number or UID, or `*` (the largest one in the mailbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNumber {
    Value(u32),
    Last,
}

/// `a:b` or a single number (`a == b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange(pub SeqNumber, pub SeqNumber);

/// A sequence set, or `$` (the saved search result, RFC 5182).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceSet {
    Ranges(Vec<SeqRange>),
    Saved,
}

impl SequenceSet {
    /// Whether `n` is in the set, with `last` standing for `*`. `$` is never matched here.
    pub fn contains(&self, n: u32, last: u32) -> bool {
        match self {
            SequenceSet::Saved => false,
            SequenceSet::Ranges(ranges) => ranges.iter().any(|SeqRange(a, b)| {
                let v = |x: &SeqNumber| match x {
                    SeqNumber::Value(v) => *v,
                    SeqNumber::Last => last,
                };
                let (lo, hi) = (v(a).min(v(b)), v(a).max(v(b)));
                (lo..=hi).contains(&n)
            }),
        }
    }
}

/// A flag: system flags keep their backslash (`\Seen`); keywords are atoms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Flag(pub String);

impl Flag {
    pub fn is_system(&self) -> bool {
        self.0.starts_with('\\')
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    Mime,
}

/// `BODY[1.2.HEADER.FIELDS (From)]`: part path (empty = whole message) and text specifier.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttr {
    Envelope,
    Flags,
    InternalDate,
    Rfc822,
    Rfc822Header,
    Rfc822Size,
    Rfc822Text,
    /// BODY without section: the non-extensible structure.
    Body,
    BodyStructure,
    Uid,
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
    /// RFC 3516 BINARY[part]<partial>.
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<(u32, u32)>,
    },
    BinarySize(Vec<u32>),
    /// RFC 7162.
    ModSeq,
    /// RFC 8474.
    EmailId,
    ThreadId,
    /// RFC 8514.
    SaveDate,
    /// RFC 8970 PREVIEW, `(LAZY)` when the client accepts NIL for a preview not at hand.
    Preview {
        lazy: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Answered,
    Bcc(String),
    Before(Date),
    Body(String),
    Cc(String),
    Deleted,
    Draft,
    Flagged,
    From(String),
    Header(String, String),
    Keyword(String),
    Larger(u64),
    New,
    Not(Box<SearchKey>),
    Old,
    On(Date),
    Or(Box<SearchKey>, Box<SearchKey>),
    Recent,
    Seen,
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Since(Date),
    Smaller(u64),
    Subject(String),
    Text(String),
    To(String),
    Uid(SequenceSet),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(String),
    Unseen,
    SequenceSet(SequenceSet),
    /// A parenthesised list: all must match.
    And(Vec<SearchKey>),
    /// RFC 7162: MODSEQ [entry-name entry-type] n.
    ModSeq(u64),
    /// RFC 8474.
    EmailId(String),
    ThreadId(String),
    /// RFC 5032 WITHIN: internal date more than this many seconds ago.
    Older(u32),
    /// RFC 5032 WITHIN: internal date at most this many seconds ago.
    Younger(u32),
    /// RFC 8514: the date the message was saved in this mailbox.
    SavedBefore(Date),
    SavedOn(Date),
    SavedSince(Date),
    /// RFC 8514: whether the mailbox keeps save dates (Tern's always do).
    SaveDateSupported,
}

/// A calendar date (IMAP `date`): year, month 1-12, day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// A date-time with zone (IMAP `date-time`), as seconds since the epoch and the zone in
/// minutes east of UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub unix: i64,
    pub zone_minutes: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    Save,
    /// RFC 9394 PARTIAL: a window of the results.
    Partial(PartialRange),
    /// RFC 5267 §4.2 UPDATE: tell the client as messages join or leave the results.
    Update,
    /// RFC 5267 §4.2 CONTEXT: a hint that the client will ask more of this search.
    Context,
}

/// RFC 9394 `partial-range`: positions `low..=high` (1-based) of the results, counted from
/// the first one or, with `from_end`, from the last one (`-1:-10` is the last ten).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialRange {
    pub from_end: bool,
    pub low: u32,
    pub high: u32,
}

/// As written on the wire: `a:b`, or `-a:-b` from the end.
impl std::fmt::Display for PartialRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from_end { write!(f, "-{}:-{}", self.low, self.high) } else { write!(f, "{}:{}", self.low, self.high) }
    }
}

impl PartialRange {
    /// The index range (0-based, end exclusive) this window covers in `len` results.
    pub fn window(&self, len: usize) -> std::ops::Range<usize> {
        let (low, high) = (self.low as usize, self.high as usize);
        if self.from_end {
            len.saturating_sub(high)..len.saturating_sub(low - 1)
        } else {
            (low - 1).min(len)..high.min(len)
        }
    }
}

/// One message of an APPEND (RFC 3502 MULTIAPPEND sends several) or a REPLACE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    pub flags: Vec<Flag>,
    pub date: Option<DateTime>,
    pub content: AppendContent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendContent {
    /// The message as one literal; `binary` when sent as a `literal8` (RFC 3516 §4.4).
    Literal { message: Vec<u8>, binary: bool },
    /// RFC 4469 CATENATE: the message put together from texts and parts of stored messages.
    Catenate(Vec<CatenatePart>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatenatePart {
    /// `TEXT literal`.
    Text(Vec<u8>),
    /// `URL "imap-url"`: a message or part the user can read (RFC 5092 form).
    Url(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    HighestModSeq,
    AppendLimit,
    MailboxId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListSelect {
    Subscribed,
    Remote,
    RecursiveMatch,
    SpecialUse,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListReturn {
    Subscribed,
    Children,
    SpecialUse,
    Status(Vec<StatusItem>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

/// RFC 7162 §3.2.5 SELECT (QRESYNC (...)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QresyncParams {
    pub uid_validity: u32,
    pub mod_seq: u64,
    pub known_uids: Option<SequenceSet>,
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Capability,
    Noop,
    Logout,
    StartTls,
    Authenticate {
        mechanism: String,
        initial: Option<String>,
    },
    Login {
        user: String,
        password: String,
    },
    Enable(Vec<String>),
    Select {
        mailbox: String,
        read_only: bool,
        condstore: bool,
        qresync: Option<QresyncParams>,
    },
    Create {
        mailbox: String,
        special_use: Vec<String>,
    },
    Delete(String),
    Rename {
        from: String,
        to: String,
    },
    Subscribe(String),
    Unsubscribe(String),
    List {
        selection: Vec<ListSelect>,
        reference: String,
        patterns: Vec<String>,
        returns: Vec<ListReturn>,
        lsub: bool,
        extended: bool,
    },
    Namespace,
    Status {
        mailbox: String,
        items: Vec<StatusItem>,
    },
    /// One message, or several (RFC 3502 MULTIAPPEND), stored together or not at all.
    Append {
        mailbox: String,
        messages: Vec<AppendMessage>,
    },
    /// RFC 8508: the message replaces `target` (a sequence number or UID) in the selected
    /// mailbox, stored in `mailbox`.
    Replace {
        uid: bool,
        target: u32,
        mailbox: String,
        message: AppendMessage,
    },
    Idle,
    Check,
    Close,
    Unselect,
    Expunge {
        uids: Option<SequenceSet>,
    },
    Search {
        uid: bool,
        charset: Option<String>,
        key: SearchKey,
        returns: Option<Vec<SearchReturn>>,
    },
    Fetch {
        uid: bool,
        set: SequenceSet,
        attrs: Vec<FetchAttr>,
        changed_since: Option<u64>,
        vanished: bool,
        /// RFC 9394 PARTIAL modifier: only this window of the set's messages.
        partial: Option<PartialRange>,
    },
    Store {
        uid: bool,
        set: SequenceSet,
        mode: StoreMode,
        silent: bool,
        flags: Vec<Flag>,
        unchanged_since: Option<u64>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
    },
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
    },
    Id(Vec<(String, Option<String>)>),
    GetQuota(String),
    GetQuotaRoot(String),
    SetQuota(String),
    Sort {
        uid: bool,
        criteria: Vec<SortCriterion>,
        charset: String,
        key: SearchKey,
        /// RFC 5267 ESORT: `RETURN (...)` asks for an ESEARCH answer.
        returns: Option<Vec<SearchReturn>>,
    },
    Thread {
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: String,
        key: SearchKey,
    },
    Compress(String),
    /// RFC 4314 §3.1: `mode` is Add for `+rights`, Remove for `-rights`, Replace otherwise.
    SetAcl {
        mailbox: String,
        identifier: String,
        mode: StoreMode,
        rights: String,
    },
    DeleteAcl {
        mailbox: String,
        identifier: String,
    },
    GetAcl(String),
    ListRights {
        mailbox: String,
        identifier: String,
    },
    MyRights(String),
    /// RFC 5464 §4.2: annotations of a mailbox (`""`: the server's).
    GetMetadata {
        mailbox: String,
        entries: Vec<String>,
        max_size: Option<u32>,
        depth: MetadataDepth,
    },
    /// RFC 5464 §4.3: `None` removes an entry.
    SetMetadata {
        mailbox: String,
        entries: Vec<(String, Option<Vec<u8>>)>,
    },
    /// RFC 5465: `NOTIFY SET ...` (`Some`) or `NOTIFY NONE`.
    Notify(Option<NotifySet>),
    /// RFC 5267 §4.5: stop the updates of the searches with these tags.
    CancelUpdate(Vec<String>),
}

/// RFC 5465 §3.1 `NOTIFY SET [STATUS] event-group...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySet {
    /// STATUS: report the watched mailboxes' state at once.
    pub status: bool,
    pub groups: Vec<NotifyGroup>,
}

/// One `(filter-mailboxes events)`; no events is `NONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyGroup {
    pub filter: NotifyFilter,
    pub events: Vec<NotifyEvent>,
}

/// RFC 5465 §6 `filter-mailboxes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyFilter {
    Selected,
    SelectedDelayed,
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<String>),
    Mailboxes(Vec<String>),
}

/// RFC 5465 §5 events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyEvent {
    /// With the attributes to FETCH for each new message of the selected mailbox.
    MessageNew(Vec<FetchAttr>),
    MessageExpunge,
    FlagChange,
    AnnotationChange,
    MailboxName,
    SubscriptionChange,
    MailboxMetadataChange,
    ServerMetadataChange,
    /// An event this server does not know (answered `NO [BADEVENT]`).
    Other(String),
}

impl NotifyEvent {
    pub fn name(&self) -> &str {
        match self {
            NotifyEvent::MessageNew(_) => "MessageNew",
            NotifyEvent::MessageExpunge => "MessageExpunge",
            NotifyEvent::FlagChange => "FlagChange",
            NotifyEvent::AnnotationChange => "AnnotationChange",
            NotifyEvent::MailboxName => "MailboxName",
            NotifyEvent::SubscriptionChange => "SubscriptionChange",
            NotifyEvent::MailboxMetadataChange => "MailboxMetadataChange",
            NotifyEvent::ServerMetadataChange => "ServerMetadataChange",
            NotifyEvent::Other(name) => name,
        }
    }
}

/// RFC 5464 §4.2.2 DEPTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetadataDepth {
    /// The entries named.
    #[default]
    Zero,
    /// And their children.
    One,
    /// And all their descendants.
    Infinity,
}

impl Command {
    /// The command name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Capability => "CAPABILITY",
            Command::Noop => "NOOP",
            Command::Logout => "LOGOUT",
            Command::StartTls => "STARTTLS",
            Command::Authenticate { .. } => "AUTHENTICATE",
            Command::Login { .. } => "LOGIN",
            Command::Enable(_) => "ENABLE",
            Command::Select { read_only: false, .. } => "SELECT",
            Command::Select { read_only: true, .. } => "EXAMINE",
            Command::Create { .. } => "CREATE",
            Command::Delete(_) => "DELETE",
            Command::Rename { .. } => "RENAME",
            Command::Subscribe(_) => "SUBSCRIBE",
            Command::Unsubscribe(_) => "UNSUBSCRIBE",
            Command::List { lsub: true, .. } => "LSUB",
            Command::List { .. } => "LIST",
            Command::Namespace => "NAMESPACE",
            Command::Status { .. } => "STATUS",
            Command::Append { .. } => "APPEND",
            Command::Replace { .. } => "REPLACE",
            Command::Idle => "IDLE",
            Command::Check => "CHECK",
            Command::Close => "CLOSE",
            Command::Unselect => "UNSELECT",
            Command::Expunge { .. } => "EXPUNGE",
            Command::Search { .. } => "SEARCH",
            Command::Fetch { .. } => "FETCH",
            Command::Store { .. } => "STORE",
            Command::Copy { .. } => "COPY",
            Command::Move { .. } => "MOVE",
            Command::Id(_) => "ID",
            Command::GetQuota(_) => "GETQUOTA",
            Command::GetQuotaRoot(_) => "GETQUOTAROOT",
            Command::SetQuota(_) => "SETQUOTA",
            Command::Sort { .. } => "SORT",
            Command::Thread { .. } => "THREAD",
            Command::Compress(_) => "COMPRESS",
            Command::SetAcl { .. } => "SETACL",
            Command::DeleteAcl { .. } => "DELETEACL",
            Command::GetAcl(_) => "GETACL",
            Command::ListRights { .. } => "LISTRIGHTS",
            Command::MyRights(_) => "MYRIGHTS",
            Command::GetMetadata { .. } => "GETMETADATA",
            Command::Notify(_) => "NOTIFY",
            Command::CancelUpdate(_) => "CANCELUPDATE",
            Command::SetMetadata { .. } => "SETMETADATA",
        }
    }
}
