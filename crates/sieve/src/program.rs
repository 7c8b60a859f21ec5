//! A checked script: commands and tests with typed arguments, ready to run.

use std::collections::BTreeSet;

/// The extensions Tern implements, by their `require` names.
pub const EXTENSIONS: &[&str] = &[
    "fileinto",
    "envelope",
    "encoded-character",
    "comparator-i;octet",
    "comparator-i;ascii-casemap",
    "comparator-i;ascii-numeric",
    "reject",
    "ereject",
    "copy",
    "body",
    "variables",
    "relational",
    "subaddress",
    "imap4flags",
    "include",
    "date",
    "index",
    "vacation",
    "vacation-seconds",
    "editheader",
    "spamtest",
    "spamtestplus",
    "virustest",
    "regex",
    "duplicate",
    "environment",
    "mailbox",
    "mailboxid",
    "special-use",
];

#[derive(Debug, Clone)]
pub struct Script {
    pub commands: Vec<Command>,
    /// Extensions the script required.
    pub extensions: BTreeSet<String>,
}

pub type Block = Vec<Command>;

/// A string argument; with `variables`, made of text and variable references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Str {
    Literal(String),
    Template(Vec<Piece>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// A variable by its lower-cased name.
    Variable(String),
    /// `${0}`..`${9}`: what the last successful `:matches` or `:regex` captured.
    Match(usize),
}

impl Str {
    /// The text when it has no variable references.
    pub fn literal(&self) -> Option<&str> {
        match self {
            Str::Literal(s) => Some(s),
            Str::Template(_) => None,
        }
    }
}

/// A key of a test: its string, and for a constant `:regex` key its compiled form.
#[derive(Debug, Clone)]
pub struct Key {
    pub text: Str,
    pub regex: Option<regex::Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Octet,
    AsciiCasemap,
    AsciiNumeric,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Is,
    Contains,
    Matches,
    Regex,
    Value(Relation),
    Count(Relation),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matcher {
    pub comparator: Comparator,
    pub kind: MatchKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPart {
    All,
    LocalPart,
    Domain,
    User,
    Detail,
}

/// `:index N [:last]` (RFC 5260 §6): the Nth field of a name, counted from the top or bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index {
    pub n: u64,
    pub last: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyTransform {
    Raw,
    /// MIME parts whose type matches one of these (`""` all, `"text"` a type, `"text/html"`).
    Content(Vec<Str>),
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    /// The local zone (of the server).
    Local,
    /// `:zone "+0100"`: minutes east of UTC.
    Fixed(i32),
    /// `:originalzone`: the zone written in the field itself.
    Original,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Set,
    Add,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    Lower,
    Upper,
    LowerFirst,
    UpperFirst,
    QuoteWildcard,
    QuoteRegex,
    Length,
    EncodeUrl,
}

impl Modifier {
    /// RFC 5229 §4.1: applied from the highest precedence down.
    pub fn precedence(self) -> u8 {
        match self {
            Modifier::Lower | Modifier::Upper => 40,
            Modifier::LowerFirst | Modifier::UpperFirst => 30,
            Modifier::QuoteWildcard | Modifier::QuoteRegex | Modifier::EncodeUrl => 20,
            Modifier::Length => 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacation {
    /// The period between two replies to one sender, in seconds.
    pub period: Option<u64>,
    pub subject: Option<Str>,
    pub from: Option<Str>,
    pub addresses: Vec<Str>,
    pub mime: bool,
    pub handle: Option<Str>,
    pub reason: Str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DuplicateSource {
    MessageId,
    Header(Str),
    UniqueId(Str),
}

#[derive(Debug, Clone)]
pub enum Command {
    If {
        branches: Vec<(Test, Block)>,
        otherwise: Option<Block>,
    },
    Stop,
    Keep {
        flags: Option<Vec<Str>>,
    },
    Discard,
    Redirect {
        address: Str,
        copy: bool,
    },
    FileInto {
        mailbox: Str,
        copy: bool,
        create: bool,
        flags: Option<Vec<Str>>,
        special_use: Option<Str>,
        mailbox_id: Option<Str>,
    },
    Reject {
        reason: Str,
        extended: bool,
    },
    Flags {
        op: FlagOp,
        variable: Option<Str>,
        flags: Vec<Str>,
    },
    Set {
        name: String,
        modifiers: Vec<Modifier>,
        value: Str,
    },
    Vacation(Box<Vacation>),
    AddHeader {
        last: bool,
        name: Str,
        value: Str,
    },
    DeleteHeader {
        index: Option<Index>,
        matcher: Matcher,
        name: Str,
        patterns: Option<Vec<Key>>,
    },
    Include {
        name: String,
        global: bool,
        once: bool,
        optional: bool,
    },
    Return,
    Global {
        names: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub enum Test {
    True,
    False,
    Not(Box<Test>),
    AllOf(Vec<Test>),
    AnyOf(Vec<Test>),
    Address { part: AddressPart, matcher: Matcher, index: Option<Index>, headers: Vec<Str>, keys: Vec<Key> },
    Envelope { part: AddressPart, matcher: Matcher, parts: Vec<Str>, keys: Vec<Key> },
    Header { matcher: Matcher, index: Option<Index>, headers: Vec<Str>, keys: Vec<Key> },
    Exists(Vec<Str>),
    Size { over: bool, limit: u64 },
    Body { matcher: Matcher, transform: BodyTransform, keys: Vec<Key> },
    HasFlag { matcher: Matcher, variables: Vec<Str>, keys: Vec<Key> },
    String { matcher: Matcher, sources: Vec<Str>, keys: Vec<Key> },
    Date { matcher: Matcher, zone: Zone, index: Option<Index>, header: Str, part: Str, keys: Vec<Key> },
    CurrentDate { matcher: Matcher, zone: Zone, part: Str, keys: Vec<Key> },
    SpamTest { matcher: Matcher, percent: bool, value: Key },
    VirusTest { matcher: Matcher, value: Key },
    Duplicate { handle: Option<Str>, source: DuplicateSource, seconds: Option<u64>, last: bool },
    Environment { matcher: Matcher, name: Str, keys: Vec<Key> },
    MailboxExists(Vec<Str>),
    MailboxIdExists(Vec<Str>),
    SpecialUseExists { mailbox: Option<Str>, uses: Vec<Str> },
}
