use super::*;
use tern_imap_proto::{SeqNumber, SeqRange};
use tern_store::BlobHash;

fn entry(uid: u32, flags: Flags, size: u64, date: i64) -> MessageEntry {
    MessageEntry {
        mailbox: 1,
        uid,
        blob: BlobHash([0; 32]),
        size,
        internal_date: date,
        flags,
        keywords: vec!["work".into()],
        modseq: uid as u64,
        email_id: uid as u64,
        thread_id: 1,
        delivery_id: 1,
        saved: date + 3600,
    }
}

fn summary(raw: &str) -> Arc<crate::Summary> {
    Arc::new(crate::Summary::hot(tern_mime::summarize(raw.as_bytes())))
}

#[test]
fn needs_are_minimal() {
    assert_eq!(compile(&SearchKey::Seen).needs, Needs::default());
    assert!(compile(&SearchKey::Or(Box::new(SearchKey::Seen), Box::new(SearchKey::From("x".into())))).needs.summary);
    let t = compile(&SearchKey::Not(Box::new(SearchKey::Text("x".into())))).needs;
    assert!(t.text && t.header && !t.summary);
}

#[test]
fn compiling_numbers_each_text_string_once() {
    let or = |a, b| SearchKey::Or(Box::new(a), Box::new(b));
    let key = SearchKey::And(vec![
        or(SearchKey::Body("Foo".into()), SearchKey::Text("foo".into())),
        or(SearchKey::Body("FOO".into()), SearchKey::ModSeq(3)),
        SearchKey::Header("X-A".into(), "B".into()),
    ]);
    let c = compile(&key);
    assert_eq!(c.needles, vec![("foo".to_string(), false), ("foo".to_string(), true)]);
    assert_eq!(c.keys, 8);
    assert!(c.modseq && c.header_key && c.needs.text && c.needs.header);
    let Program::And(parts) = &c.program else { panic!("{:?}", c.program) };
    assert_eq!(parts[0], Program::Or(Box::new(Program::Text(0)), Box::new(Program::Text(1))));
    assert_eq!(parts[2], Program::Key(SearchKey::Header("x-a".into(), "b".into())));
}

#[test]
fn flag_size_date_set_and_header_keys() {
    let e = entry(7, Flags::SEEN.union(Flags::FLAGGED), 1000, 1_700_000_000);
    let s = summary(
        "From: \"Jörg Müller\" <jm@example.org>\r\nTo: =?utf-8?q?Ann?= <ann@x.test>\r\nSubject: Re: Quarterly report\r\nDate: Mon, 13 Nov 2023 23:30:00 -0800\r\nX-Priority: 1 (High)\r\n\r\nbody\r\n",
    );
    let header = header_text(b"From: \"J\xc3\xb6rg M\xc3\xbcller\" <jm@example.org>\r\nTo: =?utf-8?q?Ann?= <ann@x.test>\r\nX-Priority: 1 (High)\r\n\r\n");
    let c = Candidate {
        entry: &e,
        seq: 3,
        fields: Some(Arc::new(crate::SearchFields::of(&s.message))),
        header: Some(header),
        text: Some("hello world".into()),
    };
    let m = |k: SearchKey| {
        let compiled = compile(&k);
        let no_index = vec![None; compiled.needles.len()];
        let mut recent = crate::mailbox::Recent::none();
        recent.add(8..100);
        let scope = Scope {
            now: 1_700_000_000 + 600,
            last_seq: 5,
            last_uid: 9,
            recent: &recent,
            saved: &[],
            needles: &compiled.needles,
            text_index: &no_index,
        };
        matches(&compiled.program, &c, &scope)
    };
    assert!(m(SearchKey::Seen) && m(SearchKey::Flagged) && !m(SearchKey::Unseen) && m(SearchKey::Undeleted));
    assert!(m(SearchKey::Old) && !m(SearchKey::Recent) && !m(SearchKey::New));
    assert!(m(SearchKey::Keyword("WORK".into())) && m(SearchKey::Unkeyword("home".into())));
    assert!(m(SearchKey::Keyword("\\Seen".into())));
    assert!(m(SearchKey::Larger(999)) && !m(SearchKey::Larger(1000)) && m(SearchKey::Smaller(1001)));
    // 1_700_000_000 is 2023-11-14 UTC.
    assert!(m(SearchKey::On(Date { year: 2023, month: 11, day: 14 })));
    assert!(
        m(SearchKey::Since(Date { year: 2023, month: 11, day: 14 }))
            && !m(SearchKey::Before(Date { year: 2023, month: 11, day: 14 }))
    );
    // RFC 5032 WITHIN: the message arrived 600 s before the search.
    assert!(m(SearchKey::Younger(600)) && !m(SearchKey::Younger(599)));
    assert!(m(SearchKey::Older(599)) && !m(SearchKey::Older(600)));
    // RFC 8514: saved an hour after it arrived, the same day.
    assert!(m(SearchKey::SavedOn(Date { year: 2023, month: 11, day: 14 })) && m(SearchKey::SaveDateSupported));
    assert!(!m(SearchKey::SavedBefore(Date { year: 2023, month: 11, day: 14 })));
    // The Date header's own calendar day, zone disregarded: 13 Nov.
    assert!(m(SearchKey::SentOn(Date { year: 2023, month: 11, day: 13 })));
    assert!(
        m(SearchKey::From("müller".into()))
            && m(SearchKey::From("JM@EXAMPLE".into()))
            && !m(SearchKey::From("bob".into()))
    );
    assert!(m(SearchKey::To("ann".into())));
    assert!(m(SearchKey::Subject("quarterly".into())));
    assert!(
        m(SearchKey::Header("x-priority".into(), "high".into()))
            && m(SearchKey::Header("X-PRIORITY".into(), "".into()))
    );
    assert!(!m(SearchKey::Header("x-absent".into(), "".into())));
    assert!(m(SearchKey::Body("WORLD".into())) && !m(SearchKey::Body("mars".into())));
    assert!(m(SearchKey::Text("ann".into())));
    let set = |a, b| SequenceSet::Ranges(vec![SeqRange(SeqNumber::Value(a), b)]);
    assert!(
        m(SearchKey::SequenceSet(set(2, SeqNumber::Value(4)))) && !m(SearchKey::SequenceSet(set(4, SeqNumber::Last)))
    );
    assert!(!m(SearchKey::Uid(set(9, SeqNumber::Last))) && m(SearchKey::Uid(set(7, SeqNumber::Value(7)))));
    assert!(m(SearchKey::Or(Box::new(SearchKey::Deleted), Box::new(SearchKey::Seen))));
    assert!(!m(SearchKey::Not(Box::new(SearchKey::All))));
    assert!(m(SearchKey::ModSeq(7)) && !m(SearchKey::ModSeq(8)));
    assert!(m(SearchKey::EmailId(object_id("M", 7))));
}

#[test]
fn base_subjects() {
    for (raw, base, reply) in [
        ("Re: Fwd: [list] Hello World (fwd)", "hello world", true),
        ("[fwd: Re: Meeting]", "meeting", true),
        ("RE:   re[2]: budget", "budget", true),
        ("[PATCH] fix", "fix", false),
        ("[only a blob]", "[only a blob]", false),
        ("Plain", "plain", false),
        ("   ", "", false),
        ("Refactor: things", "refactor: things", false),
    ] {
        assert_eq!(subject_info(raw), (base.to_string(), reply), "{raw}");
    }
}

fn item(seq: u32, raw: &str) -> SortItem {
    SortItem::new(seq, seq * 10, seq as u64, 1000 - seq as i64, summary(raw))
}

#[test]
fn sorting() {
    let mut items = vec![
        item(1, "From: zed@x\r\nSubject: b\r\nDate: Mon, 13 Nov 2023 10:00:00 +0000\r\n\r\n"),
        item(2, "From: amy@x\r\nSubject: Re: a\r\nDate: Mon, 13 Nov 2023 09:00:00 +0000\r\n\r\n"),
        item(3, "From: amy@x\r\nSubject: c\r\nDate: Mon, 13 Nov 2023 11:00:00 +0000\r\n\r\n"),
    ];
    let order = |items: &[SortItem]| items.iter().map(|i| i.seq).collect::<Vec<_>>();
    sort(&mut items, &[SortCriterion { reverse: false, key: SortKey::Subject }]);
    assert_eq!(order(&items), vec![2, 1, 3]);
    sort(
        &mut items,
        &[SortCriterion { reverse: false, key: SortKey::From }, SortCriterion { reverse: true, key: SortKey::Date }],
    );
    assert_eq!(order(&items), vec![3, 2, 1]);
    sort(&mut items, &[SortCriterion { reverse: false, key: SortKey::Arrival }]);
    assert_eq!(order(&items), vec![3, 2, 1]);
    sort(&mut items, &[SortCriterion { reverse: true, key: SortKey::Size }]);
    assert_eq!(order(&items), vec![3, 2, 1]);
}

fn threads_text(t: &[ThreadNode]) -> String {
    let mut out = Vec::new();
    write_threads(&mut out, t);
    String::from_utf8(out).unwrap()
}

#[test]
fn threading_by_references() {
    let items = vec![
        item(1, "Message-ID: <a@x>\r\nSubject: topic\r\nDate: Mon, 13 Nov 2023 01:00:00 +0000\r\n\r\n"),
        item(
            2,
            "Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nSubject: Re: topic\r\nDate: Mon, 13 Nov 2023 02:00:00 +0000\r\n\r\n",
        ),
        item(3, "Message-ID: <c@x>\r\nSubject: other\r\nDate: Mon, 13 Nov 2023 03:00:00 +0000\r\n\r\n"),
        item(
            4,
            "Message-ID: <d@x>\r\nReferences: <a@x> <b@x>\r\nSubject: Re: topic\r\nDate: Mon, 13 Nov 2023 04:00:00 +0000\r\n\r\n",
        ),
        item(
            5,
            "Message-ID: <e@x>\r\nReferences: <a@x>\r\nSubject: Re: topic\r\nDate: Mon, 13 Nov 2023 05:00:00 +0000\r\n\r\n",
        ),
        // Same subject, no references: grouped under the thread by subject.
        item(6, "Message-ID: <f@x>\r\nSubject: Re: other\r\nDate: Mon, 13 Nov 2023 06:00:00 +0000\r\n\r\n"),
        // Parent missing from the mailbox: two replies to it share a dummy.
        item(
            7,
            "Message-ID: <g@x>\r\nReferences: <missing@x>\r\nSubject: lost\r\nDate: Mon, 13 Nov 2023 07:00:00 +0000\r\n\r\n",
        ),
        item(
            8,
            "Message-ID: <h@x>\r\nReferences: <missing@x>\r\nSubject: lost\r\nDate: Mon, 13 Nov 2023 08:00:00 +0000\r\n\r\n",
        ),
    ];
    let t = thread_references(&items, |i| i.seq);
    assert_eq!(threads_text(&t), "(1 (2 4)(5))(3 6)((7)(8))");
    let o = thread_ordered_subject(&items, |i| i.seq);
    // RFC 5256: the first message is the parent, the others its children (siblings).
    assert_eq!(threads_text(&o), "(1 (2)(4)(5))(3 6)(7 8)");
}

#[test]
fn threading_survives_loops_and_duplicates() {
    let items = vec![
        item(1, "Message-ID: <a@x>\r\nReferences: <b@x>\r\nSubject: s\r\n\r\n"),
        item(2, "Message-ID: <b@x>\r\nReferences: <a@x>\r\nSubject: s\r\n\r\n"),
        item(3, "Message-ID: <a@x>\r\nSubject: s\r\n\r\n"),
    ];
    let t = thread_references(&items, |i| i.seq);
    let text = threads_text(&t);
    for n in ["1", "2", "3"] {
        assert!(text.contains(n), "{text}");
    }
}

#[test]
fn a_reply_chain_deeper_than_the_stack_allows_is_threaded() {
    // 12,000 messages, each the reply to the one before: the recursive steps of the algorithm
    // stop at MAX_THREAD_DEPTH instead of overflowing the 2 MiB stack of a pool thread.
    let items: Vec<SortItem> = (1..=12_000u32)
        .map(|n| {
            let parent = if n > 1 { format!("In-Reply-To: <m{}@x>\r\n", n - 1) } else { String::new() };
            item(n, &format!("Message-ID: <m{n}@x>\r\n{parent}Subject: chain\r\n\r\n"))
        })
        .collect();
    let threads = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || thread_references(&items, |i| i.seq))
        .expect("thread")
        .join()
        .expect("no stack overflow");
    assert_eq!(threads.len(), 1, "one thread");
    let (mut depth, mut node, mut seen) = (0, &threads[0], Vec::new());
    loop {
        seen.extend(node.id);
        match node.children.as_slice() {
            [only] => {
                depth += 1;
                node = only;
            }
            flat => {
                seen.extend(flat.iter().filter_map(|c| c.id));
                break;
            }
        }
    }
    assert_eq!(depth, 1_000, "nested down to the bound, flat below it");
    assert_eq!(seen, (1..=12_000).collect::<Vec<u32>>(), "every message, in order");
}
