//! Alerts: what an admin must hear about at once (a virus found, a virus sent by one of the
//! users, a scanner that stopped answering) sent as a mail to the configured addresses and/or
//! as a JSON `POST` to a webhook, on a background task. Alerts of one kind about one thing
//! (`key`) are sent at most once per `min_interval`; a full queue drops them (logged): an alert
//! storm must not cost mail or memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_directory::Directory;
use tern_store::Store;

/// Alerts waiting to be sent at most.
const QUEUE: usize = 256;
/// A webhook gets this long to answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// `virus`, `outbound_virus`, `scanner_failed`.
    pub kind: &'static str,
    /// What it is about, for the rate limit (a scanner's name, a sender).
    pub key: String,
    /// One line.
    pub summary: String,
    /// Name and value pairs (queue id, sender, client, virus, ...).
    pub details: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Addresses that get a mail per alert.
    pub notify: Vec<String>,
    /// A URL that gets a JSON `POST` per alert.
    pub webhook: Option<tern_scan::scanner::http::HttpUrl>,
    pub min_interval: Duration,
    /// This server's name (the From address, the JSON's `host`).
    pub hostname: String,
}

pub struct Alerts {
    tx: tokio::sync::mpsc::Sender<Alert>,
}

impl Alerts {
    /// Starts the sender task; `None` when there is nowhere to send alerts.
    pub fn start(settings: AlertSettings, store: Arc<dyn Store>, directory: Directory) -> Option<Arc<Alerts>> {
        if settings.notify.is_empty() && settings.webhook.is_none() {
            return None;
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Alert>(QUEUE);
        tokio::spawn(async move {
            let mut last_sent: HashMap<(&'static str, String), Instant> = HashMap::new();
            while let Some(alert) = rx.recv().await {
                let key = (alert.kind, alert.key.clone());
                if last_sent.get(&key).is_some_and(|t| t.elapsed() < settings.min_interval) {
                    metrics::counter!("tern_alerts_suppressed_total", "kind" => alert.kind).increment(1);
                    tracing::info!(kind = alert.kind, about = ?alert.key, "alert suppressed: one was sent recently");
                    continue;
                }
                last_sent.insert(key, Instant::now());
                last_sent.retain(|_, t| t.elapsed() < settings.min_interval);
                send(&settings, &store, &directory, &alert).await;
            }
        });
        Some(Arc::new(Alerts { tx }))
    }

    pub fn raise(&self, alert: Alert) {
        metrics::counter!("tern_alerts_total", "kind" => alert.kind).increment(1);
        if self.tx.try_send(alert).is_err() {
            tracing::warn!("alert queue full; an alert is dropped");
        }
    }
}

async fn send(settings: &AlertSettings, store: &Arc<dyn Store>, directory: &Directory, alert: &Alert) {
    if let Some(url) = &settings.webhook {
        let mut details = serde_json::Map::new();
        for (k, v) in &alert.details {
            details.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        let body = serde_json::json!({
            "kind": alert.kind,
            "summary": alert.summary,
            "host": settings.hostname,
            "time": tern_store::now_unix(),
            "details": details,
        });
        let headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        match tokio::time::timeout(
            WEBHOOK_TIMEOUT,
            tern_scan::scanner::http::post(url, &headers, body.to_string().into_bytes().into()),
        )
        .await
        {
            Ok(Ok((status, _))) if (200..300).contains(&status) => {}
            Ok(Ok((status, _))) => tracing::warn!(status, "alert webhook refused the alert"),
            Ok(Err(e)) => tracing::warn!(error = %e, "alert webhook failed"),
            Err(_) => tracing::warn!("alert webhook did not answer in time"),
        }
    }
    for to in &settings.notify {
        let message = alert_mail(&settings.hostname, to, alert);
        if let Err(e) = crate::deliver_report(store, directory, to, message).await {
            tracing::warn!(to, error = %e, "alert mail failed");
        }
    }
}

fn alert_mail(hostname: &str, to: &str, alert: &Alert) -> Vec<u8> {
    use mail_builder::MessageBuilder;
    use mail_builder::headers::raw::Raw;
    let mut body = format!("{}\n\n", alert.summary);
    for (k, v) in &alert.details {
        let v: String = v.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        body.push_str(&format!("{k}: {v}\n"));
    }
    body.push_str(&format!("\nSent by Tern on {hostname}.\n"));
    let from = format!("postmaster@{hostname}");
    let subject: String = format!("[Tern alert] {}", alert.summary).chars().filter(|c| !c.is_control()).collect();
    MessageBuilder::new()
        .from(("Tern", from.as_str()))
        .to(to)
        .subject(subject)
        .date(tern_store::now_unix())
        .message_id(format!("alert.{}.{}@{hostname}", tern_store::now_unix(), rand::random::<u32>()))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .text_body(body)
        .write_to_vec()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_mail_reads_well_and_keeps_control_characters_out() {
        let alert = Alert {
            kind: "virus",
            key: "clamav".into(),
            summary: "virus Eicar found in mail from x@remote.example".into(),
            details: vec![("sender".into(), "x@remote.example\r\nBcc: evil@example".into())],
        };
        let mail = String::from_utf8(alert_mail("mx.example", "postmaster@example", &alert)).unwrap();
        assert!(mail.contains("Subject: [Tern alert] virus Eicar found"), "{mail}");
        assert!(mail.contains("Auto-Submitted: auto-generated"));
        assert!(!mail.contains("\r\nBcc:"), "{mail}");
    }
}
