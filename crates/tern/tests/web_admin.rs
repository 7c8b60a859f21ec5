//! The web admin (issue 17) against the real binary: over plain HTTP (headers, sign-in and its
//! CSRF cookie, sessions, administrators and users, bans), and in a real browser — Debian's
//! Chromium driven by Playwright (`tests/clients/webadmin.py`), with screenshots kept under
//! the cargo target directory (`tmp/web-admin/`).

mod common;

use common::web::*;
use common::*;
use std::path::PathBuf;

/// Sessions are kept in the store: a restart signs nobody out, and a message after a change
/// waits there for the next page; a generated secret is on the answer to the form itself.
#[test]
fn a_session_outlives_a_restart_and_secrets_are_shown_at_once() {
    let mut s = TestServer::started("");
    let (bob, csrf) = sign_in(&s, "bob@example.test", "secret").unwrap();
    s.stop();
    s.launch();
    let page = http(&s, "GET", "/admin/account", &bob, None, None);
    assert_eq!(page.code, 200, "still signed in after a restart: {}", page.head);
    // The answer to "make an app password" is the account page with the secret on it.
    let made = http(&s, "POST", "/admin/account/app-passwords", &bob, Some(&format!("csrf={csrf}&name=phone")), None);
    assert_eq!(made.code, 200, "{}", made.head);
    assert!(made.body.contains("id=\"secret\"") && made.body.contains("My account"), "{}", made.body);
    let secret = made.body.split("id=\"secret\">").nth(1).and_then(|r| r.split('<').next()).unwrap_or_default();
    assert_eq!(secret.len(), 29, "{secret}");
    assert!(s.imap().run(&format!("LOGIN bob@example.test {secret}")).ok());
    // Not kept for the next page.
    let next = http(&s, "GET", "/admin/account", &bob, None, None);
    assert!(!next.body.contains(secret) && !next.body.contains("id=\"secret\""));
    // A plain message is kept for the next page, once.
    let removed =
        http(&s, "POST", "/admin/account/app-passwords/phone/delete", &bob, Some(&format!("csrf={csrf}")), None);
    assert_eq!(removed.code, 303);
    let next = http(&s, "GET", "/admin/account", &bob, None, None);
    assert!(next.body.contains("role=\"status\""), "{}", next.body);
    let again = http(&s, "GET", "/admin/account", &bob, None, None);
    assert!(!again.body.contains("role=\"status\""), "shown once");
    // Signed out: the cookie is worthless, after a restart too.
    assert_eq!(http(&s, "POST", "/admin/logout", &bob, Some(&format!("csrf={csrf}")), None).code, 303);
    s.stop();
    s.launch();
    assert_eq!(http(&s, "GET", "/admin/account", &bob, None, None).code, 303);
}

#[test]
fn sessions_csrf_roles_and_headers_over_http() {
    let s = TestServer::started("[limits]\nexempt = []\nauth_failures_before_ban = 6\nban_seconds = 60\n");
    s.ok(&["user", "admin", "alice@example.test", "on"]);
    assert!(s.ok(&["user", "list"]).contains("alice@example.test\tmessages=0\tbytes=0\tadmin"));

    // Every page: the CSP without unsafe-inline, no framing, no caching.
    let login = http(&s, "GET", "/admin/login", "", None, None);
    let csp = login.header("content-security-policy").join(" ");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert_eq!(login.header("x-frame-options"), ["DENY"]);
    assert_eq!(login.header("cache-control"), ["no-store"]);
    let set = login.header("set-cookie").join(" ");
    assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("SameSite=Strict"), "{set}");
    assert!(!login.body.contains("style="), "no inline styles");
    assert_eq!(http(&s, "GET", "/admin/users", "", None, None).code, 303, "signed out: to the sign-in page");
    assert_eq!(http(&s, "GET", "/admin/assets/tern.js", "", None, None).code, 200);
    let slash = http(&s, "GET", "/admin/", "", None, None);
    assert_eq!((slash.code, slash.header("location")), (308, vec!["/admin".to_string()]), "/admin/ as typed");

    // The sign-in form's CSRF token must match its cookie.
    let token = login.cookie("tern_login").unwrap();
    let forged = http(
        &s,
        "POST",
        "/admin/login",
        "tern_login=other",
        Some(&format!("email=alice%40example.test&password=secret&csrf={token}")),
        None,
    );
    assert_eq!(forged.code, 403, "{}", forged.body);
    let wrong = sign_in(&s, "alice@example.test", "wrong").unwrap_err();
    assert_eq!(wrong.code, 401);
    assert!(wrong.body.contains("Wrong address or password"));

    // An administrator: every page; a change needs the CSRF token and this origin.
    let (admin, csrf) = sign_in(&s, "alice@example.test", "secret").unwrap();
    for page in [
        "/admin/dashboard",
        "/admin/domains",
        "/admin/users",
        "/admin/aliases",
        "/admin/queue",
        "/admin/quarantine",
        "/admin/logs",
        "/admin/account",
        "/admin/domains/example.test",
        "/admin/users/bob@example.test",
    ] {
        let r = http(&s, "GET", page, &admin, None, None);
        assert_eq!(r.code, 200, "{page}: {}", r.body);
    }
    let json = http(&s, "GET", "/admin/dashboard.json", &admin, None, None);
    assert!(json.body.contains("\"per_minute\""), "{}", json.body);
    let add = |csrf: &str, origin: Option<&str>, email: &str| {
        http(
            &s,
            "POST",
            "/admin/users",
            &admin,
            Some(&format!("csrf={csrf}&email={}&password=pw12345678", enc(email))),
            origin,
        )
    };
    assert_eq!(add("", None, "x1@example.test").code, 403);
    assert_eq!(add("not-the-token", None, "x2@example.test").code, 403);
    assert_eq!(add(&csrf, Some("http://evil.example"), "x3@example.test").code, 403);
    let done = add(&csrf, Some(&format!("http://{}", s.http)), "carol@example.test");
    assert_eq!(done.code, 303, "{}", done.body);
    let users = s.ok(&["user", "list"]);
    assert!(users.contains("carol@example.test") && !users.contains("x1@") && !users.contains("x3@"), "{users}");

    // A user who is not an administrator: their own account only.
    let (carol, carol_csrf) = sign_in(&s, "carol@example.test", "pw12345678").unwrap();
    assert_eq!(http(&s, "GET", "/admin/users", &carol, None, None).code, 403);
    assert_eq!(http(&s, "GET", "/admin/dashboard.json", &carol, None, None).code, 403);
    let r = http(&s, "POST", "/admin/users/bob@example.test/delete", &carol, Some(&format!("csrf={carol_csrf}")), None);
    assert_eq!(r.code, 403);
    assert!(s.ok(&["user", "list"]).contains("bob@example.test"));
    // Own password: the current one is needed; other sessions end.
    let (carol2, _) = sign_in(&s, "carol@example.test", "pw12345678").unwrap();
    let r = http(
        &s,
        "POST",
        "/admin/account/password",
        &carol,
        Some(&format!("csrf={carol_csrf}&current=wrong&new=newpass123&again=newpass123")),
        None,
    );
    assert_eq!(r.code, 303);
    assert!(sign_in(&s, "carol@example.test", "newpass123").is_err(), "unchanged with a wrong current password");
    http(
        &s,
        "POST",
        "/admin/account/password",
        &carol,
        Some(&format!("csrf={carol_csrf}&current=pw12345678&new=newpass123&again=newpass123")),
        None,
    );
    assert!(sign_in(&s, "carol@example.test", "newpass123").is_ok());
    assert_eq!(http(&s, "GET", "/admin/account", &carol2, None, None).code, 303, "the other session ended");
    assert_eq!(http(&s, "GET", "/admin/account", &carol, None, None).code, 200, "this one stays");
    // A password changed elsewhere (here the CLI) ends every session signed in with the old one.
    let (carol3, _) = sign_in(&s, "carol@example.test", "newpass123").unwrap();
    s.ok_stdin(&["user", "passwd", "carol@example.test", "--password-stdin"], "cli-pass-123\n");
    assert_eq!(http(&s, "GET", "/admin/account", &carol3, None, None).code, 303, "changed by the CLI: signed out");
    assert_eq!(http(&s, "GET", "/admin/account", &carol, None, None).code, 303);
    let (carol, _) = sign_in(&s, "carol@example.test", "cli-pass-123").unwrap();
    assert_eq!(http(&s, "GET", "/admin/account", &carol, None, None).code, 200);
    // An app password logs in mail clients, not the web admin (where it could change the password).
    let app = s.ok(&["user", "app-password", "add", "carol@example.test", "laptop"]);
    let app = app.split_whitespace().find(|w| w.len() == 29 && w.matches('-').count() == 5).expect("the secret");
    assert!(s.imap().run(&format!("LOGIN carol@example.test {app}")).ok());
    assert_eq!(sign_in(&s, "carol@example.test", app).map(|_| ()).map_err(|r| r.code), Err(401));

    // Disabled by the admin: the session ends at once and sign-in is refused (so is IMAP).
    let r =
        http(&s, "POST", "/admin/users/carol@example.test", &admin, Some(&format!("csrf={csrf}&action=disable")), None);
    assert_eq!(r.code, 303);
    assert_eq!(http(&s, "GET", "/admin/account", &carol, None, None).code, 303);
    assert!(sign_in(&s, "carol@example.test", "cli-pass-123").is_err());
    assert!(!s.imap().run("LOGIN carol@example.test cli-pass-123").ok());
    s.ok(&["user", "enable", "carol@example.test"]);
    assert!(s.imap().run("LOGIN carol@example.test cli-pass-123").ok());

    // Sign-out ends the session: the cookie replayed is refused.
    assert_eq!(http(&s, "POST", "/admin/logout", &admin, Some(&format!("csrf={csrf}")), None).code, 303);
    assert_eq!(http(&s, "GET", "/admin/users", &admin, None, None).code, 303);
    let r = http(&s, "POST", "/admin/users", &admin, Some(&format!("csrf={csrf}&email=y%40example.test")), None);
    assert_eq!(r.code, 403);

    // Guessing passwords in the sign-in form is banned like IMAP guessing.
    let mut banned = false;
    for _ in 0..12 {
        match sign_in(&s, "bob@example.test", "guess") {
            Err(r) if r.code == 429 => {
                banned = true;
                break;
            }
            Err(r) => assert_eq!(r.code, 401),
            Ok(_) => panic!("a wrong password signed in"),
        }
    }
    assert!(banned, "the guesser was never banned");
    assert!(sign_in(&s, "bob@example.test", "secret").is_err(), "banned: even the right password");
    let mut imap = Client::connect(s.imap);
    let greeting = imap.read_line().unwrap_or_default();
    assert!(greeting.starts_with("* BYE [UNAVAILABLE]"), "one ban list for every way in: {greeting}");
}

#[test]
fn a_real_browser_administers_the_server() {
    let python = test_venv().join("bin/python");
    assert!(python.exists(), "{} missing: scripts/test.sh installs Playwright there", python.display());
    let refused_port = free_port();
    let world = World::start(
        &[
            ("shop.test", "MX", &format!("10 {HOSTNAME}.")),
            ("remote.test", "MX", "10 mx.remote.test."),
            ("mx.remote.test", "A", "127.0.0.1"),
        ],
        None,
        serde_json::json!({}),
    );
    let s = TestServer::started(&format!(
        "[dns]\nnameservers = [\"127.0.0.1:{}\"]\ntimeout_seconds = 2\n[delivery]\nsmtp_port = {refused_port}\nretry_initial_seconds = 600\n",
        world.dns_port
    ));
    s.ok(&["user", "admin", "alice@example.test", "on"]);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-admin");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let conf = s.dir.path().join("webadmin.json");
    std::fs::write(
        &conf,
        serde_json::json!({
            "base": format!("http://{}", s.http),
            "admin": "alice@example.test",
            "password": "secret",
            "user_password": "carol-pw-123",
            "smtp_port": s.smtp.port(),
            "submission_port": s.submission.port(),
            "shots": shots,
        })
        .to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(&python)
        .arg(clients_dir().join("webadmin.py"))
        .arg(&conf)
        .output()
        .expect("run webadmin.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "webadmin.py failed (screenshots in {}):\n{stdout}\n{}",
        shots.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in
        ["01-sign-in", "02-dashboard", "03-domain-dns", "05-dashboard-after-mail", "08-csrf-refused", "09-my-account"]
    {
        assert!(shots.join(format!("{name}.png")).exists(), "{name}.png");
    }
    // The app password made in the browser logs in over IMAP; the vacation script is active.
    let app = stdout.lines().find_map(|l| l.strip_prefix("app-password ")).expect("the app password").trim();
    assert!(s.imap().run(&format!("LOGIN carol@shop.test {app}")).ok());
    let sieve = s.ok(&["sieve", "list", "carol@shop.test"]);
    assert!(sieve.contains("tern-vacation") && sieve.contains("active"), "{sieve}");
    drop(world);
}
