//! Shared mailboxes through the wire (RFC 4314 ACL, RFC 2342 namespaces): every right is
//! checked by a command that needs it, a user without `l` cannot learn that a mailbox exists,
//! rights survive a restart, and `tern share` sets the same ACLs as SETACL.

mod common;

use common::*;

const TEAM: &str = "\"Other Users/alice@example.test/Team\"";

fn message(subject: &str) -> String {
    format!("From: a@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n")
}

fn append(c: &mut Imap<std::net::TcpStream>, mailbox: &str, raw: &str) -> ImapReply {
    c.run(&format!("APPEND {mailbox} {{{}+}}\r\n{raw}", raw.len()))
}

/// Alice gives Bob `rights` on Team (replacing what he had).
fn grant(alice: &mut Imap<std::net::TcpStream>, rights: &str) {
    alice.ok(&format!("SETACL Team bob@example.test {rights}"));
}

#[test]
fn every_right_is_checked_by_a_command_that_needs_it() {
    let mut s = TestServer::started("");
    let mut alice = s.imap_login("alice@example.test");
    let caps = alice.ok("CAPABILITY").untagged("CAPABILITY")[0].to_string();
    assert!(caps.contains(" ACL ") && caps.contains(" RIGHTS=texk"), "{caps}");
    assert_eq!(
        alice.ok("NAMESPACE").lines,
        vec!["* NAMESPACE ((\"\" \"/\")) ((\"Other Users/\" \"/\")) ((\"Public/\" \"/\"))"]
    );
    alice.ok("CREATE Team");
    for i in 1..=3 {
        assert!(append(&mut alice, "Team", &message(&format!("team {i}"))).ok());
    }
    let mut bob = s.imap_login("bob@example.test");
    assert!(append(&mut bob, "INBOX", &message("bob's own")).ok());

    // No rights: Bob cannot tell Team from a mailbox that does not exist.
    let listed = bob.ok("LIST \"\" \"*\"").all();
    assert!(!listed.contains("Other Users"), "{listed}");
    for command in [
        format!("SELECT {TEAM}"),
        format!("STATUS {TEAM} (MESSAGES)"),
        format!("MYRIGHTS {TEAM}"),
        format!("GETACL {TEAM}"),
        "MYRIGHTS \"Other Users/alice@example.test/Nothing\"".to_string(),
    ] {
        let r = bob.run(&command);
        assert_eq!(r.done, "NO [NONEXISTENT] No such mailbox", "{command}");
    }

    // l: listed (with its parents as \Noselect), nothing more.
    grant(&mut alice, "l");
    let r = alice.ok("GETACL Team");
    assert_eq!(r.lines, vec!["* ACL Team \"alice@example.test\" lrswipkxtea \"bob@example.test\" l"]);
    let listed = bob.ok("LIST \"\" \"*\"").all();
    assert!(listed.contains("* LIST (\\Noselect \\HasChildren) \"/\" \"Other Users\""), "{listed}");
    assert!(listed.contains("* LIST (\\Noselect \\HasChildren) \"/\" \"Other Users/alice@example.test\""), "{listed}");
    assert!(listed.contains("* LIST (\\HasNoChildren) \"/\" \"Other Users/alice@example.test/Team\""), "{listed}");
    assert_eq!(bob.ok(&format!("MYRIGHTS {TEAM}")).lines, vec![format!("* MYRIGHTS {TEAM} l")]);
    assert!(bob.run(&format!("SELECT {TEAM}")).done.starts_with("NO [NOPERM]"));
    assert!(bob.run(&format!("STATUS {TEAM} (MESSAGES)")).done.starts_with("NO [NOPERM]"));

    // r: read-only (nothing may change), reading leaves \Seen alone.
    grant(&mut alice, "lr");
    let r = bob.ok(&format!("SELECT {TEAM}"));
    assert!(r.done.starts_with("OK [READ-ONLY]"), "{r:?}");
    assert!(r.lines.contains(&"* OK [PERMANENTFLAGS ()] Read-only mailbox".to_string()), "{r:?}");
    bob.ok("FETCH 1 BODY[]");
    assert_eq!(bob.ok("SEARCH UNSEEN").untagged("SEARCH"), vec!["SEARCH 1 2 3"]);
    assert!(bob.run("STORE 1 +FLAGS (\\Seen)").done.starts_with("NO [READ-ONLY]"));
    assert!(bob.ok(&format!("STATUS {TEAM} (MESSAGES)")).lines[0].ends_with("(MESSAGES 3)"));
    bob.ok("UNSELECT");

    // s: \Seen only.
    grant(&mut alice, "lrs");
    let r = bob.ok(&format!("SELECT {TEAM}"));
    assert!(r.done.starts_with("OK [READ-WRITE]"), "{r:?}");
    assert!(r.lines.contains(&"* OK [PERMANENTFLAGS (\\Seen)] Flags permitted".to_string()), "{r:?}");
    assert!(bob.run("STORE 1 +FLAGS (\\Flagged)").done.starts_with("NO [NOPERM]"));
    let r = bob.ok("STORE 1 +FLAGS (\\Flagged \\Seen)");
    assert_eq!(r.lines, vec!["* 1 FETCH (FLAGS (\\Seen \\Recent))"], "only \\Seen is set");
    bob.ok("FETCH 2 BODY[]");
    assert_eq!(bob.ok("SEARCH UNSEEN").untagged("SEARCH"), vec!["SEARCH 3"]);
    assert!(bob.run("STORE 1 FLAGS (\\Seen)").done.starts_with("NO [NOPERM]"), "replacing needs s, t and w");

    // w: other flags and keywords.
    grant(&mut alice, "lrsw");
    bob.ok("STORE 1 +FLAGS (\\Flagged $Label1)");
    // t: \Deleted; e: EXPUNGE.
    assert!(bob.run("STORE 3 +FLAGS (\\Deleted)").done.starts_with("NO [NOPERM]"));
    grant(&mut alice, "lrswt");
    bob.ok("STORE 3 +FLAGS (\\Deleted)");
    assert!(bob.run("EXPUNGE").done.starts_with("NO [NOPERM]"));
    assert!(bob.run("MOVE 1 INBOX").done.starts_with("NO [NOPERM]"), "a MOVE out needs t and e");
    grant(&mut alice, "lrswte");
    assert_eq!(bob.ok("EXPUNGE").lines, vec!["* 3 EXPUNGE"]);
    bob.ok("UNSELECT");

    // i: APPEND and COPY into it.
    bob.ok("SELECT INBOX");
    assert!(bob.run(&format!("COPY 1 {TEAM}")).done.starts_with("NO [NOPERM]"));
    assert!(append(&mut bob, TEAM, &message("from bob")).done.starts_with("NO [NOPERM]"));
    grant(&mut alice, "lrswtei");
    assert!(bob.ok(&format!("COPY 1 {TEAM}")).done.starts_with("OK [COPYUID "));
    assert!(append(&mut bob, TEAM, &message("from bob")).ok());
    bob.ok("UNSELECT");
    let st = alice.ok("STATUS Team (MESSAGES)");
    assert!(st.lines[0].ends_with("(MESSAGES 4)"), "{st:?}");

    // k: CREATE below it (the new mailbox is shared as its parent); x: DELETE it.
    let sub = "\"Other Users/alice@example.test/Team/Sub\"";
    assert!(bob.run(&format!("CREATE {sub}")).done.starts_with("NO [NOPERM]"));
    grant(&mut alice, "lrswteik");
    bob.ok(&format!("CREATE {sub}"));
    assert!(alice.ok("LIST \"\" \"Team/*\"").all().contains("Team/Sub"));
    assert!(bob.run(&format!("DELETE {sub}")).done.starts_with("NO [NOPERM]"));
    // RENAME inside the owner's tree: `x` on the mailbox and `k` on the new parent (RFC 4314 §4).
    let renamed = "\"Other Users/alice@example.test/Team/Renamed\"";
    assert!(bob.run(&format!("RENAME {sub} {renamed}")).done.starts_with("NO [NOPERM]"), "no x yet");
    alice.ok("SETACL Team/Sub bob@example.test lx");
    assert!(bob.run(&format!("RENAME {sub} Mine")).done.starts_with("NO [CANNOT]"), "not into bob's own tree");
    let top = "\"Other Users/alice@example.test/Top\"";
    assert!(bob.run(&format!("RENAME {sub} {top}")).done.starts_with("NO [NOPERM]"), "no k on alice's root");
    bob.ok(&format!("RENAME {sub} {renamed}"));
    let list = alice.ok("LIST \"\" \"Team/*\"").all();
    assert!(list.contains("Team/Renamed") && !list.contains("Team/Sub"), "{list}");
    bob.ok(&format!("DELETE {renamed}"));
    assert!(!alice.ok("LIST \"\" \"Team/*\"").all().contains("Team/Renamed"));

    // a: the ACL commands.
    assert!(bob.run(&format!("SETACL {TEAM} carol@example.test lr")).done.starts_with("NO [NOPERM]"));
    assert!(bob.run(&format!("LISTRIGHTS {TEAM} carol@example.test")).done.starts_with("NO [NOPERM]"));
    grant(&mut alice, "lrswteika");
    bob.ok(&format!("SETACL {TEAM} carol@example.test +lr"));
    let r = bob.ok(&format!("LISTRIGHTS {TEAM} carol@example.test"));
    assert_eq!(r.lines, vec![format!("* LISTRIGHTS {TEAM} \"carol@example.test\" \"\" l r s w i p k x t e a c d")]);
    let r = bob.ok(&format!("GETACL {TEAM}"));
    assert!(r.lines[0].contains("\"carol@example.test\" lr"), "{r:?}");
    bob.ok(&format!("DELETEACL {TEAM} carol@example.test"));
    assert!(bob.run(&format!("SETACL {TEAM} alice@example.test l")).done.starts_with("NO [CANNOT]"), "the owner");
    assert!(bob.run(&format!("SETACL {TEAM} -carol@example.test l")).done.starts_with("NO [CANNOT]"), "negative");
    assert!(bob.run(&format!("SETACL {TEAM} carol@example.test lz")).done.starts_with("BAD"), "unknown right");
    assert_eq!(bob.ok(&format!("MYRIGHTS {TEAM}")).lines, vec![format!("* MYRIGHTS {TEAM} lrswiktea")]);
    assert_eq!(alice.ok("MYRIGHTS Team").lines, vec!["* MYRIGHTS Team lrswipkxteacd"]);

    // The same ACL after a restart; rights taken away while selected end the session.
    drop((alice, bob));
    s.stop();
    s.launch();
    let mut bob = s.imap_login("bob@example.test");
    assert_eq!(bob.ok(&format!("MYRIGHTS {TEAM}")).lines, vec![format!("* MYRIGHTS {TEAM} lrswiktea")]);
    bob.ok(&format!("SELECT {TEAM}"));
    let mut alice = s.imap_login("alice@example.test");
    alice.ok("DELETEACL Team bob@example.test");
    let r = bob.run("NOOP");
    assert!(r.lines.iter().any(|l| l.starts_with("* BYE [NOPERM]")), "{r:?}");
    let mut bob = s.imap_login("bob@example.test");
    assert!(bob.run(&format!("SELECT {TEAM}")).done.starts_with("NO [NONEXISTENT]"));
}

#[test]
fn a_domain_shares_a_mailbox_and_tern_share_sets_the_same_acls() {
    let s = TestServer::started("");
    // Everyone in example.test may read Alice's INBOX.
    let out = s.ok(&["share", "set", "alice@example.test", "INBOX", "@example.test", "lrs"]);
    assert!(out.contains("@example.test has lrs"), "{out}");
    let out = s.ok(&["share", "list", "alice@example.test"]);
    assert!(out.contains("INBOX\t@example.test\tlrs"), "{out}");
    assert!(
        s.ok(&["share", "list", "bob@example.test"])
            .contains("shared with bob@example.test: alice@example.test INBOX\tlrs")
    );
    assert!(!s.cli(&["share", "set", "alice@example.test", "Nowhere", "anyone", "lr"]).status.success());
    assert!(!s.cli(&["share", "set", "alice@example.test", "INBOX", "anyone", "lrz"]).status.success());
    s.deliver("alice@example.test", message("for the team").as_bytes());
    let mut bob = s.imap_login("bob@example.test");
    // Thunderbird's way: NAMESPACE, then LIST "" "*".
    bob.ok("NAMESPACE");
    let listed = bob.ok("LIST \"\" \"*\"").all();
    assert!(listed.contains("\"Other Users/alice@example.test/INBOX\""), "{listed}");
    let listed = bob.ok("LIST \"Other Users/\" \"%/%\"").all();
    assert!(listed.contains("\"Other Users/alice@example.test/INBOX\""), "{listed}");
    let r = bob.ok("SELECT \"Other Users/alice@example.test/INBOX\"");
    assert!(r.lines.contains(&"* 1 EXISTS".to_string()), "{r:?}");
    let f = bob.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])").all();
    assert!(f.contains("Subject: for the team"), "{f}");
    // Taken away with tern share remove.
    s.ok(&["share", "remove", "alice@example.test", "INBOX", "@example.test"]);
    let mut bob = s.imap_login("bob@example.test");
    assert!(!bob.ok("LIST \"\" \"*\"").all().contains("Other Users"));
}

/// RFC 4314 `p`: mail to `alice+Team@` is filed into Team only when Alice lets anyone post
/// there; otherwise it reaches her INBOX.
#[test]
fn the_post_right_opens_a_mailbox_to_plus_addressed_mail() {
    let s = TestServer::started("");
    let mut alice = s.imap_login("alice@example.test");
    alice.ok("CREATE Team");
    s.deliver("alice+Team@example.test", message("before").as_bytes());
    let count = |c: &mut Imap<std::net::TcpStream>, mailbox: &str| {
        let line = c.ok(&format!("STATUS {mailbox} (MESSAGES)")).lines[0].clone();
        line.rsplit(' ').next().unwrap_or_default().trim_end_matches(')').parse::<u32>().unwrap_or(99)
    };
    assert_eq!((count(&mut alice, "INBOX"), count(&mut alice, "Team")), (1, 0));
    alice.ok("SETACL Team anyone p");
    s.deliver("alice+Team@example.test", message("after").as_bytes());
    s.deliver("alice+Nowhere@example.test", message("no such folder").as_bytes());
    assert_eq!((count(&mut alice, "INBOX"), count(&mut alice, "Team")), (2, 1));
    // Posting gives no other right: Bob still cannot see Team.
    let mut bob = s.imap_login("bob@example.test");
    // MYRIGHTS shows the one right anyone has; not `l`, so Team is not listed.
    assert_eq!(bob.ok(&format!("MYRIGHTS {TEAM}")).lines, vec![format!("* MYRIGHTS {TEAM} p")]);
    assert!(!bob.ok("LIST \"\" \"*\"").all().contains("Team"));
    assert!(bob.run(&format!("SELECT {TEAM}")).done.starts_with("NO"));
}

/// A shared account (`support@`) that several users read under `Public/`, each with their own
/// `\Seen` (as Dovecot's private flags), the other flags shared; nobody logs in as it.
#[test]
fn a_shared_account_is_read_by_several_users_each_with_their_own_seen() {
    let mut s = TestServer::started("");
    let out = s.ok(&["user", "add", "support@example.test", "--shared"]);
    assert!(out.contains("added shared account support@example.test"), "{out}");
    assert!(s.ok(&["user", "list"]).contains("support@example.test\tmessages=0\tbytes=0\tshared"));
    assert!(!s.cli(&["user", "passwd", "support@example.test"]).status.success(), "no password to set");
    s.ok(&["share", "set", "support@example.test", "INBOX", "@example.test", "lrswite"]);
    let mut nobody = s.imap();
    assert!(nobody.run("LOGIN support@example.test secret").done.starts_with("NO"));
    for i in 1..=3 {
        s.deliver("support@example.test", message(&format!("ticket {i}")).as_bytes());
    }
    const SUPPORT: &str = "\"Public/support@example.test/INBOX\"";
    let mut alice = s.imap_login("alice@example.test");
    let mut bob = s.imap_login("bob@example.test");
    assert_eq!(
        alice.ok("NAMESPACE").lines,
        vec!["* NAMESPACE ((\"\" \"/\")) ((\"Other Users/\" \"/\")) ((\"Public/\" \"/\"))"]
    );
    let listed = alice.ok("LIST \"\" \"*\"").all();
    assert!(listed.contains("* LIST (\\Noselect \\HasChildren) \"/\" Public/support@example.test\n"), "{listed}");
    assert!(listed.contains("* LIST (\\HasNoChildren) \"/\" Public/support@example.test/INBOX"), "{listed}");
    assert!(!listed.contains("Other Users"), "a shared account is not another user: {listed}");
    assert!(alice.run("STATUS \"Other Users/support@example.test/INBOX\" (MESSAGES)").done.starts_with("NO"));
    let status = format!("STATUS {SUPPORT} (MESSAGES UNSEEN)");
    assert!(alice.ok(&status).lines[0].ends_with("(MESSAGES 3 UNSEEN 3)"));

    // Alice reads 1 and marks 2 read and flagged: her \Seen, everyone's \Flagged.
    alice.ok(&format!("SELECT {SUPPORT}"));
    let r = alice.ok("FETCH 1 BODY[]");
    assert!(r.all().contains("FLAGS (\\Seen"), "{r:?}");
    alice.ok("STORE 2 +FLAGS.SILENT (\\Seen \\Flagged)");
    assert_eq!(alice.ok("SEARCH UNSEEN").untagged("SEARCH"), vec!["SEARCH 3"]);
    let r = bob.ok(&format!("SELECT {SUPPORT}"));
    assert!(r.lines.contains(&"* OK [UNSEEN 1] First unseen".to_string()), "{r:?}");
    assert_eq!(bob.ok("SEARCH UNSEEN").untagged("SEARCH"), vec!["SEARCH 1 2 3"]);
    assert_eq!(bob.ok("SEARCH FLAGGED").untagged("SEARCH"), vec!["SEARCH 2"]);
    let r = bob.ok("FETCH 2 FLAGS").all();
    assert!(r.starts_with("* 2 FETCH (FLAGS (\\Flagged") && !r.contains("\\Seen"), "Alice's \\Seen is hers: {r}");
    assert!(bob.ok(&status).lines[0].ends_with("(MESSAGES 3 UNSEEN 3)"));

    // Bob's \Seen is not Alice's news; her own from another session is (with its modseq).
    let modseq = |c: &mut Imap<std::net::TcpStream>| -> u64 {
        let line = c.ok(&format!("STATUS {SUPPORT} (HIGHESTMODSEQ)")).lines[0].clone();
        line.rsplit(' ').next().unwrap_or_default().trim_end_matches(')').parse().unwrap_or(0)
    };
    bob.ok("STORE 3 +FLAGS (\\Seen)");
    let r = alice.ok("NOOP");
    assert!(!r.all().contains("FETCH"), "{r:?}");
    let mut alice2 = s.imap_login("alice@example.test");
    alice2.ok(&format!("SELECT {SUPPORT}"));
    let before = modseq(&mut alice2);
    alice.ok("STORE 3 +FLAGS.SILENT (\\Seen)");
    let r = alice2.ok("NOOP");
    assert!(r.lines.iter().any(|l| l.starts_with("* 3 FETCH (") && l.contains("FLAGS (\\Seen)")), "{r:?}");
    let r = alice2.ok(&format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {before})"));
    assert_eq!(r.lines.len(), 1, "only 3 changed since: {r:?}");
    assert!(r.lines[0].contains("UID 3") && r.lines[0].contains("\\Seen"), "{r:?}");
    assert!(modseq(&mut alice2) > before);
    // UNCHANGEDSINCE counts the user's own \Seen change.
    let r = alice2.ok(&format!("STORE 3 (UNCHANGEDSINCE {before}) -FLAGS (\\Seen)"));
    assert!(r.done.starts_with("OK [MODIFIED 3]"), "{r:?}");

    // A replacing STORE: the shared flags replaced, \Seen only Bob's.
    bob.ok("STORE 1 FLAGS (\\Seen \\Answered)");
    alice.ok("NOOP");
    let r = alice.ok("FETCH 1 FLAGS");
    assert_eq!(r.lines, vec!["* 1 FETCH (FLAGS (\\Seen \\Answered \\Recent))"], "her \\Seen, the shared \\Answered");
    assert!(bob.ok("FETCH 1 FLAGS").all().contains("FLAGS (\\Seen \\Answered"), "bob's own \\Seen");
    alice2.ok("UNSELECT");

    // COPY out keeps this user's \Seen; APPEND into it sets only the appender's.
    bob.ok("COPY 1:3 INBOX");
    let r = bob.ok("STATUS INBOX (MESSAGES UNSEEN)");
    assert!(r.lines[0].ends_with("(MESSAGES 3 UNSEEN 1)"), "1 and 3 were seen by Bob: {r:?}");
    assert!(append(&mut bob, SUPPORT, &message("reply draft")).ok());
    let raw = message("seen by bob");
    assert!(bob.run(&format!("APPEND {SUPPORT} (\\Seen) {{{}+}}\r\n{raw}", raw.len())).ok());
    assert!(alice.ok(&status).lines[0].ends_with("(MESSAGES 5 UNSEEN 2)"), "4 and 5 new to Alice");
    assert!(bob.ok(&status).lines[0].ends_with("(MESSAGES 5 UNSEEN 2)"), "2 and 4 unseen by Bob");

    // After a restart each has their own still.
    drop((alice, alice2, bob));
    s.stop();
    s.launch();
    let mut alice = s.imap_login("alice@example.test");
    let mut bob = s.imap_login("bob@example.test");
    alice.ok(&format!("SELECT {SUPPORT}"));
    bob.ok(&format!("SELECT {SUPPORT}"));
    assert_eq!(alice.ok("SEARCH UNSEEN").untagged("SEARCH"), vec!["SEARCH 4 5"]);
    assert_eq!(bob.ok("SEARCH UNSEEN").untagged("SEARCH"), vec!["SEARCH 2 4"]);
    // An expunge by one reader reaches the other.
    alice.ok("STORE 2 +FLAGS.SILENT (\\Deleted)");
    alice.ok("EXPUNGE");
    assert!(bob.ok("NOOP").lines.contains(&"* 2 EXPUNGE".to_string()));
    assert_eq!(bob.ok("SEARCH UNSEEN").untagged("SEARCH"), vec!["SEARCH 3"]);
}
