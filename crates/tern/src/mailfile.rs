//! Mail in files: mbox (one file of many messages, `From ` separated; mboxrd quoting) and
//! Maildir (one file per message, flags in the name), read and written message by message so
//! that a file of many gigabytes is never held whole. Used by `tern import`, `tern export` and
//! `tern spam train`.

use anyhow::Context;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use tern_store::Flags;

/// One message of a file and where it lies in it.
pub struct FileMessage {
    /// The offset just after the message in the file: where the next one's `From ` line is.
    pub end: u64,
    /// The mbox `From ` line (without its line end), when the file is an mbox.
    pub separator: Option<String>,
    /// The message with CRLF line ends, `>From ` unquoted.
    pub raw: Vec<u8>,
}

/// The messages of one file: an mbox (first line `From `) split at its `From ` lines, with
/// `>From ` unquoted (mboxrd) and the blank line that precedes each separator dropped, or the
/// file as one message. Messages over `max_size` are skipped and counted.
pub struct MessageReader<R> {
    reader: R,
    mbox: bool,
    /// Offset of the next byte to read.
    position: u64,
    /// The separator line that starts the next message.
    next_separator: Option<String>,
    done: bool,
    /// The length of the separator line read last (part of the next message).
    separator_length: u64,
    max_size: u64,
    /// Messages skipped as too large.
    pub skipped: u64,
}

impl<R: BufRead> MessageReader<R> {
    /// `position` is the offset `reader` starts at (a resumed import seeks to a message start).
    pub fn new(mut reader: R, position: u64, max_size: u64) -> std::io::Result<MessageReader<R>> {
        let mbox = reader.fill_buf()?.starts_with(b"From ");
        Ok(MessageReader {
            reader,
            mbox,
            position,
            next_separator: None,
            done: false,
            separator_length: 0,
            max_size,
            skipped: 0,
        })
    }

    pub fn is_mbox(&self) -> bool {
        self.mbox
    }
}

/// What one read of [`MessageReader`] found.
enum Step {
    Message(std::io::Result<FileMessage>),
    /// A message over the size limit, counted and dropped.
    Skipped,
    End,
}

impl<R: BufRead> Iterator for MessageReader<R> {
    type Item = std::io::Result<FileMessage>;

    fn next(&mut self) -> Option<Self::Item> {
        // A loop, not recursion: a file of many oversized messages in a row must not grow
        // the stack.
        loop {
            match self.read_one() {
                Step::Message(m) => return Some(m),
                Step::Skipped => continue,
                Step::End => return None,
            }
        }
    }
}

impl<R: BufRead> MessageReader<R> {
    fn read_one(&mut self) -> Step {
        let mut separator = self.next_separator.take();
        let mut current: Vec<u8> = Vec::new();
        let mut too_large = false;
        let mut line = Vec::new();
        // A line longer than a whole message makes the message too large; only this much of
        // it is kept (a file without line ends must not be read into memory whole).
        let cap = usize::try_from(self.max_size).unwrap_or(usize::MAX).saturating_add(1);
        loop {
            if self.done {
                return Step::End;
            }
            line.clear();
            let read = match self.read_line_capped(&mut line, cap) {
                Ok((0, _)) => {
                    self.done = true;
                    if separator.is_none() && current.is_empty() {
                        return Step::End;
                    }
                    return self.finish(separator, current, too_large);
                }
                Ok((n, cut)) => {
                    self.position += n as u64;
                    too_large |= cut;
                    n
                }
                Err(e) => return Step::Message(Err(e)),
            };
            if self.mbox && line.starts_with(b"From ") {
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                if separator.is_none() && current.is_empty() {
                    // The first separator of the file (or of a resumed read).
                    separator = Some(text);
                    continue;
                }
                self.next_separator = Some(text);
                // `position` is past the separator: the message ends where it starts.
                self.separator_length = read as u64;
                return self.finish(separator, current, too_large);
            }
            if too_large {
                current = Vec::new();
                continue;
            }
            let quoted = self.mbox
                && line.first() == Some(&b'>')
                && line.iter().skip_while(|&&b| b == b'>').take(5).eq(b"From ".iter());
            current.extend_from_slice(if quoted { &line[1..] } else { &line[..] });
            if current.len() as u64 > self.max_size {
                current = Vec::new();
                too_large = true;
            }
        }
    }

    /// Reads one line (through its LF) keeping at most `cap` bytes of it; the rest of a
    /// longer line is read and dropped. Gives the bytes consumed and whether it was cut.
    fn read_line_capped(&mut self, line: &mut Vec<u8>, cap: usize) -> std::io::Result<(usize, bool)> {
        let (mut consumed, mut cut) = (0, false);
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok((consumed, cut));
            }
            let (n, ends) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            let room = cap.saturating_sub(line.len());
            cut |= n > room;
            line.extend_from_slice(&buf[..n.min(room)]);
            self.reader.consume(n);
            consumed += n;
            if ends {
                return Ok((consumed, cut));
            }
        }
    }
}

impl<R> MessageReader<R> {
    fn finish(&mut self, separator: Option<String>, raw: Vec<u8>, too_large: bool) -> Step {
        // mbox writers end each message with an empty line: it is not the message's.
        let mut raw = raw;
        if self.mbox {
            if raw.ends_with(b"\r\n\r\n") {
                raw.truncate(raw.len() - 2);
            } else if raw.ends_with(b"\n\n") {
                raw.pop();
            }
        }
        let end = if self.next_separator.is_some() { self.position - self.separator_length } else { self.position };
        if too_large {
            self.skipped += 1;
            return Step::Skipped;
        }
        Step::Message(Ok(FileMessage { end, separator, raw: crlf(raw) }))
    }
}

/// A message as it travels over SMTP: CRLF line ends (files on disk often have LF).
pub fn crlf(raw: Vec<u8>) -> Vec<u8> {
    if !raw.contains(&b'\n') || raw.windows(2).filter(|w| w[1] == b'\n').all(|w| w[0] == b'\r') {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut previous = 0u8;
    for &b in &raw {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
    out
}

/// Every message file under `path`: the file itself, or the files of a directory (a Maildir's
/// `cur` and `new`, or any directory, recursively, dot files and `tmp` left out), sorted.
pub fn message_files(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    entries.sort();
    for entry in entries {
        // A Maildir's `tmp` holds messages still being written.
        if entry.is_dir() && entry.file_name().is_some_and(|n| n == "tmp") {
            continue;
        }
        message_files(&entry, out)?;
    }
    Ok(())
}

/// The date of an mbox `From ` line (`From sender Www Mmm dd hh:mm:ss yyyy`, asctime, UTC by
/// convention), as Unix seconds.
pub fn separator_date(line: &str) -> Option<i64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    // The date is the last five words (a sender address never has spaces in practice).
    let [.., _weekday, month, day, clock, year] = words.as_slice() else { return None };
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u8 + 1;
    let mut hms = clock.split(':').map(|p| p.parse::<u8>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next().flatten().unwrap_or(0));
    let date =
        time::Date::from_calendar_date(year.parse().ok()?, time::Month::try_from(month).ok()?, day.parse().ok()?)
            .ok()?;
    let t = time::PrimitiveDateTime::new(date, time::Time::from_hms(hour, minute, second).ok()?);
    Some(t.assume_utc().unix_timestamp())
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// An mbox `From ` line for a message: its Return-Path (else `MAILER-DAEMON`) and date.
pub fn separator_for(raw: &[u8], unix: i64) -> String {
    let sender = header_value(raw, "Return-Path")
        .map(|v| v.trim().trim_start_matches('<').trim_end_matches('>').to_string())
        .filter(|v| !v.is_empty() && !v.contains(char::is_whitespace))
        .unwrap_or_else(|| "MAILER-DAEMON".to_string());
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let weekday = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][t.weekday().number_days_from_monday() as usize];
    format!(
        "From {sender} {weekday} {} {:2} {:02}:{:02}:{:02} {}",
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

/// Where the header of a message ends (the offset of the empty line's end), or its length.
fn header_end(raw: &[u8]) -> usize {
    let mut i = 0;
    while i < raw.len() {
        let line_end = raw[i..].iter().position(|&b| b == b'\n').map_or(raw.len(), |p| i + p + 1);
        let line = &raw[i..line_end];
        if line == b"\r\n" || line == b"\n" {
            return line_end;
        }
        i = line_end;
    }
    raw.len()
}

/// The first value of a header field (unfolded), if present.
fn header_value(raw: &[u8], name: &str) -> Option<String> {
    let head = String::from_utf8_lossy(&raw[..header_end(raw)]).into_owned();
    let mut value: Option<String> = None;
    for line in head.split('\n') {
        let line = line.trim_end_matches('\r');
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => v.push_str(line),
            Some(_) => break,
            None => {
                if let Some((n, v)) = line.split_once(':')
                    && n.eq_ignore_ascii_case(name)
                {
                    value = Some(v.to_string());
                }
            }
        }
    }
    value
}

/// The header fields mail stores keep their state in (mbox: Dovecot, mutt, Thunderbird); an
/// import takes flags from them and leaves them out of the stored message.
const STATE_FIELDS: [&str; 6] = ["status", "x-status", "x-keywords", "x-uid", "x-imapbase", "x-imap"];

/// Flags and keywords of an mbox message from its `Status:` (R: seen), `X-Status:` (A:
/// answered, F: flagged, T: draft, D: deleted) and `X-Keywords:` fields, and the message
/// without those fields.
pub fn mbox_state(raw: &[u8]) -> (Flags, Vec<String>, Vec<u8>) {
    let end = header_end(raw);
    let mut flags = Flags::default();
    let mut keywords = Vec::new();
    let mut kept = Vec::with_capacity(raw.len());
    let mut skipping = false;
    let mut i = 0;
    while i < end {
        let line_end = raw[i..end].iter().position(|&b| b == b'\n').map_or(end, |p| i + p + 1);
        let line = &raw[i..line_end];
        i = line_end;
        if skipping && line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            continue;
        }
        skipping = false;
        let text = String::from_utf8_lossy(line);
        if let Some((name, value)) = text.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            if STATE_FIELDS.contains(&name.as_str()) {
                skipping = true;
                let value = value.trim();
                match name.as_str() {
                    "status" if value.contains('R') => flags.insert(Flags::SEEN),
                    "x-status" => {
                        for (letter, flag) in
                            [('A', Flags::ANSWERED), ('F', Flags::FLAGGED), ('T', Flags::DRAFT), ('D', Flags::DELETED)]
                        {
                            if value.contains(letter) {
                                flags.insert(flag);
                            }
                        }
                    }
                    "x-keywords" => {
                        keywords.extend(value.split([' ', ',']).filter(|k| is_keyword(k)).map(str::to_string))
                    }
                    _ => {}
                }
                continue;
            }
        }
        kept.extend_from_slice(line);
    }
    kept.extend_from_slice(&raw[end..]);
    (flags, keywords, kept)
}

/// An IMAP keyword (RFC 9051 `flag-keyword`: an atom, not a system flag).
pub fn is_keyword(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 100
        && !k.starts_with('\\')
        && k.bytes().all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
}

/// An mbox message as written by `tern export`: the `From ` line, the header with `Status:`,
/// `X-Status:` and `X-Keywords:` for the flags, LF line ends, `From ` lines quoted (mboxrd),
/// and the empty line that ends it.
pub fn mbox_entry(raw: &[u8], flags: Flags, keywords: &[String], internal_date: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 200);
    out.extend_from_slice(separator_for(raw, internal_date).as_bytes());
    out.push(b'\n');
    let end = header_end(raw);
    let (head, body) = raw.split_at(end);
    let head_lines: Vec<&[u8]> = head.split(|&b| b == b'\n').collect();
    let mut header_done = false;
    let push_state = |out: &mut Vec<u8>| {
        out.extend_from_slice(if flags.contains(Flags::SEEN) { b"Status: RO\n" } else { b"Status: O\n" });
        let mut x = String::new();
        for (letter, flag) in
            [('A', Flags::ANSWERED), ('F', Flags::FLAGGED), ('T', Flags::DRAFT), ('D', Flags::DELETED)]
        {
            if flags.contains(flag) {
                x.push(letter);
            }
        }
        if !x.is_empty() {
            out.extend_from_slice(format!("X-Status: {x}\n").as_bytes());
        }
        if !keywords.is_empty() {
            out.extend_from_slice(format!("X-Keywords: {}\n", keywords.join(" ")).as_bytes());
        }
    };
    for line in head_lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if !header_done {
                push_state(&mut out);
                out.push(b'\n');
                header_done = true;
            }
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    if !header_done {
        push_state(&mut out);
        out.push(b'\n');
    }
    for line in body.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().skip_while(|&&b| b == b'>').take(5).eq(b"From ".iter()) {
            out.push(b'>');
        }
        out.extend_from_slice(text);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// Maildir flags of a file name (`...:2,FRS`): D draft, F flagged, R replied, S seen, T
/// trashed, and lowercase letters for keywords (Dovecot's `dovecot-keywords` order).
pub fn maildir_flags(name: &str, keyword_names: &[String]) -> (Flags, Vec<String>) {
    let mut flags = Flags::default();
    let mut keywords = Vec::new();
    let Some((_, info)) = name.rsplit_once(":2,") else { return (flags, keywords) };
    for c in info.chars() {
        match c {
            'D' => flags.insert(Flags::DRAFT),
            'F' => flags.insert(Flags::FLAGGED),
            'R' => flags.insert(Flags::ANSWERED),
            'S' => flags.insert(Flags::SEEN),
            'T' => flags.insert(Flags::DELETED),
            'a'..='z' => {
                if let Some(k) = keyword_names.get(usize::from(c as u8 - b'a')) {
                    keywords.push(k.clone());
                }
            }
            _ => {}
        }
    }
    (flags, keywords)
}

/// The `:2,...` suffix for flags and keywords (letters in ASCII order, as the Maildir
/// specification asks), adding keywords not yet in `keyword_names` to it.
pub fn maildir_info(flags: Flags, keywords: &[String], keyword_names: &mut Vec<String>) -> String {
    let mut letters: Vec<char> = Vec::new();
    for (letter, flag) in
        [('D', Flags::DRAFT), ('F', Flags::FLAGGED), ('R', Flags::ANSWERED), ('S', Flags::SEEN), ('T', Flags::DELETED)]
    {
        if flags.contains(flag) {
            letters.push(letter);
        }
    }
    for k in keywords {
        let index = match keyword_names.iter().position(|n| n == k) {
            Some(i) => i,
            None if keyword_names.len() < 26 => {
                keyword_names.push(k.clone());
                keyword_names.len() - 1
            }
            // Only 26 letters: further keywords are not kept.
            None => continue,
        };
        letters.push((b'a' + index as u8) as char);
    }
    letters.sort_unstable();
    format!(":2,{}", letters.into_iter().collect::<String>())
}

/// Dovecot's `dovecot-keywords` file of a Maildir: `N name` lines, N the letter's index.
pub fn read_keyword_names(maildir: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(maildir.join("dovecot-keywords")) else { return Vec::new() };
    let mut names: Vec<(usize, String)> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(i, name)| Some((i.trim().parse().ok()?, name.trim().to_string())))
        .filter(|(i, name)| *i < 26 && is_keyword(name))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for (i, name) in names {
        while out.len() < i {
            out.push(String::new());
        }
        out.push(name);
    }
    out
}

pub fn write_keyword_names(maildir: &Path, names: &[String]) -> std::io::Result<()> {
    let text: String = names.iter().enumerate().map(|(i, n)| format!("{i} {n}\n")).collect();
    std::fs::write(maildir.join("dovecot-keywords"), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(raw: &[u8]) -> Vec<FileMessage> {
        MessageReader::new(raw, 0, 1 << 20).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn mbox_is_split_unquoted_and_located() {
        let mbox = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\n>From here\n>>From there\nbody\n\nFrom c@d Mon Jan  1 00:00:01 2024\nSubject: two\n\nx\n";
        let m = all(mbox);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].raw, b"Subject: one\r\n\r\nFrom here\r\n>From there\r\nbody\r\n");
        assert_eq!(m[1].raw, b"Subject: two\r\n\r\nx\r\n");
        assert_eq!(m[0].separator.as_deref(), Some("From a@b Mon Jan  1 00:00:00 2024"));
        assert_eq!(m[1].end, mbox.len() as u64);
        assert!(mbox[m[0].end as usize..].starts_with(b"From c@d"));
        // Read again from the second message's offset (a resumed import).
        let rest = MessageReader::new(&mbox[m[0].end as usize..], m[0].end, 1 << 20).unwrap();
        let again: Vec<FileMessage> = rest.map(Result::unwrap).collect();
        assert_eq!((again.len(), again[0].end, &again[0].raw), (1, m[1].end, &m[1].raw));
        // A file that is one message.
        assert_eq!(all(b"Subject: x\n\ny\n").len(), 1);
        assert!(all(b"").is_empty());
    }

    #[test]
    fn messages_over_the_limit_are_skipped_and_counted() {
        let big = "x".repeat(100);
        let mbox =
            format!("From a Mon Jan  1 00:00:00 2024\nS: 1\n\n{big}\nFrom b Mon Jan  1 00:00:00 2024\nS: 2\n\nsmall\n");
        let mut reader = MessageReader::new(mbox.as_bytes(), 0, 50).unwrap();
        let kept: Vec<FileMessage> = reader.by_ref().map(Result::unwrap).collect();
        assert_eq!((kept.len(), reader.skipped), (1, 1));
        assert_eq!(kept[0].raw, b"S: 2\r\n\r\nsmall\r\n");
    }

    #[test]
    fn a_line_longer_than_a_message_is_not_held_whole() {
        let mbox = format!(
            "From a Mon Jan  1 00:00:00 2024\nS: 1\n\n{}\nFrom b Mon Jan  1 00:00:00 2024\nS: 2\n\nsmall\n",
            "x".repeat(10_000)
        );
        let mut reader = MessageReader::new(mbox.as_bytes(), 0, 50).unwrap();
        let kept: Vec<FileMessage> = reader.by_ref().map(Result::unwrap).collect();
        assert_eq!((kept.len(), reader.skipped), (1, 1));
        assert_eq!(kept[0].raw, b"S: 2\r\n\r\nsmall\r\n");
        assert_eq!(kept[0].end, mbox.len() as u64);
        let mut line = Vec::new();
        let mut r = MessageReader::new(&b"abcdefgh\nrest"[..], 0, 1).unwrap();
        assert_eq!(r.read_line_capped(&mut line, 3).unwrap(), (9, true));
        assert_eq!(line, b"abc");
    }

    #[test]
    fn separator_dates_both_ways() {
        let t = separator_date("From someone@example.org Sat Jan  3 01:05:34 1996").unwrap();
        assert_eq!(t, 820631134);
        let line = separator_for(b"Return-Path: <a@b.c>\r\n\r\n", t);
        assert_eq!(line, "From a@b.c Wed Jan  3 01:05:34 1996");
        assert_eq!(separator_date(&line), Some(t));
        assert_eq!(separator_for(b"Subject: x\r\n\r\n", 0), "From MAILER-DAEMON Thu Jan  1 00:00:00 1970");
        assert_eq!(separator_date("From nobody"), None);
    }

    #[test]
    fn mbox_state_fields_round_trip() {
        let flags = Flags(Flags::SEEN.0 | Flags::FLAGGED.0 | Flags::ANSWERED.0);
        let keywords = vec!["$Forwarded".to_string(), "work".to_string()];
        let raw = b"Subject: s\r\nX-Status: junk\r\n\r\nFrom the start\r\nline\r\n";
        let entry = mbox_entry(raw, flags, &keywords, 0);
        let text = String::from_utf8_lossy(&entry);
        assert!(text.contains("Status: RO\nX-Status: AF\nX-Keywords: $Forwarded work\n\n>From the start\n"), "{text}");
        let read = all(&entry);
        let (f, k, kept) = mbox_state(&read[0].raw);
        assert_eq!((f, k), (flags, keywords));
        assert_eq!(kept, b"Subject: s\r\n\r\nFrom the start\r\nline\r\n", "{}", String::from_utf8_lossy(&kept));
    }

    #[test]
    fn maildir_names_round_trip() {
        let mut names = vec!["$Forwarded".to_string()];
        let flags = Flags(Flags::SEEN.0 | Flags::DRAFT.0 | Flags::DELETED.0);
        let info = maildir_info(flags, &["work".into(), "$Forwarded".into()], &mut names);
        assert_eq!(info, ":2,DSTab");
        assert_eq!(names, ["$Forwarded", "work"]);
        let (f, mut k) = maildir_flags(&format!("123.M1.host{info}"), &names);
        k.sort();
        assert_eq!((f, k), (flags, vec!["$Forwarded".to_string(), "work".to_string()]));
        assert_eq!(maildir_flags("123.M1.host", &names), (Flags::default(), vec![]));
    }

    #[test]
    fn crlf_line_ends() {
        assert_eq!(crlf(b"a\nb\r\nc\n".to_vec()), b"a\r\nb\r\nc\r\n");
        assert_eq!(crlf(b"a\r\nb\r\n".to_vec()), b"a\r\nb\r\n");
    }
}
