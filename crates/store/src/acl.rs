//! Access control lists on mailboxes (RFC 4314): the rights, who an entry names, and what a
//! user may do with a mailbox. The owner of a mailbox always has every right.

use crate::{Account, Mailbox};
use serde::{Deserialize, Serialize};

/// A set of RFC 4314 §2.1 rights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Rights(u16);

/// The rights in their canonical order, with their letters.
const LETTERS: [(char, Rights); 11] = [
    ('l', Rights::LOOKUP),
    ('r', Rights::READ),
    ('s', Rights::SEEN),
    ('w', Rights::WRITE),
    ('i', Rights::INSERT),
    ('p', Rights::POST),
    ('k', Rights::CREATE),
    ('x', Rights::DELETE_MAILBOX),
    ('t', Rights::DELETE_MESSAGES),
    ('e', Rights::EXPUNGE),
    ('a', Rights::ADMIN),
];

impl Rights {
    /// `l`: the mailbox is visible in LIST and exists for the user.
    pub const LOOKUP: Rights = Rights(1);
    /// `r`: SELECT, EXAMINE, STATUS, FETCH, SEARCH, COPY from.
    pub const READ: Rights = Rights(1 << 1);
    /// `s`: keep `\Seen` across sessions.
    pub const SEEN: Rights = Rights(1 << 2);
    /// `w`: flags and keywords other than `\Seen` and `\Deleted`.
    pub const WRITE: Rights = Rights(1 << 3);
    /// `i`: APPEND, COPY and MOVE into the mailbox.
    pub const INSERT: Rights = Rights(1 << 4);
    /// `p`: mail sent to `user+mailbox@` is delivered into it.
    pub const POST: Rights = Rights(1 << 5);
    /// `k`: CREATE mailboxes below it, RENAME into it.
    pub const CREATE: Rights = Rights(1 << 6);
    /// `x`: DELETE it, RENAME it away.
    pub const DELETE_MAILBOX: Rights = Rights(1 << 7);
    /// `t`: set or clear `\Deleted`.
    pub const DELETE_MESSAGES: Rights = Rights(1 << 8);
    /// `e`: EXPUNGE (and MOVE out, with `t`).
    pub const EXPUNGE: Rights = Rights(1 << 9);
    /// `a`: SETACL, DELETEACL, GETACL, LISTRIGHTS.
    pub const ADMIN: Rights = Rights(1 << 10);
    pub const NONE: Rights = Rights(0);
    pub const ALL: Rights = Rights((1 << 11) - 1);

    pub fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn intersects(self, other: Rights) -> bool {
        self.0 & other.0 != 0
    }

    pub fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }

    pub fn without(self, other: Rights) -> Rights {
        Rights(self.0 & !other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses rights letters; RFC 4314 §2.1.1's obsolete `c` is `k` and `x`, `d` is `x`, `t`
    /// and `e`. `Err` names a letter that is no right.
    pub fn parse(text: &str) -> Result<Rights, char> {
        let mut rights = Rights::NONE;
        for c in text.chars() {
            rights = rights.union(match c {
                'c' => Rights::CREATE.union(Rights::DELETE_MAILBOX),
                'd' => Rights::DELETE_MAILBOX.union(Rights::DELETE_MESSAGES).union(Rights::EXPUNGE),
                // Digits are implementation rights Tern does not define (RFC 4314 §2).
                '0'..='9' => Rights::NONE,
                c => LETTERS.iter().find(|(l, _)| *l == c).map(|(_, r)| *r).ok_or(c)?,
            });
        }
        Ok(rights)
    }

    /// The rights in canonical order (`lrswipkxtea`), without the obsolete letters.
    pub fn letters(self) -> String {
        LETTERS.iter().filter(|(_, r)| self.contains(*r)).map(|(l, _)| *l).collect()
    }

    /// [`Rights::letters`] with `c` and `d` added when all they stand for is there (what
    /// MYRIGHTS and GETACL show to clients of RFC 2086).
    pub fn letters_with_obsolete(self) -> String {
        let mut s = self.letters();
        if self.contains(Rights::parse("c").unwrap_or_default()) {
            s.push('c');
        }
        if self.contains(Rights::parse("d").unwrap_or_default()) {
            s.push('d');
        }
        s
    }
}

impl Serialize for Rights {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.letters())
    }
}

impl<'de> Deserialize<'de> for Rights {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rights, D::Error> {
        let text = String::deserialize(d)?;
        Rights::parse(&text).map_err(|c| serde::de::Error::custom(format!("unknown right {c}")))
    }
}

/// One entry of a mailbox's ACL: who, and the rights given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    pub identifier: Identifier,
    pub rights: Rights,
}

/// Whom an ACL entry names (RFC 4314 §2: identifiers are the server's to define).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identifier {
    /// `anyone`: every user of the server.
    Anyone,
    /// `authenticated`: every user who logged in (the same set here: nobody reads mail
    /// without logging in).
    Authenticated,
    /// `@example.org`: every user of that domain.
    Domain(String),
    /// `bob@example.org`: one user.
    User(String),
}

impl Identifier {
    /// Parses an identifier as clients and `tern share` write it (addresses lower-cased).
    pub fn parse(text: &str) -> Option<Identifier> {
        let lower = text.trim().to_lowercase();
        if lower.chars().any(|c| c.is_control() || c.is_whitespace()) || lower.len() > 320 {
            return None;
        }
        match lower.as_str() {
            "anyone" => Some(Identifier::Anyone),
            "authenticated" => Some(Identifier::Authenticated),
            _ => match lower.split_once('@') {
                Some(("", domain)) if !domain.is_empty() && !domain.contains('@') => {
                    Some(Identifier::Domain(domain.to_string()))
                }
                Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => {
                    Some(Identifier::User(lower))
                }
                _ => None,
            },
        }
    }

    /// The identifiers that name `address` (its own, its domain's, everyone's): what the
    /// index of shared mailboxes is looked up by.
    pub fn naming(address: &str) -> Vec<Identifier> {
        let mut out = vec![Identifier::Anyone, Identifier::Authenticated, Identifier::User(address.to_lowercase())];
        if let Some((_, domain)) = address.rsplit_once('@') {
            out.push(Identifier::Domain(domain.to_lowercase()));
        }
        out
    }

    pub fn names(&self, address: &str) -> bool {
        match self {
            Identifier::Anyone | Identifier::Authenticated => true,
            Identifier::Domain(d) => address.rsplit_once('@').is_some_and(|(_, ad)| ad.eq_ignore_ascii_case(d)),
            Identifier::User(u) => u.eq_ignore_ascii_case(address),
        }
    }
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identifier::Anyone => f.write_str("anyone"),
            Identifier::Authenticated => f.write_str("authenticated"),
            Identifier::Domain(d) => write!(f, "@{d}"),
            Identifier::User(u) => f.write_str(u),
        }
    }
}

impl Serialize for Identifier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Identifier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Identifier, D::Error> {
        let text = String::deserialize(d)?;
        Identifier::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("bad identifier {text}")))
    }
}

/// What `user` may do with `mailbox`: everything for its owner, else the union of the
/// entries that name the user.
pub fn rights_of(user: &Account, mailbox: &Mailbox) -> Rights {
    if mailbox.account == user.id {
        return Rights::ALL;
    }
    mailbox.acl.iter().filter(|e| e.identifier.names(&user.address)).fold(Rights::NONE, |r, e| r.union(e.rights))
}

/// Whether mail to `user+name@` may be filed into `mailbox` (RFC 4314 `p` for anyone).
pub fn anyone_may_post(mailbox: &Mailbox) -> bool {
    mailbox.acl.iter().any(|e| e.identifier == Identifier::Anyone && e.rights.contains(Rights::POST))
}

/// Longest ACL one mailbox keeps.
pub const MAX_ACL_ENTRIES: usize = 100;

/// Sets (or with `None`, or no rights, removes) `identifier`'s entry in `acl`; `false` when
/// the list is full. Entries stay sorted by identifier.
pub fn set_entry(acl: &mut Vec<AclEntry>, identifier: Identifier, rights: Option<Rights>) -> bool {
    let at = acl.iter().position(|e| e.identifier == identifier);
    match (at, rights.filter(|r| !r.is_empty())) {
        (Some(i), None) => {
            acl.remove(i);
        }
        (None, None) => {}
        (Some(i), Some(rights)) => acl[i].rights = rights,
        (None, Some(rights)) => {
            if acl.len() >= MAX_ACL_ENTRIES {
                return false;
            }
            acl.push(AclEntry { identifier, rights });
            acl.sort_by(|a, b| a.identifier.cmp(&b.identifier));
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_parse_and_print_in_canonical_order() {
        let r = Rights::parse("tlr").unwrap();
        assert_eq!(r.letters(), "lrt");
        assert_eq!(Rights::ALL.letters(), "lrswipkxtea");
        assert_eq!(Rights::ALL.letters_with_obsolete(), "lrswipkxteacd");
        assert_eq!(Rights::parse("c").unwrap().letters(), "kx");
        assert_eq!(Rights::parse("d").unwrap().letters(), "xte");
        assert_eq!(Rights::parse("lr0").unwrap().letters(), "lr");
        assert_eq!(Rights::parse("lrz"), Err('z'));
        assert!(Rights::parse("lrs").unwrap().contains(Rights::READ.union(Rights::SEEN)));
        assert!(!Rights::parse("lr").unwrap().intersects(Rights::WRITE.union(Rights::SEEN)));
        let json =
            serde_json::to_string(&AclEntry { identifier: Identifier::Domain("x.org".into()), rights: r }).unwrap();
        assert_eq!(json, r#"{"identifier":"@x.org","rights":"lrt"}"#);
        assert_eq!(serde_json::from_str::<AclEntry>(&json).unwrap().rights, r);
    }

    #[test]
    fn identifiers_name_users() {
        assert_eq!(Identifier::parse("Bob@Example.org"), Some(Identifier::User("bob@example.org".into())));
        assert_eq!(Identifier::parse("@example.org"), Some(Identifier::Domain("example.org".into())));
        assert_eq!(Identifier::parse("ANYONE"), Some(Identifier::Anyone));
        for bad in ["", "bob", "@", "a@b@c", "bob\r\n@x.org", "a b@x.org"] {
            assert!(Identifier::parse(bad).is_none(), "{bad}");
        }
        assert!(Identifier::Domain("example.org".into()).names("carol@EXAMPLE.org"));
        assert!(!Identifier::Domain("example.org".into()).names("carol@example.org.evil"));
        assert!(Identifier::User("bob@x.org".into()).names("Bob@x.org"));
        assert!(Identifier::naming("bob@x.org").contains(&Identifier::Domain("x.org".into())));
    }
}
