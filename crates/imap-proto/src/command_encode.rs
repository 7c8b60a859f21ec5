//! Encoding typed commands back into the wire form a client sends (RFC 9051 §9), with
//! synchronising literals where a string cannot be quoted. [`parse_command`] of the result
//! gives the same [`Tagged`] command back: the fuzz target `imap_command` holds both to
//! that, and Tern's own IMAP client code (migration) can build commands from types.
//!
//! [`parse_command`]: crate::parse_command

use crate::encode::{date_time, literal};
use crate::parse::Tagged;
use crate::types::*;
use std::fmt::Write;

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// The command as one framed unit: tag, command and arguments, literals inline, no final CRLF.
pub fn encode_command(tagged: &Tagged) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64));
    w.raw(&tagged.tag);
    w.raw(" ");
    w.command(&tagged.command);
    w.0
}

struct Writer(Vec<u8>);

fn is_astring_char(c: u8) -> bool {
    c > 0x20 && c < 0x7f && !b"(){%*\"\\".contains(&c)
}

fn is_list_char(c: u8) -> bool {
    is_astring_char(c) || c == b'%' || c == b'*'
}

impl Write for Writer {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl Writer {
    fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    fn number(&mut self, n: impl std::fmt::Display) {
        let _ = write!(self, "{n}");
    }

    /// A quoted string, or a literal when it holds CR, LF or NUL.
    fn string(&mut self, s: &[u8]) {
        if s.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            literal(&mut self.0, s);
            return;
        }
        self.0.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                self.0.push(b'\\');
            }
            self.0.push(b);
        }
        self.0.push(b'"');
    }

    /// An atom when every character may stand in one, else a string.
    fn astring(&mut self, s: &str) {
        if !s.is_empty() && s.bytes().all(is_astring_char) {
            self.raw(s);
        } else {
            self.string(s.as_bytes());
        }
    }

    /// A LIST pattern: `%` and `*` may stand unquoted.
    fn list_mailbox(&mut self, s: &str) {
        if !s.is_empty() && s.bytes().all(is_list_char) {
            self.raw(s);
        } else {
            self.string(s.as_bytes());
        }
    }

    /// `(a b c)` with `f` for each element.
    fn list<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        self.raw("(");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.raw(" ");
            }
            f(self, item);
        }
        self.raw(")");
    }

    fn seq_number(&mut self, n: SeqNumber) {
        match n {
            SeqNumber::Value(v) => self.number(v),
            SeqNumber::Last => self.raw("*"),
        }
    }

    fn sequence_set(&mut self, set: &SequenceSet) {
        match set {
            SequenceSet::Saved => self.raw("$"),
            SequenceSet::Ranges(ranges) => {
                for (i, SeqRange(a, b)) in ranges.iter().enumerate() {
                    if i > 0 {
                        self.raw(",");
                    }
                    self.seq_number(*a);
                    if a != b {
                        self.raw(":");
                        self.seq_number(*b);
                    }
                }
            }
        }
    }

    fn date(&mut self, d: Date) {
        let month = MONTHS.get(usize::from(d.month.max(1)) - 1).copied().unwrap_or("Jan");
        let _ = write!(self, "{}-{month}-{:04}", d.day, d.year);
    }

    /// `"dd-Mon-yyyy hh:mm:ss +zzzz"` in the zone the date-time was given in.
    fn date_time(&mut self, dt: DateTime) {
        let _ = write!(self, "\"{}\"", date_time(dt.unix, dt.zone_minutes));
    }

    fn flag(&mut self, flag: &str) {
        self.raw(flag);
    }

    fn search_key(&mut self, key: &SearchKey) {
        use SearchKey as K;
        let word = |w: &mut Self, name: &str, arg: &str| {
            w.raw(name);
            w.raw(" ");
            w.astring(arg);
        };
        let dated = |w: &mut Self, name: &str, d: Date| {
            w.raw(name);
            w.raw(" ");
            w.date(d);
        };
        match key {
            K::All => self.raw("ALL"),
            K::Answered => self.raw("ANSWERED"),
            K::Deleted => self.raw("DELETED"),
            K::Draft => self.raw("DRAFT"),
            K::Flagged => self.raw("FLAGGED"),
            K::New => self.raw("NEW"),
            K::Old => self.raw("OLD"),
            K::Recent => self.raw("RECENT"),
            K::Seen => self.raw("SEEN"),
            K::Unanswered => self.raw("UNANSWERED"),
            K::Undeleted => self.raw("UNDELETED"),
            K::Undraft => self.raw("UNDRAFT"),
            K::Unflagged => self.raw("UNFLAGGED"),
            K::Unseen => self.raw("UNSEEN"),
            K::Bcc(s) => word(self, "BCC", s),
            K::Body(s) => word(self, "BODY", s),
            K::Cc(s) => word(self, "CC", s),
            K::From(s) => word(self, "FROM", s),
            K::Subject(s) => word(self, "SUBJECT", s),
            K::Text(s) => word(self, "TEXT", s),
            K::To(s) => word(self, "TO", s),
            K::EmailId(s) => word(self, "EMAILID", s),
            K::ThreadId(s) => word(self, "THREADID", s),
            K::Keyword(f) => {
                self.raw("KEYWORD ");
                self.flag(f);
            }
            K::Unkeyword(f) => {
                self.raw("UNKEYWORD ");
                self.flag(f);
            }
            K::Header(name, value) => {
                word(self, "HEADER", name);
                self.raw(" ");
                self.astring(value);
            }
            K::Before(d) => dated(self, "BEFORE", *d),
            K::On(d) => dated(self, "ON", *d),
            K::Since(d) => dated(self, "SINCE", *d),
            K::SentBefore(d) => dated(self, "SENTBEFORE", *d),
            K::SentOn(d) => dated(self, "SENTON", *d),
            K::SentSince(d) => dated(self, "SENTSINCE", *d),
            K::SavedBefore(d) => dated(self, "SAVEDBEFORE", *d),
            K::SavedOn(d) => dated(self, "SAVEDON", *d),
            K::SavedSince(d) => dated(self, "SAVEDSINCE", *d),
            K::SaveDateSupported => self.raw("SAVEDATESUPPORTED"),
            K::Older(n) => {
                let _ = write!(self, "OLDER {n}");
            }
            K::Younger(n) => {
                let _ = write!(self, "YOUNGER {n}");
            }
            K::Larger(n) => {
                self.raw("LARGER ");
                self.number(n);
            }
            K::Smaller(n) => {
                self.raw("SMALLER ");
                self.number(n);
            }
            K::ModSeq(n) => {
                self.raw("MODSEQ ");
                self.number(n);
            }
            K::Uid(set) => {
                self.raw("UID ");
                self.sequence_set(set);
            }
            K::SequenceSet(set) => self.sequence_set(set),
            K::Not(k) => {
                self.raw("NOT ");
                self.search_key(k);
            }
            K::Or(a, b) => {
                self.raw("OR ");
                self.search_key(a);
                self.raw(" ");
                self.search_key(b);
            }
            K::And(keys) => self.list(keys, |w, k| w.search_key(k)),
        }
    }

    fn part_path(&mut self, part: &[u32]) {
        for (i, p) in part.iter().enumerate() {
            if i > 0 {
                self.raw(".");
            }
            self.number(p);
        }
    }

    fn partial(&mut self, partial: Option<(u32, u32)>) {
        if let Some((start, len)) = partial {
            let _ = write!(self, "<{start}.{len}>");
        }
    }

    fn section(&mut self, section: &Section) {
        self.raw("[");
        self.part_path(&section.part);
        if let Some(text) = &section.text {
            if !section.part.is_empty() {
                self.raw(".");
            }
            match text {
                SectionText::Header => self.raw("HEADER"),
                SectionText::Text => self.raw("TEXT"),
                SectionText::Mime => self.raw("MIME"),
                SectionText::HeaderFields(fields) => {
                    self.raw("HEADER.FIELDS ");
                    self.list(fields, |w, f| w.astring(f));
                }
                SectionText::HeaderFieldsNot(fields) => {
                    self.raw("HEADER.FIELDS.NOT ");
                    self.list(fields, |w, f| w.astring(f));
                }
            }
        }
        self.raw("]");
    }

    fn fetch_attr(&mut self, attr: &FetchAttr) {
        match attr {
            FetchAttr::Envelope => self.raw("ENVELOPE"),
            FetchAttr::Flags => self.raw("FLAGS"),
            FetchAttr::InternalDate => self.raw("INTERNALDATE"),
            FetchAttr::Rfc822 => self.raw("RFC822"),
            FetchAttr::Rfc822Header => self.raw("RFC822.HEADER"),
            FetchAttr::Rfc822Size => self.raw("RFC822.SIZE"),
            FetchAttr::Rfc822Text => self.raw("RFC822.TEXT"),
            FetchAttr::Body => self.raw("BODY"),
            FetchAttr::BodyStructure => self.raw("BODYSTRUCTURE"),
            FetchAttr::Uid => self.raw("UID"),
            FetchAttr::ModSeq => self.raw("MODSEQ"),
            FetchAttr::EmailId => self.raw("EMAILID"),
            FetchAttr::ThreadId => self.raw("THREADID"),
            FetchAttr::SaveDate => self.raw("SAVEDATE"),
            FetchAttr::Preview { lazy: false } => self.raw("PREVIEW"),
            FetchAttr::Preview { lazy: true } => self.raw("PREVIEW (LAZY)"),
            FetchAttr::BodySection { peek, section, partial } => {
                self.raw(if *peek { "BODY.PEEK" } else { "BODY" });
                self.section(section);
                self.partial(*partial);
            }
            FetchAttr::Binary { peek, part, partial } => {
                self.raw(if *peek { "BINARY.PEEK[" } else { "BINARY[" });
                self.part_path(part);
                self.raw("]");
                self.partial(*partial);
            }
            FetchAttr::BinarySize(part) => {
                self.raw("BINARY.SIZE[");
                self.part_path(part);
                self.raw("]");
            }
        }
    }

    fn status_item(&mut self, item: &StatusItem) {
        self.raw(match item {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::Size => "SIZE",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::AppendLimit => "APPENDLIMIT",
            StatusItem::MailboxId => "MAILBOXID",
        });
    }

    fn select(&mut self, mailbox: &str, condstore: bool, qresync: &Option<QresyncParams>) {
        self.astring(mailbox);
        if !condstore && qresync.is_none() {
            return;
        }
        self.raw(" (");
        if condstore {
            self.raw("CONDSTORE");
        }
        if let Some(q) = qresync {
            if condstore {
                self.raw(" ");
            }
            let _ = write!(self, "QRESYNC ({} {}", q.uid_validity, q.mod_seq);
            if let Some(known) = &q.known_uids {
                self.raw(" ");
                self.sequence_set(known);
            }
            if let Some((seqs, uids)) = &q.seq_match {
                self.raw(" (");
                self.sequence_set(seqs);
                self.raw(" ");
                self.sequence_set(uids);
                self.raw(")");
            }
            self.raw(")");
        }
        self.raw(")");
    }

    /// ` RETURN (...)` when given (the space before the next argument is the caller's).
    fn search_returns(&mut self, returns: &Option<Vec<SearchReturn>>) {
        if let Some(returns) = returns {
            self.raw(" RETURN ");
            self.list(returns, |w, r| match r {
                SearchReturn::Min => w.raw("MIN"),
                SearchReturn::Max => w.raw("MAX"),
                SearchReturn::All => w.raw("ALL"),
                SearchReturn::Count => w.raw("COUNT"),
                SearchReturn::Save => w.raw("SAVE"),
                SearchReturn::Update => w.raw("UPDATE"),
                SearchReturn::Context => w.raw("CONTEXT"),
                SearchReturn::Partial(p) => {
                    let _ = write!(w, "PARTIAL {p}");
                }
            });
        }
    }

    fn append_message(&mut self, message: &AppendMessage) {
        if !message.flags.is_empty() {
            self.list(&message.flags, |w, f| w.flag(&f.0));
            self.raw(" ");
        }
        if let Some(date) = message.date {
            self.date_time(date);
            self.raw(" ");
        }
        match &message.content {
            AppendContent::Literal { message, binary } => {
                if *binary {
                    self.raw("~");
                }
                literal(&mut self.0, message);
            }
            AppendContent::Catenate(parts) => {
                self.raw("CATENATE ");
                self.list(parts, |w, p| match p {
                    CatenatePart::Text(text) => {
                        w.raw("TEXT ");
                        literal(&mut w.0, text);
                    }
                    CatenatePart::Url(url) => {
                        w.raw("URL ");
                        w.astring(url);
                    }
                });
            }
        }
    }

    fn command(&mut self, command: &Command) {
        use Command as C;
        self.raw(command.name_on_wire());
        match command {
            C::Capability
            | C::Noop
            | C::Logout
            | C::StartTls
            | C::Namespace
            | C::Idle
            | C::Check
            | C::Close
            | C::Unselect => {}
            C::Authenticate { mechanism, initial } => {
                self.raw(" ");
                self.raw(mechanism);
                if let Some(initial) = initial {
                    self.raw(" ");
                    self.raw(initial);
                }
            }
            C::Login { user, password } => {
                self.raw(" ");
                self.astring(user);
                self.raw(" ");
                self.astring(password);
            }
            C::Enable(caps) => {
                for cap in caps {
                    self.raw(" ");
                    self.raw(cap);
                }
            }
            C::Select { mailbox, condstore, qresync, .. } => {
                self.raw(" ");
                self.select(mailbox, *condstore, qresync);
            }
            C::Create { mailbox, special_use } => {
                self.raw(" ");
                self.astring(mailbox);
                if !special_use.is_empty() {
                    self.raw(" (USE ");
                    self.list(special_use, |w, f| w.flag(f));
                    self.raw(")");
                }
            }
            C::Delete(mailbox)
            | C::Subscribe(mailbox)
            | C::Unsubscribe(mailbox)
            | C::GetQuota(mailbox)
            | C::GetQuotaRoot(mailbox) => {
                self.raw(" ");
                self.astring(mailbox);
            }
            C::SetQuota(root) => {
                self.raw(" ");
                self.astring(root);
                self.raw(" ()");
            }
            C::Rename { from, to } => {
                self.raw(" ");
                self.astring(from);
                self.raw(" ");
                self.astring(to);
            }
            C::List { selection, reference, patterns, returns, extended, .. } => {
                self.raw(" ");
                if *extended {
                    self.list(selection, |w, s| {
                        w.raw(match s {
                            ListSelect::Subscribed => "SUBSCRIBED",
                            ListSelect::Remote => "REMOTE",
                            ListSelect::RecursiveMatch => "RECURSIVEMATCH",
                            ListSelect::SpecialUse => "SPECIAL-USE",
                        })
                    });
                    self.raw(" ");
                }
                self.astring(reference);
                self.raw(" ");
                match patterns.as_slice() {
                    [one] if !*extended => self.list_mailbox(one),
                    _ => self.list(patterns, |w, p| w.list_mailbox(p)),
                }
                if !returns.is_empty() {
                    self.raw(" RETURN ");
                    self.list(returns, |w, r| match r {
                        ListReturn::Subscribed => w.raw("SUBSCRIBED"),
                        ListReturn::Children => w.raw("CHILDREN"),
                        ListReturn::SpecialUse => w.raw("SPECIAL-USE"),
                        ListReturn::Status(items) => {
                            w.raw("STATUS ");
                            w.list(items, |w, i| w.status_item(i));
                        }
                    });
                }
            }
            C::Status { mailbox, items } => {
                self.raw(" ");
                self.astring(mailbox);
                self.raw(" ");
                self.list(items, |w, i| w.status_item(i));
            }
            C::Append { mailbox, messages } => {
                self.raw(" ");
                self.astring(mailbox);
                for message in messages {
                    self.raw(" ");
                    self.append_message(message);
                }
            }
            C::Replace { target, mailbox, message, .. } => {
                let _ = write!(self, " {target} ");
                self.astring(mailbox);
                self.raw(" ");
                self.append_message(message);
            }
            C::Expunge { uids } => {
                if let Some(uids) = uids {
                    self.raw(" ");
                    self.sequence_set(uids);
                }
            }
            C::Search { charset, key, returns, .. } => {
                self.search_returns(returns);
                if let Some(charset) = charset {
                    self.raw(" CHARSET ");
                    self.astring(charset);
                }
                self.raw(" ");
                self.search_key(key);
            }
            C::Fetch { set, attrs, changed_since, vanished, partial, .. } => {
                self.raw(" ");
                self.sequence_set(set);
                self.raw(" ");
                self.list(attrs, |w, a| w.fetch_attr(a));
                let mut modifiers = Vec::new();
                if let Some(m) = changed_since {
                    modifiers.push(format!("CHANGEDSINCE {m}"));
                }
                if *vanished {
                    modifiers.push("VANISHED".to_string());
                }
                if let Some(p) = partial {
                    modifiers.push(format!("PARTIAL {p}"));
                }
                if !modifiers.is_empty() {
                    let _ = write!(self, " ({})", modifiers.join(" "));
                }
            }
            C::Store { set, mode, silent, flags, unchanged_since, .. } => {
                self.raw(" ");
                self.sequence_set(set);
                if let Some(m) = unchanged_since {
                    let _ = write!(self, " (UNCHANGEDSINCE {m})");
                }
                self.raw(match mode {
                    StoreMode::Replace => " ",
                    StoreMode::Add => " +",
                    StoreMode::Remove => " -",
                });
                self.raw(if *silent { "FLAGS.SILENT " } else { "FLAGS " });
                self.list(flags, |w, f| w.flag(&f.0));
            }
            C::Copy { set, mailbox, .. } | C::Move { set, mailbox, .. } => {
                self.raw(" ");
                self.sequence_set(set);
                self.raw(" ");
                self.astring(mailbox);
            }
            C::Id(fields) => {
                self.raw(" ");
                if fields.is_empty() {
                    self.raw("NIL");
                } else {
                    self.list(fields, |w, (k, v)| {
                        w.string(k.as_bytes());
                        w.raw(" ");
                        match v {
                            Some(v) => w.string(v.as_bytes()),
                            None => w.raw("NIL"),
                        }
                    });
                }
            }
            C::Sort { criteria, charset, key, returns, .. } => {
                self.search_returns(returns);
                self.raw(" ");
                self.list(criteria, |w, c| {
                    if c.reverse {
                        w.raw("REVERSE ");
                    }
                    w.raw(match c.key {
                        SortKey::Arrival => "ARRIVAL",
                        SortKey::Cc => "CC",
                        SortKey::Date => "DATE",
                        SortKey::From => "FROM",
                        SortKey::Size => "SIZE",
                        SortKey::Subject => "SUBJECT",
                        SortKey::To => "TO",
                        SortKey::DisplayFrom => "DISPLAYFROM",
                        SortKey::DisplayTo => "DISPLAYTO",
                    });
                });
                self.raw(" ");
                self.astring(charset);
                self.raw(" ");
                self.search_key(key);
            }
            C::Thread { algorithm, charset, key, .. } => {
                self.raw(match algorithm {
                    ThreadAlgorithm::OrderedSubject => " ORDEREDSUBJECT ",
                    ThreadAlgorithm::References => " REFERENCES ",
                });
                self.astring(charset);
                self.raw(" ");
                self.search_key(key);
            }
            C::Compress(algorithm) => {
                self.raw(" ");
                self.raw(algorithm);
            }
            C::SetAcl { mailbox, identifier, mode, rights } => {
                self.raw(" ");
                self.astring(mailbox);
                self.raw(" ");
                self.astring(identifier);
                self.raw(" ");
                let sign = match mode {
                    StoreMode::Replace => "",
                    StoreMode::Add => "+",
                    StoreMode::Remove => "-",
                };
                self.astring(&format!("{sign}{rights}"));
            }
            C::DeleteAcl { mailbox, identifier } | C::ListRights { mailbox, identifier } => {
                self.raw(" ");
                self.astring(mailbox);
                self.raw(" ");
                self.astring(identifier);
            }
            C::GetMetadata { mailbox, entries, max_size, depth } => {
                let mut options = Vec::new();
                if let Some(n) = max_size {
                    options.push(format!("MAXSIZE {n}"));
                }
                match depth {
                    MetadataDepth::Zero => {}
                    MetadataDepth::One => options.push("DEPTH 1".into()),
                    MetadataDepth::Infinity => options.push("DEPTH infinity".into()),
                }
                if !options.is_empty() {
                    let _ = write!(self, " ({})", options.join(" "));
                }
                self.raw(" ");
                self.astring(mailbox);
                self.raw(" ");
                self.list(entries, |w, e| w.astring(e));
            }
            C::SetMetadata { mailbox, entries } => {
                self.raw(" ");
                self.astring(mailbox);
                self.raw(" ");
                self.list(entries, |w, (entry, value)| {
                    w.astring(entry);
                    w.raw(" ");
                    match value {
                        None => w.raw("NIL"),
                        Some(v) => literal(&mut w.0, v),
                    }
                });
            }
            C::GetAcl(mailbox) | C::MyRights(mailbox) => {
                self.raw(" ");
                self.astring(mailbox);
            }
            C::CancelUpdate(tags) => {
                for tag in tags {
                    self.raw(" ");
                    self.string(tag.as_bytes());
                }
            }
            C::Notify(None) => self.raw(" NONE"),
            C::Notify(Some(set)) => {
                self.raw(if set.status { " SET STATUS" } else { " SET" });
                for group in &set.groups {
                    self.raw(" (");
                    match &group.filter {
                        NotifyFilter::Selected => self.raw("SELECTED"),
                        NotifyFilter::SelectedDelayed => self.raw("SELECTED-DELAYED"),
                        NotifyFilter::Inboxes => self.raw("INBOXES"),
                        NotifyFilter::Personal => self.raw("PERSONAL"),
                        NotifyFilter::Subscribed => self.raw("SUBSCRIBED"),
                        NotifyFilter::Subtree(names) | NotifyFilter::Mailboxes(names) => {
                            self.raw(if matches!(group.filter, NotifyFilter::Subtree(_)) {
                                "SUBTREE "
                            } else {
                                "MAILBOXES "
                            });
                            self.list(names, |w, n| w.astring(n));
                        }
                    }
                    self.raw(" ");
                    if group.events.is_empty() {
                        self.raw("NONE");
                    } else {
                        self.list(&group.events, |w, e| {
                            w.raw(e.name());
                            if let NotifyEvent::MessageNew(attrs) = e
                                && !attrs.is_empty()
                            {
                                w.raw(" ");
                                w.list(attrs, |w, a| w.fetch_attr(a));
                            }
                        });
                    }
                    self.raw(")");
                }
            }
        }
    }
}

impl Command {
    /// The command as it starts on the wire: [`Command::name`] with `UID ` before the UID
    /// forms.
    fn name_on_wire(&self) -> &'static str {
        let uid = matches!(
            self,
            Command::Search { uid: true, .. }
                | Command::Fetch { uid: true, .. }
                | Command::Store { uid: true, .. }
                | Command::Copy { uid: true, .. }
                | Command::Move { uid: true, .. }
                | Command::Sort { uid: true, .. }
                | Command::Thread { uid: true, .. }
                | Command::Replace { uid: true, .. }
                | Command::Expunge { uids: Some(_) }
        );
        if !uid {
            return self.name();
        }
        match self {
            Command::Search { .. } => "UID SEARCH",
            Command::Fetch { .. } => "UID FETCH",
            Command::Store { .. } => "UID STORE",
            Command::Copy { .. } => "UID COPY",
            Command::Move { .. } => "UID MOVE",
            Command::Sort { .. } => "UID SORT",
            Command::Thread { .. } => "UID THREAD",
            Command::Replace { .. } => "UID REPLACE",
            _ => "UID EXPUNGE",
        }
    }
}

#[cfg(test)]
mod tests;
