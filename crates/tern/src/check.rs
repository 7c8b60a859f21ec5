//! `tern check spf|dkim|dmarc`: the server's own verification, from the command line, with the
//! configured resolver (so it answers exactly as the server would).

use std::net::IpAddr;
use tern_config::Config;
use tern_mailauth::verify::{Outcome, Verifier};

pub(crate) fn verifier(config: &Config) -> anyhow::Result<Verifier> {
    tern_server::dns_check::verifier(config)
}

pub async fn spf(config: &Config, ip: IpAddr, helo: &str, sender: Option<&str>) -> anyhow::Result<String> {
    let v = verifier(config)?;
    let check = match sender {
        Some(s) => v.spf_mail_from(ip, helo, &config.hostname, s).await,
        None => v.spf_helo(ip, helo, &config.hostname).await,
    };
    let mut out = format!("{}\n", check.outcome.word());
    let identity = if sender.is_some() { "mailfrom" } else { "helo" };
    out.push_str(&format!("identity: {identity}\ndomain: {}\nip: {ip}\n", check.domain));
    if let Some(e) = &check.explanation {
        out.push_str(&format!("explanation: {e}\n"));
    }
    Ok(out)
}

pub async fn dkim(config: &Config, raw: &[u8]) -> anyhow::Result<String> {
    let v = verifier(config)?;
    let checks = v.dkim(raw).await;
    let mut out = String::new();
    for c in &checks {
        out.push_str(&format!("{} d={} s={} a={}", c.outcome.word(), c.domain, c.selector, c.algorithm));
        if let Some(r) = &c.reason {
            out.push_str(&format!(" ({r})"));
        }
        out.push('\n');
    }
    out.push_str(overall(checks.iter().map(|c| c.outcome).collect()).word());
    out.push('\n');
    Ok(out)
}

/// One word for several signatures: any pass wins, then temperror, fail, permerror, neutral.
fn overall(outcomes: Vec<Outcome>) -> Outcome {
    for o in [Outcome::Pass, Outcome::TempError, Outcome::Fail, Outcome::PermError, Outcome::Neutral] {
        if outcomes.contains(&o) {
            return o;
        }
    }
    Outcome::None
}

pub async fn dmarc(config: &Config, raw: &[u8], ip: IpAddr, helo: &str, sender: &str) -> anyhow::Result<String> {
    let v = verifier(config)?;
    let header_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let from = mail_parser::MessageParser::new()
        .parse_headers(&raw[..header_end])
        .as_ref()
        .and_then(|m| m.from())
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("the message has no From: address"))?;
    let from_domain = from.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
    let spf = v.spf_mail_from(ip, helo, &config.hostname, sender).await;
    let dkim = v.dkim(raw).await;
    let e = v.dmarc(&from_domain, &spf, &dkim, 0).await;
    let mut out = format!("{}\n", e.verdict.word());
    out.push_str(&format!("header.from: {}\n", e.from_domain));
    out.push_str(&format!("specification: {}\n", e.specification.discovery_method()));
    match &e.record {
        Some(r) => {
            out.push_str(&format!(
                "record: _dmarc.{} p={} sp={} np={} pct={} t={}\n",
                e.record_domain.as_deref().unwrap_or(""),
                r.p.name(),
                r.sp.name(),
                r.np.name(),
                r.pct,
                if r.testing { "y" } else { "n" }
            ));
            if let Some(org) = &e.organizational_domain {
                out.push_str(&format!("organizational domain: {org}\n"));
            }
            out.push_str(&format!("requested: {}\npolicy: {}\n", e.policy.name(), e.applied.name()));
        }
        None => out.push_str("record: none\npolicy: none\n"),
    }
    out.push_str(&format!("spf: {} ({}), aligned: {}\n", spf.outcome.word(), spf.domain, e.spf_aligned));
    for d in &dkim {
        out.push_str(&format!("dkim: {} d={} s={}\n", d.outcome.word(), d.domain, d.selector));
    }
    out.push_str(&format!("dkim aligned: {}\n", e.dkim_aligned));
    Ok(out)
}
