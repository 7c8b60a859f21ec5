//! Message sections for BODY[...] and BINARY[...] (RFC 9051 §6.4.5, RFC 3516), cut from the
//! stored message with the offsets of its summary.

use tern_imap_proto::{Section, SectionText};
use tern_mime::{BodyPart, PartKind};

/// Finds the part a part path names (RFC 9051 §6.4.5: a single-part message has only part 1;
/// the parts of an encapsulated message are numbered below its own number).
pub fn find_part<'a>(root: &'a BodyPart, path: &[u32]) -> Option<&'a BodyPart> {
    let mut cur = root;
    for (depth, &n) in path.iter().enumerate() {
        let index = (n as usize).checked_sub(1)?;
        cur = if depth == 0 {
            match &root.kind {
                PartKind::Multipart(children) => children.get(index)?,
                _ if index == 0 => root,
                _ => return None,
            }
        } else {
            match &cur.kind {
                PartKind::Multipart(children) => children.get(index)?,
                PartKind::Message(_, inner) => match &inner.kind {
                    PartKind::Multipart(children) => children.get(index)?,
                    _ if index == 0 => inner,
                    _ => return None,
                },
                PartKind::Leaf => return None,
            }
        };
    }
    Some(cur)
}

fn slice(raw: &[u8], start: u64, end: u64) -> &[u8] {
    let end = (end as usize).min(raw.len());
    let start = (start as usize).min(end);
    &raw[start..end]
}

/// Header fields of a header block, each with its continuation lines, in order.
fn header_fields(header: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut fields: Vec<(&[u8], &[u8])> = Vec::new();
    let mut i = 0;
    while i < header.len() {
        let line_end = header[i..].iter().position(|&b| b == b'\n').map(|p| i + p + 1).unwrap_or(header.len());
        let line = &header[i..line_end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if (line[0] == b' ' || line[0] == b'\t') && !fields.is_empty() {
            if let Some(last) = fields.last_mut() {
                let start = last.1.as_ptr() as usize - header.as_ptr() as usize;
                last.1 = &header[start..line_end];
            }
        } else {
            let name_end = line.iter().position(|&b| b == b':').unwrap_or(0);
            let name = line[..name_end].trim_ascii();
            fields.push((name, &header[i..line_end]));
        }
        i = line_end;
    }
    fields
}

/// Only (or all but) the named fields, then the blank line.
fn filter_header(header: &[u8], names: &[String], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, field) in header_fields(header) {
        let listed = names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name));
        if listed == keep {
            out.extend_from_slice(field);
            if !field.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The bytes of BODY[section]; `None` when the section does not exist.
pub fn body_section(raw: &[u8], root: &BodyPart, section: &Section) -> Option<Vec<u8>> {
    if section.part.is_empty() {
        let header = slice(raw, 0, root.offset_body);
        return Some(match &section.text {
            None => raw.to_vec(),
            Some(SectionText::Header) => header.to_vec(),
            Some(SectionText::HeaderFields(names)) => filter_header(header, names, true),
            Some(SectionText::HeaderFieldsNot(names)) => filter_header(header, names, false),
            Some(SectionText::Text) => slice(raw, root.offset_body, raw.len() as u64).to_vec(),
            Some(SectionText::Mime) => return None,
        });
    }
    let part = find_part(root, &section.part)?;
    match &section.text {
        None => Some(slice(raw, part.offset_body, part.offset_end).to_vec()),
        Some(SectionText::Mime) => Some(slice(raw, part.offset_header, part.offset_body).to_vec()),
        Some(text) => {
            // HEADER/TEXT below a part number address an encapsulated message.
            let PartKind::Message(_, inner) = &part.kind else { return None };
            let header = slice(raw, inner.offset_header, inner.offset_body);
            Some(match text {
                SectionText::Header => header.to_vec(),
                SectionText::HeaderFields(names) => filter_header(header, names, true),
                SectionText::HeaderFieldsNot(names) => filter_header(header, names, false),
                _ => slice(raw, inner.offset_body, part.offset_end).to_vec(),
            })
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum BinaryError {
    NoSuchPart,
    /// RFC 3516 UNKNOWN-CTE.
    UnknownEncoding(String),
}

/// The decoded content of BINARY[part].
pub fn binary_section(raw: &[u8], root: &BodyPart, part: &[u32]) -> Result<Vec<u8>, BinaryError> {
    if part.is_empty() {
        return Ok(raw.to_vec());
    }
    let p = find_part(root, part).ok_or(BinaryError::NoSuchPart)?;
    if matches!(p.kind, PartKind::Multipart(_)) {
        return Err(BinaryError::NoSuchPart);
    }
    let body = slice(raw, p.offset_body, p.offset_end);
    tern_mime::decode::transfer_decode(body, p.encoding.as_deref())
        .ok_or_else(|| BinaryError::UnknownEncoding(p.encoding.clone().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a@b.c\r\nSubject: outer\r\n folded\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=\"YY\"\r\n\r\n--YY\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--YY\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<b>hi=3D</b>=\r\n!\r\n--YY--\r\n--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n--XX--\r\n";

    fn sec(part: &[u32], text: Option<SectionText>) -> Vec<u8> {
        let s = tern_mime::summarize(MSG);
        body_section(MSG, &s.body, &Section { part: part.to_vec(), text }).unwrap_or_else(|| b"<none>".to_vec())
    }

    #[test]
    fn whole_message_sections() {
        assert_eq!(sec(&[], None), MSG);
        assert!(sec(&[], Some(SectionText::Header)).ends_with(b"boundary=\"XX\"\r\n\r\n"));
        assert!(sec(&[], Some(SectionText::Text)).starts_with(b"preamble\r\n--XX"));
        assert_eq!(
            sec(&[], Some(SectionText::HeaderFields(vec!["SUBJECT".into(), "x-none".into()]))),
            b"Subject: outer\r\n folded\r\n\r\n"
        );
        let not = sec(&[], Some(SectionText::HeaderFieldsNot(vec!["subject".into(), "content-type".into()])));
        assert_eq!(not, b"From: a@b.c\r\n\r\n");
    }

    #[test]
    fn nested_parts() {
        assert_eq!(sec(&[1], None), b"first");
        assert_eq!(sec(&[1], Some(SectionText::Mime)), b"Content-Type: text/plain\r\n\r\n");
        assert!(sec(&[2], None).starts_with(b"Subject: inner\r\n"));
        assert_eq!(sec(&[2], Some(SectionText::HeaderFields(vec!["Subject".into()]))), b"Subject: inner\r\n\r\n");
        assert!(sec(&[2], Some(SectionText::Text)).starts_with(b"--YY\r\n"));
        assert_eq!(sec(&[2, 1], None), b"inner text");
        assert_eq!(
            sec(&[2, 2], Some(SectionText::Mime)),
            b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        );
        assert_eq!(sec(&[3], None), b"AAEC/w==");
        assert_eq!(sec(&[4], None), b"<none>");
        assert_eq!(sec(&[1, 1], None), b"<none>");
        assert_eq!(sec(&[1], Some(SectionText::Header)), b"<none>");
    }

    #[test]
    fn single_part_message_has_part_one() {
        let raw = b"Subject: s\r\n\r\nonly body\r\n";
        let s = tern_mime::summarize(raw);
        assert_eq!(body_section(raw, &s.body, &Section { part: vec![1], text: None }).unwrap(), b"only body\r\n");
        assert_eq!(body_section(raw, &s.body, &Section { part: vec![2], text: None }), None);
    }

    #[test]
    fn binary_decoding() {
        let s = tern_mime::summarize(MSG);
        assert_eq!(binary_section(MSG, &s.body, &[3]).unwrap(), vec![0, 1, 2, 255]);
        assert_eq!(binary_section(MSG, &s.body, &[2, 2]).unwrap(), b"<b>hi=</b>!");
        assert_eq!(binary_section(MSG, &s.body, &[1]).unwrap(), b"first");
        assert_eq!(binary_section(MSG, &s.body, &[9]), Err(BinaryError::NoSuchPart));
    }
}
