//! `tern migrate imap`: copies every folder of an account on another IMAP server (imapsync
//! style) into a Tern user, with flags, keywords and internal dates. Incremental: the place in
//! each folder (UIDVALIDITY and the last UID copied) is kept in `data_dir/transfer/`, so a new
//! run copies only what arrived since; when the source's UIDVALIDITY changed, the folder is
//! read again and messages whose content is already there are left out. Safe to interrupt
//! (Ctrl-C ends after the batch in progress; even a kill loses no place that was saved).

use crate::transfer::{self, BATCH_BYTES, BATCH_MESSAGES, MAX_MESSAGE};
use crate::{Admin, base64_of};
use anyhow::Context;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};
use tern_config::Config;
use tern_server::admin::TransferredMessage;
use tern_store::Flags;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub struct MigrateArgs {
    pub from: String,
    pub user: String,
    pub password: String,
    pub to: String,
    pub ca_file: Option<PathBuf>,
}

/// The source server's address from `imaps://host[:port]` or `imap://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    tls: bool,
    host: String,
    port: u16,
}

fn parse_source(url: &str) -> anyhow::Result<Source> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("imaps://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("imap://") {
        (false, r)
    } else {
        anyhow::bail!("--from {url:?}: use imaps://host[:port] or imap://host[:port]")
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h.trim_start_matches('[').trim_end_matches(']'), p.parse().with_context(|| format!("port in {url:?}"))?)
        }
        _ => (rest, if tls { 993 } else { 143 }),
    };
    anyhow::ensure!(!host.is_empty(), "--from {url:?}: no host");
    Ok(Source { tls, host: host.to_string(), port })
}

/// A connection to the source, plain or TLS.
#[derive(Debug)]
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type Session = async_imap::Session<Conn>;

async fn tls_wrap(source: &Source, ca_file: Option<&std::path::Path>, tcp: TcpStream) -> anyhow::Result<Conn> {
    let roots = tern_delivery::tls::TlsConfigs::new(ca_file)?.roots();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(source.host.clone())
        .with_context(|| format!("{:?} is not a host name", source.host))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS with {} (its certificate must be valid; --ca-file adds a CA)", source.host))?;
    Ok(Conn::Tls(Box::new(tls)))
}

/// Connects, secures the connection (implicit TLS, or STARTTLS; clear text only to a
/// loopback address) and logs in.
async fn connect(source: &Source, args: &MigrateArgs) -> anyhow::Result<Session> {
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        TcpStream::connect((source.host.as_str(), source.port)),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer from {}:{}", source.host, source.port))?
    .with_context(|| format!("cannot connect to {}:{}", source.host, source.port))?;
    let loopback = tcp.peer_addr().map(|a| a.ip().is_loopback()).unwrap_or(false);
    let conn = if source.tls {
        tls_wrap(source, args.ca_file.as_deref(), tcp).await?
    } else {
        let mut client = async_imap::Client::new(Conn::Plain(tcp));
        client.read_response().await?.context("the server closed the connection")?;
        match client.run_command_and_check_ok("STARTTLS", None).await {
            Ok(()) => match client.into_inner() {
                Conn::Plain(tcp) => tls_wrap(source, args.ca_file.as_deref(), tcp).await?,
                tls => tls,
            },
            Err(e) if loopback => {
                tracing::debug!(error = %e, "no STARTTLS on loopback: clear text");
                client.into_inner()
            }
            Err(e) => anyhow::bail!(
                "{} does not offer STARTTLS ({e}): the password is not sent in clear text; use imaps://",
                source.host
            ),
        }
    };
    let mut client = async_imap::Client::new(conn);
    if source.tls {
        client.read_response().await?.context("the server closed the connection")?;
    }
    client
        .login(&args.user, &args.password)
        .await
        .map_err(|(e, _)| anyhow::anyhow!("login as {} refused: {e}", args.user))
}

/// The place in a source folder.
#[derive(Debug, Default, Serialize, Deserialize)]
struct FolderState {
    uid_validity: u32,
    last_uid: u32,
}

fn flags_of(fetch: &async_imap::types::Fetch) -> (Flags, Vec<String>) {
    use async_imap::types::Flag;
    let mut flags = Flags::default();
    let mut keywords = Vec::new();
    for f in fetch.flags() {
        match f {
            Flag::Seen => flags.insert(Flags::SEEN),
            Flag::Answered => flags.insert(Flags::ANSWERED),
            Flag::Flagged => flags.insert(Flags::FLAGGED),
            Flag::Deleted => flags.insert(Flags::DELETED),
            Flag::Draft => flags.insert(Flags::DRAFT),
            Flag::Custom(k) if crate::mailfile::is_keyword(&k) => keywords.push(k.to_string()),
            _ => {}
        }
    }
    (flags, keywords)
}

/// Folder names of the source as Tern names: its delimiter becomes `/`, INBOX stays INBOX,
/// and an `INBOX.` prefix that every folder has (Courier, Cyrus layouts) is dropped.
fn target_names(names: &[(String, Option<String>)]) -> Vec<(String, String)> {
    let mapped: Vec<(String, String)> = names
        .iter()
        .map(|(name, delimiter)| {
            if name.eq_ignore_ascii_case("INBOX") {
                return (name.clone(), "INBOX".to_string());
            }
            let parts: Vec<&str> = match delimiter.as_deref().filter(|d| !d.is_empty()) {
                Some(d) => name.split(d).collect(),
                None => vec![name.as_str()],
            };
            (name.clone(), parts.join("/"))
        })
        .collect();
    let others: Vec<&(String, String)> = mapped.iter().filter(|(_, t)| t != "INBOX").collect();
    let prefixed = !others.is_empty() && others.iter().all(|(_, t)| t.to_ascii_uppercase().starts_with("INBOX/"));
    mapped.into_iter().map(|(s, t)| if prefixed && t != "INBOX" { (s, t[6..].to_string()) } else { (s, t) }).collect()
}

pub async fn run(config: &Config, args: MigrateArgs) -> anyhow::Result<String> {
    let source = parse_source(&args.from)?;
    let mut session = connect(&source, &args).await?;
    let listed: Vec<async_imap::types::Name> = session.list(Some(""), Some("*")).await?.try_collect().await?;
    let selectable: Vec<(String, Option<String>)> = listed
        .iter()
        .filter(|n| !n.attributes().iter().any(|a| matches!(a, async_imap::types::NameAttribute::NoSelect)))
        .map(|n| (n.name().to_string(), n.delimiter().map(str::to_string)))
        .collect();
    let admin = Admin::connect(config, false).await?;
    let interrupted = transfer::interrupted_flag();
    let mut progress = transfer::Progress::new();
    let mut out = String::new();
    let mut result = Ok(());
    for (folder, target) in target_names(&selectable) {
        match migrate_folder(config, &admin, &mut session, &args, &folder, &target, &mut progress).await {
            Ok((copied, duplicates)) => {
                out.push_str(&format!("{folder} -> {target}: {copied} messages copied"));
                if duplicates > 0 {
                    out.push_str(&format!(", {duplicates} already there"));
                }
                out.push('\n');
            }
            Err(e) => {
                result = Err(e.context(format!("folder {folder}")));
                break;
            }
        }
        if interrupted.load(Ordering::SeqCst) {
            out.push_str("interrupted: run the same command again to go on\n");
            break;
        }
    }
    progress.end();
    let _ = session.logout().await;
    admin.close().await?;
    result.map(|()| out)
}

async fn migrate_folder(
    config: &Config,
    admin: &Admin,
    session: &mut Session,
    args: &MigrateArgs,
    folder: &str,
    target: &str,
    progress: &mut transfer::Progress,
) -> anyhow::Result<(u64, u64)> {
    let mailbox = session.examine(folder).await.with_context(|| format!("EXAMINE {folder}"))?;
    let uid_validity = mailbox.uid_validity.unwrap_or(0);
    // The place is kept per source account and folder (whichever port or TLS mode is used).
    let source = parse_source(&args.from)?;
    let key = format!("{}\0{}\0{folder}", source.host.to_ascii_lowercase(), args.user);
    let state_file = transfer::state_path(config, "migrate", &args.to, target, std::path::Path::new(&key));
    let saved: FolderState =
        std::fs::read(&state_file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    // The same folder as last time: go on after the last UID. Else (first run, or the source
    // renumbered it) read it all, leaving out what is already here.
    let (mut last_uid, dedupe_all) =
        if saved.uid_validity == uid_validity && uid_validity != 0 { (saved.last_uid, false) } else { (0, true) };
    let resumed = last_uid > 0;
    if mailbox.exists == 0 {
        transfer::write_synced(&state_file, &serde_json::to_vec(&FolderState { uid_validity, last_uid })?)?;
        return Ok((0, 0));
    }
    // The UIDs and sizes to copy.
    let listing: Vec<async_imap::types::Fetch> = session
        .uid_fetch(format!("{}:*", last_uid.saturating_add(1)), "(UID RFC822.SIZE)")
        .await?
        .try_collect()
        .await?;
    let mut todo: Vec<(u32, u32)> =
        listing.iter().filter_map(|f| Some((f.uid?, f.size.unwrap_or(0)))).filter(|(uid, _)| *uid > last_uid).collect();
    todo.sort_unstable();
    let (mut copied, mut duplicates, mut first_batch) = (0u64, 0u64, true);
    for chunk in batches(&todo) {
        let set = chunk.iter().map(|(uid, _)| uid.to_string()).collect::<Vec<_>>().join(",");
        let fetched: Vec<async_imap::types::Fetch> =
            session.uid_fetch(&set, "(UID FLAGS INTERNALDATE BODY.PEEK[])").await?.try_collect().await?;
        let mut messages: Vec<(u32, TransferredMessage)> = Vec::new();
        let mut bytes = 0u64;
        for f in &fetched {
            let (Some(uid), Some(body)) = (f.uid, f.body()) else { continue };
            let (flags, keywords) = flags_of(f);
            let internal_date = f.internal_date().map_or_else(tern_store::now_unix, |d| d.timestamp());
            bytes += body.len() as u64;
            messages.push((uid, TransferredMessage { uid: 0, flags, keywords, internal_date, raw: base64_of(body) }));
        }
        messages.sort_by_key(|(uid, _)| *uid);
        let highest = chunk.iter().map(|(uid, _)| *uid).max().unwrap_or(last_uid);
        let count = messages.len() as u64;
        let r = transfer::send_batch(
            admin,
            &args.to,
            target,
            messages.into_iter().map(|(_, m)| m).collect(),
            dedupe_all || (resumed && first_batch),
        )
        .await?;
        first_batch = false;
        copied += r.imported;
        duplicates += r.duplicates;
        last_uid = highest;
        transfer::write_synced(&state_file, &serde_json::to_vec(&FolderState { uid_validity, last_uid })?)
            .with_context(|| format!("saving the place in {}", state_file.display()))?;
        progress.add(count, bytes, None);
        if transfer::INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
    }
    Ok((copied, duplicates))
}

/// UIDs in batches of at most [`BATCH_MESSAGES`] messages and about [`BATCH_BYTES`]; messages
/// over [`MAX_MESSAGE`] are left out.
fn batches(todo: &[(u32, u32)]) -> Vec<Vec<(u32, u32)>> {
    let mut out: Vec<Vec<(u32, u32)>> = Vec::new();
    let mut bytes = 0u64;
    for &(uid, size) in todo {
        if u64::from(size) > MAX_MESSAGE {
            tracing::warn!(uid, size, "message over the size limit left out");
            continue;
        }
        match out.last_mut() {
            Some(b) if b.len() < BATCH_MESSAGES && bytes + u64::from(size) <= BATCH_BYTES as u64 => {
                bytes += u64::from(size);
                b.push((uid, size));
            }
            _ => {
                bytes = u64::from(size);
                out.push(vec![(uid, size)]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_urls() {
        assert_eq!(
            parse_source("imaps://mail.example.org").unwrap(),
            Source { tls: true, host: "mail.example.org".into(), port: 993 }
        );
        assert_eq!(
            parse_source("imap://127.0.0.1:1143/").unwrap(),
            Source { tls: false, host: "127.0.0.1".into(), port: 1143 }
        );
        assert_eq!(parse_source("imaps://[::1]:994").unwrap(), Source { tls: true, host: "::1".into(), port: 994 });
        assert!(parse_source("pop3://x").is_err());
        assert!(parse_source("imap://x:notaport").is_err());
    }

    #[test]
    fn folder_names_become_tern_names() {
        let names = |list: &[(&str, &str)]| {
            target_names(&list.iter().map(|(n, d)| (n.to_string(), Some(d.to_string()))).collect::<Vec<_>>())
                .into_iter()
                .map(|(_, t)| t)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&[("INBOX", "/"), ("Archive/2020", "/"), ("Sent", "/")]), ["INBOX", "Archive/2020", "Sent"]);
        assert_eq!(
            names(&[("INBOX", "."), ("INBOX.Sent", "."), ("INBOX.Lists.rust", ".")]),
            ["INBOX", "Sent", "Lists/rust"]
        );
        assert_eq!(names(&[("inbox", "."), ("Work.2024", ".")]), ["INBOX", "Work/2024"]);
    }

    #[test]
    fn batches_are_bounded() {
        let todo: Vec<(u32, u32)> = (1..=250).map(|u| (u, 1000)).collect();
        let b = batches(&todo);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [100, 100, 50]);
        let big = batches(&[(1, 5_000_000), (2, 5_000_000), (3, (MAX_MESSAGE + 1) as u32)]);
        assert_eq!(big.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
    }
}
