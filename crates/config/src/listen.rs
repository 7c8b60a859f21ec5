use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The protocols Tern listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Smtp,
    Submission,
    Submissions,
    Imap,
    Imaps,
    Pop3,
    Pop3s,
    /// ManageSieve (RFC 5804): users manage their Sieve scripts.
    ManageSieve,
    Http,
    /// HTTP over TLS: the MTA-STS policy (RFC 8461 §3.3 requires HTTPS), autoconfiguration,
    /// and the ACME challenges.
    Https,
    /// Plain HTTP for the world (port 80): ACME HTTP-01 challenges and autoconfiguration.
    PublicHttp,
}

impl Service {
    pub const ALL: [Service; 11] = [
        Service::Smtp,
        Service::Submission,
        Service::Submissions,
        Service::Imap,
        Service::Imaps,
        Service::Pop3,
        Service::Pop3s,
        Service::ManageSieve,
        Service::Http,
        Service::Https,
        Service::PublicHttp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Smtp => "smtp",
            Service::Submission => "submission",
            Service::Submissions => "submissions",
            Service::Imap => "imap",
            Service::Imaps => "imaps",
            Service::Pop3 => "pop3",
            Service::Pop3s => "pop3s",
            Service::ManageSieve => "managesieve",
            Service::Http => "http",
            Service::Https => "https",
            Service::PublicHttp => "public_http",
        }
    }

    /// The standard port (RFC 5321, 6409, 8314, 9051, 1939, 5804) and the `--dev` port.
    pub fn ports(self) -> (u16, u16) {
        match self {
            Service::Smtp => (25, 2525),
            Service::Submission => (587, 2587),
            Service::Submissions => (465, 2465),
            Service::Imap => (143, 1143),
            Service::Imaps => (993, 1993),
            Service::Pop3 => (110, 1110),
            Service::Pop3s => (995, 1995),
            Service::ManageSieve => (4190, 14190),
            Service::Http => (8080, 8080),
            Service::Https => (443, 8443),
            Service::PublicHttp => (80, 8081),
        }
    }
}

/// Listening sockets, one list per service; an empty list turns the service off.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    pub smtp: Vec<SocketAddr>,
    pub submission: Vec<SocketAddr>,
    pub submissions: Vec<SocketAddr>,
    pub imap: Vec<SocketAddr>,
    pub imaps: Vec<SocketAddr>,
    pub pop3: Vec<SocketAddr>,
    pub pop3s: Vec<SocketAddr>,
    pub managesieve: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    pub public_http: Vec<SocketAddr>,
    /// Load balancers (addresses or CIDR networks) whose connections start with a PROXY
    /// header (HAProxy's PROXY protocol, version 1 or 2) naming the client; on every mail
    /// listener. On the HTTP listeners the header is optional, and without one the
    /// requests' `X-Forwarded-For` names the client. Connections from anywhere else are taken
    /// as they are.
    pub proxy_from: Vec<String>,
}

fn any(port: u16) -> Vec<SocketAddr> {
    vec![SocketAddr::from(([0, 0, 0, 0], port)), SocketAddr::from(([0u16; 8], port))]
}

fn loopback(port: u16) -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], port))]
}

impl Default for Listen {
    /// Standard ports on every IPv4 and IPv6 address; HTTP (metrics, health) on loopback only;
    /// no HTTPS (port 443 is often a web server's: `tern setup` writes it into the config it
    /// makes, for MTA-STS and autoconfiguration).
    fn default() -> Self {
        let mut l = Listen::build(|s| any(s.ports().0));
        l.http = loopback(Service::Http.ports().0);
        l.https = Vec::new();
        l.public_http = Vec::new();
        l
    }
}

impl Listen {
    fn build(f: impl Fn(Service) -> Vec<SocketAddr>) -> Listen {
        Listen {
            smtp: f(Service::Smtp),
            submission: f(Service::Submission),
            submissions: f(Service::Submissions),
            imap: f(Service::Imap),
            imaps: f(Service::Imaps),
            pop3: f(Service::Pop3),
            pop3s: f(Service::Pop3s),
            managesieve: f(Service::ManageSieve),
            http: f(Service::Http),
            https: f(Service::Https),
            public_http: f(Service::PublicHttp),
            proxy_from: Vec::new(),
        }
    }

    /// The addresses a service listens on when enabled with its standard port: every IPv4
    /// and IPv6 address.
    pub fn default_addresses(service: Service) -> Vec<SocketAddr> {
        any(service.ports().0)
    }

    /// Every service on 127.0.0.1 at its high `--dev` port.
    pub fn dev() -> Listen {
        Listen::build(|s| loopback(s.ports().1))
    }

    pub fn addrs(&self, service: Service) -> &[SocketAddr] {
        match service {
            Service::Smtp => &self.smtp,
            Service::Submission => &self.submission,
            Service::Submissions => &self.submissions,
            Service::Imap => &self.imap,
            Service::Imaps => &self.imaps,
            Service::Pop3 => &self.pop3,
            Service::Pop3s => &self.pop3s,
            Service::ManageSieve => &self.managesieve,
            Service::Http => &self.http,
            Service::Https => &self.https,
            Service::PublicHttp => &self.public_http,
        }
    }

    /// Whether this is the built-in default address for the service (an IPv6 wildcard default
    /// may be skipped on hosts without IPv6).
    pub fn is_default_wildcard(service: Service, addr: &SocketAddr) -> bool {
        !matches!(service, Service::Http) && any(service.ports().0).contains(addr)
    }
}
