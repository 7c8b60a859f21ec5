//! 8-bit message bodies re-encoded for 7-bit transport.
//!
//! RFC 6376 §5.3: a signer that may meet a 7-bit-only hop SHOULD convert the message to a
//! MIME-safe encoding *before* signing, because a relay that downgrades it later breaks the
//! signature. Submission therefore converts 8-bit text parts to quoted-printable (RFC 2045
//! §6.7) and other 8-bit parts to base64, recursing through multiparts (RFC 2046 §5.1) and
//! message/rfc822 parts. A message whose header holds 8-bit bytes (an SMTPUTF8 message) has
//! no 7-bit form and is left alone, as is anything whose structure is not understood.

use crate::text::header_len;

/// Nested MIME depth beyond which a message is left as it is.
const MAX_DEPTH: usize = 32;
/// Longest encoded line (RFC 2045 §6.7 rule 5), the soft line break's `=` included.
const QP_LINE: usize = 76;

/// The message with every 8-bit body part re-encoded, or `None` when nothing needs changing
/// or the message cannot be made 7-bit (8-bit header bytes, unparseable structure).
pub fn to_seven_bit(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_ascii() {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 4);
    convert_entity(raw, &mut out, 0)?;
    out.is_ascii().then_some(out)
}

/// One header field: its name and its unfolded value, and the bytes it spans.
struct Field<'a> {
    name: &'a str,
    value: String,
    raw: &'a [u8],
}

fn fields(header: &[u8]) -> Vec<Field<'_>> {
    let mut out: Vec<Field<'_>> = Vec::new();
    let mut start = 0;
    while start < header.len() {
        let mut end = start;
        // A field runs until a line that does not start with whitespace.
        loop {
            let line_end = header[end..].iter().position(|&b| b == b'\n').map_or(header.len(), |p| end + p + 1);
            end = line_end;
            if end >= header.len() || !matches!(header[end], b' ' | b'\t') {
                break;
            }
        }
        let raw = &header[start..end];
        let text = std::str::from_utf8(raw).unwrap_or("");
        if let Some((name, value)) = text.split_once(':') {
            let value =
                value.split(['\r', '\n']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
            out.push(Field { name: name.trim(), value, raw });
        } else {
            // The blank line ending the header, or a malformed line: kept verbatim.
            out.push(Field { name: "", value: String::new(), raw });
        }
        start = end;
    }
    out
}

/// `type/subtype` lower-cased and the `boundary` parameter (RFC 2045 §5.1).
fn content_type(value: &str) -> (String, Option<String>) {
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let mut boundary = None;
    for p in parts {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("boundary")
        {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            boundary = Some(v.to_string());
        }
    }
    (media, boundary)
}

fn convert_entity(entity: &[u8], out: &mut Vec<u8>, depth: usize) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    let split = header_len(entity);
    let (header, body) = entity.split_at(split);
    if !header.is_ascii() {
        return None;
    }
    if body.is_ascii() {
        out.extend_from_slice(entity);
        return Some(());
    }
    let fields = fields(header);
    let find = |name: &str| fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)).map(|f| f.value.as_str());
    let (media, boundary) = content_type(find("Content-Type").unwrap_or("text/plain"));
    let encoding = find("Content-Transfer-Encoding").unwrap_or("7bit").trim().to_ascii_lowercase();
    if matches!(encoding.as_str(), "base64" | "quoted-printable") {
        // Claims an encoding yet holds 8-bit bytes: not something to guess about.
        return None;
    }
    if media.starts_with("multipart/") {
        out.extend_from_slice(&rewrite_header(&fields, None, false));
        return convert_multipart(body, boundary.as_deref()?, out, depth);
    }
    if media == "message/rfc822" {
        // RFC 2046 §5.2.1: only 7bit, 8bit or binary; once the inner message is 7-bit, 7bit.
        out.extend_from_slice(&rewrite_header(&fields, Some("7bit"), false));
        return convert_entity(body, out, depth + 1);
    }
    if media.starts_with("message/") || media.starts_with("multipart/") {
        return None;
    }
    let text = media.starts_with("text/");
    let mime_version = depth == 0 && find("MIME-Version").is_none();
    out.extend_from_slice(&rewrite_header(
        &fields,
        Some(if text { "quoted-printable" } else { "base64" }),
        mime_version,
    ));
    if text {
        quoted_printable(body, out);
    } else {
        base64_lines(body, out);
    }
    Some(())
}

/// The header with Content-Transfer-Encoding replaced (when `encoding` is given) and, at the
/// top level of a message that lacked it, `MIME-Version: 1.0` added.
fn rewrite_header(fields: &[Field<'_>], encoding: Option<&str>, mime_version: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        if f.name.is_empty() && (f.raw == b"\r\n" || f.raw == b"\n") {
            // The blank line: new fields go just before it.
            break;
        }
        if encoding.is_some() && f.name.eq_ignore_ascii_case("Content-Transfer-Encoding") {
            continue;
        }
        out.extend_from_slice(f.raw);
        if !f.raw.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    if mime_version {
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }
    if let Some(e) = encoding {
        out.extend_from_slice(format!("Content-Transfer-Encoding: {e}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A delimiter line of a multipart body (RFC 2046 §5.1.1): where it starts and ends
/// (after its CRLF), and whether it is the closing one.
struct Delimiter {
    start: usize,
    end: usize,
    close: bool,
}

fn delimiters(body: &[u8], boundary: &str) -> Vec<Delimiter> {
    let dash = format!("--{boundary}");
    let dash = dash.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    while start < body.len() {
        let end = body[start..].iter().position(|&b| b == b'\n').map_or(body.len(), |p| start + p + 1);
        let line = &body[start..end];
        if let Some(rest) = line.strip_prefix(dash) {
            let close = rest.starts_with(b"--");
            let rest = if close { &rest[2..] } else { rest };
            // Only transport padding may follow the boundary.
            if rest.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
                out.push(Delimiter { start, end, close });
                if close {
                    break;
                }
            }
        }
        start = end;
    }
    out
}

fn convert_multipart(body: &[u8], boundary: &str, out: &mut Vec<u8>, depth: usize) -> Option<()> {
    let delimiters = delimiters(body, boundary);
    let first = delimiters.first()?;
    let preamble = &body[..first.start];
    if !preamble.is_ascii() {
        return None;
    }
    out.extend_from_slice(preamble);
    for (i, d) in delimiters.iter().enumerate() {
        out.extend_from_slice(&body[d.start..d.end]);
        if d.close {
            let epilogue = &body[d.end..];
            if !epilogue.is_ascii() {
                return None;
            }
            out.extend_from_slice(epilogue);
            return Some(());
        }
        // The CRLF before the next delimiter belongs to that delimiter.
        let part_end = match delimiters.get(i + 1) {
            Some(next) => next.start,
            None => body.len(),
        };
        let part = &body[d.end..part_end];
        let (part, line_break) = match part.strip_suffix(b"\r\n") {
            Some(p) if delimiters.get(i + 1).is_some() => (p, true),
            _ => (part, false),
        };
        convert_entity(part, out, depth + 1)?;
        if line_break {
            out.extend_from_slice(b"\r\n");
        }
    }
    Some(())
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// RFC 2045 §6.7 quoted-printable of a text body: CRLF stays a line break, every other byte
/// outside printable ASCII, `=`, and whitespace before a line break are encoded, and lines
/// are soft-broken to at most 76 characters.
pub fn quoted_printable(body: &[u8], out: &mut Vec<u8>) {
    let mut lines = body.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        // A line break is CRLF; a bare LF (and the CR of a line without LF) is data.
        let (line, crlf) = match line.strip_suffix(b"\r") {
            Some(l) if !last => (l, true),
            _ => (line, false),
        };
        let mut width = 0;
        for (i, &b) in line.iter().enumerate() {
            let at_end = i + 1 == line.len() && (crlf || last);
            let literal = match b {
                b'=' => false,
                b' ' | b'\t' => !at_end,
                33..=126 => true,
                _ => false,
            };
            let len = if literal { 1 } else { 3 };
            // Room for this and a soft break's `=`, unless it is the line's last character.
            let limit = if i + 1 == line.len() { QP_LINE } else { QP_LINE - 1 };
            if width + len > limit {
                out.extend_from_slice(b"=\r\n");
                width = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
            width += len;
        }
        if !last {
            if crlf {
                out.extend_from_slice(b"\r\n");
            } else {
                // A bare LF inside a line: encoded, and the line goes on.
                let tail = b"=0A";
                if width + tail.len() > QP_LINE - 1 {
                    out.extend_from_slice(b"=\r\n");
                }
                out.extend_from_slice(tail);
                out.extend_from_slice(b"=\r\n");
            }
        }
    }
}

/// Base64 in lines of 76 characters (RFC 2045 §6.8), ending with CRLF.
fn base64_lines(body: &[u8], out: &mut Vec<u8>) {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    for chunk in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_qp(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'=' if s[i + 1..].starts_with(b"\r\n") => i += 3,
                b'=' => {
                    let hex = std::str::from_utf8(&s[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        out
    }

    #[test]
    fn quoted_printable_round_trips_and_keeps_lines_short() {
        for body in [
            "Grüße aus Köln\r\n".as_bytes(),
            "trailing space \r\nand tab\t\r\n".as_bytes(),
            "a=b ünd ".as_bytes(),
            "x".repeat(200).as_bytes(),
            "é".repeat(100).as_bytes(),
            b"bare\nlf and bare\rcr\r\n",
            b"",
        ] {
            let mut out = Vec::new();
            quoted_printable(body, &mut out);
            assert!(out.is_ascii());
            for line in out.split(|&b| b == b'\n') {
                assert!(line.len() <= QP_LINE + 1, "{:?}", String::from_utf8_lossy(line));
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                assert!(!line.ends_with(b" ") && !line.ends_with(b"\t"), "{:?}", String::from_utf8_lossy(line));
            }
            assert_eq!(decode_qp(&out), body, "{}", String::from_utf8_lossy(&out));
        }
    }

    #[test]
    fn ascii_and_utf8_headers_are_left_alone() {
        assert_eq!(to_seven_bit(b"Subject: hi\r\n\r\nplain\r\n"), None);
        assert_eq!(to_seven_bit("Subject: Grüße\r\n\r\nbody ü\r\n".as_bytes()), None);
    }

    #[test]
    fn a_single_part_message_becomes_quoted_printable() {
        let raw = "From: a@b.test\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n";
        let out = to_seven_bit(raw.as_bytes()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Transfer-Encoding: quoted-printable\r\n"), "{text}");
        assert!(!text.contains("8bit"), "{text}");
        assert!(text.ends_with("\r\n\r\nGr=C3=BC=C3=9Fe\r\n"), "{text}");
        assert!(text.contains("MIME-Version: 1.0\r\n"), "{text}");
        let parsed = mail_parser::MessageParser::default().parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.body_text(0).unwrap(), "Grüße\r\n");
    }

    #[test]
    fn multiparts_and_attached_messages_are_converted_part_by_part() {
        let raw = concat!(
            "From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n",
            "preamble\r\n--outer\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHällo\r\n",
            "--outer\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\u{ff}\u{fe}",
            "\r\n--outer\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
            "Subject: inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Grüß</p>\r\n",
            "--outer\r\nContent-Type: text/plain\r\n\r\nascii\r\n--outer--\r\nepilogue\r\n"
        );
        let out = to_seven_bit(raw.as_bytes()).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("preamble\r\n--outer\r\n"), "{text}");
        assert!(text.contains("--outer--\r\nepilogue\r\n"), "{text}");
        assert!(text.contains("Content-Transfer-Encoding: 7bit\r\n\r\nSubject: inner"), "{text}");
        let parsed = mail_parser::MessageParser::default().parse(&out).unwrap();
        let original = mail_parser::MessageParser::default().parse(raw.as_bytes()).unwrap();
        assert_eq!(parsed.parts.len(), original.parts.len());
        assert_eq!(parsed.body_text(0), original.body_text(0));
        assert_eq!(parsed.attachment(0).map(|a| a.contents()), original.attachment(0).map(|a| a.contents()));
        let inner = parsed.attachment(1).and_then(|a| a.message()).unwrap();
        assert!(inner.body_html(0).unwrap().contains("Grüß"));
        assert_eq!(parsed.body_text(1).as_deref(), Some("ascii"));
    }

    #[test]
    fn what_is_not_understood_is_left_alone() {
        // 8-bit bytes under a base64 label, a multipart without its boundary, and one
        // nested deeper than the limit.
        let lies = "Content-Transfer-Encoding: base64\r\n\r\nü\r\n";
        assert_eq!(to_seven_bit(lies.as_bytes()), None);
        let lost = "Content-Type: multipart/mixed; boundary=x\r\n\r\n--y\r\n\r\nü\r\n";
        assert_eq!(to_seven_bit(lost.as_bytes()), None);
        let mut deep = String::new();
        for _ in 0..40 {
            deep.push_str("Content-Type: message/rfc822\r\n\r\n");
        }
        deep.push_str("\r\nü\r\n");
        assert_eq!(to_seven_bit(deep.as_bytes()), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Whatever the text, the converted message is 7-bit, its lines fit, and it decodes
        /// to the same text.
        #[test]
        fn converted_text_decodes_to_the_original(
            a in "[a-zé ü=\t.\r\n]{0,300}",
            b in "[A-Zß€ =\t]{0,200}",
        ) {
            let a = a.replace('\r', "").replace('\n', "\r\n");
            let raw = format!(
                "Subject: t\r\nContent-Type: multipart/alternative; boundary=b1\r\n\r\n--b1\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\n{a}\r\n--b1\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\n{b}ü\r\n--b1--\r\n"
            );
            let out = to_seven_bit(raw.as_bytes()).unwrap();
            proptest::prop_assert!(out.is_ascii());
            proptest::prop_assert!(out.split(|&c| c == b'\n').all(|l| l.len() <= QP_LINE + 1));
            let parsed = mail_parser::MessageParser::default().parse(&out).unwrap();
            proptest::prop_assert_eq!(parsed.body_text(0).unwrap_or_default().to_string(), a.clone());
            let second = format!("{b}ü");
            proptest::prop_assert_eq!(parsed.body_text(1).unwrap_or_default().to_string(), second);
        }
    }
}
