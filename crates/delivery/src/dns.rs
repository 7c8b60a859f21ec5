//! DNS for delivery: MX with implicit MX and null MX, addresses, TXT, and DNSSEC-vouched TLSA.
//!
//! Lookups go through hickory-resolver (with its cache) to the configured nameservers or the
//! system's. TLSA records for DANE are asked for with the AD and DO bits set, straight from
//! the first nameserver, because only the AD bit of a (trusted, local) validating resolver's
//! answer says whether the records are DNSSEC-secure (RFC 7672 §2.1.1, RFC 6698 §4.1).

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    /// NXDOMAIN: the name does not exist.
    #[error("{0}: no such domain")]
    NoSuchDomain(String),
    /// Timeouts, SERVFAIL, network trouble: try again later.
    #[error("DNS lookup failed: {0}")]
    Temporary(String),
}

/// Where mail for a domain goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// Hosts in the order to try them.
    Hosts(Vec<String>),
    /// `MX 0 .`: the domain accepts no mail (RFC 7505).
    Null,
}

/// One TLSA record (RFC 6698 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

pub struct Dns {
    resolver: TokioResolver,
    /// Where TLSA queries go.
    nameservers: Vec<SocketAddr>,
    timeout: Duration,
    /// Whether AD bits are trusted (`dns.dnssec`).
    dnssec: bool,
}

impl Dns {
    pub fn from_config(config: &tern_config::Dns) -> anyhow::Result<Dns> {
        let (resolver, nameservers) = tern_mailauth::resolver::build(config).map_err(|e| anyhow::anyhow!(e))?;
        Ok(Dns::with_resolver(resolver, nameservers, config))
    }

    /// With a resolver made elsewhere (shared with verification).
    pub fn with_resolver(resolver: TokioResolver, nameservers: Vec<SocketAddr>, config: &tern_config::Dns) -> Dns {
        Dns { resolver, nameservers, timeout: Duration::from_secs(config.timeout_seconds), dnssec: config.dnssec }
    }

    pub fn resolver(&self) -> &TokioResolver {
        &self.resolver
    }

    /// MX hosts of `domain` (an A-label name), ordered by preference with equal preferences
    /// shuffled (RFC 5321 §5.1); without MX records the domain itself (implicit MX).
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        let name = fqdn(domain);
        match self.resolver.mx_lookup(name.as_str()).await {
            Ok(lookup) => {
                let mut hosts: Vec<(u16, u32, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((mx.preference, rand::random::<u32>(), mx.exchange.to_ascii())),
                        _ => None,
                    })
                    .collect();
                if hosts.is_empty() {
                    return self.implicit_mx(domain).await;
                }
                // RFC 7505 §3: a single MX with the root as exchange.
                if hosts.len() == 1 && (hosts[0].2 == "." || hosts[0].2.is_empty()) {
                    return Ok(MxAnswer::Null);
                }
                hosts.sort();
                let names = hosts
                    .into_iter()
                    .map(|(_, _, h)| h.trim_end_matches('.').to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect();
                Ok(MxAnswer::Hosts(names))
            }
            Err(e) if e.is_no_records_found() => {
                if is_nxdomain(&e) {
                    return Err(DnsError::NoSuchDomain(domain.to_string()));
                }
                self.implicit_mx(domain).await
            }
            Err(e) => Err(DnsError::Temporary(format!("MX {domain}: {e}"))),
        }
    }

    /// RFC 5321 §5.1: no MX records, but an address record: the domain is its own MX.
    async fn implicit_mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        match self.ips(domain).await {
            Ok(ips) if !ips.is_empty() => Ok(MxAnswer::Hosts(vec![domain.to_string()])),
            Ok(_) => Err(DnsError::NoSuchDomain(domain.to_string())),
            Err(e) => Err(e),
        }
    }

    /// IPv6 and IPv4 addresses of a host, IPv6 first (an IP literal is returned as is).
    pub async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let name = fqdn(host);
        let (v6, v4) = tokio::join!(
            self.resolver.lookup(name.as_str(), RecordType::AAAA),
            self.resolver.lookup(name.as_str(), RecordType::A)
        );
        let mut out = Vec::new();
        let mut errors = Vec::new();
        let mut nxdomain = false;
        for result in [v6, v4] {
            match result {
                Ok(lookup) => out.extend(lookup.answers().iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(e) if e.is_no_records_found() => nxdomain |= is_nxdomain(&e),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if out.is_empty() && !errors.is_empty() {
            return Err(DnsError::Temporary(format!("{host}: {}", errors.join("; "))));
        }
        if out.is_empty() && nxdomain {
            return Err(DnsError::NoSuchDomain(host.to_string()));
        }
        Ok(out)
    }

    /// TXT strings of `name` (each record's strings joined); empty when there are none.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        match self.resolver.txt_lookup(fqdn(name).as_str()).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data.iter().map(|part| String::from_utf8_lossy(part).into_owned()).collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(DnsError::Temporary(format!("TXT {name}: {e}"))),
        }
    }

    /// DNSSEC-secure TLSA records at `name` (`_25._tcp.<host>`). `Ok(None)` when DNSSEC is
    /// not trusted, the answer is not authenticated, or there are none: DANE does not apply.
    pub async fn tlsa(&self, name: &str) -> Result<Option<Vec<Tlsa>>, DnsError> {
        if !self.dnssec {
            return Ok(None);
        }
        let Some(server) = self.nameservers.first().copied() else { return Ok(None) };
        let response = self.query_with_ad(server, name, RecordType::TLSA).await?;
        match response.metadata.response_code {
            ResponseCode::NoError => {}
            ResponseCode::NXDomain => return Ok(None),
            code => return Err(DnsError::Temporary(format!("TLSA {name}: {code}"))),
        }
        if !response.metadata.authentic_data {
            return Ok(None);
        }
        let records: Vec<Tlsa> = response
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TLSA(t) => Some(Tlsa {
                    usage: u8::from(t.cert_usage),
                    selector: u8::from(t.selector),
                    matching: u8::from(t.matching),
                    data: t.cert_data.clone(),
                }),
                _ => None,
            })
            .collect();
        Ok((!records.is_empty()).then_some(records))
    }

    /// One query with RD, AD and the EDNS DO bit (RFC 6840 §5.7), over UDP, then TCP when
    /// the answer was truncated.
    async fn query_with_ad(&self, server: SocketAddr, name: &str, rtype: RecordType) -> Result<Message, DnsError> {
        let temp = |e: String| DnsError::Temporary(format!("{rtype} {name}: {e}"));
        let qname = Name::from_ascii(fqdn(name)).map_err(|e| temp(e.to_string()))?;
        let id: u16 = rand::random();
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.metadata.authentic_data = true;
        query.add_query(Query::query(qname, rtype));
        let mut edns = Edns::new();
        edns.set_dnssec_ok(true);
        edns.set_max_payload(1232);
        query.set_edns(edns);
        let bytes = query.to_vec().map_err(|e| temp(e.to_string()))?;
        let udp = async {
            let bind: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
            let socket = tokio::net::UdpSocket::bind(bind).await?;
            socket.connect(server).await?;
            socket.send(&bytes).await?;
            let mut buf = vec![0u8; 4096];
            loop {
                let n = socket.recv(&mut buf).await?;
                if let Ok(m) = Message::from_vec(&buf[..n])
                    && m.metadata.id == id
                {
                    return Ok::<Message, std::io::Error>(m);
                }
            }
        };
        let message = tokio::time::timeout(self.timeout, udp)
            .await
            .map_err(|_| temp("timeout".into()))?
            .map_err(|e| temp(e.to_string()))?;
        if !message.metadata.truncation {
            return Ok(message);
        }
        let tcp = async {
            let mut stream = tokio::net::TcpStream::connect(server).await?;
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            stream.write_all(&framed).await?;
            let len = stream.read_u16().await? as usize;
            let mut buf = vec![0u8; len];
            stream.read_exact(&mut buf).await?;
            Message::from_vec(&buf).map_err(|e| std::io::Error::other(e.to_string()))
        };
        tokio::time::timeout(self.timeout, tcp)
            .await
            .map_err(|_| temp("timeout".into()))?
            .map_err(|e| temp(e.to_string()))
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

fn is_nxdomain(e: &hickory_resolver::net::NetError) -> bool {
    e.to_string().to_ascii_lowercase().contains("nxdomain")
}
