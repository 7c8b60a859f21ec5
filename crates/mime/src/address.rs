//! RFC 5322 address lists (with groups and obsolete routes) parsed from raw header values
//! into IMAP address structures, keeping display names as written (encoded words intact),
//! as RFC 9051 §7.5.2 describes the ENVELOPE.

/// One IMAP address structure, or a group marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImapAddress {
    Mailbox {
        name: Option<String>,
        route: Option<String>,
        mailbox: String,
        host: String,
    },
    /// Start of a group: `(NIL NIL "name" NIL)`.
    GroupStart(String),
    /// End of a group: `(NIL NIL NIL NIL)`.
    GroupEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An atom; `true` when white space or a comment came before it.
    Word(String, bool),
    Quoted(String, bool),
    Literal(String),
    Special(char),
}

fn tokenize(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut space = false;
    while i < chars.len() {
        let c = chars[i];
        let spaced = std::mem::take(&mut space);
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                space = true;
                i += 1;
            }
            '(' => {
                // Comment, possibly nested: counts as white space.
                space = true;
                let mut depth = 0;
                while i < chars.len() {
                    match chars[i] {
                        '\\' => i += 1,
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            '"' => {
                let mut q = String::new();
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    q.push(chars[i]);
                    i += 1;
                }
                i += 1;
                out.push(Token::Quoted(q, spaced));
            }
            '[' => {
                let mut l = String::from("[");
                i += 1;
                while i < chars.len() && chars[i] != ']' {
                    l.push(chars[i]);
                    i += 1;
                }
                l.push(']');
                i += 1;
                out.push(Token::Literal(l));
            }
            '<' | '>' | ':' | ';' | ',' | '@' | '.' => {
                out.push(Token::Special(c));
                i += 1;
            }
            _ => {
                let mut w = String::new();
                while i < chars.len() && !" \t\r\n()\"[<>:;,@.".contains(chars[i]) {
                    w.push(chars[i]);
                    i += 1;
                }
                if w.is_empty() {
                    i += 1;
                } else {
                    out.push(Token::Word(w, spaced));
                }
            }
        }
    }
    out
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn is(&self, c: char) -> bool {
        self.peek() == Some(&Token::Special(c))
    }

    /// Words, quoted strings and dots up to a special: a phrase or a local part.
    fn phrase(&mut self) -> Vec<Token> {
        let mut out = Vec::new();
        while let Some(t) = self.peek() {
            match t {
                Token::Word(..) | Token::Quoted(..) | Token::Special('.') => {
                    out.push(t.clone());
                    self.pos += 1;
                }
                _ => break,
            }
        }
        out
    }

    fn domain(&mut self) -> String {
        let mut d = String::new();
        while let Some(t) = self.peek() {
            match t {
                Token::Word(w, _) => d.push_str(w),
                Token::Literal(l) => d.push_str(l),
                Token::Special('.') => d.push('.'),
                _ => break,
            }
            self.pos += 1;
        }
        d
    }

    fn skip_to_separator(&mut self) {
        while let Some(t) = self.peek() {
            if matches!(t, Token::Special(',' | ';')) {
                break;
            }
            self.pos += 1;
        }
    }
}

/// Joins phrase tokens as they were written: white space runs become one space, quoted
/// strings lose their quotes.
fn phrase_text(tokens: &[Token]) -> String {
    let mut out = String::new();
    for t in tokens {
        match t {
            Token::Special('.') => out.push('.'),
            Token::Word(w, spaced) | Token::Quoted(w, spaced) => {
                if *spaced && !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(w);
            }
            _ => {}
        }
    }
    out
}

fn local_text(tokens: &[Token]) -> String {
    let mut out = String::new();
    for t in tokens {
        match t {
            Token::Special('.') => out.push('.'),
            Token::Word(w, _) | Token::Quoted(w, _) => out.push_str(w),
            _ => {}
        }
    }
    out
}

const MISSING_DOMAIN: &str = "MISSING_DOMAIN";
const MAX_ADDRESSES: usize = 1000;

/// Parses a raw address-list header value. Never fails: what cannot be understood is
/// skipped up to the next comma.
pub fn parse_address_list(raw: &str) -> Vec<ImapAddress> {
    let mut p = Parser { tokens: tokenize(raw), pos: 0 };
    let mut out = Vec::new();
    let mut in_group = false;
    while p.pos < p.tokens.len() && out.len() < MAX_ADDRESSES {
        if p.is(',') {
            p.pos += 1;
            continue;
        }
        if p.is(';') {
            p.pos += 1;
            if in_group {
                out.push(ImapAddress::GroupEnd);
                in_group = false;
            }
            continue;
        }
        let start = p.pos;
        let phrase = p.phrase();
        if p.is(':') && !in_group {
            // group = display-name ":" [group-list] ";"
            p.pos += 1;
            out.push(ImapAddress::GroupStart(phrase_text(&phrase)));
            in_group = true;
            continue;
        }
        if p.is('<') {
            p.pos += 1;
            let mut route = None;
            if p.is('@') {
                // obs-route: "@a,@b:"
                let mut r = String::new();
                while p.is('@') || p.is(',') {
                    if p.is('@') {
                        p.pos += 1;
                        if !r.is_empty() {
                            r.push(',');
                        }
                        r.push('@');
                        r.push_str(&p.domain());
                    } else {
                        p.pos += 1;
                    }
                }
                if p.is(':') {
                    p.pos += 1;
                }
                route = Some(r);
            }
            let local = p.phrase();
            let host = if p.is('@') {
                p.pos += 1;
                p.domain()
            } else {
                MISSING_DOMAIN.to_string()
            };
            if p.is('>') {
                p.pos += 1;
            }
            let name = phrase_text(&phrase);
            out.push(ImapAddress::Mailbox {
                name: (!name.is_empty()).then_some(name),
                route,
                mailbox: local_text(&local),
                host,
            });
            p.skip_to_separator();
            continue;
        }
        if p.is('@') && !phrase.is_empty() {
            p.pos += 1;
            let host = p.domain();
            out.push(ImapAddress::Mailbox { name: None, route: None, mailbox: local_text(&phrase), host });
            p.skip_to_separator();
            continue;
        }
        if !phrase.is_empty() && (p.peek().is_none() || p.is(',') || p.is(';')) {
            out.push(ImapAddress::Mailbox {
                name: None,
                route: None,
                mailbox: local_text(&phrase),
                host: MISSING_DOMAIN.to_string(),
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
        ImapAddress::Mailbox { name: name.map(str::to_string), route: None, mailbox: mailbox.into(), host: host.into() }
    }

    #[test]
    fn simple_and_named() {
        assert_eq!(parse_address_list("alice@example.org"), vec![mb(None, "alice", "example.org")]);
        assert_eq!(
            parse_address_list("\"Doe, John\" <john.doe@example.org>, =?utf-8?q?J=C3=B6rg?= <j@x.de>"),
            vec![mb(Some("Doe, John"), "john.doe", "example.org"), mb(Some("=?utf-8?q?J=C3=B6rg?="), "j", "x.de")]
        );
        assert_eq!(
            parse_address_list("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>"),
            vec![mb(Some("Pete"), "pete", "silly.test")]
        );
        assert_eq!(
            parse_address_list("<@a.test,@b.test:joe@c.test>"),
            vec![ImapAddress::Mailbox {
                name: None,
                route: Some("@a.test,@b.test".into()),
                mailbox: "joe".into(),
                host: "c.test".into()
            }]
        );
        assert_eq!(parse_address_list("\"quoted local\"@x.test"), vec![mb(None, "quoted local", "x.test")]);
        assert_eq!(
            parse_address_list("Mary Smith <mary@[192.0.2.1]>"),
            vec![mb(Some("Mary Smith"), "mary", "[192.0.2.1]")]
        );
        assert_eq!(parse_address_list("J. R. Smith <jrs@x.test>"), vec![mb(Some("J. R. Smith"), "jrs", "x.test")]);
    }

    #[test]
    fn groups() {
        assert_eq!(
            parse_address_list("A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;, solo@x.test"),
            vec![
                ImapAddress::GroupStart("A Group".into()),
                mb(Some("Ed Jones"), "c", "a.test"),
                mb(None, "joe", "where.test"),
                mb(Some("John"), "jdoe", "one.test"),
                ImapAddress::GroupEnd,
                mb(None, "solo", "x.test"),
            ]
        );
        assert_eq!(
            parse_address_list("undisclosed-recipients:;"),
            vec![ImapAddress::GroupStart("undisclosed-recipients".into()), ImapAddress::GroupEnd]
        );
        assert_eq!(
            parse_address_list("unclosed: a@b.c"),
            vec![ImapAddress::GroupStart("unclosed".into()), mb(None, "a", "b.c"), ImapAddress::GroupEnd]
        );
    }

    #[test]
    fn broken_input_is_survived() {
        assert_eq!(parse_address_list(""), vec![]);
        assert_eq!(parse_address_list("nobody"), vec![mb(None, "nobody", MISSING_DOMAIN)]);
        assert_eq!(parse_address_list("<>"), vec![mb(None, "", MISSING_DOMAIN)]);
        for garbage in ["<<<", ">>>@@", "\"unterminated", "(unterminated comment", ":;:;", "@@@,,,", "a@", "@b"] {
            let _ = parse_address_list(garbage);
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,120}") {
            let _ = parse_address_list(&s);
        }
    }
}
