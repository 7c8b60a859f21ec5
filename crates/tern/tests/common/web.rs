//! The web admin over plain HTTP: requests with a cookie and a form, and the sign-in.

use super::TestServer;
use std::io::{Read, Write};
use std::net::TcpStream;

#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Vec<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
            .collect()
    }

    /// The value a `Set-Cookie` gives `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.header("set-cookie")
            .iter()
            .find_map(|c| c.split(';').next()?.strip_prefix(&format!("{name}=")).map(str::to_string))
    }
}

pub fn http(s: &TestServer, method: &str, path: &str, cookie: &str, form: Option<&str>, origin: Option<&str>) -> Reply {
    let mut stream = TcpStream::connect(s.http).unwrap();
    let body = form.unwrap_or("");
    let cookie = if cookie.is_empty() { String::new() } else { format!("Cookie: {cookie}\r\n") };
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{cookie}{origin}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        s.http,
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Reply { code, head: head.to_string(), body: body.to_string() }
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Signs in; the session cookie (`tern_session=...`) and the page's CSRF token.
pub fn sign_in(s: &TestServer, email: &str, password: &str) -> Result<(String, String), Reply> {
    let form = http(s, "GET", "/admin/login", "", None, None);
    assert_eq!(form.code, 200);
    let token = form.cookie("tern_login").expect("the sign-in form's cookie");
    let posted = http(
        s,
        "POST",
        "/admin/login",
        &format!("tern_login={token}"),
        Some(&format!("email={}&password={}&csrf={token}", enc(email), enc(password))),
        None,
    );
    if posted.code != 303 {
        return Err(posted);
    }
    let session = posted.cookie("tern_session").expect("a session cookie");
    let cookie = format!("tern_session={session}");
    let page = http(s, "GET", "/admin/account", &cookie, None, None);
    let csrf = page.body.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default();
    Ok((cookie, csrf.to_string()))
}
