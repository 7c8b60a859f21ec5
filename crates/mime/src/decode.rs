//! Content-Transfer-Encoding decoders (RFC 2045 §6.7, §6.8), lenient the way mail readers
//! are: IMAP BINARY (RFC 3516) and the search text both decode with these, so what a client
//! fetches decoded is what SEARCH BODY looks at.

/// Base64 (RFC 2045 §6.8): characters outside the alphabet are ignored ("MUST be ignored by
/// decoding software"), decoding stops at padding.
pub fn base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc = 0u32;
    let mut n = 0;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        // Lower case is not valid quoted-printable, but "a robust implementation might
        // recognize" it (RFC 2045 §6.7 (1)).
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Quoted-printable (RFC 2045 §6.7), line by line:
/// - `=XX` is the octet XX;
/// - white space at the end of a line was added in transport and is deleted (rule 3);
/// - `=` at the end of a line, after trailing white space is removed, is a soft line break
///   (rule 5): it and the line break go;
/// - a line break is kept as it was written (CRLF or LF);
/// - a `=` not followed by two hex digits is kept as it is (rule (1), "robust").
pub fn quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while !rest.is_empty() {
        let (line, eol, next) = match memchr::memchr(b'\n', rest) {
            Some(lf) => {
                let (line, eol) = if lf > 0 && rest[lf - 1] == b'\r' {
                    (&rest[..lf - 1], &b"\r\n"[..])
                } else {
                    (&rest[..lf], &b"\n"[..])
                };
                (line, eol, &rest[lf + 1..])
            }
            None => (rest, &b""[..], &b""[..]),
        };
        let line = trim_trailing_space(line);
        let (line, soft) = match line.strip_suffix(b"=") {
            Some(l) => (l, true),
            None => (line, false),
        };
        let mut i = 0;
        while i < line.len() {
            let c = line[i];
            if c == b'='
                && let (Some(a), Some(b)) =
                    (line.get(i + 1).and_then(|&x| hex(x)), line.get(i + 2).and_then(|&x| hex(x)))
            {
                out.push(a << 4 | b);
                i += 3;
                continue;
            }
            out.push(c);
            i += 1;
        }
        if !soft {
            out.extend_from_slice(eol);
        }
        rest = next;
    }
    out
}

fn trim_trailing_space(mut line: &[u8]) -> &[u8] {
    while let [head @ .., b' ' | b'\t'] = line {
        line = head;
    }
    line
}

/// The decoded content of a part body with the given transfer encoding (lower-case; `None`
/// is 7bit). `None` when the encoding is not one of RFC 2045's.
pub fn transfer_decode(body: &[u8], encoding: Option<&str>) -> Option<Vec<u8>> {
    match encoding.unwrap_or("7bit") {
        "7bit" | "8bit" | "binary" => Some(body.to_vec()),
        "base64" => Some(base64(body)),
        "quoted-printable" => Some(quoted_printable(body)),
        _ => None,
    }
}

/// Decodes RFC 2047 encoded words in unstructured text or a display name: `=?cs?B?...?=`
/// and `=?cs?Q?...?=` (RFC 2231 language suffixes `cs*lang` allowed); white space between
/// two encoded words is dropped (§6.2); words in unknown charsets or malformed ones stay as
/// written.
pub fn encoded_words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // White space seen after the last encoded word, held back until we know what follows.
    let mut pending_space: Option<&str> = None;
    let mut after_word = false;
    while !rest.is_empty() {
        if let Some((decoded, len)) = rest.starts_with("=?").then(|| encoded_word(rest)).flatten() {
            if !after_word && let Some(sp) = pending_space {
                out.push_str(sp);
            }
            pending_space = None;
            out.push_str(&decoded);
            rest = &rest[len..];
            after_word = true;
            continue;
        }
        let ws = rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
        if ws > 0 {
            if let Some(sp) = pending_space.take() {
                out.push_str(sp);
            }
            pending_space = Some(&rest[..ws]);
            rest = &rest[ws..];
            continue;
        }
        if let Some(sp) = pending_space.take() {
            out.push_str(sp);
        }
        after_word = false;
        let next = rest[1..].find(['=', ' ', '\t', '\r', '\n']).map_or(rest.len(), |i| i + 1);
        out.push_str(&rest[..next]);
        rest = &rest[next..];
    }
    if let Some(sp) = pending_space {
        out.push_str(sp);
    }
    out
}

/// One encoded word at the start of `s`: its text and its length.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (charset_spec, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let data = &inner[..end];
    if data.contains([' ', '\t', '\r', '\n']) || charset_spec.is_empty() {
        return None;
    }
    let len = 2 + charset_spec.len() + 1 + encoding.len() + 1 + end + 2;
    // RFC 2231 §5: `charset*language`.
    let charset = charset_spec.split('*').next().unwrap_or(charset_spec);
    let bytes = match encoding {
        "B" | "b" => base64(data.as_bytes()),
        "Q" | "q" => {
            let b = data.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                match (b[i], b.get(i + 1).and_then(|&x| hex(x)), b.get(i + 2).and_then(|&x| hex(x))) {
                    (b'_', _, _) => out.push(b' '),
                    (b'=', Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 2;
                    }
                    (c, _, _) => out.push(c),
                }
                i += 1;
            }
            out
        }
        _ => return None,
    };
    let text = match mail_parser::decoders::charsets::map::charset_decoder(charset.as_bytes()) {
        Some(decode) => decode(&bytes),
        None if charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("us-ascii") => {
            String::from_utf8_lossy(&bytes).into_owned()
        }
        None => return None,
    };
    Some((text, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_rules() {
        // Soft line breaks, with transport padding after the '='.
        assert_eq!(quoted_printable(b"Soft=\r\nbreak"), b"Softbreak");
        assert_eq!(quoted_printable(b"Soft=  \t\r\nbreak\r\n"), b"Softbreak\r\n");
        assert_eq!(quoted_printable(b"Soft=\nbreak\n"), b"Softbreak\n");
        // Escapes, upper and lower case.
        assert_eq!(quoted_printable(b"caf=C3=A9 caf=c3=a9"), "café café".as_bytes());
        // Trailing white space is transport padding; encoded white space stays.
        assert_eq!(quoted_printable(b"trailing   \r\nline=20\r\n"), b"trailing\r\nline \r\n");
        // Malformed escapes are kept.
        assert_eq!(quoted_printable(b"a=ZZ b=4 c="), b"a=ZZ b=4 c");
        assert_eq!(quoted_printable(b"="), b"");
        assert_eq!(quoted_printable(b""), b"");
    }

    #[test]
    fn base64_rules() {
        assert_eq!(base64(b"aGVsbG8=\r\n"), b"hello");
        assert_eq!(base64(b"aGVs\r\nbG8gd29y\r\nbGQ="), b"hello world");
        assert_eq!(base64(b"aGVsbG"), b"hell");
        assert_eq!(base64(b"AAEC/w=="), vec![0, 1, 2, 255]);
    }

    #[test]
    fn encoded_words_rfc2047_examples() {
        // RFC 2047 §8.
        assert_eq!(encoded_words("=?ISO-8859-1?Q?a?="), "a");
        assert_eq!(encoded_words("=?ISO-8859-1?Q?a?= b"), "a b");
        assert_eq!(encoded_words("=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?="), "ab");
        assert_eq!(encoded_words("=?ISO-8859-1?Q?a?=  \r\n  =?ISO-8859-1?Q?b?="), "ab");
        assert_eq!(encoded_words("=?ISO-8859-1?Q?a_b?="), "a b");
        assert_eq!(encoded_words("=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?="), "a b");
        assert_eq!(encoded_words("=?ISO-8859-1?Q?Andr=E9?= Pirard"), "André Pirard");
        assert_eq!(encoded_words("=?utf-8?b?R3LDvMOfZQ==?= and more"), "Grüße and more");
        assert_eq!(encoded_words("Re: =?US-ASCII*EN?Q?Keith_Moore?="), "Re: Keith Moore");
        assert_eq!(encoded_words("plain = text ?= here"), "plain = text ?= here");
        assert_eq!(encoded_words("=?bogus-charset?Q?x?="), "=?bogus-charset?Q?x?=");
        assert_eq!(encoded_words("=?utf-8?Q?broken"), "=?utf-8?Q?broken");
    }

    #[test]
    fn transfer_encodings() {
        assert_eq!(transfer_decode(b"x", None).as_deref(), Some(&b"x"[..]));
        assert_eq!(transfer_decode(b"x", Some("x-uuencode")), None);
    }
}
