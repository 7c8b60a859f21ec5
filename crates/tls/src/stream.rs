//! A connection that starts in plaintext and may become TLS (STARTTLS) or start as TLS, and
//! may later be wrapped (IMAP COMPRESS=DEFLATE).

use crate::TlsStream;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Any byte stream a session can talk over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

pub enum Stream<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
    /// A layer over the connection (compression); TLS facts are kept in `tls`.
    Wrapped {
        inner: Box<dyn Io>,
        tls: Option<(String, String)>,
    },
    /// Only while the TLS handshake or a wrapping owns the socket.
    Upgrading,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> Stream<S> {
    pub fn is_tls(&self) -> bool {
        match self {
            Stream::Tls(_) => true,
            Stream::Wrapped { tls, .. } => tls.is_some(),
            _ => false,
        }
    }

    /// TLS version and cipher, if this is a TLS stream.
    pub fn tls_info(&self) -> Option<(String, String)> {
        match self {
            Stream::Tls(t) => Some(crate::session_info(t.get_ref().1)),
            Stream::Wrapped { tls, .. } => tls.clone(),
            _ => None,
        }
    }

    /// The `tls-exporter` channel binding of the session (RFC 9266), for SCRAM-*-PLUS; `None`
    /// without TLS 1.3 (RFC 9266 §3: not defined for TLS 1.2 without extended master secret).
    pub fn tls_exporter(&self) -> Option<Vec<u8>> {
        match self {
            Stream::Tls(t) => {
                let conn = t.get_ref().1;
                if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
                    return None;
                }
                let mut out = vec![0u8; 32];
                conn.export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None).ok()?;
                Some(out)
            }
            _ => None,
        }
    }

    /// Puts a layer over the stream.
    pub fn wrap(&mut self, layer: impl FnOnce(Box<dyn Io>) -> Box<dyn Io>) {
        let tls = self.tls_info();
        let inner: Box<dyn Io> = match std::mem::replace(self, Stream::Upgrading) {
            Stream::Plain(s) => Box::new(s),
            Stream::Tls(t) => t,
            Stream::Wrapped { inner, .. } => inner,
            Stream::Upgrading => return,
        };
        *self = Stream::Wrapped { inner: layer(inner), tls };
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream is being upgraded")
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Wrapped { inner, .. } => Pin::new(inner.as_mut()).poll_read(cx, buf),
            Stream::Upgrading => Poll::Ready(Err(closed())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Wrapped { inner, .. } => Pin::new(inner.as_mut()).poll_write(cx, buf),
            Stream::Upgrading => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Wrapped { inner, .. } => Pin::new(inner.as_mut()).poll_flush(cx),
            Stream::Upgrading => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Wrapped { inner, .. } => Pin::new(inner.as_mut()).poll_shutdown(cx),
            Stream::Upgrading => Poll::Ready(Ok(())),
        }
    }
}
