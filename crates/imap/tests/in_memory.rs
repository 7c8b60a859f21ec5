//! IMAP sessions in-process: the real session, store and change notifications over an
//! in-memory duplex stream (wrapped as the session's stream), no ports or processes.

use std::sync::Arc;
use tern_directory::Directory;
use tern_imap::{ImapServer, ImapSettings};
use tern_store::Store;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio_util::sync::CancellationToken;

struct World {
    _dir: tempfile::TempDir,
    server: Arc<ImapServer>,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(tern_store::embedded::EmbeddedStore::open(&dir.path().join("store"), 8).expect("store"));
    let directory = Directory::new(Arc::clone(&store), Some('+'));
    directory.domain_add("example.test", None).await.expect("domain");
    directory.user_add("alice@example.test", Some("secret")).await.expect("user");
    let mut config = tern_config::Config { hostname: "mx.example.test".into(), ..Default::default() };
    config.auth.plaintext_on_loopback = true;
    let server = ImapServer::new(
        ImapSettings::from_config(&config),
        directory,
        None,
        tern_guard::ConnectionLimits::new(100, 10, vec![]),
        Arc::new(tern_guard::AuthGuard::from_config(&config)),
        tern_guard::MessageMemory::new(64 << 20, dir.path().join("spool")),
        CancellationToken::new(),
    );
    World { _dir: dir, server }
}

struct Peer {
    reader: BufReader<tokio::io::ReadHalf<DuplexStream>>,
    writer: tokio::io::WriteHalf<DuplexStream>,
}

impl Peer {
    fn start(world: &World) -> Peer {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let stream = tern_tls::Stream::Wrapped { inner: Box::new(theirs), tls: None };
        let client = "127.0.0.1:40000".parse().expect("address");
        tokio::spawn(Arc::clone(&world.server).run_session(stream, client));
        let (read, writer) = tokio::io::split(ours);
        Peer { reader: BufReader::new(read), writer }
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).await.expect("read");
        assert!(n > 0, "the server closed the session");
        line.trim_end_matches("\r\n").to_string()
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// Sends a tagged command; returns its untagged lines and the tagged completion.
    async fn run(&mut self, tag: &str, command: &str) -> (Vec<String>, String) {
        self.send(format!("{tag} {command}\r\n").as_bytes()).await;
        let mut untagged = Vec::new();
        loop {
            let line = self.line().await;
            if line.starts_with(&format!("{tag} ")) {
                return (untagged, line);
            }
            untagged.push(line);
        }
    }
}

#[tokio::test]
async fn login_append_search_fetch_and_expunge() {
    let w = world().await;
    let mut c = Peer::start(&w);
    assert!(c.line().await.starts_with("* OK"));
    let (_, done) = c.run("a1", "LOGIN alice@example.test secret").await;
    assert!(done.starts_with("a1 OK"), "{done}");
    let message = "From: bob@remote.test\r\nSubject: in memory\r\n\r\nhello there\r\n";
    c.send(format!("a2 APPEND INBOX (\\Seen) {{{}+}}\r\n{message}\r\n", message.len()).as_bytes()).await;
    let done = c.line().await;
    assert!(done.starts_with("a2 OK [APPENDUID "), "{done}");
    let (untagged, done) = c.run("a3", "SELECT INBOX").await;
    assert!(done.starts_with("a3 OK [READ-WRITE]"), "{done}");
    assert!(untagged.contains(&"* 1 EXISTS".to_string()), "{untagged:?}");
    let (untagged, _) = c.run("a4", "UID SEARCH BODY there").await;
    assert_eq!(untagged, vec!["* SEARCH 1"]);
    let (untagged, _) = c.run("a5", "FETCH 1 (FLAGS RFC822.SIZE)").await;
    assert_eq!(untagged, vec![format!("* 1 FETCH (FLAGS (\\Seen \\Recent) RFC822.SIZE {})", message.len())]);
    let (_, done) = c.run("a6", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    assert!(done.starts_with("a6 OK"));
    let (untagged, done) = c.run("a7", "EXPUNGE").await;
    assert_eq!((untagged, done.starts_with("a7 OK")), (vec!["* 1 EXPUNGE".to_string()], true));
    let (_, done) = c.run("a8", "FROB").await;
    assert!(done.starts_with("a8 BAD"), "{done}");
    let (untagged, done) = c.run("a9", "LOGOUT").await;
    assert!(untagged[0].starts_with("* BYE") && done.starts_with("a9 OK"));
}

/// The three states of RFC 9051 §3 and the commands each admits.
#[tokio::test]
async fn each_state_admits_only_its_commands() {
    let w = world().await;
    let mut c = Peer::start(&w);
    assert!(c.line().await.starts_with("* OK"));
    let expect = |done: String, start: &str| assert!(done.starts_with(start), "{done}, wanted {start}");
    // Not authenticated: any-state commands, and the ways to log in.
    expect(c.run("n1", "NOOP").await.1, "n1 OK");
    expect(c.run("n2", "SELECT INBOX").await.1, "n2 BAD Log in first");
    expect(c.run("n3", "FETCH 1 FLAGS").await.1, "n3 BAD Log in first");
    expect(c.run("n4", "LOGIN alice@example.test secret").await.1, "n4 OK");
    // Authenticated.
    expect(c.run("a1", "LOGIN alice@example.test secret").await.1, "a1 BAD Already logged in");
    expect(c.run("a2", "FETCH 1 FLAGS").await.1, "a2 BAD No mailbox selected");
    expect(c.run("a3", "CLOSE").await.1, "a3 BAD No mailbox selected");
    expect(c.run("a4", "ENABLE CONDSTORE").await.1, "a4 OK");
    expect(c.run("a5", "SELECT INBOX").await.1, "a5 OK [READ-WRITE]");
    // Selected.
    expect(c.run("s1", "ENABLE QRESYNC").await.1, "s1 BAD ENABLE is not allowed");
    expect(c.run("s2", "UID SEARCH ALL").await.1, "s2 OK");
    expect(c.run("s3", "STATUS INBOX (MESSAGES)").await.1, "s3 OK");
    expect(c.run("s4", "EXAMINE INBOX").await.1, "s4 OK [READ-ONLY]");
    expect(c.run("s5", "UNSELECT").await.1, "s5 OK");
    // Back to authenticated.
    expect(c.run("b1", "UID SEARCH ALL").await.1, "b1 BAD No mailbox selected");
    let (untagged, done) = c.run("b2", "LOGOUT").await;
    expect(done, "b2 OK");
    assert_eq!(untagged, vec!["* BYE Tern logging out"]);
}

/// 8-bit header text: a classic client gets it in literals (RFC 3501 §4.3), a UTF-8 client as
/// quoted strings (RFC 6855 §3); the cached, pre-rendered forms and the structure rendered
/// from the whole tree (with a section in the same FETCH) are the same bytes.
#[tokio::test]
async fn eight_bit_headers_reach_each_client_in_its_form() {
    let w = world().await;
    let mut c = Peer::start(&w);
    assert!(c.line().await.starts_with("* OK"));
    let (_, done) = c.run("a1", "LOGIN alice@example.test secret").await;
    assert!(done.starts_with("a1 OK"), "{done}");
    let message = "From: bob@remote.test\r\nSubject: Grüße\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: image/png; name=\"bild-ü.png\"\r\n\r\nxx\r\n--b--\r\n";
    c.send(format!("a2 APPEND INBOX {{{}+}}\r\n{message}\r\n", message.len()).as_bytes()).await;
    assert!(c.line().await.starts_with("a2 OK"));
    assert!(c.run("a3", "SELECT INBOX").await.1.starts_with("a3 OK"));
    let (untagged, _) = c.run("a4", "FETCH 1 ENVELOPE").await;
    let envelope = untagged.join("\n");
    assert!(envelope.starts_with("* 1 FETCH (ENVELOPE (NIL {7}\nGrüße "), "{envelope}");
    let (untagged, _) = c.run("a5", "FETCH 1 BODYSTRUCTURE").await;
    let cached = untagged.join("\n");
    assert!(cached.contains("\"image\" \"png\" (\"name\" {11}\nbild-ü.png)"), "{cached}");
    // With a section, the full summary is read and the structure rendered from its tree.
    let (untagged, _) = c.run("a6", "FETCH 1 (BODYSTRUCTURE BODY.PEEK[1])").await;
    let rendered = untagged.join("\n");
    let structure =
        |s: &str| s[s.find("BODYSTRUCTURE").expect("item")..s.find(" BODY[1]").expect("section")].to_string();
    assert_eq!(structure(&rendered), cached["* 1 FETCH (".len()..cached.len() - 1].to_string());

    let mut u = Peer::start(&w);
    assert!(u.line().await.starts_with("* OK"));
    assert!(u.run("b1", "LOGIN alice@example.test secret").await.1.starts_with("b1 OK"));
    assert!(u.run("b2", "ENABLE UTF8=ACCEPT").await.1.starts_with("b2 OK"));
    assert!(u.run("b3", "SELECT INBOX").await.1.starts_with("b3 OK"));
    let (untagged, _) = u.run("b4", "FETCH 1 (ENVELOPE BODYSTRUCTURE)").await;
    assert_eq!(untagged.len(), 1, "{untagged:?}");
    assert!(untagged[0].starts_with("* 1 FETCH (ENVELOPE (NIL \"Grüße\" "), "{untagged:?}");
    assert!(untagged[0].contains("\"image\" \"png\" (\"name\" \"bild-ü.png\")"), "{untagged:?}");
    // ENVELOPE alone comes from the cache, whose forms are for classic clients.
    let (untagged, _) = u.run("b5", "FETCH 1 ENVELOPE").await;
    assert!(untagged.len() == 1 && untagged[0].starts_with("* 1 FETCH (ENVELOPE (NIL \"Grüße\" "), "{untagged:?}");
}
