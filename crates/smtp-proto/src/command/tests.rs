use super::*;

fn ok(s: &str) -> Command {
    parse_command(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e:?}"))
}
fn err(s: &str) -> ParseError {
    parse_command(s.as_bytes()).expect_err(s)
}

#[test]
fn simple_commands_case_insensitive() {
    assert_eq!(ok("ehlo client.example"), Command::Ehlo("client.example".into()));
    assert_eq!(ok("HELO [192.0.2.1]"), Command::Helo("[192.0.2.1]".into()));
    assert_eq!(ok("data"), Command::Data);
    assert_eq!(ok("Rset"), Command::Rset);
    assert_eq!(ok("NOOP anything here"), Command::Noop);
    assert_eq!(ok("QUIT"), Command::Quit);
    assert_eq!(ok("StartTLS"), Command::StartTls);
    assert_eq!(ok("VRFY bob"), Command::Vrfy("bob".into()));
    assert_eq!(err("DATA now"), ParseError::Syntax("this command takes no arguments"));
    assert_eq!(err("EHLO"), ParseError::Syntax("EHLO/HELO needs exactly one domain or address literal"));
    assert_eq!(err("FOO bar"), ParseError::Unrecognized);
    assert_eq!(err(""), ParseError::Unrecognized);
}

#[test]
fn mail_from_with_parameters() {
    let Command::Mail(m) = ok("MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x+2By") else {
        panic!()
    };
    assert_eq!(m.sender.unwrap().local, "a");
    assert_eq!(m.size, Some(1000));
    assert_eq!(m.body, Some(Body::EightBitMime));
    assert!(m.smtputf8);
    assert_eq!(m.ret, Some(Ret::Hdrs));
    assert_eq!(m.envid.as_deref(), Some("x+y"));
    let Command::Mail(null) = ok("mail from: <>") else { panic!() };
    assert_eq!(null.sender, None);
    assert_eq!(err("MAIL FROM:<a@b> FOO=1"), ParseError::UnknownParameter("FOO".into()));
    assert_eq!(err("MAIL FROM:<a@b> SIZE=x"), ParseError::BadParameter("SIZE must be a number"));
    assert!(matches!(err("MAIL FROM:a@b"), ParseError::Syntax(_)));
    assert!(matches!(err("MAIL TO:<a@b>"), ParseError::Syntax(_)));
    assert!(matches!(err("MAIL FROM:<a@@b>"), ParseError::BadSender(_)));
}

#[test]
fn rcpt_to_with_dsn() {
    let Command::Rcpt(r) = ok("RCPT TO:<u@d.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u+2Bx@d.example") else {
        panic!()
    };
    assert!(r.notify.unwrap().success && r.notify.unwrap().failure);
    assert_eq!(r.orcpt, Some(("rfc822".into(), "u+x@d.example".into())));
    assert!(matches!(err("RCPT TO:<u@d> NOTIFY=NEVER,SUCCESS"), ParseError::BadParameter(_)));
    assert!(matches!(err("RCPT TO:<>"), ParseError::BadRecipient(_)));
    let Command::Rcpt(q) = ok(r#"RCPT TO:<"a>b"@d.example>"#) else { panic!() };
    assert!(matches!(q.recipient, ForwardPath::Mailbox(ref m) if m.local == "a>b"));
}

#[test]
fn bdat() {
    assert_eq!(ok("BDAT 100"), Command::Bdat { size: 100, last: false });
    assert_eq!(ok("bdat 0 last"), Command::Bdat { size: 0, last: true });
    assert!(matches!(err("BDAT"), ParseError::Syntax(_)));
    assert!(matches!(err("BDAT -1"), ParseError::Syntax(_)));
    assert!(matches!(err("BDAT 99999999999999999999999"), ParseError::Syntax(_)));
    assert!(matches!(err("BDAT 1 LAST x"), ParseError::Syntax(_)));
}

#[test]
fn rejects_controls_and_invalid_utf8() {
    assert!(matches!(parse_command(b"MAIL FROM:<a@b>\r"), Err(ParseError::Syntax(_))));
    assert!(matches!(parse_command(b"EHLO \xff"), Err(ParseError::Syntax(_))));
    assert!(matches!(parse_command(b"EHLO a\x00b"), Err(ParseError::Syntax(_))));
}

proptest::proptest! {
    #[test]
    fn never_panics(line in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let _ = parse_command(&line);
    }

    #[test]
    fn never_panics_on_textual_commands(s in "(MAIL FROM:|RCPT TO:|BDAT |EHLO |AUTH )[ -~]{0,80}") {
        let _ = parse_command(s.as_bytes());
    }
}
