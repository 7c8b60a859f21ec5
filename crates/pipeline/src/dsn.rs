//! Delivery status notifications (RFC 3464): `multipart/report; report-type=delivery-status`
//! with a human-readable part, the machine-readable `message/delivery-status`, and the
//! original message (or only its header with `RET=HDRS`, RFC 3461 §4.3).

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use tern_store::{QueuedMessage, QueuedRecipient};

/// Largest original message attached in full; beyond, only its header is returned.
const MAX_RETURNED: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    /// Handed to a server that does not speak DSN (RFC 3461 §4.2: "relayed").
    Relayed,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }

    /// Whether a recipient with this NOTIFY value gets this report (RFC 3461 §4.1: without
    /// NOTIFY, failures and delays are reported, successes are not).
    pub fn wanted_by(self, notify: Option<tern_smtp_proto::Notify>) -> bool {
        let n = notify.unwrap_or(tern_smtp_proto::Notify::UNSPECIFIED);
        match self {
            Action::Failed => n.failure,
            Action::Delayed => n.delay,
            Action::Delivered | Action::Relayed => n.success,
        }
    }
}

/// One line of the report.
pub struct ReportedRecipient<'a> {
    pub recipient: &'a QueuedRecipient,
    pub action: Action,
    /// `x.y.z`
    pub status: String,
    pub diagnostic: Option<String>,
}

/// Builds the report for `sender`; `original` is the queued message.
pub fn build(
    hostname: &str,
    message: &QueuedMessage,
    original: &[u8],
    reported: &[ReportedRecipient<'_>],
    now: i64,
    retry_until: Option<i64>,
) -> Vec<u8> {
    let sender = message.envelope.mail_from.clone().unwrap_or_default();
    let action = reported.first().map(|r| r.action).unwrap_or(Action::Failed);
    let subject = match action {
        Action::Failed => "Undelivered Mail Returned to Sender",
        Action::Delayed => "Delayed Mail (still being retried)",
        Action::Delivered | Action::Relayed => "Successful Mail Delivery Report",
    };

    let mut human = String::new();
    match action {
        Action::Failed => human.push_str(&format!(
            "This is the mail system at host {hostname}.\r\n\r\nI'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients. The report below says why.\r\n\r\n"
        )),
        Action::Delayed => human.push_str(&format!(
            "This is the mail system at host {hostname}.\r\n\r\nYour message could not be delivered yet to the recipients below.\r\nDelivery will be retried{}; no action is required.\r\n\r\n",
            retry_until.map(|t| format!(" until {}", rfc5322_date(t))).unwrap_or_default()
        )),
        Action::Delivered | Action::Relayed => human.push_str(&format!(
            "This is the mail system at host {hostname}.\r\n\r\nYour message was delivered to the recipients below.\r\n\r\n"
        )),
    }
    for r in reported {
        human.push_str(&format!(
            "<{}>: {}\r\n",
            r.recipient.address,
            r.diagnostic.as_deref().unwrap_or(r.action.name())
        ));
    }

    // message/delivery-status: per-message fields, then one group per recipient (§2.1).
    let mut status = format!("Reporting-MTA: dns; {hostname}\r\n");
    if let Some(envid) = &message.envelope.envid {
        status.push_str(&format!("Original-Envelope-Id: {envid}\r\n"));
    }
    status.push_str(&format!("Arrival-Date: {}\r\n", rfc5322_date(message.created)));
    for r in reported {
        status.push_str("\r\n");
        status.push_str(&format!("Final-Recipient: rfc822; {}\r\n", r.recipient.address));
        if let Some((kind, addr)) = &r.recipient.orcpt {
            status.push_str(&format!("Original-Recipient: {kind}; {addr}\r\n"));
        }
        status.push_str(&format!("Action: {}\r\nStatus: {}\r\n", r.action.name(), r.status));
        if let Some(mta) = &r.recipient.remote_mta {
            status.push_str(&format!("Remote-MTA: dns; {mta}\r\n"));
        }
        if let Some(d) = &r.diagnostic {
            let clean: String = d.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            status.push_str(&format!("Diagnostic-Code: smtp; {clean}\r\n"));
        }
        status.push_str(&format!("Last-Attempt-Date: {}\r\n", rfc5322_date(now)));
        if action == Action::Delayed
            && let Some(t) = retry_until
        {
            status.push_str(&format!("Will-Retry-Until: {}\r\n", rfc5322_date(t)));
        }
    }

    let headers_only = message.envelope.ret == Some(tern_smtp_proto::Ret::Hdrs)
        || original.len() > MAX_RETURNED
        || matches!(action, Action::Delivered | Action::Relayed | Action::Delayed);
    let eight_bit = original.iter().any(|&b| b >= 0x80);
    let returned = if headers_only {
        let end = original.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 2).unwrap_or(original.len());
        MimePart::new(ContentType::new("text/rfc822-headers"), BodyPart::Binary(original[..end].to_vec().into()))
            .header("Content-Transfer-Encoding", Raw::new(if eight_bit { "8bit" } else { "7bit" }))
    } else {
        MimePart::new(ContentType::new("message/rfc822"), BodyPart::Binary(original.to_vec().into()))
            .header("Content-Transfer-Encoding", Raw::new(if eight_bit { "8bit" } else { "7bit" }))
    };
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        BodyPart::Multipart(vec![
            MimePart::new(ContentType::new("text/plain").attribute("charset", "us-ascii"), human),
            MimePart::new(ContentType::new("message/delivery-status"), BodyPart::Binary(status.into_bytes().into()))
                .header("Content-Transfer-Encoding", Raw::new("7bit")),
            returned,
        ]),
    );
    let from = format!("MAILER-DAEMON@{hostname}");
    let builder = MessageBuilder::new()
        .from(("Mail Delivery System", from.as_str()))
        .to(sender.as_str())
        .subject(subject)
        .date(now)
        .message_id(format!("{}.{}@{hostname}", message.id, rand::random::<u32>()))
        // RFC 3834 §5: an automatic reply; nobody should answer it automatically.
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(report);
    builder.write_to_vec().unwrap_or_default()
}

/// `Sun, 29 Nov 2026 20:00:00 +0000`
pub fn rfc5322_date(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day padding:none] [month repr:short] [year] [hour]:[minute]:[second] +0000"
    );
    t.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_store::{DeliveryEnvelope, RecipientStatus};

    fn recipient(address: &str) -> QueuedRecipient {
        QueuedRecipient {
            address: address.into(),
            domain: "remote.example".into(),
            orcpt: Some(("rfc822".into(), address.into())),
            notify: None,
            sender: None,
            status: RecipientStatus::Failed,
            attempts: 1,
            last_result: None,
            remote_mta: Some("mx.remote.example".into()),
            next_attempt: 0,
            delay_notified: false,
        }
    }

    #[test]
    fn notify_rules() {
        assert!(Action::Failed.wanted_by(None));
        assert!(Action::Delayed.wanted_by(None));
        assert!(!Action::Delivered.wanted_by(None));
        let notify = |text: &str| tern_smtp_proto::Notify::parse(text);
        assert!(!Action::Failed.wanted_by(notify("NEVER")));
        assert!(!Action::Delayed.wanted_by(notify("NEVER")));
        assert!(Action::Delivered.wanted_by(notify("SUCCESS,FAILURE")));
        assert!(Action::Relayed.wanted_by(notify("SUCCESS")));
        assert!(!Action::Delayed.wanted_by(notify("FAILURE")));
    }

    #[test]
    fn report_structure() {
        let message = QueuedMessage {
            id: 7,
            blob: tern_store::BlobHash::of(b"x"),
            size: 10,
            envelope: DeliveryEnvelope {
                mail_from: Some("alice@local.example".into()),
                envid: Some("ENV1".into()),
                ..Default::default()
            },
            created: 1_700_000_000,
        };
        let r = recipient("bob@remote.example");
        let original = b"From: alice@local.example\r\nSubject: hi\r\n\r\nbody\r\n";
        let dsn = build(
            "mx.local.example",
            &message,
            original,
            &[ReportedRecipient {
                recipient: &r,
                action: Action::Failed,
                status: "5.1.1".into(),
                diagnostic: Some("550 5.1.1 no such user".into()),
            }],
            1_700_000_100,
            None,
        );
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("multipart/report"), "{text}");
        assert!(text.contains("report-type=\"delivery-status\"") || text.contains("report-type=delivery-status"));
        assert!(text.contains("Auto-Submitted: auto-replied"));
        assert!(text.contains("Final-Recipient: rfc822; bob@remote.example"));
        assert!(text.contains("Original-Recipient: rfc822; bob@remote.example"));
        assert!(text.contains("Action: failed\r\nStatus: 5.1.1"));
        assert!(text.contains("Original-Envelope-Id: ENV1"));
        assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user"));
        assert!(text.contains("Content-Type: message/rfc822"));
        assert!(text.contains("Subject: hi"));
        let parsed = mail_parser::MessageParser::default().parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.subject(), Some("Undelivered Mail Returned to Sender"));
    }
}
