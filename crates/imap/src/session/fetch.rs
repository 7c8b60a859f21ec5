//! FETCH (RFC 9051 §6.4.5, §7.5.2) with BINARY (RFC 3516), CONDSTORE/QRESYNC modifiers
//! (RFC 7162) and OBJECTID items (RFC 8474).

use super::{Done, Session};
use crate::search::object_id;
use crate::section::{self, BinaryError};
use std::collections::HashSet;
use std::sync::Arc;
use tern_imap_proto::encode;
use tern_imap_proto::render;
use tern_imap_proto::{FetchAttr, Section, SectionText, SequenceSet};
use tern_store::{Flags, StoreError};

fn needs_summary(a: &FetchAttr) -> bool {
    !matches!(
        a,
        FetchAttr::Flags
            | FetchAttr::InternalDate
            | FetchAttr::Rfc822Size
            | FetchAttr::Uid
            | FetchAttr::ModSeq
            | FetchAttr::EmailId
            | FetchAttr::ThreadId
            | FetchAttr::SaveDate
            | FetchAttr::Rfc822
    )
}

fn needs_raw(a: &FetchAttr) -> bool {
    matches!(
        a,
        FetchAttr::Rfc822
            | FetchAttr::Rfc822Header
            | FetchAttr::Rfc822Text
            | FetchAttr::BodySection { .. }
            | FetchAttr::Binary { .. }
            | FetchAttr::BinarySize(_)
    )
}

/// Whether fetching this sets `\Seen` (RFC 9051 §6.4.5).
fn sets_seen(a: &FetchAttr) -> bool {
    matches!(
        a,
        FetchAttr::Rfc822
            | FetchAttr::Rfc822Text
            | FetchAttr::BodySection { peek: false, .. }
            | FetchAttr::Binary { peek: false, .. }
    )
}

fn astring(out: &mut Vec<u8>, s: &str) {
    if !s.is_empty() && s.bytes().all(|c| c > 0x20 && c < 0x7f && !b"(){%*\"\\]".contains(&c)) {
        out.extend_from_slice(s.as_bytes());
    } else {
        encode::string(out, s.as_bytes(), false);
    }
}

/// The section spec as echoed in the response: `1.2.HEADER.FIELDS (From To)`.
fn section_spec(out: &mut Vec<u8>, section: &Section) {
    let part: Vec<String> = section.part.iter().map(u32::to_string).collect();
    out.extend_from_slice(part.join(".").as_bytes());
    let text = match &section.text {
        None => return,
        Some(t) => t,
    };
    if !section.part.is_empty() {
        out.push(b'.');
    }
    match text {
        SectionText::Header => out.extend_from_slice(b"HEADER"),
        SectionText::Text => out.extend_from_slice(b"TEXT"),
        SectionText::Mime => out.extend_from_slice(b"MIME"),
        SectionText::HeaderFields(names) | SectionText::HeaderFieldsNot(names) => {
            out.extend_from_slice(if matches!(text, SectionText::HeaderFields(_)) {
                b"HEADER.FIELDS ("
            } else {
                b"HEADER.FIELDS.NOT ("
            });
            for (i, n) in names.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                astring(out, n);
            }
            out.push(b')');
        }
    }
}

fn partial_slice(data: &[u8], partial: Option<(u32, u32)>) -> &[u8] {
    match partial {
        None => data,
        Some((start, len)) => {
            let start = (start as usize).min(data.len());
            let end = start.saturating_add(len as usize).min(data.len());
            &data[start..end]
        }
    }
}

/// Decoded part content; `Err` names an unknown transfer encoding. A part that does not
/// exist is empty.
fn binary(summary: &Option<Arc<crate::Summary>>, raw: Option<&[u8]>, part: &[u32]) -> Result<Vec<u8>, String> {
    match (summary, raw) {
        (Some(s), Some(raw)) => match section::binary_section(raw, &s.message.body, part) {
            Ok(d) => Ok(d),
            Err(BinaryError::UnknownEncoding(cte)) => Err(cte),
            Err(BinaryError::NoSuchPart) => Ok(Vec::new()),
        },
        _ => Ok(Vec::new()),
    }
}

/// How long a FETCH renders from the cache before it lets other sessions on its worker run.
const YIELD_AFTER: std::time::Duration = std::time::Duration::from_millis(5);

/// Parts of a message larger than this are decoded on the blocking pool.
const DECODE_INLINE_MAX: usize = 256 * 1024;

/// Every part the BINARY items of `attrs` ask for, decoded (RFC 3516), or the unknown
/// encoding that stops the command. Large messages are decoded off the async workers.
async fn decode_binaries(
    attrs: &[FetchAttr],
    summary: &Option<Arc<crate::Summary>>,
    raw: &Option<Arc<Vec<u8>>>,
) -> Result<std::collections::HashMap<Vec<u32>, Result<Vec<u8>, String>>, StoreError> {
    let mut parts: Vec<Vec<u32>> = attrs
        .iter()
        .filter_map(|a| match a {
            FetchAttr::Binary { part, .. } | FetchAttr::BinarySize(part) => Some(part.clone()),
            _ => None,
        })
        .collect();
    parts.sort();
    parts.dedup();
    if parts.is_empty() {
        return Ok(Default::default());
    }
    let (summary, raw) = (summary.clone(), raw.clone());
    let large = raw.as_ref().is_some_and(|r| r.len() > DECODE_INLINE_MAX);
    let work = move || {
        let raw = raw.as_deref().map(Vec::as_slice);
        parts
            .into_iter()
            .map(|p| (binary(&summary, raw, &p).map_err(|e| e.to_string()), p))
            .map(|(d, p)| (p, d))
            .collect()
    };
    if large {
        tokio::task::spawn_blocking(work).await.map_err(|e| StoreError::Task(e.to_string()))
    } else {
        Ok(work())
    }
}

fn part_path(part: &[u32]) -> String {
    part.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

/// What the items of one message are rendered from.
struct Fetched<'a> {
    message: &'a tern_store::MessageEntry,
    flags: &'a str,
    summary: Option<&'a crate::Summary>,
    raw: Option<&'a [u8]>,
    binaries: &'a std::collections::HashMap<Vec<u32>, Result<Vec<u8>, String>>,
    utf8: bool,
    style: render::Style,
}

/// Appends one FETCH data item (RFC 9051 §7.5.2) of a message to the response.
fn write_item(item: &mut Vec<u8>, attr: &FetchAttr, f: &Fetched<'_>) {
    let (m, flags, summary, raw, binaries, utf8, style) =
        (f.message, f.flags, &f.summary, f.raw, f.binaries, f.utf8, f.style);
    match attr {
        FetchAttr::Flags => item.extend_from_slice(format!("FLAGS ({flags})").as_bytes()),
        FetchAttr::Uid => item.extend_from_slice(format!("UID {}", m.uid).as_bytes()),
        FetchAttr::InternalDate => {
            item.extend_from_slice(format!("INTERNALDATE \"{}\"", encode::date_time(m.internal_date, 0)).as_bytes())
        }
        FetchAttr::Rfc822Size => item.extend_from_slice(format!("RFC822.SIZE {}", m.size).as_bytes()),
        FetchAttr::ModSeq => item.extend_from_slice(format!("MODSEQ ({})", m.modseq).as_bytes()),
        FetchAttr::EmailId => item.extend_from_slice(format!("EMAILID ({})", object_id("M", m.email_id)).as_bytes()),
        FetchAttr::ThreadId => item.extend_from_slice(format!("THREADID ({})", object_id("T", m.thread_id)).as_bytes()),
        FetchAttr::SaveDate => {
            item.extend_from_slice(format!("SAVEDATE \"{}\"", encode::date_time(m.saved, 0)).as_bytes())
        }
        // RFC 8970 §3: computed with the summary, so LAZY never has to wait for it.
        FetchAttr::Preview { .. } => {
            item.extend_from_slice(b"PREVIEW ");
            match summary.as_ref().map(|s| s.message.preview.as_str()) {
                Some(p) => encode::string(item, p.as_bytes(), utf8),
                None => item.extend_from_slice(b"NIL"),
            }
        }
        FetchAttr::Envelope => {
            item.extend_from_slice(b"ENVELOPE ");
            if let Some(s) = &summary {
                match s.forms_for(utf8) {
                    Some(forms) => item.extend_from_slice(&forms.envelope),
                    None => render::envelope(item, &s.message.envelope, style),
                }
            }
        }
        FetchAttr::Body | FetchAttr::BodyStructure => {
            let extended = matches!(attr, FetchAttr::BodyStructure);
            item.extend_from_slice(if extended { b"BODYSTRUCTURE " } else { b"BODY " });
            if let Some(s) = &summary {
                // Rendered only from a whole tree: a UTF-8 client's BODY and BODYSTRUCTURE
                // read the full summary (`want_tree`), whose forms are never pre-rendered.
                match s.forms_for(utf8) {
                    Some(forms) if extended => item.extend_from_slice(&forms.bodystructure),
                    Some(forms) => item.extend_from_slice(&forms.body),
                    None => render::body_structure(item, &s.message.body, extended, style),
                }
            }
        }
        FetchAttr::Rfc822 => {
            item.extend_from_slice(b"RFC822 ");
            encode::text_literal(item, raw.unwrap_or_default());
        }
        FetchAttr::Rfc822Header | FetchAttr::Rfc822Text => {
            let raw = raw.unwrap_or_default();
            let body_at = summary.as_ref().map(|s| s.message.body.offset_body as usize).unwrap_or(0).min(raw.len());
            if matches!(attr, FetchAttr::Rfc822Header) {
                item.extend_from_slice(b"RFC822.HEADER ");
                encode::text_literal(item, &raw[..body_at]);
            } else {
                item.extend_from_slice(b"RFC822.TEXT ");
                encode::text_literal(item, &raw[body_at..]);
            }
        }
        FetchAttr::BodySection { section, partial, .. } => {
            item.extend_from_slice(b"BODY[");
            section_spec(item, section);
            item.push(b']');
            if let Some((start, _)) = partial {
                item.extend_from_slice(format!("<{start}>").as_bytes());
            }
            item.push(b' ');
            let data = match (&summary, raw) {
                (Some(s), Some(raw)) => section::body_section(raw, &s.message.body, section),
                _ => None,
            };
            match data {
                Some(d) => encode::text_literal(item, partial_slice(&d, *partial)),
                None => encode::literal(item, b""),
            }
        }
        FetchAttr::Binary { part, partial, .. } => {
            let decoded = binaries.get(part).and_then(|d| d.as_deref().ok()).unwrap_or_default();
            item.extend_from_slice(format!("BINARY[{}]", part_path(part)).as_bytes());
            if let Some((start, _)) = partial {
                item.extend_from_slice(format!("<{start}>").as_bytes());
            }
            item.push(b' ');
            let data = partial_slice(decoded, *partial);
            if data.contains(&0) {
                item.extend_from_slice(format!("~{{{}}}\r\n", data.len()).as_bytes());
                item.extend_from_slice(data);
            } else {
                encode::literal(item, data);
            }
        }
        FetchAttr::BinarySize(part) => {
            let size = binaries.get(part).and_then(|d| d.as_ref().ok()).map_or(0, Vec::len);
            item.extend_from_slice(format!("BINARY.SIZE[{}] {size}", part_path(part)).as_bytes());
        }
    }
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fetch(
        &mut self,
        tag: &str,
        uid: bool,
        set: SequenceSet,
        attrs: Vec<FetchAttr>,
        changed_since: Option<u64>,
        vanished: bool,
        partial: Option<tern_imap_proto::PartialRange>,
    ) -> Result<Done, StoreError> {
        let Some(view) = self.state.view() else { return Ok(Done::bad("No mailbox selected")) };
        let mut indices = match view.resolve(&set, uid, &self.saved) {
            Ok(i) => i,
            Err(_) => return Ok(Done::bad("Message sequence number out of range")),
        };
        // RFC 9394 §3.2: only the messages at these positions among the set's.
        if let Some(range) = partial {
            let window = range.window(indices.len());
            indices = indices[window].to_vec();
        }
        if changed_since.is_some() || attrs.contains(&FetchAttr::ModSeq) {
            self.enable_condstore();
        }
        let Some(view) = self.state.view() else { return Ok(Done::bad("No mailbox selected")) };
        if vanished && !self.qresync {
            return Ok(Done::bad("VANISHED needs ENABLE QRESYNC"));
        }
        let id = view.id;
        let max = view.max_uid();
        let read_only = view.read_only;
        // Without `s` (RFC 4314), reading does not set \Seen.
        let may_set_seen = view.rights.contains(tern_store::Rights::SEEN);
        let unseen: Vec<u32> = indices
            .iter()
            .map(|&i| &view.messages[i])
            .filter(|m| !m.flags.contains(Flags::SEEN))
            .map(|m| m.uid)
            .collect();
        if let (true, Some(since)) = (vanished, changed_since) {
            // RFC 7162 §3.2.6: expunged UIDs in the set, since the given modseq.
            let changes = self.server.store.mailbox_changes(id, since).await?;
            let gone: Vec<u32> = changes.expunged.into_iter().filter(|u| set.contains(*u, max.max(*u))).collect();
            if !gone.is_empty() {
                self.untagged(&format!("VANISHED (EARLIER) {}", super::messages::uid_set_text(&gone)));
            }
        }
        // Set \Seen first, so the responses carry the new flags.
        let mut seen_now: HashSet<u32> = HashSet::new();
        if !read_only && may_set_seen && attrs.iter().any(sets_seen) && !unseen.is_empty() {
            let update = self.set_seen(unseen, true, None).await?;
            if let Some(view) = self.state.view_mut() {
                for entry in update.updated {
                    if let Some(i) = view.index_of(entry.uid) {
                        seen_now.insert(entry.uid);
                        view.messages[i] = entry;
                    }
                }
            }
        }
        if (attrs.contains(&FetchAttr::Flags) || !seen_now.is_empty())
            && let Some(mut view) = self.state.take_view()
        {
            self.announce_keywords(&mut view, &indices);
            self.state.set_view(view);
        }
        let want_summary = attrs.iter().any(needs_summary);
        // Sections inside the MIME tree, BINARY, and structures re-rendered for UTF-8 clients
        // need the summary's whole tree; the cache keeps only the top level.
        let want_tree = attrs.iter().any(|a| match a {
            FetchAttr::BodySection { section, .. } => !section.part.is_empty(),
            FetchAttr::Binary { .. } | FetchAttr::BinarySize(_) => true,
            FetchAttr::Body | FetchAttr::BodyStructure => self.utf8,
            _ => false,
        });
        let want_raw = attrs.iter().any(needs_raw);
        let mut missing = false;
        let mut ran_since_yield = std::time::Instant::now();
        let mut last_progress = std::time::Instant::now();
        for (n, &i) in indices.iter().enumerate() {
            if let Some(every) = self.server.settings.progress_every
                && last_progress.elapsed() >= every
            {
                self.progress(tag, n, indices.len());
                last_progress = std::time::Instant::now();
            }
            // Summaries are loaded a chunk at a time, in one store call each.
            if want_summary && !want_tree && n % 512 == 0 {
                let end = (n + 512).min(indices.len());
                let hashes: Vec<_> = match self.state.view() {
                    Some(v) => indices[n..end].iter().filter_map(|&k| v.messages.get(k).map(|m| m.blob)).collect(),
                    None => Vec::new(),
                };
                self.server.summaries.prefetch(&self.server.store, &hashes).await?;
            }
            let Some(view) = self.state.view() else { break };
            let Some(m) = view.messages.get(i).cloned() else { continue };
            if changed_since.is_some_and(|c| m.modseq <= c) {
                continue;
            }
            let summary = if want_tree {
                self.server.summaries.get_full(&self.server.store, m.blob).await?
            } else if want_summary {
                self.server.summaries.get(&self.server.store, m.blob).await?
            } else {
                None
            };
            let raw = if want_raw { self.server.store.blob_get(m.blob).await?.map(Arc::new) } else { None };
            if (want_summary && summary.is_none()) || (want_raw && raw.is_none()) {
                // Expunged by another session and gone from the store.
                missing = true;
                continue;
            }
            // Decoded BINARY parts, before anything of this response is written (an unknown
            // encoding answers the command with NO).
            let binaries = decode_binaries(&attrs, &summary, &raw).await?;
            if let Some(cte) = binaries.values().find_map(|d| d.as_ref().err()) {
                return Ok(Done::no(format!("Unknown content transfer encoding {cte}")).code("UNKNOWN-CTE"));
            }
            let raw = raw.as_deref().map(Vec::as_slice);
            let Some(view) = self.state.view() else { break };
            let flags = self.flags_text(&m, view);
            let (utf8, style) = (self.utf8, self.style());
            let head = self.fetch_head(i, m.uid);
            // Items are written straight into the output buffer: a large literal is not
            // copied once more into a response of its own.
            let out = &mut self.out;
            out.extend_from_slice(b"* ");
            out.extend_from_slice(head.as_bytes());
            let mut first = true;
            let mut next_item = |out: &mut Vec<u8>| {
                if !std::mem::take(&mut first) {
                    out.push(b' ');
                }
            };
            if uid && !attrs.contains(&FetchAttr::Uid) {
                next_item(out);
                out.extend_from_slice(format!("UID {}", m.uid).as_bytes());
            }
            let fetched = Fetched {
                message: &m,
                flags: &flags,
                summary: summary.as_deref(),
                raw,
                binaries: &binaries,
                utf8,
                style,
            };
            for a in &attrs {
                next_item(out);
                write_item(out, a, &fetched);
            }
            if seen_now.contains(&m.uid) && !attrs.contains(&FetchAttr::Flags) {
                next_item(out);
                out.extend_from_slice(format!("FLAGS ({flags})").as_bytes());
            }
            if self.condstore && !attrs.contains(&FetchAttr::ModSeq) {
                next_item(out);
                out.extend_from_slice(format!("MODSEQ ({})", m.modseq).as_bytes());
            }
            out.extend_from_slice(b")\r\n");
            if self.maybe_flush().await.is_err() {
                self.closing = true;
                return Ok(Done::no("Connection lost"));
            }
            // Rendering many messages from the cache never waits: let other sessions run
            // now and then (every 64 messages put a 2,000-message FETCH behind every other
            // session 31 times: its p50 went from 25 to 150 ms at 32 clients).
            if ran_since_yield.elapsed() >= YIELD_AFTER {
                tokio::task::yield_now().await;
                ran_since_yield = std::time::Instant::now();
            }
        }
        if missing {
            return Ok(Done::ok("Some messages were expunged by another session").code("EXPUNGEISSUED"));
        }
        Ok(Done::ok("FETCH completed"))
    }
}
