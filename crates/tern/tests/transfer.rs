//! Issue 12: bringing mail in (`tern import mbox|maildir`) and taking it out (`tern export`),
//! checked through IMAP and with Python's `mailbox` module as the independent reader.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

/// `FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])` of a mailbox: (flags+date line, body).
fn fetch_all(s: &TestServer, user: &str, mailbox: &str) -> Vec<(String, Vec<u8>)> {
    let mut imap = s.imap_login(&format!("{user}@example.test"));
    imap.ok(&format!("EXAMINE \"{mailbox}\""));
    let (items, done) = imap.literals("FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])");
    assert!(done.contains("OK"), "{done}");
    items
}

fn tern_out(s: &TestServer, args: &[&str]) -> String {
    s.ok(args)
}

const MBOX: &str = "From alice@remote.test Sat Jan  3 01:05:34 1996\n\
Subject: first\n\
Status: RO\n\
X-Status: AF\n\
X-Keywords: $Forwarded work\n\
\n\
>From the start of a line\n\
body one\n\
\n\
From MAILER-DAEMON Mon Feb  5 10:00:00 2024\n\
Subject: second\n\
Status: O\n\
\n\
body two\n\
\n";

#[test]
fn mbox_import_keeps_flags_keywords_and_dates_and_resumes() {
    let mut s = TestServer::started("");
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("old.mbox");
    std::fs::write(&mbox, MBOX).unwrap();
    let out = tern_out(&s, &["import", "mbox", "alice@example.test", mbox.to_str().unwrap(), "--mailbox", "Old/1996"]);
    assert!(out.contains("2 messages imported"), "{out}");
    s.stop();
    s.launch();
    let items = fetch_all(&s, "alice", "Old/1996");
    assert_eq!(items.len(), 2, "{items:?}");
    let (meta, body) = &items[0];
    assert!(meta.contains("\\Seen") && meta.contains("\\Answered") && meta.contains("\\Flagged"), "{meta}");
    assert!(meta.contains("$Forwarded") && meta.contains("work"), "{meta}");
    assert!(meta.contains("INTERNALDATE \"03-Jan-1996 01:05:34 +0000\""), "{meta}");
    assert_eq!(
        body,
        b"Subject: first\r\n\r\nFrom the start of a line\r\nbody one\r\n",
        "{}",
        String::from_utf8_lossy(body)
    );
    let (meta, body) = &items[1];
    assert!(!meta.contains("\\Seen") && meta.contains("05-Feb-2024 10:00:00"), "{meta}");
    assert_eq!(body, b"Subject: second\r\n\r\nbody two\r\n");

    // Run again: nothing new. Mail appended to the file: only that is imported.
    let again =
        tern_out(&s, &["import", "mbox", "alice@example.test", mbox.to_str().unwrap(), "--mailbox", "Old/1996"]);
    assert!(again.contains("0 messages imported"), "{again}");
    let mut f = std::fs::OpenOptions::new().append(true).open(&mbox).unwrap();
    use std::io::Write;
    f.write_all(b"From x@y Tue Feb  6 10:00:00 2024\nSubject: third\n\nbody three\n\n").unwrap();
    let third =
        tern_out(&s, &["import", "mbox", "alice@example.test", mbox.to_str().unwrap(), "--mailbox", "Old/1996"]);
    assert!(third.contains("1 messages imported"), "{third}");
    assert_eq!(fetch_all(&s, "alice", "Old/1996").len(), 3);

    // Not an mbox, no such user: refused with the reason.
    let eml = dir.path().join("one.eml");
    std::fs::write(&eml, "Subject: x\n\ny\n").unwrap();
    let out = s.cli(&["import", "mbox", "alice@example.test", eml.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not an mbox"));
    let out = s.cli(&["import", "mbox", "nobody@example.test", mbox.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no user nobody@example.test"));
}

/// A Maildir as Dovecot writes it: cur/ and new/, flags in the names, keywords in
/// dovecot-keywords, Maildir++ subfolders.
fn dovecot_maildir(root: &Path) {
    for folder in [root.to_path_buf(), root.join(".Sent"), root.join(".Archive.2020")] {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(folder.join(sub)).unwrap();
        }
    }
    // Each folder has its own keyword letters.
    std::fs::write(root.join("dovecot-keywords"), "0 $Forwarded\n1 project\n").unwrap();
    std::fs::write(root.join(".Archive.2020/dovecot-keywords"), "0 $Forwarded\n").unwrap();
    let put = |path: std::path::PathBuf, subject: &str, when: u64| {
        std::fs::write(&path, format!("Subject: {subject}\nFrom: a@remote.test\n\nbody of {subject}\n")).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(when)).unwrap();
    };
    put(root.join("cur/1600000000.M1P1.host:2,FSb"), "inbox seen", 1_600_000_000);
    put(root.join("new/1600000100.M2P1.host"), "inbox new", 1_600_000_100);
    put(root.join(".Sent/cur/1600000200.M3P1.host:2,RS"), "sent one", 1_600_000_200);
    put(root.join(".Archive.2020/cur/1500000000.M4P1.host:2,Sa"), "archived", 1_500_000_000);
}

#[test]
fn maildir_import_takes_folders_flags_keywords_and_dates() {
    let s = TestServer::started("");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    dovecot_maildir(&root);
    let out = tern_out(&s, &["import", "maildir", "bob@example.test", root.to_str().unwrap()]);
    assert!(out.contains("into bob@example.test INBOX: 2 messages imported"), "{out}");
    assert!(out.contains("into bob@example.test Sent: 1 messages imported"), "{out}");
    assert!(out.contains("into bob@example.test Archive/2020: 1 messages imported"), "{out}");
    let inbox = fetch_all(&s, "bob", "INBOX");
    assert_eq!(inbox.len(), 2);
    assert!(inbox[0].0.contains("\\Flagged") && inbox[0].0.contains("\\Seen") && inbox[0].0.contains("project"));
    assert!(inbox[0].0.contains("13-Sep-2020 12:26:40 +0000"), "{}", inbox[0].0);
    assert!(!inbox[1].0.contains("\\Seen"), "{}", inbox[1].0);
    assert!(String::from_utf8_lossy(&inbox[1].1).contains("body of inbox new\r\n"));
    let sent = fetch_all(&s, "bob", "Sent");
    assert!(sent[0].0.contains("\\Answered") && sent[0].0.contains("\\Seen"), "{}", sent[0].0);
    let archive = fetch_all(&s, "bob", "Archive/2020");
    assert!(archive[0].0.contains("$Forwarded"), "{}", archive[0].0);
    // Again: every file was imported already.
    let again = tern_out(&s, &["import", "maildir", "bob@example.test", root.to_str().unwrap()]);
    assert_eq!(again.matches(": 0 messages imported").count(), 3, "{again}");
    assert_eq!(fetch_all(&s, "bob", "INBOX").len(), 2);
}

#[test]
fn export_as_maildir_and_mbox_reads_back_with_python_and_round_trips() {
    let s = TestServer::started("");
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("in.mbox");
    std::fs::write(&mbox, MBOX).unwrap();
    tern_out(&s, &["import", "mbox", "alice@example.test", mbox.to_str().unwrap()]);
    s.deliver("alice@example.test", b"Subject: third\r\n\r\nFrom a line that needs quoting\r\n");
    let maildir = dir.path().join("out-maildir");
    let out = tern_out(&s, &["export", "alice@example.test", maildir.to_str().unwrap()]);
    assert!(out.contains("INBOX -> ") && out.contains(": 3 messages"), "{out}");
    let dump = python("mailbox_dump.py", &["maildir", maildir.to_str().unwrap()]);
    let lines: Vec<serde_json::Value> = dump.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{dump}");
    assert_eq!(lines[0]["subject"], "first");
    // F R S, and a b: the keywords, by their place in dovecot-keywords.
    assert_eq!(lines[0]["flags"], "FRSab", "Maildir flags as Python reads them: {dump}");
    assert_eq!(lines[0]["date"], 820631134);
    assert_eq!(lines[1]["flags"], "");
    // Keywords are kept in dovecot-keywords and the file names' letters.
    let keywords = std::fs::read_to_string(maildir.join("dovecot-keywords")).unwrap();
    assert_eq!(keywords, "0 $Forwarded\n1 work\n");
    // Again: nothing new to write.
    let again = tern_out(&s, &["export", "alice@example.test", maildir.to_str().unwrap()]);
    assert!(again.contains("INBOX -> ") && again.contains(": 0 messages"), "{again}");

    let mboxes = dir.path().join("out-mbox");
    let out = tern_out(&s, &["export", "alice@example.test", mboxes.to_str().unwrap(), "--format", "mbox"]);
    assert!(out.contains(": 3 messages"), "{out}");
    let inbox_mbox = mboxes.join("INBOX.mbox");
    let dump = python("mailbox_dump.py", &["mbox", inbox_mbox.to_str().unwrap()]);
    let lines: Vec<serde_json::Value> = dump.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{dump}");
    assert_eq!(lines[0]["flags"], "AFOR", "mbox flags as Python reads them: {dump}");
    assert_eq!(lines[0]["keywords"], "$Forwarded work");
    assert!(lines[0]["date"].as_str().unwrap().ends_with("Wed Jan  3 01:05:34 1996"), "{dump}");
    let again = tern_out(&s, &["export", "alice@example.test", mboxes.to_str().unwrap(), "--format", "mbox"]);
    assert!(again.contains(": 0 messages"), "{again}");
    assert_eq!(python("mailbox_dump.py", &["mbox", inbox_mbox.to_str().unwrap()]).lines().count(), 3);

    // The exported mbox, imported for bob, gives the same messages with the same flags.
    tern_out(&s, &["import", "mbox", "bob@example.test", inbox_mbox.to_str().unwrap()]);
    let original = fetch_all(&s, "alice", "INBOX");
    let copy = fetch_all(&s, "bob", "INBOX");
    assert_eq!(original.len(), copy.len());
    let strip_uid = |m: &str| {
        let flags = m.split("FLAGS (").nth(1).unwrap().split(')').next().unwrap();
        let mut f: Vec<&str> = flags.split_whitespace().filter(|f| *f != "\\Recent").collect();
        f.sort();
        let date = m.split("INTERNALDATE ").nth(1).unwrap()[..28].to_string();
        (f.join(" "), date)
    };
    for (a, b) in original.iter().zip(&copy) {
        assert_eq!(strip_uid(&a.0), strip_uid(&b.0));
        assert_eq!(a.1, b.1, "{}", String::from_utf8_lossy(&b.1));
    }
}

/// An import killed in the middle (SIGKILL: no chance to save anything) and run again ends
/// with every message exactly once.
#[test]
fn an_interrupted_import_resumes_without_loss_or_duplicates() {
    let s = TestServer::started("");
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("big.mbox");
    let mut text = String::new();
    const N: usize = 3000;
    for i in 0..N {
        text.push_str(&format!(
            "From a@remote.test Mon Feb  5 10:00:00 2024\nSubject: message {i}\nMessage-ID: <{i}@remote.test>\n\n{}\n\n",
            "filler line of a message body\n".repeat(20)
        ));
    }
    std::fs::write(&mbox, &text).unwrap();
    let mut child = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&s.config_path)
        .args(["import", "mbox", "alice@example.test", mbox.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some of the mail is in.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while s.mail_list("alice@example.test", "INBOX").len() < 300 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let partial = s.mail_list("alice@example.test", "INBOX").len();
    eprintln!("import killed after {partial} of {N} messages");
    assert!(partial < N, "the import finished before it could be killed: make N larger");
    let out = s.ok(&["import", "mbox", "alice@example.test", mbox.to_str().unwrap()]);
    let list = s.mail_list("alice@example.test", "INBOX");
    assert_eq!(list.len(), N, "killed after {partial}; then: {out}");
    let subjects: std::collections::HashSet<&str> = list.iter().filter_map(|l| l.split('\t').nth(4)).collect();
    assert_eq!(subjects.len(), N, "every message exactly once");
}

/// `tern backup` while SMTP load runs, `tern restore` into a new data directory: every
/// message acknowledged before the backup began is there, readable and searchable, with the
/// server's keys and certificate.
#[test]
fn a_backup_under_smtp_load_restores_every_acknowledged_message() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let s = TestServer::started("");
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, std::time::Instant)>>> = Arc::default();
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (stop, acked, smtp) = (Arc::clone(&stop), Arc::clone(&acked), s.smtp);
            std::thread::spawn(move || {
                let mut c = Client::connect(smtp);
                c.hello();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let subject = format!("load-{t}-{i}");
                    let body = format!(
                        "From: load@remote.test\r\nSubject: {subject}\r\n\r\nword{t}x{i}end {}\r\n.\r\n",
                        "filler ".repeat(200)
                    );
                    let r = c.transaction("load@remote.test", &["alice@example.test"], body.as_bytes());
                    assert_eq!(r.code, 250, "{r:?}");
                    acked.lock().unwrap().push((subject, std::time::Instant::now()));
                    i += 1;
                }
            })
        })
        .collect();
    // The backup starts under load, once enough mail has been acknowledged to mean something.
    eventually(Duration::from_secs(30), "load before the backup", || (acked.lock().unwrap().len() > 30).then_some(()));
    let backup = tempfile::tempdir().unwrap();
    let dest = backup.path().join("b1");
    let began = std::time::Instant::now();
    let out = s.ok(&["backup", dest.to_str().unwrap()]);
    assert!(out.contains("backup in") && out.contains("records"), "{out}");
    let finished = acked.lock().unwrap().len();
    eventually(Duration::from_secs(30), "load after the backup", || {
        (acked.lock().unwrap().len() > finished + 10).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    for t in senders {
        t.join().unwrap();
    }
    let before: Vec<String> =
        acked.lock().unwrap().iter().filter(|(_, at)| *at < began).map(|(subject, _)| subject.clone()).collect();
    assert!(before.len() > 20, "load before the backup: {}", before.len());
    // Into an existing directory with files: refused.
    let again = s.cli(&["backup", dest.to_str().unwrap()]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("not empty"));
    // Not over a data directory that holds a store.
    let over = s.cli(&["restore", dest.to_str().unwrap()]);
    assert!(!over.status.success() && String::from_utf8_lossy(&over.stderr).contains("already holds a store"));

    let mut restored = TestServer::unprepared("");
    let out = restored.ok(&["restore", dest.to_str().unwrap()]);
    assert!(out.contains("restored into"), "{out}");
    for file in ["secret", "tls/cert.pem", "tls/key.pem"] {
        assert_eq!(
            std::fs::read(s.data_dir().join(file)).unwrap(),
            std::fs::read(restored.data_dir().join(file)).unwrap()
        );
    }
    restored.launch();
    let list = restored.mail_list("alice@example.test", "INBOX");
    let subjects: std::collections::HashSet<String> =
        list.iter().filter_map(|l| l.split('\t').nth(4)).map(str::to_string).collect();
    let missing: Vec<&String> = before.iter().filter(|s| !subjects.contains(*s)).collect();
    assert!(missing.is_empty(), "{} of {} acknowledged messages missing: {missing:?}", missing.len(), before.len());
    // Readable and searchable (the full-text index is rebuilt from the restored contents).
    let mut imap = restored.imap_login("alice@example.test");
    imap.ok("SELECT INBOX");
    let (t, i) = before[before.len() / 2].trim_start_matches("load-").split_once('-').unwrap();
    let found = imap.ok(&format!("SEARCH BODY word{t}x{i}end"));
    assert_eq!(found.untagged("SEARCH")[0].split_whitespace().count(), 2, "one message: {found:?}");
    // The same user logs in with the same password.
    imap.ok("LOGOUT");
}
