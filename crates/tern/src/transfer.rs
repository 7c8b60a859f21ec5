//! `tern import` and `tern export`: mail in and out of a user's mailboxes as mbox or Maildir,
//! with flags, keywords and internal dates kept. Both stream (a batch of a few megabytes in
//! memory at a time), show progress on a terminal, and resume where an interrupted run
//! stopped: an import keeps its place in `data_dir/transfer/` and checks the first batch it
//! sends again against the mailbox (no message twice); an export continues after the last
//! message written.

use crate::mailfile::{self, MessageReader};
use crate::{Admin, base64_of};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::io::{IsTerminal, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use tern_config::Config;
use tern_server::admin::{AdminRequest, ExportBatch, ImportResult, MailboxInfo, TransferredMessage};

/// Messages larger than this are skipped (an admin request carries at most 64 MiB, base64).
pub(crate) const MAX_MESSAGE: u64 = 40 * 1024 * 1024;
/// A batch: at most this many messages or bytes per request.
pub(crate) const BATCH_MESSAGES: usize = 100;
pub(crate) const BATCH_BYTES: usize = 8 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Mbox,
    Maildir,
}

/// Set by Ctrl-C: the run ends after the batch in progress, with its place saved.
pub(crate) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Starts watching for Ctrl-C (see [`INTERRUPTED`]).
pub(crate) fn interrupted_flag() -> &'static AtomicBool {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            INTERRUPTED.store(true, Ordering::SeqCst);
        }
    });
    &INTERRUPTED
}

/// A progress line on standard error, on a terminal only.
pub(crate) struct Progress {
    on: bool,
    messages: u64,
    bytes: u64,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress { on: std::io::stderr().is_terminal(), messages: 0, bytes: 0 }
    }
    pub(crate) fn add(&mut self, messages: u64, bytes: u64, of: Option<(u64, u64)>) {
        self.messages += messages;
        self.bytes += bytes;
        if self.on {
            let share = of.map(|(done, total)| format!(" ({}%)", done * 100 / total.max(1))).unwrap_or_default();
            eprint!("\r{} messages, {:.1} MB{share}   ", self.messages, self.bytes as f64 / 1e6);
            let _ = std::io::stderr().flush();
        }
    }
    pub(crate) fn end(&self) {
        if self.on {
            eprintln!();
        }
    }
}

/// Where an import is: the state file is named by what is imported where.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ImportState {
    /// mbox: the offset of the next message to import.
    offset: u64,
    imported: u64,
}

pub(crate) fn state_path(config: &Config, kind: &str, email: &str, mailbox: &str, source: &Path) -> PathBuf {
    let key = format!("{kind}\0{email}\0{mailbox}\0{}", source.display());
    let name = blake3::hash(key.as_bytes()).to_hex()[..24].to_string();
    config.data_dir.join("transfer").join(format!("{kind}-{name}"))
}

pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Sends one batch; the counts of what was stored.
pub(crate) async fn send_batch(
    admin: &Admin,
    email: &str,
    mailbox: &str,
    messages: Vec<TransferredMessage>,
    skip_duplicates: bool,
) -> anyhow::Result<ImportResult> {
    let reply = admin
        .run(AdminRequest::MailImport {
            email: email.to_string(),
            mailbox: mailbox.to_string(),
            messages,
            skip_duplicates,
        })
        .await?;
    anyhow::ensure!(reply.ok, "{}", String::from_utf8_lossy(&reply.output).trim());
    Ok(serde_json::from_slice(&reply.output)?)
}

#[derive(Default)]
struct Totals {
    imported: u64,
    duplicates: u64,
    over_quota: u64,
    too_large: u64,
}

impl Totals {
    fn add(&mut self, r: &ImportResult) {
        self.imported += r.imported;
        self.duplicates += r.duplicates;
        self.over_quota += r.over_quota;
    }
    fn report(&self, what: &str, interrupted: bool) -> String {
        let mut out = format!("{what}: {} messages imported", self.imported);
        if self.duplicates > 0 {
            out.push_str(&format!(", {} already there", self.duplicates));
        }
        if self.over_quota > 0 {
            out.push_str(&format!(", {} left out: over the quota", self.over_quota));
        }
        if self.too_large > 0 {
            out.push_str(&format!(", {} left out: over {} MiB", self.too_large, MAX_MESSAGE >> 20));
        }
        if interrupted {
            out.push_str(" (interrupted: run the same command again to go on)");
        }
        out.push('\n');
        out
    }
}

/// `tern import mbox EMAIL FILE [--mailbox NAME]`.
pub async fn import_mbox(config: &Config, email: &str, path: &Path, mailbox: &str) -> anyhow::Result<String> {
    let path = std::fs::canonicalize(path).with_context(|| format!("reading {}", path.display()))?;
    let state_file = state_path(config, "import-mbox", email, mailbox, &path);
    let mut state: ImportState = match std::fs::read(&state_file) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => ImportState::default(),
    };
    let mut file = std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
    let size = file.metadata()?.len();
    if state.offset > size {
        // The file was replaced by a shorter one: start again (duplicates are checked).
        state = ImportState::default();
    }
    let resumed = state.offset > 0;
    file.seek(std::io::SeekFrom::Start(state.offset))?;
    let mut reader = MessageReader::new(std::io::BufReader::with_capacity(1 << 20, file), state.offset, MAX_MESSAGE)
        .with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        state.offset > 0 || reader.is_mbox() || size == 0,
        "{} is not an mbox file (it does not start with a `From ` line)",
        path.display()
    );
    let admin = Admin::connect(config, false).await?;
    let interrupted = interrupted_flag();
    let mut progress = Progress::new();
    let mut totals = Totals::default();
    let mut batch: Vec<TransferredMessage> = Vec::new();
    let (mut batch_bytes, mut batch_end, mut first_batch) = (0usize, state.offset, true);
    let mut stopped = false;
    let result: anyhow::Result<()> = async {
        loop {
            let next = reader.next().transpose().with_context(|| format!("reading {}", path.display()))?;
            let full = batch.len() >= BATCH_MESSAGES || batch_bytes >= BATCH_BYTES;
            if (next.is_none() || full) && !batch.is_empty() {
                let sent = std::mem::take(&mut batch);
                let count = sent.len() as u64;
                // The first batch of a resumed import may have been stored before the place
                // was saved.
                let r = send_batch(&admin, email, mailbox, sent, resumed && first_batch).await?;
                totals.add(&r);
                first_batch = false;
                state.offset = batch_end;
                state.imported += r.imported;
                write_synced(&state_file, &serde_json::to_vec(&state)?)
                    .with_context(|| format!("saving the import's place in {}", state_file.display()))?;
                progress.add(count, std::mem::take(&mut batch_bytes) as u64, Some((batch_end, size)));
                if interrupted.load(Ordering::SeqCst) {
                    stopped = true;
                    return Ok(());
                }
            }
            let Some(message) = next else { return Ok(()) };
            let internal_date =
                message.separator.as_deref().and_then(mailfile::separator_date).unwrap_or_else(tern_store::now_unix);
            let (flags, keywords, raw) = mailfile::mbox_state(&message.raw);
            batch_bytes += raw.len();
            batch_end = message.end;
            batch.push(TransferredMessage { uid: 0, flags, keywords, internal_date, raw: base64_of(&raw) });
        }
    }
    .await;
    progress.end();
    admin.close().await?;
    result?;
    totals.too_large = reader.skipped;
    Ok(totals.report(&format!("{} into {email} {mailbox}", path.display()), stopped))
}

/// The folders of a Maildir++ tree: the top (INBOX) and each `.Name.Sub` folder (`Name/Sub`).
fn maildir_folders(root: &Path) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    if root.join("cur").is_dir() || root.join("new").is_dir() {
        out.push((root.to_path_buf(), tern_store::INBOX.to_string()));
    }
    let mut subs: Vec<(PathBuf, String)> = std::fs::read_dir(root)
        .with_context(|| format!("reading {}", root.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let folder = name.strip_prefix('.')?.to_string();
            (!folder.is_empty() && !folder.starts_with('.') && e.path().join("cur").is_dir())
                .then(|| (e.path(), folder.replace('.', "/")))
        })
        .collect();
    subs.sort();
    out.extend(subs);
    anyhow::ensure!(!out.is_empty(), "{} is not a Maildir (no cur/ or new/, no .Folder/cur)", root.display());
    Ok(out)
}

/// `tern import maildir EMAIL DIR [--mailbox NAME]`: the Maildir at DIR into INBOX (or NAME),
/// and its Maildir++ subfolders (`.Sent`, `.Archive.2024`) into mailboxes of the same names
/// (under NAME when given). Files already imported (by name) are skipped on a new run.
pub async fn import_maildir(
    config: &Config,
    email: &str,
    root: &Path,
    mailbox: Option<&str>,
) -> anyhow::Result<String> {
    let root = std::fs::canonicalize(root).with_context(|| format!("reading {}", root.display()))?;
    let admin = Admin::connect(config, false).await?;
    let interrupted = interrupted_flag();
    let mut progress = Progress::new();
    let mut out = String::new();
    let mut result = Ok(());
    for (folder, name) in maildir_folders(&root)? {
        let target = match (mailbox, name.as_str()) {
            (Some(m), tern_store::INBOX) => m.to_string(),
            (Some(m), sub) => format!("{m}/{sub}"),
            (None, n) => n.to_string(),
        };
        match import_maildir_folder(config, &admin, email, &folder, &target, interrupted, &mut progress).await {
            Ok((totals, stopped)) => {
                out.push_str(&totals.report(&format!("{} into {email} {target}", folder.display()), stopped));
                if stopped {
                    break;
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    progress.end();
    admin.close().await?;
    result.map(|()| out)
}

async fn import_maildir_folder(
    config: &Config,
    admin: &Admin,
    email: &str,
    folder: &Path,
    mailbox: &str,
    interrupted: &AtomicBool,
    progress: &mut Progress,
) -> anyhow::Result<(Totals, bool)> {
    // The names imported before (the unique part, before `:2,`), one per line.
    let done_file = state_path(config, "import-maildir", email, mailbox, folder);
    let done: std::collections::HashSet<String> =
        std::fs::read_to_string(&done_file).unwrap_or_default().lines().map(str::to_string).collect();
    let resumed = !done.is_empty();
    if let Some(parent) = done_file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut done_log = std::fs::OpenOptions::new().create(true).append(true).open(&done_file)?;
    let keyword_names = mailfile::read_keyword_names(folder);
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(folder.join(sub)) else { continue };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let unique = name.split(':').next().unwrap_or(&name).to_string();
            if !name.starts_with('.') && !done.contains(&unique) && e.path().is_file() {
                files.push((e.path(), name));
            }
        }
    }
    // Oldest first, so UIDs follow arrival (names start with the delivery time).
    files.sort_by(|a, b| a.1.cmp(&b.1));
    let mut totals = Totals::default();
    let mut batch = Vec::new();
    let mut names = Vec::new();
    let mut batch_bytes = 0usize;
    let mut first_batch = true;
    let mut iter = files.into_iter().peekable();
    while let Some((path, name)) = iter.next() {
        let meta = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if meta.len() > MAX_MESSAGE {
            totals.too_large += 1;
        } else {
            let raw = mailfile::crlf(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
            // Dovecot keeps a message's arrival time as the file's modification time.
            let internal_date = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or_else(tern_store::now_unix, |d| d.as_secs() as i64);
            let (flags, keywords) = mailfile::maildir_flags(&name, &keyword_names);
            batch_bytes += raw.len();
            batch.push(TransferredMessage { uid: 0, flags, keywords, internal_date, raw: base64_of(&raw) });
            names.push(name.split(':').next().unwrap_or(&name).to_string());
        }
        let last = iter.peek().is_none();
        if !batch.is_empty() && (last || batch.len() >= BATCH_MESSAGES || batch_bytes >= BATCH_BYTES) {
            let count = batch.len() as u64;
            let r = send_batch(admin, email, mailbox, std::mem::take(&mut batch), resumed && first_batch).await?;
            first_batch = false;
            totals.add(&r);
            let lines: String = names.drain(..).map(|n| n + "\n").collect();
            done_log.write_all(lines.as_bytes())?;
            done_log.sync_data()?;
            progress.add(count, std::mem::take(&mut batch_bytes) as u64, None);
            if interrupted.load(Ordering::SeqCst) {
                return Ok((totals, true));
            }
        }
    }
    Ok((totals, false))
}

/// A mailbox name as a relative path: its `/`-separated parts, none of them empty, `.` or
/// `..` (names come from the store, but a path must never leave DIR).
fn safe_relative(name: &str) -> anyhow::Result<PathBuf> {
    let mut out = PathBuf::new();
    for part in name.split('/') {
        anyhow::ensure!(
            !part.is_empty() && part != "." && part != ".." && !part.contains('\0'),
            "mailbox name {name:?}"
        );
        out.push(part);
    }
    Ok(out)
}

/// Where an mbox export is, per mailbox, in `DIR/.tern-export.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ExportState {
    mailboxes: std::collections::BTreeMap<String, MboxPlace>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct MboxPlace {
    uid_validity: u32,
    last_uid: u32,
    /// The file's length after `last_uid` was written (anything after it is cut on resume).
    length: u64,
}

/// `tern export EMAIL DIR [--format maildir|mbox] [--mailbox NAME]`.
pub async fn export(
    config: &Config,
    email: &str,
    dir: &Path,
    format: Format,
    only: Option<&str>,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let admin = Admin::connect(config, false).await?;
    let result = export_with(&admin, email, dir, format, only).await;
    admin.close().await?;
    result
}

async fn export_with(
    admin: &Admin,
    email: &str,
    dir: &Path,
    format: Format,
    only: Option<&str>,
) -> anyhow::Result<String> {
    let reply = admin.run(AdminRequest::MailboxList { email: email.to_string() }).await?;
    anyhow::ensure!(reply.ok, "{}", String::from_utf8_lossy(&reply.output).trim());
    let mut mailboxes: Vec<MailboxInfo> = serde_json::from_slice(&reply.output)?;
    if let Some(name) = only {
        mailboxes.retain(|m| m.name.eq_ignore_ascii_case(name));
        anyhow::ensure!(!mailboxes.is_empty(), "{email} has no mailbox {name}");
    }
    let interrupted = interrupted_flag();
    let mut progress = Progress::new();
    let state_file = dir.join(".tern-export.json");
    let mut state: ExportState = match format {
        Format::Mbox => {
            std::fs::read(&state_file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
        }
        Format::Maildir => ExportState::default(),
    };
    let mut out = String::new();
    let mut stopped = false;
    for mailbox in &mailboxes {
        let mut written = 0u64;
        let mut sink = match format {
            Format::Maildir => Sink::maildir(dir, &mailbox.name, mailbox.uid_validity)?,
            Format::Mbox => {
                let place = state.mailboxes.get(&mailbox.name).cloned().unwrap_or_default();
                let place = if place.uid_validity == mailbox.uid_validity { place } else { MboxPlace::default() };
                Sink::mbox(dir, &mailbox.name, place)?
            }
        };
        loop {
            let reply = admin
                .run(AdminRequest::MailExport {
                    email: email.to_string(),
                    mailbox: mailbox.name.clone(),
                    after_uid: sink.last_uid(),
                    max_bytes: BATCH_BYTES as u64,
                })
                .await?;
            anyhow::ensure!(reply.ok, "{}", String::from_utf8_lossy(&reply.output).trim());
            let batch: ExportBatch = serde_json::from_slice(&reply.output)?;
            if batch.uid_validity != mailbox.uid_validity {
                anyhow::bail!("mailbox {} was recreated during the export; run it again", mailbox.name);
            }
            let mut bytes = 0u64;
            for m in &batch.messages {
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD.decode(&m.raw)?;
                bytes += raw.len() as u64;
                sink.write(m, &raw)?;
            }
            sink.sync()?;
            if let Sink::Mbox { place, .. } = &sink {
                state.mailboxes.insert(mailbox.name.clone(), place.clone());
                write_synced(&state_file, &serde_json::to_vec_pretty(&state)?)?;
            }
            written += batch.messages.len() as u64;
            progress.add(batch.messages.len() as u64, bytes, None);
            if interrupted.load(Ordering::SeqCst) {
                stopped = true;
                break;
            }
            if !batch.more {
                break;
            }
        }
        sink.finish()?;
        out.push_str(&format!("{} -> {}: {written} messages\n", mailbox.name, sink.path().display()));
        if stopped {
            out.push_str("interrupted: run the same command again to go on\n");
            break;
        }
    }
    progress.end();
    Ok(out)
}

/// Where exported messages go.
enum Sink {
    Maildir { folder: PathBuf, uid_validity: u32, last_uid: u32, keyword_names: Vec<String>, keywords_changed: bool },
    Mbox { path: PathBuf, file: std::fs::File, place: MboxPlace },
}

impl Sink {
    /// INBOX is the Maildir at DIR; `A/B` is `DIR/.A.B` (Maildir++, as Dovecot lays it out).
    /// Files already there from an earlier run of this mailbox are kept and not written again.
    fn maildir(dir: &Path, name: &str, uid_validity: u32) -> anyhow::Result<Sink> {
        safe_relative(name)?;
        let folder = if name == tern_store::INBOX {
            dir.to_path_buf()
        } else {
            dir.join(format!(".{}", name.replace('/', ".")))
        };
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(folder.join(sub)).with_context(|| format!("cannot create {}", folder.display()))?;
        }
        // Names are `<date>.T<uidvalidity>U<uid>.tern:2,<flags>`.
        let tag = format!("T{uid_validity}U");
        let last_uid = std::fs::read_dir(folder.join("cur"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let rest = &name[name.find(&tag)? + tag.len()..];
                rest.split('.').next()?.parse::<u32>().ok()
            })
            .max()
            .unwrap_or(0);
        let keyword_names = mailfile::read_keyword_names(&folder);
        Ok(Sink::Maildir { folder, uid_validity, last_uid, keyword_names, keywords_changed: false })
    }

    /// `A/B` is `DIR/A/B.mbox`; a resumed file is cut back to where its last batch ended.
    fn mbox(dir: &Path, name: &str, place: MboxPlace) -> anyhow::Result<Sink> {
        let mut path = dir.join(safe_relative(name)?);
        path.set_extension(match path.extension() {
            Some(e) => format!("{}.mbox", e.to_string_lossy()),
            None => "mbox".into(),
        });
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        file.set_len(place.length)?;
        let mut file = file;
        file.seek(std::io::SeekFrom::Start(place.length))?;
        Ok(Sink::Mbox { path, file, place })
    }

    fn last_uid(&self) -> u32 {
        match self {
            Sink::Maildir { last_uid, .. } => *last_uid,
            Sink::Mbox { place, .. } => place.last_uid,
        }
    }

    fn path(&self) -> &Path {
        match self {
            Sink::Maildir { folder, .. } => folder,
            Sink::Mbox { path, .. } => path,
        }
    }

    fn write(&mut self, m: &TransferredMessage, raw: &[u8]) -> anyhow::Result<()> {
        match self {
            Sink::Maildir { folder, uid_validity, last_uid, keyword_names, keywords_changed } => {
                let before = keyword_names.len();
                let info = mailfile::maildir_info(m.flags, &m.keywords, keyword_names);
                *keywords_changed |= keyword_names.len() != before;
                let unique = format!("{}.T{}U{}.tern", m.internal_date, uid_validity, m.uid);
                // Written in tmp/, synced, then moved into cur/ (the Maildir delivery order).
                let tmp = folder.join("tmp").join(&unique);
                let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
                f.write_all(raw)?;
                let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(m.internal_date.max(0) as u64);
                f.set_modified(when)?;
                f.sync_data()?;
                std::fs::rename(&tmp, folder.join("cur").join(format!("{unique}{info}")))?;
                *last_uid = m.uid;
            }
            Sink::Mbox { file, place, .. } => {
                let entry = mailfile::mbox_entry(raw, m.flags, &m.keywords, m.internal_date);
                file.write_all(&entry)?;
                place.length += entry.len() as u64;
                place.last_uid = m.uid;
            }
        }
        Ok(())
    }

    /// Makes what was written durable (before the place is saved).
    fn sync(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::Maildir { folder, keyword_names, keywords_changed, .. } => {
                if std::mem::take(keywords_changed) {
                    mailfile::write_keyword_names(folder, keyword_names)?;
                }
                std::fs::File::open(folder.join("cur"))?.sync_all()?;
            }
            Sink::Mbox { file, .. } => file.sync_data()?,
        }
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.sync()
    }
}
