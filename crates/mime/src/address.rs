//! RFC 5322 address lists (with groups and obsolete routes) parsed from raw header values
//! into IMAP address structures, keeping display names as written (encoded words intact,
//! 8-bit bytes as they are), as RFC 9051 §7.5.2 describes the ENVELOPE.
//!
//! What mail readers (and Dovecot) make of what RFC 5322 does not allow:
//! - `user@host (Real Name)`: the comment is the name when there is no phrase;
//! - a phrase without an address (`Someone Else`): the name, with mailbox
//!   `MISSING_MAILBOX`; a single word is a mailbox without a host (`MISSING_DOMAIN`);
//! - a group that is never closed ends with the list.

/// One IMAP address structure, or a group marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImapAddress {
    Mailbox {
        name: Option<Vec<u8>>,
        route: Option<Vec<u8>>,
        mailbox: Vec<u8>,
        host: Vec<u8>,
    },
    /// Start of a group: `(NIL NIL "name" NIL)`.
    GroupStart(Vec<u8>),
    /// End of a group: `(NIL NIL NIL NIL)`.
    GroupEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An atom; `true` when white space or a comment came before it.
    Word(Vec<u8>, bool),
    Quoted(Vec<u8>, bool),
    Literal(Vec<u8>),
    Special(u8),
    /// A comment's text (for `addr (Name)`).
    Comment(Vec<u8>),
}

const SPECIALS: &[u8] = b" \t\r\n()\"[<>:;,@.";

fn tokenize(s: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut space = false;
    while i < s.len() {
        let c = s[i];
        let spaced = std::mem::take(&mut space);
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                space = true;
                i += 1;
            }
            b'(' => {
                // A comment, possibly nested: white space to the grammar.
                space = true;
                let mut depth = 0usize;
                let mut text = Vec::new();
                while i < s.len() {
                    match s[i] {
                        b'\\' if i + 1 < s.len() => {
                            i += 1;
                            text.push(s[i]);
                        }
                        b'(' => {
                            if depth > 0 {
                                text.push(b'(');
                            }
                            depth += 1;
                        }
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                            text.push(b')');
                        }
                        b => text.push(b),
                    }
                    i += 1;
                }
                out.push(Token::Comment(text));
            }
            b'"' => {
                let mut q = Vec::new();
                i += 1;
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    if s[i] != b'\r' && s[i] != b'\n' {
                        q.push(s[i]);
                    }
                    i += 1;
                }
                i += 1;
                out.push(Token::Quoted(q, spaced));
            }
            b'[' => {
                let mut l = vec![b'['];
                i += 1;
                while i < s.len() && s[i] != b']' {
                    l.push(s[i]);
                    i += 1;
                }
                l.push(b']');
                i += 1;
                out.push(Token::Literal(l));
            }
            b'<' | b'>' | b':' | b';' | b',' | b'@' | b'.' => {
                out.push(Token::Special(c));
                i += 1;
            }
            _ => {
                let start = i;
                while i < s.len() && !SPECIALS.contains(&s[i]) {
                    i += 1;
                }
                if i == start {
                    i += 1;
                } else {
                    out.push(Token::Word(s[start..i].to_vec(), spaced));
                }
            }
        }
    }
    out
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// The last comment skipped (for `addr (Name)`).
    last_comment: Option<Vec<u8>>,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn skip_comments(&mut self) -> Option<Vec<u8>> {
        let mut last = None;
        while let Some(Token::Comment(c)) = self.peek() {
            last = Some(c.clone());
            self.pos += 1;
        }
        if last.is_some() {
            self.last_comment.clone_from(&last);
        }
        last
    }

    fn is(&mut self, c: u8) -> bool {
        self.skip_comments();
        self.peek() == Some(&Token::Special(c))
    }

    /// Words, quoted strings and dots up to a special: a phrase or a local part.
    fn phrase(&mut self) -> Vec<Token> {
        let mut out = Vec::new();
        loop {
            self.skip_comments();
            match self.peek() {
                Some(t @ (Token::Word(..) | Token::Quoted(..) | Token::Special(b'.'))) => {
                    out.push(t.clone());
                    self.pos += 1;
                }
                _ => break,
            }
        }
        out
    }

    fn domain(&mut self) -> Vec<u8> {
        let mut d = Vec::new();
        loop {
            self.skip_comments();
            match self.peek() {
                Some(Token::Word(w, _)) => d.extend_from_slice(w),
                Some(Token::Literal(l)) => d.extend_from_slice(l),
                Some(Token::Special(b'.')) => d.push(b'.'),
                _ => break,
            }
            self.pos += 1;
        }
        d
    }

    /// Skips to the next `,` or `;`; returns the last comment since `last_comment` was
    /// reset (a name for `addr (Name)`).
    fn skip_to_separator(&mut self) -> Option<Vec<u8>> {
        while let Some(t) = self.peek() {
            match t {
                Token::Special(b',' | b';') => break,
                Token::Comment(c) => self.last_comment = Some(c.clone()),
                _ => {}
            }
            self.pos += 1;
        }
        self.last_comment.take()
    }
}

/// Joins phrase tokens as they were written: white space runs become one space, quoted
/// strings lose their quotes.
fn phrase_text(tokens: &[Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        match t {
            Token::Special(b'.') => out.push(b'.'),
            Token::Word(w, spaced) | Token::Quoted(w, spaced) => {
                if *spaced && !out.is_empty() {
                    out.push(b' ');
                }
                out.extend_from_slice(w);
            }
            _ => {}
        }
    }
    out
}

fn local_text(tokens: &[Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        match t {
            Token::Special(b'.') => out.push(b'.'),
            Token::Word(w, _) | Token::Quoted(w, _) => out.extend_from_slice(w),
            _ => {}
        }
    }
    out
}

/// Whether phrase tokens form a local part (`word *("." word)`, no white space inside).
fn is_local_part(tokens: &[Token]) -> bool {
    tokens.iter().enumerate().all(|(i, t)| match t {
        Token::Word(_, spaced) | Token::Quoted(_, spaced) => i == 0 || !spaced,
        Token::Special(b'.') => true,
        _ => false,
    })
}

const MISSING_DOMAIN: &[u8] = b"MISSING_DOMAIN";
const MISSING_MAILBOX: &[u8] = b"MISSING_MAILBOX";
const MAX_ADDRESSES: usize = 1000;

fn non_empty(v: Vec<u8>) -> Option<Vec<u8>> {
    (!v.is_empty()).then_some(v)
}

/// Parses a raw address-list header value. Never fails: what cannot be understood is
/// skipped up to the next comma.
pub fn parse_address_list(raw: &[u8]) -> Vec<ImapAddress> {
    let mut p = Parser { tokens: tokenize(raw), pos: 0, last_comment: None };
    let mut out = Vec::new();
    let mut in_group = false;
    while p.pos < p.tokens.len() && out.len() < MAX_ADDRESSES {
        let leading_comment = p.skip_comments();
        if p.pos >= p.tokens.len() {
            break;
        }
        if p.is(b',') {
            p.pos += 1;
            continue;
        }
        if p.is(b';') {
            p.pos += 1;
            if in_group {
                out.push(ImapAddress::GroupEnd);
                in_group = false;
            }
            continue;
        }
        let start = p.pos;
        let phrase = p.phrase();
        // Comments inside the phrase are not names; those after the address are.
        p.last_comment = None;
        if p.is(b':') && !in_group {
            // group = display-name ":" [group-list] ";"
            p.pos += 1;
            out.push(ImapAddress::GroupStart(phrase_text(&phrase)));
            in_group = true;
            continue;
        }
        if p.is(b'<') {
            p.pos += 1;
            let mut route = None;
            if p.is(b'@') {
                // obs-route: "@a,@b:"
                let mut r = Vec::new();
                while p.is(b'@') || p.is(b',') {
                    if p.is(b'@') {
                        p.pos += 1;
                        if !r.is_empty() {
                            r.push(b',');
                        }
                        r.push(b'@');
                        r.extend_from_slice(&p.domain());
                    } else {
                        p.pos += 1;
                    }
                }
                if p.is(b':') {
                    p.pos += 1;
                }
                route = Some(r);
            }
            let local = p.phrase();
            p.last_comment = None;
            let host = if p.is(b'@') {
                p.pos += 1;
                p.domain()
            } else {
                MISSING_DOMAIN.to_vec()
            };
            if p.is(b'>') {
                p.pos += 1;
            }
            let comment = p.skip_to_separator();
            let name =
                non_empty(phrase_text(&phrase)).or(comment.and_then(non_empty)).or(leading_comment.and_then(non_empty));
            out.push(ImapAddress::Mailbox { name, route, mailbox: local_text(&local), host });
            continue;
        }
        if p.is(b'@') && !phrase.is_empty() {
            p.pos += 1;
            let host = p.domain();
            // `user@host (Real Name)`: the comment names the address.
            let comment = p.skip_to_separator();
            let name = comment.and_then(non_empty);
            out.push(ImapAddress::Mailbox { name, route: None, mailbox: local_text(&phrase), host });
            continue;
        }
        if !phrase.is_empty() && (p.peek().is_none() || p.is(b',') || p.is(b';')) {
            out.push(if is_local_part(&phrase) {
                ImapAddress::Mailbox {
                    name: None,
                    route: None,
                    mailbox: local_text(&phrase),
                    host: MISSING_DOMAIN.to_vec(),
                }
            } else {
                ImapAddress::Mailbox {
                    name: Some(phrase_text(&phrase)),
                    route: None,
                    mailbox: MISSING_MAILBOX.to_vec(),
                    host: MISSING_DOMAIN.to_vec(),
                }
            });
            continue;
        }
        // Garbage: skip it.
        p.skip_to_separator();
        if p.pos == start {
            p.pos += 1;
        }
    }
    if in_group {
        out.push(ImapAddress::GroupEnd);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(name: Option<&str>, mailbox: &str, host: &str) -> ImapAddress {
        ImapAddress::Mailbox {
            name: name.map(|n| n.as_bytes().to_vec()),
            route: None,
            mailbox: mailbox.as_bytes().to_vec(),
            host: host.as_bytes().to_vec(),
        }
    }

    fn parse(s: &str) -> Vec<ImapAddress> {
        parse_address_list(s.as_bytes())
    }

    #[test]
    fn simple_and_named() {
        assert_eq!(parse("alice@example.org"), vec![mb(None, "alice", "example.org")]);
        assert_eq!(
            parse("\"Doe, John\" <john.doe@example.org>, =?utf-8?q?J=C3=B6rg?= <j@x.de>"),
            vec![mb(Some("Doe, John"), "john.doe", "example.org"), mb(Some("=?utf-8?q?J=C3=B6rg?="), "j", "x.de")]
        );
        assert_eq!(
            parse("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>"),
            vec![mb(Some("Pete"), "pete", "silly.test")]
        );
        assert_eq!(
            parse("<@a.test,@b.test:joe@c.test>"),
            vec![ImapAddress::Mailbox {
                name: None,
                route: Some(b"@a.test,@b.test".to_vec()),
                mailbox: b"joe".to_vec(),
                host: b"c.test".to_vec()
            }]
        );
        assert_eq!(parse("\"quoted local\"@x.test"), vec![mb(None, "quoted local", "x.test")]);
        assert_eq!(parse("Mary Smith <mary@[192.0.2.1]>"), vec![mb(Some("Mary Smith"), "mary", "[192.0.2.1]")]);
        assert_eq!(parse("J. R. Smith <jrs@x.test>"), vec![mb(Some("J. R. Smith"), "jrs", "x.test")]);
    }

    #[test]
    fn groups() {
        assert_eq!(
            parse("A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;, solo@x.test"),
            vec![
                ImapAddress::GroupStart(b"A Group".to_vec()),
                mb(Some("Ed Jones"), "c", "a.test"),
                mb(None, "joe", "where.test"),
                mb(Some("John"), "jdoe", "one.test"),
                ImapAddress::GroupEnd,
                mb(None, "solo", "x.test"),
            ]
        );
        assert_eq!(
            parse("undisclosed-recipients:;"),
            vec![ImapAddress::GroupStart(b"undisclosed-recipients".to_vec()), ImapAddress::GroupEnd]
        );
        assert_eq!(
            parse("unclosed: a@b.c"),
            vec![ImapAddress::GroupStart(b"unclosed".to_vec()), mb(None, "a", "b.c"), ImapAddress::GroupEnd]
        );
    }

    #[test]
    fn broken_input_is_survived() {
        assert_eq!(parse(""), vec![]);
        assert_eq!(parse("nobody"), vec![mb(None, "nobody", "MISSING_DOMAIN")]);
        assert_eq!(parse("<>"), vec![mb(None, "", "MISSING_DOMAIN")]);
        for garbage in ["<<<", ">>>@@", "\"unterminated", "(unterminated comment", ":;:;", "@@@,,,", "a@", "@b"] {
            let _ = parse(garbage);
        }
    }

    /// Issue 10: what Dovecot (and mail readers) make of addresses outside RFC 5322.
    #[test]
    fn comments_phrases_and_groups_as_dovecot_reads_them() {
        assert_eq!(parse("user@domain (Real Name)"), vec![mb(Some("Real Name"), "user", "domain")]);
        assert_eq!(parse("<user@domain> (Real Name)"), vec![mb(Some("Real Name"), "user", "domain")]);
        assert_eq!(parse("Phrase <u@d> (comment)"), vec![mb(Some("Phrase"), "u", "d")]);
        assert_eq!(parse("Someone Else"), vec![mb(Some("Someone Else"), "MISSING_MAILBOX", "MISSING_DOMAIN")]);
        assert_eq!(parse("a.b"), vec![mb(None, "a.b", "MISSING_DOMAIN")]);
        // RFC 3501 §7.4.2 group markers, with an empty group and one with only a comment.
        assert_eq!(
            parse("g1: a@b, c@d;, g2:;, g3: (just a comment);"),
            vec![
                ImapAddress::GroupStart(b"g1".to_vec()),
                mb(None, "a", "b"),
                mb(None, "c", "d"),
                ImapAddress::GroupEnd,
                ImapAddress::GroupStart(b"g2".to_vec()),
                ImapAddress::GroupEnd,
                ImapAddress::GroupStart(b"g3".to_vec()),
                ImapAddress::GroupEnd,
            ]
        );
        // 8-bit bytes are kept as they are.
        assert_eq!(
            parse_address_list(b"Fr\xf6sche <f@x>"),
            vec![ImapAddress::Mailbox {
                name: Some(b"Fr\xf6sche".to_vec()),
                route: None,
                mailbox: b"f".to_vec(),
                host: b"x".to_vec()
            }]
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,120}") {
            let _ = parse(&s);
        }
    }
}
