//! POP3 commands (RFC 1939 §5-7, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH), parsed from
//! one line without its CRLF. Pure.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(String),
    Apop,
    Auth { mechanism: Option<String>, initial: Option<String> },
    Stls,
    Capa,
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Quit,
    Top(u32, u32),
    Uidl(Option<u32>),
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Unknown(String),
    Syntax(&'static str),
}

fn number(arg: Option<&str>) -> Result<u32, ParseError> {
    let a = arg.ok_or(ParseError::Syntax("a message number is required"))?;
    if a.is_empty() || a.len() > 10 || !a.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Syntax("not a message number"));
    }
    a.parse().map_err(|_| ParseError::Syntax("not a message number"))
}

pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| ParseError::Syntax("not UTF-8"))?;
    if line.chars().any(|c| c.is_control()) {
        return Err(ParseError::Syntax("control characters in the command"));
    }
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let mut args = rest.split(' ').filter(|a| !a.is_empty());
    let (a1, a2, a3) = (args.next(), args.next(), args.next());
    let none =
        |cmd: Command| if a1.is_some() { Err(ParseError::Syntax("this command takes no argument")) } else { Ok(cmd) };
    match verb.as_str() {
        // RFC 1939 §7: USER name, PASS string (the password may contain spaces).
        "USER" if !rest.is_empty() => Ok(Command::User(rest.to_string())),
        "PASS" if !rest.is_empty() => Ok(Command::Pass(rest.to_string())),
        "USER" | "PASS" => Err(ParseError::Syntax("an argument is required")),
        "APOP" => Ok(Command::Apop),
        "AUTH" => {
            if a3.is_some() {
                return Err(ParseError::Syntax("too many arguments"));
            }
            Ok(Command::Auth { mechanism: a1.map(str::to_ascii_uppercase), initial: a2.map(str::to_string) })
        }
        "STLS" => none(Command::Stls),
        "CAPA" => none(Command::Capa),
        "STAT" => none(Command::Stat),
        "NOOP" => none(Command::Noop),
        "RSET" => none(Command::Rset),
        "QUIT" => none(Command::Quit),
        "LIST" | "UIDL" => {
            if a2.is_some() {
                return Err(ParseError::Syntax("too many arguments"));
            }
            let n = a1.map(|a| number(Some(a))).transpose()?;
            Ok(if verb == "LIST" { Command::List(n) } else { Command::Uidl(n) })
        }
        "RETR" | "DELE" => {
            if a2.is_some() {
                return Err(ParseError::Syntax("too many arguments"));
            }
            let n = number(a1)?;
            Ok(if verb == "RETR" { Command::Retr(n) } else { Command::Dele(n) })
        }
        "TOP" => {
            if a3.is_some() {
                return Err(ParseError::Syntax("too many arguments"));
            }
            Ok(Command::Top(number(a1)?, number(a2)?))
        }
        _ => Err(ParseError::Unknown(verb)),
    }
}

/// Appends `message` dot-stuffed (RFC 1939 §3) and terminated: every line that starts with
/// "." gets one more, the text ends with CRLF (added only if missing), then ".\r\n".
pub fn dot_stuff(out: &mut Vec<u8>, message: &[u8]) {
    out.reserve(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    let mut rest = message;
    while !rest.is_empty() {
        if at_line_start && rest[0] == b'.' {
            out.push(b'.');
        }
        match memchr::memchr(b'\n', rest) {
            Some(i) => {
                out.extend_from_slice(&rest[..=i]);
                rest = &rest[i + 1..];
                at_line_start = true;
            }
            None => {
                out.extend_from_slice(rest);
                rest = &[];
                at_line_start = false;
            }
        }
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// The header and the first `lines` lines of the body (TOP).
pub fn top(message: &[u8], lines: u32) -> &[u8] {
    let mut i = 0;
    // Header: up to and including the empty line.
    while i < message.len() {
        let end = memchr::memchr(b'\n', &message[i..]).map(|p| i + p + 1).unwrap_or(message.len());
        let line = &message[i..end];
        i = end;
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let mut left = lines;
    while left > 0 && i < message.len() {
        i = memchr::memchr(b'\n', &message[i..]).map(|p| i + p + 1).unwrap_or(message.len());
        left -= 1;
    }
    &message[..i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse(b"user alice@example.test"), Ok(Command::User("alice@example.test".into())));
        assert_eq!(parse(b"PASS with spaces in it"), Ok(Command::Pass("with spaces in it".into())));
        assert_eq!(parse(b"LIST"), Ok(Command::List(None)));
        assert_eq!(parse(b"list 3"), Ok(Command::List(Some(3))));
        assert_eq!(parse(b"TOP 2 10"), Ok(Command::Top(2, 10)));
        assert_eq!(
            parse(b"AUTH PLAIN AGEAYg=="),
            Ok(Command::Auth { mechanism: Some("PLAIN".into()), initial: Some("AGEAYg==".into()) })
        );
        assert_eq!(parse(b"AUTH"), Ok(Command::Auth { mechanism: None, initial: None }));
        assert!(matches!(parse(b"RETR"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"RETR x"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"RETR 99999999999"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"STAT now"), Err(ParseError::Syntax(_))));
        assert_eq!(parse(b"FROB"), Err(ParseError::Unknown("FROB".into())));
        assert!(matches!(parse(b"USER a\x00b"), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn stuffing_and_top() {
        let mut out = Vec::new();
        dot_stuff(&mut out, b".a\r\n..b\r\nc.\r\n.\r\n");
        assert_eq!(out, b"..a\r\n...b\r\nc.\r\n..\r\n.\r\n");
        let mut out = Vec::new();
        dot_stuff(&mut out, b"no final newline");
        assert_eq!(out, b"no final newline\r\n.\r\n");
        let m = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
        assert_eq!(top(m, 0), b"A: 1\r\nB: 2\r\n\r\n");
        assert_eq!(top(m, 2), b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n");
        assert_eq!(top(m, 99), m);
    }

    proptest::proptest! {
        #[test]
        fn stuffing_round_trips(msg in proptest::collection::vec(proptest::prop_oneof![proptest::strategy::Just(b'.'), proptest::strategy::Just(b'\r'), proptest::strategy::Just(b'\n'), proptest::num::u8::ANY], 0..200)) {
            let mut body: Vec<u8> = msg.iter().copied().filter(|b| *b != b'\r' && *b != b'\n').collect();
            // CRLF-only text, as stored.
            body = body.split(|b| *b == b'x').collect::<Vec<_>>().join(&b"\r\n"[..]);
            if !body.is_empty() {
                body.extend_from_slice(b"\r\n");
            }
            let mut wire = Vec::new();
            dot_stuff(&mut wire, &body);
            // Undo as a client would: strip the terminator and one leading dot per line.
            let mut back = Vec::new();
            for line in wire[..wire.len() - 3].split_inclusive(|b| *b == b'\n') {
                back.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            }
            proptest::prop_assert_eq!(back, body);
        }
        #[test]
        fn parse_never_panics(line in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            let _ = parse(&line);
        }
    }
}
