//! The MIME structure of a message (RFC 2045, RFC 2046), Tern's own: one pass over the lines,
//! as Dovecot's parser does, with every open multipart's boundary checked innermost first.
//!
//! - Two delimiter lines in a row delimit an empty part (RFC 2046 §5.1.1); the CRLF before a
//!   delimiter line belongs to the delimiter, not to the part.
//! - A boundary of an enclosing multipart ends every part inside it, closed or not.
//! - A part's header starts after its delimiter line; it ends at the first empty line (or at
//!   the next delimiter, for a part that has no empty line).
//! - Parameters are kept as the message has them (RFC 2231 `name*` and RFC 2047 words
//!   included): IMAP sends them as written (RFC 3501 §7.4.2), clients decode them.
//! - Defaults: text/plain; charset=us-ascii for a missing or invalid Content-Type (RFC 2045
//!   §5.2), message/rfc822 inside multipart/digest (RFC 2046 §5.1.5), charset us-ascii for a
//!   text part without one (RFC 2046 §4.1.2), 7bit for a missing or invalid encoding.
//! - Depth and part count are bounded ([`crate::MAX_DEPTH`], [`crate::MAX_PARTS`]).

use crate::{BodyPart, Param, PartKind, RawEnvelope};

/// One header field: its name and its raw value (after the colon, folding kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// The fields of a header block (up to, not including, the empty line), in order. Lines
/// that are neither fields nor continuations are skipped.
pub fn header_fields(header: &[u8]) -> Vec<Field<'_>> {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut at = 0;
    while at < header.len() {
        let end = memchr::memchr(b'\n', &header[at..]).map_or(header.len(), |i| at + i + 1);
        let line = &header[at..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = fields.last_mut() {
                // The value grows to the end of this continuation line.
                let start = last.value.as_ptr() as usize - header.as_ptr() as usize;
                last.value = &header[start..end];
            }
        } else if let Some(colon) = memchr::memchr(b':', line) {
            let name = trim(&line[..colon]);
            // A name is printable ASCII without spaces (RFC 5322 §2.2); anything else is not
            // a field.
            if !name.is_empty() && name.iter().all(|&c| c > 0x20 && c < 0x7f) {
                fields.push(Field { name, value: &header[at + colon + 1..end] });
            }
        }
        at = end;
    }
    fields
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r' | b'\n', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

/// A raw value unfolded (RFC 5322 §2.2.3: CRLF before white space removed) and trimmed.
pub fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = value.iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
    let t = trim(&out);
    let (start, len) = (t.as_ptr() as usize - out.as_ptr() as usize, t.len());
    out.drain(..start);
    out.truncate(len);
    out
}

/// The first field with this name (case-insensitive), unfolded.
pub fn first<'a>(fields: &[Field<'a>], name: &str) -> Option<Vec<u8>> {
    fields.iter().find(|f| f.name.eq_ignore_ascii_case(name.as_bytes())).map(|f| unfold(f.value))
}

/// The ENVELOPE fields of a header (RFC 9051 §7.5.2), as written.
pub fn raw_envelope(fields: &[Field<'_>]) -> RawEnvelope {
    RawEnvelope {
        date: first(fields, "Date"),
        subject: first(fields, "Subject"),
        from: first(fields, "From"),
        sender: first(fields, "Sender"),
        reply_to: first(fields, "Reply-To"),
        to: first(fields, "To"),
        cc: first(fields, "Cc"),
        bcc: first(fields, "Bcc"),
        in_reply_to: first(fields, "In-Reply-To"),
        message_id: first(fields, "Message-ID"),
    }
}

/// RFC 2045 §5.1 token characters.
fn is_token(c: u8) -> bool {
    c > 0x20 && c < 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&c)
}

/// A cursor over a structured field value: white space and comments are skipped between
/// tokens (RFC 5322 CFWS).
struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn skip_cfws(&mut self) {
        loop {
            while self.at < self.s.len() && matches!(self.s[self.at], b' ' | b'\t' | b'\r' | b'\n') {
                self.at += 1;
            }
            if self.s.get(self.at) != Some(&b'(') {
                return;
            }
            let mut depth = 0usize;
            while self.at < self.s.len() {
                match self.s[self.at] {
                    b'\\' => self.at += 1,
                    b'(' => depth += 1,
                    b')' => {
                        depth -= 1;
                        if depth == 0 {
                            self.at += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                self.at += 1;
            }
        }
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        self.skip_cfws();
        let start = self.at;
        while self.at < self.s.len() && is_token(self.s[self.at]) {
            self.at += 1;
        }
        (self.at > start).then(|| &self.s[start..self.at])
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_cfws();
        if self.s.get(self.at) == Some(&c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn done(&mut self) -> bool {
        self.skip_cfws();
        self.at >= self.s.len()
    }

    /// A quoted string's content, escapes removed.
    fn quoted(&mut self) -> Option<Vec<u8>> {
        self.skip_cfws();
        if self.s.get(self.at) != Some(&b'"') {
            return None;
        }
        self.at += 1;
        let mut out = Vec::new();
        while self.at < self.s.len() {
            match self.s[self.at] {
                b'"' => {
                    self.at += 1;
                    return Some(out);
                }
                b'\\' if self.at + 1 < self.s.len() => {
                    out.push(self.s[self.at + 1]);
                    self.at += 2;
                }
                b'\r' | b'\n' => self.at += 1,
                c => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
        // Unterminated: what there is.
        Some(out)
    }

    /// `*(";" attribute "=" value)`, stopping at the first thing that is not one (RFC 2045
    /// §5.1: parameters are separated by semicolons; a value is a token or a quoted string,
    /// here also any run of printable bytes up to the next `;`, which mail readers accept).
    fn parameters(&mut self) -> Vec<Param> {
        let mut out = Vec::new();
        while self.eat(b';') {
            let Some(name) = self.token() else {
                // `; ;` or a trailing `;`: nothing more to read here.
                if self.done() {
                    break;
                }
                continue;
            };
            if !self.eat(b'=') {
                break;
            }
            let value = match self.quoted() {
                Some(v) => v,
                None => {
                    self.skip_cfws();
                    let start = self.at;
                    while self.at < self.s.len() && !matches!(self.s[self.at], b';' | b' ' | b'\t' | b'\r' | b'\n') {
                        self.at += 1;
                    }
                    self.s[start..self.at].to_vec()
                }
            };
            out.push((name.to_vec(), value));
            if out.len() >= 64 {
                break;
            }
            // Something other than `;` after a value (`a=b c=d`): skip to the next `;`,
            // as Dovecot does, rather than read `c=d` as a parameter.
            self.skip_cfws();
            if self.at < self.s.len() && self.s[self.at] != b';' {
                self.skip_to_semicolon();
            }
        }
        out
    }

    /// Moves to the next `;` that is not inside a quoted string or comment.
    fn skip_to_semicolon(&mut self) {
        while self.at < self.s.len() {
            match self.s[self.at] {
                b';' => return,
                b'"' => {
                    let _ = self.quoted();
                }
                b'(' => self.skip_cfws(),
                _ => self.at += 1,
            }
        }
    }
}

/// A parsed `type/subtype; params` (Content-Type), case as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    pub media_type: String,
    pub subtype: String,
    pub params: Vec<Param>,
}

impl ContentType {
    fn is(&self, media_type: &str) -> bool {
        self.media_type.eq_ignore_ascii_case(media_type)
    }

    fn default_text() -> ContentType {
        ContentType { media_type: "text".into(), subtype: "plain".into(), params: vec![] }
    }

    fn message_rfc822() -> ContentType {
        ContentType { media_type: "message".into(), subtype: "rfc822".into(), params: vec![] }
    }

    /// The value of a parameter (case-insensitive name); RFC 2231 continuations of it
    /// (`name*0`, `name*1`...) are joined.
    pub fn param(&self, name: &str) -> Option<Vec<u8>> {
        if let Some((_, v)) = self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())) {
            return Some(v.clone());
        }
        let mut parts: Vec<(u32, &[u8])> = Vec::new();
        for (n, v) in &self.params {
            let Some(rest) =
                n.get(name.len()..).filter(|_| n[..name.len().min(n.len())].eq_ignore_ascii_case(name.as_bytes()))
            else {
                continue;
            };
            let Some(index) = rest.strip_prefix(b"*") else { continue };
            let index = index.strip_suffix(b"*").unwrap_or(index);
            if let Some(i) = std::str::from_utf8(index).ok().and_then(|i| i.parse().ok()) {
                parts.push((i, v));
            }
        }
        if parts.is_empty() {
            return None;
        }
        parts.sort_by_key(|p| p.0);
        Some(parts.into_iter().flat_map(|(_, v)| v.iter().copied()).collect())
    }
}

/// Parses a Content-Type value; `None` when it is not `type/subtype` (RFC 2045 §5.2: such a
/// part is text/plain).
pub fn content_type(value: &[u8]) -> Option<ContentType> {
    let mut c = Cursor { s: value, at: 0 };
    let media_type = c.token()?;
    if !c.eat(b'/') {
        return None;
    }
    let subtype = c.token()?;
    let params = c.parameters();
    Some(ContentType {
        media_type: String::from_utf8_lossy(media_type).into_owned(),
        subtype: String::from_utf8_lossy(subtype).into_owned(),
        params,
    })
}

/// A Content-Disposition: its type as written and its parameters.
pub type Disposition = (String, Vec<Param>);

/// Content-Disposition: the type as written and the parameters.
fn disposition(value: &[u8]) -> Option<Disposition> {
    let mut c = Cursor { s: value, at: 0 };
    let kind = c.token()?;
    let params = c.parameters();
    Some((String::from_utf8_lossy(kind).into_owned(), params))
}

/// The MIME fields of one part.
struct PartHeader {
    content_type: Option<ContentType>,
    encoding: Option<String>,
    id: Option<Vec<u8>>,
    description: Option<Vec<u8>>,
    disposition: Option<Disposition>,
    language: Vec<Vec<u8>>,
    location: Option<Vec<u8>>,
    md5: Option<Vec<u8>>,
}

impl PartHeader {
    fn parse(header: &[u8]) -> PartHeader {
        let fields = header_fields(header);
        let encoding = first(&fields, "Content-Transfer-Encoding").and_then(|v| {
            // A token, or nothing: "8 bit" is no encoding at all (7bit, as Dovecot shows).
            let mut c = Cursor { s: &v, at: 0 };
            let t = c.token()?;
            c.done().then(|| String::from_utf8_lossy(t).into_owned())
        });
        let language = first(&fields, "Content-Language")
            .map(|v| {
                v.split(|&b| b == b',')
                    .map(|l| {
                        let mut c = Cursor { s: l, at: 0 };
                        c.token().map(<[u8]>::to_vec).unwrap_or_default()
                    })
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        PartHeader {
            content_type: first(&fields, "Content-Type").and_then(|v| content_type(&v)),
            encoding,
            id: first(&fields, "Content-ID"),
            description: first(&fields, "Content-Description"),
            disposition: first(&fields, "Content-Disposition").and_then(|v| disposition(&v)),
            language,
            location: first(&fields, "Content-Location"),
            md5: first(&fields, "Content-MD5"),
        }
    }
}

/// Lines of a part body: line breaks, and a last line without one (the line break before a
/// boundary belongs to the boundary, RFC 2046 §5.1.1, yet the line is text: RFC 3501
/// §7.4.2 counts text lines).
pub fn count_lines(body: &[u8]) -> u64 {
    let mut n = memchr::memchr_iter(b'\n', body).count() as u64;
    if !body.is_empty() && body.last() != Some(&b'\n') {
        n += 1;
    }
    n
}

enum NodeKind {
    Leaf,
    /// Children by index; `boundary` while delimiters may still come (not after the close
    /// delimiter).
    Multipart {
        children: Vec<usize>,
        boundary: Option<Vec<u8>>,
        digest: bool,
    },
    /// The encapsulated message's root.
    Message(Option<usize>),
}

struct Node {
    header: usize,
    body: usize,
    end: usize,
    depth: usize,
    info: Option<PartHeader>,
    ctype: ContentType,
    kind: NodeKind,
}

/// Whether `line` (without its line break) is a delimiter for `boundary`: `Some(true)` for
/// the close delimiter (`--boundary--`), `Some(false)` for a part delimiter. Trailing white
/// space is allowed (RFC 2046 §5.1.1).
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    rest.iter().all(|&c| matches!(c, b' ' | b'\t' | b'\r')).then_some(close)
}

/// The MIME tree of `raw`, with offsets into it.
pub fn parse(raw: &[u8]) -> BodyPart {
    let mut nodes: Vec<Node> = Vec::new();
    // The root counts too.
    let mut budget = crate::MAX_PARTS - 1;
    // The open chain: the root, then each open part inside the previous one.
    let mut open: Vec<usize> = Vec::new();
    let new_node = |nodes: &mut Vec<Node>, header: usize, depth: usize, default: ContentType| {
        nodes.push(Node { header, body: header, end: header, depth, info: None, ctype: default, kind: NodeKind::Leaf });
        nodes.len() - 1
    };
    let root = new_node(&mut nodes, 0, 0, ContentType::default_text());
    open.push(root);
    // Whether the top of `open` is still reading its header.
    let mut in_header = true;
    let mut at = 0;
    while at < raw.len() {
        let end = memchr::memchr(b'\n', &raw[at..]).map_or(raw.len(), |i| at + i + 1);
        let line = &raw[at..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        // A delimiter of an open multipart, innermost first.
        let mut hit = None;
        if content.starts_with(b"--") {
            for (depth, &n) in open.iter().enumerate().rev() {
                if let NodeKind::Multipart { boundary: Some(b), .. } = &nodes[n].kind
                    && let Some(close) = delimiter(content, b)
                {
                    hit = Some((depth, close));
                    break;
                }
            }
        }
        if let Some((depth, close)) = hit {
            // Everything open inside the multipart ends before the line break that precedes
            // this line (it belongs to the delimiter, RFC 2046 §5.1.1); a header that never
            // got its empty line keeps its last line whole.
            let before = if in_header {
                at
            } else if at >= 2 && raw[at - 2] == b'\r' {
                at - 2
            } else {
                at.saturating_sub(1)
            };
            while open.len() > depth + 1 {
                let Some(n) = open.pop() else { break };
                if in_header {
                    nodes[n].body = at.max(nodes[n].header);
                    finish_header(&mut nodes, n, raw);
                    in_header = false;
                }
                nodes[n].end = before.max(nodes[n].body);
            }
            in_header = false;
            let parent = open[depth];
            if close {
                if let NodeKind::Multipart { boundary, .. } = &mut nodes[parent].kind {
                    *boundary = None;
                }
            } else if budget > 0 {
                budget -= 1;
                let (digest, parent_depth) = match &nodes[parent].kind {
                    NodeKind::Multipart { digest, .. } => (*digest, nodes[parent].depth),
                    _ => (false, nodes[parent].depth),
                };
                let default = if digest { ContentType::message_rfc822() } else { ContentType::default_text() };
                let child = new_node(&mut nodes, end, parent_depth + 1, default);
                if let NodeKind::Multipart { children, .. } = &mut nodes[parent].kind {
                    children.push(child);
                }
                open.push(child);
                in_header = true;
            }
            at = end;
            continue;
        }
        if in_header && (content == b"\r" || content.is_empty()) {
            let Some(&n) = open.last() else { break };
            nodes[n].body = end;
            finish_header(&mut nodes, n, raw);
            in_header = false;
            match &nodes[n].kind {
                NodeKind::Message(_) if budget > 0 => {
                    budget -= 1;
                    let depth = nodes[n].depth + 1;
                    let child = new_node(&mut nodes, end, depth, ContentType::default_text());
                    nodes[n].kind = NodeKind::Message(Some(child));
                    open.push(child);
                    in_header = true;
                }
                NodeKind::Leaf if open.iter().all(|&o| !matches!(nodes[o].kind, NodeKind::Multipart { .. })) => {
                    // Nothing can end this part but the end of the message.
                    break;
                }
                _ => {}
            }
        }
        at = end;
    }
    // The end of the message ends everything still open.
    while let Some(n) = open.pop() {
        if in_header {
            nodes[n].body = raw.len().max(nodes[n].header);
            finish_header(&mut nodes, n, raw);
            in_header = false;
        }
        nodes[n].end = raw.len().max(nodes[n].body);
    }
    build(&nodes, root, raw)
}

/// Reads a part's header once it is complete: its type decides what its body holds.
fn finish_header(nodes: &mut [Node], n: usize, raw: &[u8]) {
    let node = &mut nodes[n];
    let header = raw.get(node.header..node.body.min(raw.len())).unwrap_or_default();
    let info = PartHeader::parse(header);
    let ctype = match &info.content_type {
        Some(ct) => ct.clone(),
        None => node.ctype.clone(),
    };
    let deep = node.depth >= crate::MAX_DEPTH;
    node.kind = if ctype.is("multipart") && !deep {
        match ctype.param("boundary").filter(|b| !b.is_empty()) {
            Some(boundary) => NodeKind::Multipart {
                children: Vec::new(),
                boundary: Some(boundary),
                digest: ctype.subtype.eq_ignore_ascii_case("digest"),
            },
            // RFC 2046 §5.1.1 requires a boundary; without one the type is invalid and
            // the part is text/plain (RFC 2045 §5.2).
            None => {
                node.ctype = ContentType::default_text();
                node.info = Some(PartHeader { content_type: None, ..info });
                return;
            }
        }
    } else if ctype.is("message")
        && (ctype.subtype.eq_ignore_ascii_case("rfc822") || ctype.subtype.eq_ignore_ascii_case("global"))
        && !deep
    {
        // Even when (against RFC 2046 §5.2.1) it is encoded: IMAP owes an envelope and a
        // body structure for every message/rfc822 (RFC 3501 §7.4.2); the encoded text is
        // read as the message, as Dovecot does.
        NodeKind::Message(None)
    } else {
        NodeKind::Leaf
    };
    node.ctype = ctype;
    node.info = Some(info);
}

fn build(nodes: &[Node], n: usize, raw: &[u8]) -> BodyPart {
    let node = &nodes[n];
    let info = node.info.as_ref();
    let mut params = node.ctype.params.clone();
    let kind = match &node.kind {
        NodeKind::Leaf => PartKind::Leaf,
        NodeKind::Multipart { children, .. } => {
            PartKind::Multipart(children.iter().map(|&c| build(nodes, c, raw)).collect())
        }
        NodeKind::Message(Some(child)) => {
            let inner = &nodes[*child];
            let fields = header_fields(raw.get(inner.header..inner.body).unwrap_or_default());
            PartKind::Message(Box::new(raw_envelope(&fields)), Box::new(build(nodes, *child, raw)))
        }
        NodeKind::Message(None) => PartKind::Leaf,
    };
    // RFC 2046 §4.1.2: a text part without a charset is US-ASCII.
    if node.ctype.is("text") && !params.iter().any(|(k, _)| k.eq_ignore_ascii_case(b"charset")) {
        params.push((b"charset".to_vec(), b"us-ascii".to_vec()));
    }
    let body = raw.get(node.body..node.end).unwrap_or_default();
    BodyPart {
        media_type: node.ctype.media_type.clone(),
        subtype: node.ctype.subtype.clone(),
        params,
        id: info.and_then(|i| i.id.clone()),
        description: info.and_then(|i| i.description.clone()),
        encoding: info.and_then(|i| i.encoding.clone()),
        disposition: info.and_then(|i| i.disposition.clone()),
        language: info.map(|i| i.language.clone()).unwrap_or_default(),
        location: info.and_then(|i| i.location.clone()),
        md5: info.and_then(|i| i.md5.clone()),
        offset_header: node.header as u64,
        offset_body: node.body as u64,
        offset_end: node.end as u64,
        lines: count_lines(body),
        kind,
    }
}
