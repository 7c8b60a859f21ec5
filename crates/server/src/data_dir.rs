//! The data directory holds every message, password hash and private key: it belongs to the
//! server's user alone. It is created 0700; an existing one that others can read (made by an
//! older Tern, or by hand under a permissive umask) is made private again at start, loudly.
//! Files the process creates are private through its umask (077, set in `main`).

use anyhow::Context;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Creates `path` (mode 0700) or makes it and everything under it private to its owner.
pub fn secure(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("cannot create data_dir {}", path.display()))?;
        return Ok(());
    }
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read data_dir {}", path.display()))?;
    anyhow::ensure!(meta.is_dir(), "data_dir {} is not a directory", path.display());
    let mode = meta.permissions().mode() & 0o777;
    let mut fixed = 0usize;
    tighten(path, &mut fixed).with_context(|| format!("cannot make data_dir {} private", path.display()))?;
    if fixed > 0 {
        tracing::warn!(
            data_dir = %path.display(),
            was = format!("{mode:o}"),
            fixed,
            "the data directory was readable by other local users; it is now 0700 and its files 0600"
        );
    }
    Ok(())
}

/// Removes group and other permissions from `path` and, recursively, from what it holds
/// (symbolic links are left alone); counts what it changed.
fn tighten(path: &Path, fixed: &mut usize) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7700))?;
        *fixed += 1;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten(&entry?.path(), fixed)?;
        }
    }
    Ok(())
}

/// The server's secret (32 random bytes in `data_dir/secret`, made at first start): keys
/// values that must be unpredictable to clients yet stable across restarts, such as the
/// made-up SCRAM salts of unknown users.
pub fn server_secret(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("secret");
    match std::fs::read(&path) {
        Ok(bytes) => {
            return bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} is not 32 bytes; remove it to make a new one", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let mut secret = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut secret[..]);
    let tmp = data_dir.join("secret.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(&secret)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_and_existing_directories_end_up_private() {
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join("a/b/data");
        secure(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);

        let old = tmp.path().join("old");
        std::fs::create_dir_all(old.join("store")).unwrap();
        std::fs::write(old.join("store/journal"), b"secret").unwrap();
        for (p, m) in [(old.clone(), 0o755), (old.join("store"), 0o755), (old.join("store/journal"), 0o644)] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        std::os::unix::fs::symlink("/etc/hostname", old.join("link")).unwrap();
        secure(&old).unwrap();
        assert_eq!((mode(&old), mode(&old.join("store")), mode(&old.join("store/journal"))), (0o700, 0o700, 0o600));
        assert_eq!(mode(Path::new("/etc/hostname")) & 0o044, 0o044, "links are not followed");
    }

    #[test]
    fn the_secret_is_made_once() {
        let tmp = tempfile::tempdir().unwrap();
        let a = server_secret(tmp.path()).unwrap();
        assert_eq!(server_secret(tmp.path()).unwrap(), a);
        assert_eq!(mode(&tmp.path().join("secret")), 0o600);
        std::fs::write(tmp.path().join("secret"), b"short").unwrap();
        assert!(server_secret(tmp.path()).is_err());
    }
}
