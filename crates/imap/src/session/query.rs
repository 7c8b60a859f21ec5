//! SEARCH (with ESEARCH, RFC 4731, and SEARCHRES, RFC 5182), SORT and THREAD (RFC 5256).

use super::messages::uid_set_text;
use super::{Done, Session};
use crate::search::{self, Candidate, Scope, SortItem};
use std::sync::Arc;
use tern_imap_proto::{SearchKey, SearchReturn, SortCriterion, ThreadAlgorithm};
use tern_store::StoreError;

fn charset_ok(charset: &str) -> bool {
    charset.eq_ignore_ascii_case("UTF-8") || charset.eq_ignore_ascii_case("US-ASCII")
}

fn has_header_key(key: &SearchKey) -> bool {
    match key {
        SearchKey::Header(..) => true,
        SearchKey::Not(k) => has_header_key(k),
        SearchKey::Or(a, b) => has_header_key(a) || has_header_key(b),
        SearchKey::And(ks) => ks.iter().any(has_header_key),
        _ => false,
    }
}

fn has_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq(_) => true,
        SearchKey::Not(k) => has_modseq(k),
        SearchKey::Or(a, b) => has_modseq(a) || has_modseq(b),
        SearchKey::And(ks) => ks.iter().any(has_modseq),
        _ => false,
    }
}

impl Session {
    /// Indices of the messages of the selected mailbox that match `key`.
    async fn evaluate(&self, key: &SearchKey) -> Result<Vec<usize>, StoreError> {
        let Some(view) = &self.view else { return Ok(vec![]) };
        let key = &search::lowercase(key);
        let needs = search::needs(key);
        // BODY/TEXT: one index lookup per string; only contents the index cannot answer for
        // are scanned below.
        let needles = search::text_needles(key);
        let mut text_index = Vec::new();
        for (needle, with_header) in &needles {
            if let Some(matches) = self.server.store.text_search(needle, *with_header).await? {
                text_index.push(search::TextIndexAnswer { needle: needle.clone(), with_header: *with_header, matches });
            }
        }
        let header_key = has_header_key(key);
        let scope = Scope {
            last_seq: view.messages.len() as u32,
            last_uid: view.max_uid(),
            first_recent: view.first_recent,
            saved: &self.saved,
            text_index: &text_index,
        };
        let mut out = Vec::new();
        let mut fields = Vec::new();
        for (i, entry) in view.messages.iter().enumerate() {
            if needs.summary && i % 1024 == 0 {
                let hashes: Vec<_> =
                    view.messages[i..(i + 1024).min(view.messages.len())].iter().map(|m| m.blob).collect();
                fields = self.server.summaries.search_fields(&self.server.store, &hashes).await?;
            }
            let fields = if needs.summary { fields.get(i % 1024).cloned().flatten() } else { None };
            let scan = needs.text && needles.iter().any(|(n, h)| search::indexed(&scope, n, *h, entry).is_none());
            let (header, text) = if scan || header_key {
                match self.server.store.blob_get(entry.blob).await? {
                    Some(raw) => tokio::task::spawn_blocking(move || {
                        if scan {
                            let (h, b) = tern_mime::text::search_texts(&raw);
                            (Some(h), Some(b))
                        } else {
                            (Some(tern_mime::text::header_text(&raw[..tern_mime::text::header_len(&raw)])), None)
                        }
                    })
                    .await
                    .map_err(|e| StoreError::Task(e.to_string()))?,
                    None => (None, None),
                }
            } else {
                (None, None)
            };
            let c = Candidate { entry, seq: i as u32 + 1, fields, header, text };
            if search::matches(key, &c, &scope) {
                out.push(i);
            }
        }
        Ok(out)
    }

    pub(super) async fn search(
        &mut self,
        tag: &str,
        uid: bool,
        charset: Option<String>,
        key: SearchKey,
        returns: Option<Vec<SearchReturn>>,
    ) -> Result<Done, StoreError> {
        if let Some(c) = &charset
            && !charset_ok(c)
        {
            return Ok(Done::no("Unsupported charset").code("BADCHARSET (UTF-8 US-ASCII)"));
        }
        let modseq_key = has_modseq(&key);
        if modseq_key {
            self.condstore = true;
        }
        let matched = self.evaluate(&key).await?;
        let Some(view) = &self.view else { return Ok(Done::bad("No mailbox selected")) };
        let uids: Vec<u32> = matched.iter().map(|&i| view.messages[i].uid).collect();
        let nums: Vec<u32> = if uid { uids.clone() } else { matched.iter().map(|&i| i as u32 + 1).collect() };
        let highest = matched.iter().map(|&i| view.messages[i].modseq).max();
        let returns = match (returns, self.rev2) {
            (Some(r), _) => Some(r),
            // IMAP4rev2 answers every SEARCH with ESEARCH (RFC 9051 §6.4.4).
            (None, true) => Some(vec![SearchReturn::All]),
            (None, false) => None,
        };
        let Some(mut opts) = returns else {
            let mut line = String::from("SEARCH");
            for n in &nums {
                line.push(' ');
                line.push_str(&n.to_string());
            }
            if let (true, Some(h)) = (modseq_key, highest) {
                line.push_str(&format!(" (MODSEQ {h})"));
            }
            self.untagged(&line);
            return Ok(Done::ok("SEARCH completed"));
        };
        if opts.is_empty() {
            opts.push(SearchReturn::All);
        }
        let save = opts.contains(&SearchReturn::Save);
        let has = |o: SearchReturn| opts.contains(&o);
        if save {
            // RFC 5182 §2.4: with MIN/MAX (and no ALL/COUNT) only those are saved.
            self.saved = if (has(SearchReturn::Min) || has(SearchReturn::Max))
                && !has(SearchReturn::All)
                && !has(SearchReturn::Count)
            {
                let mut s = Vec::new();
                if has(SearchReturn::Min) {
                    s.extend(uids.first());
                }
                if has(SearchReturn::Max) {
                    s.extend(uids.last());
                }
                s.sort_unstable();
                s.dedup();
                s
            } else {
                let mut s = uids.clone();
                s.sort_unstable();
                s
            };
            if opts.len() == 1 {
                return Ok(Done::ok("SEARCH completed, result saved"));
            }
        }
        let mut line = format!("ESEARCH (TAG \"{tag}\")");
        if uid {
            line.push_str(" UID");
        }
        if has(SearchReturn::Min)
            && let Some(n) = nums.first()
        {
            line.push_str(&format!(" MIN {n}"));
        }
        if has(SearchReturn::Max)
            && let Some(n) = nums.last()
        {
            line.push_str(&format!(" MAX {n}"));
        }
        if has(SearchReturn::Count) {
            line.push_str(&format!(" COUNT {}", nums.len()));
        }
        if has(SearchReturn::All) && !nums.is_empty() {
            line.push_str(&format!(" ALL {}", uid_set_text(&nums)));
        }
        if let (true, Some(h)) = (modseq_key, highest) {
            line.push_str(&format!(" MODSEQ {h}"));
        }
        self.untagged(&line);
        Ok(Done::ok("SEARCH completed"))
    }

    async fn sort_items(&self, matched: &[usize]) -> Result<Vec<SortItem>, StoreError> {
        let Some(view) = &self.view else { return Ok(vec![]) };
        let mut items = Vec::with_capacity(matched.len());
        for (n, &i) in matched.iter().enumerate() {
            if n % 512 == 0 {
                let hashes: Vec<_> =
                    matched[n..(n + 512).min(matched.len())].iter().map(|&k| view.messages[k].blob).collect();
                self.server.summaries.prefetch(&self.server.store, &hashes).await?;
            }
            let m = &view.messages[i];
            let summary = match self.server.summaries.get(&self.server.store, m.blob).await? {
                Some(s) => s,
                None => Arc::new(tern_mime::summarize(b"")),
            };
            items.push(SortItem {
                seq: i as u32 + 1,
                uid: m.uid,
                entry_size: m.size,
                internal_date: m.internal_date,
                summary,
            });
        }
        Ok(items)
    }

    pub(super) async fn sort(
        &mut self,
        uid: bool,
        criteria: Vec<SortCriterion>,
        charset: &str,
        key: SearchKey,
    ) -> Result<Done, StoreError> {
        if !charset_ok(charset) {
            return Ok(Done::no("Unsupported charset").code("BADCHARSET (UTF-8 US-ASCII)"));
        }
        let matched = self.evaluate(&key).await?;
        let mut items = self.sort_items(&matched).await?;
        search::sort(&mut items, &criteria);
        let mut line = String::from("SORT");
        for i in &items {
            line.push(' ');
            line.push_str(&(if uid { i.uid } else { i.seq }).to_string());
        }
        self.untagged(&line);
        Ok(Done::ok("SORT completed"))
    }

    pub(super) async fn thread(
        &mut self,
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: &str,
        key: SearchKey,
    ) -> Result<Done, StoreError> {
        if !charset_ok(charset) {
            return Ok(Done::no("Unsupported charset").code("BADCHARSET (UTF-8 US-ASCII)"));
        }
        let matched = self.evaluate(&key).await?;
        let items = self.sort_items(&matched).await?;
        let number = move |i: &SortItem| if uid { i.uid } else { i.seq };
        let threads = match algorithm {
            ThreadAlgorithm::OrderedSubject => search::thread_ordered_subject(&items, number),
            ThreadAlgorithm::References => search::thread_references(&items, number),
        };
        self.out.extend_from_slice(b"* THREAD ");
        search::write_threads(&mut self.out, &threads);
        self.out.extend_from_slice(b"\r\n");
        Ok(Done::ok("THREAD completed"))
    }
}
