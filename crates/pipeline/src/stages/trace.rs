//! Trace header fields (RFC 5321 §4.4): `Received:` for every hop, `Return-Path:` at final
//! delivery.

use crate::{MessageContext, Stage, Verdict};
use async_trait::async_trait;
use std::net::IpAddr;

/// RFC 5322 §3.3 date-time in UTC, e.g. `Sun, 29 Nov 2026 19:00:00 +0000`.
pub fn rfc5322_date(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day padding:none] [month repr:short] [year] [hour]:[minute]:[second] +0000"
    );
    t.format(&format).unwrap_or_else(|_| "Thu, 1 Jan 1970 00:00:00 +0000".into())
}

fn address_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{v6}]"),
        },
    }
}

/// Keeps a value from the network usable inside a header comment: printable, no parentheses
/// or backslashes, bounded.
fn comment_safe(s: &str) -> String {
    s.chars().filter(|c| !c.is_control() && !matches!(c, '(' | ')' | '\\')).take(255).collect()
}

/// Adds `Received:` with the client's HELO and address, the protocol (RFC 3848 with the
/// RFC 6531 UTF8 variants), TLS version and cipher, the queue id, and the recipient when there
/// is exactly one.
pub struct ReceivedHeader;

#[async_trait]
impl Stage for ReceivedHeader {
    fn name(&self) -> &'static str {
        "received"
    }

    async fn process(&self, ctx: &mut MessageContext) -> Verdict {
        let s = &ctx.session;
        let mut with = String::new();
        if ctx.smtputf8 {
            with.push_str("UTF8SMTP");
        } else if s.esmtp {
            with.push_str("ESMTP");
        } else {
            with.push_str("SMTP");
        }
        if s.tls.is_some() {
            with.push('S');
        }
        if s.authenticated_as.is_some() {
            with.push('A');
        }
        let helo = comment_safe(&s.helo);
        let helo = if helo.is_empty() || helo.contains(' ') { "unknown".to_string() } else { helo };
        let mut value = format!(
            "from {helo} ({})\r\n\tby {} (Tern) with {with} id {}",
            address_literal(s.client_ip),
            s.local_hostname,
            ctx.queue_id
        );
        if let Some(tls) = &s.tls {
            value.push_str(&format!(
                "\r\n\t(using {} with cipher {})",
                comment_safe(&tls.version),
                comment_safe(&tls.cipher)
            ));
        }
        if let [only] = ctx.recipients.as_slice() {
            value.push_str(&format!("\r\n\tfor <{}>", only.address.replace(['\r', '\n', '<', '>'], "")));
        }
        value.push_str(&format!(";\r\n\t{}", rfc5322_date(ctx.received_at)));
        ctx.prepend_header("Received", &value);
        Verdict::Continue
    }
}

/// Adds `Return-Path:` with the envelope sender (RFC 5321 §4.4: at final delivery). A
/// `Return-Path:` already in the message is left below it; readers use the topmost.
pub struct ReturnPath;

#[async_trait]
impl Stage for ReturnPath {
    fn name(&self) -> &'static str {
        "return-path"
    }

    async fn process(&self, ctx: &mut MessageContext) -> Verdict {
        let path = ctx.mail_from.as_deref().unwrap_or("").replace(['\r', '\n', '<', '>'], "");
        ctx.prepend_header("Return-Path", &format!("<{path}>"));
        Verdict::Continue
    }
}
