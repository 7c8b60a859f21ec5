//! Shared mailboxes: the RFC 2342 namespaces (the user's own, `Other Users/<address>/...`),
//! the user's rights on a mailbox (RFC 4314), and the ACL commands SETACL, DELETEACL,
//! GETACL, LISTRIGHTS and MYRIGHTS.
//!
//! Rights come from the mailbox record the command loads anyway: the owner has all of them,
//! a selected mailbox keeps them in its view. An ACL check never costs a store read.

use super::{Done, Session};
use tern_imap_proto::StoreMode;
use tern_store::acl::rights_of;
use tern_store::{FlagMode, FlagUpdate, Flags, Identifier, Mailbox, MailboxChanges, Rights, StoreError};

/// The other users' namespace prefix (RFC 2342 §5), without its delimiter.
pub(crate) const OTHER_USERS: &str = "Other Users";
/// The shared namespace prefix (RFC 2342 §5): the mailboxes of shared accounts such as
/// `support@`, which nobody logs in as (Dovecot's public namespace).
pub(crate) const PUBLIC: &str = "Public";

/// The prefix another account's mailboxes are shown under.
fn namespace_of(owner: &tern_store::Account) -> &'static str {
    if owner.shared { PUBLIC } else { OTHER_USERS }
}

/// A mailbox a command names, with what this user may do with it.
pub(crate) struct Located {
    pub mailbox: Mailbox,
    pub rights: Rights,
    /// The name the user sees: the store's for their own, `Other Users/<owner>/<name>` for
    /// another's.
    pub shown: String,
    /// The owner's address when it is another user's mailbox.
    pub other_owner: Option<String>,
}

impl Located {
    pub(crate) fn own(&self) -> bool {
        self.other_owner.is_none()
    }
}

/// `Other Users/<owner>/<name>` or `Public/<owner>/<name>` split into the namespace prefix,
/// the owner and the name, or `None` for a name of the user's own namespace.
pub(crate) fn other_user_name(name: &str) -> Option<(&'static str, &str, &str)> {
    let (namespace, rest) =
        [OTHER_USERS, PUBLIC].into_iter().find_map(|ns| Some((ns, name.strip_prefix(ns)?.strip_prefix('/')?)))?;
    let (owner, rest) = rest.split_once('/').unwrap_or((rest, ""));
    Some((namespace, owner, rest))
}

/// The name another account's mailbox has for this user.
pub(crate) fn shown_name(owner: &tern_store::Account, name: &str) -> String {
    format!("{}/{}/{name}", namespace_of(owner), owner.address)
}

/// The answer for a mailbox the user may not know about (RFC 4314 §4: as if it did not exist).
pub(crate) fn no_such_mailbox() -> Done {
    Done::no("No such mailbox").code("NONEXISTENT")
}

/// The answer for a mailbox the user knows but may not do this with.
pub(crate) fn not_permitted(what: &str) -> Done {
    Done::no(format!("You may not {what} in this mailbox")).code("NOPERM")
}

impl Session {
    /// The mailbox a (store-form) name leads to and the user's rights on it; `None` when there
    /// is none, or none this user has any right on.
    pub(crate) async fn locate(&self, name: &str) -> Result<Option<Located>, StoreError> {
        let Some(me) = self.state.account() else { return Ok(None) };
        let own = async || {
            Ok(self.server.store.mailbox_by_name(me.id, name).await?.map(|mailbox| Located {
                mailbox,
                rights: Rights::ALL,
                shown: name.to_string(),
                other_owner: None,
            }))
        };
        let Some((namespace, owner, rest)) = other_user_name(name) else { return own().await };
        if rest.is_empty() {
            return Ok(None);
        }
        let rest = if rest.eq_ignore_ascii_case(tern_store::INBOX) { tern_store::INBOX } else { rest };
        let Some(owner) = self.server.store.account_by_address(&owner.to_lowercase()).await? else {
            // A mailbox of the user's own that happens to have the prefix's name.
            return own().await;
        };
        if owner.id == me.id || namespace_of(&owner) != namespace {
            return Ok(None);
        }
        let Some(mailbox) = self.server.store.mailbox_by_name(owner.id, rest).await? else { return Ok(None) };
        let rights = rights_of(me, &mailbox);
        if rights.is_empty() {
            return Ok(None);
        }
        Ok(Some(Located {
            shown: shown_name(&owner, &mailbox.name),
            mailbox,
            rights,
            other_owner: Some(owner.address),
        }))
    }

    /// The mailboxes others share with this user that it may see (`l`), named as it sees them.
    pub(crate) async fn shared_mailboxes(&self) -> Result<Vec<Located>, StoreError> {
        let Some(me) = self.state.account().cloned() else { return Ok(Vec::new()) };
        let found = self.server.store.mailboxes_shared_with(Identifier::naming(&me.address)).await?;
        let mut owners: std::collections::HashMap<tern_store::AccountId, tern_store::Account> =
            std::collections::HashMap::new();
        let mut out = Vec::new();
        for mailbox in found {
            if mailbox.account == me.id {
                continue;
            }
            let rights = rights_of(&me, &mailbox);
            if !rights.contains(Rights::LOOKUP) {
                continue;
            }
            if !owners.contains_key(&mailbox.account)
                && let Some(a) = self.server.store.account_get(mailbox.account).await?
            {
                owners.insert(mailbox.account, a);
            }
            let Some(owner) = owners.get(&mailbox.account) else { continue };
            let shown = shown_name(owner, &mailbox.name);
            out.push(Located { shown, mailbox, rights, other_owner: Some(owner.address.clone()) });
        }
        Ok(out)
    }

    /// A located mailbox for an ACL command, or the answer: it must exist for the user and
    /// the user must hold `needed`.
    async fn acl_target(&mut self, wire: &str, needed: Rights) -> Result<Result<Located, Done>, StoreError> {
        let name = match self.mailbox_name(wire) {
            Ok(n) => n,
            Err(done) => return Ok(Err(done)),
        };
        let Some(located) = self.locate(&name).await? else { return Ok(Err(no_such_mailbox())) };
        if !located.rights.contains(needed) {
            return Ok(Err(not_permitted("administer rights")));
        }
        Ok(Ok(located))
    }

    fn owner_address(&self, located: &Located) -> Option<String> {
        located.other_owner.clone().or_else(|| self.state.account().map(|a| a.address.clone()))
    }

    pub(super) async fn set_acl(
        &mut self,
        wire: &str,
        identifier: &str,
        mode: StoreMode,
        letters: &str,
        delete: bool,
    ) -> Result<Done, StoreError> {
        let located = match self.acl_target(wire, Rights::ADMIN).await? {
            Ok(l) => l,
            Err(done) => return Ok(done),
        };
        if identifier.starts_with('-') {
            // RFC 4314 §2: negative rights are optional; Tern has none.
            return Ok(Done::no("Negative rights are not supported").code("CANNOT"));
        }
        let Some(identifier) = Identifier::parse(identifier) else {
            return Ok(Done::bad("Unknown identifier: an address, @domain, anyone or authenticated"));
        };
        if self.owner_address(&located).is_some_and(|o| Identifier::User(o) == identifier) {
            return Ok(Done::no("The owner always has every right").code("CANNOT"));
        }
        let given = match Rights::parse(letters) {
            Ok(r) => r,
            // RFC 4314 §3.1: an unknown right is a BAD.
            Err(c) => return Ok(Done::bad(format!("Unknown right {c}"))),
        };
        let current = located.mailbox.acl.iter().find(|e| e.identifier == identifier).map(|e| e.rights);
        let rights = if delete {
            None
        } else {
            Some(match mode {
                StoreMode::Replace => given,
                StoreMode::Add => current.unwrap_or_default().union(given),
                StoreMode::Remove => current.unwrap_or_default().without(given),
            })
        };
        match self.server.store.mailbox_set_acl(located.mailbox.id, identifier.clone(), rights).await {
            Ok(_) => {
                tracing::info!(
                    mailbox = %located.shown.escape_debug(),
                    identifier = %identifier.to_string().escape_debug(),
                    rights = ?rights.map(Rights::letters),
                    "ACL changed"
                );
                Ok(Done::ok(if delete { "DELETEACL completed" } else { "SETACL completed" }))
            }
            Err(StoreError::Limit(_)) => Ok(Done::no("Too many entries in this ACL").code("LIMIT")),
            Err(StoreError::NotFound(_)) => Ok(no_such_mailbox()),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn get_acl(&mut self, wire: &str) -> Result<Done, StoreError> {
        let located = match self.acl_target(wire, Rights::ADMIN).await? {
            Ok(l) => l,
            Err(done) => return Ok(done),
        };
        self.out.extend_from_slice(b"* ACL ");
        self.write_mailbox(&located.shown);
        if let Some(owner) = self.owner_address(&located) {
            self.out.push(b' ');
            tern_imap_proto::encode::string(&mut self.out, owner.as_bytes(), self.utf8);
            self.out.push(b' ');
            self.out.extend_from_slice(Rights::ALL.letters().as_bytes());
        }
        for entry in &located.mailbox.acl {
            self.out.push(b' ');
            tern_imap_proto::encode::string(&mut self.out, entry.identifier.to_string().as_bytes(), self.utf8);
            self.out.push(b' ');
            self.out.extend_from_slice(entry.rights.letters().as_bytes());
        }
        self.out.extend_from_slice(b"\r\n");
        Ok(Done::ok("GETACL completed"))
    }

    pub(super) async fn list_rights(&mut self, wire: &str, identifier: &str) -> Result<Done, StoreError> {
        let located = match self.acl_target(wire, Rights::ADMIN).await? {
            Ok(l) => l,
            Err(done) => return Ok(done),
        };
        let Some(parsed) = Identifier::parse(identifier) else {
            return Ok(Done::bad("Unknown identifier: an address, @domain, anyone or authenticated"));
        };
        self.out.extend_from_slice(b"* LISTRIGHTS ");
        self.write_mailbox(&located.shown);
        self.out.push(b' ');
        tern_imap_proto::encode::string(&mut self.out, parsed.to_string().as_bytes(), self.utf8);
        if self.owner_address(&located).is_some_and(|o| Identifier::User(o) == parsed) {
            // The owner's rights are fixed: all required, none optional.
            self.out.extend_from_slice(format!(" {}\r\n", Rights::ALL.letters()).as_bytes());
        } else {
            // RFC 4314 §3.7: nothing required, each right independently (c and d as groups).
            self.out.extend_from_slice(b" \"\" l r s w i p k x t e a c d\r\n");
        }
        Ok(Done::ok("LISTRIGHTS completed"))
    }

    pub(super) async fn my_rights(&mut self, wire: &str) -> Result<Done, StoreError> {
        let located = match self.acl_target(wire, Rights::NONE).await? {
            Ok(l) => l,
            Err(done) => return Ok(done),
        };
        self.out.extend_from_slice(b"* MYRIGHTS ");
        self.write_mailbox(&located.shown);
        self.out.extend_from_slice(format!(" {}\r\n", located.rights.letters_with_obsolete()).as_bytes());
        Ok(Done::ok("MYRIGHTS completed"))
    }
}

/// Each reader's own `\Seen` on another account's mailbox (as Cyrus keeps it per user, and
/// Dovecot's private flags on a public namespace): the owner's stays the mailbox's flag.
impl Session {
    /// Reads this user's private `\Seen` records written since the view last read them and
    /// merges them into `changes` (nothing to do on the user's own mailbox).
    pub(crate) async fn read_private_seen(&mut self, changes: &mut MailboxChanges) -> Result<(), StoreError> {
        let Some((id, reader, since)) =
            self.state.view().and_then(|v| v.private_seen.as_ref().map(|p| (v.id, p.reader, p.since)))
        else {
            return Ok(());
        };
        let records = self.server.store.seen_private_get(id, reader, since).await?;
        if let Some(view) = self.state.view_mut() {
            view.merge_private(&records, changes);
        }
        Ok(())
    }

    /// Sets or clears `\Seen` on messages of the selected mailbox as this user sees it: the
    /// mailbox's flag on its own mailbox, its private one on another's. The updated entries
    /// are as the user sees them.
    pub(crate) async fn set_seen(
        &mut self,
        uids: Vec<u32>,
        seen: bool,
        unchanged_since: Option<u64>,
    ) -> Result<FlagUpdate, StoreError> {
        let Some(view) = self.state.view() else { return Ok(FlagUpdate::default()) };
        let id = view.id;
        let Some(reader) = view.private_seen.as_ref().map(|p| p.reader) else {
            let mode = if seen { FlagMode::Add } else { FlagMode::Remove };
            return self.server.store.set_flags(id, uids, mode, Flags::SEEN, vec![], unchanged_since).await;
        };
        let result = self.server.store.seen_private_set(id, reader, uids, seen, unchanged_since).await?;
        let mut update = FlagUpdate { conflicts: result.conflicts, missing: result.missing, ..Default::default() };
        if let Some(view) = self.state.view_mut() {
            let mut changes = MailboxChanges::default();
            view.merge_private(&result.updated, &mut changes);
            update.updated = changes.changed;
        }
        Ok(update)
    }

    /// Changes flags of messages of the selected mailbox, `\Seen` as [`Session::set_seen`]
    /// does: on another account's mailbox the other flags are the mailbox's and `\Seen` this
    /// user's own, so one STORE is up to three store changes (UNCHANGEDSINCE checked by the
    /// first). The updated entries are as the user sees them.
    pub(crate) async fn set_flags_seen_apart(
        &mut self,
        uids: Vec<u32>,
        mode: FlagMode,
        flags: Flags,
        keywords: Vec<String>,
        unchanged_since: Option<u64>,
    ) -> Result<FlagUpdate, StoreError> {
        let Some(view) = self.state.view() else { return Ok(FlagUpdate::default()) };
        let id = view.id;
        if view.private_seen.is_none() {
            return self.server.store.set_flags(id, uids, mode, flags, keywords, unchanged_since).await;
        }
        let mut others = flags;
        others.remove(Flags::SEEN);
        let seen = match mode {
            FlagMode::Replace => Some(flags.contains(Flags::SEEN)),
            _ if flags.contains(Flags::SEEN) => Some(mode == FlagMode::Add),
            _ => None,
        };
        // Cleared by a replacement: every other system flag and keyword not named.
        let mut cleared = Flags::ANSWERED.union(Flags::FLAGGED).union(Flags::DELETED).union(Flags::DRAFT);
        cleared.remove(others);
        let stale: Vec<String> =
            view.keywords.iter().filter(|k| !keywords.iter().any(|n| n.eq_ignore_ascii_case(k))).cloned().collect();
        let mut steps: Vec<(FlagMode, Flags, Vec<String>)> = Vec::new();
        match mode {
            FlagMode::Replace => {
                steps.push((FlagMode::Add, others, keywords));
                steps.push((FlagMode::Remove, cleared, stale));
            }
            _ if others != Flags::default() || !keywords.is_empty() => steps.push((mode, others, keywords)),
            _ => {}
        }
        let mut update = FlagUpdate::default();
        let mut latest: std::collections::BTreeMap<u32, tern_store::MessageEntry> = Default::default();
        let mut pending = uids;
        let mut guard = unchanged_since;
        for (mode, flags, keywords) in steps {
            if flags == Flags::default() && keywords.is_empty() {
                continue;
            }
            let step = self.server.store.set_flags(id, pending.clone(), mode, flags, keywords, guard.take()).await?;
            pending.retain(|u| !step.conflicts.contains(u) && !step.missing.contains(u));
            update.conflicts.extend(step.conflicts);
            update.missing.extend(step.missing);
            update.keywords_refused |= step.keywords_refused;
            latest.extend(step.updated.into_iter().map(|e| (e.uid, e)));
        }
        if let Some(seen) = seen {
            let step = self.set_seen(pending, seen, guard).await?;
            update.conflicts.extend(step.conflicts);
            update.missing.extend(step.missing);
            for entry in step.updated {
                // The later steps' entry carries the mailbox's other flags; the overlay below
                // puts this user's \Seen on it.
                latest.entry(entry.uid).or_insert(entry);
            }
        }
        if let Some(view) = self.state.view() {
            let mut entries: Vec<tern_store::MessageEntry> = latest.into_values().collect();
            view.overlay(&mut entries);
            update.updated = entries;
        }
        Ok(update)
    }
}

/// Flags a user with `rights` may set or clear (RFC 4314 §4: `s` for `\Seen`, `t` for
/// `\Deleted`, `w` for the others and keywords): the rest are left out.
pub(crate) fn permitted_flags(
    rights: Rights,
    flags: tern_store::Flags,
    keywords: Vec<String>,
) -> (tern_store::Flags, Vec<String>) {
    use tern_store::Flags;
    let mut allowed = Flags::default();
    for (flag, right) in [
        (Flags::SEEN, Rights::SEEN),
        (Flags::DELETED, Rights::DELETE_MESSAGES),
        (Flags::ANSWERED, Rights::WRITE),
        (Flags::FLAGGED, Rights::WRITE),
        (Flags::DRAFT, Rights::WRITE),
    ] {
        if flags.contains(flag) && rights.contains(right) {
            allowed.insert(flag);
        }
    }
    let keywords = if rights.contains(Rights::WRITE) { keywords } else { Vec::new() };
    (allowed, keywords)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_store::Flags;

    #[test]
    fn names_of_other_users_mailboxes() {
        assert_eq!(other_user_name("Other Users/bob@x.org/Team/2024"), Some((OTHER_USERS, "bob@x.org", "Team/2024")));
        assert_eq!(other_user_name("Other Users/bob@x.org"), Some((OTHER_USERS, "bob@x.org", "")));
        assert_eq!(other_user_name("Public/support@x.org/INBOX"), Some((PUBLIC, "support@x.org", "INBOX")));
        assert_eq!(other_user_name("Other Usersx/a"), None);
        assert_eq!(other_user_name("Publicity/a"), None);
        assert_eq!(other_user_name("Team"), None);
        let mut bob = tern_store::Account {
            id: 2,
            address: "bob@x.org".into(),
            password_hash: String::new(),
            quota_bytes: None,
            created: 0,
            scram: None,
            ..Default::default()
        };
        assert_eq!(shown_name(&bob, "INBOX"), "Other Users/bob@x.org/INBOX");
        bob.shared = true;
        assert_eq!(shown_name(&bob, "INBOX"), "Public/bob@x.org/INBOX");
    }

    #[test]
    fn flags_follow_rights() {
        let all = Flags::SEEN.union(Flags::DELETED).union(Flags::FLAGGED);
        let kw = vec!["$Label1".to_string()];
        let (f, k) = permitted_flags(Rights::parse("s").unwrap(), all, kw.clone());
        assert_eq!((f, k.len()), (Flags::SEEN, 0));
        let (f, k) = permitted_flags(Rights::parse("tw").unwrap(), all, kw.clone());
        assert_eq!((f, k.len()), (Flags::DELETED.union(Flags::FLAGGED), 1));
        assert_eq!(permitted_flags(Rights::ALL, all, kw).0, all);
    }
}
