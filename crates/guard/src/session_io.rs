//! The bounded I/O of a line-based session (POP3, ManageSieve): buffered input read under the
//! session's [`Deadlines`] and the server's shutdown, buffered output written under a write
//! timeout. The session keeps what is its own: the words it says when time runs out or the
//! server stops, and what a line means.

use crate::Deadlines;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Why no more input will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEnd {
    /// The client closed the connection, or it failed (a write, too).
    Closed,
    /// The client was idle (or too slow) past its deadline.
    TimedOut,
    /// The server is shutting down.
    Shutdown,
}

/// A line longer than allowed; it was dropped up to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

/// Output larger than this is given back to the allocator after a flush.
const KEEP_OUT: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;

pub struct SessionIo<C> {
    pub conn: C,
    /// Read but not yet taken.
    pub inbuf: Vec<u8>,
    /// To be written at the next [`SessionIo::flush`].
    pub out: Vec<u8>,
    pub deadlines: Deadlines,
    write_timeout: Duration,
    shutdown: CancellationToken,
}

impl<C: AsyncRead + AsyncWrite + Unpin> SessionIo<C> {
    pub fn new(conn: C, deadlines: Deadlines, write_timeout: Duration, shutdown: CancellationToken) -> SessionIo<C> {
        SessionIo { conn, inbuf: Vec::new(), out: Vec::new(), deadlines, write_timeout, shutdown }
    }

    /// Writes what is buffered; a client that does not read within the write timeout fails.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = tokio::time::timeout(self.write_timeout, async {
            self.conn.write_all(&self.out).await?;
            self.conn.flush().await
        })
        .await;
        self.out.clear();
        if self.out.capacity() > 16 * KEEP_OUT {
            self.out.shrink_to(KEEP_OUT);
        }
        result.map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timeout"))?
    }

    /// Flushes, then reads more input into [`SessionIo::inbuf`].
    pub async fn fill(&mut self) -> Result<usize, InputEnd> {
        if self.flush().await.is_err() {
            return Err(InputEnd::Closed);
        }
        let mut chunk = [0u8; READ_CHUNK];
        let shutdown = self.shutdown.clone();
        let read = self.deadlines.read(self.conn.read(&mut chunk));
        let r = tokio::select! {
            r = read => r,
            _ = shutdown.cancelled() => return Err(InputEnd::Shutdown),
        };
        match r {
            Ok(Ok(n)) if n > 0 => {
                self.deadlines.received(n);
                self.inbuf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(_) => Err(InputEnd::TimedOut),
            _ => Err(InputEnd::Closed),
        }
    }

    /// The next complete line in the buffer, without its line ending (pure: no I/O).
    pub fn take_line(&mut self, max: usize) -> Option<Result<Vec<u8>, LineTooLong>> {
        let lf = self.inbuf.iter().position(|&b| b == b'\n')?;
        let mut line: Vec<u8> = self.inbuf.drain(..=lf).collect();
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(if line.len() > max { Err(LineTooLong) } else { Ok(line) })
    }

    /// The next line, reading as needed; a line over `max` bytes is dropped up to its end
    /// without being held in memory, and reported.
    pub async fn next_line(&mut self, max: usize) -> Result<Result<Vec<u8>, LineTooLong>, InputEnd> {
        loop {
            if let Some(line) = self.take_line(max) {
                return Ok(line);
            }
            if self.inbuf.len() > max {
                self.inbuf.clear();
                loop {
                    self.fill().await?;
                    if let Some(lf) = self.inbuf.iter().position(|&b| b == b'\n') {
                        self.inbuf.drain(..=lf);
                        return Ok(Err(LineTooLong));
                    }
                    self.inbuf.clear();
                }
            }
            self.fill().await?;
        }
    }

    /// Drops `n` bytes of input (a refused literal), reading what has not arrived yet, then
    /// the rest of that line.
    pub async fn discard(&mut self, mut n: usize) -> Result<(), InputEnd> {
        loop {
            let here = n.min(self.inbuf.len());
            self.inbuf.drain(..here);
            n -= here;
            if n == 0 {
                loop {
                    if let Some(lf) = self.inbuf.iter().position(|&b| b == b'\n') {
                        self.inbuf.drain(..=lf);
                        return Ok(());
                    }
                    self.inbuf.clear();
                    self.fill().await?;
                }
            }
            self.fill().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn session(conn: tokio::io::DuplexStream) -> SessionIo<tokio::io::DuplexStream> {
        let deadlines = Deadlines::new(Duration::from_secs(60), None);
        SessionIo::new(conn, deadlines, Duration::from_secs(5), CancellationToken::new())
    }

    #[tokio::test]
    async fn lines_long_lines_and_literals() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut io = session(server);
        let long = "x".repeat(100_000);
        client
            .write_all(format!("USER a\r\nbare lf\n{long}\r\nafter\r\n12345rest of line\r\nlast\r\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(io.next_line(1000).await, Ok(Ok(b"USER a".to_vec())));
        assert_eq!(io.next_line(1000).await, Ok(Ok(b"bare lf".to_vec())));
        assert_eq!(io.next_line(1000).await, Ok(Err(LineTooLong)));
        assert!(io.inbuf.len() < 100_000, "the long line is not kept");
        assert_eq!(io.next_line(1000).await, Ok(Ok(b"after".to_vec())));
        io.discard(5).await.unwrap();
        assert_eq!(io.next_line(1000).await, Ok(Ok(b"last".to_vec())));
        io.out.extend_from_slice(b"+OK bye\r\n");
        drop(client);
        assert_eq!(io.next_line(1000).await, Err(InputEnd::Closed), "a write to a closed peer, then no input");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_clients_time_out_and_shutdown_ends_the_wait() {
        let (_client, server) = tokio::io::duplex(1024);
        let mut io = session(server);
        assert_eq!(io.fill().await, Err(InputEnd::TimedOut));
        let (_client, server) = tokio::io::duplex(1024);
        let mut io = session(server);
        io.shutdown.cancel();
        assert_eq!(io.fill().await, Err(InputEnd::Shutdown));
    }
}
