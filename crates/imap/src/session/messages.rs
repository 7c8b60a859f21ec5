//! Message commands: STORE, COPY, MOVE, EXPUNGE, APPEND, and reporting what other sessions
//! changed.

use super::acl::{not_permitted, permitted_flags};
use super::{Done, Session};
use crate::mailbox::{SetError, View};
use tern_imap_proto::{Flag, SequenceSet, StoreMode};
use tern_store::{FlagMode, Flags, MessageEntry, Rights, StoreError};

/// `1:3,5,7:8` from ascending UIDs.
pub(crate) fn uid_set_text(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Splits IMAP flags into system flag bits and keywords; `Err` names an unknown system flag.
pub(crate) fn split_flags(flags: &[Flag]) -> Result<(Flags, Vec<String>), String> {
    let mut bits = Flags::default();
    let mut keywords = Vec::new();
    for f in flags {
        match f.0.as_str() {
            "\\Seen" => bits.insert(Flags::SEEN),
            "\\Answered" => bits.insert(Flags::ANSWERED),
            "\\Flagged" => bits.insert(Flags::FLAGGED),
            "\\Deleted" => bits.insert(Flags::DELETED),
            "\\Draft" => bits.insert(Flags::DRAFT),
            other if other.starts_with('\\') => return Err(other.to_string()),
            keyword => keywords.push(keyword.to_string()),
        }
    }
    Ok((bits, keywords))
}

impl Session {
    pub(crate) fn flags_text(&self, entry: &MessageEntry, view: &View) -> String {
        let mut parts: Vec<&str> = Vec::new();
        for (flag, name) in [
            (Flags::SEEN, "\\Seen"),
            (Flags::ANSWERED, "\\Answered"),
            (Flags::FLAGGED, "\\Flagged"),
            (Flags::DELETED, "\\Deleted"),
            (Flags::DRAFT, "\\Draft"),
        ] {
            if entry.flags.contains(flag) {
                parts.push(name);
            }
        }
        for k in &entry.keywords {
            parts.push(k);
        }
        if !self.rev2 && view.is_recent(entry.uid) {
            parts.push("\\Recent");
        }
        parts.join(" ")
    }

    /// Reports changes by other sessions: EXPUNGE/VANISHED (when allowed), EXISTS, RECENT,
    /// and FETCH of changed flags (with UID, and MODSEQ once CONDSTORE is on).
    pub(crate) async fn report_changes(&mut self, allow_expunge: bool, force: bool) -> Result<(), StoreError> {
        self.report_mailbox_changes(allow_expunge, force).await?;
        // RFC 5267: searches kept updated follow what was just reported.
        self.update_searches().await
    }

    async fn report_mailbox_changes(&mut self, allow_expunge: bool, force: bool) -> Result<(), StoreError> {
        let Some(view) = self.state.view_mut() else { return Ok(()) };
        let version = view.signal.version();
        let pending = allow_expunge && !view.pending_expunged.is_empty();
        if !force && version == view.seen_version && !pending {
            return Ok(());
        }
        view.seen_version = version;
        let (id, since) = (view.id, view.highest_modseq);
        let Some(current) = self.server.store.mailbox_get(id).await? else {
            self.untagged("BYE The selected mailbox was deleted");
            self.closing = true;
            return Ok(());
        };
        // Another user's mailbox: its ACL may have changed (RFC 4314).
        if let Some(me) = self.state.account()
            && current.account != me.id
        {
            let rights = tern_store::acl::rights_of(me, &current);
            if !rights.contains(Rights::READ) {
                self.untagged("BYE [NOPERM] The selected mailbox is no longer shared with you");
                self.closing = true;
                return Ok(());
            }
            if let Some(view) = self.state.view_mut() {
                view.rights = rights;
            }
        }
        let mut changes = self.server.store.mailbox_changes(id, since).await?;
        self.read_private_seen(&mut changes).await?;
        let Some(view) = self.state.view_mut() else { return Ok(()) };
        let report = view.apply(changes, allow_expunge, self.qresync || self.uidonly);
        if !report.vanished.is_empty() {
            self.untagged(&format!("VANISHED {}", uid_set_text(&report.vanished)));
        }
        for seq in &report.expunged_seqs {
            self.untagged(&format!("{seq} EXPUNGE"));
        }
        let Some(mut view) = self.state.take_view() else { return Ok(()) };
        if report.exists.is_some() && !self.rev2 && !view.read_only {
            // New arrivals are \Recent to the first session that learns of them (RFC 3501
            // §2.3.2): claim them, so no other session (nor STATUS) counts them again.
            match self.server.store.mailbox_claim_recent(view.id).await {
                Ok(range) => view.recent.add(range),
                Err(e) => {
                    self.state.set_view(view);
                    return Err(e);
                }
            }
        }
        if report.exists.is_some() {
            self.untagged(&format!("{} EXISTS", view.messages.len()));
            if !self.rev2 {
                self.untagged(&format!("{} RECENT", view.recent_count()));
            }
        }
        self.announce_keywords(&mut view, &report.flag_changes);
        for &i in &report.flag_changes {
            let m = &view.messages[i];
            let flags = self.flags_text(m, &view);
            let modseq = if self.condstore { format!(" MODSEQ ({})", m.modseq) } else { String::new() };
            let head = self.fetch_head(i, m.uid);
            self.untagged(&format!("{head}UID {} FLAGS ({flags}){modseq})", m.uid));
        }
        self.state.set_view(view);
        Ok(())
    }

    /// RFC 9051 §7.3.5: before a FETCH shows a keyword that this session's FLAGS response
    /// did not list, FLAGS (and PERMANENTFLAGS) are sent again with it.
    pub(crate) fn announce_keywords(&mut self, view: &mut View, indices: &[usize]) {
        if !view.new_keywords(indices) {
            return;
        }
        let mut flags: Vec<&str> = vec!["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];
        flags.extend(view.keywords.iter().map(String::as_str));
        let list = flags.join(" ");
        self.untagged(&format!("FLAGS ({list})"));
        if view.read_only {
            self.untagged("OK [PERMANENTFLAGS ()] Read-only mailbox");
        } else {
            let more = if view.keywords.len() < tern_store::MAX_KEYWORDS { " \\*" } else { "" };
            self.untagged(&format!("OK [PERMANENTFLAGS ({list}{more})] Flags permitted"));
        }
    }

    fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, Done> {
        let Some(view) = self.state.view() else { return Err(Done::bad("No mailbox selected")) };
        view.resolve(set, uid, &self.saved)
            .map_err(|SetError::BadSequence| Done::bad("Message sequence number out of range"))
    }

    pub(super) async fn expunge(&mut self, uids: Option<SequenceSet>) -> Result<Done, StoreError> {
        let Some(view) = self.state.view() else { return Ok(Done::bad("No mailbox selected")) };
        if view.read_only {
            return Ok(Done::no("Mailbox is read-only").code("READ-ONLY"));
        }
        if !view.rights.contains(Rights::EXPUNGE) {
            return Ok(not_permitted("expunge"));
        }
        let within = match &uids {
            Some(set) => match view.resolve(set, true, &self.saved) {
                Ok(i) => Some(i),
                Err(_) => return Ok(Done::bad("Bad UID set")),
            },
            None => None,
        };
        let candidates: Vec<u32> = match within {
            Some(indices) => indices
                .into_iter()
                .map(|i| &view.messages[i])
                .filter(|m| m.flags.contains(Flags::DELETED))
                .map(|m| m.uid)
                .collect(),
            None => view.messages.iter().filter(|m| m.flags.contains(Flags::DELETED)).map(|m| m.uid).collect(),
        };
        let candidates: Vec<u32> = candidates.into_iter().filter(|u| !view.is_expunged(*u)).collect();
        let id = view.id;
        if candidates.is_empty() {
            return Ok(Done::ok("EXPUNGE completed"));
        }
        let removed = self.server.store.expunge(id, candidates).await?;
        self.report_own_expunges(&removed);
        Ok(Done::ok("EXPUNGE completed"))
    }

    pub(super) fn report_own_expunges(&mut self, removed: &[u32]) {
        let Some(view) = self.state.view_mut() else { return };
        let seqs = view.remove_uids(removed);
        if self.qresync || self.uidonly {
            if !removed.is_empty() {
                self.untagged(&format!("VANISHED {}", uid_set_text(removed)));
            }
        } else {
            for seq in seqs {
                self.untagged(&format!("{seq} EXPUNGE"));
            }
        }
    }

    pub(super) async fn store_flags(
        &mut self,
        uid: bool,
        set: SequenceSet,
        mode: StoreMode,
        silent: bool,
        flags: Vec<Flag>,
        unchanged_since: Option<u64>,
    ) -> Result<Done, StoreError> {
        let indices = match self.resolve(&set, uid) {
            Ok(i) => i,
            Err(done) => return Ok(done),
        };
        let Some(view) = self.state.view() else { return Ok(Done::bad("No mailbox selected")) };
        if view.read_only {
            return Ok(Done::no("Mailbox is read-only").code("READ-ONLY"));
        }
        let (bits, keywords) = match split_flags(&flags) {
            Ok(f) => f,
            Err(unknown) => return Ok(Done::bad(format!("Unknown system flag {unknown}"))),
        };
        // RFC 4314 §4: `s` for \Seen, `t` for \Deleted, `w` for the rest; a replacement
        // would clear flags the user may not touch, so it needs all three.
        let rights = view.rights;
        let flag_rights = Rights::SEEN.union(Rights::DELETE_MESSAGES).union(Rights::WRITE);
        if mode == StoreMode::Replace && !rights.contains(flag_rights) {
            return Ok(not_permitted("replace all flags"));
        }
        let asked = (bits, keywords.len());
        let (bits, keywords) = permitted_flags(rights, bits, keywords);
        if (bits, keywords.len()) != asked && bits == Flags::default() && keywords.is_empty() {
            return Ok(not_permitted("change these flags"));
        }
        if unchanged_since.is_some() {
            self.enable_condstore();
        }
        let Some(view) = self.state.view() else { return Ok(Done::bad("No mailbox selected")) };
        let uids: Vec<u32> = indices.iter().map(|&i| view.messages[i].uid).collect();
        let mode = match mode {
            StoreMode::Replace => FlagMode::Replace,
            StoreMode::Add => FlagMode::Add,
            StoreMode::Remove => FlagMode::Remove,
        };
        let filed_as = match mode {
            FlagMode::Add | FlagMode::Replace => {
                let has = |k: &str| keywords.iter().any(|x| x.eq_ignore_ascii_case(k));
                if has("$Junk") {
                    Some(true)
                } else if has("$NotJunk") {
                    Some(false)
                } else {
                    None
                }
            }
            FlagMode::Remove => None,
        };
        let update = self.set_flags_seen_apart(uids.clone(), mode, bits, keywords, unchanged_since).await?;
        if let (Some(spam), Some(feedback), Some(account)) =
            (filed_as, self.server.junk_feedback.get(), self.state.account())
            && !update.updated.is_empty()
        {
            feedback.filed(account.id, update.updated.clone(), spam);
        }
        let Some(mut view) = self.state.take_view() else { return Ok(Done::bad("No mailbox selected")) };
        let mut changed = std::collections::HashSet::new();
        let mut changed_at = Vec::new();
        for entry in update.updated {
            if let Some(i) = view.index_of(entry.uid) {
                changed.insert(entry.uid);
                changed_at.push(i);
                view.messages[i] = entry;
            }
        }
        self.announce_keywords(&mut view, &changed_at);
        for &i in &indices {
            let m = &view.messages[i];
            if update.conflicts.contains(&m.uid) || view.is_expunged(m.uid) {
                continue;
            }
            let must = unchanged_since.is_some() && changed.contains(&m.uid);
            if silent && !must {
                continue;
            }
            let flags = self.flags_text(m, &view);
            let uid_part = if uid { format!(" UID {}", m.uid) } else { String::new() };
            let modseq = if self.condstore { format!(" MODSEQ ({})", m.modseq) } else { String::new() };
            let head = self.fetch_head(i, m.uid);
            self.untagged(&format!("{head}FLAGS ({flags}){uid_part}{modseq})"));
        }
        let conflicts: Vec<u32> = if uid {
            update.conflicts.clone()
        } else {
            update.conflicts.iter().filter_map(|u| view.index_of(*u).map(|i| i as u32 + 1)).collect()
        };
        self.state.set_view(view);
        if update.keywords_refused {
            return Ok(Done::no("Too many keywords in this mailbox").code("LIMIT"));
        }
        if !conflicts.is_empty() {
            return Ok(Done::ok("Conditional STORE failed for some messages")
                .code(format!("MODIFIED {}", uid_set_text(&conflicts))));
        }
        Ok(Done::ok("STORE completed"))
    }

    /// Reports a copy or move into or out of Junk to the spam classifier.
    async fn junk_feedback_for_copy(&self, from: tern_store::MailboxId, to: &tern_store::Mailbox, uids: &[u32]) {
        use tern_store::SpecialUse;
        let (Some(feedback), Some(account), Some(view)) =
            (self.server.junk_feedback.get(), self.state.account(), self.state.view())
        else {
            return;
        };
        let source_use = match self.server.store.mailbox_get(from).await {
            Ok(Some(m)) => m.special_use,
            _ => None,
        };
        let spam = match (source_use, to.special_use) {
            (Some(SpecialUse::Junk), Some(SpecialUse::Junk)) => return,
            (_, Some(SpecialUse::Junk)) => true,
            (Some(SpecialUse::Junk), Some(SpecialUse::Trash)) => return,
            (Some(SpecialUse::Junk), _) => false,
            _ => return,
        };
        let messages: Vec<tern_store::MessageEntry> =
            uids.iter().filter_map(|u| view.index_of(*u).map(|i| view.messages[i].clone())).collect();
        feedback.filed(account.id, messages, spam);
    }

    pub(super) async fn copy(
        &mut self,
        uid: bool,
        set: SequenceSet,
        wire: &str,
        move_: bool,
    ) -> Result<Done, StoreError> {
        let indices = match self.resolve(&set, uid) {
            Ok(i) => i,
            Err(done) => return Ok(done),
        };
        let name = match self.mailbox_name(wire) {
            Ok(n) => n,
            Err(done) => return Ok(done),
        };
        let Some(located) = self.locate(&name).await? else {
            return Ok(Done::no("No such mailbox").code("TRYCREATE"));
        };
        if !located.rights.contains(Rights::INSERT) {
            return Ok(not_permitted("insert messages"));
        }
        let target_own = located.own();
        let target = located.mailbox;
        let Some(view) = self.state.view() else { return Ok(Done::bad("No mailbox selected")) };
        if move_ && view.read_only {
            return Ok(Done::no("Mailbox is read-only").code("READ-ONLY"));
        }
        // RFC 6851 §3.3 with RFC 4314: a MOVE deletes and expunges in the source.
        if move_ && !view.rights.contains(Rights::DELETE_MESSAGES.union(Rights::EXPUNGE)) {
            return Ok(not_permitted("move messages out"));
        }
        let uids: Vec<u32> = indices.iter().map(|&i| view.messages[i].uid).filter(|u| !view.is_expunged(*u)).collect();
        let id = view.id;
        // \Seen as this user sees it, carried over when one side's is the user's own.
        let carry_seen = view.private_seen.is_some() || !target_own;
        let seen_before: std::collections::HashSet<u32> = if carry_seen {
            uids.iter()
                .filter_map(|u| view.index_of(*u))
                .map(|i| &view.messages[i])
                .filter(|m| m.flags.contains(Flags::SEEN))
                .map(|m| m.uid)
                .collect()
        } else {
            Default::default()
        };
        let verb = if move_ { "MOVE" } else { "COPY" };
        if uids.is_empty() {
            return Ok(Done::ok(format!("{verb} completed")));
        }
        // Into the selected mailbox itself too: the copies get new UIDs (RFC 9051 §6.4.7).
        let result = match self.server.store.copy_messages(id, uids, target.id, move_).await {
            Err(StoreError::OverQuota(_)) => {
                return Ok(Done::no("The copies would exceed your storage quota").code("OVERQUOTA"));
            }
            other => other?,
        };
        if result.pairs.is_empty() {
            return Ok(Done::no("The messages no longer exist").code("EXPUNGEISSUED"));
        }
        let src: Vec<u32> = result.pairs.iter().map(|p| p.0).collect();
        let dst: Vec<u32> = result.pairs.iter().map(|p| p.1).collect();
        if carry_seen {
            let (mut seen, mut unseen) = (Vec::new(), Vec::new());
            for &(from, to) in &result.pairs {
                if seen_before.contains(&from) { seen.push(to) } else { unseen.push(to) }
            }
            if target_own {
                for (uids, mode) in [(seen, FlagMode::Add), (unseen, FlagMode::Remove)] {
                    if !uids.is_empty() {
                        self.server.store.set_flags(target.id, uids, mode, Flags::SEEN, vec![], None).await?;
                    }
                }
            } else if !seen.is_empty() {
                self.server.store.seen_private_set(target.id, self.account_id(), seen, true, None).await?;
            }
        }
        self.junk_feedback_for_copy(id, &target, &src).await;
        let copyuid = format!("COPYUID {} {} {}", result.uid_validity, uid_set_text(&src), uid_set_text(&dst));
        if move_ {
            // RFC 6851 §4.3: COPYUID in an untagged OK before the expunges.
            self.untagged(&format!("OK [{copyuid}] Moved"));
            self.report_own_expunges(&src);
            return Ok(Done::ok("MOVE completed"));
        }
        Ok(Done::ok("COPY completed").code(copyuid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_and_flags() {
        assert_eq!(uid_set_text(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set_text(&[4]), "4");
        assert_eq!(uid_set_text(&[]), "");
        let (bits, kw) = split_flags(&[Flag("\\Seen".into()), Flag("$Label1".into())]).unwrap();
        assert_eq!((bits, kw), (Flags::SEEN, vec!["$Label1".to_string()]));
        assert!(split_flags(&[Flag("\\Bogus".into())]).is_err());
    }
}
