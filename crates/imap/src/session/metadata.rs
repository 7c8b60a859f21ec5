//! METADATA (RFC 5464): annotations on mailboxes and on the server, `/private/...` per user
//! and `/shared/...` for everyone who sees the mailbox, bounded in size and number.

use super::acl::{no_such_mailbox, not_permitted};
use super::{Done, Session};
use std::collections::BTreeMap;
use tern_imap_proto::MetadataDepth;
use tern_store::{METADATA_MAX_ENTRIES, METADATA_MAX_VALUE, MetadataScope, Rights, StoreError};

/// The scopes of one mailbox (or of the server), and the name to echo.
struct Target {
    shown: String,
    shared: MetadataScope,
    private: MetadataScope,
    rights: Rights,
    server: bool,
}

/// Whether `name` is what `entry` asks for at `depth` (RFC 5464 §4.2.2).
fn wanted(entry: &str, name: &str, depth: MetadataDepth) -> bool {
    if name == entry {
        return true;
    }
    let Some(rest) = name.strip_prefix(entry).and_then(|r| r.strip_prefix('/')) else { return false };
    match depth {
        MetadataDepth::Zero => false,
        MetadataDepth::One => !rest.contains('/'),
        MetadataDepth::Infinity => true,
    }
}

impl Session {
    async fn metadata_target(&mut self, wire: &str) -> Result<Result<Target, Done>, StoreError> {
        let Some(me) = self.state.account().map(|a| a.id) else { return Ok(Err(Done::bad("Log in first"))) };
        if wire.is_empty() {
            return Ok(Ok(Target {
                shown: String::new(),
                shared: MetadataScope { mailbox: None, user: None },
                private: MetadataScope { mailbox: None, user: Some(me) },
                rights: Rights::READ,
                server: true,
            }));
        }
        let name = match self.mailbox_name(wire) {
            Ok(n) => n,
            Err(done) => return Ok(Err(done)),
        };
        let Some(located) = self.locate(&name).await? else { return Ok(Err(no_such_mailbox())) };
        let id = located.mailbox.id;
        Ok(Ok(Target {
            shown: located.shown,
            shared: MetadataScope { mailbox: Some(id), user: None },
            private: MetadataScope { mailbox: Some(id), user: Some(me) },
            rights: located.rights,
            server: false,
        }))
    }

    /// What the server itself says about itself (RFC 5464 §3.2.1.1).
    fn server_annotations(&self) -> Vec<(String, Vec<u8>)> {
        let admin = format!("mailto:postmaster@{}", self.server.settings.hostname);
        vec![("/shared/admin".to_string(), admin.into_bytes())]
    }

    pub(super) async fn get_metadata(
        &mut self,
        wire: &str,
        entries: &[String],
        max_size: Option<u32>,
        depth: MetadataDepth,
    ) -> Result<Done, StoreError> {
        let target = match self.metadata_target(wire).await? {
            Ok(t) => t,
            Err(done) => return Ok(done),
        };
        if !target.rights.contains(Rights::READ) {
            return Ok(not_permitted("read annotations"));
        }
        let mut stored: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        if entries.iter().any(|e| e.starts_with("/shared")) {
            stored.extend(self.server.store.metadata_get(target.shared).await?);
            if target.server {
                stored.extend(self.server_annotations());
            }
        }
        if entries.iter().any(|e| e.starts_with("/private")) {
            stored.extend(self.server.store.metadata_get(target.private).await?);
        }
        let mut found: Vec<(&str, Option<&[u8]>)> = Vec::new();
        let mut longest_skipped = 0usize;
        for entry in entries {
            let mut any = false;
            for (name, value) in stored.iter().filter(|(name, _)| wanted(entry, name, depth)) {
                any = true;
                if found.iter().any(|(n, _)| *n == name.as_str()) {
                    continue;
                }
                if max_size.is_some_and(|m| value.len() > m as usize) {
                    longest_skipped = longest_skipped.max(value.len());
                    continue;
                }
                found.push((name, Some(value)));
            }
            // An entry asked for by name that does not exist: NIL.
            if !any && !found.iter().any(|(n, _)| *n == entry.as_str()) {
                found.push((entry, None));
            }
        }
        self.out.extend_from_slice(b"* METADATA ");
        let shown = target.shown.clone();
        if shown.is_empty() {
            self.out.extend_from_slice(b"\"\"");
        } else {
            self.write_mailbox(&shown);
        }
        self.out.extend_from_slice(b" (");
        for (i, (name, value)) in found.iter().enumerate() {
            if i > 0 {
                self.out.push(b' ');
            }
            tern_imap_proto::encode::string(&mut self.out, name.as_bytes(), false);
            self.out.push(b' ');
            match value {
                None => self.out.extend_from_slice(b"NIL"),
                // Binary values go as literal8 (RFC 5464 §4.2, with BINARY).
                Some(v) if v.contains(&0) => {
                    self.out.extend_from_slice(format!("~{{{}}}\r\n", v.len()).as_bytes());
                    self.out.extend_from_slice(v);
                }
                Some(v) => tern_imap_proto::encode::string(&mut self.out, v, self.utf8),
            }
        }
        self.out.extend_from_slice(b")\r\n");
        if longest_skipped > 0 {
            return Ok(Done::ok("GETMETADATA completed").code(format!("METADATA LONGENTRIES {longest_skipped}")));
        }
        Ok(Done::ok("GETMETADATA completed"))
    }

    pub(super) async fn set_metadata(
        &mut self,
        wire: &str,
        entries: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<Done, StoreError> {
        let target = match self.metadata_target(wire).await? {
            Ok(t) => t,
            Err(done) => return Ok(done),
        };
        if let Some((_, Some(v))) =
            entries.iter().find(|(_, v)| v.as_ref().is_some_and(|v| v.len() > METADATA_MAX_VALUE))
        {
            tracing::info!(bytes = v.len(), "annotation too large");
            return Ok(Done::no("Annotation too large").code(format!("METADATA MAXSIZE {METADATA_MAX_VALUE}")));
        }
        let (shared, private): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|(name, _)| name.starts_with("/shared"));
        // RFC 5464 §3: /private needs the right to read the mailbox, /shared to write it; the
        // server's /shared entries are the administrator's.
        if !target.rights.contains(Rights::READ)
            || (!shared.is_empty() && (target.server || !target.rights.contains(Rights::WRITE)))
        {
            return Ok(not_permitted("set these annotations"));
        }
        // Both scopes are checked against the limit before either is written.
        for (scope, changes) in [(target.shared, &shared), (target.private, &private)] {
            if changes.is_empty() {
                continue;
            }
            let mut names: std::collections::BTreeSet<String> =
                self.server.store.metadata_get(scope).await?.into_iter().map(|(n, _)| n).collect();
            for (name, value) in changes {
                if value.is_some() {
                    names.insert(name.clone());
                } else {
                    names.remove(name);
                }
            }
            if names.len() > METADATA_MAX_ENTRIES {
                return Ok(Done::no("Too many annotations").code("METADATA TOOMANY"));
            }
        }
        for (scope, changes) in [(target.shared, shared), (target.private, private)] {
            if changes.is_empty() {
                continue;
            }
            match self.server.store.metadata_set(scope, changes).await {
                Ok(()) => {}
                Err(StoreError::Limit(_)) => return Ok(Done::no("Too many annotations").code("METADATA TOOMANY")),
                Err(StoreError::NotFound(_)) => return Ok(no_such_mailbox()),
                Err(e) => return Err(e),
            }
        }
        Ok(Done::ok("SETMETADATA completed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_selects_children() {
        let e = "/private/vendor/tern";
        assert!(wanted(e, "/private/vendor/tern", MetadataDepth::Zero));
        assert!(!wanted(e, "/private/vendor/tern/a", MetadataDepth::Zero));
        assert!(wanted(e, "/private/vendor/tern/a", MetadataDepth::One));
        assert!(!wanted(e, "/private/vendor/tern/a/b", MetadataDepth::One));
        assert!(wanted(e, "/private/vendor/tern/a/b", MetadataDepth::Infinity));
        assert!(!wanted(e, "/private/vendor/ternx", MetadataDepth::Infinity));
    }
}
