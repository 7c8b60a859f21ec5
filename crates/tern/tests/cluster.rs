//! Cluster mode end to end: several real `tern serve` processes on one PostgreSQL database
//! (a private server the test starts), talked to over the wire.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// A test database, and the `[store]` section that points a node at it.
fn cluster_store() -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let options = runtime.block_on(tern_store_postgres::testing::database()).expect("test database");
    format!("[store]\nbackend = \"postgres\"\nurl = \"{}\"\npool_size = 8\n", options.url)
}

/// A second node on the same database: its own data directory and ports, nothing set up.
fn another_node(store: &str) -> TestServer {
    let mut node = TestServer::unprepared(store);
    node.launch();
    node
}

#[test]
fn nodes_share_mail_directory_and_changes() {
    let store = cluster_store();
    let a = TestServer::started(&store);
    let b = another_node(&store);

    // IDLE on node B is woken by a delivery on node A.
    let mut idle = b.imap_login("alice@example.test");
    idle.ok("SELECT INBOX");
    let tag = idle.tag();
    idle.send_line(&format!("{tag} IDLE"));
    assert_eq!(idle.line(), "+ idling");
    let started = Instant::now();
    a.deliver("alice@example.test", simple_message("across nodes").as_slice());
    let delivered = started.elapsed();
    assert_eq!(idle.line(), "* 1 EXISTS");
    let woke = started.elapsed();
    assert!(woke - delivered < Duration::from_secs(1), "IDLE on B took {:?} after A's 250", woke - delivered);
    idle.send_line("DONE");
    assert!(idle.finish(&tag).ok());

    // The message reads the same on both nodes, with the same UID and UIDVALIDITY.
    let fetch = |node: &TestServer| {
        let mut c = node.imap_login("alice@example.test");
        let status = c.ok("STATUS INBOX (UIDVALIDITY UIDNEXT MESSAGES)").all();
        c.ok("SELECT INBOX");
        let (literals, _) = c.literals("UID FETCH 1 BODY.PEEK[]");
        (status, literals.into_iter().map(|(_, body)| body).collect::<Vec<_>>())
    };
    let (status_a, body_a) = fetch(&a);
    let (status_b, body_b) = fetch(&b);
    assert_eq!(status_a, status_b);
    assert_eq!(body_a, body_b);
    assert!(String::from_utf8_lossy(&body_b[0]).contains("across nodes"));

    // A password changed through node A is refused by node B at once.
    a.ok_stdin(&["user", "passwd", "alice@example.test", "--password-stdin"], "changed\n");
    let mut c = b.imap();
    let r = c.run("LOGIN alice@example.test secret");
    assert!(!r.ok(), "the old password still works on node B: {r:?}");
    let mut c = b.imap();
    c.ok("LOGIN alice@example.test changed");
    // And a user added on B receives mail through A.
    b.ok_stdin(&["user", "add", "carol@example.test", "--password-stdin"], "secret\n");
    a.deliver("carol@example.test", simple_message("to the new user").as_slice());
    let mut carol = b.imap_login("carol@example.test");
    let exists = carol.ok("SELECT INBOX");
    assert!(exists.lines.contains(&"* 1 EXISTS".to_string()), "{exists:?}");
}

/// The SCRAM salt a node offers for a user (the first server message's `s=`).
fn scram_salt(node: &TestServer, user: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut c = node.imap();
    let tag = c.tag();
    c.send_line(&format!("{tag} AUTHENTICATE SCRAM-SHA-256 {}", b64.encode(format!("n,,n={user},r=nonce"))));
    let challenge = c.line();
    let server_first = String::from_utf8(b64.decode(challenge.trim_start_matches("+ ")).unwrap()).unwrap();
    c.send_line("*");
    c.finish(&tag);
    server_first.split(',').find_map(|p| p.strip_prefix("s=")).unwrap().to_string()
}

#[test]
fn failed_logins_on_one_node_ban_the_address_on_all() {
    let store = cluster_store();
    let limits = "[limits]\nexempt = []\nauth_failures_before_ban = 4\n";
    let a = TestServer::started(&format!("{store}{limits}"));
    let b = another_node(&format!("{store}{limits}"));

    // One secret for the cluster: an unknown user's made-up salt is the same on every node
    // (a per-node salt would tell an attacker which users do not exist). Two cancelled
    // exchanges: two failures of the four allowed.
    assert_eq!(scram_salt(&a, "nobody@example.test"), scram_salt(&b, "nobody@example.test"));

    // Two more failures on node A: the fourth bans the address there...
    for i in 0..2 {
        let mut c = a.imap();
        let r = c.run(&format!("LOGIN alice@example.test wrong{i}"));
        assert!(r.done.contains("AUTHENTICATIONFAILED"), "{r:?}");
    }
    let mut c = Imap { c: Client::connect(a.imap), next: 0 };
    assert!(c.line().starts_with("* BYE [UNAVAILABLE]"));
    // ...and on node B, which saw none of them (within a second or two of the last).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Imap { c: Client::connect(b.imap), next: 0 };
        let greeting = c.line();
        if greeting.starts_with("* BYE [UNAVAILABLE]") {
            break;
        }
        assert!(Instant::now() < deadline, "node B does not refuse the banned address: {greeting}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every service of node B refuses it (the ban is checked at connect).
    let greeting = b.smtp().reply();
    assert_eq!(greeting.code, 421, "{greeting:?}");
}
