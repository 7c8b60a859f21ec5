//! The selected mailbox as one session sees it: message sequence numbers, flags it has
//! reported, and changes made by others that it has not reported yet.

use crate::notify::MailboxSignal;
use std::collections::HashMap;
use std::sync::Arc;
use tern_imap_proto::{SeqNumber, SeqRange, SequenceSet};
use tern_store::{AccountId, Flags, MailboxChanges, MailboxId, MessageEntry, PrivateSeen};

/// UID ranges `[start, end)` that are `\Recent` to a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recent(Vec<(u32, u32)>);

impl Recent {
    pub fn none() -> Recent {
        Recent(Vec::new())
    }

    pub fn contains(&self, uid: u32) -> bool {
        self.0.iter().any(|&(a, b)| uid >= a && uid < b)
    }

    /// Adds UIDs claimed from the store.
    pub fn add(&mut self, range: std::ops::Range<u32>) {
        if range.start >= range.end {
            return;
        }
        match self.0.last_mut() {
            Some(last) if last.1 == range.start => last.1 = range.end,
            _ => self.0.push((range.start, range.end)),
        }
    }
}

/// This user's own `\Seen` on a mailbox another account owns (see
/// [`tern_store::PrivateSeen`]): what the store holds, laid over the mailbox's flags.
#[derive(Debug, Default)]
pub struct PrivateSeenState {
    pub reader: AccountId,
    /// UID → (seen, modseq) of every record the session has read.
    records: HashMap<u32, (bool, u64)>,
    /// The highest record modseq read: the next read asks for what came after.
    pub since: u64,
}

impl PrivateSeenState {
    pub fn new(reader: AccountId) -> PrivateSeenState {
        PrivateSeenState { reader, ..Default::default() }
    }

    /// Takes in records read from the store.
    pub fn take(&mut self, records: &[PrivateSeen]) {
        for r in records {
            self.records.insert(r.uid, (r.seen, r.modseq));
            self.since = self.since.max(r.modseq);
        }
    }

    /// The entry as this user sees it: its own `\Seen` (none without a record), and the
    /// later of the two modseqs.
    pub fn overlay(&self, entry: &mut MessageEntry) {
        let (seen, modseq) = self.records.get(&entry.uid).copied().unwrap_or((false, 0));
        if seen {
            entry.flags.insert(Flags::SEEN);
        } else {
            entry.flags.remove(Flags::SEEN);
        }
        entry.modseq = entry.modseq.max(modseq);
    }

    /// Records changed after `since`, for QRESYNC's resynchronisation.
    pub fn changed_since(&self, since: u64) -> Vec<u32> {
        let mut uids: Vec<u32> = self.records.iter().filter(|(_, (_, m))| *m > since).map(|(u, _)| *u).collect();
        uids.sort_unstable();
        uids
    }
}

pub struct View {
    pub id: MailboxId,
    /// The name this user knows it by (`Other Users/...` for another's).
    pub name: String,
    pub read_only: bool,
    /// What this user may do with it (RFC 4314); all of it for the owner.
    pub rights: tern_store::Rights,
    pub uid_validity: u32,
    /// In sequence order (ascending UID). Includes messages expunged by others until that is
    /// reported.
    pub messages: Vec<MessageEntry>,
    /// Changes up to this modseq are reflected in `messages`.
    pub highest_modseq: u64,
    /// UIDs that are `\Recent` in this session (IMAP4rev1): what it claimed at SELECT and
    /// when new messages arrived later.
    pub recent: Recent,
    /// Keywords this session's FLAGS response has listed (RFC 9051 §7.3.5).
    pub keywords: Vec<String>,
    /// Expunged by another session, not yet reported (UIDs, ascending).
    pub pending_expunged: Vec<u32>,
    pub signal: Arc<MailboxSignal>,
    pub seen_version: u64,
    /// Set when another account owns the mailbox: `\Seen` is this user's own.
    pub private_seen: Option<Box<PrivateSeenState>>,
}

/// What changed since the client last heard, to be reported as untagged responses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Sequence numbers to report as EXPUNGE, in the order to send them.
    pub expunged_seqs: Vec<u32>,
    /// UIDs that vanished (for QRESYNC clients, instead of `expunged_seqs`).
    pub vanished: Vec<u32>,
    /// New message count, when it grew.
    pub exists: Option<u32>,
    /// Indices of messages whose flags changed.
    pub flag_changes: Vec<usize>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SetError {
    /// A message number beyond the mailbox (RFC 9051 §6.4.8).
    BadSequence,
}

impl View {
    /// Lays this user's own `\Seen` over entries read from the store (a no-op on the
    /// user's own mailboxes).
    pub fn overlay(&self, entries: &mut [MessageEntry]) {
        if let Some(p) = &self.private_seen {
            entries.iter_mut().for_each(|e| p.overlay(e));
        }
    }

    /// Takes in private `\Seen` records read or written, and adds the messages they change
    /// (and that `changes` does not already carry) to `changes`, as this user sees them.
    pub fn merge_private(&mut self, records: &[PrivateSeen], changes: &mut MailboxChanges) {
        let Some(p) = self.private_seen.as_mut() else { return };
        p.take(records);
        let Some(p) = self.private_seen.as_ref() else { return };
        changes.changed.iter_mut().for_each(|e| p.overlay(e));
        let mut added = false;
        for r in records {
            if changes.changed.iter().any(|e| e.uid == r.uid) {
                continue;
            }
            let Ok(i) = self.messages.binary_search_by_key(&r.uid, |m| m.uid) else { continue };
            let mut entry = self.messages[i].clone();
            p.overlay(&mut entry);
            changes.changed.push(entry);
            added = true;
        }
        if added {
            changes.changed.sort_by_key(|e| e.uid);
        }
        changes.highest_modseq = changes.highest_modseq.max(p.since);
    }

    pub fn max_uid(&self) -> u32 {
        self.messages.last().map(|m| m.uid).unwrap_or(0)
    }

    pub fn index_of(&self, uid: u32) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.contains(uid)
    }

    pub fn recent_count(&self) -> u32 {
        self.messages.iter().filter(|m| self.recent.contains(m.uid)).count() as u32
    }

    /// Keywords of the messages at `indices` not listed to the client yet, now added to the
    /// list; the caller sends FLAGS and PERMANENTFLAGS when there are any.
    pub fn new_keywords(&mut self, indices: &[usize]) -> bool {
        let mut added = false;
        for &i in indices {
            let Some(m) = self.messages.get(i) else { continue };
            for k in &m.keywords {
                if !self.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                    self.keywords.push(k.clone());
                    added = true;
                }
            }
        }
        added
    }

    pub fn is_expunged(&self, uid: u32) -> bool {
        self.pending_expunged.binary_search(&uid).is_ok()
    }

    /// Indices (ascending, unique) of the messages a set names.
    pub fn resolve(&self, set: &SequenceSet, uid: bool, saved: &[u32]) -> Result<Vec<usize>, SetError> {
        let ranges = match set {
            SequenceSet::Saved => {
                // `$` holds UIDs (RFC 5182 §2.1).
                let mut out: Vec<usize> = saved.iter().filter_map(|u| self.index_of(*u)).collect();
                out.sort_unstable();
                out.dedup();
                return Ok(out);
            }
            SequenceSet::Ranges(r) => r,
        };
        let mut out = Vec::new();
        if uid {
            let max = self.max_uid();
            for SeqRange(a, b) in ranges {
                let v = |x: &SeqNumber| match x {
                    SeqNumber::Value(v) => *v,
                    SeqNumber::Last => max,
                };
                let (lo, hi) = (v(a).min(v(b)), v(a).max(v(b)));
                let start = self.messages.partition_point(|m| m.uid < lo);
                let end = self.messages.partition_point(|m| m.uid <= hi);
                out.extend(start..end);
            }
        } else {
            let n = self.messages.len() as u32;
            for SeqRange(a, b) in ranges {
                let v = |x: &SeqNumber| match x {
                    SeqNumber::Value(v) => Ok(*v),
                    SeqNumber::Last => Ok(n),
                };
                let (a, b) = (v(a)?, v(b)?);
                if n == 0 {
                    continue;
                }
                if a > n || b > n {
                    return Err(SetError::BadSequence);
                }
                let (lo, hi) = (a.min(b), a.max(b));
                out.extend((lo as usize - 1)..(hi as usize));
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Takes in what changed in the store. Expunges are reported only when `allow_expunge`
    /// (never during FETCH, STORE or SEARCH: RFC 9051 §7.5.1); until then the messages stay
    /// in the view.
    pub fn apply(&mut self, changes: MailboxChanges, allow_expunge: bool, vanished: bool) -> Report {
        let mut report = Report::default();
        for uid in changes.expunged {
            if self.index_of(uid).is_some() && !self.is_expunged(uid) {
                let at = self.pending_expunged.partition_point(|u| *u < uid);
                self.pending_expunged.insert(at, uid);
            }
        }
        let before = self.messages.len();
        for entry in changes.changed {
            if let Some(i) = self.index_of(entry.uid) {
                if self.is_expunged(entry.uid) {
                    continue;
                }
                let old = &self.messages[i];
                if old.flags != entry.flags || old.keywords != entry.keywords {
                    report.flag_changes.push(i);
                }
                self.messages[i] = entry;
            } else if entry.uid > self.max_uid() {
                self.messages.push(entry);
            }
        }
        if self.messages.len() > before {
            report.exists = Some(self.messages.len() as u32);
        }
        self.highest_modseq = self.highest_modseq.max(changes.highest_modseq);
        if allow_expunge {
            self.take_expunges(&mut report, vanished);
        }
        report
    }

    /// Removes the pending expunges from the view and says how to report them.
    pub fn take_expunges(&mut self, report: &mut Report, vanished: bool) {
        if self.pending_expunged.is_empty() {
            return;
        }
        let gone = std::mem::take(&mut self.pending_expunged);
        // Flag changes refer to indices; recompute them after removal.
        let changed_uids: Vec<u32> = report.flag_changes.iter().map(|&i| self.messages[i].uid).collect();
        for uid in &gone {
            if let Some(i) = self.index_of(*uid) {
                if !vanished {
                    report.expunged_seqs.push(i as u32 + 1);
                }
                self.messages.remove(i);
            }
        }
        if vanished {
            report.vanished = gone;
        }
        report.flag_changes = changed_uids.iter().filter_map(|u| self.index_of(*u)).collect();
    }

    /// Removes messages this session expunged itself (already reported by the caller).
    pub fn remove_uids(&mut self, uids: &[u32]) -> Vec<u32> {
        let mut seqs = Vec::new();
        for uid in uids {
            if let Some(i) = self.index_of(*uid) {
                seqs.push(i as u32 + 1);
                self.messages.remove(i);
            }
            if let Ok(p) = self.pending_expunged.binary_search(uid) {
                self.pending_expunged.remove(p);
            }
        }
        seqs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_store::{BlobHash, Flags};

    fn entry(uid: u32, flags: Flags, modseq: u64) -> MessageEntry {
        MessageEntry {
            mailbox: 1,
            uid,
            blob: BlobHash([0; 32]),
            size: 10,
            internal_date: 0,
            flags,
            keywords: vec![],
            modseq,
            email_id: uid as u64,
            thread_id: 1,
            delivery_id: 1,
            saved: 0,
        }
    }

    fn view(uids: &[u32]) -> View {
        View {
            rights: tern_store::Rights::ALL,
            id: 1,
            name: "INBOX".into(),
            read_only: false,
            uid_validity: 1,
            messages: uids.iter().map(|&u| entry(u, Flags::default(), 1)).collect(),
            highest_modseq: 1,
            recent: {
                let mut r = Recent::none();
                r.add(100..u32::MAX);
                r
            },
            keywords: vec![],
            pending_expunged: vec![],
            signal: Arc::new(MailboxSignal::default()),
            seen_version: 0,
            private_seen: None,
        }
    }

    fn set(ranges: &[(u32, Option<u32>)]) -> SequenceSet {
        SequenceSet::Ranges(
            ranges
                .iter()
                .map(|(a, b)| SeqRange(SeqNumber::Value(*a), b.map(SeqNumber::Value).unwrap_or(SeqNumber::Last)))
                .collect(),
        )
    }

    #[test]
    fn resolving_sets() {
        let v = view(&[3, 5, 9, 12]);
        assert_eq!(v.resolve(&set(&[(2, Some(3))]), false, &[]).unwrap(), vec![1, 2]);
        assert_eq!(v.resolve(&set(&[(3, None)]), false, &[]).unwrap(), vec![2, 3]);
        assert_eq!(v.resolve(&set(&[(5, Some(5))]), false, &[]), Err(SetError::BadSequence));
        assert_eq!(v.resolve(&set(&[(4, Some(10))]), true, &[]).unwrap(), vec![1, 2]);
        assert_eq!(v.resolve(&set(&[(13, None)]), true, &[]).unwrap(), vec![3], "13:* includes the largest UID");
        assert_eq!(v.resolve(&set(&[(1, Some(1)), (1, Some(3))]), false, &[]).unwrap(), vec![0, 1, 2]);
        assert_eq!(v.resolve(&SequenceSet::Saved, false, &[9, 3, 77]).unwrap(), vec![0, 2]);
        assert_eq!(view(&[]).resolve(&set(&[(1, None)]), false, &[]).unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn expunges_wait_until_allowed() {
        let mut v = view(&[1, 2, 3, 4]);
        let changes = MailboxChanges {
            changed: vec![entry(3, Flags::SEEN, 5), entry(5, Flags::default(), 6)],
            expunged: vec![2, 4],
            highest_modseq: 6,
        };
        let r = v.apply(changes, false, false);
        assert_eq!(r.exists, Some(5), "expunged messages still count until reported");
        assert_eq!(r.flag_changes, vec![2]);
        assert!(r.expunged_seqs.is_empty());
        assert_eq!(v.pending_expunged, vec![2, 4]);
        let r = v.apply(MailboxChanges { highest_modseq: 6, ..Default::default() }, true, false);
        assert_eq!(r.expunged_seqs, vec![2, 3], "each number as it is after the previous expunge");
        assert_eq!(v.messages.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 3, 5]);
        let mut v = view(&[1, 2, 3]);
        let r = v.apply(MailboxChanges { expunged: vec![1, 3], highest_modseq: 2, ..Default::default() }, true, true);
        assert_eq!(r.vanished, vec![1, 3]);
        assert!(r.expunged_seqs.is_empty());
    }
}
