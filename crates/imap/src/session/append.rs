//! APPEND with MULTIAPPEND (RFC 3502) and CATENATE (RFC 4469), and REPLACE (RFC 8508). The
//! messages of one command are stored in one commit ([`tern_store::MailStore::append_batch`]):
//! all of them or none, and a replaced message goes in the same commit.

use super::acl::{Located, not_permitted, permitted_flags};
use super::messages::{split_flags, uid_set_text};
use super::{Done, Session};
use tern_imap_proto::url::parse_message_url;
use tern_imap_proto::{AppendContent, AppendMessage, CatenatePart};
use tern_store::Flags;
use tern_store::{
    AppendBatch, AppendReceipt, Delivery, DeliveryEnvelope, DeliveryTarget, MailboxSelector, Rights, StoreError,
};

impl Session {
    pub(super) async fn append(&mut self, wire: &str, messages: Vec<AppendMessage>) -> Result<Done, StoreError> {
        let mailbox = match self.append_target(wire).await? {
            Ok(m) => m,
            Err(done) => return Ok(done),
        };
        let (deliveries, seen) = match self.prepare_messages(&mailbox, messages).await? {
            Ok(d) => d,
            Err(done) => return Ok(done),
        };
        let batch = AppendBatch { mailbox: mailbox.mailbox.id, messages: deliveries, replaces: None };
        Ok(match self.store_batch(batch).await? {
            Ok(r) => {
                self.own_seen_after_append(&mailbox, &r, &seen).await?;
                Done::ok("APPEND completed").code(format!("APPENDUID {} {}", r.uid_validity, uid_set_text(&r.uids)))
            }
            Err(done) => done,
        })
    }

    /// RFC 8508: `message` stored in `wire`'s mailbox in place of `target` (a sequence number,
    /// or a UID) of the selected one, in one commit.
    pub(super) async fn replace(
        &mut self,
        uid: bool,
        target: u32,
        wire: &str,
        message: AppendMessage,
    ) -> Result<Done, StoreError> {
        let Some(view) = self.state.view() else { return Ok(Done::bad("No mailbox selected")) };
        if view.read_only {
            return Ok(Done::no("Mailbox is read-only").code("READ-ONLY"));
        }
        // The replaced message is deleted and expunged (RFC 8508 §3.3, RFC 4314 `t` and `e`).
        if !view.rights.contains(Rights::DELETE_MESSAGES.union(Rights::EXPUNGE)) {
            return Ok(not_permitted("replace messages"));
        }
        let old = if uid {
            match view.index_of(target) {
                Some(_) if !view.is_expunged(target) => target,
                _ => return Ok(Done::no("No such message")),
            }
        } else {
            match view.messages.get(target as usize - 1) {
                Some(m) => m.uid,
                None => return Ok(Done::bad("Message sequence number out of range")),
            }
        };
        let selected = view.id;
        let mailbox = match self.append_target(wire).await? {
            Ok(m) => m,
            Err(done) => return Ok(done),
        };
        let (deliveries, seen) = match self.prepare_messages(&mailbox, vec![message]).await? {
            Ok(d) => d,
            Err(done) => return Ok(done),
        };
        let batch = AppendBatch { mailbox: mailbox.mailbox.id, messages: deliveries, replaces: Some((selected, old)) };
        let receipt = match self.store_batch(batch).await? {
            Ok(r) => r,
            Err(done) => return Ok(done),
        };
        self.own_seen_after_append(&mailbox, &receipt, &seen).await?;
        // RFC 8508 §3.3: APPENDUID in an untagged OK, before the expunge of the old message.
        let new = uid_set_text(&receipt.uids);
        self.untagged(&format!("OK [APPENDUID {} {new}] Replacement message stored", receipt.uid_validity));
        if receipt.replaced {
            self.report_own_expunges(&[old]);
        }
        Ok(Done::ok("REPLACE completed"))
    }

    /// The mailbox an APPEND or REPLACE stores into (the user's own, or one shared with `i`),
    /// or the answer when there is none.
    async fn append_target(&mut self, wire: &str) -> Result<Result<Located, Done>, StoreError> {
        let name = match self.mailbox_name(wire) {
            Ok(n) => n,
            Err(done) => return Ok(Err(done)),
        };
        Ok(match self.locate(&name).await? {
            Some(m) if m.rights.contains(Rights::INSERT) => Ok(m),
            Some(_) => Err(not_permitted("insert messages")),
            None => Err(Done::no("No such mailbox").code("TRYCREATE")),
        })
    }

    async fn store_batch(&mut self, batch: AppendBatch) -> Result<Result<AppendReceipt, Done>, StoreError> {
        Ok(match self.server.store.append_batch(batch).await {
            Ok(r) => Ok(r),
            // RFC 9208 §5.1: checked in the same step as the write, for all the messages.
            Err(StoreError::OverQuota(_)) => {
                Err(Done::no("The messages would exceed your storage quota").code("OVERQUOTA"))
            }
            Err(StoreError::NotFound(_)) => Err(Done::no("The mailbox no longer exists").code("TRYCREATE")),
            Err(e) => return Err(e),
        })
    }

    /// Each message as a delivery into `mailbox` (CATENATE parts put together), or the answer
    /// that refuses the command: nothing is stored unless every message can be.
    async fn prepare_messages(
        &mut self,
        target: &Located,
        messages: Vec<AppendMessage>,
    ) -> Result<Result<(Vec<Delivery>, Vec<bool>), Done>, StoreError> {
        let Some(account) = self.state.account().cloned() else { return Ok(Err(Done::bad("Log in first"))) };
        let limit = self.server.settings.append_limit;
        let mut prepared = Vec::with_capacity(messages.len());
        let mut seen = Vec::with_capacity(messages.len());
        for message in messages {
            let (mut bits, keywords) = match split_flags(&message.flags) {
                // Flags the user may not set are left out (RFC 4314 §4).
                Ok((bits, keywords)) => permitted_flags(target.rights, bits, keywords),
                Err(unknown) => return Ok(Err(Done::bad(format!("Unknown system flag {unknown}")))),
            };
            seen.push(bits.contains(Flags::SEEN));
            if !target.own() {
                // On another account's mailbox \Seen is the user's own, set once stored.
                bits.remove(Flags::SEEN);
            }
            let raw = match message.content {
                AppendContent::Literal { message, binary } => normalize_line_endings(message, binary),
                AppendContent::Catenate(parts) => match self.catenate(parts, limit).await? {
                    Ok(raw) => raw,
                    Err(done) => return Ok(Err(done)),
                },
            };
            if raw.is_empty() {
                return Ok(Err(Done::no("Empty message")));
            }
            if raw.len() as u64 > limit {
                return Ok(Err(Done::no("Message too large").code("TOOBIG")));
            }
            let envelope = DeliveryEnvelope {
                authenticated_as: Some(account.address.clone()),
                source: "imap-append".into(),
                received_at: message.date.map(|d| d.unix).unwrap_or_else(tern_store::now_unix),
                ..Default::default()
            };
            // Into the owner's account (another user's, for a shared mailbox).
            let mailbox = &target.mailbox;
            let into = DeliveryTarget {
                account: mailbox.account,
                mailbox: MailboxSelector::Id(mailbox.id),
                flags: bits,
                keywords,
            };
            prepared.push((raw, envelope, into));
        }
        // Hashing and summarising is CPU work: off the async workers.
        let deliveries = tokio::task::spawn_blocking(move || {
            prepared.into_iter().map(|(raw, envelope, target)| Delivery::prepare(raw, envelope, vec![target])).collect()
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
        Ok(Ok((deliveries, seen)))
    }

    /// After storing into another account's mailbox: this user's own `\Seen` on the new
    /// messages that asked for it.
    async fn own_seen_after_append(
        &mut self,
        target: &Located,
        receipt: &AppendReceipt,
        seen: &[bool],
    ) -> Result<(), StoreError> {
        if target.own() {
            return Ok(());
        }
        let uids: Vec<u32> = receipt.uids.iter().zip(seen).filter(|(_, s)| **s).map(|(u, _)| *u).collect();
        if !uids.is_empty() {
            self.server.store.seen_private_set(target.mailbox.id, self.account_id(), uids, true, None).await?;
        }
        Ok(())
    }

    /// RFC 4469 §3: the message made of texts and parts of stored messages; `NO [BADURL]` for a
    /// URL that names nothing this user can read, `NO [TOOBIG]` past `limit`.
    async fn catenate(&mut self, parts: Vec<CatenatePart>, limit: u64) -> Result<Result<Vec<u8>, Done>, StoreError> {
        let mut out = Vec::new();
        for part in parts {
            match part {
                CatenatePart::Text(text) => out.extend(normalize_line_endings(text, false)),
                CatenatePart::Url(url) => match self.url_content(&url).await? {
                    Some(bytes) => out.extend(bytes),
                    None => {
                        tracing::info!(url = %url.escape_debug(), "CATENATE URL refused");
                        // `url-resp-text` cannot hold `]`.
                        let shown = url.replace(']', "%5D");
                        return Ok(Err(
                            Done::no("The URL names no message part you can read").code(format!("BADURL {shown}"))
                        ));
                    }
                },
            }
            if out.len() as u64 > limit {
                return Ok(Err(Done::no("Message too large").code("TOOBIG")));
            }
        }
        Ok(Ok(out))
    }

    /// The bytes an IMAP URL names in one of the user's mailboxes, if it names any.
    async fn url_content(&mut self, url: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Ok(url) = parse_message_url(url) else { return Ok(None) };
        let name = if url.mailbox.eq_ignore_ascii_case(tern_store::INBOX) {
            tern_store::INBOX.to_string()
        } else {
            url.mailbox
        };
        let Some(mailbox) = self.find_mailbox(&name).await? else { return Ok(None) };
        if url.uid_validity.is_some_and(|v| v != mailbox.uid_validity) {
            return Ok(None);
        }
        let Some(entry) = self.server.store.message_get(mailbox.id, url.uid).await? else { return Ok(None) };
        let Some(raw) = self.server.store.blob_get(entry.blob).await? else { return Ok(None) };
        let content = match &url.section {
            None => raw,
            Some(section) => {
                let Some(summary) = self.server.summaries.get_full(&self.server.store, entry.blob).await? else {
                    return Ok(None);
                };
                match crate::section::body_section(&raw, &summary.message.body, section) {
                    Some(bytes) => bytes,
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(match url.partial {
            None => content,
            Some((offset, length)) => {
                let start = (offset as usize).min(content.len());
                let end = length.map_or(content.len(), |l| start.saturating_add(l as usize).min(content.len()));
                content[start..end].to_vec()
            }
        }))
    }
}

/// Messages are stored with CRLF line endings (RFC 5322 §2.1); clients that APPEND with bare
/// LF get them converted, so POP3 and IMAP return CRLF-exact text. A message sent as a
/// `literal8` (RFC 3516) may carry binary parts, in which a LF is data: only its header is
/// converted, and the body is stored byte for byte.
fn normalize_line_endings(raw: Vec<u8>, binary: bool) -> Vec<u8> {
    let end = if binary { tern_mime::text::header_len(&raw) } else { raw.len() };
    let head = &raw[..end];
    let bare_lf = head.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r') || head.first() == Some(&b'\n');
    if !bare_lf {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + end / 40);
    let mut prev = 0u8;
    for &b in head {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out.extend_from_slice(&raw[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings() {
        assert_eq!(normalize_line_endings(b"a\nb\r\nc\n".to_vec(), false), b"a\r\nb\r\nc\r\n");
        assert_eq!(normalize_line_endings(b"a\r\nb\r\n".to_vec(), false), b"a\r\nb\r\n");
        // A literal8 message: the header is converted, binary body bytes are kept.
        assert_eq!(normalize_line_endings(b"A: b\n\n\x00\n\r".to_vec(), true), b"A: b\r\n\r\n\x00\n\r");
        assert_eq!(normalize_line_endings(b"A: b\r\n\r\n\x00\n".to_vec(), true), b"A: b\r\n\r\n\x00\n");
    }
}
