//! ClamAV through clamd's `INSTREAM` command (clamd(8)): `zINSTREAM\0`, then the message in
//! chunks each prefixed by its length (4 bytes, network order), then a zero length; clamd
//! answers `stream: OK`, `stream: NAME FOUND`, or an error such as `INSTREAM size limit
//! exceeded. ERROR` when the stream is over its `StreamMaxLength`.

use super::{ScanRequest, Scanner};
use crate::verdict::ScannerOutcome;
use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    Tcp(String),
    Unix(std::path::PathBuf),
}

impl ClamdAddress {
    /// A path (starting with `/`) is a Unix socket; anything else is `host:port`.
    pub fn parse(s: &str) -> ClamdAddress {
        if s.starts_with('/') { ClamdAddress::Unix(s.into()) } else { ClamdAddress::Tcp(s.to_string()) }
    }
}

pub struct Clamd {
    pub name: String,
    pub address: ClamdAddress,
}

const CHUNK: usize = 64 * 1024;
/// clamd's replies are one short line.
const MAX_REPLY: usize = 4096;

#[async_trait]
impl Scanner for Clamd {
    fn name(&self) -> &str {
        &self.name
    }

    async fn scan(&self, request: &ScanRequest) -> ScannerOutcome {
        let result = match &self.address {
            ClamdAddress::Tcp(addr) => match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => instream(s, &request.message).await,
                Err(e) => Err(format!("connect {addr}: {e}")),
            },
            ClamdAddress::Unix(path) => match tokio::net::UnixStream::connect(path).await {
                Ok(s) => instream(s, &request.message).await,
                Err(e) => Err(format!("connect {}: {e}", path.display())),
            },
        };
        match result {
            Ok(reply) => parse_reply(&reply),
            Err(error) => ScannerOutcome::Failed { error },
        }
    }
}

async fn instream<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, message: &[u8]) -> Result<String, String> {
    stream.write_all(b"zINSTREAM\0").await.map_err(|e| format!("send: {e}"))?;
    for chunk in message.chunks(CHUNK) {
        let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX).to_be_bytes();
        if let Err(e) = async {
            stream.write_all(&len).await?;
            stream.write_all(chunk).await
        }
        .await
        {
            // clamd closes the stream when it is over StreamMaxLength: its reply says why.
            return match read_reply(&mut stream).await {
                Ok(reply) if !reply.is_empty() => Ok(reply),
                _ => Err(format!("send: {e}")),
            };
        }
    }
    stream.write_all(&0u32.to_be_bytes()).await.map_err(|e| format!("send: {e}"))?;
    stream.flush().await.map_err(|e| format!("send: {e}"))?;
    read_reply(&mut stream).await
}

async fn read_reply<S: AsyncRead + Unpin>(stream: &mut S) -> Result<String, String> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.contains(&0) || reply.len() > MAX_REPLY {
            break;
        }
    }
    let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
    Ok(String::from_utf8_lossy(&reply[..end]).trim().to_string())
}

/// Reads clamd's answer.
pub fn parse_reply(reply: &str) -> ScannerOutcome {
    let body = reply.strip_prefix("stream: ").unwrap_or(reply);
    if body == "OK" {
        return ScannerOutcome::Clean;
    }
    if let Some(name) = body.strip_suffix(" FOUND") {
        return ScannerOutcome::Virus { names: vec![name.trim().to_string()] };
    }
    if body.contains("size limit exceeded") {
        return ScannerOutcome::TooLarge;
    }
    ScannerOutcome::Failed { error: format!("clamd: {}", if reply.is_empty() { "no reply" } else { reply }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(ScannerOutcome::Clean, parse_reply("stream: OK"));
        assert_eq!(
            ScannerOutcome::Virus { names: vec!["Eicar-Signature".into()] },
            parse_reply("stream: Eicar-Signature FOUND")
        );
        assert_eq!(ScannerOutcome::TooLarge, parse_reply("INSTREAM size limit exceeded. ERROR"));
        assert!(matches!(parse_reply(""), ScannerOutcome::Failed { .. }));
        assert!(matches!(parse_reply("stream: lstat() failed. ERROR"), ScannerOutcome::Failed { .. }));
        assert_eq!(ClamdAddress::Unix("/run/clamav/clamd.ctl".into()), ClamdAddress::parse("/run/clamav/clamd.ctl"));
    }

    #[tokio::test]
    async fn speaks_instream() {
        // A fake clamd: checks the framing, answers FOUND for a message containing "virus".
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut cmd = [0u8; 10];
                s.read_exact(&mut cmd).await.unwrap();
                assert_eq!(b"zINSTREAM\0", &cmd);
                let mut data = Vec::new();
                loop {
                    let mut len = [0u8; 4];
                    s.read_exact(&mut len).await.unwrap();
                    let len = u32::from_be_bytes(len) as usize;
                    if len == 0 {
                        break;
                    }
                    assert!(len <= CHUNK);
                    let mut chunk = vec![0u8; len];
                    s.read_exact(&mut chunk).await.unwrap();
                    data.extend_from_slice(&chunk);
                }
                let found = data.windows(5).any(|w| w == b"virus");
                let reply: &[u8] = if found { b"stream: Test.Virus FOUND\0" } else { b"stream: OK\0" };
                s.write_all(reply).await.unwrap();
            }
        });
        let clamd = Clamd { name: "clamav".into(), address: ClamdAddress::parse(&addr) };
        let mut big = vec![b'a'; 200_000];
        big.extend_from_slice(b"virus");
        let req = ScanRequest::for_message(big);
        assert_eq!(ScannerOutcome::Virus { names: vec!["Test.Virus".into()] }, clamd.scan(&req).await);
        assert_eq!(ScannerOutcome::Clean, clamd.scan(&ScanRequest::for_message(b"hello".to_vec())).await);
        let down = Clamd { name: "clamav".into(), address: ClamdAddress::parse("127.0.0.1:1") };
        assert!(matches!(down.scan(&req).await, ScannerOutcome::Failed { .. }));
    }
}
