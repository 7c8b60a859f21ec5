//! The message summary: everything IMAP, POP3 and the admin tools need to know about a
//! message without parsing it again. It is computed once at delivery with mail-parser and
//! cached in the store, keyed by the message's content hash.
//!
//! The summary is a *cache*: [`SUMMARY_VERSION`] changes whenever its shape or content does,
//! and a store that finds an older version recomputes it from the stored message.

pub mod address;
pub mod decode;
pub mod preview;
pub mod seven_bit;
pub mod structure;
pub mod text;

use mail_parser::{Address, HeaderValue, MessageParser};
use serde::{Deserialize, Serialize};

/// Bump when [`MessageSummary`] changes.
/// 5: the pre-rendered IMAP items left the summary (the IMAP server renders them when it
/// caches a summary).
/// 6: the RFC 8970 preview.
pub const SUMMARY_VERSION: u16 = 6;

/// MIME nesting deeper than this is summarised as an opaque leaf, so hostile messages cannot
/// make the summary (or an IMAP BODYSTRUCTURE built from it) unbounded.
pub const MAX_DEPTH: usize = 48;
/// At most this many parts are described; the rest of a multipart is left out.
pub const MAX_PARTS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSummary {
    pub version: u16,
    pub size: u64,
    /// `Date:` as Unix seconds, if present and valid.
    pub date: Option<i64>,
    /// Decoded subject (RFC 2047), for listings and sorting.
    pub subject: String,
    /// Decoded first `From:` address as `Name <addr>` or `addr`.
    pub from: String,
    /// `Message-ID` without angle brackets.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// Raw header values for the IMAP ENVELOPE (RFC 9051 §7.5.2).
    pub envelope: RawEnvelope,
    pub body: BodyPart,
    /// Decoded addresses of From, To, Cc, Bcc (for SEARCH and SORT), at most
    /// [`MAX_ADDRESSES`] each.
    pub from_addrs: Vec<Addr>,
    pub to_addrs: Vec<Addr>,
    pub cc_addrs: Vec<Addr>,
    pub bcc_addrs: Vec<Addr>,
    /// The calendar day of the `Date:` header as the sender wrote it (days since
    /// 1970-01-01, time and zone disregarded: SENTON/SENTBEFORE/SENTSINCE).
    pub sent_day: Option<i64>,
    /// Lower-cased header texts SEARCH compares with.
    pub search: SearchForms,
    /// The start of the first text part (RFC 8970 PREVIEW), see [`preview::preview`].
    pub preview: String,
}

/// Decoded and raw header values, lower-cased, for SEARCH FROM/TO/CC/BCC/SUBJECT.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchForms {
    pub subject: String,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub bcc: String,
}

/// A decoded address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addr {
    pub name: Option<String>,
    pub address: String,
}

impl Addr {
    /// `Name <address>` or `address`.
    pub fn display(&self) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => format!("{n} <{}>", self.address),
            _ => self.address.clone(),
        }
    }
}

/// Addresses kept per header in the summary.
pub const MAX_ADDRESSES: usize = 100;

/// The ten ENVELOPE fields as they appear in the header: unfolded, encoded words intact,
/// and bytes as they are (8-bit header text is passed on, not replaced).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawEnvelope {
    pub date: Option<Vec<u8>>,
    pub subject: Option<Vec<u8>>,
    pub from: Option<Vec<u8>>,
    pub sender: Option<Vec<u8>>,
    pub reply_to: Option<Vec<u8>>,
    pub to: Option<Vec<u8>>,
    pub cc: Option<Vec<u8>>,
    pub bcc: Option<Vec<u8>>,
    pub in_reply_to: Option<Vec<u8>>,
    pub message_id: Option<Vec<u8>>,
}

/// A MIME parameter as the message has it: name and (unquoted) value.
pub type Param = (Vec<u8>, Vec<u8>);

/// One MIME part, with byte offsets into the stored message (see [`structure`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyPart {
    /// `type/subtype` as written (compare without case); `text/plain` when absent or
    /// invalid (RFC 2045 §5.2).
    pub media_type: String,
    pub subtype: String,
    /// Content-Type parameters as written (RFC 2231 and RFC 2047 forms left for clients).
    pub params: Vec<Param>,
    pub id: Option<Vec<u8>>,
    pub description: Option<Vec<u8>>,
    /// Content-Transfer-Encoding as written; `None` means 7bit.
    pub encoding: Option<String>,
    pub disposition: Option<(String, Vec<Param>)>,
    pub language: Vec<Vec<u8>>,
    pub location: Option<Vec<u8>>,
    pub md5: Option<Vec<u8>>,
    /// Where the part's header starts, its body starts, and its body ends.
    pub offset_header: u64,
    pub offset_body: u64,
    pub offset_end: u64,
    /// Lines in the (encoded) body.
    pub lines: u64,
    pub kind: PartKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartKind {
    Leaf,
    Multipart(Vec<BodyPart>),
    /// message/rfc822 (or global) whose content was parsed in place.
    Message(Box<RawEnvelope>, Box<BodyPart>),
}

impl MessageSummary {
    /// Whether any part is an attachment (for listings).
    pub fn has_attachment(&self) -> bool {
        fn walk(p: &BodyPart) -> bool {
            match &p.kind {
                PartKind::Leaf => p.disposition.as_ref().is_some_and(|(d, _)| d.eq_ignore_ascii_case("attachment")),
                PartKind::Multipart(children) => children.iter().any(walk),
                PartKind::Message(_, inner) => walk(inner),
            }
        }
        walk(&self.body)
    }

    /// A summary with nothing in it, for contents no mailbox holds (the outbound queue).
    pub fn empty() -> MessageSummary {
        MessageSummary {
            version: SUMMARY_VERSION,
            size: 0,
            date: None,
            subject: String::new(),
            from: String::new(),
            message_id: None,
            in_reply_to: vec![],
            references: vec![],
            envelope: RawEnvelope::default(),
            body: plain_leaf(b"", 0, 0, 0),
            from_addrs: vec![],
            to_addrs: vec![],
            cc_addrs: vec![],
            bcc_addrs: vec![],
            sent_day: None,
            search: SearchForms::default(),
            preview: String::new(),
        }
    }

    /// About how many bytes the summary holds in memory (for caches that count memory).
    pub fn heap_size(&self) -> usize {
        fn opt(s: &Option<Vec<u8>>) -> usize {
            s.as_ref().map_or(0, Vec::capacity)
        }
        fn pairs(v: &[Param]) -> usize {
            v.iter().map(|(a, b)| a.capacity() + b.capacity() + 48).sum()
        }
        fn envelope(e: &RawEnvelope) -> usize {
            [&e.date, &e.subject, &e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc, &e.in_reply_to, &e.message_id]
                .iter()
                .map(|s| opt(s))
                .sum()
        }
        fn part(p: &BodyPart) -> usize {
            let own = std::mem::size_of::<BodyPart>()
                + p.media_type.capacity()
                + p.subtype.capacity()
                + pairs(&p.params)
                + opt(&p.id)
                + opt(&p.description)
                + p.encoding.as_ref().map_or(0, String::capacity)
                + p.disposition.as_ref().map_or(0, |(d, params)| d.capacity() + pairs(params))
                + p.language.iter().map(|l| l.capacity() + 24).sum::<usize>()
                + opt(&p.location)
                + opt(&p.md5);
            own + match &p.kind {
                PartKind::Leaf => 0,
                PartKind::Multipart(children) => children.iter().map(part).sum(),
                PartKind::Message(env, inner) => envelope(env) + part(inner),
            }
        }
        let addrs = |v: &[Addr]| -> usize {
            v.iter().map(|a| a.name.as_ref().map_or(0, String::capacity) + a.address.capacity() + 48).sum()
        };
        std::mem::size_of::<MessageSummary>()
            + self.subject.capacity()
            + self.from.capacity()
            + self.message_id.as_ref().map_or(0, String::capacity)
            + self.in_reply_to.iter().chain(&self.references).map(|s| s.capacity() + 24).sum::<usize>()
            + envelope(&self.envelope)
            + part(&self.body)
            + addrs(&self.from_addrs)
            + addrs(&self.to_addrs)
            + addrs(&self.cc_addrs)
            + addrs(&self.bcc_addrs)
            + self.search.subject.capacity()
            + self.search.from.capacity()
            + self.search.to.capacity()
            + self.search.cc.capacity()
            + self.search.bcc.capacity()
            + self.preview.capacity()
    }
}

/// Parses a message and summarises it. Never fails: what cannot be understood falls back to
/// the defaults of RFC 2045 §5.2.
pub fn summarize(raw: &[u8]) -> MessageSummary {
    let body = structure::parse(raw);
    let header = &raw[..(body.offset_body as usize).min(raw.len())];
    let envelope = structure::raw_envelope(&structure::header_fields(header));
    // Decoded header values (RFC 2047 words, dates, message ids, address lists) from the
    // header alone.
    let parsed = MessageParser::default().parse_headers(header);
    let Some(message) = parsed else {
        let preview = preview::preview(raw, &body);
        return finish(MessageSummary { size: raw.len() as u64, envelope, body, preview, ..MessageSummary::empty() });
    };
    let from = message
        .from()
        .and_then(first_address)
        .map(|(name, addr)| match name {
            Some(n) if !n.is_empty() => format!("{n} <{addr}>"),
            _ => addr,
        })
        .unwrap_or_default();
    let preview = preview::preview(raw, &body);
    finish(MessageSummary {
        version: SUMMARY_VERSION,
        size: raw.len() as u64,
        date: message.date().map(|d| d.to_timestamp()),
        subject: message.subject().map(clean_line).unwrap_or_default(),
        from: clean_line(&from),
        message_id: message.message_id().map(str::to_string),
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        envelope,
        body,
        from_addrs: addr_list(message.from()),
        to_addrs: addr_list(message.to()),
        cc_addrs: addr_list(message.cc()),
        bcc_addrs: addr_list(message.bcc()),
        sent_day: message.date().map(|d| days_from_civil(i64::from(d.year), i64::from(d.month), i64::from(d.day))),
        search: SearchForms::default(),
        preview,
    })
}

/// Fills in the derived forms (lower-cased search texts).
fn finish(mut s: MessageSummary) -> MessageSummary {
    let addrs = |list: &[Addr], raw: &Option<Vec<u8>>| {
        let mut t: String = list.iter().map(Addr::display).collect::<Vec<_>>().join(", ");
        if let Some(r) = raw {
            t.push('\n');
            t.push_str(&String::from_utf8_lossy(r));
        }
        t.to_lowercase()
    };
    s.search = SearchForms {
        subject: s.subject.to_lowercase(),
        from: addrs(&s.from_addrs, &s.envelope.from),
        to: addrs(&s.to_addrs, &s.envelope.to),
        cc: addrs(&s.cc_addrs, &s.envelope.cc),
        bcc: addrs(&s.bcc_addrs, &s.envelope.bcc),
    };
    s
}

fn addr_list(addr: Option<&Address<'_>>) -> Vec<Addr> {
    let Some(addr) = addr else { return vec![] };
    let list: Vec<&mail_parser::Addr<'_>> = match addr {
        Address::List(list) => list.iter().collect(),
        Address::Group(groups) => groups.iter().flat_map(|g| g.addresses.iter()).collect(),
    };
    list.into_iter()
        .take(MAX_ADDRESSES)
        .map(|a| Addr {
            name: a.name.as_deref().map(clean_line),
            address: a.address.as_deref().map(clean_line).unwrap_or_default(),
        })
        .collect()
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn first_address(addr: &Address<'_>) -> Option<(Option<String>, String)> {
    let a = match addr {
        Address::List(list) => list.first()?,
        Address::Group(groups) => groups.iter().flat_map(|g| g.addresses.iter()).next()?,
    };
    Some((a.name.as_deref().map(str::to_string), a.address.as_deref()?.to_string()))
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|s| s.to_string()).collect(),
        _ => vec![],
    }
}

/// Control characters (and so CR/LF) removed, for one-line displays.
fn clean_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn plain_leaf(raw: &[u8], header: u64, body: u64, end: u64) -> BodyPart {
    BodyPart {
        media_type: "text".into(),
        subtype: "plain".into(),
        params: vec![(b"charset".to_vec(), b"us-ascii".to_vec())],
        id: None,
        description: None,
        encoding: None,
        disposition: None,
        language: vec![],
        location: None,
        md5: None,
        offset_header: header,
        offset_body: body,
        offset_end: end,
        lines: structure::count_lines(raw.get(body as usize..end as usize).unwrap_or_default()),
        kind: PartKind::Leaf,
    }
}

#[cfg(test)]
mod tests;
