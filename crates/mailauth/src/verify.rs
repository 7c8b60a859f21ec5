//! Inbound verification: SPF (RFC 7208), DKIM (RFC 6376, RFC 8463), ARC (RFC 8617), iprev and
//! DMARC (RFC 7489), with DNS answers cached for their TTLs, and the `Authentication-Results`
//! header (RFC 8601) that records them.
//!
//! DKIM and iprev are mail-auth's; SPF is [`crate::spf`], ARC validation [`crate::arc`] and
//! DMARC [`crate::dmarc`]. Two corrections to
//! mail-auth 0.13: a DKIM signature with `l=` that covers less than the whole body counts as
//! neutral (RFC 6376 §8.2: the rest of the body is unsigned), and a relaxed-body signature
//! that fails only because mail-auth mishandles trailing whitespace-only lines is checked
//! again on the correctly canonicalized body.

use crate::dkim::normalize_trailing_blank_lines;
use crate::dmarc::{self, Evaluation, PublicSuffixList};
use crate::spf::{self, DnsError, Lookup, SpfDns, SpfRequest, SpfResult};
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::{DomainKey, VerifySignature};
use mail_auth::dkim::Canonicalization;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;
use tern_dns::{Dns, Record, RecordType};

/// Entries kept per cache; beyond, the expired ones go, then everything.
const CACHE_LIMIT: usize = 50_000;

/// A DNS answer cache that honours the answers' TTLs (mail-auth passes the expiry).
pub struct TtlCache<K, V> {
    map: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K, V> Default for TtlCache<K, V> {
    fn default() -> Self {
        TtlCache { map: Mutex::new(HashMap::new()) }
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name).filter(|(_, until)| *until > Instant::now()).map(|(v, _)| v.clone())
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_LIMIT {
            let now = Instant::now();
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= CACHE_LIMIT {
                map.clear();
            }
        }
        map.insert(key, (value, valid_until));
    }
}

/// The DKIM and ARC keys one message's signatures name, looked up by Tern before mail-auth
/// checks the signatures: mail-auth finds every key here and never resolves anything itself
/// (a name not looked up is "no record").
struct SignatureKeys(HashMap<Box<str>, Txt>);

impl SignatureKeys {
    /// `s._domainkey.d.` of every DKIM signature, ARC-Message-Signature and ARC-Seal.
    async fn fetch(dns: &Dns, message: &AuthenticatedMessage<'_>) -> SignatureKeys {
        let mut names: Vec<String> = message.dkim_headers.iter().map(|h| h.header.domain_key()).collect();
        names.extend(message.ams_headers.iter().map(|h| h.header.domain_key()));
        names.extend(message.as_headers.iter().map(|h| h.header.domain_key()));
        names.sort();
        names.dedup();
        let mut keys = HashMap::new();
        for name in names.into_iter().take(MAX_KEYS_PER_MESSAGE) {
            let key = name.to_ascii_lowercase();
            let found = match dns.query(&key, RecordType::Txt).await {
                Ok(answer) => answer
                    .records
                    .iter()
                    .find_map(|r| match r {
                        Record::Txt(text) => DomainKey::parse(text).ok(),
                        _ => None,
                    })
                    .map(|k| Txt::DomainKey(std::sync::Arc::new(k)))
                    .unwrap_or(Txt::Error(mail_auth::Error::Dns(mail_auth::DnsError::InvalidRecordType))),
                Err(tern_dns::DnsError::NoSuchDomain(_)) => Txt::Error(not_found()),
                Err(tern_dns::DnsError::Temporary(e)) => {
                    Txt::Error(mail_auth::Error::Dns(mail_auth::DnsError::Resolver(e)))
                }
            };
            keys.insert(key.into_boxed_str(), found);
        }
        SignatureKeys(keys)
    }
}

/// At most this many key lookups for one message (a message may carry any number of
/// signatures; RFC 6376 §6.1 lets a verifier limit them).
const MAX_KEYS_PER_MESSAGE: usize = 16;

fn not_found() -> mail_auth::Error {
    mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(
        mail_auth::hickory_resolver::proto::op::ResponseCode::NXDomain,
    ))
}

impl ResolverCache<Box<str>, Txt> for SignatureKeys {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        Some(self.0.get(name).cloned().unwrap_or_else(|| Txt::Error(not_found())))
    }

    fn remove<Q>(&self, _: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _: Box<str>, _: Txt, _: Instant) {}
}

/// The words of RFC 8601 results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::SoftFail => "softfail",
            Outcome::Neutral => "neutral",
            Outcome::None => "none",
            Outcome::TempError => "temperror",
            Outcome::PermError => "permerror",
        }
    }

    fn of_spf(r: SpfResult) -> Outcome {
        match r {
            SpfResult::Pass => Outcome::Pass,
            SpfResult::Fail => Outcome::Fail,
            SpfResult::SoftFail => Outcome::SoftFail,
            SpfResult::Neutral => Outcome::Neutral,
            SpfResult::TempError => Outcome::TempError,
            SpfResult::PermError => Outcome::PermError,
            SpfResult::None => Outcome::None,
        }
    }

    fn of_dkim(r: &DkimResult) -> (Outcome, Option<String>) {
        match r {
            DkimResult::Pass => (Outcome::Pass, None),
            // A body that does not match its hash is a failed signature (RFC 6376 §6.3,
            // RFC 8601 §2.7.1 "fail"), whatever mail-auth calls it.
            DkimResult::Neutral(e @ mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch)) => {
                (Outcome::Fail, Some(e.to_string()))
            }
            DkimResult::Neutral(e) => (Outcome::Neutral, Some(e.to_string())),
            DkimResult::Fail(e) => (Outcome::Fail, Some(e.to_string())),
            DkimResult::PermError(e) => (Outcome::PermError, Some(e.to_string())),
            DkimResult::TempError(e) => (Outcome::TempError, Some(e.to_string())),
            DkimResult::None => (Outcome::None, None),
        }
    }
}

/// One SPF check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfCheck {
    pub outcome: Outcome,
    /// The domain checked.
    pub domain: String,
    pub explanation: Option<String>,
}

/// One DKIM signature's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimCheck {
    pub outcome: Outcome,
    pub domain: String,
    pub selector: String,
    pub algorithm: String,
    /// Why it did not pass.
    pub reason: Option<String>,
    /// First characters of b= (RFC 6008 header.b).
    pub b_prefix: String,
}

/// Everything learned about a message.
#[derive(Debug, Clone)]
pub struct Results {
    pub iprev: Option<(Outcome, Option<String>)>,
    pub spf_helo: Option<SpfCheck>,
    pub spf_mail_from: Option<SpfCheck>,
    pub dkim: Vec<DkimCheck>,
    pub arc: Option<Outcome>,
    pub dmarc: Option<Evaluation>,
    /// The RFC5322.From addresses.
    pub from: Vec<String>,
}

pub struct Verifier {
    dns: Dns,
    /// mail-auth's DKIM and ARC signature checks, fed with [`SignatureKeys`]: its own
    /// resolver has no nameservers.
    auth: MessageAuthenticator,
    /// Tern's SPF evaluator's answers, negative ones included.
    spf_cache: TtlCache<Box<str>, Cached>,
    psl: PublicSuffixList,
    dmarc: dmarc::Specification,
    /// This server's name in Authentication-Results (authserv-id).
    pub authserv_id: String,
}

/// `(name, value)` pairs of mail-auth's DMARC record lookups, for [`dmarc::evaluate`].
struct DnsRecords<'a>(&'a Verifier);

impl dmarc::RecordSource for DnsRecords<'_> {
    async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
        self.0.dns.txt(name).await.map_err(|e| e.to_string())
    }

    async fn exists(&self, domain: &str) -> Result<bool, String> {
        self.0.dns.exists(domain).await.map_err(|e| e.to_string())
    }
}

/// The resolver as SPF's DNS, with the verifier's TTL caches (answers and "no such name"
/// alike are cached; failures are not).
struct SpfResolver<'a>(&'a Verifier);

/// The records of one kind in an answer.
fn records<T>(records: &[Record], f: impl Fn(&Record) -> Option<T>) -> Vec<T> {
    records.iter().filter_map(f).collect()
}

impl SpfResolver<'_> {
    /// One lookup through the SPF cache: `pick` takes the records asked for from the
    /// answer, and an answer without any is "not found" (a void lookup, RFC 7208 §4.6.4).
    async fn cached<T: Clone>(
        &self,
        key: String,
        name: &str,
        record_type: RecordType,
        pick: impl FnOnce(&[Record]) -> Vec<T>,
        wrap: fn(Lookup<Vec<T>>) -> Cached,
        unwrap: fn(Cached) -> Lookup<Vec<T>>,
    ) -> Lookup<Vec<T>> {
        if let Some(hit) = self.0.spf_cache.get(key.as_str()) {
            return unwrap(hit);
        }
        let (answer, until) = match self.0.dns.query(name, record_type).await {
            Ok(answer) => {
                let found = pick(&answer.records);
                (if found.is_empty() { Err(DnsError::NotFound) } else { Ok(found) }, answer.valid_until)
            }
            Err(tern_dns::DnsError::NoSuchDomain(_)) => {
                (Err(DnsError::NotFound), Instant::now() + tern_dns::Answer::NEGATIVE_TTL)
            }
            Err(tern_dns::DnsError::Temporary(e)) => (Err(DnsError::Temporary(e)), Instant::now()),
        };
        self.0.spf_cache.remember(key, wrap(answer.clone()), until);
        answer
    }
}

impl SpfDns for SpfResolver<'_> {
    async fn txt(&self, name: &str) -> Lookup<Vec<Vec<u8>>> {
        let key = format!("txt {}", name.to_ascii_lowercase());
        let pick = |r: &[Record]| {
            records(r, |d| match d {
                Record::Txt(txt) => Some(txt.clone()),
                _ => None,
            })
        };
        self.cached(key, name, RecordType::Txt, pick, Cached::Txt, Cached::into_txt).await
    }

    async fn a(&self, name: &str) -> Lookup<Vec<Ipv4Addr>> {
        let key = format!("a {}", name.to_ascii_lowercase());
        let pick = |r: &[Record]| {
            records(r, |d| match d {
                Record::A(a) => Some(*a),
                _ => None,
            })
        };
        self.cached(key, name, RecordType::A, pick, Cached::A, Cached::into_a).await
    }

    async fn aaaa(&self, name: &str) -> Lookup<Vec<Ipv6Addr>> {
        let key = format!("aaaa {}", name.to_ascii_lowercase());
        let pick = |r: &[Record]| {
            records(r, |d| match d {
                Record::Aaaa(a) => Some(*a),
                _ => None,
            })
        };
        self.cached(key, name, RecordType::Aaaa, pick, Cached::Aaaa, Cached::into_aaaa).await
    }

    async fn mx(&self, name: &str) -> Lookup<Vec<String>> {
        let key = format!("mx {}", name.to_ascii_lowercase());
        let pick = |r: &[Record]| {
            let mut v: Vec<(u16, String)> = records(r, |d| match d {
                Record::Mx { preference, exchange } => Some((*preference, exchange.clone())),
                _ => None,
            });
            v.sort_by_key(|m| m.0);
            v.into_iter().map(|m| m.1).collect()
        };
        self.cached(key, name, RecordType::Mx, pick, Cached::Names, Cached::into_names).await
    }

    async fn ptr(&self, ip: IpAddr) -> Lookup<Vec<String>> {
        let key = format!("ptr {ip}");
        let pick = |r: &[Record]| {
            records(r, |d| match d {
                Record::Ptr(p) => Some(p.clone()),
                _ => None,
            })
        };
        self.cached(key, &tern_dns::reverse_name(ip), RecordType::Ptr, pick, Cached::Names, Cached::into_names).await
    }
}

/// A cached SPF DNS answer.
#[derive(Clone)]
enum Cached {
    Txt(Lookup<Vec<Vec<u8>>>),
    A(Lookup<Vec<Ipv4Addr>>),
    Aaaa(Lookup<Vec<Ipv6Addr>>),
    Names(Lookup<Vec<String>>),
}

impl Cached {
    fn into_txt(self) -> Lookup<Vec<Vec<u8>>> {
        match self {
            Cached::Txt(v) => v,
            _ => Err(DnsError::NotFound),
        }
    }
    fn into_a(self) -> Lookup<Vec<Ipv4Addr>> {
        match self {
            Cached::A(v) => v,
            _ => Err(DnsError::NotFound),
        }
    }
    fn into_aaaa(self) -> Lookup<Vec<Ipv6Addr>> {
        match self {
            Cached::Aaaa(v) => v,
            _ => Err(DnsError::NotFound),
        }
    }
    fn into_names(self) -> Lookup<Vec<String>> {
        match self {
            Cached::Names(v) => v,
            _ => Err(DnsError::NotFound),
        }
    }
}

impl TtlCache<Box<str>, Cached> {
    /// Keeps an answer until `until`; temporary failures are not kept.
    fn remember(&self, key: String, value: Cached, until: Instant) {
        let temporary = matches!(
            &value,
            Cached::Txt(Err(DnsError::Temporary(_)))
                | Cached::A(Err(DnsError::Temporary(_)))
                | Cached::Aaaa(Err(DnsError::Temporary(_)))
                | Cached::Names(Err(DnsError::Temporary(_)))
        );
        if !temporary {
            self.insert(key.into_boxed_str(), value, until);
        }
    }
}

impl Verifier {
    pub fn new(dns: Dns, authserv_id: &str, psl: PublicSuffixList) -> Verifier {
        Verifier {
            dns,
            auth: MessageAuthenticator(
                mail_auth::hickory_resolver::Resolver::builder_with_config(
                    mail_auth::hickory_resolver::config::ResolverConfig::from_name_servers(Vec::new()),
                    mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
                )
                .build()
                .expect("a resolver without nameservers needs no system state"),
            ),
            spf_cache: TtlCache::default(),
            psl,
            dmarc: dmarc::Specification::default(),
            authserv_id: authserv_id.to_string(),
        }
    }

    /// Evaluates DMARC by `spec` (RFC 7489 by default).
    pub fn with_dmarc(mut self, spec: dmarc::Specification) -> Verifier {
        self.dmarc = spec;
        self
    }

    pub fn dmarc_specification(&self) -> dmarc::Specification {
        self.dmarc
    }

    pub fn public_suffixes(&self) -> &PublicSuffixList {
        &self.psl
    }

    /// RFC 7208 check_host() with Tern's evaluator ([`crate::spf`]) on the cached resolver.
    async fn spf(&self, ip: IpAddr, domain: &str, sender: &str, helo: &str, host: &str) -> SpfCheck {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let request = SpfRequest { ip, domain, sender, helo, receiver: host, now };
        let out = spf::check_host(&SpfResolver(self), &request).await;
        SpfCheck {
            outcome: Outcome::of_spf(out.result),
            domain: out.domain,
            explanation: out.explanation.or(out.detail),
        }
    }

    /// SPF of the HELO identity (RFC 7208 §2.3: `postmaster@` the HELO name).
    pub async fn spf_helo(&self, ip: IpAddr, helo: &str, host: &str) -> SpfCheck {
        self.spf(ip, helo, &format!("postmaster@{helo}"), helo, host).await
    }

    /// SPF of the MAIL FROM identity (`sender` empty for `<>`: then the HELO is checked,
    /// RFC 7208 §2.4).
    pub async fn spf_mail_from(&self, ip: IpAddr, helo: &str, host: &str, sender: &str) -> SpfCheck {
        if sender.is_empty() {
            return self.spf_helo(ip, helo, host).await;
        }
        let domain = sender.rsplit_once('@').map_or(sender, |(_, d)| d);
        self.spf(ip, domain, sender, helo, host).await
    }

    /// FCrDNS of the client (RFC 8601 §3: iprev) and its name: a PTR name whose
    /// addresses include the client's passes; at most ten names are tried (RFC 7208 §4.6.4
    /// sets the same limit for the "ptr" mechanism).
    pub async fn iprev(&self, ip: IpAddr) -> (Outcome, Option<String>) {
        let names = match self.dns.query(&tern_dns::reverse_name(ip), RecordType::Ptr).await {
            Ok(answer) => records(&answer.records, |r| match r {
                Record::Ptr(name) => Some(name.clone()),
                _ => None,
            }),
            Err(tern_dns::DnsError::NoSuchDomain(_)) => Vec::new(),
            Err(tern_dns::DnsError::Temporary(_)) => return (Outcome::TempError, None),
        };
        let Some(first) = names.first().cloned() else { return (Outcome::PermError, None) };
        let mut temporary = false;
        for name in names.iter().take(10) {
            match self.dns.ips(name).await {
                Ok(ips) if ips.contains(&ip) => return (Outcome::Pass, Some(name.clone())),
                Ok(_) | Err(tern_dns::DnsError::NoSuchDomain(_)) => {}
                Err(tern_dns::DnsError::Temporary(_)) => temporary = true,
            }
        }
        (if temporary { Outcome::TempError } else { Outcome::Fail }, Some(first))
    }

    /// Every DKIM signature of the message.
    pub async fn dkim(&self, raw: &[u8]) -> Vec<DkimCheck> {
        let Some(message) = AuthenticatedMessage::parse(raw) else { return Vec::new() };
        let body_len = raw.len().saturating_sub(message.body_offset as usize) as u64;
        let keys = SignatureKeys::fetch(&self.dns, &message).await;
        let outputs = self.auth.verify_dkim(Parameters::new(&message).with_txt_cache(&keys)).await;
        let mut checks: Vec<DkimCheck> = outputs
            .iter()
            .map(|o| {
                let (mut outcome, mut reason) = Outcome::of_dkim(o.result());
                let sig = o.signature();
                if let Some(s) = sig
                    && outcome == Outcome::Pass
                    && s.l > 0
                    && s.l < body_len
                {
                    outcome = Outcome::Neutral;
                    reason = Some(format!("l={} covers only part of the body", s.l));
                }
                DkimCheck {
                    outcome,
                    domain: sig.map(|s| s.d.to_ascii_lowercase()).unwrap_or_default(),
                    selector: sig.map(|s| s.s.clone()).unwrap_or_default(),
                    algorithm: sig.map(|s| algorithm_name(s.a).to_string()).unwrap_or_default(),
                    reason,
                    b_prefix: sig.map(|s| b64_prefix(&s.b)).unwrap_or_default(),
                }
            })
            .collect();
        // mail-auth 0.13 keeps trailing whitespace-only lines in relaxed bodies; check such
        // signatures again on the body as RFC 6376 §3.4.4 canonicalizes it.
        let retry = outputs.iter().any(|o| {
            matches!(
                o.result(),
                DkimResult::Fail(mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch))
            ) && o.signature().is_some_and(|s| s.cb == Canonicalization::Relaxed)
        });
        if retry
            && let std::borrow::Cow::Owned(fixed) = normalize_trailing_blank_lines(raw)
            && let Some(message) = AuthenticatedMessage::parse(&fixed)
        {
            let again = self.auth.verify_dkim(Parameters::new(&message).with_txt_cache(&keys)).await;
            for (check, o) in checks.iter_mut().zip(again.iter()) {
                if check.outcome == Outcome::Fail
                    && matches!(o.result(), DkimResult::Pass)
                    && o.signature().is_some_and(|s| s.cb == Canonicalization::Relaxed && s.l == 0)
                {
                    check.outcome = Outcome::Pass;
                    check.reason = None;
                }
            }
        }
        checks
    }

    /// The ARC chain (RFC 8617 §5.2).
    pub async fn arc(&self, raw: &[u8]) -> Option<Outcome> {
        let verdict = crate::arc::validate(&SpfResolver(self), raw).await;
        if let Some(why) = &verdict.reason {
            tracing::info!(reason = %why, "ARC chain fails");
        }
        // RFC 8601 §2.7.1 knows arc=none for a message without a chain: written, not left out.
        Some(match verdict.result {
            crate::arc::ArcResult::None => Outcome::None,
            crate::arc::ArcResult::Pass => Outcome::Pass,
            crate::arc::ArcResult::Fail => Outcome::Fail,
        })
    }

    /// DMARC for the From domain given the SPF and DKIM results.
    pub async fn dmarc(
        &self,
        from_domain: &str,
        spf_mail_from: &SpfCheck,
        dkim: &[DkimCheck],
        sample: u8,
    ) -> Evaluation {
        let dkim_pass: Vec<String> =
            dkim.iter().filter(|c| c.outcome == Outcome::Pass).map(|c| c.domain.clone()).collect();
        let dkim_temperror: Vec<String> =
            dkim.iter().filter(|c| c.outcome == Outcome::TempError).map(|c| c.domain.clone()).collect();
        let inputs = dmarc::Inputs {
            from_domain,
            spf_domain: &spf_mail_from.domain,
            spf_pass: spf_mail_from.outcome == Outcome::Pass,
            spf_temperror: spf_mail_from.outcome == Outcome::TempError,
            dkim_pass: &dkim_pass,
            dkim_temperror: &dkim_temperror,
        };
        dmarc::evaluate(&self.psl, &DnsRecords(self), &inputs, sample, self.dmarc).await
    }

    /// ARC headers (RFC 8617 §5.1) sealing this message for a forward, signed with the RSA
    /// key of `key` (ARC has no Ed25519 algorithm yet). `None` when the chain so far is broken
    /// (cv=fail is not continued) or the message cannot be parsed.
    #[allow(clippy::too_many_arguments)]
    pub async fn arc_seal(
        &self,
        raw: &[u8],
        ip: IpAddr,
        helo: &str,
        host: &str,
        mail_from: &str,
        domain: &str,
        key: &crate::dkim::DkimKey,
    ) -> Option<Vec<u8>> {
        use base64::Engine;
        use mail_auth::common::crypto::{RsaKey, Sha256};
        use mail_auth::common::headers::HeaderWriter;
        if key.algorithm != crate::dkim::DkimAlgorithm::Rsa {
            return None;
        }
        let der = base64::engine::general_purpose::STANDARD.decode(&key.private_key).ok()?;
        let rsa = RsaKey::<Sha256>::from_key_der(rustls_pki_types::PrivateKeyDer::Pkcs8(der.into())).ok()?;
        let message = AuthenticatedMessage::parse(raw)?;
        // A chain that fails Tern's validation is not continued (mail-auth is more lenient).
        if crate::arc::validate(&SpfResolver(self), raw).await.result == crate::arc::ArcResult::Fail {
            return None;
        }
        let keys = SignatureKeys::fetch(&self.dns, &message).await;
        let dkim = self.auth.verify_dkim(Parameters::new(&message).with_txt_cache(&keys)).await;
        let arc = self.auth.verify_arc(Parameters::new(&message).with_txt_cache(&keys)).await;
        if !arc.can_be_sealed() {
            return None;
        }
        let checked = self.spf_mail_from(ip, helo, host, mail_from).await;
        let spf = mail_auth::SpfOutput::new(checked.domain).with_result(match checked.outcome {
            Outcome::Pass => mail_auth::SpfResult::Pass,
            Outcome::Fail => mail_auth::SpfResult::Fail,
            Outcome::SoftFail => mail_auth::SpfResult::SoftFail,
            Outcome::Neutral => mail_auth::SpfResult::Neutral,
            Outcome::TempError => mail_auth::SpfResult::TempError,
            Outcome::PermError => mail_auth::SpfResult::PermError,
            Outcome::None => mail_auth::SpfResult::None,
        });
        let from = message.from.first().cloned().unwrap_or_default();
        let results = mail_auth::AuthenticationResults::new(&self.authserv_id)
            .with_dkim_results(&dkim, &from)
            .with_spf_mailfrom_result(&spf, ip, mail_from, helo)
            .with_arc_result(&arc, ip);
        let sealer = mail_auth::arc::ArcSealer::from_key(rsa).domain(domain).selector(key.selector.clone()).headers([
            "From",
            "To",
            "Cc",
            "Subject",
            "Date",
            "Message-ID",
            "DKIM-Signature",
            "MIME-Version",
            "Content-Type",
        ]);
        let set = sealer.seal(&message, &results, &arc).ok()?;
        Some(set.to_header().replace("\r\n\t;", ";").into_bytes())
    }

    /// The `Authentication-Results:` value (without the field name), RFC 8601 §2.2.
    pub fn header_value(&self, r: &Results, client_ip: IpAddr, helo: &str, mail_from: &str) -> String {
        let mut out = self.authserv_id.clone();
        let mut any = false;
        let mut push = |text: String| {
            out.push_str(";\r\n\t");
            out.push_str(&text);
        };
        if let Some((outcome, name)) = &r.iprev {
            any = true;
            let name = name.as_deref().map(|n| format!(" ({})", comment(n))).unwrap_or_default();
            push(format!("iprev={}{name} policy.iprev={client_ip}", outcome.word()));
        }
        if let Some(spf) = &r.spf_helo {
            any = true;
            push(format!("spf={} smtp.helo={}", spf.outcome.word(), pvalue(helo)));
        }
        if let Some(spf) = &r.spf_mail_from {
            any = true;
            let from = if mail_from.is_empty() { "<>".to_string() } else { pvalue(mail_from) };
            push(format!("spf={} smtp.mailfrom={from}", spf.outcome.word()));
        }
        for d in &r.dkim {
            any = true;
            let reason = d.reason.as_deref().map(|r| format!(" ({})", comment(r))).unwrap_or_default();
            push(format!(
                "dkim={}{reason} header.d={} header.s={} header.a={} header.b={}",
                d.outcome.word(),
                pvalue(&d.domain),
                pvalue(&d.selector),
                pvalue(&d.algorithm),
                pvalue(&d.b_prefix)
            ));
        }
        if let Some(arc) = r.arc {
            any = true;
            push(format!("arc={} smtp.remote-ip={client_ip}", arc.word()));
        }
        if let Some(e) = &r.dmarc {
            any = true;
            let policy = e
                .record
                .as_ref()
                .map(|r| {
                    let testing = if r.testing { " t=y" } else { "" };
                    format!(" (p={} dis={}{testing})", e.policy.name(), e.applied.name())
                })
                .unwrap_or_default();
            push(format!(
                "dmarc={}{policy} header.from={} policy.dmarc={}",
                e.verdict.word(),
                pvalue(&e.from_domain),
                e.applied.name()
            ));
        }
        if !any {
            out.push_str("; none");
        }
        out
    }
}

fn algorithm_name(a: mail_auth::common::crypto::Algorithm) -> &'static str {
    use mail_auth::common::crypto::Algorithm;
    match a {
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::RsaSha1 => "rsa-sha1",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
    }
}

fn b64_prefix(b: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(b);
    text.chars().take(8).collect()
}

/// A value safe in a comment: no parentheses, backslashes or control characters.
fn comment(s: &str) -> String {
    s.chars().filter(|c| !c.is_control() && !matches!(c, '(' | ')' | '\\')).take(200).collect()
}

/// A property value: a token as is, anything else quoted (RFC 8601 §2.2 pvalue).
fn pvalue(s: &str) -> String {
    let token = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_graphic()
                && !matches!(c, '(' | ')' | '<' | '>' | ',' | ';' | ':' | '\\' | '"' | '[' | ']' | '?' | '=')
        })
        || s.contains('@')
            && !s.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | ';' | '(' | ')'));
    if token {
        s.to_string()
    } else {
        let clean: String = s.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\\').collect();
        format!("\"{clean}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_values() {
        assert_eq!(pvalue("example.com"), "example.com");
        assert_eq!(pvalue("user@example.com"), "user@example.com");
        assert_eq!(pvalue("a b"), "\"a b\"");
        assert_eq!(pvalue("x;y"), "\"x;y\"");
        assert_eq!(comment("a (b) \\c"), "a b c");
    }

    #[test]
    fn cache_expires() {
        let c: TtlCache<Box<str>, u32> = TtlCache::default();
        c.insert("a".into(), 1, Instant::now() + std::time::Duration::from_secs(60));
        c.insert("b".into(), 2, Instant::now() - std::time::Duration::from_secs(1));
        assert_eq!(c.get("a"), Some(1));
        assert_eq!(c.get("b"), None);
    }
}
