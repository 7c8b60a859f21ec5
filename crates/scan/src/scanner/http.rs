//! A small HTTP/1.1 POST client over hyper for scanners that speak HTTP (rspamd, remote
//! scanning APIs): one connection per request, `http` or `https` (webpki roots), a response
//! body limit.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, OnceLock};

/// Responses larger than this are refused.
const MAX_RESPONSE: usize = 1024 * 1024;

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url}: only http:// and https:// URLs are supported"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h, p.parse::<u16>().map_err(|_| format!("{url}: bad port {p:?}"))?)
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(HttpUrl { tls, host: host.to_string(), port, path: path.to_string() })
    }

    /// The same URL with another path.
    pub fn with_path(&self, path: &str) -> HttpUrl {
        HttpUrl { path: path.to_string(), ..self.clone() }
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
        })
        .clone()
}

/// A message as a request body, without copying it.
pub fn body_of(message: &Arc<Vec<u8>>) -> Bytes {
    struct Shared(Arc<Vec<u8>>);
    impl AsRef<[u8]> for Shared {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    Bytes::from_owner(Shared(Arc::clone(message)))
}

/// POSTs `body` with `headers`; returns the status and the response body.
pub async fn post(url: &HttpUrl, headers: &[(String, String)], body: Bytes) -> Result<(u16, Vec<u8>), String> {
    let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connect {}:{}: {e}", url.host, url.port))?;
    let _ = tcp.set_nodelay(true);
    if url.tls {
        let name =
            rustls_pki_types::ServerName::try_from(url.host.clone()).map_err(|e| format!("{}: {e}", url.host))?;
        let stream = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS to {}: {e}", url.host))?;
        exchange(TokioIo::new(stream), url, headers, body).await
    } else {
        exchange(TokioIo::new(tcp), url, headers, body).await
    }
}

async fn exchange<T>(io: T, url: &HttpUrl, headers: &[(String, String)], body: Bytes) -> Result<(u16, Vec<u8>), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let host = if (url.tls && url.port == 443) || (!url.tls && url.port == 80) {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let mut request = hyper::Request::post(url.path.as_str()).header(hyper::header::HOST, host);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request.body(Full::new(body)).map_err(|e| format!("request: {e}"))?;
    let response = sender.send_request(request).await.map_err(|e| format!("HTTP: {e}"));
    let result = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            match Limited::new(response.into_body(), MAX_RESPONSE).collect().await {
                Ok(collected) => Ok((status, collected.to_bytes().to_vec())),
                Err(e) => Err(format!("response body: {e}")),
            }
        }
        Err(e) => Err(e),
    };
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::HttpUrl;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:11333").unwrap();
        assert_eq!((false, "127.0.0.1", 11333, "/"), (u.tls, u.host.as_str(), u.port, u.path.as_str()));
        let u = HttpUrl::parse("https://scan.example/v1/check?x=1").unwrap();
        assert_eq!((true, "scan.example", 443, "/v1/check?x=1"), (u.tls, u.host.as_str(), u.port, u.path.as_str()));
        let u = HttpUrl::parse("http://[::1]:8080/x").unwrap();
        assert_eq!(("::1", 8080), (u.host.as_str(), u.port));
        assert!(HttpUrl::parse("ftp://x").is_err());
        assert!(HttpUrl::parse("http://:80/").is_err());
        assert!(HttpUrl::parse("http://h:99999/").is_err());
    }
}
