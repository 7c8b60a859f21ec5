//! What the world sees of a domain, checked through DNS (the configured resolver) and over
//! the network: each record Tern needs published (`crate::admin::expected_dns`), the
//! certificate, the MTA-STS policy, DANE; each item `ok`, `missing`, `wrong` or `warn` with
//! the fix. Used by `tern doctor` and by the REST API and web admin's domain pages.

use crate::admin::{DnsRecord, ExpectedDns};
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::fmt::Write as _;
use std::net::IpAddr;
use tern_config::Config;
use tern_dns::{Dns, MxAnswer};
use tern_mailauth::verify::Verifier;

/// The SPF/DKIM/DMARC verifier `config` describes.
pub fn verifier(config: &Config) -> anyhow::Result<Verifier> {
    let dns = Dns::from_config(&config.dns).map_err(|e| anyhow::anyhow!(e))?;
    let psl = match &config.inbound.public_suffix_list {
        Some(path) => tern_mailauth::dmarc::PublicSuffixList::parse(&std::fs::read_to_string(path)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        None => tern_mailauth::dmarc::PublicSuffixList::bundled(),
    };
    Ok(Verifier::new(dns, &config.hostname, psl).with_dmarc(crate::dmarc_specification(config)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Missing,
    Wrong,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Missing => "missing",
            Status::Wrong => "wrong",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Item {
    pub status: Status,
    pub what: String,
    pub detail: String,
    pub fix: Option<String>,
}

#[derive(Default, Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Report {
    pub items: Vec<Item>,
}

impl Report {
    pub fn add(&mut self, status: Status, what: &str, detail: impl Into<String>, fix: Option<String>) {
        self.items.push(Item { status, what: what.to_string(), detail: detail.into(), fix });
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for i in &self.items {
            let _ = writeln!(out, "{:<8}{:<14}{}", i.status.word(), i.what, i.detail);
            if let Some(fix) = &i.fix {
                for line in fix.lines() {
                    let _ = writeln!(out, "{:<22}fix: {line}", "");
                }
            }
        }
        let count = |s: Status| self.items.iter().filter(|i| i.status == s).count();
        let _ = writeln!(
            out,
            "\n{} ok, {} warnings, {} missing, {} wrong",
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Missing),
            count(Status::Wrong)
        );
        out
    }

    pub fn failed(&self) -> bool {
        self.items.iter().any(|i| matches!(i.status, Status::Missing | Status::Wrong))
    }
}

fn zone_line(r: &DnsRecord) -> String {
    let value = if r.rtype == "TXT" { format!("\"{}\"", r.value) } else { r.value.clone() };
    format!("{}. IN {} {value}", r.name, r.rtype)
}

/// One TXT value without the spaces DNS tools or people put in (DKIM keys are often split).
fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase()
}

/// The `p=` of a DKIM record.
fn dkim_key(record: &str) -> Option<String> {
    record
        .split(';')
        .find_map(|tag| tag.trim().strip_prefix("p=").map(|p| p.chars().filter(|c| !c.is_whitespace()).collect()))
}

/// Checks what the world sees of `expected`'s domain through `dns`: each record, the
/// certificate, the MTA-STS policy served, DANE.
pub async fn check_domain(config: &Config, dns: &Dns, expected: &ExpectedDns) -> anyhow::Result<Report> {
    let host = expected.hostname.clone();
    let d = expected.domain.clone();
    let wanted = |rtype: &str, prefix: &str| -> Vec<DnsRecord> {
        expected.records.iter().filter(|r| r.rtype == rtype && r.name.starts_with(prefix)).cloned().collect()
    };
    let mut report = Report::default();

    // MX
    let mx_fix = Some(format!("publish {d}. IN MX 10 {host}."));
    match dns.mx(&d).await {
        Ok(MxAnswer::Hosts(hosts)) if hosts.iter().any(|h| h.trim_end_matches('.').eq_ignore_ascii_case(&host)) => {
            report.add(Status::Ok, "MX", format!("{d} -> {}", hosts.join(", ")), None)
        }
        Ok(MxAnswer::Hosts(hosts)) if hosts.is_empty() || hosts == [d.clone()] => {
            report.add(Status::Missing, "MX", format!("{d} has no MX record"), mx_fix)
        }
        Ok(MxAnswer::Hosts(hosts)) => {
            report.add(Status::Wrong, "MX", format!("{d} -> {} (not {host})", hosts.join(", ")), mx_fix)
        }
        Ok(MxAnswer::Null) => report.add(Status::Wrong, "MX", format!("{d} says it takes no mail (MX 0 .)"), mx_fix),
        Err(e) => report.add(Status::Wrong, "MX", format!("lookup failed: {e}"), mx_fix),
    }

    // The server's addresses and their reverse names.
    let ips = dns.ips(&host).await.unwrap_or_default();
    if ips.is_empty() {
        report.add(
            Status::Missing,
            "A/AAAA",
            format!("{host} has no address"),
            Some(format!("publish {host}. IN A <this server's public IPv4> (and AAAA for IPv6)")),
        );
    } else {
        report.add(Status::Ok, "A/AAAA", format!("{host} -> {}", join(&ips)), None);
    }
    for ip in &ips {
        let names: Vec<String> = dns.ptr(*ip).await.unwrap_or_default();
        let fix = Some(format!("ask whoever gives you {ip} to set its reverse DNS (PTR) to {host}"));
        if names.is_empty() {
            report.add(Status::Missing, "PTR", format!("{ip} has no reverse name"), fix);
        } else if !names.iter().any(|n| n.eq_ignore_ascii_case(&host)) {
            report.add(Status::Wrong, "PTR", format!("{ip} -> {} (not {host})", names.join(", ")), fix);
        } else {
            report.add(Status::Ok, "PTR", format!("{ip} -> {host} -> {ip} (forward-confirmed)"), None);
        }
    }

    // SPF: the domain's record must let this server's addresses send for it.
    let spf_record = wanted("TXT", &d).into_iter().find(|r| r.name == d && r.value.starts_with("v=spf1"));
    let spf_fix = spf_record.as_ref().map(zone_line);
    let txt = dns.txt(&d).await.unwrap_or_default();
    match txt.iter().find(|t| t.to_ascii_lowercase().starts_with("v=spf1")) {
        None => report.add(Status::Missing, "SPF", format!("{d} has no v=spf1 record"), spf_fix),
        Some(record) => {
            let verifier = verifier(config)?;
            let mut failing = Vec::new();
            for ip in &ips {
                let check = verifier.spf_mail_from(*ip, &host, &host, &format!("postmaster@{d}")).await;
                if check.outcome != tern_mailauth::verify::Outcome::Pass {
                    failing.push(format!("{ip}: {}", check.outcome.word()));
                }
            }
            if failing.is_empty() {
                report.add(
                    Status::Ok,
                    "SPF",
                    format!("\"{record}\" lets {} send", if ips.is_empty() { host.clone() } else { join(&ips) }),
                    None,
                )
            } else {
                report.add(
                    Status::Wrong,
                    "SPF",
                    format!("\"{record}\" does not pass for {}", failing.join(", ")),
                    spf_fix,
                )
            }
        }
    }

    // DKIM: each key in use must be published as it is.
    let dkim = wanted("TXT", "");
    let dkim: Vec<&DnsRecord> = dkim.iter().filter(|r| r.name.contains("._domainkey.")).collect();
    if dkim.is_empty() {
        report.add(Status::Missing, "DKIM", "no signing keys", Some(format!("tern dkim generate {d}")));
    }
    for r in dkim {
        let selector = r.name.split('.').next().unwrap_or_default();
        let published = dns.txt(&r.name).await.unwrap_or_default();
        let want = dkim_key(&r.value);
        let what = format!("DKIM {selector}");
        match published.iter().find(|t| t.contains("p=")) {
            None => report.add(Status::Missing, &what, format!("{} has no key", r.name), Some(zone_line(r))),
            Some(t) if dkim_key(t) == want => {
                report.add(Status::Ok, &what, format!("{} matches the key in use", r.name), None)
            }
            Some(_) => report.add(
                Status::Wrong,
                &what,
                format!("{} publishes another key than the one in use", r.name),
                Some(zone_line(r)),
            ),
        }
    }

    // DMARC
    let dmarc_name = format!("_dmarc.{d}");
    let dmarc_fix = wanted("TXT", "_dmarc.").first().map(zone_line);
    match dns.txt(&dmarc_name).await.unwrap_or_default().iter().find(|t| t.starts_with("v=DMARC1")) {
        Some(t) => {
            let policy = t.split(';').find_map(|p| p.trim().strip_prefix("p=")).unwrap_or("?").to_string();
            let status = if policy == "none" { Status::Warn } else { Status::Ok };
            let fix =
                (status == Status::Warn).then(|| "once reports look right, set p=quarantine or p=reject".to_string());
            report.add(status, "DMARC", format!("{dmarc_name}: p={policy}"), fix)
        }
        None => report.add(Status::Missing, "DMARC", format!("{dmarc_name} has no v=DMARC1 record"), dmarc_fix),
    }

    // MTA-STS: the TXT id, and the policy served over HTTPS (certificate checked).
    let sts = wanted("TXT", "_mta-sts.").into_iter().next();
    let sts_name = format!("_mta-sts.{d}");
    let published = dns.txt(&sts_name).await.unwrap_or_default();
    let published_id = tern_delivery::mta_sts::parse_txt(&published);
    let wanted_id = sts.as_ref().and_then(|r| tern_delivery::mta_sts::parse_txt(std::slice::from_ref(&r.value)));
    match (&published_id, &wanted_id) {
        (None, _) => report.add(
            Status::Missing,
            "MTA-STS",
            format!("{sts_name} has no v=STSv1 record"),
            sts.as_ref().map(zone_line),
        ),
        (Some(p), Some(w)) if squeeze(p) == squeeze(w) => {
            report.add(Status::Ok, "MTA-STS", format!("{sts_name}: id={p}"), None)
        }
        (Some(p), _) => report.add(
            Status::Wrong,
            "MTA-STS",
            format!("{sts_name}: id={p}, but the policy served now has another id"),
            sts.as_ref().map(zone_line),
        ),
    }
    let tls = tern_delivery::tls::TlsConfigs::new(config.delivery.ca_file.as_deref())?;
    let fetcher = tern_delivery::mta_sts::MtaSts::new(tls.roots(), config.delivery.mta_sts_port);
    let ours = tern_delivery::mta_sts::parse_policy(&expected.mta_sts_policy, "").ok();
    if published_id.is_some() {
        match fetcher.policy(dns, &d).await {
            Some(p) if Some((p.mode, &p.mx, p.max_age)) == ours.as_ref().map(|o| (o.mode, &o.mx, o.max_age)) => {
                report.add(Status::Ok, "MTA-STS web", format!("https://mta-sts.{d}/.well-known/mta-sts.txt is Tern's policy"), None)
            }
            Some(p) => report.add(
                Status::Wrong,
                "MTA-STS web",
                format!("the policy served names mx {:?}, not this server's", p.mx),
                Some(format!("point mta-sts.{d} at {host} (CNAME) so Tern serves the policy")),
            ),
            None => report.add(
                Status::Wrong,
                "MTA-STS web",
                format!("no valid policy at https://mta-sts.{d}/.well-known/mta-sts.txt"),
                Some(format!(
                    "publish mta-sts.{d}. IN CNAME {host}., listen on 443 ([listen] https), with a certificate for mta-sts.{d}"
                )),
            ),
        }
    }

    // TLS-RPT
    let rpt_name = format!("_smtp._tls.{d}");
    match dns.txt(&rpt_name).await.unwrap_or_default().iter().find(|t| t.starts_with("v=TLSRPTv1")) {
        Some(t) => report.add(Status::Ok, "TLS-RPT", format!("{rpt_name}: {t}"), None),
        None => report.add(
            Status::Warn,
            "TLS-RPT",
            format!("{rpt_name} has no record (recommended)"),
            wanted("TXT", "_smtp._tls.").first().map(zone_line),
        ),
    }

    // The certificate.
    let cert_path = config.tls.cert.clone().unwrap_or_else(|| config.data_dir.join("tls/cert.pem"));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert_path.display()))?;
    let Some(leaf) = chain.first() else { anyhow::bail!("{}: no certificate", cert_path.display()) };
    match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, cert)) => {
            let days = (cert.validity().not_after.timestamp() - tern_store::now_unix()) / 86_400;
            let status = if days < 0 {
                Status::Wrong
            } else if days < 14 {
                Status::Warn
            } else {
                Status::Ok
            };
            report.add(
                status,
                "certificate",
                format!("{} expires in {days} days", cert_path.display()),
                (status != Status::Ok).then(|| "renew it (or configure [acme])".to_string()),
            );
        }
        Err(e) => report.add(Status::Wrong, "certificate", format!("{}: {e}", cert_path.display()), None),
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder(tls.roots()).build()?;
    for name in [host.clone(), format!("mta-sts.{d}")] {
        let Ok(server_name) = ServerName::try_from(name.clone()) else { continue };
        let verdict = verifier.verify_server_cert(leaf, &chain[1..], &server_name, &[], UnixTime::now());
        match verdict {
            Ok(_) => report.add(Status::Ok, "certificate", format!("valid for {name}, chain trusted"), None),
            Err(e) => report.add(
                if name == host { Status::Wrong } else { Status::Warn },
                "certificate",
                format!("not valid for {name}: {e}"),
                Some(format!("a certificate from a public CA naming {name} ([tls] cert/key, or [acme])")),
            ),
        }
    }

    // DANE (only with DNSSEC).
    match dns.tlsa(&format!("_25._tcp.{host}")).await {
        Ok(Some(records)) => {
            if records.iter().any(|r| tern_delivery::tls::tlsa_matches(r, leaf)) {
                report.add(Status::Ok, "TLSA", format!("_25._tcp.{host} matches the certificate"), None)
            } else {
                report.add(
                    Status::Wrong,
                    "TLSA",
                    format!("_25._tcp.{host} matches no certificate in use: senders with DANE will not deliver"),
                    Some("publish a TLSA 3 1 1 record of the current key".into()),
                )
            }
        }
        Ok(None) => report.add(Status::Ok, "TLSA", format!("none at _25._tcp.{host} (optional; needs DNSSEC)"), None),
        Err(e) => report.add(Status::Warn, "TLSA", format!("lookup failed: {e}"), None),
    }

    Ok(report)
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ")
}
