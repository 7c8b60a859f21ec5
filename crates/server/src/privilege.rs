//! Running as an unprivileged user (`[server] user`): started as root, Tern binds its ports
//! (below 1024) and reads its certificate first, then gives the data directory to the user and
//! drops root for good: supplementary groups, group, user. glibc applies `setuid` to every
//! thread of the process, the runtime's workers included.

use anyhow::Context;
use std::ffi::CString;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The user to run as, when started as root and one is configured.
pub fn target(user: Option<&str>) -> anyhow::Result<Option<Account>> {
    let Some(name) = user else { return Ok(None) };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        tracing::info!(user = name, "not started as root: server.user does not apply");
        return Ok(None);
    }
    let c_name = CString::new(name).context("server.user")?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use of `pwd`'s strings
    // (only uid and gid are read).
    let rc = unsafe { libc::getpwnam_r(c_name.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    anyhow::ensure!(rc == 0 && !result.is_null(), "server.user: no user {name:?} on this system");
    anyhow::ensure!(pwd.pw_uid != 0, "server.user {name:?} is root: name an unprivileged user");
    Ok(Some(Account { name: name.to_string(), uid: pwd.pw_uid, gid: pwd.pw_gid }))
}

/// Gives `dir` and everything in it to the account (what is already its own is left alone).
pub fn hand_over(dir: &Path, account: &Account) -> anyhow::Result<()> {
    fn walk(path: &Path, account: &Account, changed: &mut usize) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path)?;
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        if meta.uid() != account.uid || meta.gid() != account.gid {
            std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid))?;
            *changed += 1;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                walk(&entry?.path(), account, changed)?;
            }
        }
        Ok(())
    }
    let mut changed = 0;
    walk(dir, account, &mut changed)
        .with_context(|| format!("giving data_dir {} to user {}", dir.display(), account.name))?;
    if changed > 0 {
        tracing::info!(data_dir = %dir.display(), user = %account.name, files = changed, "data directory given to the server's user");
    }
    Ok(())
}

/// Drops root for good, and checks that it cannot be taken back.
pub fn drop_to(account: &Account) -> anyhow::Result<()> {
    // SAFETY: plain system calls on this process's credentials.
    unsafe {
        anyhow::ensure!(libc::setgroups(0, std::ptr::null()) == 0, "setgroups: {}", std::io::Error::last_os_error());
        anyhow::ensure!(libc::setgid(account.gid) == 0, "setgid({}): {}", account.gid, std::io::Error::last_os_error());
        anyhow::ensure!(libc::setuid(account.uid) == 0, "setuid({}): {}", account.uid, std::io::Error::last_os_error());
        anyhow::ensure!(libc::setuid(0) != 0, "root could be taken back after dropping it");
        anyhow::ensure!(libc::geteuid() == account.uid && libc::getegid() == account.gid, "credentials did not change");
    }
    tracing::info!(user = %account.name, uid = account.uid, gid = account.gid, "running as an unprivileged user");
    Ok(())
}
