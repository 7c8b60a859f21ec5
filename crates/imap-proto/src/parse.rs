//! Parsing one framed command (see [`crate::CommandFramer`]) into a [`Command`], following
//! the ABNF of RFC 9051 §9 and of the extensions. Recursion (search keys) is depth-bounded
//! and list lengths are bounded, so hostile input cannot exhaust the stack or memory.

use crate::types::*;

const MAX_DEPTH: usize = 32;
const MAX_ITEMS: usize = 10_000;

/// Why a command could not be parsed. `tag` is known when the line started with one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub tag: Option<String>,
    pub message: String,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub tag: String,
    pub command: Command,
}

type R<T> = Result<T, String>;

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    depth: usize,
}

fn is_atom_char(c: u8) -> bool {
    c > 0x20 && c < 0x7f && !b"(){%*\"\\]".contains(&c)
}

fn is_astring_char(c: u8) -> bool {
    is_atom_char(c) || c == b']'
}

fn is_list_char(c: u8) -> bool {
    is_astring_char(c) || c == b'%' || c == b'*'
}

fn is_tag_char(c: u8) -> bool {
    is_astring_char(c) && c != b'+'
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn eof(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn expect(&mut self, c: u8) -> R<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at position {}", c as char, self.pos))
        }
    }

    fn sp(&mut self) -> R<()> {
        self.expect(b' ')
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.b[start..self.pos]
    }

    fn end(&self) -> R<()> {
        if self.eof() { Ok(()) } else { Err(format!("unexpected characters at position {}", self.pos)) }
    }

    /// Case-insensitive keyword.
    fn keyword(&mut self, word: &str) -> bool {
        let w = word.as_bytes();
        let ok = self.b.get(self.pos..self.pos + w.len()).is_some_and(|s| s.eq_ignore_ascii_case(w));
        // A keyword must not be followed by more atom characters.
        if ok && !self.b.get(self.pos + w.len()).is_some_and(|&c| is_atom_char(c)) {
            self.pos += w.len();
            return true;
        }
        false
    }

    fn atom(&mut self) -> R<String> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            return Err(format!("expected an atom at position {}", self.pos));
        }
        Ok(String::from_utf8_lossy(a).into_owned())
    }

    fn number(&mut self) -> R<u64> {
        let d = self.take_while(|c| c.is_ascii_digit());
        if d.is_empty() || d.len() > 20 {
            return Err(format!("expected a number at position {}", self.pos));
        }
        std::str::from_utf8(d).ok().and_then(|s| s.parse().ok()).ok_or_else(|| "number too large".to_string())
    }

    fn number32(&mut self) -> R<u32> {
        u32::try_from(self.number()?).map_err(|_| "number too large".to_string())
    }

    fn nz_number(&mut self) -> R<u32> {
        match self.number32()? {
            0 => Err("zero is not allowed here".into()),
            n => Ok(n),
        }
    }

    fn quoted(&mut self) -> R<Vec<u8>> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return Err("bad escape in quoted string".into()),
                    }
                }
                Some(b'\r' | b'\n' | 0) => return Err("CR, LF or NUL in quoted string".into()),
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn literal(&mut self) -> R<Vec<u8>> {
        if self.peek() == Some(b'~') {
            self.pos += 1;
        }
        self.expect(b'{')?;
        let n = self.number()? as usize;
        if self.peek() == Some(b'+') {
            self.pos += 1;
        }
        self.expect(b'}')?;
        self.expect(b'\r')?;
        self.expect(b'\n')?;
        let data = self.b.get(self.pos..self.pos + n).ok_or("literal shorter than announced")?;
        self.pos += n;
        Ok(data.to_vec())
    }

    /// A literal (`{`) or a literal8 (`~{`) starts here; a `~` alone is an ATOM-CHAR.
    fn at_literal(&self) -> bool {
        match self.peek() {
            Some(b'{') => true,
            Some(b'~') => self.b.get(self.pos + 1) == Some(&b'{'),
            _ => false,
        }
    }

    fn string(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            _ if self.at_literal() => self.literal(),
            _ => Err(format!("expected a string at position {}", self.pos)),
        }
    }

    fn astring_bytes(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.string(),
            _ if self.at_literal() => self.string(),
            _ => {
                let a = self.take_while(is_astring_char);
                if a.is_empty() {
                    return Err(format!("expected a string at position {}", self.pos));
                }
                Ok(a.to_vec())
            }
        }
    }

    fn astring(&mut self) -> R<String> {
        String::from_utf8(self.astring_bytes()?).map_err(|_| "string is not valid UTF-8".to_string())
    }

    fn nstring(&mut self) -> R<Option<String>> {
        if self.keyword("NIL") {
            return Ok(None);
        }
        let s = self.string()?;
        Ok(Some(String::from_utf8(s).map_err(|_| "string is not valid UTF-8")?))
    }

    fn list_mailbox(&mut self) -> R<String> {
        match self.peek() {
            Some(b'"') => self.astring(),
            _ if self.at_literal() => self.astring(),
            _ => {
                let a = self.take_while(is_list_char);
                if a.is_empty() {
                    return Err("expected a mailbox pattern".into());
                }
                Ok(String::from_utf8_lossy(a).into_owned())
            }
        }
    }

    /// `(a b c)` with `f` for each element.
    fn paren_list<T>(&mut self, mut f: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(out);
        }
        loop {
            out.push(f(self)?);
            if out.len() > MAX_ITEMS {
                return Err("too many items in list".into());
            }
            match self.peek() {
                Some(b' ') => self.pos += 1,
                Some(b')') => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ => return Err(format!("expected SP or ) at position {}", self.pos)),
            }
        }
    }

    fn seq_number(&mut self) -> R<SeqNumber> {
        if self.peek() == Some(b'*') {
            self.pos += 1;
            return Ok(SeqNumber::Last);
        }
        Ok(SeqNumber::Value(self.nz_number()?))
    }

    fn sequence_set(&mut self) -> R<SequenceSet> {
        if self.peek() == Some(b'$') {
            self.pos += 1;
            return Ok(SequenceSet::Saved);
        }
        let mut ranges = Vec::new();
        loop {
            let a = self.seq_number()?;
            let b = if self.peek() == Some(b':') {
                self.pos += 1;
                self.seq_number()?
            } else {
                a
            };
            ranges.push(SeqRange(a, b));
            if ranges.len() > MAX_ITEMS {
                return Err("sequence set too long".into());
            }
            if self.peek() == Some(b',') {
                self.pos += 1;
            } else {
                return Ok(SequenceSet::Ranges(ranges));
            }
        }
    }

    fn flag(&mut self) -> R<Flag> {
        if self.peek() == Some(b'\\') {
            self.pos += 1;
            if self.peek() == Some(b'*') {
                return Err("\\* is not a flag".into());
            }
            let a = self.atom()?;
            let canonical = match a.to_ascii_lowercase().as_str() {
                "seen" => "\\Seen".to_string(),
                "answered" => "\\Answered".to_string(),
                "flagged" => "\\Flagged".to_string(),
                "deleted" => "\\Deleted".to_string(),
                "draft" => "\\Draft".to_string(),
                "recent" => return Err("\\Recent cannot be set".into()),
                _ => format!("\\{a}"),
            };
            return Ok(Flag(canonical));
        }
        Ok(Flag(self.atom()?))
    }

    fn flag_list(&mut self) -> R<Vec<Flag>> {
        self.paren_list(|c| c.flag())
    }

    fn date(&mut self) -> R<Date> {
        let quoted = self.peek() == Some(b'"');
        if quoted {
            self.pos += 1;
        }
        let day = self.number32()?;
        self.expect(b'-')?;
        let month = self.month()?;
        self.expect(b'-')?;
        let year = self.number32()?;
        if quoted {
            self.expect(b'"')?;
        }
        if !(1..=31).contains(&day) || !(1..=9999).contains(&year) {
            return Err("invalid date".into());
        }
        Ok(Date { year: year as u16, month, day: day as u8 })
    }

    fn month(&mut self) -> R<u8> {
        const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
        let m = self.b.get(self.pos..self.pos + 3).ok_or("expected a month")?;
        let m = String::from_utf8_lossy(m).to_ascii_lowercase();
        let i = MONTHS.iter().position(|x| *x == m).ok_or("expected a month")?;
        self.pos += 3;
        Ok(i as u8 + 1)
    }

    /// `"17-Jul-1996 02:44:25 -0700"`
    fn date_time(&mut self) -> R<DateTime> {
        self.expect(b'"')?;
        if self.peek() == Some(b' ') {
            self.pos += 1;
        }
        let day = self.number32()?;
        self.expect(b'-')?;
        let month = self.month()?;
        self.expect(b'-')?;
        let year = self.number32()?;
        self.sp()?;
        let h = self.number32()?;
        self.expect(b':')?;
        let mi = self.number32()?;
        self.expect(b':')?;
        let s = self.number32()?;
        self.sp()?;
        let sign = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err("expected a time zone".into()),
        };
        self.pos += 1;
        let zone = self.take_while(|c| c.is_ascii_digit());
        if zone.len() != 4 {
            return Err("expected a four-digit time zone".into());
        }
        let zone: i32 = std::str::from_utf8(zone).ok().and_then(|z| z.parse().ok()).ok_or("bad zone")?;
        self.expect(b'"')?;
        if !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 || !(1..=9999).contains(&year) || zone % 100 > 59 {
            return Err("invalid date-time".into());
        }
        // A leap second (:60) counts as the second before it, so that the instant stays in
        // the day, month and year the client named.
        let s = s.min(59);
        let zone_minutes = sign * ((zone / 100) * 60 + zone % 100);
        let days = days_from_civil(year as i64, month as i64, day as i64);
        let unix = days * 86400 + (h * 3600 + mi * 60 + s) as i64 - zone_minutes as i64 * 60;
        Ok(DateTime { unix, zone_minutes })
    }

    fn search_key(&mut self) -> R<SearchKey> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("search keys nested too deeply".into());
        }
        let key = self.search_key_inner();
        self.depth -= 1;
        key
    }

    fn search_key_inner(&mut self) -> R<SearchKey> {
        match self.peek() {
            Some(b'(') => {
                let keys = self.paren_list(|c| c.search_key())?;
                if keys.is_empty() {
                    return Err("empty search key list".into());
                }
                return Ok(SearchKey::And(keys));
            }
            Some(b'0'..=b'9' | b'*' | b'$') => return Ok(SearchKey::SequenceSet(self.sequence_set()?)),
            _ => {}
        }
        let word = self.atom()?.to_ascii_uppercase();
        let string_arg = |c: &mut Self| -> R<String> {
            c.sp()?;
            c.astring_bytes().map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        Ok(match word.as_str() {
            "ALL" => SearchKey::All,
            "ANSWERED" => SearchKey::Answered,
            "DELETED" => SearchKey::Deleted,
            "DRAFT" => SearchKey::Draft,
            "FLAGGED" => SearchKey::Flagged,
            "NEW" => SearchKey::New,
            "OLD" => SearchKey::Old,
            "RECENT" => SearchKey::Recent,
            "SEEN" => SearchKey::Seen,
            "UNANSWERED" => SearchKey::Unanswered,
            "UNDELETED" => SearchKey::Undeleted,
            "UNDRAFT" => SearchKey::Undraft,
            "UNFLAGGED" => SearchKey::Unflagged,
            "UNSEEN" => SearchKey::Unseen,
            "BCC" => SearchKey::Bcc(string_arg(self)?),
            "BODY" => SearchKey::Body(string_arg(self)?),
            "CC" => SearchKey::Cc(string_arg(self)?),
            "FROM" => SearchKey::From(string_arg(self)?),
            "SUBJECT" => SearchKey::Subject(string_arg(self)?),
            "TEXT" => SearchKey::Text(string_arg(self)?),
            "TO" => SearchKey::To(string_arg(self)?),
            "KEYWORD" => {
                self.sp()?;
                SearchKey::Keyword(self.flag()?.0)
            }
            "UNKEYWORD" => {
                self.sp()?;
                SearchKey::Unkeyword(self.flag()?.0)
            }
            "HEADER" => {
                let name = string_arg(self)?;
                let value = string_arg(self)?;
                SearchKey::Header(name, value)
            }
            "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
                self.sp()?;
                let d = self.date()?;
                match word.as_str() {
                    "BEFORE" => SearchKey::Before(d),
                    "ON" => SearchKey::On(d),
                    "SINCE" => SearchKey::Since(d),
                    "SENTBEFORE" => SearchKey::SentBefore(d),
                    "SENTON" => SearchKey::SentOn(d),
                    _ => SearchKey::SentSince(d),
                }
            }
            "LARGER" => {
                self.sp()?;
                SearchKey::Larger(self.number()?)
            }
            "SMALLER" => {
                self.sp()?;
                SearchKey::Smaller(self.number()?)
            }
            "UID" => {
                self.sp()?;
                SearchKey::Uid(self.sequence_set()?)
            }
            "NOT" => {
                self.sp()?;
                SearchKey::Not(Box::new(self.search_key()?))
            }
            "OR" => {
                self.sp()?;
                let a = self.search_key()?;
                self.sp()?;
                let b = self.search_key()?;
                SearchKey::Or(Box::new(a), Box::new(b))
            }
            "MODSEQ" => {
                self.sp()?;
                // RFC 7162: optional entry name and type, ignored.
                if self.peek() == Some(b'"') {
                    self.quoted()?;
                    self.sp()?;
                    self.atom()?;
                    self.sp()?;
                }
                SearchKey::ModSeq(self.number()?)
            }
            "OLDER" => {
                self.sp()?;
                SearchKey::Older(self.nz_number()?)
            }
            "YOUNGER" => {
                self.sp()?;
                SearchKey::Younger(self.nz_number()?)
            }
            "SAVEDBEFORE" | "SAVEDON" | "SAVEDSINCE" => {
                self.sp()?;
                let d = self.date()?;
                match word.as_str() {
                    "SAVEDBEFORE" => SearchKey::SavedBefore(d),
                    "SAVEDON" => SearchKey::SavedOn(d),
                    _ => SearchKey::SavedSince(d),
                }
            }
            "SAVEDATESUPPORTED" => SearchKey::SaveDateSupported,
            "EMAILID" => SearchKey::EmailId(string_arg(self)?),
            "THREADID" => SearchKey::ThreadId(string_arg(self)?),
            other => return Err(format!("unknown search key {other}")),
        })
    }

    /// Search keys until the end of the command (several keys mean AND).
    fn search_program(&mut self) -> R<SearchKey> {
        let mut keys = vec![self.search_key()?];
        while self.peek() == Some(b' ') {
            self.pos += 1;
            keys.push(self.search_key()?);
            if keys.len() > MAX_ITEMS {
                return Err("too many search keys".into());
            }
        }
        self.end()?;
        Ok(if keys.len() == 1 { keys.remove(0) } else { SearchKey::And(keys) })
    }

    fn part_path(&mut self) -> R<Vec<u32>> {
        let mut part = Vec::new();
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            part.push(self.nz_number()?);
            if part.len() > 64 {
                return Err("part path too deep".into());
            }
            if self.peek() == Some(b'.') && self.b.get(self.pos + 1).is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(part)
    }

    fn section(&mut self) -> R<Section> {
        self.expect(b'[')?;
        let part = self.part_path()?;
        if !part.is_empty() && self.peek() == Some(b'.') {
            self.pos += 1;
        }
        let text = if self.peek() == Some(b']') {
            None
        } else {
            let word = self.take_while(|c| c.is_ascii_alphabetic() || c == b'.');
            let word = String::from_utf8_lossy(word).to_ascii_uppercase();
            Some(match word.as_str() {
                "HEADER" => SectionText::Header,
                "TEXT" => SectionText::Text,
                "MIME" if !part.is_empty() => SectionText::Mime,
                "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
                    self.sp()?;
                    let fields = self.paren_list(|c| c.astring())?;
                    if fields.is_empty() {
                        return Err("empty header list".into());
                    }
                    if word == "HEADER.FIELDS" {
                        SectionText::HeaderFields(fields)
                    } else {
                        SectionText::HeaderFieldsNot(fields)
                    }
                }
                _ => return Err(format!("bad section text {word}")),
            })
        };
        self.expect(b']')?;
        Ok(Section { part, text })
    }

    fn partial(&mut self) -> R<Option<(u32, u32)>> {
        if self.peek() != Some(b'<') {
            return Ok(None);
        }
        self.pos += 1;
        let start = self.number32()?;
        self.expect(b'.')?;
        let len = self.nz_number()?;
        self.expect(b'>')?;
        Ok(Some((start, len)))
    }

    /// RFC 9394 `partial-range`: `a:b` or `-a:-b`, either way round.
    fn partial_range(&mut self) -> R<PartialRange> {
        let from_end = self.peek() == Some(b'-');
        if from_end {
            self.pos += 1;
        }
        let a = self.nz_number()?;
        self.expect(b':')?;
        if from_end {
            self.expect(b'-')?;
        }
        let b = self.nz_number()?;
        Ok(PartialRange { from_end, low: a.min(b), high: a.max(b) })
    }

    fn fetch_att(&mut self) -> R<Vec<FetchAttr>> {
        let start = self.pos;
        let word = self.take_while(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
        let word = String::from_utf8_lossy(word).to_ascii_uppercase();
        let one = |a| Ok(vec![a]);
        match word.as_str() {
            "ALL" => Ok(vec![FetchAttr::Flags, FetchAttr::InternalDate, FetchAttr::Rfc822Size, FetchAttr::Envelope]),
            "FAST" => Ok(vec![FetchAttr::Flags, FetchAttr::InternalDate, FetchAttr::Rfc822Size]),
            "FULL" => Ok(vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
                FetchAttr::Envelope,
                FetchAttr::Body,
            ]),
            "ENVELOPE" => one(FetchAttr::Envelope),
            "FLAGS" => one(FetchAttr::Flags),
            "INTERNALDATE" => one(FetchAttr::InternalDate),
            "RFC822" => one(FetchAttr::Rfc822),
            "RFC822.HEADER" => one(FetchAttr::Rfc822Header),
            "RFC822.SIZE" => one(FetchAttr::Rfc822Size),
            "RFC822.TEXT" => one(FetchAttr::Rfc822Text),
            "BODYSTRUCTURE" => one(FetchAttr::BodyStructure),
            "UID" => one(FetchAttr::Uid),
            "MODSEQ" => one(FetchAttr::ModSeq),
            "EMAILID" => one(FetchAttr::EmailId),
            "THREADID" => one(FetchAttr::ThreadId),
            "SAVEDATE" => one(FetchAttr::SaveDate),
            "PREVIEW" => {
                // RFC 8970 §3: PREVIEW [SP "(" "LAZY" ")"].
                let mut lazy = false;
                if self.b.get(self.pos..self.pos + 2) == Some(b" (") {
                    self.pos += 1;
                    for m in self.paren_list(|c| c.atom())? {
                        if !m.eq_ignore_ascii_case("LAZY") {
                            return Err(format!("unknown PREVIEW modifier {m}"));
                        }
                        lazy = true;
                    }
                }
                one(FetchAttr::Preview { lazy })
            }
            "BODY" | "BODY.PEEK" => {
                if self.peek() != Some(b'[') {
                    if word == "BODY" {
                        return one(FetchAttr::Body);
                    }
                    return Err("BODY.PEEK needs a section".into());
                }
                let section = self.section()?;
                let partial = self.partial()?;
                one(FetchAttr::BodySection { peek: word == "BODY.PEEK", section, partial })
            }
            "BINARY" | "BINARY.PEEK" | "BINARY.SIZE" => {
                self.expect(b'[')?;
                let part = self.part_path()?;
                self.expect(b']')?;
                if word == "BINARY.SIZE" {
                    return one(FetchAttr::BinarySize(part));
                }
                let partial = self.partial()?;
                one(FetchAttr::Binary { peek: word == "BINARY.PEEK", part, partial })
            }
            _ => Err(format!("unknown fetch attribute at position {start}")),
        }
    }

    fn status_item(&mut self) -> R<StatusItem> {
        let a = self.atom()?.to_ascii_uppercase();
        Ok(match a.as_str() {
            "MESSAGES" => StatusItem::Messages,
            "RECENT" => StatusItem::Recent,
            "UIDNEXT" => StatusItem::UidNext,
            "UIDVALIDITY" => StatusItem::UidValidity,
            "UNSEEN" => StatusItem::Unseen,
            "DELETED" => StatusItem::Deleted,
            "SIZE" => StatusItem::Size,
            "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            "APPENDLIMIT" => StatusItem::AppendLimit,
            "MAILBOXID" => StatusItem::MailboxId,
            other => return Err(format!("unknown status item {other}")),
        })
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// A section spec as in `BODY[spec]` (`1.2.HEADER.FIELDS (From)`), without the brackets:
/// what an IMAP URL's `;SECTION=` holds (RFC 5092 §5).
pub fn parse_section_spec(spec: &str) -> Result<Section, String> {
    let wrapped = format!("[{spec}]");
    let mut c = Cursor { b: wrapped.as_bytes(), pos: 0, depth: 0 };
    let section = c.section()?;
    c.end()?;
    Ok(section)
}

/// Parses a framed command.
pub fn parse_command(bytes: &[u8]) -> Result<Tagged, ParseError> {
    let mut c = Cursor { b: bytes, pos: 0, depth: 0 };
    let tag = c.take_while(is_tag_char);
    if tag.is_empty() || c.peek() != Some(b' ') {
        return Err(ParseError { tag: None, message: "missing tag".into() });
    }
    let tag = String::from_utf8_lossy(tag).into_owned();
    c.pos += 1;
    parse_body(&mut c)
        .map(|command| Tagged { tag: tag.clone(), command })
        .map_err(|message| ParseError { tag: Some(tag), message })
}

fn parse_body(c: &mut Cursor<'_>) -> R<Command> {
    let name = c.atom()?.to_ascii_uppercase();
    let uid = name == "UID";
    let name = if uid {
        c.sp()?;
        let n = c.atom()?.to_ascii_uppercase();
        if !["COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE", "SORT", "THREAD", "REPLACE"].contains(&n.as_str()) {
            return Err(format!("UID {n} is not a command"));
        }
        n
    } else {
        name
    };
    let no_args = |c: &mut Cursor<'_>, cmd: Command| c.end().map(|_| cmd);
    match name.as_str() {
        "CAPABILITY" => no_args(c, Command::Capability),
        "NOOP" => no_args(c, Command::Noop),
        "LOGOUT" => no_args(c, Command::Logout),
        "STARTTLS" => no_args(c, Command::StartTls),
        "NAMESPACE" => no_args(c, Command::Namespace),
        "IDLE" => no_args(c, Command::Idle),
        "CHECK" => no_args(c, Command::Check),
        "CLOSE" => no_args(c, Command::Close),
        "UNSELECT" => no_args(c, Command::Unselect),
        "AUTHENTICATE" => authenticate(c),
        "LOGIN" => login(c),
        "ENABLE" => enable(c),
        "SELECT" | "EXAMINE" => select(c, &name),
        "CREATE" => create(c),
        "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" | "GETQUOTAROOT" | "GETQUOTA" => mailbox_command(c, &name),
        "SETQUOTA" => set_quota(c),
        "RENAME" => rename(c),
        "LIST" | "LSUB" => list(c, &name),
        "STATUS" => status(c),
        "APPEND" => append(c),
        "REPLACE" => replace(c, uid),
        "EXPUNGE" => expunge(c, uid),
        "SEARCH" => search(c, uid),
        "FETCH" => fetch(c, uid),
        "STORE" => store(c, uid),
        "COPY" | "MOVE" => copy_or_move(c, uid, &name),
        "ID" => id(c),
        "SORT" => sort(c, uid),
        "THREAD" => thread(c, uid),
        "COMPRESS" => compress(c),
        "SETACL" => set_acl(c),
        "GETMETADATA" => get_metadata(c),
        "SETMETADATA" => set_metadata(c),
        "NOTIFY" => notify(c),
        "CANCELUPDATE" => {
            // RFC 5267 §4.5: one or more quoted tags.
            let mut tags = Vec::new();
            while !c.eof() {
                c.sp()?;
                tags.push(String::from_utf8(c.string()?).map_err(|_| "a tag is ASCII".to_string())?);
                if tags.len() > MAX_ITEMS {
                    return Err("too many tags".into());
                }
            }
            if tags.is_empty() {
                return Err("CANCELUPDATE needs a tag".into());
            }
            Ok(Command::CancelUpdate(tags))
        }
        "DELETEACL" | "LISTRIGHTS" => mailbox_and_identifier(c, &name),
        "GETACL" | "MYRIGHTS" => {
            c.sp()?;
            let mailbox = c.astring()?;
            c.end()?;
            Ok(if name == "GETACL" { Command::GetAcl(mailbox) } else { Command::MyRights(mailbox) })
        }
        other => Err(format!("unknown command {other}")),
    }
}

/// `AUTHENTICATE mechanism [initial-response]` (RFC 4959 SASL-IR).
fn authenticate(c: &mut Cursor<'_>) -> R<Command> {
    c.sp()?;
    let mechanism = c.atom()?.to_ascii_uppercase();
    let initial = if c.peek() == Some(b' ') {
        c.pos += 1;
        let r = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
        if r.is_empty() {
            return Err("bad initial response".into());
        }
        Some(String::from_utf8_lossy(r).into_owned())
    } else {
        None
    };
    c.end()?;
    Ok(Command::Authenticate { mechanism, initial })
}

/// `LOGIN user password`.
fn login(c: &mut Cursor<'_>) -> R<Command> {
    c.sp()?;
    let user = c.astring()?;
    c.sp()?;
    let password = c.astring()?;
    c.end()?;
    Ok(Command::Login { user, password })
}

/// `ENABLE capability...` (RFC 5161).
fn enable(c: &mut Cursor<'_>) -> R<Command> {
    let mut caps = Vec::new();
    while c.peek() == Some(b' ') {
        c.pos += 1;
        caps.push(c.atom()?.to_ascii_uppercase());
    }
    if caps.is_empty() {
        return Err("ENABLE needs at least one capability".into());
    }
    c.end()?;
    Ok(Command::Enable(caps))
}

/// `SELECT`/`EXAMINE mailbox [(CONDSTORE | QRESYNC (...))]` (RFC 7162 §3.2.5).
fn select(c: &mut Cursor<'_>, name: &str) -> R<Command> {
    c.sp()?;
    let mailbox = c.astring()?;
    let mut condstore = false;
    let mut qresync = None;
    if c.peek() == Some(b' ') {
        c.pos += 1;
        c.paren_list(|c| {
            let p = c.atom()?.to_ascii_uppercase();
            match p.as_str() {
                "CONDSTORE" => condstore = true,
                "QRESYNC" => {
                    c.sp()?;
                    c.expect(b'(')?;
                    let uid_validity = c.nz_number()?;
                    c.sp()?;
                    let mod_seq = c.number()?;
                    let mut known_uids = None;
                    let mut seq_match = None;
                    if c.peek() == Some(b' ') {
                        c.pos += 1;
                        if c.peek() != Some(b'(') {
                            known_uids = Some(c.sequence_set()?);
                            if c.peek() == Some(b' ') {
                                c.pos += 1;
                            }
                        }
                        if c.peek() == Some(b'(') {
                            c.pos += 1;
                            let seqs = c.sequence_set()?;
                            c.sp()?;
                            let uids = c.sequence_set()?;
                            c.expect(b')')?;
                            seq_match = Some((seqs, uids));
                        }
                    }
                    c.expect(b')')?;
                    qresync = Some(QresyncParams { uid_validity, mod_seq, known_uids, seq_match });
                }
                other => return Err(format!("unknown SELECT parameter {other}")),
            }
            Ok(())
        })?;
    }
    c.end()?;
    Ok(Command::Select { mailbox, read_only: name == "EXAMINE", condstore, qresync })
}

/// `CREATE mailbox [(USE (special-use...))]` (RFC 6154 §5.2).
fn create(c: &mut Cursor<'_>) -> R<Command> {
    c.sp()?;
    let mailbox = c.astring()?;
    let mut special_use = Vec::new();
    if c.peek() == Some(b' ') {
        c.pos += 1;
        c.paren_list(|c| {
            let p = c.atom()?.to_ascii_uppercase();
            if p != "USE" {
                return Err(format!("unknown CREATE parameter {p}"));
            }
            c.sp()?;
            special_use = c.paren_list(|c| c.flag().map(|f| f.0))?;
            Ok(())
        })?;
    }
    c.end()?;
    Ok(Command::Create { mailbox, special_use })
}

/// The commands whose one argument is a mailbox (or quota root).
fn mailbox_command(c: &mut Cursor<'_>, name: &str) -> R<Command> {
    c.sp()?;
    let mailbox = c.astring()?;
    c.end()?;
    Ok(match name {
        "DELETE" => Command::Delete(mailbox),
        "SUBSCRIBE" => Command::Subscribe(mailbox),
        "UNSUBSCRIBE" => Command::Unsubscribe(mailbox),
        "GETQUOTA" => Command::GetQuota(mailbox),
        _ => Command::GetQuotaRoot(mailbox),
    })
}

/// `SETQUOTA root (resource limit ...)` (RFC 9208): only the root is kept.
fn set_quota(c: &mut Cursor<'_>) -> R<Command> {
    c.sp()?;
    let root = c.astring()?;
    c.sp()?;
    c.paren_list(|c| {
        c.atom()?;
        c.sp()?;
        c.number()
    })?;
    c.end()?;
    Ok(Command::SetQuota(root))
}

/// `RENAME from to`.
fn rename(c: &mut Cursor<'_>) -> R<Command> {
    c.sp()?;
    let from = c.astring()?;
    c.sp()?;
    let to = c.astring()?;
    c.end()?;
    Ok(Command::Rename { from, to })
}

/// `LIST` in its basic and extended forms (RFC 5258), and `LSUB`.
fn list(c: &mut Cursor<'_>, name: &str) -> R<Command> {
    c.sp()?;
    let lsub = name == "LSUB";
    let mut selection = Vec::new();
    let mut extended = false;
    if !lsub && c.peek() == Some(b'(') {
        extended = true;
        selection = c.paren_list(|c| {
            let o = c.atom()?.to_ascii_uppercase();
            Ok(match o.as_str() {
                "SUBSCRIBED" => ListSelect::Subscribed,
                "REMOTE" => ListSelect::Remote,
                "RECURSIVEMATCH" => ListSelect::RecursiveMatch,
                "SPECIAL-USE" => ListSelect::SpecialUse,
                other => return Err(format!("unknown LIST selection option {other}")),
            })
        })?;
        c.sp()?;
    }
    let reference = c.astring_bytes().map(|b| String::from_utf8_lossy(&b).into_owned())?;
    c.sp()?;
    let patterns = if !lsub && c.peek() == Some(b'(') {
        extended = true;
        c.paren_list(|c| c.list_mailbox())?
    } else {
        vec![c.list_mailbox()?]
    };
    let mut returns = Vec::new();
    if !lsub && c.peek() == Some(b' ') {
        c.pos += 1;
        if !c.keyword("RETURN") {
            return Err("expected RETURN".into());
        }
        extended = true;
        c.sp()?;
        returns = c.paren_list(|c| {
            let o = c.atom()?.to_ascii_uppercase();
            Ok(match o.as_str() {
                "SUBSCRIBED" => ListReturn::Subscribed,
                "CHILDREN" => ListReturn::Children,
                "SPECIAL-USE" => ListReturn::SpecialUse,
                "STATUS" => {
                    c.sp()?;
                    ListReturn::Status(c.paren_list(|c| c.status_item())?)
                }
                other => return Err(format!("unknown LIST return option {other}")),
            })
        })?;
    }
    c.end()?;
    if selection.contains(&ListSelect::RecursiveMatch)
        && selection.iter().all(|s| *s == ListSelect::RecursiveMatch || *s == ListSelect::Remote)
    {
        // RFC 5258 §3: RECURSIVEMATCH needs another selection option.
        return Err("RECURSIVEMATCH needs another selection option".into());
    }
    Ok(Command::List { selection, reference, patterns, returns, lsub, extended })
}

/// `STATUS mailbox (item...)`.
fn status(c: &mut Cursor<'_>) -> R<Command> {
    c.sp()?;
    let mailbox = c.astring()?;
    c.sp()?;
    let items = c.paren_list(|c| c.status_item())?;
    if items.is_empty() {
        return Err("STATUS needs at least one item".into());
    }
    c.end()?;
    Ok(Command::Status { mailbox, items })
}

/// Most messages one MULTIAPPEND carries, and most parts of one CATENATE.
pub const MAX_APPEND_MESSAGES: usize = 1000;
pub const MAX_CATENATE_PARTS: usize = 100;

/// `APPEND mailbox 1*(SP append-message)` (RFC 3502 MULTIAPPEND, RFC 4466 §2.3).
fn append(c: &mut Cursor<'_>) -> R<Command> {
    c.sp()?;
    let mailbox = c.astring()?;
    let mut messages = Vec::new();
    while c.peek() == Some(b' ') {
        c.pos += 1;
        messages.push(append_message(c)?);
        if messages.len() > MAX_APPEND_MESSAGES {
            return Err(format!("at most {MAX_APPEND_MESSAGES} messages in one APPEND"));
        }
    }
    if messages.is_empty() {
        return Err("APPEND needs a message".into());
    }
    c.end()?;
    Ok(Command::Append { mailbox, messages })
}

/// `[(flags) SP] [date-time SP] (literal | literal8 | CATENATE (parts))` (RFC 4469 §5).
fn append_message(c: &mut Cursor<'_>) -> R<AppendMessage> {
    let mut flags = Vec::new();
    let mut date = None;
    if c.peek() == Some(b'(') {
        flags = c.flag_list()?;
        c.sp()?;
    }
    if c.peek() == Some(b'"') {
        date = Some(c.date_time()?);
        c.sp()?;
    }
    if c.at_literal() {
        let binary = c.peek() == Some(b'~');
        let message = c.literal()?;
        return Ok(AppendMessage { flags, date, content: AppendContent::Literal { message, binary } });
    }
    if !c.keyword("CATENATE") {
        return Err("APPEND needs the message as a literal or CATENATE".into());
    }
    c.sp()?;
    let parts = c.paren_list(|c| {
        let kind = c.atom()?.to_ascii_uppercase();
        c.sp()?;
        match kind.as_str() {
            "TEXT" => {
                if !c.at_literal() {
                    return Err("CATENATE TEXT needs a literal".into());
                }
                // RFC 4469 §5: the text is a literal (a literal8 only with BINARY, kept as is).
                Ok(CatenatePart::Text(c.literal()?))
            }
            "URL" => Ok(CatenatePart::Url(String::from_utf8_lossy(&c.astring_bytes()?).into_owned())),
            other => Err(format!("unknown CATENATE part {other}")),
        }
    })?;
    if parts.is_empty() || parts.len() > MAX_CATENATE_PARTS {
        return Err(format!("CATENATE needs 1 to {MAX_CATENATE_PARTS} parts"));
    }
    Ok(AppendMessage { flags, date, content: AppendContent::Catenate(parts) })
}

/// An RFC 5464 §3.2 entry name: `/private/...` or `/shared/...`, no wildcards, no empty
/// component, printable ASCII.
fn metadata_entry(c: &mut Cursor<'_>) -> R<String> {
    let entry = c.astring()?;
    let lower = entry.to_ascii_lowercase();
    let valid = (lower.starts_with("/private/") || lower.starts_with("/shared/"))
        && !entry.ends_with('/')
        && !entry.contains("//")
        && entry.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'*' && b != b'%')
        && entry.len() <= 1024;
    if !valid {
        return Err(format!("bad metadata entry name {entry}"));
    }
    Ok(lower)
}

/// `GETMETADATA [(MAXSIZE n DEPTH d)] mailbox (entries) | entry` (RFC 5464 §4.2).
fn get_metadata(c: &mut Cursor<'_>) -> R<Command> {
    c.sp()?;
    let mut max_size = None;
    let mut depth = MetadataDepth::Zero;
    if c.peek() == Some(b'(') {
        c.paren_list(|c| {
            let option = c.atom()?.to_ascii_uppercase();
            c.sp()?;
            match option.as_str() {
                "MAXSIZE" => max_size = Some(c.number32()?),
                "DEPTH" => {
                    depth = match c.atom()?.to_ascii_lowercase().as_str() {
                        "0" => MetadataDepth::Zero,
                        "1" => MetadataDepth::One,
                        "infinity" => MetadataDepth::Infinity,
                        other => return Err(format!("bad DEPTH {other}")),
                    }
                }
                other => return Err(format!("unknown GETMETADATA option {other}")),
            }
            Ok(())
        })?;
        c.sp()?;
    }
    let mailbox = c.astring()?;
    c.sp()?;
    let entries = if c.peek() == Some(b'(') { c.paren_list(metadata_entry)? } else { vec![metadata_entry(c)?] };
    if entries.is_empty() {
        return Err("GETMETADATA needs an entry".into());
    }
    c.end()?;
    Ok(Command::GetMetadata { mailbox, entries, max_size, depth })
}

/// `SETMETADATA mailbox (entry value ...)`, a value NIL, a string or a literal8 (RFC 5464 §4.3).
fn set_metadata(c: &mut Cursor<'_>) -> R<Command> {
    c.sp()?;
    let mailbox = c.astring()?;
    c.sp()?;
    let entries = c.paren_list(|c| {
        let entry = metadata_entry(c)?;
        c.sp()?;
        let value = if c.keyword("NIL") {
            None
        } else if c.at_literal() {
            Some(c.literal()?)
        } else {
            Some(c.quoted()?)
        };
        Ok((entry, value))
    })?;
    if entries.is_empty() {
        return Err("SETMETADATA needs an entry".into());
    }
    c.end()?;
    Ok(Command::SetMetadata { mailbox, entries })
}

/// `NOTIFY NONE` or `NOTIFY SET [STATUS] (filter events)...` (RFC 5465 §6).
fn notify(c: &mut Cursor<'_>) -> R<Command> {
    c.sp()?;
    if c.keyword("NONE") {
        c.end()?;
        return Ok(Command::Notify(None));
    }
    if !c.keyword("SET") {
        return Err("NOTIFY SET or NOTIFY NONE".into());
    }
    let mut status = false;
    c.sp()?;
    if c.keyword("STATUS") {
        status = true;
        c.sp()?;
    }
    let mut groups = Vec::new();
    loop {
        groups.push(notify_group(c)?);
        if groups.len() > MAX_ITEMS {
            return Err("too many event groups".into());
        }
        if c.eof() {
            break;
        }
        c.sp()?;
    }
    Ok(Command::Notify(Some(NotifySet { status, groups })))
}

fn notify_group(c: &mut Cursor<'_>) -> R<NotifyGroup> {
    c.expect(b'(')?;
    let filter = match c.atom()?.to_ascii_uppercase().as_str() {
        "SELECTED" => NotifyFilter::Selected,
        "SELECTED-DELAYED" => NotifyFilter::SelectedDelayed,
        "INBOXES" => NotifyFilter::Inboxes,
        "PERSONAL" => NotifyFilter::Personal,
        "SUBSCRIBED" => NotifyFilter::Subscribed,
        word @ ("SUBTREE" | "MAILBOXES") => {
            c.sp()?;
            let names = if c.peek() == Some(b'(') { c.paren_list(|c| c.astring())? } else { vec![c.astring()?] };
            if names.is_empty() {
                return Err("a mailbox list needs a mailbox".into());
            }
            if word == "SUBTREE" { NotifyFilter::Subtree(names) } else { NotifyFilter::Mailboxes(names) }
        }
        other => return Err(format!("unknown mailbox filter {other}")),
    };
    c.sp()?;
    let events = if c.keyword("NONE") {
        Vec::new()
    } else {
        let events = c.paren_list(|c| {
            let name = c.atom()?;
            Ok(match name.to_ascii_lowercase().as_str() {
                "messagenew" => {
                    let mut attrs = Vec::new();
                    if c.b.get(c.pos..c.pos + 2) == Some(b" (") {
                        c.pos += 1;
                        attrs = c.paren_list(|c| c.fetch_att())?.into_iter().flatten().collect();
                    }
                    NotifyEvent::MessageNew(attrs)
                }
                "messageexpunge" => NotifyEvent::MessageExpunge,
                "flagchange" => NotifyEvent::FlagChange,
                "annotationchange" => NotifyEvent::AnnotationChange,
                "mailboxname" => NotifyEvent::MailboxName,
                "subscriptionchange" => NotifyEvent::SubscriptionChange,
                "mailboxmetadatachange" => NotifyEvent::MailboxMetadataChange,
                "servermetadatachange" => NotifyEvent::ServerMetadataChange,
                _ => NotifyEvent::Other(name),
            })
        })?;
        if events.is_empty() {
            return Err("an event list needs an event".into());
        }
        events
    };
    c.expect(b')')?;
    Ok(NotifyGroup { filter, events })
}

/// `SETACL mailbox identifier [+|-]rights` (RFC 4314 §3.1).
fn set_acl(c: &mut Cursor<'_>) -> R<Command> {
    c.sp()?;
    let mailbox = c.astring()?;
    c.sp()?;
    let identifier = c.astring()?;
    c.sp()?;
    let rights = c.astring()?;
    c.end()?;
    let (mode, letters) = match rights.as_bytes().first() {
        Some(b'+') => (StoreMode::Add, &rights[1..]),
        Some(b'-') => (StoreMode::Remove, &rights[1..]),
        _ => (StoreMode::Replace, rights.as_str()),
    };
    if !letters.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("rights are letters and digits".into());
    }
    Ok(Command::SetAcl { mailbox, identifier, mode, rights: letters.to_string() })
}

/// `DELETEACL` or `LISTRIGHTS mailbox identifier` (RFC 4314 §3.2, §3.4).
fn mailbox_and_identifier(c: &mut Cursor<'_>, name: &str) -> R<Command> {
    c.sp()?;
    let mailbox = c.astring()?;
    c.sp()?;
    let identifier = c.astring()?;
    c.end()?;
    Ok(if name == "DELETEACL" {
        Command::DeleteAcl { mailbox, identifier }
    } else {
        Command::ListRights { mailbox, identifier }
    })
}

/// `[UID] REPLACE number mailbox append-message` (RFC 8508 §3).
fn replace(c: &mut Cursor<'_>, uid: bool) -> R<Command> {
    c.sp()?;
    let target = c.nz_number()?;
    c.sp()?;
    let mailbox = c.astring()?;
    c.sp()?;
    let message = append_message(c)?;
    c.end()?;
    Ok(Command::Replace { uid, target, mailbox, message })
}

/// `EXPUNGE`, or `UID EXPUNGE set` (RFC 4315).
fn expunge(c: &mut Cursor<'_>, uid: bool) -> R<Command> {
    if uid {
        c.sp()?;
        let set = c.sequence_set()?;
        c.end()?;
        Ok(Command::Expunge { uids: Some(set) })
    } else {
        c.end().map(|_| Command::Expunge { uids: None })
    }
}

/// `RETURN (...)` of SEARCH (RFC 4731, RFC 5182, RFC 9394) and SORT (RFC 5267), and the
/// space after it.
fn search_returns(c: &mut Cursor<'_>) -> R<Option<Vec<SearchReturn>>> {
    if !c.keyword("RETURN") {
        return Ok(None);
    }
    c.sp()?;
    let returns = c.paren_list(|c| {
        let o = c.atom()?.to_ascii_uppercase();
        Ok(match o.as_str() {
            "MIN" => SearchReturn::Min,
            "MAX" => SearchReturn::Max,
            "ALL" => SearchReturn::All,
            "COUNT" => SearchReturn::Count,
            "SAVE" => SearchReturn::Save,
            "UPDATE" => SearchReturn::Update,
            "CONTEXT" => SearchReturn::Context,
            "PARTIAL" => {
                c.sp()?;
                SearchReturn::Partial(c.partial_range()?)
            }
            other => return Err(format!("unknown return option {other}")),
        })
    })?;
    c.sp()?;
    // RFC 9394 §3.1: PARTIAL and ALL cannot be asked together.
    let partial = returns.iter().filter(|r| matches!(r, SearchReturn::Partial(_))).count();
    if partial > 1 || (partial == 1 && returns.contains(&SearchReturn::All)) {
        return Err("PARTIAL cannot be combined with ALL or repeated".into());
    }
    Ok(Some(returns))
}

/// `SEARCH [RETURN (...)] [CHARSET c] keys` (RFC 4731, RFC 5182).
fn search(c: &mut Cursor<'_>, uid: bool) -> R<Command> {
    c.sp()?;
    let returns = search_returns(c)?;
    let mut charset = None;
    if c.keyword("CHARSET") {
        c.sp()?;
        charset = Some(c.astring()?);
        c.sp()?;
    }
    let key = c.search_program()?;
    Ok(Command::Search { uid, charset, key, returns })
}

/// `FETCH set items [(CHANGEDSINCE n [VANISHED] | PARTIAL range)]` (RFC 7162, RFC 9394).
fn fetch(c: &mut Cursor<'_>, uid: bool) -> R<Command> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let attrs = if c.peek() == Some(b'(') {
        c.paren_list(|c| c.fetch_att())?.into_iter().flatten().collect()
    } else {
        c.fetch_att()?
    };
    if attrs.is_empty() {
        return Err("FETCH needs at least one item".into());
    }
    let mut changed_since = None;
    let mut vanished = false;
    let mut partial = None;
    if c.peek() == Some(b' ') {
        c.pos += 1;
        c.paren_list(|c| {
            let m = c.atom()?.to_ascii_uppercase();
            match m.as_str() {
                "CHANGEDSINCE" => {
                    c.sp()?;
                    changed_since = Some(c.number()?);
                }
                "VANISHED" => vanished = true,
                "PARTIAL" => {
                    c.sp()?;
                    partial = Some(c.partial_range()?);
                }
                other => return Err(format!("unknown FETCH modifier {other}")),
            }
            Ok(())
        })?;
    }
    c.end()?;
    if vanished && (!uid || changed_since.is_none()) {
        // RFC 7162 §3.2.6
        return Err("VANISHED needs UID FETCH with CHANGEDSINCE".into());
    }
    Ok(Command::Fetch { uid, set, attrs, changed_since, vanished, partial })
}

/// `STORE set [(UNCHANGEDSINCE n)] [+|-]FLAGS[.SILENT] flags` (RFC 7162 §3.1.3).
fn store(c: &mut Cursor<'_>, uid: bool) -> R<Command> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let mut unchanged_since = None;
    if c.peek() == Some(b'(') {
        c.paren_list(|c| {
            let m = c.atom()?.to_ascii_uppercase();
            if m != "UNCHANGEDSINCE" {
                return Err(format!("unknown STORE modifier {m}"));
            }
            c.sp()?;
            unchanged_since = Some(c.number()?);
            Ok(())
        })?;
        c.sp()?;
    }
    let mode = match c.peek() {
        Some(b'+') => {
            c.pos += 1;
            StoreMode::Add
        }
        Some(b'-') => {
            c.pos += 1;
            StoreMode::Remove
        }
        _ => StoreMode::Replace,
    };
    let item = c.atom()?.to_ascii_uppercase();
    let silent = match item.as_str() {
        "FLAGS" => false,
        "FLAGS.SILENT" => true,
        other => return Err(format!("cannot STORE {other}")),
    };
    c.sp()?;
    let flags = if c.peek() == Some(b'(') {
        c.flag_list()?
    } else {
        let mut flags = vec![c.flag()?];
        while c.peek() == Some(b' ') {
            c.pos += 1;
            flags.push(c.flag()?);
        }
        flags
    };
    c.end()?;
    Ok(Command::Store { uid, set, mode, silent, flags, unchanged_since })
}

/// `COPY`/`MOVE set mailbox` (RFC 6851).
fn copy_or_move(c: &mut Cursor<'_>, uid: bool, name: &str) -> R<Command> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let mailbox = c.astring()?;
    c.end()?;
    Ok(if name == "COPY" { Command::Copy { uid, set, mailbox } } else { Command::Move { uid, set, mailbox } })
}

/// `ID NIL` or `ID (field value ...)` (RFC 2971).
fn id(c: &mut Cursor<'_>) -> R<Command> {
    c.sp()?;
    let params = if c.keyword("NIL") {
        vec![]
    } else {
        let mut pairs = Vec::new();
        c.expect(b'(')?;
        while c.peek() != Some(b')') {
            let k = String::from_utf8_lossy(&c.string()?).into_owned();
            c.sp()?;
            let v = c.nstring()?;
            pairs.push((k, v));
            if pairs.len() > 30 {
                return Err("too many ID fields".into());
            }
            if c.peek() == Some(b' ') {
                c.pos += 1;
            }
        }
        c.expect(b')')?;
        pairs
    };
    c.end()?;
    Ok(Command::Id(params))
}

/// `SORT [RETURN (...)] (criteria) charset keys` (RFC 5256, RFC 5267 ESORT).
fn sort(c: &mut Cursor<'_>, uid: bool) -> R<Command> {
    c.sp()?;
    let returns = search_returns(c)?;
    if returns.as_ref().is_some_and(|r| r.contains(&SearchReturn::Save)) {
        return Err("SORT cannot SAVE its result".into());
    }
    let criteria = c.paren_list(|c| {
        let mut reverse = false;
        let mut word = c.atom()?.to_ascii_uppercase();
        if word == "REVERSE" {
            reverse = true;
            c.sp()?;
            word = c.atom()?.to_ascii_uppercase();
        }
        let key = match word.as_str() {
            "ARRIVAL" => SortKey::Arrival,
            "CC" => SortKey::Cc,
            "DATE" => SortKey::Date,
            "FROM" => SortKey::From,
            "SIZE" => SortKey::Size,
            "SUBJECT" => SortKey::Subject,
            "TO" => SortKey::To,
            "DISPLAYFROM" => SortKey::DisplayFrom,
            "DISPLAYTO" => SortKey::DisplayTo,
            other => return Err(format!("unknown sort key {other}")),
        };
        Ok(SortCriterion { reverse, key })
    })?;
    if criteria.is_empty() {
        return Err("SORT needs a criterion".into());
    }
    c.sp()?;
    let charset = c.astring()?;
    c.sp()?;
    let key = c.search_program()?;
    Ok(Command::Sort { uid, criteria, charset, key, returns })
}

/// `THREAD algorithm charset keys` (RFC 5256).
fn thread(c: &mut Cursor<'_>, uid: bool) -> R<Command> {
    c.sp()?;
    let algorithm = match c.atom()?.to_ascii_uppercase().as_str() {
        "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
        "REFERENCES" => ThreadAlgorithm::References,
        other => return Err(format!("unknown thread algorithm {other}")),
    };
    c.sp()?;
    let charset = c.astring()?;
    c.sp()?;
    let key = c.search_program()?;
    Ok(Command::Thread { uid, algorithm, charset, key })
}

/// `COMPRESS algorithm` (RFC 4978).
fn compress(c: &mut Cursor<'_>) -> R<Command> {
    c.sp()?;
    let algorithm = c.atom()?.to_ascii_uppercase();
    c.end()?;
    Ok(Command::Compress(algorithm))
}

#[cfg(test)]
mod tests;
