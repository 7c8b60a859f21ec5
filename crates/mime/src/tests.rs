use super::*;

const SIMPLE: &[u8] = b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\r\nTo: a@example.net\r\nSubject: Hello\r\n there\r\nDate: Tue, 1 Jul 2025 10:00:00 +0000\r\nMessage-ID: <id1@example.org>\r\nReferences: <r1@x> <r2@x>\r\n\r\nline one\r\nline two\r\n";

#[test]
fn simple_message() {
    let s = summarize(SIMPLE);
    assert_eq!(s.size, SIMPLE.len() as u64);
    assert_eq!(s.subject, "Hello there");
    assert_eq!(s.from, "Jörg <jorg@example.org>");
    assert_eq!(s.message_id.as_deref(), Some("id1@example.org"));
    assert_eq!(s.references, vec!["r1@x".to_string(), "r2@x".to_string()]);
    assert_eq!(s.date, Some(1751364000));
    assert_eq!(s.sent_day, Some(1751364000 / 86400));
    assert_eq!(s.from_addrs, vec![Addr { name: Some("Jörg".into()), address: "jorg@example.org".into() }]);
    assert_eq!(s.to_addrs[0].display(), "a@example.net");
    assert_eq!(s.envelope.from.as_deref(), Some(&b"=?utf-8?q?J=C3=B6rg?= <jorg@example.org>"[..]));
    assert_eq!(s.envelope.subject.as_deref(), Some(&b"Hello there"[..]));
    assert_eq!((s.body.media_type.as_str(), s.body.subtype.as_str()), ("text", "plain"));
    assert_eq!(s.body.lines, 2);
    assert_eq!(&SIMPLE[s.body.offset_body as usize..s.body.offset_end as usize], b"line one\r\nline two\r\n");
}

#[test]
fn multipart_with_nested_message() {
    let raw = b"Subject: outer\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: x@y.z\r\n\r\ninner body\r\n--b1\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b1--\r\n";
    let s = summarize(raw);
    let PartKind::Multipart(children) = &s.body.kind else { panic!("{:?}", s.body) };
    assert_eq!(children.len(), 3);
    assert_eq!(children[0].params, vec![(b"charset".to_vec(), b"utf-8".to_vec())]);
    let PartKind::Message(env, inner) = &children[1].kind else { panic!("{:?}", children[1]) };
    assert_eq!(env.subject.as_deref(), Some(&b"inner"[..]));
    assert_eq!(&raw[inner.offset_body as usize..inner.offset_end as usize], b"inner body");
    assert_eq!(children[2].encoding.as_deref(), Some("base64"));
    assert_eq!(children[2].disposition.as_ref().map(|d| d.0.as_str()), Some("attachment"));
    assert!(s.has_attachment());
}

#[test]
fn deep_nesting_is_bounded() {
    let depth = 2000;
    let mut raw = Vec::new();
    for i in 0..depth {
        raw.extend_from_slice(format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\nleaf\r\n");
    let s = summarize(&raw);
    fn depth_of(p: &BodyPart) -> usize {
        match &p.kind {
            PartKind::Multipart(c) => 1 + c.iter().map(depth_of).max().unwrap_or(0),
            PartKind::Message(_, b) => 1 + depth_of(b),
            PartKind::Leaf => 0,
        }
    }
    assert!(depth_of(&s.body) <= MAX_DEPTH);
}

#[test]
fn many_parts_are_bounded() {
    let mut raw = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n".to_vec();
    for _ in 0..10_000 {
        raw.extend_from_slice(b"--b\r\n\r\nx\r\n");
    }
    raw.extend_from_slice(b"--b--\r\n");
    let s = summarize(&raw);
    let PartKind::Multipart(children) = &s.body.kind else { panic!() };
    assert!(children.len() < MAX_PARTS);
}

#[test]
fn garbage_does_not_panic() {
    for raw in [&b""[..], b"\r\n", b"no header at all", b"Content-Type: multipart/mixed\r\n\r\n--\r\n"] {
        let s = summarize(raw);
        assert_eq!(s.size, raw.len() as u64);
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_input_never_panics(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
        let s = summarize(&raw);
        proptest::prop_assert!(s.body.offset_end as usize <= raw.len() || raw.is_empty());
    }
}
