//! Test harness: runs the real `tern` binary on loopback ports and talks to it over the wire.
#![allow(dead_code)]

pub mod web;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tern");
pub const HOSTNAME: &str = "mx.tern.test";

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    child: Option<Child>,
    pub smtp: SocketAddr,
    pub http: SocketAddr,
    pub imap: SocketAddr,
    pub imaps: SocketAddr,
    pub pop3: SocketAddr,
    pub pop3s: SocketAddr,
    pub managesieve: SocketAddr,
    pub submission: SocketAddr,
    pub submissions: SocketAddr,
    pub https: SocketAddr,
    pub log_path: PathBuf,
}

impl TestServer {
    /// A server with a config whose listeners are on ephemeral loopback ports; `extra` is
    /// appended TOML (tables only). Its data directory is made (`tern setup`, as an admin
    /// would); not started yet.
    pub fn new(extra: &str) -> TestServer {
        let s = TestServer::unprepared(extra);
        s.ok(&["setup"]);
        s
    }

    /// Like [`TestServer::new`] without `tern setup`: no data directory yet.
    /// An `extra` that starts with `https = [...]` replaces the default HTTPS listener.
    pub fn unprepared(extra: &str) -> TestServer {
        let https = if extra.starts_with("https = ") { "" } else { "https = [\"127.0.0.1:0\"]\n" };
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let config_path = dir.path().join("tern.toml");
        let config = format!(
            "hostname = \"{HOSTNAME}\"\ndata_dir = \"{}\"\n[listen]\nsmtp = [\"127.0.0.1:0\"]\nhttp = [\"127.0.0.1:0\"]\nimap = [\"127.0.0.1:0\"]\nimaps = [\"127.0.0.1:0\"]\npop3 = [\"127.0.0.1:0\"]\npop3s = [\"127.0.0.1:0\"]\nmanagesieve = [\"127.0.0.1:0\"]\nsubmission = [\"127.0.0.1:0\"]\nsubmissions = [\"127.0.0.1:0\"]\n{https}{extra}\n",
            data.display()
        );
        std::fs::write(&config_path, config).expect("write config");
        let log_path = dir.path().join("serve.log");
        let unset: SocketAddr = "0.0.0.0:0".parse().unwrap();
        TestServer {
            dir,
            config_path,
            child: None,
            smtp: unset,
            http: unset,
            imap: unset,
            imaps: unset,
            pop3: unset,
            pop3s: unset,
            managesieve: unset,
            submission: unset,
            submissions: unset,
            https: unset,
            log_path,
        }
    }

    /// The usual set-up: domain `example.test`, users alice and bob (password `secret`), then start.
    pub fn started(extra: &str) -> TestServer {
        let mut s = TestServer::new(extra);
        s.ok(&["domain", "add", "example.test"]);
        s.ok_stdin(&["user", "add", "alice@example.test", "--password-stdin"], "secret\n");
        s.ok_stdin(&["user", "add", "bob@example.test", "--password-stdin"], "secret\n");
        s.launch();
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, "")
    }

    pub fn cli_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tern");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().expect("wait tern")
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_stdin(args, "")
    }

    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.cli_stdin(args, stdin);
        assert!(
            out.status.success(),
            "tern {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `tern serve` and waits until it has written its run file.
    pub fn launch(&mut self) {
        let run_file = self.data_dir().join("run.json");
        let _ = std::fs::remove_file(&run_file);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&self.config_path)
            .arg("serve")
            .env("RUST_LOG", "info,fjall=warn,lsm_tree=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tern serve");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&run_file)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && v["pid"].as_u64() == Some(u64::from(pid))
            {
                self.smtp = v["listeners"]["smtp"][0].as_str().unwrap().parse().unwrap();
                self.http = v["listeners"]["http"][0].as_str().unwrap().parse().unwrap();
                let addr = |name: &str| v["listeners"][name][0].as_str().and_then(|a| a.parse().ok());
                self.imap = addr("imap").unwrap_or(self.imap);
                self.imaps = addr("imaps").unwrap_or(self.imaps);
                self.pop3 = addr("pop3").unwrap_or(self.pop3);
                self.pop3s = addr("pop3s").unwrap_or(self.pop3s);
                self.managesieve = addr("managesieve").unwrap_or(self.managesieve);
                self.submission = addr("submission").unwrap_or(self.submission);
                self.submissions = addr("submissions").unwrap_or(self.submissions);
                self.https = addr("https").unwrap_or(self.https);
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("tern serve exited early ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "tern serve did not become ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe_kill(child.id(), "TERM");
        wait_timeout(&mut child, Duration::from_secs(40))
            .unwrap_or_else(|| panic!("tern did not stop:\n{}", self.log()))
    }

    /// SIGKILL: the crash case.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        unsafe_kill(child.id(), "KILL");
        let _ = child.wait();
    }

    /// Resident memory of the server in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn smtp(&self) -> Client<TcpStream> {
        Client::connect(self.smtp)
    }

    /// An IMAP connection, greeting read.
    pub fn imap(&self) -> Imap<TcpStream> {
        let mut c = Imap { c: Client::connect(self.imap), next: 0 };
        let greeting = c.line();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        c
    }

    /// An IMAP connection logged in as `user` (password `secret`).
    pub fn imap_login(&self, user: &str) -> Imap<TcpStream> {
        let mut c = self.imap();
        c.ok(&format!("LOGIN {user} secret"));
        c
    }

    /// Delivers a message over SMTP to one recipient.
    pub fn deliver(&self, to: &str, message: &[u8]) {
        let mut c = self.smtp();
        c.hello();
        let mut data = Vec::new();
        for line in message.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        data.extend_from_slice(b".\r\n");
        let r = c.transaction("sender@remote.test", &[to], &data);
        assert_eq!(r.code, 250, "{r:?}");
        c.expect("QUIT", 221);
    }

    /// Lines of `tern mail list` for a user's mailbox.
    pub fn mail_list(&self, user: &str, mailbox: &str) -> Vec<String> {
        self.ok(&["mail", "list", user, mailbox]).lines().map(str::to_string).collect()
    }

    pub fn mail_show(&self, user: &str, mailbox: &str, uid: u32) -> Vec<u8> {
        let out = self.cli(&["mail", "show", user, mailbox, &uid.to_string()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    pub fn http_get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.http).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (code, body)
    }
}

impl TestServer {
    /// `GET path` over TLS on the `https` listener with `Host: host` (the certificate is not
    /// checked); the status code and body.
    pub fn https_get(&self, host: &str, path: &str) -> (u16, String) {
        let mut client = Client::connect(self.https).into_tls();
        client.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes());
        let mut raw = Vec::new();
        let _ = client.stream.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (code, body)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An SMTP reply: code and text lines.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// A deliberately simple, blocking SMTP client that sends exactly the bytes it is given.
pub struct Client<S: Read + Write> {
    pub stream: S,
    buf: Vec<u8>,
}

impl Client<TcpStream> {
    pub fn from_stream(stream: TcpStream) -> Client<TcpStream> {
        Client { stream, buf: Vec::new() }
    }

    pub fn connect(addr: SocketAddr) -> Client<TcpStream> {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client { stream, buf: Vec::new() }
    }

    /// Hands the socket over for a TLS handshake (nothing may be buffered).
    pub fn into_tls(self) -> Client<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
        assert!(self.buf.is_empty(), "server sent data before the handshake");
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny))
                .with_no_client_auth();
        let conn = rustls::ClientConnection::new(Arc::new(config), HOSTNAME.try_into().unwrap()).unwrap();
        let mut stream = rustls::StreamOwned::new(conn, self.stream);
        stream.conn.complete_io(&mut stream.sock).expect("TLS handshake");
        Client { stream, buf: Vec::new() }
    }
}

impl<S: Read + Write> Client<S> {
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
        self.stream.flush().unwrap();
    }

    /// Reads one reply; `None` when the server closed the connection.
    pub fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line()?;
            let code: u16 =
                line.get(..3).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad reply line {line:?}"));
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                return Some(Reply { code, lines });
            }
        }
    }

    pub fn reply(&mut self) -> Reply {
        self.try_reply().expect("connection closed while waiting for a reply")
    }

    pub fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).take(i).collect();
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Sends a command and asserts the reply code.
    pub fn expect(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line);
        assert_eq!(r.code, code, "{line} -> {r:?}");
        r
    }

    pub fn greeting(&mut self) -> Reply {
        let r = self.reply();
        assert_eq!(r.code, 220, "{r:?}");
        r
    }

    /// Greeting + EHLO.
    pub fn hello(&mut self) -> Reply {
        self.greeting();
        self.expect("EHLO client.test", 250)
    }

    /// MAIL, RCPTs (each must be accepted), DATA with the (already stuffed) body; returns the
    /// final reply.
    pub fn transaction(&mut self, from: &str, to: &[&str], data: &[u8]) -> Reply {
        self.expect(&format!("MAIL FROM:<{from}>"), 250);
        for r in to {
            self.expect(&format!("RCPT TO:<{r}>"), 250);
        }
        self.expect("DATA", 354);
        self.send(data);
        self.reply()
    }
}

#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

/// A small RFC 5322 message (CRLF, terminated with `.CRLF`).
pub fn simple_message(subject: &str) -> Vec<u8> {
    format!("From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@remote.test>\r\n\r\nHello {subject}.\r\n.\r\n").into_bytes()
}

/// Runs a Python script from tests/clients with arguments; returns stdout.
pub fn python(script: &str, args: &[&str]) -> String {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/clients")
    .join(script);
    let out = Command::new(python_bin()).arg(path).args(args).output().expect("python3");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether an external program is available (tests that need it say so when it is not).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A raw IMAP client: sends a tagged command, collects the untagged lines (literals inlined)
/// up to the tagged completion.
pub struct Imap<S: Read + Write> {
    pub c: Client<S>,
    pub next: u32,
}

/// Responses to one command.
#[derive(Debug)]
pub struct ImapReply {
    /// Untagged responses and continuation requests, literals inlined.
    pub lines: Vec<String>,
    /// The tagged completion, without the tag.
    pub done: String,
}

impl ImapReply {
    pub fn ok(&self) -> bool {
        self.done.starts_with("OK")
    }
    pub fn all(&self) -> String {
        self.lines.join("\n")
    }
    /// Untagged lines starting with `prefix` (after "* ").
    pub fn untagged(&self, prefix: &str) -> Vec<&str> {
        self.lines.iter().filter_map(|l| l.strip_prefix("* ")).filter(|l| l.starts_with(prefix)).collect()
    }
}

impl<S: Read + Write> Imap<S> {
    /// One response line with any literals it announces appended.
    pub fn line(&mut self) -> String {
        let mut line = self.c.raw_line().expect("connection closed");
        while let Some(n) = line.rfind('{').and_then(|open| {
            line.strip_suffix('}').and_then(|l| l[open + 1..].trim_end_matches('+').parse::<usize>().ok())
        }) {
            let lit = self.c.read_exact(n);
            line.push_str("\r\n");
            line.push_str(&String::from_utf8_lossy(&lit));
            let rest = self.c.raw_line().expect("connection closed");
            line.push_str(&rest);
        }
        line
    }

    /// Runs `command`; returns the exact bytes of every literal in its responses (with the
    /// response text before each: `BINARY[1] ~{5}` and so on) and the tagged completion.
    pub fn literals(&mut self, command: &str) -> (Vec<(String, Vec<u8>)>, String) {
        self.next += 1;
        let tag = format!("t{}", self.next);
        self.send_line(&format!("{tag} {command}"));
        let mut out = Vec::new();
        loop {
            let mut line = self.c.raw_line().expect("connection closed");
            if let Some(done) = line.strip_prefix(&format!("{tag} ")) {
                return (out, done.to_string());
            }
            while let Some(n) = line.rfind('{').and_then(|open| {
                line.strip_suffix('}').and_then(|l| l[open + 1..].trim_end_matches('+').parse::<usize>().ok())
            }) {
                let lit = self.c.read_exact(n);
                out.push((line.clone(), lit));
                line = self.c.raw_line().expect("connection closed");
            }
        }
    }

    pub fn send_line(&mut self, line: &str) {
        self.c.send(format!("{line}\r\n").as_bytes());
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.c.send(bytes);
    }

    /// Sends `command` with a fresh tag and reads until its completion.
    pub fn run(&mut self, command: &str) -> ImapReply {
        self.next += 1;
        let tag = format!("t{}", self.next);
        self.send_line(&format!("{tag} {command}"));
        self.finish(&tag)
    }

    /// Reads responses until the tagged completion for `tag`.
    pub fn finish(&mut self, tag: &str) -> ImapReply {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            if let Some(done) = line.strip_prefix(&format!("{tag} ")) {
                return ImapReply { lines, done: done.to_string() };
            }
            lines.push(line);
        }
    }

    pub fn ok(&mut self, command: &str) -> ImapReply {
        let r = self.run(command);
        assert!(r.ok(), "{command} -> {r:?}");
        r
    }

    pub fn tag(&mut self) -> String {
        self.next += 1;
        format!("t{}", self.next)
    }
}

impl<S: Read + Write> Client<S> {
    /// One CRLF-terminated line (without CRLF); `None` at end of stream.
    pub fn raw_line(&mut self) -> Option<String> {
        self.read_line()
    }

    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => panic!("connection closed inside a literal"),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        self.buf.drain(..n).collect()
    }
}

/// A free TCP port on loopback (bound and released: good enough for tests).
/// A free TCP port below the kernel's ephemeral range (32768-60999): a port the kernel hands
/// out for `:0` can be taken as the source port of a test's outgoing connection before the
/// server that was meant to get it binds it ("address already in use").
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Test binaries of parallel runs start at different places.
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    loop {
        let port = (FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A free port for both UDP and TCP (the stub DNS serves both).
pub fn free_dns_port() -> u16 {
    loop {
        let port = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn clients_dir() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/clients")
}

/// The outside world of delivery tests (`tests/clients/mailworld.py`): stub DNS, an SMTP
/// sink playing remote MX hosts, an HTTPS server for MTA-STS.
pub struct World {
    child: Child,
    pub dir: tempfile::TempDir,
    pub dns_port: u16,
    pub sink_port: u16,
    pub sink_dir: PathBuf,
}

impl World {
    /// `records`: (name, type, value). `sink`: whether to run the SMTP sink (on `sink_port`).
    pub fn start(records: &[(&str, &str, &str)], sink_port: Option<u16>, extra: serde_json::Value) -> World {
        let dir = tempfile::tempdir().unwrap();
        let dns_port = free_dns_port();
        let sink_dir = dir.path().join("sink");
        let mut conf = serde_json::json!({
            "dns_port": dns_port,
            "records": records.iter().map(|(n, t, v)| serde_json::json!([n, t, v])).collect::<Vec<_>>(),
        });
        if let Some(port) = sink_port {
            let (cert, key) = self_signed(dir.path(), "sink.remote.test");
            conf["sink"] = serde_json::json!({"port": port, "dir": sink_dir, "tls_cert": cert, "tls_key": key});
        }
        if let serde_json::Value::Object(map) = extra {
            for (k, v) in map {
                conf[k] = v;
            }
        }
        let conf_path = dir.path().join("world.json");
        std::fs::write(&conf_path, serde_json::to_vec(&conf).unwrap()).unwrap();
        let mut child = Command::new(python_bin())
            .arg(clients_dir().join("mailworld.py"))
            .arg(&conf_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 mailworld.py");
        let mut out = child.stdout.take().unwrap();
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"ready\n") {
            match out.read(&mut byte) {
                Ok(1) => seen.push(byte[0]),
                _ => panic!("mailworld did not start: {}", String::from_utf8_lossy(&seen)),
            }
        }
        World { child, dir, dns_port, sink_port: sink_port.unwrap_or(0), sink_dir }
    }

    /// The messages the sink accepted so far: (envelope JSON, raw message).
    pub fn received(&self) -> Vec<(serde_json::Value, Vec<u8>)> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.sink_dir) else { return out };
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        for eml in names {
            let json = eml.with_extension("json");
            let (Ok(meta), Ok(raw)) = (std::fs::read(&json), std::fs::read(&eml)) else { continue };
            out.push((serde_json::from_slice(&meta).unwrap(), raw));
        }
        out
    }

    /// Waits until the sink has at least `n` messages.
    pub fn wait_received(&self, n: usize, timeout: Duration) -> Vec<(serde_json::Value, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "sink has {} of {n} messages", got.len());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate and key (PEM files) for `name`, made with openssl.
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={name}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// A test CA, and a certificate for `name` signed by it: (ca, cert, key).
pub fn ca_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    ca_signed_names(dir, &[name])
}

/// Like [`ca_signed`], for several names (the first is the file name).
pub fn ca_signed_names(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let name = names[0];
    let alt_names = names
        .iter()
        .map(|n| if n.parse::<std::net::IpAddr>().is_ok() { format!("IP:{n}") } else { format!("DNS:{n}") })
        .collect::<Vec<_>>()
        .join(",");
    let (ca, ca_key) = self_signed(dir, "tern-test-ca");
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let cert = dir.join(format!("{name}.crt"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        format!("subjectAltName={alt_names}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let status = Command::new("openssl").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
        assert!(status.success(), "openssl {args:?} failed");
    };
    let p = |p: &Path| p.to_str().unwrap().to_string();
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        &p(&key),
        "-out",
        &p(&csr),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&ca),
        "-CAkey",
        &p(&ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p(&ext),
        "-out",
        &p(&cert),
    ]);
    (ca, cert, key)
}

/// Runs a Python test client from `tests/clients`; returns (success, stdout, stderr).
pub fn python_result(script: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(python_bin()).arg(clients_dir().join(script)).args(args).output().expect("python3");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `f` until it returns `Some` or the time is up.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Python that has the Debian packages the tests install (`/usr/bin/python3`; a
/// `python3` earlier in PATH, from pyenv for instance, may not see them).
/// The Python environment with Playwright and schemathesis (`scripts/test.sh` makes it at
/// `$TERN_TEST_VENV`, by default `~/.cache/tern-venv`).
pub fn test_venv() -> PathBuf {
    std::env::var_os("TERN_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tern-venv"))
}

pub fn python_bin() -> &'static str {
    if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}
