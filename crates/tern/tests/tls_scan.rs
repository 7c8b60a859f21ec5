//! Issue 13: every TLS port scanned by an independent scanner (`sslscan`, from Debian): TLS
//! 1.2 and 1.3 only, forward-secret suites only, no compression, no insecure renegotiation.

mod common;

use common::*;

fn scan(args: &[&str]) -> String {
    let out = std::process::Command::new("sslscan")
        .arg("--no-colour")
        .args(args)
        .output()
        .expect("sslscan (the test command installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_tls_port_offers_only_modern_forward_secret_tls() {
    assert!(have("sslscan"), "sslscan is missing: ./scripts/test.sh installs it");
    let s = TestServer::started("");
    let targets = [
        ("smtp STARTTLS", vec!["--starttls-smtp".to_string(), s.smtp.to_string()]),
        ("submission STARTTLS", vec!["--starttls-smtp".to_string(), s.submission.to_string()]),
        ("submissions", vec![s.submissions.to_string()]),
        ("imap STARTTLS", vec!["--starttls-imap".to_string(), s.imap.to_string()]),
        ("imaps", vec![s.imaps.to_string()]),
        ("pop3 STARTTLS", vec!["--starttls-pop3".to_string(), s.pop3.to_string()]),
        ("pop3s", vec![s.pop3s.to_string()]),
    ];
    for (name, args) in targets {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let report = scan(&args);
        let protocol = |p: &str| {
            report
                .lines()
                .find(|l| l.starts_with(p) && (l.contains("enabled") || l.contains("disabled")))
                .unwrap_or_else(|| panic!("{name}: no line for {p}:\n{report}"))
                .contains("enabled")
        };
        for old in ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"] {
            assert!(!protocol(old), "{name}: {old} is enabled:\n{report}");
        }
        assert!(protocol("TLSv1.2") && protocol("TLSv1.3"), "{name}: TLS 1.2 and 1.3 expected:\n{report}");
        // (Debian's sslscan cannot test compression itself; rustls has none.)
        assert!(report.contains("TLS Compression:") && !report.contains("Compression enabled"), "{name}:\n{report}");
        assert!(
            !report.contains("Insecure session renegotiation supported"),
            "{name}: insecure renegotiation:\n{report}"
        );
        let accepted: Vec<&str> =
            report.lines().filter(|l| l.starts_with("Accepted") || l.starts_with("Preferred")).collect();
        assert!(!accepted.is_empty(), "{name}: no cipher accepted:\n{report}");
        for line in accepted {
            let forward_secret = line.contains("TLSv1.3") || line.contains("ECDHE");
            assert!(forward_secret, "{name}: a suite without forward secrecy: {line}");
            assert!(!line.contains("CBC") && !line.contains("RC4") && !line.contains("3DES"), "{name}: {line}");
        }
    }
}
