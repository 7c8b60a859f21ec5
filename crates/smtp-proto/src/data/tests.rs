use super::*;
use proptest::prelude::*;

fn decode(input: &[u8]) -> (DataOutcome, usize) {
    let mut d = DataDecoder::new(1 << 20);
    let n = d.feed(input);
    assert!(d.is_done(), "no end found in {:?}", String::from_utf8_lossy(input));
    (d.finish(), n)
}

#[test]
fn simple_message_and_empty_message() {
    assert_eq!(
        decode(b"Subject: x\r\n\r\nbody\r\n.\r\n").0,
        DataOutcome::Message(b"Subject: x\r\n\r\nbody\r\n".to_vec())
    );
    assert_eq!(decode(b".\r\n").0, DataOutcome::Message(vec![]));
}

#[test]
fn dot_unstuffing() {
    let (out, _) = decode(b"a\r\n..b\r\n...\r\n. c\r\n.\r\n");
    assert_eq!(out, DataOutcome::Message(b"a\r\n.b\r\n..\r\n c\r\n".to_vec()));
}

#[test]
fn leaves_pipelined_bytes_unconsumed() {
    let input = b"x\r\n.\r\nQUIT\r\n";
    let (_, n) = decode(input);
    assert_eq!(&input[n..], b"QUIT\r\n");
}

#[test]
fn byte_at_a_time_is_the_same() {
    let input = b"a\r\n..b\r\n\r\n.\r\n";
    let mut d = DataDecoder::new(1000);
    for b in input {
        assert!(!d.is_done());
        assert_eq!(d.feed(std::slice::from_ref(b)), 1);
    }
    assert!(d.is_done());
    assert_eq!(d.finish(), DataOutcome::Message(b"a\r\n.b\r\n\r\n".to_vec()));
}

#[test]
fn smuggling_terminators_do_not_end_data() {
    // Each of these contains a fake end of data followed by a smuggled transaction; only the
    // final CRLF.CRLF ends the data, and the message is refused for its bare line ending.
    for fake in [&b"\n.\n"[..], b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n", b"\n.\r"] {
        let mut input = b"Subject: hi\r\n\r\nbody".to_vec();
        input.extend_from_slice(fake);
        input.extend_from_slice(b"MAIL FROM:<admin@victim.example>\r\nRCPT TO:<x@y>\r\nDATA\r\nspoofed\r\n.\r\n");
        let mut d = DataDecoder::new(1 << 20);
        let n = d.feed(&input);
        assert!(d.is_done());
        assert_eq!(n, input.len(), "fake terminator {fake:?} ended the data early");
        assert_eq!(d.finish(), DataOutcome::BareLineEnding, "fake terminator {fake:?}");
    }
}

#[test]
fn bare_cr_and_lf_anywhere_are_detected() {
    for input in [
        &b"a\nb\r\n.\r\n"[..],
        b"a\rb\r\n.\r\n",
        b"\n.\r\n.\r\n",
        b"a\r\r\n.\r\n",
        b".\n.\r\n.\r\n",
        b"x\r\n.\rx\r\n.\r\n",
    ] {
        assert_eq!(decode(input).0, DataOutcome::BareLineEnding, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn size_limit_keeps_memory_bounded() {
    let mut d = DataDecoder::new(100);
    let chunk = [b'x'; 4096];
    for _ in 0..256 {
        d.feed(&chunk);
        assert!(d.stored() <= 100);
    }
    d.feed(b"\r\n.\r\n");
    assert!(d.is_done());
    assert_eq!(d.finish(), DataOutcome::TooLarge { size: 256 * 4096 + 2 });
}

#[test]
fn bdat_line_ending_check() {
    let mut ok = LineEndingCheck::default();
    ok.feed(b"a\r");
    ok.feed(b"\nb\r\n");
    assert!(!ok.has_bare());
    for chunks in [&[&b"a\nb"[..]][..], &[b"a\r", b"b"], &[b"a\r"], &[b"\n"], &[b"a\r\r\n"], &[b"\r", b"\r\n"]] {
        let mut c = LineEndingCheck::default();
        for ch in chunks {
            c.feed(ch);
        }
        assert!(c.has_bare(), "{chunks:?}");
    }
}

/// Dot-stuffs a message the way a correct client does.
fn stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in msg.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}

proptest! {
    #[test]
    fn stuffing_round_trips(lines in proptest::collection::vec("[.a-z ]{0,20}", 0..20), split in 0usize..400) {
        let mut msg = Vec::new();
        for l in &lines {
            msg.extend_from_slice(l.as_bytes());
            msg.extend_from_slice(b"\r\n");
        }
        let wire = stuff(&msg);
        let mut d = DataDecoder::new(1 << 20);
        let split = split.min(wire.len());
        let n1 = d.feed(&wire[..split]);
        prop_assert_eq!(n1, split);
        let n2 = d.feed(&wire[split..]);
        prop_assert_eq!(n1 + n2, wire.len());
        prop_assert!(d.is_done());
        prop_assert_eq!(d.finish(), DataOutcome::Message(msg));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_chunking_agrees(data in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()], 0..200), split in 0usize..200) {
        let mut whole = DataDecoder::new(64);
        let n = whole.feed(&data);
        let mut parts = DataDecoder::new(64);
        let split = split.min(data.len());
        let mut m = parts.feed(&data[..split]);
        if !parts.is_done() {
            m += parts.feed(&data[split..]);
        }
        prop_assert_eq!(n, m);
        prop_assert_eq!(whole.is_done(), parts.is_done());
        if whole.is_done() {
            prop_assert_eq!(whole.finish(), parts.finish());
        }
    }
}

#[test]
fn drained_data_still_counts_against_the_limit() {
    let mut d = DataDecoder::new(10_000);
    let mut kept = Vec::new();
    for _ in 0..3 {
        d.feed(&[b'x'; 4000]);
        kept.extend(d.take_stored());
        assert_eq!(d.stored(), 0);
    }
    d.feed(b"\r\n.\r\n");
    assert_eq!(d.finish(), DataOutcome::TooLarge { size: 12_002 });
    assert!(kept.len() <= 10_000, "nothing is kept past the limit");
    let mut d = DataDecoder::new(10_000);
    d.feed(b"Subject: a\r\n\r\n..dot\r\n");
    let mut kept = d.take_stored();
    d.feed(b"end\r\n.\r\n");
    let DataOutcome::Message(rest) = d.finish() else { panic!("a message") };
    kept.extend(rest);
    assert_eq!(kept, b"Subject: a\r\n\r\n.dot\r\nend\r\n");
}
