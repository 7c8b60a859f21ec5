//! DMARC (RFC 7489): the record, the organizational domain (Public Suffix List), identifier
//! alignment, and the policy to apply, including `pct` sampling.
//!
//! mail-auth 0.13 implements the later tree-walk revision of DMARC (no `pct`, no PSL); Tern
//! follows RFC 7489, so this part is Tern's own, on top of mail-auth's SPF and DKIM results.

use std::collections::HashSet;

/// A parsed `_dmarc` TXT record (RFC 7489 §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub p: Policy,
    /// Policy for subdomains (`sp`, defaults to `p`).
    pub sp: Policy,
    pub adkim: Alignment,
    pub aspf: Alignment,
    /// Percentage of failing mail the policy applies to (0-100).
    pub pct: u8,
    pub rua: Vec<String>,
    pub ruf: Vec<String>,
    pub fo: String,
    /// Aggregate report interval in seconds.
    pub ri: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    None,
    Quarantine,
    Reject,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }

    fn parse(value: &str) -> Option<Policy> {
        match value.to_ascii_lowercase().as_str() {
            "none" => Some(Policy::None),
            "quarantine" => Some(Policy::Quarantine),
            "reject" => Some(Policy::Reject),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    Relaxed,
    Strict,
}

/// Why a TXT record is not a usable DMARC record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Not a DMARC record at all (does not start with `v=DMARC1`): ignored (§6.6.3).
    NotDmarc,
    /// A DMARC record with a syntax error in a required tag.
    Invalid(String),
}

/// Parses one TXT string (RFC 7489 §6.4: `v` first, `p` next; unknown tags ignored).
pub fn parse_record(text: &str) -> Result<Record, RecordError> {
    let mut tags = text.split(';').map(str::trim).filter(|t| !t.is_empty());
    let first = tags.next().ok_or(RecordError::NotDmarc)?;
    let (k, v) = first.split_once('=').ok_or(RecordError::NotDmarc)?;
    if k.trim() != "v" || v.trim() != "DMARC1" {
        return Err(RecordError::NotDmarc);
    }
    let mut p = None;
    let mut sp = None;
    let mut adkim = Alignment::Relaxed;
    let mut aspf = Alignment::Relaxed;
    let mut pct = 100u8;
    let mut rua = Vec::new();
    let mut ruf = Vec::new();
    let mut fo = "0".to_string();
    let mut ri = 86400u32;
    let mut seen = HashSet::new();
    for (index, tag) in tags.enumerate() {
        let Some((key, value)) = tag.split_once('=') else {
            return Err(RecordError::Invalid(format!("tag without value: {tag:?}")));
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        if !seen.insert(key.clone()) {
            continue;
        }
        match key.as_str() {
            "p" => {
                p = Some(Policy::parse(value).ok_or_else(|| RecordError::Invalid(format!("p={value}")))?);
            }
            "sp" => sp = Policy::parse(value),
            "adkim" => adkim = if value.eq_ignore_ascii_case("s") { Alignment::Strict } else { Alignment::Relaxed },
            "aspf" => aspf = if value.eq_ignore_ascii_case("s") { Alignment::Strict } else { Alignment::Relaxed },
            "pct" => pct = value.parse::<u8>().ok().filter(|n| *n <= 100).unwrap_or(100),
            "rua" => rua = uris(value),
            "ruf" => ruf = uris(value),
            "fo" => fo = value.to_string(),
            "ri" => ri = value.parse().unwrap_or(86400),
            _ => {}
        }
        // §6.4: p must come right after v; a record where it does not is still used when
        // p is present (as most receivers do), but a missing p is handled below.
        let _ = index;
    }
    let p = match p {
        Some(p) => p,
        // §6.6.3: no valid p, but a valid rua: treat as p=none.
        None if !rua.is_empty() => Policy::None,
        None => return Err(RecordError::Invalid("no p tag".into())),
    };
    Ok(Record { p, sp: sp.unwrap_or(p), adkim, aspf, pct, rua, ruf, fo, ri })
}

/// `mailto:a@b.example!10m, mailto:c@d.example` -> the addresses (size limits dropped).
fn uris(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter_map(|u| {
            let u = u.trim();
            let addr = u.strip_prefix("mailto:").or_else(|| u.strip_prefix("MAILTO:"))?;
            let addr = addr.split('!').next()?.trim();
            (!addr.is_empty() && addr.contains('@')).then(|| addr.to_string())
        })
        .collect()
}

/// The Public Suffix List: the organizational domain of a name (RFC 7489 §3.2).
pub struct PublicSuffixList {
    list: publicsuffix::List,
}

/// The list bundled with Tern (from publicsuffix.org; MPL-2.0).
const BUNDLED_LIST: &str = include_str!("../data/public_suffix_list.dat");

impl PublicSuffixList {
    pub fn bundled() -> PublicSuffixList {
        PublicSuffixList::parse(BUNDLED_LIST).unwrap_or_else(|_| PublicSuffixList { list: publicsuffix::List::new() })
    }

    /// A list in the publicsuffix.org format (to use a newer one than the bundled list).
    pub fn parse(text: &str) -> Result<PublicSuffixList, String> {
        let list: publicsuffix::List = text.parse().map_err(|e: publicsuffix::Error| e.to_string())?;
        Ok(PublicSuffixList { list })
    }

    /// The organizational domain: the public suffix plus one label; the name itself when it
    /// is a public suffix or unknown to the list.
    pub fn organizational_domain(&self, name: &str) -> String {
        use publicsuffix::Psl;
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match self.list.domain(name.as_bytes()) {
            Some(d) => String::from_utf8_lossy(d.as_bytes()).into_owned(),
            None => name,
        }
    }

    /// RFC 7489 §3.1: relaxed alignment compares organizational domains, strict the names.
    pub fn aligned(&self, identifier: &str, from_domain: &str, mode: Alignment) -> bool {
        let a = identifier.trim_end_matches('.').to_ascii_lowercase();
        let b = from_domain.trim_end_matches('.').to_ascii_lowercase();
        if a.is_empty() || b.is_empty() {
            return false;
        }
        match mode {
            Alignment::Strict => a == b,
            Alignment::Relaxed => a == b || self.organizational_domain(&a) == self.organizational_domain(&b),
        }
    }
}

/// What the evaluation concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// No DMARC record for the domain.
    None,
    TempError(String),
    PermError(String),
}

impl Verdict {
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::None => "none",
            Verdict::TempError(_) => "temperror",
            Verdict::PermError(_) => "permerror",
        }
    }
}

/// The outcome of DMARC for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub verdict: Verdict,
    /// The RFC5322.From domain.
    pub from_domain: String,
    /// The domain whose record applied (the From domain or its organizational domain).
    pub record_domain: Option<String>,
    pub record: Option<Record>,
    /// The policy requested for this message (`p` or `sp`), before `pct`.
    pub policy: Policy,
    /// The policy to apply after `pct` sampling (RFC 7489 §6.6.4: outside the sample,
    /// reject becomes quarantine and quarantine becomes none).
    pub applied: Policy,
    pub spf_aligned: bool,
    pub dkim_aligned: bool,
}

/// Inputs of the evaluation.
pub struct Inputs<'a> {
    pub from_domain: &'a str,
    /// MAIL FROM domain (or HELO domain for a null sender) and whether SPF passed for it;
    /// `spf_temperror` when its SPF lookup failed temporarily.
    pub spf_domain: &'a str,
    pub spf_pass: bool,
    pub spf_temperror: bool,
    /// `d=` of every DKIM signature that passed, and of those that failed temporarily.
    pub dkim_pass: &'a [String],
    pub dkim_temperror: &'a [String],
}

/// Where the records come from (DNS in the server, a map in tests).
pub trait RecordSource {
    /// TXT strings at `_dmarc.<domain>`; `Err` for a temporary DNS failure.
    fn txt(&self, name: &str) -> impl std::future::Future<Output = Result<Vec<String>, String>> + Send;
}

/// RFC 7489 §6.6.3 policy discovery, then alignment (§3.1) and the result (§6.6.2).
/// `sample` is a number in 0..100 for `pct` (random in the server).
pub async fn evaluate(
    psl: &PublicSuffixList,
    source: &impl RecordSource,
    inputs: &Inputs<'_>,
    sample: u8,
) -> Evaluation {
    let from_domain = inputs.from_domain.trim_end_matches('.').to_ascii_lowercase();
    let mut evaluation = Evaluation {
        verdict: Verdict::None,
        from_domain: from_domain.clone(),
        record_domain: None,
        record: None,
        policy: Policy::None,
        applied: Policy::None,
        spf_aligned: false,
        dkim_aligned: false,
    };
    let org = psl.organizational_domain(&from_domain);
    let mut found = None;
    for (domain, is_org) in [(from_domain.clone(), false), (org.clone(), true)] {
        if is_org && domain == from_domain {
            break;
        }
        let records = match source.txt(&format!("_dmarc.{domain}")).await {
            Ok(r) => r,
            Err(e) => {
                evaluation.verdict = Verdict::TempError(e);
                return evaluation;
            }
        };
        let parsed: Vec<Result<Record, RecordError>> =
            records.iter().map(|r| parse_record(r)).filter(|r| r != &Err(RecordError::NotDmarc)).collect();
        match parsed.as_slice() {
            [] => continue,
            [Ok(record)] => {
                found = Some((domain, is_org, record.clone()));
                break;
            }
            // §6.6.3: more than one record, or an invalid one: no policy here.
            [Err(RecordError::Invalid(e))] => {
                evaluation.verdict = Verdict::PermError(e.clone());
                return evaluation;
            }
            _ => {
                evaluation.verdict = Verdict::PermError("several DMARC records".into());
                return evaluation;
            }
        }
    }
    let Some((record_domain, is_org, record)) = found else { return evaluation };
    let policy = if is_org { record.sp } else { record.p };
    evaluation.spf_aligned = inputs.spf_pass && psl.aligned(inputs.spf_domain, &from_domain, record.aspf);
    evaluation.dkim_aligned = inputs.dkim_pass.iter().any(|d| psl.aligned(d, &from_domain, record.adkim));
    let temp_aligned = (inputs.spf_temperror && psl.aligned(inputs.spf_domain, &from_domain, record.aspf))
        || inputs.dkim_temperror.iter().any(|d| psl.aligned(d, &from_domain, record.adkim));
    evaluation.verdict = if evaluation.spf_aligned || evaluation.dkim_aligned {
        Verdict::Pass
    } else if temp_aligned {
        Verdict::TempError("an aligned identifier could not be checked".into())
    } else {
        Verdict::Fail
    };
    evaluation.policy = policy;
    evaluation.applied = if evaluation.verdict != Verdict::Fail {
        Policy::None
    } else if sample < record.pct {
        policy
    } else {
        match policy {
            Policy::Reject => Policy::Quarantine,
            _ => Policy::None,
        }
    };
    evaluation.record_domain = Some(record_domain);
    evaluation.record = Some(record);
    evaluation
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Map(HashMap<String, Vec<String>>);

    impl RecordSource for Map {
        async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
            if name.contains("tempfail") {
                return Err("SERVFAIL".into());
            }
            Ok(self.0.get(name).cloned().unwrap_or_default())
        }
    }

    fn map(records: &[(&str, &str)]) -> Map {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in records {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        Map(m)
    }

    fn inputs<'a>(from: &'a str, spf: &'a str, spf_pass: bool, dkim: &'a [String]) -> Inputs<'a> {
        Inputs {
            from_domain: from,
            spf_domain: spf,
            spf_pass,
            spf_temperror: false,
            dkim_pass: dkim,
            dkim_temperror: &[],
        }
    }

    #[test]
    fn records() {
        let r =
            parse_record("v=DMARC1; p=reject; sp=none; pct=20; adkim=s; rua=mailto:a@x.example!10m,mailto:b@y.example")
                .unwrap();
        assert_eq!(
            (r.p, r.sp, r.pct, r.adkim, r.aspf),
            (Policy::Reject, Policy::None, 20, Alignment::Strict, Alignment::Relaxed)
        );
        assert_eq!(r.rua, vec!["a@x.example", "b@y.example"]);
        assert_eq!(parse_record("v=spf1 -all"), Err(RecordError::NotDmarc));
        assert_eq!(parse_record("p=reject; v=DMARC1"), Err(RecordError::NotDmarc), "v must come first");
        assert!(matches!(parse_record("v=DMARC1; p=bogus"), Err(RecordError::Invalid(_))));
        assert!(matches!(parse_record("v=DMARC1"), Err(RecordError::Invalid(_))));
        assert_eq!(parse_record("v=DMARC1; rua=mailto:r@x.example").unwrap().p, Policy::None);
        assert_eq!(parse_record("v=DMARC1; p=quarantine; pct=500").unwrap().pct, 100);
    }

    #[test]
    fn organizational_domains() {
        let psl = PublicSuffixList::bundled();
        assert_eq!(psl.organizational_domain("mail.example.com"), "example.com");
        assert_eq!(psl.organizational_domain("a.b.example.co.uk"), "example.co.uk");
        assert!(psl.aligned("bounces.example.com", "example.com", Alignment::Relaxed));
        assert!(!psl.aligned("bounces.example.com", "example.com", Alignment::Strict));
        assert!(!psl.aligned("example.net", "example.com", Alignment::Relaxed));
        assert!(!psl.aligned("evil.co.uk", "example.co.uk", Alignment::Relaxed));
    }

    #[tokio::test]
    async fn evaluation() {
        let psl = PublicSuffixList::bundled();
        let dns = map(&[
            ("_dmarc.example.com", "v=DMARC1; p=reject"),
            ("_dmarc.half.example", "v=DMARC1; p=reject; pct=50"),
            ("_dmarc.two.example", "v=DMARC1; p=reject"),
            ("_dmarc.two.example", "v=DMARC1; p=none"),
        ]);
        let none: Vec<String> = vec![];
        let signed = vec!["mail.example.com".to_string()];
        // SPF aligned (relaxed) passes.
        let e = evaluate(&psl, &dns, &inputs("example.com", "bounce.example.com", true, &none), 0).await;
        assert_eq!((e.verdict.clone(), e.spf_aligned), (Verdict::Pass, true));
        // DKIM of a subdomain aligns relaxed.
        let e = evaluate(&psl, &dns, &inputs("example.com", "other.net", true, &signed), 0).await;
        assert_eq!((e.verdict.clone(), e.dkim_aligned), (Verdict::Pass, true));
        // Nothing aligned: fail, reject applied.
        let e = evaluate(&psl, &dns, &inputs("example.com", "other.net", true, &none), 99).await;
        assert_eq!((e.verdict.clone(), e.applied), (Verdict::Fail, Policy::Reject));
        // A subdomain without its own record gets the organizational domain's sp.
        let e = evaluate(&psl, &dns, &inputs("news.example.com", "other.net", false, &none), 0).await;
        assert_eq!((e.record_domain.as_deref(), e.applied), (Some("example.com"), Policy::Reject));
        // pct: outside the sample, reject becomes quarantine.
        assert_eq!(
            evaluate(&psl, &dns, &inputs("half.example", "x.net", false, &none), 10).await.applied,
            Policy::Reject
        );
        assert_eq!(
            evaluate(&psl, &dns, &inputs("half.example", "x.net", false, &none), 60).await.applied,
            Policy::Quarantine
        );
        // No record: none; several: permerror; DNS trouble: temperror.
        assert_eq!(evaluate(&psl, &dns, &inputs("nodmarc.example", "x", false, &none), 0).await.verdict, Verdict::None);
        assert!(matches!(
            evaluate(&psl, &dns, &inputs("two.example", "x", false, &none), 0).await.verdict,
            Verdict::PermError(_)
        ));
        assert!(matches!(
            evaluate(&psl, &dns, &inputs("tempfail.example", "x", false, &none), 0).await.verdict,
            Verdict::TempError(_)
        ));
    }
}
