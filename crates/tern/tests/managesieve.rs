//! ManageSieve (RFC 5804) through the wire: raw commands, Debian's `sieve-connect`, and
//! `sievelib`'s client (python3-sievelib) for a full cycle.

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// Reads a response up to its OK/NO/BYE line; returns all lines.
fn response(c: &mut Client<std::net::TcpStream>) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(line) = c.read_line() {
        let done = line.starts_with("OK") || line.starts_with("NO") || line.starts_with("BYE");
        lines.push(line);
        if done {
            break;
        }
    }
    lines
}

fn plain(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

#[test]
fn raw_commands_follow_rfc_5804() {
    let s = TestServer::started("");
    let mut c = Client::connect(s.managesieve);
    let greeting = response(&mut c).join("\n");
    assert!(greeting.contains("\"IMPLEMENTATION\" \"Tern"), "{greeting}");
    assert!(greeting.contains("\"SIEVE\" \"fileinto envelope"), "{greeting}");
    assert!(greeting.contains("\"STARTTLS\""), "{greeting}");
    assert!(greeting.contains("\"VERSION\" \"1.0\""), "{greeting}");
    assert!(greeting.ends_with("ready\""), "{greeting}");

    // Not logged in: script commands are refused.
    c.send(b"LISTSCRIPTS\r\n");
    assert!(response(&mut c).last().unwrap().starts_with("NO"));
    c.send(format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain("alice@example.test", "wrong")).as_bytes());
    assert_eq!(response(&mut c).last().unwrap(), "NO \"Authentication failed\"");
    c.send(format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain("alice@example.test", "secret")).as_bytes());
    assert!(response(&mut c).last().unwrap().starts_with("OK"));

    // A script with an error: refused, naming the line.
    let bad = "require \"fileinto\";\r\nkeep;\r\nfrobnicate;\r\n";
    c.send(format!("PUTSCRIPT \"bad\" {{{}+}}\r\n{bad}\r\n", bad.len()).as_bytes());
    let answer = response(&mut c).join("\n");
    assert!(answer.starts_with("NO") && answer.contains("line 3") && answer.contains("frobnicate"), "{answer}");
    c.send(b"CHECKSCRIPT \"keep;\"\r\n");
    assert!(response(&mut c).last().unwrap().starts_with("OK"));

    let good = "keep;\r\n";
    c.send(format!("PUTSCRIPT \"main\" {{{}+}}\r\n{good}\r\n", good.len()).as_bytes());
    assert!(response(&mut c).last().unwrap().starts_with("OK"));
    c.send(b"SETACTIVE \"main\"\r\n");
    assert!(response(&mut c).last().unwrap().starts_with("OK"));
    c.send(b"LISTSCRIPTS\r\n");
    assert_eq!(response(&mut c), ["\"main\" ACTIVE", "OK \"Listscripts completed\""]);
    c.send(b"GETSCRIPT \"main\"\r\n");
    assert_eq!(response(&mut c), ["{7}", "keep;", "", "OK \"Getscript completed\""]);
    c.send(b"DELETESCRIPT \"main\"\r\n");
    assert!(response(&mut c).last().unwrap().starts_with("NO (ACTIVE)"));
    c.send(b"GETSCRIPT \"none\"\r\n");
    assert!(response(&mut c).last().unwrap().starts_with("NO (NONEXISTENT)"));
    c.send(b"RENAMESCRIPT \"none\" \"x\"\r\n");
    assert!(response(&mut c).last().unwrap().starts_with("NO (NONEXISTENT)"));
    c.send(b"HAVESPACE \"big\" 99999999\r\n");
    assert!(response(&mut c).last().unwrap().starts_with("NO (QUOTA/MAXSIZE)"));
    // A literal over the limit is refused without being stored, and the session goes on.
    c.send(format!("PUTSCRIPT \"big\" {{{}+}}\r\n", 2 << 20).as_bytes());
    c.send(&vec![b'#'; 2 << 20]);
    c.send(b"\r\n");
    assert!(response(&mut c).last().unwrap().starts_with("NO (QUOTA/MAXSIZE)"));
    c.send(b"NOOP \"sync-1\"\r\n");
    assert_eq!(response(&mut c).last().unwrap(), "OK (TAG \"sync-1\") \"Done\"");
    c.send(b"UNAUTHENTICATE\r\n");
    assert!(response(&mut c).last().unwrap().starts_with("OK"));
    c.send(b"LISTSCRIPTS\r\n");
    assert!(response(&mut c).last().unwrap().starts_with("NO"));
    c.send(b"LOGOUT\r\n");
    assert!(response(&mut c).last().unwrap().starts_with("OK"));

    // The failed login was counted with the other services'.
    let (_, metrics) = s.http_get("/metrics");
    assert!(metrics.contains("tern_auth_failures_total{service=\"managesieve\"} 1"), "{metrics}");
    assert!(metrics.contains("tern_managesieve_connections_total"), "{metrics}");
}

#[test]
fn sievelib_does_a_full_cycle() {
    let s = TestServer::started("");
    let out = python(
        "managesieve_cycle.py",
        &["127.0.0.1", &s.managesieve.port().to_string(), "alice@example.test", "secret"],
    );
    assert!(out.contains("login ok"), "{out}");
    assert!(out.contains("bad script refused:") && out.contains("line 3"), "{out}");
    assert!(out.contains("active rules others ['spare']"), "{out}");
    assert!(out.contains("active delete refused"), "{out}");
    assert!(out.contains("after: active None others ['rules']"), "{out}");
    assert!(out.contains("done"), "{out}");
}

#[test]
fn sieve_connect_uploads_lists_and_activates() {
    if !have("sieve-connect") {
        panic!("sieve-connect is missing (apt install sieve-connect; scripts/test.sh installs it)");
    }
    let s = TestServer::started("");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("vacation.sieve");
    std::fs::write(&local, "require \"vacation\";\nvacation :days 3 \"Away until Monday.\";\n").unwrap();
    let run = |args: &[&str]| -> String {
        let mut child = Command::new("sieve-connect")
            .args(["--server", "127.0.0.1", "--port", &s.managesieve.port().to_string()])
            .args(["--user", "alice@example.test", "--passwordfd", "0", "--notlsverify", "--authmech", "PLAIN"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"secret\n").unwrap();
        let out = child.wait_with_output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "sieve-connect {args:?} failed:\n{text}");
        text
    };
    run(&["--upload", "--localsieve", local.to_str().unwrap(), "--remotesieve", "away"]);
    run(&["--activate", "--remotesieve", "away"]);
    let list = run(&["--list"]);
    assert!(list.contains("\"away\" ACTIVE"), "{list}");
    let got = dir.path().join("got.sieve");
    run(&["--download", "--remotesieve", "away", "--localsieve", got.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&got).unwrap().contains("Away until Monday."));
    // The store has it as the active script (what delivery will run).
    let listed = s.ok(&["sieve", "list", "alice@example.test"]);
    assert!(listed.contains("away") && listed.contains("active"), "{listed}");
}
