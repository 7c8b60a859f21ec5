//! RFC 8970 message previews: the start of the message's first readable text, decoded, with
//! white space collapsed — computed once with the summary, so FETCH PREVIEW reads no content.

use crate::{BodyPart, PartKind};

/// Most characters a preview holds (RFC 8970 §3.3 allows 256; 200 is what its examples and
/// Dovecot use).
pub const PREVIEW_CHARS: usize = 200;

/// At most this much of a part's encoded body is decoded for its preview.
const SCAN_BYTES: usize = 16 * 1024;

/// The preview of `raw`, whose structure is `body`; empty when it has no text part.
pub fn preview(raw: &[u8], body: &BodyPart) -> String {
    let Some((part, html)) = first_text(body, 0) else { return String::new() };
    let start = (part.offset_body as usize).min(raw.len());
    let end = (part.offset_end as usize).clamp(start, raw.len()).min(start + SCAN_BYTES);
    let encoded = &raw[start..end];
    let decoded = crate::decode::transfer_decode(encoded, part.encoding.as_deref()).unwrap_or_else(|| encoded.to_vec());
    let charset = part.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(b"charset")).map(|(_, v)| v.as_slice());
    // US-ASCII (the default) read as UTF-8: unlabelled 8-bit text is UTF-8 far more often
    // than anything else.
    let ascii_or_utf8 = charset.is_none_or(|c| c.eq_ignore_ascii_case(b"us-ascii") || c.eq_ignore_ascii_case(b"utf-8"));
    let decoder =
        if ascii_or_utf8 { None } else { charset.and_then(mail_parser::decoders::charsets::map::charset_decoder) };
    let text = match decoder {
        Some(decode) => decode(&decoded),
        None => String::from_utf8_lossy(&decoded).into_owned(),
    };
    let text = if html { strip_html(&text) } else { text };
    collapse(&text)
}

/// The first text/plain leaf that is not an attachment, else the first text/html one.
fn first_text(part: &BodyPart, depth: usize) -> Option<(&BodyPart, bool)> {
    let mut html = None;
    find(part, depth, &mut html).map(|p| (p, false)).or(html.map(|p| (p, true)))
}

fn find<'a>(part: &'a BodyPart, depth: usize, html: &mut Option<&'a BodyPart>) -> Option<&'a BodyPart> {
    if depth > crate::MAX_DEPTH {
        return None;
    }
    match &part.kind {
        PartKind::Leaf => {
            let attachment = part.disposition.as_ref().is_some_and(|(d, _)| d.eq_ignore_ascii_case("attachment"));
            if attachment || !part.media_type.eq_ignore_ascii_case("text") {
                return None;
            }
            if part.subtype.eq_ignore_ascii_case("plain") {
                return Some(part);
            }
            if part.subtype.eq_ignore_ascii_case("html") && html.is_none() {
                *html = Some(part);
            }
            None
        }
        PartKind::Multipart(children) => children.iter().find_map(|c| find(c, depth + 1, html)),
        // An attached message is not this message's text.
        PartKind::Message(..) => None,
    }
}

/// Text of an HTML fragment: tags, comments, `<style>` and `<script>` contents dropped, the
/// common entities decoded.
fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        let rest = &lower[i..];
        if rest.starts_with("<!--") {
            i += rest.find("-->").map_or(rest.len(), |e| e + 3);
        } else if rest.starts_with("<style") || rest.starts_with("<script") || rest.starts_with("<head") {
            let close = if rest.starts_with("<style") {
                "</style>"
            } else if rest.starts_with("<script") {
                "</script>"
            } else {
                "</head>"
            };
            i += rest.find(close).map_or(rest.len(), |e| e + close.len());
        } else if rest.starts_with('<') {
            i += rest.find('>').map_or(rest.len(), |e| e + 1);
            out.push(' ');
        } else if rest.starts_with('&') {
            let entities =
                [("&amp;", '&'), ("&lt;", '<'), ("&gt;", '>'), ("&quot;", '"'), ("&#39;", '\''), ("&nbsp;", ' ')];
            match entities.iter().find(|(name, _)| rest.starts_with(name)) {
                Some((name, c)) => {
                    out.push(*c);
                    i += name.len();
                }
                None => {
                    out.push('&');
                    i += 1;
                }
            }
        } else {
            // Copy up to the next markup character (`<` and `&` are ASCII: boundaries).
            let next = rest.find(['<', '&']).unwrap_or(rest.len());
            out.push_str(&html[i..i + next]);
            i += next;
        }
    }
    out
}

/// White space runs (line breaks included) become one space; control characters go; at most
/// [`PREVIEW_CHARS`] characters.
fn collapse(text: &str) -> String {
    let words = text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty());
    let mut out = String::new();
    let mut count = 0;
    for (n, word) in words.enumerate() {
        let space = (n > 0).then_some(' ');
        for c in space.into_iter().chain(word.chars()) {
            if count == PREVIEW_CHARS {
                return out;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(raw: &str) -> String {
        let body = crate::structure::parse(raw.as_bytes());
        preview(raw.as_bytes(), &body)
    }

    #[test]
    fn plain_text_collapsed_and_cut() {
        assert_eq!(of("Subject: x\r\n\r\nHello  there,\r\n\r\n  see you.\r\n"), "Hello there, see you.");
        let long = format!("Subject: x\r\n\r\n{}\r\n", "wörd ".repeat(100));
        let p = of(&long);
        assert_eq!(p.chars().count(), PREVIEW_CHARS);
        assert!(p.starts_with("wörd wörd"));
        assert_eq!(of("Subject: x\r\n\r\n"), "");
    }

    #[test]
    fn decoded_from_the_first_text_part() {
        let raw = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: image/png\r\n\r\nPNG\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe aus K=F6ln\r\n--b--\r\n";
        assert_eq!(of(raw), "Grüße aus Köln");
        let b64 =
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8gd29ybGQ=\r\n";
        assert_eq!(of(b64), "Hello world");
    }

    #[test]
    fn html_only_messages_lose_their_markup() {
        let raw = "Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<html><head><title>T</title></head><style>p{}</style><p>Fish &amp; chips</p><!-- x --><br>today</html>\r\n--b--\r\n";
        assert_eq!(of(raw), "Fish & chips today");
        // text/plain wins over an earlier html alternative.
        let both = "Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>rich</p>\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n--b--\r\n";
        assert_eq!(of(both), "plain");
    }

    #[test]
    fn attachments_are_not_previews() {
        let raw = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nsecret\r\n--b--\r\n";
        assert_eq!(of(raw), "");
    }
}
