//! RFC 5321 §4.1.2 paths and mailboxes, with RFC 6531 UTF-8 extensions.
//!
//! The parser keeps what policy needs to know and RFC 5321 says to ignore: whether the local
//! part was quoted and whether a source route was given. Relay decisions are made on the
//! parsed value, never on the raw text.

/// `local@domain` as parsed from a path. `local` has quoting removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub local: String,
    /// The local part was a Quoted-string (`"a b"@example.org`).
    pub quoted: bool,
    /// The domain as written, or the address literal including its brackets.
    pub domain: String,
    pub domain_literal: bool,
}

impl Mailbox {
    /// Whether any part needs SMTPUTF8 (RFC 6531).
    pub fn is_utf8(&self) -> bool {
        !self.local.is_ascii() || !self.domain.is_ascii()
    }

    /// The address as it would be written in a path (quoting the local part if it needs it).
    pub fn to_path_string(&self) -> String {
        if needs_quoting(&self.local) {
            let mut q = String::from("\"");
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    q.push('\\');
                }
                q.push(c);
            }
            q.push('"');
            format!("{q}@{}", self.domain)
        } else {
            format!("{}@{}", self.local, self.domain)
        }
    }
}

impl std::fmt::Display for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_path_string())
    }
}

fn needs_quoting(local: &str) -> bool {
    local.is_empty()
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local.chars().all(|c| c == '.' || is_atext(c))
}

/// A forward path: a mailbox, or the special `<Postmaster>` every server must accept
/// (RFC 5321 §4.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    Postmaster,
    Mailbox(Mailbox),
}

/// A parsed path plus whether it carried a source route (`<@a,@b:user@c>`), which
/// RFC 5321 §4.1.1.3 says servers SHOULD ignore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    pub value: T,
    pub source_route: bool,
}

/// RFC 5322 atext, extended with any non-ASCII character (RFC 6531 §3.3).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (!c.is_ascii() && !c.is_control())
}

/// Parses `<...>` into a reverse path: `None` is the null path `<>`.
pub fn parse_reverse_path(text: &str) -> Result<Parsed<Option<Mailbox>>, &'static str> {
    let inner = strip_brackets(text)?;
    if inner.is_empty() {
        return Ok(Parsed { value: None, source_route: false });
    }
    let (route, mailbox) = split_route(inner)?;
    Ok(Parsed { value: Some(parse_mailbox(mailbox)?), source_route: route })
}

/// Parses `<...>` into a forward path.
pub fn parse_forward_path(text: &str) -> Result<Parsed<ForwardPath>, &'static str> {
    let inner = strip_brackets(text)?;
    if inner.eq_ignore_ascii_case("postmaster") {
        return Ok(Parsed { value: ForwardPath::Postmaster, source_route: false });
    }
    if inner.is_empty() {
        return Err("empty forward path");
    }
    let (route, mailbox) = split_route(inner)?;
    Ok(Parsed { value: ForwardPath::Mailbox(parse_mailbox(mailbox)?), source_route: route })
}

fn strip_brackets(text: &str) -> Result<&str, &'static str> {
    text.strip_prefix('<').and_then(|t| t.strip_suffix('>')).ok_or("address must be enclosed in <>")
}

/// Splits off an A-d-l source route (`@a,@b:`), validating its domains.
fn split_route(inner: &str) -> Result<(bool, &str), &'static str> {
    if !inner.starts_with('@') {
        return Ok((false, inner));
    }
    let colon = inner.find(':').ok_or("bad source route")?;
    for hop in inner[..colon].split(',') {
        let domain = hop.strip_prefix('@').ok_or("bad source route")?;
        parse_domain(domain)?;
    }
    Ok((true, &inner[colon + 1..]))
}

/// Parses `local@domain`.
pub fn parse_mailbox(text: &str) -> Result<Mailbox, &'static str> {
    let (local, quoted, rest) = if let Some(after_quote) = text.strip_prefix('"') {
        let mut local = String::new();
        let mut chars = after_quote.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, q)) if (' '..='~').contains(&q) || !q.is_ascii() => local.push(q),
                    _ => return Err("bad quoted-pair in local part"),
                },
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c if (c == ' ' || c == '!' || ('#'..='[').contains(&c) || (']'..='~').contains(&c))
                    || (!c.is_ascii() && !c.is_control()) =>
                {
                    local.push(c)
                }
                _ => return Err("bad character in quoted local part"),
            }
        }
        let end = end.ok_or("unterminated quoted local part")?;
        (local, true, &after_quote[end..])
    } else {
        let at = text.rfind('@').ok_or("address has no domain")?;
        let local = &text[..at];
        if local.is_empty() || local.split('.').any(|atom| atom.is_empty() || !atom.chars().all(is_atext)) {
            return Err("bad local part");
        }
        (local.to_string(), false, &text[at..])
    };
    let domain = rest.strip_prefix('@').ok_or("address has no domain")?;
    let domain_literal = domain.starts_with('[');
    parse_domain(domain)?;
    if local.len() > 64 * 4 {
        // RFC 5321 §4.5.3.1.1: 64 octets; allow room for UTF-8 and be lenient, but bounded.
        return Err("local part too long");
    }
    Ok(Mailbox { local, quoted, domain: domain.to_string(), domain_literal })
}

/// Validates a Domain or an address-literal.
fn parse_domain(domain: &str) -> Result<(), &'static str> {
    if let Some(lit) = domain.strip_prefix('[') {
        let lit = lit.strip_suffix(']').ok_or("bad address literal")?;
        if let Some(v6) = lit.strip_prefix("IPv6:") {
            v6.parse::<std::net::Ipv6Addr>().map_err(|_| "bad IPv6 address literal")?;
        } else if lit.parse::<std::net::Ipv4Addr>().is_err() {
            // General-address-literal (RFC 5321 §4.1.3) is syntactically allowed; we accept the
            // tag:content form but nothing will ever route to it.
            let (tag, content) = lit.split_once(':').ok_or("bad address literal")?;
            if tag.is_empty()
                || content.is_empty()
                || !content.bytes().all(|b| (33..=90).contains(&b) || (94..=126).contains(&b))
            {
                return Err("bad address literal");
            }
        }
        return Ok(());
    }
    if domain.is_empty() || domain.len() > 255 * 4 {
        return Err("bad domain");
    }
    for label in domain.split('.') {
        let ok = !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric()));
        if !ok {
            return Err("bad domain");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(s: &str) -> Mailbox {
        parse_mailbox(s).unwrap()
    }

    #[test]
    fn plain_and_quoted_local_parts() {
        let m = mb("john.doe@example.org");
        assert_eq!((m.local.as_str(), m.domain.as_str(), m.quoted), ("john.doe", "example.org", false));
        let q = mb("\"john doe\"@example.org");
        assert_eq!((q.local.as_str(), q.quoted), ("john doe", true));
        let esc = mb(r#""a\"b\\c"@x.org"#);
        assert_eq!(esc.local, r#"a"b\c"#);
        assert_eq!(esc.to_path_string(), r#""a\"b\\c"@x.org"#);
        assert_eq!(mb("\"user@other\"@local.test").local, "user@other");
        assert_eq!(mb("user%other@local.test").local, "user%other");
    }

    #[test]
    fn bad_addresses() {
        for s in [
            "",
            "@x.org",
            "a@",
            "a..b@x.org",
            ".a@x.org",
            "a b@x.org",
            "a@x..org",
            "a@-x.org",
            "\"a@x.org",
            "a@[1.2.3]",
            "a@b@c.org",
        ] {
            assert!(parse_mailbox(s).is_err(), "{s} should be refused");
        }
    }

    #[test]
    fn literals_and_utf8() {
        assert!(mb("a@[192.0.2.1]").domain_literal);
        assert!(mb("a@[IPv6:2001:db8::1]").domain_literal);
        let u = mb("jörg@bücher.example");
        assert!(u.is_utf8());
        assert!(!mb("a@b.c").is_utf8());
    }

    #[test]
    fn paths() {
        assert_eq!(parse_reverse_path("<>").unwrap().value, None);
        let r = parse_forward_path("<@relay.example,@b.example:user@c.example>").unwrap();
        assert!(r.source_route);
        assert_eq!(r.value, ForwardPath::Mailbox(mb("user@c.example")));
        assert_eq!(parse_forward_path("<postMaster>").unwrap().value, ForwardPath::Postmaster);
        assert!(parse_forward_path("<>").is_err());
        assert!(parse_forward_path("user@x.org").is_err());
        assert!(parse_forward_path("<@bad:user@x.org").is_err());
        assert!(parse_forward_path("<@:user@x.org>").is_err());
    }
}
