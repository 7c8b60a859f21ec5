//! Sieve at delivery, end to end: a script stored with `tern sieve`, mail sent over SMTP, the
//! result read over IMAP.

mod common;

use common::*;
use std::time::Duration;

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

/// Sends `headers` + a short body from `from` to `to` over port 25; returns the final reply.
fn send_raw(s: &TestServer, from: &str, to: &[&str], headers: &str) -> Reply {
    let mut c = s.smtp();
    c.hello();
    let data = format!("{headers}\r\nbody\r\n.\r\n");
    let r = c.transaction(from, to, data.as_bytes());
    c.expect("QUIT", 221);
    r
}

const VACATION: &str = r#"require ["vacation"];
vacation :days 1 :subject "Away" "I am away until Monday.";
"#;

#[test]
fn vacation_replies_once_per_sender_and_never_to_lists_or_robots() {
    let s = TestServer::started("");
    s.ok_stdin(&["user", "add", "carol@example.test", "--password-stdin"], "secret\n");
    s.ok_stdin(&["sieve", "put", "alice@example.test", "away"], VACATION);
    s.ok(&["sieve", "activate", "alice@example.test", "away"]);
    let to_alice = |from: &str, extra: &str| {
        format!(
            "From: {from}\r\nTo: Alice <alice@example.test>\r\nMessage-ID: <{}@x.test>\r\nSubject: hello\r\n{extra}",
            rand_id()
        )
    };

    // The reply is in Bob's INBOX once the 250 came: sent with the null sender, marked,
    // threaded, from Alice.
    assert_eq!(send_raw(&s, "bob@example.test", &["alice@example.test"], &to_alice("bob@example.test", "")).code, 250);
    assert_eq!(s.mail_list("bob@example.test", "INBOX").len(), 1, "{}", s.log());
    let reply = String::from_utf8(s.mail_show("bob@example.test", "INBOX", 1)).unwrap();
    assert!(reply.starts_with("Return-Path: <>\r\n"), "{reply}");
    assert!(reply.contains("Auto-Submitted: auto-replied"), "{reply}");
    assert!(reply.contains("Subject: Away") && reply.contains("I am away until Monday."), "{reply}");
    assert!(reply.contains("In-Reply-To: <"), "{reply}");
    assert!(reply.contains("From: <alice@example.test>") || reply.contains("From: alice@example.test"), "{reply}");
    // Alice still gets the mail (vacation keeps).
    assert_eq!(s.mail_list("alice@example.test", "INBOX").len(), 1);

    // Within :days, Bob gets no second reply.
    assert_eq!(send_raw(&s, "bob@example.test", &["alice@example.test"], &to_alice("bob@example.test", "")).code, 250);
    assert_eq!(s.mail_list("bob@example.test", "INBOX").len(), 1);

    // Lists, robots and mail not addressed to Alice get none (RFC 3834 §2, RFC 5230 §4.5).
    for extra in ["Precedence: list\r\n", "List-Id: <team.lists.test>\r\n", "Auto-Submitted: auto-generated\r\n"] {
        assert_eq!(
            send_raw(&s, "carol@example.test", &["alice@example.test"], &to_alice("carol@example.test", extra)).code,
            250
        );
    }
    let bcc = format!(
        "From: carol@example.test\r\nTo: team@lists.test\r\nMessage-ID: <{}@x.test>\r\nSubject: hi\r\n",
        rand_id()
    );
    assert_eq!(send_raw(&s, "carol@example.test", &["alice@example.test"], &bcc).code, 250);
    assert!(s.mail_list("carol@example.test", "INBOX").is_empty(), "no replies to lists or robots");
    // A null sender is never answered.
    assert_eq!(send_raw(&s, "", &["alice@example.test"], &to_alice("mailer-daemon@x.test", "")).code, 250);
    // Carol, writing to Alice herself: a reply.
    assert_eq!(
        send_raw(&s, "carol@example.test", &["alice@example.test"], &to_alice("carol@example.test", "")).code,
        250
    );
    assert_eq!(s.mail_list("carol@example.test", "INBOX").len(), 1);
    assert_eq!(s.mail_list("alice@example.test", "INBOX").len(), 8, "every message kept");
}

fn rand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}.{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

#[test]
fn duplicates_are_dropped_and_partial_rejects_are_reported() {
    let s = TestServer::started("");
    s.ok_stdin(&["user", "add", "carol@example.test", "--password-stdin"], "secret\n");
    s.ok_stdin(
        &["sieve", "put", "alice@example.test", "dups"],
        "require [\"duplicate\", \"fileinto\"];\nif duplicate { fileinto \"Trash\"; stop; }\n",
    );
    s.ok(&["sieve", "activate", "alice@example.test", "dups"]);
    let headers =
        "From: carol@example.test\r\nTo: alice@example.test\r\nMessage-ID: <same@x.test>\r\nSubject: twice\r\n";
    assert_eq!(send_raw(&s, "carol@example.test", &["alice@example.test"], headers).code, 250);
    assert_eq!(send_raw(&s, "carol@example.test", &["alice@example.test"], headers).code, 250);
    assert_eq!(s.mail_list("alice@example.test", "INBOX").len(), 1, "the second copy is a duplicate");
    assert_eq!(s.mail_list("alice@example.test", "Trash").len(), 1);

    // Bob refuses, Alice takes it: accepted, and Carol gets a failure report for Bob.
    s.ok_stdin(&["sieve", "put", "bob@example.test", "no"], "require \"reject\";\nreject \"Not from you.\";\n");
    s.ok(&["sieve", "activate", "bob@example.test", "no"]);
    let headers = "From: carol@example.test\r\nTo: alice@example.test, bob@example.test\r\nMessage-ID: <other@x.test>\r\nSubject: both\r\n";
    let r = send_raw(&s, "carol@example.test", &["alice@example.test", "bob@example.test"], headers);
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(s.mail_list("alice@example.test", "INBOX").len(), 2);
    assert!(s.mail_list("bob@example.test", "INBOX").is_empty());
    assert_eq!(s.mail_list("carol@example.test", "INBOX").len(), 1, "{}", s.log());
    let report = String::from_utf8(s.mail_show("carol@example.test", "INBOX", 1)).unwrap();
    assert!(report.contains("Status: 5.7.1") && report.contains("Not from you."), "{report}");
    assert!(report.contains("bob@example.test"), "{report}");
}

#[test]
fn the_admins_script_runs_before_the_users_own() {
    let mut s = TestServer::new("");
    let before = s.dir.path().join("before.sieve");
    std::fs::write(
        &before,
        "require \"fileinto\";\nif header :contains \"subject\" \"[bulk]\" { fileinto \"Junk\"; stop; }\n",
    )
    .unwrap();
    let config = std::fs::read_to_string(&s.config_path).unwrap();
    let globals = s.dir.path().join("global");
    std::fs::create_dir(&globals).unwrap();
    std::fs::write(
        globals.join("common.sieve"),
        "require \"fileinto\";\nif header :contains \"subject\" \"[archive]\" { fileinto \"Archive\"; }\n",
    )
    .unwrap();
    std::fs::write(
        &s.config_path,
        format!("{config}[sieve]\nbefore = \"{}\"\nglobal_dir = \"{}\"\n", before.display(), globals.display()),
    )
    .unwrap();
    s.ok(&["domain", "add", "example.test"]);
    s.ok_stdin(&["user", "add", "alice@example.test", "--password-stdin"], "secret\n");
    s.ok_stdin(&["user", "add", "bob@example.test", "--password-stdin"], "secret\n");
    s.launch();
    s.ok_stdin(&["sieve", "put", "alice@example.test", "rules"], SCRIPT);
    s.ok(&["sieve", "activate", "alice@example.test", "rules"]);
    assert!(s.imap_login("alice@example.test").run("CREATE Lists").ok());
    // The admin's script files it and stops: Alice's script (which files "[list]") does not run.
    assert_eq!(
        send(&s, "sender@remote.test", &["alice@example.test", "bob@example.test"], "[bulk] [list] x").code,
        250
    );
    assert_eq!(s.mail_list("alice@example.test", "Junk").len(), 1, "{}", s.log());
    assert!(flags_in(&s, "alice@example.test", "Lists").is_empty());
    assert_eq!(s.mail_list("bob@example.test", "Junk").len(), 1, "Bob, without a script, meets it too");
    // Otherwise Alice's own script decides.
    assert_eq!(send(&s, "sender@remote.test", &["alice@example.test"], "[list] y").code, 250);
    assert_eq!(flags_in(&s, "alice@example.test", "Lists").len(), 1);

    // A user's script includes one of the admin's (RFC 6609 :global).
    s.ok_stdin(&["sieve", "put", "alice@example.test", "inc"], "require \"include\";\ninclude :global \"common\";\n");
    s.ok(&["sieve", "activate", "alice@example.test", "inc"]);
    assert_eq!(send(&s, "sender@remote.test", &["alice@example.test"], "[archive] z").code, 250);
    assert_eq!(s.mail_list("alice@example.test", "Archive").len(), 1, "{}", s.log());

    // A global script that does not compile is refused by `tern config` (and at startup),
    // naming the line.
    std::fs::write(&before, "require \"fileinto\";\nfileinto;\n").unwrap();
    let out = s.cli(&["config"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("sieve.before") && text.contains("line 2"), "{text}");
}

/// The Authentication-Results field of a stored message (unfolded).
fn auth_results(raw: &str) -> String {
    let start = raw.find("Authentication-Results:").unwrap_or(0);
    let rest = &raw[start..];
    let mut end = rest.find("\r\n").unwrap_or(rest.len());
    while rest[end..].starts_with("\r\n ") || rest[end..].starts_with("\r\n\t") {
        end += 2 + rest[end + 2..].find("\r\n").unwrap_or(rest.len() - end - 2);
    }
    rest[..end].replace("\r\n", "")
}

#[test]
fn redirects_and_aliases_forward_with_srs_and_bounces_find_their_way_back() {
    // The world: remote.test and origin.test are at a second Tern; SPF allows this server
    // (127.0.0.1) for example.test and forbids it for origin.test.
    let records = [
        ("remote.test", "MX", "10 mx.remote.test."),
        ("origin.test", "MX", "10 mx.remote.test."),
        ("mx.remote.test", "A", "127.0.0.1"),
        ("example.test", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
        ("origin.test", "TXT", "v=spf1 ip4:192.0.2.1 -all"),
    ];
    let world = World::start(&records, None, serde_json::json!({}));
    let dns = format!("[dns]\nnameservers = [\"127.0.0.1:{}\"]\ntimeout_seconds = 2\n", world.dns_port);
    // The far side checks SPF on loopback too (not exempt as a trusted network).
    let mut far = TestServer::new(&format!("{dns}[limits]\nexempt = []\n"));
    far.ok(&["domain", "add", "remote.test"]);
    far.ok(&["domain", "add", "origin.test"]);
    far.ok_stdin(&["user", "add", "carol@remote.test", "--password-stdin"], "secret\n");
    far.ok_stdin(&["user", "add", "dave@origin.test", "--password-stdin"], "secret\n");
    far.launch();
    let mut near = TestServer::new(&format!(
        "{dns}[delivery]\nsmtp_port = {}\nretry_initial_seconds = 1\nretry_max_seconds = 2\nconnect_timeout_seconds = 3\n",
        far.smtp.port()
    ));
    near.ok(&["domain", "add", "example.test"]);
    near.ok_stdin(&["user", "add", "alice@example.test", "--password-stdin"], "secret\n");
    near.ok(&["alias", "add", "fwd@example.test", "carol@remote.test"]);
    near.launch();
    near.ok_stdin(&["sieve", "put", "alice@example.test", "on"], "redirect \"carol@remote.test\";\n");
    near.ok(&["sieve", "activate", "alice@example.test", "on"]);

    // Dave writes to Alice (redirected) and to the alias (forwarded).
    for (to, subject) in [("alice@example.test", "via sieve"), ("fwd@example.test", "via alias")] {
        let headers = format!("From: dave@origin.test\r\nTo: {to}\r\nSubject: {subject}\r\n");
        assert_eq!(send_raw(&near, "Dave@origin.test", &[to], &headers).code, 250);
    }
    eventually(Duration::from_secs(40), "both forwarded copies at the far Tern", || {
        (far.mail_list("carol@remote.test", "INBOX").len() == 2).then_some(())
    });
    let mut srs_address = String::new();
    for uid in [1, 2] {
        let raw = String::from_utf8(far.mail_show("carol@remote.test", "INBOX", uid)).unwrap();
        let return_path = raw.lines().find(|l| l.starts_with("Return-Path:")).unwrap_or_default().to_string();
        assert!(return_path.contains("<SRS0=") && return_path.contains("=origin.test=Dave@example.test>"), "{raw}");
        // The far side's SPF check passes for the rewritten sender.
        let results = auth_results(&raw);
        assert!(results.contains("spf=pass"), "{results}");
        srs_address = return_path.trim_start_matches("Return-Path:").trim().trim_matches(['<', '>']).to_string();
    }

    // A bounce to the rewritten address goes back to Dave.
    let bounce = "From: MAILER-DAEMON@remote.test\r\nTo: Dave@origin.test\r\nSubject: Undelivered Mail\r\n";
    assert_eq!(send_raw(&near, "", &[&srs_address], bounce).code, 250);
    eventually(Duration::from_secs(40), "the bounce at Dave's", || {
        (far.mail_list("dave@origin.test", "INBOX").len() == 1).then_some(())
    });
    // A forged or tampered SRS address is nobody.
    let mut c = near.smtp();
    c.hello();
    c.expect("MAIL FROM:<>", 250);
    let forged = srs_address.replacen("SRS0=", "SRS0=A", 1).replace("Dave", "Mallory");
    let r = c.cmd(&format!("RCPT TO:<{forged}>"));
    assert_eq!(r.code, 550, "{r:?}");
    c.expect("QUIT", 221);
    // Mail from our own domain is forwarded with its own sender (its SPF covers us).
    let headers = "From: alice@example.test\r\nTo: fwd@example.test\r\nSubject: own\r\n";
    assert_eq!(send_raw(&near, "alice@example.test", &["fwd@example.test"], headers).code, 250);
    eventually(Duration::from_secs(40), "the third copy", || {
        (far.mail_list("carol@remote.test", "INBOX").len() == 3).then_some(())
    });
    let raw = String::from_utf8(far.mail_show("carol@remote.test", "INBOX", 3)).unwrap();
    assert!(raw.contains("Return-Path: <alice@example.test>"), "{raw}");
}

#[test]
fn editheader_changes_the_users_stored_copy_only() {
    let s = TestServer::started("");
    s.ok_stdin(
        &["sieve", "put", "alice@example.test", "edit"],
        "require [\"editheader\", \"fileinto\"];\naddheader \"X-Sorted\" \"by Sieve, für Alice\";\ndeleteheader \"X-Junk\";\nif header :contains \"x-sorted\" \"Sieve\" { fileinto \"Archive\"; }\n",
    );
    s.ok(&["sieve", "activate", "alice@example.test", "edit"]);
    let headers =
        "From: carol@remote.test\r\nTo: alice@example.test, bob@example.test\r\nX-Junk: drop me\r\nSubject: edited\r\n";
    assert_eq!(send_raw(&s, "carol@remote.test", &["alice@example.test", "bob@example.test"], headers).code, 250);
    // Alice's copy: as her script left it, filed by a test that saw its own edit.
    let alice = String::from_utf8(s.mail_show("alice@example.test", "Archive", 1)).unwrap();
    assert!(alice.starts_with("X-Sorted: =?UTF-8?Q?by_Sieve=2C_f=C3=BCr_Alice?=\r\n"), "{alice}");
    assert!(!alice.contains("X-Junk") && alice.contains("Subject: edited\r\n\r\nbody\r\n"), "{alice}");
    // Bob's copy is the message as it came.
    let bob = String::from_utf8(s.mail_show("bob@example.test", "INBOX", 1)).unwrap();
    assert!(bob.contains("X-Junk: drop me") && !bob.contains("X-Sorted"), "{bob}");
    // RFC 8579: into the mailbox with that special use, whatever its name.
    s.ok_stdin(
        &["sieve", "put", "alice@example.test", "edit"],
        "require [\"fileinto\", \"special-use\"];\nfileinto :specialuse \"\\\\Archive\" \"Elsewhere\";\n",
    );
    let headers = "From: carol@remote.test\r\nTo: alice@example.test\r\nSubject: by use\r\n";
    assert_eq!(send_raw(&s, "carol@remote.test", &["alice@example.test"], headers).code, 250);
    assert_eq!(s.mail_list("alice@example.test", "Archive").len(), 2, "{}", s.log());
    // Alice's copy is searchable over IMAP like any other.
    let mut imap = s.imap_login("alice@example.test");
    assert!(imap.run("SELECT Archive").ok());
    let r = imap.run("SEARCH HEADER X-Sorted \"Alice\"");
    assert!(r.untagged("SEARCH").iter().any(|l| l.trim().ends_with('1')), "{r:?}");
}

#[test]
fn spamtest_reads_the_verdict_of_the_scan() {
    // Rules alone mark mail without Date and Message-ID (1 point each) as junk here.
    let s = TestServer::started("[spam]\njunk_score = 1.5\nreject_score = 50.0\n");
    s.ok_stdin(
        &["sieve", "put", "alice@example.test", "spam"],
        "require [\"spamtest\", \"relational\", \"comparator-i;ascii-numeric\", \"fileinto\"];\n\
         if spamtest :value \"ge\" :comparator \"i;ascii-numeric\" \"6\" { fileinto \"Suspect\"; stop; }\n\
         if spamtest :value \"eq\" :comparator \"i;ascii-numeric\" \"0\" { fileinto \"Untested\"; }\n",
    );
    s.ok(&["sieve", "activate", "alice@example.test", "spam"]);
    let mut imap = s.imap_login("alice@example.test");
    assert!(imap.run("CREATE Suspect").ok() && imap.run("CREATE Untested").ok());
    let marked = "From: carol@remote.test\r\nTo: alice@example.test\r\nSubject: no date\r\n";
    assert_eq!(send_raw(&s, "carol@remote.test", &["alice@example.test"], marked).code, 250);
    let clean = format!(
        "From: carol@remote.test\r\nTo: alice@example.test\r\nSubject: fine\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <{}@remote.test>\r\n",
        rand_id()
    );
    assert_eq!(send_raw(&s, "carol@remote.test", &["alice@example.test"], &clean).code, 250);
    let suspect = s.mail_list("alice@example.test", "Suspect");
    assert_eq!(suspect.len(), 1, "{}", s.log());
    assert!(suspect[0].contains("no date"), "{suspect:?}");
    let inbox = s.mail_list("alice@example.test", "INBOX");
    assert_eq!(inbox.len(), 1, "the clean one is kept where the scan put it: {inbox:?}");
    assert!(inbox[0].contains("fine"));
    assert!(s.mail_list("alice@example.test", "Junk").is_empty(), "the script's fileinto wins over the scan's Junk");
    assert!(s.mail_list("alice@example.test", "Untested").is_empty(), "a scanned message is never level 0");
}
