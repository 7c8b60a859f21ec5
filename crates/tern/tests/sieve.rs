//! Sieve at delivery, end to end: a script stored with `tern sieve`, mail sent over SMTP, the
//! result read over IMAP.

mod common;

use common::*;

const SCRIPT: &str = r#"require ["fileinto", "imap4flags", "reject", "mailbox", "variables", "envelope"];
if header :contains "subject" "[list]" { fileinto :flags ["\\Seen", "$List"] "Lists"; stop; }
if header :contains "subject" "spam offer" { reject "No thanks."; stop; }
if header :contains "subject" "trash me" { discard; stop; }
if header :matches "subject" "project *" { fileinto :create "Projects/${1}"; }
if envelope :domain :is "from" "friends.test" { addflag "\\Flagged"; }
"#;

fn message(subject: &str) -> Vec<u8> {
    format!("From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\nbody\r\n").into_bytes()
}

fn send(s: &TestServer, from: &str, to: &[&str], subject: &str) -> Reply {
    let mut c = s.smtp();
    c.hello();
    let mut data = message(subject);
    data.extend_from_slice(b".\r\n");
    let r = c.transaction(from, to, &data);
    c.expect("QUIT", 221);
    r
}

/// `(uid, flags)` of every message in a mailbox, over IMAP.
fn flags_in(s: &TestServer, user: &str, mailbox: &str) -> Vec<String> {
    let mut imap = s.imap_login(user);
    let r = imap.run(&format!("SELECT \"{mailbox}\""));
    if !r.ok() {
        return Vec::new();
    }
    let r = imap.run("FETCH 1:* (FLAGS)");
    r.untagged("").iter().filter(|l| l.contains("FETCH")).map(|l| l.to_string()).collect()
}

#[test]
fn scripts_file_flag_reject_and_discard_at_delivery() {
    let s = TestServer::started("");
    s.ok_stdin(&["sieve", "put", "alice@example.test", "rules"], SCRIPT);
    s.ok(&["sieve", "activate", "alice@example.test", "rules"]);
    assert!(s.imap_login("alice@example.test").run("CREATE Lists").ok());

    assert_eq!(send(&s, "sender@remote.test", &["alice@example.test"], "[list] weekly").code, 250);
    let lists = flags_in(&s, "alice@example.test", "Lists");
    assert_eq!(lists.len(), 1, "{lists:?}");
    assert!(lists[0].contains("\\Seen") && lists[0].contains("$List"), "{lists:?}");
    assert!(flags_in(&s, "alice@example.test", "INBOX").is_empty(), "filed, not kept");

    // Refused at SMTP time when the script rejects for every recipient (RFC 5429 §2.1).
    let r = send(&s, "sender@remote.test", &["alice@example.test"], "spam offer");
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text().contains("No thanks."), "{r:?}");

    // Discarded: accepted, stored nowhere.
    assert_eq!(send(&s, "sender@remote.test", &["alice@example.test"], "trash me").code, 250);
    // A folder made on demand, its name from a match variable.
    assert_eq!(send(&s, "sender@remote.test", &["alice@example.test"], "project apollo").code, 250);
    assert_eq!(flags_in(&s, "alice@example.test", "Projects/apollo").len(), 1);
    // The implicit keep carries the flags the script set.
    assert_eq!(send(&s, "pal@friends.test", &["alice@example.test"], "hello").code, 250);
    let inbox = flags_in(&s, "alice@example.test", "INBOX");
    assert_eq!(inbox.len(), 1, "fileinto cancels the implicit keep; hello alone: {inbox:?}");
    assert!(inbox.iter().any(|l| l.contains("\\Flagged")), "{inbox:?}");

    // Bob has no script: his copy of a two-recipient message goes to his INBOX, Alice's
    // is filed; her reject does not refuse Bob's copy.
    let r = send(&s, "sender@remote.test", &["alice@example.test", "bob@example.test"], "[list] both");
    assert_eq!(r.code, 250);
    assert_eq!(flags_in(&s, "bob@example.test", "INBOX").len(), 1);
    assert_eq!(flags_in(&s, "alice@example.test", "Lists").len(), 2);
    let r = send(&s, "sender@remote.test", &["alice@example.test", "bob@example.test"], "spam offer 2");
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(flags_in(&s, "bob@example.test", "INBOX").len(), 2);

    // Deactivated: mail is kept as without Sieve.
    s.ok(&["sieve", "activate", "alice@example.test", "--none"]);
    assert_eq!(send(&s, "sender@remote.test", &["alice@example.test"], "spam offer 3").code, 250);
    assert_eq!(flags_in(&s, "alice@example.test", "INBOX").len(), 2);
}

#[test]
fn mail_submitted_by_a_colleague_meets_the_script_too() {
    let s = TestServer::started("");
    s.ok_stdin(&["sieve", "put", "alice@example.test", "rules"], SCRIPT);
    s.ok(&["sieve", "activate", "alice@example.test", "rules"]);
    let mut c = Client::connect(s.submission);
    c.greeting();
    c.expect("EHLO client.test", 250);
    // bob@example.test / secret (loopback: plaintext allowed in the test config).
    c.expect("AUTH PLAIN AGJvYkBleGFtcGxlLnRlc3QAc2VjcmV0", 235);
    let data = b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: project hermes\r\n\r\nhi\r\n.\r\n";
    let r = c.transaction("bob@example.test", &["alice@example.test"], data);
    assert_eq!(r.code, 250, "{r:?}");
    c.expect("QUIT", 221);
    assert_eq!(flags_in(&s, "alice@example.test", "Projects/hermes").len(), 1);
}

#[test]
fn a_script_over_its_budget_keeps_the_mail() {
    let s = TestServer::started("");
    // Each `set` doubles the value up to its cap; thousands of `:matches` steps follow.
    let mut script = String::from("require [\"variables\", \"fileinto\"];\nset \"a\" \"x\";\n");
    for _ in 0..20 {
        script.push_str("set \"a\" \"${a}${a}\";\n");
    }
    let keys: Vec<String> = (0..100).map(|i| format!("\"*x*y{i}*\"")).collect();
    for _ in 0..300 {
        script.push_str(&format!("if string :matches \"${{a}}\" [{}] {{ fileinto \"Never\"; }}\n", keys.join(", ")));
    }
    script.push_str("discard;\n");
    s.ok_stdin(&["sieve", "put", "alice@example.test", "heavy"], &script);
    s.ok(&["sieve", "activate", "alice@example.test", "heavy"]);
    assert_eq!(send(&s, "sender@remote.test", &["alice@example.test"], "budget").code, 250);
    assert_eq!(flags_in(&s, "alice@example.test", "INBOX").len(), 1, "implicit keep after the budget ran out");
    assert!(s.log().contains("Sieve script ended early"), "{}", s.log());
}
