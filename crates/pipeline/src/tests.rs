use super::*;
use std::net::{IpAddr, Ipv4Addr};
use tern_store::{Flags, MailboxSelector};

fn ctx(recipients: usize, tls: bool) -> MessageContext {
    let session = SessionInfo {
        session_id: "s1".into(),
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        client_port: 4000,
        helo: "client.example".into(),
        esmtp: true,
        tls: tls.then(|| TlsInfo { version: "TLSv1.3".into(), cipher: "TLS13_AES_256_GCM_SHA384".into() }),
        authenticated_as: None,
        dnsbl: vec![],
        local_hostname: "mx.example.org".into(),
        service: "smtp",
    };
    let rcpts = (0..recipients)
        .map(|i| Recipient {
            address: format!("u{i}@example.org"),
            orcpt: None,
            notify: None,
            accounts: vec![i as u64 + 1],
            remote: vec![],
            mailbox: MailboxSelector::Inbox,
            flags: Flags::default(),
            keywords: vec![],
            filed: Vec::new(),
            forward_sender: None,
        })
        .collect();
    MessageContext::new(
        session,
        "Q1".into(),
        Some("s@client.example".into()),
        rcpts,
        b"Subject: t\r\n\r\nhi\r\n".to_vec(),
        1_790_000_000,
    )
}

#[tokio::test]
async fn trace_headers_are_prepended_in_order() {
    let mut c = ctx(1, true);
    assert_eq!(inbound(None, None).run(&mut c).await, Outcome::Deliver);
    let text = String::from_utf8(c.final_message()).unwrap();
    assert!(text.starts_with("Return-Path: <s@client.example>\r\nReceived: from client.example ([192.0.2.7])\r\n\tby mx.example.org (Tern) with ESMTPS id Q1\r\n\t(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)\r\n\tfor <u0@example.org>;\r\n\t"), "{text}");
    assert!(text.ends_with("+0000\r\nSubject: t\r\n\r\nhi\r\n"), "{text}");
    let parsed = tern_mime::summarize(text.as_bytes());
    assert_eq!(parsed.subject, "t", "the result is still a parseable message");
}

#[tokio::test]
async fn no_for_clause_with_several_recipients_and_plain_esmtp() {
    let mut c = ctx(2, false);
    inbound(None, None).run(&mut c).await;
    let text = String::from_utf8(c.final_message()).unwrap();
    assert!(text.contains("with ESMTP id Q1;"), "{text}");
    assert!(!text.contains("for <"), "{text}");
}

struct Refuse;
#[async_trait::async_trait]
impl Stage for Refuse {
    fn name(&self) -> &'static str {
        "refuse"
    }
    async fn process(&self, _ctx: &mut MessageContext) -> Verdict {
        Verdict::Reject(Refusal::new(550, (5, 7, 1), "no"))
    }
}

struct Junk;
#[async_trait::async_trait]
impl Stage for Junk {
    fn name(&self) -> &'static str {
        "junk"
    }
    async fn process(&self, ctx: &mut MessageContext) -> Verdict {
        for r in &mut ctx.recipients {
            r.mailbox = MailboxSelector::SpecialUse(tern_store::SpecialUse::Junk);
        }
        ctx.tag("junk", "yes");
        Verdict::Accept
    }
}

#[tokio::test]
async fn stages_can_reject_redirect_and_short_circuit() {
    let mut c = ctx(1, false);
    let p = Pipeline::new().with(Refuse).with(stages::ReturnPath);
    assert!(matches!(p.run(&mut c).await, Outcome::Reject { stage: "refuse", .. }));
    assert!(!String::from_utf8(c.final_message()).unwrap().contains("Return-Path"), "later stages do not run");

    let mut c = ctx(1, false);
    let p = Pipeline::new().with(Junk).with(Refuse);
    assert_eq!(p.run(&mut c).await, Outcome::Deliver, "Accept skips the rest");
    assert_eq!(c.recipients[0].mailbox, MailboxSelector::SpecialUse(tern_store::SpecialUse::Junk));
}

#[test]
fn header_values_cannot_inject_lines() {
    let mut c = ctx(1, false);
    c.prepend_header("X-Test", "a\nInjected: yes\r\n\tfolded ok");
    let text = String::from_utf8(c.final_message()).unwrap();
    assert!(text.starts_with("X-Test: a Injected: yes\r\n\tfolded ok\r\n"), "{text}");
}

#[test]
fn dates() {
    assert_eq!(stages::rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
    assert_eq!(stages::rfc5322_date(1_790_000_000), "Mon, 21 Sep 2026 14:13:20 +0000");
}

#[test]
fn remove_header_fields_removes_every_field_of_that_name_with_its_continuations() {
    let mut c = ctx(1, false);
    c.message =
        b"X-Tern-Spam: score=-100\r\n\tfolded\r\nSubject: hi\r\nx-tern-spam: again\r\n\r\nX-Tern-Spam: in the body\r\n"
            .to_vec();
    assert_eq!(2, c.remove_header_fields("X-Tern-Spam"));
    assert_eq!(b"Subject: hi\r\n\r\nX-Tern-Spam: in the body\r\n".to_vec(), c.message);
    assert_eq!(0, c.remove_header_fields("X-Tern-Spam"));
}

#[test]
fn the_message_id_is_read_from_the_header_for_the_log() {
    let mut c = ctx(1, true);
    assert_eq!(c.message_id(), None);
    c.message = b"Subject: t\r\nMESSAGE-ID:\r\n  <abc@example.org>\r\n\r\nMessage-ID: <body@x>\r\n".to_vec();
    assert_eq!(c.message_id().as_deref(), Some("abc@example.org"));
    c.message = b"Message-Id: <a\x07b@x>\r\n\r\n".to_vec();
    assert_eq!(c.message_id().as_deref(), Some("ab@x"));
}
