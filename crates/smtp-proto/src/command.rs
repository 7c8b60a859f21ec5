//! SMTP command lines (RFC 5321 §4.1.1) with the ESMTP parameters Tern supports:
//! SIZE (RFC 1870), BODY (RFC 6152, 3030), SMTPUTF8 (RFC 6531), DSN (RFC 3461), AUTH (RFC 4954).

use crate::address::{self, ForwardPath, Mailbox};
use crate::reply::Reply;
use crate::xtext;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail(MailFrom),
    Rcpt(RcptTo),
    Data,
    /// RFC 3030 CHUNKING.
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Help,
    Vrfy(String),
    Expn(String),
    StartTls,
    /// RFC 4954.
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

pub use crate::envelope::{Body, Notify, Ret};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailFrom {
    /// `None` is the null reverse path `<>`.
    pub sender: Option<Mailbox>,
    pub source_route: bool,
    pub size: Option<u64>,
    pub body: Option<Body>,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    pub envid: Option<String>,
    /// RFC 4954 §5 AUTH=, decoded from xtext (`<>` when unknown).
    pub auth: Option<String>,
    /// RFC 8689 REQUIRETLS.
    pub requiretls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptTo {
    pub recipient: ForwardPath,
    pub source_route: bool,
    pub notify: Option<Notify>,
    /// RFC 3461 §4.2 ORCPT: address type and decoded address.
    pub orcpt: Option<(String, String)>,
}

/// Why a command line could not be parsed. Each maps to the reply RFC 5321 / 3463 wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// 500 5.5.1
    Unrecognized,
    /// 501 5.5.4 — bad arguments to a known command.
    Syntax(&'static str),
    /// 501 5.1.7 — bad reverse-path.
    BadSender(&'static str),
    /// 501 5.1.3 — bad forward-path.
    BadRecipient(&'static str),
    /// 555 5.5.4 — parameter not recognised or not implemented.
    UnknownParameter(String),
    /// 501 5.5.4 — parameter value wrong.
    BadParameter(&'static str),
}

impl ParseError {
    pub fn reply(&self) -> Reply {
        match self {
            ParseError::Unrecognized => Reply::new(500, (5, 5, 1), "Command unrecognized"),
            ParseError::Syntax(m) => Reply::new(501, (5, 5, 4), format!("Syntax error: {m}")),
            ParseError::BadSender(m) => Reply::new(501, (5, 1, 7), format!("Bad sender address syntax: {m}")),
            ParseError::BadRecipient(m) => Reply::new(501, (5, 1, 3), format!("Bad recipient address syntax: {m}")),
            ParseError::UnknownParameter(p) => Reply::new(555, (5, 5, 4), format!("Unsupported parameter {p}")),
            ParseError::BadParameter(m) => Reply::new(501, (5, 5, 4), format!("Bad parameter: {m}")),
        }
    }
}

/// Parses one command line (without its line ending).
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| ParseError::Syntax("command is not valid UTF-8"))?;
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ParseError::Syntax("control character in command"));
    }
    let (verb, args) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_args = |cmd: Command| {
        if args.trim().is_empty() { Ok(cmd) } else { Err(ParseError::Syntax("this command takes no arguments")) }
    };
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let name = args.trim();
            if name.is_empty() || name.contains(' ') {
                return Err(ParseError::Syntax("EHLO/HELO needs exactly one domain or address literal"));
            }
            Ok(if verb == "EHLO" { Command::Ehlo(name.into()) } else { Command::Helo(name.into()) })
        }
        "MAIL" => parse_mail(args),
        "RCPT" => parse_rcpt(args),
        "DATA" => no_args(Command::Data),
        "BDAT" => parse_bdat(args),
        "RSET" => no_args(Command::Rset),
        // RFC 5321 §4.1.1.9: NOOP may carry a string, which is ignored.
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "HELP" => Ok(Command::Help),
        "VRFY" if !args.trim().is_empty() => Ok(Command::Vrfy(args.trim().into())),
        "EXPN" if !args.trim().is_empty() => Ok(Command::Expn(args.trim().into())),
        "VRFY" | "EXPN" => Err(ParseError::Syntax("argument required")),
        "STARTTLS" => no_args(Command::StartTls),
        "AUTH" => {
            let mut it = args.split(' ').filter(|s| !s.is_empty());
            let mechanism = it.next().ok_or(ParseError::Syntax("AUTH needs a mechanism"))?;
            let initial = it.next().map(str::to_string);
            if it.next().is_some() {
                return Err(ParseError::Syntax("too many AUTH arguments"));
            }
            Ok(Command::Auth { mechanism: mechanism.to_ascii_uppercase(), initial })
        }
        _ => Err(ParseError::Unrecognized),
    }
}

/// Splits `FROM:<path> params` after the keyword. Tolerates spaces after the colon, as
/// deployed clients send them (Postfix's strict_rfc821_envelopes=no does the same).
fn split_path_and_params<'a>(args: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args[keyword.len()..].trim_start_matches(' ');
    if !rest.starts_with('<') {
        return None;
    }
    // The path ends at the first '>' outside a quoted string.
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '>' if !in_quotes => return Some((&rest[..=i], rest[i + 1..].trim_start_matches(' '))),
            _ => {}
        }
    }
    None
}

fn params(text: &str) -> impl Iterator<Item = (String, Option<&str>)> {
    text.split(' ').filter(|p| !p.is_empty()).map(|p| match p.split_once('=') {
        Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
        None => (p.to_ascii_uppercase(), None),
    })
}

fn valid_keyword(k: &str) -> bool {
    let mut bytes = k.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric()) && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn parse_mail(args: &str) -> Result<Command, ParseError> {
    let (path, rest) =
        split_path_and_params(args, "FROM:").ok_or(ParseError::Syntax("expected MAIL FROM:<address>"))?;
    let parsed = address::parse_reverse_path(path).map_err(ParseError::BadSender)?;
    let mut mail = MailFrom { sender: parsed.value, source_route: parsed.source_route, ..MailFrom::default() };
    for (key, value) in params(rest) {
        if !valid_keyword(&key) {
            return Err(ParseError::Syntax("bad parameter keyword"));
        }
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => {
                mail.size = Some(v.parse().map_err(|_| ParseError::BadParameter("SIZE must be a number"))?)
            }
            ("BODY", Some(v)) => {
                mail.body = Some(Body::parse(v).ok_or(ParseError::BadParameter("BODY must be 7BIT or 8BITMIME"))?)
            }
            ("SMTPUTF8", None) => mail.smtputf8 = true,
            ("REQUIRETLS", None) => mail.requiretls = true,
            ("RET", Some(v)) => {
                mail.ret = Some(Ret::parse(v).ok_or(ParseError::BadParameter("RET must be FULL or HDRS"))?)
            }
            ("ENVID", Some(v)) => {
                // RFC 3461 §4.4: at most 100 characters.
                let id = xtext::decode(v).ok_or(ParseError::BadParameter("ENVID is not valid xtext"))?;
                if id.len() > 100 {
                    return Err(ParseError::BadParameter("ENVID longer than 100 characters"));
                }
                mail.envid = Some(id);
            }
            ("AUTH", Some(v)) => {
                mail.auth = Some(if v == "<>" {
                    "<>".into()
                } else {
                    xtext::decode(v).ok_or(ParseError::BadParameter("AUTH is not valid xtext"))?
                })
            }
            _ => return Err(ParseError::UnknownParameter(key)),
        }
    }
    Ok(Command::Mail(mail))
}

fn parse_rcpt(args: &str) -> Result<Command, ParseError> {
    let (path, rest) = split_path_and_params(args, "TO:").ok_or(ParseError::Syntax("expected RCPT TO:<address>"))?;
    let parsed = address::parse_forward_path(path).map_err(ParseError::BadRecipient)?;
    let mut rcpt = RcptTo { recipient: parsed.value, source_route: parsed.source_route, notify: None, orcpt: None };
    for (key, value) in params(rest) {
        if !valid_keyword(&key) {
            return Err(ParseError::Syntax("bad parameter keyword"));
        }
        match (key.as_str(), value) {
            ("NOTIFY", Some(v)) => {
                // RFC 3461 §4.1: NEVER alone, or any of SUCCESS, FAILURE, DELAY.
                rcpt.notify = Some(
                    Notify::parse(v)
                        .ok_or(ParseError::BadParameter("NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY"))?,
                );
            }
            ("ORCPT", Some(v)) => {
                let (kind, addr) = v.split_once(';').ok_or(ParseError::BadParameter("ORCPT must be type;address"))?;
                if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return Err(ParseError::BadParameter("bad ORCPT address type"));
                }
                let addr = xtext::decode(addr).ok_or(ParseError::BadParameter("ORCPT is not valid xtext"))?;
                if addr.is_empty() || addr.len() > 500 {
                    return Err(ParseError::BadParameter("bad ORCPT length"));
                }
                rcpt.orcpt = Some((kind.to_ascii_lowercase(), addr));
            }
            _ => return Err(ParseError::UnknownParameter(key)),
        }
    }
    Ok(Command::Rcpt(rcpt))
}

fn parse_bdat(args: &str) -> Result<Command, ParseError> {
    let mut it = args.split(' ').filter(|s| !s.is_empty());
    let size = it
        .next()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 19)
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(ParseError::Syntax("BDAT needs a chunk size"))?;
    let last = match it.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(ParseError::Syntax("expected BDAT <size> [LAST]")),
    };
    if it.next().is_some() {
        return Err(ParseError::Syntax("expected BDAT <size> [LAST]"));
    }
    Ok(Command::Bdat { size, last })
}

#[cfg(test)]
mod tests;
