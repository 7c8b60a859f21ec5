//! A generic HTTP scanner for remote scanning APIs. The contract (`docs/scanners.md`):
//! `POST` the raw message (`Content-Type: message/rfc822`) with the envelope in
//! `X-Tern-Client-IP`, `X-Tern-Helo`, `X-Tern-Mail-From`, `X-Tern-Rcpt` (one per recipient),
//! `X-Tern-User` and `X-Tern-Queue-Id`; a `200` answer is a small JSON object:
//!
//! ```json
//! {"verdict": "clean" | "virus" | "spam", "score": 3.5, "names": ["Eicar"], "reasons": [{"name": "X", "score": 1.0}]}
//! ```
//!
//! `score` (optional) is added to the message's score; `names` name the viruses of a `virus`
//! verdict; `reasons` are listed with the verdict. Anything else is a failure of the scanner.

use super::http::{HttpUrl, post};
use super::{ScanRequest, Scanner};
use crate::verdict::ScannerOutcome;
use async_trait::async_trait;
use serde::Deserialize;

pub struct RemoteScanner {
    pub name: String,
    pub url: HttpUrl,
    /// Extra headers (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Clean,
    Virus,
    Spam,
}

#[derive(Deserialize)]
struct Reply {
    verdict: Kind,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    reasons: Vec<ReplyReason>,
}

#[derive(Deserialize)]
struct ReplyReason {
    name: String,
    #[serde(default)]
    score: f64,
}

#[async_trait]
impl Scanner for RemoteScanner {
    fn name(&self) -> &str {
        &self.name
    }

    async fn scan(&self, request: &ScanRequest) -> ScannerOutcome {
        let mut headers: Vec<(String, String)> = vec![("Content-Type".into(), "message/rfc822".into())];
        if let Some(ip) = request.client_ip {
            headers.push(("X-Tern-Client-IP".into(), ip.to_string()));
        }
        headers.push(("X-Tern-Helo".into(), request.helo.clone()));
        headers.push(("X-Tern-Mail-From".into(), request.mail_from.clone().unwrap_or_default()));
        for rcpt in &request.recipients {
            headers.push(("X-Tern-Rcpt".into(), rcpt.clone()));
        }
        if let Some(user) = &request.authenticated_as {
            headers.push(("X-Tern-User".into(), user.clone()));
        }
        headers.push(("X-Tern-Queue-Id".into(), request.queue_id.clone()));
        headers.extend(self.headers.iter().cloned());
        headers.retain(|(_, v)| !v.contains(['\r', '\n']));
        match post(&self.url, &headers, super::http::body_of(&request.message)).await {
            Ok((200, body)) => parse_reply(&body),
            Ok((status, _)) => ScannerOutcome::Failed { error: format!("scanner answered HTTP {status}") },
            Err(error) => ScannerOutcome::Failed { error },
        }
    }
}

pub fn parse_reply(body: &[u8]) -> ScannerOutcome {
    let reply: Reply = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return ScannerOutcome::Failed { error: format!("scanner reply unreadable: {e}") },
    };
    let symbols: Vec<(String, f64)> = reply.reasons.into_iter().take(50).map(|r| (r.name, r.score)).collect();
    match reply.verdict {
        Kind::Virus => {
            ScannerOutcome::Virus { names: if reply.names.is_empty() { vec!["unnamed".into()] } else { reply.names } }
        }
        Kind::Clean if reply.score.is_none() && symbols.is_empty() => ScannerOutcome::Clean,
        Kind::Clean => ScannerOutcome::Scored { points: reply.score.unwrap_or(0.0), action: None, symbols },
        Kind::Spam => {
            ScannerOutcome::Scored { points: reply.score.unwrap_or(0.0), action: Some("spam".into()), symbols }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_contract() {
        assert_eq!(ScannerOutcome::Clean, parse_reply(br#"{"verdict":"clean"}"#));
        assert_eq!(
            ScannerOutcome::Virus { names: vec!["Eicar".into()] },
            parse_reply(br#"{"verdict":"virus","names":["Eicar"]}"#)
        );
        assert_eq!(
            ScannerOutcome::Scored { points: 7.0, action: Some("spam".into()), symbols: vec![("PHISH".into(), 7.0)] },
            parse_reply(br#"{"verdict":"spam","score":7,"reasons":[{"name":"PHISH","score":7}]}"#)
        );
        assert!(matches!(parse_reply(br#"{"verdict":"maybe"}"#), ScannerOutcome::Failed { .. }));
    }
}
