//! Operating Tern: the CLI with and without a running server, configuration errors, crash
//! safety (kill -9), graceful shutdown.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn cli_works_with_the_server_stopped_and_running() {
    let mut s = TestServer::new("");
    // Stopped: the CLI opens the store itself.
    assert!(
        s.ok(&["domain", "add", "Example.TEST", "--catch-all", "alice@example.test"])
            .contains("added domain example.test")
    );
    let out = s.ok(&["user", "add", "alice@example.test"]);
    let password = out.lines().find_map(|l| l.strip_prefix("password: ")).expect("a generated password is printed");
    assert_eq!(password.len(), 20);
    s.ok_stdin(&["user", "add", "bob@example.test", "--password-stdin"], "bobs password\n");
    s.ok(&["alias", "add", "info@example.test", "bob@example.test", "alice@example.test"]);
    assert_eq!(s.ok(&["domain", "list"]), "example.test\tcatch-all=alice@example.test\n");
    assert_eq!(s.ok(&["alias", "list"]), "info@example.test\tbob@example.test,alice@example.test\n");
    let dup = s.cli(&["user", "add", "ALICE@example.test"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let unknown_domain = s.cli(&["user", "add", "x@nowhere.test"]);
    assert!(!unknown_domain.status.success());

    // Running: the same commands go through the admin socket.
    s.launch();
    assert!(s.data_dir().join("admin.sock").exists());
    s.ok_stdin(&["user", "add", "carol@example.test", "--password-stdin"], "carols password\n");
    let users = s.ok(&["user", "list"]);
    assert_eq!(
        users.lines().map(|l| l.split('\t').next().unwrap()).collect::<Vec<_>>(),
        vec!["alice@example.test", "bob@example.test", "carol@example.test"]
    );
    let mut c = s.smtp();
    c.hello();
    assert_eq!(
        c.transaction("x@remote.test", &["carol@example.test"], &simple_message("tocarol")).code,
        250,
        "a user added through the socket receives mail at once"
    );
    assert_eq!(c.transaction("x@remote.test", &["info@example.test"], &simple_message("toinfo")).code, 250);
    c.expect("QUIT", 221);
    assert_eq!(s.mail_list("carol@example.test", "INBOX").len(), 1);
    s.ok(&["alias", "remove", "info@example.test", "alice@example.test"]);
    assert_eq!(s.ok(&["alias", "list"]), "info@example.test\tbob@example.test\n");
    s.ok_stdin(&["user", "passwd", "bob@example.test", "--password-stdin"], "new password\n");
    let still_in_use = s.cli(&["domain", "remove", "example.test"]);
    assert!(!still_in_use.status.success(), "a domain with users cannot be removed");
    assert!(s.ok(&["user", "list"]).contains("bob@example.test\tmessages=1\tbytes="));
    assert!(s.stop().success());

    // Stopped again: everything done through the socket is on disk.
    assert_eq!(s.mail_list("bob@example.test", "INBOX").len(), 1);
    s.ok(&["user", "remove", "carol@example.test"]);
    assert!(!s.ok(&["user", "list"]).contains("carol"));
    let show = s.cli(&["mail", "show", "bob@example.test", "INBOX", "99"]);
    assert!(!show.status.success());
    assert!(String::from_utf8_lossy(&show.stderr).contains("no message with UID 99"));
}

#[test]
fn new_users_get_the_special_use_mailboxes() {
    let s = TestServer::started("");
    for mailbox in ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"] {
        let out = s.cli(&["mail", "list", "alice@example.test", mailbox]);
        assert!(out.status.success(), "{mailbox}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(!s.cli(&["mail", "list", "alice@example.test", "Nope"]).status.success());
}

#[test]
fn bad_config_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("hostnam = \"x.test\"\n", "hostnam"),
        ("[listen]\nsmtp = [\"nonsense\"]\n", "smtp"),
        ("[smtp]\nmax_recipients = 0\n", "smtp.max_recipients"),
        ("[smtp]\ntimeout_seconds = \"ten\"\n", "timeout_seconds"),
        ("[tls]\ncert = \"/nonexistent.pem\"\n", "tls.key"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(BIN).arg("--config").arg(&path).arg("serve").output().unwrap();
        assert!(!out.status.success(), "{text} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "error for {text:?} does not name {key}: {err}");
    }
    let missing =
        std::process::Command::new(BIN).args(["--config", "/nonexistent/tern.toml", "serve"]).output().unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/tern.toml"));
}

#[test]
fn a_port_in_use_is_reported_with_its_config_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let s = TestServer::new("");
    let text = std::fs::read_to_string(&s.config_path)
        .unwrap()
        .replace("smtp = [\"127.0.0.1:0\"]", &format!("smtp = [\"127.0.0.1:{port}\"]"));
    std::fs::write(&s.config_path, text).unwrap();
    let out = s.cli(&["serve"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen.smtp") && err.contains(&port.to_string()), "{err}");
}

#[test]
fn acknowledged_mail_survives_kill_9() {
    let mut s = TestServer::started("");
    let addr = s.smtp;
    // Several clients deliver as fast as they can; the server is killed while they do. Every
    // message that got its 250 must be there after restart.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let stop = stop.clone();
            let acknowledged = std::sync::Arc::clone(&acknowledged);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut c = Client::connect(addr);
                c.hello();
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) && i > 0 {
                        break;
                    }
                    let subject = format!("t{t}m{i}");
                    c.send(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n");
                    let replies: Option<Vec<u16>> = (0..3).map(|_| c.try_reply().map(|r| r.code)).collect();
                    if replies.as_deref() != Some(&[250, 250, 354]) {
                        break;
                    }
                    c.send(&simple_message(&subject));
                    match c.try_reply() {
                        Some(r) if r.code == 250 => {
                            acked.push(subject);
                            acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    // Killed in the middle of the load, once enough has been acknowledged to mean something.
    eventually(Duration::from_secs(30), "40 acknowledged messages", || {
        (acknowledged.load(std::sync::atomic::Ordering::Relaxed) >= 40).then_some(())
    });
    s.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    eprintln!("{} messages acknowledged before kill -9", acked.len());
    assert!(acked.len() > 20, "too few messages before the kill ({}) to mean anything", acked.len());
    // Restart on the same data: the journal is replayed.
    s.launch();
    let stored: std::collections::HashSet<String> =
        s.mail_list("alice@example.test", "INBOX").iter().map(|l| l.rsplit('\t').next().unwrap().to_string()).collect();
    let lost: Vec<&String> = acked.iter().filter(|a| !stored.contains(*a)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged messages lost after kill -9: {lost:?}", lost.len(), acked.len());
    // And the store still works: UIDs continue, new mail is accepted.
    let mut c = s.smtp();
    c.hello();
    assert_eq!(c.transaction("x@remote.test", &["alice@example.test"], &simple_message("after")).code, 250);
    let list = s.mail_list("alice@example.test", "INBOX");
    let uids: Vec<u32> = list.iter().map(|l| l.split('\t').next().unwrap().parse().unwrap()).collect();
    assert!(uids.windows(2).all(|w| w[0] < w[1]), "UIDs must stay strictly increasing: {uids:?}");
}

#[test]
fn sigterm_lets_the_transaction_in_progress_finish() {
    let mut s = TestServer::started("");
    let mut c = s.smtp();
    c.hello();
    c.expect("MAIL FROM:<x@remote.test>", 250);
    c.expect("RCPT TO:<alice@example.test>", 250);
    c.expect("DATA", 354);
    c.send(b"Subject: inflight\r\n\r\nfirst half\r\n");
    // Shut down while the message is half sent.
    std::process::Command::new("kill").arg("-TERM").arg(s.pid().to_string()).status().unwrap();
    // New connections are no longer accepted...
    eventually(Duration::from_secs(10), "the listener to close after SIGTERM", || {
        std::net::TcpStream::connect(s.smtp).is_err().then_some(())
    });
    // ...but the transaction in progress completes and is acknowledged.
    c.send(b"second half\r\n.\r\n");
    let r = c.reply();
    assert_eq!(r.code, 250, "{r:?}");
    let bye = c.reply();
    assert_eq!(bye.code, 421, "the session is then closed: {bye:?}");
    assert!(s.stop().success(), "{}", s.log());
    assert_eq!(s.mail_list("alice@example.test", "INBOX").len(), 1);
}

#[test]
fn embedded_defaults_generate_a_certificate_and_default_data_dir() {
    // `tern serve --dev` with no config and no --data: data goes to the default data
    // directory ($XDG_DATA_HOME/tern here, so the test stays in its temporary directory), not
    // to the working directory.
    let dir = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(BIN);
    command
        .args(["serve", "--dev"])
        .current_dir(cwd.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env_remove("TERN_CONFIG")
        .stderr(std::process::Stdio::piped());
    // On a machine where Tern is installed, root's /etc/tern/tern.toml is read instead of the
    // defaults (as it should be). An empty file is the embedded defaults, so name one then.
    let system_config = std::path::Path::new("/etc/tern/tern.toml");
    let is_root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
    };
    if system_config.exists() && is_root {
        let empty = dir.path().join("empty.toml");
        std::fs::write(&empty, b"").unwrap();
        command.env("TERN_CONFIG", &empty);
    }
    let mut child = command.spawn().unwrap();
    let run_file = dir.path().join("tern/run.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !run_file.exists() {
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            // Another process may hold the dev ports; that is the only acceptable failure.
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("Address already in use"), "tern serve --dev did not start: {err}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&run_file).unwrap()).unwrap();
    assert_eq!(state["listeners"]["smtp"][0], "127.0.0.1:2525");
    assert!(dir.path().join("tern/tls/cert.pem").exists());
    assert!(dir.path().join("tern/tls/key.pem").exists());
    assert!(std::fs::read_dir(cwd.path()).unwrap().next().is_none(), "nothing in the working directory");
    std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(child.wait().unwrap().success());
}

/// Issue 10: the store was readable by every local user (data dir 0755, files 0644). Whatever
/// the umask, everything Tern creates is private, and an old, open data dir is made private
/// at start with a warning.
#[test]
fn the_data_directory_is_private_to_the_server() {
    use std::os::unix::fs::PermissionsExt;
    fn walk(p: &std::path::Path, out: &mut Vec<(std::path::PathBuf, u32)>) {
        let meta = std::fs::symlink_metadata(p).unwrap();
        if meta.file_type().is_symlink() {
            return;
        }
        out.push((p.to_path_buf(), meta.permissions().mode() & 0o777));
        if meta.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), out);
            }
        }
    }
    // A data dir as an older Tern (or a umask of 022) left it.
    let mut s = TestServer::new("");
    let data = s.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("notes.txt"), b"left by hand").unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("notes.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    s.ok(&["domain", "add", "example.test"]);
    s.ok_stdin(&["user", "add", "alice@example.test", "--password-stdin"], "secret\n");
    s.launch();
    s.deliver("alice@example.test", b"Subject: private\r\n\r\nbody\r\n");
    let mut entries = Vec::new();
    walk(&data, &mut entries);
    assert!(entries.len() > 10, "{entries:?}");
    for (path, mode) in &entries {
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
    }
    assert!(s.log().contains("the data directory was readable by other local users"), "{}", s.log());
}

/// Issue 10: `tern config | head -1` panicked on the closed pipe.
#[test]
fn output_into_a_closed_pipe_is_not_a_panic() {
    let s = TestServer::new("");
    for args in [&["config"][..], &["domain", "list"][..]] {
        let mut child = std::process::Command::new(BIN)
            .arg("--config")
            .arg(&s.config_path)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader is gone before the command writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "tern {args:?}: {err}");
        assert!(out.status.success(), "tern {args:?}: {err}");
    }
}

#[test]
fn commands_find_the_servers_data_wherever_they_run() {
    let s = TestServer::started("");
    let elsewhere = tempfile::tempdir().unwrap();
    // $TERN_CONFIG names the configuration when --config does not, from any directory.
    let out = std::process::Command::new(BIN)
        .current_dir(elsewhere.path())
        .env("TERN_CONFIG", &s.config_path)
        .args(["user", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice@example.test"));
    assert!(!elsewhere.path().join("tern-data").exists(), "nothing is made in the working directory");

    // A relative data_dir in a config file is relative to the file, not to the working
    // directory. Only `serve` and `setup` make a store: any other command on a data directory
    // that holds none is refused, saying where it looked and from what.
    let confdir = tempfile::tempdir().unwrap();
    std::fs::write(confdir.path().join("tern.toml"), "data_dir = \"data\"\n").unwrap();
    let in_elsewhere = |args: &[&str]| {
        std::process::Command::new(BIN)
            .current_dir(elsewhere.path())
            .arg("--config")
            .arg(confdir.path().join("tern.toml"))
            .args(args)
            .output()
            .unwrap()
    };
    for args in [&["domain", "add", "example.test"][..], &["user", "list"][..], &["queue", "list"][..]] {
        let out = in_elsewhere(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "tern {args:?} must be refused: {err}");
        assert!(
            err.contains("there is no Tern data in")
                && err.contains(&confdir.path().join("data").display().to_string())
                && err.contains("tern setup"),
            "{err}"
        );
        assert!(!confdir.path().join("data").exists(), "tern {args:?} made a data directory");
    }
    let out = in_elsewhere(&["setup"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = in_elsewhere(&["domain", "add", "example.test"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(confdir.path().join("data/store").exists());
    assert!(!elsewhere.path().join("data").exists());

    // `tern config` prints a TOML file with every default filled in, which loads back to the
    // same configuration; files it names are checked.
    let printed = s.ok(&["config"]);
    assert!(printed.contains("[smtp]") && printed.contains("max_message_size = "), "{printed}");
    std::fs::write(confdir.path().join("printed.toml"), &printed).unwrap();
    let again = std::process::Command::new(BIN)
        .arg("--config")
        .arg(confdir.path().join("printed.toml"))
        .arg("config")
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(printed, String::from_utf8_lossy(&again.stdout));
    std::fs::write(confdir.path().join("certless.toml"), "[tls]\ncert = \"missing.pem\"\nkey = \"missing.key\"\n")
        .unwrap();
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(confdir.path().join("certless.toml"))
        .arg("config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls.cert") && err.contains(&confdir.path().join("missing.pem").display().to_string()),
        "{err}"
    );

    // A bad log level stops every command with the key named (it used to turn logging off).
    std::fs::write(confdir.path().join("bad.toml"), "[log]\nlevel = \"verbose!!\"\n").unwrap();
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(confdir.path().join("bad.toml"))
        .arg("config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.level"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn errors_are_said_once_in_words() {
    // A store its user may not open: the error names the path and says why, once.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("store")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("store"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    let out = if root {
        // Root reads anything: run as nobody (the binary must be reachable for it).
        let bin = dir.path().join("tern");
        std::fs::copy(BIN, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::process::Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .arg(&bin)
            .arg("--data")
            .arg(&data)
            .args(["user", "list"])
            .current_dir("/")
            .output()
            .expect("runuser (util-linux)")
    } else {
        std::process::Command::new(BIN).arg("--data").arg(&data).args(["user", "list"]).output().unwrap()
    };
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&data.join("store").display().to_string()), "{err}");
    assert_eq!(1, err.matches("Permission denied").count(), "once: {err}");
    assert!(!err.contains("FjallError") && !err.contains("Os {"), "in words: {err}");
    std::fs::set_permissions(data.join("store"), std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// Names listed under "Commands:" in a help text.
fn help_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

fn help_of(args: &[&str]) -> String {
    let out = std::process::Command::new(BIN).args(args).arg("--help").output().unwrap();
    assert!(out.status.success(), "{args:?} --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn help_describes_every_argument_and_flag() {
    let mut undocumented = Vec::new();
    let mut check = |path: Vec<String>| {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let help = help_of(&args);
        let mut in_list = false;
        for line in help.lines() {
            if line.starts_with("Arguments:") || line.starts_with("Options:") {
                in_list = true;
                continue;
            }
            if !line.starts_with("  ") {
                in_list = false;
            }
            let item = line.trim_start();
            if in_list && (item.starts_with('<') || item.starts_with('[') || item.starts_with('-')) {
                // "<NAME>  description" or "-x, --long <V>  description": a description
                // follows two or more spaces.
                let described = item.split("  ").skip(1).any(|part| !part.trim().is_empty());
                if !described {
                    undocumented.push(format!("tern {}: {item}", path.join(" ")));
                }
            }
        }
        help
    };
    let top = check(vec![]);
    for command in help_commands(&top) {
        let help = check(vec![command.clone()]);
        for sub in help_commands(&help) {
            check(vec![command.clone(), sub]);
        }
    }
    assert!(undocumented.is_empty(), "without a description:\n{}", undocumented.join("\n"));
}

#[test]
fn mail_clients_find_their_settings() {
    let s = TestServer::started("");
    let out = python("autoconfig_check.py", &["--http", &s.http.to_string(), "--email", "alice@example.test"]);
    assert!(out.trim_end().ends_with("OK"), "{out}");
    // The ports are the ones the server listens on, implicit TLS and STARTTLS both offered.
    for expected in [
        format!("thunderbird imap {HOSTNAME}:{} SSL", s.imaps.port()),
        format!("thunderbird imap {HOSTNAME}:{} STARTTLS", s.imap.port()),
        format!("thunderbird pop3 {HOSTNAME}:{} SSL", s.pop3s.port()),
        format!("thunderbird smtp {HOSTNAME}:{} SSL", s.submissions.port()),
        format!("thunderbird smtp {HOSTNAME}:{} STARTTLS", s.submission.port()),
        format!("autodiscover IMAP {HOSTNAME}:{}", s.imaps.port()),
        format!("autodiscover SMTP {HOSTNAME}:{}", s.submissions.port()),
        format!("apple EmailTypeIMAP {HOSTNAME}:{} out {}", s.imaps.port(), s.submissions.port()),
    ] {
        assert!(out.contains(&expected), "{expected} missing:\n{out}");
    }
}

#[test]
fn packaging_version_systemd_unit_and_readiness() {
    // `tern --version`: version, commit, and the store format this binary reads.
    let out = std::process::Command::new(BIN).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.starts_with(&format!("tern {} (commit ", env!("CARGO_PKG_VERSION"))), "{version}");
    assert!(version.contains(&format!("store format {})", tern_store::embedded::FORMAT_VERSION)), "{version}");

    // Readiness for systemd's Type=notify: READY=1 once serving, STOPPING=1 on SIGTERM.
    let s = TestServer::new("");
    let notify_path = s.dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut child = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&s.config_path)
        .arg("serve")
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 within 30 s");
    let message = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(message.lines().any(|l| l == "READY=1"), "{message}");
    std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let n = notify.recv(&mut buf).expect("STOPPING=1");
    assert_eq!("STOPPING=1", String::from_utf8_lossy(&buf[..n]));
    assert!(child.wait().unwrap().success());

    // The unit file passes systemd's own check (with ExecStart pointing at this build).
    let unit = std::fs::read_to_string(
        std::path::Path::new(
            &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../../deploy/systemd/tern.service"),
    )
    .unwrap();
    for needed in [
        "Type=notify",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "PrivateTmp=yes",
        "StateDirectory=tern",
    ] {
        assert!(unit.contains(needed), "{needed} missing from the unit");
    }
    if have("systemd-analyze") {
        let local = s.dir.path().join("tern.service");
        std::fs::write(&local, unit.replace("/usr/local/bin/tern", BIN)).unwrap();
        let out = std::process::Command::new("systemd-analyze").arg("verify").arg(&local).output().unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    } else {
        eprintln!("systemd-analyze is not installed: the unit file's syntax is not verified");
    }
}

/// The subject of the certificate a TLS listener presents (openssl's client).
fn presented_subject(addr: std::net::SocketAddr) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -subject"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn make_certificate(dir: &std::path::Path, name: &str) {
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .args(["-subj", &format!("/CN={name}")])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sighup_reloads_the_certificate_without_a_restart() {
    let certs = tempfile::tempdir().unwrap();
    make_certificate(certs.path(), "first.tern.test");
    let mut s = TestServer::started(&format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        certs.path().join("cert.pem").display(),
        certs.path().join("key.pem").display()
    ));
    assert!(presented_subject(s.imaps).contains("first.tern.test"), "{}", presented_subject(s.imaps));
    // A renewed certificate (written in place, as renewal tools do), then SIGHUP.
    make_certificate(certs.path(), "second.tern.test");
    let pid = s.pid();
    std::process::Command::new("kill").arg("-HUP").arg(pid.to_string()).status().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !presented_subject(s.imaps).contains("second.tern.test") {
        assert!(std::time::Instant::now() < deadline, "still {}", presented_subject(s.imaps));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(presented_subject(s.submissions).contains("second.tern.test"), "every listener");
    // A broken file on SIGHUP: the certificate in use stays, the server goes on.
    std::fs::write(certs.path().join("cert.pem"), "not a certificate").unwrap();
    std::process::Command::new("kill").arg("-HUP").arg(pid.to_string()).status().unwrap();
    eventually(Duration::from_secs(10), "the reload to be refused", || {
        s.log().contains("certificate not reloaded").then_some(())
    });
    assert!(presented_subject(s.imaps).contains("second.tern.test"));
    assert_eq!(pid, s.pid());
    let status = s.stop();
    assert!(status.success());
}

/// Issue 12: `tern setup` on a fresh machine makes the data directory and a configuration file
/// that loads; run again, it changes nothing.
#[test]
fn setup_writes_a_configuration_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("etc/tern.toml");
    let data = dir.path().join("var/tern");
    let setup = |extra: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("--data")
            .arg(&data)
            .arg("setup")
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "tern setup {extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = setup(
        &["example.net", "--admin", "boss@example.net", "--hostname", "mx1.example.net", "--password-stdin"],
        "Pw-from-stdin\n",
    );
    assert!(first.contains(&format!("configuration {}: written", config.display())), "{first}");
    assert!(first.contains("admin boss@example.net: added, with the password given"), "{first}");
    assert!(first.contains("example.net. IN MX 10 mx1.example.net."), "{first}");
    assert!(first.contains("443/tcp") && first.contains("25/tcp"), "firewall: {first}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains("hostname = \"mx1.example.net\"") && written.starts_with("# Tern configuration"));

    // The file loads (`tern config` checks it) and names the data directory it was made for.
    let out = std::process::Command::new(BIN).arg("--config").arg(&config).arg("config").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(&format!("data_dir = \"{}\"", data.display())), "{printed}");
    assert!(printed.contains("mode = \"testing\""), "{printed}");

    // Again: nothing is made twice, the file is not touched, no password is printed.
    let second = setup(&["example.net", "--admin", "boss@example.net"], "");
    for kept in
        ["domain example.net: exists", "admin boss@example.net: exists", "DKIM keys: exist", "exists (unchanged)"]
    {
        assert!(second.contains(kept), "{kept}: {second}");
    }
    assert!(!second.contains(": added"), "{second}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);
    let records = |text: &str| text.lines().filter(|l| l.contains(" IN ")).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(records(&first), records(&second), "the same records, the same MTA-STS id");
}

/// Issue 12: `tern setup DOMAIN` gives a working domain: an admin who can log in with the
/// password printed once, postmaster@ and abuse@ delivered to the admin, DKIM keys, and the
/// MTA-STS policy `tern dns` announces served over HTTPS on `mta-sts.DOMAIN`.
#[test]
fn setup_makes_a_working_domain_and_its_mta_sts_policy_is_served() {
    let mut s = TestServer::new("");
    let out = s.ok(&["setup", "example.org"]);
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("admin admin@example.org: added, password "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no password printed: {out}"))
        .to_string();
    assert_eq!(out.matches("._domainkey.example.org. IN TXT").count(), 2, "{out}");
    let required = out.find("; Required").unwrap();
    let recommended = out.find("; Recommended").unwrap();
    let at = |needle: &str| out.find(needle).unwrap_or_else(|| panic!("{needle}: {out}"));
    assert!(required < at("example.org. IN MX") && at("_dmarc.example.org.") < recommended);
    assert!(recommended < at("_mta-sts.example.org.") && recommended < at("_smtp._tls.example.org."));
    s.launch();

    let mut imap = s.imap();
    imap.ok(&format!("LOGIN admin@example.org {password}"));
    s.deliver("postmaster@example.org", b"Subject: to the postmaster\r\n\r\nhello\r\n");
    s.deliver("abuse@example.org", b"Subject: a complaint\r\n\r\nhello\r\n");
    assert_eq!(s.mail_list("admin@example.org", "INBOX").len(), 2);

    let (code, policy) = s.https_get("mta-sts.example.org", "/.well-known/mta-sts.txt");
    assert_eq!(code, 200, "{policy}");
    assert_eq!(policy, format!("version: STSv1\r\nmode: testing\r\nmx: {HOSTNAME}\r\nmax_age: 604800\r\n"));
    let dns = s.ok(&["dns", "example.org"]);
    let id = |text: &str| {
        text.lines().find(|l| l.starts_with("_mta-sts.example.org.")).map(str::to_string).unwrap_or_default()
    };
    assert!(id(&dns).contains("v=STSv1; id="), "{dns}");
    assert_eq!(id(&dns), id(&out), "the id stays while the policy does");
    for line in policy.lines() {
        assert!(dns.contains(&format!(";   {line}")), "tern dns shows the served policy: {dns}");
    }
    // Other names get nothing, and metrics are not on the public listener.
    assert_eq!(s.https_get("mta-sts.unknown.test", "/.well-known/mta-sts.txt").0, 404);
    assert_eq!(s.https_get(HOSTNAME, "/.well-known/mta-sts.txt").0, 404);
    assert_eq!(s.https_get("mta-sts.example.org", "/metrics").0, 404);
    assert_eq!(s.http_get("/metrics").0, 200);
}

/// Issue 12: `tern doctor` reads what is published through DNS (a stub server here) and what
/// is served (Tern's own HTTPS listener for the MTA-STS policy, a sink for outbound port 25),
/// and names each item ok, missing or wrong with the fix.
#[test]
fn doctor_checks_what_the_world_sees() {
    let https_port = free_port();
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_signed_names(certs.path(), &[HOSTNAME, "mta-sts.example.test"]);
    let mut world_records: Vec<(String, String, String)> = Vec::new();
    // The domain's expected records come from Tern itself (after setup).
    let mut s = TestServer::unprepared("");
    s.ok(&["setup", "example.test"]);
    let dns = s.ok(&["dns", "example.test"]);
    let record = |prefix: &str| -> (String, String) {
        let line = dns.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {dns}"));
        let name = line.split_whitespace().next().unwrap().trim_end_matches('.').to_string();
        (name, line.split('"').skip(1).step_by(2).collect())
    };
    let dkim: Vec<(String, String)> = dns
        .lines()
        .filter(|l| l.contains("._domainkey."))
        .map(|l| record(l.split_whitespace().next().unwrap()))
        .collect();
    assert_eq!(dkim.len(), 2);
    let (sts_name, sts_value) = record("_mta-sts.example.test.");
    for (name, rtype, value) in [
        ("example.test", "MX", "10 mx.tern.test."),
        // A documentation address (RFC 5737): the resolver answers loopback PTRs itself, and
        // nothing connects to the MX here.
        ("mx.tern.test", "A", "192.0.2.10"),
        ("10.2.0.192.in-addr.arpa", "PTR", "mx.tern.test."),
        ("example.test", "TXT", "v=spf1 ip4:192.0.2.10 -all"),
        // The Ed25519 key as it is; the RSA one stale (another key).
        (dkim[0].0.as_str(), "TXT", dkim[0].1.as_str()),
        (dkim[1].0.as_str(), "TXT", "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAstale"),
        (sts_name.as_str(), "TXT", sts_value.as_str()),
        ("mta-sts.example.test", "A", "127.0.0.1"),
        ("_smtp._tls.example.test", "TXT", "v=TLSRPTv1; rua=mailto:postmaster@example.test"),
        ("probe.test", "MX", "10 mx.probe.test."),
        ("mx.probe.test", "A", "127.0.0.1"),
    ] {
        world_records.push((name.to_string(), rtype.to_string(), value.to_string()));
    }
    let records: Vec<(&str, &str, &str)> =
        world_records.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    let sink_port = free_port();
    let world = World::start(&records, Some(sink_port), serde_json::json!({}));
    // The server's configuration now uses the stub DNS, the CA-signed certificate, and an
    // HTTPS port known in advance (where the MTA-STS policy is fetched from).
    let text = std::fs::read_to_string(&s.config_path)
        .unwrap()
        .replace("https = [\"127.0.0.1:0\"]", &format!("https = [\"127.0.0.1:{https_port}\"]"));
    let config = format!(
        "{text}\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n[dns]\nnameservers = [\"127.0.0.1:{}\"]\ntimeout_seconds = 2\n[delivery]\nsmtp_port = {sink_port}\nmta_sts_port = {https_port}\nca_file = \"{}\"\n",
        cert.display(),
        key.display(),
        world.dns_port,
        ca.display()
    );
    std::fs::write(&s.config_path, config).unwrap();
    s.launch();
    let out = s.cli(&["doctor", "example.test", "--probe", "probe.test"]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "DMARC is missing and a DKIM key is stale: exit 1\n{report}");
    let line = |what: &str| -> String {
        report.lines().find(|l| l.split_whitespace().nth(1) == Some(what)).unwrap_or_default().to_string()
    };
    for (what, status) in [
        ("MX", "ok"),
        ("A/AAAA", "ok"),
        ("PTR", "ok"),
        ("SPF", "ok"),
        ("DMARC", "missing"),
        ("MTA-STS", "ok"),
        ("TLS-RPT", "ok"),
        ("outbound", "ok"),
    ] {
        assert!(line(what).starts_with(status), "{what} should be {status}:\n{report}");
    }
    let dkim_lines: Vec<&str> = report.lines().filter(|l| l.contains(" DKIM ")).collect();
    assert!(dkim_lines.iter().any(|l| l.starts_with("ok")), "{report}");
    assert!(dkim_lines.iter().any(|l| l.starts_with("wrong")), "{report}");
    assert!(report.contains("fix: _dmarc.example.test. IN TXT \"v=DMARC1"), "{report}");
    assert!(
        report.lines().any(|l| l.starts_with("ok") && l.contains("MTA-STS web")),
        "the policy served over HTTPS by Tern itself is checked: {report}"
    );
    assert!(
        report.lines().any(|l| l.starts_with("ok") && l.contains("valid for mx.tern.test, chain trusted")),
        "{report}"
    );
}

/// Issue 12: the container files hold together (no Docker daemon or registry is reachable
/// here, so the image itself is not built by the tests): the image's configuration is valid,
/// every file the Dockerfile copies exists, it runs unprivileged with its data on a volume.
#[test]
fn the_container_files_are_consistent() {
    let root = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../..");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from=")) {
        let source = line.split_whitespace().nth(1).unwrap();
        assert!(root.join(source).exists(), "{line}: {source} is missing");
    }
    for needed in
        ["USER tern", "VOLUME [\"/var/lib/tern\", \"/etc/tern\"]", "ENV TERN_CONFIG=/etc/tern/tern.toml", "--locked"]
    {
        assert!(dockerfile.contains(needed), "{needed} missing from the Dockerfile");
    }
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(root.join("deploy/docker/tern.toml"))
        .arg("config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("data_dir = \"/var/lib/tern\"") && printed.contains("format = \"json\""), "{printed}");
    let compose = std::fs::read_to_string(root.join("deploy/docker/docker-compose.yml")).unwrap();
    assert!(compose.contains("context: ../..") && compose.contains("tern-data:/var/lib/tern"), "{compose}");
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target"), "the build context leaves target/ out");
}

/// Issue 13: started as root with `[server] user`, Tern binds its ports, then runs as that
/// user, owning its data directory; everything still works (delivery, IMAP, the CLI).
#[test]
fn started_as_root_it_runs_as_the_configured_user() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: dropping privileges cannot be tested here");
        return;
    }
    let mut s = TestServer::new("[server]\nuser = \"nobody\"\n");
    // `nobody` must be able to reach its data directory.
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    s.ok(&["domain", "add", "example.test"]);
    s.ok_stdin(&["user", "add", "alice@example.test", "--password-stdin"], "secret\n");
    s.launch();
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_string();
    assert_eq!(uid_line.split_whitespace().skip(1).collect::<Vec<_>>(), ["65534"; 4], "{uid_line}");
    let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert_eq!(groups.trim(), "Groups:", "no supplementary groups");
    s.deliver("alice@example.test", b"Subject: after the drop\r\n\r\nbody\r\n");
    let mut imap = s.imap_login("alice@example.test");
    imap.ok("SELECT INBOX");
    assert_eq!(s.mail_list("alice@example.test", "INBOX").len(), 1);
    for entry in ["store", "secret", "tls/key.pem", "run.json"] {
        let meta = std::fs::metadata(s.data_dir().join(entry)).unwrap();
        assert_eq!(meta.uid(), 65534, "{entry} belongs to the server's user");
    }
    assert!(s.log().contains("running as an unprivileged user"), "{}", s.log());
    assert!(s.stop().success(), "{}", s.log());
}

/// A SIGTERM that comes right after readiness (a service manager stopping at once) is an
/// orderly stop: STOPPING=1 and a clean exit. The handler used to be installed only after
/// READY=1 was sent, and a signal in between killed the process (seen once under load).
#[test]
fn sigterm_right_after_readiness_is_an_orderly_stop() {
    let s = TestServer::new("");
    let notify_path = s.dir.path().join("notify-fast.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for round in 0..10 {
        let mut child = std::process::Command::new(BIN)
            .arg("--config")
            .arg(&s.config_path)
            .arg("serve")
            .env("NOTIFY_SOCKET", &notify_path)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut buf = [0u8; 256];
        let n = notify.recv(&mut buf).expect("READY=1");
        assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
        // SAFETY: kill with a valid pid and signal.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let n = notify.recv(&mut buf).unwrap_or_else(|e| panic!("round {round}: no STOPPING=1: {e}"));
        assert_eq!("STOPPING=1", String::from_utf8_lossy(&buf[..n]), "round {round}");
        assert!(child.wait().unwrap().success(), "round {round}");
    }
}

/// Behind a load balancer: a PROXY header (v1 or v2) from a trusted balancer names the
/// client for every listener:
/// the Received header, failed-login bans and connection checks see the client, not the
/// balancer; a broken header from the balancer ends the connection; a header from anyone
/// else is just a bad command.
#[test]
fn proxy_headers_from_trusted_balancers_name_the_client() {
    let s = TestServer::started(
        "proxy_from = [\"127.0.0.1\"]\n[limits]\nexempt = []\nauth_failures_before_ban = 3\nban_seconds = 60\n",
    );
    // SMTP with a version 1 header: the message records the client's address.
    let mut c = s.smtp();
    c.send(b"PROXY TCP4 192.0.2.99 127.0.0.1 40000 25\r\n");
    c.hello();
    let r = c.transaction(
        "sender@remote.test",
        &["alice@example.test"],
        b"From: sender@remote.test\r\nSubject: via proxy\r\n\r\nhi\r\n.\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    c.expect("QUIT", 221);
    let message = String::from_utf8_lossy(&s.mail_show("alice@example.test", "INBOX", 1)).into_owned();
    let received = message.lines().find(|l| l.starts_with("Received:")).unwrap_or_default().to_string();
    assert!(message.contains("[192.0.2.99]"), "{message}");
    assert!(!received.contains("127.0.0.1"), "{received}");

    // IMAPS with version 2 headers: failed logins ban the client behind the balancer only.
    let v2 = |client: [u8; 4]| {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
        h.extend_from_slice(&client);
        h.extend_from_slice(&[127, 0, 0, 1, 0x9c, 0x40, 0x00, 0x8f]);
        h
    };
    // On the IMAPS port: the header, then TLS (a client that is not on loopback may only
    // log in over TLS).
    let imap_behind = |client: [u8; 4]| {
        let mut c = Client::connect(s.imaps);
        c.send(&v2(client));
        c.into_tls()
    };
    let mut c = imap_behind([198, 51, 100, 7]);
    assert!(c.read_line().unwrap_or_default().starts_with("* OK"));
    for i in 0..3 {
        c.send(format!("a{i} LOGIN alice@example.test wrong\r\n").as_bytes());
        let mut line = c.read_line().unwrap_or_default();
        while line.starts_with('*') {
            line = c.read_line().unwrap_or_default();
        }
        assert!(line.starts_with(&format!("a{i} NO")), "{line}");
    }
    let mut banned = imap_behind([198, 51, 100, 7]);
    let line = banned.read_line().unwrap_or_default();
    assert!(line.starts_with("* BYE [UNAVAILABLE]"), "the banned client is refused at connect: {line}");
    let mut other = imap_behind([198, 51, 100, 8]);
    assert!(other.read_line().unwrap_or_default().starts_with("* OK"), "another client behind the balancer is not");
    other.send(b"a1 LOGIN alice@example.test secret\r\n");
    assert!(other.read_line().unwrap_or_default().starts_with("a1 OK"));

    // The balancer itself sending no header: the connection ends without a greeting.
    let mut c = Client::connect(s.imap);
    c.send(b"a1 NOOP\r\n");
    assert_eq!(c.read_line(), None);

    // Without proxy_from, a PROXY line is a command SMTP does not know.
    let plain = TestServer::started("");
    let mut c = plain.smtp();
    c.greeting();
    let r = c.cmd("PROXY TCP4 192.0.2.99 127.0.0.1 40000 25");
    assert_eq!(r.code, 500, "{r:?}");
}
