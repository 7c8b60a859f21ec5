//! SEARCH (with ESEARCH, RFC 4731, and SEARCHRES, RFC 5182), SORT and THREAD (RFC 5256).
//!
//! Their work runs on the server's compute pool ([`tern_guard::ComputePool`]), not on the
//! runtime's threads: the selected mailbox's view moves to a pool thread for the command
//! and comes back with the answer. A program over [`search::MAX_KEYS`] keys, or work over the
//! pool's time budget, is answered `NO [LIMIT]`.

use super::messages::uid_set_text;
use super::{Done, Session};
use crate::ImapServer;
use crate::mailbox::View;
use crate::search::{self, Candidate, Compiled, Scope, SortItem, ThreadNode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tern_guard::{Budget, OverBudget};
use tern_imap_proto::{SearchKey, SearchReturn, SortCriterion, ThreadAlgorithm};
use tern_store::StoreError;

fn charset_ok(charset: &str) -> bool {
    charset.eq_ignore_ascii_case("UTF-8") || charset.eq_ignore_ascii_case("US-ASCII")
}

/// What a command computes on the pool.
enum Work {
    Search,
    Sort(Vec<SortCriterion>),
    Thread(ThreadAlgorithm, bool),
}

/// Its answer: message indices (in mailbox order for SEARCH, sorted for SORT), or threads.
enum Outcome {
    Matched(Vec<usize>),
    Threads(Vec<ThreadNode>),
}

enum Failed {
    Store(StoreError),
    OverBudget,
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Failed {
        Failed::Store(e)
    }
}

impl From<OverBudget> for Failed {
    fn from(_: OverBudget) -> Failed {
        Failed::OverBudget
    }
}

/// Checks the budget every this many messages.
const CHECK_EVERY: usize = 256;

/// Indices of the messages of `view` that match the program. Runs on a pool thread.
async fn evaluate(
    server: &ImapServer,
    view: &View,
    saved: &[u32],
    compiled: &Compiled,
    budget: Budget,
    progress: &AtomicUsize,
) -> Result<Vec<usize>, Failed> {
    // BODY/TEXT: one index lookup per string; only contents the index cannot answer for are
    // scanned below.
    let mut text_index = Vec::with_capacity(compiled.needles.len());
    for (needle, with_header) in &compiled.needles {
        budget.check()?;
        text_index.push(server.store.text_search(needle, *with_header).await?);
    }
    let scope = Scope {
        now: tern_store::now_unix(),
        last_seq: view.messages.len() as u32,
        last_uid: view.max_uid(),
        recent: &view.recent,
        saved,
        needles: &compiled.needles,
        text_index: &text_index,
    };
    let needs = compiled.needs;
    let mut out = Vec::new();
    let mut fields = Vec::new();
    for (i, entry) in view.messages.iter().enumerate() {
        if i % CHECK_EVERY == 0 {
            budget.check()?;
        }
        progress.store(i, Ordering::Relaxed);
        if needs.summary && i % 1024 == 0 {
            let hashes: Vec<_> = view.messages[i..(i + 1024).min(view.messages.len())].iter().map(|m| m.blob).collect();
            fields = server.summaries.search_fields(&server.store, &hashes).await?;
        }
        let fields = if needs.summary { fields.get(i % 1024).cloned().flatten() } else { None };
        let scan = needs.text && scope.needs_scan(entry);
        let (header, text) = if scan || compiled.header_key {
            budget.check()?;
            match server.store.blob_get(entry.blob).await? {
                // This thread is the pool's: decoding here keeps it off the runtime.
                Some(raw) if scan => {
                    let (h, b) = tern_mime::text::search_texts(&raw);
                    (Some(h), Some(b))
                }
                Some(raw) => (Some(tern_mime::text::header_text(&raw[..tern_mime::text::header_len(&raw)])), None),
                None => (None, None),
            }
        } else {
            (None, None)
        };
        let c = Candidate { entry, seq: i as u32 + 1, fields, header, text };
        if search::matches(&compiled.program, &c, &scope) {
            out.push(i);
        }
    }
    Ok(out)
}

/// The data SORT and THREAD look at, for the matched messages.
async fn sort_items(
    server: &ImapServer,
    view: &View,
    matched: &[usize],
    budget: Budget,
) -> Result<Vec<SortItem>, Failed> {
    let mut items = Vec::with_capacity(matched.len());
    for (n, &i) in matched.iter().enumerate() {
        if n % 512 == 0 {
            budget.check()?;
            let hashes: Vec<_> =
                matched[n..(n + 512).min(matched.len())].iter().map(|&k| view.messages[k].blob).collect();
            server.summaries.prefetch(&server.store, &hashes).await?;
        }
        let m = &view.messages[i];
        let summary = match server.summaries.get(&server.store, m.blob).await? {
            Some(s) => s,
            None => Arc::new(crate::Summary::hot(tern_mime::summarize(b""))),
        };
        items.push(SortItem::new(i as u32 + 1, m.uid, m.size, m.internal_date, summary));
    }
    Ok(items)
}

async fn run(
    server: &ImapServer,
    view: &View,
    saved: &[u32],
    compiled: &Compiled,
    work: Work,
    budget: Budget,
    progress: &AtomicUsize,
) -> Result<Outcome, Failed> {
    let matched = evaluate(server, view, saved, compiled, budget, progress).await?;
    progress.store(view.messages.len(), Ordering::Relaxed);
    match work {
        Work::Search => Ok(Outcome::Matched(matched)),
        Work::Sort(criteria) => {
            let mut items = sort_items(server, view, &matched, budget).await?;
            budget.check()?;
            search::sort(&mut items, &criteria);
            Ok(Outcome::Matched(items.iter().map(|i| i.seq as usize - 1).collect()))
        }
        Work::Thread(algorithm, uid) => {
            let items = sort_items(server, view, &matched, budget).await?;
            budget.check()?;
            let number = move |i: &SortItem| if uid { i.uid } else { i.seq };
            Ok(Outcome::Threads(match algorithm {
                ThreadAlgorithm::OrderedSubject => search::thread_ordered_subject(&items, number),
                ThreadAlgorithm::References => search::thread_references(&items, number),
            }))
        }
    }
}

/// The window a PARTIAL return option asks for, over `len` results.
fn partial_window(opts: &[SearchReturn], len: usize) -> Option<std::ops::Range<usize>> {
    opts.iter().find_map(|o| match o {
        SearchReturn::Partial(range) => Some(range.window(len)),
        _ => None,
    })
}

/// The ESEARCH response (RFC 4731 §3.1, RFC 9394 §3.1) for results `nums` in the order
/// given: ascending for SEARCH, sort order for SORT (RFC 5267 §3.2, where MIN and MAX are the
/// first and last sorted). SAVE is the caller's.
fn esearch(tag: &str, uid: bool, nums: &[u32], opts: &[SearchReturn]) -> String {
    let mut line = format!("ESEARCH (TAG \"{tag}\")");
    if uid {
        line.push_str(" UID");
    }
    for o in opts {
        match o {
            SearchReturn::Min => {
                if let Some(n) = nums.first() {
                    line.push_str(&format!(" MIN {n}"));
                }
            }
            SearchReturn::Max => {
                if let Some(n) = nums.last() {
                    line.push_str(&format!(" MAX {n}"));
                }
            }
            SearchReturn::Count => line.push_str(&format!(" COUNT {}", nums.len())),
            SearchReturn::All if !nums.is_empty() => line.push_str(&format!(" ALL {}", uid_set_text(nums))),
            SearchReturn::Partial(range) => {
                let shown = &nums[range.window(nums.len())];
                let set = if shown.is_empty() { "NIL".to_string() } else { uid_set_text(shown) };
                line.push_str(&format!(" PARTIAL ({range} {set})"));
            }
            SearchReturn::All | SearchReturn::Save | SearchReturn::Update | SearchReturn::Context => {}
        }
    }
    line
}

/// A SEARCH or SORT with RETURN (UPDATE) (RFC 5267 §4): run again when the selected mailbox
/// changed, and its difference reported as ADDTO and REMOVEFROM.
pub(crate) struct UpdatingSearch {
    tag: String,
    uid: bool,
    key: SearchKey,
    /// The sort criteria of a SORT; `None` for a SEARCH.
    sort: Option<Vec<SortCriterion>>,
    /// UIDs of the results as last reported, in result order.
    results: Vec<u32>,
}

/// Most searches one session keeps updated; more are answered `NO [NOUPDATE]`.
const MAX_UPDATING: usize = 5;

/// What the mailbox looks like to an updating search: when it changes, searches run again.
pub(crate) fn view_stamp(view: &View) -> (usize, u32, u64) {
    (view.messages.len(), view.max_uid(), view.messages.iter().map(|m| m.modseq).max().unwrap_or(0))
}

/// The `ESEARCH` update for an updating search whose results went from `old` to `new` (UIDs
/// in result order). Messages no longer in the mailbox are left out: their EXPUNGE (or
/// VANISHED), sent before, removed them. A SEARCH's positions are 0 (its results are in
/// mailbox order); a SORT's are where the message was (REMOVEFROM, last first) and is
/// (ADDTO, first first) in the sorted results (RFC 5267 §4.3, §4.4).
fn update_line(search: &UpdatingSearch, new: &[u32], view: &View) -> Option<String> {
    let number = |uid: u32| {
        if search.uid { Some(uid) } else { view.index_of(uid).map(|i| i as u32 + 1) }
    };
    let base: Vec<u32> = search.results.iter().copied().filter(|u| view.index_of(*u).is_some()).collect();
    let new_set: std::collections::HashSet<u32> = new.iter().copied().collect();
    let base_set: std::collections::HashSet<u32> = base.iter().copied().collect();
    let mut parts = Vec::new();
    if search.sort.is_none() {
        let removed: Vec<u32> = base.iter().copied().filter(|u| !new_set.contains(u)).filter_map(number).collect();
        let added: Vec<u32> = new.iter().copied().filter(|u| !base_set.contains(u)).filter_map(number).collect();
        if !removed.is_empty() {
            parts.push(format!("REMOVEFROM (0 {})", uid_set_text(&removed)));
        }
        if !added.is_empty() {
            parts.push(format!("ADDTO (0 {})", uid_set_text(&added)));
        }
    } else {
        for (position, uid) in base.iter().enumerate().rev() {
            if !new_set.contains(uid)
                && let Some(n) = number(*uid)
            {
                parts.push(format!("REMOVEFROM ({} {n})", position + 1));
            }
        }
        for (position, uid) in new.iter().enumerate() {
            if !base_set.contains(uid)
                && let Some(n) = number(*uid)
            {
                parts.push(format!("ADDTO ({} {n})", position + 1));
            }
        }
    }
    if parts.is_empty() {
        return None;
    }
    let uid = if search.uid { " UID" } else { "" };
    Some(format!("ESEARCH (TAG \"{}\"){uid} {}", search.tag, parts.join(" ")))
}

impl Session {
    /// Keeps a search updated (RFC 5267 UPDATE), or says it will not (`NOUPDATE`).
    fn register_update(
        &mut self,
        tag: &str,
        uid: bool,
        key: SearchKey,
        sort: Option<Vec<SortCriterion>>,
        results: Vec<u32>,
    ) {
        if self.updating.len() >= MAX_UPDATING {
            self.untagged(&format!("NO [NOUPDATE \"{tag}\"] At most {MAX_UPDATING} searches are kept updated"));
            return;
        }
        if let Some(view) = self.state.view() {
            self.updating_stamp = view_stamp(view);
        }
        self.updating.retain(|s| s.tag != tag);
        self.updating.push(UpdatingSearch { tag: tag.to_string(), uid, key, sort, results });
    }

    /// Runs the updating searches again when the selected mailbox changed, and reports how
    /// their results changed.
    pub(crate) async fn update_searches(&mut self) -> Result<(), StoreError> {
        // Nothing kept updated (nearly every session): no pass over the messages.
        if self.updating.is_empty() {
            return Ok(());
        }
        let Some(stamp) = self.state.view().map(view_stamp) else { return Ok(()) };
        if stamp == self.updating_stamp {
            return Ok(());
        }
        self.updating_stamp = stamp;
        let mut kept = Vec::new();
        for mut search in std::mem::take(&mut self.updating) {
            let work = match &search.sort {
                Some(criteria) => Work::Sort(criteria.clone()),
                None => Work::Search,
            };
            let matched = match self.compute(&search.tag, &search.key, work).await? {
                Ok(Outcome::Matched(m)) => m,
                _ => {
                    self.untagged(&format!("NO [NOUPDATE \"{}\"] The search can no longer be updated", search.tag));
                    continue;
                }
            };
            let Some(view) = self.state.view() else { return Ok(()) };
            let new: Vec<u32> = matched.iter().map(|&i| view.messages[i].uid).collect();
            if let Some(line) = update_line(&search, &new, view) {
                self.untagged(&line);
            }
            search.results = new;
            kept.push(search);
        }
        self.updating = kept;
        Ok(())
    }

    /// CANCELUPDATE (RFC 5267 §4.5).
    pub(super) fn cancel_update(&mut self, tags: &[String]) -> Done {
        self.updating.retain(|s| !tags.contains(&s.tag));
        Done::ok("CANCELUPDATE completed")
    }

    /// Runs `work` over the messages matching `key` on the compute pool. `Err(done)` is the
    /// answer when it could not (too many keys, over budget).
    async fn compute(&mut self, tag: &str, key: &SearchKey, work: Work) -> Result<Result<Outcome, Done>, StoreError> {
        let compiled = search::compile(key);
        if compiled.keys > search::MAX_KEYS || compiled.needles.len() > search::MAX_TEXT_KEYS {
            tracing::info!(keys = compiled.keys, texts = compiled.needles.len(), "search refused: too many keys");
            return Ok(Err(Done::no(format!(
                "Too many search keys (at most {} keys, {} of them BODY or TEXT)",
                search::MAX_KEYS,
                search::MAX_TEXT_KEYS
            ))
            .code("LIMIT")));
        }
        let (Some(view), Some(account)) = (self.state.take_view(), self.state.account()) else {
            return Ok(Err(Done::bad("No mailbox selected")));
        };
        let owner = account.id.to_string();
        let saved = self.saved.clone();
        let server = Arc::clone(&self.server);
        let handle = tokio::runtime::Handle::current();
        let pool = Arc::clone(&self.server.compute);
        let started = std::time::Instant::now();
        let goal = view.messages.len();
        let progress = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&progress);
        let job = pool.run(&owner, move |budget| {
            let outcome = handle.block_on(run(&server, &view, &saved, &compiled, work, budget, &counted));
            (view, outcome)
        });
        tokio::pin!(job);
        // RFC 9585: while it runs, how far it got (the messages examined).
        let mut ticks = self.server.settings.progress_every.and_then(|every| {
            let first = tokio::time::Instant::now().checked_add(every)?;
            let mut t = tokio::time::interval_at(first, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            Some(t)
        });
        let result = loop {
            let tick = async {
                match ticks.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut job => break r,
                _ = tick => {
                    self.progress(tag, progress.load(Ordering::Relaxed), goal);
                    if self.flush().await.is_err() {
                        ticks = None;
                    }
                }
            }
        };
        metrics::histogram!("tern_imap_compute_seconds").record(started.elapsed().as_secs_f64());
        let (view, outcome) = match result {
            Ok(r) => r,
            Err(e) => {
                // The view is gone with the job: the session cannot go on.
                tracing::error!(error = %e, "search failed on the compute pool");
                self.untagged("BYE [SERVERBUG] Internal error");
                self.closing = true;
                return Ok(Err(Done::no("Internal error").code("SERVERBUG")));
            }
        };
        self.state.set_view(view);
        match outcome {
            Ok(o) => Ok(Ok(o)),
            Err(Failed::Store(e)) => Err(e),
            Err(Failed::OverBudget) => {
                tracing::info!(limit = ?self.server.compute.limit(), "search stopped: over its time budget");
                metrics::counter!("tern_imap_compute_over_budget_total").increment(1);
                Ok(Err(Done::no("Search too expensive, narrow it down").code("LIMIT")))
            }
        }
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
        let modseq_key = search::compile(&key).modseq;
        if modseq_key {
            self.enable_condstore();
        }
        let matched = match self.compute(tag, &key, Work::Search).await? {
            Ok(Outcome::Matched(m)) => m,
            Ok(Outcome::Threads(_)) => return Ok(Done::no("Internal error").code("SERVERBUG")),
            Err(done) => return Ok(done),
        };
        let Some(view) = self.state.view() else { return Ok(Done::bad("No mailbox selected")) };
        let uids: Vec<u32> = matched.iter().map(|&i| view.messages[i].uid).collect();
        let nums: Vec<u32> = if uid { uids.clone() } else { matched.iter().map(|&i| i as u32 + 1).collect() };
        let modseqs: Vec<u64> = matched.iter().map(|&i| view.messages[i].modseq).collect();
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
            // RFC 7162 §3.1.5: the highest modseq of the messages returned.
            if let (true, Some(h)) = (modseq_key, modseqs.iter().max()) {
                line.push_str(&format!(" (MODSEQ {h})"));
            }
            self.untagged(&line);
            return Ok(Done::ok("SEARCH completed"));
        };
        if opts.is_empty() {
            opts.push(SearchReturn::All);
        }
        if opts.contains(&SearchReturn::Update) {
            self.register_update(tag, uid, key.clone(), None, uids.clone());
        }
        let has = |o: SearchReturn| opts.contains(&o);
        let only_min_max = (has(SearchReturn::Min) || has(SearchReturn::Max))
            && !has(SearchReturn::All)
            && !has(SearchReturn::Count)
            && !opts.iter().any(|o| matches!(o, SearchReturn::Partial(_)));
        if has(SearchReturn::Save) {
            // RFC 5182 §2.4: with MIN/MAX (and no ALL/COUNT) only those are saved; RFC 9394
            // §3.1: with PARTIAL, the messages of the window.
            self.saved = if only_min_max {
                let mut s = Vec::new();
                if has(SearchReturn::Min) {
                    s.extend(uids.first());
                }
                if has(SearchReturn::Max) {
                    s.extend(uids.last());
                }
                s
            } else if let Some(window) = partial_window(&opts, uids.len()) {
                uids[window].to_vec()
            } else {
                uids.clone()
            };
            self.saved.sort_unstable();
            self.saved.dedup();
            if opts.len() == 1 {
                return Ok(Done::ok("SEARCH completed, result saved"));
            }
        }
        let mut line = esearch(tag, uid, &nums, &opts);
        // RFC 4731 §3.2: with MIN and/or MAX alone, the modseq of the message(s) returned;
        // otherwise the highest of all the matches.
        let modseq = if only_min_max {
            let mut returned = Vec::new();
            if has(SearchReturn::Min) {
                returned.extend(modseqs.first());
            }
            if has(SearchReturn::Max) {
                returned.extend(modseqs.last());
            }
            returned.into_iter().max()
        } else {
            modseqs.iter().max()
        };
        if let (true, Some(h)) = (modseq_key, modseq) {
            line.push_str(&format!(" MODSEQ {h}"));
        }
        self.untagged(&line);
        Ok(Done::ok("SEARCH completed"))
    }

    pub(super) async fn sort(
        &mut self,
        tag: &str,
        uid: bool,
        criteria: Vec<SortCriterion>,
        charset: &str,
        key: SearchKey,
        returns: Option<Vec<SearchReturn>>,
    ) -> Result<Done, StoreError> {
        if !charset_ok(charset) {
            return Ok(Done::no("Unsupported charset").code("BADCHARSET (UTF-8 US-ASCII)"));
        }
        let ordered = match self.compute(tag, &key, Work::Sort(criteria.clone())).await? {
            Ok(Outcome::Matched(m)) => m,
            Ok(Outcome::Threads(_)) => return Ok(Done::no("Internal error").code("SERVERBUG")),
            Err(done) => return Ok(done),
        };
        let Some(view) = self.state.view() else { return Ok(Done::bad("No mailbox selected")) };
        let nums: Vec<u32> = ordered.iter().map(|&i| if uid { view.messages[i].uid } else { i as u32 + 1 }).collect();
        let sorted_uids: Vec<u32> = ordered.iter().map(|&i| view.messages[i].uid).collect();
        // RFC 5267 §3.2 ESORT: the ESEARCH answer, in sort order (MIN is the first sorted).
        if let Some(mut opts) = returns {
            if opts.is_empty() {
                opts.push(SearchReturn::All);
            }
            if opts.contains(&SearchReturn::Update) {
                self.register_update(tag, uid, key, Some(criteria), sorted_uids);
            }
            let line = esearch(tag, uid, &nums, &opts);
            self.untagged(&line);
            return Ok(Done::ok("SORT completed"));
        }
        let mut line = String::from("SORT");
        for n in &nums {
            line.push(' ');
            line.push_str(&n.to_string());
        }
        self.untagged(&line);
        Ok(Done::ok("SORT completed"))
    }

    pub(super) async fn thread(
        &mut self,
        tag: &str,
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: &str,
        key: SearchKey,
    ) -> Result<Done, StoreError> {
        if !charset_ok(charset) {
            return Ok(Done::no("Unsupported charset").code("BADCHARSET (UTF-8 US-ASCII)"));
        }
        let threads = match self.compute(tag, &key, Work::Thread(algorithm, uid)).await? {
            Ok(Outcome::Threads(t)) => t,
            Ok(Outcome::Matched(_)) => return Ok(Done::no("Internal error").code("SERVERBUG")),
            Err(done) => return Ok(done),
        };
        self.out.extend_from_slice(b"* THREAD ");
        search::write_threads(&mut self.out, &threads);
        self.out.extend_from_slice(b"\r\n");
        Ok(Done::ok("THREAD completed"))
    }
}
