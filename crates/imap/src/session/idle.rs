//! IDLE (RFC 2177): changes are pushed as they are committed; a keepalive keeps NAT state.

use super::{Done, Session};
use tern_store::StoreError;

impl Session {
    pub(super) async fn idle(&mut self, _tag: &str) -> Result<Done, StoreError> {
        self.line("+ idling");
        let keepalive = self.server.settings.idle_keepalive;
        let shutdown = self.server.shutdown.clone();
        loop {
            self.report_changes(true, false).await?;
            if self.closing {
                return Ok(Done::ok("IDLE terminated"));
            }
            if self.flush().await.is_err() {
                self.closing = true;
                return Ok(Done::ok("IDLE terminated"));
            }
            let signal = self.state.view().map(|v| std::sync::Arc::clone(&v.signal));
            let seen = self.state.view().map(|v| v.seen_version).unwrap_or(0);
            let notified = async {
                match &signal {
                    Some(s) => {
                        let n = s.notified();
                        tokio::pin!(n);
                        n.as_mut().enable();
                        if s.version() != seen {
                            return;
                        }
                        n.await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                line = self.read_line() => match line {
                    Ok(line) if line.eq_ignore_ascii_case(b"DONE") => return Ok(Done::ok("IDLE terminated")),
                    Ok(_) => return Ok(Done::bad("Expected DONE")),
                    Err(bye) => {
                        if let Some(bye) = bye {
                            self.untagged(&bye);
                        }
                        self.closing = true;
                        return Ok(Done::ok("IDLE terminated"));
                    }
                },
                _ = notified => {}
                _ = tokio::time::sleep(keepalive) => self.untagged("OK Still here"),
                _ = shutdown.cancelled() => {
                    self.untagged("BYE [UNAVAILABLE] Server shutting down");
                    self.closing = true;
                    return Ok(Done::ok("IDLE terminated"));
                }
            }
        }
    }
}
