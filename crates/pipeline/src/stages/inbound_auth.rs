//! Inbound authentication on port 25: SPF, DKIM, ARC, iprev and DMARC, recorded in one
//! `Authentication-Results:` header, and the DMARC policy applied.
//!
//! - Incoming `Authentication-Results:` fields that claim Tern's authserv-id are removed first
//!   (RFC 8601 §5): nobody outside may speak for this server.
//! - A message without exactly one `From:` field is refused (RFC 7489 §6.6.1: the author is
//!   ambiguous, a spoofing vector); several addresses in it are each judged, the strictest
//!   verdict wins.
//! - DMARC `p=reject` failures get `550 5.7.1`; `p=quarantine` ones go to Junk; `pct` is
//!   honoured; a DNS failure that leaves the verdict open gets `451`, never a silent pass.
//! - Mail from trusted networks (`limits.exempt`) and authenticated submissions is not checked.

use crate::{MessageContext, Refusal, Stage, Verdict};
use async_trait::async_trait;
use std::sync::Arc;
use tern_mailauth::dmarc::{Policy, Verdict as DmarcVerdict};
use tern_mailauth::verify::{Outcome, Results, Verifier};
use tern_store::{MailboxSelector, SpecialUse};

/// What to do with the results.
#[derive(Debug, Clone)]
pub struct InboundPolicy {
    /// Refuse DMARC `p=reject` failures (else they go to Junk).
    pub dmarc_reject: bool,
    /// Deliver DMARC `p=quarantine` failures to Junk.
    pub dmarc_quarantine: bool,
    /// Look up the client's reverse DNS (iprev).
    pub iprev: bool,
    /// Networks whose mail is not checked.
    pub trusted: Vec<tern_config::Cidr>,
}

pub struct InboundAuthentication {
    pub verifier: Arc<Verifier>,
    pub policy: InboundPolicy,
    /// Where DMARC results are counted for aggregate reports.
    pub reports: Option<Arc<tern_mailauth::report::Aggregator>>,
    /// For ARC sealing of forwarded mail with the forwarding domain's key.
    pub directory: Option<tern_directory::Directory>,
}

impl InboundAuthentication {
    fn trusted(&self, ctx: &MessageContext) -> bool {
        ctx.session.authenticated_as.is_some() || self.policy.trusted.iter().any(|c| c.contains(ctx.session.client_ip))
    }
}

/// Removes `Authentication-Results` fields whose value starts with `authserv_id` (then `;`,
/// space or end), in place: only the header section is rewritten. Returns how many went.
pub fn remove_results_for(message: &mut Vec<u8>, authserv_id: &str) -> usize {
    let end = message.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 2).unwrap_or(message.len());
    let header = &message[..end];
    let mut out = Vec::with_capacity(header.len());
    let mut removed = 0;
    let mut i = 0;
    while i < header.len() {
        // One field: its first line and its continuation lines.
        let mut j = i;
        loop {
            match header[j..].iter().position(|&b| b == b'\n') {
                Some(p) => {
                    j += p + 1;
                    if !matches!(header.get(j), Some(b' ' | b'\t')) {
                        break;
                    }
                }
                None => {
                    j = header.len();
                    break;
                }
            }
        }
        let field = &header[i..j];
        let drop = field
            .iter()
            .position(|&b| b == b':')
            .filter(|&colon| field[..colon].trim_ascii().eq_ignore_ascii_case(b"authentication-results"))
            .is_some_and(|colon| {
                let value = String::from_utf8_lossy(&field[colon + 1..]);
                let id: String = strip_comments(&value)
                    .trim_start()
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != ';')
                    .collect();
                id.eq_ignore_ascii_case(authserv_id)
            });
        if drop {
            removed += 1;
        } else {
            out.extend_from_slice(field);
        }
        i = j;
    }
    if removed > 0 {
        message.splice(..end, out);
    }
    removed
}

/// The value without leading comments (`(...)`), RFC 8601 allows CFWS before the authserv-id.
fn strip_comments(value: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in value.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// `From:` fields and their addresses, read leniently but counted strictly.
fn from_addresses(header: &[u8]) -> (usize, Vec<String>) {
    let fields =
        header.split(|&b| b == b'\n').filter(|line| line.len() > 5 && line[..5].eq_ignore_ascii_case(b"from:")).count();
    let parsed = mail_parser::MessageParser::new().parse_headers(header);
    let addresses = parsed
        .as_ref()
        .and_then(|m| m.from())
        .map(|a| a.iter().filter_map(|x| x.address().map(|s| s.to_ascii_lowercase())).collect())
        .unwrap_or_default();
    (fields, addresses)
}

#[async_trait]
impl Stage for InboundAuthentication {
    fn name(&self) -> &'static str {
        "authentication"
    }

    async fn process(&self, ctx: &mut MessageContext) -> Verdict {
        let id = &self.verifier.authserv_id;
        let removed = remove_results_for(&mut ctx.message, id);
        if removed > 0 {
            tracing::info!(removed, "removed Authentication-Results that claimed to be ours");
        }
        if self.trusted(ctx) {
            return Verdict::Continue;
        }
        let header = ctx.header_block().to_vec();
        let (from_fields, from) = from_addresses(&header);
        if from_fields != 1 || from.is_empty() {
            metrics::counter!("tern_auth_results_total", "method" => "from", "result" => "invalid").increment(1);
            return Verdict::Reject(Refusal::new(
                550,
                (5, 7, 1),
                "Message must have exactly one From: header with an address (RFC 5322, RFC 7489 §6.6.1)",
            ));
        }
        let ip = ctx.session.client_ip;
        let helo = ctx.session.helo.clone();
        let host = ctx.session.local_hostname.clone();
        let mail_from = ctx.mail_from.clone().unwrap_or_default();
        let v = &self.verifier;
        let raw = &ctx.message;
        let (iprev, spf_helo, spf_mail_from, dkim, arc) = tokio::join!(
            async { if self.policy.iprev { Some(v.iprev(ip).await) } else { None } },
            v.spf_helo(ip, &helo, &host),
            v.spf_mail_from(ip, &helo, &host, &mail_from),
            v.dkim(raw),
            v.arc(raw),
        );
        // DMARC for every distinct author domain; the strictest outcome counts.
        let mut domains: Vec<String> =
            from.iter().filter_map(|a| a.rsplit_once('@').map(|(_, d)| d.to_string())).collect();
        domains.sort();
        domains.dedup();
        let sample = (rand::random::<u32>() % 100) as u8;
        let mut evaluations = Vec::new();
        for d in &domains {
            evaluations.push(v.dmarc(d, &spf_mail_from, &dkim, sample).await);
        }
        let worst = evaluations
            .iter()
            .max_by_key(|e| match (&e.verdict, e.applied) {
                (DmarcVerdict::Fail, Policy::Reject) => 5,
                (DmarcVerdict::TempError(_), _) => 4,
                (DmarcVerdict::Fail, Policy::Quarantine) => 3,
                (DmarcVerdict::Fail, Policy::None) => 2,
                _ => 0,
            })
            .cloned();
        if let Some(reports) = &self.reports {
            for e in &evaluations {
                reports.add(e, ip, &mail_from, &spf_mail_from, &dkim);
            }
        }
        let results = Results {
            iprev,
            spf_helo: Some(spf_helo),
            spf_mail_from: Some(spf_mail_from.clone()),
            dkim,
            arc,
            dmarc: worst.clone(),
            from,
        };
        record_metrics(&results);
        let value = v.header_value(&results, ip, &helo, &mail_from);
        if !ctx.session.dnsbl.is_empty() {
            let zones = ctx.session.dnsbl.join(", ");
            ctx.prepend_header("X-Tern-DNSBL", &format!("{ip} listed in {zones}"));
        }
        ctx.prepend_header("Authentication-Results", &value);
        ctx.auth_results = Some(value);
        let verdict = match &worst {
            None => Verdict::Continue,
            Some(dmarc) => self.apply_dmarc(ctx, dmarc),
        };
        if verdict == Verdict::Continue {
            self.seal_forwarded(ctx, &mail_from).await;
        }
        verdict
    }
}

impl InboundAuthentication {
    /// ARC-seals a message that an alias forwards elsewhere (RFC 8617), so the next hop can
    /// trust the results Tern saw. Signed with the alias domain's RSA DKIM key, if it has one.
    async fn seal_forwarded(&self, ctx: &mut MessageContext, mail_from: &str) {
        let Some(directory) = &self.directory else { return };
        let Some(forwarding) = ctx.recipients.iter().find(|r| !r.remote.is_empty()) else { return };
        let Some(domain) = forwarding.address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()) else { return };
        let Ok(Some(record)) = directory.domain_get(&domain).await else { return };
        let Some(key) = record.dkim.iter().find(|k| k.algorithm == tern_store::KeyAlgorithm::Rsa) else { return };
        let key = crate::signing_key(key);
        let mut message = ctx.take_final_message();
        let s = &ctx.session;
        let sealed = self
            .verifier
            .arc_seal(&message, s.client_ip, &s.helo, &s.local_hostname, mail_from, &record.name, &key)
            .await;
        if let Some(headers) = sealed {
            message.splice(0..0, headers);
            ctx.tag("arc", format!("sealed d={}", record.name));
        }
        ctx.replace_message(message);
    }

    fn apply_dmarc(&self, ctx: &mut MessageContext, dmarc: &tern_mailauth::dmarc::Evaluation) -> Verdict {
        match (&dmarc.verdict, dmarc.applied) {
            (DmarcVerdict::TempError(e), _) => {
                tracing::info!(domain = ?dmarc.from_domain, error = %e, "DMARC could not be evaluated");
                Verdict::Defer(Refusal::new(
                    451,
                    (4, 7, 0),
                    format!("DMARC check of {} failed temporarily, try again later", dmarc.from_domain),
                ))
            }
            (DmarcVerdict::Fail, Policy::Reject) if self.policy.dmarc_reject => {
                tracing::info!(domain = ?dmarc.from_domain, "refused by DMARC policy");
                Verdict::Reject(Refusal::new(
                    550,
                    (5, 7, 1),
                    format!("Message refused by the DMARC policy of {} (RFC 7489)", dmarc.from_domain),
                ))
            }
            (DmarcVerdict::Fail, Policy::Reject | Policy::Quarantine)
                if self.policy.dmarc_quarantine || self.policy.dmarc_reject =>
            {
                tracing::info!(domain = ?dmarc.from_domain, "quarantined by DMARC policy");
                for r in &mut ctx.recipients {
                    r.mailbox = MailboxSelector::SpecialUse(SpecialUse::Junk);
                }
                ctx.tag("dmarc", "quarantine");
                Verdict::Continue
            }
            _ => Verdict::Continue,
        }
    }
}

fn record_metrics(r: &Results) {
    let count = |method: &'static str, outcome: Outcome| {
        metrics::counter!("tern_auth_results_total", "method" => method, "result" => outcome.word()).increment(1);
    };
    if let Some(s) = &r.spf_mail_from {
        count("spf", s.outcome);
    }
    for d in &r.dkim {
        count("dkim", d.outcome);
    }
    if r.dkim.is_empty() {
        count("dkim", Outcome::None);
    }
    if let Some(a) = r.arc {
        count("arc", a);
    }
    if let Some(e) = &r.dmarc {
        metrics::counter!("tern_auth_results_total", "method" => "dmarc", "result" => e.verdict.word()).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_results_are_removed() {
        let m = b"Authentication-Results: mx.tern.test; spf=pass\r\nAuthentication-Results: (comment) MX.Tern.Test;\r\n dkim=pass\r\nAuthentication-Results: other.example; spf=fail\r\nSubject: x\r\n\r\nAuthentication-Results: mx.tern.test; body\r\n";
        let mut out = m.to_vec();
        let n = remove_results_for(&mut out, "mx.tern.test");
        assert_eq!(n, 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Authentication-Results: other.example; spf=fail\r\nSubject: x\r\n\r\nAuthentication-Results: mx.tern.test; body\r\n"
        );
        let mut kept = b"Authentication-Results: mx.tern.test.evil; x\r\n\r\n".to_vec();
        assert_eq!(remove_results_for(&mut kept, "mx.tern.test"), 0);
        assert_eq!(kept, b"Authentication-Results: mx.tern.test.evil; x\r\n\r\n");
    }

    #[test]
    fn from_fields_are_counted() {
        assert_eq!(from_addresses(b"From: a@x.example\r\nTo: b@y\r\n").0, 1);
        assert_eq!(from_addresses(b"From: a@x.example\r\nFROM: c@z.example\r\n").0, 2);
        assert_eq!(from_addresses(b"To: b@y\r\n").0, 0);
        assert_eq!(from_addresses(b"From: a@x.example, b@y.example\r\n").1, vec!["a@x.example", "b@y.example"]);
    }
}
