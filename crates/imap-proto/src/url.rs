//! IMAP URLs (RFC 5092) as CATENATE (RFC 4469 §3) refers to parts of stored messages:
//! `/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=spec][/;PARTIAL=offset[.length]]`, or the same
//! path after `imap://[user[;AUTH=...]@]host[:port]`. Pure: the session checks what the URL
//! names exists and that the user may read it.

use crate::parse::parse_section_spec;
use crate::types::Section;

/// A message (or a part of one) named by an IMAP URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageUrl {
    /// The mailbox name, percent-decoded (UTF-8).
    pub mailbox: String,
    pub uid_validity: Option<u32>,
    pub uid: u32,
    pub section: Option<Section>,
    /// `;PARTIAL=offset[.length]` (RFC 5092 §5).
    pub partial: Option<(u32, Option<u32>)>,
}

/// Longest URL accepted.
const MAX_URL: usize = 4096;

/// Parses a URL of the forms above; `Err` says what is wrong with it.
pub fn parse_message_url(url: &str) -> Result<MessageUrl, String> {
    if url.len() > MAX_URL {
        return Err("URL too long".into());
    }
    let path = if url.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("imap://")) {
        let rest = &url[7..];
        let slash = rest.find('/').ok_or("URL without a mailbox")?;
        &rest[slash..]
    } else {
        url
    };
    let path = path.strip_prefix('/').ok_or("URL must be absolute or start with /")?;
    let mut pieces = path.split("/;");
    let mailbox_part = pieces.next().unwrap_or_default();
    let (mailbox, uid_validity) = match mailbox_part.split_once(';') {
        Some((name, param)) => {
            let value = param_value(param, "UIDVALIDITY")?;
            (name, Some(number(value)?))
        }
        None => (mailbox_part, None),
    };
    if mailbox.is_empty() {
        return Err("URL without a mailbox".into());
    }
    let mailbox = percent_decode(mailbox)?;
    let mut uid = None;
    let mut section = None;
    let mut partial = None;
    for piece in pieces {
        let (name, value) = piece.split_once('=').ok_or_else(|| format!("bad URL parameter {piece}"))?;
        match name.to_ascii_uppercase().as_str() {
            "UID" if uid.is_none() && section.is_none() => uid = Some(number(value)?),
            "SECTION" if uid.is_some() && section.is_none() && partial.is_none() => {
                let spec = percent_decode(value)?;
                section = Some(parse_section_spec(&spec)?);
            }
            "PARTIAL" if uid.is_some() && partial.is_none() => {
                partial = Some(match value.split_once('.') {
                    Some((offset, length)) => (number_or_zero(offset)?, Some(number(length)?)),
                    None => (number_or_zero(value)?, None),
                });
            }
            _ => return Err(format!("unexpected URL parameter {name}")),
        }
    }
    let uid = uid.ok_or("URL without a UID")?;
    Ok(MessageUrl { mailbox, uid_validity, uid, section, partial })
}

fn param_value<'a>(param: &'a str, name: &str) -> Result<&'a str, String> {
    match param.split_once('=') {
        Some((n, v)) if n.eq_ignore_ascii_case(name) => Ok(v),
        _ => Err(format!("unexpected URL parameter {param}")),
    }
}

fn number_or_zero(s: &str) -> Result<u32, String> {
    s.parse::<u32>().map_err(|_| format!("bad number {s}"))
}

/// A non-zero number.
fn number(s: &str) -> Result<u32, String> {
    match number_or_zero(s)? {
        0 => Err("zero is not allowed here".into()),
        n => Ok(n),
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).ok_or("bad %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad %-escape")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "URL is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SectionText;

    #[test]
    fn rfc4469_examples_parse() {
        let u = parse_message_url("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER").unwrap();
        assert_eq!(
            u,
            MessageUrl {
                mailbox: "Drafts".into(),
                uid_validity: Some(385_759_045),
                uid: 20,
                section: Some(Section { part: vec![], text: Some(SectionText::Header) }),
                partial: None,
            }
        );
        let u = parse_message_url("/Drafts;UIDVALIDITY=385759045/;UID=30/;section=1.MIME").unwrap();
        assert_eq!(u.section, Some(Section { part: vec![1], text: Some(SectionText::Mime) }));
        let u = parse_message_url("imap://bob@example.org/Archive%202024/;UID=7/;PARTIAL=10.20").unwrap();
        assert_eq!((u.mailbox.as_str(), u.uid, u.partial), ("Archive 2024", 7, Some((10, Some(20)))));
        let u = parse_message_url("/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20(From%20To)").unwrap();
        assert_eq!(
            u.section,
            Some(Section { part: vec![], text: Some(SectionText::HeaderFields(vec!["From".into(), "To".into()])) })
        );
    }

    #[test]
    fn bad_urls_say_why() {
        for bad in [
            "Drafts/;UID=1",
            "/Drafts",
            "/Drafts/;UID=0",
            "/;UID=1",
            "/Drafts;FOO=1/;UID=1",
            "/Drafts/;UID=1/;SECTION=BOGUS",
            "/Drafts/;UID=1/;UID=2",
            "/Dr%ZZ/;UID=1",
            "/Drafts/;UID=1/;URLAUTH=anonymous",
        ] {
            assert!(parse_message_url(bad).is_err(), "{bad}");
        }
        assert!(parse_message_url(&format!("/{}/;UID=1", "a".repeat(5000))).is_err());
        // Found by fuzzing: a multi-byte character across the scheme's length.
        assert!(parse_message_url("imap:/\u{e9}x/;UID=1").is_err());
    }
}
