//! POP3 sessions in-process: the real session state machine and embedded store over an
//! in-memory duplex stream. No ports, no processes, no sleeps.

use std::sync::Arc;
use tern_directory::Directory;
use tern_pop3::{Pop3Server, Pop3Settings};
use tern_store::{Delivery, DeliveryEnvelope, DeliveryTarget, Store};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio_util::sync::CancellationToken;

const MESSAGE: &[u8] = b"From: a@remote.test\r\nSubject: hi\r\n\r\n.a line that starts with a dot\r\nend\r\n";

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    server: Arc<Pop3Server>,
    inbox: tern_store::MailboxId,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(tern_store::embedded::EmbeddedStore::open(&dir.path().join("store"), 8).expect("store"));
    let directory = Directory::new(Arc::clone(&store), Some('+'));
    directory.domain_add("example.test", None).await.expect("domain");
    let (alice, _) = directory.user_add("alice@example.test", Some("secret")).await.expect("user");
    let envelope = DeliveryEnvelope { received_at: 1_790_000_000, ..Default::default() };
    store
        .deliver(Delivery::prepare(MESSAGE.to_vec(), envelope, vec![DeliveryTarget::inbox(alice.id)]))
        .await
        .expect("deliver");
    let inbox = store.mailbox_by_name(alice.id, "INBOX").await.expect("lookup").expect("inbox").id;
    let mut config = tern_config::Config { hostname: "mx.example.test".into(), ..Default::default() };
    config.auth.plaintext_on_loopback = true;
    let server = Pop3Server::new(
        Pop3Settings::from_config(&config),
        directory,
        None,
        tern_guard::ConnectionLimits::new(100, 10, vec![]),
        Arc::new(tern_guard::AuthGuard::from_config(&config)),
        CancellationToken::new(),
    );
    World { _dir: dir, store, server, inbox }
}

struct Peer {
    reader: BufReader<tokio::io::ReadHalf<DuplexStream>>,
    writer: tokio::io::WriteHalf<DuplexStream>,
}

impl Peer {
    fn start(world: &World) -> Peer {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let client = "127.0.0.1:40000".parse().expect("address");
        tokio::spawn(Arc::clone(&world.server).run_session(tern_tls::Stream::Plain(theirs), client));
        let (read, writer) = tokio::io::split(ours);
        Peer { reader: BufReader::new(read), writer }
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).await.expect("read");
        assert!(n > 0, "the server closed the session");
        line.trim_end_matches("\r\n").to_string()
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).await.expect("write");
        self.line().await
    }

    /// The body of a multi-line answer, bytes as sent (dot-stuffed), up to ".\r\n".
    async fn multiline(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            self.reader.read_until(b'\n', &mut line).await.expect("read");
            if line == b".\r\n" {
                return out;
            }
            out.extend_from_slice(&line);
        }
    }
}

#[tokio::test]
async fn a_session_reads_byte_exact_and_deletes_durably_at_quit() {
    let w = world().await;
    let mut c = Peer::start(&w);
    assert!(c.line().await.starts_with("+OK"));
    assert!(c.cmd("CAPA").await.starts_with("+OK"));
    let caps = String::from_utf8(c.multiline().await).expect("utf-8");
    assert!(caps.contains("USER\r\n") && caps.contains("SASL PLAIN LOGIN SCRAM-SHA-256\r\n"), "{caps}");
    assert!(c.cmd("STAT").await.starts_with("-ERR"), "not before login");
    assert!(c.cmd("USER alice@example.test").await.starts_with("+OK"));
    assert!(c.cmd("PASS secret").await.starts_with("+OK"));
    assert_eq!(c.cmd("STAT").await, format!("+OK 1 {}", MESSAGE.len()));
    assert!(c.cmd("RETR 1").await.starts_with("+OK"));
    let body = c.multiline().await;
    assert_eq!(
        body,
        MESSAGE.to_vec().into_iter().fold(Vec::new(), |mut v, b| {
            // RFC 1939 §3: a line starting with "." is sent with one more.
            if b == b'.' && (v.is_empty() || v.ends_with(b"\n")) {
                v.push(b'.');
            }
            v.push(b);
            v
        })
    );
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert!(c.cmd("RETR 1").await.starts_with("-ERR"), "a deleted message is gone from the session");
    assert_eq!(w.store.message_list(w.inbox).await.expect("list").len(), 1, "nothing deleted before QUIT");
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    // The +OK after QUIT is the promise: the message is gone from the store.
    assert_eq!(w.store.message_list(w.inbox).await.expect("list").len(), 0);
    let mut rest = Vec::new();
    c.reader.read_to_end(&mut rest).await.expect("read");
    assert!(rest.is_empty(), "the session ends after QUIT");
}

#[tokio::test]
async fn auth_runs_through_the_shared_sasl_driver() {
    let w = world().await;
    let mut c = Peer::start(&w);
    c.line().await;
    assert_eq!(c.cmd("AUTH LOGIN").await, "+ VXNlcm5hbWU6");
    assert_eq!(c.cmd("YWxpY2VAZXhhbXBsZS50ZXN0").await, "+ UGFzc3dvcmQ6");
    assert!(c.cmd("d3Jvbmc=").await.starts_with("-ERR [AUTH]"), "wrong password");
    assert!(c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=").await.starts_with("+OK"));
    assert_eq!(c.cmd("STAT").await, format!("+OK 1 {}", MESSAGE.len()));
}
