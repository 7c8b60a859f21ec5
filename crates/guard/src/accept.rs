//! The accept loop every listener runs.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts connections on `listener` until `shutdown`, each (with `TCP_NODELAY`) handed to
/// `session` and run on `tracker`. A failed accept (EMFILE and friends) backs off for 100 ms
/// instead of spinning.
pub async fn accept_until_shutdown<F, Fut>(
    listener: &TcpListener,
    service: &'static str,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
    mut session: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tracker.spawn(session(stream, peer));
            }
            Err(e) => {
                tracing::warn!(service, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
