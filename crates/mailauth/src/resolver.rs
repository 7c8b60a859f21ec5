//! The DNS resolver shared by delivery and verification, built from `[dns]`.

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use std::net::SocketAddr;
use std::time::Duration;

/// The resolver and the nameservers it asks (the first one also answers DANE's TLSA queries).
pub fn build(config: &tern_config::Dns) -> Result<(TokioResolver, Vec<SocketAddr>), String> {
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
    opts.timeout = Duration::from_secs(config.timeout_seconds);
    opts.attempts = 2;
    opts.ndots = 0;
    let resolver = Resolver::builder_with_config(resolver_config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
    Ok((resolver, nameservers))
}
