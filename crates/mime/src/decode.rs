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
    fn transfer_encodings() {
        assert_eq!(transfer_decode(b"x", None).as_deref(), Some(&b"x"[..]));
        assert_eq!(transfer_decode(b"x", Some("x-uuencode")), None);
    }
}
