//! Outbound delivery through the queue, against a stub DNS and remote MX hosts on loopback
//! (`tests/clients/mailworld.py`: dnslib + aiosmtpd; and a second Tern).

mod common;

use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

/// Config for a Tern whose delivery uses the world's DNS and the sink's port.
fn delivery_config(dns_port: u16, sink_port: u16, extra: &str) -> String {
    format!(
        "[dns]\nnameservers = [\"127.0.0.1:{}\"]\ntimeout_seconds = 2\n[delivery]\nsmtp_port = {}\nretry_initial_seconds = 1\nretry_max_seconds = 2\nconnect_timeout_seconds = 3\ndelay_notice_seconds = 0\n{extra}",
        dns_port, sink_port
    )
}

/// The usual remote world: remote.test and other.test both have their MX at the sink.
fn remote_records() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("remote.test", "MX", "10 mx.remote.test."),
        ("mx.remote.test", "A", "127.0.0.1"),
        ("other.test", "MX", "20 mx.other.test."),
        ("mx.other.test", "A", "127.0.0.1"),
        // No MX: the domain's own address is used (implicit MX).
        ("implicit.test", "A", "127.0.0.1"),
        ("nullmx.test", "MX", "0 ."),
        // An MX whose only address has nothing listening.
        ("down.test", "MX", "10 mx.down.test."),
        ("mx.down.test", "AAAA", "::1"),
    ]
}

fn submit(server: &TestServer, from: &str, to: &[&str], text: &str) {
    submit_with(server, from, to, text, &[]);
}

fn submit_with(server: &TestServer, from: &str, to: &[&str], text: &str, extra: &[&str]) {
    let path = server.dir.path().join(format!("msg-{}.eml", rand_suffix()));
    std::fs::write(&path, text).unwrap();
    let port = server.submission.port().to_string();
    let mut args = vec!["--port", &port, "--starttls", "--user", "alice@example.test", "--password", "secret"];
    args.extend(extra);
    args.extend(["--from", from, "--message", path.to_str().unwrap()]);
    for t in to {
        args.extend(["--to", t]);
    }
    let (ok, out, err) = python_result("submit.py", &args);
    assert!(ok, "submission failed: {out}{err}\n{}", server.log());
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn queue_len(server: &TestServer) -> usize {
    let out = server.ok(&["queue", "list"]);
    out.lines().last().and_then(|l| l.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(usize::MAX)
}

fn dsn_messages(server: &TestServer, user: &str) -> Vec<String> {
    server
        .mail_list(user, "INBOX")
        .iter()
        .filter(|l| l.contains("Undelivered Mail") || l.contains("Delayed Mail") || l.contains("Delivery Report"))
        .cloned()
        .collect()
}

/// The whole message of a DSN, from its `dsn_messages` line.
fn dsn_text(server: &TestServer, user: &str, line: &str) -> String {
    let uid = line.split('\t').next().unwrap().parse().unwrap();
    String::from_utf8_lossy(&server.mail_show(user, "INBOX", uid)).into_owned()
}

/// The queue id of the entry that holds `rcpt`.
fn queued_id(server: &TestServer, rcpt: &str) -> String {
    let list = server.ok(&["queue", "list"]);
    let line = list.lines().find(|l| l.contains(rcpt)).expect("still queued");
    line.split('\t').next().unwrap().to_string()
}

/// `tern queue show ID` once the entry has had `attempts` attempts.
fn show_after_attempts(server: &TestServer, id: &str, attempts: u32) -> String {
    let wanted = format!("attempts={attempts}");
    eventually(WAIT, "an attempt", || {
        let show = server.ok(&["queue", "show", id]);
        show.contains(&wanted).then_some(show)
    })
}

/// The DKIM TXT records `tern dns` prints, as `name=value` arguments for dkim_verify.py.
fn dkim_records(server: &TestServer, domain: &str) -> Vec<String> {
    server
        .ok(&["dns", domain])
        .lines()
        .filter(|l| l.contains("._domainkey."))
        .map(|l| {
            let name = l.split_whitespace().next().unwrap().trim_end_matches('.').to_string();
            let value: String = l.split('"').skip(1).step_by(2).collect();
            format!("{name}={value}")
        })
        .collect()
}

#[test]
fn submission_delivers_locally_and_to_several_domains_signed_with_dkim() {
    let sink_port = free_port();
    let world = World::start(&remote_records(), Some(sink_port), serde_json::json!({}));
    let mut server = TestServer::new(&delivery_config(world.dns_port, world.sink_port, ""));
    server.ok(&["domain", "add", "example.test"]);
    server.ok_stdin(&["user", "add", "alice@example.test", "--password-stdin"], "secret\n");
    server.ok_stdin(&["user", "add", "bob@example.test", "--password-stdin"], "secret\n");
    let generated = server.ok(&["dkim", "generate", "example.test"]);
    assert!(generated.contains("k=ed25519") && generated.contains("k=rsa"), "{generated}");
    server.launch();

    // The body ends in whitespace-only lines: the case mail-auth 0.13 canonicalizes wrongly.
    let text = "From: Alice <alice@example.test>\r\nTo: bob@remote.test, carol@other.test\r\nCc: bob@example.test\r\nSubject: to the world\r\n\r\nHello world.\r\n<p>bye</p>\r\n    \r\n\t\r\n";
    submit(
        &server,
        "alice@example.test",
        &["bob@remote.test", "carol@other.test", "bob@example.test", "dave@implicit.test"],
        text,
    );

    // Local copy at once.
    assert_eq!(server.mail_list("bob@example.test", "INBOX").len(), 1);
    // One transaction per destination domain.
    let got = world.wait_received(3, WAIT);
    let mut rcpts: Vec<String> = got
        .iter()
        .flat_map(|(m, _)| m["rcpt_tos"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()))
        .collect();
    rcpts.sort();
    assert_eq!(rcpts, vec!["bob@remote.test", "carol@other.test", "dave@implicit.test"]);
    let records = dkim_records(&server, "example.test");
    assert_eq!(records.len(), 2, "{records:?}");
    for (meta, raw) in &got {
        assert_eq!(meta["mail_from"], "alice@example.test");
        assert_eq!(meta["tls"], true, "STARTTLS used when offered: {meta}");
        assert_eq!(meta["helo"], HOSTNAME);
        let text = String::from_utf8_lossy(raw);
        assert!(!text.contains("Return-Path:"), "no Return-Path leaves the server: {text}");
        assert!(text.starts_with("DKIM-Signature:"), "{text}");
        assert!(text.contains("Message-ID:") && text.contains("Date:"));
        // An independent verifier (dkimpy) checks both signatures.
        let file = world.dir.path().join("verify.eml");
        std::fs::write(&file, raw).unwrap();
        let mut args = vec![file.to_str().unwrap().to_string()];
        args.extend(records.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = python_result("dkim_verify.py", &args);
        if !ok {
            let _ = std::fs::write("/tmp/dkimfail.eml", raw);
            let _ = std::fs::write("/tmp/dkimfail.txt", records.join("\n"));
        }
        assert!(ok, "DKIM verification failed: {out}{err}\n{text}");
        assert_eq!(out.lines().filter(|l| l.starts_with("ok")).count(), 2, "{out}");
    }
    eventually(WAIT, "an empty queue", || (queue_len(&server) == 0).then_some(()));
    let (_, metrics) = server.http_get("/metrics");
    assert!(metrics.contains("tern_delivery_recipients_total{result=\"delivered\"} 3"), "{metrics}");
}

/// RFC 6376 §5.3 and RFC 6152: an 8-bit message is re-encoded before it is signed, so a
/// receiver without 8BITMIME gets it 7-bit, with a valid signature and the same text.
#[test]
fn eight_bit_mail_reaches_a_seven_bit_receiver_with_its_signature_intact() {
    let sink_port = free_port();
    let world = World::start(&remote_records(), Some(sink_port), serde_json::json!({"sink_no_8bitmime": true}));
    let mut server = TestServer::new(&delivery_config(world.dns_port, world.sink_port, ""));
    server.ok(&["domain", "add", "example.test"]);
    server.ok_stdin(&["user", "add", "alice@example.test", "--password-stdin"], "secret\n");
    server.ok_stdin(&["user", "add", "bob@example.test", "--password-stdin"], "secret\n");
    server.ok(&["dkim", "generate", "example.test"]);
    server.launch();

    let text = concat!(
        "From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n",
        "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n",
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        "Grüße aus Köln = 100 € \r\n.dot line\r\n",
        "--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        "<p>Grüße</p>\r\n--b1--\r\n"
    );
    submit_with(&server, "alice@example.test", &["bob@remote.test", "bob@example.test"], text, &["--body-8bitmime"]);

    let got = world.wait_received(1, WAIT);
    let (meta, raw) = &got[0];
    let options = meta["mail_options"].to_string();
    assert!(!options.contains("8BITMIME"), "no BODY=8BITMIME to a server that lacks it: {options}");
    assert!(raw.is_ascii(), "{}", String::from_utf8_lossy(raw));
    let sent = String::from_utf8_lossy(raw);
    assert!(sent.contains("Content-Transfer-Encoding: quoted-printable"), "{sent}");
    assert!(sent.contains("Gr=C3=BC=C3=9Fe aus K=C3=B6ln =3D 100 =E2=82=AC=20\r\n"), "{sent}");
    // Signed after the conversion: dkimpy verifies both signatures.
    let file = world.dir.path().join("verify.eml");
    std::fs::write(&file, raw).unwrap();
    let mut args = vec![file.to_str().unwrap().to_string()];
    args.extend(dkim_records(&server, "example.test"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = python_result("dkim_verify.py", &args);
    assert!(ok && out.lines().filter(|l| l.starts_with("ok")).count() == 2, "{out}{err}\n{sent}");
    // The receiver decodes the same text (Python's email package, independent of Tern).
    let (ok, out, err) = python_result("mime_text.py", &[file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out, "Grüße aus Köln = 100 € \n.dot line\n<p>Grüße</p>\n", "{sent}");
    // The local copy is the same 7-bit message.
    let local = server.mail_list("bob@example.test", "INBOX");
    assert_eq!(local.len(), 1);
    eventually(WAIT, "an empty queue", || (queue_len(&server) == 0).then_some(()));

    // A raw 8-bit header has no 7-bit form: refused by us, not sent as 8-bit, and bounced.
    let raw_header = "From: alice@example.test\r\nTo: carol@remote.test\r\nSubject: Grüße\r\n\r\nbody ü\r\n";
    submit(&server, "alice@example.test", &["carol@remote.test"], raw_header);
    let dsn = eventually(WAIT, "a DSN", || dsn_messages(&server, "alice@example.test").into_iter().next());
    let report = dsn_text(&server, "alice@example.test", &dsn);
    assert!(report.contains("Status: 5.6.3") && report.contains("carol@remote.test"), "{report}");
    assert_eq!(world.received().len(), 1, "nothing 8-bit was sent to the 7-bit receiver");
}

#[test]
fn temporary_failures_are_retried_and_permanent_ones_bounce_with_a_dsn() {
    let sink_port = free_port();
    let world = World::start(&remote_records(), Some(sink_port), serde_json::json!({}));
    let server = TestServer::started(&delivery_config(world.dns_port, world.sink_port, ""));
    let text =
        "From: alice@example.test\r\nTo: x\r\nSubject: mixed fate\r\nMessage-ID: <fate@example.test>\r\n\r\nbody\r\n";
    submit(&server, "alice@example.test", &["tempfail@remote.test", "reject@remote.test", "nobody@nullmx.test"], text);

    // 451 first, then accepted on the retry one second later.
    let got = world.wait_received(1, WAIT);
    assert_eq!(got[0].0["rcpt_tos"], serde_json::json!(["tempfail@remote.test"]));
    // 550 from the sink and the null MX: one DSN to alice with both.
    let dsn_line = eventually(WAIT, "a DSN", || dsn_messages(&server, "alice@example.test").into_iter().next());
    let dsn = dsn_text(&server, "alice@example.test", &dsn_line);
    assert!(dsn.contains("multipart/report") && dsn.contains("delivery-status"), "{dsn}");
    assert!(dsn.contains("Final-Recipient: rfc822; reject@remote.test"), "{dsn}");
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    assert!(dsn.contains("Remote-MTA: dns; mx.remote.test"), "{dsn}");
    assert!(dsn.contains("Return-Path: <>"), "a DSN has a null sender: {dsn}");
    assert!(dsn.contains("Auto-Submitted: auto-replied"));
    assert!(dsn.contains("Subject: mixed fate"), "the original comes back: {dsn}");
    // The null MX bounced at once, in the same or a second report.
    let all: String = dsn_messages(&server, "alice@example.test")
        .iter()
        .map(|l| dsn_text(&server, "alice@example.test", l))
        .collect();
    assert!(all.contains("Final-Recipient: rfc822; nobody@nullmx.test") && all.contains("Status: 5.1.10"), "{all}");
    assert!(!all.contains("tempfail@remote.test"), "the retried recipient is not reported");
    eventually(WAIT, "an empty queue", || (queue_len(&server) == 0).then_some(()));
}

#[test]
fn unreachable_hosts_are_retried_and_the_queue_can_be_managed() {
    let world = World::start(&remote_records(), None, serde_json::json!({}));
    // Nothing listens on the sink port: remote.test is unreachable too.
    let server = TestServer::started(&delivery_config(world.dns_port, free_port(), ""));
    submit(
        &server,
        "alice@example.test",
        &["someone@down.test"],
        "From: alice@example.test\r\nSubject: s\r\n\r\nb\r\n",
    );
    let list = server.ok(&["queue", "list"]);
    assert!(list.contains("someone@down.test"), "{list}");
    let id = queued_id(&server, "someone@down.test");
    // One id everywhere: the queue shows the message by the id its SMTP reply and log gave it.
    assert!(id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert!(
        server.log().lines().any(|l| l.contains("message accepted") && l.contains(&id)),
        "the log's queue_id is the queue's id {id}:\n{}",
        server.log()
    );
    let show = show_after_attempts(&server, &id, 2);
    assert!(show.contains(&format!("id: {id}")), "{show}");
    // The queue's own number for it still works.
    let number = show.lines().find_map(|l| l.strip_prefix("queue number: ")).expect("queue number").to_string();
    assert!(server.ok(&["queue", "show", &number]).contains(&format!("id: {id}")));
    assert!(show.contains("status=Pending") && show.contains("451 4.4.1"), "{show}");
    assert!(server.ok(&["queue", "retry", &id]).contains("1 message"));
    assert!(server.ok(&["queue", "remove", &id]).contains("removed"));
    assert_eq!(queue_len(&server), 0);
    assert!(dsn_messages(&server, "alice@example.test").is_empty(), "removal does not bounce");
    let out = server.cli(&["queue", "show", &id]);
    assert!(!out.status.success());
}

#[test]
fn queued_mail_survives_restart_and_kill9() {
    let sink_port = free_port();
    // First no sink: everything stays queued.
    let dns = World::start(&remote_records(), None, serde_json::json!({}));
    let mut server = TestServer::started(&delivery_config(dns.dns_port, sink_port, ""));
    let n = 20;
    for i in 0..n {
        let text = format!(
            "From: alice@example.test\r\nSubject: persist {i}\r\nMessage-ID: <persist-{i}@example.test>\r\n\r\nbody {i}\r\n"
        );
        let to = if i % 2 == 0 { "bob@remote.test" } else { "slow-carol@other.test" };
        submit(&server, "alice@example.test", &[to], &text);
    }
    assert_eq!(queue_len(&server), n);
    server.stop();
    server.launch();
    assert_eq!(queue_len(&server), n, "a clean restart keeps the queue");
    server.kill9();
    server.launch();
    assert_eq!(queue_len(&server), n, "kill -9 keeps the queue");
    // Now the remote side comes up; kill -9 again while deliveries are in flight.
    let sink = World::start(&[], Some(sink_port), serde_json::json!({}));
    server.ok(&["queue", "retry", "--all"]);
    world_wait(&sink, 1);
    server.kill9();
    server.launch();
    server.ok(&["queue", "retry", "--all"]);
    eventually(Duration::from_secs(90), "an empty queue", || (queue_len(&server) == 0).then_some(()));
    // At least once: every message arrived; duplicates only from the kill.
    let got = sink.received();
    let mut ids: Vec<String> = got
        .iter()
        .filter_map(|(_, raw)| {
            String::from_utf8_lossy(raw).lines().find(|l| l.starts_with("Message-ID:")).map(|l| l.to_string())
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "every queued message delivered: {ids:?}");
    assert!(got.len() <= n + 10, "{} deliveries for {n} messages", got.len());
    assert!(dsn_messages(&server, "alice@example.test").is_empty());
}

fn world_wait(world: &World, n: usize) {
    world.wait_received(n, WAIT);
}

#[test]
fn mta_sts_enforce_refuses_an_mx_with_a_bad_certificate() {
    let sink_port = free_port();
    let https_port = free_port();
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_signed(certs.path(), "mta-sts.sts.test");
    let mut records = remote_records();
    records.extend([
        ("sts.test", "MX", "10 mx.sts.test."),
        ("mx.sts.test", "A", "127.0.0.1"),
        ("_mta-sts.sts.test", "TXT", "v=STSv1; id=2026112901;"),
        ("mta-sts.sts.test", "A", "127.0.0.1"),
    ]);
    let policy = "version: STSv1\r\nmode: enforce\r\nmx: mx.sts.test\r\nmax_age: 86400\r\n";
    let world = World::start(
        &records,
        Some(sink_port),
        serde_json::json!({"https": {"port": https_port, "cert": cert, "key": key, "files": {"/.well-known/mta-sts.txt": policy}}}),
    );
    let extra = format!("mta_sts_port = {https_port}\nca_file = \"{}\"\n", ca.display());
    let server = TestServer::started(&delivery_config(world.dns_port, world.sink_port, &extra));
    submit(&server, "alice@example.test", &["user@sts.test"], "From: alice@example.test\r\nSubject: sts\r\n\r\nb\r\n");
    submit(
        &server,
        "alice@example.test",
        &["user@remote.test"],
        "From: alice@example.test\r\nSubject: plain\r\n\r\nb\r\n",
    );
    // The domain without a policy gets its mail over opportunistic TLS...
    let got = world.wait_received(1, WAIT);
    assert_eq!(got[0].0["rcpt_tos"], serde_json::json!(["user@remote.test"]));
    // ... the enforced one is deferred, not delivered: the sink's certificate is self-signed.
    let show = show_after_attempts(&server, &queued_id(&server, "user@sts.test"), 1);
    assert!(show.contains("MTA-STS"), "{show}");
    // The attempt is recorded, so whatever it sent the sink has already acknowledged.
    assert_eq!(world.received().len(), 1, "nothing went to the MX with the bad certificate");
    assert!(server.log().contains("MTA-STS policy fetched"), "{}", server.log());
}

#[test]
fn tern_delivers_to_tern() {
    // The remote side: a second Tern with domain remote.test.
    let remote = TestServer::started("");
    remote.ok(&["domain", "add", "remote.test"]);
    remote.ok_stdin(&["user", "add", "bob@remote.test", "--password-stdin"], "secret\n");
    let world = World::start(&remote_records(), None, serde_json::json!({}));
    let config = delivery_config(world.dns_port, remote.smtp.port(), "");
    let mut server = TestServer::new(&config);
    server.ok(&["domain", "add", "example.test"]);
    server.ok_stdin(&["user", "add", "alice@example.test", "--password-stdin"], "secret\n");
    server.ok(&["dkim", "generate", "example.test"]);
    server.launch();
    submit(
        &server,
        "alice@example.test",
        &["bob@remote.test"],
        "From: alice@example.test\r\nSubject: hop\r\n\r\nacross\r\n",
    );
    eventually(WAIT, "the message at the remote Tern", || {
        (remote.mail_list("bob@remote.test", "INBOX").len() == 1).then_some(())
    });
    let raw = String::from_utf8(remote.mail_show("bob@remote.test", "INBOX", 1)).unwrap();
    assert!(raw.contains("DKIM-Signature:") && raw.contains("Subject: hop"), "{raw}");
    assert!(raw.contains("using TLSv1.3"), "delivered over TLS: {raw}");
    assert_eq!(raw.matches("Return-Path:").count(), 1, "only the final Return-Path: {raw}");
}

/// SHA-256 of a certificate's public key (for TLSA 3 1 1).
fn spki_sha256(cert: &std::path::Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -r",
            cert.display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

#[test]
fn dane_tlsa_records_are_enforced_when_dnssec_vouches_for_them() {
    let sink_port = free_port();
    // The sink's certificate is made by World::start; make the world twice: first to learn
    // the certificate, then with TLSA records for it.
    let probe = World::start(&[], Some(sink_port), serde_json::json!({}));
    let cert = probe.dir.path().join("sink.remote.test.crt");
    let key = probe.dir.path().join("sink.remote.test.key");
    let good = format!("3 1 1 {}", spki_sha256(&cert));
    let keep = tempfile::tempdir().unwrap();
    let (cert_copy, key_copy) = (keep.path().join("c.pem"), keep.path().join("k.pem"));
    std::fs::copy(&cert, &cert_copy).unwrap();
    std::fs::copy(&key, &key_copy).unwrap();
    drop(probe);
    let records = vec![
        ("dane.test", "MX", "10 mx.dane.test."),
        ("mx.dane.test", "A", "127.0.0.1"),
        ("baddane.test", "MX", "10 mx.baddane.test."),
        ("mx.baddane.test", "A", "127.0.0.1"),
    ];
    let tlsa_good = format!("_{sink_port}._tcp.mx.dane.test");
    let tlsa_bad = format!("_{sink_port}._tcp.mx.baddane.test");
    let mut all: Vec<(&str, &str, &str)> = records.clone();
    all.push((&tlsa_good, "TLSA", &good));
    all.push((&tlsa_bad, "TLSA", "3 1 1 0000000000000000000000000000000000000000000000000000000000000000"));
    let mut world = World::start(
        &all,
        None,
        serde_json::json!({"ad": true, "sink": {"port": sink_port, "dir": keep.path().join("sink"), "tls_cert": cert_copy, "tls_key": key_copy}}),
    );
    world.sink_dir = keep.path().join("sink");
    world.sink_port = sink_port;
    let config =
        format!("{}\n", delivery_config(world.dns_port, sink_port, "")).replace("[dns]\n", "[dns]\ndnssec = true\n");
    let server = TestServer::started(&config);
    submit(&server, "alice@example.test", &["u@dane.test"], "From: alice@example.test\r\nSubject: dane\r\n\r\nb\r\n");
    submit(
        &server,
        "alice@example.test",
        &["u@baddane.test"],
        "From: alice@example.test\r\nSubject: bad dane\r\n\r\nb\r\n",
    );
    let got = world.wait_received(1, WAIT);
    assert_eq!(got[0].0["rcpt_tos"], serde_json::json!(["u@dane.test"]));
    let show = show_after_attempts(&server, &queued_id(&server, "u@baddane.test"), 1);
    assert!(show.contains("DANE"), "{show}");
    assert!(server.log().contains("DANE: no TLSA record matches"), "{}", server.log());
    assert_eq!(world.received().len(), 1);
}

#[test]
fn smarthost_with_auth_relays_everything() {
    // The smarthost: a second Tern whose submission port takes alice's relay.
    let relay = TestServer::started("");
    relay.ok(&["domain", "add", "far.test"]);
    relay.ok_stdin(&["user", "add", "zed@far.test", "--password-stdin"], "secret\n");
    let extra = format!(
        "[delivery]\nretry_initial_seconds = 1\n[delivery.smarthost]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nusername = \"alice@example.test\"\npassword = \"secret\"\n",
        relay.submission.port()
    );
    let mut server = TestServer::new(&extra);
    server.ok(&["domain", "add", "example.test"]);
    server.ok_stdin(&["user", "add", "alice@example.test", "--password-stdin"], "secret\n");
    server.launch();
    submit(
        &server,
        "alice@example.test",
        &["zed@far.test"],
        "From: alice@example.test\r\nSubject: via relay\r\n\r\nb\r\n",
    );
    eventually(WAIT, "the relayed message", || (relay.mail_list("zed@far.test", "INBOX").len() == 1).then_some(()));
    let raw = String::from_utf8(relay.mail_show("zed@far.test", "INBOX", 1)).unwrap();
    assert!(raw.contains("with ESMTPA"), "the smarthost saw an authenticated client: {raw}");
}

#[test]
fn dsn_parameters_are_honoured() {
    let sink_port = free_port();
    let world = World::start(&remote_records(), Some(sink_port), serde_json::json!({}));
    let server = TestServer::started(&delivery_config(world.dns_port, world.sink_port, ""));
    // Raw submission so that NOTIFY, RET and ENVID can be given.
    let mut c = Client::connect(server.submission);
    c.hello();
    c.expect("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=", 235);
    c.expect("MAIL FROM:<alice@example.test> RET=HDRS ENVID=env+2Dvalue", 250);
    c.expect("RCPT TO:<reject-quiet@remote.test> NOTIFY=NEVER", 250);
    c.expect("RCPT TO:<reject-loud@remote.test> NOTIFY=FAILURE ORCPT=rfc822;original+40example.test", 250);
    c.expect("RCPT TO:<happy@remote.test> NOTIFY=SUCCESS", 250);
    c.expect("DATA", 354);
    c.send(b"From: alice@example.test\r\nSubject: dsn params\r\n\r\nsecret body text\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    c.expect("QUIT", 221);
    // One failure report (only the loud one), one "relayed" report (the sink has no DSN).
    let reports = eventually(WAIT, "two reports", || {
        let list = dsn_messages(&server, "alice@example.test");
        (list.len() >= 2).then_some(list)
    });
    let texts: Vec<String> = reports.iter().map(|l| dsn_text(&server, "alice@example.test", l)).collect();
    let failed = texts.iter().find(|t| t.contains("Action: failed")).expect("failure report");
    assert!(failed.contains("reject-loud@remote.test") && !failed.contains("reject-quiet"), "{failed}");
    assert!(failed.contains("Original-Recipient: rfc822; original@example.test"), "{failed}");
    assert!(failed.contains("Original-Envelope-Id: env-value"), "{failed}");
    assert!(failed.contains("text/rfc822-headers") && !failed.contains("secret body text"), "RET=HDRS: {failed}");
    let relayed = texts.iter().find(|t| t.contains("Action: relayed")).expect("relayed report");
    assert!(relayed.contains("happy@remote.test"), "{relayed}");
    // Reports are written before the queue update that ends an entry: once the entry is
    // gone, every report it will ever give exists.
    eventually(WAIT, "the entry to leave the queue", || {
        (!server.ok(&["queue", "list"]).contains("remote.test")).then_some(())
    });
    assert_eq!(dsn_messages(&server, "alice@example.test").len(), 2, "nothing for NOTIFY=NEVER");
}
