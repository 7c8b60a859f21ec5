//! ENVELOPE, BODY and BODYSTRUCTURE (RFC 9051 §7.5.2) rendered from the message summary.
//! Rendered once when the IMAP server caches a summary ([`ImapForms`], for clients without
//! UTF-8) and again only for UTF-8 clients when the message has 8-bit text.
//!
//! Strings are the message's own bytes: encoded words (RFC 2047) and RFC 2231 parameters
//! are left for the client to decode, as Dovecot and Cyrus do. A client without UTF-8
//! (IMAP4rev1 without `ENABLE UTF8=ACCEPT`) gets any 8-bit string as a literal, byte for
//! byte (RFC 3501 §4.3 keeps quoted strings 7-bit); an IMAP4rev2 or UTF8=ACCEPT client gets
//! valid UTF-8 as a quoted string (RFC 9051 §4.3, RFC 6855 §3) and other 8-bit bytes still as
//! a literal.

use crate::encode::{nstring, string};
use tern_mime::address::{ImapAddress, parse_address_list};
use tern_mime::{BodyPart, MessageSummary, Param, PartKind, RawEnvelope};

/// Output options that depend on the session.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// The client accepts UTF-8 in quoted strings (IMAP4rev2 or UTF8=ACCEPT).
    pub utf8: bool,
}

/// ENVELOPE, BODY and BODYSTRUCTURE rendered for clients without UTF-8, once per message
/// when its summary is cached (a FETCH of them copies bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImapForms {
    /// Bytes, not text: 8-bit header bytes travel in literals exactly as the message has
    /// them.
    pub envelope: Vec<u8>,
    pub body: Vec<u8>,
    pub bodystructure: Vec<u8>,
    /// Some rendered text had 8-bit characters (sent as literals): a UTF-8 client gets them
    /// rendered again as quoted strings.
    pub eight_bit: bool,
}

impl ImapForms {
    /// The three items of `summary`, whose MIME tree must still be whole.
    pub fn of(summary: &MessageSummary) -> ImapForms {
        let ascii = Style { utf8: false };
        let mut envelope_bytes = Vec::new();
        envelope(&mut envelope_bytes, &summary.envelope, ascii);
        let mut body = Vec::new();
        body_structure(&mut body, &summary.body, false, ascii);
        let mut bodystructure = Vec::new();
        body_structure(&mut bodystructure, &summary.body, true, ascii);
        let eight_bit = [&envelope_bytes, &body, &bodystructure].iter().any(|b| !b.is_ascii());
        ImapForms { envelope: envelope_bytes, body, bodystructure, eight_bit }
    }

    /// About how many bytes the forms hold in memory.
    pub fn heap_size(&self) -> usize {
        self.envelope.capacity() + self.body.capacity() + self.bodystructure.capacity()
    }
}

fn addresses(out: &mut Vec<u8>, raw: Option<&[u8]>, style: Style) -> bool {
    let list = raw.map(parse_address_list).unwrap_or_default();
    if list.is_empty() {
        return false;
    }
    out.push(b'(');
    for a in list {
        match a {
            ImapAddress::Mailbox { name, route, mailbox, host } => {
                out.push(b'(');
                nstring(out, name.as_deref(), style.utf8);
                out.push(b' ');
                nstring(out, route.as_deref(), style.utf8);
                out.push(b' ');
                string(out, &mailbox, style.utf8);
                out.push(b' ');
                string(out, &host, style.utf8);
                out.push(b')');
            }
            ImapAddress::GroupStart(name) => {
                out.extend_from_slice(b"(NIL NIL ");
                string(out, &name, style.utf8);
                out.extend_from_slice(b" NIL)");
            }
            ImapAddress::GroupEnd => out.extend_from_slice(b"(NIL NIL NIL NIL)"),
        }
    }
    out.push(b')');
    true
}

/// `(date subject from sender reply-to to cc bcc in-reply-to message-id)`.
pub fn envelope(out: &mut Vec<u8>, env: &RawEnvelope, style: Style) {
    out.push(b'(');
    nstring(out, env.date.as_deref(), style.utf8);
    out.push(b' ');
    nstring(out, env.subject.as_deref(), style.utf8);
    out.push(b' ');
    let mut from = Vec::new();
    let has_from = addresses(&mut from, env.from.as_deref(), style);
    if has_from {
        out.extend_from_slice(&from);
    } else {
        out.extend_from_slice(b"NIL");
    }
    // Sender and Reply-To default to From when absent or empty.
    for raw in [env.sender.as_deref(), env.reply_to.as_deref()] {
        out.push(b' ');
        if !addresses(out, raw, style) {
            if has_from {
                out.extend_from_slice(&from);
            } else {
                out.extend_from_slice(b"NIL");
            }
        }
    }
    for raw in [env.to.as_deref(), env.cc.as_deref(), env.bcc.as_deref()] {
        out.push(b' ');
        if !addresses(out, raw, style) {
            out.extend_from_slice(b"NIL");
        }
    }
    out.push(b' ');
    nstring(out, env.in_reply_to.as_deref(), style.utf8);
    out.push(b' ');
    nstring(out, env.message_id.as_deref(), style.utf8);
    out.push(b')');
}

fn params(out: &mut Vec<u8>, params: &[Param], style: Style) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, k, style.utf8);
        out.push(b' ');
        string(out, v, style.utf8);
    }
    out.push(b')');
}

fn disposition(out: &mut Vec<u8>, d: &Option<(String, Vec<Param>)>, style: Style) {
    match d {
        None => out.extend_from_slice(b"NIL"),
        Some((kind, p)) => {
            out.push(b'(');
            string(out, kind.as_bytes(), style.utf8);
            out.push(b' ');
            params(out, p, style);
            out.push(b')');
        }
    }
}

/// Always a list when present (RFC 3501 §7.4.2 allows both forms; Dovecot sends a list).
fn language(out: &mut Vec<u8>, langs: &[Vec<u8>], style: Style) {
    if langs.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, l) in langs.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, l, style.utf8);
    }
    out.push(b')');
}

/// The extension data every part ends with: ` disposition language location`.
fn extension_tail(out: &mut Vec<u8>, part: &BodyPart, style: Style) {
    out.push(b' ');
    disposition(out, &part.disposition, style);
    out.push(b' ');
    language(out, &part.language, style);
    out.push(b' ');
    nstring(out, part.location.as_deref(), style.utf8);
}

/// BODYSTRUCTURE (`extended`) or BODY.
pub fn body_structure(out: &mut Vec<u8>, part: &BodyPart, extended: bool, style: Style) {
    out.push(b'(');
    match &part.kind {
        PartKind::Multipart(children) => {
            if children.is_empty() {
                // IMAP needs at least one part; a multipart whose boundary never appears
                // shows one empty text part (as Dovecot does).
                out.extend_from_slice(b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0");
                if extended {
                    out.extend_from_slice(b" NIL NIL NIL NIL");
                }
                out.push(b')');
            }
            for c in children {
                body_structure(out, c, extended, style);
            }
            out.push(b' ');
            string(out, part.subtype.as_bytes(), style.utf8);
            if extended {
                out.push(b' ');
                params(out, &part.params, style);
                extension_tail(out, part, style);
            }
        }
        kind => {
            string(out, part.media_type.as_bytes(), style.utf8);
            out.push(b' ');
            string(out, part.subtype.as_bytes(), style.utf8);
            out.push(b' ');
            params(out, &part.params, style);
            out.push(b' ');
            nstring(out, part.id.as_deref(), style.utf8);
            out.push(b' ');
            nstring(out, part.description.as_deref(), style.utf8);
            out.push(b' ');
            string(out, part.encoding.as_deref().unwrap_or("7bit").as_bytes(), style.utf8);
            out.push(b' ');
            out.extend_from_slice(part.offset_end.saturating_sub(part.offset_body).to_string().as_bytes());
            match kind {
                PartKind::Message(env, inner) => {
                    out.push(b' ');
                    envelope(out, env, style);
                    out.push(b' ');
                    body_structure(out, inner, extended, style);
                    out.push(b' ');
                    out.extend_from_slice(part.lines.to_string().as_bytes());
                }
                _ if part.media_type.eq_ignore_ascii_case("text") => {
                    out.push(b' ');
                    out.extend_from_slice(part.lines.to_string().as_bytes());
                }
                _ => {}
            }
            if extended {
                out.push(b' ');
                nstring(out, part.md5.as_deref(), style.utf8);
                extension_tail(out, part, style);
            }
        }
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASCII: Style = Style { utf8: false };

    fn env_of(raw: &[u8]) -> String {
        let s = tern_mime::summarize(raw);
        let mut out = Vec::new();
        envelope(&mut out, &s.envelope, ASCII);
        String::from_utf8(out).unwrap()
    }

    fn bs_of(raw: &[u8], extended: bool) -> String {
        let s = tern_mime::summarize(raw);
        let mut out = Vec::new();
        body_structure(&mut out, &s.body, extended, ASCII);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn envelope_rfc_example_shape() {
        let raw = b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\nFrom: Terry Gray <gray@cac.washington.edu>\r\nSubject: IMAP4rev2 WG mtg summary and minutes\r\nTo: imap@cac.washington.edu\r\ncc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\nMessage-Id: <B27397-0100000@cac.washington.edu>\r\n\r\nbody\r\n";
        assert_eq!(
            env_of(raw),
            "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev2 WG mtg summary and minutes\" ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((NIL NIL \"imap\" \"cac.washington.edu\")) ((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL \"<B27397-0100000@cac.washington.edu>\")"
        );
    }

    #[test]
    fn envelope_nil_empty_groups_and_encoded_words() {
        let raw = b"Subject:\r\nFrom: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>\r\nTo: undisclosed-recipients:;\r\nIn-Reply-To: <a@b>\r\n\r\n";
        assert_eq!(
            env_of(raw),
            "(NIL \"\" ((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL \"PIRARD\" \"vm1.ulg.ac.be\")) ((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL \"PIRARD\" \"vm1.ulg.ac.be\")) ((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL \"PIRARD\" \"vm1.ulg.ac.be\")) ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL NIL \"<a@b>\" NIL)"
        );
        assert_eq!(env_of(b"X: y\r\n\r\n"), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    }

    #[test]
    fn simple_text_structure() {
        let raw = b"Subject: x\r\n\r\nline 1\r\nline 2\r\n";
        assert_eq!(bs_of(raw, false), "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 16 2)");
        assert_eq!(
            bs_of(raw, true),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 16 2 NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn multipart_with_attachment_and_nested_message() {
        let raw = b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n--XX\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <c1@x>\r\n\r\nQUJD\r\n--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: a@b.c\r\n\r\ninner body\r\n--XX--\r\n";
        assert_eq!(
            bs_of(raw, true),
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 5 1 NIL NIL NIL NIL)(\"application\" \"pdf\" (\"name\" \"a.pdf\") \"<c1@x>\" NIL \"base64\" 4 NIL (\"attachment\" (\"filename\" \"a.pdf\")) NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 41 (NIL \"inner\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL) 4 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"XX\") NIL NIL NIL)"
        );
        assert!(bs_of(raw, false).ends_with(" \"mixed\")"));
    }
}
