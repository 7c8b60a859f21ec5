//! DMARC: the record, the organizational domain, identifier alignment, and the policy to
//! apply, by either of two specifications (configuration `inbound.dmarc_specification`):
//!
//! - RFC 7489 (the default): the organizational domain from the Public Suffix List, policy
//!   discovery at the From domain then its organizational domain (§6.6.3), `pct` sampling.
//! - RFC 9989 (DMARCbis, draft-ietf-dmarc-dmarcbis-41): the DNS tree walk (§4.10) instead of
//!   the list, `psd=` for public suffix domains, `np=` for non-existent subdomains, `t=y`
//!   testing mode instead of `pct`.
//!
//! mail-auth 0.13 implements only the second; Tern keeps both on one evaluator here, on top
//! of its own SPF and mail-auth's DKIM results.

use std::collections::HashSet;

/// Which DMARC specification discovery and policy follow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Specification {
    #[default]
    Rfc7489,
    Rfc9989,
}

impl Specification {
    /// The `discovery_method` of aggregate reports (RFC 9990 §2.1.2.4 of the draft).
    pub fn discovery_method(self) -> &'static str {
        match self {
            Specification::Rfc7489 => "psl",
            Specification::Rfc9989 => "treewalk",
        }
    }
}

/// A usable DMARC policy record: every tag resolved to the value that applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub p: Policy,
    /// Policy for existing subdomains (`sp`, defaults to `p`).
    pub sp: Policy,
    /// Policy for non-existent subdomains (`np`, RFC 9989; defaults to `sp`).
    pub np: Policy,
    pub adkim: Alignment,
    pub aspf: Alignment,
    /// Percentage of failing mail the policy applies to (RFC 7489 only; 0-100).
    pub pct: u8,
    /// `t=y` (RFC 9989 §4.7): testing, apply one level below the policy.
    pub testing: bool,
    pub psd: Psd,
    pub rua: Vec<String>,
    pub ruf: Vec<String>,
    pub fo: String,
    /// Aggregate report interval in seconds (RFC 7489 only).
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

    /// One level below (RFC 7489 §6.6.4 outside the `pct` sample, RFC 9989 §4.7 `t=y`).
    fn relaxed(self) -> Policy {
        match self {
            Policy::Reject => Policy::Quarantine,
            _ => Policy::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    Relaxed,
    Strict,
}

/// The `psd` tag (RFC 9989 §4.7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Psd {
    /// `psd=y`: a public suffix domain.
    Yes,
    /// `psd=n`: an organizational domain for itself and its subdomains.
    No,
    #[default]
    Unknown,
}

/// Why a TXT record gives no usable DMARC policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Not a DMARC record at all (does not start with `v=DMARC1`): ignored.
    NotDmarc,
    /// A DMARC record whose `p` (or `sp`, `np`) is missing or invalid and that names no
    /// report address: no DMARC processing (RFC 7489 §6.6.3 step 6, RFC 9989 §4.10.1).
    Unusable(String),
}

/// A tag value as published: absent, present but invalid, or valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag<T> {
    Absent,
    Invalid,
    Valid(T),
}

impl<T: Copy> Tag<T> {
    fn parse(value: &str, parse: impl Fn(&str) -> Option<T>) -> Tag<T> {
        parse(value).map_or(Tag::Invalid, Tag::Valid)
    }

    fn value(self) -> Option<T> {
        match self {
            Tag::Valid(v) => Some(v),
            _ => None,
        }
    }
}

/// The tags of a `v=DMARC1` record as published. The tree walk needs a record's presence and
/// its `psd` flag whether or not its policy is usable; [`Tags::record`] resolves the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tags {
    p: Tag<Policy>,
    sp: Tag<Policy>,
    np: Tag<Policy>,
    adkim: Alignment,
    aspf: Alignment,
    pct: Option<u8>,
    t: Option<bool>,
    psd: Psd,
    rua: Vec<String>,
    ruf: Vec<String>,
    fo: String,
    ri: u32,
}

/// Parses one TXT string. `v=DMARC1` must be the first tag, exactly (RFC 7489 §6.3, RFC 9989
/// §4.7); after it, unknown tags are ignored and syntax errors fall back to defaults, except
/// that an invalid `p`, `sp` or `np` is remembered for [`Tags::record`].
pub fn parse_tags(text: &str) -> Result<Tags, RecordError> {
    let mut parts = text.split(';');
    let first = parts.next().ok_or(RecordError::NotDmarc)?;
    let (k, v) = first.split_once('=').ok_or(RecordError::NotDmarc)?;
    if k.trim() != "v" || v.trim() != "DMARC1" {
        return Err(RecordError::NotDmarc);
    }
    let mut tags = Tags {
        p: Tag::Absent,
        sp: Tag::Absent,
        np: Tag::Absent,
        adkim: Alignment::Relaxed,
        aspf: Alignment::Relaxed,
        pct: None,
        t: None,
        psd: Psd::Unknown,
        rua: Vec::new(),
        ruf: Vec::new(),
        fo: "0".to_string(),
        ri: 86400,
    };
    let alignment = |v: &str| match v {
        "s" | "S" => Alignment::Strict,
        _ => Alignment::Relaxed,
    };
    let mut seen = HashSet::new();
    for tag in parts.map(str::trim).filter(|t| !t.is_empty()) {
        let Some((key, value)) = tag.split_once('=') else { continue };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        if !seen.insert(key.clone()) {
            continue;
        }
        match key.as_str() {
            "p" => tags.p = Tag::parse(value, Policy::parse),
            "sp" => tags.sp = Tag::parse(value, Policy::parse),
            "np" => tags.np = Tag::parse(value, Policy::parse),
            "adkim" => tags.adkim = alignment(value),
            "aspf" => tags.aspf = alignment(value),
            "pct" => tags.pct = value.parse::<u8>().ok().filter(|n| *n <= 100),
            "t" => {
                tags.t = match value {
                    "y" | "Y" => Some(true),
                    "n" | "N" => Some(false),
                    _ => None,
                }
            }
            "psd" => {
                tags.psd = match value {
                    "y" | "Y" => Psd::Yes,
                    "n" | "N" => Psd::No,
                    _ => Psd::Unknown,
                }
            }
            "rua" => tags.rua = uris(value),
            "ruf" => tags.ruf = uris(value),
            "fo" => tags.fo = value.to_string(),
            "ri" => tags.ri = value.parse().unwrap_or(86400),
            _ => {}
        }
    }
    Ok(tags)
}

impl Tags {
    pub fn psd(&self) -> Psd {
        self.psd
    }

    /// The policy this record asks for, under `spec`.
    ///
    /// A record without a valid `p`, or with an invalid `sp` (RFC 9989: or `np`), counts as
    /// `p=none` when it names a report address and gives no DMARC processing otherwise
    /// (RFC 7489 §6.6.3 step 6, RFC 9989 §4.10.1).
    pub fn record(&self, spec: Specification) -> Result<Record, RecordError> {
        let np_invalid = spec == Specification::Rfc9989 && self.np == Tag::Invalid;
        let unusable = match (self.p, self.sp) {
            (Tag::Absent, _) => Some("no p tag"),
            (Tag::Invalid, _) => Some("invalid p tag"),
            (_, Tag::Invalid) => Some("invalid sp tag"),
            _ if np_invalid => Some("invalid np tag"),
            _ => None,
        };
        let (p, sp, np) = match (unusable, self.p.value()) {
            (None, Some(p)) => {
                let sp = self.sp.value().unwrap_or(p);
                (p, sp, self.np.value().unwrap_or(sp))
            }
            (why, _) if self.rua.is_empty() => {
                return Err(RecordError::Unusable(why.unwrap_or("no p tag").to_string()));
            }
            _ => (Policy::None, Policy::None, Policy::None),
        };
        let (pct, testing) = match spec {
            Specification::Rfc7489 => (self.pct.unwrap_or(100), false),
            // RFC 9989 removed pct and made t=y its pct=0 (§A.6): a record still written
            // with pct=0 and no t asks for exactly what t=y does, so it is read that way.
            Specification::Rfc9989 => (100, self.t.unwrap_or(self.pct == Some(0))),
        };
        Ok(Record {
            p,
            sp,
            np,
            adkim: self.adkim,
            aspf: self.aspf,
            pct,
            testing,
            psd: self.psd,
            rua: self.rua.clone(),
            ruf: self.ruf.clone(),
            fo: self.fo.clone(),
            ri: self.ri,
        })
    }
}

/// Parses one TXT string into the record it asks for under `spec`.
pub fn parse_record(text: &str, spec: Specification) -> Result<Record, RecordError> {
    parse_tags(text)?.record(spec)
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
    /// No DMARC processing: no record, several, or one without a usable policy.
    None,
    TempError(String),
}

impl Verdict {
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::None => "none",
            Verdict::TempError(_) => "temperror",
        }
    }
}

/// The outcome of DMARC for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub verdict: Verdict,
    pub specification: Specification,
    /// The RFC5322.From domain.
    pub from_domain: String,
    /// The domain whose record applied (the policy domain).
    pub record_domain: Option<String>,
    /// The organizational domain of the From domain, where it was needed.
    pub organizational_domain: Option<String>,
    pub record: Option<Record>,
    /// The policy requested for this message (`p`, `sp` or `np`), before `pct` or `t`.
    pub policy: Policy,
    /// The policy to apply: one level lower outside the `pct` sample (RFC 7489 §6.6.4) or in
    /// testing mode (RFC 9989 §4.7 `t=y`).
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

    /// Whether `domain` exists: anything but NXDOMAIN (RFC 9989 §3.2.13, after RFC 8020).
    fn exists(&self, domain: &str) -> impl std::future::Future<Output = Result<bool, String>> + Send;
}

/// The DMARC records at one name.
#[derive(Debug, Clone)]
enum Found {
    Nothing,
    One(Tags),
    /// More than one `v=DMARC1` record: all are discarded.
    Several,
}

/// Longest DNS name (RFC 1035 §2.3.4, without the root's dot).
const MAX_NAME: usize = 253;

/// DNS lookups of one evaluation: every name asked once, organizational domains found once.
struct Lookups<'a, S> {
    source: &'a S,
    records: std::collections::HashMap<String, Found>,
    organizational: std::collections::HashMap<String, String>,
}

impl<'a, S: RecordSource> Lookups<'a, S> {
    fn new(source: &'a S) -> Self {
        Lookups { source, records: Default::default(), organizational: Default::default() }
    }

    async fn at(&mut self, domain: &str) -> Result<Found, String> {
        if let Some(found) = self.records.get(domain) {
            return Ok(found.clone());
        }
        let name = format!("_dmarc.{domain}");
        let found = if domain.is_empty() || name.len() > MAX_NAME || domain.split('.').any(|l| l.is_empty()) {
            Found::Nothing
        } else {
            let texts = self.source.txt(&name).await?;
            let mut dmarc = texts.iter().filter_map(|t| parse_tags(t).ok());
            match (dmarc.next(), dmarc.next()) {
                (None, _) => Found::Nothing,
                (Some(one), None) => Found::One(one),
                (Some(_), Some(_)) => Found::Several,
            }
        };
        self.records.insert(domain.to_string(), found.clone());
        Ok(found)
    }

    /// RFC 9989 §4.10: the records from `start` up to the top-level domain, at most eight
    /// queries, stopping at a record with `psd=y` or `psd=n`. Several records at one name
    /// are discarded there and the walk goes on.
    async fn tree_walk(&mut self, start: &str) -> Result<Vec<(String, Tags)>, String> {
        let mut found = Vec::new();
        for name in tree_walk_names(start) {
            if let Found::One(tags) = self.at(&name).await? {
                let stop = tags.psd != Psd::Unknown;
                found.push((name, tags));
                if stop {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// RFC 9989 §4.10.2: the organizational domain of `domain`.
    async fn organizational_domain(&mut self, domain: &str) -> Result<String, String> {
        if let Some(org) = self.organizational.get(domain) {
            return Ok(org.clone());
        }
        let walk = self.tree_walk(domain).await?;
        let org = organizational_domain_of_walk(domain, &walk);
        self.organizational.insert(domain.to_string(), org.clone());
        Ok(org)
    }
}

/// The names a tree walk from `domain` queries (RFC 9989 §4.10 steps 3-7): the domain, then,
/// for eight labels or more, its last seven, then one label fewer each time down to one.
pub fn tree_walk_names(domain: &str) -> Vec<String> {
    let labels: Vec<&str> = domain.split('.').collect();
    let mut names = vec![domain.to_string()];
    let mut count = labels.len();
    while count > 1 {
        count = if count >= 8 { 7 } else { count - 1 };
        names.push(labels[labels.len() - count..].join("."));
    }
    names
}

/// RFC 9989 §4.10.2, from the longest name to the shortest: a `psd=n` record's domain; the
/// domain one label below a `psd=y` record other than the start's; else the record with the
/// fewest labels; else the start itself.
fn organizational_domain_of_walk(start: &str, walk: &[(String, Tags)]) -> String {
    for (name, tags) in walk {
        match tags.psd {
            Psd::No => return name.clone(),
            Psd::Yes if name != start => return one_label_below(name, start),
            _ => {}
        }
    }
    walk.last().map_or_else(|| start.to_string(), |(name, _)| name.clone())
}

/// `suffix` with the next label of `start` in front (`example.com`, `a.mail.example.com` ->
/// `mail.example.com`).
fn one_label_below(suffix: &str, start: &str) -> String {
    let labels: Vec<&str> = start.split('.').collect();
    let keep = suffix.split('.').count() + 1;
    labels[labels.len().saturating_sub(keep)..].join(".")
}

/// `name` is `domain` or one of its subdomains.
fn is_within(name: &str, domain: &str) -> bool {
    name == domain || name.strip_suffix(domain).is_some_and(|head| head.ends_with('.'))
}

fn normalize(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

/// The policy record found for a From domain.
struct Discovered {
    domain: String,
    record: Record,
    policy: Policy,
}

/// RFC 7489 §6.6.3: the From domain's record, else its organizational domain's `sp`.
async fn discover_rfc7489<S: RecordSource>(
    psl: &PublicSuffixList,
    lookups: &mut Lookups<'_, S>,
    from_domain: &str,
) -> Result<Option<Discovered>, String> {
    let (domain, tags) = match lookups.at(from_domain).await? {
        Found::One(tags) => (from_domain.to_string(), tags),
        // Step 5: several records end discovery (the organizational domain is asked only
        // when the set at the From domain is empty, step 3).
        Found::Several => return Ok(None),
        Found::Nothing => {
            let org = psl.organizational_domain(from_domain);
            if org == from_domain {
                return Ok(None);
            }
            match lookups.at(&org).await? {
                Found::One(tags) => (org, tags),
                Found::Nothing | Found::Several => return Ok(None),
            }
        }
    };
    let Ok(record) = tags.record(Specification::Rfc7489) else { return Ok(None) };
    let policy = if domain == from_domain { record.p } else { record.sp };
    Ok(Some(Discovered { domain, record, policy }))
}

/// RFC 9989 §4.10.1: the record of the Author Domain, else of its organizational domain,
/// else of its public suffix domain; `sp` for an existing subdomain, `np` for one that does
/// not exist.
async fn discover_rfc9989<S: RecordSource>(
    lookups: &mut Lookups<'_, S>,
    from_domain: &str,
) -> Result<Option<Discovered>, String> {
    let (domain, tags) = match lookups.at(from_domain).await? {
        Found::One(tags) => (from_domain.to_string(), tags),
        Found::Nothing | Found::Several => {
            let walk = lookups.tree_walk(from_domain).await?;
            let org = organizational_domain_of_walk(from_domain, &walk);
            lookups.organizational.insert(from_domain.to_string(), org.clone());
            let chosen = walk.iter().find(|(name, _)| *name == org).or_else(|| walk.last());
            match chosen {
                Some((name, tags)) => (name.clone(), tags.clone()),
                None => return Ok(None),
            }
        }
    };
    let Ok(record) = tags.record(Specification::Rfc9989) else { return Ok(None) };
    let policy = if domain == from_domain {
        record.p
    } else if record.np != record.sp && !lookups.source.exists(from_domain).await.unwrap_or(true) {
        record.np
    } else {
        record.sp
    };
    Ok(Some(Discovered { domain, record, policy }))
}

/// RFC 7489 §6.6.3 or RFC 9989 §4.10 policy discovery, then identifier alignment (RFC 7489
/// §3.1, RFC 9989 §4.10.2) and the result. `sample` is a number in 0..100 for `pct` (random in
/// the server; RFC 7489 only).
pub async fn evaluate(
    psl: &PublicSuffixList,
    source: &impl RecordSource,
    inputs: &Inputs<'_>,
    sample: u8,
    spec: Specification,
) -> Evaluation {
    let from_domain = normalize(inputs.from_domain);
    let mut evaluation = Evaluation {
        verdict: Verdict::None,
        specification: spec,
        from_domain: from_domain.clone(),
        record_domain: None,
        organizational_domain: None,
        record: None,
        policy: Policy::None,
        applied: Policy::None,
        spf_aligned: false,
        dkim_aligned: false,
    };
    let mut lookups = Lookups::new(source);
    let discovered = match spec {
        Specification::Rfc7489 => discover_rfc7489(psl, &mut lookups, &from_domain).await,
        Specification::Rfc9989 => discover_rfc9989(&mut lookups, &from_domain).await,
    };
    let found = match discovered {
        Ok(Some(found)) => found,
        Ok(None) => return evaluation,
        Err(e) => {
            evaluation.verdict = Verdict::TempError(e);
            return evaluation;
        }
    };
    let record = &found.record;
    let mut aligner = Aligner { spec, psl, lookups, from_domain: &from_domain, from_org: None };
    let mut unknown = None;
    let spf_domain = normalize(inputs.spf_domain);
    let mut temp_aligned = false;
    if inputs.spf_pass || inputs.spf_temperror {
        match aligner.aligned(&spf_domain, record.aspf).await {
            Ok(aligned) => {
                evaluation.spf_aligned = aligned && inputs.spf_pass;
                temp_aligned |= aligned && inputs.spf_temperror;
            }
            Err(e) => unknown = Some(e),
        }
    }
    for (domains, passed) in [(inputs.dkim_pass, true), (inputs.dkim_temperror, false)] {
        for d in domains {
            if evaluation.dkim_aligned {
                break;
            }
            match aligner.aligned(&normalize(d), record.adkim).await {
                Ok(aligned) if passed => evaluation.dkim_aligned = aligned,
                Ok(aligned) => temp_aligned |= aligned,
                Err(e) => unknown = Some(e),
            }
        }
    }
    evaluation.verdict = if evaluation.spf_aligned || evaluation.dkim_aligned {
        Verdict::Pass
    } else if temp_aligned {
        Verdict::TempError("an aligned identifier could not be checked".into())
    } else if let Some(e) = unknown {
        Verdict::TempError(format!("organizational domain: {e}"))
    } else {
        Verdict::Fail
    };
    evaluation.organizational_domain = match spec {
        Specification::Rfc7489 => Some(psl.organizational_domain(&from_domain)),
        Specification::Rfc9989 => {
            aligner.from_org.clone().or_else(|| aligner.lookups.organizational.get(&from_domain).cloned())
        }
    };
    evaluation.policy = found.policy;
    evaluation.applied = if evaluation.verdict != Verdict::Fail {
        Policy::None
    } else if record.testing || sample >= record.pct {
        found.policy.relaxed()
    } else {
        found.policy
    };
    evaluation.record_domain = Some(found.domain);
    evaluation.record = Some(found.record);
    evaluation
}

/// Identifier alignment under one specification.
struct Aligner<'a, S> {
    spec: Specification,
    psl: &'a PublicSuffixList,
    lookups: Lookups<'a, S>,
    from_domain: &'a str,
    /// The From domain's organizational domain (RFC 9989), found at the first need.
    from_org: Option<String>,
}

impl<S: RecordSource> Aligner<'_, S> {
    async fn aligned(&mut self, identifier: &str, mode: Alignment) -> Result<bool, String> {
        if identifier.is_empty() {
            return Ok(false);
        }
        if identifier == self.from_domain {
            return Ok(true);
        }
        if mode == Alignment::Strict {
            return Ok(false);
        }
        match self.spec {
            Specification::Rfc7489 => Ok(self.psl.aligned(identifier, self.from_domain, mode)),
            Specification::Rfc9989 => {
                let from_org = match &self.from_org {
                    Some(org) => org.clone(),
                    None => {
                        let org = self.lookups.organizational_domain(self.from_domain).await?;
                        self.from_org = Some(org.clone());
                        org
                    }
                };
                // An organizational domain is the name itself or a parent: an identifier
                // outside the From domain's cannot share it, and needs no walk.
                if !is_within(identifier, &from_org) {
                    return Ok(false);
                }
                Ok(self.lookups.organizational_domain(identifier).await? == from_org)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// TXT records by name, the names that exist, and the queries asked.
    #[derive(Default)]
    struct Zone {
        txt: HashMap<String, Vec<String>>,
        existing: HashSet<String>,
        asked: Mutex<Vec<String>>,
    }

    impl RecordSource for Zone {
        async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
            self.asked.lock().unwrap().push(name.to_string());
            if name.contains("tempfail") {
                return Err("SERVFAIL".into());
            }
            Ok(self.txt.get(name).cloned().unwrap_or_default())
        }

        async fn exists(&self, domain: &str) -> Result<bool, String> {
            Ok(self.existing.contains(domain))
        }
    }

    fn zone(records: &[(&str, &str)]) -> Zone {
        let mut z = Zone::default();
        for (domain, text) in records {
            z.txt.entry(format!("_dmarc.{domain}")).or_default().push(text.to_string());
            z.existing.insert(domain.to_string());
        }
        z
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

    const R7489: Specification = Specification::Rfc7489;
    const R9989: Specification = Specification::Rfc9989;

    async fn eval(z: &Zone, i: &Inputs<'_>, spec: Specification) -> Evaluation {
        evaluate(&PublicSuffixList::bundled(), z, i, 0, spec).await
    }

    #[test]
    fn records() {
        let r = parse_record(
            "v=DMARC1; p=reject; sp=none; pct=20; adkim=s; rua=mailto:a@x.example!10m,mailto:b@y.example",
            R7489,
        )
        .unwrap();
        assert_eq!(
            (r.p, r.sp, r.pct, r.adkim, r.aspf),
            (Policy::Reject, Policy::None, 20, Alignment::Strict, Alignment::Relaxed)
        );
        assert_eq!(r.rua, vec!["a@x.example", "b@y.example"]);
        assert_eq!(parse_record("v=spf1 -all", R7489), Err(RecordError::NotDmarc));
        assert_eq!(parse_record("p=reject; v=DMARC1", R7489), Err(RecordError::NotDmarc), "v must come first");
        assert_eq!(parse_record("v=dmarc1; p=reject", R7489), Err(RecordError::NotDmarc), "DMARC1 is exact");
        assert!(matches!(parse_record("v=DMARC1; p=bogus", R7489), Err(RecordError::Unusable(_))));
        assert!(matches!(parse_record("v=DMARC1", R7489), Err(RecordError::Unusable(_))));
        // RFC 7489 §6.6.3 step 6: an invalid sp is as bad as an invalid p.
        assert!(matches!(parse_record("v=DMARC1; p=reject; sp=bogus", R7489), Err(RecordError::Unusable(_))));
        // ... unless the record asks for reports: then p=none (and so every policy none).
        let r = parse_record("v=DMARC1; p=bogus; rua=mailto:r@x.example", R7489).unwrap();
        assert_eq!((r.p, r.sp), (Policy::None, Policy::None));
        assert_eq!(parse_record("v=DMARC1; rua=mailto:r@x.example", R7489).unwrap().p, Policy::None);
        // Other syntax errors fall back to defaults.
        let r = parse_record("v=DMARC1; p=quarantine; pct=500; adkim=x; junk; t=maybe", R9989).unwrap();
        assert_eq!((r.p, r.pct, r.adkim, r.testing), (Policy::Quarantine, 100, Alignment::Relaxed, false));
        assert_eq!(parse_record("v=DMARC1; p=quarantine; pct=500", R7489).unwrap().pct, 100);
        // RFC 9989 tags; np is not RFC 7489's and is ignored there, invalid or not.
        let r = parse_record("v=DMARC1; p=reject; sp=quarantine; np=none; psd=n; t=y", R9989).unwrap();
        assert_eq!((r.np, r.psd, r.testing), (Policy::None, Psd::No, true));
        assert_eq!(parse_record("v=DMARC1; p=reject; sp=quarantine", R9989).unwrap().np, Policy::Quarantine);
        assert_eq!(parse_record("v=DMARC1; p=reject", R9989).unwrap().np, Policy::Reject);
        assert!(matches!(parse_record("v=DMARC1; p=reject; np=bogus", R9989), Err(RecordError::Unusable(_))));
        assert!(parse_record("v=DMARC1; p=reject; np=bogus", R7489).is_ok());
        // pct: RFC 7489 samples; RFC 9989 removed it, and reads pct=0 as the t=y it became.
        assert!(parse_record("v=DMARC1; p=reject; pct=0", R9989).unwrap().testing);
        assert!(!parse_record("v=DMARC1; p=reject; pct=0; t=n", R9989).unwrap().testing);
        assert_eq!(parse_record("v=DMARC1; p=reject; pct=50", R9989).unwrap().pct, 100);
    }

    #[test]
    fn organizational_domains_from_the_list() {
        let psl = PublicSuffixList::bundled();
        assert_eq!(psl.organizational_domain("mail.example.com"), "example.com");
        assert_eq!(psl.organizational_domain("a.b.example.co.uk"), "example.co.uk");
        assert!(psl.aligned("bounces.example.com", "example.com", Alignment::Relaxed));
        assert!(!psl.aligned("bounces.example.com", "example.com", Alignment::Strict));
        assert!(!psl.aligned("example.net", "example.com", Alignment::Relaxed));
        assert!(!psl.aligned("evil.co.uk", "example.co.uk", Alignment::Relaxed));
    }

    #[tokio::test]
    async fn rfc7489_evaluation() {
        let psl = PublicSuffixList::bundled();
        let dns = zone(&[
            ("example.com", "v=DMARC1; p=reject"),
            ("half.example", "v=DMARC1; p=reject; pct=50"),
            ("two.example", "v=DMARC1; p=reject"),
            ("two.example", "v=DMARC1; p=none"),
            ("nop.example", "v=DMARC1; adkim=s"),
            ("report.example", "v=DMARC1; adkim=s; rua=mailto:d@report.example"),
        ]);
        let none: Vec<String> = vec![];
        let signed = vec!["mail.example.com".to_string()];
        // SPF aligned (relaxed) passes.
        let e = eval(&dns, &inputs("example.com", "bounce.example.com", true, &none), R7489).await;
        assert_eq!((e.verdict.clone(), e.spf_aligned), (Verdict::Pass, true));
        // DKIM of a subdomain aligns relaxed.
        let e = eval(&dns, &inputs("example.com", "other.net", true, &signed), R7489).await;
        assert_eq!((e.verdict.clone(), e.dkim_aligned), (Verdict::Pass, true));
        // Nothing aligned: fail, reject applied.
        let e = evaluate(&psl, &dns, &inputs("example.com", "other.net", true, &none), 99, R7489).await;
        assert_eq!((e.verdict.clone(), e.applied), (Verdict::Fail, Policy::Reject));
        // A subdomain without its own record gets the organizational domain's sp.
        let e = eval(&dns, &inputs("news.example.com", "other.net", false, &none), R7489).await;
        assert_eq!((e.record_domain.as_deref(), e.applied), (Some("example.com"), Policy::Reject));
        // pct: outside the sample, reject becomes quarantine.
        let half = inputs("half.example", "x.net", false, &none);
        assert_eq!(evaluate(&psl, &dns, &half, 10, R7489).await.applied, Policy::Reject);
        assert_eq!(evaluate(&psl, &dns, &half, 60, R7489).await.applied, Policy::Quarantine);
        // No record: none; DNS trouble: temperror.
        assert_eq!(eval(&dns, &inputs("nodmarc.example", "x", false, &none), R7489).await.verdict, Verdict::None);
        assert!(matches!(
            eval(&dns, &inputs("tempfail.example", "x", false, &none), R7489).await.verdict,
            Verdict::TempError(_)
        ));
        // §6.6.3 step 5: several records at one name: no DMARC processing (not permerror),
        // and the organizational domain is not asked either.
        dns.asked.lock().unwrap().clear();
        let e = eval(&dns, &inputs("two.example", "x", false, &none), R7489).await;
        assert_eq!((e.verdict, e.record), (Verdict::None, None));
        assert_eq!(*dns.asked.lock().unwrap(), vec!["_dmarc.two.example"]);
        // Step 6: no valid p and no report address: none; with one: p=none.
        assert_eq!(eval(&dns, &inputs("nop.example", "x", false, &none), R7489).await.verdict, Verdict::None);
        let e = eval(&dns, &inputs("report.example", "x", false, &none), R7489).await;
        assert_eq!((e.verdict, e.applied), (Verdict::Fail, Policy::None));
    }

    #[test]
    fn tree_walk_queries_at_most_eight_names() {
        // RFC 9989 §4.10's example, query for query.
        assert_eq!(
            tree_walk_names("a.b.c.d.e.f.g.h.i.j.mail.example.com"),
            [
                "a.b.c.d.e.f.g.h.i.j.mail.example.com",
                "g.h.i.j.mail.example.com",
                "h.i.j.mail.example.com",
                "i.j.mail.example.com",
                "j.mail.example.com",
                "mail.example.com",
                "example.com",
                "com",
            ]
        );
        assert_eq!(
            tree_walk_names("a.mail.example.com"),
            ["a.mail.example.com", "mail.example.com", "example.com", "com"]
        );
        assert_eq!(tree_walk_names("com"), ["com"]);
        let eight = "a.b.c.d.e.f.example.com";
        assert_eq!(tree_walk_names(eight)[1], "b.c.d.e.f.example.com");
        assert_eq!(tree_walk_names(eight).len(), 8);
    }

    async fn org(z: &Zone, domain: &str) -> String {
        Lookups::new(z).organizational_domain(domain).await.unwrap()
    }

    #[tokio::test]
    async fn rfc9989_organizational_domains() {
        // §4.10.2's three examples.
        let z = zone(&[("mail.example.com", "v=DMARC1; p=none"), ("example.com", "v=DMARC1; p=none")]);
        assert_eq!(org(&z, "a.mail.example.com").await, "example.com");
        let z = zone(&[("mail.example.com", "v=DMARC1; p=none; psd=n"), ("example.com", "v=DMARC1; p=none")]);
        assert_eq!(org(&z, "a.mail.example.com").await, "mail.example.com");
        assert_eq!(
            *z.asked.lock().unwrap(),
            ["_dmarc.a.mail.example.com", "_dmarc.mail.example.com"],
            "psd=n stops the walk"
        );
        let z = zone(&[("com", "v=DMARC1; p=none; psd=y")]);
        assert_eq!(org(&z, "a.mail.example.com").await, "example.com");
        // A psd=y record at the start itself does not push the organizational domain below
        // it; no record anywhere leaves the name its own organizational domain.
        assert_eq!(org(&z, "com").await, "com");
        assert_eq!(org(&zone(&[]), "x.example.net").await, "x.example.net");
        // Several records at one name are discarded and the walk goes on.
        let z = zone(&[
            ("mail.example.com", "v=DMARC1; p=none; psd=n"),
            ("mail.example.com", "v=DMARC1; p=reject"),
            ("example.com", "v=DMARC1; p=none"),
        ]);
        assert_eq!(org(&z, "a.mail.example.com").await, "example.com");
    }

    #[tokio::test]
    async fn rfc9989_appendix_b4_examples() {
        let none: Vec<String> = vec![];
        // B.4.1: example.com and signing.example.com publish records, com does not.
        let z = zone(&[("example.com", "v=DMARC1; p=reject"), ("signing.example.com", "v=DMARC1; p=none")]);
        let signing = vec!["signing.example.com".to_string()];
        let e = eval(&z, &inputs("example.com", "example.com", true, &signing), R9989).await;
        assert_eq!((e.verdict.clone(), e.spf_aligned, e.dkim_aligned), (Verdict::Pass, true, true));
        assert_eq!(e.record_domain.as_deref(), Some("example.com"));
        assert_eq!(e.organizational_domain.as_deref(), Some("example.com"));
        let e = eval(&z, &inputs("example.com", "example.com", false, &signing), R9989).await;
        assert_eq!((e.verdict, e.dkim_aligned), (Verdict::Pass, true), "DKIM alone aligns relaxed");

        // B.4.2: the deep Author Domain finds example.com in eight queries; its sp applies.
        let z =
            zone(&[("example.com", "v=DMARC1; p=none; sp=quarantine"), ("signing.example.com", "v=DMARC1; p=none")]);
        let deep = "a.b.c.d.e.f.g.h.i.j.k.example.com";
        let e = eval(&z, &inputs(deep, "example.com", true, &signing), R9989).await;
        assert_eq!((e.verdict.clone(), e.spf_aligned, e.dkim_aligned), (Verdict::Pass, true, true));
        assert_eq!(e.record_domain.as_deref(), Some("example.com"));
        let asked = z.asked.lock().unwrap().clone();
        assert_eq!(&asked[..8], tree_walk_names(deep).iter().map(|n| format!("_dmarc.{n}")).collect::<Vec<_>>());
        let e = eval(&z, &inputs(deep, "elsewhere.net", true, &none), R9989).await;
        assert_eq!((e.verdict, e.policy), (Verdict::Fail, Policy::Quarantine), "sp of example.com");

        // B.4.3: bank.example is a PSD; giant.bank.example and mega.bank.example are
        // different organizations.
        let z =
            zone(&[("bank.example", "v=DMARC1; p=reject; psd=y"), ("giant.bank.example", "v=DMARC1; p=quarantine")]);
        let mega = vec!["mail.mega.bank.example".to_string()];
        let e = eval(&z, &inputs("giant.bank.example", "mail.giant.bank.example", true, &mega), R9989).await;
        assert_eq!((e.verdict.clone(), e.spf_aligned, e.dkim_aligned), (Verdict::Pass, true, false));
        assert_eq!(e.organizational_domain.as_deref(), Some("giant.bank.example"));
        let e = eval(&z, &inputs("giant.bank.example", "other.example", true, &mega), R9989).await;
        assert_eq!((e.verdict, e.applied), (Verdict::Fail, Policy::Quarantine), "giant's own p");
        // Under RFC 7489 the list knows nothing of bank.example: giant and mega share
        // "bank.example" as organizational domain and DKIM aligns.
        let e = eval(&z, &inputs("giant.bank.example", "other.example", true, &mega), R7489).await;
        assert_eq!((e.verdict, e.dkim_aligned), (Verdict::Pass, true));
    }

    #[tokio::test]
    async fn rfc9989_policies() {
        let none: Vec<String> = vec![];
        let mut z = zone(&[
            ("example.org", "v=DMARC1; p=reject; sp=quarantine; np=none"),
            ("nonp.example", "v=DMARC1; p=reject; sp=quarantine"),
            ("plain.example", "v=DMARC1; p=reject"),
            ("test.example", "v=DMARC1; p=reject; t=y"),
            ("old.example", "v=DMARC1; p=quarantine; pct=0"),
            ("half.example", "v=DMARC1; p=reject; pct=50"),
            ("two.example", "v=DMARC1; p=reject"),
            ("two.example", "v=DMARC1; p=none"),
            ("psd", "v=DMARC1; p=reject; np=quarantine; psd=y"),
            ("org.psd", "v=DMARC1; p=none"),
        ]);
        for d in ["sub.example.org", "sub.nonp.example", "sub.plain.example", "two.example", "real.psd"] {
            z.existing.insert(d.to_string());
        }
        let fail = |from| inputs(from, "attacker.net", true, &none);
        let policy = |e: Evaluation| (e.verdict, e.policy, e.applied);
        // p at the Author Domain, sp at an existing subdomain, np at one that does not exist.
        assert_eq!(
            policy(eval(&z, &fail("example.org"), R9989).await),
            (Verdict::Fail, Policy::Reject, Policy::Reject)
        );
        let sub = eval(&z, &fail("sub.example.org"), R9989).await;
        assert_eq!(policy(sub), (Verdict::Fail, Policy::Quarantine, Policy::Quarantine));
        assert_eq!(eval(&z, &fail("ghost.example.org"), R9989).await.policy, Policy::None);
        // Without np, sp; without sp, p - for existing and non-existent subdomains alike.
        assert_eq!(eval(&z, &fail("ghost.nonp.example"), R9989).await.policy, Policy::Quarantine);
        assert_eq!(eval(&z, &fail("ghost.plain.example"), R9989).await.policy, Policy::Reject);
        assert_eq!(eval(&z, &fail("sub.plain.example"), R9989).await.policy, Policy::Reject);
        // RFC 7489 knows no np: sp for every subdomain.
        assert_eq!(eval(&z, &fail("ghost.example.org"), R7489).await.policy, Policy::Quarantine);
        // t=y: one level below, and pct=0 read as t=y; other pct values are gone.
        assert_eq!(
            policy(eval(&z, &fail("test.example"), R9989).await),
            (Verdict::Fail, Policy::Reject, Policy::Quarantine)
        );
        assert_eq!(eval(&z, &fail("old.example"), R9989).await.applied, Policy::None);
        assert_eq!(eval(&z, &fail("half.example"), R9989).await.applied, Policy::Reject);
        // Several records at the Author Domain are discarded; no record above: none.
        assert_eq!(eval(&z, &fail("two.example"), R9989).await.verdict, Verdict::None);
        // A PSD's record (psd=y) covers an organization without one, with its np for
        // a name that does not exist; an organization's own record wins over the PSD's.
        let e = eval(&z, &fail("ghost.psd"), R9989).await;
        assert_eq!((e.record_domain.as_deref(), e.policy), (Some("psd"), Policy::Quarantine));
        assert_eq!(eval(&z, &fail("real.psd"), R9989).await.policy, Policy::Reject);
        let e = eval(&z, &fail("mail.org.psd"), R9989).await;
        assert_eq!((e.record_domain.as_deref(), e.policy), (Some("org.psd"), Policy::None));
        // DNS trouble during the walk: temperror.
        let e = eval(&z, &fail("a.tempfail.example"), R9989).await;
        assert!(matches!(e.verdict, Verdict::TempError(_)), "{e:?}");
    }
}
