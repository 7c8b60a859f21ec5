//! ARC validation (RFC 8617 §5.2) against cases `tests/data/arc/cases.py` makes with dkimpy
//! (its signer, and a small one on its own canonicalization and RSA code) and judges with
//! dkimpy's `arc_verify`, the independent oracle. Tern must agree with dkimpy on every case
//! but one: an ARC-Message-Signature without `c=` signed simple/simple, which RFC 6376 §3.5
//! makes the default and dkimpy does not try.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tern_mailauth::arc::validate;
use tern_mailauth::spf::{DnsError, Lookup, SpfDns};

struct Keys(HashMap<String, String>);

impl SpfDns for Keys {
    async fn txt(&self, name: &str) -> Lookup<Vec<Vec<u8>>> {
        self.0.get(name.trim_end_matches('.')).map(|t| vec![t.as_bytes().to_vec()]).ok_or(DnsError::NotFound)
    }
    async fn a(&self, _: &str) -> Lookup<Vec<Ipv4Addr>> {
        Err(DnsError::NotFound)
    }
    async fn aaaa(&self, _: &str) -> Lookup<Vec<Ipv6Addr>> {
        Err(DnsError::NotFound)
    }
    async fn mx(&self, _: &str) -> Lookup<Vec<String>> {
        Err(DnsError::NotFound)
    }
    async fn ptr(&self, _: IpAddr) -> Lookup<Vec<String>> {
        Err(DnsError::NotFound)
    }
}

/// Where RFC 6376 and dkimpy part ways (see the module documentation).
const DKIMPY_DIFFERS: &[&str] = &["ams-default-canonicalization"];

#[tokio::test]
async fn arc_chains_are_judged_as_dkimpy_judges_them() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/data/arc");
    let python = if std::path::Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    let out = std::process::Command::new(python)
        .arg(dir.join("cases.py"))
        .output()
        .expect("python3 (the test command installs it with python3-dkim)");
    assert!(out.status.success(), "cases.py: {}", String::from_utf8_lossy(&out.stderr));
    let data: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = Keys(
        data["dns"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect(),
    );
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() >= 30);
    let mut wrong = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD.decode(case["message"].as_str().unwrap()).unwrap();
        let expected = case["expected"].as_str().unwrap();
        let dkimpy = case["dkimpy"].as_str().unwrap();
        assert!(
            expected == dkimpy || DKIMPY_DIFFERS.contains(&name),
            "{name}: the oracle says {dkimpy}, the case expects {expected}: {}",
            case["reason"]
        );
        let verdict = validate(&keys, &raw).await;
        if verdict.result.word() != expected {
            wrong.push(format!("{name}: expected {expected}, got {} ({:?})", verdict.result.word(), verdict.reason));
        }
    }
    assert!(wrong.is_empty(), "{} of {} wrong:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}
