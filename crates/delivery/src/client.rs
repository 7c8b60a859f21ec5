//! The SMTP client: one connection to a remote server, driven command by command.
//!
//! Replies are parsed by `tern_smtp_proto::client`; message data is CRLF-normalized and
//! dot-stuffed there too. Every read has a deadline (RFC 5321 §4.5.3.2).

use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tern_smtp_proto::Reply;
use tern_smtp_proto::client::{Capabilities, ReplyParser, encode_data, normalize_line_ends};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Time for the final reply after the message data (RFC 5321 §4.5.3.2.6: 10 minutes).
const FINAL_REPLY_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection to {0} failed: {1}")]
    Connect(SocketAddr, String),
    #[error("timeout waiting for the server")]
    Timeout,
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The server answered, but not as hoped (greeting, EHLO, STARTTLS, AUTH).
    #[error("{0}")]
    Refused(Reply),
}

impl ClientError {
    /// A reply from the server, if the failure was one.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            ClientError::Refused(r) => Some(r),
            _ => None,
        }
    }
}

/// A TCP stream, plain or with TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Closed,
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Closed => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Closed => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
            Conn::Closed => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Closed => Poll::Ready(Ok(())),
        }
    }
}

/// What TLS a connection ended up with, for logs and the queue's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSummary {
    pub version: String,
    pub cipher: String,
    /// `verified` (certificate checked against the policy), `dane`, or `unverified`.
    pub verification: &'static str,
}

impl std::fmt::Display for TlsSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.version, self.cipher, self.verification)
    }
}

pub struct SmtpClient {
    conn: Conn,
    parser: ReplyParser,
    scratch: Vec<u8>,
    pub peer: SocketAddr,
    /// The host name we connected to (the MX name).
    pub host: String,
    pub caps: Capabilities,
    pub tls: Option<TlsSummary>,
    timeout: Duration,
    /// Transactions run on this connection.
    pub transactions: u32,
}

/// One recipient's answer in a transaction.
#[derive(Debug, Clone)]
pub struct RcptResult {
    pub index: usize,
    pub reply: Reply,
}

/// A transaction to run.
pub struct Envelope<'a> {
    pub mail_from: &'a str,
    /// `MAIL FROM` parameters (SIZE, BODY, SMTPUTF8, RET, ENVID, REQUIRETLS).
    pub mail_params: Vec<String>,
    /// (index in the queue entry, address, RCPT parameters)
    pub recipients: Vec<(usize, String, Vec<String>)>,
    pub message: &'a [u8],
}

/// Outcome of a transaction: the reply to each RCPT, then (if any recipient was accepted) the
/// reply to the data.
#[derive(Debug)]
pub struct TransactionResult {
    pub mail: Reply,
    pub rcpts: Vec<RcptResult>,
    pub data: Option<Reply>,
}

impl SmtpClient {
    /// Connects and reads the greeting.
    pub async fn connect(
        peer: SocketAddr,
        host: &str,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<SmtpClient, ClientError> {
        let mut client = SmtpClient::connect_raw(peer, host, connect_timeout, timeout).await?;
        client.read_greeting().await?;
        Ok(client)
    }

    /// Connects without reading anything (for implicit TLS, where the greeting comes after
    /// the handshake).
    pub async fn connect_raw(
        peer: SocketAddr,
        host: &str,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<SmtpClient, ClientError> {
        let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(peer))
            .await
            .map_err(|_| ClientError::Connect(peer, "timeout".into()))?
            .map_err(|e| ClientError::Connect(peer, e.to_string()))?;
        let _ = stream.set_nodelay(true);
        Ok(SmtpClient {
            conn: Conn::Plain(stream),
            parser: ReplyParser::new(),
            scratch: vec![0; 8192],
            peer,
            host: host.to_string(),
            caps: Capabilities::default(),
            tls: None,
            timeout,
            transactions: 0,
        })
    }

    pub async fn read_reply(&mut self, timeout: Duration) -> Result<Reply, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(reply) = self.parser.next_reply().map_err(|e| ClientError::Protocol(e.to_string()))? {
                return Ok(reply);
            }
            let n = tokio::time::timeout_at(deadline, self.conn.read(&mut self.scratch))
                .await
                .map_err(|_| ClientError::Timeout)??;
            if n == 0 {
                return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.parser.feed(&self.scratch[..n]);
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        tokio::time::timeout(self.timeout, async {
            self.conn.write_all(bytes).await?;
            self.conn.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout)??;
        Ok(())
    }

    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(&bytes).await?;
        self.read_reply(self.timeout).await
    }

    /// EHLO (HELO when the server does not know EHLO); records the capabilities.
    pub async fn ehlo(&mut self, name: &str) -> Result<(), ClientError> {
        let reply = self.command(&format!("EHLO {name}")).await?;
        if reply.code == 250 {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        if reply.code >= 500 {
            let helo = self.command(&format!("HELO {name}")).await?;
            if helo.code == 250 {
                self.caps = Capabilities::default();
                return Ok(());
            }
            return Err(ClientError::Refused(helo));
        }
        Err(ClientError::Refused(reply))
    }

    /// STARTTLS and the handshake; the caller sends EHLO again afterwards (RFC 3207 §4.2).
    pub async fn starttls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        server_name: ServerName<'static>,
        verification: &'static str,
    ) -> Result<(), ClientError> {
        let reply = self.command("STARTTLS").await?;
        if reply.code != 220 {
            return Err(ClientError::Refused(reply));
        }
        // Anything the server sent after its 220 came before TLS: it must not be trusted.
        if self.parser.has_buffered() {
            return Err(ClientError::Protocol("data after the STARTTLS reply".into()));
        }
        self.handshake(config, server_name, verification).await
    }

    /// The TLS handshake on the current (plain) connection: after STARTTLS, or right away for
    /// implicit TLS.
    pub async fn handshake(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        server_name: ServerName<'static>,
        verification: &'static str,
    ) -> Result<(), ClientError> {
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Closed) else {
            return Err(ClientError::Protocol("TLS is already on".into()));
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = tokio::time::timeout(self.timeout, connector.connect(server_name, tcp))
            .await
            .map_err(|_| ClientError::Tls("timeout".into()))?
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let (_, session) = tls.get_ref();
        let version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => "TLS".to_string(),
        };
        let cipher = session.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())).unwrap_or_default();
        self.tls = Some(TlsSummary { version, cipher, verification });
        self.conn = Conn::Tls(Box::new(tls));
        Ok(())
    }

    /// Reads the 220 greeting (after connecting, or after the handshake of implicit TLS).
    pub async fn read_greeting(&mut self) -> Result<(), ClientError> {
        let greeting = self.read_reply(self.timeout).await?;
        if greeting.code != 220 {
            return Err(ClientError::Refused(greeting));
        }
        Ok(())
    }

    /// AUTH PLAIN (smarthost), with the initial response.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let token = tern_sasl::encode(format!("\0{user}\0{password}").as_bytes());
        let reply = self.command(&format!("AUTH PLAIN {token}")).await?;
        if reply.code == 235 {
            return Ok(());
        }
        Err(ClientError::Refused(reply))
    }

    /// One mail transaction. With PIPELINING, MAIL, every RCPT and DATA go in one write
    /// (RFC 2920 §3.1); BDAT is used where CHUNKING is offered (RFC 3030).
    pub async fn transaction(&mut self, env: &Envelope<'_>) -> Result<TransactionResult, ClientError> {
        self.transactions += 1;
        let mut mail_line = format!("MAIL FROM:<{}>", env.mail_from);
        for p in &env.mail_params {
            mail_line.push(' ');
            mail_line.push_str(p);
        }
        let rcpt_lines: Vec<String> = env
            .recipients
            .iter()
            .map(|(_, addr, params)| {
                let mut line = format!("RCPT TO:<{addr}>");
                for p in params {
                    line.push(' ');
                    line.push_str(p);
                }
                line
            })
            .collect();
        let chunking = self.caps.chunking;
        let (mail, rcpts) = if self.caps.pipelining {
            let mut batch = String::new();
            batch.push_str(&mail_line);
            batch.push_str("\r\n");
            for l in &rcpt_lines {
                batch.push_str(l);
                batch.push_str("\r\n");
            }
            self.write(batch.as_bytes()).await?;
            let mail = self.read_reply(self.timeout).await?;
            let mut rcpts = Vec::new();
            for (i, _) in rcpt_lines.iter().enumerate() {
                let reply = self.read_reply(self.timeout).await?;
                rcpts.push(RcptResult { index: env.recipients[i].0, reply });
            }
            (mail, rcpts)
        } else {
            let mail = self.command(&mail_line).await?;
            let mut rcpts = Vec::new();
            if mail.code == 250 {
                for (i, line) in rcpt_lines.iter().enumerate() {
                    let reply = self.command(line).await?;
                    rcpts.push(RcptResult { index: env.recipients[i].0, reply });
                }
            }
            (mail, rcpts)
        };
        if mail.code != 250 {
            // Pipelined RCPTs after a refused MAIL were refused too ("503 need MAIL").
            let rcpts =
                env.recipients.iter().map(|(index, _, _)| RcptResult { index: *index, reply: mail.clone() }).collect();
            self.reset().await?;
            return Ok(TransactionResult { mail, rcpts, data: None });
        }
        if !rcpts.iter().any(|r| r.reply.code / 100 == 2) {
            self.reset().await?;
            return Ok(TransactionResult { mail, rcpts, data: None });
        }
        let data = if chunking {
            let body = normalize_line_ends(env.message);
            let mut out = format!("BDAT {} LAST\r\n", body.len()).into_bytes();
            out.extend_from_slice(&body);
            self.write(&out).await?;
            self.read_reply(FINAL_REPLY_TIMEOUT).await?
        } else {
            let go = self.command("DATA").await?;
            if go.code != 354 {
                return Ok(TransactionResult { mail, rcpts, data: Some(go) });
            }
            self.write(&encode_data(env.message)).await?;
            self.read_reply(FINAL_REPLY_TIMEOUT).await?
        };
        Ok(TransactionResult { mail, rcpts, data: Some(data) })
    }

    /// RSET; an error means the connection is not reusable.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        let reply = self.command("RSET").await?;
        if reply.code != 250 {
            return Err(ClientError::Refused(reply));
        }
        Ok(())
    }

    /// QUIT politely (best effort, bounded).
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = self.command("QUIT").await;
            let _ = self.conn.shutdown().await;
        })
        .await;
    }
}
