//! Issue 12: `tern migrate imap` with Dovecot (from Debian) as the source server, over TLS.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Dovecot {
    child: Child,
    dir: tempfile::TempDir,
    imap_port: u16,
    imaps_port: u16,
    ca: std::path::PathBuf,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Dovecot {
    /// A private Dovecot (IMAP and IMAPS on loopback, Maildir) with user `source` /
    /// password `sourcepw`.
    fn start() -> Dovecot {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (ca, cert, key) = ca_signed_names(root, &["imap.source.test", "127.0.0.1"]);
        for p in [&cert, &key] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let mail = root.join("mail");
        std::fs::create_dir_all(&mail).unwrap();
        // Mail belongs to `nobody` (Dovecot refuses to serve mail as root).
        let (uid, gid) = (65534, 65534);
        Command::new("chown").arg(format!("{uid}:{gid}")).arg(&mail).status().unwrap();
        for d in ["run", "state", "log"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
            std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let passwd = root.join("passwd");
        std::fs::write(&passwd, "source:{PLAIN}sourcepw::::::\n").unwrap();
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (imap_port, imaps_port) = (free_port(), free_port());
        let r = root.display();
        let config = format!(
            "instance_name = tern-test-dovecot-{imap_port}\nbase_dir = {r}/run\nstate_dir = {r}/state\nlog_path = {r}/log/dovecot.log\n\
             protocols = imap\nlisten = 127.0.0.1\nssl = yes\nssl_cert = <{}\nssl_key = <{}\n\
             disable_plaintext_auth = no\nauth_mechanisms = plain login\n\
             first_valid_uid = {uid}\nlast_valid_uid = {uid}\nfirst_valid_gid = {gid}\n\
             mail_location = maildir:{r}/mail/%n\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {}\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={r}/mail/%n\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap_port}\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps_port}\n  }}\n}}\n",
            cert.display(),
            key.display(),
            passwd.display()
        );
        let conf = root.join("dovecot.conf");
        std::fs::write(&conf, config).unwrap();
        let child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("log/stderr")).unwrap())
            .spawn()
            .expect("dovecot (the test command installs dovecot-imapd)");
        let d = Dovecot { child, dir, imap_port, imaps_port, ca };
        eventually(Duration::from_secs(20), "Dovecot listening", || {
            std::net::TcpStream::connect(("127.0.0.1", imap_port)).ok().map(|_| ())
        });
        d
    }

    fn seed(&self, spec: serde_json::Value) -> String {
        let file = self.dir.path().join("spec.json");
        std::fs::write(&file, spec.to_string()).unwrap();
        python(
            "imap_seed.py",
            &["127.0.0.1", &self.imap_port.to_string(), "source", "sourcepw", file.to_str().unwrap()],
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/dovecot.log")).unwrap_or_default()
    }
}

fn migrate(s: &TestServer, from: &str, ca: &Path) -> std::process::Output {
    s.cli_stdin(
        &[
            "migrate",
            "imap",
            "--from",
            from,
            "--user",
            "source",
            "--password-stdin",
            "--to",
            "alice@example.test",
            "--ca-file",
            ca.to_str().unwrap(),
        ],
        "sourcepw\n",
    )
}

fn fetch_all(s: &TestServer, mailbox: &str) -> Vec<(String, Vec<u8>)> {
    let mut imap = s.imap_login("alice@example.test");
    imap.ok(&format!("EXAMINE \"{mailbox}\""));
    let (items, done) = imap.literals("FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[])");
    assert!(done.contains("OK"), "{done}");
    items
}

#[test]
fn every_folder_is_copied_from_dovecot_with_flags_and_dates_and_again_only_what_is_new() {
    assert!(have("dovecot"), "dovecot is missing: ./scripts/test.sh installs dovecot-imapd");
    let dovecot = Dovecot::start();
    let delimiter = dovecot.seed(serde_json::json!([
        {"folder": "INBOX", "subject": "first", "flags": "\\Seen \\Flagged $Forwarded", "date": 1600000000},
        {"folder": "INBOX", "subject": "second", "date": 1600000100},
        {"folder": "Sent", "subject": "sent one", "flags": "\\Seen \\Answered", "date": 1500000000},
        {"folder": "Archive/2020", "subject": "archived", "flags": "\\Seen", "date": 1580000000},
    ]));
    assert!(!delimiter.trim().is_empty(), "{}", dovecot.log());
    let s = TestServer::started("");
    // Over implicit TLS, the certificate checked: refused without the CA that signed it.
    let untrusted = s.cli_stdin(
        &[
            "migrate",
            "imap",
            "--from",
            &format!("imaps://127.0.0.1:{}", dovecot.imaps_port),
            "--user",
            "source",
            "--password-stdin",
            "--to",
            "alice@example.test",
        ],
        "sourcepw\n",
    );
    assert!(!untrusted.status.success(), "an unknown CA must be refused");
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("TLS"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    let out = migrate(&s, &format!("imaps://127.0.0.1:{}", dovecot.imaps_port), &dovecot.ca);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}\n{}", String::from_utf8_lossy(&out.stderr), dovecot.log());
    assert!(text.contains("INBOX -> INBOX: 2 messages copied"), "{text}");
    assert!(text.contains("Sent -> Sent: 1 messages copied"), "{text}");
    assert!(text.contains("-> Archive/2020: 1 messages copied"), "{text}");

    let inbox = fetch_all(&s, "INBOX");
    assert_eq!(inbox.len(), 2);
    let (meta, body) = &inbox[0];
    assert!(meta.contains("\\Seen") && meta.contains("\\Flagged") && meta.contains("$Forwarded"), "{meta}");
    assert!(meta.contains("13-Sep-2020 12:26:40 +0000"), "{meta}");
    assert!(String::from_utf8_lossy(body).contains("Subject: first\r\n"));
    assert!(!inbox[1].0.contains("\\Seen"), "{}", inbox[1].0);
    let sent = fetch_all(&s, "Sent");
    assert!(sent[0].0.contains("\\Answered"), "{}", sent[0].0);
    assert_eq!(fetch_all(&s, "Archive/2020").len(), 1);

    // New mail at the source; run again over STARTTLS: only the new message is copied.
    dovecot.seed(serde_json::json!([{"folder": "INBOX", "subject": "third", "date": 1600000200}]));
    let out = migrate(&s, &format!("imap://127.0.0.1:{}", dovecot.imap_port), &dovecot.ca);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("INBOX -> INBOX: 1 messages copied"), "{text}");
    assert!(text.contains("Sent -> Sent: 0 messages copied"), "{text}");
    assert_eq!(fetch_all(&s, "INBOX").len(), 3);
    assert!(dovecot.log().contains("starttls") || dovecot.log().contains("TLS"), "{}", dovecot.log());

    // Without its saved places (lost, or a first run into mailboxes that hold the mail
    // already) nothing is copied twice.
    std::fs::remove_dir_all(s.data_dir().join("transfer")).unwrap();
    let out = migrate(&s, &format!("imaps://127.0.0.1:{}", dovecot.imaps_port), &dovecot.ca);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("INBOX -> INBOX: 0 messages copied, 3 already there"), "{text}");
    assert_eq!(fetch_all(&s, "INBOX").len(), 3);

    // A wrong password is refused with the server's answer.
    let bad = s.cli_stdin(
        &[
            "migrate",
            "imap",
            "--from",
            &format!("imaps://127.0.0.1:{}", dovecot.imaps_port),
            "--user",
            "source",
            "--password-stdin",
            "--ca-file",
            dovecot.ca.to_str().unwrap(),
            "--to",
            "alice@example.test",
        ],
        "wrong\n",
    );
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("login as source refused"));
}
