//! Encoding response values: strings (quoted or literal), astrings, nstrings, mailbox names
//! in modified UTF-7 (RFC 3501 §5.1.3) for clients that have not enabled UTF-8, date-times.

use std::fmt::Write;

/// Appends an IMAP string: quoted when it can be, a literal otherwise (CR, LF, NUL, or
/// 8-bit data for a client that has not enabled UTF-8).
pub fn string(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let quotable = s.len() <= 1024 && s.iter().all(|&b| b != b'\r' && b != b'\n' && b != 0 && (utf8 || b < 0x80));
    let quotable = quotable && (!utf8 || std::str::from_utf8(s).is_ok());
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    let _ = write!(VecWriter(out), "{{{}}}\r\n", s.len());
    out.extend_from_slice(s);
}

/// A literal of message text (BODY[...], RFC822...): NUL may only travel in a `literal8`,
/// which only BINARY answers may use (RFC 9051 §4.3), so a NUL stored from a binary APPEND
/// is sent as 0x80, as Dovecot does. BINARY[...] returns the bytes unchanged.
pub fn text_literal(out: &mut Vec<u8>, s: &[u8]) {
    let _ = write!(VecWriter(out), "{{{}}}\r\n", s.len());
    let start = out.len();
    out.extend_from_slice(s);
    if memchr::memchr(0, s).is_some() {
        for b in &mut out[start..] {
            if *b == 0 {
                *b = 0x80;
            }
        }
    }
}

/// `NIL` or a string.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>, utf8: bool) {
    match s {
        Some(s) => string(out, s, utf8),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// A mailbox name as astring: an atom when possible, else a string.
pub fn mailbox(out: &mut Vec<u8>, name: &str, utf8: bool) {
    let encoded;
    let wire: &str = if utf8 {
        name
    } else {
        encoded = utf7_encode(name);
        &encoded
    };
    let atom = !wire.is_empty() && wire.bytes().all(|c| c > 0x20 && c < 0x7f && !b"(){%*\"\\".contains(&c));
    if atom {
        out.extend_from_slice(wire.as_bytes());
    } else {
        string(out, wire.as_bytes(), utf8);
    }
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Modified UTF-7 (RFC 3501 §5.1.3): printable ASCII as is (`&` as `&-`), the rest as
/// modified BASE64 of UTF-16 between `&` and `-`.
pub fn utf7_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        out.push('&');
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        let mut bits = 0u32;
        let mut nbits = 0;
        for b in bytes {
            bits = (bits << 8) | u32::from(b);
            nbits += 8;
            while nbits >= 6 {
                nbits -= 6;
                out.push(B64[((bits >> nbits) & 63) as usize] as char);
            }
        }
        if nbits > 0 {
            out.push(B64[((bits << (6 - nbits)) & 63) as usize] as char);
        }
        out.push('-');
        pending.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Decodes modified UTF-7; `None` when malformed.
pub fn utf7_decode(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '&' {
            if !(' '..='~').contains(&c) {
                return None;
            }
            out.push(c);
            continue;
        }
        let mut bits = 0u32;
        let mut nbits = 0;
        let mut units = Vec::new();
        let mut empty = true;
        loop {
            let c = chars.next()?;
            if c == '-' {
                break;
            }
            empty = false;
            let v = B64.iter().position(|&b| b as char == c)? as u32;
            bits = (bits << 6) | v;
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push(((bits >> nbits) & 0xFFFF) as u16);
            }
        }
        if empty {
            out.push('&');
        } else {
            if nbits >= 6 || (bits & ((1 << nbits) - 1)) != 0 {
                return None;
            }
            out.push_str(&String::from_utf16(&units).ok()?);
        }
    }
    Some(out)
}

/// IMAP date-time: `17-Jul-1996 02:44:25 +0000` (quoted by the caller).
pub fn date_time(unix: i64, zone_minutes: i32) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let local = unix + i64::from(zone_minutes) * 60;
    let days = local.div_euclid(86400);
    let secs = local.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let sign = if zone_minutes < 0 { '-' } else { '+' };
    let z = zone_minutes.abs();
    format!(
        "{:02}-{}-{:04} {:02}:{:02}:{:02} {}{:02}{:02}",
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        sign,
        z / 60,
        z % 60
    )
}

/// (year, month, day) of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(bytes: &[u8], utf8: bool) -> String {
        let mut out = Vec::new();
        string(&mut out, bytes, utf8);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn strings() {
        assert_eq!(s(b"hello", false), "\"hello\"");
        assert_eq!(s(b"a\"b\\c", false), "\"a\\\"b\\\\c\"");
        assert_eq!(s(b"line\r\nbreak", false), "{11}\r\nline\r\nbreak");
        assert_eq!(s("Grüße".as_bytes(), false), "{7}\r\nGrüße");
        assert_eq!(s("Grüße".as_bytes(), true), "\"Grüße\"");
        let mut out = Vec::new();
        nstring(&mut out, None, false);
        assert_eq!(out, b"NIL");
        let mut out = Vec::new();
        mailbox(&mut out, "Sent Items", false);
        assert_eq!(out, b"\"Sent Items\"");
        let mut out = Vec::new();
        mailbox(&mut out, "Entwürfe", false);
        assert_eq!(out, b"Entw&APw-rfe");
    }

    #[test]
    fn modified_utf7() {
        for (plain, encoded) in [
            ("INBOX", "INBOX"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("&", "&-"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("😀", "&2D3eAA-"),
        ] {
            assert_eq!(utf7_encode(plain), encoded);
            assert_eq!(utf7_decode(encoded).as_deref(), Some(plain));
        }
        assert_eq!(utf7_decode("&Jjo!"), None);
        assert_eq!(utf7_decode("&U,BTFw"), None);
        assert_eq!(utf7_decode("ü"), None);
    }

    #[test]
    fn date_times() {
        assert_eq!(date_time(837_596_665, -420), "17-Jul-1996 02:44:25 -0700");
        assert_eq!(date_time(0, 0), "01-Jan-1970 00:00:00 +0000");
        assert_eq!(civil_from_days(11017), (2000, 3, 1));
    }

    proptest::proptest! {
        #[test]
        fn utf7_round_trips(name in "\\PC{0,30}") {
            proptest::prop_assert_eq!(utf7_decode(&utf7_encode(&name)), Some(name));
        }
    }
}
