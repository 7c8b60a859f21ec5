//! The text a message is searched by (IMAP SEARCH BODY/TEXT), shared by the full-text index
//! and the scan that stands in for it, so both give the same answers.

/// Unfolds a raw header block and decodes encoded words in it, lower-cased, one field per
/// line ("name: value").
pub fn header_text(raw_header: &[u8]) -> String {
    let mut out = String::new();
    let text = String::from_utf8_lossy(raw_header);
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            out.push(' ');
            out.push_str(line.trim_start());
        } else {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(line);
        }
    }
    // Decoded forms of the structured fields, so encoded words match as text.
    if let Some(parsed) = mail_parser::MessageParser::default().parse_headers(raw_header) {
        for h in parsed.headers() {
            let decoded = match h.value() {
                mail_parser::HeaderValue::Text(t) => t.to_string(),
                mail_parser::HeaderValue::TextList(l) => l.join(" "),
                mail_parser::HeaderValue::Address(a) => match a {
                    mail_parser::Address::List(l) => l
                        .iter()
                        .map(|x| format!("{} {}", x.name.as_deref().unwrap_or(""), x.address.as_deref().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(", "),
                    mail_parser::Address::Group(g) => g
                        .iter()
                        .flat_map(|g| g.addresses.iter())
                        .map(|x| format!("{} {}", x.name.as_deref().unwrap_or(""), x.address.as_deref().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(", "),
                },
                _ => continue,
            };
            out.push('\n');
            out.push_str(h.name());
            out.push_str(": ");
            out.push_str(&decoded);
        }
    }
    out.to_lowercase()
}

/// Decoded text of every text part (charsets converted, base64 and quoted-printable undone),
/// lower-cased.
pub fn body_text(raw: &[u8]) -> String {
    let Some(message) = mail_parser::MessageParser::default().parse(raw) else {
        return String::from_utf8_lossy(raw).to_lowercase();
    };
    let mut out = String::new();
    collect_text(&message, &mut out, 0);
    out.to_lowercase()
}

/// Length of the text [`body_text`] would collect (before lower-casing).
fn text_len(message: &mail_parser::Message<'_>, depth: usize) -> usize {
    message
        .parts
        .iter()
        .map(|part| match &part.body {
            mail_parser::PartType::Text(t) | mail_parser::PartType::Html(t) => t.len() + 1,
            mail_parser::PartType::Message(inner) if depth < 8 => text_len(inner, depth + 1),
            _ => 0,
        })
        .sum()
}

fn collect_text(message: &mail_parser::Message<'_>, out: &mut String, depth: usize) {
    for part in &message.parts {
        match &part.body {
            mail_parser::PartType::Text(t) | mail_parser::PartType::Html(t) => {
                out.push_str(t);
                out.push('\n');
            }
            mail_parser::PartType::Message(inner) if depth < 8 => collect_text(inner, out, depth + 1),
            _ => {}
        }
    }
}

/// Where the header ends: after the first empty line (or the whole message without one).
pub fn header_len(raw: &[u8]) -> usize {
    let mut i = 0;
    while i < raw.len() {
        let end = raw[i..].iter().position(|&b| b == b'\n').map(|p| i + p + 1).unwrap_or(raw.len());
        let line = &raw[i..end];
        if line == b"\r\n" || line == b"\n" {
            return end;
        }
        i = end;
    }
    raw.len()
}

/// The searchable header text and body text of a message, lower-cased.
pub fn search_texts(raw: &[u8]) -> (String, String) {
    (header_text(&raw[..header_len(raw)]), body_text(raw))
}

/// [`search_texts`] when neither text is longer than `limit` bytes; `None` otherwise, found
/// without building them (a 50 MB text part is measured, not copied and lower-cased twice).
pub fn search_texts_within(raw: &[u8], limit: usize) -> Option<(String, String)> {
    let header = header_text(&raw[..header_len(raw)]);
    if header.len() > limit {
        return None;
    }
    let body = match mail_parser::MessageParser::default().parse(raw) {
        Some(message) => {
            if text_len(&message, 0) > limit {
                return None;
            }
            let mut out = String::new();
            collect_text(&message, &mut out, 0);
            out.to_lowercase()
        }
        None if raw.len() > limit => return None,
        None => String::from_utf8_lossy(raw).to_lowercase(),
    };
    // Lower-casing can lengthen a text a little (some capitals have longer small letters).
    (body.len() <= limit).then_some((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_decoded_and_lower_cased() {
        let raw = b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8gV09STEQ=\r\n";
        let (header, body) = search_texts(raw);
        assert!(header.contains("subject: grüße"), "{header}");
        assert!(body.contains("hello world"), "{body}");
        assert_eq!(search_texts_within(raw, 1 << 20), Some((header.clone(), body.clone())));
        assert_eq!(search_texts_within(raw, 8), None, "the body is longer than 8 bytes");
        assert_eq!(header_len(b"A: b\r\n\r\nbody"), 8);
        assert_eq!(header_len(b"no blank line"), 13);
    }
}
