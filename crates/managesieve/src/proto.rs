//! The command grammar of RFC 5804 §4.

/// A command line (without literals) longer than this is refused.
pub const MAX_LINE: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Authenticate { mechanism: String, initial: Option<Vec<u8>> },
    StartTls,
    Logout,
    Capability,
    HaveSpace { name: String, size: u64 },
    PutScript { name: String, script: Vec<u8> },
    ListScripts,
    SetActive { name: String },
    GetScript { name: String },
    DeleteScript { name: String },
    RenameScript { from: String, to: String },
    CheckScript { script: Vec<u8> },
    Noop { tag: Option<Vec<u8>> },
    Unauthenticate,
}

/// What [`parse`] found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    /// A whole command, and the bytes it took.
    Done(T, usize),
    /// Not all of it has arrived.
    Incomplete,
    /// A malformed command (answer `NO`) and the bytes to drop (through its line end).
    Bad(String, usize),
    /// A literal larger than allowed: answer `NO (QUOTA/MAXSIZE)` after dropping `skip` bytes
    /// (which may not all have arrived yet).
    TooLarge(usize),
}

/// A string argument: quoted, or a literal (`{n+}` or `{n}`: no continuation is ever sent).
#[derive(Debug)]
enum Item {
    String(Vec<u8>),
    Atom(String),
    Number(u64),
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    max_literal: usize,
}

enum Step<T> {
    Ok(T),
    Incomplete,
    Bad(String),
    TooLarge(usize),
}

macro_rules! step {
    ($e:expr) => {
        match $e {
            Step::Ok(v) => v,
            Step::Incomplete => return Step::Incomplete,
            Step::Bad(m) => return Step::Bad(m),
            Step::TooLarge(n) => return Step::TooLarge(n),
        }
    };
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.at).copied()
    }

    /// One space between arguments (tolerating more).
    fn spaces(&mut self) -> bool {
        let start = self.at;
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
        self.at > start
    }

    fn at_line_end(&self) -> Step<bool> {
        match (self.peek(), self.buf.get(self.at + 1)) {
            (None, _) | (Some(b'\r'), None) => Step::Incomplete,
            (Some(b'\r'), Some(b'\n')) => Step::Ok(true),
            (Some(b'\n'), _) => Step::Ok(true),
            _ => Step::Ok(false),
        }
    }

    fn end_line(&mut self) -> Step<()> {
        self.spaces();
        match step!(self.at_line_end()) {
            true => {
                self.at += if self.peek() == Some(b'\r') { 2 } else { 1 };
                Step::Ok(())
            }
            false => Step::Bad("unexpected arguments at the end of the command".into()),
        }
    }

    fn item(&mut self) -> Step<Item> {
        match self.peek() {
            None => Step::Incomplete,
            Some(b'"') => {
                self.at += 1;
                let mut out = Vec::new();
                loop {
                    match self.peek() {
                        None => return Step::Incomplete,
                        Some(b'"') => {
                            self.at += 1;
                            return Step::Ok(Item::String(out));
                        }
                        Some(b'\\') => match self.buf.get(self.at + 1) {
                            None => return Step::Incomplete,
                            Some(c @ (b'"' | b'\\')) => {
                                out.push(*c);
                                self.at += 2;
                            }
                            Some(_) => return Step::Bad("only \\\" and \\\\ may be escaped in a quoted string".into()),
                        },
                        Some(b'\r' | b'\n' | 0) => return Step::Bad("line break in a quoted string".into()),
                        Some(c) => {
                            out.push(c);
                            self.at += 1;
                        }
                    }
                    if out.len() > MAX_LINE {
                        return Step::Bad("quoted string too long (use a literal)".into());
                    }
                }
            }
            Some(b'{') => {
                let close = match self.buf[self.at..].iter().position(|&b| b == b'}') {
                    Some(i) => self.at + i,
                    None if self.buf.len() - self.at > 24 => return Step::Bad("bad literal".into()),
                    None => return Step::Incomplete,
                };
                let inner = &self.buf[self.at + 1..close];
                let digits = inner.strip_suffix(b"+").unwrap_or(inner);
                if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
                    return Step::Bad("bad literal length".into());
                }
                let n: usize = match std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()) {
                    Some(n) => n,
                    None => return Step::Bad("bad literal length".into()),
                };
                self.at = close + 1;
                match (self.peek(), self.buf.get(self.at + 1)) {
                    (Some(b'\r'), Some(b'\n')) => self.at += 2,
                    (Some(b'\n'), _) => self.at += 1,
                    (None, _) | (Some(b'\r'), None) => return Step::Incomplete,
                    _ => return Step::Bad("a literal's length must end its line".into()),
                }
                if n > self.max_literal {
                    return Step::TooLarge(self.at + n);
                }
                if self.buf.len() < self.at + n {
                    return Step::Incomplete;
                }
                let data = self.buf[self.at..self.at + n].to_vec();
                self.at += n;
                Step::Ok(Item::String(data))
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.at;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.at += 1;
                }
                if self.peek().is_none() {
                    return Step::Incomplete;
                }
                match std::str::from_utf8(&self.buf[start..self.at]).ok().and_then(|d| d.parse::<u32>().ok()) {
                    Some(n) => Step::Ok(Item::Number(u64::from(n))),
                    None => Step::Bad("number out of range".into()),
                }
            }
            Some(_) => {
                let start = self.at;
                while self.peek().is_some_and(|c| c > b' ' && c < 0x7f && !b"(){\"\\".contains(&c)) {
                    self.at += 1;
                }
                if self.at == start {
                    return Step::Bad("unexpected character".into());
                }
                if self.peek().is_none() {
                    return Step::Incomplete;
                }
                Step::Ok(Item::Atom(String::from_utf8_lossy(&self.buf[start..self.at]).into_owned()))
            }
        }
    }

    fn string(&mut self, what: &str) -> Step<Vec<u8>> {
        if !self.spaces() {
            return match self.at_line_end() {
                Step::Incomplete => Step::Incomplete,
                _ => Step::Bad(format!("{what} expected")),
            };
        }
        match step!(self.item()) {
            Item::String(s) => Step::Ok(s),
            _ => Step::Bad(format!("{what} expected (a quoted string or a literal)")),
        }
    }

    /// A script name (RFC 5804 §1.6: UTF-8 without controls).
    fn name(&mut self) -> Step<String> {
        let raw = step!(self.string("a script name"));
        match String::from_utf8(raw) {
            Ok(s) if !s.is_empty() && !s.chars().any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}') => {
                Step::Ok(s)
            }
            _ => Step::Bad("invalid script name".into()),
        }
    }

    fn command(&mut self) -> Step<Command> {
        let word = match step!(self.item()) {
            Item::Atom(a) => a.to_ascii_uppercase(),
            _ => return Step::Bad("a command name was expected".into()),
        };
        let command = match word.as_str() {
            "AUTHENTICATE" => {
                let mechanism = step!(self.string("a mechanism name"));
                let mechanism = String::from_utf8_lossy(&mechanism).to_ascii_uppercase();
                self.spaces();
                let initial = match step!(self.at_line_end()) {
                    true => None,
                    false => match step!(self.item()) {
                        Item::String(s) => Some(s),
                        _ => return Step::Bad("the initial response must be a string".into()),
                    },
                };
                Command::Authenticate { mechanism, initial }
            }
            "STARTTLS" => Command::StartTls,
            "LOGOUT" => Command::Logout,
            "CAPABILITY" => Command::Capability,
            "HAVESPACE" => {
                let name = step!(self.name());
                self.spaces();
                let size = match step!(self.item()) {
                    Item::Number(n) => n,
                    _ => return Step::Bad("a size was expected".into()),
                };
                Command::HaveSpace { name, size }
            }
            "PUTSCRIPT" => {
                let name = step!(self.name());
                let script = step!(self.string("the script"));
                Command::PutScript { name, script }
            }
            "LISTSCRIPTS" => Command::ListScripts,
            "SETACTIVE" => {
                // The empty name deactivates (RFC 5804 §2.8).
                let raw = step!(self.string("a script name"));
                match String::from_utf8(raw) {
                    Ok(name) => Command::SetActive { name },
                    Err(_) => return Step::Bad("invalid script name".into()),
                }
            }
            "GETSCRIPT" => Command::GetScript { name: step!(self.name()) },
            "DELETESCRIPT" => Command::DeleteScript { name: step!(self.name()) },
            "RENAMESCRIPT" => {
                let from = step!(self.name());
                let to = step!(self.name());
                Command::RenameScript { from, to }
            }
            "CHECKSCRIPT" => Command::CheckScript { script: step!(self.string("the script")) },
            "NOOP" => {
                self.spaces();
                let tag = match step!(self.at_line_end()) {
                    true => None,
                    false => match step!(self.item()) {
                        Item::String(s) => Some(s),
                        _ => return Step::Bad("NOOP takes a string".into()),
                    },
                };
                Command::Noop { tag }
            }
            "UNAUTHENTICATE" => Command::Unauthenticate,
            other => return Step::Bad(format!("unknown command {other}")),
        };
        step!(self.end_line());
        Step::Ok(command)
    }
}

/// Where the current line ends (after its LF), if it has arrived.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf[from.min(buf.len())..].iter().position(|&b| b == b'\n').map(|i| from + i + 1)
}

fn finish<T>(step: Step<T>, reader: &Reader<'_>) -> Parse<T> {
    match step {
        Step::Ok(v) => Parse::Done(v, reader.at),
        Step::Incomplete => match line_end(reader.buf, 0) {
            // A line without a literal that is over the limit is refused at once.
            None if reader.buf.len() > MAX_LINE && !reader.buf.contains(&b'{') => {
                Parse::Bad("line too long".into(), reader.buf.len())
            }
            _ => Parse::Incomplete,
        },
        Step::Bad(message) => Parse::Bad(message, line_end(reader.buf, reader.at).unwrap_or(reader.buf.len())),
        Step::TooLarge(skip) => Parse::TooLarge(skip),
    }
}

/// Reads one command from the front of `buf`; literals over `max_literal` bytes are refused.
pub fn parse(buf: &[u8], max_literal: usize) -> Parse<Command> {
    let mut reader = Reader { buf, at: 0, max_literal };
    // Empty lines are skipped.
    while matches!(reader.peek(), Some(b'\r' | b'\n')) {
        reader.at += 1;
    }
    if reader.at == buf.len() {
        return Parse::Incomplete;
    }
    let step = reader.command();
    finish(step, &reader)
}

/// One line of a SASL exchange: a string (quoted or literal); `*` cancels (`None`).
pub fn parse_sasl_line(buf: &[u8], max_literal: usize) -> Parse<Option<Vec<u8>>> {
    let mut reader = Reader { buf, at: 0, max_literal };
    let step = (|| {
        if reader.peek() == Some(b'*') {
            reader.at += 1;
            step!(reader.end_line());
            return Step::Ok(None);
        }
        let value = match step!(reader.item()) {
            Item::String(s) => s,
            _ => return Step::Bad("a SASL response must be a string".into()),
        };
        step!(reader.end_line());
        Step::Ok(Some(value))
    })();
    finish(step, &reader)
}

/// `s` as a quoted string (for short values without line breaks).
pub fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `data` as a server literal: `{n}` CRLF data.
pub fn literal(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{{{}}}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Command {
        match parse(s.as_bytes(), 1 << 20) {
            Parse::Done(c, n) => {
                assert_eq!(n, s.len(), "consumed all of {s:?}");
                c
            }
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn commands_of_rfc_5804_examples() {
        assert_eq!(one("CAPABILITY\r\n"), Command::Capability);
        assert_eq!(
            one("Authenticate \"PLAIN\" \"QJIrweAPyo6Q1T9xy\"\r\n"),
            Command::Authenticate { mechanism: "PLAIN".into(), initial: Some(b"QJIrweAPyo6Q1T9xy".to_vec()) }
        );
        assert_eq!(
            one("AUTHENTICATE \"GSSAPI\"\r\n"),
            Command::Authenticate { mechanism: "GSSAPI".into(), initial: None }
        );
        assert_eq!(
            one("Putscript \"foo\" {31+}\r\n#comment\r\nInvalidSieveCommand\r\n\r\n"),
            Command::PutScript { name: "foo".into(), script: b"#comment\r\nInvalidSieveCommand\r\n".to_vec() }
        );
        assert_eq!(
            one("HAVESPACE \"myscript\" 999999\r\n"),
            Command::HaveSpace { name: "myscript".into(), size: 999_999 }
        );
        assert_eq!(one("Setactive \"\"\r\n"), Command::SetActive { name: String::new() });
        assert_eq!(
            one("Renamescript \"foo\" \"bar\"\r\n"),
            Command::RenameScript { from: "foo".into(), to: "bar".into() }
        );
        assert_eq!(
            one("Getscript \"my \\\"quoted\\\" name\"\r\n"),
            Command::GetScript { name: "my \"quoted\" name".into() }
        );
        assert_eq!(one("NOOP \"STARTTLS-SYNC-42\"\r\n"), Command::Noop { tag: Some(b"STARTTLS-SYNC-42".to_vec()) });
        assert_eq!(one("logout\n"), Command::Logout);
        // A synchronizing-style literal from a lenient client is read the same way.
        assert_eq!(one("CHECKSCRIPT {5}\r\nkeep;\r\n"), Command::CheckScript { script: b"keep;".to_vec() });
    }

    #[test]
    fn incomplete_bad_and_too_large() {
        assert_eq!(parse(b"PUTSCRIPT \"a\" {10+}\r\nkeep", 100), Parse::Incomplete);
        assert_eq!(parse(b"CAPABIL", 100), Parse::Incomplete);
        assert!(matches!(parse(b"FROB\r\nNOOP\r\n", 100), Parse::Bad(_, 6)));
        assert!(matches!(parse(b"GETSCRIPT\r\n", 100), Parse::Bad(_, 11)));
        assert!(matches!(parse(b"GETSCRIPT \"\"\r\n", 100), Parse::Bad(..)));
        assert!(matches!(parse(b"LOGOUT extra\r\n", 100), Parse::Bad(..)));
        assert!(matches!(parse(b"HAVESPACE \"a\" 99999999999\r\n", 100), Parse::Bad(..)));
        assert_eq!(parse(b"PUTSCRIPT \"a\" {1000+}\r\n", 100), Parse::TooLarge(23 + 1000));
        let long = format!("NOOP \"{}", "x".repeat(MAX_LINE + 10));
        assert!(matches!(parse(long.as_bytes(), 100), Parse::Bad(..)));
        assert_eq!(parse_sasl_line(b"*\r\n", 100), Parse::Done(None, 3));
        assert_eq!(parse_sasl_line(b"\"dGVzdA==\"\r\n", 100), Parse::Done(Some(b"dGVzdA==".to_vec()), 12));
        assert_eq!(parse_sasl_line(b"{4+}\r\nabcd\r\n", 100), Parse::Done(Some(b"abcd".to_vec()), 12));
    }

    #[test]
    fn output_forms() {
        assert_eq!(quoted("a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(literal(b"keep;"), b"{5}\r\nkeep;".to_vec());
    }

    proptest::proptest! {
        /// Any bytes: no panic, and whatever is consumed lies within the buffer.
        #[test]
        fn arbitrary_input_never_panics(buf in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            match parse(&buf, 64) {
                Parse::Done(_, n) | Parse::Bad(_, n) => proptest::prop_assert!(n <= buf.len() && n > 0),
                Parse::Incomplete | Parse::TooLarge(_) => {}
            }
            let _ = parse_sasl_line(&buf, 64);
        }

        /// A command split anywhere parses as Incomplete until it is whole.
        #[test]
        fn split_commands_wait(cut in 0usize..40) {
            let whole = b"PUTSCRIPT \"name\" {7+}\r\nkeep;\r\n\r\n";
            let cut = cut.min(whole.len() - 1);
            proptest::prop_assert_eq!(parse(&whole[..cut], 100), Parse::Incomplete);
            proptest::prop_assert!(matches!(parse(whole, 100), Parse::Done(_, n) if n == whole.len()));
        }
    }
}
