//! SPF (RFC 7208), Tern's own evaluator: strict about syntax (a record with any error is a
//! `permerror` before anything is evaluated, §4.6), exact about the lookup limits (§4.6.4),
//! and independent of the DNS client ([`SpfDns`]) so that the OpenSPF test suite runs
//! against an in-memory zone. mail-auth's lenient parser skipped what it did not know and
//! disagreed with the RFC on 48 of the suite's 203 cases.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The results of RFC 7208 §2.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfResult {
    None,
    Neutral,
    Pass,
    Fail,
    SoftFail,
    TempError,
    PermError,
}

impl SpfResult {
    pub fn word(self) -> &'static str {
        match self {
            SpfResult::None => "none",
            SpfResult::Neutral => "neutral",
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

/// An answer of [`SpfDns`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// NXDOMAIN, or no records of the type: a "void lookup" (§4.6.4).
    NotFound,
    /// A timeout or server failure.
    Temporary(String),
}

pub type Lookup<T> = Result<T, DnsError>;

/// The DNS queries SPF makes. An empty answer is [`DnsError::NotFound`].
pub trait SpfDns: Sync {
    /// TXT records, each its strings joined (§3.3).
    fn txt(&self, name: &str) -> impl Future<Output = Lookup<Vec<Vec<u8>>>> + Send;
    fn a(&self, name: &str) -> impl Future<Output = Lookup<Vec<Ipv4Addr>>> + Send;
    fn aaaa(&self, name: &str) -> impl Future<Output = Lookup<Vec<Ipv6Addr>>> + Send;
    /// MX exchanges, most preferred first.
    fn mx(&self, name: &str) -> impl Future<Output = Lookup<Vec<String>>> + Send;
    fn ptr(&self, ip: IpAddr) -> impl Future<Output = Lookup<Vec<String>>> + Send;
}

/// What [`check_host`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfOutcome {
    pub result: SpfResult,
    /// The domain whose policy decided.
    pub domain: String,
    /// The `exp=` explanation of a `fail` (§6.2), expanded.
    pub explanation: Option<String>,
    /// Why, for logs and `tern check spf` (a permerror's syntax error, a DNS failure...).
    pub detail: Option<String>,
}

/// The identity checked and the facts of the connection.
#[derive(Debug, Clone)]
pub struct SpfRequest<'a> {
    pub ip: IpAddr,
    /// The domain to check: the MAIL FROM domain, or the HELO name.
    pub domain: &'a str,
    /// `local@domain` (`postmaster@helo` for a HELO check or an empty local part).
    pub sender: &'a str,
    pub helo: &'a str,
    /// This host's name, for `%{r}` in explanations.
    pub receiver: &'a str,
    /// Unix time, for `%{t}`.
    pub now: i64,
}

/// §4.6.4: lookups of include, a, mx, ptr, exists and redirect.
const MAX_LOOKUPS: u32 = 10;
/// §4.6.4: void lookups allowed.
const MAX_VOID: u32 = 2;
/// §4.6.4: address records per mx, names per ptr.
const MAX_MX: usize = 10;
const MAX_PTR: usize = 10;

struct Error(SpfResult, String);

type Check<T> = Result<T, Error>;

/// The future of a recursive check (include, redirect).
type Boxed<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn perm(why: impl Into<String>) -> Error {
    Error(SpfResult::PermError, why.into())
}

/// RFC 7208 §4 check_host() with the limits of §4.6.4 and the initial checks of §4.3.
pub async fn check_host<D: SpfDns>(dns: &D, request: &SpfRequest<'_>) -> SpfOutcome {
    let ip = match request.ip {
        // §5: an IPv4-mapped IPv6 client is an IPv4 client.
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let domain = request.domain.trim_end_matches('.').to_string();
    let outcome = |result, explanation, detail| SpfOutcome { result, domain: domain.clone(), explanation, detail };
    // §4.3: a domain that is not a valid name (or a domain literal) gives "none".
    if !valid_domain(&domain) {
        return outcome(SpfResult::None, None, Some(format!("{domain:?} is not a domain name")));
    }
    let (local, sender_domain) = match request.sender.rsplit_once('@') {
        Some((l, d)) if !l.is_empty() => (l.to_string(), d.to_string()),
        Some((_, d)) => ("postmaster".to_string(), d.to_string()),
        None => ("postmaster".to_string(), request.sender.to_string()),
    };
    let mut eval = Evaluation {
        dns,
        ip,
        local,
        sender_domain,
        helo: request.helo.to_string(),
        receiver: request.receiver.to_string(),
        now: request.now,
        lookups: 0,
        voids: 0,
    };
    match eval.check(&domain, 0).await {
        Ok((result, explanation)) => outcome(result, explanation, None),
        Err(Error(result, why)) => outcome(result, None, Some(why)),
    }
}

struct Evaluation<'a, D> {
    dns: &'a D,
    ip: IpAddr,
    local: String,
    sender_domain: String,
    helo: String,
    receiver: String,
    now: i64,
    lookups: u32,
    voids: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

impl Qualifier {
    fn result(self) -> SpfResult {
        match self {
            Qualifier::Pass => SpfResult::Pass,
            Qualifier::Fail => SpfResult::Fail,
            Qualifier::SoftFail => SpfResult::SoftFail,
            Qualifier::Neutral => SpfResult::Neutral,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mechanism {
    All,
    Include(String),
    A(Option<String>, u8, u8),
    Mx(Option<String>, u8, u8),
    Ptr(Option<String>),
    Ip4(Ipv4Addr, u8),
    Ip6(Ipv6Addr, u8),
    Exists(String),
}

#[derive(Debug, Default)]
struct Record {
    directives: Vec<(Qualifier, Mechanism)>,
    redirect: Option<String>,
    exp: Option<String>,
}

/// §4.5: `v=spf1` followed by a space or the end.
fn is_spf_record(r: &[u8]) -> bool {
    r.len() >= 6 && r[..6].eq_ignore_ascii_case(b"v=spf1") && (r.len() == 6 || r[6] == b' ')
}

/// Name syntax for a domain to look up (§4.3): labels of 1 to 63 characters, at most 253
/// in all, not a domain literal, at least two labels (a single label is not an FQDN).
fn valid_domain(d: &str) -> bool {
    let d = d.trim_end_matches('.');
    !d.is_empty()
        && d.len() <= 253
        && !d.starts_with('[')
        && d.contains('.')
        && d.split('.').all(|l| !l.is_empty() && l.len() <= 63)
}

/// RFC 7208 §7.1 toplabel: alphanumeric, not all digits; or with a dash inside.
fn valid_toplabel(l: &str) -> bool {
    let b = l.as_bytes();
    if b.is_empty() || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') {
        return false;
    }
    if b.contains(&b'-') {
        b[0].is_ascii_alphanumeric() && b[b.len() - 1].is_ascii_alphanumeric()
    } else {
        b.iter().any(u8::is_ascii_alphabetic)
    }
}

impl<D: SpfDns> Evaluation<'_, D> {
    fn count_lookup(&mut self) -> Check<()> {
        self.lookups += 1;
        if self.lookups > MAX_LOOKUPS {
            return Err(perm("more than 10 DNS lookups"));
        }
        Ok(())
    }

    /// A lookup result, counting void answers (§4.6.4).
    fn void<T>(&mut self, r: Lookup<Vec<T>>) -> Check<Vec<T>> {
        match r {
            Ok(v) if !v.is_empty() => Ok(v),
            Ok(_) | Err(DnsError::NotFound) => {
                self.voids += 1;
                if self.voids > MAX_VOID {
                    return Err(perm("more than 2 void DNS lookups"));
                }
                Ok(Vec::new())
            }
            Err(DnsError::Temporary(e)) => Err(Error(SpfResult::TempError, e)),
        }
    }

    /// check_host() for one domain; `depth` bounds include/redirect recursion (the lookup
    /// limit does too).
    fn check<'s>(&'s mut self, domain: &'s str, depth: usize) -> Boxed<'s, Check<(SpfResult, Option<String>)>>
    where
        D: SpfDns,
    {
        Box::pin(async move {
            if depth > 20 {
                return Err(perm("include/redirect nested too deeply"));
            }
            if !valid_domain(domain) {
                return Ok((SpfResult::None, None));
            }
            // §4.4: the TXT records of the domain.
            let records = match self.dns.txt(domain).await {
                Ok(r) => r,
                Err(DnsError::NotFound) => return Ok((SpfResult::None, None)),
                Err(DnsError::Temporary(e)) => return Err(Error(SpfResult::TempError, e)),
            };
            let spf: Vec<&Vec<u8>> = records.iter().filter(|r| is_spf_record(r)).collect();
            let record = match spf.as_slice() {
                [] => return Ok((SpfResult::None, None)),
                [one] => *one,
                _ => return Err(perm(format!("{domain} has more than one SPF record"))),
            };
            let record = parse_record(record)?;
            for (qualifier, mechanism) in &record.directives {
                if self.matches(mechanism, domain, depth).await? {
                    let result = qualifier.result();
                    let explanation = if result == SpfResult::Fail {
                        match &record.exp {
                            Some(exp) => self.explanation(exp, domain).await,
                            None => None,
                        }
                    } else {
                        None
                    };
                    return Ok((result, explanation));
                }
            }
            if let Some(target) = &record.redirect {
                // §6.1: the redirect's result is the result; a target without a record is
                // a permerror.
                self.count_lookup()?;
                let target = self.expand_domain(target, domain).await?;
                return match self.check(&target, depth + 1).await? {
                    (SpfResult::None, _) => Err(perm(format!("redirect to {target}, which has no SPF record"))),
                    other => Ok(other),
                };
            }
            Ok((SpfResult::Neutral, None))
        })
    }

    async fn matches(&mut self, mechanism: &Mechanism, domain: &str, depth: usize) -> Check<bool> {
        match mechanism {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(net, len) => Ok(match self.ip {
                IpAddr::V4(ip) => in_v4(ip, *net, *len),
                IpAddr::V6(_) => false,
            }),
            Mechanism::Ip6(net, len) => Ok(match self.ip {
                IpAddr::V6(ip) => in_v6(ip, *net, *len),
                IpAddr::V4(_) => false,
            }),
            Mechanism::Include(spec) => {
                self.count_lookup()?;
                let target = self.expand_domain(spec, domain).await?;
                // §5.2: pass matches; fail, softfail, neutral do not; none is a permerror.
                match self.check(&target, depth + 1).await? {
                    (SpfResult::Pass, _) => Ok(true),
                    (SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral, _) => Ok(false),
                    (SpfResult::None, _) => Err(perm(format!("include of {target}, which has no SPF record"))),
                    (r, _) => Err(Error(r, format!("include of {target}"))),
                }
            }
            Mechanism::A(spec, v4, v6) => {
                self.count_lookup()?;
                let target = self.target(spec.as_deref(), domain).await?;
                self.address_matches(&target, *v4, *v6).await
            }
            Mechanism::Mx(spec, v4, v6) => {
                self.count_lookup()?;
                let target = self.target(spec.as_deref(), domain).await?;
                let r = if valid_domain(&target) { self.dns.mx(&target).await } else { Err(DnsError::NotFound) };
                let exchanges = self.void(r)?;
                if exchanges.len() > MAX_MX {
                    return Err(perm(format!("{target} has more than 10 MX records")));
                }
                for host in exchanges {
                    if self.address_matches(host.trim_end_matches('.'), *v4, *v6).await? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                self.count_lookup()?;
                let target = self.target(spec.as_deref(), domain).await?;
                Ok(self.validated_names().await?.iter().any(|n| {
                    let n = n.trim_end_matches('.');
                    n.eq_ignore_ascii_case(&target)
                        || (n.len() > target.len()
                            && n.as_bytes()[n.len() - target.len() - 1] == b'.'
                            && n[n.len() - target.len()..].eq_ignore_ascii_case(&target))
                }))
            }
            Mechanism::Exists(spec) => {
                self.count_lookup()?;
                let target = self.expand_domain(spec, domain).await?;
                // §5.7: an A query whatever the client's address family.
                let r = if valid_domain(&target) { self.dns.a(&target).await } else { Err(DnsError::NotFound) };
                Ok(!self.void(r)?.is_empty())
            }
        }
    }

    /// The domain a mechanism names, or the current one.
    async fn target(&mut self, spec: Option<&str>, domain: &str) -> Check<String> {
        match spec {
            Some(s) => self.expand_domain(s, domain).await,
            None => Ok(domain.to_string()),
        }
    }

    /// Whether an A (IPv4 client) or AAAA (IPv6 client) record of `name` is in the CIDR.
    async fn address_matches(&mut self, name: &str, v4: u8, v6: u8) -> Check<bool> {
        if !valid_domain(name) {
            // Not a name a query can be made for (a label over 63 octets after macro
            // expansion): it does not exist (RFC 7208 §4.3, §5/10/3).
            self.void::<()>(Err(DnsError::NotFound))?;
            return Ok(false);
        }
        match self.ip {
            IpAddr::V4(ip) => {
                let r = self.dns.a(name).await;
                Ok(self.void(r)?.into_iter().any(|a| in_v4(ip, a, v4)))
            }
            IpAddr::V6(ip) => {
                let r = self.dns.aaaa(name).await;
                Ok(self.void(r)?.into_iter().any(|a| in_v6(ip, a, v6)))
            }
        }
    }

    /// §5.5: names of the client's PTR records whose addresses include the client (at
    /// most ten names are tried; DNS errors only drop names).
    async fn validated_names(&mut self) -> Check<Vec<String>> {
        let names = match self.dns.ptr(self.ip).await {
            Ok(n) => n,
            Err(_) => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        for name in names.into_iter().take(MAX_PTR) {
            let host = name.trim_end_matches('.');
            let found = match self.ip {
                IpAddr::V4(ip) => self.dns.a(host).await.is_ok_and(|a| a.contains(&ip)),
                IpAddr::V6(ip) => self.dns.aaaa(host).await.is_ok_and(|a| a.contains(&ip)),
            };
            if found {
                out.push(host.to_string());
            }
        }
        Ok(out)
    }

    /// §6.2: the explanation of a fail; any error leaves none.
    async fn explanation(&mut self, spec: &str, domain: &str) -> Option<String> {
        let target = self.expand_domain(spec, domain).await.ok()?;
        let records = self.dns.txt(&target).await.ok()?;
        let [text] = records.as_slice() else { return None };
        let text = std::str::from_utf8(text).ok()?;
        if !text.is_ascii() {
            return None;
        }
        self.expand(text, domain, true).await.ok()
    }

    /// A domain-spec expanded and made a name to look up (§7.3: over 253 octets, labels go
    /// from the left).
    async fn expand_domain(&mut self, spec: &str, domain: &str) -> Check<String> {
        let mut name = self.expand(spec, domain, false).await?;
        while name.len() > 253 {
            match name.split_once('.') {
                Some((_, rest)) => name = rest.to_string(),
                None => break,
            }
        }
        Ok(name.trim_end_matches('.').to_string())
    }

    /// §7 macro expansion; `explain` allows `c`, `r` and `t`.
    async fn expand(&mut self, spec: &str, domain: &str, explain: bool) -> Check<String> {
        // %{p}: a validated name of the client, one in `domain` if there is one (§7.3).
        let p = if spec.contains("%{p") || spec.contains("%{P") {
            let names = self.validated_names().await?;
            let within = |n: &&String| {
                n.eq_ignore_ascii_case(domain)
                    || n.to_ascii_lowercase().ends_with(&format!(".{}", domain.to_ascii_lowercase()))
            };
            names.iter().find(within).or(names.first()).cloned().unwrap_or_else(|| "unknown".to_string())
        } else {
            String::new()
        };
        let mut out = String::new();
        let b = spec.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'%' {
                out.push(b[i] as char);
                i += 1;
                continue;
            }
            match b.get(i + 1) {
                Some(b'%') => out.push('%'),
                Some(b'_') => out.push(' '),
                Some(b'-') => out.push_str("%20"),
                Some(b'{') => {
                    let close = spec[i..].find('}').ok_or_else(|| perm("unterminated macro"))? + i;
                    out.push_str(&self.macro_value(&spec[i + 2..close], domain, &p, explain)?);
                    i = close + 1;
                    continue;
                }
                _ => return Err(perm(format!("bad macro in {spec:?}"))),
            }
            i += 2;
        }
        Ok(out)
    }

    fn macro_value(&self, m: &str, domain: &str, p: &str, explain: bool) -> Check<String> {
        let bad = || perm(format!("bad macro %{{{m}}}"));
        let mut chars = m.chars();
        let letter = chars.next().ok_or_else(bad)?;
        let rest: &str = chars.as_str();
        let value = match letter.to_ascii_lowercase() {
            's' => format!("{}@{}", self.local, self.sender_domain),
            'l' => self.local.clone(),
            'o' => self.sender_domain.clone(),
            'd' => domain.to_string(),
            'i' => match self.ip {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => ip
                    .octets()
                    .iter()
                    .flat_map(|o| [o >> 4, o & 15])
                    // Upper case, as RFC 7208's own example (§7.4) writes it.
                    .map(|n| format!("{n:X}"))
                    .collect::<Vec<_>>()
                    .join("."),
            },
            'p' => p.to_string(),
            'v' => if self.ip.is_ipv4() { "in-addr" } else { "ip6" }.to_string(),
            'h' => self.helo.clone(),
            'c' if explain => self.ip.to_string(),
            'r' if explain => self.receiver.clone(),
            't' if explain => self.now.to_string(),
            _ => return Err(bad()),
        };
        // transformers: *DIGIT [ "r" ], then delimiters.
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let rest = &rest[digits.len()..];
        let (reverse, delims) = match rest.strip_prefix(['r', 'R']) {
            Some(d) => (true, d),
            None => (false, rest),
        };
        if !delims.chars().all(|c| ".-+,/_=".contains(c)) {
            return Err(bad());
        }
        let keep = if digits.is_empty() {
            None
        } else {
            match digits.parse::<usize>() {
                Ok(0) | Err(_) => return Err(bad()),
                Ok(n) => Some(n),
            }
        };
        let delims: Vec<char> = if delims.is_empty() { vec!['.'] } else { delims.chars().collect() };
        let mut parts: Vec<&str> = value.split(|c| delims.contains(&c)).collect();
        if reverse {
            parts.reverse();
        }
        if let Some(n) = keep
            && parts.len() > n
        {
            parts.drain(..parts.len() - n);
        }
        let joined = parts.join(".");
        // An upper-case macro letter asks for URL escaping (§7.3).
        Ok(if letter.is_ascii_uppercase() {
            joined
                .bytes()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                        (c as char).to_string()
                    } else {
                        format!("%{c:02X}")
                    }
                })
                .collect()
        } else {
            joined
        })
    }
}

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
    u128::from(ip) & mask == u128::from(net) & mask
}

/// Whether a TXT string is an SPF record and, if it is, its first syntax error (§4.5, §4.6):
/// the parser as the evaluation runs it, for fuzzing and record checks.
pub fn record_syntax(raw: &[u8]) -> Option<Result<(), String>> {
    is_spf_record(raw).then(|| parse_record(raw).map(|_| ()).map_err(|e| e.1))
}

/// §4.6: the whole record, or the first syntax error in it. `raw` starts with `v=spf1`
/// ([`is_spf_record`]).
fn parse_record(raw: &[u8]) -> Check<Record> {
    // §3.1/§4.6.1: ASCII only, terms separated by spaces only.
    let text = std::str::from_utf8(raw).map_err(|_| perm("non-ASCII characters in the SPF record"))?;
    if !text.is_ascii() {
        return Err(perm("non-ASCII characters in the SPF record"));
    }
    if let Some(c) = text.chars().find(|c| c.is_ascii_control()) {
        return Err(perm(format!("control character {c:?} in the SPF record")));
    }
    let mut record = Record::default();
    for term in text[6..].split(' ').filter(|t| !t.is_empty()) {
        if let Some((name, value)) = modifier(term) {
            match name.to_ascii_lowercase().as_str() {
                "redirect" => {
                    if record.redirect.is_some() {
                        return Err(perm("redirect= twice"));
                    }
                    check_domain_spec(value)?;
                    record.redirect = Some(value.to_string());
                }
                "exp" => {
                    if record.exp.is_some() {
                        return Err(perm("exp= twice"));
                    }
                    check_domain_spec(value)?;
                    record.exp = Some(value.to_string());
                }
                // Unknown modifiers are ignored (§6), their value must still be a
                // macro-string.
                _ => check_macro_string(value)?,
            }
            continue;
        }
        record.directives.push(directive(term)?);
    }
    Ok(record)
}

/// `name=value` with a valid modifier name (§4.6.1: ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )).
fn modifier(term: &str) -> Option<(&str, &str)> {
    let (name, value) = term.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .then_some((name, value))
}

fn directive(term: &str) -> Check<(Qualifier, Mechanism)> {
    let (qualifier, rest) = match term.as_bytes().first() {
        Some(b'+') => (Qualifier::Pass, &term[1..]),
        Some(b'-') => (Qualifier::Fail, &term[1..]),
        Some(b'~') => (Qualifier::SoftFail, &term[1..]),
        Some(b'?') => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    };
    let name_end = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, arg) = rest.split_at(name_end);
    let mechanism = match name.to_ascii_lowercase().as_str() {
        "all" if arg.is_empty() => Mechanism::All,
        "include" => Mechanism::Include(required_spec(arg, term)?),
        "exists" => Mechanism::Exists(required_spec(arg, term)?),
        "a" => {
            let (spec, v4, v6) = spec_and_cidr(arg, term)?;
            Mechanism::A(spec, v4, v6)
        }
        "mx" => {
            let (spec, v4, v6) = spec_and_cidr(arg, term)?;
            Mechanism::Mx(spec, v4, v6)
        }
        "ptr" => {
            let spec = match arg.strip_prefix(':') {
                Some(s) => {
                    check_domain_spec(s)?;
                    Some(s.to_string())
                }
                None if arg.is_empty() => None,
                None => return Err(perm(format!("malformed term {term:?}"))),
            };
            Mechanism::Ptr(spec)
        }
        "ip4" => {
            let value = arg.strip_prefix(':').ok_or_else(|| perm(format!("malformed term {term:?}")))?;
            let (addr, len) = match value.split_once('/') {
                Some((a, l)) => (a, cidr_len(l, 32, term)?),
                None => (value, 32),
            };
            let addr: Ipv4Addr = addr.parse().map_err(|_| perm(format!("bad IPv4 address in {term:?}")))?;
            Mechanism::Ip4(addr, len)
        }
        "ip6" => {
            let value = arg.strip_prefix(':').ok_or_else(|| perm(format!("malformed term {term:?}")))?;
            let (addr, len) = match value.rsplit_once('/') {
                Some((a, l)) => (a, cidr_len(l, 128, term)?),
                None => (value, 128),
            };
            let addr: Ipv6Addr = addr.parse().map_err(|_| perm(format!("bad IPv6 address in {term:?}")))?;
            Mechanism::Ip6(addr, len)
        }
        _ => return Err(perm(format!("unknown mechanism in {term:?}"))),
    };
    Ok((qualifier, mechanism))
}

fn required_spec(arg: &str, term: &str) -> Check<String> {
    let spec = arg.strip_prefix(':').ok_or_else(|| perm(format!("{term:?} needs a domain")))?;
    check_domain_spec(spec)?;
    Ok(spec.to_string())
}

/// A CIDR length: digits without a leading zero, at most `max` (§5.6).
fn cidr_len(s: &str, max: u8, term: &str) -> Check<u8> {
    let bad = || perm(format!("bad CIDR length in {term:?}"));
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return Err(bad());
    }
    let n: u8 = s.parse().map_err(|_| bad())?;
    if n > max {
        return Err(bad());
    }
    Ok(n)
}

/// `[":" domain-spec] [dual-cidr-length]` of a and mx. The CIDR is a suffix of digits
/// (`/24`, `//64`, `/24//64`): a domain-spec may itself hold `/` (RFC 7208 §7.1: any visible
/// character but `%`).
fn spec_and_cidr(arg: &str, term: &str) -> Check<(Option<String>, u8, u8)> {
    let (body, v4, v6) = split_cidr(arg, term)?;
    let spec = match body.strip_prefix(':') {
        Some(s) => {
            check_domain_spec(s)?;
            Some(s.to_string())
        }
        None if body.is_empty() => None,
        None => return Err(perm(format!("malformed term {term:?}"))),
    };
    Ok((spec, v4, v6))
}

/// Splits `text[/v4][//v6]` at the end of `arg`.
fn split_cidr<'a>(arg: &'a str, term: &str) -> Check<(&'a str, u8, u8)> {
    let mut body = arg;
    let mut v6 = 128;
    let mut v4 = 32;
    if let Some(i) = body.rfind("//") {
        let len = &body[i + 2..];
        if len.bytes().all(|c| c.is_ascii_digit()) {
            v6 = cidr_len(len, 128, term)?;
            body = &body[..i];
        }
    }
    if let Some(i) = body.rfind('/') {
        let len = &body[i + 1..];
        if len.bytes().all(|c| c.is_ascii_digit()) {
            v4 = cidr_len(len, 32, term)?;
            body = &body[..i];
        }
    }
    Ok((body, v4, v6))
}

/// §7.1 macro-string: `%{...}` with a known letter and valid transformers, `%%`, `%_`,
/// `%-`, and visible characters otherwise. `c`, `r` and `t` are for explanations only.
fn check_macro_string(s: &str) -> Check<()> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            if !(0x21..=0x7e).contains(&b[i]) {
                return Err(perm(format!("bad character in {s:?}")));
            }
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'%' | b'_' | b'-') => i += 2,
            Some(b'{') => {
                let close = s[i..].find('}').ok_or_else(|| perm(format!("unterminated macro in {s:?}")))? + i;
                let m = &s[i + 2..close];
                let mut chars = m.chars();
                let letter = chars.next().map(|c| c.to_ascii_lowercase());
                if !matches!(letter, Some('s' | 'l' | 'o' | 'd' | 'i' | 'p' | 'v' | 'h')) {
                    return Err(perm(format!("bad macro in {s:?}")));
                }
                let rest = chars.as_str();
                let digits = rest.chars().take_while(char::is_ascii_digit).count();
                let rest = &rest[digits..];
                let rest = rest.strip_prefix(['r', 'R']).unwrap_or(rest);
                if !rest.chars().all(|c| ".-+,/_=".contains(c)) {
                    return Err(perm(format!("bad macro in {s:?}")));
                }
                i = close + 1;
            }
            _ => return Err(perm(format!("bad macro in {s:?}"))),
        }
    }
    Ok(())
}

/// §7.1 domain-spec = macro-string domain-end, domain-end = ("." toplabel ["."]) /
/// macro-expand.
fn check_domain_spec(s: &str) -> Check<()> {
    if s.is_empty() {
        return Err(perm("empty domain"));
    }
    check_macro_string(s)?;
    if s.ends_with('}') {
        return Ok(());
    }
    let trimmed = s.strip_suffix('.').unwrap_or(s);
    let Some((_, top)) = trimmed.rsplit_once('.') else {
        return Err(perm(format!("{s:?} is not a domain name")));
    };
    if !valid_toplabel(top) {
        return Err(perm(format!("{s:?} has no valid top label")));
    }
    // Labels other than macros must not be empty or longer than 63.
    if trimmed.split('.').any(|l| l.is_empty() || l.len() > 63) && !trimmed.contains('%') {
        return Err(perm(format!("{s:?} is not a domain name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_syntax() {
        let ok = |r: &str| parse_record(r.as_bytes()).is_ok();
        assert!(ok("v=spf1 ip4:192.0.2.0/24 a mx:example.org/24//64 -all"));
        assert!(ok("v=spf1 a  -all "));
        assert!(ok("v=spf1 include:_spf.example.org ~all foo=%{d}"));
        assert!(ok("v=spf1 a:foo:bar/baz.example.com mx:x.example/24//64 a//64"));
        for bad in [
            "v=spf1 ip4:1.2.3.4/33",
            "v=spf1 ip4:1.2.3.4/032",
            "v=spf1 ip4",
            "v=spf1 ip4:1.2.3.4//32",
            "v=spf1 ip6:::1/129",
            "v=spf1 a:1.2.3.4",
            "v=spf1 a:foo.123",
            "v=spf1 a//0/",
            "v=spf1 exp=%{c}.example.org -all",
            "v=spf1 frob",
            "v=spf1 redirect=a.example redirect=b.example",
            "v=spf1 exists:%{q}",
            "v=spf1 a:ctrl.example\rptr",
            "v=spf1 include",
        ] {
            assert!(!ok(bad), "{bad} must be a permerror");
        }
    }

    #[test]
    fn cidr_matching() {
        assert!(in_v4("192.0.2.77".parse().unwrap(), "192.0.2.0".parse().unwrap(), 24));
        assert!(!in_v4("192.0.3.1".parse().unwrap(), "192.0.2.0".parse().unwrap(), 24));
        assert!(in_v4("10.0.0.1".parse().unwrap(), "192.0.2.0".parse().unwrap(), 0));
        assert!(in_v6("2001:db8::1".parse().unwrap(), "2001:db8::".parse().unwrap(), 32));
    }
}
