//! Outside scanners: clamd, rspamd and a generic HTTP scanning API. Each is asked about a
//! message concurrently with the others, within its own timeout; what it answers (or that it
//! failed, or that the message was too large for it) is a [`ScannerResult`], which
//! [`crate::verdict::decide`] weighs with everything else.

pub mod clamd;
pub mod http;
pub mod remote;
pub mod rspamd;

use crate::verdict::{Action, ScannerOutcome, ScannerResult};
use async_trait::async_trait;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A message and its envelope, as scanners are told about it.
#[derive(Debug, Clone, Default)]
pub struct ScanRequest {
    pub message: Arc<Vec<u8>>,
    pub client_ip: Option<IpAddr>,
    pub helo: String,
    pub mail_from: Option<String>,
    pub recipients: Vec<String>,
    pub authenticated_as: Option<String>,
    pub queue_id: String,
}

impl ScanRequest {
    pub fn for_message(message: Vec<u8>) -> ScanRequest {
        ScanRequest { message: Arc::new(message), ..ScanRequest::default() }
    }
}

#[async_trait]
pub trait Scanner: Send + Sync {
    fn name(&self) -> &str;
    async fn scan(&self, request: &ScanRequest) -> ScannerOutcome;
}

/// What happens when a scanner cannot be asked or does not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// `451 4.7.1`: the client tries again later; nothing is accepted unscanned.
    Tempfail,
    /// Accepted, with the failure in the verdict and the `tern_scanner_failures_total` metric.
    Accept,
}

/// What happens to a message over the size the scanner takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooLargeMode {
    Accept,
    Tempfail,
    Reject,
}

/// A scanner with its policy.
#[derive(Clone)]
pub struct ConfiguredScanner {
    pub scanner: Arc<dyn Scanner>,
    pub timeout: Duration,
    /// Larger messages are not sent ([`ScannerOutcome::TooLarge`]); set it to the scanner's own
    /// limit (clamd's `StreamMaxLength`), which is answered the same way when it is lower.
    pub max_size: u64,
    pub on_failure: FailureMode,
    pub on_too_large: TooLargeMode,
    /// What a virus found by this scanner does (default: reject).
    pub on_virus: Action,
    /// The scanner's points are multiplied by this before they are added to the score.
    pub weight: f64,
    /// Also scan mail from authenticated users (submission).
    pub scan_submissions: bool,
}

/// Asks every scanner at once; results in the scanners' order.
pub async fn scan_all(scanners: &[ConfiguredScanner], request: Arc<ScanRequest>) -> Vec<ScannerResult> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, configured) in scanners.iter().enumerate() {
        let configured = configured.clone();
        let request = Arc::clone(&request);
        tasks.spawn(async move {
            let started = Instant::now();
            let outcome = if request.message.len() as u64 > configured.max_size {
                ScannerOutcome::TooLarge
            } else {
                match tokio::time::timeout(configured.timeout, configured.scanner.scan(&request)).await {
                    Ok(outcome) => outcome,
                    Err(_) => ScannerOutcome::Failed {
                        error: format!("no answer within {} s", configured.timeout.as_secs_f64()),
                    },
                }
            };
            let outcome = match outcome {
                ScannerOutcome::Scored { points, action, symbols } => {
                    ScannerOutcome::Scored { points: points * configured.weight, action, symbols }
                }
                other => other,
            };
            let elapsed = started.elapsed();
            let name = configured.scanner.name().to_string();
            metrics::histogram!("tern_scanner_seconds", "scanner" => name.clone()).record(elapsed.as_secs_f64());
            let kind = match &outcome {
                ScannerOutcome::Clean => "clean",
                ScannerOutcome::Virus { .. } => "virus",
                ScannerOutcome::Scored { .. } => "scored",
                ScannerOutcome::TooLarge => "too_large",
                ScannerOutcome::Failed { .. } => "failed",
            };
            metrics::counter!("tern_scanner_results_total", "scanner" => name.clone(), "result" => kind).increment(1);
            (
                i,
                ScannerResult {
                    scanner: name,
                    outcome,
                    millis: elapsed.as_millis() as u64,
                    on_virus: configured.on_virus,
                },
            )
        });
    }
    let mut results: Vec<Option<ScannerResult>> = vec![None; scanners.len()];
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((i, result)) => results[i] = Some(result),
            Err(e) => tracing::warn!(error = %e, "scanner task failed"),
        }
    }
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| ScannerResult {
                scanner: scanners[i].scanner.name().to_string(),
                outcome: ScannerOutcome::Failed { error: "scanner task failed".into() },
                millis: 0,
                on_virus: scanners[i].on_virus,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Slow;
    #[async_trait]
    impl Scanner for Slow {
        fn name(&self) -> &str {
            "slow"
        }
        async fn scan(&self, _: &ScanRequest) -> ScannerOutcome {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            ScannerOutcome::Clean
        }
    }

    struct Scoring;
    #[async_trait]
    impl Scanner for Scoring {
        fn name(&self) -> &str {
            "scoring"
        }
        async fn scan(&self, _: &ScanRequest) -> ScannerOutcome {
            ScannerOutcome::Scored { points: 2.0, action: None, symbols: vec![] }
        }
    }

    fn configured(scanner: Arc<dyn Scanner>) -> ConfiguredScanner {
        ConfiguredScanner {
            scanner,
            timeout: Duration::from_millis(100),
            max_size: 1000,
            on_failure: FailureMode::Tempfail,
            on_too_large: TooLargeMode::Accept,
            on_virus: Action::Reject,
            weight: 1.5,
            scan_submissions: true,
        }
    }

    #[tokio::test]
    async fn timeouts_sizes_and_weights() {
        let scanners = vec![configured(Arc::new(Slow)), configured(Arc::new(Scoring))];
        let started = Instant::now();
        let results = scan_all(&scanners, Arc::new(ScanRequest::for_message(b"x".to_vec()))).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(results[0].outcome, ScannerOutcome::Failed { .. }), "{results:?}");
        assert_eq!(ScannerOutcome::Scored { points: 3.0, action: None, symbols: vec![] }, results[1].outcome);
        let big = scan_all(&scanners, Arc::new(ScanRequest::for_message(vec![0; 2000]))).await;
        assert!(big.iter().all(|r| r.outcome == ScannerOutcome::TooLarge), "{big:?}");
    }
}
