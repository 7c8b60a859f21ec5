//! RFC 3461 §4 `xtext`: printable ASCII except `+` and `=`, other octets as `+XX`.

/// Decodes xtext; `None` if it is malformed (a `+` not followed by two upper-case hex digits,
/// or a character outside `!`..`~`, or `=`).
pub fn decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)) {
                return None;
            }
            let s = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else if (b'!'..=b'~').contains(&b) && b != b'=' {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes a string as xtext.
pub fn encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input.as_bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in ["plain", "a+b=c d", "üñí", ""] {
            assert_eq!(decode(&encode(s)).as_deref(), Some(s));
        }
        assert_eq!(decode("rfc822;a+2Bb@x").as_deref(), Some("rfc822;a+b@x"));
        assert_eq!(decode("bad+2g"), None);
        assert_eq!(decode("bad+2"), None);
        assert_eq!(decode("has space"), None);
        assert_eq!(decode("a=b"), None);
    }
}
