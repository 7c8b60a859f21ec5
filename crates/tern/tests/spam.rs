//! The built-in spam classifier through the wire: users teach it by filing mail into and out
//! of Junk over IMAP, new mail then lands where it should, `tern spam train` (mbox, Maildir)
//! teaches a user's own model, `tern mail explain` and `tern spam classify` say why, and the
//! rules refuse what scores over the reject threshold.

mod common;

use common::*;
use std::time::{Duration, Instant};

const SPAM_WORDS: &[&str] =
    &["cheap", "pills", "casino", "winner", "prize", "bitcoin", "offer", "unsubscribe", "viagra"];
const HAM_WORDS: &[&str] = &["project", "meeting", "agenda", "review", "budget", "minutes", "draft", "tuesday", "team"];

/// A message made of words from `words`, varied by `i`.
fn message(kind: &str, words: &[&str], i: usize) -> Vec<u8> {
    let body: Vec<&str> = (0..40).map(|n| words[(n * 7 + i) % words.len()]).collect();
    format!(
        "From: {kind}{i}@remote.test\r\nTo: alice@example.test\r\nSubject: {} {}\r\nMessage-ID: <{kind}{i}@remote.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n{}\r\n",
        words[i % words.len()],
        words[(i + 3) % words.len()],
        body.join(" ")
    )
    .into_bytes()
}

/// `message` as DATA (dot-terminated).
fn data(raw: &[u8]) -> Vec<u8> {
    let mut d = raw.to_vec();
    d.extend_from_slice(b".\r\n");
    d
}

fn header_of(raw: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let header = text.split("\r\n\r\n").next().unwrap_or("").replace("\r\n\t", " ").replace("\r\n ", " ");
    header
        .lines()
        .filter(|l| {
            l.len() > name.len() && l[..name.len()].eq_ignore_ascii_case(name) && l.as_bytes()[name.len()] == b':'
        })
        .map(|l| l[name.len() + 1..].trim().to_string())
        .collect()
}

fn wait_for_status(s: &TestServer, user: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = s.ok(&["spam", "status", "--user", user]);
        if status.contains(expected) {
            return;
        }
        assert!(Instant::now() < deadline, "model of {user} never reached {expected:?}: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn users_teach_the_classifier_by_filing_junk_and_new_mail_lands_accordingly() {
    let s = TestServer::started("[spam]\nmin_learned = 10\nreject_score = 9.0\n");

    // Before anything is learnt the classifier abstains and says so; the rules still score.
    s.deliver("alice@example.test", &data(&message("spam", SPAM_WORDS, 100)));
    let first = s.mail_show("alice@example.test", "INBOX", 1);
    let verdict = header_of(&first, "X-Tern-Spam");
    assert_eq!(1, verdict.len(), "{}", String::from_utf8_lossy(&first));
    assert!(verdict[0].starts_with("score=") && verdict[0].contains("classifier=abstained"), "{verdict:?}");

    // 12 spam and 12 ham arrive in the INBOX (UIDs 2..=25, alternating).
    for i in 0..12 {
        s.deliver("alice@example.test", &data(&message("spam", SPAM_WORDS, i)));
        s.deliver("alice@example.test", &data(&message("ham", HAM_WORDS, i)));
    }
    assert_eq!(25, s.mail_list("alice@example.test", "INBOX").len());

    // Alice files the spam into Junk (MOVE) and marks the ham as not junk ($NotJunk), with
    // Python's imaplib as her mail client.
    let spam_uids: Vec<String> = (0..12).map(|i| (2 + 2 * i).to_string()).collect();
    let ham_uids: Vec<String> = (0..12).map(|i| (3 + 2 * i).to_string()).collect();
    let filed = python(
        "junk_filing.py",
        &[
            "--port",
            &s.imap.port().to_string(),
            "--user",
            "alice@example.test",
            "--password",
            "secret",
            "--junk",
            &spam_uids.join(","),
            "--not-junk",
            &ham_uids.join(","),
        ],
    );
    assert_eq!("OK", filed.trim());
    wait_for_status(&s, "alice@example.test", "learnt 12 spam and 12 ham");
    let global = s.ok(&["spam", "status"]);
    assert!(
        global.contains("global model: learnt 12 spam and 12 ham"),
        "users' filing teaches the global model too: {global}"
    );
    assert!(global.contains("alice@example.test: learnt 12 spam and 12 ham"), "every model is listed: {global}");

    // New mail now lands by what was learnt.
    let junk_before = s.mail_list("alice@example.test", "Junk").len();
    s.deliver("alice@example.test", &data(&message("spam", SPAM_WORDS, 50)));
    s.deliver("alice@example.test", &data(&message("ham", HAM_WORDS, 50)));
    let junk = s.mail_list("alice@example.test", "Junk");
    assert_eq!(junk_before + 1, junk.len(), "the new spam goes to Junk: {junk:?}");
    let inbox = s.mail_list("alice@example.test", "INBOX");
    assert!(inbox.iter().any(|l| l.contains("project") || l.contains("ham50")) || inbox.len() == 14, "{inbox:?}");
    let junk_uid: u32 = junk.last().and_then(|l| l.split('\t').next()).and_then(|u| u.parse().ok()).expect("junk uid");
    let stored = s.mail_show("alice@example.test", "Junk", junk_uid);
    let verdict = header_of(&stored, "X-Tern-Spam");
    assert!(verdict[0].contains("action=junk") && verdict[0].contains("BAYES_"), "{verdict:?}");

    // Why: the stored verdict, with the features that decided.
    let why = s.ok(&["mail", "explain", "alice@example.test", "Junk", &junk_uid.to_string()]);
    assert!(why.contains("action junk"), "{why}");
    assert!(why.contains("towards spam:"), "{why}");
    assert!(SPAM_WORDS.iter().any(|w| why.contains(&format!("\"{w}\""))), "{why}");
    assert!(why.contains("thresholds: junk 5.0"), "{why}");

    // `tern spam classify` judges a file the same way, without delivering it.
    let file = s.data_dir().join("../probe.eml");
    std::fs::write(&file, message("spam", SPAM_WORDS, 77)).unwrap();
    let judged = s.ok(&["spam", "classify", file.to_str().unwrap()]);
    assert!(judged.contains("action junk") && judged.contains("towards spam:"), "{judged}");

    // Bob teaches his own model that these "offers" are wanted (an mbox and a Maildir), so
    // his copy stays in the INBOX while Alice's goes to Junk.
    let mut mbox = Vec::new();
    for i in 0..15 {
        mbox.extend_from_slice(format!("From offers{i}@remote.test Mon Jan  1 00:00:00 2024\n").as_bytes());
        mbox.extend_from_slice(&message("offer", SPAM_WORDS, 200 + i));
    }
    let mbox_path = s.data_dir().join("../wanted.mbox");
    std::fs::write(&mbox_path, &mbox).unwrap();
    let maildir = s.data_dir().join("../Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    for i in 0..15 {
        std::fs::write(maildir.join("cur").join(format!("{i}.host:2,S")), message("offer", SPAM_WORDS, 300 + i))
            .unwrap();
    }
    std::fs::write(maildir.join("tmp").join("partial"), b"not a message").unwrap();
    let trained = s.ok(&[
        "spam",
        "train",
        "--ham",
        mbox_path.to_str().unwrap(),
        maildir.to_str().unwrap(),
        "--user",
        "bob@example.test",
    ]);
    assert!(trained.contains("learnt 0 spam and 30 ham"), "{trained}");
    // The same again is known already.
    let again = s.ok(&["spam", "train", "--ham", mbox_path.to_str().unwrap(), "--user", "bob@example.test"]);
    assert!(again.contains("15 already known"), "{again}");

    let mut c = s.smtp();
    c.hello();
    let r = c.transaction(
        "offers@remote.test",
        &["alice@example.test", "bob@example.test"],
        &data(&message("spam", SPAM_WORDS, 60)),
    );
    assert_eq!(250, r.code, "{r:?}");
    c.expect("QUIT", 221);
    assert_eq!(junk_before + 2, s.mail_list("alice@example.test", "Junk").len(), "Alice's copy: Junk");
    assert!(s.mail_list("bob@example.test", "Junk").is_empty(), "Bob's copy stays in his INBOX");
    assert_eq!(1, s.mail_list("bob@example.test", "INBOX").len());

    // A forged verdict header is removed; only Tern's own is kept.
    let mut forged = b"X-Tern-Spam: score=-100 action=accept\r\n".to_vec();
    forged.extend_from_slice(&message("ham", HAM_WORDS, 61));
    s.deliver("bob@example.test", &data(&forged));
    let stored = s.mail_show("bob@example.test", "INBOX", 2);
    let verdicts = header_of(&stored, "X-Tern-Spam");
    assert_eq!(1, verdicts.len(), "{verdicts:?}");
    assert!(!verdicts[0].contains("-100"), "{verdicts:?}");

    // Over the reject threshold for every recipient: refused at the end of DATA, so the
    // sender learns; nothing is stored.
    let mut bad = String::from_utf8(message("spam", SPAM_WORDS, 70)).unwrap();
    bad =
        bad.replace("Message-ID: <spam70@remote.test>\r\n", "").replace("Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n", "");
    bad = bad.replacen(
        "\r\n\r\n",
        "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n",
        1,
    );
    bad.push_str("--b\r\nContent-Type: application/octet-stream; name=\"invoice.exe\"\r\nContent-Disposition: attachment; filename=\"invoice.exe\"\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b--\r\n");
    let mut c = s.smtp();
    c.hello();
    let r = c.transaction("offers@remote.test", &["alice@example.test"], &data(bad.as_bytes()));
    assert_eq!(550, r.code, "{r:?}");
    assert!(r.text().contains("5.7.1"), "{r:?}");
    c.expect("QUIT", 221);
    assert_eq!(junk_before + 2, s.mail_list("alice@example.test", "Junk").len());
}
