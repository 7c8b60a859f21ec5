//! Shared mailboxes: the RFC 2342 namespaces (the user's own, `Other Users/<address>/...`),
//! the user's rights on a mailbox (RFC 4314), and the ACL commands SETACL, DELETEACL,
//! GETACL, LISTRIGHTS and MYRIGHTS.
//!
//! Rights come from the mailbox record the command loads anyway: the owner has all of them,
//! a selected mailbox keeps them in its view. An ACL check never costs a store read.

use super::{Done, Session};
use tern_imap_proto::StoreMode;
use tern_store::acl::rights_of;
use tern_store::{Identifier, Mailbox, Rights, StoreError};

/// The other users' namespace prefix (RFC 2342 §5), without its delimiter.
pub(crate) const OTHER_USERS: &str = "Other Users";

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

/// `Other Users/<owner>/<name>` split, or `None` for a name of the user's own namespace.
pub(crate) fn other_user_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(OTHER_USERS)?.strip_prefix('/')?;
    Some(rest.split_once('/').unwrap_or((rest, "")))
}

/// The name another user's mailbox has for this user.
pub(crate) fn shown_name(owner: &str, name: &str) -> String {
    format!("{OTHER_USERS}/{owner}/{name}")
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
        let Some((owner, rest)) = other_user_name(name) else {
            return Ok(self.server.store.mailbox_by_name(me.id, name).await?.map(|mailbox| Located {
                mailbox,
                rights: Rights::ALL,
                shown: name.to_string(),
                other_owner: None,
            }));
        };
        if rest.is_empty() {
            return Ok(None);
        }
        let rest = if rest.eq_ignore_ascii_case(tern_store::INBOX) { tern_store::INBOX } else { rest };
        let Some(owner) = self.server.store.account_by_address(&owner.to_lowercase()).await? else { return Ok(None) };
        if owner.id == me.id {
            return Ok(None);
        }
        let Some(mailbox) = self.server.store.mailbox_by_name(owner.id, rest).await? else { return Ok(None) };
        let rights = rights_of(me, &mailbox);
        if rights.is_empty() {
            return Ok(None);
        }
        Ok(Some(Located {
            shown: shown_name(&owner.address, &mailbox.name),
            mailbox,
            rights,
            other_owner: Some(owner.address),
        }))
    }

    /// The mailboxes others share with this user that it may see (`l`), named as it sees them.
    pub(crate) async fn shared_mailboxes(&self) -> Result<Vec<Located>, StoreError> {
        let Some(me) = self.state.account().cloned() else { return Ok(Vec::new()) };
        let found = self.server.store.mailboxes_shared_with(Identifier::naming(&me.address)).await?;
        let mut owners: std::collections::HashMap<tern_store::AccountId, String> = std::collections::HashMap::new();
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
                owners.insert(mailbox.account, a.address);
            }
            let Some(owner) = owners.get(&mailbox.account) else { continue };
            let shown = shown_name(owner, &mailbox.name);
            out.push(Located { shown, mailbox, rights, other_owner: Some(owner.clone()) });
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
        assert_eq!(other_user_name("Other Users/bob@x.org/Team/2024"), Some(("bob@x.org", "Team/2024")));
        assert_eq!(other_user_name("Other Users/bob@x.org"), Some(("bob@x.org", "")));
        assert_eq!(other_user_name("Other Usersx/a"), None);
        assert_eq!(other_user_name("Team"), None);
        assert_eq!(shown_name("bob@x.org", "INBOX"), "Other Users/bob@x.org/INBOX");
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
