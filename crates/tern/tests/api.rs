//! The REST API (issue 17) through HTTP against the real binary: tokens made with `tern token`,
//! each scope and none (401/403), every resource, bad JSON and bad values (4xx naming the
//! field), and a user made by the API logging in over IMAP.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;

/// One HTTP/1.1 request; the status, the `WWW-Authenticate` header and the body as JSON
/// (`Null` when empty).
fn call(
    s: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, serde_json::Value) {
    let mut stream = TcpStream::connect(s.http).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let www = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("www-authenticate:").then(|| l.to_string()))
        .unwrap_or_default();
    let json = if payload.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(payload).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {payload}"))
    };
    (code, www, json)
}

/// A GET written after `prelude` (a PROXY header, say) with `headers` added: the status, 0
/// when the connection closes without an answer.
fn status_via(s: &TestServer, prelude: &[u8], headers: &str, path: &str, token: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect(s.http).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    stream.write_all(prelude).unwrap();
    let _ = write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}{headers}\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The secret `tern token create` prints (its last line).
fn token(s: &TestServer, name: &str, scope: &str) -> String {
    let out = s.ok(&["token", "create", name, "--scope", scope]);
    assert!(out.contains(&format!("token {name} (scope {scope})")), "{out}");
    out.lines().last().unwrap_or_default().to_string()
}

fn error_code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[test]
fn tokens_scopes_and_every_resource() {
    let s = TestServer::started("");
    let read = token(&s, "dashboard", "read");
    let admin = token(&s, "ops", "admin");
    assert!(read.starts_with("tern_") && admin.starts_with("tern_") && read != admin);
    let listed = s.ok(&["token", "list"]);
    assert!(listed.contains("dashboard\tread") && listed.contains("ops\tadmin"), "{listed}");
    assert!(!listed.contains(&read), "secrets are not kept");
    assert!(!s.cli(&["token", "create", "ops"]).status.success(), "names are unique");
    assert!(!s.cli(&["token", "create", "bad name"]).status.success());

    // Without a token, or with a wrong one: 401 with a JSON error and WWW-Authenticate.
    let (code, www, body) = call(&s, "GET", "/api/v1/status", None, None);
    assert_eq!((code, error_code(&body)), (401, "unauthorized"), "{body}");
    assert!(www.contains("Bearer"), "{www}");
    let (code, _, _) = call(&s, "GET", "/api/v1/users", Some("tern_guessed"), None);
    assert_eq!(code, 401);

    // A read token reads...
    let (code, _, status) = call(&s, "GET", "/api/v1/status", Some(&read), None);
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["store_healthy"], true);
    assert_eq!(status["users"], 2, "alice and bob: {status}");
    let (code, _, users) = call(&s, "GET", "/api/v1/users", Some(&read), None);
    assert_eq!(code, 200);
    assert!(users.as_array().unwrap().iter().any(|u| u["email"] == "alice@example.test"), "{users}");
    let (code, _, domains) = call(&s, "GET", "/api/v1/domains", Some(&read), None);
    assert_eq!((code, domains[0]["name"].as_str()), (200, Some("example.test")), "{domains}");
    // ...and changes nothing.
    for (method, path, body) in [
        ("POST", "/api/v1/domains", Some(r#"{"name":"new.test"}"#)),
        ("POST", "/api/v1/users", Some(r#"{"email":"x@example.test"}"#)),
        ("PATCH", "/api/v1/users/alice@example.test", Some(r#"{"quota_bytes":5}"#)),
        ("DELETE", "/api/v1/users/alice@example.test", None),
        ("POST", "/api/v1/aliases", Some(r#"{"address":"a@example.test","targets":["alice@example.test"]}"#)),
        ("POST", "/api/v1/queue/1/retry", None),
        ("DELETE", "/api/v1/domains/example.test", None),
    ] {
        let (code, _, body) = call(&s, method, path, Some(&read), body);
        assert_eq!((code, error_code(&body)), (403, "forbidden"), "{method} {path}: {body}");
    }

    // An admin token: a domain, a user (with a generated password that works over IMAP), a
    // quota set and cleared, an alias.
    let (code, _, d) = call(&s, "POST", "/api/v1/domains", Some(&admin), Some(r#"{"name":"New.Test"}"#));
    assert_eq!((code, d["name"].as_str()), (201, Some("new.test")), "{d}");
    let (code, _, body) = call(&s, "POST", "/api/v1/domains", Some(&admin), Some(r#"{"name":"new.test"}"#));
    assert_eq!((code, error_code(&body)), (409, "exists"), "{body}");
    let (code, _, d) = call(&s, "GET", "/api/v1/domains/new.test", Some(&read), None);
    assert_eq!((code, d["name"].as_str()), (200, Some("new.test")));
    let (code, _, u) = call(&s, "POST", "/api/v1/users", Some(&admin), Some(r#"{"email":"carol@new.test"}"#));
    assert_eq!(code, 201, "{u}");
    let password = u["password"].as_str().expect("a generated password").to_string();
    let mut imap = s.imap();
    assert!(imap.run(&format!("LOGIN carol@new.test {password}")).ok(), "the API's user logs in");
    let (code, _, u) =
        call(&s, "PATCH", "/api/v1/users/carol@new.test", Some(&admin), Some(r#"{"quota_bytes":1000000}"#));
    assert_eq!((code, u["quota_bytes"].as_u64()), (200, Some(1_000_000)), "{u}");
    let (code, _, u) = call(&s, "PATCH", "/api/v1/users/carol@new.test", Some(&admin), Some(r#"{"quota_bytes":null}"#));
    assert_eq!((code, u["quota_bytes"].is_null()), (200, true), "{u}");
    let (code, _, a) = call(
        &s,
        "POST",
        "/api/v1/aliases",
        Some(&admin),
        Some(r#"{"address":"info@new.test","targets":["carol@new.test"]}"#),
    );
    assert_eq!((code, a["address"].as_str()), (201, Some("info@new.test")), "{a}");
    s.deliver("info@new.test", b"From: a@remote.test\r\nSubject: via alias\r\n\r\nhi\r\n");
    let (_, _, u) = call(&s, "GET", "/api/v1/users/carol@new.test", Some(&read), None);
    assert_eq!(u["messages"], 1, "{u}");

    // Bad input: 4xx, never 500, naming what is wrong.
    let bad = [
        ("POST", "/api/v1/users", "{not json", 400, "bad_request", "invalid JSON"),
        ("POST", "/api/v1/users", r#"{"password":"x"}"#, 400, "bad_request", "missing field `email`"),
        (
            "POST",
            "/api/v1/users",
            r#"{"email":"d@new.test","admin":true}"#,
            400,
            "bad_request",
            "unknown field `admin`",
        ),
        ("POST", "/api/v1/users", r#"{"email":"not an address"}"#, 422, "invalid", ""),
        ("POST", "/api/v1/users", r#"{"email":"d@elsewhere.test"}"#, 422, "invalid", "elsewhere.test"),
        ("POST", "/api/v1/users", r#"{"email":"e@new.test","password":""}"#, 422, "invalid", "password"),
        ("POST", "/api/v1/users", r#"{"email":"f@new.test","quota_bytes":-1}"#, 400, "bad_request", "quota_bytes"),
        ("POST", "/api/v1/aliases", r#"{"address":"g@new.test","targets":[]}"#, 422, "invalid", "targets"),
        ("POST", "/api/v1/domains", r#"{"name":"bad domain"}"#, 422, "invalid", ""),
        ("POST", "/api/v1/queue/abc/retry", "", 400, "bad_request", "id"),
    ];
    for (method, path, body, want, code_name, mentions) in bad {
        let (code, _, reply) = call(&s, method, path, Some(&admin), Some(body));
        assert_eq!((code, error_code(&reply)), (want, code_name), "{method} {path} {body}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(mentions), "{body}: {message}");
    }
    let (code, _, reply) = call(&s, "GET", "/api/v1/nothing", Some(&read), None);
    assert_eq!((code, error_code(&reply)), (404, "not_found"));
    let (code, _, _) = call(&s, "GET", "/api/v1/users/nobody@new.test", Some(&read), None);
    assert_eq!(code, 404);

    // The queue: empty, unknown entries 404.
    let (code, _, q) = call(&s, "GET", "/api/v1/queue", Some(&read), None);
    assert_eq!((code, q.as_array().map(Vec::len)), (200, Some(0)), "{q}");
    for (method, path) in
        [("GET", "/api/v1/queue/999"), ("POST", "/api/v1/queue/999/retry"), ("DELETE", "/api/v1/queue/999")]
    {
        let (code, _, _) = call(&s, method, path, Some(&admin), None);
        assert_eq!(code, 404, "{method} {path}");
    }

    // Deleting: the alias, the user, then the domain; a domain still in use is refused.
    let (code, _, body) = call(&s, "DELETE", "/api/v1/domains/new.test", Some(&admin), None);
    assert_eq!((code, error_code(&body)), (409, "in_use"), "{body}");
    assert_eq!(call(&s, "DELETE", "/api/v1/aliases/info@new.test", Some(&admin), None).0, 204);
    assert_eq!(call(&s, "DELETE", "/api/v1/users/carol@new.test", Some(&admin), None).0, 204);
    assert_eq!(call(&s, "GET", "/api/v1/users/carol@new.test", Some(&read), None).0, 404);
    assert_eq!(call(&s, "DELETE", "/api/v1/domains/new.test", Some(&admin), None).0, 204);

    // A revoked token no longer works.
    s.ok(&["token", "remove", "dashboard"]);
    assert_eq!(call(&s, "GET", "/api/v1/status", Some(&read), None).0, 401);
    assert_eq!(call(&s, "GET", "/api/v1/status", Some(&admin), None).0, 200);
}

/// Wrong tokens are slowed and, past the threshold, the address is banned like a mail login
/// guesser: even a good token is refused (429) until the ban ends, and IMAP refuses it too.
#[test]
fn token_guessing_is_banned_like_a_password_guesser() {
    let s = TestServer::started("[limits]\nexempt = []\nauth_failures_before_ban = 3\nban_seconds = 60\n");
    let admin = token(&s, "ops", "admin");
    assert_eq!(call(&s, "GET", "/api/v1/status", Some(&admin), None).0, 200);
    let started = std::time::Instant::now();
    for i in 0..3 {
        // Naming another client in X-Forwarded-For changes nothing: no proxy is trusted here.
        let xff = format!("X-Forwarded-For: 192.0.2.{i}\r\n");
        assert_eq!(status_via(&s, b"", &xff, "/api/v1/status", Some(&format!("tern_guess{i}"))), 401);
    }
    assert!(started.elapsed() >= std::time::Duration::from_millis(2500), "failures are slowed (0.5 + 1 + 1.5 s)");
    let (code, _, body) = call(&s, "GET", "/api/v1/status", Some(&admin), None);
    assert_eq!((code, error_code(&body)), (429, "banned"), "{body}");
    let mut imap = Client::connect(s.imap);
    let greeting = imap.read_line().unwrap_or_default();
    assert!(greeting.starts_with("* BYE [UNAVAILABLE]"), "one ban list for every way in: {greeting}");
    let (_, metrics) = s.http_get("/metrics");
    assert!(metrics.contains("tern_auth_failures_total{service=\"api\"} 3"), "{metrics}");
}

/// Behind a balancer (`proxy_from`) the HTTP listener takes the client's address from a
/// PROXY header (optional there: health checks send none) or, from an HTTP proxy, from the
/// last `X-Forwarded-For` entry the proxy added: a guesser is banned, not the balancer and
/// every client behind it.
#[test]
fn balancers_and_proxies_name_the_http_client() {
    let s = TestServer::started(
        "proxy_from = [\"127.0.0.1\"]\n[limits]\nexempt = []\nauth_failures_before_ban = 3\nban_seconds = 60\n",
    );
    let admin = token(&s, "ops", "admin");
    let v1 = |ip: &str| format!("PROXY TCP4 {ip} 127.0.0.1 40000 8080\r\n").into_bytes();
    let v2_local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    // The balancer's health checks, with no header or a LOCAL one.
    assert_eq!(status_via(&s, b"", "", "/readyz", None), 200);
    assert_eq!(status_via(&s, v2_local, "", "/readyz", None), 200);
    for i in 0..3 {
        assert_eq!(status_via(&s, &v1("192.0.2.50"), "", "/api/v1/status", Some(&format!("tern_guess{i}"))), 401);
    }
    let status = |prelude: &[u8], headers: &str| status_via(&s, prelude, headers, "/api/v1/status", Some(&admin));
    assert_eq!(status(&v1("192.0.2.50"), ""), 429, "the guesser is banned");
    // The same client through an HTTP proxy; what it claims before the proxy's entry is ignored.
    assert_eq!(status(b"", "X-Forwarded-For: 192.0.2.50\r\n"), 429);
    assert_eq!(status(b"", "X-Forwarded-For: 203.0.113.9, 192.0.2.50\r\n"), 429);
    // After a PROXY header, X-Forwarded-For is the client's own claim.
    assert_eq!(status(&v1("192.0.2.50"), "X-Forwarded-For: 203.0.113.9\r\n"), 429);
    // Other clients, and the balancer itself, are not banned.
    assert_eq!(status(&v1("192.0.2.51"), ""), 200);
    assert_eq!(status(b"", "X-Forwarded-For: 192.0.2.50, 203.0.113.9\r\n"), 200);
    assert_eq!(status(b"", ""), 200);
    // One ban list: the guesser reaching IMAP through the balancer is refused.
    let mut imap = Client::connect(s.imap);
    imap.send(b"PROXY TCP4 192.0.2.50 127.0.0.1 40000 143\r\n");
    let greeting = imap.read_line().unwrap_or_default();
    assert!(greeting.starts_with("* BYE [UNAVAILABLE]"), "{greeting}");
    // A broken header from the balancer: closed without an answer.
    assert_eq!(status(b"PROXY TCP4 999.0.2.50 127.0.0.1 40000 8080\r\n", ""), 0);
    assert!(s.log().contains("HTTP connection refused: bad PROXY header"), "{}", s.log());
}

/// The OpenAPI 3 description at `/api/v1/openapi.json` is made from the handlers: every
/// operation it lists is served (none falls to the "no such resource" fallback or a 405), and
/// every resource this test suite calls is in it.
#[test]
fn the_openapi_description_matches_what_is_served() {
    let s = TestServer::started("");
    let admin = token(&s, "ops", "admin");
    let read = token(&s, "look", "read");
    let (code, _, doc) = call(&s, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(code, 200, "{doc}");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{doc}");
    assert_eq!(doc["components"]["securitySchemes"]["token"]["scheme"], "bearer", "{doc}");
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "patch", "delete", "put"] {
            if item.get(method).is_some() {
                operations.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    for wanted in [
        ("GET", "/api/v1/status"),
        ("POST", "/api/v1/domains"),
        ("DELETE", "/api/v1/domains/{name}"),
        ("PATCH", "/api/v1/users/{email}"),
        ("DELETE", "/api/v1/aliases/{address}"),
        ("POST", "/api/v1/queue/{id}/retry"),
        ("GET", "/api/v1/domains/{name}/dns"),
        ("POST", "/api/v1/domains/{name}/dkim"),
        ("POST", "/api/v1/users/{email}/app-passwords"),
        ("DELETE", "/api/v1/users/{email}/app-passwords/{name}"),
        ("GET", "/api/v1/quarantine"),
        ("POST", "/api/v1/quarantine/{id}/release"),
        ("GET", "/api/v1/logs"),
    ] {
        assert!(operations.iter().any(|(m, p)| m == wanted.0 && p == wanted.1), "{wanted:?} not described");
    }
    assert_eq!(operations.len(), 26, "{operations:?}");
    for (method, path) in &operations {
        let concrete = path
            .replace("{name}", "nowhere.test")
            .replace("{email}", "nobody@example.test")
            .replace("{address}", "nothing@example.test")
            .replace("{id}", "987654");
        let body = matches!(method.as_str(), "POST" | "PATCH").then_some("{}");
        // Every operation: 401 without a token; a read token may not change anything.
        let (code, _, reply) = call(&s, method, &concrete, None, body);
        assert_eq!((code, error_code(&reply)), (401, "unauthorized"), "{method} {path} without a token");
        if method != "GET" {
            let (code, _, reply) = call(&s, method, &concrete, Some(&read), body);
            assert_eq!((code, error_code(&reply)), (403, "forbidden"), "{method} {path} with a read token");
        }
        let (code, _, reply) = call(&s, method, &concrete, Some(&admin), body);
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(
            code != 405 && message != "no such API resource",
            "{method} {path} is described but not served: {code} {reply}"
        );
        assert!(code < 500, "{method} {concrete}: {code} {reply}");
    }
}

/// What the API added for the web admin: app passwords, disabled users and administrators,
/// DNS records with their check, DKIM rotation, the quarantine, the logs, message rates.
#[test]
fn app_passwords_users_dns_dkim_quarantine_and_logs() {
    let world = World::start(&[("example.test", "MX", &format!("10 {HOSTNAME}."))], None, serde_json::json!({}));
    let s =
        TestServer::started(&format!("[dns]\nnameservers = [\"127.0.0.1:{}\"]\ntimeout_seconds = 2\n", world.dns_port));
    let read = token(&s, "look", "read");
    let admin = token(&s, "ops", "admin");

    // An app password: made once, logs in over IMAP, listed by name only, removed.
    let path = "/api/v1/users/alice@example.test/app-passwords";
    assert_eq!(call(&s, "POST", path, Some(&read), Some(r#"{"name":"phone"}"#)).0, 403);
    let (code, _, made) = call(&s, "POST", path, Some(&admin), Some(r#"{"name":"phone"}"#));
    assert_eq!(code, 201, "{made}");
    let secret = made["password"].as_str().expect("the secret").to_string();
    assert!(s.imap().run(&format!("LOGIN alice@example.test {secret}")).ok());
    let (code, _, body) = call(&s, "POST", path, Some(&admin), Some(r#"{"name":"phone"}"#));
    assert_eq!((code, error_code(&body)), (409, "exists"), "{body}");
    let (_, _, user) = call(&s, "GET", "/api/v1/users/alice@example.test", Some(&read), None);
    assert_eq!(user["app_passwords"][0]["name"], "phone", "{user}");
    assert!(!user.to_string().contains(&secret), "the secret is not listed");
    assert_eq!(call(&s, "DELETE", &format!("{path}/phone"), Some(&admin), None).0, 204);
    assert!(!s.imap().run(&format!("LOGIN alice@example.test {secret}")).ok());
    assert_eq!(call(&s, "DELETE", &format!("{path}/phone"), Some(&admin), None).0, 404);

    // Disabled: no login; an administrator flag.
    let (code, _, u) =
        call(&s, "PATCH", "/api/v1/users/bob@example.test", Some(&admin), Some(r#"{"disabled":true,"admin":true}"#));
    assert_eq!((code, &u["disabled"], &u["admin"]), (200, &serde_json::json!(true), &serde_json::json!(true)), "{u}");
    assert!(!s.imap().run("LOGIN bob@example.test secret").ok());
    let (code, _, body) =
        call(&s, "PATCH", "/api/v1/users/bob@example.test", Some(&admin), Some(r#"{"disabled":"yes"}"#));
    assert_eq!((code, error_code(&body)), (400, "bad_request"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("disabled"), "{body}");
    call(&s, "PATCH", "/api/v1/users/bob@example.test", Some(&admin), Some(r#"{"disabled":false}"#));
    assert!(s.imap().run("LOGIN bob@example.test secret").ok());

    // DNS: the records, and what the (stub) resolver has: the MX, nothing else.
    let (code, _, dns) = call(&s, "GET", "/api/v1/domains/example.test/dns", Some(&read), None);
    assert_eq!(code, 200, "{dns}");
    let records = dns["records"].as_array().expect("records");
    assert!(records.iter().any(|r| r["type"] == "MX" || r["rtype"] == "MX"), "{dns}");
    let checks = dns["checks"]["items"].as_array().expect("checks");
    let status_of = |what: &str| checks.iter().find(|i| i["what"] == what).map(|i| i["status"].clone());
    assert_eq!(status_of("MX"), Some(serde_json::json!("ok")), "{dns}");
    assert_eq!(status_of("SPF"), Some(serde_json::json!("missing")), "{dns}");
    assert_eq!(status_of("DKIM"), Some(serde_json::json!("missing")), "{dns}");
    // DKIM keys made, then rotated (new selectors, dated to the second, replace the old).
    assert_eq!(call(&s, "POST", "/api/v1/domains/example.test/dkim", Some(&read), None).0, 403);
    let (code, _, d) = call(&s, "POST", "/api/v1/domains/example.test/dkim", Some(&admin), None);
    assert_eq!((code, d["dkim_selectors"].as_array().map(Vec::len)), (200, Some(2)), "{d}");
    let (_, _, dns) = call(&s, "GET", "/api/v1/domains/example.test/dns", Some(&read), None);
    assert!(dns.to_string().contains("._domainkey.example.test"), "{dns}");
    assert_eq!(call(&s, "POST", "/api/v1/domains/nowhere.test/dkim", Some(&admin), None).0, 404);

    // The quarantine: empty; bad and unknown ids.
    let (code, _, q) = call(&s, "GET", "/api/v1/quarantine", Some(&read), None);
    assert_eq!((code, q.as_array().map(Vec::len)), (200, Some(0)), "{q}");
    assert_eq!(call(&s, "GET", "/api/v1/quarantine/x", Some(&read), None).0, 400);
    assert_eq!(call(&s, "POST", "/api/v1/quarantine/5/release", Some(&admin), None).0, 404);
    assert_eq!(call(&s, "DELETE", "/api/v1/quarantine/5", Some(&read), None).0, 403);

    // The logs: a delivery found by its message id; the limit checked.
    s.deliver(
        "alice@example.test",
        b"From: a@remote.test\r\nMessage-ID: <find-me@remote.test>\r\nSubject: x\r\n\r\nhi\r\n",
    );
    let (code, _, logs) = call(&s, "GET", "/api/v1/logs?q=find-me%40remote.test", Some(&read), None);
    assert_eq!(code, 200, "{logs}");
    let found = logs.as_array().expect("entries");
    assert!(
        found.iter().any(|e| e["message"] == "message accepted"
            && e["fields"].as_str().is_some_and(|f| f.contains("alice@example.test"))),
        "{logs}"
    );
    assert_eq!(call(&s, "GET", "/api/v1/logs?limit=0", Some(&read), None).0, 400);
    assert_eq!(call(&s, "GET", "/api/v1/logs?limit=many", Some(&read), None).0, 400);
    assert_eq!(call(&s, "GET", "/api/v1/logs?nonsense=1", Some(&read), None).0, 400);

    // Status: uptime, listeners, the message in this minute's rate.
    let (_, _, status) = call(&s, "GET", "/api/v1/status", Some(&read), None);
    assert!(status["listeners"]["imap"].as_array().is_some_and(|a| !a.is_empty()), "{status}");
    let minutes = status["per_minute"].as_array().expect("per_minute");
    assert_eq!(minutes.len(), 60);
    assert!(minutes.last().and_then(|m| m["received"].as_f64()).is_some_and(|n| n >= 1.0), "{status}");
    assert!(status["mail_bytes"].as_u64().is_some_and(|b| b > 0), "{status}");
    drop(world);
}

/// schemathesis (from PyPI, `scripts/test.sh` installs it) generates requests from the OpenAPI
/// description — valid and invalid — and checks every answer against it: no 5xx, only
/// documented status codes, bodies and content types as described, invalid input refused,
/// resources gone after DELETE. Not checked: that every schema-valid request is accepted
/// (`positive_data_acceptance`), since the server refuses values JSON Schema cannot describe
/// (an address in a domain that is not local).
#[test]
fn schemathesis_finds_nothing_wrong() {
    let st = test_venv().join("bin/schemathesis");
    assert!(st.exists(), "{} missing: scripts/test.sh installs schemathesis there", st.display());
    let world = World::start(&[("example.test", "MX", &format!("10 {HOSTNAME}."))], None, serde_json::json!({}));
    let s =
        TestServer::started(&format!("[dns]\nnameservers = [\"127.0.0.1:{}\"]\ntimeout_seconds = 1\n", world.dns_port));
    let admin = token(&s, "fuzz", "admin");
    let base = format!("http://{}", s.http);
    let out = std::process::Command::new(&st)
        .args(["run", &format!("{base}/api/v1/openapi.json"), "--url", &base])
        .args(["-H", &format!("Authorization: Bearer {admin}")])
        .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        .args(["--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "15", "--seed", "1"])
        .args(["--workers", "2", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its cache of found failures goes with the test's directory, not into the clone.
        .current_dir(s.dir.path())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found problems:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("26/26") || stdout.contains("Tested: 26"), "every operation tested: {stdout}");
    let log = s.log();
    assert!(!log.contains("panicked"), "{log}");
    drop(world);
}
