//! Mailbox commands: SELECT/EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE, LIST, LSUB, STATUS,
//! CLOSE/UNSELECT, GETQUOTA/GETQUOTAROOT.

use super::acl::{self, Located, no_such_mailbox, not_permitted};
use super::{Done, Session};
use crate::mailbox::View;
use crate::search::object_id;
use std::collections::{BTreeMap, BTreeSet};
use tern_imap_proto::encode;
use tern_imap_proto::{ListReturn, ListSelect, QresyncParams, StatusItem};
use tern_store::{Flags, INBOX, Mailbox, NewMailbox, Rights, SpecialUse, StoreError};

/// Characters not allowed in mailbox names (wildcards, controls).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 255
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.contains("//")
        && !name.chars().any(|c| c.is_control() || c == '*' || c == '%')
}

/// Wildcard match of a LIST pattern: `*` anything, `%` anything but the delimiter.
pub(crate) fn pattern_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Dynamic programming over (pattern, name) positions: O(p·n), no backtracking blow-up.
    let mut dp = vec![vec![false; n.len() + 1]; p.len() + 1];
    dp[p.len()][n.len()] = true;
    for i in (0..p.len()).rev() {
        for j in (0..=n.len()).rev() {
            dp[i][j] = match p[i] {
                '*' => dp[i + 1][j] || (j < n.len() && dp[i][j + 1]),
                '%' => dp[i + 1][j] || (j < n.len() && n[j] != '/' && dp[i][j + 1]),
                c => j < n.len() && n[j] == c && dp[i + 1][j + 1],
            };
        }
    }
    dp[0][0]
}

fn special_use_of(attr: &str) -> Option<SpecialUse> {
    Some(match attr.to_ascii_lowercase().as_str() {
        "\\all" => SpecialUse::All,
        "\\archive" => SpecialUse::Archive,
        "\\drafts" => SpecialUse::Drafts,
        "\\flagged" => SpecialUse::Flagged,
        "\\junk" => SpecialUse::Junk,
        "\\sent" => SpecialUse::Sent,
        "\\trash" => SpecialUse::Trash,
        _ => return None,
    })
}

impl Session {
    /// The store's name for a mailbox name from the wire (modified UTF-7 unless UTF-8 is
    /// enabled; INBOX in any case).
    pub(crate) fn mailbox_name(&self, wire: &str) -> Result<String, Done> {
        let name = if self.utf8 {
            wire.to_string()
        } else {
            encode::utf7_decode(wire).ok_or_else(|| Done::bad("Mailbox name is not valid modified UTF-7"))?
        };
        let name = if name.eq_ignore_ascii_case(INBOX) {
            INBOX.to_string()
        } else if name.len() > 6 && name.is_char_boundary(6) && name[..6].eq_ignore_ascii_case("INBOX/") {
            format!("INBOX/{}", &name[6..])
        } else {
            name
        };
        if !valid_name(&name) {
            return Err(Done::no("Invalid mailbox name").code("CANNOT"));
        }
        Ok(name)
    }

    pub(crate) fn write_mailbox(&mut self, name: &str) {
        let utf8 = self.utf8;
        encode::mailbox(&mut self.out, name, utf8);
    }

    pub(crate) fn account_id(&self) -> u64 {
        self.state.account().map(|a| a.id).unwrap_or(0)
    }

    pub(crate) async fn find_mailbox(&self, name: &str) -> Result<Option<Mailbox>, StoreError> {
        self.server.store.mailbox_by_name(self.account_id(), name).await
    }

    pub(super) async fn select(
        &mut self,
        wire: &str,
        read_only: bool,
        condstore: bool,
        qresync: Option<QresyncParams>,
    ) -> Result<Done, StoreError> {
        if qresync.is_some() && !self.qresync {
            return Ok(Done::bad("QRESYNC parameter needs ENABLE QRESYNC first"));
        }
        if condstore {
            self.condstore = true;
        }
        // Selecting deselects, even when the new SELECT fails (RFC 9051 §6.3.2); searches
        // kept updated end with their mailbox (RFC 5267 §4.2).
        self.updating.clear();
        if self.state.take_view().is_some() && (self.qresync || self.rev2) {
            self.untagged("OK [CLOSED] Previous mailbox closed");
        }
        let name = match self.mailbox_name(wire) {
            Ok(n) => n,
            Err(done) => return Ok(done),
        };
        let Some(located) = self.locate(&name).await? else {
            return Ok(no_such_mailbox());
        };
        let own = located.own();
        let Located { mailbox, rights, shown, .. } = located;
        if !rights.contains(Rights::READ) {
            return Ok(not_permitted("read"));
        }
        // RFC 4314 §4: without a right to change anything, the mailbox is read-only.
        let changes = Rights::SEEN.union(Rights::WRITE).union(Rights::DELETE_MESSAGES).union(Rights::EXPUNGE);
        let read_only = read_only || !rights.intersects(changes);
        let signal = self.server.notifier.signal(mailbox.id);
        let seen_version = signal.version();
        let mut recent = crate::mailbox::Recent::none();
        if !(read_only || self.rev2 || mailbox.recent_uid >= mailbox.uid_next) {
            // (Nothing to claim, or not ours to claim: no write.)
            recent.add(self.server.store.mailbox_claim_recent(mailbox.id).await?);
        }
        let messages = self.server.store.message_list(mailbox.id).await?;
        let mut view = View {
            id: mailbox.id,
            name: shown,
            read_only,
            rights,
            uid_validity: mailbox.uid_validity,
            messages,
            highest_modseq: mailbox.highest_modseq,
            recent,
            keywords: mailbox.keywords.clone(),
            pending_expunged: Vec::new(),
            signal,
            seen_version,
            private_seen: None,
        };
        if !own {
            // \Seen on another account's mailbox is this user's own.
            let reader = self.account_id();
            let records = self.server.store.seen_private_get(mailbox.id, reader, 0).await?;
            let mut private = crate::mailbox::PrivateSeenState::new(reader);
            private.take(&records);
            view.private_seen = Some(Box::new(private));
            let mut messages = std::mem::take(&mut view.messages);
            view.overlay(&mut messages);
            view.messages = messages;
        }
        view.highest_modseq = view.highest_modseq.max(view.messages.iter().map(|m| m.modseq).max().unwrap_or(0));
        let mut flags = vec!["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        flags.extend(mailbox.keywords.iter().cloned());
        self.untagged(&format!("FLAGS ({})", flags.join(" ")));
        if read_only {
            self.untagged("OK [PERMANENTFLAGS ()] Read-only mailbox");
        } else {
            // Only the flags this user may change (RFC 4314 §4).
            let may = |flag: &str| match flag {
                "\\Seen" => rights.contains(Rights::SEEN),
                "\\Deleted" => rights.contains(Rights::DELETE_MESSAGES),
                _ => rights.contains(Rights::WRITE),
            };
            let permanent: Vec<&str> = flags.iter().map(String::as_str).filter(|f| may(f)).collect();
            let more = if mailbox.keywords.len() < tern_store::MAX_KEYWORDS && rights.contains(Rights::WRITE) {
                if permanent.is_empty() { "\\*" } else { " \\*" }
            } else {
                ""
            };
            self.untagged(&format!("OK [PERMANENTFLAGS ({}{more})] Flags permitted", permanent.join(" ")));
        }
        self.untagged(&format!("{} EXISTS", view.messages.len()));
        if !self.rev2 {
            self.untagged(&format!("{} RECENT", view.recent_count()));
            if let Some(i) = view.messages.iter().position(|m| !m.flags.contains(Flags::SEEN)) {
                self.untagged(&format!("OK [UNSEEN {}] First unseen", i + 1));
            }
        }
        self.untagged(&format!("OK [UIDVALIDITY {}] UIDs valid", mailbox.uid_validity));
        self.untagged(&format!("OK [UIDNEXT {}] Predicted next UID", mailbox.uid_next));
        self.untagged(&format!("OK [HIGHESTMODSEQ {}] Highest", view.highest_modseq));
        self.untagged(&format!("OK [MAILBOXID ({})] Ok", object_id("F", mailbox.id)));
        if let Some(q) = qresync
            && q.uid_validity == mailbox.uid_validity
        {
            self.qresync_resync(&view, &q).await?;
        }
        self.state.set_view(view);
        self.saved.clear();
        let code = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        Ok(Done::ok(if read_only { "EXAMINE completed" } else { "SELECT completed" }).code(code))
    }

    /// RFC 7162 §3.2.5: what changed since the client's modseq, as VANISHED (EARLIER) and
    /// FETCH responses.
    async fn qresync_resync(&mut self, view: &View, q: &QresyncParams) -> Result<(), StoreError> {
        let mut changes = self.server.store.mailbox_changes(view.id, q.mod_seq).await?;
        if let Some(p) = &view.private_seen {
            // This user's own \Seen changes since then too (their modseqs are the mailbox's).
            for uid in p.changed_since(q.mod_seq) {
                if !changes.changed.iter().any(|e| e.uid == uid)
                    && let Some(i) = view.index_of(uid)
                {
                    changes.changed.push(view.messages[i].clone());
                }
            }
            changes.changed.sort_by_key(|e| e.uid);
        }
        view.overlay(&mut changes.changed);
        let known = |uid: u32| match &q.known_uids {
            Some(set) => set.contains(uid, u32::MAX),
            None => true,
        };
        let vanished: Vec<u32> = changes.expunged.iter().copied().filter(|u| known(*u)).collect();
        if !vanished.is_empty() {
            self.untagged(&format!("VANISHED (EARLIER) {}", crate::session::messages::uid_set_text(&vanished)));
        }
        for entry in &changes.changed {
            if let Some(i) = view.index_of(entry.uid)
                && known(entry.uid)
            {
                let flags = self.flags_text(entry, view);
                let head = self.fetch_head(i, entry.uid);
                self.untagged(&format!("{head}UID {} FLAGS ({flags}) MODSEQ ({}))", entry.uid, entry.modseq));
            }
        }
        Ok(())
    }

    pub(super) async fn close(&mut self, expunge: bool) -> Result<Done, StoreError> {
        let Some(view) = self.state.take_view() else { return Ok(Done::bad("No mailbox selected")) };
        self.updating.clear();
        // Without `e` (RFC 4314), CLOSE closes without expunging.
        if expunge && !view.read_only && view.rights.contains(Rights::EXPUNGE) {
            let deleted: Vec<u32> = view
                .messages
                .iter()
                .filter(|m| m.flags.contains(Flags::DELETED) && !view.is_expunged(m.uid))
                .map(|m| m.uid)
                .collect();
            if !deleted.is_empty() {
                self.server.store.expunge(view.id, deleted).await?;
            }
        }
        Ok(Done::ok(if expunge { "CLOSE completed" } else { "UNSELECT completed" }))
    }

    pub(super) async fn create(&mut self, wire: &str, special_use: &[String]) -> Result<Done, StoreError> {
        // A trailing delimiter only declares the intent to create children (RFC 9051 §6.3.4).
        let wire = wire.strip_suffix('/').unwrap_or(wire);
        let name = match self.mailbox_name(wire) {
            Ok(n) => n,
            Err(done) => return Ok(done),
        };
        if name == INBOX {
            return Ok(Done::no("INBOX always exists").code("ALREADYEXISTS"));
        }
        // Below another user's mailbox: with `k` on the parent, in the owner's account, and
        // shared as the parent is (so its creator can use it).
        let mut owner = self.account_id();
        let mut name = name;
        let mut inherited = Vec::new();
        if acl::other_user_name(&name).is_some() {
            let Some((parent, leaf)) = name.rsplit_once('/') else {
                return Ok(Done::no("Invalid mailbox name").code("CANNOT"));
            };
            let Some(parent) = self.locate(parent).await? else {
                return Ok(Done::no("You may not create mailboxes there").code("NOPERM"));
            };
            if !parent.rights.contains(Rights::CREATE) {
                return Ok(not_permitted("create mailboxes"));
            }
            owner = parent.mailbox.account;
            name = format!("{}/{leaf}", parent.mailbox.name);
            inherited = parent.mailbox.acl;
        }
        let use_ = match special_use {
            [] => None,
            [one] => match special_use_of(one) {
                Some(u) => Some(u),
                None => return Ok(Done::no(format!("Unsupported special use {one}")).code("USEATTR")),
            },
            _ => return Ok(Done::no("One special use per mailbox").code("USEATTR")),
        };
        match self.server.store.mailbox_create(owner, NewMailbox::new(&name, use_)).await {
            Ok(created) => {
                for entry in inherited {
                    self.server.store.mailbox_set_acl(created.id, entry.identifier, Some(entry.rights)).await?;
                }
                Ok(Done::ok("CREATE completed"))
            }
            Err(StoreError::Exists(_)) => Ok(Done::no("Mailbox already exists").code("ALREADYEXISTS")),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn delete(&mut self, wire: &str) -> Result<Done, StoreError> {
        let name = match self.mailbox_name(wire) {
            Ok(n) => n,
            Err(done) => return Ok(done),
        };
        if name == INBOX {
            return Ok(Done::no("INBOX cannot be deleted").code("CANNOT"));
        }
        let (owner, stored) = if acl::other_user_name(&name).is_some() {
            let Some(located) = self.locate(&name).await? else { return Ok(no_such_mailbox()) };
            if !located.rights.contains(Rights::DELETE_MAILBOX) {
                return Ok(not_permitted("delete the mailbox"));
            }
            if located.mailbox.name == INBOX {
                return Ok(Done::no("INBOX cannot be deleted").code("CANNOT"));
            }
            (located.mailbox.account, located.mailbox.name)
        } else {
            (self.account_id(), name.clone())
        };
        match self.server.store.mailbox_delete(owner, &stored).await {
            Ok(()) => {
                if self.state.view().is_some_and(|v| v.name == name) {
                    self.state.take_view();
                    self.untagged("OK [CLOSED] Mailbox deleted");
                }
                Ok(Done::ok("DELETE completed"))
            }
            Err(StoreError::NotFound(_)) => Ok(Done::no("No such mailbox").code("NONEXISTENT")),
            Err(StoreError::HasChildren(_)) => {
                Ok(Done::no("Mailbox has children; delete them first").code("HASCHILDREN"))
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn rename(&mut self, from: &str, to: &str) -> Result<Done, StoreError> {
        let (from, to) = match (self.mailbox_name(from), self.mailbox_name(to)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(d), _) | (_, Err(d)) => return Ok(d),
        };
        if to == INBOX || to.starts_with("INBOX/") && from == INBOX {
            return Ok(Done::no("Cannot rename to that name").code("CANNOT"));
        }
        if to.starts_with(&format!("{from}/")) {
            return Ok(Done::no("Cannot move a mailbox below itself").code("CANNOT"));
        }
        let (owner, stored_from, stored_to) = match (acl::other_user_name(&from), acl::other_user_name(&to)) {
            (None, None) => (self.account_id(), from.clone(), to.clone()),
            (Some(_), Some(_)) => match self.rename_in_other_tree(&from, &to).await? {
                Ok(names) => names,
                Err(done) => return Ok(done),
            },
            _ => return Ok(Done::no("Mailboxes cannot move between users").code("CANNOT")),
        };
        match self.server.store.mailbox_rename(owner, &stored_from, &stored_to).await {
            Ok(()) => {
                if let Some(v) = self.state.view_mut()
                    && from != INBOX
                    && (v.name == from || v.name.starts_with(&format!("{from}/")))
                {
                    v.name = format!("{to}{}", &v.name[from.len()..]);
                }
                Ok(Done::ok("RENAME completed"))
            }
            Err(StoreError::NotFound(_)) => Ok(Done::no("No such mailbox").code("NONEXISTENT")),
            Err(StoreError::Exists(_)) => Ok(Done::no("Target mailbox exists").code("ALREADYEXISTS")),
            Err(e) => Err(e),
        }
    }

    /// RENAME inside one other user's tree (RFC 4314 §4): `x` on the mailbox and `k` on the
    /// new name's parent, both of the same owner. The owner's account and the two names as
    /// stored, or the answer.
    async fn rename_in_other_tree(
        &mut self,
        from: &str,
        to: &str,
    ) -> Result<Result<(tern_store::AccountId, String, String), Done>, StoreError> {
        let Some(source) = self.locate(from).await? else { return Ok(Err(no_such_mailbox())) };
        if !source.rights.contains(Rights::DELETE_MAILBOX) {
            return Ok(Err(not_permitted("rename the mailbox")));
        }
        if source.mailbox.name == INBOX {
            return Ok(Err(Done::no("Another user's INBOX cannot be renamed").code("CANNOT")));
        }
        let Some((parent, leaf)) = to.rsplit_once('/') else {
            return Ok(Err(Done::no("Invalid mailbox name").code("CANNOT")));
        };
        let Some(parent) = self.locate(parent).await? else {
            return Ok(Err(Done::no("You may not create mailboxes there").code("NOPERM")));
        };
        if parent.mailbox.account != source.mailbox.account {
            return Ok(Err(Done::no("Mailboxes cannot move between users").code("CANNOT")));
        }
        if !parent.rights.contains(Rights::CREATE) {
            return Ok(Err(Done::no("You may not create mailboxes there").code("NOPERM")));
        }
        let stored_to = format!("{}/{leaf}", parent.mailbox.name);
        Ok(Ok((source.mailbox.account, source.mailbox.name, stored_to)))
    }

    pub(super) async fn subscribe(&mut self, wire: &str, on: bool) -> Result<Done, StoreError> {
        let name = match self.mailbox_name(wire) {
            Ok(n) => n,
            Err(done) => return Ok(done),
        };
        if !valid_name(&name) {
            return Ok(Done::no("Invalid mailbox name").code("CANNOT"));
        }
        // A name without a mailbox may be subscribed too (RFC 9051 §6.3.7), as in Dovecot.
        self.server.store.mailbox_subscribe(self.account_id(), &name, on).await?;
        Ok(Done::ok(if on { "SUBSCRIBE completed" } else { "UNSUBSCRIBE completed" }))
    }

    pub(super) async fn list(
        &mut self,
        selection: &[ListSelect],
        reference: &str,
        patterns: &[String],
        returns: &[ListReturn],
        lsub: bool,
        extended: bool,
    ) -> Result<Done, StoreError> {
        let done = || Done::ok(if lsub { "LSUB completed" } else { "LIST completed" });
        if patterns.len() == 1 && patterns[0].is_empty() && !extended {
            // LIST "" "": the hierarchy delimiter and root (RFC 9051 §6.3.9).
            if lsub {
                return Ok(done());
            }
            self.untagged("LIST (\\Noselect) \"/\" \"\"");
            return Ok(done());
        }
        let decode = |s: &str| if self.utf8 { Some(s.to_string()) } else { encode::utf7_decode(s) };
        let Some(reference) = decode(reference) else { return Ok(Done::bad("Bad modified UTF-7")) };
        let mut full_patterns = Vec::new();
        for p in patterns {
            let Some(p) = decode(p) else { return Ok(Done::bad("Bad modified UTF-7")) };
            if p.is_empty() {
                continue;
            }
            let full = if reference.is_empty() || p.starts_with('/') {
                p
            } else if reference.ends_with('/') {
                format!("{reference}{p}")
            } else {
                format!("{reference}/{p}")
            };
            // INBOX is case-insensitive in patterns too.
            let full = if full.len() >= 5 && full.is_char_boundary(5) && full[..5].eq_ignore_ascii_case(INBOX) {
                format!("{INBOX}{}", &full[5..])
            } else {
                full
            };
            full_patterns.push(full);
        }
        let subscribed_only = lsub || selection.contains(&ListSelect::Subscribed);
        let recursive = selection.contains(&ListSelect::RecursiveMatch);
        let special_only = selection.contains(&ListSelect::SpecialUse);
        let want_subscribed = subscribed_only || returns.contains(&ListReturn::Subscribed);
        let status_items: Option<Vec<StatusItem>> = returns.iter().find_map(|r| match r {
            ListReturn::Status(items) => Some(items.clone()),
            _ => None,
        });
        let mut all = self.server.store.mailbox_list(self.account_id()).await?;
        // Other users' mailboxes this user may see (RFC 4314 `l`), under `Other Users/<owner>/`;
        // the namespace and each owner are listed as \Noselect parents.
        let mut parents: BTreeSet<String> = BTreeSet::new();
        let mut unreadable: BTreeSet<String> = BTreeSet::new();
        for shared in self.shared_mailboxes().await? {
            if !shared.rights.contains(Rights::READ) {
                unreadable.insert(shared.shown.clone());
            }
            let mut m = shared.mailbox;
            m.name = shared.shown;
            let mut at = m.name.as_str();
            while let Some((parent, _)) = at.rsplit_once('/') {
                parents.insert(parent.to_string());
                at = parent;
            }
            all.push(m);
        }
        let existing: BTreeMap<&str, &Mailbox> = all.iter().map(|m| (m.name.as_str(), m)).collect();
        parents.retain(|p| !existing.contains_key(p.as_str()));
        let subscribed: BTreeSet<String> = if want_subscribed || recursive {
            self.server.store.subscriptions(self.account_id()).await?.into_iter().collect()
        } else {
            BTreeSet::new()
        };
        // Whether a name meets the selection criteria (RFC 5258 §3.1).
        let selected = |name: &str| {
            (!subscribed_only || subscribed.contains(name))
                && (!special_only || existing.get(name).is_some_and(|m| m.special_use.is_some()))
                && (subscribed_only || special_only || existing.contains_key(name) || parents.contains(name))
        };
        let matches = |name: &str| full_patterns.iter().any(|p| pattern_match(p, name));
        // Candidates: every mailbox, every subscribed name (with the SUBSCRIBED selection),
        // and the ancestors of selected names (LSUB's \Noselect parents, RECURSIVEMATCH).
        let mut names: BTreeSet<String> = all.iter().map(|m| m.name.clone()).collect();
        names.extend(parents.iter().cloned());
        if subscribed_only {
            names.extend(subscribed.iter().cloned());
        }
        let selected_names: Vec<String> = names.iter().filter(|n| selected(n)).cloned().collect();
        if recursive || lsub {
            for n in &selected_names {
                let mut at = n.as_str();
                while let Some((parent, _)) = at.rsplit_once('/') {
                    names.insert(parent.to_string());
                    at = parent;
                }
            }
        }
        let mut order: Vec<&String> = names.iter().collect();
        order.sort_by(|a, b| (a.as_str() != INBOX).cmp(&(b.as_str() != INBOX)).then(a.cmp(b)));
        for name in order {
            if !matches(name) {
                continue;
            }
            let prefix = format!("{name}/");
            let is_selected = selected(name);
            // Descendants that meet the selection criteria, and whether one is hidden from
            // this LIST by the pattern.
            let selected_below: Vec<&String> = selected_names.iter().filter(|d| d.starts_with(&prefix)).collect();
            let hidden_below = selected_below.iter().any(|d| !matches(d));
            let exists = existing.contains_key(name.as_str());
            let (child_info, noselect_parent) = if lsub {
                // RFC 3501 §6.3.9: a parent that is not subscribed but has subscribed
                // children the pattern hides is listed \Noselect.
                (false, !is_selected && hidden_below)
            } else if recursive && !selected_below.is_empty() {
                // RFC 5258 §3.5 table; a missing parent only when a child is hidden.
                (exists || is_selected || hidden_below, false)
            } else {
                (false, false)
            };
            if !is_selected && !child_info && !noselect_parent {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if lsub {
                if noselect_parent || !exists {
                    attrs.push("\\Noselect");
                }
            } else {
                if parents.contains(name.as_str()) {
                    attrs.push("\\Noselect");
                } else if !exists {
                    attrs.push("\\NonExistent");
                }
                let has_children = all.iter().any(|c| c.name.starts_with(&prefix));
                if exists || has_children || parents.contains(name.as_str()) {
                    attrs.push(if has_children { "\\HasChildren" } else { "\\HasNoChildren" });
                }
                if let Some(u) = existing.get(name.as_str()).and_then(|m| m.special_use) {
                    attrs.push(u.attribute());
                }
                if want_subscribed && subscribed.contains(name.as_str()) {
                    attrs.push("\\Subscribed");
                }
            }
            self.out.extend_from_slice(
                format!("* {} ({}) \"/\" ", if lsub { "LSUB" } else { "LIST" }, attrs.join(" ")).as_bytes(),
            );
            self.write_mailbox(name);
            if child_info {
                self.out.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            self.out.extend_from_slice(b"\r\n");
            if let (Some(items), Some(m)) = (&status_items, existing.get(name.as_str()))
                && is_selected
                && !unreadable.contains(name.as_str())
            {
                let m = (*m).clone();
                self.write_status(&m, items).await?;
            }
        }
        Ok(done())
    }

    /// How many messages of a mailbox this user has not seen: the mailbox's count on its own,
    /// from its own `\Seen` records on another account's.
    pub(crate) async fn unseen_count(&self, m: &Mailbox) -> Result<u32, StoreError> {
        let reader = self.account_id();
        if m.account == reader {
            return Ok(m.unseen);
        }
        let seen: std::collections::HashSet<u32> = self
            .server
            .store
            .seen_private_get(m.id, reader, 0)
            .await?
            .into_iter()
            .filter(|r| r.seen)
            .map(|r| r.uid)
            .collect();
        let messages = self.server.store.message_list(m.id).await?;
        Ok(messages.iter().filter(|e| !seen.contains(&e.uid)).count() as u32)
    }

    async fn write_status(&mut self, m: &Mailbox, items: &[StatusItem]) -> Result<(), StoreError> {
        let mut parts = Vec::new();
        for item in items {
            let text = match item {
                StatusItem::Messages => format!("MESSAGES {}", m.total),
                StatusItem::Recent => {
                    format!("RECENT {}", self.server.store.message_count_from(m.id, m.recent_uid.max(1)).await?)
                }
                StatusItem::UidNext => format!("UIDNEXT {}", m.uid_next),
                StatusItem::UidValidity => format!("UIDVALIDITY {}", m.uid_validity),
                StatusItem::Unseen => format!("UNSEEN {}", self.unseen_count(m).await?),
                StatusItem::Deleted => format!("DELETED {}", m.deleted),
                StatusItem::Size => format!("SIZE {}", m.size),
                StatusItem::HighestModSeq => {
                    self.condstore = true;
                    format!("HIGHESTMODSEQ {}", m.highest_modseq)
                }
                StatusItem::AppendLimit => format!("APPENDLIMIT {}", self.server.settings.append_limit),
                StatusItem::MailboxId => format!("MAILBOXID ({})", object_id("F", m.id)),
            };
            parts.push(text);
        }
        self.out.extend_from_slice(b"* STATUS ");
        self.write_mailbox(&m.name);
        self.out.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        Ok(())
    }

    pub(super) async fn status(&mut self, wire: &str, items: &[StatusItem]) -> Result<Done, StoreError> {
        let name = match self.mailbox_name(wire) {
            Ok(n) => n,
            Err(done) => return Ok(done),
        };
        let Some(Located { mut mailbox, rights, shown, .. }) = self.locate(&name).await? else {
            return Ok(no_such_mailbox());
        };
        if !rights.contains(Rights::READ) {
            return Ok(not_permitted("read"));
        }
        mailbox.name = shown;
        self.write_status(&mailbox, items).await?;
        Ok(Done::ok("STATUS completed"))
    }

    async fn quota_now(&self) -> Result<Option<tern_directory::Quota>, StoreError> {
        self.server.directory.quota(self.account_id()).await.map_err(|e| StoreError::Task(e.to_string()))
    }

    pub(super) async fn quota_root(&mut self, wire: &str) -> Result<Done, StoreError> {
        let name = match self.mailbox_name(wire) {
            Ok(n) => n,
            Err(done) => return Ok(done),
        };
        let Some(located) = self.locate(&name).await? else { return Ok(no_such_mailbox()) };
        // Another user's mailbox counts against that user's quota, not shown here.
        let quota = if located.own() { self.quota_now().await? } else { None };
        self.out.extend_from_slice(b"* QUOTAROOT ");
        self.write_mailbox(&name);
        if quota.is_some() {
            self.out.extend_from_slice(b" \"\"");
        }
        self.out.extend_from_slice(b"\r\n");
        if let Some(q) = quota {
            self.untagged(&format!("QUOTA \"\" (STORAGE {} {})", q.used.div_ceil(1024), q.limit / 1024));
        }
        Ok(Done::ok("GETQUOTAROOT completed"))
    }

    pub(super) async fn quota(&mut self, root: &str) -> Result<Done, StoreError> {
        match self.quota_now().await? {
            Some(q) if root.is_empty() => {
                self.untagged(&format!("QUOTA \"\" (STORAGE {} {})", q.used.div_ceil(1024), q.limit / 1024));
                Ok(Done::ok("GETQUOTA completed"))
            }
            _ => Ok(Done::no("No such quota root").code("NONEXISTENT")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_match("*", "a/b/c"));
        assert!(pattern_match("%", "INBOX"));
        assert!(!pattern_match("%", "a/b"));
        assert!(pattern_match("a/%", "a/b"));
        assert!(!pattern_match("a/%", "a/b/c"));
        assert!(pattern_match("a*c", "a/b/c"));
        assert!(pattern_match("%/%", "x/y"));
        assert!(!pattern_match("INBOX", "Inbox"));
        assert!(pattern_match("Sent*", "Sent Items"));
        let long = "*".repeat(200) + "x";
        assert!(!pattern_match(&long, &"y".repeat(255)), "no exponential backtracking");
    }

    #[test]
    fn names() {
        assert!(valid_name("Work/2024"));
        for bad in ["", "/a", "a/", "a//b", "a*", "a%", "a\nb"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
