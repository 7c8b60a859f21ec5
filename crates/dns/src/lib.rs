//! DNS for every part of Tern.
//!
//! One seam, [`Resolver`]: a query for the records of one type at one name. Behind it the
//! server runs one [`HickoryResolver`] (hickory-resolver with its cache, built from `[dns]`),
//! shared by SPF/DKIM/DMARC/ARC verification, DNS blocklists, iprev, MX/TLSA/MTA-STS
//! lookups for delivery, and `tern doctor`. Tests run the same code on a [`MemoryResolver`]:
//! a zone written as text, answered from memory, with server failures and DNSSEC-signed
//! names on request.
//!
//! [`Dns`] holds a resolver and gives the lookups the mail code needs, with the rules that
//! belong to DNS itself: implicit and null MX, NXDOMAIN against NODATA, TLSA only when
//! DNSSEC-authenticated.

mod hickory;
mod memory;

pub use hickory::HickoryResolver;
pub use memory::{MemoryResolver, ZoneError};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The record types Tern asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    A,
    Aaaa,
    Mx,
    Txt,
    Ptr,
    Tlsa,
}

impl std::fmt::Display for RecordType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Mx => "MX",
            RecordType::Txt => "TXT",
            RecordType::Ptr => "PTR",
            RecordType::Tlsa => "TLSA",
        })
    }
}

/// One TLSA record (RFC 6698 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

/// One record of an answer. Names are lowercase, without the trailing dot (the root is
/// the empty name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Mx {
        preference: u16,
        exchange: String,
    },
    /// One TXT record, its strings joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
    Txt(Vec<u8>),
    Ptr(String),
    Tlsa(Tlsa),
}

/// The records of one type at one name. An empty answer is NODATA: the name exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub records: Vec<Record>,
    /// Until when the answer may be reused (its TTL).
    pub valid_until: Instant,
    /// The AD bit of a validating resolver: the answer is DNSSEC-secure.
    pub authentic: bool,
}

impl Answer {
    /// How long an answer without a TTL of its own (a negative one) is kept.
    pub const NEGATIVE_TTL: Duration = Duration::from_secs(300);

    pub fn empty() -> Answer {
        Answer { records: Vec::new(), valid_until: Instant::now() + Answer::NEGATIVE_TTL, authentic: false }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    /// NXDOMAIN: the name does not exist.
    #[error("{0}: no such domain")]
    NoSuchDomain(String),
    /// Timeouts, SERVFAIL, network trouble: try again later.
    #[error("DNS lookup failed: {0}")]
    Temporary(String),
}

/// Where DNS answers come from.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync {
    /// The records of `rtype` at `name` (lowercase, without the trailing dot).
    async fn query(&self, name: &str, rtype: RecordType) -> Result<Answer, DnsError>;
}

/// Where mail for a domain goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// Hosts in the order to try them.
    Hosts(Vec<String>),
    /// `MX 0 .`: the domain accepts no mail (RFC 7505).
    Null,
}

/// The lookups of the mail code, on one shared resolver.
#[derive(Clone)]
pub struct Dns {
    resolver: Arc<dyn Resolver>,
    /// Whether AD bits are trusted (`dns.dnssec`).
    dnssec: bool,
}

impl Dns {
    pub fn new(resolver: Arc<dyn Resolver>, dnssec: bool) -> Dns {
        Dns { resolver, dnssec }
    }

    /// The hickory resolver on the configured nameservers (or the system's).
    pub fn from_config(config: &tern_config::Dns) -> Result<Dns, String> {
        Ok(Dns::new(Arc::new(HickoryResolver::from_config(config)?), config.dnssec))
    }

    /// A resolver answering from memory (tests); its `SECURE` names are DNSSEC-authenticated.
    pub fn memory(resolver: Arc<MemoryResolver>) -> Dns {
        Dns::new(resolver, true)
    }

    /// The records of one type, as the resolver gives them.
    pub async fn query(&self, name: &str, rtype: RecordType) -> Result<Answer, DnsError> {
        self.resolver.query(&normalize(name), rtype).await
    }

    /// MX hosts of `domain` (an A-label name), ordered by preference with equal preferences
    /// shuffled (RFC 5321 §5.1); without MX records the domain itself (implicit MX).
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        let answer = match self.query(domain, RecordType::Mx).await {
            Ok(answer) => answer,
            Err(DnsError::NoSuchDomain(_)) => return Err(DnsError::NoSuchDomain(normalize(domain))),
            Err(e) => return Err(e),
        };
        let mut hosts: Vec<(u16, u32, String)> = answer
            .records
            .into_iter()
            .filter_map(|r| match r {
                Record::Mx { preference, exchange } => Some((preference, rand::random::<u32>(), exchange)),
                _ => None,
            })
            .collect();
        if hosts.is_empty() {
            return self.implicit_mx(domain).await;
        }
        // RFC 7505 §3: a single MX with the root as exchange.
        if hosts.len() == 1 && hosts[0].2.is_empty() {
            return Ok(MxAnswer::Null);
        }
        hosts.sort();
        Ok(MxAnswer::Hosts(hosts.into_iter().map(|(_, _, h)| h).filter(|h| !h.is_empty()).collect()))
    }

    /// RFC 5321 §5.1: no MX records, but an address record: the domain is its own MX.
    async fn implicit_mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        match self.ips(domain).await {
            Ok(ips) if !ips.is_empty() => Ok(MxAnswer::Hosts(vec![normalize(domain)])),
            Ok(_) => Err(DnsError::NoSuchDomain(normalize(domain))),
            Err(e) => Err(e),
        }
    }

    /// IPv6 and IPv4 addresses of a host, IPv6 first (an IP literal is returned as is).
    /// Empty when the host has none; NXDOMAIN only when neither query found the name.
    pub async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let (v6, v4) = tokio::join!(self.query(host, RecordType::Aaaa), self.query(host, RecordType::A));
        let mut out = Vec::new();
        let mut errors = Vec::new();
        let mut nxdomain = false;
        for result in [v6, v4] {
            match result {
                Ok(answer) => out.extend(answer.records.into_iter().filter_map(|r| match r {
                    Record::A(a) => Some(IpAddr::V4(a)),
                    Record::Aaaa(a) => Some(IpAddr::V6(a)),
                    _ => None,
                })),
                Err(DnsError::NoSuchDomain(_)) => nxdomain = true,
                Err(DnsError::Temporary(e)) => errors.push(e),
            }
        }
        if out.is_empty() && !errors.is_empty() {
            return Err(DnsError::Temporary(format!("{host}: {}", errors.join("; "))));
        }
        if out.is_empty() && nxdomain {
            return Err(DnsError::NoSuchDomain(normalize(host)));
        }
        Ok(out)
    }

    /// IPv4 addresses (empty for NODATA).
    pub async fn a(&self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        let answer = self.query(name, RecordType::A).await?;
        Ok(answer
            .records
            .into_iter()
            .filter_map(|r| match r {
                Record::A(a) => Some(a),
                _ => None,
            })
            .collect())
    }

    /// IPv6 addresses (empty for NODATA).
    pub async fn aaaa(&self, name: &str) -> Result<Vec<Ipv6Addr>, DnsError> {
        let answer = self.query(name, RecordType::Aaaa).await?;
        Ok(answer
            .records
            .into_iter()
            .filter_map(|r| match r {
                Record::Aaaa(a) => Some(a),
                _ => None,
            })
            .collect())
    }

    /// TXT records of `name` as text (each record's strings joined); empty when there are
    /// none or the name does not exist.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        match self.query(name, RecordType::Txt).await {
            Ok(answer) => Ok(answer
                .records
                .into_iter()
                .filter_map(|r| match r {
                    Record::Txt(t) => Some(String::from_utf8_lossy(&t).into_owned()),
                    _ => None,
                })
                .collect()),
            Err(DnsError::NoSuchDomain(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The names of an address (PTR), empty when it has none.
    pub async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        match self.query(&reverse_name(ip), RecordType::Ptr).await {
            Ok(answer) => Ok(answer
                .records
                .into_iter()
                .filter_map(|r| match r {
                    Record::Ptr(name) => Some(name),
                    _ => None,
                })
                .collect()),
            Err(DnsError::NoSuchDomain(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Whether a name exists: NXDOMAIN is no, an answer or NODATA is yes (RFC 9989 §A.4).
    pub async fn exists(&self, name: &str) -> Result<bool, DnsError> {
        match self.query(name, RecordType::A).await {
            Ok(_) => Ok(true),
            Err(DnsError::NoSuchDomain(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// DNSSEC-secure TLSA records at `name` (`_25._tcp.<host>`). `Ok(None)` when DNSSEC is
    /// not trusted, the answer is not authenticated, or there are none: DANE does not apply
    /// (RFC 7672 §2.1.1).
    pub async fn tlsa(&self, name: &str) -> Result<Option<Vec<Tlsa>>, DnsError> {
        if !self.dnssec {
            return Ok(None);
        }
        let answer = match self.query(name, RecordType::Tlsa).await {
            Ok(answer) => answer,
            Err(DnsError::NoSuchDomain(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if !answer.authentic {
            return Ok(None);
        }
        let records: Vec<Tlsa> = answer
            .records
            .into_iter()
            .filter_map(|r| match r {
                Record::Tlsa(t) => Some(t),
                _ => None,
            })
            .collect();
        Ok((!records.is_empty()).then_some(records))
    }
}

/// A name as resolvers get it: lowercase, without the trailing dot.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `4.3.2.1.in-addr.arpa` or the nibbles of an IPv6 address under `ip6.arpa` (RFC 1035
/// §3.5, RFC 3596 §2.5).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => format!("{}.in-addr.arpa", reverse_labels(ip)),
        IpAddr::V6(_) => format!("{}.ip6.arpa", reverse_labels(ip)),
    }
}

/// The address's labels in reverse, as DNS blocklists are asked (`4.3.2.1.<zone>`, RFC 5782
/// §2.1 and §2.4).
pub fn reverse_labels(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let nibbles: Vec<String> =
                v6.octets().iter().rev().flat_map(|b| [b & 15, b >> 4]).map(|n| format!("{n:x}")).collect();
            nibbles.join(".")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(zone: &str) -> Dns {
        Dns::memory(Arc::new(MemoryResolver::parse(zone).expect("zone")))
    }

    #[tokio::test]
    async fn mx_orders_by_preference_and_knows_implicit_and_null_mx() {
        let dns = dns("a.example MX 20 second.a.example\n\
             a.example MX 10 First.A.example.\n\
             implicit.example A 192.0.2.1\n\
             null.example MX 0 .\n\
             nodata.example TXT \"x\"\n\
             broken.example SERVFAIL\n");
        assert_eq!(
            dns.mx("A.Example.").await,
            Ok(MxAnswer::Hosts(vec!["first.a.example".into(), "second.a.example".into()]))
        );
        assert_eq!(dns.mx("implicit.example").await, Ok(MxAnswer::Hosts(vec!["implicit.example".into()])));
        assert_eq!(dns.mx("null.example").await, Ok(MxAnswer::Null));
        assert_eq!(dns.mx("nowhere.example").await, Err(DnsError::NoSuchDomain("nowhere.example".into())));
        // The name exists, but has no address to be its own MX.
        assert_eq!(dns.mx("nodata.example").await, Err(DnsError::NoSuchDomain("nodata.example".into())));
        assert!(matches!(dns.mx("broken.example").await, Err(DnsError::Temporary(_))));
    }

    #[tokio::test]
    async fn nxdomain_and_nodata_are_told_apart() {
        let dns = dns("host.example AAAA 2001:db8::1\nsub.parent.example TXT \"v=1\"\n");
        assert_eq!(dns.ips("host.example").await, Ok(vec!["2001:db8::1".parse().unwrap()]));
        assert_eq!(dns.a("host.example").await, Ok(vec![]));
        assert_eq!(dns.exists("host.example").await, Ok(true));
        // An empty non-terminal exists (RFC 8020).
        assert_eq!(dns.exists("parent.example").await, Ok(true));
        assert_eq!(dns.exists("none.example").await, Ok(false));
        assert_eq!(dns.txt("none.example").await, Ok(vec![]));
        assert_eq!(dns.ips("192.0.2.7").await, Ok(vec!["192.0.2.7".parse().unwrap()]));
    }

    #[tokio::test]
    async fn tlsa_counts_only_when_authenticated() {
        let zone = "_25._tcp.mx.signed.example TLSA 3 1 1 0a0b\n\
                    signed.example SECURE\n\
                    _25._tcp.mx.plain.example TLSA 3 1 1 0a0b\n";
        let dns = dns(zone);
        let expected = Tlsa { usage: 3, selector: 1, matching: 1, data: vec![10, 11] };
        assert_eq!(dns.tlsa("_25._tcp.mx.signed.example").await, Ok(Some(vec![expected])));
        assert_eq!(dns.tlsa("_25._tcp.mx.plain.example").await, Ok(None));
        let untrusted = Dns::new(Arc::new(MemoryResolver::parse(zone).unwrap()), false);
        assert_eq!(untrusted.tlsa("_25._tcp.mx.signed.example").await, Ok(None));
    }

    #[tokio::test]
    async fn reverse_names_and_ptr() {
        assert_eq!(reverse_name("192.0.2.1".parse().unwrap()), "1.2.0.192.in-addr.arpa");
        assert_eq!(reverse_labels("192.0.2.1".parse().unwrap()), "1.2.0.192");
        let v6 = reverse_labels("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.") && v6.ends_with(".8.b.d.0.1.0.0.2"), "{v6}");
        assert!(reverse_name("2001:db8::1".parse().unwrap()).starts_with("1.0.0.0.0.0.0.0."));
        assert!(reverse_name("2001:db8::1".parse().unwrap()).ends_with("8.b.d.0.1.0.0.2.ip6.arpa"));
        let dns = dns("1.2.0.192.in-addr.arpa PTR mail.example.\n");
        assert_eq!(dns.ptr("192.0.2.1".parse().unwrap()).await, Ok(vec!["mail.example".to_string()]));
        assert_eq!(dns.ptr("192.0.2.2".parse().unwrap()).await, Ok(vec![]));
    }
}
