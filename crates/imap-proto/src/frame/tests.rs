use super::*;

fn framer() -> CommandFramer {
    CommandFramer::new(Limits {
        max_line: 100,
        max_literal: 50,
        max_append_literal: 1000,
        max_literals: 4,
        max_discard: 5000,
        max_command: 150,
    })
}

#[test]
fn the_whole_command_is_bounded_but_not_the_appended_message() {
    let mut f = framer();
    // Lines and literals together over 150 bytes: refused, and the session goes on.
    assert_eq!(feed(&mut f, &[b"a ID (".as_slice(), &[b'x'; 80], b" {40+}\r\n"].concat()), vec![]);
    let frames = feed(&mut f, &[[b'y'; 40].as_slice(), &[b'z'; 30], b"\r\n"].concat());
    assert_eq!(frames, vec![Frame::TooLong { tag: Some("a".into()) }]);
    assert_eq!(feed(&mut f, b"b NOOP\r\n"), vec![Frame::Command(b"b NOOP".to_vec())]);
    // An APPEND's message does not count against it.
    assert_eq!(feed(&mut f, b"c APPEND INBOX {500+}\r\n").len(), 0);
    let frames = feed(&mut f, &[[b'm'; 500].as_slice(), b"\r\n"].concat());
    assert!(matches!(&frames[..], [Frame::Command(c)] if c.len() > 500), "{frames:?}");
}

fn feed(f: &mut CommandFramer, bytes: &[u8]) -> Vec<Frame> {
    let mut input = bytes.to_vec();
    let mut out = vec![];
    while let Some(frame) = f.next(&mut input) {
        out.push(frame);
    }
    assert!(input.is_empty());
    out
}

#[test]
fn plain_commands_and_pipelining() {
    let mut f = framer();
    assert_eq!(
        feed(&mut f, b"a NOOP\r\nb CAPABILITY\r\nc LOG"),
        vec![Frame::Command(b"a NOOP".to_vec()), Frame::Command(b"b CAPABILITY".to_vec())]
    );
    assert!(f.in_command());
    assert_eq!(feed(&mut f, b"OUT\n"), vec![Frame::Command(b"c LOGOUT".to_vec())]);
}

#[test]
fn synchronizing_literal_asks_for_continuation() {
    let mut f = framer();
    assert_eq!(feed(&mut f, b"a LOGIN {5}\r\n"), vec![Frame::Continue]);
    assert_eq!(feed(&mut f, b"al\r\nc"), vec![]);
    assert_eq!(feed(&mut f, b" {3}\r\n"), vec![Frame::Continue]);
    assert_eq!(feed(&mut f, b"pw\n\r\n"), vec![Frame::Command(b"a LOGIN {5}\r\nal\r\nc {3}\r\npw\n".to_vec())]);
}

#[test]
fn non_synchronizing_literal_flows_through() {
    let mut f = framer();
    assert_eq!(
        feed(&mut f, b"a LOGIN {2+}\r\nab {2+}\r\ncd\r\n"),
        vec![Frame::Command(b"a LOGIN {2+}\r\nab {2+}\r\ncd".to_vec())]
    );
}

#[test]
fn oversized_synchronizing_literal_is_refused_before_data() {
    let mut f = framer();
    assert_eq!(feed(&mut f, b"t1 LOGIN {51}\r\n"), vec![Frame::LiteralTooBig { tag: Some("t1".into()), sync: true }]);
    assert!(!f.in_command());
    // APPEND has its own limit.
    assert_eq!(feed(&mut f, b"t2 APPEND INBOX {500}\r\n"), vec![Frame::Continue]);
}

#[test]
fn oversized_non_synchronizing_literal_is_discarded_not_executed() {
    let mut f = framer();
    let mut bytes = b"t1 X {60+}\r\n".to_vec();
    bytes.extend_from_slice(b"t9 DELETE INBOX\r\nt8 DELETE INBOX\r\nt7 DELETE IN\r\n");
    bytes.extend_from_slice(b" rest of line\r\nt2 NOOP\r\n");
    assert_eq!(
        feed(&mut f, &bytes),
        vec![Frame::LiteralTooBig { tag: Some("t1".into()), sync: false }, Frame::Command(b"t2 NOOP".to_vec())]
    );
    assert_eq!(feed(&mut f, b"t3 X {100000+}\r\n"), vec![Frame::Fatal { tag: Some("t3".into()) }]);
}

#[test]
fn over_long_lines_cost_constant_memory() {
    let mut f = framer();
    for _ in 0..1000 {
        assert_eq!(feed(&mut f, &[b'x'; 1000]), vec![]);
        assert!(f.held() <= 100);
    }
    assert_eq!(feed(&mut f, b"\r\nt NOOP\r\n"), vec![Frame::TooLong { tag: None }, Frame::Command(b"t NOOP".to_vec())]);
    let mut line = b"tag2 SEARCH ".to_vec();
    line.extend_from_slice(&[b'a'; 200]);
    line.extend_from_slice(b"\r\n");
    assert_eq!(feed(&mut f, &line), vec![Frame::TooLong { tag: Some("tag2".into()) }]);
}

#[test]
fn too_many_literals() {
    let mut f = framer();
    let out = feed(&mut f, b"a X {1+}\r\na {1+}\r\nb {1+}\r\nc {1+}\r\nd {1+}\r\ne\r\nb NOOP\r\n");
    assert_eq!(
        out,
        vec![Frame::LiteralTooBig { tag: Some("a".into()), sync: false }, Frame::Command(b"b NOOP".to_vec())]
    );
}

#[test]
fn markers() {
    assert_eq!(literal_marker(b"a LOGIN {5}"), Some((5, true)));
    assert_eq!(literal_marker(b"a APPEND x ~{7+}"), Some((7, false)));
    assert_eq!(literal_marker(b"a LOGIN {}"), None);
    assert_eq!(literal_marker(b"a LOGIN {x}"), None);
    assert_eq!(literal_marker(b"a LOGIN \"{5}\""), None);
}

proptest::proptest! {
    #[test]
    fn arbitrary_input_in_any_chunks_is_bounded(data in proptest::collection::vec(proptest::prop_oneof![proptest::strategy::Just(b'{'), proptest::strategy::Just(b'}'), proptest::strategy::Just(b'\n'), proptest::strategy::Just(b'+'), proptest::num::u8::ANY], 0..600), chunk in 1usize..50) {
        let mut f = framer();
        for piece in data.chunks(chunk) {
            let mut input = piece.to_vec();
            while f.next(&mut input).is_some() {}
            proptest::prop_assert!(input.is_empty());
            proptest::prop_assert!(f.held() <= 100 + 1000 * 4 + 200);
        }
    }
}

#[test]
fn refused_append_literals_are_never_taken_for_commands() {
    let mut f = framer();
    // Synchronizing: refused before the continuation request; nothing more comes.
    assert_eq!(feed(&mut f, b"a APPEND INBOX {500}\r\n"), vec![Frame::Continue]);
    assert_eq!(f.append_bytes(), 500);
    assert_eq!(f.refuse_literal(), Some(Frame::Refused { tag: Some("a".into()) }));
    assert_eq!((f.append_bytes(), f.in_command()), (0, false));
    assert_eq!(feed(&mut f, b"b NOOP\r\n"), vec![Frame::Command(b"b NOOP".to_vec())]);
    // Non-synchronizing, part of it read already: the rest (which looks like commands) is
    // dropped, and the refusal comes at the end of the command.
    assert_eq!(feed(&mut f, b"c APPEND INBOX {40+}\r\nx DELETE INBOX\r\n").len(), 0);
    assert_eq!(f.refuse_literal(), None);
    assert_eq!(feed(&mut f, b"y DELETE Archive\r\n12345\r\n"), vec![Frame::Refused { tag: Some("c".into()) }]);
    assert_eq!(feed(&mut f, b"d NOOP\r\n"), vec![Frame::Command(b"d NOOP".to_vec())]);
    // Nothing to refuse between commands.
    assert_eq!(f.refuse_literal(), None);
}

/// Found by fuzzing: a literal whose last byte is CR, followed by the LF that ends the line,
/// made the framer take the CR for the line's own and slice before the line's start (a
/// panic on input any client can send). The CR is literal data and stays.
#[test]
fn a_literal_ending_in_cr_keeps_its_cr() {
    let mut f = framer();
    assert_eq!(
        feed(&mut f, b"a APPEND INBOX {5+}\r\nabcd\r\n"),
        vec![Frame::Command(b"a APPEND INBOX {5+}\r\nabcd\r".to_vec())]
    );
    let frames = feed(&mut f, b"{5+}\r\n{5+}\r\nhello\r\n");
    assert!(frames.iter().all(|fr| matches!(fr, Frame::Command(_))), "{frames:?}");
    assert_eq!(feed(&mut f, b"b NOOP\r\n"), vec![Frame::Command(b"b NOOP".to_vec())]);
}
