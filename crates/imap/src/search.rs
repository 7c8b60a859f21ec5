//! SEARCH keys (RFC 9051 §6.4.4), SORT and THREAD (RFC 5256) evaluated over messages whose
//! data the session loaded. Pure: the caller loads what [`needs`] says and passes it in.

use std::collections::HashMap;
use std::sync::Arc;
use tern_imap_proto::{Date, SearchKey, SequenceSet, SortCriterion, SortKey, days_from_civil};
use tern_store::{Flags, MessageEntry};

/// What a search needs besides the message entry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// Fields from the message's summary ([`crate::SearchFields`]: FROM, SUBJECT, SENTON…).
    pub summary: bool,
    /// Header text (HEADER key, TEXT).
    pub header: bool,
    /// Decoded body text (BODY, TEXT) unless the full-text index answers.
    pub text: bool,
}

/// Most keys one SEARCH may hold, and most distinct BODY/TEXT strings (each is an index
/// lookup, or a scan of what the index lacks). Beyond them the command is refused with
/// `NO [LIMIT]`: a 41 KB program of 1,500 OR groups is not a search a person makes.
pub const MAX_KEYS: usize = 500;
pub const MAX_TEXT_KEYS: usize = 50;

/// A search program with every string lower-cased once and each distinct BODY/TEXT string
/// numbered, so matching a message allocates nothing and finds the index's answer for a
/// string by position (a lookup by string per key and message made a search of 3,000 keys
/// over 2,000 messages quadratic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub program: Program,
    /// Distinct (string, with header) of BODY (false) and TEXT (true) keys, lower-cased;
    /// [`Program::Text`] refers to them by position.
    pub needles: Vec<(String, bool)>,
    pub needs: Needs,
    /// A HEADER key is present (the raw header block is needed).
    pub header_key: bool,
    /// A MODSEQ key is present (RFC 7162 §3.1.5: the answer reports modseqs).
    pub modseq: bool,
    /// How many keys the program has.
    pub keys: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// Any key but BODY/TEXT and the combinators, strings lower-cased.
    Key(SearchKey),
    /// BODY or TEXT: the position of its string in [`Compiled::needles`].
    Text(usize),
    Not(Box<Program>),
    Or(Box<Program>, Box<Program>),
    And(Vec<Program>),
}

/// Compiles a search key (see [`Compiled`]).
pub fn compile(key: &SearchKey) -> Compiled {
    let mut c = Compiled {
        program: Program::And(vec![]),
        needles: Vec::new(),
        needs: Needs::default(),
        header_key: false,
        modseq: false,
        keys: 0,
    };
    c.program = compile_key(key, &mut c);
    c
}

fn compile_key(key: &SearchKey, c: &mut Compiled) -> Program {
    c.keys += 1;
    let lc = |s: &String| s.to_lowercase();
    let text = |s: &String, with_header: bool, c: &mut Compiled| {
        let needle = (s.to_lowercase(), with_header);
        c.needs.text = true;
        c.needs.header |= with_header;
        // Past the limit the search is refused anyway: no lookup (it would cost quadratic
        // time on the runtime's thread for a long program).
        let known = if c.needles.len() <= MAX_TEXT_KEYS { c.needles.iter().position(|n| *n == needle) } else { None };
        let slot = match known {
            Some(slot) => slot,
            None => {
                c.needles.push(needle);
                c.needles.len() - 1
            }
        };
        Program::Text(slot)
    };
    match key {
        SearchKey::Body(s) => text(s, false, c),
        SearchKey::Text(s) => text(s, true, c),
        SearchKey::Not(k) => Program::Not(Box::new(compile_key(k, c))),
        SearchKey::Or(a, b) => {
            let a = compile_key(a, c);
            Program::Or(Box::new(a), Box::new(compile_key(b, c)))
        }
        SearchKey::And(ks) => Program::And(ks.iter().map(|k| compile_key(k, c)).collect()),
        other => {
            let leaf = match other {
                SearchKey::Bcc(s) => SearchKey::Bcc(lc(s)),
                SearchKey::Cc(s) => SearchKey::Cc(lc(s)),
                SearchKey::From(s) => SearchKey::From(lc(s)),
                SearchKey::Subject(s) => SearchKey::Subject(lc(s)),
                SearchKey::To(s) => SearchKey::To(lc(s)),
                SearchKey::Header(n, v) => SearchKey::Header(lc(n), lc(v)),
                other => other.clone(),
            };
            match &leaf {
                SearchKey::Bcc(_)
                | SearchKey::Cc(_)
                | SearchKey::From(_)
                | SearchKey::To(_)
                | SearchKey::Subject(_)
                | SearchKey::SentBefore(_)
                | SearchKey::SentOn(_)
                | SearchKey::SentSince(_) => c.needs.summary = true,
                SearchKey::Header(..) => {
                    c.needs.header = true;
                    c.header_key = true;
                }
                SearchKey::ModSeq(_) => c.modseq = true,
                _ => {}
            }
            Program::Key(leaf)
        }
    }
}

/// Everything known about one message during a search.
pub struct Candidate<'a> {
    pub entry: &'a MessageEntry,
    pub seq: u32,
    /// What header keys compare with (from the message's summary).
    pub fields: Option<Arc<crate::SearchFields>>,
    /// Header block, lower-cased, decoded and raw (for HEADER and TEXT).
    pub header: Option<String>,
    /// Decoded text of the body, lower-cased.
    pub text: Option<String>,
}

/// Facts about the mailbox the keys refer to.
pub struct Scope<'a> {
    /// The time of the search, Unix seconds (RFC 5032 OLDER/YOUNGER).
    pub now: i64,
    pub last_seq: u32,
    pub last_uid: u32,
    pub recent: &'a crate::mailbox::Recent,
    pub saved: &'a [u32],
    /// The program's BODY/TEXT strings ([`Compiled::needles`]).
    pub needles: &'a [(String, bool)],
    /// The full-text index's answer for each of them, by position (`None`: it has none).
    pub text_index: &'a [Option<tern_store::TextMatches>],
}

impl Scope<'_> {
    /// The index's answer for string `slot` on this message, if it has one.
    pub fn indexed(&self, slot: usize, entry: &MessageEntry) -> Option<bool> {
        self.text_index.get(slot)?.as_ref()?.lookup(&entry.blob)
    }

    /// Whether some BODY/TEXT string has no index answer for this message (it is scanned).
    pub fn needs_scan(&self, entry: &MessageEntry) -> bool {
        (0..self.needles.len()).any(|slot| self.indexed(slot, entry).is_none())
    }
}

/// `needle` is already lower-cased (see [`compile`]).
fn contains(haystack: &str, needle: &str) -> bool {
    needle.is_empty() || haystack.contains(needle)
}

fn day_of(unix: i64) -> i64 {
    unix.div_euclid(86400)
}

fn date_days(d: &Date) -> i64 {
    days_from_civil(i64::from(d.year), i64::from(d.month), i64::from(d.day))
}

fn in_set(set: &SequenceSet, n: u32, last: u32, saved: &[u32], saved_as_uid: bool, uid: u32) -> bool {
    match set {
        SequenceSet::Saved => {
            saved_as_uid && saved.binary_search(&uid).is_ok() || !saved_as_uid && saved.contains(&uid)
        }
        s => s.contains(n, last),
    }
}

/// Whether a message matches a compiled program.
pub fn matches(program: &Program, c: &Candidate<'_>, scope: &Scope<'_>) -> bool {
    match program {
        Program::Key(key) => matches_key(key, c, scope),
        Program::Text(slot) => {
            if let Some(answer) = scope.indexed(*slot, c.entry) {
                return answer;
            }
            let Some((needle, with_header)) = scope.needles.get(*slot) else { return false };
            c.text.as_deref().is_some_and(|t| contains(t, needle))
                || (*with_header && c.header.as_deref().is_some_and(|h| contains(h, needle)))
        }
        Program::Not(p) => !matches(p, c, scope),
        Program::Or(a, b) => matches(a, c, scope) || matches(b, c, scope),
        Program::And(ps) => ps.iter().all(|p| matches(p, c, scope)),
    }
}

/// One key that is not BODY/TEXT (those are [`Program::Text`]).
fn matches_key(key: &SearchKey, c: &Candidate<'_>, scope: &Scope<'_>) -> bool {
    let e = c.entry;
    let f = |flag: Flags| e.flags.contains(flag);
    let fields = c.fields.as_deref();
    match key {
        SearchKey::All => true,
        SearchKey::Answered => f(Flags::ANSWERED),
        SearchKey::Deleted => f(Flags::DELETED),
        SearchKey::Draft => f(Flags::DRAFT),
        SearchKey::Flagged => f(Flags::FLAGGED),
        SearchKey::Seen => f(Flags::SEEN),
        SearchKey::Unanswered => !f(Flags::ANSWERED),
        SearchKey::Undeleted => !f(Flags::DELETED),
        SearchKey::Undraft => !f(Flags::DRAFT),
        SearchKey::Unflagged => !f(Flags::FLAGGED),
        SearchKey::Unseen => !f(Flags::SEEN),
        SearchKey::Recent => scope.recent.contains(e.uid),
        SearchKey::New => scope.recent.contains(e.uid) && !f(Flags::SEEN),
        SearchKey::Old => !scope.recent.contains(e.uid),
        SearchKey::Keyword(k) => keyword(e, k),
        SearchKey::Unkeyword(k) => !keyword(e, k),
        SearchKey::Larger(n) => e.size > *n,
        SearchKey::Smaller(n) => e.size < *n,
        SearchKey::Before(d) => day_of(e.internal_date) < date_days(d),
        SearchKey::On(d) => day_of(e.internal_date) == date_days(d),
        SearchKey::Since(d) => day_of(e.internal_date) >= date_days(d),
        SearchKey::SentBefore(d) => fields.and_then(|f| f.sent_day).is_some_and(|day| day < date_days(d)),
        SearchKey::SentOn(d) => fields.and_then(|f| f.sent_day).is_some_and(|day| day == date_days(d)),
        SearchKey::SentSince(d) => fields.and_then(|f| f.sent_day).is_some_and(|day| day >= date_days(d)),
        SearchKey::From(s) => fields.is_some_and(|f| contains(&f.search.from, s)),
        SearchKey::To(s) => fields.is_some_and(|f| contains(&f.search.to, s)),
        SearchKey::Cc(s) => fields.is_some_and(|f| contains(&f.search.cc, s)),
        SearchKey::Bcc(s) => fields.is_some_and(|f| contains(&f.search.bcc, s)),
        SearchKey::Subject(s) => fields.is_some_and(|f| contains(&f.search.subject, s)),
        SearchKey::Header(name, value) => c.header.as_deref().is_some_and(|h| header_match(h, name, value)),
        SearchKey::Uid(set) => in_set(set, e.uid, scope.last_uid, scope.saved, true, e.uid),
        SearchKey::SequenceSet(set) => in_set(set, c.seq, scope.last_seq, scope.saved, true, e.uid),
        SearchKey::ModSeq(m) => e.modseq >= *m,
        // RFC 5032 §3: YOUNGER n and OLDER n split the messages at now - n.
        SearchKey::Younger(n) => e.internal_date >= scope.now - i64::from(*n),
        SearchKey::Older(n) => e.internal_date < scope.now - i64::from(*n),
        SearchKey::SavedBefore(d) => day_of(e.saved) < date_days(d),
        SearchKey::SavedOn(d) => day_of(e.saved) == date_days(d),
        SearchKey::SavedSince(d) => day_of(e.saved) >= date_days(d),
        SearchKey::SaveDateSupported => true,
        SearchKey::EmailId(id) => object_id("M", e.email_id) == *id,
        SearchKey::ThreadId(id) => object_id("T", e.thread_id) == *id,
        // `compile` turns these into the other variants of Program; never a Program::Key.
        SearchKey::Body(_) | SearchKey::Text(_) | SearchKey::Not(_) | SearchKey::Or(..) | SearchKey::And(_) => false,
    }
}

fn keyword(e: &MessageEntry, k: &str) -> bool {
    let flag = match k.to_ascii_lowercase().as_str() {
        "\\seen" => Some(Flags::SEEN),
        "\\answered" => Some(Flags::ANSWERED),
        "\\flagged" => Some(Flags::FLAGGED),
        "\\deleted" => Some(Flags::DELETED),
        "\\draft" => Some(Flags::DRAFT),
        _ => None,
    };
    match flag {
        Some(f) => e.flags.contains(f),
        None => e.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)),
    }
}

/// RFC 8474 object ids: a letter and the number in hex.
pub fn object_id(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:016x}")
}

/// HEADER name value: a field with that name whose value contains the string (an empty
/// string matches any message that has the field). `header` is lower-cased "name: value"
/// lines, unfolded.
fn header_match(header: &str, name: &str, value: &str) -> bool {
    header.lines().any(|line| line.split_once(':').is_some_and(|(n, v)| n.trim() == name && v.contains(value)))
}

pub use tern_mime::text::{body_text, header_text};

/// RFC 5256 §2.1 base subject, lower-cased for comparison.
pub fn base_subject(subject: &str) -> String {
    subject_info(subject).0
}

/// Base subject and whether extraction removed a reply/forward marker (RFC 5256 §2.1: a
/// `re:`/`fw:`/`fwd:` leader, a `(fwd)` trailer or a `[fwd: ...]` wrapper).
pub fn subject_info(subject: &str) -> (String, bool) {
    let mut s: String = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut reply = false;
    loop {
        // (2) trailing "(fwd)" and white space.
        loop {
            let t = s.trim_end();
            if t.len() >= 5 && t.is_char_boundary(t.len() - 5) && t[t.len() - 5..].eq_ignore_ascii_case("(fwd)") {
                s = t[..t.len() - 5].to_string();
                reply = true;
            } else {
                s = t.to_string();
                break;
            }
        }
        // (3) leading subj-refwd ("re", "fw", "fwd", optional [blob]s, ":") and leading
        // [blob]s that leave something behind; repeated.
        loop {
            let t = s.trim_start().to_string();
            let lower = t.to_ascii_lowercase();
            let bytes = t.as_bytes();
            let mut next = None;
            for prefix in ["fwd", "fw", "re"] {
                if !lower.starts_with(prefix) {
                    continue;
                }
                let mut i = prefix.len();
                while i < bytes.len() && bytes[i] == b' ' {
                    i += 1;
                }
                while i < bytes.len() && bytes[i] == b'[' {
                    match t[i..].find(']') {
                        Some(close) => i += close + 1,
                        None => break,
                    }
                    while i < bytes.len() && bytes[i] == b' ' {
                        i += 1;
                    }
                }
                if bytes.get(i) == Some(&b':') {
                    next = Some(t[i + 1..].to_string());
                    reply = true;
                    break;
                }
            }
            if next.is_none()
                && t.starts_with('[')
                && let Some(close) = t.find(']')
            {
                let after = t[close + 1..].trim_start();
                if !after.is_empty() {
                    next = Some(after.to_string());
                }
            }
            match next {
                Some(n) => s = n,
                None => {
                    s = t;
                    break;
                }
            }
        }
        // (5) "[fwd: ... ]" wrapper.
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("[fwd:") && s.ends_with(']') {
            s = s[5..s.len() - 1].to_string();
            reply = true;
            continue;
        }
        break;
    }
    (s.trim().to_lowercase(), reply)
}

/// Data SORT and THREAD look at, with the sort keys computed once (not in every
/// comparison).
pub struct SortItem {
    pub seq: u32,
    pub uid: u32,
    pub entry_size: u64,
    pub internal_date: i64,
    pub summary: Arc<crate::Summary>,
    keys: SortKeys,
}

/// RFC 5256 §3 and RFC 5957 sort keys, from the same address parse as the ENVELOPE the
/// client sees, compared case-insensitively (i;unicode-casemap, approximated by lower case).
struct SortKeys {
    /// Base subject (RFC 5256 §2.1) of the decoded subject.
    subject: String,
    /// addr-mailbox of the first address, lower-cased.
    from: String,
    to: String,
    cc: String,
    /// Decoded display name of the first address, or its addr-spec without one.
    display_from: String,
    display_to: String,
}

impl SortItem {
    pub fn new(seq: u32, uid: u32, entry_size: u64, internal_date: i64, summary: Arc<crate::Summary>) -> SortItem {
        let env = &summary.message.envelope;
        let first = |raw: &Option<Vec<u8>>| {
            raw.as_deref().map(tern_mime::address::parse_address_list).unwrap_or_default().into_iter().find_map(|a| {
                match a {
                    tern_mime::address::ImapAddress::Mailbox { name, mailbox, host, .. } => Some((name, mailbox, host)),
                    _ => None,
                }
            })
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mailbox = |raw: &Option<Vec<u8>>| first(raw).map(|(_, m, _)| text(&m).to_lowercase()).unwrap_or_default();
        let display = |raw: &Option<Vec<u8>>| match first(raw) {
            Some((Some(name), _, _)) if !name.iter().all(u8::is_ascii_whitespace) => {
                tern_mime::decode::encoded_words(&text(&name)).trim().to_lowercase()
            }
            Some((_, mailbox, host)) => format!("{}@{}", text(&mailbox), text(&host)).to_lowercase(),
            None => String::new(),
        };
        let keys = SortKeys {
            subject: base_subject(&summary.message.subject),
            from: mailbox(&env.from),
            to: mailbox(&env.to),
            cc: mailbox(&env.cc),
            display_from: display(&env.from),
            display_to: display(&env.to),
        };
        SortItem { seq, uid, entry_size, internal_date, summary, keys }
    }
}

/// The sent date for SORT DATE: the Date header, or the internal date without one
/// (RFC 5256 §3).
fn sort_date(i: &SortItem) -> i64 {
    i.summary.message.date.unwrap_or(i.internal_date)
}

/// Orders messages by the criteria; messages equal by all of them stay in mailbox order
/// (RFC 5256 §3: by sequence number, which is arrival order).
pub fn sort(items: &mut [SortItem], criteria: &[SortCriterion]) {
    items.sort_by(|a, b| {
        for c in criteria {
            let (x, y) = (&a.keys, &b.keys);
            let ord = match c.key {
                SortKey::Arrival => a.internal_date.cmp(&b.internal_date),
                SortKey::Date => sort_date(a).cmp(&sort_date(b)),
                SortKey::Size => a.entry_size.cmp(&b.entry_size),
                SortKey::From => x.from.cmp(&y.from),
                SortKey::To => x.to.cmp(&y.to),
                SortKey::Cc => x.cc.cmp(&y.cc),
                SortKey::DisplayFrom => x.display_from.cmp(&y.display_from),
                SortKey::DisplayTo => x.display_to.cmp(&y.display_to),
                SortKey::Subject => x.subject.cmp(&y.subject),
            };
            let ord = if c.reverse { ord.reverse() } else { ord };
            if ord != std::cmp::Ordering::Equal {
                return ord;
            }
        }
        a.seq.cmp(&b.seq)
    });
}

/// A thread tree: a message (by the caller's number) and its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadNode {
    pub id: Option<u32>,
    pub children: Vec<ThreadNode>,
}

/// THREAD=ORDEREDSUBJECT (RFC 5256 §2.2): messages grouped by base subject, threads ordered
/// by their first message's date, each a flat list of children under the first.
pub fn thread_ordered_subject(items: &[SortItem], number: impl Fn(&SortItem) -> u32) -> Vec<ThreadNode> {
    let mut sorted: Vec<&SortItem> = items.iter().collect();
    sorted.sort_by(|a, b| {
        a.keys.subject.cmp(&b.keys.subject).then(sort_date(a).cmp(&sort_date(b))).then(a.seq.cmp(&b.seq))
    });
    let mut groups: Vec<Vec<&SortItem>> = Vec::new();
    let mut last: Option<&String> = None;
    for i in sorted {
        let subject = &i.keys.subject;
        if last == Some(subject) {
            if let Some(g) = groups.last_mut() {
                g.push(i);
            }
        } else {
            groups.push(vec![i]);
            last = Some(subject);
        }
    }
    groups.sort_by(|a, b| sort_date(a[0]).cmp(&sort_date(b[0])).then(a[0].seq.cmp(&b[0].seq)));
    groups
        .into_iter()
        .map(|g| ThreadNode {
            id: Some(number(g[0])),
            children: g[1..].iter().map(|i| ThreadNode { id: Some(number(i)), children: vec![] }).collect(),
        })
        .collect()
}

struct Container {
    item: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

fn is_ancestor(containers: &[Container], ancestor: usize, mut node: usize) -> bool {
    for _ in 0..containers.len() + 1 {
        if node == ancestor {
            return true;
        }
        match containers[node].parent {
            Some(p) => node = p,
            None => return false,
        }
    }
    true
}

fn set_parent(containers: &mut [Container], child: usize, parent: usize) {
    if let Some(old) = containers[child].parent.take() {
        containers[old].children.retain(|&x| x != child);
    }
    containers[child].parent = Some(parent);
    containers[parent].children.push(child);
}

fn new_container(containers: &mut Vec<Container>) -> usize {
    containers.push(Container { item: None, parent: None, children: vec![] });
    containers.len() - 1
}

/// Deepest tree the recursive steps walk (a pool thread has a 2 MiB stack). Below it the
/// rest of a subtree is not pruned or sorted, and is answered flat: every message is in the
/// response, as RFC 5256 requires.
const MAX_THREAD_DEPTH: usize = 1_000;

/// THREAD=REFERENCES (RFC 5256 §2.2).
pub fn thread_references(items: &[SortItem], number: impl Fn(&SortItem) -> u32) -> Vec<ThreadNode> {
    let mut containers = link_references(items);
    // (2) The root set; (3) pruning of empty containers.
    let roots: Vec<usize> = (0..containers.len()).filter(|&c| containers[c].parent.is_none()).collect();
    let roots = prune(&mut containers, roots, true, 0);
    // (4) and (6): siblings by date.
    for &r in &roots {
        sort_tree(&mut containers, items, r, 0);
    }
    let mut top = group_by_subject(&mut containers, items, &roots);
    for &t in &top {
        sort_tree(&mut containers, items, t, 0);
    }
    top.sort_by_key(|&t| date_of(&containers, items, t));
    top.into_iter().map(|t| build_thread(&containers, t, items, &number, 0)).collect()
}

/// RFC 5256 §2.2 (1): a container per message and per referenced Message-ID, linked as the
/// References (or the first In-Reply-To) say, never into a loop.
fn link_references(items: &[SortItem]) -> Vec<Container> {
    let mut containers: Vec<Container> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for (idx, item) in items.iter().enumerate() {
        let s = &item.summary.message;
        let own = match &s.message_id {
            Some(id) => match by_id.get(id).copied() {
                // A duplicate Message-ID gets a container of its own.
                Some(c) if containers[c].item.is_some() => new_container(&mut containers),
                Some(c) => c,
                None => {
                    let c = new_container(&mut containers);
                    by_id.insert(id.clone(), c);
                    c
                }
            },
            None => new_container(&mut containers),
        };
        containers[own].item = Some(idx);
        let refs: Vec<&String> = if s.references.is_empty() {
            s.in_reply_to.iter().take(1).collect()
        } else {
            s.references.iter().collect()
        };
        let mut prev: Option<usize> = None;
        for r in refs {
            let c = match by_id.get(r.as_str()).copied() {
                Some(c) => c,
                None => {
                    let c = new_container(&mut containers);
                    by_id.insert(r.clone(), c);
                    c
                }
            };
            // (1.A) link consecutive references unless that makes a loop or c has a parent.
            if let Some(p) = prev
                && containers[c].parent.is_none()
                && p != c
                && !is_ancestor(&containers, c, p)
            {
                set_parent(&mut containers, c, p);
            }
            prev = Some(c);
        }
        // (1.B) the last reference is the parent of this message.
        match prev {
            Some(p) if p != own && !is_ancestor(&containers, own, p) => set_parent(&mut containers, own, p),
            _ => {
                if let Some(old) = containers[own].parent.take() {
                    containers[old].children.retain(|&x| x != own);
                }
            }
        }
    }
    containers
}

/// RFC 5256 §2.2 (3): empty containers go, their children move up (at the root only when
/// there is one child).
fn prune(containers: &mut [Container], nodes: Vec<usize>, at_root: bool, depth: usize) -> Vec<usize> {
    if depth > MAX_THREAD_DEPTH {
        return nodes;
    }
    let mut out = Vec::new();
    for n in nodes {
        let children = std::mem::take(&mut containers[n].children);
        let children = prune(containers, children, false, depth + 1);
        for &c in &children {
            containers[c].parent = Some(n);
        }
        containers[n].children = children.clone();
        if containers[n].item.is_none() {
            if children.is_empty() {
                continue;
            }
            if !at_root || children.len() == 1 {
                for &c in &children {
                    containers[c].parent = None;
                }
                out.extend(children);
                continue;
            }
        }
        out.push(n);
    }
    out
}

/// The date a container sorts by; a dummy dates from its first child.
fn date_of(containers: &[Container], items: &[SortItem], c: usize) -> (i64, u32) {
    let mut c = c;
    for _ in 0..=MAX_THREAD_DEPTH {
        match containers[c].item {
            Some(i) => return (sort_date(&items[i]), items[i].seq),
            None => match containers[c].children.first() {
                Some(&first) => c = first,
                None => break,
            },
        }
    }
    (i64::MAX, u32::MAX)
}

/// RFC 5256 §2.2 (4) and (6): siblings in date order, all the way down.
fn sort_tree(containers: &mut [Container], items: &[SortItem], node: usize, depth: usize) {
    let mut children = std::mem::take(&mut containers[node].children);
    if depth < MAX_THREAD_DEPTH {
        for &c in &children {
            sort_tree(containers, items, c, depth + 1);
        }
    }
    children.sort_by_key(|&c| date_of(containers, items, c));
    containers[node].children = children;
}

/// RFC 5256 §2.2 (5): roots with the same base subject are gathered under one; returns the
/// new roots.
fn group_by_subject(containers: &mut Vec<Container>, items: &[SortItem], roots: &[usize]) -> Vec<usize> {
    let info = |c: usize, containers: &[Container]| -> (String, bool) {
        let i = containers[c].item.or_else(|| containers[c].children.first().and_then(|&f| containers[f].item));
        i.map(|i| subject_info(&items[i].summary.message.subject)).unwrap_or_default()
    };
    let mut table: HashMap<String, usize> = HashMap::new();
    for &r in roots {
        let (subject, reply) = info(r, containers);
        if subject.is_empty() {
            continue;
        }
        match table.get(&subject).copied() {
            None => {
                table.insert(subject, r);
            }
            Some(cur) => {
                let cur_dummy = containers[cur].item.is_none();
                let (_, cur_reply) = info(cur, containers);
                if !cur_dummy && (containers[r].item.is_none() || (cur_reply && !reply)) {
                    table.insert(subject, r);
                }
            }
        }
    }
    let mut top: Vec<usize> = Vec::new();
    for &r in roots {
        let (subject, reply) = info(r, containers);
        let Some(&t) = table.get(&subject).filter(|_| !subject.is_empty()) else {
            top.push(r);
            continue;
        };
        if t == r {
            top.push(r);
            continue;
        }
        let t_dummy = containers[t].item.is_none();
        let r_dummy = containers[r].item.is_none();
        let (_, t_reply) = info(t, containers);
        if t_dummy && r_dummy {
            let children = std::mem::take(&mut containers[r].children);
            for c in children {
                containers[c].parent = None;
                set_parent(containers, c, t);
            }
        } else if t_dummy || (reply && !t_reply) {
            set_parent(containers, r, t);
        } else {
            let d = new_container(containers);
            set_parent(containers, t, d);
            set_parent(containers, r, d);
            table.insert(subject, d);
            top.retain(|&x| x != t);
            top.push(d);
        }
    }
    top.into_iter().filter(|&t| containers[t].parent.is_none()).collect()
}

fn build_thread(
    containers: &[Container],
    node: usize,
    items: &[SortItem],
    number: &dyn Fn(&SortItem) -> u32,
    depth: usize,
) -> ThreadNode {
    let children = if depth >= MAX_THREAD_DEPTH {
        // The messages of the rest of the subtree, in depth-first order, as children.
        let mut flat = Vec::new();
        let mut stack: Vec<usize> = containers[node].children.iter().rev().copied().collect();
        while let Some(c) = stack.pop() {
            if let Some(i) = containers[c].item {
                flat.push(ThreadNode { id: Some(number(&items[i])), children: vec![] });
            }
            stack.extend(containers[c].children.iter().rev());
        }
        flat
    } else {
        containers[node].children.iter().map(|&c| build_thread(containers, c, items, number, depth + 1)).collect()
    };
    ThreadNode { id: containers[node].item.map(|i| number(&items[i])), children }
}

/// THREAD response syntax: `(1 2)(3 (4)(5))`. A chain of single children is written flat.
pub fn write_threads(out: &mut Vec<u8>, threads: &[ThreadNode]) {
    fn node(out: &mut Vec<u8>, n: &ThreadNode, depth: usize) {
        out.push(b'(');
        chain(out, n, depth);
        out.push(b')');
    }
    fn chain(out: &mut Vec<u8>, n: &ThreadNode, depth: usize) {
        let mut cur = n;
        let mut first = true;
        loop {
            if let Some(id) = cur.id {
                if !first {
                    out.push(b' ');
                }
                out.extend_from_slice(id.to_string().as_bytes());
                first = false;
            }
            match cur.children.as_slice() {
                [] => return,
                [only] if depth < 10_000 => cur = only,
                many => {
                    if !first {
                        out.push(b' ');
                    }
                    for c in many {
                        node(out, c, depth + 1);
                    }
                    return;
                }
            }
        }
    }
    for t in threads {
        node(out, t, 0);
    }
}

#[cfg(test)]
mod tests;
