//! rspamd through its HTTP protocol: `POST /checkv2` with the message as the body and the
//! envelope in headers (`IP`, `Helo`, `From`, `Rcpt` once per recipient, `User`, `Queue-Id`);
//! the JSON answer gives a score, an action and the symbols that fired.

use super::http::{HttpUrl, post};
use super::{ScanRequest, Scanner};
use crate::verdict::ScannerOutcome;
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::BTreeMap;

pub struct Rspamd {
    pub name: String,
    pub url: HttpUrl,
    /// Sent as `Password` when rspamd's normal worker asks for one.
    pub password: Option<String>,
}

#[derive(Deserialize)]
struct Reply {
    score: f64,
    action: String,
    #[serde(default)]
    symbols: BTreeMap<String, Symbol>,
}

#[derive(Deserialize)]
struct Symbol {
    #[serde(default)]
    score: f64,
}

#[async_trait]
impl Scanner for Rspamd {
    fn name(&self) -> &str {
        &self.name
    }

    async fn scan(&self, request: &ScanRequest) -> ScannerOutcome {
        let mut headers: Vec<(String, String)> = Vec::new();
        if let Some(ip) = request.client_ip {
            headers.push(("IP".into(), ip.to_string()));
        }
        if !request.helo.is_empty() {
            headers.push(("Helo".into(), request.helo.clone()));
        }
        headers.push(("From".into(), request.mail_from.clone().unwrap_or_default()));
        for rcpt in &request.recipients {
            headers.push(("Rcpt".into(), rcpt.clone()));
        }
        if let Some(user) = &request.authenticated_as {
            headers.push(("User".into(), user.clone()));
        }
        if !request.queue_id.is_empty() {
            headers.push(("Queue-Id".into(), request.queue_id.clone()));
        }
        if let Some(p) = &self.password {
            headers.push(("Password".into(), p.clone()));
        }
        headers.retain(|(_, v)| !v.contains(['\r', '\n']));
        let url = if self.url.path == "/" { self.url.with_path("/checkv2") } else { self.url.clone() };
        match post(&url, &headers, super::http::body_of(&request.message)).await {
            Ok((200, body)) => parse_reply(&body),
            Ok((status, body)) => ScannerOutcome::Failed {
                error: format!(
                    "rspamd answered HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            },
            Err(error) => ScannerOutcome::Failed { error },
        }
    }
}

/// Reads rspamd's JSON answer.
pub fn parse_reply(body: &[u8]) -> ScannerOutcome {
    match serde_json::from_slice::<Reply>(body) {
        Ok(reply) => {
            let mut symbols: Vec<(String, f64)> = reply.symbols.into_iter().map(|(k, v)| (k, v.score)).collect();
            symbols.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
            ScannerOutcome::Scored { points: reply.score, action: Some(reply.action), symbols }
        }
        Err(e) => ScannerOutcome::Failed { error: format!("rspamd reply unreadable: {e}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_checkv2_replies() {
        let body = br#"{"is_skipped":false,"score":6.5,"required_score":15.0,"action":"add header","symbols":{"R_SPF_FAIL":{"name":"R_SPF_FAIL","score":1.0},"BAYES_SPAM":{"name":"BAYES_SPAM","score":5.5}},"message-id":"x"}"#;
        match parse_reply(body) {
            ScannerOutcome::Scored { points, action, symbols } => {
                assert_eq!(6.5, points);
                assert_eq!(Some("add header".to_string()), action);
                assert_eq!(("BAYES_SPAM".to_string(), 5.5), symbols[0]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_reply(b"<html>"), ScannerOutcome::Failed { .. }));
    }
}
