//! Mail clients find their settings: Thunderbird's autoconfig
//! (`/.well-known/autoconfig/mail/config-v1.1.xml`, and `/mail/config-v1.1.xml` on
//! `autoconfig.<domain>`), Microsoft's Autodiscover (the POX `Autodiscover.xml` that Outlook
//! and many mobile clients POST to), and an Apple configuration profile
//! (`/apple/mail.mobileconfig?emailaddress=...`). Each answers for local domains only, with the
//! ports this server listens on: implicit TLS first (RFC 8314), STARTTLS next.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use tern_directory::Directory;

/// What clients are told: the name to connect to and the port of each service this server
/// listens on (`None`: off).
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    pub hostname: String,
    pub imaps: Option<u16>,
    pub imap: Option<u16>,
    pub pop3s: Option<u16>,
    pub pop3: Option<u16>,
    pub submissions: Option<u16>,
    pub submission: Option<u16>,
}

#[derive(Clone)]
pub struct AutoconfigState {
    pub settings: ClientSettings,
    pub directory: Directory,
}

/// XML text and attribute escaping.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// A local domain named by an address or by the `autoconfig.`/`autodiscover.` host name, in
/// lower case; `None` when it is not one of this server's.
async fn local_domain(directory: &Directory, address: Option<&str>, host: Option<&str>) -> Option<String> {
    let from_address = address.and_then(|a| a.rsplit_once('@')).map(|(_, d)| d.to_string());
    let from_host = host
        .map(|h| h.split(':').next().unwrap_or(h))
        .and_then(|h| h.strip_prefix("autoconfig.").or_else(|| h.strip_prefix("autodiscover.")).map(str::to_string));
    let domain = from_address.or(from_host)?.trim_end_matches('.').to_ascii_lowercase();
    match directory.domain_get(&domain).await {
        Ok(Some(_)) => Some(domain),
        _ => None,
    }
}

fn xml(body: String, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such domain here\n").into_response()
}

/// Thunderbird's format (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat).
pub fn thunderbird(settings: &ClientSettings, domain: &str) -> String {
    let host = esc(&settings.hostname);
    let server = |kind: &str, tag: &str, port: Option<u16>, socket: &str| {
        port.map(|p| {
            format!(
                "    <{tag} type=\"{kind}\">\n      <hostname>{host}</hostname>\n      <port>{p}</port>\n      <socketType>{socket}</socketType>\n      <authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </{tag}>\n"
            )
        })
        .unwrap_or_default()
    };
    let d = esc(domain);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n  <emailProvider id=\"{d}\">\n    <domain>{d}</domain>\n    <displayName>{d} mail</displayName>\n    <displayShortName>{d}</displayShortName>\n{}{}{}{}{}{}  </emailProvider>\n</clientConfig>\n",
        server("imap", "incomingServer", settings.imaps, "SSL"),
        server("imap", "incomingServer", settings.imap, "STARTTLS"),
        server("pop3", "incomingServer", settings.pop3s, "SSL"),
        server("pop3", "incomingServer", settings.pop3, "STARTTLS"),
        server("smtp", "outgoingServer", settings.submissions, "SSL"),
        server("smtp", "outgoingServer", settings.submission, "STARTTLS"),
    )
}

/// Microsoft's Autodiscover (POX, "outlook" response schema 2006a).
pub fn autodiscover(settings: &ClientSettings, email: &str) -> String {
    let host = esc(&settings.hostname);
    let login = esc(email);
    let protocol = |kind: &str, port: Option<u16>, implicit_tls: bool, extra: &str| {
        port.map(|p| {
            let (ssl, encryption) = if implicit_tls { ("on", "SSL") } else { ("on", "TLS") };
            format!(
                "      <Protocol>\n        <Type>{kind}</Type>\n        <Server>{host}</Server>\n        <Port>{p}</Port>\n        <LoginName>{login}</LoginName>\n        <DomainRequired>off</DomainRequired>\n        <SPA>off</SPA>\n        <SSL>{ssl}</SSL>\n        <Encryption>{encryption}</Encryption>\n        <AuthRequired>on</AuthRequired>\n{extra}      </Protocol>\n"
            )
        })
    };
    let imap = protocol("IMAP", settings.imaps, true, "").or_else(|| protocol("IMAP", settings.imap, false, ""));
    let pop = protocol("POP3", settings.pop3s, true, "").or_else(|| protocol("POP3", settings.pop3, false, ""));
    let smtp_extra = "        <UsePOPAuth>off</UsePOPAuth>\n        <SMTPLast>off</SMTPLast>\n";
    let smtp = protocol("SMTP", settings.submissions, true, smtp_extra)
        .or_else(|| protocol("SMTP", settings.submission, false, smtp_extra));
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n  <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">\n    <Account>\n      <AccountType>email</AccountType>\n      <Action>settings</Action>\n{}{}{}    </Account>\n  </Response>\n</Autodiscover>\n",
        imap.unwrap_or_default(),
        pop.unwrap_or_default(),
        smtp.unwrap_or_default()
    )
}

/// An Apple configuration profile with one mail account (`com.apple.mail.managed`).
pub fn mobileconfig(settings: &ClientSettings, email: &str, domain: &str) -> String {
    let host = esc(&settings.hostname);
    let e = esc(email);
    let d = esc(domain);
    // Stable identifiers per address, so that installing it again replaces the account.
    let uuid = |salt: &str| {
        let h = blake3::hash(format!("{salt}:{email}").as_bytes());
        let b = h.as_bytes();
        format!(
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
        )
    };
    let (in_kind, in_port, in_ssl) = match (settings.imaps, settings.imap) {
        (Some(p), _) => ("EmailTypeIMAP", p, true),
        (None, Some(p)) => ("EmailTypeIMAP", p, false),
        (None, None) => ("EmailTypePOP", settings.pop3s.or(settings.pop3).unwrap_or(995), settings.pop3s.is_some()),
    };
    let (out_port, out_ssl) = match (settings.submissions, settings.submission) {
        (Some(p), _) => (p, true),
        (None, Some(p)) => (p, false),
        (None, None) => (465, true),
    };
    let b = |v: bool| if v { "<true/>" } else { "<false/>" };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>EmailAccountDescription</key><string>{e}</string>
      <key>EmailAccountType</key><string>{in_kind}</string>
      <key>EmailAddress</key><string>{e}</string>
      <key>IncomingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>IncomingMailServerHostName</key><string>{host}</string>
      <key>IncomingMailServerPortNumber</key><integer>{in_port}</integer>
      <key>IncomingMailServerUseSSL</key>{}
      <key>IncomingMailServerUsername</key><string>{e}</string>
      <key>OutgoingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>OutgoingMailServerHostName</key><string>{host}</string>
      <key>OutgoingMailServerPortNumber</key><integer>{out_port}</integer>
      <key>OutgoingMailServerUseSSL</key>{}
      <key>OutgoingMailServerUsername</key><string>{e}</string>
      <key>OutgoingPasswordSameAsIncomingPassword</key><true/>
      <key>PayloadDescription</key><string>Mail account {e}</string>
      <key>PayloadDisplayName</key><string>{e}</string>
      <key>PayloadIdentifier</key><string>mail.{d}.account.{}</string>
      <key>PayloadType</key><string>com.apple.mail.managed</string>
      <key>PayloadUUID</key><string>{}</string>
      <key>PayloadVersion</key><integer>1</integer>
    </dict>
  </array>
  <key>PayloadDescription</key><string>Mail settings for {e}</string>
  <key>PayloadDisplayName</key><string>{d} mail</string>
  <key>PayloadIdentifier</key><string>mail.{d}.profile.{}</string>
  <key>PayloadType</key><string>Configuration</string>
  <key>PayloadUUID</key><string>{}</string>
  <key>PayloadVersion</key><integer>1</integer>
</dict>
</plist>
"#,
        b(in_ssl),
        b(out_ssl),
        uuid("account"),
        uuid("account"),
        uuid("profile"),
        uuid("profile"),
    )
}

/// GET the Thunderbird config (`?emailaddress=` or the `autoconfig.<domain>` host).
pub async fn thunderbird_handler(
    State(s): State<AutoconfigState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match local_domain(&s.directory, q.get("emailaddress").map(String::as_str), host).await {
        Some(domain) => xml(thunderbird(&s.settings, &domain), "application/xml; charset=utf-8"),
        None => not_found(),
    }
}

/// POST of an Autodiscover request (`<EMailAddress>` in the body; at most 16 KiB read).
pub async fn autodiscover_handler(State(s): State<AutoconfigState>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body[..body.len().min(16 * 1024)]);
    let email = text
        .split("<EMailAddress>")
        .nth(1)
        .and_then(|rest| rest.split("</EMailAddress>").next())
        .map(|e| e.trim().to_string());
    let Some(email) = email.filter(|e| e.contains('@') && e.len() <= 320) else {
        return (StatusCode::BAD_REQUEST, "no EMailAddress in the request\n").into_response();
    };
    match local_domain(&s.directory, Some(&email), None).await {
        Some(_) => xml(autodiscover(&s.settings, &email), "application/xml; charset=utf-8"),
        None => not_found(),
    }
}

/// GET an Apple profile for `?emailaddress=`.
pub async fn mobileconfig_handler(
    State(s): State<AutoconfigState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(email) = q.get("emailaddress").filter(|e| e.contains('@') && e.len() <= 320) else {
        return (StatusCode::BAD_REQUEST, "emailaddress= is needed\n").into_response();
    };
    match local_domain(&s.directory, Some(email), None).await {
        Some(domain) => {
            let mut response = xml(mobileconfig(&s.settings, email, &domain), "application/x-apple-aspen-config");
            if let Ok(v) = format!("attachment; filename=\"{domain}.mobileconfig\"").parse() {
                response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        None => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let s = ClientSettings { hostname: "mx<&>.example".into(), imaps: Some(993), ..Default::default() };
        let x = thunderbird(&s, "a\"b.example");
        assert!(x.contains("mx&lt;&amp;&gt;.example") && x.contains("a&quot;b.example"), "{x}");
        assert!(!x.contains("STARTTLS"), "only configured services: {x}");
    }
}
