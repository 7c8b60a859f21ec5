//! DMARC aggregate reports (RFC 7489 §7.2): results are counted per policy domain while mail
//! arrives, then written as the XML of Appendix C for the domain's `rua` addresses.

use crate::dmarc::{Alignment, Evaluation, Record};
use crate::verify::{DkimCheck, SpfCheck};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// One row of a report: messages that share source, disposition and results.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RowKey {
    pub source_ip: IpAddr,
    pub disposition: String,
    pub dkim_aligned: bool,
    pub spf_aligned: bool,
    pub header_from: String,
    pub envelope_from: String,
    /// (domain, selector, result)
    pub dkim: Vec<(String, String, String)>,
    /// (domain, result)
    pub spf: (String, String),
}

/// The policy as published, for the report's `policy_published`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub domain: String,
    pub adkim: String,
    pub aspf: String,
    pub p: String,
    pub sp: String,
    pub pct: u8,
    pub rua: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DomainReport {
    pub published: Option<Published>,
    pub rows: Vec<(RowKey, u32)>,
}

/// Results since the last report.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Period {
    pub begin: i64,
    pub domains: HashMap<String, DomainReport>,
}

#[derive(Default)]
pub struct Aggregator {
    period: Mutex<Period>,
}

fn alignment(a: Alignment) -> &'static str {
    match a {
        Alignment::Relaxed => "r",
        Alignment::Strict => "s",
    }
}

fn published(domain: &str, r: &Record) -> Published {
    Published {
        domain: domain.to_string(),
        adkim: alignment(r.adkim).into(),
        aspf: alignment(r.aspf).into(),
        p: r.p.name().into(),
        sp: r.sp.name().into(),
        pct: r.pct,
        rua: r.rua.clone(),
    }
}

impl Aggregator {
    pub fn new(now: i64) -> Aggregator {
        Aggregator { period: Mutex::new(Period { begin: now, domains: HashMap::new() }) }
    }

    /// Restores a saved period (JSON).
    pub fn restore(json: &[u8], now: i64) -> Aggregator {
        match serde_json::from_slice::<Period>(json) {
            Ok(period) => Aggregator { period: Mutex::new(period) },
            Err(_) => Aggregator::new(now),
        }
    }

    pub fn save(&self) -> Vec<u8> {
        let period = self.period.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::to_vec(&*period).unwrap_or_default()
    }

    /// Counts one message judged by DMARC (only domains that ask for aggregate reports).
    pub fn add(&self, e: &Evaluation, source_ip: IpAddr, envelope_from: &str, spf: &SpfCheck, dkim: &[DkimCheck]) {
        let (Some(record), Some(domain)) = (&e.record, &e.record_domain) else { return };
        if record.rua.is_empty() {
            return;
        }
        let key = RowKey {
            source_ip,
            disposition: e.applied.name().into(),
            dkim_aligned: e.dkim_aligned,
            spf_aligned: e.spf_aligned,
            header_from: e.from_domain.clone(),
            envelope_from: envelope_from.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default(),
            dkim: dkim.iter().map(|d| (d.domain.clone(), d.selector.clone(), d.outcome.word().to_string())).collect(),
            spf: (spf.domain.clone(), spf.outcome.word().to_string()),
        };
        let mut period = self.period.lock().unwrap_or_else(|p| p.into_inner());
        let report = period.domains.entry(domain.clone()).or_default();
        report.published = Some(published(domain, record));
        let rows = report.rows.len();
        match report.rows.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            // Bounded: a flood of distinct sources cannot grow the report without limit.
            None if rows < 10_000 => report.rows.push((key, 1)),
            None => {}
        }
    }

    /// Ends the period: its results, and a new empty period from `now`.
    pub fn take(&self, now: i64) -> Period {
        let mut period = self.period.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *period, Period { begin: now, domains: HashMap::new() })
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The report XML (RFC 7489 Appendix C).
pub fn report_xml(org_name: &str, email: &str, report_id: &str, begin: i64, end: i64, report: &DomainReport) -> String {
    let e = xml_escape;
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n");
    x.push_str(&format!(
        "  <report_metadata>\n    <org_name>{}</org_name>\n    <email>{}</email>\n    <report_id>{}</report_id>\n    <date_range>\n      <begin>{begin}</begin>\n      <end>{end}</end>\n    </date_range>\n  </report_metadata>\n",
        e(org_name),
        e(email),
        e(report_id)
    ));
    if let Some(p) = &report.published {
        x.push_str(&format!(
            "  <policy_published>\n    <domain>{}</domain>\n    <adkim>{}</adkim>\n    <aspf>{}</aspf>\n    <p>{}</p>\n    <sp>{}</sp>\n    <pct>{}</pct>\n  </policy_published>\n",
            e(&p.domain),
            p.adkim,
            p.aspf,
            p.p,
            p.sp,
            p.pct
        ));
    }
    for (row, count) in &report.rows {
        let pass = |b: bool| if b { "pass" } else { "fail" };
        x.push_str(&format!(
            "  <record>\n    <row>\n      <source_ip>{}</source_ip>\n      <count>{count}</count>\n      <policy_evaluated>\n        <disposition>{}</disposition>\n        <dkim>{}</dkim>\n        <spf>{}</spf>\n      </policy_evaluated>\n    </row>\n    <identifiers>\n      <header_from>{}</header_from>\n",
            row.source_ip,
            e(&row.disposition),
            pass(row.dkim_aligned),
            pass(row.spf_aligned),
            e(&row.header_from)
        ));
        if !row.envelope_from.is_empty() {
            x.push_str(&format!("      <envelope_from>{}</envelope_from>\n", e(&row.envelope_from)));
        }
        x.push_str("    </identifiers>\n    <auth_results>\n");
        for (d, s, r) in &row.dkim {
            x.push_str(&format!(
                "      <dkim>\n        <domain>{}</domain>\n        <selector>{}</selector>\n        <result>{}</result>\n      </dkim>\n",
                e(d),
                e(s),
                e(r)
            ));
        }
        x.push_str(&format!(
            "      <spf>\n        <domain>{}</domain>\n        <result>{}</result>\n      </spf>\n    </auth_results>\n  </record>\n",
            e(&row.spf.0),
            e(&row.spf.1)
        ));
    }
    x.push_str("</feedback>\n");
    x
}

/// RFC 7489 §7.1: a report for `policy_domain` may go to an address in another organizational
/// domain only if that domain publishes `<policy_domain>._report._dmarc.<rua domain>`. This is
/// the name to look up, or `None` when no verification is needed.
pub fn verification_name(psl: &crate::dmarc::PublicSuffixList, policy_domain: &str, rua: &str) -> Option<String> {
    let rua_domain = rua.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase())?;
    if psl.organizational_domain(&rua_domain) == psl.organizational_domain(policy_domain) {
        return None;
    }
    Some(format!("{policy_domain}._report._dmarc.{rua_domain}"))
}

/// Whether `records` (TXT at the verification name) authorize the reports.
pub fn verification_ok(records: &[String]) -> bool {
    records.iter().any(|r| r.trim_start().starts_with("v=DMARC1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dmarc::{Policy, PublicSuffixList, Verdict};
    use crate::verify::Outcome;

    #[test]
    fn rows_are_counted_and_written() {
        let agg = Aggregator::new(100);
        let record = crate::dmarc::parse_record("v=DMARC1; p=reject; rua=mailto:d@reports.example").unwrap();
        let e = Evaluation {
            verdict: Verdict::Pass,
            from_domain: "example.com".into(),
            record_domain: Some("example.com".into()),
            record: Some(record),
            policy: Policy::Reject,
            applied: Policy::None,
            spf_aligned: true,
            dkim_aligned: false,
        };
        let spf = SpfCheck { outcome: Outcome::Pass, domain: "example.com".into(), explanation: None };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        agg.add(&e, ip, "b@example.com", &spf, &[]);
        agg.add(&e, ip, "b@example.com", &spf, &[]);
        let saved = agg.save();
        let period = Aggregator::restore(&saved, 0).take(200);
        assert_eq!(period.begin, 100);
        let report = &period.domains["example.com"];
        assert_eq!(report.rows.len(), 1);
        assert_eq!(report.rows[0].1, 2);
        let xml = report_xml("mx.tern.test", "noreply@mx.tern.test", "r1", 100, 200, report);
        assert!(
            xml.contains("<count>2</count>") && xml.contains("<p>reject</p>") && xml.contains("<spf>pass</spf>"),
            "{xml}"
        );
        let psl = PublicSuffixList::bundled();
        assert_eq!(
            verification_name(&psl, "example.com", "d@reports.example"),
            Some("example.com._report._dmarc.reports.example".into())
        );
        assert_eq!(verification_name(&psl, "example.com", "d@mail.example.com"), None);
        assert!(verification_ok(&["v=DMARC1".into()]));
        assert!(!verification_ok(&["v=spf1".into()]));
    }
}
