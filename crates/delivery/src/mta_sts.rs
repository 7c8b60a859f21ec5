//! MTA-STS (RFC 8461): a domain's promise that its MX hosts speak verified TLS.
//!
//! The TXT record `_mta-sts.<domain>` announces a policy and its id; the policy itself is
//! fetched over HTTPS (certificate verified, no redirects) from
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt` and cached for its `max_age`. A cached
//! policy is used until it expires even when the TXT record disappears (§5.1), and is fetched
//! again when the id changes.

use crate::dns::Dns;
use rustls_pki_types::ServerName;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest policy body read (RFC 8461 §3.3 suggests 64 KiB).
const MAX_POLICY: usize = 64 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest max_age honoured (RFC 8461 §3.2: up to 31557600).
const MAX_AGE_LIMIT: u64 = 31_557_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: String,
    pub mode: Mode,
    /// `mx:` patterns, lower-case; `*.example.com` matches one label.
    pub mx: Vec<String>,
    pub max_age: u64,
}

impl Policy {
    /// Whether `host` is an MX the policy allows (RFC 8461 §4.1).
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|pattern| match pattern.strip_prefix("*.") {
            Some(suffix) => host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => host == *pattern,
        })
    }
}

/// Parses a policy body (RFC 8461 §3.2). Unknown keys are ignored.
pub fn parse_policy(text: &str, id: &str) -> Result<Policy, String> {
    let mut version = None;
    let mut mode = None;
    let mut mx = Vec::new();
    let mut max_age = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key.trim() {
            "version" => version = Some(value.to_string()),
            "mode" => {
                mode = Some(match value {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(format!("unknown mode {other:?}")),
                })
            }
            "mx" => mx.push(value.trim_end_matches('.').to_ascii_lowercase()),
            "max_age" => max_age = Some(value.parse::<u64>().map_err(|_| format!("bad max_age {value:?}"))?),
            _ => {}
        }
    }
    if version.as_deref() != Some("STSv1") {
        return Err("version is not STSv1".into());
    }
    let mode = mode.ok_or("no mode")?;
    let max_age = max_age.ok_or("no max_age")?.min(MAX_AGE_LIMIT);
    if mode != Mode::None && mx.is_empty() {
        return Err("no mx patterns".into());
    }
    Ok(Policy { id: id.to_string(), mode, mx, max_age })
}

/// The id of a `_mta-sts` TXT record (`v=STSv1; id=...`), if it is one.
pub fn parse_txt(records: &[String]) -> Option<String> {
    let sts: Vec<&String> = records.iter().filter(|r| r.trim_start().starts_with("v=STSv1")).collect();
    // RFC 8461 §3.1: more than one record means none.
    let [record] = sts.as_slice() else { return None };
    record
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| k.trim() == "id")
        .map(|(_, v)| v.trim().to_string())
}

struct Cached {
    policy: Policy,
    expires: Instant,
}

pub struct MtaSts {
    cache: Mutex<HashMap<String, Cached>>,
    roots: Arc<rustls::RootCertStore>,
    port: u16,
}

impl MtaSts {
    pub fn new(roots: Arc<rustls::RootCertStore>, port: u16) -> MtaSts {
        MtaSts { cache: Mutex::new(HashMap::new()), roots, port }
    }

    /// The policy in force for `domain`, if any. A failed fetch falls back to a cached policy
    /// and otherwise means no policy (RFC 8461 §5).
    pub async fn policy(&self, dns: &Dns, domain: &str) -> Option<Policy> {
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.get(domain).filter(|c| c.expires > Instant::now()).map(|c| c.policy.clone())
        };
        let id = match dns.txt(&format!("_mta-sts.{domain}")).await {
            Ok(records) => parse_txt(&records),
            Err(e) => {
                tracing::debug!(domain, error = %e, "MTA-STS TXT lookup failed");
                return cached;
            }
        };
        let Some(id) = id else { return cached };
        if let Some(p) = &cached
            && p.id == id
        {
            return cached;
        }
        match self.fetch(dns, domain, &id).await {
            Ok(policy) => {
                tracing::info!(domain, id, mode = ?policy.mode, "MTA-STS policy fetched");
                let expires = Instant::now() + Duration::from_secs(policy.max_age);
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                cache.insert(domain.to_string(), Cached { policy: policy.clone(), expires });
                Some(policy)
            }
            Err(e) => {
                tracing::warn!(domain, error = %e, "MTA-STS policy fetch failed");
                cached
            }
        }
    }

    async fn fetch(&self, dns: &Dns, domain: &str, id: &str) -> Result<Policy, String> {
        let host = format!("mta-sts.{domain}");
        let body = tokio::time::timeout(FETCH_TIMEOUT, self.get(dns, &host, "/.well-known/mta-sts.txt"))
            .await
            .map_err(|_| "timeout".to_string())??;
        parse_policy(&body, id)
    }

    /// HTTPS GET with a verified certificate; the body of a `200` answer.
    async fn get(&self, dns: &Dns, host: &str, path: &str) -> Result<String, String> {
        let config =
            rustls::ClientConfig::builder().with_root_certificates(Arc::clone(&self.roots)).with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let ips = dns.ips(host).await.map_err(|e| e.to_string())?;
        let mut tcp = None;
        let mut last_error = format!("{host}: no address");
        for ip in ips {
            match tokio::net::TcpStream::connect((ip, self.port)).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last_error = format!("{host} ({ip}): {e}"),
            }
        }
        let tcp = tcp.ok_or(last_error)?;
        let mut tls = connector.connect(name, tcp).await.map_err(|e| format!("{host}: TLS: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Tern\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = match tls.read(&mut buf).await {
                Ok(n) => n,
                // Servers that close without close_notify: keep what arrived.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e.to_string()),
            };
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            if raw.len() > MAX_POLICY + 16 * 1024 {
                return Err("policy too large".into());
            }
        }
        parse_http_response(&raw)
    }
}

/// The body of an HTTP/1.1 `200` response (Content-Length, chunked, or until close).
fn parse_http_response(raw: &[u8]) -> Result<String, String> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "headers not UTF-8")?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    // RFC 8461 §3.3: no redirects; only 200 counts.
    if code != "200" {
        return Err(format!("HTTP status {status:?}"));
    }
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "content-length" => length = value.parse::<usize>().ok(),
            "content-type" if !value.to_ascii_lowercase().starts_with("text/plain") => {
                return Err(format!("content type {value:?} is not text/plain"));
            }
            _ => {}
        }
    }
    let body = if chunked {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
            let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| "bad chunk size")?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size).ok_or("truncated chunk")?);
            rest = rest.get(size + 2..).ok_or("truncated chunk")?;
        }
        out
    } else {
        match length {
            Some(n) => body.get(..n).ok_or("truncated body")?.to_vec(),
            None => body.to_vec(),
        }
    };
    if body.len() > MAX_POLICY {
        return Err("policy too large".into());
    }
    String::from_utf8(body).map_err(|_| "policy not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let p = parse_policy(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n",
            "1",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert!(p.allows("mail.example.com"));
        assert!(p.allows("MX1.example.net."));
        assert!(!p.allows("a.b.example.net"), "wildcards match one label");
        assert!(!p.allows("example.net"));
        assert!(!p.allows("evil.com"));
        assert!(parse_policy("version: STSv1\nmode: enforce\nmax_age: 1\n", "1").is_err(), "enforce needs mx");
        assert!(parse_policy("mode: testing\nmx: a\nmax_age: 1\n", "1").is_err(), "needs version");
        assert_eq!(
            parse_policy("version: STSv1\nmode: none\nmax_age: 99999999999\n", "x").unwrap().max_age,
            MAX_AGE_LIMIT
        );
        assert_eq!(parse_txt(&["v=STSv1; id=20240101;".into()]), Some("20240101".into()));
        assert_eq!(parse_txt(&["v=STSv1; id=1".into(), "v=STSv1; id=2".into()]), None);
        assert_eq!(parse_txt(&["v=spf1 -all".into()]), None);
    }

    #[test]
    fn http_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        assert_eq!(parse_http_response(plain).unwrap(), "hello");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_http_response(chunked).unwrap(), "abcde");
        assert!(parse_http_response(b"HTTP/1.1 301 Moved\r\nLocation: x\r\n\r\n").is_err());
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nx").is_err());
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }
}
