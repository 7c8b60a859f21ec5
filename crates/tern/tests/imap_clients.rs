//! Real IMAP clients against the real server: mbsync (isync) two-way sync of several folders,
//! offlineimap, and the async-imap crate.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            out.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    out.sort();
    out
}

fn message(subject: &str) -> String {
    format!(
        "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@remote.test>\r\n\r\nbody {subject}\r\n"
    )
}

#[test]
fn mbsync_two_way_sync_of_several_folders() {
    assert!(have("mbsync"), "mbsync (isync) is required; the test command installs it");
    let s = TestServer::started("");
    s.deliver("alice@example.test", message("inbox-1").as_bytes());
    s.deliver("alice@example.test", message("inbox-2").as_bytes());
    let mut c = s.imap_login("alice@example.test");
    c.ok("CREATE Work");
    c.ok("SELECT INBOX");
    c.ok("COPY 2 Work");
    c.ok("STORE 1 +FLAGS (\\Flagged)");
    c.ok("LOGOUT");
    // Bob shares a folder with Alice: it syncs as Other Users/bob@example.test/Plans.
    let mut bob = s.imap_login("bob@example.test");
    bob.ok("CREATE Plans");
    let plan = message("bobs-plan");
    bob.ok(&format!("APPEND Plans {{{}+}}\r\n{plan}", plan.len()));
    bob.ok("SETACL Plans alice@example.test lrswite");
    bob.ok("LOGOUT");

    let local = s.dir.path().join("maildir");
    std::fs::create_dir_all(&local).unwrap();
    let rc = s.dir.path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount tern\nHost 127.0.0.1\nPort {port}\nUser alice@example.test\nPass secret\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount tern\n\n\
             MaildirStore local\nPath {dir}/\nInbox {dir}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nRemove Both\nExpunge Both\nSyncState *\nSync All\n",
            port = s.imap.port(),
            dir = local.display()
        ),
    )
    .unwrap();
    let run = || {
        let out = Command::new("mbsync").arg("-c").arg(&rc).arg("-a").output().unwrap();
        assert!(
            out.status.success(),
            "mbsync failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run();
    let inbox = files_in(&local.join("INBOX"));
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    assert!(inbox.iter().any(|p| p.to_string_lossy().ends_with(":2,F")), "the \\Flagged flag is synced: {inbox:?}");
    assert_eq!(files_in(&local.join("Work")).len(), 1);
    assert_eq!(files_in(&local.join("Other Users/bob@example.test/Plans")).len(), 1, "the shared folder is synced");
    for folder in ["Sent", "Drafts", "Trash", "Junk", "Archive"] {
        assert!(local.join(folder).join("cur").exists(), "{folder} created locally");
    }

    // Local changes: a new message in Work, a new folder with a message, one INBOX message
    // marked seen, the other deleted.
    let work_new = local.join("Work/new/1000.local:2,");
    std::fs::write(&work_new, message("written-locally")).unwrap();
    let folder = local.join("Projects");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(folder.join(sub)).unwrap();
    }
    std::fs::write(folder.join("cur/2000.local:2,S"), message("project-plan")).unwrap();
    let flagged = inbox.iter().find(|p| p.to_string_lossy().ends_with(":2,F")).unwrap().clone();
    let other = inbox.iter().find(|p| **p != flagged).unwrap().clone();
    std::fs::rename(&flagged, format!("{}S", flagged.display())).unwrap();
    let trashed = format!(
        "{}T",
        if other.to_string_lossy().ends_with(",") {
            other.display().to_string()
        } else {
            format!("{}:2,", other.display())
        }
    );
    std::fs::rename(&other, &trashed).unwrap();
    run();

    let mut c = s.imap_login("alice@example.test");
    let st = c.ok("STATUS Work (MESSAGES)");
    assert!(st.lines[0].ends_with("(MESSAGES 2)"), "{st:?}");
    let st = c.ok("STATUS Projects (MESSAGES UNSEEN)");
    assert!(st.lines[0].ends_with("(MESSAGES 1 UNSEEN 0)"), "{st:?}");
    c.ok("SELECT INBOX");
    let f = c.ok("FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    let text = f.all();
    assert!(text.contains("\\Seen \\Flagged") || text.contains("\\Flagged \\Seen"), "{text}");
    assert_eq!(
        f.untagged("").iter().filter(|l| l.contains("FETCH")).count(),
        1,
        "the locally deleted message was expunged: {text}"
    );
    // And a second run changes nothing.
    run();
}

#[test]
fn offlineimap_sync() {
    assert!(have("offlineimap"), "offlineimap is required; the test command installs it");
    let s = TestServer::started("");
    s.deliver("alice@example.test", message("oi-1").as_bytes());
    let mut c = s.imap_login("alice@example.test");
    c.ok("CREATE Lists/Rust");
    let list_mail = "Subject: list mail\r\n\r\nfrom a mailing list\r\n";
    c.ok(&format!("APPEND Lists/Rust {{{}+}}\r\n{list_mail}", list_mail.len()));
    c.ok("LOGOUT");
    // A folder Bob shares with everyone in the domain, read-only.
    let mut bob = s.imap_login("bob@example.test");
    bob.ok(&format!("APPEND INBOX {{{}+}}\r\n{list_mail}", list_mail.len()));
    bob.ok("SETACL INBOX @example.test lr");
    bob.ok("LOGOUT");
    let local = s.dir.path().join("oi-mail");
    let meta = s.dir.path().join("oi-meta");
    let rc = s.dir.path().join("offlineimaprc");
    std::fs::write(
        &rc,
        format!(
            "[general]\naccounts = tern\nmetadata = {meta}\n\n[Account tern]\nlocalrepository = local\nremoterepository = remote\n\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {local}\nsep = /\n\n\
             [Repository remote]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {port}\nremoteuser = alice@example.test\nremotepass = secret\nssl = no\nstarttls = no\n",
            meta = meta.display(),
            local = local.display(),
            port = s.imap.port()
        ),
    )
    .unwrap();
    let run = || {
        let out = Command::new("offlineimap").arg("-c").arg(&rc).args(["-o", "-u", "basic"]).output().unwrap();
        let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && !text.contains("ERROR"), "offlineimap failed:\n{text}");
    };
    run();
    assert_eq!(files_in(&local.join("INBOX")).len(), 1);
    // With `sep = /` folders nest as on the server; offlineimap's default `.` would make the
    // shared folder's name (an address has dots) ambiguous, and offlineimap skips it.
    assert_eq!(files_in(&local.join("Lists/Rust")).len(), 1);
    let shared = local.join("Other Users/bob@example.test/INBOX");
    assert_eq!(files_in(&shared).len(), 1, "the shared folder is synced");
    // A local message goes up.
    std::fs::write(local.join("INBOX/new/local-1"), message("from-offlineimap")).unwrap();
    run();
    let mut c = s.imap_login("alice@example.test");
    let st = c.ok("STATUS INBOX (MESSAGES)");
    assert!(st.lines[0].ends_with("(MESSAGES 2)"), "{st:?}");
}

#[test]
fn async_imap_client() {
    let s = TestServer::started("");
    s.deliver("alice@example.test", message("async-1").as_bytes());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(s.imap).await.unwrap();
        let client = async_imap::Client::new(tcp);
        let mut session = client.login("alice@example.test", "secret").await.map_err(|e| e.0).unwrap();
        let mailbox = session.select("INBOX").await.unwrap();
        assert_eq!(mailbox.exists, 1);
        {
            use futures::TryStreamExt;
            let messages: Vec<_> =
                session.fetch("1", "(UID ENVELOPE BODY[])").await.unwrap().try_collect().await.unwrap();
            assert_eq!(messages.len(), 1);
            let env = messages[0].envelope().unwrap();
            assert_eq!(env.subject.as_deref(), Some(&b"async-1"[..]));
            assert!(messages[0].body().unwrap().ends_with(b"body async-1\r\n"));
            let stored: Vec<_> = session.store("1", "+FLAGS (\\Answered)").await.unwrap().try_collect().await.unwrap();
            assert_eq!(stored.len(), 1);
        }
        let found = session.search("ANSWERED").await.unwrap();
        assert!(found.contains(&1));
        session.create("FromAsync").await.unwrap();
        session.mv("1", "FromAsync").await.unwrap();
        let status = session.examine("FromAsync").await.unwrap();
        assert_eq!(status.exists, 1);
        session.logout().await.unwrap();
    });
}
