use std::net::IpAddr;
use tern_store::{AccountId, Flags, MailboxSelector};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// e.g. `TLSv1.3`
    pub version: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`
    pub cipher: String,
}

/// Facts about the SMTP session that carried the message.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub session_id: String,
    pub client_ip: IpAddr,
    pub client_port: u16,
    /// EHLO/HELO argument.
    pub helo: String,
    /// Whether the client said EHLO (ESMTP) rather than HELO.
    pub esmtp: bool,
    pub tls: Option<TlsInfo>,
    pub authenticated_as: Option<String>,
    /// DNS blocklists that list the client (tagging only).
    pub dnsbl: Vec<String>,
    /// This server's name.
    pub local_hostname: String,
    /// `smtp`, `submission`, ...
    pub service: &'static str,
}

/// One accepted recipient and where its copy goes.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// As given in RCPT TO.
    pub address: String,
    pub orcpt: Option<(String, String)>,
    pub notify: Option<tern_smtp_proto::Notify>,
    /// Local accounts this address resolved to.
    pub accounts: Vec<AccountId>,
    /// Addresses elsewhere this recipient leads to (itself when not local, alias targets in
    /// other domains): they go to the outbound queue.
    pub remote: Vec<String>,
    /// Which mailbox of those accounts (stages may redirect, e.g. to Junk).
    pub mailbox: MailboxSelector,
    pub flags: Flags,
    pub keywords: Vec<String>,
    /// Accounts whose copies a Sieve script decided, with where they go (an empty list:
    /// discarded). The other accounts get the copy `mailbox`, `flags` and `keywords` say.
    pub filed: Vec<(AccountId, Vec<tern_store::DeliveryTarget>)>,
    /// The reverse path of the copies forwarded to `remote` addresses other than this
    /// recipient itself (SRS, set by [`crate::stages::SenderRewriting`]); `None`: unchanged.
    pub forward_sender: Option<String>,
}

/// Everything the stages see and may change.
#[derive(Debug)]
pub struct MessageContext {
    pub session: SessionInfo,
    /// Transaction id, in logs and the Received header.
    pub queue_id: String,
    /// Reverse path; `None` is `<>`.
    pub mail_from: Option<String>,
    pub recipients: Vec<Recipient>,
    pub ret: Option<tern_smtp_proto::Ret>,
    pub envid: Option<String>,
    pub body: Option<tern_smtp_proto::Body>,
    pub smtputf8: bool,
    /// RFC 8689 REQUIRETLS was asked for.
    pub requiretls: bool,
    /// The Authentication-Results value this server added (kept with the message).
    pub auth_results: Option<String>,
    /// Unix seconds when the data was complete.
    pub received_at: i64,
    /// The message as received (CRLF line endings, unstuffed).
    pub message: Vec<u8>,
    /// Header fields added by stages, each a full `Name: value\r\n` (folded); the last added
    /// ends up on top, as trace fields should (RFC 5321 §4.4).
    added_headers: Vec<String>,
    /// Free-form results of stages (for logs and later stages).
    pub tags: Vec<(String, String)>,
    /// The scan verdict (`tern_scan::Verdict` as JSON), stored with the delivery.
    pub scan_verdict: Option<String>,
    /// What stages asked to happen once the message is accepted, and only then
    /// ([`crate::follow_up`]).
    pub follow_ups: Vec<FollowUp>,
    /// Accounts whose copies differ from the message (a Sieve script's `editheader`), with
    /// their whole content.
    pub edited: Vec<(AccountId, Vec<u8>)>,
}

/// Work that waits for the message's commit: a message refused or lost to a crash before
/// its `250` must leave no trace (no auto-reply sent, no id remembered as seen, or the
/// retry would be taken for a duplicate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    /// Ids a Sieve script asked to remember for the account, with their expiry (RFC 7352
    /// duplicates, RFC 5230 vacation replies).
    Remember { account: AccountId, ids: Vec<(String, i64)> },
    /// A message the server sends with a null reverse path (RFC 5230 §5.1 vacation reply,
    /// RFC 5429 §2.1 refusal report).
    Send { to: String, message: Vec<u8> },
}

impl MessageContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        session: SessionInfo,
        queue_id: String,
        mail_from: Option<String>,
        recipients: Vec<Recipient>,
        message: Vec<u8>,
        received_at: i64,
    ) -> MessageContext {
        MessageContext {
            session,
            queue_id,
            mail_from,
            recipients,
            ret: None,
            envid: None,
            body: None,
            smtputf8: false,
            requiretls: false,
            auth_results: None,
            received_at,
            message,
            added_headers: Vec::new(),
            tags: Vec::new(),
            scan_verdict: None,
            follow_ups: Vec::new(),
            edited: Vec::new(),
        }
    }

    /// Prepends a header field. `value` may contain folded lines (CRLF + WSP) but nothing else
    /// that ends a line.
    pub fn prepend_header(&mut self, name: &str, value: &str) {
        let clean: String = value.split("\r\n").map(|l| l.replace(['\r', '\n'], " ")).collect::<Vec<_>>().join("\r\n");
        self.added_headers.push(format!("{name}: {clean}\r\n"));
    }

    pub fn tag(&mut self, key: &str, value: impl Into<String>) {
        self.tags.push((key.to_string(), value.into()));
    }

    /// The message as it will be stored: added headers (newest first) then the original.
    pub fn final_message(&self) -> Vec<u8> {
        let extra: usize = self.added_headers.iter().map(String::len).sum();
        let mut out = Vec::with_capacity(extra + self.message.len());
        for h in self.added_headers.iter().rev() {
            out.extend_from_slice(h.as_bytes());
        }
        out.extend_from_slice(&self.message);
        out
    }

    /// The header section of the message as received (up to the empty line).
    pub fn header_block(&self) -> &[u8] {
        let end = self.message.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 2).unwrap_or(self.message.len());
        &self.message[..end]
    }

    /// Removes every header field of this name from the message as received (in place; only
    /// the header section is rewritten). Returns how many went.
    pub fn remove_header_fields(&mut self, name: &str) -> usize {
        let end = self.header_block().len();
        let mut kept = Vec::with_capacity(end);
        let mut removed = 0;
        let mut dropping = false;
        for line in self.message[..end].split_inclusive(|&b| b == b'\n') {
            let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
            if !continuation {
                dropping = line.len() > name.len()
                    && line[name.len()] == b':'
                    && line[..name.len()].eq_ignore_ascii_case(name.as_bytes());
                removed += usize::from(dropping);
            }
            if !dropping {
                kept.extend_from_slice(line);
            }
        }
        if removed > 0 {
            self.message.splice(..end, kept);
        }
        removed
    }

    /// Whether the message (as received) has a header field of this name.
    pub fn has_header(&self, name: &str) -> bool {
        let block = self.header_block();
        block.split(|&b| b == b'\n').any(|line| {
            line.len() > name.len()
                && line[name.len()] == b':'
                && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        })
    }

    /// The Message-ID of the message as received, without its angle brackets (for the log),
    /// at most 200 bytes of it.
    pub fn message_id(&self) -> Option<String> {
        let block = self.header_block();
        let mut lines = block.split(|&b| b == b'\n').peekable();
        while let Some(line) = lines.next() {
            let Some(rest) = line.get(11..).filter(|_| line[..11].eq_ignore_ascii_case(b"message-id:")) else {
                continue;
            };
            let mut value = rest.to_vec();
            // Folded onto the next line(s) (RFC 5322 §2.2.3).
            while let Some(next) = lines.peek().filter(|l| l.first().is_some_and(|b| *b == b' ' || *b == b'\t')) {
                value.extend_from_slice(next);
                lines.next();
            }
            let text = String::from_utf8_lossy(&value);
            let id = text.trim().trim_start_matches('<').trim_end_matches('>').trim();
            return (!id.is_empty()).then(|| id.chars().filter(|c| !c.is_control()).take(200).collect());
        }
        None
    }

    /// Replaces the message with a final form computed by a stage (which then includes every
    /// header added so far).
    pub fn replace_message(&mut self, message: Vec<u8>) {
        self.message = message;
        self.added_headers.clear();
    }

    /// Consumes the context's message bytes into the stored form: the added headers are
    /// moved in front of the message inside its own buffer, so a large message is never held
    /// twice.
    pub fn take_final_message(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.message);
        if !self.added_headers.is_empty() {
            let mut head = Vec::with_capacity(self.added_headers.iter().map(String::len).sum());
            for h in self.added_headers.iter().rev() {
                head.extend_from_slice(h.as_bytes());
            }
            out.splice(0..0, head);
            self.added_headers.clear();
        }
        out
    }
}
