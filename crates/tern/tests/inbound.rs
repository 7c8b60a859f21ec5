//! Inbound trust on port 25: SPF, DKIM (signed by dkimpy), DMARC, ARC, Authentication-Results,
//! and the anti-abuse checks, against a stub DNS on loopback.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Checks apply to loopback in these tests (it is trusted by default).
fn inbound_config(dns_port: u16, extra: &str) -> String {
    format!(
        "[dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\ntimeout_seconds = 2\n[limits]\nexempt = []\n[inbound]\ngreet_pause_ms = 0\n{extra}"
    )
}

fn tool(args: &[&str]) -> String {
    let (ok, out, err) = python_result("dkim_tool.py", args);
    assert!(ok, "dkim_tool.py {args:?}: {out}{err}");
    out.trim().to_string()
}

struct Keys {
    dir: tempfile::TempDir,
    rsa_txt: String,
    ed_txt: String,
    arc_txt: String,
}

impl Keys {
    fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
        let rsa_txt = tool(&["keygen", "rsa", &p("rsa.key")]);
        let ed_txt = tool(&["keygen", "ed25519", &p("ed.key")]);
        let arc_txt = tool(&["keygen", "rsa", &p("arc.key")]);
        Keys { dir, rsa_txt, ed_txt, arc_txt }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// Signs `text` (CRLF) as signer.test; returns the signed message.
    fn sign(&self, text: &str, alg: &str) -> Vec<u8> {
        let src = self.path("in.eml");
        let dst = self.path("out.eml");
        std::fs::write(&src, text).unwrap();
        let (key, sel) = if alg == "ed25519" { ("ed.key", "sel2") } else { ("rsa.key", "sel1") };
        tool(&["sign", &self.path(key), sel, "signer.test", alg, &src, &dst]);
        std::fs::read(&dst).unwrap()
    }
}

fn message(from: &str, subject: &str, extra_headers: &str) -> String {
    format!(
        "{extra_headers}From: {from}\r\nTo: alice@example.test\r\nSubject: {subject}\r\nDate: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{subject}@signer.test>\r\n\r\nHello, this is {subject}.\r\n"
    )
}

/// Sends raw message bytes over port 25; returns the final reply.
fn send(server: &TestServer, from: &str, raw: &[u8]) -> Reply {
    let mut c = server.smtp();
    c.greeting();
    c.expect("EHLO mail.signer.test", 250);
    c.expect(&format!("MAIL FROM:<{from}>"), 250);
    c.expect("RCPT TO:<alice@example.test>", 250);
    c.expect("DATA", 354);
    let mut data = Vec::new();
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    data.extend_from_slice(b".\r\n");
    c.send(&data);
    let r = c.reply();
    c.cmd("QUIT");
    r
}

fn records(keys: &Keys) -> Vec<(String, String, String)> {
    let r = |n: &str, t: &str, v: &str| (n.to_string(), t.to_string(), v.to_string());
    let mut v = vec![
        r("sel1._domainkey.signer.test", "TXT", &keys.rsa_txt),
        r("sel2._domainkey.signer.test", "TXT", &keys.ed_txt),
        r("arc._domainkey.fwd.test", "TXT", &keys.arc_txt),
        r("signer.test", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
        r("_dmarc.signer.test", "TXT", "v=DMARC1; p=reject"),
        r("quar.test", "TXT", "v=spf1 -all"),
        r("_dmarc.quar.test", "TXT", "v=DMARC1; p=quarantine"),
        r("mail.signer.test", "A", "127.0.0.1"),
        // SPF cases.
        r("pass.test", "TXT", "v=spf1 ip4:127.0.0.0/8 -all"),
        r("fail.test", "TXT", "v=spf1 -all"),
        r("soft.test", "TXT", "v=spf1 ~all"),
        r("neutral.test", "TXT", "v=spf1 ?all"),
        r("none.test", "A", "192.0.2.1"),
        r("perm.test", "TXT", "v=spf1 frobnicate:x -all"),
        r("inc.test", "TXT", "v=spf1 include:pass.test -all"),
        r("red.test", "TXT", "v=spf1 redirect=pass.test"),
        r("mac.test", "TXT", "v=spf1 exists:%{i}.ip.mac.test -all"),
        r("127.0.0.1.ip.mac.test", "A", "127.0.0.2"),
        r("servfail.test", "TXT", "v=spf1 +all"),
        // A domain that asks for aggregate reports, to a verified and an unverified address.
        r("rep.test", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
        r("_dmarc.rep.test", "TXT", "v=DMARC1; p=none; rua=mailto:bob@example.test,mailto:x@unverified.test"),
        r("rep.test._report._dmarc.example.test", "TXT", "v=DMARC1"),
        // DNS blocklist.
        r("1.0.0.127.bl.test", "A", "127.0.0.2"),
        // DMARC: several records at one name, a record without p, np for a name that does
        // not exist, t=y, and a public suffix domain (RFC 9989's psd=y).
        r("_dmarc.two.test", "TXT", "v=DMARC1; p=reject"),
        r("_dmarc.two.test", "TXT", "v=DMARC1; p=none"),
        r("_dmarc.nop.test", "TXT", "v=DMARC1; adkim=s"),
        r("_dmarc.np.test", "TXT", "v=DMARC1; p=none; sp=none; np=reject"),
        r("sub.np.test", "A", "192.0.2.1"),
        r("_dmarc.testmode.test", "TXT", "v=DMARC1; p=reject; t=y"),
        r("_dmarc.bank.test", "TXT", "v=DMARC1; p=reject; psd=y"),
        r("_dmarc.giant.bank.test", "TXT", "v=DMARC1; p=reject"),
        r("mega.bank.test", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
    ];
    // A chain of includes longer than the 10-lookup limit (RFC 7208 §4.6.4).
    for i in 0..12 {
        v.push(r(&format!("l{i}.test"), "TXT", &format!("v=spf1 include:l{}.test -all", i + 1)));
    }
    v.push(r("l12.test", "TXT", "v=spf1 +all"));
    v
}

fn start_world(keys: &Keys) -> World {
    let owned = records(keys);
    let refs: Vec<(&str, &str, &str)> = owned.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    World::start(&refs, None, serde_json::json!({}))
}

fn stored(server: &TestServer, mailbox: &str) -> Vec<String> {
    let n = server.mail_list("alice@example.test", mailbox).len();
    (1..=n as u32)
        .filter_map(|uid| {
            let out = server.cli(&["mail", "show", "alice@example.test", mailbox, &uid.to_string()]);
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .collect()
}

#[test]
fn dkim_spf_and_dmarc_results_are_recorded_and_enforced() {
    let keys = Keys::new();
    let world = start_world(&keys);
    let server = TestServer::started(&inbound_config(world.dns_port, "iprev = false\n"));
    let file = |name: &str, bytes: &[u8]| {
        let p = keys.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };

    // dkimpy's RSA and Ed25519 signatures verify; an altered body does not.
    let rsa = keys.sign(&message("a@signer.test", "rsa", ""), "rsa");
    let ed = keys.sign(&message("a@signer.test", "ed", ""), "ed25519");
    let altered = String::from_utf8(rsa.clone()).unwrap().replace("Hello, this is rsa.", "Hello, this is not rsa.");
    let out = server.ok(&["check", "dkim", &file("rsa.eml", &rsa)]);
    assert!(out.starts_with("pass d=signer.test s=sel1") && out.ends_with("pass\n"), "{out}");
    let out = server.ok(&["check", "dkim", &file("ed.eml", &ed)]);
    assert!(out.starts_with("pass d=signer.test s=sel2") && out.contains("ed25519"), "{out}");
    let out = server.ok(&["check", "dkim", &file("altered.eml", altered.as_bytes())]);
    assert!(out.starts_with("fail d=signer.test") && out.ends_with("fail\n"), "{out}");
    let out = server.ok(&["check", "dkim", &file("unsigned.eml", message("a@signer.test", "none", "").as_bytes())]);
    assert_eq!(out, "none\n");

    // Over SMTP: signed and SPF-aligned mail passes everything, with our results on top and a
    // forged result claiming our name removed.
    let forged = format!("Authentication-Results: {HOSTNAME}; dkim=pass header.d=forged.example\r\n");
    let signed = keys.sign(&message("a@signer.test", "signed", &forged), "rsa");
    let r = send(&server, "a@signer.test", &signed);
    assert_eq!(r.code, 250, "{r:?}\n{}", server.log());
    let inbox = stored(&server, "INBOX");
    let m = &inbox[0];
    assert!(m.contains(&format!("Authentication-Results: {HOSTNAME};")), "{m}");
    assert!(m.contains("spf=pass smtp.mailfrom=a@signer.test"), "{m}");
    assert!(m.contains("dkim=pass header.d=signer.test header.s=sel1"), "{m}");
    assert!(m.contains("dmarc=pass") && m.contains("header.from=signer.test"), "{m}");
    // No ARC chain: said as arc=none (RFC 8601 §2.7.1), not left out.
    assert!(m.contains("arc=none"), "{m}");
    assert!(!m.contains("forged.example"), "the forged result is gone: {m}");
    assert_eq!(m.matches("Authentication-Results:").count(), 1, "{m}");

    // DMARC p=reject: altered content from a server SPF does not allow for the domain.
    let r = send(&server, "bounce@other.test", altered.as_bytes());
    assert_eq!((r.code, r.text().starts_with("5.7.1")), (550, true), "{r:?}");
    // p=quarantine: delivered, to Junk.
    let r = send(&server, "x@quar.test", message("x@quar.test", "quarantined", "").as_bytes());
    assert_eq!(r.code, 250, "{r:?}");
    let junk = stored(&server, "Junk");
    assert_eq!(junk.len(), 1, "quarantined to Junk");
    assert!(junk[0].contains("dmarc=fail (p=quarantine dis=quarantine)"), "{}", junk[0]);
    // Two From: fields are refused (RFC 7489 §6.6.1).
    let two = message("a@signer.test", "twofrom", "From: b@elsewhere.test\r\n");
    let r = send(&server, "a@signer.test", two.as_bytes());
    assert_eq!(r.code, 550, "{r:?}");
    // tern check dmarc says what the server did.
    let path = file("quar.eml", message("x@quar.test", "q", "").as_bytes());
    let out = server.ok(&[
        "check",
        "dmarc",
        &path,
        "--ip",
        "127.0.0.1",
        "--helo",
        "mail.quar.test",
        "--sender",
        "x@quar.test",
    ]);
    assert!(out.starts_with("fail\n") && out.contains("policy: quarantine"), "{out}");
    let (_, metrics) = server.http_get("/metrics");
    assert!(metrics.contains("tern_auth_results_total{method=\"dmarc\",result=\"pass\"}"), "{metrics}");
}

/// The same mail judged by RFC 7489 and by RFC 9989 (`inbound.dmarc_specification`).
#[test]
fn dmarc_follows_the_configured_specification() {
    let keys = Keys::new();
    let world = start_world(&keys);
    let rfc7489 = TestServer::started(&inbound_config(world.dns_port, "iprev = false\n"));
    let rfc9989 =
        TestServer::started(&inbound_config(world.dns_port, "iprev = false\ndmarc_specification = \"rfc9989\"\n"));
    // (From, MAIL FROM, reply and Authentication-Results under RFC 7489, then RFC 9989).
    let cases = [
        // Several records at one name, or one without p and rua: no DMARC processing
        // (RFC 7489 §6.6.3 steps 5 and 6), not permerror.
        ("x@two.test", "b@other.test", (250, "dmarc=none"), (250, "dmarc=none")),
        ("x@nop.test", "b@other.test", (250, "dmarc=none"), (250, "dmarc=none")),
        // np=reject for a subdomain that does not exist; sp=none for one that does.
        ("x@ghost.np.test", "b@other.test", (250, "dmarc=fail (p=none dis=none)"), (550, "")),
        ("x@sub.np.test", "b@other.test", (250, "dmarc=fail (p=none dis=none)"), (250, "dmarc=fail (p=none dis=none)")),
        // t=y: one level below reject (RFC 9989); RFC 7489 knows no t.
        ("x@testmode.test", "b@other.test", (550, ""), (250, "dmarc=fail (p=reject dis=quarantine t=y)")),
        // bank.test is a public suffix domain (psd=y): giant.bank.test and mega.bank.test
        // are different organizations for the tree walk, one for the Public Suffix List.
        ("a@giant.bank.test", "b@mega.bank.test", (250, "dmarc=pass"), (550, "")),
    ];
    for (n, (from, sender, want7489, want9989)) in cases.iter().enumerate() {
        for (server, spec, (code, header)) in [(&rfc7489, "rfc7489", want7489), (&rfc9989, "rfc9989", want9989)] {
            let before = stored(server, "INBOX").len() + stored(server, "Junk").len();
            let r = send(server, sender, message(from, &format!("case{n}"), "").as_bytes());
            assert_eq!(r.code, *code, "{spec}: {from} from {sender}: {r:?}");
            if *code == 550 {
                assert!(r.text().starts_with("5.7.1") && r.text().contains("DMARC"), "{spec}: {r:?}");
                continue;
            }
            let mut all = stored(server, "INBOX");
            all.extend(stored(server, "Junk"));
            assert_eq!(all.len(), before + 1, "{spec}: {from}");
            let m = all.iter().find(|m| m.contains(&format!("Subject: case{n}\r\n"))).expect("delivered");
            assert!(m.contains(header), "{spec}: {from}: want {header}:\n{m}");
        }
    }
    // t=y went to Junk (quarantine), not to the inbox.
    assert!(stored(&rfc9989, "Junk").iter().any(|m| m.contains("Subject: case4\r\n")));
    // tern check dmarc says which specification and what it found.
    let path = keys.path("np.eml");
    std::fs::write(&path, message("x@ghost.np.test", "np", "")).unwrap();
    let args = ["check", "dmarc", &path, "--ip", "127.0.0.1", "--helo", "mail.other.test", "--sender", "b@other.test"];
    let out = rfc9989.ok(&args);
    assert!(out.starts_with("fail\n") && out.contains("specification: treewalk"), "{out}");
    assert!(out.contains("record: _dmarc.np.test p=none sp=none np=reject") && out.contains("policy: reject"), "{out}");
    let out = rfc7489.ok(&args);
    assert!(out.contains("specification: psl") && out.contains("policy: none"), "{out}");
}

#[test]
fn spf_results_follow_rfc_7208() {
    let keys = Keys::new();
    let world = start_world(&keys);
    let server = TestServer::started(&inbound_config(world.dns_port, ""));
    let spf = |domain: &str| {
        let out = server.ok(&[
            "check",
            "spf",
            "--ip",
            "127.0.0.1",
            "--helo",
            "mail.signer.test",
            "--sender",
            &format!("x@{domain}"),
        ]);
        out.lines().next().unwrap_or_default().to_string()
    };
    for (domain, want) in [
        ("pass.test", "pass"),
        ("fail.test", "fail"),
        ("soft.test", "softfail"),
        ("neutral.test", "neutral"),
        ("none.test", "none"),
        ("perm.test", "permerror"),
        ("servfail.test", "temperror"),
        ("inc.test", "pass"),
        ("red.test", "pass"),
        ("mac.test", "pass"),
        ("l0.test", "permerror"),
    ] {
        assert_eq!(spf(domain), want, "SPF of {domain}");
    }
    let helo = server.ok(&["check", "spf", "--ip", "192.0.2.9", "--helo", "pass.test"]);
    assert!(helo.starts_with("fail\n") && helo.contains("identity: helo"), "{helo}");
}

#[test]
fn an_arc_chain_from_a_forwarder_is_validated() {
    let keys = Keys::new();
    let world = start_world(&keys);
    let server = TestServer::started(&inbound_config(world.dns_port, "iprev = false\n"));
    // The forwarder recorded its results and sealed the message.
    let src = keys.path("fwd-in.eml");
    let dst = keys.path("fwd-out.eml");
    let original = message(
        "a@signer.test",
        "forwarded",
        "Authentication-Results: fwd.test; spf=pass smtp.mailfrom=a@signer.test\r\n",
    );
    std::fs::write(&src, &original).unwrap();
    tool(&["arc", &keys.path("arc.key"), "arc", "fwd.test", "fwd.test", &src, &dst]);
    let sealed = std::fs::read(&dst).unwrap();
    assert!(String::from_utf8_lossy(&sealed).contains("ARC-Seal:"));
    let r = send(&server, "a@signer.test", &sealed);
    assert_eq!(r.code, 250, "{r:?}");
    let m = &stored(&server, "INBOX")[0];
    assert!(m.contains("arc=pass"), "{m}");
}

#[test]
fn abusive_clients_are_turned_away_and_bans_expire() {
    let world = World::start(&[("1.0.0.127.bl.test", "A", "127.0.0.2")], None, serde_json::json!({}));
    // Early talkers.
    let server = TestServer::started(
        &inbound_config(world.dns_port, "greet_pause_ms = 300\nverify = false\n").replace("greet_pause_ms = 0\n", ""),
    );
    let mut c = server.smtp();
    c.send(b"EHLO impatient.test\r\n");
    let r = c.reply();
    assert_eq!((r.code, r.text().starts_with("5.5.1")), (554, true), "{r:?}");
    let mut c = server.smtp();
    c.greeting();
    c.expect("EHLO patient.test", 250);
    drop(server);

    // DNS blocklist, reject action.
    let server = TestServer::started(&inbound_config(world.dns_port, "verify = false\ndnsbl_zones = [\"bl.test\"]\n"));
    let mut c = server.smtp();
    let r = c.reply();
    assert_eq!(r.code, 554, "{r:?}");
    assert!(r.text().contains("bl.test"), "{r:?}");
    drop(server);

    // Directory harvesting gets the address banned, for limits.ban_seconds (that the ban
    // ends is tested on a manual clock: tern-guard's delays_grow_then_ban_then_expire).
    let config = inbound_config(world.dns_port, "verify = false\nmax_unknown_recipients_per_ip = 3\n")
        .replace("exempt = []\n", "exempt = []\nban_seconds = 3600\n");
    let server = TestServer::started(&config);
    let mut c = server.smtp();
    c.hello();
    c.expect("MAIL FROM:<x@harvester.test>", 250);
    for i in 0..3 {
        assert_eq!(c.cmd(&format!("RCPT TO:<nobody{i}@example.test>")).code, 550);
    }
    let r = c.cmd("RCPT TO:<nobody9@example.test>");
    assert_eq!(r.code, 421, "{r:?}");
    let mut c = server.smtp();
    let r = c.reply();
    assert_eq!((r.code, r.text().contains("blocked")), (421, true), "banned: {r:?}");
    let imap = std::net::TcpStream::connect(server.imap).unwrap();
    let mut imap = Client::from_stream(imap);
    assert!(imap.raw_line().unwrap_or_default().starts_with("* BYE"), "the ban covers IMAP too");
    drop(server);

    // Connection rate and greylisting.
    let server = TestServer::started(&inbound_config(
        world.dns_port,
        "verify = false\nmax_connections_per_minute_per_ip = 3\ngreylisting = true\ngreylist_delay_seconds = 1\n",
    ));
    let mut c = server.smtp();
    c.hello();
    c.expect("MAIL FROM:<x@sender.test>", 250);
    let r = c.cmd("RCPT TO:<alice@example.test>");
    assert_eq!((r.code, r.text().starts_with("4.7.1")), (451, true), "greylisted: {r:?}");
    std::thread::sleep(Duration::from_millis(1100));
    c.expect("RCPT TO:<alice@example.test>", 250);
    c.expect("QUIT", 221);
    let _second = server.smtp();
    let mut third = server.smtp();
    assert_eq!(third.reply().code, 220);
    let mut fourth = server.smtp();
    let r = fourth.reply();
    assert_eq!((r.code, r.text().contains("Too many connections")), (421, true), "{r:?}");
    let _ = Instant::now();
}

#[test]
fn dmarc_aggregate_reports_go_to_verified_destinations() {
    let keys = Keys::new();
    let world = start_world(&keys);
    let server =
        TestServer::started(&inbound_config(world.dns_port, "iprev = false\ndmarc_report_interval_seconds = 2\n"));
    for i in 0..3 {
        let r = send(&server, "a@rep.test", message("a@rep.test", &format!("report{i}"), "").as_bytes());
        assert_eq!(r.code, 250, "{r:?}");
    }
    let line = eventually(Duration::from_secs(20), "a DMARC report", || {
        server.mail_list("bob@example.test", "INBOX").into_iter().find(|l| l.contains("Report Domain: rep.test"))
    });
    let uid: u32 = line.split('\t').next().unwrap().parse().unwrap();
    let report = String::from_utf8(server.mail_show("bob@example.test", "INBOX", uid)).unwrap();
    assert!(report.contains("application/gzip") && report.contains(".xml.gz"), "{report}");
    assert!(report.contains(&format!("Submitter: {HOSTNAME}")), "{report}");
    eventually(Duration::from_secs(10), "the unverified destination skipped", || {
        server.log().contains("not authorized").then_some(())
    });
}

#[test]
fn forwarded_mail_is_arc_sealed_by_the_alias_domain() {
    let keys = Keys::new();
    let sink_port = free_port();
    let mut recs = records(&keys);
    recs.push(("remote.test".into(), "MX".into(), "10 mx.remote.test.".into()));
    recs.push(("mx.remote.test".into(), "A".into(), "127.0.0.1".into()));
    let refs: Vec<(&str, &str, &str)> = recs.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    let world = World::start(&refs, Some(sink_port), serde_json::json!({}));
    let config = inbound_config(world.dns_port, "iprev = false\n")
        + &format!("[delivery]\nsmtp_port = {sink_port}\nretry_initial_seconds = 1\n");
    let mut server = TestServer::new(&config);
    server.ok(&["domain", "add", "example.test"]);
    server.ok_stdin(&["user", "add", "alice@example.test", "--password-stdin"], "secret\n");
    server.ok(&["alias", "add", "fwd@example.test", "zed@remote.test"]);
    server.ok(&["dkim", "generate", "example.test"]);
    server.launch();
    let signed = keys.sign(&message("a@signer.test", "forward-me", ""), "rsa");
    let mut c = server.smtp();
    c.greeting();
    c.expect("EHLO mail.signer.test", 250);
    c.expect("MAIL FROM:<a@signer.test>", 250);
    c.expect("RCPT TO:<fwd@example.test>", 250);
    c.expect("DATA", 354);
    let mut data = signed.clone();
    data.extend_from_slice(b".\r\n");
    c.send(&data);
    assert_eq!(c.reply().code, 250);
    let got = world.wait_received(1, Duration::from_secs(30));
    let raw = &got[0].1;
    let text = String::from_utf8_lossy(raw);
    assert!(text.starts_with("ARC-Seal: i=1;") || text.contains("\r\nARC-Seal: i=1;"), "{text}");
    assert!(text.contains("d=example.test"), "{text}");
    // dkimpy validates the chain with the keys published for example.test.
    let file = keys.path("forwarded.eml");
    std::fs::write(&file, raw).unwrap();
    let dns = server.ok(&["dns", "example.test"]);
    let mut args: Vec<String> = vec!["arc-verify".into(), file];
    for l in dns.lines().filter(|l| l.contains("._domainkey.")) {
        let name = l.split_whitespace().next().unwrap().trim_end_matches('.').to_string();
        let value: String = l.split('"').skip(1).step_by(2).collect();
        args.push(format!("{name}={value}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tool(&args);
    assert!(out.starts_with("pass"), "ARC verification by dkimpy: {out}\n{text}");
}
