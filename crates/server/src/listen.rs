//! Binding listening sockets.

use std::net::SocketAddr;
use tern_config::{Listen, Service};

/// Binds one address: IPv6 sockets are v6-only so `0.0.0.0` and `[::]` can both be bound.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Binds every address of a service. A default IPv6 wildcard on a host without IPv6 is
/// skipped with a warning; any other failure is an error naming the config key.
pub fn bind_service(listen: &Listen, service: Service) -> anyhow::Result<Vec<tokio::net::TcpListener>> {
    let mut out = Vec::new();
    for addr in listen.addrs(service) {
        match bind(*addr) {
            Ok(l) => out.push(l),
            Err(e) if addr.is_ipv6() && Listen::is_default_wildcard(service, addr) && e.raw_os_error() == Some(97) => {
                tracing::warn!(%addr, "IPv6 is not available here; not listening on {addr}");
            }
            Err(e) => {
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    " (ports below 1024 need root or CAP_NET_BIND_SERVICE; try `tern serve --dev`)"
                } else {
                    ""
                };
                anyhow::bail!("cannot listen on {addr} (config key listen.{}): {e}{hint}", service.name());
            }
        }
    }
    Ok(out)
}
