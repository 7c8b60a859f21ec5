//! The resolver the server runs: hickory-resolver (with its cache) on the configured
//! nameservers or the system's. TLSA records for DANE are asked for with the AD and DO bits
//! set, straight from the first nameserver, because only the AD bit of a (trusted, local)
//! validating resolver's answer says whether the records are DNSSEC-secure (RFC 7672
//! §2.1.1, RFC 6698 §4.1).

use crate::{Answer, DnsError, Record, RecordType, Tlsa, normalize};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct HickoryResolver {
    resolver: TokioResolver,
    /// Where TLSA queries go.
    nameservers: Vec<SocketAddr>,
    timeout: Duration,
}

impl HickoryResolver {
    pub fn from_config(config: &tern_config::Dns) -> Result<HickoryResolver, String> {
        let configured = config.nameserver_addrs();
        let (resolver_config, mut opts) = if configured.is_empty() {
            hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?
        } else {
            let servers = configured
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            (ResolverConfig::from_name_servers(servers), ResolverOpts::default())
        };
        let nameservers: Vec<SocketAddr> = if configured.is_empty() {
            resolver_config
                .name_servers()
                .iter()
                .map(|ns| SocketAddr::new(ns.ip, ns.connections.first().map(|c| c.port).unwrap_or(53)))
                .collect()
        } else {
            configured
        };
        let timeout = Duration::from_secs(config.timeout_seconds);
        opts.timeout = timeout;
        opts.attempts = 2;
        opts.ndots = 0;
        let resolver = Resolver::builder_with_config(resolver_config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        Ok(HickoryResolver { resolver, nameservers, timeout })
    }

    /// One query with RD, AD and the EDNS DO bit (RFC 6840 §5.7), over UDP, then TCP when
    /// the answer was truncated.
    async fn query_with_ad(
        &self,
        server: SocketAddr,
        name: &str,
        rtype: hickory_proto::rr::RecordType,
    ) -> Result<Message, DnsError> {
        let temp = |e: String| DnsError::Temporary(format!("{rtype} {name}: {e}"));
        let qname = Name::from_ascii(format!("{name}.")).map_err(|e| temp(e.to_string()))?;
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

    async fn tlsa(&self, name: &str) -> Result<Answer, DnsError> {
        let Some(server) = self.nameservers.first().copied() else { return Ok(Answer::empty()) };
        let response = self.query_with_ad(server, name, hickory_proto::rr::RecordType::TLSA).await?;
        match response.metadata.response_code {
            ResponseCode::NoError => {}
            ResponseCode::NXDomain => return Err(DnsError::NoSuchDomain(name.to_string())),
            code => return Err(DnsError::Temporary(format!("TLSA {name}: {code}"))),
        }
        let ttl = response.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
        Ok(Answer {
            records: response.answers.iter().filter_map(|r| record(&r.data)).collect(),
            valid_until: Instant::now() + Duration::from_secs(u64::from(ttl)),
            authentic: response.metadata.authentic_data,
        })
    }
}

#[async_trait::async_trait]
impl crate::Resolver for HickoryResolver {
    async fn query(&self, name: &str, rtype: RecordType) -> Result<Answer, DnsError> {
        let hickory_type = match rtype {
            RecordType::A => hickory_proto::rr::RecordType::A,
            RecordType::Aaaa => hickory_proto::rr::RecordType::AAAA,
            RecordType::Mx => hickory_proto::rr::RecordType::MX,
            RecordType::Txt => hickory_proto::rr::RecordType::TXT,
            RecordType::Ptr => hickory_proto::rr::RecordType::PTR,
            RecordType::Tlsa => return self.tlsa(name).await,
        };
        // Absolute: no search list.
        match self.resolver.lookup(format!("{name}.").as_str(), hickory_type).await {
            Ok(lookup) => Ok(Answer {
                records: lookup.answers().iter().filter_map(|r| record(&r.data)).collect(),
                valid_until: lookup.valid_until(),
                authentic: false,
            }),
            Err(e) if e.is_nx_domain() => Err(DnsError::NoSuchDomain(name.to_string())),
            Err(e) if e.is_no_records_found() => Ok(Answer::empty()),
            Err(e) => Err(DnsError::Temporary(format!("{rtype} {name}: {e}"))),
        }
    }
}

fn record(data: &RData) -> Option<Record> {
    Some(match data {
        RData::A(a) => Record::A(a.0),
        RData::AAAA(a) => Record::Aaaa(a.0),
        RData::MX(mx) => Record::Mx { preference: mx.preference, exchange: normalize(&mx.exchange.to_ascii()) },
        RData::TXT(txt) => Record::Txt(txt.txt_data.concat()),
        RData::PTR(p) => Record::Ptr(normalize(&p.0.to_ascii())),
        RData::TLSA(t) => Record::Tlsa(Tlsa {
            usage: u8::from(t.cert_usage),
            selector: u8::from(t.selector),
            matching: u8::from(t.matching),
            data: t.cert_data.clone(),
        }),
        _ => return None,
    })
}
