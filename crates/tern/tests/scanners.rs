//! Outside scanners through the wire, with the real programs: clamd (Debian's clamav-daemon,
//! with a signature database these tests make themselves: freshclam cannot download here),
//! rspamd, and a generic HTTP scanner (a small server in the test speaking the contract of
//! `docs/scanners.md`). Viruses are refused (also zipped, also base64, also from an
//! authenticated user), quarantined and released once, scanners that are down or slow get the
//! configured failure mode and lose nothing, and hostile messages get a decision.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A clamd on a loopback port with one signature: the EICAR test string, anywhere in a file.
struct Clamd {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
    conf: std::path::PathBuf,
}

impl Clamd {
    fn start() -> Clamd {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).unwrap();
        let hex: String = EICAR.bytes().map(|b| format!("{b:02x}")).collect();
        std::fs::write(db.join("tern-test.ndb"), format!("Tern.Test.EICAR:0:*:{hex}\n")).unwrap();
        let port = free_port();
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "DatabaseDirectory {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nForeground yes\nLogFile {}\nStreamMaxLength 1M\nPidFile {}\n",
                db.display(),
                dir.path().join("clamd.log").display(),
                dir.path().join("clamd.pid").display()
            ),
        )
        .unwrap();
        let mut clamd = Clamd { child: None, port, _dir: dir, conf };
        clamd.launch();
        clamd
    }

    fn launch(&mut self) {
        let child = Command::new("clamd")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clamd (Debian package clamav-daemon)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"zPING\0");
                let mut reply = [0u8; 5];
                if s.read_exact(&mut reply).is_ok() && &reply[..4] == b"PONG" {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "clamd did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A message with one attachment (base64).
fn with_attachment(subject: &str, filename: &str, content: &[u8]) -> Vec<u8> {
    let b64 = base64(content);
    format!(
        "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@remote.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n--b1\r\nContent-Type: application/octet-stream; name=\"{filename}\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"{filename}\"\r\n\r\n{b64}\r\n--b1--\r\n"
    )
    .into_bytes()
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for j in 0..4 {
            if j <= chunk.len() {
                out.push(T[((n >> (18 - 6 * j)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A zip archive (made by Python's zipfile) holding `name` with `content`.
fn zip_of(name: &str, content: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("content");
    std::fs::write(&src, content).unwrap();
    let out = dir.path().join("a.zip");
    let status = Command::new(python_bin())
        .arg("-c")
        .arg("import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z: z.write(sys.argv[2], sys.argv[3])")
        .arg(&out)
        .arg(&src)
        .arg(name)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

/// DATA form of a message (dot-stuffed, terminated).
fn data(raw: &[u8]) -> Vec<u8> {
    let mut d = Vec::new();
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            d.push(b'.');
        }
        d.extend_from_slice(line);
    }
    if !d.ends_with(b"\r\n") {
        d.extend_from_slice(b"\r\n");
    }
    d.extend_from_slice(b".\r\n");
    d
}

fn send(s: &TestServer, raw: &[u8]) -> Reply {
    let mut c = s.smtp();
    c.hello();
    let r = c.transaction("sender@remote.test", &["alice@example.test"], &data(raw));
    c.expect("QUIT", 221);
    r
}

fn clamd_config(port: u16, extra: &str) -> String {
    format!(
        "[spam]\nenabled = false\n[[scanner]]\nname = \"clamav\"\nkind = \"clamd\"\naddress = \"127.0.0.1:{port}\"\ntimeout_seconds = 20\nmax_size = 2000000\n{extra}\n"
    )
}

#[test]
fn clamd_refuses_viruses_and_its_failures_lose_nothing() {
    if !have("clamd") {
        panic!("clamd is missing: scripts/test.sh installs clamav-daemon");
    }
    let mut clamd = Clamd::start();
    let s = TestServer::started(&clamd_config(clamd.port, "on_too_large = \"tempfail\""));

    // Clean mail passes, with no verdict header (the classifier is off; clean scanners add nothing).
    let r = send(&s, &with_attachment("clean", "notes.txt", b"just some notes\n"));
    assert_eq!(250, r.code, "{r:?}");

    // EICAR as a base64 attachment, inside a zip, and as the plain body: 554 5.7.1, not stored.
    for (subject, raw) in [
        ("attached", with_attachment("attached", "eicar.com", EICAR.as_bytes())),
        ("zipped", with_attachment("zipped", "eicar.zip", &zip_of("eicar.com", EICAR.as_bytes()))),
        ("plain", format!("From: x@remote.test\r\nSubject: plain\r\n\r\n{EICAR}\r\n").into_bytes()),
    ] {
        let r = send(&s, &raw);
        assert_eq!(554, r.code, "{subject}: {r:?}");
        assert!(r.text().contains("5.7.1") && r.text().contains("Tern.Test.EICAR"), "{subject}: {r:?}");
    }
    assert_eq!(1, s.mail_list("alice@example.test", "INBOX").len());
    assert!(s.log().contains("virus found"), "an alert line is logged");

    // A message over clamd's StreamMaxLength (1 MiB here) is the configured outcome: 451.
    let big = with_attachment("big", "big.bin", &vec![b'x'; 1_500_000]);
    let r = send(&s, &big);
    assert_eq!(451, r.code, "{r:?}");

    // A virus from an authenticated user: refused too, and an alert.
    let mut c = Client::connect(s.submission);
    c.hello();
    c.expect("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=", 235);
    let mut raw = with_attachment("outbound", "eicar.com", EICAR.as_bytes());
    raw = String::from_utf8(raw).unwrap().replace("From: sender@remote.test", "From: alice@example.test").into_bytes();
    let r = c.transaction("alice@example.test", &["bob@example.test"], &data(&raw));
    assert_eq!(554, r.code, "{r:?}");
    c.expect("QUIT", 221);
    assert!(s.log().contains("the account may be compromised"));
    assert!(s.mail_list("bob@example.test", "INBOX").is_empty());

    // clamd down: 451 4.7.1 (tempfail is the default), nothing accepted unscanned.
    clamd.stop();
    let r = send(&s, &with_attachment("while-down", "notes.txt", b"notes\n"));
    assert_eq!(451, r.code, "{r:?}");
    assert!(r.text().contains("4.7.1"), "{r:?}");
    assert_eq!(1, s.mail_list("alice@example.test", "INBOX").len());
    let (_, metrics) = s.http_get("/metrics");
    assert!(metrics.contains("tern_scanner_failures_total"), "a metric counts the failure");
    // Back up: mail flows again.
    clamd.launch();
    let r = send(&s, &with_attachment("after", "notes.txt", b"notes\n"));
    assert_eq!(250, r.code, "{r:?}");
}

#[test]
fn a_scanner_that_is_down_can_be_configured_to_accept() {
    // Nothing listens on this port.
    let port = free_port();
    let s = TestServer::started(&clamd_config(port, "on_failure = \"accept\""));
    let r = send(&s, &with_attachment("unscanned", "notes.txt", b"notes\n"));
    assert_eq!(250, r.code, "{r:?}");
    assert_eq!(1, s.mail_list("alice@example.test", "INBOX").len());
    assert!(s.log().contains("scanner failed"), "{}", s.log());
}

#[test]
fn quarantined_viruses_are_released_once() {
    let clamd = Clamd::start();
    let mut s = TestServer::started(&clamd_config(clamd.port, "on_virus = \"quarantine\""));
    let r = send(&s, &with_attachment("held", "eicar.com", EICAR.as_bytes()));
    assert_eq!(250, r.code, "quarantine accepts (the sender is not told): {r:?}");
    assert!(s.mail_list("alice@example.test", "INBOX").is_empty(), "invisible to the user");
    let list = s.ok(&["quarantine", "list"]);
    assert!(list.contains("virus Tern.Test.EICAR"), "{list}");
    let id = list.split('\t').next().unwrap().trim().to_string();
    let shown = s.ok(&["quarantine", "show", &id]);
    assert!(shown.contains("alice@example.test") && shown.contains("Subject: held"), "{shown}");

    // Held across a restart; released exactly once.
    s.stop();
    s.launch();
    assert!(s.ok(&["quarantine", "list"]).contains("virus Tern.Test.EICAR"));
    let released = s.ok(&["quarantine", "release", &id, "--learn-ham"]);
    assert!(released.contains("1 local copy") && released.contains("learnt as ham"), "{released}");
    let status = s.ok(&["spam", "status"]);
    assert!(status.contains("global model: learnt 0 spam and 1 ham"), "released and learnt as ham: {status}");
    let again = s.cli(&["quarantine", "release", &id]);
    assert!(!again.status.success(), "a second release finds nothing");
    assert_eq!(1, s.mail_list("alice@example.test", "INBOX").len());
    assert!(s.ok(&["quarantine", "list"]).contains("empty"));

    // Delete.
    send(&s, &with_attachment("held2", "eicar.com", EICAR.as_bytes()));
    let list = s.ok(&["quarantine", "list"]);
    let id = list.split('\t').next().unwrap().trim().to_string();
    s.ok(&["quarantine", "delete", &id]);
    assert!(s.ok(&["quarantine", "list"]).contains("empty"));
    assert_eq!(1, s.mail_list("alice@example.test", "INBOX").len());
}

/// One HTTP request from `stream`: its request line and header lines, and its body
/// (`Content-Length` bytes).
fn read_request(stream: &TcpStream) -> (Vec<String>, Vec<u8>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        headers.push(line);
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    (headers, body)
}

/// An HTTP scanner speaking the contract: `virus` for a message containing "VIRUS-MARK",
/// `spam` with 9 points for "SPAM-MARK", clean otherwise; it records the headers it got.
fn http_scanner() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (headers, body) = read_request(&stream);
            record.lock().unwrap().extend(headers);
            let text = String::from_utf8_lossy(&body);
            let json = if text.contains("VIRUS-MARK") {
                r#"{"verdict":"virus","names":["Remote.Test.Virus"]}"#
            } else if text.contains("SPAM-MARK") {
                r#"{"verdict":"spam","score":9,"reasons":[{"name":"REMOTE_SPAM","score":9}]}"#
            } else {
                r#"{"verdict":"clean"}"#
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                json.len()
            );
        }
    });
    (port, seen)
}

#[test]
fn a_generic_http_scanner_drives_the_verdict() {
    let (port, seen) = http_scanner();
    let s = TestServer::started(&format!(
        "[spam]\nenabled = false\n[[scanner]]\nname = \"remote\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/scan\"\ntimeout_seconds = 5\nheaders = {{ Authorization = \"Bearer t0ken\" }}\n"
    ));
    let r = send(&s, b"From: x@remote.test\r\nSubject: a\r\n\r\nVIRUS-MARK\r\n");
    assert_eq!(554, r.code, "{r:?}");
    assert!(r.text().contains("Remote.Test.Virus"), "{r:?}");
    let r = send(&s, b"From: x@remote.test\r\nSubject: b\r\n\r\nSPAM-MARK\r\n");
    assert_eq!(250, r.code, "{r:?}");
    assert_eq!(1, s.mail_list("alice@example.test", "Junk").len(), "9 points: Junk");
    let r = send(&s, b"From: x@remote.test\r\nSubject: c\r\n\r\nhello\r\n");
    assert_eq!(250, r.code, "{r:?}");
    assert_eq!(1, s.mail_list("alice@example.test", "INBOX").len());
    let headers = seen.lock().unwrap().join("\n");
    for expected in [
        "POST /scan HTTP/1.1",
        "content-type: message/rfc822",
        "x-tern-rcpt: alice@example.test",
        "x-tern-mail-from: sender@remote.test",
        "x-tern-client-ip: 127.0.0.1",
        "authorization: Bearer t0ken",
    ] {
        assert!(
            headers.to_ascii_lowercase().contains(&expected.to_ascii_lowercase()),
            "{expected} missing:\n{headers}"
        );
    }
}

/// An rspamd with a minimal configuration on a loopback port (no DNS, no Redis).
struct Rspamd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Rspamd {
    fn start() -> Rspamd {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        for sub in ["local", "db", "run"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let conf = dir.path().join("rspamd.conf");
        std::fs::write(
            &conf,
            format!(
                ".include \"$CONFDIR/common.conf\"\noptions {{\n pidfile = \"$RUNDIR/rspamd.pid\";\n .include \"$CONFDIR/options.inc\"\n dns {{ nameserver = [\"127.0.0.1:5\"]; timeout = 0.2s; retransmits = 1; }}\n}}\nlogging {{ type = \"file\"; filename = \"{}\"; level = \"error\"; }}\nworker \"normal\" {{\n bind_socket = \"127.0.0.1:{port}\";\n .include \"$CONFDIR/worker-normal.inc\"\n count = 1;\n}}\n",
                dir.path().join("rspamd.log").display()
            ),
        )
        .unwrap();
        let var = |k: &str, sub: &str| format!("--var={k}={}", dir.path().join(sub).display());
        let child = Command::new("rspamd")
            .args(["-f", "-u", "root", "-g", "root", "-i", "-c"])
            .arg(&conf)
            .arg(var("LOCAL_CONFDIR", "local"))
            .arg(var("DBDIR", "db"))
            .arg(var("RUNDIR", "run"))
            .arg(var("LOGDIR", "."))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rspamd (Debian package rspamd)");
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "rspamd did not start");
            std::thread::sleep(Duration::from_millis(250));
        }
        Rspamd { child, port, _dir: dir }
    }
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        // SIGTERM to its main process, which stops its workers and waits for them: killed
        // outright, the main process would leave the workers orphaned, and orphaned rspamd
        // workers signal whatever process adopts them.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rspamd_verdicts_drive_the_action_and_its_failure_is_a_tempfail() {
    let rspamd = Rspamd::start();
    let s = TestServer::started(&format!(
        "[spam]\nenabled = false\n[[scanner]]\nname = \"rspamd\"\nkind = \"rspamd\"\nurl = \"http://127.0.0.1:{}\"\ntimeout_seconds = 20\n",
        rspamd.port
    ));
    // GTUBE: rspamd says reject.
    let r = send(
        &s,
        b"From: x@remote.test\r\nTo: alice@example.test\r\nSubject: gtube\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n",
    );
    assert_eq!(550, r.code, "{r:?}");
    // Ordinary mail: delivered, with rspamd's score among the reasons.
    let r = send(
        &s,
        b"From: x@remote.test\r\nTo: alice@example.test\r\nSubject: hello\r\nMessage-ID: <h@remote.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nhello there\r\n",
    );
    assert_eq!(250, r.code, "{r:?}");
    let stored = s.mail_show("alice@example.test", "INBOX", 1);
    let text = String::from_utf8_lossy(&stored);
    assert!(text.contains("X-Tern-Spam: score="), "{text}");
    let why = s.ok(&["mail", "explain", "alice@example.test", "INBOX", "1"]);
    assert!(why.contains("scanner rspamd: Scored"), "{why}");
    drop(rspamd);
    let r = send(&s, b"From: x@remote.test\r\nSubject: later\r\n\r\nhello\r\n");
    assert_eq!(451, r.code, "{r:?}");
}

#[test]
fn hostile_messages_get_a_decision_and_nothing_panics() {
    let clamd = Clamd::start();
    let s = TestServer::started(&format!(
        "[smtp]\nmax_message_size = 60000000\n{}",
        clamd_config(clamd.port, "on_too_large = \"accept\"\n[spam]\nmin_learned = 1")
            .replace("[spam]\nenabled = false\n", "")
    ));
    // A zip bomb: 50 MB of zeros deflated to ~50 KB.
    let bomb = zip_of("zeros.bin", &vec![0u8; 50_000_000]);
    assert!(bomb.len() < 200_000);
    // 40 levels of nested multipart.
    let mut nested = String::from("From: x@remote.test\r\nSubject: nested\r\nMIME-Version: 1.0\r\n");
    for i in 0..40 {
        nested.push_str(&format!("Content-Type: multipart/mixed; boundary=\"n{i}\"\r\n\r\n--n{i}\r\n"));
    }
    nested.push_str("Content-Type: text/plain\r\n\r\ndeep\r\n");
    for i in (0..40).rev() {
        nested.push_str(&format!("--n{i}--\r\n"));
    }
    // Binary garbage.
    let mut garbage = b"From: x@remote.test\r\nSubject: garbage\r\n\r\n".to_vec();
    let mut x: u32 = 12345;
    for _ in 0..200_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let b = (x >> 16) as u8;
        garbage.push(if b == b'\n' || b == b'\r' || b == 0 { b'a' } else { b });
        if garbage.len().is_multiple_of(900) {
            garbage.extend_from_slice(b"\r\n");
        }
    }
    // 50 MiB of text (over the scanner's max_size: accepted unscanned by it, as configured).
    let mut huge = b"From: x@remote.test\r\nSubject: huge\r\n\r\n".to_vec();
    while huge.len() < 50 * 1024 * 1024 {
        huge.extend_from_slice(b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor\r\n");
    }
    for (name, raw) in [
        ("zip bomb", with_attachment("bomb", "bomb.zip", &bomb)),
        ("nested", nested.into_bytes()),
        ("garbage", garbage),
        ("huge", huge),
    ] {
        let started = Instant::now();
        let r = send(&s, &raw);
        assert!([250, 554, 550].contains(&r.code), "{name}: {r:?}");
        assert!(started.elapsed() < Duration::from_secs(40), "{name} took {:?}", started.elapsed());
    }
    assert!(!s.log().contains("panicked"), "{}", s.log());
    // Memory stays bounded: the 50 MiB message is spooled, not held several times over.
    let rss_mib = s.rss_kib() / 1024;
    assert!(rss_mib < 1024, "server RSS {rss_mib} MiB after the hostile messages");
    // The server still answers.
    assert_eq!(250, send(&s, b"From: x@remote.test\r\nSubject: ok\r\n\r\nok\r\n").code);
}

/// A webhook receiver: records each POST's body.
fn webhook() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (_, body) = read_request(&stream);
            record.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn virus_finds_and_scanner_outages_raise_alerts_by_mail_and_webhook() {
    let (scanner_port, _) = http_scanner();
    let (hook_port, posts) = webhook();
    let down = free_port();
    let s = TestServer::started(&format!(
        "[spam]\nenabled = false\n[alerts]\nnotify = [\"bob@example.test\"]\nwebhook = \"http://127.0.0.1:{hook_port}/alerts\"\n\
         [[scanner]]\nname = \"remote\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{scanner_port}/scan\"\ntimeout_seconds = 5\n\
         [[scanner]]\nname = \"offline\"\nkind = \"clamd\"\naddress = \"127.0.0.1:{down}\"\non_failure = \"accept\"\n"
    ));
    let r = send(&s, b"From: x@remote.test\r\nSubject: a\r\n\r\nVIRUS-MARK\r\n");
    assert_eq!(554, r.code, "{r:?}");
    // Two more messages while "offline" is down: one scanner alert, not three.
    for _ in 0..2 {
        assert_eq!(250, send(&s, b"From: x@remote.test\r\nSubject: b\r\n\r\nhello\r\n").code);
    }
    // Alerts are handled one after another: once the third (the second outage) has been
    // suppressed, the first two have been posted.
    wait_until("the second outage alert to be suppressed", || s.log().contains("alert suppressed"));
    let got = posts.lock().unwrap().clone();
    let virus: Vec<&String> = got.iter().filter(|b| b.contains("\"kind\":\"virus\"")).collect();
    let outage: Vec<&String> = got.iter().filter(|b| b.contains("\"kind\":\"scanner_failed\"")).collect();
    assert_eq!(1, virus.len(), "{got:?}");
    assert!(virus[0].contains("Remote.Test.Virus") && virus[0].contains("sender@remote.test"), "{got:?}");
    assert_eq!(1, outage.len(), "rate-limited per scanner: {got:?}");
    assert!(outage[0].contains("offline"), "{got:?}");
    // The same alerts by mail to the configured address.
    wait_until("bob got the alert mails", || s.mail_list("bob@example.test", "INBOX").len() >= 2);
    let mails = s.mail_list("bob@example.test", "INBOX").join("\n");
    assert!(mails.contains("[Tern alert] virus Remote.Test.Virus"), "{mails}");
    assert!(mails.contains("[Tern alert] scanner offline failed"), "{mails}");
}

#[test]
fn a_scanner_that_hangs_delays_only_its_own_message() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (scanning, scanned) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
            let _ = scanning.send(());
        }
    });
    let s = TestServer::started(&format!(
        "[spam]\nenabled = false\n[[scanner]]\nname = \"stuck\"\nkind = \"clamd\"\naddress = \"127.0.0.1:{port}\"\ntimeout_seconds = 4\n"
    ));
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            let started = Instant::now();
            let r = send(&s, b"From: x@remote.test\r\nSubject: waits\r\n\r\nhello\r\n");
            (r, started.elapsed())
        });
        scanned.recv_timeout(Duration::from_secs(20)).expect("the message reached the stuck scanner");
        // Meanwhile other sessions are served at once.
        for _ in 0..3 {
            let started = Instant::now();
            let mut c = s.smtp();
            c.hello();
            c.expect("QUIT", 221);
            let mut imap = s.imap_login("bob@example.test");
            imap.ok("SELECT INBOX");
            imap.ok("LOGOUT");
            assert!(started.elapsed() < Duration::from_millis(2500), "another session waited {:?}", started.elapsed());
        }
        let (r, took) = waiting.join().unwrap();
        assert_eq!(451, r.code, "{r:?}");
        assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(10), "{took:?}");
    });
    assert!(s.mail_list("alice@example.test", "INBOX").is_empty());
}
