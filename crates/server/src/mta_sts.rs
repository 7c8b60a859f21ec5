//! The MTA-STS policy (RFC 8461) Tern publishes for its domains: one policy naming this
//! server's `hostname` as the MX, served at `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! (§3.3) and announced by the `_mta-sts.<domain>` TXT record whose `id` changes exactly when
//! the policy text does (§3.1).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tern_config::MtaSts;
use tern_directory::Directory;

/// The policy text (§3.2: CRLF-separated `key: value` lines).
pub fn policy(hostname: &str, settings: &MtaSts) -> String {
    format!(
        "version: STSv1\r\nmode: {}\r\nmx: {}\r\nmax_age: {}\r\n",
        settings.mode.as_str(),
        hostname.trim_end_matches('.').to_ascii_lowercase(),
        settings.max_age_seconds
    )
}

/// The `id` of the TXT record (§3.1: 1 to 32 letters and digits): a digest of the policy, so
/// it is stable across runs and changes when the policy changes.
pub fn policy_id(policy: &str) -> String {
    blake3::hash(policy.as_bytes()).to_hex()[..20].to_string()
}

#[derive(Clone)]
pub struct MtaStsState {
    pub policy: std::sync::Arc<str>,
    pub directory: Directory,
}

/// `GET /.well-known/mta-sts.txt` on `mta-sts.<local domain>`; 404 for any other host.
pub async fn handler(State(state): State<MtaStsState>, headers: HeaderMap) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let host = host.rsplit_once(':').map_or(
        host,
        |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }
        },
    );
    let Some(domain) = host.trim_end_matches('.').to_ascii_lowercase().strip_prefix("mta-sts.").map(str::to_string)
    else {
        return (StatusCode::NOT_FOUND, "MTA-STS policies are served on mta-sts.<domain>\n").into_response();
    };
    match state.directory.domain_get(&domain).await {
        Ok(Some(_)) => ([(header::CONTENT_TYPE, "text/plain")], state.policy.to_string()).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such domain here\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "MTA-STS policy: directory lookup failed");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_and_its_id() {
        let settings = MtaSts::default();
        let p = policy("Mail.Example.org.", &settings);
        assert_eq!(p, "version: STSv1\r\nmode: testing\r\nmx: mail.example.org\r\nmax_age: 604800\r\n");
        let id = policy_id(&p);
        assert!(id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        assert_eq!(id, policy_id(&p), "stable");
        let enforce = MtaSts { mode: tern_config::MtaStsMode::Enforce, ..settings };
        assert_ne!(policy_id(&policy("mail.example.org", &enforce)), id, "changes with the policy");
    }
}
