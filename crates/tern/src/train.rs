//! `tern spam train`: messages from .eml files, mbox files, Maildir folders and directories,
//! each taught to the classifier as one admin request (to the running server, or to the store
//! opened here).

use crate::mailfile::{MessageReader, message_files};
use crate::{Admin, base64_of};
use anyhow::Context;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use tern_config::Config;
use tern_server::admin::AdminRequest;

/// Messages larger than this are skipped (the classifier reads only the start anyway).
const MAX_MESSAGE: u64 = 32 * 1024 * 1024;

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
        let opened =
            std::fs::File::open(&file).map(std::io::BufReader::new).and_then(|r| MessageReader::new(r, 0, MAX_MESSAGE));
        let mut messages = opened.with_context(|| format!("reading {}", file.display()))?;
        for message in messages.by_ref() {
            let message = message.with_context(|| format!("reading {}", file.display()))?.raw;
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
            .and_then(|r| MessageReader::new(r, 0, MAX_MESSAGE))
            .and_then(|mut m| m.next().transpose());
        let raw = match first {
            Ok(message) => message.map(|m| m.raw).unwrap_or_default(),
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
