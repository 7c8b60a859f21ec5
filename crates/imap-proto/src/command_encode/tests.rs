use crate::{encode_command, parse_command};

/// Parses `wire`, encodes the command and parses that again: the same command must come back.
/// Returns the encoding.
fn round_trip(wire: &[u8]) -> String {
    let first = match parse_command(wire) {
        Ok(t) => t,
        Err(e) => panic!("{:?} does not parse: {e:?}", String::from_utf8_lossy(wire)),
    };
    let encoded = encode_command(&first);
    let second = parse_command(&encoded)
        .unwrap_or_else(|e| panic!("encoding {:?} does not parse: {e:?}", String::from_utf8_lossy(&encoded)));
    assert_eq!(
        first,
        second,
        "round trip of {:?} via {:?}",
        String::from_utf8_lossy(wire),
        String::from_utf8_lossy(&encoded)
    );
    String::from_utf8_lossy(&encoded).into_owned()
}

#[test]
fn every_command_survives_the_round_trip() {
    let commands: &[&[u8]] = &[
        b"a1 CAPABILITY",
        b"a NOOP",
        b"a LOGOUT",
        b"a STARTTLS",
        b"a NAMESPACE",
        b"a IDLE",
        b"a CHECK",
        b"a CLOSE",
        b"a UNSELECT",
        b"a AUTHENTICATE plain",
        b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==",
        b"a AUTHENTICATE PLAIN =",
        b"a LOGIN alice \"pa ss\\\"word\"",
        b"a LOGIN {5}\r\nal ce {3}\r\na\r\n",
        b"a LOGIN \"\" \"\"",
        b"a ENABLE condstore UTF8=ACCEPT",
        b"a SELECT INBOX",
        b"a NOTIFY NONE",
        b"a CANCELUPDATE \"A01\" \"x y\"",
        b"a UID SEARCH RETURN (UPDATE COUNT CONTEXT) FLAGGED",
        b"a UID SORT RETURN (UPDATE) (DATE) UTF-8 ALL",
        b"a NOTIFY SET (selected (MessageNew (uid body.peek[header.fields (from to subject)]) MessageExpunge)) (subtree Lists (MessageNew MessageExpunge))",
        b"a NOTIFY SET STATUS (personal (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)) (mailboxes (\"Other Users/b@x/INBOX\" misc) NONE)",
        b"a NOTIFY SET (selected-delayed (MessageNew MessageExpunge)) (inboxes (MessageNew MessageExpunge)) (subscribed (MailboxName Futuristic))",
        b"a EXAMINE \"Sent Items\" (CONDSTORE)",
        b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        b"a SELECT INBOX (CONDSTORE QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))",
        b"a SELECT INBOX (QRESYNC (1 0 (1 2)))",
        b"a CREATE Archive/2024",
        b"a CREATE Junk (USE (\\Junk))",
        b"a DELETE \"a\\\\b\"",
        b"a SUBSCRIBE ~x",
        b"a UNSUBSCRIBE x]y",
        b"a GETQUOTA \"\"",
        b"a GETQUOTAROOT INBOX",
        b"a SETQUOTA \"\" (STORAGE 512)",
        b"a RENAME a \"b c\"",
        b"a LIST \"\" *",
        b"a LIST \"\" \"%\"",
        b"a LSUB \"\" INBOX/%",
        b"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (INBOX \"Sent Items\" %/x)",
        b"a LIST () \"\" x",
        b"a LIST \"\" * RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN SIZE))",
        b"a LIST (SPECIAL-USE REMOTE) \"\" ()",
        b"a STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ APPENDLIMIT MAILBOXID)",
        b"a APPEND INBOX {5}\r\nhello",
        b"a APPEND INBOX (\\Seen $Forwarded) \" 7-Feb-1994 21:52:25 -0800\" {3+}\r\nabc",
        b"a APPEND Drafts \"31-Dec-9999 23:59:60 +0000\" ~{3}\r\na\x00b",
        b"a APPEND Drafts \"01-Jan-0001 00:00:00 +1400\" {0}\r\n",
        b"a EXPUNGE",
        b"a UID EXPUNGE 3:5,*",
        b"a SEARCH ALL",
        b"a SEARCH UNSEEN FROM \"Smith\" SINCE 1-Feb-1994 NOT TO \"x y\"",
        b"a UID SEARCH RETURN (MIN MAX COUNT ALL SAVE) CHARSET UTF-8 (OR SEEN (FLAGGED DRAFT)) $",
        b"a SEARCH RETURN () 1:*",
        b"a SEARCH HEADER X-Spam {4}\r\na\r\nb LARGER 10 SMALLER 99999999999 UID 1,3:*",
        b"a SEARCH KEYWORD $Junk UNKEYWORD \\Seen MODSEQ \"/flags/\\\\draft\" all 620162338",
        b"a SEARCH BEFORE \"31-Feb-2020\" ON 1-Jan-1970 SENTBEFORE 2-mar-2000 SENTON 3-Apr-2001 SENTSINCE 4-May-2002",
        b"a SEARCH EMAILID M123 THREADID T456 BODY \"\" TEXT x CC y BCC z SUBJECT w",
        b"a SEARCH ANSWERED DELETED DRAFT NEW OLD RECENT UNANSWERED UNDELETED UNDRAFT UNFLAGGED",
        b"a FETCH 1:* ALL",
        b"a FETCH 2 FULL",
        b"a FETCH 1,2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)] BODY.PEEK[1.2.MIME]<0.100> UID)",
        b"a UID FETCH 1:* (ENVELOPE INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT BODY BODYSTRUCTURE MODSEQ EMAILID THREADID)",
        b"a FETCH 1 (BODY[] BODY[1.] BODY[TEXT] BODY.PEEK[2.HEADER.FIELDS.NOT (\"x y\" z)] BODY[3.TEXT]<5.6>)",
        b"a FETCH 1 (BINARY[1.2] BINARY.PEEK[]<0.10> BINARY.SIZE[3])",
        b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
        b"a FETCH $ FLAGS (CHANGEDSINCE 1)",
        b"a STORE 1 FLAGS \\Seen",
        b"a UID STORE 1:* (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted $MDNSent)",
        b"a STORE 2 -FLAGS ()",
        b"a COPY 1:3 Archive",
        b"a UID MOVE 4 \"Junk Mail\"",
        b"a ID NIL",
        b"a ID (\"name\" \"mutt\" \"version\" NIL \"x\" {2}\r\n\r\n)",
        b"a SORT (REVERSE ARRIVAL DATE) UTF-8 ALL",
        b"a UID SORT (DISPLAYFROM DISPLAYTO CC TO FROM SIZE SUBJECT) US-ASCII SEEN UNDELETED",
        b"a THREAD REFERENCES UTF-8 ALL",
        b"a UID THREAD ORDEREDSUBJECT \"UTF-8\" (SINCE 1-Jan-2020)",
        b"a COMPRESS deflate",
    ];
    for wire in commands {
        round_trip(wire);
    }
}

#[test]
fn the_encoding_is_what_a_client_would_send() {
    assert_eq!(round_trip(b"a1 login Alice {7}\r\nse cret"), "a1 LOGIN Alice \"se cret\"");
    assert_eq!(round_trip(b"t FETCH 1 FAST"), "t FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)");
    assert_eq!(round_trip(b"t search unseen from x"), "t SEARCH (UNSEEN FROM x)");
    assert_eq!(round_trip(b"t LOGIN a {2+}\r\nx\r").as_str(), "t LOGIN a {2}\r\nx\r", "CR forces a literal");
    assert_eq!(
        round_trip(b"t APPEND INBOX \" 7-Feb-1994 21:52:25 -0800\" {1}\r\nx"),
        "t APPEND INBOX \"07-Feb-1994 21:52:25 -0800\" {1}\r\nx"
    );
    assert_eq!(round_trip(b"t UID EXPUNGE 4:2"), "t UID EXPUNGE 4:2");
    assert_eq!(round_trip(b"t LIST \"\" \"\""), "t LIST \"\" \"\"");
}

#[test]
fn date_times_keep_their_instant_and_zone() {
    // A leap second counts as :59, so the year never changes under the client's feet.
    assert_eq!(
        round_trip(b"a APPEND x \"31-Dec-9999 23:59:60 +0000\" {0}\r\n"),
        "a APPEND x \"31-Dec-9999 23:59:59 +0000\" {0}\r\n"
    );
    assert_eq!(
        round_trip(b"a APPEND x \"30-Feb-2021 10:00:00 +0530\" {0}\r\n"),
        "a APPEND x \"02-Mar-2021 10:00:00 +0530\" {0}\r\n"
    );
    assert!(parse_command(b"a APPEND x \"01-Jan-2021 10:00:00 +0160\" {0}\r\n").is_err(), "zone minutes over 59");
}

proptest::proptest! {
    #[test]
    fn whatever_parses_survives_the_round_trip(
        s in "a (UID )?(FETCH|SEARCH|STORE|LIST|SELECT|STATUS|SORT|THREAD|ID|LOGIN|CREATE) [ -~]{0,80}"
    ) {
        if parse_command(s.as_bytes()).is_ok() {
            round_trip(s.as_bytes());
        }
    }

    #[test]
    fn search_programs_survive_the_round_trip(
        keys in proptest::collection::vec(
            "(ALL|SEEN|NOT|OR|\\(|\\)|FROM \"[a-z ]{0,5}\"|1:\\*|\\$|UID 4|LARGER 7|SINCE 1-Jan-2020|HEADER a b|KEYWORD \\\\Seen)", 1..12)
    ) {
        let wire = format!("a SEARCH {}", keys.join(" "));
        if parse_command(wire.as_bytes()).is_ok() {
            round_trip(wire.as_bytes());
        }
    }
}
