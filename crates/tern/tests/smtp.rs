//! SMTP receive, end to end: the real binary on loopback, driven by a raw client (exact bytes),
//! Python's smtplib, lettre and swaks.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn delivers_to_user_alias_catch_all_and_plus_address() {
    let s = TestServer::started("");
    s.ok(&["alias", "add", "team@example.test", "alice@example.test", "bob@example.test"]);
    s.ok(&["domain", "catch-all", "example.test", "bob@example.test"]);
    let mut c = s.smtp();
    c.hello();
    assert_eq!(c.transaction("x@remote.test", &["Alice@EXAMPLE.test"], &simple_message("direct")).code, 250);
    assert_eq!(c.transaction("x@remote.test", &["team@example.test"], &simple_message("alias")).code, 250);
    assert_eq!(c.transaction("x@remote.test", &["whoever@example.test"], &simple_message("catchall")).code, 250);
    assert_eq!(c.transaction("x@remote.test", &["alice+news@example.test"], &simple_message("plus")).code, 250);
    c.expect("QUIT", 221);
    let alice: Vec<String> = s.mail_list("alice@example.test", "INBOX");
    let bob: Vec<String> = s.mail_list("bob@example.test", "INBOX");
    let subjects =
        |lines: &[String]| lines.iter().map(|l| l.rsplit('\t').next().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(subjects(&alice), vec!["direct", "alias", "plus"]);
    assert_eq!(subjects(&bob), vec!["alias", "catchall"]);
    // UIDs count from 1 per mailbox; the line shows UID, date, size, from, subject.
    let fields: Vec<&str> = alice[0].split('\t').collect();
    assert_eq!(fields[0], "1");
    assert!(fields[1].starts_with("20"), "{fields:?}");
    assert_eq!(fields[3], "sender@remote.test");
}

#[test]
fn unknown_users_and_relaying_are_refused_at_rcpt() {
    let s = TestServer::started("");
    let mut c = s.smtp();
    c.hello();
    c.expect("MAIL FROM:<x@remote.test>", 250);
    let r = c.expect("RCPT TO:<nobody@example.test>", 550);
    assert!(r.text().starts_with("5.1.1"), "{r:?}");
    for relay in [
        "RCPT TO:<victim@elsewhere.test>",
        "RCPT TO:<victim%elsewhere.test@example.test>",
        "RCPT TO:<\"victim@elsewhere.test\"@example.test>",
        "RCPT TO:<victim!elsewhere.test@example.test>",
        "RCPT TO:<@example.test:victim@elsewhere.test>",
        "RCPT TO:<alice@[127.0.0.1]>",
    ] {
        let r = c.expect(relay, 554);
        assert!(r.text().starts_with("5.7.1"), "{relay} -> {r:?}");
    }
    // The rest of the open-relay matrix (issue 13): look-alike and decorated domains, a
    // second @, and a local-looking domain with a trailing dot: each refused with a 5xx,
    // whatever the reason given, and nothing queued for delivery elsewhere.
    for relay in [
        "RCPT TO:<victim@elsewhere.test.>",
        "RCPT TO:<victim@elsewhere.test@example.test>",
        "RCPT TO:<alice@ex\u{0430}mple.test>",
        "RCPT TO:<alice@xn--exmple-4nf.test>",
        "RCPT TO:<victim@elsewhere.test%example.test>",
        "RCPT TO:<alice@example.test.elsewhere.test>",
        "RCPT TO:<victim@[192.0.2.1]>",
        "RCPT TO:<victim@[IPv6:2001:db8::1]>",
        "RCPT TO:<elsewhere.test!victim>",
        "RCPT TO:<victim>",
    ] {
        let r = c.cmd(relay);
        assert!((500..600).contains(&r.code), "{relay} -> {r:?}");
    }
    // A source route through someone else to a local user is fine: the route is ignored.
    c.expect("RCPT TO:<@relay.elsewhere.test:alice@example.test>", 250);
    c.expect("DATA", 354);
    c.send(&simple_message("routed"));
    assert_eq!(c.reply().code, 250);
    assert_eq!(s.mail_list("alice@example.test", "INBOX").len(), 1);
    assert_eq!(s.ok(&["queue", "list"]), "0 queued message(s)\n", "nothing was queued for anywhere else");
}

#[test]
fn command_sequence_errors_and_misc_commands() {
    let s = TestServer::started("");
    let mut c = s.smtp();
    c.greeting();
    assert_eq!(c.cmd("MAIL FROM:<a@b.test>").code, 503, "MAIL before EHLO");
    let ehlo = c.expect("EHLO client.test", 250);
    for ext in
        ["PIPELINING", "SIZE 52428800", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "STARTTLS", "CHUNKING", "DSN"]
    {
        assert!(ehlo.lines.iter().any(|l| l == ext), "{ext} missing from {ehlo:?}");
    }
    assert_eq!(c.cmd("RCPT TO:<alice@example.test>").code, 503);
    assert_eq!(c.cmd("DATA").code, 503);
    c.expect("MAIL FROM:<a@b.test>", 250);
    assert_eq!(c.cmd("MAIL FROM:<a@b.test>").code, 503, "nested MAIL");
    assert_eq!(c.cmd("DATA").code, 554, "DATA without recipients");
    c.expect("RSET", 250);
    c.expect("NOOP", 250);
    c.expect("VRFY alice", 252);
    c.expect("EXPN staff", 502);
    c.expect("HELP", 214);
    assert_eq!(c.cmd("FROB").code, 500);
    assert_eq!(c.cmd("MAIL FROM:<a@b.test> FOO=BAR").code, 555);
    assert_eq!(c.cmd("MAIL FROM:<a@b.test> BODY=BINARYMIME").code, 555);
    assert_eq!(c.cmd("MAIL FROM:not-an-address").code, 501);
    c.expect("QUIT", 221);
}

#[test]
fn dsn_parameters_are_kept_and_smtputf8_works() {
    let s = TestServer::started("");
    s.ok(&["domain", "add", "bücher.test"]);
    s.ok_stdin(&["user", "add", "jörg@bücher.test", "--password-stdin"], "pw\n");
    let mut c = s.smtp();
    c.hello();
    c.expect("MAIL FROM:<x@remote.test> RET=HDRS ENVID=abc+2Bdef", 250);
    c.expect("RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@example.test", 250);
    c.expect("DATA", 354);
    c.send(&simple_message("dsn"));
    assert_eq!(c.reply().code, 250);
    // UTF-8 addresses need SMTPUTF8 (RFC 6531 §3.5).
    c.expect("MAIL FROM:<x@remote.test>", 250);
    assert_eq!(c.cmd("RCPT TO:<jörg@bücher.test>").code, 553);
    c.expect("RSET", 250);
    c.expect("MAIL FROM:<jürgen@remote.test> SMTPUTF8", 250);
    c.expect("RCPT TO:<JÖRG@xn--bcher-kva.test>", 250);
    c.expect("DATA", 354);
    c.send("Subject: Grüße\r\n\r\nÄpfel\r\n.\r\n".as_bytes());
    assert_eq!(c.reply().code, 250);
    let raw = String::from_utf8(s.mail_show("jörg@bücher.test", "INBOX", 1)).unwrap();
    assert!(raw.contains("with UTF8SMTP id"), "{raw}");
    assert!(raw.ends_with("Subject: Grüße\r\n\r\nÄpfel\r\n"), "{raw}");
}

#[test]
fn pipelining_gets_replies_in_order() {
    let s = TestServer::started("");
    let mut c = s.smtp();
    c.hello();
    let mut batch = b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n".to_vec();
    c.send(&batch);
    let codes: Vec<u16> = (0..5).map(|_| c.reply().code).collect();
    assert_eq!(codes, vec![250, 250, 550, 250, 354]);
    batch = simple_message("pipelined");
    batch.extend_from_slice(b"MAIL FROM:<y@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n");
    c.send(&batch);
    let codes: Vec<u16> = (0..4).map(|_| c.reply().code).collect();
    assert_eq!(codes, vec![250, 250, 250, 354]);
    c.send(&simple_message("second"));
    assert_eq!(c.reply().code, 250);
    assert_eq!(s.mail_list("alice@example.test", "INBOX").len(), 1);
    assert_eq!(s.mail_list("bob@example.test", "INBOX").len(), 2);
}

#[test]
fn bdat_chunks_and_their_bytes_are_never_commands() {
    let s = TestServer::started("");
    let mut c = s.smtp();
    c.hello();
    c.expect("MAIL FROM:<x@remote.test>", 250);
    c.expect("RCPT TO:<alice@example.test>", 250);
    let part1 = b"Subject: chunked\r\n\r\n";
    let part2 = b"line one\r\n.leading dot stays\r\n";
    c.send(format!("BDAT {}\r\n", part1.len()).as_bytes());
    c.send(part1);
    assert_eq!(c.reply().code, 250);
    c.send(format!("BDAT {} LAST\r\n", part2.len()).as_bytes());
    c.send(part2);
    assert_eq!(c.reply().code, 250);
    let raw = s.mail_show("alice@example.test", "INBOX", 1);
    assert!(
        raw.ends_with(b"Subject: chunked\r\n\r\nline one\r\n.leading dot stays\r\n"),
        "{}",
        String::from_utf8_lossy(&raw)
    );

    // A BDAT that is refused (no transaction) still has its chunk read: the command-like
    // bytes inside it must not run.
    let inner = b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<bob@example.test>\r\n";
    c.send(format!("BDAT {} LAST\r\n", inner.len()).as_bytes());
    c.send(inner);
    assert_eq!(c.reply().code, 503);
    c.expect("NOOP", 250);
    // DATA after BDAT in the same transaction is refused; BDAT 0 LAST ends an empty message.
    c.expect("MAIL FROM:<x@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    c.send(b"BDAT 12\r\nSubject: e\r\n");
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.cmd("DATA").code, 503);
    c.send(b"BDAT 2 LAST\r\n\r\n");
    assert_eq!(c.reply().code, 250);
    assert_eq!(s.mail_list("bob@example.test", "INBOX").len(), 1);
}

#[test]
fn bare_lf_and_bare_cr_are_refused_and_smuggling_fails() {
    let s = TestServer::started("");
    let mut c = s.smtp();
    c.hello();
    for body in [&b"Subject: x\r\n\r\nbare\nlf\r\n.\r\n"[..], b"Subject: x\r\n\r\nbare\rcr\r\n.\r\n"] {
        c.expect("MAIL FROM:<x@remote.test>", 250);
        c.expect("RCPT TO:<alice@example.test>", 250);
        c.expect("DATA", 354);
        c.send(body);
        let r = c.reply();
        assert_eq!(r.code, 554, "{r:?}");
        assert!(r.text().starts_with("5.6.0"), "{r:?}");
    }
    // The classic smuggling payloads: a fake end of data, then a spoofed transaction. The
    // fake end is not an end; the whole thing is one message that is refused, and the
    // spoofed MAIL/RCPT/DATA never run.
    for fake in [&b"\n.\n"[..], b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"] {
        c.expect("MAIL FROM:<x@remote.test>", 250);
        c.expect("RCPT TO:<alice@example.test>", 250);
        c.expect("DATA", 354);
        let mut payload = b"Subject: innocent\r\n\r\nhello".to_vec();
        payload.extend_from_slice(fake);
        payload.extend_from_slice(b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nspoofed\r\n.\r\n");
        c.send(&payload);
        let r = c.reply();
        assert_eq!(r.code, 554, "fake end {fake:?} gave {r:?}");
        c.expect("NOOP", 250);
    }
    c.expect("QUIT", 221);
    assert!(s.mail_list("alice@example.test", "INBOX").is_empty());
    assert!(s.mail_list("bob@example.test", "INBOX").is_empty(), "a smuggled message was delivered");
}

#[test]
fn size_limit_is_advertised_and_enforced() {
    let s = TestServer::started("[smtp]\nmax_message_size = 10000\n");
    let mut c = s.smtp();
    let ehlo = c.hello();
    assert!(ehlo.lines.iter().any(|l| l == "SIZE 10000"), "{ehlo:?}");
    let r = c.cmd("MAIL FROM:<x@remote.test> SIZE=20000");
    assert_eq!(r.code, 552);
    assert!(r.text().starts_with("5.3.4"));
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..400 {
        big.extend_from_slice(b"0123456789012345678901234567890123456789012345678\r\n");
    }
    big.extend_from_slice(b".\r\n");
    let r = c.transaction("x@remote.test", &["alice@example.test"], &big);
    assert_eq!(r.code, 552, "{r:?}");
    // BDAT over the limit, too.
    c.expect("MAIL FROM:<x@remote.test>", 250);
    c.expect("RCPT TO:<alice@example.test>", 250);
    c.send(b"BDAT 20000 LAST\r\n");
    c.send(&vec![b'x'; 20000]);
    assert_eq!(c.reply().code, 552);
    c.expect("RSET", 250);
    // The session is still usable.
    assert_eq!(c.transaction("x@remote.test", &["alice@example.test"], &simple_message("small")).code, 250);
}

#[test]
fn recipient_limit() {
    let s = TestServer::started("[smtp]\nmax_recipients = 3\n");
    let mut c = s.smtp();
    c.hello();
    c.expect("MAIL FROM:<x@remote.test>", 250);
    for _ in 0..3 {
        c.expect("RCPT TO:<alice@example.test>", 250);
    }
    let r = c.cmd("RCPT TO:<bob@example.test>");
    assert_eq!(r.code, 452);
    assert!(r.text().starts_with("4.5.3"));
}

#[test]
fn overlong_lines_and_huge_data_cost_constant_memory() {
    let s = TestServer::started("[smtp]\nmax_message_size = 1048576\n");
    let before = s.rss_kib();
    let mut c = s.smtp();
    c.hello();
    // A 10 MB command line.
    let mut line = b"MAIL FROM:<".to_vec();
    line.extend(std::iter::repeat_n(b'a', 10 * 1024 * 1024));
    line.extend_from_slice(b">\r\n");
    c.send(&line);
    let r = c.reply();
    assert_eq!(r.code, 500);
    assert!(r.text().starts_with("5.5.2"), "{r:?}");
    c.expect("NOOP", 250);
    // 1 GiB of DATA against a 1 MiB limit: refused, streamed through constant memory.
    c.expect("MAIL FROM:<x@remote.test>", 250);
    c.expect("RCPT TO:<alice@example.test>", 250);
    c.expect("DATA", 354);
    let chunk = vec![b'x'; 1024 * 1024 - 2].into_iter().chain(*b"\r\n").collect::<Vec<u8>>();
    for _ in 0..1024 {
        c.send(&chunk);
    }
    c.send(b".\r\n");
    let r = c.reply();
    assert_eq!(r.code, 552, "{r:?}");
    let after = s.rss_kib();
    assert!(after < before + 64 * 1024, "RSS grew from {before} KiB to {after} KiB");
    c.expect("QUIT", 221);
}

#[test]
fn too_many_errors_closes_the_session() {
    let s = TestServer::started("[smtp]\nmax_errors = 3\n");
    let mut c = s.smtp();
    c.greeting();
    for _ in 0..3 {
        assert_eq!(c.cmd("BOGUS").code, 500);
    }
    let r = c.reply();
    assert_eq!(r.code, 421, "{r:?}");
    assert!(c.try_reply().is_none(), "connection should be closed");
}

#[test]
fn connection_limits_per_ip() {
    let s = TestServer::started("[smtp]\nmax_connections_per_ip = 2\n[limits]\nexempt = []\n");
    let mut a = s.smtp();
    a.greeting();
    let mut b = s.smtp();
    b.greeting();
    let mut third = s.smtp();
    let r = third.reply();
    assert_eq!(r.code, 421);
    assert!(r.text().starts_with("4.7.0"), "{r:?}");
    drop(a);
    // The slot is released when a session ends.
    eventually(std::time::Duration::from_secs(10), "the slot to be released", || {
        let mut again = s.smtp();
        (again.reply().code == 220).then_some(())
    });
    b.expect("QUIT", 221);
}

#[test]
fn starttls_upgrades_resets_state_and_discards_injected_commands() {
    let s = TestServer::started("");
    let mut c = s.smtp();
    c.hello();
    c.expect("MAIL FROM:<x@remote.test>", 250);
    // CVE-2011-0411: a command pipelined in plaintext behind STARTTLS.
    c.send(b"STARTTLS\r\nRCPT TO:<bob@example.test>\r\n");
    let r = c.reply();
    assert_eq!(r.code, 220, "{r:?}");
    let mut t = c.into_tls();
    // If the injected RCPT had been kept, its reply would come first (and MAIL would still
    // be in effect). After TLS the session starts over: EHLO is required again.
    assert_eq!(t.cmd("RCPT TO:<bob@example.test>").code, 503, "state must be reset after STARTTLS");
    let ehlo = t.expect("EHLO client.test", 250);
    assert!(!ehlo.lines.iter().any(|l| l == "STARTTLS"), "STARTTLS offered again inside TLS");
    assert_eq!(t.cmd("STARTTLS").code, 503);
    assert_eq!(t.transaction("x@remote.test", &["alice@example.test"], &simple_message("overtls")).code, 250);
    t.expect("QUIT", 221);
    let raw = String::from_utf8(s.mail_show("alice@example.test", "INBOX", 1)).unwrap();
    assert!(raw.contains("with ESMTPS id"), "{raw}");
    assert!(raw.contains("(using TLSv1.3 with cipher TLS13_"), "{raw}");
    assert!(s.mail_list("bob@example.test", "INBOX").is_empty());
}

#[test]
fn tls_below_1_2_and_non_forward_secret_suites_are_refused() {
    let s = TestServer::started("");
    assert!(have("openssl"), "openssl is required (the test command installs it)");
    let handshake = |args: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "printf 'QUIT\\r\\n' | timeout 10 openssl s_client -starttls smtp {args} -connect {} 2>&1; true",
                s.smtp
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for args in ["-tls1_1", "-tls1", "-tls1_2 -cipher AES128-SHA", "-tls1_2 -cipher AES256-GCM-SHA384"] {
        let text = handshake(args);
        assert!(text.contains("Cipher is (NONE)"), "openssl {args} got a session:\n{text}");
    }
    let text = handshake("-tls1_2");
    assert!(text.contains("Cipher    : ECDHE-"), "TLS 1.2 should work with ECDHE:\n{text}");
}

#[test]
fn dot_stuffing_round_trips_through_smtplib() {
    let s = TestServer::started("");
    let body = "Subject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nlast\r\n";
    let port = s.smtp.port().to_string();
    python("smtp_send.py", &["--port", &port, "--to", "alice@example.test", "--body", body]);
    let raw = String::from_utf8(s.mail_show("alice@example.test", "INBOX", 1)).unwrap();
    assert!(raw.ends_with(body), "stored:\n{raw}");
    // Raw client: the dot-stuffed form on the wire is unstuffed once.
    let mut c = s.smtp();
    c.hello();
    let r = c.transaction("x@remote.test", &["bob@example.test"], b"Subject: raw\r\n\r\n..x\r\n...\r\n.\r\n");
    assert_eq!(r.code, 250);
    assert!(s.mail_show("bob@example.test", "INBOX", 1).ends_with(b"Subject: raw\r\n\r\n.x\r\n..\r\n"));
}

#[test]
fn smtplib_starttls_and_multiple_recipients() {
    let s = TestServer::started("");
    let port = s.smtp.port().to_string();
    let out = python(
        "smtp_send.py",
        &[
            "--port",
            &port,
            "--starttls",
            "--to",
            "alice@example.test",
            "--to",
            "bob@example.test",
            "--body",
            "Subject: py\r\n\r\nfrom python\r\n",
        ],
    );
    assert!(out.contains("250"), "{out}");
    for user in ["alice@example.test", "bob@example.test"] {
        let raw = String::from_utf8(s.mail_show(user, "INBOX", 1)).unwrap();
        assert!(raw.contains("with ESMTPS"), "{raw}");
        assert!(!raw.contains("for <"), "no for clause with two recipients: {raw}");
    }
}

#[test]
fn lettre_sends_over_starttls() {
    use lettre::message::Mailbox;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let s = TestServer::started("");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tls =
            TlsParameters::builder(HOSTNAME.to_string()).dangerous_accept_invalid_certs(true).build_rustls().unwrap();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(s.smtp.port())
            .tls(Tls::Required(tls))
            .build();
        let msg = Message::builder()
            .from("Lettre <lettre@remote.test>".parse::<Mailbox>().unwrap())
            .to("alice@example.test".parse::<Mailbox>().unwrap())
            .subject("from lettre")
            .body("Hello from lettre\r\n.with a dot line\r\n".to_string())
            .unwrap();
        let response = transport.send(msg).await.expect("lettre send");
        assert_eq!(response.code().to_string(), "250");
    });
    let list = s.mail_list("alice@example.test", "INBOX");
    assert_eq!(list.len(), 1);
    assert!(list[0].ends_with("Lettre <lettre@remote.test>\tfrom lettre"), "{list:?}");
}

#[test]
fn swaks_pipelining_and_tls() {
    if !have("swaks") {
        panic!("swaks is required (the test command installs it)");
    }
    let s = TestServer::started("");
    let server = s.smtp.to_string();
    for extra in [&["--pipeline"][..], &["--tls"][..]] {
        let out = std::process::Command::new("swaks")
            .args([
                "--server",
                &server,
                "--to",
                "alice@example.test",
                "--from",
                "x@remote.test",
                "--header",
                "Subject: swaks",
            ])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "swaks {extra:?} failed:\n{text}");
        assert!(text.contains("<-  250 2.0.0 Ok: queued as") || text.contains("<~  250 2.0.0 Ok: queued as"), "{text}");
    }
    assert_eq!(s.mail_list("alice@example.test", "INBOX").len(), 2);
}

#[test]
fn hundred_concurrent_sessions() {
    let s = TestServer::started("");
    let addr = s.smtp;
    let threads: Vec<_> = (0..100)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.hello();
                let to = if i % 2 == 0 { "alice@example.test" } else { "bob@example.test" };
                let r = c.transaction("x@remote.test", &[to], &simple_message(&format!("concurrent{i}")));
                assert_eq!(r.code, 250, "{r:?}");
                c.expect("QUIT", 221);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.mail_list("alice@example.test", "INBOX").len(), 50);
    assert_eq!(s.mail_list("bob@example.test", "INBOX").len(), 50);
    // Same content to two recipients in one transaction is stored once: check via metrics.
    let (code, metrics) = s.http_get("/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("tern_smtp_messages_accepted_total{service=\"smtp\"} 100"), "{metrics}");
    assert!(metrics.contains("tern_store_commit_seconds_bucket"), "{metrics}");
}

#[test]
fn health_endpoints() {
    let s = TestServer::started("");
    assert_eq!(s.http_get("/healthz"), (200, "ok\n".to_string()));
    assert_eq!(s.http_get("/readyz"), (200, "ready\n".to_string()));
    assert_eq!(s.http_get("/nope").0, 404);
}

#[test]
fn postmaster_without_domain_is_accepted() {
    let s = TestServer::started("");
    s.ok(&["alias", "add", "postmaster@example.test", "alice@example.test"]);
    let mut c = s.smtp();
    c.hello();
    c.expect("MAIL FROM:<>", 250);
    c.expect("RCPT TO:<Postmaster>", 250);
    c.expect("DATA", 354);
    c.send(&simple_message("pm"));
    assert_eq!(c.reply().code, 250);
    let raw = String::from_utf8(s.mail_show("alice@example.test", "INBOX", 1)).unwrap();
    assert!(
        raw.starts_with(
            "Return-Path: <>\r\nReceived: from client.test ([127.0.0.1])\r\n\tby mx.tern.test (Tern) with ESMTP id "
        ),
        "{raw}"
    );
}

#[test]
fn idle_sessions_time_out() {
    let s = TestServer::started("[smtp]\ntimeout_seconds = 1\n");
    let mut c = s.smtp();
    c.greeting();
    let r = c.reply();
    assert_eq!(r.code, 421, "{r:?}");
    assert!(r.text().starts_with("4.4.2"), "{r:?}");
}

/// Issue 10 / RFC 5321 §4.5.1: postmaster at the host name (which is not a mail domain) was
/// refused as relaying; every form of postmaster reaches the postmaster.
#[test]
fn postmaster_is_always_reachable() {
    let s = TestServer::started("");
    s.ok(&["alias", "add", "postmaster@example.test", "alice@example.test"]);
    s.ok(&["domain", "add", "other.test"]);
    let mut c = s.smtp();
    c.hello();
    c.expect("MAIL FROM:<someone@remote.test>", 250);
    for rcpt in [
        format!("<postmaster@{HOSTNAME}>"),
        format!("<PostMaster@{}>", HOSTNAME.to_uppercase()),
        "<Postmaster>".to_string(),
        "<postmaster@example.test>".to_string(),
        // A domain of ours without a postmaster of its own.
        "<postmaster@other.test>".to_string(),
    ] {
        c.expect(&format!("RCPT TO:{rcpt}"), 250);
    }
    // Not a way to relay: postmaster elsewhere is still elsewhere.
    c.expect("RCPT TO:<postmaster@remote.test>", 554);
    c.expect("DATA", 354);
    c.send(b"Subject: to the postmaster\r\n\r\nhello\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    assert_eq!(s.mail_list("alice@example.test", "INBOX").len(), 1, "one copy for all five forms");
}

/// `smtp.max_inflight_bytes` bounds the message data held in memory: beyond it, data goes to
/// a spool file and the message is loaded once memory is free. Every message gets its 250.
#[test]
fn messages_beyond_the_memory_budget_are_spooled_not_refused() {
    let s = TestServer::started("[smtp]\nmax_message_size = 1048576\nmax_inflight_bytes = 2097152\n");
    let addr = s.smtp;
    let body_line = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
    let threads: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.hello();
                c.expect("MAIL FROM:<x@remote.test>", 250);
                c.expect("RCPT TO:<alice@example.test>", 250);
                let mut message = format!("Subject: spool{i}\r\n\r\n").into_bytes();
                while message.len() < 900 * 1024 {
                    message.extend_from_slice(body_line.as_bytes());
                }
                message.extend_from_slice(format!("end of {i}\r\n").as_bytes());
                let (first, second) = message.split_at(message.len() / 2);
                if i % 2 == 0 {
                    c.expect("DATA", 354);
                    c.send(first);
                    // Every session holds its first half at once.
                    std::thread::sleep(Duration::from_millis(500));
                    c.send(second);
                    c.send(b".\r\n");
                } else {
                    c.send(format!("BDAT {}\r\n", first.len()).as_bytes());
                    c.send(first);
                    assert_eq!(c.reply().code, 250);
                    std::thread::sleep(Duration::from_millis(500));
                    c.send(format!("BDAT {} LAST\r\n", second.len()).as_bytes());
                    c.send(second);
                }
                let r = c.reply();
                assert_eq!(r.code, 250, "message {i}: {r:?}");
                c.expect("QUIT", 221);
                message
            })
        })
        .collect();
    let sent: Vec<Vec<u8>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let list = s.mail_list("alice@example.test", "INBOX");
    assert_eq!(list.len(), 8);
    for uid in 1..=8u32 {
        let stored = s.mail_show("alice@example.test", "INBOX", uid);
        assert!(sent.iter().any(|m| stored.ends_with(m)), "message {uid} is whole");
    }
    let (_, metrics) = s.http_get("/metrics");
    let spooled: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tern_messages_spooled_total ").and_then(|n| n.trim().parse().ok()))
        .unwrap_or(0);
    assert!(spooled > 0, "some messages went through the spool: {metrics}");
    let spool = s.data_dir().join("spool");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0, "the spool files are gone");
}
