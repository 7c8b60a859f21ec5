//! Fuzz targets: each function takes arbitrary bytes, runs one parser the way the server does,
//! and asserts what must hold for any input (no panic, bounded output, agreement between
//! stages). `fuzz/` runs them under libFuzzer (`cargo +nightly fuzz run NAME`); the test suite
//! replays the committed corpora (`fuzz/corpus/NAME/`) through them on stable, so a crash
//! found once stays fixed and the targets keep building. `docs/security.md` says how to run
//! them and what they found.

/// A fuzz target: bytes in, a panic when something that must hold does not.
pub type Target = fn(&[u8]);

/// Every target by name (the corpus directory and the libFuzzer target have this name).
pub const TARGETS: &[(&str, Target)] = &[
    ("smtp_command", smtp_command),
    ("smtp_data", smtp_data),
    ("imap_command", imap_command),
    ("pop3_command", pop3_command),
    ("sasl", sasl),
    ("mime", mime),
    ("address_list", address_list),
    ("auth_records", auth_records),
    ("proxy_header", proxy_header),
    ("managesieve_command", managesieve_command),
    ("sieve_script", sieve_script),
];

/// ManageSieve commands as a session reads them: the input split in two arrivals, each
/// command parsed from the front of what arrived, consumed, the rest parsed again.
pub fn managesieve_command(data: &[u8]) {
    use tern_managesieve::{Parse, parse, parse_sasl_line};
    const MAX_LITERAL: usize = 4096;
    let split = usize::from(data.first().copied().unwrap_or(0)) % (data.len() + 1);
    let mut buffer: Vec<u8> = Vec::new();
    for chunk in [&data[..split], &data[split..]] {
        buffer.extend_from_slice(chunk);
        loop {
            match parse(&buffer, MAX_LITERAL) {
                Parse::Done(_, n) | Parse::Bad(_, n) => {
                    assert!(n > 0 && n <= buffer.len(), "consumed {n} of {}", buffer.len());
                    buffer.drain(..n);
                }
                Parse::TooLarge(skip) => {
                    assert!(skip > MAX_LITERAL, "refused a literal within the limit");
                    buffer.drain(..skip.min(buffer.len()));
                }
                Parse::Incomplete => break,
            }
        }
    }
    let _ = parse_sasl_line(data, MAX_LITERAL);
}

/// A Sieve script as ManageSieve receives it: compiled (errors must name a place inside the
/// script), and when it compiles, run against a small message within the default limits.
pub fn sieve_script(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else { return };
    match tern_sieve::compile(source) {
        Err(e) => assert!(e.pos.line as usize <= source.lines().count() + 1, "error outside the script: {e}"),
        Ok(script) => {
            let message = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: x\r\n\r\nbody\r\n";
            let envelope =
                tern_sieve::Envelope { from: Some("a@example.org".into()), to: "b@example.org".into(), auth: None };
            let outcome =
                tern_sieve::run(&script, message, &envelope, &tern_sieve::NoHost, &tern_sieve::Limits::default());
            // A run ends with at least the implicit keep or what the script chose; never more
            // actions than allowed (+1 for the implicit keep).
            assert!(outcome.actions.len() <= tern_sieve::Limits::default().actions + 1);
        }
    }
}

/// SMTP command lines as a session reads them: line framing with the line limit, then each
/// line parsed; the path parsers on the text after `MAIL FROM:` / `RCPT TO:` as well.
pub fn smtp_command(data: &[u8]) {
    use tern_smtp_proto::{LineBuffer, LineEvent};
    const MAX_LINE: usize = 512;
    let mut lines = LineBuffer::new(MAX_LINE);
    // The first byte splits the input into two reads, as the network might.
    let split = usize::from(data.first().copied().unwrap_or(0)) % (data.len() + 1);
    for chunk in [&data[..split], &data[split..]] {
        lines.extend(chunk);
        while let Some(event) = lines.next_line() {
            if let LineEvent::Line(line) = event {
                assert!(line.len() <= MAX_LINE + 2, "a line over the limit came through");
                let _ = tern_smtp_proto::parse_command(&line);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tern_smtp_proto::parse_reverse_path(text);
        let _ = tern_smtp_proto::parse_forward_path(text);
        let _ = tern_smtp_proto::parse_mailbox(text);
        let _ = tern_smtp_proto::xtext::decode(text);
    }
}

/// The DATA decoder (dot-unstuffing, the terminator, the size limit), fed in two pieces: what
/// it keeps never exceeds the limit, and it consumes nothing after the terminator.
pub fn smtp_data(data: &[u8]) {
    const LIMIT: usize = 4096;
    let split = usize::from(data.first().copied().unwrap_or(0)) * 7 % (data.len() + 1);
    let mut decoder = tern_smtp_proto::DataDecoder::new(LIMIT);
    let first = decoder.feed(&data[..split]);
    assert!(first <= split);
    let mut consumed = first;
    if !decoder.is_done() {
        consumed += decoder.feed(&data[split..]);
    }
    assert!(consumed <= data.len());
    if decoder.is_done() {
        assert!(
            data[..consumed].ends_with(b".\r\n") || data[..consumed].ends_with(b".\n"),
            "done without a terminator"
        );
    }
    assert!(decoder.stored() <= LIMIT + 2, "kept {} bytes over a {LIMIT} limit", decoder.stored());
    let _ = decoder.finish();
}

/// A command that parses, encoded again, parses to the same command.
fn imap_round_trip(wire: &[u8]) {
    if let Ok(first) = tern_imap_proto::parse_command(wire) {
        let encoded = tern_imap_proto::encode_command(&first);
        match tern_imap_proto::parse_command(&encoded) {
            Ok(second) => assert_eq!(first, second, "encoded as {:?}", String::from_utf8_lossy(&encoded)),
            Err(e) => {
                panic!("{:?} encoded as {:?}, which does not parse: {e:?}", first, String::from_utf8_lossy(&encoded))
            }
        }
    }
}

/// IMAP command framing (lines, literals, limits) and the command parser on every frame,
/// with the round trip parse → encode → parse.
pub fn imap_command(data: &[u8]) {
    use tern_imap_proto::{CommandFramer, Frame, Limits};
    let mut framer = CommandFramer::new(Limits::authenticated(1 << 16));
    let split = usize::from(data.first().copied().unwrap_or(0)) % (data.len() + 1);
    for chunk in [&data[..split], &data[split..]] {
        let mut input = chunk.to_vec();
        let mut rounds = 0;
        while let Some(frame) = framer.next(&mut input) {
            rounds += 1;
            assert!(rounds <= data.len() + 2, "the framer does not advance");
            if let Frame::Command(command) = frame {
                imap_round_trip(&command);
            }
        }
        assert!(input.is_empty(), "the framer left input unread");
    }
    imap_round_trip(data);
    if let Ok(text) = std::str::from_utf8(data) {
        // Modified UTF-7 mailbox names: decoding what was encoded gives it back.
        let encoded = tern_imap_proto::encode::utf7_encode(text);
        assert_eq!(tern_imap_proto::encode::utf7_decode(&encoded).as_deref(), Some(text));
        let _ = tern_imap_proto::encode::utf7_decode(text);
        // CATENATE URLs (RFC 5092 subset): never a panic; what parses names a message.
        if let Ok(url) = tern_imap_proto::url::parse_message_url(text) {
            assert!(url.uid > 0 && !url.mailbox.is_empty());
        }
    }
}

/// POP3 command lines.
pub fn pop3_command(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let _ = tern_pop3::proto::parse(line);
    }
}

/// SASL: base64 responses, PLAIN credentials, SCRAM client messages.
pub fn sasl(data: &[u8]) {
    let _ = tern_sasl::parse_plain(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tern_sasl::decode(text);
        let _ = tern_sasl::Mechanism::parse(text);
        let _ = tern_sasl::ScramCredentials::parse(text);
    }
    // A SCRAM exchange driven by the input: the client's first message, then (when it was
    // accepted) its final message.
    let (first, last) = data.split_at(data.iter().position(|&b| b == 0).unwrap_or(data.len()));
    for plus in [false, true] {
        let mut server = tern_sasl::ScramServer::new(plus, plus.then(|| vec![7u8; 32]));
        if server.client_first(first).is_ok() {
            // One iteration: the fuzzer is after the parser, not PBKDF2.
            let credentials = tern_sasl::ScramCredentials::derive_with("pencil", b"saltsaltsalt".to_vec(), 1);
            if server.server_first(credentials).is_ok() {
                let _ = server.client_final(last.get(1..).unwrap_or_default());
            }
        }
    }
}

/// A message as stored: the summary (headers, MIME structure, addresses, decoded text) and
/// the ENVELOPE and BODYSTRUCTURE renderings of it, which must be balanced IMAP lists.
pub fn mime(data: &[u8]) {
    let summary = tern_mime::summarize(data);
    assert_eq!(summary.size, data.len() as u64);
    for style in [tern_imap_proto::render::Style { utf8: false }, tern_imap_proto::render::Style { utf8: true }] {
        let mut out = Vec::new();
        tern_imap_proto::render::envelope(&mut out, &summary.envelope, style);
        balanced(&out);
        for extended in [false, true] {
            let mut out = Vec::new();
            tern_imap_proto::render::body_structure(&mut out, &summary.body, extended, style);
            balanced(&out);
        }
    }
    let forms = tern_imap_proto::render::ImapForms::of(&summary);
    for rendered in [&forms.envelope, &forms.body, &forms.bodystructure] {
        balanced(rendered);
    }
}

/// Address lists (From, To, Cc...) as the ENVELOPE parser reads them.
pub fn address_list(data: &[u8]) {
    let list = tern_mime::address::parse_address_list(data);
    assert!(list.len() <= data.len() + 1, "more addresses than bytes");
}

/// Tern's own record parsers: SPF (RFC 7208 §4.6) and DMARC (RFC 7489 §6.4) records.
pub fn auth_records(data: &[u8]) {
    let _ = tern_mailauth::spf::record_syntax(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tern_mailauth::dmarc::parse_tags(text);
        for spec in [tern_mailauth::dmarc::Specification::Rfc7489, tern_mailauth::dmarc::Specification::Rfc9989] {
            let _ = tern_mailauth::dmarc::parse_record(text, spec);
        }
    }
}

/// Parentheses outside quoted strings and literals are balanced, and the quoting is closed.
fn balanced(out: &[u8]) {
    let mut depth = 0i64;
    let mut i = 0;
    while i < out.len() {
        match out[i] {
            b'"' => {
                i += 1;
                while i < out.len() && out[i] != b'"' {
                    if out[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                assert!(i < out.len(), "unterminated quoted string in {:?}", String::from_utf8_lossy(out));
            }
            b'{' => {
                // A literal: {N}CRLF then N bytes.
                let close = out[i..].iter().position(|&b| b == b'}').map(|p| i + p);
                let close =
                    close.unwrap_or_else(|| panic!("unterminated literal in {:?}", String::from_utf8_lossy(out)));
                let n: usize = std::str::from_utf8(&out[i + 1..close]).ok().and_then(|t| t.parse().ok()).unwrap_or(0);
                assert_eq!(out.get(close + 1..close + 3), Some(&b"\r\n"[..]), "literal without CRLF");
                i = close + 2 + n;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                assert!(depth >= 0, "unbalanced ) in {:?}", String::from_utf8_lossy(out));
            }
            _ => {}
        }
        i += 1;
    }
    assert_eq!(depth, 0, "unbalanced ( in {:?}", String::from_utf8_lossy(out));
}

/// The PROXY header (v1 and v2) a trusted load balancer sends first: a complete header never
/// claims more bytes than it was given nor more than the limit, and more input never turns
/// a complete header into another.
pub fn proxy_header(data: &[u8]) {
    use tern_guard::proxy::{MAX_HEADER, Parsed, parse, starts_with_header};
    // Where the header is optional (HTTP), a header is never taken for the protocol's own bytes.
    let parsed = parse(data);
    if matches!(parsed, Parsed::Header { .. }) {
        assert_eq!(starts_with_header(data), Some(true), "{:?}", String::from_utf8_lossy(data));
    }
    match parsed {
        Parsed::Header { len, source } => {
            assert!(len <= data.len() && len <= MAX_HEADER, "header of {len} bytes from {}", data.len());
            assert!(len >= 15, "shorter than the shortest header: {len}");
            // The bytes after the header do not change what the header says.
            let mut longer = data[..len].to_vec();
            longer.extend_from_slice(b"\r\nEHLO x\r\n");
            assert_eq!(parse(&longer), Parsed::Header { len, source }, "{:?}", String::from_utf8_lossy(data));
        }
        Parsed::Incomplete => assert!(data.len() < MAX_HEADER, "{} bytes and still incomplete", data.len()),
        Parsed::Invalid(_) => {}
    }
}
