//! Anti-abuse checks of port 25 for clients outside the trusted networks: bans, connection and
//! message rates, DNS blocklists, early talkers, directory harvesting, greylisting.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tern_guard::{AuthGuard, Greylist, RateLimiter};
use tern_smtp_proto::Reply;

/// Window for counting unknown recipients.
const HARVEST_WINDOW: Duration = Duration::from_secs(600);
const DNSBL_TIMEOUT: Duration = Duration::from_secs(5);

pub struct InboundChecks {
    settings: tern_config::Inbound,
    hostname: String,
    guard: Arc<AuthGuard>,
    connections: RateLimiter<IpAddr>,
    messages_by_ip: RateLimiter<IpAddr>,
    messages_by_domain: RateLimiter<String>,
    unknown_recipients: RateLimiter<IpAddr>,
    greylist: Option<Greylist>,
    resolver: Option<tern_dns::Dns>,
}

fn reply(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Reply {
    Reply::new(code, enhanced, text)
}

impl InboundChecks {
    pub fn new(config: &tern_config::Config, guard: Arc<AuthGuard>, resolver: Option<tern_dns::Dns>) -> InboundChecks {
        let s = config.inbound.clone();
        InboundChecks {
            greylist: s.greylisting.then(|| Greylist::new(Duration::from_secs(s.greylist_delay_seconds))),
            settings: s,
            hostname: config.hostname.clone(),
            guard,
            connections: RateLimiter::new(Duration::from_secs(60)),
            messages_by_ip: RateLimiter::new(Duration::from_secs(60)),
            messages_by_domain: RateLimiter::new(Duration::from_secs(60)),
            unknown_recipients: RateLimiter::new(HARVEST_WINDOW),
            resolver,
        }
    }

    /// Tells the other nodes of a cluster what the rate limiters and the greylist count.
    pub fn share(&self, outbox: tern_guard::Outbox) {
        self.connections.share("connections", Arc::clone(&outbox));
        self.messages_by_ip.share("messages_by_ip", Arc::clone(&outbox));
        self.messages_by_domain.share("messages_by_domain", Arc::clone(&outbox));
        self.unknown_recipients.share("unknown_recipients", Arc::clone(&outbox));
        if let Some(g) = &self.greylist {
            g.share(outbox);
        }
    }

    /// Takes in what another node's limiters and greylist counted; returns whether the event
    /// was theirs.
    pub fn apply(&self, event: &tern_guard::GuardEvent) -> bool {
        if let tern_guard::GuardEvent::Hits { limiter, key, count } = event {
            let ip = || key.parse::<IpAddr>().ok();
            match limiter.as_str() {
                "connections" => ip().into_iter().for_each(|ip| self.connections.apply(&ip, *count)),
                "messages_by_ip" => ip().into_iter().for_each(|ip| self.messages_by_ip.apply(&ip, *count)),
                "messages_by_domain" => self.messages_by_domain.apply(key, *count),
                "unknown_recipients" => ip().into_iter().for_each(|ip| self.unknown_recipients.apply(&ip, *count)),
                _ => return false,
            }
            return true;
        }
        self.greylist.as_ref().is_some_and(|g| g.apply(event))
    }

    /// Whether the checks apply to this client at all.
    pub fn applies(&self, ip: IpAddr) -> bool {
        !self.guard.is_exempt(ip)
    }

    /// Before the greeting: connection rate, blocklists, early talkers. `Err` is the
    /// reply to send before closing; `Ok` carries the blocklists that list the client (when
    /// they only tag).
    pub async fn at_connect(&self, stream: &tokio::net::TcpStream, peer: SocketAddr) -> Result<Vec<String>, Reply> {
        // Bans are checked before, at the gate every listener shares (tern_guard::admit).
        let ip = peer.ip();
        let host = &self.hostname;
        if !self.connections.allow(&ip, self.settings.max_connections_per_minute_per_ip) {
            metrics::counter!("tern_smtp_connections_refused_total", "service" => "smtp", "reason" => "rate")
                .increment(1);
            tracing::info!(client = %peer, "connection rate exceeded");
            return Err(reply(421, (4, 7, 0), format!("{host} Too many connections from your address, slow down")));
        }
        let listed = self.dnsbl(ip).await;
        if !listed.is_empty() && self.settings.dnsbl_action == tern_config::DnsblAction::Reject {
            metrics::counter!("tern_smtp_connections_refused_total", "service" => "smtp", "reason" => "dnsbl")
                .increment(1);
            tracing::info!(client = %peer, zones = ?listed, "client listed in DNS blocklists");
            return Err(reply(
                554,
                (5, 7, 1),
                format!("Service unavailable; client [{ip}] blocked using {}", listed[0]),
            ));
        }
        if self.settings.greet_pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.settings.greet_pause_ms)).await;
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                Ok(n) if n > 0 => {
                    metrics::counter!("tern_smtp_connections_refused_total", "service" => "smtp", "reason" => "early_talker").increment(1);
                    tracing::info!(client = %peer, "client talked before the greeting");
                    return Err(reply(554, (5, 5, 1), "Protocol error: you talked before the greeting"));
                }
                _ => {}
            }
        }
        Ok(listed)
    }

    /// Zones that list `ip` (A record under the reversed address, RFC 5782 §2.1).
    async fn dnsbl(&self, ip: IpAddr) -> Vec<String> {
        let Some(resolver) = &self.resolver else { return Vec::new() };
        if self.settings.dnsbl_zones.is_empty() {
            return Vec::new();
        }
        let reversed = tern_dns::reverse_labels(ip);
        let lookups = self.settings.dnsbl_zones.iter().map(|zone| {
            let name = format!("{reversed}.{zone}");
            async move {
                match tokio::time::timeout(DNSBL_TIMEOUT, resolver.a(&name)).await {
                    // RFC 5782 §2.1: listed entries return 127.0.0.x.
                    Ok(Ok(addresses)) => addresses.iter().any(|a| a.octets()[0] == 127),
                    _ => false,
                }
                .then(|| zone.clone())
            }
        });
        futures::future::join_all(lookups).await.into_iter().flatten().collect()
    }

    /// At MAIL: message rates per client and per sender domain.
    pub fn at_mail(&self, ip: IpAddr, sender_domain: Option<&str>) -> Option<Reply> {
        if !self.messages_by_ip.allow(&ip, self.settings.max_messages_per_minute_per_ip) {
            tracing::info!(client = %ip, "message rate exceeded");
            return Some(reply(451, (4, 7, 1), "Too many messages from your address, slow down"));
        }
        if let Some(domain) = sender_domain
            && !self
                .messages_by_domain
                .allow(&domain.to_ascii_lowercase(), self.settings.max_messages_per_minute_per_sender_domain)
        {
            tracing::info!(client = %ip, domain, "sender domain rate exceeded");
            return Some(reply(451, (4, 7, 1), "Too many messages from your domain, slow down"));
        }
        None
    }

    /// After an unknown recipient: true when the client has now tried too many (harvesting)
    /// and is banned.
    pub fn unknown_recipient(&self, ip: IpAddr) -> bool {
        let max = self.settings.max_unknown_recipients_per_ip;
        if max == 0 {
            return false;
        }
        if self.unknown_recipients.hit(&ip) > max {
            self.guard.ban(ip, "harvest");
            return true;
        }
        false
    }

    /// At an accepted RCPT: the greylist's answer (`Some` = come back later).
    pub fn greylist(&self, ip: IpAddr, sender: &str, recipient: &str) -> Option<Reply> {
        let g = self.greylist.as_ref()?;
        if g.check(&tern_guard::greylist_network(ip), sender, recipient) {
            return None;
        }
        metrics::counter!("tern_smtp_recipients_refused_total", "reason" => "greylist").increment(1);
        Some(reply(451, (4, 7, 1), "Greylisted, please try again later"))
    }
}
