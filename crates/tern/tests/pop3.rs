//! POP3 end to end: raw client (byte-exact checks), Python's poplib, fetchmail, mpop.

mod common;

use common::*;
use std::io::Write;

fn message(subject: &str) -> String {
    format!(
        "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\n.leading dot\r\nbody {subject}\r\n..two dots\r\n"
    )
}

/// A raw POP3 exchange helper.
struct Pop3 {
    c: Client<std::net::TcpStream>,
}

impl Pop3 {
    fn connect(s: &TestServer) -> Pop3 {
        let mut c = Client::connect(s.pop3);
        let greeting = c.raw_line().unwrap();
        assert!(greeting.starts_with("+OK"), "{greeting}");
        Pop3 { c }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.c.send(format!("{line}\r\n").as_bytes());
        self.c.raw_line().expect("connection closed")
    }

    fn ok(&mut self, line: &str) -> String {
        let r = self.cmd(line);
        assert!(r.starts_with("+OK"), "{line} -> {r}");
        r
    }

    /// The body of a multi-line response, exactly as sent (up to and without ".\r\n").
    fn multiline(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let line = self.c.raw_line().expect("connection closed");
            if line == "." {
                return out;
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    fn login(s: &TestServer) -> Pop3 {
        let mut p = Pop3::connect(s);
        p.ok("USER alice@example.test");
        p.ok("PASS secret");
        p
    }
}

fn unstuff(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in wire.split_inclusive(|b| *b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

#[test]
fn retr_and_top_are_dot_stuffed_and_byte_identical() {
    let s = TestServer::started("");
    s.deliver("alice@example.test", message("one").as_bytes());
    let stored = s.mail_show("alice@example.test", "INBOX", 1);
    let mut p = Pop3::login(&s);
    let stat = p.ok("STAT");
    assert_eq!(stat, format!("+OK 1 {}", stored.len()));
    let r = p.ok("RETR 1");
    assert_eq!(r, format!("+OK {} octets", stored.len()));
    let wire = p.multiline();
    assert!(wire.windows(15).any(|w| w == b"\r\n..leading dot"), "dot-stuffed on the wire");
    assert_eq!(unstuff(&wire), stored, "RETR is byte-identical to the stored message");
    p.ok("TOP 1 1");
    let top = unstuff(&p.multiline());
    let header_end = stored.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(top, [&stored[..header_end], b".leading dot\r\n"].concat());
    p.ok("LIST");
    assert_eq!(p.multiline(), format!("1 {}\r\n", stored.len()).into_bytes());
    p.ok("QUIT");
}

#[test]
fn poplib_full_cycle_and_uidl_stability() {
    let mut s = TestServer::started("");
    for i in 0..3 {
        s.deliver("alice@example.test", message(&format!("m{i}")).as_bytes());
    }
    let port = s.pop3.port().to_string();
    let first: serde_json::Value = serde_json::from_str(&python("pop3_cycle.py", &["--port", &port])).unwrap();
    assert_eq!(first["count"], 3);
    // UIDLs are Dovecot-style: UID then UIDVALIDITY, 8 hex digits each, stable across
    // sessions and restarts.
    let mut imap = s.imap_login("alice@example.test");
    let validity: u32 = imap.ok("STATUS INBOX (UIDVALIDITY)").lines[0]
        .split("UIDVALIDITY ")
        .nth(1)
        .unwrap()
        .trim_end_matches(')')
        .parse()
        .unwrap();
    let expected: Vec<String> = (1..=3).map(|uid| format!("{uid} {uid:08X}{validity:08X}")).collect();
    let uidls: Vec<String> =
        first["uidl"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(uidls, expected);
    // Retrieved messages became \Seen (for IMAP users of the same mailbox).
    imap.ok("SELECT INBOX");
    assert!(imap.ok("FETCH 1 FLAGS").lines[0].contains("\\Seen"));
    drop(imap);
    for (i, digest) in first["sha256"].as_array().unwrap().iter().enumerate() {
        let stored = s.mail_show("alice@example.test", "INBOX", i as u32 + 1);
        let out = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(&stored)?;
                c.wait_with_output()
            });
        let sum = String::from_utf8(out.unwrap().stdout).unwrap();
        assert!(sum.starts_with(digest.as_str().unwrap()), "message {} differs", i + 1);
    }
    s.stop();
    s.launch();
    let again: serde_json::Value =
        serde_json::from_str(&python("pop3_cycle.py", &["--port", &s.pop3.port().to_string(), "--delete"])).unwrap();
    assert_eq!(again["uidl"], first["uidl"], "UIDLs survive a restart");
    assert!(s.mail_list("alice@example.test", "INBOX").is_empty(), "QUIT deleted the messages");
}

#[test]
fn a_dropped_session_deletes_nothing_and_quit_deletes_durably() {
    let mut s = TestServer::started("");
    for i in 0..2 {
        s.deliver("alice@example.test", message(&format!("d{i}")).as_bytes());
    }
    let mut p = Pop3::login(&s);
    p.ok("DELE 1");
    assert!(p.cmd("DELE 1").starts_with("-ERR"), "already deleted");
    assert!(p.cmd("RETR 1").starts_with("-ERR"), "deleted messages are gone for the session");
    p.ok("RSET");
    p.ok("DELE 1");
    p.ok("DELE 2");
    drop(p); // no QUIT
    // The maildrop stays locked until the dropped session has ended: the next login gets in
    // only then, and must find both messages.
    let mut p = eventually(std::time::Duration::from_secs(10), "the dropped session to end", || {
        let mut p = Pop3::connect(&s);
        p.ok("USER alice@example.test");
        let pass = p.cmd("PASS secret");
        assert!(pass.starts_with("+OK") || pass.starts_with("-ERR [IN-USE]"), "{pass}");
        pass.starts_with("+OK").then_some(p)
    });
    assert!(p.ok("STAT").starts_with("+OK 2 "), "nothing deleted without QUIT");
    assert_eq!(s.mail_list("alice@example.test", "INBOX").len(), 2, "nothing deleted without QUIT");
    p.ok("DELE 2");
    let bye = p.ok("QUIT");
    assert!(bye.contains("1 messages deleted"), "{bye}");
    // +OK was sent after the expunge was durable: it survives a crash right after.
    s.kill9();
    s.launch();
    let left = s.mail_list("alice@example.test", "INBOX");
    assert_eq!(left.len(), 1);
    assert!(left[0].ends_with("\td0"), "{left:?}");
}

#[test]
fn one_pop3_session_per_mailbox_while_imap_keeps_working() {
    let s = TestServer::started("");
    for i in 0..2 {
        s.deliver("alice@example.test", message(&format!("l{i}")).as_bytes());
    }
    let mut imap = s.imap_login("alice@example.test");
    imap.ok("SELECT INBOX");
    let mut first = Pop3::login(&s);
    let mut second = Pop3::connect(&s);
    second.ok("USER alice@example.test");
    let r = second.cmd("PASS secret");
    assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
    second.ok("QUIT");
    imap.ok("FETCH 1:2 FLAGS");
    first.ok("DELE 1");
    first.ok("QUIT");
    let n = imap.ok("NOOP");
    assert!(n.lines.contains(&"* 1 EXPUNGE".to_string()), "IMAP sees the POP3 deletion: {n:?}");
    // The lock is released at QUIT.
    Pop3::login(&s).ok("QUIT");
}

#[test]
fn bad_input_and_wrong_state() {
    let s = TestServer::started("");
    let mut p = Pop3::connect(&s);
    assert!(p.cmd("STAT").starts_with("-ERR"), "STAT before login");
    assert!(p.cmd("FROB").starts_with("-ERR"));
    assert!(p.cmd("PASS secret").starts_with("-ERR"), "PASS without USER");
    assert!(p.cmd("APOP alice x").starts_with("-ERR"));
    let long = "USER ".to_string() + &"x".repeat(100_000);
    assert!(p.cmd(&long).starts_with("-ERR"));
    p.ok("USER alice@example.test");
    assert!(p.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
    p.ok("USER alice@example.test");
    p.ok("PASS secret");
    assert!(p.cmd("RETR 99").starts_with("-ERR"));
    assert!(p.cmd("RETR x").starts_with("-ERR"));
    assert!(p.cmd("USER bob@example.test").starts_with("-ERR"), "already logged in");
    p.ok("NOOP");
    p.ok("QUIT");
}

#[test]
fn stls_and_auth_plain() {
    let s = TestServer::started("[auth]\nplaintext_on_loopback = false\n");
    let mut p = Pop3::connect(&s);
    p.ok("CAPA");
    let caps = String::from_utf8(p.multiline()).unwrap();
    assert!(caps.contains("STLS") && !caps.contains("USER") && caps.contains("IMPLEMENTATION Tern"), "{caps}");
    assert!(p.cmd("USER alice@example.test").starts_with("-ERR [AUTH]"));
    // STLS with a command injected behind it in plaintext.
    p.c.send(b"STLS\r\nUSER mallory@example.test\r\n");
    assert!(p.c.raw_line().unwrap().starts_with("+OK"));
    let mut t = Pop3Tls { c: p.c.into_tls() };
    assert!(t.cmd("PASS secret").starts_with("-ERR"), "the injected USER must not have been kept");
    t.cmd("CAPA");
    // AUTH PLAIN with an initial response (\0alice@example.test\0secret).
    let mut caps = String::new();
    loop {
        let l = t.c.raw_line().unwrap();
        if l == "." {
            break;
        }
        caps.push_str(&l);
        caps.push('\n');
    }
    assert!(caps.contains("SASL PLAIN") && !caps.contains("STLS"), "{caps}");
    assert!(t.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=").starts_with("+OK"));
    assert!(t.cmd("STAT").starts_with("+OK 0 0"));
    // Implicit TLS on the pop3s port, AUTH with a continuation.
    let stream = std::net::TcpStream::connect(s.pop3s).unwrap();
    let mut t = Pop3Tls { c: Client::from_stream(stream).into_tls() };
    assert!(t.c.raw_line().unwrap().starts_with("+OK"));
    assert_eq!(t.cmd("AUTH PLAIN"), "+ ");
    assert!(t.cmd("AGJvYkBleGFtcGxlLnRlc3QAc2VjcmV0").starts_with("+OK"));
}

/// POP3 offers what IMAP and submission offer, through the one SASL driver: LOGIN,
/// SCRAM-SHA-256 (and -PLUS over TLS 1.3) beside PLAIN, with the same failure accounting.
#[test]
fn auth_offers_every_mechanism_of_the_shared_sasl_driver() {
    let s = TestServer::started("");
    let stream = std::net::TcpStream::connect(s.pop3s).unwrap();
    let mut t = Pop3Tls { c: Client::from_stream(stream).into_tls() };
    assert!(t.c.raw_line().unwrap().starts_with("+OK"));
    assert!(t.cmd("CAPA").starts_with("+OK"));
    let caps = t.multiline();
    assert!(caps.contains("SASL PLAIN LOGIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS\n"), "{caps}");
    assert!(t.cmd("AUTH").starts_with("+OK"));
    assert_eq!(t.multiline(), "PLAIN\nLOGIN\nSCRAM-SHA-256\nSCRAM-SHA-256-PLUS\n");
    assert!(t.cmd("AUTH CRAM-MD5").starts_with("-ERR"));
    // Cancelled, then bad base64, then acting as another user: each an -ERR, the session goes on.
    assert_eq!(t.cmd("AUTH LOGIN"), "+ VXNlcm5hbWU6");
    assert!(t.cmd("*").starts_with("-ERR"));
    assert!(t.cmd("AUTH PLAIN !!!").starts_with("-ERR"));
    // "bob@example.test\0alice@example.test\0secret"
    assert!(t.cmd("AUTH PLAIN Ym9iQGV4YW1wbGUudGVzdABhbGljZUBleGFtcGxlLnRlc3QAc2VjcmV0").starts_with("-ERR [AUTH]"));
    assert!(t.cmd("QUIT").starts_with("+OK"));

    s.deliver("alice@example.test", message("sasl").as_bytes());
    let port = s.pop3s.port().to_string();
    for mechanism in ["SCRAM-SHA-256", "LOGIN"] {
        let (ok, out, err) = python_result("pop3_sasl.py", &[&port, "alice@example.test", "secret", mechanism]);
        assert!(ok && out.starts_with("ok (1,"), "{mechanism}: {out} {err}");
        let (ok, out, _) = python_result("pop3_sasl.py", &[&port, "alice@example.test", "wrong", mechanism]);
        assert!(!ok && out.contains("-ERR [AUTH]"), "{mechanism} with a wrong password: {out}");
    }
    // An unknown user runs SCRAM to its end and fails there, like a wrong password.
    let (ok, out, _) = python_result("pop3_sasl.py", &[&port, "nobody@example.test", "x", "SCRAM-SHA-256"]);
    assert!(!ok && out.contains("-ERR [AUTH]"), "{out}");
}

struct Pop3Tls {
    c: Client<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>>,
}

impl Pop3Tls {
    fn cmd(&mut self, line: &str) -> String {
        self.c.send(format!("{line}\r\n").as_bytes());
        self.c.raw_line().expect("connection closed")
    }

    /// The lines of a multi-line answer up to the ".", each ending in "\n".
    fn multiline(&mut self) -> String {
        let mut out = String::new();
        loop {
            let line = self.c.raw_line().expect("connection closed");
            if line == "." {
                return out;
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
}

#[test]
fn fetchmail_into_an_mbox() {
    assert!(have("fetchmail"), "fetchmail is required; the test command installs it");
    let s = TestServer::started("");
    for i in 0..3 {
        s.deliver("alice@example.test", message(&format!("fm{i}")).as_bytes());
    }
    let mbox = s.dir.path().join("fetched.mbox");
    let rc = s.dir.path().join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no syslog\npoll 127.0.0.1 port {} protocol pop3 uidl no envelope\n  user \"alice@example.test\" there with password \"secret\" is \"{}\" here\n  sslproto \"\" no keep fetchall\n  mda \"/bin/sh -c 'cat >> {}; echo >> {}'\"\n",
            s.pop3.port(),
            whoami(),
            mbox.display(),
            mbox.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&rc).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&rc, perms).unwrap();
    let out = std::process::Command::new("fetchmail")
        .arg("-f")
        .arg(&rc)
        .arg("--nodetach")
        .env("HOME", s.dir.path())
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "fetchmail failed:\n{log}");
    let text = std::fs::read_to_string(&mbox).unwrap();
    for i in 0..3 {
        assert!(text.contains(&format!("Subject: fm{i}")), "{text}");
    }
    assert!(s.mail_list("alice@example.test", "INBOX").is_empty(), "fetchmail deleted what it fetched");
}

fn whoami() -> String {
    String::from_utf8(std::process::Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_string()
}

#[test]
fn mpop_delivers_to_an_mbox() {
    assert!(have("mpop"), "mpop is required; the test command installs it");
    let s = TestServer::started("");
    for i in 0..2 {
        s.deliver("alice@example.test", message(&format!("mp{i}")).as_bytes());
    }
    let mbox = s.dir.path().join("mpop.mbox");
    std::fs::write(&mbox, "").unwrap();
    let out = std::process::Command::new("mpop")
        .args([
            "--host=127.0.0.1",
            &format!("--port={}", s.pop3.port()),
            "--auth=user",
            "--user=alice@example.test",
            "--passwordeval=echo secret",
            "--tls=off",
            &format!("--delivery=mbox,{}", mbox.display()),
            "--keep=on",
            "--only-new=off",
        ])
        .env("HOME", s.dir.path())
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "mpop failed:\n{log}");
    let text = std::fs::read_to_string(&mbox).unwrap();
    assert!(text.contains("Subject: mp0") && text.contains("Subject: mp1"), "{text}");
    assert!(text.contains("\n.leading dot\n") || text.contains("\n.leading dot\r\n"), "dot-unstuffed once: {text}");
    assert_eq!(s.mail_list("alice@example.test", "INBOX").len(), 2, "--keep=on keeps them");
}

/// Issue 13 (one way in for every protocol): POP3 skipped the ban at connect and had no
/// connection gauge. An address banned for failed IMAP logins is now refused by POP3 at once,
/// in POP3's words, on 110 and (after the handshake) on 995; sessions are counted.
#[test]
fn a_banned_address_is_refused_at_connect_and_sessions_are_counted() {
    let s = TestServer::started("[limits]\nexempt = []\nauth_failures_before_ban = 3\nban_seconds = 60\n");
    // A session in progress shows in the gauge.
    let mut c = Client::connect(s.pop3);
    assert!(c.read_line().unwrap().starts_with("+OK"));
    let (_, metrics) = s.http_get("/metrics");
    assert!(metrics.contains("tern_pop3_connections_active{service=\"pop3\"} 1"), "{metrics}");
    drop(c);
    for i in 0..3 {
        let mut imap = s.imap();
        let done = imap.run(&format!("LOGIN alice@example.test wrong{i}")).done;
        assert!(done.starts_with("NO"), "{done}");
    }
    let mut c = Client::connect(s.pop3);
    assert_eq!(c.read_line().unwrap(), "-ERR [AUTH] Too many failed logins, try later", "on 110");
    let mut tls = Client::connect(s.pop3s).into_tls();
    assert_eq!(tls.read_line().unwrap(), "-ERR [AUTH] Too many failed logins, try later", "on 995");
    let (_, metrics) = s.http_get("/metrics");
    assert!(metrics.contains("tern_pop3_connections_total{service=\"pop3s\"}"), "{metrics}");
}
