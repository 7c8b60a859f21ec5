//! Inbound authentication as data: each `tests/data/auth/<case>.toml` holds a client (address,
//! HELO, MAIL FROM), the DNS the world shows (a zone for [`tern_dns::MemoryResolver`]), a
//! message, and what the authentication stage must do: its verdict and what the
//! `Authentication-Results` header must (and must not) say. The stage runs as the server
//! runs it, on an in-memory resolver: no network, no sleeps.
//!
//! A new case is a new file; `TERN_AUTH_CASE=name` runs one.

use serde::Deserialize;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use tern_dns::{Dns, MemoryResolver};
use tern_mailauth::dmarc::PublicSuffixList;
use tern_mailauth::verify::Verifier;
use tern_pipeline::stages::{InboundAuthentication, InboundPolicy};
use tern_pipeline::{MessageContext, Recipient, SessionInfo, Stage, Verdict};
use tern_store::{Flags, MailboxSelector, SpecialUse};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    about: String,
    client_ip: IpAddr,
    helo: String,
    mail_from: String,
    #[serde(default)]
    dns: String,
    message: String,
    #[serde(default)]
    dmarc_reject: Option<bool>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// `continue`, `junk`, or `reject 550 5.7.1` / `defer 451 4.7.0`.
    verdict: String,
    /// Each must appear in the Authentication-Results value.
    #[serde(default)]
    results: Vec<String>,
    /// None of these may appear in it.
    #[serde(default)]
    not: Vec<String>,
}

fn session(case: &Case) -> SessionInfo {
    SessionInfo {
        session_id: "case".into(),
        client_ip: case.client_ip,
        client_port: 40000,
        helo: case.helo.clone(),
        esmtp: true,
        tls: None,
        authenticated_as: None,
        dnsbl: vec![],
        local_hostname: "mx.tern.test".into(),
        service: "smtp",
    }
}

fn verdict_words(verdict: &Verdict, ctx: &MessageContext) -> String {
    let refusal = |word: &str, r: &tern_pipeline::Refusal| {
        format!("{word} {} {}.{}.{}", r.code, r.enhanced.0, r.enhanced.1, r.enhanced.2)
    };
    match verdict {
        Verdict::Continue
            if ctx.recipients.iter().all(|r| r.mailbox == MailboxSelector::SpecialUse(SpecialUse::Junk)) =>
        {
            "junk".into()
        }
        Verdict::Continue => "continue".into(),
        Verdict::Accept => "accept".into(),
        Verdict::Reject(r) => refusal("reject", r),
        Verdict::Defer(r) => refusal("defer", r),
        Verdict::Discard(why) => format!("discard {why}"),
        Verdict::Quarantine(why) => format!("quarantine {why}"),
    }
}

async fn run(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let case: Case = toml::from_str(&text).map_err(|e| e.to_string())?;
    let resolver = Arc::new(MemoryResolver::parse(&case.dns).map_err(|e| e.to_string())?);
    let verifier = Verifier::new(Dns::memory(Arc::clone(&resolver)), "mx.tern.test", PublicSuffixList::bundled());
    let stage = InboundAuthentication {
        verifier: Arc::new(verifier),
        policy: InboundPolicy {
            dmarc_reject: case.dmarc_reject.unwrap_or(true),
            dmarc_quarantine: true,
            iprev: true,
            trusted: vec![],
        },
        reports: None,
        directory: None,
    };
    // The message as it travels: CRLF line ends.
    let message = case.message.trim_start_matches('\n').replace("\r\n", "\n").replace('\n', "\r\n").into_bytes();
    let recipient = Recipient {
        address: "bob@tern.test".into(),
        orcpt: None,
        notify: None,
        accounts: vec![1],
        remote: vec![],
        mailbox: MailboxSelector::Inbox,
        flags: Flags::default(),
        keywords: vec![],
        filed: Vec::new(),
        forward_sender: None,
    };
    let mail_from = (!case.mail_from.is_empty()).then(|| case.mail_from.clone());
    let mut ctx = MessageContext::new(session(&case), "Q1".into(), mail_from, vec![recipient], message, 1_790_000_000);
    let verdict = stage.process(&mut ctx).await;
    let results = ctx.auth_results.clone().unwrap_or_default().replace("\r\n\t", " ");
    let mut wrong = Vec::new();
    let got = verdict_words(&verdict, &ctx);
    if got != case.expect.verdict {
        wrong.push(format!("verdict {got:?}, expected {:?}", case.expect.verdict));
    }
    for want in &case.expect.results {
        if !results.contains(want.as_str()) {
            wrong.push(format!("results lack {want:?}"));
        }
    }
    for unwanted in &case.expect.not {
        if results.contains(unwanted.as_str()) {
            wrong.push(format!("results contain {unwanted:?}"));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} ({})\n    {}\n    Authentication-Results: {results}",
            path.display(),
            case.about,
            wrong.join("\n    ")
        ))
    }
}

#[tokio::test]
async fn authentication_cases() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/data/auth");
    let only = std::env::var("TERN_AUTH_CASE").ok();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/data/auth")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| only.as_deref().is_none_or(|o| p.file_stem().is_some_and(|s| s == o)))
        .collect();
    paths.sort();
    assert!(only.is_some() || paths.len() >= 10, "the cases are missing from {}", dir.display());
    let mut failures = Vec::new();
    for path in &paths {
        if let Err(e) = run(path).await {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), paths.len(), failures.join("\n"));
}
