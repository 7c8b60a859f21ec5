//! Hostile clients against the real binary: expensive commands, slow and garbage input,
//! forged log lines, user enumeration. Each test checks that the server stays available to
//! everyone else and answers with the protocol's own errors.

mod common;

use common::*;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Fills alice's INBOX with `n` small messages through pipelined APPENDs (LITERAL+).
fn fill_inbox(s: &TestServer, n: usize) {
    let mut c = s.imap_login("alice@example.test");
    let mut sent = 0;
    while sent < n {
        let batch = (n - sent).min(200);
        let mut bytes = Vec::new();
        for i in sent..sent + batch {
            let msg = format!(
                "From: s{i}@remote.test\r\nTo: alice@example.test\r\nSubject: message {i}\r\nX-Tag: t{}\r\n\r\nbody text number {i} lorem ipsum dolor sit amet w{i}x\r\n",
                i % 7
            );
            bytes.extend_from_slice(format!("f{i} APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes());
        }
        c.send(&bytes);
        for i in sent..sent + batch {
            let r = c.finish(&format!("f{i}"));
            assert!(r.ok(), "{r:?}");
        }
        sent += batch;
    }
}

/// How long the SMTP greeting takes to arrive.
fn greeting_time(s: &TestServer) -> Duration {
    let started = Instant::now();
    let mut c = s.smtp();
    c.greeting();
    c.cmd("QUIT");
    started.elapsed()
}

/// How long connecting and logging in to IMAP takes.
fn login_time(s: &TestServer, user: &str) -> Duration {
    let started = Instant::now();
    let mut c = s.imap_login(user);
    c.ok("SELECT INBOX");
    c.run("LOGOUT");
    started.elapsed()
}

/// Issue 10: SEARCH programs of thousands of BODY/TEXT keys froze every service of the
/// server. They are refused with NO [LIMIT]; searches that are allowed run on the compute
/// pool, so the SMTP greeting and another user's IMAP login stay fast while they run.
#[test]
fn heavy_searches_never_freeze_other_sessions() {
    let s = TestServer::started("[imap]\ncommand_time_limit_seconds = 4\n");
    fill_inbox(&s, 2000);
    // The outside tester's programs.
    let or_groups: String = (0..1500).map(|i| format!(" (OR BODY q{i}z TEXT w{i}y)")).collect();
    let many_bodies: String = (0..2000).map(|i| format!(" BODY t{i}x")).collect();
    // Allowed, but costly: every message is read and decoded (two-letter strings are not
    // in the full-text index; HEADER needs the raw header).
    let costly: String = (0..40)
        .map(|i| format!(" OR BODY {}{} HEADER X-Tag t{}", (b'a' + (i % 26) as u8) as char, i % 10, i % 9))
        .collect::<String>()
        + " ALL";

    let workers = 8;
    let barrier = Arc::new(Barrier::new(workers + 1));
    let mut handles = Vec::new();
    for w in 0..workers {
        let imap = s.imap;
        let barrier = Arc::clone(&barrier);
        let program = match w % 3 {
            0 => or_groups.clone(),
            1 => many_bodies.clone(),
            _ => costly.clone(),
        };
        handles.push(std::thread::spawn(move || {
            let mut c = Imap { c: Client::connect(imap), next: 0 };
            c.line();
            c.ok("LOGIN alice@example.test secret");
            c.ok("SELECT INBOX");
            barrier.wait();
            let started = Instant::now();
            let mut answers = Vec::new();
            // Keep the pool busy while the main thread measures.
            while answers.len() < 2 || started.elapsed() < Duration::from_secs(5) {
                let tag = c.tag();
                // A 41 KB command: send it in one piece with a literal-free line.
                c.send_line(&format!("{tag} SEARCH{program}"));
                let r = c.finish(&tag);
                answers.push(r.done);
            }
            (w, answers, started.elapsed())
        }));
    }
    barrier.wait();
    std::thread::sleep(Duration::from_millis(300));
    let mut greetings = Vec::new();
    let mut logins = Vec::new();
    for _ in 0..5 {
        greetings.push(greeting_time(&s));
        logins.push(login_time(&s, "bob@example.test"));
        std::thread::sleep(Duration::from_millis(200));
    }
    for h in handles {
        let (w, answers, took) = h.join().unwrap();
        for a in &answers {
            if w % 3 == 2 {
                assert!(a.starts_with("OK") || a.starts_with("NO [LIMIT]"), "worker {w}: {a}");
            } else {
                assert!(a.starts_with("NO [LIMIT]"), "worker {w}: {a}");
            }
        }
        assert!(took < Duration::from_secs(120), "worker {w} took {took:?}");
        eprintln!("worker {w}: {} answers, first {:?}, in {took:?}", answers.len(), answers[0]);
    }
    eprintln!("greetings {greetings:?}, logins {logins:?}");
    let worst_greeting = greetings.iter().max().unwrap();
    let worst_login = logins.iter().max().unwrap();
    assert!(*worst_greeting < Duration::from_secs(2), "SMTP greetings during searches: {greetings:?}");
    assert!(*worst_login < Duration::from_secs(3), "IMAP logins during searches: {logins:?}");
    // Searches still give correct answers afterwards.
    let mut c = s.imap_login("alice@example.test");
    c.ok("SELECT INBOX");
    let r = c.ok("SEARCH BODY w1234x");
    assert_eq!(r.untagged("SEARCH"), vec!["SEARCH 1235"], "{r:?}");
    let r = c.ok("SEARCH HEADER X-Tag t3 SUBJECT \"message 10\"");
    let expected: String = (0..2000)
        .filter(|i| i % 7 == 3 && format!("message {i}").contains("message 10"))
        .map(|i| format!(" {}", i + 1))
        .collect();
    assert_eq!(r.untagged("SEARCH"), vec![format!("SEARCH{expected}")], "{r:?}");
}
