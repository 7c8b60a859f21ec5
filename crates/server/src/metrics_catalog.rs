//! Every metric Tern counts, with its kind, unit and help text, described once at start so
//! `/metrics` carries `# HELP` for each. A test reads the workspace's sources and fails when a
//! metric is counted without being listed here, or listed without being counted.
//!
//! The Prometheus alert rules (`deploy/prometheus/alerts.yml`) and the Grafana dashboard
//! (`deploy/grafana/tern.json`) use these names; their tests check them against this list.

use metrics::Unit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, Copy)]
pub struct MetricInfo {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: &'static str,
}

const fn m(name: &'static str, kind: Kind, unit: Option<Unit>, help: &'static str) -> MetricInfo {
    MetricInfo { name, kind, unit, help }
}

use Kind::{Counter, Gauge, Histogram};
const S: Option<Unit> = Some(Unit::Seconds);
const B: Option<Unit> = Some(Unit::Bytes);
const N: Option<Unit> = Some(Unit::Count);

pub const CATALOG: &[MetricInfo] = &[
    // Listeners (label service: smtp, submission, submissions, imap, imaps, pop3, pop3s, ...).
    m("tern_smtp_connections_total", Counter, N, "SMTP connections accepted by the listener, by service"),
    m(
        "tern_smtp_connections_refused_total",
        Counter,
        N,
        "SMTP connections refused at connect, by service and reason (total, per_ip, banned, dnsbl)",
    ),
    m("tern_smtp_connections_active", Gauge, N, "SMTP sessions in progress, by service"),
    m("tern_imap_connections_total", Counter, N, "IMAP connections accepted, by service"),
    m("tern_imap_connections_refused_total", Counter, N, "IMAP connections refused at connect, by service and reason"),
    m("tern_imap_connections_active", Gauge, N, "IMAP sessions in progress, by service"),
    m("tern_pop3_connections_total", Counter, N, "POP3 connections accepted, by service"),
    m("tern_pop3_connections_refused_total", Counter, N, "POP3 connections refused at connect, by service and reason"),
    m("tern_pop3_connections_active", Gauge, N, "POP3 sessions in progress, by service"),
    m("tern_pop3_retrieved_total", Counter, N, "Messages retrieved over POP3 (RETR)"),
    m("tern_managesieve_connections_total", Counter, N, "ManageSieve connections accepted"),
    m(
        "tern_managesieve_connections_refused_total",
        Counter,
        N,
        "ManageSieve connections refused at connect, by reason",
    ),
    m("tern_managesieve_connections_active", Gauge, N, "ManageSieve sessions in progress"),
    // SMTP.
    m("tern_smtp_messages_accepted_total", Counter, N, "Messages accepted (committed) by SMTP, by service"),
    m("tern_smtp_messages_refused_total", Counter, N, "Messages refused after DATA, by service and reason"),
    m("tern_smtp_messages_discarded_total", Counter, N, "Messages accepted and then discarded by the filters"),
    m("tern_smtp_messages_quarantined_total", Counter, N, "Messages accepted into the quarantine"),
    m("tern_smtp_recipients_refused_total", Counter, N, "RCPT TO refused, by reason (relay, unknown, quota, ...)"),
    m("tern_smtp_bytes_received_total", Counter, B, "Bytes read from SMTP clients"),
    m("tern_smtp_message_bytes_total", Counter, B, "Bytes of accepted messages"),
    m("tern_smtp_auth_total", Counter, N, "SMTP AUTH attempts, by result"),
    m(
        "tern_smtp_starttls_injection_total",
        Counter,
        N,
        "Commands sent in the same packet as STARTTLS and dropped (CVE-2011-0411 style)",
    ),
    m(
        "tern_messages_spooled_total",
        Counter,
        N,
        "Messages too large for the memory budget, spooled to disk while received",
    ),
    // Logins.
    m("tern_auth_failures_total", Counter, N, "Failed logins, by service"),
    m("tern_auth_bans_total", Counter, N, "Addresses banned after failed logins"),
    m("tern_auth_results_total", Counter, N, "Inbound SPF/DKIM/ARC/DMARC results, by method and result"),
    // The filter pipeline and scanners.
    m("tern_pipeline_rejected_total", Counter, N, "Messages the filter pipeline refused, by stage"),
    m(
        "tern_pipeline_deferred_total",
        Counter,
        N,
        "Messages the filter pipeline deferred (temporary refusal), by stage",
    ),
    m("tern_pipeline_discarded_total", Counter, N, "Messages the filter pipeline discarded, by stage"),
    m("tern_pipeline_quarantined_total", Counter, N, "Messages the filter pipeline quarantined, by stage"),
    m("tern_scan_seconds", Histogram, S, "Time of the content scan of one message (every scanner)"),
    m("tern_scan_verdicts_total", Counter, N, "Content scan verdicts, by action"),
    m(
        "tern_scanner_results_total",
        Counter,
        N,
        "Answers of external scanners (clamd, rspamd, HTTP), by scanner and result",
    ),
    m(
        "tern_scanner_failures_total",
        Counter,
        N,
        "External scanners that could not be asked (down, timeout, bad answer), by scanner",
    ),
    m("tern_scanner_seconds", Histogram, S, "Time one external scanner took, by scanner"),
    m("tern_virus_found_total", Counter, N, "Messages found to carry a virus, by direction"),
    m("tern_spam_learned_total", Counter, N, "Messages taught to the spam classifier, by class"),
    m("tern_spam_training_dropped_total", Counter, N, "Training requests dropped because the training queue was full"),
    m("tern_spam_features_pruned_total", Counter, N, "Rare features pruned from a spam model"),
    m("tern_spam_model_features", Gauge, N, "Features in the server's spam model"),
    m("tern_spam_model_learned", Gauge, N, "Messages the server's spam model learnt, by class"),
    m("tern_quarantine_messages", Gauge, N, "Messages held in the quarantine"),
    m("tern_quarantine_bytes", Gauge, B, "Bytes held in the quarantine"),
    m("tern_alerts_total", Counter, N, "Alerts mailed to the postmaster, by kind"),
    m(
        "tern_alerts_suppressed_total",
        Counter,
        N,
        "Alerts not mailed because one of the same kind was sent recently, by kind",
    ),
    // Sieve.
    m("tern_sieve_runs_total", Counter, N, "Sieve runs at delivery (one per local account a message reaches)"),
    m(
        "tern_sieve_errors_total",
        Counter,
        N,
        "Sieve runs that ended early (budget, runtime error) with the implicit keep",
    ),
    m("tern_sieve_vacation_replies_total", Counter, N, "Sieve vacation replies sent"),
    m("tern_sieve_run_seconds", Histogram, S, "Time of one Sieve run at delivery (the admin's and the user's scripts)"),
    // IMAP.
    m("tern_imap_commands_total", Counter, N, "IMAP commands, by name"),
    m("tern_imap_append_refused_total", Counter, N, "APPENDs refused before their literal, by reason"),
    m("tern_imap_compute_seconds", Histogram, S, "Time of one SEARCH, SORT or THREAD on the compute pool"),
    m(
        "tern_imap_compute_over_budget_total",
        Counter,
        N,
        "SEARCH, SORT or THREAD stopped at the compute pool's time limit",
    ),
    // Store.
    m("tern_store_commit_seconds", Histogram, S, "Time to apply and fsync one group commit"),
    m("tern_store_fsync_seconds", Histogram, S, "Time of the fsync that ends one group commit"),
    m("tern_store_commit_group_size", Histogram, N, "Store operations per group commit"),
    m(
        "tern_store_healthy",
        Gauge,
        None,
        "1 while the store takes writes, 0 after a failure stopped it (or the database is unreachable)",
    ),
    m("tern_disk_free_bytes", Gauge, B, "Bytes available to Tern on the file system of its data directory"),
    m("tern_disk_size_bytes", Gauge, B, "Size of the file system of the data directory"),
    m("tern_fts_indexed_total", Counter, N, "Message contents added to the full-text index"),
    // Outbound.
    m("tern_queue_messages", Gauge, N, "Messages in the outbound queue"),
    m("tern_queue_oldest_age_seconds", Gauge, S, "Age of the oldest queued message"),
    m(
        "tern_delivery_recipients_total",
        Counter,
        N,
        "Outbound delivery attempts, by result (delivered, deferred, bounced, expired)",
    ),
    m("tern_delivery_latency_seconds", Histogram, S, "Time from acceptance to delivery of a recipient"),
    m("tern_delivery_attempt_seconds", Histogram, S, "Duration of one delivery attempt to one domain"),
    m("tern_delivery_reports_total", Counter, N, "Delivery status notifications generated, by kind"),
    m("tern_dmarc_reports_sent_total", Counter, N, "DMARC aggregate reports sent"),
    // Certificates and keys.
    m("tern_certificate_expiry_timestamp_seconds", Gauge, S, "When the server's TLS certificate expires (Unix time)"),
    m("tern_acme_orders_total", Counter, N, "ACME certificate orders, by result"),
    m(
        "tern_domain_dkim_keys",
        Gauge,
        N,
        "DKIM signing keys of a local domain, by domain (0: its mail leaves unsigned)",
    ),
];

/// Describes every metric of [`CATALOG`] to the installed recorder.
pub fn describe_all() {
    for info in CATALOG {
        let (name, help) = (info.name, info.help);
        match (info.kind, info.unit) {
            (Kind::Counter, Some(unit)) => metrics::describe_counter!(name, unit, help),
            (Kind::Counter, None) => metrics::describe_counter!(name, help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(name, unit, help),
            (Kind::Gauge, None) => metrics::describe_gauge!(name, help),
            (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(name, unit, help),
            (Kind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
}

pub fn find(name: &str) -> Option<&'static MetricInfo> {
    CATALOG.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// `(name, kind)` of every metric the sources count: the literal first argument of the
    /// `counter!`, `gauge!` and `histogram!` macros, and the listeners' names (which the guard
    /// picks per protocol).
    fn counted() -> BTreeMap<String, Kind> {
        let crates = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("..");
        let mut out = BTreeMap::new();
        let mut stack = vec![crates];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    // Sources only: not tests (which read metrics), not build output.
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    if !matches!(name, "target" | "tests" | "fuzz") {
                        stack.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "rs")
                    && path.components().any(|c| c.as_os_str() == "src")
                {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    scan(&text, &mut out);
                }
            }
        }
        out
    }

    fn scan(text: &str, out: &mut BTreeMap<String, Kind>) {
        for (word, kind) in [("counter!(", Kind::Counter), ("gauge!(", Kind::Gauge), ("histogram!(", Kind::Histogram)] {
            for (at, _) in text.match_indices(word) {
                if text[..at].ends_with("describe_") {
                    continue;
                }
                let rest = text[at + word.len()..].trim_start();
                if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next())
                    && name.starts_with("tern_")
                {
                    out.insert(name.to_string(), kind);
                }
            }
        }
        // The guard's per-protocol listener metrics.
        for protocol in ["smtp", "imap", "pop3", "managesieve"] {
            for (suffix, kind) in [("total", Kind::Counter), ("refused_total", Kind::Counter), ("active", Kind::Gauge)]
            {
                let name = format!("tern_{protocol}_connections_{suffix}");
                if text.contains(&format!("\"{name}\"")) && !text.contains("describe_") {
                    out.insert(name, kind);
                }
            }
        }
    }

    #[test]
    fn every_counted_metric_is_described_and_every_described_one_counted() {
        let counted = counted();
        assert!(counted.len() > 40, "the scan found too little: {counted:?}");
        let mut wrong = Vec::new();
        for (name, kind) in &counted {
            match find(name) {
                None => wrong.push(format!("{name} is counted but not in the catalog")),
                Some(info) if info.kind != *kind => {
                    wrong.push(format!("{name}: counted as {kind:?}, described as {:?}", info.kind))
                }
                Some(_) => {}
            }
        }
        for info in CATALOG {
            if !counted.contains_key(info.name) {
                wrong.push(format!("{} is described but nothing counts it", info.name));
            }
            assert!(!info.help.is_empty());
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        let mut names: Vec<&str> = CATALOG.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len(), "a metric is listed twice");
    }

    /// The metric names an expression file uses (a histogram's `_bucket`, `_sum` and `_count`
    /// series named by their histogram).
    fn used_in(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (at, _) in text.match_indices("tern_") {
            if text[..at].chars().last().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let name: String =
                text[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| find(b).is_some_and(|m| m.kind == Kind::Histogram)))
                .map(str::to_string)
                .unwrap_or(name);
            out.push(base);
        }
        out
    }

    #[test]
    fn the_alert_rules_and_the_dashboard_use_only_catalogued_metrics() {
        let root = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../..");
        let alerts = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).expect("alerts.yml");
        let dashboard = std::fs::read_to_string(root.join("deploy/grafana/tern.json")).expect("tern.json");
        let json: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
        let panels = json["panels"].as_array().expect("panels");
        let mut ids = std::collections::BTreeSet::new();
        let mut exprs = String::new();
        for panel in panels {
            assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "panel ids are unique");
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{} has no query", panel["title"]);
            for t in targets {
                exprs.push_str(t["expr"].as_str().expect("expr"));
                exprs.push('\n');
            }
        }
        assert!(json["title"].is_string() && json["uid"].is_string());
        let mut unknown: Vec<String> =
            used_in(&alerts).into_iter().chain(used_in(&exprs)).filter(|n| find(n).is_none()).collect();
        unknown.dedup();
        assert!(unknown.is_empty(), "not metrics Tern has: {unknown:?}");
        assert!(used_in(&alerts).len() > 10 && used_in(&exprs).len() > 20);
    }
}
