//! `tern spam train`: messages from .eml files, mbox files, Maildir folders and directories,
//! each taught to the classifier as one admin request (to the running server, or to the store
//! opened here).

use crate::{Admin, base64_of, crlf};
use anyhow::Context;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use tern_config::Config;
use tern_server::admin::AdminRequest;

/// Messages larger than this are skipped (the classifier reads only the start anyway).
const MAX_MESSAGE: u64 = 32 * 1024 * 1024;

/// Every message file under `path`: the file itself, or the files of a directory (a Maildir's
/// `cur` and `new`, or any directory, recursively), sorted.
fn message_files(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
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

/// The messages of one file, read as they are needed (an mbox of many gigabytes is never
/// held whole): an mbox (first line `From `) split at its `From ` lines, with `>From `
/// unquoted (mboxrd), or the file as one message. A message over [`MAX_MESSAGE`] is skipped.
struct Messages<R> {
    reader: R,
    mbox: bool,
    /// The whole input has been read.
    done: bool,
    /// Messages skipped as too large.
    skipped: u64,
}

impl<R: std::io::BufRead> Messages<R> {
    fn new(mut reader: R) -> std::io::Result<Messages<R>> {
        let mbox = reader.fill_buf()?.starts_with(b"From ");
        Ok(Messages { reader, mbox, done: false, skipped: 0 })
    }
}

impl<R: std::io::BufRead> Iterator for Messages<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut current = Vec::new();
        let mut too_large = false;
        let mut line = Vec::new();
        loop {
            if self.done {
                return None;
            }
            line.clear();
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) => {
                    self.done = true;
                    // The last message (or a file that is one message).
                    if too_large {
                        self.skipped += 1;
                        return None;
                    }
                    return (!current.is_empty()).then(|| Ok(crlf(current)));
                }
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            if self.mbox && line.starts_with(b"From ") {
                // A separator: it ends the message before it (the first one ends nothing).
                if too_large {
                    self.skipped += 1;
                    too_large = false;
                    continue;
                }
                if !current.is_empty() {
                    return Some(Ok(crlf(current)));
                }
                continue;
            }
            if too_large {
                continue;
            }
            let unquoted = if self.mbox
                && line.starts_with(b">")
                && line.iter().skip_while(|&&b| b == b'>').take(5).eq(b"From ".iter())
            {
                &line[1..]
            } else {
                &line[..]
            };
            current.extend_from_slice(unquoted);
            if current.len() as u64 > MAX_MESSAGE {
                current = Vec::new();
                too_large = true;
            }
        }
    }
}

/// Every message of a file, in memory (for tests and single files).
#[cfg(test)]
fn messages_in(raw: Vec<u8>) -> Vec<Vec<u8>> {
    Messages::new(&raw[..]).map(|m| m.filter_map(Result::ok).collect()).unwrap_or_default()
}

pub async fn run(config: &Config, spam: &[PathBuf], ham: &[PathBuf], user: Option<String>) -> anyhow::Result<String> {
    let mut work: Vec<(PathBuf, bool)> = Vec::new();
    for (paths, is_spam) in [(spam, true), (ham, false)] {
        for path in paths {
            let mut files = Vec::new();
            message_files(path, &mut files)?;
            work.extend(files.into_iter().map(|f| (f, is_spam)));
        }
    }
    let admin = Admin::connect(config, false).await?;
    let progress = std::io::stderr().is_terminal();
    let (mut learnt, mut known, mut skipped) = ([0u64; 2], 0u64, 0u64);
    let total_files = work.len();
    for (done, (file, is_spam)) in work.into_iter().enumerate() {
        let opened = std::fs::File::open(&file).map(std::io::BufReader::new).and_then(Messages::new);
        let mut messages = opened.with_context(|| format!("reading {}", file.display()))?;
        for message in messages.by_ref() {
            let message = message.with_context(|| format!("reading {}", file.display()))?;
            let reply = admin
                .run(AdminRequest::SpamLearn { email: user.clone(), spam: is_spam, message: base64_of(&message) })
                .await?;
            if !reply.ok {
                admin.close().await?;
                anyhow::bail!("{}: {}", file.display(), String::from_utf8_lossy(&reply.output).trim());
            }
            if reply.output.starts_with(b"AlreadyKnown") {
                known += 1;
            } else {
                learnt[usize::from(!is_spam)] += 1;
            }
        }
        skipped += messages.skipped;
        if progress {
            let mut err = std::io::stderr();
            let _ =
                write!(err, "\r{}/{} files, {} spam and {} ham learnt", done + 1, total_files, learnt[0], learnt[1]);
            let _ = err.flush();
        }
    }
    if progress {
        eprintln!();
    }
    let status = admin.run(AdminRequest::SpamStatus { email: user }).await?;
    admin.close().await?;
    let mut out = format!("learnt {} spam and {} ham", learnt[0], learnt[1]);
    if known > 0 {
        out.push_str(&format!(", {known} already known"));
    }
    if skipped > 0 {
        out.push_str(&format!(", {skipped} messages over {} MiB skipped", MAX_MESSAGE / (1024 * 1024)));
    }
    out.push('\n');
    out.push_str(&String::from_utf8_lossy(&status.output));
    Ok(out)
}

/// `tern spam classify`: each file judged (with one connection for all of them).
pub async fn classify(config: &Config, files: &[PathBuf], user: Option<String>, brief: bool) -> anyhow::Result<String> {
    let admin = Admin::connect(config, false).await?;
    let mut out = String::new();
    for file in files {
        // The first message of the file (a file saved from an mbox keeps its "From " line).
        let first = std::fs::File::open(file)
            .map(std::io::BufReader::new)
            .and_then(Messages::new)
            .and_then(|mut m| m.next().transpose());
        let raw = match first {
            Ok(raw) => raw.unwrap_or_default(),
            Err(e) => {
                admin.close().await?;
                anyhow::bail!("reading {}: {e}", file.display());
            }
        };
        let reply =
            admin.run(AdminRequest::SpamClassify { email: user.clone(), message: base64_of(&raw), brief }).await?;
        if !reply.ok {
            admin.close().await?;
            anyhow::bail!("{}: {}", file.display(), String::from_utf8_lossy(&reply.output).trim());
        }
        if brief {
            out.push_str(&format!("{}\t{}", file.display(), String::from_utf8_lossy(&reply.output)));
        } else {
            if files.len() > 1 {
                out.push_str(&format!("{}:\n", file.display()));
            }
            out.push_str(&String::from_utf8_lossy(&reply.output));
        }
    }
    admin.close().await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::messages_in;

    #[test]
    fn mbox_is_split_and_unquoted() {
        let mbox = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\n>From here\nbody\nFrom c@d Mon Jan  1 00:00:01 2024\nSubject: two\n\nx\n".to_vec();
        let m = messages_in(mbox);
        assert_eq!(2, m.len());
        assert_eq!(b"Subject: one\r\n\r\nFrom here\r\nbody\r\n".to_vec(), m[0]);
        assert_eq!(b"Subject: two\r\n\r\nx\r\n".to_vec(), m[1]);
        assert_eq!(1, messages_in(b"Subject: x\n\ny\n".to_vec()).len());
    }
}
