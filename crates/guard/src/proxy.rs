//! The PROXY protocol header (HAProxy's PROXY protocol, versions 1 and 2) that a load balancer
//! puts before a connection's own bytes to say whose connection it is. Read only from the
//! addresses in `[listen] proxy_from`; the client address it carries then counts everywhere
//! (logs, limits, bans, SPF, DNSBLs). Parsing is ppp's; this module finds where the header
//! ends and what it says.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest header read: version 2 headers from load balancers carry a few TLVs. More is
/// refused.
pub const MAX_HEADER: usize = 1024;

/// A version 1 line is at most 107 bytes with its CRLF (the PROXY protocol specification,
/// section 2.1).
pub const MAX_V1_LINE: usize = 107;

/// What the first bytes of a connection are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not enough bytes yet.
    Incomplete,
    /// A header of `len` bytes; `source` is the client's address, `None` for `LOCAL` (v2) or
    /// `UNKNOWN` (v1): the balancer's own connection (a health check), which keeps its
    /// address.
    Header { len: usize, source: Option<SocketAddr> },
    /// Not a PROXY header, or a broken one.
    Invalid(String),
}

/// Parses the start of a connection (pure: bytes in, result out).
pub fn parse(input: &[u8]) -> Parsed {
    use ppp::{HeaderResult, PartialResult};
    if input.is_empty() {
        return Parsed::Incomplete;
    }
    let header = HeaderResult::parse(input);
    if header.is_incomplete() {
        return if input.len() >= MAX_HEADER { Parsed::Invalid("header too long".into()) } else { Parsed::Incomplete };
    }
    match header {
        HeaderResult::V1(Ok(h)) => {
            // The line ends at the first CRLF (the v1 parser found it).
            let Some(end) = input.windows(2).position(|w| w == b"\r\n") else {
                return Parsed::Invalid("no line end".into());
            };
            // ppp lets `UNKNOWN` run on to any CRLF; the specification does not.
            if end + 2 > MAX_V1_LINE {
                return Parsed::Invalid(format!("a version 1 header is at most {MAX_V1_LINE} bytes"));
            }
            let source = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                ppp::v1::Addresses::Unknown => None,
            };
            Parsed::Header { len: end + 2, source }
        }
        HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, &h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
                (_, ppp::v2::Addresses::IPv6(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
                (_, ppp::v2::Addresses::Unspecified) => None,
                (_, ppp::v2::Addresses::Unix(_)) => None,
            };
            if h.len() > MAX_HEADER {
                return Parsed::Invalid("header too long".into());
            }
            Parsed::Header { len: h.len(), source }
        }
        HeaderResult::V1(Err(e)) => Parsed::Invalid(e.to_string()),
        HeaderResult::V2(Err(e)) => Parsed::Invalid(e.to_string()),
    }
}

/// The signature a version 2 header starts with (the PROXY protocol specification, 2.2).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// How a version 1 line starts (2.1).
const V1_START: &[u8; 6] = b"PROXY ";

/// Whether the first bytes of a connection are the start of a PROXY header (pure): `None`
/// while too few bytes have come to tell. For protocols whose own first bytes cannot be
/// taken for one (HTTP requests, TLS records), where a trusted balancer's header is optional.
pub fn starts_with_header(input: &[u8]) -> Option<bool> {
    let mut undecided = false;
    for signature in [&V1_START[..], &V2_SIGNATURE[..]] {
        let n = input.len().min(signature.len());
        if input[..n] == signature[..n] {
            if n == signature.len() {
                return Some(true);
            }
            undecided = true;
        }
    }
    if undecided { None } else { Some(false) }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("the connection closed before its PROXY header ended")]
    Closed,
    #[error("not a valid PROXY header: {0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Peeks at the start of `stream`, consuming nothing, until `decide` can tell from the bytes
/// that have come (at most `len` of them).
async fn peek_until<T>(
    stream: &TcpStream,
    len: usize,
    mut decide: impl FnMut(&[u8]) -> Option<Result<T, ProxyError>>,
) -> Result<T, ProxyError> {
    let mut buf = vec![0u8; len];
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(ProxyError::Closed);
        }
        if let Some(decided) = decide(&buf[..n]) {
            return decided;
        }
        // peek returns at once while the same bytes wait: pause until more come.
        if n == seen {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen = n;
    }
}

/// Reads the header at the start of `stream` and consumes exactly its bytes (what follows,
/// a TLS ClientHello for instance, stays for the session). `Ok(None)`: the balancer's own
/// connection, keep the peer address.
pub async fn read_header(stream: &mut TcpStream, wait: Duration) -> Result<Option<SocketAddr>, ProxyError> {
    let read = async {
        let (len, source) = peek_until(stream, MAX_HEADER, |bytes| match parse(bytes) {
            Parsed::Incomplete => None,
            Parsed::Invalid(why) => Some(Err(ProxyError::Invalid(why))),
            Parsed::Header { len, source } => Some(Ok((len, source))),
        })
        .await?;
        let mut header = vec![0u8; len];
        stream.read_exact(&mut header).await?;
        Ok(source)
    };
    tokio::time::timeout(wait, read).await.map_err(|_| ProxyError::Timeout(wait))?
}

/// As [`read_header`] where the header is optional: `Ok(None)` also when the connection
/// starts with anything else (nothing of it is consumed).
pub async fn read_optional_header(stream: &mut TcpStream, wait: Duration) -> Result<Option<SocketAddr>, ProxyError> {
    let started = tokio::time::Instant::now();
    let look = peek_until(stream, V2_SIGNATURE.len(), |bytes| starts_with_header(bytes).map(Ok));
    let header = tokio::time::timeout(wait, look).await.map_err(|_| ProxyError::Timeout(wait))??;
    if !header {
        return Ok(None);
    }
    read_header(stream, wait.saturating_sub(started.elapsed())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&((addresses.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h.extend_from_slice(tlvs);
        h
    }

    #[test]
    fn version_1_lines() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO x\r\n";
        assert_eq!(parse(line), Parsed::Header { len: 44, source: Some("192.0.2.7:40000".parse().unwrap()) });
        let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 993\r\n\x16\x03\x01";
        assert_eq!(parse(line), Parsed::Header { len: 46, source: Some("[2001:db8::7]:40000".parse().unwrap()) });
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Parsed::Header { len: 15, source: None });
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7"), Parsed::Incomplete);
        assert!(matches!(parse(b"EHLO client.example\r\n"), Parsed::Invalid(_)));
        assert!(matches!(parse(b"PROXY TCP4 999.0.2.7 198.51.100.1 40000 25\r\n"), Parsed::Invalid(_)));
        // Found by the proxy_header fuzz target: ppp accepted an UNKNOWN line running on for
        // 1,217 bytes to a far CRLF.
        let mut long = b"PROXY UNKNOWN k".to_vec();
        long.extend(std::iter::repeat_n(b'a', 200));
        long.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&long), Parsed::Invalid(_)));
        let mut longest = b"PROXY UNKNOWN ".to_vec();
        longest.extend(std::iter::repeat_n(b'a', MAX_V1_LINE - 16));
        longest.extend_from_slice(b"\r\n");
        assert_eq!(parse(&longest), Parsed::Header { len: MAX_V1_LINE, source: None });
    }

    #[test]
    fn version_2_headers() {
        let mut v4 = vec![192, 0, 2, 7, 198, 51, 100, 1];
        v4.extend_from_slice(&40000u16.to_be_bytes());
        v4.extend_from_slice(&25u16.to_be_bytes());
        let mut input = v2(1, 0x11, &v4, &[]);
        let len = input.len();
        input.extend_from_slice(b"after");
        assert_eq!(parse(&input), Parsed::Header { len, source: Some("192.0.2.7:40000".parse().unwrap()) });
        // A TLV (PP2_TYPE_AUTHORITY) is skipped with the rest of the header.
        let with_tlv = v2(1, 0x11, &v4, &[0x02, 0, 3, b'a', b'.', b'b']);
        assert_eq!(
            parse(&with_tlv),
            Parsed::Header { len: with_tlv.len(), source: Some("192.0.2.7:40000".parse().unwrap()) }
        );
        // LOCAL: the balancer's health check.
        let local = v2(0, 0x00, &[], &[]);
        assert_eq!(parse(&local), Parsed::Header { len: 16, source: None });
        assert_eq!(parse(&input[..10]), Parsed::Incomplete);
        assert_eq!(parse(&input[..20]), Parsed::Incomplete);
        // Version 3 does not exist.
        let mut bad = v2(1, 0x11, &v4, &[]);
        bad[12] = 0x31;
        assert!(matches!(parse(&bad), Parsed::Invalid(_)));
    }

    #[test]
    fn endless_input_is_refused() {
        assert!(matches!(parse(&[b'P'; 1]), Parsed::Incomplete));
        let mut long = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec();
        long.resize(MAX_HEADER, 0);
        assert!(matches!(parse(&long), Parsed::Invalid(_)));
    }

    #[test]
    fn what_may_start_a_header() {
        assert_eq!(starts_with_header(b"PROXY TCP4 "), Some(true));
        assert_eq!(starts_with_header(b"PROX"), None);
        assert_eq!(starts_with_header(b"\r\n\r\n"), None);
        assert_eq!(starts_with_header(&v2(0, 0, &[], &[])), Some(true));
        assert_eq!(starts_with_header(b"GET / HTTP/1.1\r\n"), Some(false));
        assert_eq!(starts_with_header(b"POST"), Some(false));
        assert_eq!(starts_with_header(b"PROXYZ"), Some(false));
        assert_eq!(starts_with_header(b"\x16\x03\x01"), Some(false));
        assert_eq!(starts_with_header(b"\r\n\r\n\0\r\nQUIT\r"), Some(false));
    }

    #[tokio::test]
    async fn an_optional_header_is_read_when_sent_and_nothing_is_taken_when_not() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for (first, rest, expected) in [
            (&b"PRO"[..], &b"XY TCP4 192.0.2.7 198.51.100.1 40000 80\r\nGET"[..], Some("192.0.2.7:40000")),
            (&b"GE"[..], &b"T / HTTP/1.1\r\n"[..], None),
            (&b"\r\n"[..], &b"GET / HTTP/1.1\r\n"[..], None),
        ] {
            let client = tokio::spawn(async move {
                let mut c = TcpStream::connect(addr).await.unwrap();
                c.write_all(first).await.unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
                c.write_all(rest).await.unwrap();
                c
            });
            let (mut server, _) = listener.accept().await.unwrap();
            let source = read_optional_header(&mut server, Duration::from_secs(5)).await.unwrap();
            assert_eq!(source, expected.map(|a| a.parse().unwrap()));
            let mut next = [0u8; 3];
            server.read_exact(&mut next).await.unwrap();
            let whole = [first, rest].concat();
            let after = if expected.is_some() { &b"GET"[..] } else { &whole[..3] };
            assert_eq!(&next, after);
            let _client = client.await.unwrap();
        }
    }

    #[tokio::test]
    async fn the_header_is_consumed_and_the_rest_kept() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            // In two pieces, as a slow balancer might.
            c.write_all(b"PROXY TCP4 192.0.2.7 198.51.").await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.write_all(b"100.1 40000 25\r\nHELLO").await.unwrap();
            c
        });
        let (mut server, _) = listener.accept().await.unwrap();
        let source = read_header(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(source, Some("192.0.2.7:40000".parse().unwrap()));
        let mut rest = [0u8; 5];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"HELLO");
        let _client = client.await.unwrap();

        // A client that says nothing times out.
        let silent = tokio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (mut server, _) = listener.accept().await.unwrap();
        let r = read_header(&mut server, Duration::from_millis(100)).await;
        assert!(matches!(r, Err(ProxyError::Timeout(_))), "{r:?}");
        drop(silent);
    }
}
