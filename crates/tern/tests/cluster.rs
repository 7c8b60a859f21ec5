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

/// HAProxy in front of nodes, in TCP mode with PROXY v2 (sent from 127.0.0.2, the only
/// address the nodes trust for it) and health checks on `/readyz`; stopped when dropped.
struct Balancer {
    child: std::process::Child,
    smtp: std::net::SocketAddr,
    /// The nodes' HTTP listeners (API and web admin) behind HAProxy in HTTP mode, which
    /// names the client in `X-Forwarded-For`.
    admin: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Balancer {
    fn start(nodes: &[&TestServer]) -> Balancer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let admin_port = free_port();
        let mut servers = String::new();
        let mut admins = String::new();
        for (i, n) in nodes.iter().enumerate() {
            servers.push_str(&format!("    server n{i} {} port {}\n", n.smtp, n.http.port()));
            admins.push_str(&format!("    server a{i} {}\n", n.http));
        }
        let config = format!(
            "global\n    maxconn 2000\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n    \
             retries 3\n    option redispatch\n\
             frontend smtp\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\
             backend nodes\n    balance roundrobin\n    option httpchk GET /readyz\n    \
             default-server send-proxy-v2 source 127.0.0.2 check inter 300ms fall 1 rise 2\n{servers}\
             frontend admin\n    mode http\n    bind 127.0.0.1:{admin_port}\n    default_backend admins\n\
             backend admins\n    mode http\n    balance roundrobin\n    option forwardfor\n    \
             option httpchk GET /readyz\n    \
             default-server source 127.0.0.2 check inter 300ms fall 1 rise 2\n{admins}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = std::process::Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("haproxy (Debian package haproxy)");
        let smtp: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Up once it accepts and a node greets through it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(stream) = std::net::TcpStream::connect(smtp) {
                stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                if Client::from_stream(stream).try_reply().is_some_and(|r| r.code == 220) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "HAProxy did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        let admin = format!("127.0.0.1:{admin_port}").parse().unwrap();
        Balancer { child, smtp, admin, _dir: dir }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection from a given loopback address (127.0.0.3 stands for a client on the
/// internet: the nodes must see it, not the balancer's 127.0.0.2).
fn connect_from(source: &str, to: std::net::SocketAddr) -> std::io::Result<Client<std::net::TcpStream>> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&format!("{source}:0").parse::<std::net::SocketAddr>().unwrap().into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(Client::from_stream(stream))
}

/// One API request from `source` through the balancer's HTTP frontend: the status (0 when
/// there is no answer).
fn api_status(source: &str, balancer: &Balancer, token: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut c) = connect_from(source, balancer.admin) else { return 0 };
    let request = format!(
        "GET /api/v1/status HTTP/1.1\r\nHost: admin.test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    if c.stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut text = String::new();
    let _ = c.stream.read_to_string(&mut text);
    text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

/// HAProxy in HTTP mode before two nodes (`option forwardfor`): a token guesser is banned by
/// its own address on every node, not the proxy, and the clients beside it go on.
#[test]
fn the_api_behind_an_http_proxy_bans_the_guesser_not_the_proxy() {
    if !have("haproxy") {
        panic!("haproxy is not installed (scripts/test.sh installs it)");
    }
    let store = cluster_store();
    let extra =
        format!("proxy_from = [\"127.0.0.2/32\"]\n{store}[limits]\nexempt = []\nauth_failures_before_ban = 3\n");
    let first = TestServer::started(&extra);
    let second = another_node(&extra);
    let balancer = Balancer::start(&[&first, &second]);
    let token =
        first.ok(&["token", "create", "ops", "--scope", "admin"]).lines().last().unwrap_or_default().to_string();
    // Through the proxy, the token works on both nodes (round robin).
    for _ in 0..2 {
        assert_eq!(api_status("127.0.0.4", &balancer, &token), 200);
    }
    for i in 0..3 {
        assert_eq!(api_status("127.0.0.3", &balancer, &format!("tern_guess{i}")), 401);
    }
    // Banned on both nodes (each answers one of two requests; the ban reaches the node that
    // saw fewer failures through the database within a second or two).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answers = [api_status("127.0.0.3", &balancer, &token), api_status("127.0.0.3", &balancer, &token)];
        if answers == [429, 429] {
            break;
        }
        assert!(Instant::now() < deadline, "the guesser is not banned on every node: {answers:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The client beside it, and the proxy's own connections (health checks), are not.
    for _ in 0..2 {
        assert_eq!(api_status("127.0.0.4", &balancer, &token), 200);
    }
    let (code, _) = first.http_get("/readyz");
    assert_eq!(code, 200);
}

/// A web admin session made on one node works on the other (the sessions are in the
/// database), a message left by one node is shown by the other, and a sign-out on either
/// ends it on both at once.
#[test]
fn a_web_session_is_known_to_every_node() {
    use common::web::{http, sign_in};
    let store = cluster_store();
    let first = TestServer::started(&store);
    let second = another_node(&store);
    let (cookie, csrf) = sign_in(&first, "alice@example.test", "secret").unwrap();
    assert_eq!(http(&second, "GET", "/admin/account", &cookie, None, None).code, 200);
    let form = format!("csrf={csrf}&name=tablet");
    assert_eq!(http(&first, "POST", "/admin/account/app-passwords", &cookie, Some(&form), None).code, 200);
    let delete = format!("csrf={csrf}");
    let r = http(&second, "POST", "/admin/account/app-passwords/tablet/delete", &cookie, Some(&delete), None);
    assert_eq!(r.code, 303, "a form made on one node is accepted by the other");
    let page = http(&first, "GET", "/admin/account", &cookie, None, None);
    assert!(page.body.contains("role=\"status\""), "the other node's message: {}", page.body);
    assert_eq!(http(&second, "POST", "/admin/logout", &cookie, Some(&format!("csrf={csrf}")), None).code, 303);
    assert_eq!(http(&first, "GET", "/admin/account", &cookie, None, None).code, 303, "signed out everywhere");
}

/// One SMTP attempt through the balancer; true when the message got its 250.
fn send_once(balancer: &Balancer, message_id: &str) -> bool {
    let Ok(mut c) = connect_from("127.0.0.3", balancer.smtp) else { return false };
    let step = |c: &mut Client<std::net::TcpStream>, line: &str, code: u16| -> Option<()> {
        if !line.is_empty() {
            c.stream.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        }
        (c.try_reply()?.code == code).then_some(())
    };
    use std::io::Write;
    let attempt = (|| {
        step(&mut c, "", 220)?;
        step(&mut c, "EHLO client.test", 250)?;
        step(&mut c, "MAIL FROM:<sender@remote.test>", 250)?;
        step(&mut c, "RCPT TO:<alice@example.test>", 250)?;
        step(&mut c, "DATA", 354)?;
        let body = format!(
            "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: load\r\nMessage-ID: <{message_id}>\r\n\r\nbody\r\n.\r\n"
        );
        step(&mut c, body.trim_end_matches("\r\n"), 250)?;
        Some(())
    })();
    attempt.is_some()
}

#[test]
fn three_nodes_behind_haproxy_lose_no_acknowledged_mail_when_one_is_killed() {
    if !have("haproxy") {
        panic!("haproxy is not installed (scripts/test.sh installs it)");
    }
    let store = cluster_store();
    // (The harness's config ends inside [listen].)
    let extra = format!("proxy_from = [\"127.0.0.2/32\"]\n{store}[limits]\nexempt = []\n");
    // Rates would refuse one busy client; this test is about losing nothing.
    let extra =
        format!("{extra}[inbound]\nmax_connections_per_minute_per_ip = 0\nmax_messages_per_minute_per_ip = 0\n");
    let first = TestServer::started(&extra);
    let second = another_node(&extra);
    let mut third = another_node(&extra);
    let balancer = Balancer::start(&[&first, &second, &third]);

    // Four clients send through the balancer; a third of the way in, node three dies.
    let acknowledged = std::sync::Mutex::new(Vec::new());
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let failed_attempts = std::sync::atomic::AtomicUsize::new(0);
    const CLIENTS: usize = 4;
    const EACH: usize = 30;
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (balancer, acknowledged, sent, failed_attempts) = (&balancer, &acknowledged, &sent, &failed_attempts);
            scope.spawn(move || {
                for m in 0..EACH {
                    // Like an MTA: an attempt without a 250 is tried again (a new Message-ID
                    // per attempt tells them apart).
                    for attempt in 0.. {
                        let id = format!("c{client}.m{m}.a{attempt}@load.test");
                        if send_once(balancer, &id) {
                            acknowledged.lock().unwrap().push(id);
                            break;
                        }
                        failed_attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        assert!(attempt < 20, "no node accepts {id}");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
        while sent.load(std::sync::atomic::Ordering::SeqCst) < CLIENTS * EACH / 3 {
            std::thread::sleep(Duration::from_millis(20));
        }
        third.kill9();
    });

    // Every acknowledged message is in the mailbox exactly once.
    let acknowledged = acknowledged.into_inner().unwrap();
    eprintln!("attempts without a 250 (retried): {}", failed_attempts.into_inner());
    assert_eq!(acknowledged.len(), CLIENTS * EACH);
    let mut imap = first.imap_login("alice@example.test");
    imap.ok("SELECT INBOX");
    let headers = imap.ok("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID RECEIVED AUTHENTICATION-RESULTS)])").all();
    for id in &acknowledged {
        let n = headers.matches(&format!("<{id}>")).count();
        assert_eq!(n, 1, "{id} is stored {n} times");
    }
    // Through the balancer, the nodes saw the client's address from the PROXY v2 header.
    assert!(
        headers.contains("[127.0.0.3]"),
        "Received does not name the client: {}",
        &headers[..500.min(headers.len())]
    );
    assert!(headers.contains("policy.iprev=127.0.0.3"), "Authentication-Results does not name the client");
    assert!(!headers.contains("127.0.0.2"), "the balancer's address leaked into the trace fields");
    // The load was spread: each node accepted some of it.
    for (name, node) in [("first", &first), ("second", &second), ("third", &third)] {
        assert!(node.log().contains("message accepted"), "node {name} accepted nothing");
    }
}

/// A queue entry whose node dies in the middle of its delivery is delivered by another node
/// once the lease ends (at least once, never lost).
#[test]
fn a_killed_nodes_queue_entry_is_delivered_by_another_after_its_lease() {
    let sink_port = free_port();
    let world = World::start(
        &[("remote.test", "MX", "10 mx.remote.test."), ("mx.remote.test", "A", "127.0.0.1")],
        Some(sink_port),
        serde_json::json!({}),
    );
    let store = cluster_store();
    let config = format!(
        "{store}[dns]\nnameservers = [\"127.0.0.1:{}\"]\ntimeout_seconds = 2\n[delivery]\nsmtp_port = {}\n\
         retry_initial_seconds = 1\nretry_max_seconds = 2\nconnect_timeout_seconds = 3\ndelay_notice_seconds = 0\n\
         lease_seconds = 3\n",
        world.dns_port, world.sink_port
    );
    let mut a = TestServer::started(&config);
    // The sink holds this recipient's DATA for 8 seconds: node A is mid-delivery when killed.
    let text = "From: alice@example.test\r\nTo: stall@remote.test\r\nSubject: leased\r\n\r\nhello\r\n";
    let path = a.dir.path().join("msg.eml");
    std::fs::write(&path, text).unwrap();
    let port = a.submission.port().to_string();
    let (ok, out, err) = python_result(
        "submit.py",
        &[
            "--port",
            &port,
            "--starttls",
            "--user",
            "alice@example.test",
            "--password",
            "secret",
            "--from",
            "alice@example.test",
            "--to",
            "stall@remote.test",
            "--message",
            path.to_str().unwrap(),
        ],
    );
    assert!(ok, "submission failed: {out}{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.log().contains("stall@remote.test") && !a.ok(&["queue", "list"]).contains("stall@remote.test") {
        assert!(Instant::now() < deadline, "nothing queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!a.log().contains("\"delivered\"") && !a.log().contains(" delivered "), "delivered before the kill");
    a.kill9();

    // Node B was not running when the entry was claimed; it takes it once the lease ends.
    let b = another_node(&config);
    let got = world.wait_received(1, Duration::from_secs(40));
    assert!(got.iter().any(|(envelope, _)| envelope["rcpt_tos"][0] == "stall@remote.test"), "{got:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = b.log();
        if log.contains("delivered") && log.contains("stall@remote.test") {
            break;
        }
        assert!(Instant::now() < deadline, "node B did not deliver the entry:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // And the queue is empty from any node.
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.ok(&["queue", "list"]).contains("stall@remote.test") {
        assert!(Instant::now() < deadline, "the entry is still queued");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `tern store migrate`: a single-node server moves onto PostgreSQL and its IMAP clients see
/// the same mailbox (UIDVALIDITY, UIDs, flags), so they do not resync.
#[test]
fn a_single_node_moves_to_postgres_without_clients_resyncing() {
    let mut node = TestServer::started("");
    for i in 0..3 {
        node.deliver("alice@example.test", &simple_message(&format!("before {i}")));
    }
    let look = |node: &TestServer| {
        let mut c = node.imap_login("alice@example.test");
        let status = c.ok("STATUS INBOX (UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ)").all();
        c.ok("SELECT INBOX");
        c.ok("UID STORE 2 +FLAGS.SILENT (\\Flagged)");
        let flags = c.ok("UID FETCH 1:* (FLAGS)").all();
        (status, flags)
    };
    let (status_before, _) = look(&node);
    node.stop();

    let store = cluster_store();
    let url = store.lines().find_map(|l| l.strip_prefix("url = \"")).unwrap().trim_end_matches('"').to_string();
    let out = node.ok(&["store", "migrate", "--to", &url]);
    assert!(out.contains("3 messages"), "{out}");
    let config = std::fs::read_to_string(&node.config_path).unwrap();
    std::fs::write(&node.config_path, format!("{config}{store}")).unwrap();
    // The embedded store is out of the way: whatever the node shows comes from PostgreSQL.
    std::fs::rename(node.data_dir().join("store"), node.dir.path().join("embedded-store")).unwrap();
    node.launch();
    let mut c = node.imap_login("alice@example.test");
    let status_after = c.ok("STATUS INBOX (UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ)").all();
    // The flag set before the move was stored after STATUS: compare UIDVALIDITY/UIDNEXT/MESSAGES.
    let keep = |s: &str| s.split("HIGHESTMODSEQ").next().unwrap().to_string();
    assert_eq!(keep(&status_after), keep(&status_before));
    c.ok("SELECT INBOX");
    let flags = c.ok("UID FETCH 2 (FLAGS)").all();
    assert!(flags.contains("\\Flagged"), "{flags}");
    node.deliver("alice@example.test", &simple_message("after"));
    c.ok("NOOP");
    let r = c.ok("UID SEARCH ALL").all();
    assert!(r.contains("SEARCH 1 2 3 4"), "{r}");
}

/// A POP3 maildrop is held against every node's sessions (RFC 1939 §8's exclusive lock), and
/// freed at QUIT or when the session ends without one.
#[test]
fn a_pop3_maildrop_is_locked_across_nodes() {
    let store = cluster_store();
    let a = TestServer::started(&store);
    let b = another_node(&store);
    a.deliver("alice@example.test", simple_message("held").as_slice());
    let command = |c: &mut Client<std::net::TcpStream>, line: &str| {
        c.send(format!("{line}\r\n").as_bytes());
        c.raw_line().expect("connection closed")
    };
    let login = |node: &TestServer| {
        let mut c = Client::connect(node.pop3);
        assert!(c.raw_line().expect("greeting").starts_with("+OK"));
        assert!(command(&mut c, "USER alice@example.test").starts_with("+OK"));
        let answer = command(&mut c, "PASS secret");
        (c, answer)
    };
    let (mut on_a, answer) = login(&a);
    assert!(answer.starts_with("+OK"), "{answer}");
    let (mut refused, answer) = login(&b);
    assert!(answer.starts_with("-ERR [IN-USE]"), "node B opened a maildrop node A holds: {answer}");
    command(&mut refused, "QUIT");
    assert!(command(&mut on_a, "DELE 1").starts_with("+OK"));
    assert!(command(&mut on_a, "QUIT").starts_with("+OK"));
    // Free as soon as A answered the QUIT.
    let (mut on_b, answer) = login(&b);
    assert!(answer.starts_with("+OK"), "{answer}");
    assert_eq!(command(&mut on_b, "STAT"), "+OK 0 0", "B sees A's deletion");
    // A session that just goes away frees it too.
    drop(on_b);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (mut c, answer) = login(&a);
        if answer.starts_with("+OK") {
            command(&mut c, "QUIT");
            break;
        }
        assert!(Instant::now() < deadline, "the maildrop stayed locked after B's session ended: {answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
