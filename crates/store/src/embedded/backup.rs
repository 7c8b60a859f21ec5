//! Backup and restore of the embedded store.
//!
//! A backup is taken from one fjall snapshot (a consistent point across all keyspaces) while
//! the store stays in use: every record is written to `store.dump`, and the contents kept as
//! files are copied beside it. While a backup runs, the writer leaves content files whose last
//! reference went (it removes them once no backup runs), so none that the snapshot refers to
//! disappears before it is copied. The full-text index is not copied: a restored store
//! rebuilds it when it is first opened with full text on.
//!
//! `store.dump`: the line `TERN-STORE-DUMP 1`, a JSON line (store format, keyspace names),
//! then records `[keyspace index u8][key length u32 BE][key][value length u32 BE][value]`,
//! then `0xFF` and the BLAKE3 hash of everything before it.

use super::{EmbeddedStore, Engine, blobfile, keys};
use crate::error::{StoreError, StoreResult};
use crate::model::BackupSummary;
use fjall::Readable;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

const MAGIC: &[u8] = b"TERN-STORE-DUMP 1\n";
const DUMP: &str = "store.dump";
const END: u8 = 0xFF;
/// Records restored per write batch (bounded memory).
const RESTORE_BATCH_BYTES: usize = 32 * 1024 * 1024;

#[derive(serde::Serialize, serde::Deserialize)]
struct DumpHeader {
    store_format: u32,
    keyspaces: Vec<String>,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |error| StoreError::Io { context, error }
}

impl Engine {
    /// The keyspaces a backup holds (not the full-text queues: the index is rebuilt).
    fn backed_up(&self) -> [(&'static str, &fjall::Keyspace); 25] {
        use keys::ks;
        [
            (ks::META, &self.meta),
            (ks::DOMAINS, &self.domains),
            (ks::ACCOUNTS, &self.accounts),
            (ks::ACCOUNT_NAMES, &self.account_names),
            (ks::ALIASES, &self.aliases),
            (ks::MAILBOXES, &self.mailboxes),
            (ks::MAILBOX_NAMES, &self.mailbox_names),
            (ks::MESSAGES, &self.messages),
            (ks::BLOBS, &self.blobs),
            (ks::BLOB_REFS, &self.blob_refs),
            (ks::SUMMARIES, &self.summaries),
            (ks::ENVELOPES, &self.envelopes),
            (ks::THREADS, &self.threads),
            (ks::CHANGES, &self.changes),
            (ks::EXPUNGED, &self.expunged),
            (ks::QUEUE, &self.queue),
            (ks::QUEUE_DUE, &self.queue_due),
            (ks::SUBSCRIPTIONS, &self.subscriptions),
            (ks::SPAM, &self.spam),
            (ks::QUARANTINE, &self.quarantine),
            (ks::SIEVE, &self.sieve),
            (ks::ACL, &self.acl),
            (ks::METADATA, &self.metadata),
            (ks::PRIVATE_SEEN, &self.private_seen),
            (ks::API_TOKENS, &self.api_tokens),
        ]
    }

    /// Writes the backup into `dir` (which must not hold one).
    pub(super) fn backup(&self, dir: &Path) -> StoreResult<BackupSummary> {
        std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let dump_path = dir.join(DUMP);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dump_path)
            .map_err(io(format!("cannot create {}", dump_path.display())))?;
        self.backups_running.fetch_add(1, Ordering::SeqCst);
        let result = self.backup_from_snapshot(dir, file);
        self.backups_running.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn backup_from_snapshot(&self, dir: &Path, file: std::fs::File) -> StoreResult<BackupSummary> {
        let dump_path = dir.join(DUMP);
        let werr = io(format!("cannot write {}", dump_path.display()));
        // After `backups_running` went up: no content file the snapshot refers to goes.
        let snapshot = self.db.snapshot();
        let spaces = self.backed_up();
        let mut out = HashingWriter { inner: BufWriter::with_capacity(1 << 20, file), hasher: blake3::Hasher::new() };
        let header = DumpHeader {
            store_format: keys::FORMAT_VERSION,
            keyspaces: spaces.iter().map(|(name, _)| name.to_string()).collect(),
        };
        let mut summary = BackupSummary::default();
        let written: std::io::Result<()> = (|| {
            out.write_all(MAGIC)?;
            out.write_all(&serde_json::to_vec(&header).map_err(std::io::Error::other)?)?;
            out.write_all(b"\n")?;
            Ok(())
        })();
        written.map_err(werr)?;
        for (index, (_, keyspace)) in spaces.iter().enumerate() {
            for item in snapshot.iter(keyspace) {
                let (key, value) = item.into_inner()?;
                let record: std::io::Result<()> = (|| {
                    out.write_all(&[index as u8])?;
                    out.write_all(&(key.len() as u32).to_be_bytes())?;
                    out.write_all(&key)?;
                    out.write_all(&(value.len() as u32).to_be_bytes())?;
                    out.write_all(&value)
                })();
                record.map_err(io(format!("cannot write {}", dump_path.display())))?;
                summary.records += 1;
                summary.bytes += (key.len() + value.len()) as u64;
            }
        }
        let hash = out.hasher.finalize();
        let mut inner = out.inner;
        let finished: std::io::Result<()> = (|| {
            inner.write_all(&[END])?;
            inner.write_all(hash.as_bytes())?;
            inner.into_inner().map_err(|e| e.into_error())?.sync_all()
        })();
        finished.map_err(io(format!("cannot write {}", dump_path.display())))?;

        // Contents kept as files, as the snapshot refers to them.
        let target = blobfile::directory(dir);
        for item in snapshot.iter(&self.blob_refs) {
            let (key, value) = item.into_inner()?;
            let Some(r) = keys::read_blob_ref(&value).filter(|r| r.in_file) else { continue };
            let hash = crate::model::BlobHash(
                key.as_ref().try_into().map_err(|_| StoreError::corrupt("blob reference key", "length"))?,
            );
            let from = blobfile::path_of(&self.blob_dir, &hash);
            let to = blobfile::path_of(&target, &hash);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(io(format!("cannot create {}", parent.display())))?;
            }
            let copied = std::fs::copy(&from, &to).map_err(io(format!("cannot copy {}", from.display())))?;
            if copied != r.size {
                return Err(StoreError::corrupt(format!("content file {}", from.display()), "size differs"));
            }
            std::fs::File::open(&to).and_then(|f| f.sync_all()).map_err(io(format!("cannot sync {}", to.display())))?;
            summary.files += 1;
        }
        sync_tree(dir).map_err(io(format!("cannot sync {}", dir.display())))?;
        Ok(summary)
    }
}

/// fsyncs every directory under `dir` (and `dir`), so the names of the files are durable.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// One record of a dump: keyspace index, key, value.
type Record = (u8, Vec<u8>, Vec<u8>);

/// Reads a dump: its header, then each record, checking the hash at the end.
struct DumpReader {
    reader: BufReader<std::fs::File>,
    hasher: blake3::Hasher,
    path: std::path::PathBuf,
}

impl DumpReader {
    fn open(path: &Path) -> StoreResult<(DumpReader, DumpHeader)> {
        let file = std::fs::File::open(path).map_err(io(format!("cannot read {}", path.display())))?;
        let mut r = DumpReader {
            reader: BufReader::with_capacity(1 << 20, file),
            hasher: blake3::Hasher::new(),
            path: path.to_path_buf(),
        };
        let mut magic = vec![0u8; MAGIC.len()];
        r.read_exact(&mut magic)?;
        if magic != MAGIC {
            return Err(StoreError::corrupt(path.display().to_string(), "not a Tern store dump"));
        }
        let mut line = Vec::new();
        loop {
            let mut b = [0u8; 1];
            r.read_exact(&mut b)?;
            if b[0] == b'\n' {
                break;
            }
            line.push(b[0]);
            if line.len() > 64 * 1024 {
                return Err(StoreError::corrupt(path.display().to_string(), "header too long"));
            }
        }
        let header: DumpHeader =
            serde_json::from_slice(&line).map_err(|e| StoreError::corrupt(path.display().to_string(), e))?;
        if header.store_format != keys::FORMAT_VERSION {
            return Err(StoreError::Format { found: header.store_format, supported: keys::FORMAT_VERSION });
        }
        Ok((r, header))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> StoreResult<()> {
        self.reader.read_exact(buf).map_err(io(format!("cannot read {} (truncated?)", self.path.display())))?;
        self.hasher.update(buf);
        Ok(())
    }

    /// The next record, or `None` at the end (after the hash matched).
    fn next(&mut self) -> StoreResult<Option<Record>> {
        let mut index = [0u8; 1];
        self.reader.read_exact(&mut index).map_err(io(format!("cannot read {} (truncated?)", self.path.display())))?;
        if index[0] == END {
            let mut stored = [0u8; 32];
            self.reader.read_exact(&mut stored).map_err(io(format!("cannot read {}", self.path.display())))?;
            if self.hasher.finalize().as_bytes() != &stored {
                return Err(StoreError::corrupt(self.path.display().to_string(), "checksum does not match"));
            }
            return Ok(None);
        }
        self.hasher.update(&index);
        let mut len = [0u8; 4];
        self.read_exact(&mut len)?;
        let mut key = vec![0u8; u32::from_be_bytes(len) as usize];
        self.read_exact(&mut key)?;
        self.read_exact(&mut len)?;
        let value_len = u32::from_be_bytes(len) as usize;
        if value_len > 1 << 30 {
            return Err(StoreError::corrupt(self.path.display().to_string(), "record too large"));
        }
        let mut value = vec![0u8; value_len];
        self.read_exact(&mut value)?;
        Ok(Some((index[0], key, value)))
    }
}

impl EmbeddedStore {
    /// Checks a backup in `from` whole (every record and the checksum) without writing.
    pub fn verify_backup(from: &Path) -> StoreResult<BackupSummary> {
        let (mut reader, header) = DumpReader::open(&from.join(DUMP))?;
        let mut summary = BackupSummary::default();
        while let Some((index, key, value)) = reader.next()? {
            if usize::from(index) >= header.keyspaces.len() {
                return Err(StoreError::corrupt(DUMP, format!("keyspace index {index}")));
            }
            summary.records += 1;
            summary.bytes += (key.len() + value.len()) as u64;
        }
        Ok(summary)
    }

    /// Makes a new store at `path` from the backup in `from` (checked whole first). `path`
    /// must not hold a store. The full-text index is rebuilt when the store is next opened
    /// with full text on.
    pub fn restore(path: &Path, from: &Path, cache_mb: u64) -> StoreResult<BackupSummary> {
        if path.join("version").exists() || path.join("keyspaces").exists() {
            return Err(StoreError::Exists(format!("a store in {}", path.display())));
        }
        EmbeddedStore::verify_backup(from)?;
        let engine = Engine::open(path, cache_mb)?;
        let spaces = engine.backed_up();
        let (mut reader, header) = DumpReader::open(&from.join(DUMP))?;
        let mut targets = Vec::new();
        for name in &header.keyspaces {
            let keyspace = spaces
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, k)| *k)
                .ok_or_else(|| StoreError::corrupt(DUMP, format!("unknown keyspace {name}")))?;
            targets.push(keyspace);
        }
        let mut summary = BackupSummary::default();
        let mut batch = engine.db.batch();
        let mut pending = 0usize;
        while let Some((index, key, value)) = reader.next()? {
            let keyspace =
                targets.get(usize::from(index)).ok_or_else(|| StoreError::corrupt(DUMP, "keyspace index"))?;
            pending += key.len() + value.len();
            summary.records += 1;
            summary.bytes += (key.len() + value.len()) as u64;
            batch.insert(keyspace, key, value);
            if pending >= RESTORE_BATCH_BYTES {
                std::mem::replace(&mut batch, engine.db.batch()).commit()?;
                pending = 0;
            }
        }
        batch.commit()?;
        // Contents kept as files.
        let source = blobfile::directory(from);
        if source.is_dir() {
            for sub in std::fs::read_dir(&source).map_err(io(format!("cannot read {}", source.display())))? {
                let sub = sub.map_err(io(source.display().to_string()))?;
                let target = engine.blob_dir.join(sub.file_name());
                std::fs::create_dir_all(&target).map_err(io(format!("cannot create {}", target.display())))?;
                for f in std::fs::read_dir(sub.path()).map_err(io(source.display().to_string()))? {
                    let f = f.map_err(io(source.display().to_string()))?;
                    let to = target.join(f.file_name());
                    std::fs::copy(f.path(), &to).map_err(io(format!("cannot copy {}", f.path().display())))?;
                    std::fs::File::open(&to).and_then(|f| f.sync_all()).map_err(io(to.display().to_string()))?;
                    summary.files += 1;
                }
            }
            sync_tree(&engine.blob_dir).map_err(io(engine.blob_dir.display().to_string()))?;
        }
        engine.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(summary)
    }
}
