//! NOTIFY (RFC 5465): what changes in other mailboxes — new and expunged messages, flags,
//! mailboxes created, renamed or deleted, subscriptions — pushed to a client that asked,
//! while it idles or waits between commands, and the selected mailbox's changes pushed at
//! once (SELECTED) instead of at the next command.
//!
//! A session with NOTIFY set listens to the store's change feed; a change to one of its
//! account's mailboxes (or one it watches in another account) makes it read the watched
//! mailboxes again and report what differs from what it last reported.

use super::acl::{OTHER_USERS, PUBLIC};
use super::{Done, Session};
use std::collections::{BTreeMap, BTreeSet};
use tern_imap_proto::{FetchAttr, NotifyEvent, NotifyFilter, NotifyGroup, NotifySet, SeqNumber, SeqRange, SequenceSet};
use tern_store::{INBOX, MailboxId, StoreChange, StoreError};
use tokio::sync::broadcast;

/// The events this server reports (RFC 5465 §5); others are `NO [BADEVENT]`.
const SUPPORTED: &str = "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange";

/// Most mailboxes one NOTIFY watches: beyond, `NO [NOTIFICATIONOVERFLOW]`-like refusal.
const MAX_WATCHED: usize = 1000;

/// What a client asked to be told, and what it has been told.
pub(crate) struct Notifications {
    /// The user's account: changes to its mailboxes concern this session.
    account: tern_store::AccountId,
    groups: Vec<NotifyGroup>,
    changes: broadcast::Receiver<StoreChange>,
    /// A change arrived that may concern this session.
    pub(crate) pending: bool,
    /// The watched mailboxes as last reported, by id.
    known: BTreeMap<MailboxId, Snapshot>,
    subscriptions: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    name: String,
    messages: u32,
    uid_next: u32,
    uid_validity: u32,
    unseen: u32,
    highest_modseq: u64,
}

/// What the selected mailbox's group asks for.
struct SelectedEvents {
    /// SELECTED (not SELECTED-DELAYED): expunges may be sent at any time.
    immediate: bool,
    expunge: bool,
    new_fetch: Vec<FetchAttr>,
}

impl Notifications {
    /// Waits for the next change from the feed (forever once it is closed).
    /// Waits for the next change that concerns this session (forever once the feed is closed).
    pub(crate) async fn changed(&mut self, selected: Option<MailboxId>) {
        loop {
            match self.changes.recv().await {
                Ok(change) if self.concerns(&change, selected) => break,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
        self.pending = true;
    }

    /// A change of one of the user's mailboxes or mailbox names, or of a watched mailbox of
    /// another account (the rest of the server's traffic costs a comparison, not a read).
    fn concerns(&self, change: &StoreChange, selected: Option<MailboxId>) -> bool {
        match change {
            StoreChange::Mailbox { account, mailbox } => {
                *account == self.account || self.known.contains_key(mailbox) || Some(*mailbox) == selected
            }
            StoreChange::Account { account } => *account == self.account,
            StoreChange::Directory | StoreChange::Queue => false,
        }
    }

    fn selected(&self) -> Option<SelectedEvents> {
        let group =
            self.groups.iter().find(|g| matches!(g.filter, NotifyFilter::Selected | NotifyFilter::SelectedDelayed))?;
        let mut events =
            SelectedEvents { immediate: group.filter == NotifyFilter::Selected, expunge: false, new_fetch: Vec::new() };
        for e in &group.events {
            match e {
                NotifyEvent::MessageExpunge => events.expunge = true,
                NotifyEvent::MessageNew(attrs) => events.new_fetch = attrs.clone(),
                _ => {}
            }
        }
        Some(events)
    }

    fn wants(&self, event: &str) -> bool {
        self.groups.iter().any(|g| g.events.iter().any(|e| e.name() == event))
    }
}

/// The events of the first non-selected group whose filter names the mailbox (RFC 5465 §6:
/// the first that matches decides).
fn events_for<'a>(groups: &'a [NotifyGroup], name: &str, own: bool, subscribed: bool) -> Option<&'a [NotifyEvent]> {
    let under = |root: &str| name == root || name.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'));
    groups
        .iter()
        .find(|g| match &g.filter {
            NotifyFilter::Selected | NotifyFilter::SelectedDelayed => false,
            // The mailboxes mail is delivered to: the user's INBOX.
            NotifyFilter::Inboxes => own && name == INBOX,
            NotifyFilter::Personal => own,
            NotifyFilter::Subscribed => subscribed,
            NotifyFilter::Subtree(roots) => roots.iter().any(|r| under(r)),
            NotifyFilter::Mailboxes(names) => names.iter().any(|n| n == name),
        })
        .map(|g| g.events.as_slice())
}

/// Whether a shown name is of the user's own namespace.
fn own(name: &str) -> bool {
    ![OTHER_USERS, PUBLIC].iter().any(|ns| name.strip_prefix(ns).is_some_and(|rest| rest.starts_with('/')))
}

fn has(events: &[NotifyEvent], name: &str) -> bool {
    events.iter().any(|e| e.name() == name)
}

/// RFC 5465 §5 and §6: what a NOTIFY SET may ask for; the answer refusing it otherwise.
fn check(set: &NotifySet) -> Result<(), Done> {
    for group in &set.groups {
        let selected = matches!(group.filter, NotifyFilter::Selected | NotifyFilter::SelectedDelayed);
        let names: Vec<&str> = group.events.iter().map(NotifyEvent::name).collect();
        for e in &group.events {
            match e {
                NotifyEvent::Other(_)
                | NotifyEvent::AnnotationChange
                | NotifyEvent::MailboxMetadataChange
                | NotifyEvent::ServerMetadataChange => {
                    return Err(
                        Done::no(format!("{} is not reported here", e.name())).code(format!("BADEVENT ({SUPPORTED})"))
                    );
                }
                NotifyEvent::MailboxName | NotifyEvent::SubscriptionChange if selected => {
                    return Err(Done::bad("Only message events are for the selected mailbox"));
                }
                NotifyEvent::MessageNew(attrs) if !attrs.is_empty() && !selected => {
                    return Err(Done::bad("FETCH attributes are for the selected mailbox only"));
                }
                _ => {}
            }
        }
        // §5: MessageNew and MessageExpunge go together, and FlagChange needs both.
        let new = names.contains(&"MessageNew");
        let expunge = names.contains(&"MessageExpunge");
        if new != expunge || (names.contains(&"FlagChange") && !new) {
            return Err(Done::bad("MessageNew and MessageExpunge go together; FlagChange needs both"));
        }
    }
    if set.groups.iter().filter(|g| matches!(g.filter, NotifyFilter::Selected | NotifyFilter::SelectedDelayed)).count()
        > 1
    {
        return Err(Done::bad("One group for the selected mailbox"));
    }
    Ok(())
}

/// FETCH attributes of a notification never set `\Seen` (RFC 5465 §5.2).
fn peek(attrs: &[FetchAttr]) -> Vec<FetchAttr> {
    attrs
        .iter()
        .cloned()
        .map(|a| match a {
            FetchAttr::BodySection { section, partial, .. } => FetchAttr::BodySection { peek: true, section, partial },
            FetchAttr::Rfc822 => {
                FetchAttr::BodySection { peek: true, section: tern_imap_proto::Section::default(), partial: None }
            }
            other => other,
        })
        .collect()
}

impl Session {
    /// `NOTIFY SET ...` or `NOTIFY NONE`.
    pub(super) async fn notify(&mut self, set: Option<NotifySet>) -> Result<Done, StoreError> {
        let Some(set) = set else {
            self.notifications = None;
            return Ok(Done::ok("NOTIFY NONE completed"));
        };
        if let Err(done) = check(&set) {
            return Ok(done);
        }
        let mut notifications = Box::new(Notifications {
            account: self.account_id(),
            groups: set.groups,
            changes: self.server.store.subscribe(),
            pending: false,
            known: BTreeMap::new(),
            subscriptions: BTreeSet::new(),
        });
        let (known, subscriptions) = self.watched(&notifications).await?;
        if known.len() > MAX_WATCHED {
            return Ok(Done::no(format!("At most {MAX_WATCHED} mailboxes can be watched")).code("LIMIT"));
        }
        if set.status {
            // §3.1 STATUS: where each mailbox watched for messages stands now.
            let selected = self.state.view().map(|v| v.id);
            for (id, snap) in &known {
                let events =
                    events_for(&notifications.groups, &snap.name, own(&snap.name), subscriptions.contains(&snap.name));
                if Some(*id) != selected && events.is_some_and(|e| has(e, "MessageNew")) {
                    self.write_notify_status(snap, true);
                }
            }
        }
        notifications.subscriptions = subscriptions;
        notifications.known = known;
        self.notifications = Some(notifications);
        Ok(Done::ok("NOTIFY completed"))
    }

    /// The mailboxes the groups watch, as they are now, and the subscriptions.
    async fn watched(
        &self,
        n: &Notifications,
    ) -> Result<(BTreeMap<MailboxId, Snapshot>, BTreeSet<String>), StoreError> {
        let me = self.account_id();
        let subscriptions: BTreeSet<String> = self.server.store.subscriptions(me).await?.into_iter().collect();
        let mut candidates: Vec<(tern_store::Mailbox, String, bool)> =
            self.server.store.mailbox_list(me).await?.into_iter().map(|m| (m.clone(), m.name, true)).collect();
        // Other accounts' mailboxes only by name (SUBTREE, MAILBOXES, SUBSCRIBED).
        let by_name = n.groups.iter().any(|g| {
            matches!(g.filter, NotifyFilter::Subtree(_) | NotifyFilter::Mailboxes(_) | NotifyFilter::Subscribed)
        });
        if by_name {
            for shared in self.shared_mailboxes().await? {
                if shared.rights.contains(tern_store::Rights::READ) {
                    candidates.push((shared.mailbox, shared.shown, false));
                }
            }
        }
        let mut known = BTreeMap::new();
        for (mailbox, name, own) in candidates {
            let Some(events) = events_for(&n.groups, &name, own, subscriptions.contains(&name)) else { continue };
            if events.is_empty() {
                continue;
            }
            let unseen = if has(events, "FlagChange") { self.unseen_count(&mailbox).await? } else { 0 };
            known.insert(
                mailbox.id,
                Snapshot {
                    name,
                    messages: mailbox.total,
                    uid_next: mailbox.uid_next,
                    uid_validity: mailbox.uid_validity,
                    unseen,
                    highest_modseq: mailbox.highest_modseq,
                },
            );
        }
        Ok((known, subscriptions))
    }

    fn write_notify_status(&mut self, snap: &Snapshot, messages: bool) {
        let mut items = if messages {
            format!("MESSAGES {} UIDNEXT {} UIDVALIDITY {}", snap.messages, snap.uid_next, snap.uid_validity)
        } else {
            format!("UNSEEN {}", snap.unseen)
        };
        if self.condstore {
            items.push_str(&format!(" HIGHESTMODSEQ {}", snap.highest_modseq));
        }
        self.out.extend_from_slice(b"* STATUS ");
        self.write_mailbox(&snap.name);
        self.out.extend_from_slice(format!(" ({items})\r\n").as_bytes());
    }

    fn write_notify_list(&mut self, attributes: &str, name: &str, old_name: Option<&str>) {
        self.out.extend_from_slice(format!("* LIST ({attributes}) \"/\" ").as_bytes());
        self.write_mailbox(name);
        if let Some(old) = old_name {
            // RFC 5465 §5.4 with RFC 5258's OLDNAME extended data.
            self.out.extend_from_slice(b" (\"OLDNAME\" (");
            self.write_mailbox(old);
            self.out.extend_from_slice(b"))");
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// Writes what changed since the last report, if the feed said something did: in IDLE,
    /// and while the session waits for a command.
    pub(crate) async fn push_notifications(&mut self) -> Result<(), StoreError> {
        let Some(mut n) = self.notifications.take() else { return Ok(()) };
        let selected = self.state.view().map(|v| v.id);
        // Everything queued so far is handled by this one look.
        loop {
            match n.changes.try_recv() {
                Ok(change) => n.pending |= n.concerns(&change, selected),
                Err(broadcast::error::TryRecvError::Lagged(_)) => n.pending = true,
                Err(_) => break,
            }
        }
        if !std::mem::take(&mut n.pending) {
            self.notifications = Some(n);
            return Ok(());
        }
        let result = self.report_notifications(&mut n).await;
        self.notifications = Some(n);
        result
    }

    async fn report_notifications(&mut self, n: &mut Notifications) -> Result<(), StoreError> {
        let selected = self.state.view().map(|v| v.id);
        if let (Some(events), Some(before)) = (n.selected(), self.state.view().map(|v| v.max_uid())) {
            // The selected mailbox: its usual reports, now rather than at the next command.
            self.report_changes(events.immediate && events.expunge, false).await?;
            let after = self.state.view().map(|v| v.max_uid()).unwrap_or(before);
            if after > before && !events.new_fetch.is_empty() {
                let mut attrs = peek(&events.new_fetch);
                if !attrs.contains(&FetchAttr::Uid) {
                    attrs.insert(0, FetchAttr::Uid);
                }
                let set = SequenceSet::Ranges(vec![SeqRange(SeqNumber::Value(before + 1), SeqNumber::Value(after))]);
                self.fetch("*", true, set, attrs, None, false, None).await?;
            }
        }
        let (now, subscriptions) = self.watched(n).await?;
        // (A mailbox unsubscribed or renamed is judged by what held when it was reported.)
        let events_of = |name: &str, own: bool| {
            events_for(&n.groups, name, own, n.subscriptions.contains(name) || subscriptions.contains(name))
                .unwrap_or(&[])
        };
        let mut lines: Vec<(String, String, Option<String>)> = Vec::new();
        let mut statuses: Vec<(Snapshot, bool)> = Vec::new();
        for (id, old) in &n.known {
            match now.get(id) {
                None if has(events_of(&old.name, own(&old.name)), "MailboxName") => {
                    lines.push(("\\NonExistent".into(), old.name.clone(), None));
                }
                Some(new) if new.name != old.name && has(events_of(&new.name, own(&new.name)), "MailboxName") => {
                    lines.push((String::new(), new.name.clone(), Some(old.name.clone())));
                }
                _ => {}
            }
        }
        for (id, new) in &now {
            let events = events_of(&new.name, own(&new.name));
            let Some(old) = n.known.get(id) else {
                if has(events, "MailboxName") {
                    lines.push((String::new(), new.name.clone(), None));
                }
                continue;
            };
            if Some(*id) == selected {
                continue;
            }
            if (new.messages, new.uid_next, new.uid_validity) != (old.messages, old.uid_next, old.uid_validity) {
                if has(events, "MessageNew") {
                    statuses.push((new.clone(), true));
                }
            } else if (new.unseen != old.unseen || new.highest_modseq != old.highest_modseq)
                && has(events, "FlagChange")
            {
                statuses.push((new.clone(), false));
            }
        }
        for (attributes, name, old) in lines {
            self.write_notify_list(&attributes, &name, old.as_deref());
        }
        for (snap, messages) in statuses {
            self.write_notify_status(&snap, messages);
        }
        if n.wants("SubscriptionChange") {
            for added in subscriptions.difference(&n.subscriptions) {
                self.write_notify_list("\\Subscribed", added, None);
            }
            for removed in n.subscriptions.difference(&subscriptions) {
                self.write_notify_list("", removed, None);
            }
        }
        n.known = now;
        n.subscriptions = subscriptions;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(filter: NotifyFilter, events: Vec<NotifyEvent>) -> NotifyGroup {
        NotifyGroup { filter, events }
    }

    #[test]
    fn the_first_matching_filter_decides() {
        let groups = vec![
            group(NotifyFilter::Mailboxes(vec!["Lists/noisy".into()]), vec![]),
            group(NotifyFilter::Subtree(vec!["Lists".into()]), vec![NotifyEvent::MessageNew(vec![])]),
            group(NotifyFilter::Inboxes, vec![NotifyEvent::MailboxName]),
        ];
        assert_eq!(events_for(&groups, "Lists/noisy", true, false), Some(&[][..]));
        assert_eq!(events_for(&groups, "Lists/rust", true, false).map(|e| e.len()), Some(1));
        assert_eq!(events_for(&groups, "Lists", true, false).map(|e| e.len()), Some(1));
        assert_eq!(events_for(&groups, "Listsx", true, false), None);
        assert_eq!(events_for(&groups, "INBOX", true, false).map(|e| e[0].name()), Some("MailboxName"));
        assert_eq!(events_for(&groups, "INBOX", false, false), None, "INBOXES is the user's own");
    }

    #[test]
    fn what_a_set_may_ask() {
        let ok = |groups| check(&NotifySet { status: false, groups }).is_ok();
        let both = || vec![NotifyEvent::MessageNew(vec![]), NotifyEvent::MessageExpunge];
        assert!(ok(vec![group(NotifyFilter::Personal, both())]));
        assert!(!ok(vec![group(NotifyFilter::Personal, vec![NotifyEvent::MessageNew(vec![])])]));
        assert!(!ok(vec![group(NotifyFilter::Personal, vec![NotifyEvent::FlagChange])]));
        assert!(!ok(vec![group(NotifyFilter::Selected, vec![NotifyEvent::MailboxName])]));
        assert!(!ok(vec![group(
            NotifyFilter::Personal,
            vec![NotifyEvent::MessageNew(vec![FetchAttr::Uid]), NotifyEvent::MessageExpunge]
        )]));
        let refused = check(&NotifySet {
            status: false,
            groups: vec![group(NotifyFilter::Personal, vec![NotifyEvent::Other("Bogus".into())])],
        });
        assert!(refused.is_err_and(|d| d.code.is_some_and(|c| c.starts_with("BADEVENT (MessageNew"))));
        assert!(!ok(vec![group(NotifyFilter::Selected, both()), group(NotifyFilter::SelectedDelayed, both())]));
    }
}
