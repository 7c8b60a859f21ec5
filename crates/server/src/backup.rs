//! `tern backup DIR` and `tern restore DIR`: the store (one consistent point in time, taken
//! while the server runs), and the data directory's other files (the server secret, the
//! generated certificate, DMARC report state). `MANIFEST.json`, written last, marks a backup
//! as complete.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tern_store::{BackupSummary, Store};

const MANIFEST: &str = "MANIFEST.json";
/// Files and directories of the data directory a backup carries besides the store.
const FILES: [&str; 3] = ["secret", "tls", crate::DMARC_STATE];

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    tern_version: String,
    store_format: u32,
    created: i64,
    store: BackupSummary,
    files: Vec<String>,
}

/// Writes a backup of the store and the data directory's files into `dest` (made; it must be
/// empty or missing).
pub async fn backup(store: &dyn Store, data_dir: &Path, dest: &Path) -> anyhow::Result<String> {
    if dest.exists() {
        let mut entries = std::fs::read_dir(dest).with_context(|| format!("cannot read {}", dest.display()))?;
        anyhow::ensure!(entries.next().is_none(), "{} is not empty: back up into a new directory", dest.display());
    }
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let started = std::time::Instant::now();
    let summary = store.backup(dest.join("store")).await?;
    // File copies and fsyncs on the blocking pool, not the async workers.
    let (data_dir, target) = (data_dir.to_path_buf(), dest.to_path_buf());
    let store_summary = summary.clone();
    let manifest = tokio::task::spawn_blocking(move || -> anyhow::Result<Manifest> {
        let files = copy_files(&data_dir, &target.join("files"))?;
        let manifest = Manifest {
            tern_version: env!("CARGO_PKG_VERSION").to_string(),
            store_format: tern_store::embedded::FORMAT_VERSION,
            created: tern_store::now_unix(),
            store: store_summary,
            files,
        };
        write_synced(&target.join(MANIFEST), &serde_json::to_vec_pretty(&manifest)?)?;
        Ok(manifest)
    })
    .await??;
    Ok(format!(
        "backup in {}: {} records ({:.1} MB), {} content files, {} other files, in {:.1} s\n",
        dest.display(),
        summary.records,
        summary.bytes as f64 / 1e6,
        summary.files,
        manifest.files.len(),
        started.elapsed().as_secs_f64()
    ))
}

/// Copies what of [`FILES`] exists from `data_dir` into `dest`; the names copied.
fn copy_files(data_dir: &Path, dest: &Path) -> anyhow::Result<Vec<String>> {
    let mut copied = Vec::new();
    for name in FILES {
        let from = data_dir.join(name);
        if from.exists() {
            copy_tree(&from, &dest.join(name))?;
            copied.push(name.to_string());
        }
    }
    Ok(copied)
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
        for entry in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        std::fs::File::open(to)?.sync_all()?;
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        std::fs::File::open(to)?.sync_all()?;
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Makes a data directory from a backup. `data_dir` must hold no store (a new or empty one);
/// the server must not run.
pub fn restore(data_dir: &Path, from: &Path, cache_mb: u64) -> anyhow::Result<String> {
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(from.join(MANIFEST))
            .with_context(|| format!("{} is not a complete Tern backup (no {MANIFEST})", from.display()))?,
    )
    .with_context(|| format!("{}", from.join(MANIFEST).display()))?;
    let store_path = crate::store_path(data_dir);
    anyhow::ensure!(
        !store_path.exists(),
        "{} already holds a store: restore into a new data directory (--data DIR), or move it away first",
        data_dir.display()
    );
    crate::data_dir::secure(data_dir)?;
    let summary = tern_store::embedded::EmbeddedStore::restore(&store_path, &from.join("store"), cache_mb)
        .inspect_err(|_| {
            // Nothing half-restored stays behind.
            let _ = std::fs::remove_dir_all(&store_path);
        })?;
    for name in &manifest.files {
        anyhow::ensure!(FILES.contains(&name.as_str()), "{MANIFEST} names an unexpected file {name:?}");
        copy_tree(&from.join("files").join(name), &data_dir.join(name))?;
    }
    Ok(format!(
        "restored into {} from the backup of {} (Tern {}): {} records, {} content files, {} other files. \
         The full-text index is rebuilt in the background when the server starts.\n",
        data_dir.display(),
        time::OffsetDateTime::from_unix_timestamp(manifest.created)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default(),
        manifest.tern_version,
        summary.records,
        summary.files,
        manifest.files.len()
    ))
}

/// An absolute form of a path given on the command line (the server's working directory is
/// not the caller's).
pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("{}", path.display()))
}
