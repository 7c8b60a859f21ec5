//! The newer IMAP extensions through the wire against the real binary: WITHIN (RFC 5032),
//! PARTIAL (RFC 9394), ESORT (RFC 5267), SAVEDATE (RFC 8514), PREVIEW (RFC 8970),
//! MULTIAPPEND (RFC 3502), CATENATE (RFC 4469), REPLACE (RFC 8508), UIDONLY (RFC 9586) and
//! INPROGRESS (RFC 9585), NOTIFY (RFC 5465) and CONTEXT (RFC 5267), each as advertised.

mod common;

use common::*;

fn message(subject: &str, body: &str) -> String {
    format!("From: a@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\n{body}\r\n")
}

/// APPENDs `raw` to `mailbox` with an optional internal date; the new UID.
fn append(c: &mut Imap<std::net::TcpStream>, mailbox: &str, date: Option<&str>, raw: &str) -> u32 {
    let date = date.map(|d| format!("\"{d}\" ")).unwrap_or_default();
    let r = c.run(&format!("APPEND {mailbox} {date}{{{}+}}\r\n{raw}", raw.len()));
    assert!(r.done.starts_with("OK [APPENDUID "), "{r:?}");
    r.done.split(' ').nth(3).and_then(|u| u.trim_end_matches(']').parse().ok()).expect("APPENDUID")
}

/// Today (UTC) in `format` (see date(1)).
fn today(format: &str) -> String {
    let out = std::process::Command::new("date").args(["-u", format]).output().expect("date");
    String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string()
}

/// The one ESEARCH response of a command, without its `(TAG "...") ` correlator.
fn esearch(r: &ImapReply) -> String {
    let lines = r.untagged("ESEARCH");
    assert_eq!(lines.len(), 1, "{r:?}");
    let rest = lines[0].strip_prefix("ESEARCH (TAG \"").expect("tagged ESEARCH");
    rest.split_once(')').map(|(_, tail)| tail.trim_start().to_string()).unwrap_or_default()
}

#[test]
fn capabilities_name_each_extension() {
    let s = TestServer::started("");
    let mut c = s.imap_login("alice@example.test");
    let caps = c.ok("CAPABILITY").untagged("CAPABILITY")[0].to_string();
    for cap in [
        "WITHIN",
        "SAVEDATE",
        "PREVIEW",
        "ESORT",
        "PARTIAL",
        "MULTIAPPEND",
        "CATENATE",
        "REPLACE",
        "UIDONLY",
        "INPROGRESS",
        "NOTIFY",
        "CONTEXT=SEARCH",
        "CONTEXT=SORT",
    ] {
        assert!(caps.split(' ').any(|c| c == cap), "{cap} missing: {caps}");
    }
}

#[test]
fn within_partial_and_esort() {
    let s = TestServer::started("");
    let mut c = s.imap_login("alice@example.test");
    // Ten old messages (2020), twenty new ones; subjects s01..s30.
    for i in 1..=30 {
        let date = (i <= 10).then_some("01-Feb-2020 10:00:00 +0000");
        let uid = append(&mut c, "INBOX", date, &message(&format!("s{i:02}"), &format!("body {i}")));
        assert_eq!(uid, i);
    }
    c.ok("SELECT INBOX");
    // RFC 5032.
    assert_eq!(c.ok("UID SEARCH OLDER 3600").untagged("SEARCH"), vec!["SEARCH 1 2 3 4 5 6 7 8 9 10"]);
    let young = c.ok("SEARCH YOUNGER 3600").untagged("SEARCH")[0].to_string();
    assert!(young.starts_with("SEARCH 11 12 ") && young.ends_with(" 30"), "{young}");
    assert_eq!(esearch(&c.ok("SEARCH RETURN (COUNT) NOT YOUNGER 3600")), "COUNT 10");
    assert!(c.run("SEARCH OLDER 0").done.starts_with("BAD"), "the interval is a non-zero number");
    // RFC 9394: the first five, the last three (with the total), a window past the end.
    let r = c.ok("UID SEARCH RETURN (PARTIAL 1:5) ALL");
    assert_eq!(esearch(&r), "UID PARTIAL (1:5 1:5)");
    let r = c.ok("UID SEARCH RETURN (PARTIAL -1:-3 COUNT) YOUNGER 3600");
    assert_eq!(esearch(&r), "UID PARTIAL (-1:-3 28:30) COUNT 20");
    let r = c.ok("SEARCH RETURN (PARTIAL 41:50) ALL");
    assert_eq!(esearch(&r), "PARTIAL (41:50 NIL)");
    // Either way round; the window is of the matches (old ones: UIDs 1-10).
    let r = c.ok("UID SEARCH RETURN (PARTIAL 4:2) OLDER 3600");
    assert_eq!(esearch(&r), "UID PARTIAL (2:4 2:4)");
    assert!(c.run("SEARCH RETURN (PARTIAL 1:5 ALL) ALL").done.starts_with("BAD"), "PARTIAL with ALL");
    assert!(c.run("SEARCH RETURN (PARTIAL 0:5) ALL").done.starts_with("BAD"), "position zero");
    // PARTIAL with SAVE saves the window.
    c.ok("UID SEARCH RETURN (SAVE PARTIAL -1:-2) ALL");
    let r = c.ok("UID FETCH $ (FLAGS)");
    let uids: Vec<_> = r.untagged("").iter().map(|l| l.split(' ').next().unwrap_or_default().to_string()).collect();
    assert_eq!(uids, vec!["29", "30"], "{r:?}");
    // The FETCH modifier: the last two of the set, then the 3rd-4th of 11:20.
    let r = c.ok("UID FETCH 1:* (FLAGS) (PARTIAL -1:-2)");
    assert_eq!(r.lines.len(), 2, "{r:?}");
    assert!(r.lines[0].starts_with("* 29 FETCH (UID 29 ") && r.lines[1].starts_with("* 30 FETCH (UID 30 "), "{r:?}");
    let r = c.ok("UID FETCH 11:20 (UID) (PARTIAL 3:4)");
    assert_eq!(r.lines, vec!["* 13 FETCH (UID 13)", "* 14 FETCH (UID 14)"]);
    // RFC 5267 ESORT: the answer in sort order; MIN and MAX are the first and last sorted.
    let r = c.ok("UID SORT RETURN (MIN MAX COUNT) (REVERSE SUBJECT) UTF-8 OLDER 3600");
    assert_eq!(esearch(&r), "UID MIN 10 MAX 1 COUNT 10");
    let r = c.ok("SORT RETURN (ALL) (REVERSE ARRIVAL) UTF-8 UID 1:4,20");
    // 1-4 arrived together: RFC 5256 §3 breaks ties by sequence number, not reversed.
    assert_eq!(esearch(&r), "ALL 20,1:4");
    let r = c.ok("UID SORT RETURN (PARTIAL 1:3) (REVERSE SUBJECT) UTF-8 ALL");
    assert_eq!(esearch(&r), "UID PARTIAL (1:3 30,29,28)");
    let r = c.ok("SORT RETURN () (SUBJECT) UTF-8 UID 5:7");
    assert_eq!(esearch(&r), "ALL 5:7");
    assert!(c.run("SORT RETURN (SAVE) (SUBJECT) UTF-8 ALL").done.starts_with("BAD"));
    // A plain SORT still answers SORT.
    assert_eq!(c.ok("SORT (SUBJECT) UTF-8 UID 1:3").untagged("SORT"), vec!["SORT 1 2 3"]);
}

#[test]
fn savedate_is_when_the_message_reached_the_mailbox() {
    let mut s = TestServer::started("");
    let mut c = s.imap_login("alice@example.test");
    append(&mut c, "INBOX", Some("01-Feb-2020 10:00:00 +0000"), &message("old", "from 2020"));
    c.ok("SELECT INBOX");
    let r = c.ok("FETCH 1 (INTERNALDATE SAVEDATE)");
    let line = r.untagged("1 FETCH")[0].to_string();
    assert!(line.contains("INTERNALDATE \"01-Feb-2020 10:00:00 +0000\""), "{line}");
    // A date-time's day is two digits (RFC 9051 `date-day-fixed`).
    let shown = format!("SAVEDATE \"{}", today("+%d-%b-%Y"));
    assert!(line.contains(&shown), "{line}, wanted {shown}");
    let today = today("+%-d-%b-%Y");
    assert_eq!(c.ok(&format!("SEARCH SAVEDON {today}")).untagged("SEARCH"), vec!["SEARCH 1"]);
    assert_eq!(c.ok(&format!("SEARCH SAVEDSINCE {today}")).untagged("SEARCH"), vec!["SEARCH 1"]);
    assert_eq!(c.ok("SEARCH SAVEDBEFORE 1-Jan-2021").untagged("SEARCH"), vec!["SEARCH"]);
    assert_eq!(c.ok("SEARCH ON 1-Feb-2020").untagged("SEARCH"), vec!["SEARCH 1"]);
    assert_eq!(c.ok("SEARCH SAVEDATESUPPORTED").untagged("SEARCH"), vec!["SEARCH 1"]);
    // A copy is saved when it is made; its internal date stays.
    c.ok("COPY 1 Archive");
    c.ok("SELECT Archive");
    let line = c.ok("FETCH 1 (INTERNALDATE SAVEDATE)").untagged("1 FETCH")[0].to_string();
    assert!(line.contains("INTERNALDATE \"01-Feb-2020"), "{line}");
    assert_eq!(c.ok(&format!("SEARCH SAVEDON {today}")).untagged("SEARCH"), vec!["SEARCH 1"]);
    // And after a restart.
    drop(c);
    s.stop();
    s.launch();
    let mut c = s.imap_login("alice@example.test");
    c.ok("SELECT Archive");
    assert_eq!(c.ok(&format!("SEARCH SAVEDON {today}")).untagged("SEARCH"), vec!["SEARCH 1"]);
}

#[test]
fn preview_comes_from_the_first_text_part() {
    let s = TestServer::started("");
    let multipart = "From: a@remote.test\r\nTo: alice@example.test\r\nSubject: photo\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe,\r\n\r\n  anbei das Foto.\r\n--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n";
    s.deliver("alice@example.test", multipart.as_bytes());
    let html = "From: a@remote.test\r\nTo: alice@example.test\r\nSubject: news\r\nContent-Type: text/html\r\n\r\n<html><style>p{color:red}</style><p>Big &amp; bold</p> news</html>\r\n";
    s.deliver("alice@example.test", html.as_bytes());
    let image = "From: a@remote.test\r\nTo: alice@example.test\r\nSubject: only an image\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n";
    s.deliver("alice@example.test", image.as_bytes());
    let mut c = s.imap_login("alice@example.test");
    c.ok("SELECT INBOX");
    let r = c.ok("FETCH 1:3 (PREVIEW)");
    // Not UTF-8 enabled: the non-ASCII preview is a literal.
    assert_eq!(r.lines[0], "* 1 FETCH (PREVIEW {24}\r\nGrüße, anbei das Foto.)", "{r:?}");
    assert_eq!(r.lines[1], "* 2 FETCH (PREVIEW \"Big & bold news\")");
    // No text: an empty preview (RFC 8970 §3.1), not NIL.
    assert_eq!(r.lines[2], "* 3 FETCH (PREVIEW \"\")");
    let r = c.ok("UID FETCH 2 (PREVIEW (LAZY) FLAGS)");
    assert_eq!(r.lines, vec!["* 2 FETCH (UID 2 PREVIEW \"Big & bold news\" FLAGS (\\Recent))"]);
    // Reading the preview does not set \Seen.
    assert_eq!(c.ok("SEARCH UNSEEN").untagged("SEARCH"), vec!["SEARCH 1 2 3"]);
    c.ok("UNSELECT");
    c.ok("ENABLE UTF8=ACCEPT");
    c.ok("SELECT INBOX");
    assert_eq!(c.ok("FETCH 1 PREVIEW").lines, vec!["* 1 FETCH (PREVIEW \"Grüße, anbei das Foto.\")"]);
    assert!(c.run("FETCH 1 (PREVIEW (EAGER))").done.starts_with("BAD"));
}

/// The UIDs and flags of a mailbox, and its message count.
fn listing(c: &mut Imap<std::net::TcpStream>, mailbox: &str) -> Vec<String> {
    c.ok(&format!("EXAMINE {mailbox}"));
    let r = c.ok("FETCH 1:* (UID FLAGS)");
    c.ok("UNSELECT");
    r.untagged("").iter().map(|l| l.to_string()).collect()
}

#[test]
fn multiappend_stores_all_messages_or_none() {
    let mut s = TestServer::started("");
    let mut c = s.imap_login("alice@example.test");
    // RFC 3502 §6, with synchronising literals: one continuation per message.
    let (m1, m2) = (message("first", "one"), message("second", "two"));
    let tag = c.tag();
    c.send_line(&format!("{tag} APPEND Drafts (\\Seen) {{{}}}", m1.len()));
    assert!(c.line().starts_with("+ "));
    c.send(m1.as_bytes());
    c.send_line(&format!(" (\\Draft $Todo) \" 7-Feb-1994 22:43:04 -0800\" {{{}}}", m2.len()));
    assert!(c.line().starts_with("+ "));
    c.send(m2.as_bytes());
    c.send_line("");
    let r = c.finish(&tag);
    let uid_validity = r.done.split(' ').nth(2).unwrap_or_default().to_string();
    assert_eq!(r.done, format!("OK [APPENDUID {uid_validity} 1:2] APPEND completed"));
    // And with LITERAL+: three more.
    let m3 = message("third", "three");
    let r = c.run(&format!("APPEND Drafts {{{l}+}}\r\n{m3} {{{l}+}}\r\n{m3} () {{{l}+}}\r\n{m3}", l = m3.len()));
    assert_eq!(r.done, format!("OK [APPENDUID {uid_validity} 3:5] APPEND completed"));
    c.ok("SELECT Drafts");
    let f = c.ok("FETCH 1:2 (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])").all();
    assert!(f.contains("FLAGS (\\Seen \\Recent)") && f.contains("Subject: first"), "{f}");
    assert!(
        f.contains("FLAGS (\\Draft $Todo \\Recent)") && f.contains("INTERNALDATE \"08-Feb-1994 06:43:04 +0000\""),
        "{f}"
    );
    c.ok("UNSELECT");
    // A bad flag on the last message, a missing mailbox: nothing stored.
    let r = c.run(&format!("APPEND Drafts {{{l}+}}\r\n{m3} (\\Bogus) {{{l}+}}\r\n{m3}", l = m3.len()));
    assert!(r.done.starts_with("BAD"), "{r:?}");
    let r = c.run(&format!("APPEND Nowhere {{{l}+}}\r\n{m3} {{{l}+}}\r\n{m3}", l = m3.len()));
    assert!(r.done.starts_with("NO [TRYCREATE]"), "{r:?}");
    assert_eq!(listing(&mut c, "Drafts").len(), 5);
    // Over the quota with the third message of three: none of them is stored.
    s.ok(&["user", "quota", "alice@example.test", "100000"]);
    let big = format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(40_000));
    let r = c.run(&format!("APPEND INBOX {{{l}+}}\r\n{big} {{{l}+}}\r\n{big} {{{l}+}}\r\n{big}", l = big.len()));
    assert!(r.done.starts_with("NO [OVERQUOTA]"), "{r:?}");
    assert_eq!(listing(&mut c, "INBOX").len(), 0);
    let r = c.run(&format!("APPEND INBOX {{{l}+}}\r\n{big} {{{l}+}}\r\n{big}", l = big.len()));
    assert!(r.ok(), "two fit: {r:?}");
    // Durable: after kill -9 the five drafts and two big ones are there.
    drop(c);
    s.kill9();
    s.launch();
    let mut c = s.imap_login("alice@example.test");
    assert_eq!((listing(&mut c, "Drafts").len(), listing(&mut c, "INBOX").len()), (5, 2));
}

#[test]
fn catenate_builds_a_message_from_stored_parts() {
    let s = TestServer::started("");
    let mut c = s.imap_login("alice@example.test");
    let b = "--------------030308070208000400050907";
    let draft = format!(
        "From: alice@example.test\r\nSubject: draft with attachment\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\nContent-Type: text/plain\r\n\r\nThe text.\r\n--{b}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n--{b}--\r\n"
    );
    let uid = append(&mut c, "Drafts", None, &draft);
    let forwarded = message("forwarded", "old message");
    let fwd = append(&mut c, "INBOX", None, &forwarded);
    c.ok("EXAMINE Drafts");
    let v = c.ok("STATUS Drafts (UIDVALIDITY)").untagged("STATUS")[0].to_string();
    let v: String = v.rsplit(' ').next().unwrap_or_default().trim_end_matches(')').to_string();
    c.ok("UNSELECT");
    // RFC 4469 §6's shape: the draft's header, a new text part, its attachment, a message.
    let text1 = format!("\r\n--{b}\r\nContent-Type: text/plain\r\n\r\nNew text.\r\n--{b}\r\n");
    let text2 = format!("\r\n--{b}\r\nContent-Type: message/rfc822\r\n\r\n");
    let text3 = format!("\r\n--{b}--\r\n");
    let r = c.run(&format!(
        "APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL \"/Drafts;UIDVALIDITY={v}/;UID={uid}/;section=HEADER\" TEXT {{{}+}}\r\n{text1} URL \"/Drafts;UIDVALIDITY={v}/;UID={uid}/;section=2.MIME\" URL \"/Drafts;UIDVALIDITY={v}/;UID={uid}/;section=2\" TEXT {{{}+}}\r\n{text2} URL \"/inbox/;UID={fwd}\" TEXT {{{}+}}\r\n{text3})",
        text1.len(),
        text2.len(),
        text3.len()
    ));
    assert!(r.done.starts_with("OK [APPENDUID "), "{r:?}");
    let header_end = draft.find("\r\n\r\n").unwrap() + 4;
    let expected = format!(
        "{}{text1}Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD{text2}{forwarded}{text3}",
        &draft[..header_end]
    );
    c.ok("SELECT Drafts");
    let (literals, done) = c.literals("UID FETCH 2 BODY.PEEK[]");
    assert!(done.starts_with("OK"), "{done}");
    assert_eq!(String::from_utf8_lossy(&literals[0].1), expected);
    let structure = c.ok("UID FETCH 2 BODYSTRUCTURE").all();
    assert!(structure.to_ascii_lowercase().contains("(\"message\" \"rfc822\""), "{structure}");
    // URLs that name nothing: nothing is stored.
    for url in [
        "/Drafts/;UID=99".to_string(),
        format!("/Drafts;UIDVALIDITY=1/;UID={uid}"),
        "/Nowhere/;UID=1".into(),
        "/Drafts/;UID=1/;section=7".into(),
        "/Drafts/;UID=1/;URLAUTH=x".into(),
    ] {
        let r = c.run(&format!("APPEND Drafts CATENATE (TEXT {{2+}}\r\nhi URL \"{url}\")"));
        assert!(r.done.starts_with(&format!("NO [BADURL {url}]")), "{url}: {r:?}");
    }
    assert!(c.run("APPEND Drafts CATENATE ()").done.starts_with("BAD"));
    assert_eq!(c.ok("UID SEARCH ALL").untagged("SEARCH"), vec!["SEARCH 1 2"]);
    // With MULTIAPPEND: a plain message and a catenated one together.
    let r = c.run(&format!(
        "APPEND Drafts {{{l}+}}\r\n{forwarded} CATENATE (URL \"/INBOX/;UID={fwd}\")",
        l = forwarded.len()
    ));
    assert!(r.done.contains(" 3:4] "), "{r:?}");
    let (literals, _) = c.literals("UID FETCH 4 BODY.PEEK[]");
    assert_eq!(String::from_utf8_lossy(&literals[0].1), forwarded);
}

#[test]
fn replace_stores_the_new_message_and_expunges_the_old_one() {
    let s = TestServer::started("");
    let mut c = s.imap_login("alice@example.test");
    for i in 1..=3 {
        append(&mut c, "Drafts", None, &message(&format!("draft {i}"), "v1"));
    }
    c.ok("SELECT Drafts");
    // RFC 8508 §3.3: APPENDUID untagged, then the old message's expunge.
    let v2 = message("draft 2", "v2");
    let r = c.run(&format!("REPLACE 2 Drafts (\\Seen \\Draft) {{{}+}}\r\n{v2}", v2.len()));
    assert!(r.ok(), "{r:?}");
    let appenduid = r.lines.iter().position(|l| l.starts_with("* OK [APPENDUID ") && l.contains(" 4] "));
    let expunge = r.lines.iter().position(|l| l == "* 2 EXPUNGE");
    assert!(appenduid.is_some() && expunge.is_some() && appenduid < expunge, "{r:?}");
    assert!(r.lines.contains(&"* 3 EXISTS".to_string()), "{r:?}");
    let f = c.ok("UID FETCH 1:* (FLAGS BODY.PEEK[TEXT])").all();
    assert!(f.contains("* 3 FETCH (UID 4 FLAGS (\\Seen \\Draft \\Recent) BODY[TEXT] {4}\r\nv2\r\n)"), "{f}");
    assert_eq!(c.ok("UID SEARCH ALL").untagged("SEARCH"), vec!["SEARCH 1 3 4"]);
    // UID REPLACE into another mailbox, seen with QRESYNC: VANISHED.
    c.ok("UNSELECT");
    c.ok("ENABLE QRESYNC");
    c.ok("SELECT Drafts");
    let r = c.run(&format!("UID REPLACE 3 Archive {{{}+}}\r\n{v2}", v2.len()));
    assert!(r.ok() && r.lines.contains(&"* VANISHED 3".to_string()), "{r:?}");
    assert!(r.lines[0].starts_with("* OK [APPENDUID ") && r.lines[0].contains(" 1] "), "{r:?}");
    assert_eq!(c.ok("UID SEARCH ALL").untagged("SEARCH"), vec!["SEARCH 1 4"]);
    // What cannot be replaced.
    let r = c.run(&format!("UID REPLACE 99 Drafts {{{}+}}\r\n{v2}", v2.len()));
    assert!(r.done.starts_with("NO"), "{r:?}");
    let r = c.run(&format!("REPLACE 9 Drafts {{{}+}}\r\n{v2}", v2.len()));
    assert!(r.done.starts_with("BAD"), "{r:?}");
    let r = c.run(&format!("REPLACE 1 Nowhere {{{}+}}\r\n{v2}", v2.len()));
    assert!(r.done.starts_with("NO [TRYCREATE]"), "{r:?}");
    c.ok("EXAMINE Drafts");
    let r = c.run(&format!("REPLACE 1 Drafts {{{}+}}\r\n{v2}", v2.len()));
    assert!(r.done.starts_with("NO [READ-ONLY]"), "{r:?}");
    c.ok("UNSELECT");
    assert!(c.run(&format!("REPLACE 1 Drafts {{{}+}}\r\n{v2}", v2.len())).done.starts_with("BAD"), "not selected");
    assert_eq!(listing(&mut c, "Drafts").len(), 2);
    assert_eq!(listing(&mut c, "Archive").len(), 1);
}

#[test]
fn uidonly_names_messages_by_uid_alone() {
    let s = TestServer::started("");
    let mut c = s.imap_login("alice@example.test");
    for i in 1..=3 {
        append(&mut c, "INBOX", None, &message(&format!("m{i}"), "x"));
    }
    assert_eq!(c.ok("ENABLE UIDONLY").untagged("ENABLED"), vec!["ENABLED UIDONLY"]);
    c.ok("SELECT INBOX");
    // RFC 9586 §3: every use of a message number is refused.
    for command in [
        "FETCH 1 FLAGS",
        "STORE 1 +FLAGS (\\Seen)",
        "SEARCH ALL",
        "COPY 1 Archive",
        "MOVE 1 Archive",
        "SORT (SUBJECT) UTF-8 ALL",
        "THREAD REFERENCES UTF-8 ALL",
        "UID SEARCH 1:2",
        "UID SEARCH OR SEEN NOT 3",
    ] {
        let r = c.run(command);
        assert!(r.done.starts_with("BAD [UIDREQUIRED]"), "{command}: {r:?}");
    }
    assert_eq!(c.ok("UID SEARCH UID 2:3").untagged("SEARCH"), vec!["SEARCH 2 3"]);
    // FETCH responses become UIDFETCH, numbered by UID.
    let r = c.ok("UID FETCH 1:* (FLAGS)");
    assert_eq!(
        r.lines,
        vec![
            "* 1 UIDFETCH (UID 1 FLAGS (\\Recent))",
            "* 2 UIDFETCH (UID 2 FLAGS (\\Recent))",
            "* 3 UIDFETCH (UID 3 FLAGS (\\Recent))"
        ]
    );
    let r = c.ok("UID STORE 2 +FLAGS (\\Flagged)");
    assert_eq!(r.lines, vec!["* 2 UIDFETCH (FLAGS (\\Flagged \\Recent) UID 2)"]);
    // Another session's expunge and flag change: VANISHED and UIDFETCH, never EXPUNGE.
    let mut other = s.imap_login("alice@example.test");
    other.ok("SELECT INBOX");
    other.ok("UID STORE 1 +FLAGS.SILENT (\\Deleted)");
    other.ok("UID STORE 3 +FLAGS.SILENT (\\Seen)");
    other.ok("UID EXPUNGE 1");
    let r = c.ok("NOOP");
    assert!(r.lines.contains(&"* VANISHED 1".to_string()), "{r:?}");
    assert!(r.lines.iter().any(|l| l.starts_with("* 3 UIDFETCH (UID 3 FLAGS (\\Seen")), "{r:?}");
    assert!(!r.lines.iter().any(|l| l.ends_with(" EXPUNGE") || l.contains(" FETCH ")), "{r:?}");
    c.ok("UID STORE 3 +FLAGS.SILENT (\\Deleted)");
    let r = c.ok("UID EXPUNGE 3");
    assert_eq!(r.lines, vec!["* VANISHED 3"]);
    assert_eq!(c.ok("UID SEARCH ALL").untagged("SEARCH"), vec!["SEARCH 2"]);
    // The other session, without UIDONLY, still gets numbers.
    let r = other.ok("NOOP");
    assert!(r.lines.contains(&"* 2 EXPUNGE".to_string()), "{r:?}");
}

#[test]
fn long_commands_report_progress() {
    let s = TestServer::started("[imap]\nprogress_interval_ms = 1\n");
    let mut c = s.imap_login("alice@example.test");
    let m = message("many", "the same text");
    for _ in 0..3 {
        let mut command = String::from("APPEND INBOX");
        for _ in 0..1000 {
            command.push_str(&format!(" {{{}+}}\r\n{m}", m.len()));
        }
        let r = c.run(&command);
        assert!(r.ok(), "{r:?}");
    }
    c.ok("SELECT INBOX");
    // RFC 9585: untagged OK [INPROGRESS ("tag" done goal)] while it runs, the answer after.
    let tag = c.tag();
    c.send_line(&format!("{tag} UID SEARCH HEADER X-Absent nothing"));
    let r = c.finish(&tag);
    assert!(r.ok(), "{r:?}");
    let progress: Vec<(usize, usize)> = r
        .untagged(&format!("OK [INPROGRESS (\"{tag}\" "))
        .iter()
        .filter_map(|l| {
            let numbers = l.split(&format!("\"{tag}\" ")).nth(1)?.split(')').next()?;
            let (done, goal) = numbers.split_once(' ')?;
            Some((done.parse().ok()?, goal.parse().ok()?))
        })
        .collect();
    assert!(!progress.is_empty(), "{:?}", &r.lines[..r.lines.len().min(5)]);
    assert!(progress.iter().all(|&(done, goal)| goal == 3000 && done <= goal), "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0].0 <= w[1].0), "progress goes forward: {progress:?}");
    assert_eq!(r.lines.last().map(String::as_str), Some("* SEARCH"));
    // FETCH: progress between the responses, counted in messages of the set.
    let tag = c.tag();
    c.send_line(&format!("{tag} FETCH 1:* (BODY.PEEK[])"));
    let r = c.finish(&tag);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.untagged("").iter().filter(|l| l.contains(" FETCH (BODY[]")).count(), 3000);
    assert!(r.untagged(&format!("OK [INPROGRESS (\"{tag}\" ")).iter().all(|l| l.contains(" 3000)] ")), "{r:?}");
    assert!(!r.untagged(&format!("OK [INPROGRESS (\"{tag}\" ")).is_empty());
}

/// RFC 5464 with its own examples: mailbox and server annotations, DEPTH, MAXSIZE, limits,
/// private entries per user on a shared mailbox, modseq changes.
#[test]
fn metadata_on_mailboxes_and_the_server() {
    let s = TestServer::started("");
    let mut c = s.imap_login("alice@example.test");
    let caps = c.ok("CAPABILITY").untagged("CAPABILITY")[0].to_string();
    assert!(caps.contains(" METADATA ") && caps.contains(" METADATA-SERVER"), "{caps}");
    // RFC 5464 §4.3's example, and §4.2's.
    c.ok("SETMETADATA INBOX (/private/comment {10}\r\nMy comment)");
    let r = c.ok("GETMETADATA INBOX /private/comment");
    assert_eq!(r.lines, vec!["* METADATA INBOX (\"/private/comment\" \"My comment\")"]);
    let r = c.ok("GETMETADATA \"\" /shared/admin");
    assert!(r.lines[0].starts_with("* METADATA \"\" (\"/shared/admin\" \"mailto:postmaster@"), "{r:?}");
    assert!(c.run("SETMETADATA \"\" (/shared/comment \"x\")").done.starts_with("NO [NOPERM]"));
    c.ok("SETMETADATA \"\" (/private/vendor/tern/theme \"dark\")");
    assert_eq!(
        c.ok("GETMETADATA \"\" /private/vendor/tern/theme").lines,
        vec!["* METADATA \"\" (\"/private/vendor/tern/theme\" \"dark\")"]
    );
    // A missing entry is NIL; NIL removes one.
    assert_eq!(
        c.ok("GETMETADATA INBOX (/shared/comment /private/comment)").lines,
        vec!["* METADATA INBOX (\"/shared/comment\" NIL \"/private/comment\" \"My comment\")"]
    );
    // DEPTH.
    c.ok("SETMETADATA INBOX (/private/vendor/a \"1\" /private/vendor/a/b \"2\" /private/vendor/c \"3\")");
    let r = c.ok("GETMETADATA (DEPTH 1) INBOX /private/vendor");
    assert_eq!(r.lines, vec!["* METADATA INBOX (\"/private/vendor/a\" \"1\" \"/private/vendor/c\" \"3\")"]);
    let r = c.ok("GETMETADATA (DEPTH infinity) INBOX /private/vendor");
    assert!(r.lines[0].contains("\"/private/vendor/a/b\" \"2\""), "{r:?}");
    // MAXSIZE: what is longer is left out and the longest size said.
    let r = c.ok("GETMETADATA (MAXSIZE 5) INBOX (/private/comment /private/vendor/a)");
    assert_eq!(r.lines, vec!["* METADATA INBOX (\"/private/vendor/a\" \"1\")"]);
    assert_eq!(r.done, "OK [METADATA LONGENTRIES 10] GETMETADATA completed");
    // Binary values round-trip as literal8.
    c.ok("SETMETADATA INBOX (/private/vendor/bin ~{3}\r\na\0b)");
    let (literals, _) = c.literals("GETMETADATA INBOX /private/vendor/bin");
    assert_eq!(literals[0].1, b"a\0b");
    c.ok("SETMETADATA INBOX (/private/comment NIL)");
    assert_eq!(c.ok("GETMETADATA INBOX /private/comment").lines, vec!["* METADATA INBOX (\"/private/comment\" NIL)"]);
    // Limits.
    let big = "x".repeat(40_000);
    let r = c.run(&format!("SETMETADATA INBOX (/private/big {{{}+}}\r\n{big})", big.len()));
    assert_eq!(r.done, "NO [METADATA MAXSIZE 32768] Annotation too large");
    let many: Vec<String> = (0..101).map(|i| format!("/private/n{i} \"v\"")).collect();
    let r = c.run(&format!("SETMETADATA Archive ({})", many.join(" ")));
    assert!(r.done.starts_with("NO [METADATA TOOMANY]"), "{r:?}");
    assert_eq!(c.ok("GETMETADATA Archive /private/n1").lines, vec!["* METADATA Archive (\"/private/n1\" NIL)"]);
    assert!(c.run("GETMETADATA Nowhere /private/comment").done.starts_with("NO [NONEXISTENT]"));
    assert!(c.run("GETMETADATA INBOX /other/x").done.starts_with("BAD"));
    // A change of a mailbox's annotations is a change of the mailbox (RFC 7162 §3.2).
    let modseq = |c: &mut Imap<std::net::TcpStream>| {
        let line = c.ok("STATUS Archive (HIGHESTMODSEQ)").lines[0].clone();
        line.rsplit(' ').next().unwrap_or_default().trim_end_matches(')').parse::<u64>().unwrap_or(0)
    };
    let before = modseq(&mut c);
    c.ok("SETMETADATA Archive (/shared/comment \"archive\")");
    assert_eq!(modseq(&mut c), before + 1);
    // Shared: Bob with lr reads /shared, keeps his own /private, cannot write /shared.
    c.ok("SETACL Archive bob@example.test lr");
    let mut bob = s.imap_login("bob@example.test");
    let archive = "\"Other Users/alice@example.test/Archive\"";
    assert_eq!(
        bob.ok(&format!("GETMETADATA {archive} /shared/comment")).lines,
        vec![format!("* METADATA {archive} (\"/shared/comment\" \"archive\")")]
    );
    assert!(bob.run(&format!("SETMETADATA {archive} (/shared/comment \"mine\")")).done.starts_with("NO [NOPERM]"));
    bob.ok(&format!("SETMETADATA {archive} (/private/comment \"bob's note\")"));
    assert_eq!(
        c.ok("GETMETADATA Archive /private/comment").lines,
        vec!["* METADATA Archive (\"/private/comment\" NIL)"],
        "Bob's private annotation is his"
    );
}

/// Reads lines pushed without a command until each of `wanted` (prefixes) was seen; the lines.
fn pushed(c: &mut Imap<std::net::TcpStream>, wanted: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    while !wanted.iter().all(|w| lines.iter().any(|l: &String| l.starts_with(w))) {
        assert!(lines.len() < 12, "still waiting for {wanted:?}: {lines:?}");
        lines.push(c.line());
    }
    lines
}

/// RFC 5465: a session with another mailbox selected hears of mail delivered by SMTP, flag
/// changes, mailboxes created, renamed and deleted, and subscriptions, as they happen and
/// without sending a command; the selected mailbox's arrivals come with their FETCH at once.
#[test]
fn notify_pushes_other_mailboxes_changes_to_a_waiting_session() {
    let s = TestServer::started("");
    let mut a = s.imap_login("alice@example.test");
    a.ok("CREATE Lists");
    a.ok("SELECT Archive");
    let r = a.run("NOTIFY SET (personal (MessageNew MessageExpunge AnnotationChange))");
    assert!(
        r.done.starts_with("NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]"),
        "{r:?}"
    );
    assert!(a.run("NOTIFY SET (personal (MessageNew))").done.starts_with("BAD"), "MessageNew needs MessageExpunge");
    assert!(a.run("NOTIFY SET (selected (MailboxName))").done.starts_with("BAD"));
    let r = a.ok("NOTIFY SET STATUS (selected (MessageNew (UID FLAGS) MessageExpunge)) \
         (personal (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))");
    // STATUS: every personal mailbox but the selected one, as it stands.
    assert!(r.lines.iter().any(|l| l.starts_with("* STATUS INBOX (MESSAGES 0 UIDNEXT 1 UIDVALIDITY ")), "{r:?}");
    assert!(r.lines.iter().any(|l| l.starts_with("* STATUS Lists (MESSAGES 0 ")), "{r:?}");
    assert!(!r.all().contains("STATUS Archive"), "{r:?}");

    // Mail delivered by SMTP to INBOX reaches the session that has Archive selected.
    s.deliver("alice@example.test", message("news", "pushed").as_bytes());
    let line = a.line();
    assert!(line.starts_with("* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UIDVALIDITY "), "{line}");

    // What another session of Alice's does.
    let mut b = s.imap_login("alice@example.test");
    b.ok("SELECT INBOX");
    b.ok("STORE 1 +FLAGS (\\Seen)");
    assert_eq!(a.line(), "* STATUS INBOX (UNSEEN 0)");
    // (Tern subscribes a mailbox it creates, and a subscription follows a rename.)
    b.ok("CREATE Projects");
    pushed(&mut a, &["* LIST () \"/\" Projects", "* LIST (\\Subscribed) \"/\" Projects"]);
    b.ok("RENAME Projects Work");
    pushed(&mut a, &["* LIST () \"/\" Work (\"OLDNAME\" (Projects))", "* LIST (\\Subscribed) \"/\" Work"]);
    b.ok("DELETE Work");
    pushed(&mut a, &["* LIST (\\NonExistent) \"/\" Work"]);
    b.ok("UNSUBSCRIBE Lists");
    pushed(&mut a, &["* LIST () \"/\" Lists"]);
    b.ok("SUBSCRIBE Lists");
    pushed(&mut a, &["* LIST (\\Subscribed) \"/\" Lists"]);

    // Into the selected mailbox: EXISTS and the FETCH asked for, at once; the move out of
    // INBOX as its STATUS.
    b.ok("MOVE 1 Archive");
    let lines =
        pushed(&mut a, &["* 1 EXISTS", "* 1 FETCH (UID 1 FLAGS (\\Seen", "* STATUS INBOX (MESSAGES 0 UIDNEXT 2 "]);
    assert!(!lines.iter().any(|l| l.contains("BODY")), "{lines:?}");
    // SELECTED: an expunge in the selected mailbox is pushed too.
    b.ok("SELECT Archive");
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)");
    b.ok("EXPUNGE");
    pushed(&mut a, &["* 1 EXPUNGE"]);
    // Still in step with commands.
    assert!(a.ok("NOOP").done.starts_with("OK"));

    // While idling too; and after NOTIFY NONE, nothing.
    a.ok("NOTIFY SET (inboxes (MessageNew MessageExpunge))");
    let tag = a.tag();
    a.send_line(&format!("{tag} IDLE"));
    assert_eq!(a.line(), "+ idling");
    s.deliver("alice@example.test", message("more", "pushed").as_bytes());
    assert!(a.line().starts_with("* STATUS INBOX (MESSAGES 1 UIDNEXT 3 "));
    a.send_line("DONE");
    assert!(a.finish(&tag).ok());
    a.ok("NOTIFY NONE");
    s.deliver("alice@example.test", message("quiet", "not pushed").as_bytes());
    b.ok("SELECT INBOX");
    let r = a.ok("NOOP");
    assert!(!r.all().contains("STATUS"), "{r:?}");
}

/// Sends `command` with a tag of its own; the tag and the reply.
fn tagged(c: &mut Imap<std::net::TcpStream>, command: &str) -> (String, ImapReply) {
    let tag = c.tag();
    c.send_line(&format!("{tag} {command}"));
    let r = c.finish(&tag);
    assert!(r.ok(), "{command}: {r:?}");
    (tag, r)
}

/// RFC 5267 CONTEXT=SEARCH and CONTEXT=SORT: a search with RETURN (UPDATE) is told as
/// messages join and leave its results — by another session's STORE and APPEND, and by this
/// session's own — until CANCELUPDATE or the mailbox is closed.
#[test]
fn updating_searches_follow_the_mailbox() {
    let s = TestServer::started("");
    let mut a = s.imap_login("alice@example.test");
    let mut b = s.imap_login("alice@example.test");
    for i in 1..=4 {
        append(&mut b, "INBOX", None, &message(&format!("m{i}"), "x"));
    }
    b.ok("SELECT INBOX");
    b.ok("UID STORE 2 +FLAGS (\\Flagged)");
    a.ok("SELECT INBOX");
    let (search, r) = tagged(&mut a, "UID SEARCH RETURN (ALL UPDATE CONTEXT) FLAGGED");
    assert_eq!(r.lines, vec![format!("* ESEARCH (TAG \"{search}\") UID ALL 2")]);
    let (sort, r) = tagged(&mut a, "UID SORT RETURN (ALL UPDATE) (REVERSE SUBJECT) UTF-8 FLAGGED");
    assert_eq!(r.lines, vec![format!("* ESEARCH (TAG \"{sort}\") UID ALL 2")]);

    // Another session flags 3 and unflags 2.
    b.ok("UID STORE 3 +FLAGS (\\Flagged)");
    let r = a.ok("NOOP");
    assert!(r.lines.contains(&format!("* ESEARCH (TAG \"{search}\") UID ADDTO (0 3)")), "{r:?}");
    // Sorted by subject, last first: m3 goes before m2.
    assert!(r.lines.contains(&format!("* ESEARCH (TAG \"{sort}\") UID ADDTO (1 3)")), "{r:?}");
    b.ok("UID STORE 2 -FLAGS (\\Flagged)");
    let r = a.ok("NOOP");
    assert!(r.lines.contains(&format!("* ESEARCH (TAG \"{search}\") UID REMOVEFROM (0 2)")), "{r:?}");
    assert!(r.lines.contains(&format!("* ESEARCH (TAG \"{sort}\") UID REMOVEFROM (2 2)")), "{r:?}");
    // A flagged message arrives: EXISTS first, then the additions.
    let raw = message("m5", "flagged");
    assert!(b.run(&format!("APPEND INBOX (\\Flagged) {{{}+}}\r\n{raw}", raw.len())).ok());
    let r = a.ok("NOOP");
    let exists = r.lines.iter().position(|l| l == "* 5 EXISTS").expect("EXISTS");
    let added = r.lines.iter().position(|l| l == &format!("* ESEARCH (TAG \"{search}\") UID ADDTO (0 5)"));
    assert!(added.is_some_and(|i| i > exists), "{r:?}");
    assert!(r.lines.contains(&format!("* ESEARCH (TAG \"{sort}\") UID ADDTO (1 5)")), "{r:?}");
    // This session's own STORE counts too.
    let r = a.ok("UID STORE 1 +FLAGS.SILENT (\\Flagged)");
    assert!(r.lines.contains(&format!("* ESEARCH (TAG \"{search}\") UID ADDTO (0 1)")), "{r:?}");
    assert!(r.lines.contains(&format!("* ESEARCH (TAG \"{sort}\") UID ADDTO (3 1)")), "{r:?}");
    // An expunge speaks for itself: no REMOVEFROM for a message that is gone.
    b.ok("UID STORE 3 +FLAGS.SILENT (\\Deleted)");
    b.ok("EXPUNGE");
    let r = a.ok("NOOP");
    assert!(r.lines.contains(&"* 3 EXPUNGE".to_string()), "{r:?}");
    assert!(!r.all().contains("REMOVEFROM"), "{r:?}");
    let (_, r) = tagged(&mut a, "UID SEARCH RETURN (ALL) FLAGGED");
    assert!(r.lines[0].ends_with("UID ALL 1,5"), "{r:?}");

    // CANCELUPDATE stops one; the other goes on.
    a.ok(&format!("CANCELUPDATE \"{search}\""));
    b.ok("UID STORE 4 +FLAGS (\\Flagged)");
    let r = a.ok("NOOP");
    assert!(!r.all().contains(&format!("\"{search}\"")), "{r:?}");
    assert!(r.lines.contains(&format!("* ESEARCH (TAG \"{sort}\") UID ADDTO (2 4)")), "{r:?}");
    // At most five kept updated.
    for _ in 0..4 {
        tagged(&mut a, "UID SEARCH RETURN (UPDATE) SEEN");
    }
    let (sixth, r) = tagged(&mut a, "UID SEARCH RETURN (UPDATE) SEEN");
    assert!(r.lines.contains(&format!("* NO [NOUPDATE \"{sixth}\"] At most 5 searches are kept updated")), "{r:?}");
    // Closing the mailbox ends them all.
    a.ok("UNSELECT");
    a.ok("SELECT INBOX");
    b.ok("UID STORE 4 -FLAGS (\\Flagged)");
    let r = a.ok("NOOP");
    assert!(!r.all().contains("ESEARCH"), "{r:?}");
}
