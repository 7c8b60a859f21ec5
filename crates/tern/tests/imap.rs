//! IMAP end to end: the real binary on loopback, driven by a raw client that checks exact
//! responses; other tests use imaplib, async-imap, mbsync.

mod common;

use common::*;
use std::time::{Duration, Instant};

const MULTIPART: &str = "From: \"Ann Example\" <ann@remote.test>\r\nTo: alice@example.test, Bob <bob@example.test>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and report\r\nDate: Tue, 01 Jul 2025 10:00:00 +0200\r\nMessage-ID: <m1@remote.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Alice,\r\nsee the attachment.\r\n--B\r\nContent-Type: text/plain; charset=utf-8; name=\"secret.txt\"\r\nContent-Disposition: attachment; filename=\"secret.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\nVGhlIHBhc3N3b3JkIGlzIHN3b3JkZmlzaC4K\r\n--B--\r\n";

fn simple(subject: &str) -> String {
    format!(
        "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@remote.test>\r\nDate: Tue, 01 Jul 2025 10:00:00 +0000\r\n\r\nBody of {subject}.\r\n"
    )
}

#[test]
fn capabilities_login_and_authenticate() {
    let s = TestServer::started("");
    let mut c = s.imap();
    let caps = c.ok("CAPABILITY");
    let line = caps.untagged("CAPABILITY")[0].to_string();
    for cap in ["IMAP4rev1", "IMAP4rev2", "STARTTLS", "LITERAL-", "SASL-IR", "AUTH=PLAIN", "ID", "ENABLE"] {
        assert!(line.split(' ').any(|c| c == cap), "{cap} missing before login: {line}");
    }
    assert!(!line.contains("LITERAL+"), "LITERAL+ and LITERAL- must not both be advertised");
    let bad = c.run("LOGIN alice@example.test wrong");
    assert!(bad.done.starts_with("NO [AUTHENTICATIONFAILED]"), "{bad:?}");
    assert!(c.run("SELECT INBOX").done.starts_with("BAD"), "SELECT before login");
    // AUTHENTICATE PLAIN with an initial response (SASL-IR): \0alice@example.test\0secret.
    let r = c.ok("AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=");
    assert!(r.done.contains("[CAPABILITY IMAP4rev1 IMAP4rev2"), "{r:?}");
    let caps = c.ok("CAPABILITY").untagged("CAPABILITY")[0].to_string();
    for cap in [
        "IDLE",
        "UIDPLUS",
        "MOVE",
        "CONDSTORE",
        "QRESYNC",
        "ESEARCH",
        "SEARCHRES",
        "SORT",
        "THREAD=REFERENCES",
        "THREAD=ORDEREDSUBJECT",
        "LIST-EXTENDED",
        "LIST-STATUS",
        "SPECIAL-USE",
        "CREATE-SPECIAL-USE",
        "STATUS=SIZE",
        "OBJECTID",
        "QUOTA",
        "COMPRESS=DEFLATE",
        "LITERAL+",
        "NAMESPACE",
        "UNSELECT",
        "CHILDREN",
    ] {
        assert!(caps.split(' ').any(|c| c == cap), "{cap} missing after login: {caps}");
    }
    assert!(caps.contains("APPENDLIMIT="));
    assert!(c.run("LOGIN alice@example.test secret").done.starts_with("BAD"), "second login");
    let id = c.ok("ID (\"name\" \"test\")");
    assert!(id.untagged("ID")[0].contains("\"Tern\""));
    c.ok("LOGOUT");
    // AUTHENTICATE with a continuation.
    let mut c = s.imap();
    let tag = c.tag();
    c.send_line(&format!("{tag} AUTHENTICATE PLAIN"));
    assert_eq!(c.line(), "+ ");
    c.send_line("AGJvYkBleGFtcGxlLnRlc3QAc2VjcmV0");
    assert!(c.finish(&tag).ok());
}

#[test]
fn passwords_need_tls_unless_loopback_is_allowed() {
    let s = TestServer::started("[auth]\nplaintext_on_loopback = false\n");
    let mut c = s.imap();
    let caps = c.ok("CAPABILITY").untagged("CAPABILITY")[0].to_string();
    assert!(caps.contains("LOGINDISABLED") && !caps.contains("AUTH=PLAIN"), "{caps}");
    let r = c.run("LOGIN alice@example.test secret");
    assert!(r.done.starts_with("NO [PRIVACYREQUIRED]"), "{r:?}");
    // STARTTLS with an injected command behind it: the injected command must not run.
    let tag = c.tag();
    c.send_line(&format!("{tag} STARTTLS\r\nx1 LOGIN alice@example.test secret"));
    assert!(c.finish(&tag).ok());
    let mut t = Imap { c: c.c.into_tls(), next: 100 };
    let caps = t.ok("CAPABILITY").untagged("CAPABILITY")[0].to_string();
    assert!(caps.contains("AUTH=PLAIN") && !caps.contains("STARTTLS"), "{caps}");
    assert!(t.run("SELECT INBOX").done.starts_with("BAD"), "the injected LOGIN must not have run");
    t.ok("LOGIN alice@example.test secret");
    t.ok("SELECT INBOX");
}

#[test]
fn implicit_tls_port() {
    let s = TestServer::started("[auth]\nplaintext_on_loopback = false\n");
    let stream = std::net::TcpStream::connect(s.imaps).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let c = Client::from_stream(stream).into_tls();
    let mut t = Imap { c, next: 0 };
    assert!(t.line().starts_with("* OK [CAPABILITY"));
    t.ok("LOGIN alice@example.test secret");
    t.ok("SELECT INBOX");
}

#[test]
fn select_fetch_envelope_bodystructure_and_sections() {
    let s = TestServer::started("");
    s.deliver("alice@example.test", MULTIPART.as_bytes());
    let mut c = s.imap_login("alice@example.test");
    let sel = c.ok("SELECT INBOX");
    assert!(sel.done.starts_with("OK [READ-WRITE]"), "{sel:?}");
    assert!(sel.lines.contains(&"* 1 EXISTS".to_string()), "{sel:?}");
    assert!(sel.lines.contains(&"* 1 RECENT".to_string()), "{sel:?}");
    assert!(sel.all().contains("* OK [UIDVALIDITY "), "{sel:?}");
    assert!(sel.all().contains("* OK [UIDNEXT 2]"), "{sel:?}");
    assert!(sel.all().contains("* OK [HIGHESTMODSEQ "), "{sel:?}");
    assert!(sel.all().contains("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)"), "{sel:?}");
    let env = c.ok("FETCH 1 ENVELOPE");
    assert_eq!(
        env.lines[0],
        "* 1 FETCH (ENVELOPE (\"Tue, 01 Jul 2025 10:00:00 +0200\" \"=?utf-8?q?Gr=C3=BC=C3=9Fe?= and report\" ((\"Ann Example\" NIL \"ann\" \"remote.test\")) ((\"Ann Example\" NIL \"ann\" \"remote.test\")) ((\"Ann Example\" NIL \"ann\" \"remote.test\")) ((NIL NIL \"alice\" \"example.test\")(\"Bob\" NIL \"bob\" \"example.test\")) NIL NIL NIL \"<m1@remote.test>\"))"
    );
    let bs = c.ok("UID FETCH 1 (BODYSTRUCTURE)");
    assert_eq!(
        bs.lines[0],
        "* 1 FETCH (UID 1 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 33 2 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"utf-8\" \"name\" \"secret.txt\") NIL NIL \"base64\" 36 1 NIL (\"attachment\" (\"filename\" \"secret.txt\")) NIL NIL) \"mixed\" (\"boundary\" \"B\") NIL NIL NIL))"
    );
    let body = c.ok("FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.SIZE[2] BODY.PEEK[HEADER.FIELDS (Subject)] BODY.PEEK[]<0.4>)");
    let text = body.all();
    assert!(text.contains("BODY[1] {33}\r\nHello Alice,\r\nsee the attachment."), "{text}");
    assert!(text.contains("BODY[2.MIME] {"), "{text}");
    assert!(text.contains("BINARY[2] {27}\r\nThe password is swordfish.\n"), "{text}");
    assert!(text.contains("BINARY.SIZE[2] 27"), "{text}");
    assert!(
        text.contains("BODY[HEADER.FIELDS (Subject)] {51}\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and report\r\n\r\n"),
        "{text}"
    );
    assert!(text.contains("BODY[]<0> {4}\r\nRetu"), "{text}");
    assert!(!text.contains("\\Seen"), "PEEK must not set \\Seen: {text}");
    let seen = c.ok("FETCH 1 (BODY[TEXT])");
    assert!(seen.all().contains("FLAGS (\\Seen \\Recent)"), "fetching the body sets \\Seen and reports it: {seen:?}");
    let fast = c.ok("FETCH 1 (FAST UID)");
    assert!(fast.lines[0].contains("INTERNALDATE \"") && fast.lines[0].contains("RFC822.SIZE "), "{fast:?}");
    assert!(c.run("FETCH 2 FLAGS").done.starts_with("BAD"), "sequence number beyond EXISTS");
    assert!(c.ok("UID FETCH 5:9 FLAGS").lines.is_empty(), "unknown UIDs are no error");
    let r822 = c.ok("FETCH 1 (RFC822.HEADER RFC822.TEXT)").all();
    assert!(r822.contains("RFC822.HEADER {") && r822.contains("RFC822.TEXT {"), "{r822}");
    let ids = c.ok("FETCH 1 (EMAILID THREADID)").all();
    assert!(ids.contains("EMAILID (M") && ids.contains("THREADID (T"), "{ids}");
}

#[test]
fn two_sessions_see_each_others_changes_at_the_right_moments() {
    let s = TestServer::started("");
    for i in 0..3 {
        s.deliver("alice@example.test", simple(&format!("m{i}")).as_bytes());
    }
    let mut a = s.imap_login("alice@example.test");
    let mut b = s.imap_login("alice@example.test");
    a.ok("SELECT INBOX");
    b.ok("SELECT INBOX");
    b.ok("STORE 2 +FLAGS (\\Deleted \\Flagged)");
    b.ok("EXPUNGE");
    // During FETCH by sequence number no EXPUNGE may be sent; the flag change may.
    let f = a.ok("FETCH 1:3 (FLAGS)");
    assert!(!f.all().contains("EXPUNGE"), "{f:?}");
    assert_eq!(f.untagged("2 FETCH").len(), 1, "message 2 still exists for this session: {f:?}");
    let n = a.ok("NOOP");
    assert!(n.lines.contains(&"* 2 EXPUNGE".to_string()), "{n:?}");
    // Flags changed by the other session arrive as FETCH with UID.
    b.ok("STORE 1 +FLAGS (\\Answered)");
    let n = a.ok("NOOP");
    assert!(n.all().contains("* 1 FETCH (UID 1 FLAGS (\\Answered"), "{n:?}");
    // New mail: EXISTS.
    s.deliver("alice@example.test", simple("m3").as_bytes());
    let n = a.ok("NOOP");
    assert!(n.lines.contains(&"* 3 EXISTS".to_string()), "{n:?}");
    let uids = a.ok("UID SEARCH ALL");
    assert_eq!(uids.untagged("SEARCH")[0], "SEARCH 1 3 4");
}

#[test]
fn idle_wakes_within_a_second_of_smtp_delivery() {
    let s = TestServer::started("");
    let mut a = s.imap_login("alice@example.test");
    a.ok("SELECT INBOX");
    let tag = a.tag();
    a.send_line(&format!("{tag} IDLE"));
    assert_eq!(a.line(), "+ idling");
    let started = Instant::now();
    s.deliver("alice@example.test", simple("pushed").as_bytes());
    let delivered = started.elapsed();
    let line = a.line();
    let woke = started.elapsed();
    assert_eq!(line, "* 1 EXISTS");
    assert!(woke - delivered < Duration::from_secs(1), "IDLE took {:?} after delivery", woke - delivered);
    a.send_line("DONE");
    let done = a.finish(&tag);
    assert!(done.ok(), "{done:?}");
}

#[test]
fn idle_keepalive_and_bad_termination() {
    let s = TestServer::started("[imap]\nidle_keepalive_seconds = 1\n");
    let mut a = s.imap_login("alice@example.test");
    let tag = a.tag();
    a.send_line(&format!("{tag} IDLE"));
    assert_eq!(a.line(), "+ idling");
    assert_eq!(a.line(), "* OK Still here");
    a.send_line("NOPE");
    assert!(a.finish(&tag).done.starts_with("BAD"));
    a.ok("NOOP");
}

#[test]
fn append_is_durable_across_restart() {
    let mut s = TestServer::started("");
    let mut c = s.imap_login("alice@example.test");
    let msg = "From: me@example.test\r\nSubject: draft\r\n\r\nwork in progress\r\n";
    let tag = c.tag();
    c.send_line(&format!(
        "{tag} APPEND Drafts (\\Draft \\Seen $Todo) \"05-Jan-2025 13:14:15 +0100\" {{{}}}",
        msg.len()
    ));
    assert!(c.line().starts_with("+ "));
    c.send(msg.as_bytes());
    c.send_line("");
    let r = c.finish(&tag);
    assert!(r.done.starts_with("OK [APPENDUID "), "{r:?}");
    let uid: u32 = r.done.split(' ').nth(3).unwrap().trim_end_matches(']').parse().unwrap();
    // Non-synchronizing literal (LITERAL+), bare LF converted to CRLF.
    let lf = "Subject: lf\n\nline\n";
    let r = c.run(&format!("APPEND INBOX {{{}+}}\r\n{lf}", lf.len()));
    assert!(r.ok(), "{r:?}");
    assert!(c.run("APPEND Nowhere {1+}\r\nx").done.starts_with("NO [TRYCREATE]"));
    s.kill9();
    s.launch();
    let mut c = s.imap_login("alice@example.test");
    c.ok("SELECT Drafts");
    let f = c.ok(&format!("UID FETCH {uid} (FLAGS INTERNALDATE BODY.PEEK[])"));
    let text = f.all();
    assert!(text.contains("FLAGS (\\Seen \\Draft $Todo \\Recent)"), "first SELECT after APPEND sees \\Recent: {text}");
    assert!(text.contains("INTERNALDATE \"05-Jan-2025 12:14:15 +0000\""), "{text}");
    assert!(text.contains(&format!("BODY[] {{{}}}\r\n{msg}", msg.len())), "{text}");
    c.ok("SELECT INBOX");
    let f = c.ok("FETCH 1 BODY.PEEK[]").all();
    assert!(f.contains("Subject: lf\r\n\r\nline\r\n"), "{f}");
}

#[test]
fn condstore_and_qresync_resynchronisation() {
    let s = TestServer::started("");
    for i in 0..4 {
        s.deliver("alice@example.test", simple(&format!("q{i}")).as_bytes());
    }
    let mut a = s.imap_login("alice@example.test");
    a.ok("ENABLE QRESYNC");
    let sel = a.ok("SELECT INBOX");
    let all = sel.all();
    let validity: u32 = all.split("[UIDVALIDITY ").nth(1).unwrap().split(']').next().unwrap().parse().unwrap();
    let modseq: u64 = all.split("[HIGHESTMODSEQ ").nth(1).unwrap().split(']').next().unwrap().parse().unwrap();
    a.ok("LOGOUT");
    // Meanwhile another client changes flags and expunges.
    let mut b = s.imap_login("alice@example.test");
    b.ok("SELECT INBOX");
    b.ok("UID STORE 3 +FLAGS (\\Seen)");
    b.ok("UID STORE 2 +FLAGS (\\Deleted)");
    b.ok("EXPUNGE");
    // UID 3 changed after `modseq`: UNCHANGEDSINCE modseq fails for it with MODIFIED; UID 1
    // did not change and is updated.
    let r = b.ok(&format!("UID STORE 1,3 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Flagged)"));
    assert!(r.done.starts_with("OK [MODIFIED 3]"), "{r:?}");
    assert!(r.all().contains("UID 1 MODSEQ ("), "UNCHANGEDSINCE reports MODSEQ: {r:?}");
    b.ok("UID STORE 1 -FLAGS (\\Flagged)");
    let r = b.ok("FETCH 1 (MODSEQ)");
    assert!(r.lines[0].contains("MODSEQ ("), "{r:?}");
    b.ok("LOGOUT");
    let mut a = s.imap_login("alice@example.test");
    a.ok("ENABLE QRESYNC");
    let sel = a.ok(&format!("SELECT INBOX (QRESYNC ({validity} {modseq}))"));
    let text = sel.all();
    assert!(text.contains("* VANISHED (EARLIER) 2"), "{text}");
    assert!(text.contains("FETCH (UID 3 FLAGS (\\Seen) MODSEQ ("), "{text}");
    assert!(!text.contains("UID 4 FLAGS"), "unchanged messages are not sent: {text}");
    // CHANGEDSINCE with VANISHED.
    let f = a.ok(&format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"));
    let text = f.all();
    assert!(text.contains("* VANISHED (EARLIER) 2"), "{text}");
    assert!(text.contains("UID 3"), "{text}");
    // Expunges by others arrive as VANISHED for QRESYNC clients.
    let mut b = s.imap_login("alice@example.test");
    b.ok("SELECT INBOX");
    b.ok("UID STORE 4 +FLAGS (\\Deleted)");
    b.ok("UID EXPUNGE 4");
    let n = a.ok("NOOP");
    assert!(n.lines.contains(&"* VANISHED 4".to_string()), "{n:?}");
}

#[test]
fn search_keys_esearch_searchres_and_base64_body() {
    let s = TestServer::started("");
    s.deliver("alice@example.test", MULTIPART.as_bytes());
    s.deliver("alice@example.test", simple("weekly report").as_bytes());
    s.deliver("alice@example.test", simple("lunch").as_bytes());
    let mut c = s.imap_login("alice@example.test");
    c.ok("SELECT INBOX");
    c.ok("STORE 3 +FLAGS (\\Flagged)");
    let q = |c: &mut Imap<_>, query: &str| {
        c.ok(query).untagged("SEARCH").first().map(|l| l.to_string()).unwrap_or_default()
    };
    // The password is only in a base64-encoded attachment: BODY search decodes it.
    assert_eq!(q(&mut c, "SEARCH BODY swordfish"), "SEARCH 1");
    assert_eq!(q(&mut c, "SEARCH TEXT SWORDFISH"), "SEARCH 1");
    assert_eq!(q(&mut c, "SEARCH BODY VGhl"), "SEARCH", "raw base64 must not match");
    // Encoded words in headers are decoded for searching.
    assert_eq!(q(&mut c, "SEARCH CHARSET UTF-8 SUBJECT {7+}\r\ngrüße"), "SEARCH 1");
    assert!(c.run("SEARCH SUBJECT grüße").done.starts_with("BAD"), "8-bit atoms are not IMAP");
    assert_eq!(q(&mut c, "SEARCH SUBJECT report"), "SEARCH 1 2");
    assert_eq!(q(&mut c, "SEARCH FROM \"Ann Example\""), "SEARCH 1");
    assert_eq!(q(&mut c, "SEARCH TO bob@example"), "SEARCH 1");
    assert_eq!(q(&mut c, "SEARCH HEADER Message-ID lunch"), "SEARCH 3");
    assert_eq!(q(&mut c, "SEARCH FLAGGED"), "SEARCH 3");
    assert_eq!(q(&mut c, "SEARCH OR FLAGGED SUBJECT weekly"), "SEARCH 2 3");
    assert_eq!(q(&mut c, "SEARCH NOT FLAGGED LARGER 200"), "SEARCH 1 2");
    assert_eq!(q(&mut c, "SEARCH SENTON 1-Jul-2025"), "SEARCH 1 2 3");
    assert_eq!(q(&mut c, "SEARCH 2:* UNFLAGGED"), "SEARCH 2");
    assert_eq!(q(&mut c, "UID SEARCH UID 2:3"), "SEARCH 2 3");
    // Once the full-text index has caught up, the answers come from it and are the same.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, metrics) = s.http_get("/metrics");
        if metrics.contains("tern_fts_indexed_total 3") {
            break;
        }
        assert!(Instant::now() < deadline, "the index did not catch up: {metrics}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(q(&mut c, "SEARCH BODY swordfish"), "SEARCH 1");
    assert_eq!(q(&mut c, "SEARCH BODY VGhl"), "SEARCH");
    assert_eq!(q(&mut c, "SEARCH TEXT SWORDFISH"), "SEARCH 1");
    assert_eq!(q(&mut c, "SEARCH TEXT \"weekly report\""), "SEARCH 2");
    assert_eq!(q(&mut c, "SEARCH NOT BODY lunch"), "SEARCH 1 2");
    assert_eq!(q(&mut c, "SEARCH BODY lu"), "SEARCH 3", "short strings are scanned");
    assert!(c.run("SEARCH CHARSET KOI8-R ALL").done.starts_with("NO [BADCHARSET"));
    assert!(c.run("SEARCH FROBNICATE").done.starts_with("BAD"));
    let e = c.ok("SEARCH RETURN (MIN MAX COUNT ALL) SUBJECT report");
    assert!(e.lines[0].ends_with("MIN 1 MAX 2 COUNT 2 ALL 1:2"), "{e:?}");
    let e = c.ok("UID SEARCH RETURN (COUNT) NOT ALL");
    assert!(e.lines[0].ends_with("UID COUNT 0"), "{e:?}");
    // SEARCHRES: save, then use $.
    let saved = c.ok("SEARCH RETURN (SAVE) SUBJECT report");
    assert!(saved.lines.is_empty(), "SAVE alone returns nothing: {saved:?}");
    let f = c.ok("FETCH $ (UID)");
    assert_eq!(f.lines.len(), 2, "{f:?}");
    // IMAP4rev2 answers SEARCH with ESEARCH.
    let mut r2 = s.imap_login("alice@example.test");
    r2.ok("ENABLE IMAP4rev2");
    r2.ok("SELECT INBOX");
    let e = r2.ok("SEARCH FLAGGED");
    assert!(e.lines[0].starts_with("* ESEARCH (TAG \"") && e.lines[0].ends_with(" ALL 3"), "{e:?}");
}

#[test]
fn sort_and_thread() {
    let s = TestServer::started("");
    s.deliver("alice@example.test", b"From: zed@x.test\r\nSubject: b topic\r\nMessage-ID: <a@x>\r\nDate: Mon, 13 Nov 2023 10:00:00 +0000\r\n\r\nx\r\n");
    s.deliver("alice@example.test", b"From: amy@x.test\r\nSubject: Re: b topic\r\nMessage-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nDate: Mon, 13 Nov 2023 11:00:00 +0000\r\n\r\nx\r\n");
    s.deliver("alice@example.test", b"From: bob@x.test\r\nSubject: a topic\r\nMessage-ID: <c@x>\r\nDate: Mon, 13 Nov 2023 09:00:00 +0000\r\n\r\nx\r\n");
    let mut c = s.imap_login("alice@example.test");
    c.ok("SELECT INBOX");
    assert_eq!(c.ok("SORT (SUBJECT) UTF-8 ALL").untagged("SORT")[0], "SORT 3 1 2");
    assert_eq!(c.ok("SORT (FROM) UTF-8 ALL").untagged("SORT")[0], "SORT 2 3 1");
    assert_eq!(c.ok("UID SORT (REVERSE DATE) UTF-8 ALL").untagged("SORT")[0], "SORT 2 1 3");
    assert_eq!(c.ok("THREAD REFERENCES UTF-8 ALL").untagged("THREAD")[0], "THREAD (3)(1 2)");
    assert_eq!(c.ok("THREAD ORDEREDSUBJECT UTF-8 ALL").untagged("THREAD")[0], "THREAD (3)(1 2)");
}

#[test]
fn copy_move_expunge_with_uidplus() {
    let s = TestServer::started("");
    for i in 0..4 {
        s.deliver("alice@example.test", simple(&format!("c{i}")).as_bytes());
    }
    let mut c = s.imap_login("alice@example.test");
    c.ok("SELECT INBOX");
    let r = c.ok("COPY 1:2 Archive");
    assert!(r.done.starts_with("OK [COPYUID ") && r.done.contains(" 1:2 1:2]"), "{r:?}");
    assert!(c.run("COPY 1 Nowhere").done.starts_with("NO [TRYCREATE]"));
    let m = c.ok("UID MOVE 3 Trash");
    assert!(m.lines[0].starts_with("* OK [COPYUID ") && m.lines[0].contains(" 3 1]"), "{m:?}");
    assert_eq!(m.lines[1], "* 3 EXPUNGE", "{m:?}");
    c.ok("STORE 1:2 +FLAGS.SILENT (\\Deleted)");
    let u = c.ok("UID EXPUNGE 1");
    assert_eq!(u.lines, vec!["* 1 EXPUNGE"], "only UID 1, though 2 is deleted too");
    let st = c.ok("STATUS Archive (MESSAGES UIDNEXT UNSEEN SIZE DELETED)");
    assert!(st.lines[0].starts_with("* STATUS Archive (MESSAGES 2 UIDNEXT 3 UNSEEN 2 SIZE "), "{st:?}");
    c.ok("CLOSE");
    c.ok("SELECT INBOX");
    assert_eq!(c.ok("UID SEARCH ALL").untagged("SEARCH")[0], "SEARCH 4", "CLOSE expunged the other deleted message");
    c.ok("EXAMINE INBOX");
    assert!(c.run("STORE 1 +FLAGS (\\Seen)").done.starts_with("NO"), "read-only");
}

#[test]
fn mailbox_management_list_extended_status_and_names() {
    let s = TestServer::started("");
    let mut c = s.imap_login("alice@example.test");
    c.ok("CREATE Projects/Tern/Design");
    c.ok("CREATE \"Lists\" (USE (\\Flagged))");
    assert!(c.run("CREATE Projects").done.starts_with("NO [ALREADYEXISTS]"));
    assert!(c.run("CREATE inbox").done.starts_with("NO [ALREADYEXISTS]"));
    let l = c.ok("LIST \"\" \"*\"");
    let all = l.all();
    assert!(all.contains("* LIST (\\HasNoChildren) \"/\" INBOX"), "{all}");
    assert!(all.contains("* LIST (\\HasChildren) \"/\" Projects"), "{all}");
    assert!(all.contains("* LIST (\\HasNoChildren) \"/\" Projects/Tern/Design"), "{all}");
    assert!(all.contains("* LIST (\\HasNoChildren \\Flagged) \"/\" Lists"), "{all}");
    assert_eq!(c.ok("LIST \"\" \"Projects/%\"").lines, vec!["* LIST (\\HasChildren) \"/\" Projects/Tern"]);
    assert_eq!(c.ok("LIST \"\" \"\"").lines, vec!["* LIST (\\Noselect) \"/\" \"\""]);
    let special = c.ok("LIST (SPECIAL-USE) \"\" \"*\"");
    assert_eq!(special.lines.len(), 6, "{special:?}");
    let with_status = c.ok("LIST \"\" (INBOX Sent) RETURN (STATUS (MESSAGES UNSEEN) SUBSCRIBED)");
    assert!(with_status.all().contains("* STATUS INBOX (MESSAGES 0 UNSEEN 0)"), "{with_status:?}");
    assert!(with_status.all().contains("\\Subscribed"), "{with_status:?}");
    assert!(c.run("DELETE Projects").done.starts_with("NO [HASCHILDREN]"));
    c.ok("RENAME Projects Old");
    assert!(c.ok("LIST \"\" Old/*").all().contains("Old/Tern/Design"));
    c.ok("DELETE Old/Tern/Design");
    assert!(c.run("DELETE Old/Tern/Design").done.starts_with("NO [NONEXISTENT]"));
    assert!(c.run("DELETE INBOX").done.starts_with("NO"));
    c.ok("UNSUBSCRIBE Lists");
    let lsub = c.ok("LSUB \"\" *");
    assert!(!lsub.all().contains("Lists") && lsub.all().contains("INBOX"), "{lsub:?}");
    // Modified UTF-7 for classic clients, UTF-8 after ENABLE UTF8=ACCEPT.
    c.ok("CREATE Entw&APw-rfe");
    assert!(c.ok("LIST \"\" Entw*").all().contains("\"/\" Entw&APw-rfe"));
    let mut u = s.imap_login("alice@example.test");
    u.ok("ENABLE UTF8=ACCEPT");
    assert!(u.ok("LIST \"\" Entw*").all().contains("\"/\" \"Entwürfe\""));
    assert!(
        c.ok("NAMESPACE").lines[0] == "* NAMESPACE ((\"\" \"/\")) ((\"Other Users/\" \"/\")) ((\"Public/\" \"/\"))"
    );
}

#[test]
fn quota_reports_usage_and_limit() {
    let s = TestServer::started("");
    s.ok(&["user", "quota", "alice@example.test", "1048576"]);
    s.deliver("alice@example.test", simple("q").as_bytes());
    let mut c = s.imap_login("alice@example.test");
    let r = c.ok("GETQUOTAROOT INBOX");
    assert_eq!(r.lines[0], "* QUOTAROOT INBOX \"\"");
    assert_eq!(r.lines[1], "* QUOTA \"\" (STORAGE 1 1024)");
    assert!(c.run("SETQUOTA \"\" (STORAGE 10)").done.starts_with("NO"));
    let big = "x".repeat(1_100_000);
    let r = c.run(&format!("APPEND INBOX {{{}+}}\r\n{big}", big.len()));
    assert!(r.done.starts_with("NO [OVERQUOTA]"), "{r:?}");
}

/// Issue 10: the quota held only for APPEND. COPY into the account, SMTP delivery (452 4.2.2
/// at RCPT when full, 552 5.2.2 at end of DATA when the message does not fit, a failure
/// report when other recipients got it) and usage after expunge and restart.
#[test]
fn quota_is_enforced_on_copy_and_smtp_and_usage_stays_right() {
    let mut s = TestServer::started("");
    s.ok(&["user", "quota", "alice@example.test", "1000000"]);
    let mut c = s.imap_login("alice@example.test");
    let part = format!("Subject: part\r\n\r\n{}\r\n", "y".repeat(200_000));
    for _ in 0..3 {
        let r = c.run(&format!("APPEND INBOX {{{}+}}\r\n{part}", part.len()));
        assert!(r.ok(), "{r:?}");
    }
    // STORAGE used, in KiB (RFC 9208 §5.1), and the limit.
    let usage = |c: &mut Imap<std::net::TcpStream>| {
        let line = c.ok("GETQUOTA \"\"").lines[0].clone();
        let inner = line.trim_start_matches("* QUOTA \"\" (STORAGE ").trim_end_matches(')').to_string();
        let (used, limit) = inner.split_once(' ').unwrap();
        (used.parse::<u64>().unwrap(), limit.parse::<u64>().unwrap())
    };
    let kib = |bytes: usize| (bytes as u64).div_ceil(1024);
    let p = part.len();
    assert_eq!(usage(&mut c), (kib(3 * p), 976));
    c.ok("SELECT INBOX");
    let r = c.run("COPY 1:* Archive");
    assert!(r.done.starts_with("NO [OVERQUOTA]"), "{r:?}");
    assert_eq!(usage(&mut c).0, kib(3 * p), "a refused COPY stores nothing");
    assert!(c.run("COPY 1 Archive").ok(), "one fits");
    // A move within the account does not add to it.
    let r = c.run("MOVE 2 Archive");
    assert!(r.ok(), "{r:?}");
    assert_eq!(usage(&mut c).0, kib(4 * p));

    // SMTP: 500 KB does not fit: refused at the end of DATA, nothing stored.
    let big = format!("From: sender@remote.test\r\nSubject: big\r\n\r\n{}\r\n", "z".repeat(500_000));
    let mut smtp = s.smtp();
    smtp.hello();
    let r = smtp.transaction("sender@remote.test", &["alice@example.test"], format!("{big}.\r\n").as_bytes());
    assert_eq!((r.code, r.lines[0].starts_with("5.2.2")), (552, true), "{r:?}");
    // With another recipient the message is taken; the sender hears about alice.
    smtp.expect("MAIL FROM:<bob@example.test>", 250);
    smtp.expect("RCPT TO:<alice@example.test>", 250);
    smtp.expect("RCPT TO:<bob@example.test>", 250);
    smtp.expect("DATA", 354);
    smtp.send(format!("{big}.\r\n").as_bytes());
    assert_eq!(smtp.reply().code, 250);
    assert_eq!(usage(&mut c).0, kib(4 * p), "nothing stored for alice");
    let bob = s.mail_list("bob@example.test", "INBOX");
    assert_eq!(bob.len(), 2, "bob got the message and the report: {bob:?}");
    let report = String::from_utf8_lossy(&s.mail_show("bob@example.test", "INBOX", 2)).into_owned();
    assert!(report.contains("Status: 5.2.2") && report.contains("alice@example.test"), "{report}");
    // A declared SIZE that cannot fit, and a mailbox already full: 452 4.2.2 at RCPT.
    smtp.expect("MAIL FROM:<sender@remote.test> SIZE=300000", 250);
    let r = smtp.cmd("RCPT TO:<alice@example.test>");
    assert_eq!((r.code, r.lines[0].starts_with("4.2.2")), (452, true), "{r:?}");
    smtp.expect("RSET", 250);
    s.ok(&["user", "quota", "alice@example.test", "500000"]);
    smtp.expect("MAIL FROM:<sender@remote.test>", 250);
    let r = smtp.cmd("RCPT TO:<alice@example.test>");
    assert_eq!((r.code, r.lines[0].starts_with("4.2.2")), (452, true), "{r:?}");
    smtp.expect("RSET", 250);
    // Expunging frees the space; usage survives a restart.
    s.ok(&["user", "quota", "alice@example.test", "1000000"]);
    c.ok("SELECT Archive");
    c.ok("STORE 1:* +FLAGS (\\Deleted)");
    c.ok("EXPUNGE");
    assert_eq!(usage(&mut c).0, kib(2 * p));
    s.kill9();
    s.launch();
    let mut c = s.imap_login("alice@example.test");
    assert_eq!(usage(&mut c).0, kib(2 * p));
    s.deliver("alice@example.test", big.as_bytes());
    assert!(usage(&mut c).0 > kib(2 * p + 500_000), "delivered once it fits");
}

#[test]
fn bad_input_gets_bad_and_the_session_continues() {
    let s = TestServer::started("");
    let mut c = s.imap();
    for bad in ["", "NOOP", "a1 FROB", "a2 SELECT", "a3 FETCH", "a4 LOGIN \"unterminated", "a5 NOOP NOOP", "* NOOP"] {
        c.send_line(bad);
        let line = c.line();
        assert!(line.contains("BAD"), "{bad:?} -> {line}");
    }
    c.ok("NOOP");
    // Before login, literals are small and LITERAL- applies: 4 KiB non-synchronizing max.
    let tag = c.tag();
    c.send_line(&format!("{tag} LOGIN {{100000}}"));
    assert!(c.finish(&tag).done.starts_with("NO [TOOBIG]"));
    let big = "y".repeat(5000);
    c.send(format!("x9 LOGIN {{5000+}}\r\n{big} pw\r\n").as_bytes());
    let line = c.line();
    assert!(line.starts_with("* BYE [TOOBIG]") || line.starts_with("x9 BAD [TOOBIG]"), "{line}");
    // A 10 MB line after login.
    let mut c = s.imap_login("alice@example.test");
    let before = s.rss_kib();
    let mut line = b"x1 SEARCH SUBJECT ".to_vec();
    line.extend(std::iter::repeat_n(b'z', 10 * 1024 * 1024));
    line.extend_from_slice(b"\r\n");
    c.c.send(&line);
    assert!(c.line().starts_with("x1 BAD [TOOBIG]"));
    c.ok("NOOP");
    let deep = format!("SEARCH {}ALL{}", "(".repeat(500), ")".repeat(500));
    assert!(c.run(&deep).done.starts_with("BAD"));
    assert!(s.rss_kib() < before + 32 * 1024, "memory grew");
    c.ok("SELECT INBOX");
    assert!(c.run("FETCH 1:* (BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27.28.29.30.31.32.33.34.35.36.37.38.39.40.41.42.43.44.45.46.47.48.49.50.51.52.53.54.55.56.57.58.59.60.61.62.63.64.65])").done.starts_with("BAD"));
}

#[test]
fn compress_deflate_with_python() {
    let s = TestServer::started("");
    s.deliver("alice@example.test", simple("compressed").as_bytes());
    let out = python("imap_compress.py", &["--port", &s.imap.port().to_string()]);
    assert!(out.contains("compressed fetch ok"), "{out}");
}

#[test]
fn imaplib_client_workflow() {
    let s = TestServer::started("");
    s.deliver("alice@example.test", MULTIPART.as_bytes());
    s.deliver("alice@example.test", simple("second").as_bytes());
    let out = python("imap_workflow.py", &["--port", &s.imap.port().to_string()]);
    assert!(out.contains("workflow ok"), "{out}");
}

#[test]
fn unknown_mailbox_and_states() {
    let s = TestServer::started("");
    let mut c = s.imap_login("alice@example.test");
    assert!(c.run("SELECT Nope").done.starts_with("NO [NONEXISTENT]"));
    assert!(c.run("FETCH 1 FLAGS").done.starts_with("BAD"), "FETCH without a selected mailbox");
    assert!(c.run("STATUS Nope (MESSAGES)").done.starts_with("NO [NONEXISTENT]"));
    c.ok("SELECT INBOX");
    assert!(c.run("ENABLE CONDSTORE").done.starts_with("BAD"), "ENABLE after SELECT");
    c.ok("UNSELECT");
    assert!(c.run("CLOSE").done.starts_with("BAD"));
}

#[test]
fn hostile_mime_structures_are_bounded() {
    let s = TestServer::started("");
    let mut deep = String::new();
    for i in 0..3000 {
        deep.push_str(&format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"));
    }
    deep.push_str("\r\nleaf\r\n");
    s.deliver("alice@example.test", format!("Subject: deep\r\n{deep}").as_bytes());
    let mut wide = String::from("Subject: wide\r\nContent-Type: multipart/mixed; boundary=\"w\"\r\n\r\n");
    for _ in 0..20_000 {
        wide.push_str("--w\r\nContent-Type: text/plain\r\n\r\nx\r\n");
    }
    wide.push_str("--w--\r\n");
    s.deliver("alice@example.test", wide.as_bytes());
    let mut c = s.imap_login("alice@example.test");
    c.ok("SELECT INBOX");
    let bs = c.ok("FETCH 1:2 (BODYSTRUCTURE BODY.PEEK[1.1.1.1])");
    assert_eq!(bs.untagged("1 FETCH").len() + bs.untagged("2 FETCH").len(), 2);
    assert!(bs.all().len() < 2_000_000, "bounded structure output");
    c.ok("SEARCH BODY leaf");
    c.ok("NOOP");
}

#[test]
fn failed_logins_are_slowed_then_banned() {
    let s = TestServer::started("[limits]\nexempt = []\nauth_failures_before_ban = 3\nban_seconds = 60\n");
    let mut c = s.imap();
    let started = Instant::now();
    for _ in 0..2 {
        assert!(c.run("LOGIN alice@example.test wrong").done.starts_with("NO [AUTHENTICATIONFAILED]"));
    }
    assert!(started.elapsed() >= Duration::from_millis(1400), "failures are answered slowly ({:?})", started.elapsed());
    assert!(c.run("LOGIN alice@example.test wrong").done.starts_with("NO"));
    // Banned now, even with the right password, and new connections are turned away.
    let r = c.run("LOGIN alice@example.test secret");
    assert!(r.done.starts_with("NO [UNAVAILABLE]"), "{r:?}");
    let mut again = Client::connect(s.imap);
    let line = again.raw_line().unwrap();
    assert!(line.starts_with("* BYE"), "{line}");
}

#[test]
fn authenticate_scram_sha_256_with_imaplib() {
    let server = TestServer::started("");
    server.deliver("alice@example.test", simple("scram").as_bytes());
    let port = server.imaps.port().to_string();
    let (ok, out, err) = python_result("imap_scram.py", &[&port, "alice@example.test", "secret", "--tls"]);
    assert!(ok && out.starts_with("ok 1"), "{out}{err}\n{}", server.log());
    let (ok, out, _) = python_result("imap_scram.py", &[&port, "alice@example.test", "wrong", "--tls"]);
    assert!(!ok && out.contains("refused"), "{out}");
    let (ok, out, _) = python_result("imap_scram.py", &[&port, "nobody@example.test", "x", "--tls"]);
    assert!(!ok && out.contains("refused"), "unknown users fail like wrong passwords: {out}");
    // CAPABILITY over TLS 1.3 lists the mechanisms, -PLUS included.
    let mut c = Client::connect(server.imaps).into_tls();
    let greeting = c.raw_line().unwrap();
    assert!(greeting.contains("AUTH=SCRAM-SHA-256") && greeting.contains("AUTH=SCRAM-SHA-256-PLUS"), "{greeting}");
}

/// RFC 3516: a message APPENDed as a `literal8` is stored byte for byte (a LF, CR or NUL in
/// a binary part is data), BINARY returns it decoded and exact, BODY sends NUL as 0x80.
#[test]
fn binary_append_keeps_every_byte_and_binary_fetch_decodes() {
    let s = TestServer::started("");
    let mut c = s.imap_login("alice@example.test");
    let blob: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
    let mut single = b"From: a@example.test\r\nSubject: bin\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n".to_vec();
    let body_at = single.len();
    single.extend_from_slice(&blob);
    let mut multi = b"From: a@example.test\nSubject: multi\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\r\nContent-Type: text/plain\r\n\r\nhi \x00 there\r\n--XX\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: binary\r\n\r\n".to_vec();
    multi.extend_from_slice(&blob);
    multi.extend_from_slice(b"\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSoft=  \r\nbreak caf=C3=A9 trailing   \r\nend=20\r\n--XX--\r\n");
    // Synchronizing literal8 for the first, non-synchronizing for the second.
    let tag = c.tag();
    c.send_line(&format!("{tag} APPEND INBOX ~{{{}}}", single.len()));
    assert!(c.line().starts_with("+ "));
    c.send(&single);
    c.send_line("");
    assert!(c.finish(&tag).done.starts_with("OK [APPENDUID"));
    let tag = c.tag();
    c.send(format!("{tag} APPEND INBOX ~{{{}+}}\r\n", multi.len()).as_bytes());
    c.send(&multi);
    c.send_line("");
    assert!(c.finish(&tag).done.starts_with("OK [APPENDUID"));
    c.ok("SELECT INBOX");

    let (lits, done) = c.literals("FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1] BODY.PEEK[] BODY.PEEK[1])");
    assert!(done.starts_with("OK"), "{done}");
    assert!(lits[0].0.ends_with("BINARY[1] ~{1024}"), "{:?}", lits[0].0);
    assert_eq!(lits[0].1, blob, "BINARY[1] returns the stored bytes");
    assert!(lits[1].0.contains("BINARY.SIZE[1] 1024 "), "{:?}", lits[1].0);
    let text_form: Vec<u8> = blob.iter().map(|&b| if b == 0 { 0x80 } else { b }).collect();
    assert_eq!(&lits[1].1[..body_at], &single[..body_at]);
    assert_eq!(&lits[1].1[body_at..], &text_form[..], "BODY[] sends NUL as 0x80, nothing else changed");
    assert_eq!(lits[2].1, text_form);

    let (lits, done) =
        c.literals("FETCH 2 (BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[3] BINARY.SIZE[3] BINARY.PEEK[3]<0.10> BODY.PEEK[HEADER])");
    assert!(done.starts_with("OK"), "{done}");
    assert!(lits[0].0.ends_with("BINARY[1] ~{10}"), "{:?}", lits[0].0);
    assert_eq!(lits[0].1, b"hi \x00 there");
    assert_eq!(lits[1].1, blob);
    assert!(lits[2].0.contains("BINARY.SIZE[2] 1024 "), "{:?}", lits[2].0);
    // Quoted-printable decoded per RFC 2045 §6.7: soft break with padding, =XX, trailing
    // white space removed; the partial fetch cuts the decoded text.
    assert_eq!(lits[2].1, "Softbreak café trailing\r\nend ".as_bytes());
    assert!(lits[3].0.contains("BINARY.SIZE[3] 30 "), "{:?}", lits[3].0);
    assert!(lits[3].0.ends_with("BINARY[3]<0> {10}"), "{:?}", lits[3].0);
    assert_eq!(lits[3].1, b"Softbreak ");
    // The header of a literal8 message is stored with CRLF.
    assert!(lits[4].1.starts_with(b"From: a@example.test\r\nSubject: multi\r\n"), "{:?}", lits[4].1);

    // A large base64 part (decoded off the async workers) and an unknown encoding (RFC 3516
    // §4.2: NO [UNKNOWN-CTE], with no FETCH response begun for it).
    use base64::Engine;
    let big: Vec<u8> = (0..400_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&big);
    let lines: Vec<&str> = encoded.as_bytes().chunks(76).map(|l| std::str::from_utf8(l).unwrap()).collect();
    let large = format!(
        "From: a@example.test\r\nSubject: large\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--B\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-rot13\r\n\r\nuryyb\r\n--B--\r\n",
        lines.join("\r\n")
    );
    let tag = c.tag();
    c.send(format!("{tag} APPEND INBOX {{{}+}}\r\n", large.len()).as_bytes());
    c.send(large.as_bytes());
    c.send_line("");
    assert!(c.finish(&tag).done.starts_with("OK [APPENDUID"));
    c.ok("NOOP");
    let (lits, done) = c.literals("FETCH 3 (BINARY.SIZE[1] BINARY.PEEK[1])");
    assert!(done.starts_with("OK"), "{done}");
    assert!(lits[0].0.contains("BINARY.SIZE[1] 400000 "), "{:?}", lits[0].0);
    assert_eq!(lits[0].1, big);
    let r = c.run("FETCH 3 (UID BINARY.PEEK[2])");
    assert!(r.done.starts_with("NO [UNKNOWN-CTE]"), "{:?}", r.done);
    assert!(r.untagged("3 FETCH").is_empty(), "{}", r.all());
}

/// Issue 10: defects an IMAP compliance tester found (keywords, STATUS RECENT, CONDSTORE,
/// MOVE/COPY to the selected mailbox, atoms with `~`, ID at RFC 2971's limits).
#[test]
fn imap_conformance_fixes() {
    let s = TestServer::started("");
    // ID before login, at RFC 2971's limits: 30 fields of 30 octets, values of 1,024.
    let mut c = s.imap();
    let params: String =
        (0..30).map(|i| format!("\"{:0>30}\" \"{}\" ", i, "v".repeat(1024))).collect::<String>().trim_end().to_string();
    let r = c.run(&format!("ID ({params})"));
    assert!(r.ok(), "{}", r.done);
    c.ok("LOGIN alice@example.test secret");
    // `~` is an ATOM-CHAR; only `~{` starts a literal8.
    assert!(c.run("CREATE ~foo").ok());
    let r = c.ok("LIST \"\" ~foo");
    assert_eq!(r.untagged("LIST"), vec!["LIST (\\HasNoChildren) \"/\" ~foo"], "{r:?}");
    assert!(c.run("SELECT ~foo").ok());
    for i in 0..2 {
        let msg = simple(&format!("k{i}"));
        assert!(c.run(&format!("APPEND INBOX {{{}+}}\r\n{msg}", msg.len())).ok());
    }

    // Keywords: a new one is announced with FLAGS and PERMANENTFLAGS before a FETCH shows
    // it, to this session and to another with the mailbox selected (RFC 9051 §7.3.5).
    c.ok("SELECT INBOX");
    let mut other = s.imap_login("alice@example.test");
    other.ok("SELECT INBOX");
    let r = c.ok("STORE 1 +FLAGS ($Custom1)");
    let lines = r.all();
    let flags_at = lines.find("* FLAGS (").expect("FLAGS before the FETCH");
    let permanent_at = lines.find("* OK [PERMANENTFLAGS (").expect("PERMANENTFLAGS");
    let fetch_at = lines.find("* 1 FETCH").expect("the FETCH");
    assert!(flags_at < fetch_at && permanent_at < fetch_at, "{lines}");
    assert!(lines[flags_at..].lines().next().unwrap().contains("$Custom1"), "{lines}");
    let r = other.ok("NOOP");
    let lines = r.all();
    assert!(lines.find("* FLAGS (").unwrap() < lines.find("* 1 FETCH").unwrap(), "{lines}");
    // Already listed: not again.
    assert!(!c.ok("STORE 2 +FLAGS ($Custom1)").all().contains("* FLAGS"));

    // STATUS RECENT of the selected mailbox after this session's APPEND: the session holds
    // the new message as \Recent, so nobody else counts it.
    let msg = simple("recent");
    let r = c.run(&format!("APPEND INBOX {{{}+}}\r\n{msg}", msg.len()));
    assert!(r.ok());
    let r = c.ok("STATUS INBOX (RECENT MESSAGES)");
    assert_eq!(r.untagged("STATUS"), vec!["STATUS INBOX (RECENT 0 MESSAGES 3)"], "{r:?}");
    assert!(c.ok("FETCH 3 FLAGS").all().contains("\\Recent"));
    let mut third = s.imap_login("alice@example.test");
    let r = third.ok("SELECT INBOX");
    assert!(r.all().contains("* 0 RECENT"), "another session sees no \\Recent: {r:?}");

    // CONDSTORE: the first enabling command reports HIGHESTMODSEQ (RFC 7162 §3.1).
    let mut d = s.imap_login("alice@example.test");
    d.ok("SELECT INBOX");
    let r = d.ok("FETCH 1 (FLAGS MODSEQ)");
    let lines = r.all();
    assert!(lines.starts_with("* OK [HIGHESTMODSEQ "), "{lines}");
    assert!(!d.ok("FETCH 1 (MODSEQ)").all().contains("HIGHESTMODSEQ"));
    // SEARCH RETURN (MIN)/(MAX) with MODSEQ: the returned message's modseq (RFC 4731 §3.2).
    let modseqs: Vec<u64> = d
        .ok("FETCH 1:3 (MODSEQ)")
        .lines
        .iter()
        .filter_map(|l| l.split("MODSEQ (").nth(1).and_then(|m| m.split(')').next()).and_then(|m| m.parse().ok()))
        .collect();
    assert_eq!(modseqs.len(), 3);
    let r = d.ok("SEARCH RETURN (MIN) MODSEQ 1");
    assert_eq!(r.untagged("ESEARCH"), vec![format!("ESEARCH (TAG \"t{}\") MIN 1 MODSEQ {}", d.next, modseqs[0])]);
    let r = d.ok("SEARCH RETURN (MAX) MODSEQ 1");
    assert_eq!(r.untagged("ESEARCH"), vec![format!("ESEARCH (TAG \"t{}\") MAX 3 MODSEQ {}", d.next, modseqs[2])]);

    // COPY and MOVE into the selected mailbox itself work, with COPYUID.
    let r = c.ok("UID COPY 1 INBOX");
    assert!(r.done.starts_with("OK [COPYUID "), "{r:?}");
    let r = c.ok("UID MOVE 2 INBOX");
    let lines = r.all();
    assert!(lines.contains("* OK [COPYUID ") && lines.contains(" EXPUNGE"), "{lines}");
    let r = c.ok("UID SEARCH ALL");
    assert_eq!(r.untagged("SEARCH"), vec!["SEARCH 1 3 4 5"], "{r:?}");
}

/// Issue 10: LIST-EXTENDED (RFC 5258) and LSUB with the RFC's own examples: a deleted but
/// subscribed mailbox is \NonExistent, RECURSIVEMATCH reports CHILDINFO, LSUB shows a
/// parent that is not subscribed as \Noselect.
#[test]
fn list_extended_follows_rfc5258_examples() {
    let s = TestServer::started("");
    let mut c = s.imap_login("alice@example.test");
    for m in [
        "Fruit",
        "Fruit/Apple",
        "Fruit/Banana",
        "Fruit/Peach",
        "Tofu",
        "Vegetable",
        "Vegetable/Broccoli",
        "Vegetable/Corn",
    ] {
        c.ok(&format!("CREATE {m}"));
        c.ok(&format!("UNSUBSCRIBE {m}"));
    }
    for m in ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"] {
        c.ok(&format!("UNSUBSCRIBE {m}"));
    }
    for m in ["Fruit/Banana", "Fruit/Peach", "Vegetable", "Vegetable/Broccoli"] {
        c.ok(&format!("SUBSCRIBE {m}"));
    }
    c.ok("DELETE Fruit/Peach");
    // Example 2.
    let r = c.ok("LIST (SUBSCRIBED) \"\" \"*\"");
    assert_eq!(
        r.untagged("LIST"),
        vec![
            "LIST (\\HasNoChildren \\Subscribed) \"/\" Fruit/Banana",
            "LIST (\\NonExistent \\Subscribed) \"/\" Fruit/Peach",
            "LIST (\\HasChildren \\Subscribed) \"/\" Vegetable",
            "LIST (\\HasNoChildren \\Subscribed) \"/\" Vegetable/Broccoli",
        ]
    );
    // RECURSIVEMATCH on "%": Fruit is not subscribed but has subscribed children.
    let r = c.ok("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)");
    assert_eq!(
        r.untagged("LIST"),
        vec![
            "LIST (\\HasChildren) \"/\" Fruit (\"CHILDINFO\" (\"SUBSCRIBED\"))",
            "LIST (\\HasChildren \\Subscribed) \"/\" Vegetable (\"CHILDINFO\" (\"SUBSCRIBED\"))",
        ]
    );
    // Example 6: RETURN (SUBSCRIBED) lists existing mailboxes only.
    let r = c.ok("LIST \"\" \"Fruit*\" RETURN (SUBSCRIBED)");
    assert_eq!(
        r.untagged("LIST"),
        vec![
            "LIST (\\HasChildren) \"/\" Fruit",
            "LIST (\\HasNoChildren) \"/\" Fruit/Apple",
            "LIST (\\HasNoChildren \\Subscribed) \"/\" Fruit/Banana",
        ]
    );
    // RFC 3501 §6.3.9: LSUB "" % lists Fruit as \Noselect.
    let r = c.ok("LSUB \"\" \"%\"");
    assert_eq!(r.untagged("LSUB"), vec!["LSUB (\\Noselect) \"/\" Fruit", "LSUB () \"/\" Vegetable"]);
    // Created again, the mailbox is subscribed as before.
    c.ok("CREATE Fruit/Peach");
    let r = c.ok("LIST \"\" Fruit/Peach RETURN (SUBSCRIBED)");
    assert_eq!(r.untagged("LIST"), vec!["LIST (\\HasNoChildren \\Subscribed) \"/\" Fruit/Peach"]);
    // Subscribing to a name without a mailbox is allowed; unsubscribing ends it.
    c.ok("SUBSCRIBE Nowhere");
    assert_eq!(c.ok("LSUB \"\" Nowhere").untagged("LSUB"), vec!["LSUB (\\Noselect) \"/\" Nowhere"]);
    c.ok("UNSUBSCRIBE Nowhere");
    assert!(c.ok("LSUB \"\" Nowhere").untagged("LSUB").is_empty());
}

/// Issue 10: SORT (RFC 5256) compares base subjects (encoded words decoded, `Re:`, `Fwd:`,
/// `[fwd: ...]`, `(fwd)` and list tags removed); CC sorts on the first address's mailbox and
/// DISPLAYTO (RFC 5957) on the decoded display name, or the address without one.
#[test]
fn sort_by_base_subject_cc_and_display_names() {
    let s = TestServer::started("");
    let mut c = s.imap_login("alice@example.test");
    let messages = [
        "Subject: Re: [list] Fwd: apple (fwd)\r\nTo: Zed <zed@x.test>\r\nCc: bob@x.test\r\n\r\n1\r\n",
        "Subject: =?utf-8?q?banana?=\r\nTo: =?utf-8?q?Adam?= <z2@x.test>\r\nCc: \"Someone\" <alice@x.test>, zz@x.test\r\n\r\n2\r\n",
        "Subject: [fwd: Cherry]\r\nTo: carol@x.test\r\n\r\n3\r\n",
        "Subject: RE: Banana\r\nTo: b@x.test (Bee)\r\nCc: Group: ann@x.test;\r\n\r\n4\r\n",
    ];
    for m in messages {
        assert!(c.run(&format!("APPEND INBOX {{{}+}}\r\n{m}", m.len())).ok());
    }
    c.ok("SELECT INBOX");
    let sort = |c: &mut Imap<std::net::TcpStream>, criteria: &str| {
        c.ok(&format!("SORT ({criteria}) UTF-8 ALL")).untagged("SORT")[0].to_string()
    };
    assert_eq!(sort(&mut c, "SUBJECT"), "SORT 1 2 4 3");
    assert_eq!(sort(&mut c, "REVERSE SUBJECT"), "SORT 3 2 4 1");
    // "" < alice < ann < bob.
    assert_eq!(sort(&mut c, "CC"), "SORT 3 2 4 1");
    // adam < bee < carol@x.test < zed.
    assert_eq!(sort(&mut c, "DISPLAYTO"), "SORT 2 4 3 1");
    // Mailboxes: b < carol < z2 < zed.
    assert_eq!(sort(&mut c, "TO"), "SORT 4 3 2 1");
}

/// APPEND takes its memory from the budget SMTP uses (`smtp.max_inflight_bytes`): when it is
/// spent, the continuation request waits until memory is free instead of memory growing.
#[test]
fn append_waits_for_memory_when_the_budget_is_spent() {
    let s = TestServer::started("[smtp]\nmax_message_size = 1048576\nmax_inflight_bytes = 1048576\n");
    let message = |name: &str| {
        let mut m = format!("From: a@example.test\r\nSubject: {name}\r\n\r\n").into_bytes();
        while m.len() < 700_000 {
            m.extend_from_slice(b"a line of a large appended message, to fill the budget\r\n");
        }
        m.truncate(700_000);
        m
    };
    let first = message("first");
    let mut a = s.imap_login("alice@example.test");
    let mut b = s.imap_login("alice@example.test");
    a.send_line("a1 APPEND INBOX {700000}");
    assert!(a.line().starts_with("+ "));
    a.send(&first[..350_000]);
    let second = message("second");
    let waiting = std::thread::spawn(move || {
        b.send_line("b1 APPEND INBOX {700000}");
        let plus = b.line();
        let at = std::time::Instant::now();
        b.send(&second);
        b.send_line("");
        (plus, at, b.finish("b1"))
    });
    eventually(std::time::Duration::from_secs(20), "the second APPEND to wait for memory", || {
        s.log().contains("APPEND waits for memory").then_some(())
    });
    let released = std::time::Instant::now();
    a.send(&first[350_000..]);
    a.send_line("");
    assert!(a.finish("a1").done.starts_with("OK [APPENDUID"));
    let (plus, continued, done) = waiting.join().unwrap();
    assert!(plus.starts_with("+ "), "{plus}");
    assert!(continued >= released, "the second APPEND went on only once the first was done");
    assert!(done.done.starts_with("OK [APPENDUID"), "{:?}", done.done);
    let mut c = s.imap_login("alice@example.test");
    let r = c.run("STATUS INBOX (MESSAGES)");
    assert!(r.all().contains("MESSAGES 2"), "{}", r.all());
}
