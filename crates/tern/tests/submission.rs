//! Submission (RFC 6409) on 587 with STARTTLS and 465 with implicit TLS: AUTH only over TLS,
//! PLAIN/LOGIN/SCRAM with smtplib, sender ownership, RFC 6409 §8 fix-ups, failed-login bans.

mod common;

use common::*;

fn message(from: &str, to: &str, subject: &str) -> String {
    format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nHello from {from}.\r\n")
}

fn write_message(server: &TestServer, name: &str, text: &str) -> String {
    let path = server.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn auth_is_offered_only_over_tls_and_mail_needs_it() {
    let server = TestServer::started("[auth]\nplaintext_on_loopback = false\n");
    let mut c = Client::connect(server.submission);
    c.greeting();
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    assert!(!ehlo.lines.iter().any(|l| l.starts_with("AUTH")), "no AUTH before TLS: {ehlo:?}");
    let r = c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=");
    assert_eq!((r.code, r.text().starts_with("5.7.11")), (538, true), "{r:?}");
    let r = c.cmd("MAIL FROM:<alice@example.test>");
    assert_eq!((r.code, r.text().starts_with("5.7.0")), (530, true), "{r:?}");
    c.expect("STARTTLS", 220);
    let mut c = c.into_tls();
    let ehlo = c.expect("EHLO client.test", 250);
    let auth = ehlo.lines.iter().find(|l| l.starts_with("AUTH ")).expect("AUTH after TLS");
    for mech in ["PLAIN", "LOGIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"] {
        assert!(auth.split_whitespace().any(|m| m == mech), "{mech} missing from {auth}");
    }
    assert!(ehlo.lines.iter().any(|l| l == "REQUIRETLS"), "{ehlo:?}");
    let r = c.cmd("MAIL FROM:<alice@example.test>");
    assert_eq!(r.code, 530, "still no AUTH: {r:?}");
    // Wrong password, then right one.
    let r = c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==");
    assert_eq!((r.code, r.text().starts_with("5.7.8")), (535, true), "{r:?}");
    let r = c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=");
    assert_eq!(r.code, 235, "{r:?}");
    let r = c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=");
    assert_eq!(r.code, 503, "{r:?}");
    c.expect("MAIL FROM:<alice@example.test>", 250);
    c.expect("QUIT", 221);

    // Port 25 does not take AUTH at all.
    let mut c = server.smtp();
    let ehlo = c.hello();
    assert!(!ehlo.lines.iter().any(|l| l.starts_with("AUTH")), "{ehlo:?}");
    assert_eq!(c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=").code, 502);
}

#[test]
fn smtplib_submits_with_plain_login_and_scram_on_587_and_465() {
    let server = TestServer::started("");
    let port587 = server.submission.port().to_string();
    let port465 = server.submissions.port().to_string();
    let cases: [(&str, &[&str]); 4] = [
        ("PLAIN", &["--port", &port587, "--starttls"]),
        ("LOGIN", &["--port", &port587, "--starttls"]),
        ("SCRAM-SHA-256", &["--port", &port587, "--starttls"]),
        ("PLAIN", &["--port", &port465, "--ssl"]),
    ];
    for (i, (mech, conn)) in cases.iter().enumerate() {
        let file = write_message(
            &server,
            &format!("m{i}.eml"),
            &message("alice@example.test", "bob@example.test", &format!("via {mech} {i}")),
        );
        let mut args: Vec<&str> = conn.to_vec();
        args.extend(["--user", "alice@example.test", "--password", "secret", "--mech", mech]);
        args.extend(["--from", "alice@example.test", "--to", "bob@example.test", "--message", &file]);
        let (ok, out, err) = python_result("submit.py", &args);
        assert!(ok, "{mech} {conn:?}: {out}{err}\n{}", server.log());
    }
    let list = server.mail_list("bob@example.test", "INBOX");
    assert_eq!(list.len(), 4, "{list:?}");
    // SCRAM with a wrong password fails like any wrong password.
    let file = write_message(&server, "bad.eml", &message("alice@example.test", "bob@example.test", "bad"));
    let (ok, out, _) = python_result(
        "submit.py",
        &[
            "--port",
            &port587,
            "--starttls",
            "--user",
            "alice@example.test",
            "--password",
            "nope",
            "--mech",
            "SCRAM-SHA-256",
            "--from",
            "alice@example.test",
            "--to",
            "bob@example.test",
            "--message",
            &file,
        ],
    );
    assert!(!ok && out.starts_with("535"), "{out}");
}

#[test]
fn senders_must_be_owned_and_fixups_are_added() {
    let server = TestServer::started("");
    server.ok(&["alias", "add", "sales@example.test", "alice@example.test"]);
    let mut c = Client::connect(server.submission);
    c.hello();
    c.expect("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=", 235);
    // Envelope sender of somebody else.
    let r = c.cmd("MAIL FROM:<bob@example.test>");
    assert_eq!((r.code, r.text().starts_with("5.7.1")), (553, true), "{r:?}");
    assert_eq!(c.cmd("MAIL FROM:<>").code, 553);
    // Own address, alias and sub-address are fine for the envelope...
    for sender in ["alice@example.test", "sales@example.test", "alice+lists@example.test", "ALICE@Example.Test"] {
        c.expect(&format!("MAIL FROM:<{sender}>"), 250);
        c.expect("RSET", 250);
    }
    // ... but a From: header of somebody else is refused at the end of data.
    c.expect("MAIL FROM:<alice@example.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    c.expect("DATA", 354);
    c.send(b"From: Bob <bob@example.test>\r\nSubject: forged\r\n\r\nx\r\n.\r\n");
    let r = c.reply();
    assert_eq!((r.code, r.text().starts_with("5.7.1")), (553, true), "{r:?}");
    // Without Message-ID and Date: both are added (RFC 6409 §8).
    c.expect("MAIL FROM:<sales@example.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    c.expect("DATA", 354);
    c.send(b"From: Sales <sales@example.test>\r\nTo: bob@example.test\r\nSubject: fixups\r\n\r\nbody\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    c.expect("QUIT", 221);
    let list = server.mail_list("bob@example.test", "INBOX");
    assert_eq!(list.len(), 1, "the forged one was not delivered: {list:?}");
    let raw = String::from_utf8(server.mail_show("bob@example.test", "INBOX", 1)).unwrap();
    let header = raw.split("\r\n\r\n").next().unwrap().to_string();
    assert!(header.contains("\r\nMessage-ID: <") || header.starts_with("Message-ID: <"), "{header}");
    assert!(header.contains("Date: "), "{header}");
    assert!(header.contains("Return-Path: <sales@example.test>"), "{header}");
    assert!(
        header.contains("with ESMTPA") || header.contains("with ESMTPSA"),
        "Received shows authentication: {header}"
    );
}

#[test]
fn failed_logins_get_the_address_banned_for_every_service() {
    let server = TestServer::started("[limits]\nexempt = []\nauth_failures_before_ban = 3\nban_seconds = 60\n");
    let mut c = Client::connect(server.submission);
    c.hello();
    let mut banned = false;
    for _ in 0..5 {
        let r = c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==");
        if r.code == 535 {
            continue;
        }
        assert_eq!(r.code, 421, "{r:?}");
        banned = true;
        break;
    }
    if !banned {
        // The ban comes with the third failure: the connection answers 421 next.
        let r = c.try_reply();
        assert!(r.is_none() || r.as_ref().is_some_and(|r| r.code == 421), "{r:?}");
    }
    // A new connection is refused at connect (the gate every listener shares), even one
    // that would bring the right password, and so is IMAP.
    let mut c = Client::connect(server.submission);
    let r = c.reply();
    assert_eq!((r.code, r.text().starts_with("4.7.0")), (421, true), "{r:?}");
    assert!(c.try_reply().is_none(), "and the connection is closed");
    let mut imap = Client::connect(server.imap);
    let greeting = imap.raw_line().unwrap_or_default();
    assert!(greeting.starts_with("* BYE"), "IMAP turns the banned address away: {greeting}");
}
