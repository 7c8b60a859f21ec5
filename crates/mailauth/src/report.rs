//! DMARC aggregate reports: results are counted per policy domain while mail arrives, then
//! written for the domain's `rua` addresses as the XML of RFC 7489 Appendix C, or, when DMARC
//! follows RFC 9989, of its aggregate reporting companion (RFC 9990,
//! draft-ietf-dmarc-aggregate-reporting: namespace `urn:ietf:params:xml:ns:dmarc-2.0`,
//! `np`, `testing`, `discovery_method`, no `pct`).

use crate::dmarc::{Alignment, Evaluation, Policy, Record, Specification, Verdict};
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
    /// Why the disposition is milder than the policy: `sampled_out` (RFC 7489 `pct`) or
    /// `policy_test_mode` (RFC 9989 `t=y`).
    #[serde(default)]
    pub reason: Option<String>,
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
    /// `psl` (RFC 7489) or `treewalk` (RFC 9989); empty in counts saved by older versions.
    #[serde(default)]
    pub discovery_method: String,
    #[serde(default)]
    pub np: String,
    #[serde(default)]
    pub testing: bool,
    #[serde(default)]
    pub fo: String,
    /// The organizational domain of the policy domain (RFC 9989), for report destinations.
    #[serde(default)]
    pub organizational_domain: Option<String>,
}

impl Published {
    fn tree_walk(&self) -> bool {
        self.discovery_method == Specification::Rfc9989.discovery_method()
    }
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

fn published(domain: &str, r: &Record, e: &Evaluation) -> Published {
    // The policy domain is the From domain, its organizational domain or its PSD; only the
    // first can have an organizational domain other than itself.
    let organizational_domain = match &e.organizational_domain {
        Some(org) if domain == e.from_domain => Some(org.clone()),
        _ => Some(domain.to_string()),
    };
    Published {
        domain: domain.to_string(),
        adkim: alignment(r.adkim).into(),
        aspf: alignment(r.aspf).into(),
        p: r.p.name().into(),
        sp: r.sp.name().into(),
        pct: r.pct,
        rua: r.rua.clone(),
        discovery_method: e.specification.discovery_method().into(),
        np: r.np.name().into(),
        testing: r.testing,
        fo: r.fo.clone(),
        organizational_domain,
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
        let milder = e.verdict == Verdict::Fail && e.applied != e.policy && e.policy != Policy::None;
        let reason = milder.then(|| if record.testing { "policy_test_mode" } else { "sampled_out" }.to_string());
        let key = RowKey {
            source_ip,
            disposition: e.applied.name().into(),
            dkim_aligned: e.dkim_aligned,
            spf_aligned: e.spf_aligned,
            header_from: e.from_domain.clone(),
            envelope_from: envelope_from.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default(),
            dkim: dkim.iter().map(|d| (d.domain.clone(), d.selector.clone(), d.outcome.word().to_string())).collect(),
            spf: (spf.domain.clone(), spf.outcome.word().to_string()),
            reason,
        };
        let mut period = self.period.lock().unwrap_or_else(|p| p.into_inner());
        let report = period.domains.entry(domain.clone()).or_default();
        report.published = Some(published(domain, record, e));
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

/// The report XML: RFC 7489 Appendix C, or RFC 9990's format for tree-walk policies.
pub fn report_xml(org_name: &str, email: &str, report_id: &str, begin: i64, end: i64, report: &DomainReport) -> String {
    let e = xml_escape;
    let bis = report.published.as_ref().is_some_and(Published::tree_walk);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    if bis {
        x.push_str("<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\">\n  <version>1.0</version>\n");
    } else {
        x.push_str("<feedback>\n");
    }
    x.push_str(&format!(
        "  <report_metadata>\n    <org_name>{}</org_name>\n    <email>{}</email>\n    <report_id>{}</report_id>\n    <date_range>\n      <begin>{begin}</begin>\n      <end>{end}</end>\n    </date_range>\n",
        e(org_name),
        e(email),
        e(report_id)
    ));
    if bis {
        x.push_str(&format!("    <generator>Tern {}</generator>\n", env!("CARGO_PKG_VERSION")));
    }
    x.push_str("  </report_metadata>\n");
    if let Some(p) = &report.published {
        x.push_str(&format!("  <policy_published>\n    <domain>{}</domain>\n", e(&p.domain)));
        if bis {
            x.push_str(&format!(
                "    <discovery_method>treewalk</discovery_method>\n    <p>{}</p>\n    <sp>{}</sp>\n    <np>{}</np>\n    <fo>{}</fo>\n    <adkim>{}</adkim>\n    <aspf>{}</aspf>\n    <testing>{}</testing>\n",
                p.p,
                p.sp,
                p.np,
                e(&p.fo),
                p.adkim,
                p.aspf,
                if p.testing { "y" } else { "n" }
            ));
        } else {
            x.push_str(&format!(
                "    <adkim>{}</adkim>\n    <aspf>{}</aspf>\n    <p>{}</p>\n    <sp>{}</sp>\n    <pct>{}</pct>\n",
                p.adkim, p.aspf, p.p, p.sp, p.pct
            ));
        }
        x.push_str("  </policy_published>\n");
    }
    for (row, count) in &report.rows {
        let pass = |b: bool| if b { "pass" } else { "fail" };
        x.push_str(&format!(
            "  <record>\n    <row>\n      <source_ip>{}</source_ip>\n      <count>{count}</count>\n      <policy_evaluated>\n        <disposition>{}</disposition>\n        <dkim>{}</dkim>\n        <spf>{}</spf>\n",
            row.source_ip,
            e(&row.disposition),
            pass(row.dkim_aligned),
            pass(row.spf_aligned),
        ));
        if let Some(reason) = &row.reason {
            x.push_str(&format!("        <reason>\n          <type>{}</type>\n        </reason>\n", e(reason)));
        }
        x.push_str(&format!(
            "      </policy_evaluated>\n    </row>\n    <identifiers>\n      <header_from>{}</header_from>\n",
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
        let scope = if bis { "        <scope>mfrom</scope>\n" } else { "" };
        x.push_str(&format!(
            "      <spf>\n        <domain>{}</domain>\n{scope}        <result>{}</result>\n      </spf>\n    </auth_results>\n  </record>\n",
            e(&row.spf.0),
            e(&row.spf.1)
        ));
    }
    x.push_str("</feedback>\n");
    x
}

/// A report for a policy domain may go to an address in another organizational domain only
/// if that domain publishes `<policy_domain>._report._dmarc.<rua domain>` (RFC 7489 §7.1,
/// RFC 9990 §4). This is the name to look up, or `None` when no verification is needed.
/// Under RFC 9989 the organizational domain is the tree walk's: an address within it needs
/// no verification, any other does.
pub fn verification_name(psl: &crate::dmarc::PublicSuffixList, published: &Published, rua: &str) -> Option<String> {
    let rua_domain = rua.rsplit_once('@').map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())?;
    let policy_domain = &published.domain;
    let internal = if published.tree_walk() {
        let org = published.organizational_domain.as_deref().unwrap_or(policy_domain);
        rua_domain == org || rua_domain.strip_suffix(org).is_some_and(|head| head.ends_with('.'))
    } else {
        psl.organizational_domain(&rua_domain) == psl.organizational_domain(policy_domain)
    };
    (!internal).then(|| format!("{policy_domain}._report._dmarc.{rua_domain}"))
}

/// Whether `records` (TXT at the verification name) authorize the reports.
pub fn verification_ok(records: &[String]) -> bool {
    records.iter().any(|r| r.trim_start().starts_with("v=DMARC1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dmarc::{PublicSuffixList, parse_record};
    use crate::verify::Outcome;

    fn evaluation(spec: Specification, text: &str, from: &str, verdict: Verdict, applied: Policy) -> Evaluation {
        let record = parse_record(text, spec).unwrap();
        Evaluation {
            spf_aligned: verdict == Verdict::Pass,
            verdict,
            specification: spec,
            from_domain: from.into(),
            record_domain: Some("example.com".into()),
            organizational_domain: Some("example.com".into()),
            policy: record.p,
            record: Some(record),
            applied,
            dkim_aligned: false,
        }
    }

    #[test]
    fn rows_are_counted_and_written() {
        let agg = Aggregator::new(100);
        let e = evaluation(
            Specification::Rfc7489,
            "v=DMARC1; p=reject; rua=mailto:d@reports.example",
            "example.com",
            Verdict::Pass,
            Policy::None,
        );
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
        assert!(xml.contains("<pct>100</pct>") && !xml.contains("dmarc-2.0") && !xml.contains("<np>"), "{xml}");
        let psl = PublicSuffixList::bundled();
        let published = report.published.as_ref().unwrap();
        assert_eq!(
            verification_name(&psl, published, "d@reports.example"),
            Some("example.com._report._dmarc.reports.example".into())
        );
        assert_eq!(verification_name(&psl, published, "d@mail.example.com"), None);
        assert!(verification_ok(&["v=DMARC1".into()]));
        assert!(!verification_ok(&["v=spf1".into()]));
    }

    #[test]
    fn tree_walk_reports_follow_rfc9990() {
        let agg = Aggregator::new(100);
        let e = evaluation(
            Specification::Rfc9989,
            "v=DMARC1; p=reject; np=quarantine; t=y; rua=mailto:d@example.com",
            "news.example.com",
            Verdict::Fail,
            Policy::Quarantine,
        );
        let spf = SpfCheck { outcome: Outcome::Fail, domain: "attacker.example".into(), explanation: None };
        agg.add(&e, "192.0.2.7".parse().unwrap(), "x@attacker.example", &spf, &[]);
        let period = agg.take(200);
        let report = &period.domains["example.com"];
        let xml = report_xml("mx.tern.test", "noreply@mx.tern.test", "r2", 100, 200, report);
        for part in [
            "<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\">",
            "<version>1.0</version>",
            "<discovery_method>treewalk</discovery_method>",
            "<np>quarantine</np>",
            "<testing>y</testing>",
            "<disposition>quarantine</disposition>",
            "<type>policy_test_mode</type>",
            "<scope>mfrom</scope>",
        ] {
            assert!(xml.contains(part), "{part} missing:\n{xml}");
        }
        assert!(!xml.contains("<pct>"), "{xml}");
        // The policy domain example.com is the From domain's organizational domain: an
        // address under it is internal, one elsewhere needs the _report._dmarc record.
        let psl = PublicSuffixList::bundled();
        let published = report.published.as_ref().unwrap();
        assert_eq!(verification_name(&psl, published, "d@reports.example.com"), None);
        assert_eq!(
            verification_name(&psl, published, "d@example.net"),
            Some("example.com._report._dmarc.example.net".into())
        );
    }
}
