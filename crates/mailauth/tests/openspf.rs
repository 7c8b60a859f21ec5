//! The OpenSPF RFC 7208 test suite (`tests/data/spf/rfc7208-tests.yml`, release 2014.04, as
//! the pyspf package ships it; converted to JSON by `to_json.py`) run against Tern's SPF
//! evaluator with an in-memory DNS zone that behaves as the suite's reference driver
//! (pyspf's testspf.py) does: SPF-type records also serve as TXT where a name has no TXT,
//! `TIMEOUT` answers time out, names under `error.` fail, CNAMEs are followed one level.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tern_mailauth::spf::{DnsError, Lookup, SpfDns, SpfRequest, check_host};

#[derive(Debug, Clone)]
enum Rr {
    Timeout,
    Record(String, serde_json::Value),
}

struct Zone(HashMap<String, Vec<Rr>>);

impl Zone {
    fn load(data: &serde_json::Value) -> Zone {
        let mut zone = HashMap::new();
        for (name, records) in data.as_object().unwrap() {
            let mut rrs = Vec::new();
            let mut generated = Vec::new();
            let mut has_txt = false;
            for r in records.as_array().unwrap() {
                match r {
                    serde_json::Value::String(s) if s == "TIMEOUT" => rrs.push(Rr::Timeout),
                    serde_json::Value::Object(m) => {
                        for (t, v) in m {
                            if t == "TXT" {
                                has_txt = true;
                            }
                            if v == "NONE" {
                                continue;
                            }
                            if t == "SPF" {
                                generated.push(Rr::Record("TXT".into(), v.clone()));
                            }
                            rrs.push(Rr::Record(t.clone(), v.clone()));
                        }
                    }
                    other => panic!("zone entry {other:?}"),
                }
            }
            if !has_txt {
                rrs.extend(generated);
            }
            zone.insert(name.to_lowercase(), rrs);
        }
        Zone(zone)
    }

    fn lookup(&self, name: &str, qtype: &str, depth: usize) -> Lookup<Vec<serde_json::Value>> {
        // The driver drops empty labels and refuses long ones, as pydns did.
        let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
        if labels.iter().any(|l| l.len() > 63) {
            return Err(DnsError::Temporary("DNS label too long".into()));
        }
        let name = labels.join(".").to_lowercase();
        let Some(rrs) = self.0.get(&name) else {
            return if name.starts_with("error.") {
                Err(DnsError::Temporary("DNS timeout".into()))
            } else {
                Err(DnsError::NotFound)
            };
        };
        let mut out = Vec::new();
        for rr in rrs {
            match rr {
                // A bare TIMEOUT times out a query unless records of its type came first.
                Rr::Timeout if out.is_empty() => return Err(DnsError::Temporary("DNS timeout".into())),
                Rr::Timeout => break,
                Rr::Record(t, v) if t == qtype => {
                    if v == "TIMEOUT" {
                        return Err(DnsError::Temporary("DNS timeout".into()));
                    }
                    out.push(v.clone());
                }
                Rr::Record(t, v) if t == "CNAME" && depth == 0 => {
                    if let Ok(more) = self.lookup(v.as_str().unwrap(), qtype, 1) {
                        out.extend(more);
                    }
                }
                _ => {}
            }
        }
        if out.is_empty() { Err(DnsError::NotFound) } else { Ok(out) }
    }
}

impl SpfDns for Zone {
    async fn txt(&self, name: &str) -> Lookup<Vec<Vec<u8>>> {
        Ok(self
            .lookup(name, "TXT", 0)?
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s.into_bytes(),
                serde_json::Value::Array(parts) => {
                    parts.iter().flat_map(|p| p.as_str().unwrap_or_default().as_bytes().to_vec()).collect()
                }
                other => panic!("TXT {other:?}"),
            })
            .collect())
    }

    async fn a(&self, name: &str) -> Lookup<Vec<Ipv4Addr>> {
        Ok(self.lookup(name, "A", 0)?.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
    }

    async fn aaaa(&self, name: &str) -> Lookup<Vec<Ipv6Addr>> {
        Ok(self.lookup(name, "AAAA", 0)?.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
    }

    async fn mx(&self, name: &str) -> Lookup<Vec<String>> {
        let mut mx: Vec<(i64, String)> = self
            .lookup(name, "MX", 0)?
            .iter()
            .map(|v| (v[0].as_i64().unwrap_or(0), v[1].as_str().unwrap_or_default().to_string()))
            .collect();
        mx.sort_by_key(|m| m.0);
        Ok(mx.into_iter().map(|m| m.1).collect())
    }

    async fn ptr(&self, ip: IpAddr) -> Lookup<Vec<String>> {
        let name = match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
            }
            IpAddr::V6(v6) => {
                let nibbles: Vec<String> =
                    v6.octets().iter().rev().flat_map(|b| [b & 15, b >> 4]).map(|n| format!("{n:x}")).collect();
                format!("{}.ip6.arpa", nibbles.join("."))
            }
        };
        Ok(self.lookup(&name, "PTR", 0)?.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
    }
}

#[tokio::test]
async fn openspf_rfc7208_suite() {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/data/spf/rfc7208-tests.json");
    let suite: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut failures = Vec::new();
    let mut total = 0;
    for scenario in &suite {
        let zone = Zone::load(&scenario["zonedata"]);
        for (id, t) in scenario["tests"].as_object().unwrap() {
            total += 1;
            let host: IpAddr = t["host"].as_str().unwrap().parse().unwrap();
            let helo = t["helo"].as_str().unwrap();
            let mailfrom = t["mailfrom"].as_str().unwrap_or_default();
            // pyspf's identities: MAIL FROM, or postmaster@HELO for an empty one.
            let (domain, sender) = if mailfrom.is_empty() {
                (helo.to_string(), format!("postmaster@{helo}"))
            } else {
                match mailfrom.rsplit_once('@') {
                    Some((_, d)) => (d.to_string(), mailfrom.to_string()),
                    None => (mailfrom.to_string(), format!("postmaster@{mailfrom}")),
                }
            };
            let request =
                SpfRequest { ip: host, domain: &domain, sender: &sender, helo, receiver: "receiver.test", now: 0 };
            let outcome = check_host(&zone, &request).await;
            let got = outcome.result.word();
            let expected: Vec<String> = match &t["result"] {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
                other => panic!("result {other:?}"),
            };
            let mut ok = expected.iter().any(|e| e == got);
            if let Some(exp) = t["explanation"].as_str() {
                let got_exp = outcome.explanation.clone().unwrap_or_else(|| "DEFAULT".into());
                ok &= got_exp == exp;
            }
            if !ok {
                failures.push(format!(
                    "{id} ({}): expected {expected:?} {:?}, got {got} {:?} {:?}",
                    t["spec"], t["explanation"], outcome.explanation, outcome.detail
                ));
            }
        }
    }
    assert_eq!(total, 203);
    assert!(failures.is_empty(), "{} of {total} cases wrong:\n{}", failures.len(), failures.join("\n"));
}
