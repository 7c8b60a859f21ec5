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

/// The messages of one file: an mbox (first line `From `) split at its `From ` lines (with
/// `>From ` unquoted), or the file as one message.
fn messages_in(raw: Vec<u8>) -> Vec<Vec<u8>> {
    if !raw.starts_with(b"From ") {
        return vec![crlf(raw)];
    }
    let mut messages = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut first = true;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            if !first {
                messages.push(crlf(std::mem::take(&mut current)));
            }
            first = false;
            continue;
        }
        // mboxrd: one level of `>` quoting is removed from `>From ` lines.
        let unquoted = if line.starts_with(b">") && line.iter().skip_while(|&&b| b == b'>').take(5).eq(b"From ".iter())
        {
            &line[1..]
        } else {
            line
        };
        current.extend_from_slice(unquoted);
    }
    if !first {
        messages.push(crlf(current));
    }
    messages
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
    let admin = Admin::connect(config).await?;
    let progress = std::io::stderr().is_terminal();
    let (mut learnt, mut known, mut skipped) = ([0u64; 2], 0u64, 0u64);
    let total_files = work.len();
    for (done, (file, is_spam)) in work.into_iter().enumerate() {
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        let is_mbox = std::fs::File::open(&file)
            .and_then(|mut f| {
                let mut head = [0u8; 5];
                std::io::Read::read_exact(&mut f, &mut head).map(|_| &head == b"From ")
            })
            .unwrap_or(false);
        if size > MAX_MESSAGE && !is_mbox {
            skipped += 1;
            continue;
        }
        let raw = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        for message in messages_in(raw) {
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
        out.push_str(&format!(", {skipped} files over {} MiB skipped", MAX_MESSAGE / (1024 * 1024)));
    }
    out.push('\n');
    out.push_str(&String::from_utf8_lossy(&status.output));
    Ok(out)
}

/// `tern spam classify`: each file judged (with one connection for all of them).
pub async fn classify(config: &Config, files: &[PathBuf], user: Option<String>, brief: bool) -> anyhow::Result<String> {
    let admin = Admin::connect(config).await?;
    let mut out = String::new();
    for file in files {
        let raw = match std::fs::read(file) {
            Ok(raw) => raw,
            Err(e) => {
                admin.close().await?;
                anyhow::bail!("reading {}: {e}", file.display());
            }
        };
        // A file saved from an mbox starts with its "From " line: not part of the message.
        let raw = messages_in(raw).into_iter().next().unwrap_or_default();
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
