//! Large message contents as files (`store/blobs/<2 hex>/<64 hex>`) instead of LSM values.
//!
//! A value in the LSM tree is written to the journal, held in a memtable until it is flushed
//! and copied into the write batch on the way: a 48 MiB attachment cost three copies in memory
//! and was written twice. Contents of [`FILE_THRESHOLD`] bytes or more go to a file instead,
//! written and fsynced (file and directory) before the store transaction that references it
//! commits, so a reference never outlives a crash without its content. The writer deletes a
//! file only after the transaction that dropped its last reference is durable and no later one
//! took a new reference; a crash in between leaves an orphan that [`sweep`] removes at start.

use crate::model::BlobHash;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Contents at least this large are stored as files.
pub const FILE_THRESHOLD: usize = 1024 * 1024;

/// Where the files of the store at `store_path` live.
pub fn directory(store_path: &Path) -> PathBuf {
    store_path.join("blobs")
}

pub fn path_of(dir: &Path, hash: &BlobHash) -> PathBuf {
    let hex = hash.to_string();
    dir.join(&hex[..2]).join(hex)
}

/// Whether the file of `hash` is there with `size` bytes.
pub fn present(dir: &Path, hash: &BlobHash, size: u64) -> bool {
    std::fs::metadata(path_of(dir, hash)).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// Writes the content durably: a temporary file, fsync, rename, fsync of the directory. A
/// file already present with the right size is left alone (contents are named by their hash).
pub fn write(dir: &Path, hash: &BlobHash, bytes: &[u8]) -> io::Result<()> {
    if present(dir, hash, bytes.len() as u64) {
        return Ok(());
    }
    let path = path_of(dir, hash);
    let parent = path.parent().ok_or_else(|| io::Error::other("blob path without a directory"))?;
    if !parent.is_dir() {
        std::fs::create_dir_all(parent)?;
        sync_dir(dir)?;
    }
    // Unique among concurrent writers of the same content.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = parent.join(format!(".{hash}.{}.{n}.tmp", std::process::id()));
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        sync_dir(parent)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Reads the content back; `size` is what the reference count recorded.
pub fn read(dir: &Path, hash: &BlobHash, size: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(path_of(dir, hash))?;
    let mut out = Vec::with_capacity(size as usize);
    file.read_to_end(&mut out)?;
    Ok(out)
}

pub fn remove(dir: &Path, hash: &BlobHash) {
    match std::fs::remove_file(path_of(dir, hash)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(blob = %hash, error = %e, "cannot remove a message content file"),
    }
}

/// Removes temporary files and files no reference points to (left by a crash between a
/// transaction and the file operation that goes with it). Returns how many went.
pub fn sweep(dir: &Path, referenced: impl Fn(&BlobHash) -> bool) -> io::Result<usize> {
    let mut removed = 0;
    let Ok(top) = std::fs::read_dir(dir) else { return Ok(0) };
    for sub in top {
        let sub = sub?;
        if !sub.file_type()?.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(sub.path())? {
            let entry = entry?;
            let name = entry.file_name();
            let keep = name.to_str().and_then(BlobHash::parse).is_some_and(|h| referenced(&h));
            if !keep {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_read_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (a, b) = (b"first content".to_vec(), b"second content".to_vec());
        let (ha, hb) = (BlobHash::of(&a), BlobHash::of(&b));
        write(d, &ha, &a).unwrap();
        write(d, &ha, &a).unwrap();
        write(d, &hb, &b).unwrap();
        assert!(present(d, &ha, a.len() as u64) && !present(d, &ha, 3));
        assert_eq!(read(d, &ha, a.len() as u64).unwrap(), a);
        std::fs::write(path_of(d, &ha).with_file_name(".x.tmp"), b"partial").unwrap();
        assert_eq!(sweep(d, |h| *h == ha).unwrap(), 2, "the orphan and the temporary file");
        assert!(present(d, &ha, a.len() as u64) && !present(d, &hb, b.len() as u64));
        remove(d, &ha);
        remove(d, &ha);
        assert!(!present(d, &ha, a.len() as u64));
    }
}
