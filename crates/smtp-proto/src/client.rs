//! The client side of SMTP, as pure functions: replies parsed from the server's bytes, the
//! EHLO capabilities, and message data encoded for DATA.

use crate::reply::{Enhanced, Reply};

/// Longest reply line accepted from a server (RFC 5321 §4.5.3.1.5 says 512; servers are
/// sloppy, so allow more, but not without bound).
pub const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply (an EHLO list is a few dozen).
pub const MAX_REPLY_LINES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The line is not `ddd[ -]text`.
    Malformed(String),
    /// A continuation line carried another code.
    CodeChanged,
    TooLong,
    TooManyLines,
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Malformed(line) => write!(f, "malformed reply line {line:?}"),
            ReplyError::CodeChanged => write!(f, "reply code changed inside a multi-line reply"),
            ReplyError::TooLong => write!(f, "reply line too long"),
            ReplyError::TooManyLines => write!(f, "too many reply lines"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Collects reply lines from the bytes a server sends; yields whole replies.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Adds received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether unparsed bytes are waiting (a server that pipelines replies).
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next complete reply, `Ok(None)` when more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let Some(end) = memchr::memchr(b'\n', &self.buf) else {
                if self.buf.len() > MAX_REPLY_LINE {
                    return Err(ReplyError::TooLong);
                }
                return Ok(None);
            };
            if end > MAX_REPLY_LINE {
                return Err(ReplyError::TooLong);
            }
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            let (code, last, text) = split_reply_line(line)?;
            match self.code {
                Some(c) if c != code => return Err(ReplyError::CodeChanged),
                _ => self.code = Some(code),
            }
            if self.lines.len() >= MAX_REPLY_LINES {
                return Err(ReplyError::TooManyLines);
            }
            self.lines.push(text.to_string());
            if last {
                self.code = None;
                return Ok(Some(make_reply(code, std::mem::take(&mut self.lines))));
            }
        }
    }
}

fn split_reply_line(line: &str) -> Result<(u16, bool, &str), ReplyError> {
    let bytes = line.as_bytes();
    let malformed = || ReplyError::Malformed(line.chars().take(80).collect());
    if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&bytes[0]) {
        return Err(malformed());
    }
    let code: u16 = line[..3].parse().map_err(|_| malformed())?;
    match bytes.get(3) {
        None => Ok((code, true, "")),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(malformed()),
    }
}

/// Splits the enhanced status code (RFC 2034) off the text when its class matches the code.
fn make_reply(code: u16, mut lines: Vec<String>) -> Reply {
    let class = (code / 100) as u8;
    let mut enhanced = None;
    if let Some(first) = lines.first()
        && let Some((e, _)) = parse_enhanced(first)
        && e.0 == class
    {
        enhanced = Some(e);
        for line in &mut lines {
            if let Some((e2, rest)) = parse_enhanced(line)
                && e2 == e
            {
                *line = rest.to_string();
            }
        }
    }
    Reply { code, enhanced, lines }
}

fn parse_enhanced(text: &str) -> Option<(Enhanced, &str)> {
    let (token, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut parts = token.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
        return None;
    }
    Some((Enhanced(class, subject, detail), rest))
}

/// What a server announced in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub pipelining: bool,
    /// `SIZE n` (0: announced without a limit).
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub starttls: bool,
    pub chunking: bool,
    pub dsn: bool,
    pub enhanced_status_codes: bool,
    pub requiretls: bool,
    /// SASL mechanisms after `AUTH`, upper-cased.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Reads the lines of a `250` EHLO reply (the first line is the server's name).
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else { continue };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "CHUNKING" => caps.chunking = true,
                "DSN" => caps.dsn = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "REQUIRETLS" => caps.requiretls = true,
                "AUTH" => caps.auth.extend(words.map(str::to_ascii_uppercase)),
                _ => {}
            }
        }
        caps
    }
}

/// Encodes a message for DATA: every line end becomes CRLF (a bare CR or LF in the input is
/// turned into CRLF too, so nothing we send can be read as a different end of data: no
/// outbound SMTP smuggling), lines starting with `.` get another `.` (RFC 5321 §4.5.2), and
/// the terminating `.CRLF` is appended.
pub fn encode_data(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut at_line_start = true;
    let mut i = 0;
    while i < message.len() {
        let b = message[i];
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                // CRLF is one line end, CR alone is one too.
                if message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = false;
            }
        }
        i += 1;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Normalizes line ends to CRLF (for BDAT, which sends the content as it is).
pub fn normalize_line_ends(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut i = 0;
    while i < message.len() {
        match message[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataDecoder, DataOutcome};
    use proptest::prelude::*;

    fn parse_all(input: &[u8]) -> Vec<Result<Reply, ReplyError>> {
        let mut p = ReplyParser::new();
        p.feed(input);
        let mut out = Vec::new();
        loop {
            match p.next_reply() {
                Ok(Some(r)) => out.push(Ok(r)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn replies() {
        let r = parse_all(
            b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 STARTTLS\r\n550 5.1.1 no such user\r\n",
        );
        let ehlo = r[0].clone().unwrap();
        assert_eq!(ehlo.code, 250);
        let caps = Capabilities::from_ehlo(&ehlo);
        assert!(caps.pipelining && caps.starttls && !caps.chunking);
        assert_eq!(caps.size, Some(1000));
        let refused = r[1].clone().unwrap();
        assert_eq!(refused.enhanced, Some(Enhanced(5, 1, 1)));
        assert_eq!(refused.text(), "no such user");
        // A 4xx code with a 5.x.x enhanced code keeps the text as it is.
        let odd = parse_all(b"451 5.0.0 odd\r\n")[0].clone().unwrap();
        assert_eq!(odd.enhanced, None);
        assert_eq!(odd.text(), "5.0.0 odd");
        assert_eq!(parse_all(b"250\n")[0].clone().unwrap().code, 250);
        assert!(matches!(parse_all(b"hello\r\n")[0], Err(ReplyError::Malformed(_))));
        assert!(matches!(parse_all(b"250-a\r\n251 b\r\n")[0], Err(ReplyError::CodeChanged)));
        let mut p = ReplyParser::new();
        p.feed(b"250-partial\r\n25");
        assert_eq!(p.next_reply(), Ok(None));
        p.feed(b"0 done\r\n");
        assert_eq!(p.next_reply().unwrap().unwrap().lines, vec!["partial", "done"]);
        let mut p = ReplyParser::new();
        p.feed(&vec![b'2'; MAX_REPLY_LINE + 10]);
        assert_eq!(p.next_reply(), Err(ReplyError::TooLong));
    }

    #[test]
    fn data_encoding() {
        assert_eq!(encode_data(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(encode_data(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(encode_data(b"no end"), b"no end\r\n.\r\n");
        // Smuggling attempts are flattened into ordinary, stuffed lines.
        assert_eq!(encode_data(b"x\n.\nMAIL FROM:<a>\r\n"), b"x\r\n..\r\nMAIL FROM:<a>\r\n.\r\n");
        assert_eq!(encode_data(b"x\r.\r\n"), b"x\r\n..\r\n.\r\n");
        assert_eq!(encode_data(b""), b".\r\n");
        assert_eq!(normalize_line_ends(b"a\nb\rc"), b"a\r\nb\r\nc\r\n");
    }

    proptest! {
        /// What we send decodes, on the receiving side, to the message with CRLF line ends;
        /// the receiver never sees an early end of data.
        #[test]
        fn encoded_data_round_trips(body in proptest::collection::vec(prop_oneof![
            Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a'), Just(b' ')], 0..200)) {
            let wire = encode_data(&body);
            let mut decoder = DataDecoder::new(1 << 20);
            let used = decoder.feed(&wire);
            prop_assert_eq!(used, wire.len());
            prop_assert!(decoder.is_done());
            let expected = normalize_line_ends(&body);
            match decoder.finish() {
                DataOutcome::Message(m) => prop_assert_eq!(m, expected),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }

        #[test]
        fn reply_parser_never_panics(input in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_all(&input);
        }
    }
}
