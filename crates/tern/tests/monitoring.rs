//! Monitoring (issue 17): the Prometheus alert rules pass `promtool check rules` and their unit
//! tests (`promtool test rules`, recorded series for each alert), and the running server's
//! `/metrics` describes what it exposes and carries the gauges the rules watch.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()))
        .join("../../deploy")
        .join(path)
}

/// Runs promtool (installed by the test command, Debian's `prometheus` package).
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
        .expect("promtool (apt install prometheus; scripts/test.sh installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn the_alert_rules_are_valid_and_their_unit_tests_pass() {
    let checked = promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS: 13 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has a test that makes it fire.
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(deploy("prometheus/alerts_test.yml")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        let fires = tests.split("alertname: ").skip(1).any(|t| t.starts_with(alert) && t.contains("exp_labels"));
        assert!(fires, "no test makes {alert} fire");
    }
}

#[test]
fn metrics_are_described_and_the_watched_gauges_are_there() {
    let s = TestServer::started("");
    // Something of each protocol, so its metrics exist.
    s.deliver("alice@example.test", b"From: a@remote.test\r\nSubject: hi\r\n\r\nhello\r\n");
    let mut c = s.imap_login("alice@example.test");
    c.ok("SELECT INBOX");
    let (code, metrics) = s.http_get("/metrics");
    assert_eq!(code, 200);
    let mut typed = 0;
    for line in metrics.lines().filter(|l| l.starts_with("# TYPE tern_")) {
        let name = line.split_whitespace().nth(2).unwrap_or_default();
        assert!(metrics.contains(&format!("# HELP {name} ")), "{name} has no help: {metrics}");
        typed += 1;
    }
    assert!(typed > 10, "{metrics}");
    let value = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {metrics}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
    };
    assert_eq!(value("tern_store_healthy "), 1.0);
    assert!(value("tern_disk_free_bytes ") > 0.0);
    assert!(value("tern_disk_size_bytes ") >= value("tern_disk_free_bytes "));
    // The test domain was added without DKIM keys: the case TernDkimKeyMissing is for.
    assert_eq!(value("tern_domain_dkim_keys{domain=\"example.test\"}"), 0.0, "{metrics}");
}
