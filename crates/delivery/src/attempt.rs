//! One delivery attempt: the recipients of one message at one destination domain, over one
//! connection and one transaction.
//!
//! Route: the smarthost, or the MX hosts (null MX bounces at once, RFC 7505 §4.2; no MX means
//! the domain's own address, RFC 5321 §5.1). TLS: DANE when DNSSEC-secure TLSA records exist
//! (RFC 7672; it takes precedence over MTA-STS, RFC 8461 §2), else MTA-STS `enforce`, else
//! REQUIRETLS (RFC 8689) asks for a verified certificate; otherwise STARTTLS when offered,
//! any certificate, falling back to cleartext if the handshake fails (RFC 7435).
//! Connection-level failures move on to the next address and host; a reply to the
//! transaction ends the attempt.

use crate::DeliveryService;
use crate::client::{ClientError, Envelope, SmtpClient};
use crate::dns::{DnsError, MxAnswer, Tlsa};
use crate::mta_sts::Mode;
use rustls_pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tern_config::SmarthostSecurity;
use tern_smtp_proto::Reply;
use tern_store::QueueEntry;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeKind {
    /// `remote_dsn`: the receiving server announced DSN and got our NOTIFY/ORCPT.
    Delivered {
        remote_dsn: bool,
    },
    Temporary,
    Permanent,
}

/// What happened to one recipient.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: OutcomeKind,
    /// The reply (`550 5.1.1 ...`) or our own explanation, for logs, the queue and DSNs.
    pub text: String,
    /// Enhanced status code for a DSN.
    pub status: String,
    pub remote_mta: Option<String>,
    pub tls: Option<String>,
}

impl Outcome {
    pub fn permanent(text: &str, mta: Option<String>) -> Outcome {
        Outcome {
            kind: OutcomeKind::Permanent,
            status: status_of(text, "5.0.0"),
            text: text.to_string(),
            remote_mta: mta,
            tls: None,
        }
    }

    /// Accepted by the next hop, which does not take over DSN duty.
    pub fn delivered(text: &str, mta: Option<String>) -> Outcome {
        Outcome {
            kind: OutcomeKind::Delivered { remote_dsn: false },
            status: status_of(text, "2.0.0"),
            text: text.to_string(),
            remote_mta: mta,
            tls: None,
        }
    }

    pub fn temporary(text: &str, mta: Option<String>) -> Outcome {
        Outcome {
            kind: OutcomeKind::Temporary,
            status: status_of(text, "4.0.0"),
            text: text.to_string(),
            remote_mta: mta,
            tls: None,
        }
    }

    fn from_reply(reply: &Reply, mta: &str, tls: Option<String>, remote_dsn: bool) -> Outcome {
        let kind = match reply.code / 100 {
            2 => OutcomeKind::Delivered { remote_dsn },
            5 => OutcomeKind::Permanent,
            _ => OutcomeKind::Temporary,
        };
        let status = match reply.enhanced {
            Some(e) => e.to_string(),
            None => format!("{}.0.0", reply.code / 100),
        };
        let text = format!("{} {}", reply.code, reply.lines.join(" ")).trim().to_string();
        let text = match reply.enhanced {
            Some(e) => format!("{} {e} {}", reply.code, reply.lines.join(" ")),
            None => text,
        };
        Outcome { kind, text, status, remote_mta: Some(mta.to_string()), tls }
    }
}

/// `x.y.z` from a text that starts with `ddd x.y.z`, else `default`.
fn status_of(text: &str, default: &str) -> String {
    text.split_whitespace()
        .nth(1)
        .filter(|t| t.split('.').count() == 3 && t.split('.').all(|p| p.parse::<u16>().is_ok()))
        .unwrap_or(default)
        .to_string()
}

/// The message without the `Return-Path:` fields on top: they belong to final delivery
/// (RFC 5321 §4.4), and local copies of the same message carry one.
pub fn without_return_path(mut raw: &[u8]) -> &[u8] {
    const NAME: &[u8] = b"return-path:";
    while raw.len() > NAME.len() && raw[..NAME.len()].eq_ignore_ascii_case(NAME) {
        // The field ends at a line end not followed by folding white space.
        let mut end = raw.len();
        let mut i = 0;
        while let Some(pos) = raw[i..].iter().position(|&b| b == b'\n') {
            let next = i + pos + 1;
            if !matches!(raw.get(next), Some(b' ' | b'\t')) {
                end = next;
                break;
            }
            i = next;
        }
        raw = &raw[end..];
    }
    raw
}

/// What TLS the connection must have.
#[derive(Debug, Clone)]
enum TlsRequirement {
    Opportunistic,
    /// A certificate valid for the host name (MTA-STS enforce, REQUIRETLS, smarthost).
    Verified {
        why: &'static str,
    },
    Dane(Vec<Tlsa>),
    None,
}

impl TlsRequirement {
    fn satisfied_by(&self, client: &SmtpClient) -> bool {
        match self {
            TlsRequirement::Opportunistic | TlsRequirement::None => true,
            TlsRequirement::Verified { .. } => client.tls.as_ref().is_some_and(|t| t.verification != "unverified"),
            TlsRequirement::Dane(_) => client.tls.as_ref().is_some_and(|t| t.verification == "dane"),
        }
    }
}

pub(crate) async fn deliver(
    service: &DeliveryService,
    entry: &QueueEntry,
    raw: &Arc<Vec<u8>>,
    domain: &str,
    pool_key: &str,
    indices: &[usize],
) -> Vec<(usize, Outcome)> {
    let all = |o: Outcome| indices.iter().map(|&i| (i, o.clone())).collect::<Vec<_>>();
    let requiretls = entry.message.envelope.requiretls;

    // Checks that need no connection.
    let needs_utf8 = entry.message.envelope.mail_from.as_deref().is_some_and(|a| !a.is_ascii())
        || indices.iter().any(|&i| entry.recipients.get(i).is_some_and(|r| !r.address.is_ascii()));

    let Route { hosts, sts_enforced: enforce } = match route(service, domain).await {
        Ok(route) => route,
        Err(outcome) => return all(outcome),
    };

    let mut last = Outcome::temporary("451 4.4.1 No MX host could be reached", None);
    let mut requiretls_refusals = 0;
    for (host, port) in &hosts {
        let requirement = match tls_requirement(service, host, *port, enforce, requiretls).await {
            Ok(requirement) => requirement,
            Err(outcome) => {
                last = outcome;
                continue;
            }
        };

        // A connection kept from the previous message, if it meets the requirement.
        let mut reused = None;
        while let Some(client) = service.take_idle(pool_key) {
            if client.host == *host && requirement.satisfied_by(&client) {
                reused = Some(client);
                break;
            }
            tokio::spawn(client.quit());
        }
        if let Some(client) = reused {
            match transact(service, client, entry, raw, indices, needs_utf8, requiretls).await {
                Ok((outcomes, client)) => {
                    if let Some(c) = client {
                        service.put_idle(pool_key, c);
                    }
                    return outcomes;
                }
                Err(e) => tracing::debug!(host, error = %e, "reused connection failed; opening a new one"),
            }
        }

        let ips: Vec<IpAddr> = match service.dns.ips(host).await {
            Ok(ips) if !ips.is_empty() => ips,
            Ok(_) | Err(DnsError::NoSuchDomain(_)) => {
                last = Outcome::temporary(&format!("451 4.4.4 MX host {host} has no address"), None);
                continue;
            }
            Err(DnsError::Temporary(e)) => {
                last = Outcome::temporary(&format!("451 4.4.3 {e}"), None);
                continue;
            }
        };
        for ip in ips.into_iter().take(4) {
            let peer = SocketAddr::new(ip, *port);
            let client = match open(service, peer, host, &requirement).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::info!(host, %peer, error = %e, "connection failed");
                    last = match e.reply() {
                        Some(r) => Outcome::from_reply(r, host, None, false),
                        None => Outcome::temporary(&format!("451 4.4.1 {host}[{ip}]: {e}"), Some(host.clone())),
                    };
                    // A 5xx greeting is about this host, not about the recipients.
                    if last.kind == OutcomeKind::Permanent {
                        last.kind = OutcomeKind::Temporary;
                    }
                    continue;
                }
            };
            if requiretls && !client.caps.requiretls {
                // RFC 8689 §4.2.1: only to a server that promises to keep requiring TLS.
                requiretls_refusals += 1;
                last =
                    Outcome::temporary(&format!("451 4.7.30 {host} does not support REQUIRETLS"), Some(host.clone()));
                tokio::spawn(client.quit());
                break;
            }
            match transact(service, client, entry, raw, indices, needs_utf8, requiretls).await {
                Ok((outcomes, client)) => {
                    if let Some(c) = client {
                        service.put_idle(pool_key, c);
                    }
                    return outcomes;
                }
                Err(e) => {
                    tracing::info!(host, %peer, error = %e, "transaction failed");
                    last = Outcome::temporary(&format!("451 4.4.2 {host}[{ip}]: {e}"), Some(host.clone()));
                }
            }
        }
    }
    if requiretls && requiretls_refusals == hosts.len() && !hosts.is_empty() {
        return all(Outcome::permanent(
            "550 5.7.30 REQUIRETLS support required by the sender; no MX host offers it",
            None,
        ));
    }
    all(last)
}

/// Where mail for a domain goes, and whether an enforced MTA-STS policy chose the hosts.
struct Route {
    hosts: Vec<(String, u16)>,
    sts_enforced: bool,
}

/// The smarthost, or the domain's MX hosts (null MX bounces at once, RFC 7505 §4.2),
/// narrowed by an enforced MTA-STS policy (RFC 8461 §4.2). The error is every recipient's
/// outcome.
async fn route(service: &DeliveryService, domain: &str) -> Result<Route, Outcome> {
    let s = &service.settings;
    let hosts: Vec<(String, u16)> = match &s.smarthost {
        Some(sh) => vec![(sh.host.clone(), sh.port)],
        None => {
            let ascii_domain = match idna::domain_to_ascii(domain) {
                Ok(d) if !d.is_empty() => d,
                _ => return Err(Outcome::permanent(&format!("550 5.1.2 Bad destination domain {domain:?}"), None)),
            };
            match service.dns.mx(&ascii_domain).await {
                Ok(MxAnswer::Null) => {
                    return Err(Outcome::permanent(
                        &format!("556 5.1.10 Domain {domain} does not accept mail (null MX, RFC 7505)"),
                        None,
                    ));
                }
                Ok(MxAnswer::Hosts(list)) => list.into_iter().take(s.max_mx_hosts).map(|h| (h, s.smtp_port)).collect(),
                Err(DnsError::NoSuchDomain(_)) => {
                    return Err(Outcome::permanent(&format!("550 5.1.2 Domain {domain} does not exist"), None));
                }
                Err(DnsError::Temporary(e)) => return Err(Outcome::temporary(&format!("451 4.4.3 {e}"), None)),
            }
        }
    };

    // MTA-STS (not for a smarthost: the policy is about the domain's own MX hosts).
    let policy = if s.mta_sts && s.smarthost.is_none() {
        service.mta_sts.policy(&service.dns, &idna::domain_to_ascii(domain).unwrap_or_default()).await
    } else {
        None
    };
    let enforce = policy.as_ref().is_some_and(|p| p.mode == Mode::Enforce);
    let hosts: Vec<(String, u16)> = match &policy {
        Some(p) if enforce => {
            let allowed: Vec<(String, u16)> = hosts.iter().filter(|(h, _)| p.allows(h)).cloned().collect();
            if allowed.is_empty() {
                tracing::warn!(domain, "MTA-STS: no MX host matches the enforced policy");
                return Err(Outcome::temporary(
                    &format!("451 4.7.5 MTA-STS policy of {domain} allows none of its MX hosts"),
                    None,
                ));
            }
            allowed
        }
        _ => hosts,
    };
    Ok(Route { hosts, sts_enforced: enforce })
}

/// The TLS `host` must offer: verified for a smarthost, DANE where DNSSEC-secure TLSA records
/// exist (RFC 7672), else verified under an enforced MTA-STS policy or REQUIRETLS (RFC 8689),
/// else opportunistic. The error is the outcome of this host.
async fn tls_requirement(
    service: &DeliveryService,
    host: &str,
    port: u16,
    sts_enforced: bool,
    requiretls: bool,
) -> Result<TlsRequirement, Outcome> {
    let s = &service.settings;
    let requirement = if let Some(sh) = &s.smarthost {
        match sh.security {
            SmarthostSecurity::None => TlsRequirement::None,
            _ => TlsRequirement::Verified { why: "smarthost" },
        }
    } else {
        let dane = if s.dane {
            match service.dns.tlsa(&format!("_{port}._tcp.{host}")).await {
                Ok(Some(records)) => {
                    let usable: Vec<Tlsa> = records.into_iter().filter(|r| matches!(r.usage, 2 | 3)).collect();
                    (!usable.is_empty()).then_some(usable)
                }
                Ok(None) => None,
                Err(e) => {
                    // A failed TLSA lookup for a signed zone must not downgrade to no DANE.
                    return Err(Outcome::temporary(&format!("451 4.7.5 TLSA lookup for {host} failed: {e}"), None));
                }
            }
        } else {
            None
        };
        match dane {
            Some(records) => TlsRequirement::Dane(records),
            None if sts_enforced => TlsRequirement::Verified { why: "MTA-STS" },
            None if requiretls => TlsRequirement::Verified { why: "REQUIRETLS" },
            None => TlsRequirement::Opportunistic,
        }
    };
    Ok(requirement)
}

/// Connects, greets, and sets up TLS as required.
async fn open(
    service: &DeliveryService,
    peer: SocketAddr,
    host: &str,
    requirement: &TlsRequirement,
) -> Result<SmtpClient, ClientError> {
    let s = &service.settings;
    let implicit = s.smarthost.as_ref().is_some_and(|sh| sh.security == SmarthostSecurity::Tls);
    let server_name =
        || ServerName::try_from(host.to_string()).map_err(|e| ClientError::Tls(format!("bad server name {host}: {e}")));
    let mut client = if implicit {
        let mut c = SmtpClient::connect_raw(peer, host, s.connect_timeout, s.command_timeout).await?;
        c.handshake(Arc::clone(&service.tls.verified), server_name()?, "verified").await?;
        c.read_greeting().await?;
        c
    } else {
        SmtpClient::connect(peer, host, s.connect_timeout, s.command_timeout).await?
    };
    client.ehlo(&s.ehlo_name).await?;
    if !implicit {
        match requirement {
            TlsRequirement::None => {}
            TlsRequirement::Opportunistic => {
                if client.caps.starttls {
                    if let Err(e) =
                        client.starttls(Arc::clone(&service.tls.opportunistic), server_name()?, "unverified").await
                    {
                        // RFC 7435: opportunistic TLS that fails falls back to cleartext.
                        tracing::info!(host, %peer, error = %e, "STARTTLS failed; retrying without TLS");
                        client = SmtpClient::connect(peer, host, s.connect_timeout, s.command_timeout).await?;
                        client.ehlo(&s.ehlo_name).await?;
                        return Ok(client);
                    }
                    client.ehlo(&s.ehlo_name).await?;
                }
            }
            TlsRequirement::Verified { why } => {
                if !client.caps.starttls {
                    return Err(ClientError::Tls(format!("{why} requires TLS but {host} does not offer STARTTLS")));
                }
                client
                    .starttls(Arc::clone(&service.tls.verified), server_name()?, "verified")
                    .await
                    .map_err(|e| ClientError::Tls(format!("{why}: {e}")))?;
                client.ehlo(&s.ehlo_name).await?;
            }
            TlsRequirement::Dane(records) => {
                if !client.caps.starttls {
                    return Err(ClientError::Tls(format!("DANE requires TLS but {host} does not offer STARTTLS")));
                }
                let config = service.tls.dane(records.clone(), host).map_err(|e| ClientError::Tls(e.to_string()))?;
                client
                    .starttls(config, server_name()?, "dane")
                    .await
                    .map_err(|e| ClientError::Tls(format!("DANE: {e}")))?;
                client.ehlo(&s.ehlo_name).await?;
            }
        }
    } else {
        client.ehlo(&s.ehlo_name).await?;
    }
    if let Some(sh) = &s.smarthost
        && let (Some(user), Some(password)) = (&sh.username, &sh.password)
    {
        client.auth_plain(user, password).await?;
    }
    if let Some(tls) = &client.tls {
        tracing::debug!(host, %peer, tls = %tls, "connected");
    }
    Ok(client)
}

/// Runs the transaction; gives the connection back when it can be used again.
async fn transact(
    service: &DeliveryService,
    mut client: SmtpClient,
    entry: &QueueEntry,
    raw: &Arc<Vec<u8>>,
    indices: &[usize],
    needs_utf8: bool,
    requiretls: bool,
) -> Result<(Vec<(usize, Outcome)>, Option<SmtpClient>), ClientError> {
    let host = client.host.clone();
    let tls_text = client.tls.as_ref().map(|t| t.to_string());
    let all = |o: Outcome| indices.iter().map(|&i| (i, o.clone())).collect::<Vec<_>>();
    let caps = client.caps.clone();
    let env = &entry.message.envelope;
    let size = raw.len() as u64;
    if let Some(limit) = caps.size
        && limit > 0
        && size > limit
    {
        let text = format!("552 5.3.4 Message of {size} bytes exceeds the {limit} bytes {host} accepts");
        return Ok((all(Outcome::permanent(&text, Some(host))), Some(client)));
    }
    let eight_bit = env.body == Some(tern_smtp_proto::Body::EightBitMime) || raw.iter().any(|&b| b >= 0x80);
    if eight_bit && !caps.eight_bit_mime && !needs_utf8 {
        // RFC 6152 §3: 8-bit data only to a server that announced 8BITMIME; Tern does not
        // convert to 7 bit, so the message goes back to the sender.
        let text = format!("554 5.6.3 {host} does not accept 8-bit data (no 8BITMIME) and conversion is not supported");
        return Ok((all(Outcome::permanent(&text, Some(host))), Some(client)));
    }
    if needs_utf8 && !caps.smtputf8 {
        // RFC 6531 §3.4: internationalized addresses cannot be downgraded.
        let text = format!("553 5.6.7 {host} does not support SMTPUTF8, required by the addresses");
        return Ok((all(Outcome::permanent(&text, Some(host))), Some(client)));
    }
    let mut mail_params = Vec::new();
    if caps.size.is_some() {
        mail_params.push(format!("SIZE={size}"));
    }
    if eight_bit && caps.eight_bit_mime {
        mail_params.push("BODY=8BITMIME".into());
    }
    if needs_utf8 || (env.smtputf8 && caps.smtputf8) {
        mail_params.push("SMTPUTF8".into());
    }
    if caps.dsn {
        if let Some(ret) = env.ret {
            mail_params.push(format!("RET={}", ret.keyword()));
        }
        if let Some(envid) = &env.envid {
            mail_params.push(format!("ENVID={}", tern_smtp_proto::xtext::encode(envid)));
        }
    }
    if requiretls && caps.requiretls {
        mail_params.push("REQUIRETLS".into());
    }
    let recipients = indices
        .iter()
        .filter_map(|&i| {
            let r = entry.recipients.get(i)?;
            let mut params = Vec::new();
            if caps.dsn {
                if let Some(n) = r.notify {
                    params.push(format!("NOTIFY={}", n.keyword()));
                }
                if let Some((kind, addr)) = &r.orcpt {
                    params.push(format!("ORCPT={kind};{}", tern_smtp_proto::xtext::encode(addr)));
                }
            }
            Some((i, r.address.clone(), params))
        })
        .collect();
    let envelope = Envelope {
        mail_from: env.mail_from.as_deref().unwrap_or(""),
        mail_params,
        recipients,
        message: without_return_path(raw),
    };
    let result = client.transaction(&envelope).await?;
    let mut outcomes = Vec::new();
    for r in &result.rcpts {
        let outcome = if r.reply.code / 100 != 2 {
            Outcome::from_reply(&r.reply, &host, tls_text.clone(), caps.dsn)
        } else {
            match &result.data {
                Some(data) => Outcome::from_reply(data, &host, tls_text.clone(), caps.dsn),
                None => Outcome::temporary("451 4.4.2 No reply to the message data", Some(host.clone())),
            }
        };
        outcomes.push((r.index, outcome));
    }
    // After a refused DATA the server expects RSET before another transaction.
    if result.data.as_ref().is_some_and(|d| d.code / 100 != 2) && client.reset().await.is_err() {
        return Ok((outcomes, None));
    }
    let _ = service;
    Ok((outcomes, Some(client)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_path_is_removed_from_the_top_only() {
        assert_eq!(without_return_path(b"Return-Path: <a@b>\r\nSubject: x\r\n\r\nbody"), b"Subject: x\r\n\r\nbody");
        assert_eq!(
            without_return_path(b"return-path:\r\n <a@b>\r\nReturn-Path: <c@d>\r\nX: y\r\n\r\n"),
            b"X: y\r\n\r\n"
        );
        let inner = b"Subject: x\r\nReturn-Path: <a@b>\r\n\r\n";
        assert_eq!(without_return_path(inner), inner);
        assert_eq!(status_of("550 5.1.1 no such user", "5.0.0"), "5.1.1");
        assert_eq!(status_of("550 no such user", "5.0.0"), "5.0.0");
    }
}
