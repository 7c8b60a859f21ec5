//! The differential MIME corpus: every `tests/data/imap/*.eml` summarised and rendered as
//! IMAP ENVELOPE, BODYSTRUCTURE and BODY, compared with `*.expected` (reviewed against
//! Dovecot 2.3 and the RFCs; `tests/data/imap/README.md` lists where and why Tern differs).
//! `TERN_BLESS=1 cargo test -p tern-imap-proto --test render_corpus` rewrites the expected files after
//! a change that was meant.

use tern_imap_proto::render::{ImapForms, Style, body_structure, envelope};

/// Messages travel with CRLF line ends (APPEND and SMTP make them so).
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

fn render(raw: &[u8]) -> Vec<u8> {
    let s = tern_mime::summarize(raw);
    let ascii = Style { utf8: false };
    let mut out = b"ENVELOPE ".to_vec();
    envelope(&mut out, &s.envelope, ascii);
    out.extend_from_slice(b"\nBODYSTRUCTURE ");
    body_structure(&mut out, &s.body, true, ascii);
    out.extend_from_slice(b"\nBODY ");
    body_structure(&mut out, &s.body, false, ascii);
    out.push(b'\n');
    // The forms the IMAP server caches must be the same bytes.
    let forms = ImapForms::of(&s);
    assert_eq!(forms.envelope, &out[9..9 + forms.envelope.len()]);
    out
}

#[test]
fn corpus_renders_as_expected() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/data/imap");
    let bless = std::env::var_os("TERN_BLESS").is_some();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    assert!(files.len() >= 60, "{} messages", files.len());
    let mut failed = Vec::new();
    for path in &files {
        let raw = crlf(&std::fs::read(path).unwrap());
        let got = render(&raw);
        let expected_path = path.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read(&expected_path).unwrap_or_default();
        if got != expected {
            failed.push(format!(
                "{}:\n  expected {}\n  got      {}",
                path.display(),
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&got)
            ));
        }
    }
    assert!(failed.is_empty(), "{} of {} differ:\n{}", failed.len(), files.len(), failed.join("\n"));
}
