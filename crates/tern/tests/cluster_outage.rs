//! Cluster mode when the database goes away for a while: clients are told to retry (SMTP 4xx,
//! IMAP `NO [UNAVAILABLE]`), `/readyz` says so to the balancer, nothing acknowledged is lost,
//! and the node recovers by itself when the database is back. Its own test binary, so its own
//! PostgreSQL server: stopping it does not disturb the other cluster tests.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_database_outage_gives_temporary_errors_and_the_node_recovers() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let options = runtime.block_on(tern_store_postgres::testing::database()).expect("test database");
    let pg = tern_store_postgres::testing::server().unwrap();
    let store = format!("[store]\nbackend = \"postgres\"\nurl = \"{}\"\npool_size = 4\n", options.url);
    let node = TestServer::started(&store);
    node.deliver("alice@example.test", &simple_message("before"));
    assert_eq!(node.http_get("/readyz").0, 200);
    let mut session = node.imap_login("alice@example.test");
    session.ok("SELECT INBOX");

    pg.stop().expect("stop PostgreSQL");
    wait_for("/readyz to turn 503", Duration::from_secs(10), || node.http_get("/readyz").0 == 503);
    // SMTP: a temporary refusal, at RCPT (the recipient cannot be looked up) or after DATA.
    let mut c = node.smtp();
    c.hello();
    c.expect("MAIL FROM:<sender@remote.test>", 250);
    let rcpt = c.cmd("RCPT TO:<alice@example.test>");
    if rcpt.code == 250 {
        c.expect("DATA", 354);
        c.send(b"Subject: during\r\n\r\nlost?\r\n.\r\n");
        let r = c.reply();
        assert_eq!(r.code / 100, 4, "{r:?}");
    } else {
        assert_eq!(rcpt.code / 100, 4, "{rcpt:?}");
    }
    // IMAP: a command that needs the store is told to retry; a new login too.
    let r = session.run("STATUS INBOX (MESSAGES)");
    assert!(r.done.starts_with("NO [UNAVAILABLE]"), "{r:?}");
    let mut fresh = node.imap();
    let r = fresh.run("LOGIN alice@example.test secret");
    assert!(r.done.starts_with("NO [UNAVAILABLE]"), "{r:?}");

    pg.start_again().expect("start PostgreSQL");
    wait_for("/readyz to turn 200", Duration::from_secs(20), || node.http_get("/readyz").0 == 200);
    node.deliver("alice@example.test", &simple_message("after"));
    let mut c = node.imap_login("alice@example.test");
    let r = c.ok("SELECT INBOX");
    assert!(r.lines.contains(&"* 2 EXISTS".to_string()), "the acknowledged messages, and only them: {r:?}");
    // The session that lived through the outage goes on.
    let r = session.ok("STATUS INBOX (MESSAGES)");
    assert!(r.all().contains("MESSAGES 2"), "{r:?}");
}
