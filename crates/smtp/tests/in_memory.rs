//! SMTP sessions in-process: the real session state machine, pipeline and embedded store,
//! driven over an in-memory duplex stream instead of a socket. No ports, no processes, no
//! sleeps; each test reads exactly the replies it expects.

use std::net::SocketAddr;
use std::sync::Arc;
use tern_directory::Directory;
use tern_smtp::{SmtpServer, SmtpSettings};
use tern_store::Store;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio_util::sync::CancellationToken;

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    server: Arc<SmtpServer>,
}

async fn world(service: &'static str) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(tern_store::embedded::EmbeddedStore::open(&dir.path().join("store"), 8).expect("store"));
    let directory = Directory::new(Arc::clone(&store), Some('+'));
    directory.domain_add("example.test", None).await.expect("domain");
    directory.user_add("alice@example.test", Some("secret")).await.expect("user");
    let mut config = tern_config::Config { hostname: "mx.example.test".into(), ..Default::default() };
    config.auth.plaintext_on_loopback = true;
    let settings = SmtpSettings::from_config(&config, service);
    let limits = tern_guard::ConnectionLimits::new(100, 10, vec![]);
    let auth = Arc::new(tern_guard::AuthGuard::from_config(&config));
    let memory = tern_guard::MessageMemory::new(64 << 20, dir.path().join("spool"));
    let pipeline = tern_pipeline::inbound(None, None);
    let server =
        SmtpServer::new(settings, directory, pipeline, None, limits, auth, None, memory, CancellationToken::new());
    World { _dir: dir, store, server }
}

/// The client's end of a session.
struct Peer {
    reader: BufReader<tokio::io::ReadHalf<DuplexStream>>,
    writer: tokio::io::WriteHalf<DuplexStream>,
}

impl Peer {
    fn start(world: &World, client: &str) -> Peer {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let client: SocketAddr = client.parse().expect("address");
        tokio::spawn(Arc::clone(&world.server).run_session(tern_tls::Stream::Plain(theirs), client, vec![]));
        let (read, writer) = tokio::io::split(ours);
        Peer { reader: BufReader::new(read), writer }
    }

    /// One reply, its lines joined with "\n" (the code of each kept).
    async fn reply(&mut self) -> String {
        let mut out = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).await.expect("read");
            assert!(n > 0, "the server closed the session; so far: {out}");
            out.push_str(line.trim_end());
            if line.as_bytes().get(3) != Some(&b'-') {
                return out;
            }
            out.push('\n');
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// A BDAT command and its chunk, sent exactly as given (no CRLF added).
    async fn chunk(&mut self, bytes: &[u8]) -> String {
        self.send(bytes).await;
        self.reply().await
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }
}

#[tokio::test]
async fn a_transaction_from_greeting_to_stored_message() {
    let w = world("smtp").await;
    let mut c = Peer::start(&w, "127.0.0.1:40000");
    assert!(c.reply().await.starts_with("220 mx.example.test"));
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(ehlo.contains("250-PIPELINING") && ehlo.contains("8BITMIME"), "{ehlo}");
    assert!(c.cmd("MAIL FROM:<sender@remote.test>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice+news@example.test>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<nobody@example.test>").await.starts_with("550 5.1.1"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"From: sender@remote.test\r\nSubject: in memory\r\n\r\n..a dot-stuffed line\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250"));
    assert!(c.cmd("QUIT").await.starts_with("221"));

    let account = w.store.account_by_address("alice@example.test").await.expect("lookup").expect("alice");
    let inbox = w.store.mailbox_by_name(account.id, "INBOX").await.expect("lookup").expect("inbox");
    let messages = w.store.message_list(inbox.id).await.expect("list");
    assert_eq!(messages.len(), 1);
}

#[tokio::test]
async fn commands_out_of_order_get_their_codes_and_the_session_goes_on() {
    let w = world("smtp").await;
    let mut c = Peer::start(&w, "127.0.0.1:40001");
    c.reply().await;
    assert!(c.cmd("MAIL FROM:<a@remote.test>").await.starts_with("503"), "MAIL before EHLO");
    c.cmd("EHLO client.test").await;
    assert!(c.cmd("RCPT TO:<alice@example.test>").await.starts_with("503"), "RCPT before MAIL");
    assert!(c.cmd("DATA").await.starts_with("503"), "DATA before RCPT");
    assert!(c.cmd("MAIL FROM:<a@remote.test> SIZE=99999999999").await.starts_with("552"), "too big");
    assert!(c.cmd("MAIL FROM:<a@remote.test> BODY=9BIT").await.starts_with("501"));
    assert!(c.cmd("FROB").await.starts_with("500"));
    assert!(c.cmd("NOOP").await.starts_with("250"));
    assert!(c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=").await.starts_with("502"), "no AUTH on port 25");
}

#[tokio::test]
async fn submission_authenticates_through_the_shared_sasl_driver() {
    let w = world("submission").await;
    let mut c = Peer::start(&w, "127.0.0.1:40002");
    c.reply().await;
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(ehlo.contains("AUTH PLAIN LOGIN SCRAM-SHA-256"), "{ehlo}");
    assert!(c.cmd("MAIL FROM:<alice@example.test>").await.starts_with("530"), "authentication first");
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd("YWxpY2VAZXhhbXBsZS50ZXN0").await, "334 UGFzc3dvcmQ6");
    assert!(c.cmd("c2VjcmV0").await.starts_with("235 2.7.0"));
    assert!(c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=").await.starts_with("503"), "only once");
}

/// Every state of the session (connected, greeted, in a transaction, receiving BDAT chunks)
/// and the commands that move between them or are refused in them.
#[tokio::test]
async fn each_state_admits_only_its_commands() {
    let w = world("smtp").await;
    let mut c = Peer::start(&w, "127.0.0.1:40003");
    c.reply().await;
    // Connected.
    assert!(c.cmd("RCPT TO:<alice@example.test>").await.starts_with("503 5.5.1"), "RCPT before EHLO");
    assert!(c.cmd("BDAT 0 LAST").await.starts_with("503 5.5.1"), "BDAT before EHLO");
    assert!(c.cmd("RSET").await.starts_with("250"), "RSET is fine anywhere");
    // Greeted, then in a transaction.
    c.cmd("EHLO client.test").await;
    assert!(c.cmd("MAIL FROM:<a@remote.test>").await.starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@remote.test>").await.starts_with("503 5.5.1 Nested"), "second MAIL");
    assert!(c.cmd("DATA").await.starts_with("554 5.5.1"), "DATA without recipients");
    assert!(c.cmd("RCPT TO:<alice@example.test>").await.starts_with("250"));
    // EHLO in a transaction ends it (RFC 5321 §4.1.4).
    c.cmd("EHLO client.test").await;
    assert!(c.cmd("RCPT TO:<alice@example.test>").await.starts_with("503"), "the transaction is gone");
    // Chunking: only BDAT until the last chunk.
    c.cmd("MAIL FROM:<a@remote.test>").await;
    c.cmd("RCPT TO:<alice@example.test>").await;
    assert!(c.chunk(b"BDAT 9\r\nSubject: ").await.starts_with("250 2.0.0 9 octets"));
    assert!(c.cmd("RCPT TO:<alice@example.test>").await.starts_with("503 5.5.1 RCPT not allowed during BDAT"));
    assert!(c.cmd("DATA").await.starts_with("503 5.5.1 DATA not allowed after BDAT"));
    assert!(c.cmd("MAIL FROM:<a@remote.test>").await.starts_with("503"), "MAIL while chunking");
    assert!(c.chunk(b"BDAT 9 LAST\r\nx\r\n\r\nbody").await.starts_with("250 2.0.0 Ok: queued"));
    // After the message: greeted again, a new transaction may start.
    assert!(c.chunk(b"BDAT 3 LAST\r\nabc").await.starts_with("503"), "no transaction after the last chunk");
    assert!(c.cmd("MAIL FROM:<a@remote.test>").await.starts_with("250"));
    c.cmd("RCPT TO:<alice@example.test>").await;
    c.chunk(b"BDAT 4\r\nabcd").await;
    assert!(c.cmd("RSET").await.starts_with("250"), "RSET ends the chunked transaction");
    assert!(c.chunk(b"BDAT 1 LAST\r\nx").await.starts_with("503"), "nothing to append to after RSET");
    let account = w.store.account_by_address("alice@example.test").await.expect("lookup").expect("alice");
    let inbox = w.store.mailbox_by_name(account.id, "INBOX").await.expect("lookup").expect("inbox");
    assert_eq!(w.store.message_list(inbox.id).await.expect("list").len(), 1, "only the completed message");
}
