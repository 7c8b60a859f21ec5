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
        let (code, _, _) = call(&s, "GET", "/api/v1/status", Some(&format!("tern_guess{i}")), None);
        assert_eq!(code, 401);
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

/// The OpenAPI 3 description at `/api/v1/openapi.json` is made from the handlers: every
/// operation it lists is served (none falls to the "no such resource" fallback or a 405), and
/// every resource this test suite calls is in it.
#[test]
fn the_openapi_description_matches_what_is_served() {
    let s = TestServer::started("");
    let admin = token(&s, "ops", "admin");
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
    ] {
        assert!(operations.iter().any(|(m, p)| m == wanted.0 && p == wanted.1), "{wanted:?} not described");
    }
    assert_eq!(operations.len(), 17, "{operations:?}");
    for (method, path) in &operations {
        let concrete = path
            .replace("{name}", "nowhere.test")
            .replace("{email}", "nobody@example.test")
            .replace("{address}", "nothing@example.test")
            .replace("{id}", "987654");
        let body = matches!(method.as_str(), "POST" | "PATCH").then_some("{}");
        let (code, _, reply) = call(&s, method, &concrete, Some(&admin), body);
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(
            code != 405 && message != "no such API resource",
            "{method} {path} is described but not served: {code} {reply}"
        );
        assert!(code < 500, "{method} {concrete}: {code} {reply}");
    }
}
