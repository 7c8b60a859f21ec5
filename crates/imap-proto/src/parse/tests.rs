use super::*;

fn ok(s: &str) -> Command {
    match parse_command(s.as_bytes()) {
        Ok(t) => t.command,
        Err(e) => panic!("{s}: {e:?}"),
    }
}

fn bad(s: &str) -> ParseError {
    parse_command(s.as_bytes()).expect_err(s)
}

fn range(a: u32, b: u32) -> SeqRange {
    SeqRange(SeqNumber::Value(a), SeqNumber::Value(b))
}

#[test]
fn simple_commands() {
    assert_eq!(parse_command(b"a1 NOOP").unwrap(), Tagged { tag: "a1".into(), command: Command::Noop });
    assert_eq!(ok("x capability"), Command::Capability);
    assert_eq!(ok("x LOGOUT"), Command::Logout);
    assert_eq!(bad("x NOOP extra").tag.as_deref(), Some("x"));
    assert_eq!(bad("NOOP").tag, None);
    assert_eq!(bad("+ NOOP").tag, None);
    assert!(bad("x FROB").message.contains("unknown command"));
}

#[test]
fn login_with_quoted_atom_and_literal() {
    assert_eq!(ok("a LOGIN alice \"p a\\\"ss\""), Command::Login { user: "alice".into(), password: "p a\"ss".into() });
    assert_eq!(
        ok("a LOGIN {5}\r\nalice {3+}\r\npw\n"),
        Command::Login { user: "alice".into(), password: "pw\n".into() }
    );
    assert!(bad("a LOGIN {9}\r\nalice").message.contains("literal shorter"));
    assert!(bad("a LOGIN \"unterminated").message.contains("unterminated"));
}

#[test]
fn select_with_condstore_and_qresync() {
    assert_eq!(
        ok("a SELECT INBOX"),
        Command::Select { mailbox: "INBOX".into(), read_only: false, condstore: false, qresync: None }
    );
    assert_eq!(
        ok("a EXAMINE \"Sent Items\" (CONDSTORE)"),
        Command::Select { mailbox: "Sent Items".into(), read_only: true, condstore: true, qresync: None }
    );
    let Command::Select { qresync: Some(q), .. } =
        ok("a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))")
    else {
        panic!()
    };
    assert_eq!(q.uid_validity, 67890007);
    assert_eq!(q.mod_seq, 20050715194045000);
    assert!(q.known_uids.unwrap().contains(100, 1000));
    let Command::Select { qresync: Some(q), .. } = ok("a SELECT INBOX (QRESYNC (1 2 1:9 (1,5 10,50)))") else {
        panic!()
    };
    assert!(q.seq_match.is_some());
    let Command::Select { qresync: Some(q), .. } = ok("a SELECT INBOX (QRESYNC (1 2))") else { panic!() };
    assert!(q.known_uids.is_none());
}

#[test]
fn fetch_attributes() {
    let Command::Fetch { uid, set, attrs, .. } = ok(
        "a UID FETCH 1:*,7 (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)]<0.100> BODY[1.2.MIME] BINARY.PEEK[1] BINARY.SIZE[2] RFC822.SIZE)",
    ) else {
        panic!()
    };
    assert!(uid);
    assert_eq!(set, SequenceSet::Ranges(vec![SeqRange(SeqNumber::Value(1), SeqNumber::Last), range(7, 7)]));
    assert_eq!(attrs[0], FetchAttr::Flags);
    assert_eq!(
        attrs[1],
        FetchAttr::BodySection {
            peek: true,
            section: Section {
                part: vec![],
                text: Some(SectionText::HeaderFields(vec!["From".into(), "Subject".into()]))
            },
            partial: Some((0, 100))
        }
    );
    assert_eq!(
        attrs[2],
        FetchAttr::BodySection {
            peek: false,
            section: Section { part: vec![1, 2], text: Some(SectionText::Mime) },
            partial: None
        }
    );
    assert_eq!(attrs[3], FetchAttr::Binary { peek: true, part: vec![1], partial: None });
    assert_eq!(attrs[4], FetchAttr::BinarySize(vec![2]));
    assert_eq!(
        ok("a FETCH 1 ALL"),
        Command::Fetch {
            uid: false,
            set: SequenceSet::Ranges(vec![range(1, 1)]),
            attrs: vec![FetchAttr::Flags, FetchAttr::InternalDate, FetchAttr::Rfc822Size, FetchAttr::Envelope],
            changed_since: None,
            vanished: false,
            partial: None,
        }
    );
    let Command::Fetch { attrs, .. } = ok("a FETCH 1 BODY[]") else { panic!() };
    assert_eq!(attrs, vec![FetchAttr::BodySection { peek: false, section: Section::default(), partial: None }]);
    let Command::Fetch { attrs, .. } = ok("a FETCH 1 (BODY BODYSTRUCTURE BODY[2.TEXT] BODY[3])") else { panic!() };
    assert_eq!(attrs[0], FetchAttr::Body);
    assert_eq!(
        attrs[2],
        FetchAttr::BodySection {
            peek: false,
            section: Section { part: vec![2], text: Some(SectionText::Text) },
            partial: None
        }
    );
    let Command::Fetch { changed_since, vanished, .. } = ok("a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    else {
        panic!()
    };
    assert_eq!((changed_since, vanished), (Some(12345), true));
    assert!(bad("a FETCH 1:* (FLAGS) (VANISHED)").message.contains("VANISHED"));
    assert!(bad("a FETCH 0 FLAGS").message.contains("zero"));
    assert!(bad("a FETCH 1 BODY[MIME]").message.contains("bad section"));
    assert!(bad("a FETCH 1 (FLAGS").message.contains("expected"));
}

#[test]
fn store_copy_move_expunge() {
    assert_eq!(
        ok("a STORE 2:4 +FLAGS.SILENT (\\deleted $Junk)"),
        Command::Store {
            uid: false,
            set: SequenceSet::Ranges(vec![range(2, 4)]),
            mode: StoreMode::Add,
            silent: true,
            flags: vec![Flag("\\Deleted".into()), Flag("$Junk".into())],
            unchanged_since: None
        }
    );
    let Command::Store { unchanged_since, mode, flags, .. } =
        ok("a UID STORE 1 (UNCHANGEDSINCE 5) -FLAGS \\Seen \\Flagged")
    else {
        panic!()
    };
    assert_eq!((unchanged_since, mode, flags.len()), (Some(5), StoreMode::Remove, 2));
    assert!(bad("a STORE 1 +FLAGS (\\Recent)").message.contains("Recent"));
    assert_eq!(
        ok("a UID MOVE 1:3 Trash"),
        Command::Move { uid: true, set: SequenceSet::Ranges(vec![range(1, 3)]), mailbox: "Trash".into() }
    );
    assert_eq!(
        ok("a COPY $ Archive"),
        Command::Copy { uid: false, set: SequenceSet::Saved, mailbox: "Archive".into() }
    );
    assert_eq!(ok("a UID EXPUNGE 4:5"), Command::Expunge { uids: Some(SequenceSet::Ranges(vec![range(4, 5)])) });
    assert_eq!(ok("a EXPUNGE"), Command::Expunge { uids: None });
}

#[test]
fn search_programs() {
    let Command::Search { key, returns, charset, uid } = ok(
        "a UID SEARCH RETURN (MIN COUNT SAVE) CHARSET UTF-8 OR FROM alice (SUBJECT \"hi there\" SINCE 1-Feb-2024) NOT DELETED 1:5 UID 3 HEADER X-Spam yes LARGER 10 MODSEQ 7",
    ) else {
        panic!()
    };
    assert!(uid);
    assert_eq!(charset.as_deref(), Some("UTF-8"));
    assert_eq!(returns, Some(vec![SearchReturn::Min, SearchReturn::Count, SearchReturn::Save]));
    let SearchKey::And(keys) = key else { panic!() };
    assert_eq!(
        keys[0],
        SearchKey::Or(
            Box::new(SearchKey::From("alice".into())),
            Box::new(SearchKey::And(vec![
                SearchKey::Subject("hi there".into()),
                SearchKey::Since(Date { year: 2024, month: 2, day: 1 })
            ]))
        )
    );
    assert_eq!(keys[1], SearchKey::Not(Box::new(SearchKey::Deleted)));
    assert_eq!(keys[2], SearchKey::SequenceSet(SequenceSet::Ranges(vec![range(1, 5)])));
    assert_eq!(keys[4], SearchKey::Header("X-Spam".into(), "yes".into()));
    assert_eq!(keys[6], SearchKey::ModSeq(7));
    assert_eq!(
        ok("a SEARCH BODY {3}\r\nfoo"),
        Command::Search { uid: false, charset: None, key: SearchKey::Body("foo".into()), returns: None }
    );
    assert_eq!(
        ok("a SEARCH ON \"3-Mar-2025\""),
        Command::Search {
            uid: false,
            charset: None,
            key: SearchKey::On(Date { year: 2025, month: 3, day: 3 }),
            returns: None
        }
    );
    assert!(bad("a SEARCH FROBNICATE").message.contains("unknown search key"));
    assert!(bad("a SEARCH SINCE 32-Jan-2020").message.contains("invalid date"));
    let deep = format!("a SEARCH {}ALL{}", "(".repeat(100), ")".repeat(100));
    assert!(bad(&deep).message.contains("nested too deeply"));
    let deep_not = format!("a SEARCH {}ALL", "NOT ".repeat(1000));
    assert!(bad(&deep_not).message.contains("nested too deeply"));
}

#[test]
fn list_variants() {
    assert_eq!(
        ok("a LIST \"\" *"),
        Command::List {
            selection: vec![],
            reference: "".into(),
            patterns: vec!["*".into()],
            returns: vec![],
            lsub: false,
            extended: false
        }
    );
    assert_eq!(
        ok("a LSUB \"\" %"),
        Command::List {
            selection: vec![],
            reference: "".into(),
            patterns: vec!["%".into()],
            returns: vec![],
            lsub: true,
            extended: false
        }
    );
    let Command::List { selection, patterns, returns, extended, .. } = ok(
        "a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (INBOX \"Sent*\" %/%) RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN SIZE))",
    ) else {
        panic!()
    };
    assert!(extended);
    assert_eq!(selection, vec![ListSelect::Subscribed, ListSelect::RecursiveMatch]);
    assert_eq!(patterns, vec!["INBOX", "Sent*", "%/%"]);
    assert_eq!(returns[2], ListReturn::Status(vec![StatusItem::Messages, StatusItem::Unseen, StatusItem::Size]));
    assert!(bad("a LIST (RECURSIVEMATCH) \"\" *").message.contains("RECURSIVEMATCH"));
}

#[test]
fn append_create_status_id_sort_thread_misc() {
    let Command::Append { mailbox, mut messages } =
        ok("a APPEND Drafts (\\Draft) \"17-Jul-1996 02:44:25 -0700\" {6}\r\nhello!")
    else {
        panic!()
    };
    let AppendMessage { flags, date, content: AppendContent::Literal { message, binary: false } } = messages.remove(0)
    else {
        panic!()
    };
    assert_eq!((mailbox.as_str(), flags.len(), message.as_slice()), ("Drafts", 1, &b"hello!"[..]));
    let date = date.unwrap();
    assert_eq!(date.zone_minutes, -420);
    assert_eq!(date.unix, 837_596_665);
    assert!(parse_command(b"a APPEND INBOX \"x\"").is_err(), "APPEND without a literal");
    assert_eq!(
        ok("a APPEND INBOX ~{2}\r\nhi"),
        Command::Append {
            mailbox: "INBOX".into(),
            messages: vec![AppendMessage {
                flags: vec![],
                date: None,
                content: AppendContent::Literal { message: b"hi".to_vec(), binary: true }
            }]
        }
    );
    assert_eq!(
        ok("a CREATE Lists (USE (\\Archive))"),
        Command::Create { mailbox: "Lists".into(), special_use: vec!["\\Archive".into()] }
    );
    assert_eq!(
        ok("a STATUS INBOX (MESSAGES UIDNEXT HIGHESTMODSEQ)"),
        Command::Status {
            mailbox: "INBOX".into(),
            items: vec![StatusItem::Messages, StatusItem::UidNext, StatusItem::HighestModSeq]
        }
    );
    assert_eq!(
        ok("a ID (\"name\" \"mutt\" \"version\" NIL)"),
        Command::Id(vec![("name".into(), Some("mutt".into())), ("version".into(), None)])
    );
    assert_eq!(ok("a ID NIL"), Command::Id(vec![]));
    assert_eq!(ok("a ENABLE CONDSTORE qresync"), Command::Enable(vec!["CONDSTORE".into(), "QRESYNC".into()]));
    assert_eq!(
        ok("a AUTHENTICATE PLAIN AGFsaWNlAHB3"),
        Command::Authenticate { mechanism: "PLAIN".into(), initial: Some("AGFsaWNlAHB3".into()) }
    );
    assert_eq!(ok("a AUTHENTICATE plain"), Command::Authenticate { mechanism: "PLAIN".into(), initial: None });
    let Command::Sort { criteria, key, .. } = ok("a UID SORT (REVERSE DATE SUBJECT) UTF-8 UNSEEN") else { panic!() };
    assert_eq!(
        criteria,
        vec![
            SortCriterion { reverse: true, key: SortKey::Date },
            SortCriterion { reverse: false, key: SortKey::Subject }
        ]
    );
    assert_eq!(key, SearchKey::Unseen);
    assert_eq!(
        ok("a THREAD REFERENCES US-ASCII ALL"),
        Command::Thread {
            uid: false,
            algorithm: ThreadAlgorithm::References,
            charset: "US-ASCII".into(),
            key: SearchKey::All
        }
    );
    assert_eq!(ok("a COMPRESS DEFLATE"), Command::Compress("DEFLATE".into()));
    assert_eq!(ok("a GETQUOTAROOT INBOX"), Command::GetQuotaRoot("INBOX".into()));
    assert_eq!(ok("a SETQUOTA \"\" (STORAGE 512)"), Command::SetQuota("".into()));
    assert_eq!(ok("a RENAME a b"), Command::Rename { from: "a".into(), to: "b".into() });
}

#[test]
fn dates() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2000, 3, 1), 11017);
    assert_eq!(days_from_civil(1969, 12, 31), -1);
}

proptest::proptest! {
    #[test]
    fn never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let _ = parse_command(&data);
    }

    #[test]
    fn never_panics_on_plausible_commands(s in "a (UID )?(FETCH|SEARCH|STORE|LIST|SELECT|APPEND|STATUS|SORT|THREAD|ID) [ -~]{0,80}") {
        let _ = parse_command(s.as_bytes());
    }
}

/// RFC 3502 MULTIAPPEND, RFC 4469 CATENATE, RFC 8508 REPLACE.
#[test]
fn multiappend_catenate_and_replace() {
    let Command::Append { mailbox, messages } =
        ok("a APPEND saved-messages (\\Seen) {5}\r\nhello {5+}\r\nworld (\\Draft) ~{1}\r\nx")
    else {
        panic!()
    };
    assert_eq!(mailbox, "saved-messages");
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1].flags, vec![]);
    assert_eq!(messages[2].content, AppendContent::Literal { message: b"x".to_vec(), binary: true });
    let Command::Append { messages, .. } = ok(
        "a APPEND Drafts (\\Draft) CATENATE (URL \"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER\" TEXT {4}\r\n\r\nhi URL /INBOX/;UID=1)",
    ) else {
        panic!()
    };
    assert_eq!(
        messages[0].content,
        AppendContent::Catenate(vec![
            CatenatePart::Url("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER".into()),
            CatenatePart::Text(b"\r\nhi".to_vec()),
            CatenatePart::Url("/INBOX/;UID=1".into()),
        ])
    );
    assert!(bad("a APPEND INBOX CATENATE ()").message.contains("CATENATE"));
    assert!(bad("a APPEND INBOX").message.contains("message"));
    let Command::Replace { uid: true, target: 7, mailbox, message } = ok("a UID REPLACE 7 Drafts (\\Draft) {2}\r\nhi")
    else {
        panic!()
    };
    assert_eq!((mailbox.as_str(), message.flags.len()), ("Drafts", 1));
    assert!(matches!(ok("a REPLACE 1 INBOX {1}\r\nx"), Command::Replace { uid: false, target: 1, .. }));
    assert!(parse_command(b"a REPLACE 0 INBOX {1}\r\nx").is_err(), "message number zero");
}

/// RFC 9394 PARTIAL, RFC 5267 ESORT, RFC 5032 WITHIN, RFC 8514 SAVEDATE, RFC 8970 PREVIEW.
#[test]
fn partial_esort_within_savedate_preview() {
    let Command::Search { returns, key, .. } = ok("a UID SEARCH RETURN (PARTIAL -1:-100 COUNT) UNDELETED YOUNGER 3600")
    else {
        panic!()
    };
    assert_eq!(
        returns,
        Some(vec![SearchReturn::Partial(PartialRange { from_end: true, low: 1, high: 100 }), SearchReturn::Count])
    );
    assert_eq!(key, SearchKey::And(vec![SearchKey::Undeleted, SearchKey::Younger(3600)]));
    // Either way round.
    let Command::Search { returns, .. } = ok("a SEARCH RETURN (PARTIAL 500:101) ALL") else { panic!() };
    assert_eq!(returns, Some(vec![SearchReturn::Partial(PartialRange { from_end: false, low: 101, high: 500 })]));
    assert!(bad("a SEARCH RETURN (PARTIAL 1:10 ALL) ALL").message.contains("PARTIAL"));
    assert!(parse_command(b"a SEARCH RETURN (PARTIAL 0:10) ALL").is_err());
    assert!(parse_command(b"a SEARCH RETURN (PARTIAL -1:10) ALL").is_err());
    assert!(parse_command(b"a SEARCH OLDER 0").is_err());
    let Command::Sort { returns, criteria, .. } =
        ok("a UID SORT RETURN (MIN COUNT) (DATE) UTF-8 SAVEDSINCE 1-Jan-2024")
    else {
        panic!()
    };
    assert_eq!((returns, criteria.len()), (Some(vec![SearchReturn::Min, SearchReturn::Count]), 1));
    assert!(bad("a SORT RETURN (SAVE) (DATE) UTF-8 ALL").message.contains("SAVE"));
    let Command::Fetch { attrs, partial, .. } = ok("a UID FETCH 1:* (PREVIEW (LAZY) SAVEDATE FLAGS) (PARTIAL -1:-30)")
    else {
        panic!()
    };
    assert_eq!(attrs, vec![FetchAttr::Preview { lazy: true }, FetchAttr::SaveDate, FetchAttr::Flags]);
    assert_eq!(partial, Some(PartialRange { from_end: true, low: 1, high: 30 }));
    let Command::Fetch { attrs, .. } = ok("a FETCH 1 PREVIEW") else { panic!() };
    assert_eq!(attrs, vec![FetchAttr::Preview { lazy: false }]);
    assert!(parse_command(b"a FETCH 1 (PREVIEW (EAGER))").is_err());
}

#[test]
fn partial_windows_count_from_either_end() {
    let w = |from_end, low, high, len| PartialRange { from_end, low, high }.window(len);
    assert_eq!(w(false, 1, 10, 25), 0..10);
    assert_eq!(w(false, 21, 30, 25), 20..25);
    assert_eq!(w(false, 30, 40, 25), 25..25);
    assert_eq!(w(true, 1, 10, 25), 15..25);
    assert_eq!(w(true, 20, 30, 25), 0..6);
    assert_eq!(w(true, 30, 40, 25), 0..0);
}

/// RFC 4314 §3 commands.
#[test]
fn acl_commands() {
    assert_eq!(
        ok("a SETACL INBOX/Drafts Chris +cda"),
        Command::SetAcl {
            mailbox: "INBOX/Drafts".into(),
            identifier: "Chris".into(),
            mode: StoreMode::Add,
            rights: "cda".into()
        }
    );
    assert!(matches!(ok("a SETACL x \"@example.org\" lr"), Command::SetAcl { mode: StoreMode::Replace, .. }));
    assert!(matches!(ok("a SETACL x y -w"), Command::SetAcl { mode: StoreMode::Remove, .. }));
    assert!(matches!(ok("a SETACL x y \"\""), Command::SetAcl { mode: StoreMode::Replace, .. }));
    assert!(parse_command(b"a SETACL x y l(r").is_err());
    assert!(parse_command(b"a SETACL x y").is_err());
    assert_eq!(
        ok("a DELETEACL INBOX Chris"),
        Command::DeleteAcl { mailbox: "INBOX".into(), identifier: "Chris".into() }
    );
    assert_eq!(ok("a GETACL INBOX"), Command::GetAcl("INBOX".into()));
    assert_eq!(ok("a MYRIGHTS INBOX"), Command::MyRights("INBOX".into()));
    assert_eq!(
        ok("a LISTRIGHTS ~/Mail/saved smith"),
        Command::ListRights { mailbox: "~/Mail/saved".into(), identifier: "smith".into() }
    );
}

/// RFC 5464 §4.2 and §4.3, with the RFC's examples.
#[test]
fn metadata_commands() {
    assert_eq!(
        ok("a GETMETADATA \"\" /shared/comment"),
        Command::GetMetadata {
            mailbox: "".into(),
            entries: vec!["/shared/comment".into()],
            max_size: None,
            depth: MetadataDepth::Zero
        }
    );
    let Command::GetMetadata { entries, max_size, depth, .. } =
        ok("a GETMETADATA (MAXSIZE 1024 DEPTH infinity) INBOX (/shared/comment /private/Comment)")
    else {
        panic!()
    };
    assert_eq!((entries.len(), max_size, depth), (2, Some(1024), MetadataDepth::Infinity));
    assert_eq!(entries[1], "/private/comment", "names are case-insensitive");
    // RFC 5465 §3.1's example (errata 2318's form).
    let Command::Notify(Some(set)) = ok(
        "e notify set (selected (MessageNew (uid body.peek[header.fields (from to subject)]) MessageExpunge)) (subtree Lists (MessageNew MessageExpunge)) (mailboxes misc (MessageNew MessageExpunge))",
    ) else {
        panic!()
    };
    assert!(!set.status);
    assert_eq!(set.groups.len(), 3);
    assert_eq!(set.groups[0].filter, NotifyFilter::Selected);
    assert!(matches!(&set.groups[0].events[0], NotifyEvent::MessageNew(a) if a.len() == 2));
    assert_eq!(set.groups[1].filter, NotifyFilter::Subtree(vec!["Lists".into()]));
    assert_eq!(set.groups[2].events, vec![NotifyEvent::MessageNew(vec![]), NotifyEvent::MessageExpunge]);
    assert_eq!(ok("a NOTIFY NONE"), Command::Notify(None));
    assert_eq!(
        ok("a SETMETADATA INBOX (/private/comment {10}\r\nMy comment /shared/comment NIL /shared/x \"y\")"),
        Command::SetMetadata {
            mailbox: "INBOX".into(),
            entries: vec![
                ("/private/comment".into(), Some(b"My comment".to_vec())),
                ("/shared/comment".into(), None),
                ("/shared/x".into(), Some(b"y".to_vec())),
            ]
        }
    );
    for bad in [
        "a GETMETADATA INBOX /other/comment",
        "a GETMETADATA INBOX /shared/*",
        "a GETMETADATA INBOX /shared//x",
        "a GETMETADATA INBOX /shared/x/",
        "a GETMETADATA (DEPTH 2) INBOX /shared/x",
        "a SETMETADATA INBOX ()",
        "a SETMETADATA INBOX (/shared/x)",
        "a NOTIFY",
        "a NOTIFY SET",
        "a NOTIFY SET (bogus (MessageNew))",
        "a NOTIFY SET (selected ())",
        "a NOTIFY SET (subtree () (MessageNew))",
        "a NOTIFY SET (personal MessageNew)",
        "a NOTIFY NONE extra",
    ] {
        assert!(parse_command(bad.as_bytes()).is_err(), "{bad}");
    }
}
