//! Sending DMARC aggregate reports (RFC 7489 §7.2) through the queue.

use crate::DeliveryService;
use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tern_mailauth::report::{self, Aggregator};
use tern_mailauth::verify::Verifier;
use tern_store::now_unix;

/// Counts are saved this often (and at shutdown), so a crash loses at most this much.
const SAVE_EVERY: Duration = Duration::from_secs(300);

/// Runs until shutdown: every `interval`, reports the period's results to each `rua`.
pub async fn run(
    service: Arc<DeliveryService>,
    verifier: Arc<Verifier>,
    aggregator: Arc<Aggregator>,
    interval: Duration,
    state: PathBuf,
) {
    let shutdown = service.shutdown_token();
    let mut next_report = tokio::time::Instant::now() + interval;
    loop {
        let wake = next_report.min(tokio::time::Instant::now() + SAVE_EVERY);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(wake) => {}
        }
        if tokio::time::Instant::now() >= next_report {
            next_report += interval;
            send_reports(&service, &verifier, &aggregator).await;
        }
        save(&aggregator, &state);
    }
    save(&aggregator, &state);
}

fn save(aggregator: &Aggregator, state: &PathBuf) {
    let tmp = state.with_extension("tmp");
    if std::fs::write(&tmp, aggregator.save()).and_then(|_| std::fs::rename(&tmp, state)).is_err() {
        tracing::warn!(path = %state.display(), "cannot save DMARC report counts");
    }
}

async fn send_reports(service: &DeliveryService, verifier: &Verifier, aggregator: &Aggregator) {
    let now = now_unix();
    let period = aggregator.take(now);
    let hostname = service.hostname().to_string();
    for (domain, report) in &period.domains {
        let Some(published) = &report.published else { continue };
        let report_id = format!("{}.{}.{}", domain, period.begin, rand::random::<u32>());
        let xml =
            report::report_xml(&hostname, &format!("noreply-dmarc@{hostname}"), &report_id, period.begin, now, report);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        if gz.write_all(xml.as_bytes()).is_err() {
            continue;
        }
        let Ok(gz) = gz.finish() else { continue };
        for rua in &published.rua {
            if let Some(name) = report::verification_name(verifier.public_suffixes(), published, rua) {
                match service.dns.txt(&name).await {
                    Ok(records) if report::verification_ok(&records) => {}
                    Ok(_) => {
                        tracing::info!(
                            domain,
                            rua,
                            "DMARC report destination not authorized (RFC 7489 §7.1); not sent"
                        );
                        continue;
                    }
                    Err(e) => {
                        tracing::info!(domain, rua, error = %e, "cannot verify the DMARC report destination; not sent");
                        continue;
                    }
                }
            }
            let filename = format!("{hostname}!{domain}!{}!{now}.xml.gz", period.begin);
            let message = MessageBuilder::new()
                .from(("DMARC reports", format!("noreply-dmarc@{hostname}").as_str()))
                .to(rua.as_str())
                // ASCII by construction: written as is, not as encoded words (RFC 7489 §7.2.1.1).
                .header(
                    "Subject",
                    Raw::new(format!("Report Domain: {domain} Submitter: {hostname} Report-ID: <{report_id}>")),
                )
                .header("Auto-Submitted", Raw::new("auto-generated"))
                .text_body(format!("DMARC aggregate report for {domain} from {hostname}.\r\n"))
                .attachment("application/gzip", filename, gz.clone())
                .write_to_vec()
                .unwrap_or_default();
            match service.queue_message(rua, message).await {
                Ok(()) => {
                    metrics::counter!("tern_dmarc_reports_sent_total").increment(1);
                    tracing::info!(domain, rua, rows = report.rows.len(), "DMARC aggregate report queued");
                }
                Err(e) => tracing::warn!(domain, rua, error = %e, "cannot queue the DMARC report"),
            }
        }
    }
}
