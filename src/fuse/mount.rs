//! Mounting and unmounting: mountpoint checks, repair of a stale mount left by a killed
//! process, the mount options, and readahead tuning.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use super::CidFs;
use crate::vfs::Vfs;

/// Readahead set on the mount's backing device after mounting (the kernel starts FUSE
/// mounts at 128 KiB whatever `init` asked for).
const READ_AHEAD_KB: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mountpoint {0} does not exist (create it first: mkdir -p {0})")]
    Missing(PathBuf),
    #[error("mountpoint {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("mountpoint {0} is not empty; cidfs mounts only over an empty directory")]
    NotEmpty(PathBuf),
    #[error("{0} is already mounted (cidfs unmount {0} first)")]
    AlreadyMounted(PathBuf),
    #[error("{0} is not mounted")]
    NotMounted(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl MountError {
    pub fn errno(&self) -> i32 {
        match self {
            MountError::Missing(_) => libc::ENOENT,
            MountError::NotADirectory(_) => libc::ENOTDIR,
            MountError::NotEmpty(_) => libc::ENOTEMPTY,
            MountError::AlreadyMounted(_) => libc::EBUSY,
            MountError::NotMounted(_) => libc::EINVAL,
            MountError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MountOptions {
    pub mountpoint: PathBuf,
    /// Let other users read the mount (`allow_other`).
    pub allow_other: bool,
    /// Event-loop threads serving requests.
    pub threads: usize,
    /// Mount read-only (the kernel refuses writes with EROFS before they reach us).
    pub read_only: bool,
    /// The store served: the mount's source, as `df` and mountinfo show it (and how
    /// `cidfs unmount` finds the process serving a mountpoint).
    pub store: PathBuf,
}

/// A line of /proc/self/mountinfo that matters here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub mountpoint: PathBuf,
    /// `major:minor` of the mount's device (its bdi, for readahead).
    pub device: String,
    pub fstype: String,
    /// The mount's source: for cidfs, the store directory it serves.
    pub source: String,
}

/// The mount at exactly `path`, if any (the last one, if stacked).
pub fn mount_entry(path: &Path) -> Option<MountEntry> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().filter_map(parse_mountinfo_line).find(|e| e.mountpoint == path)
}

/// Parses one mountinfo line: `id parent maj:min root mountpoint opts [tags] - fstype ...`.
pub fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let fields: Vec<&str> = left.split(' ').collect();
    Some(MountEntry {
        device: fields.get(2)?.to_string(),
        mountpoint: PathBuf::from(unescape_octal(fields.get(4)?)),
        fstype: right.split(' ').next()?.to_string(),
        source: unescape_octal(right.split(' ').nth(1).unwrap_or("")),
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks the mountpoint can take a new mount, clearing a stale one ("Transport endpoint
/// is not connected", left by a mount process killed with -9). Returns the absolute path.
pub fn prepare_mountpoint(path: &Path) -> Result<PathBuf, MountError> {
    let abs = std::path::absolute(path).map_err(io_at(path))?;
    let abs = fs::canonicalize(&abs).unwrap_or(abs);
    if mount_entry(&abs).is_some_and(|e| e.fstype.starts_with("fuse")) {
        // Attributes may be answered from the kernel's cache after the daemon died; opening
        // the directory always reaches the daemon, or fails with ENOTCONN if it is gone.
        return match fs::read_dir(&abs) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                log::warn!("{}: clearing a stale mount left by a process that died", abs.display());
                detach(&abs)?;
                prepare_mountpoint(&abs)
            }
            _ => Err(MountError::AlreadyMounted(abs)),
        };
    }
    match fs::metadata(&abs) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(MountError::Missing(abs)),
        Err(e) => Err(io_at(&abs)(e)),
        Ok(md) if !md.is_dir() => Err(MountError::NotADirectory(abs)),
        Ok(_) if fs::read_dir(&abs).map_err(io_at(&abs))?.next().is_some() => Err(MountError::NotEmpty(abs)),
        Ok(_) => Ok(abs),
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> MountError + '_ {
    move |source| MountError::Io { path: path.to_path_buf(), source }
}

fn detach(path: &Path) -> Result<(), MountError> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => fusermount_unmount(path),
        Err(e) => Err(io_at(path)(io::Error::from_raw_os_error(e as i32))),
    }
}

/// Non-root users unmount through the setuid helper from Debian's `fuse3`.
fn fusermount_unmount(path: &Path) -> Result<(), MountError> {
    let status =
        std::process::Command::new("fusermount3").arg("-u").arg("-z").arg(path).status().map_err(io_at(path))?;
    if status.success() { Ok(()) } else { Err(io_at(path)(io::Error::from_raw_os_error(libc::EPERM))) }
}

/// Mounts `vfs` read-only at the (prepared) mountpoint; the returned session serves it on
/// background threads until dropped or unmounted.
pub fn mount(vfs: Arc<Vfs>, opts: &MountOptions) -> Result<BackgroundSession, MountError> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(opts.store.display().to_string()),
        MountOption::Subtype("cidfs".into()),
        if opts.read_only { MountOption::RO } else { MountOption::RW },
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
        MountOption::DefaultPermissions,
    ];
    config.acl = if opts.allow_other { SessionACL::All } else { SessionACL::Owner };
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    let fs = CidFs::new(vfs, nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
    let session = fuser::spawn_mount(fs, &opts.mountpoint, &config).map_err(io_at(&opts.mountpoint))?;
    raise_readahead(&opts.mountpoint);
    Ok(session)
}

fn raise_readahead(mountpoint: &Path) {
    let Some(entry) = mount_entry(mountpoint) else { return };
    let path = format!("/sys/class/bdi/{}/read_ahead_kb", entry.device);
    if let Err(e) = fs::write(&path, READ_AHEAD_KB.to_string()) {
        log::debug!("could not raise readahead ({path}): {e}");
    }
}

/// The FUSE mount at `path`: its absolute path and mountinfo entry.
pub fn fuse_mount_at(path: &Path) -> Result<(PathBuf, MountEntry), MountError> {
    let abs = fs::canonicalize(path)
        .or_else(|e| if e.raw_os_error() == Some(libc::ENOTCONN) { Ok(path.to_path_buf()) } else { Err(e) });
    let abs = abs.map_err(io_at(path))?;
    match mount_entry(&abs) {
        Some(e) if e.fstype.starts_with("fuse") => Ok((abs, e)),
        _ => Err(MountError::NotMounted(abs)),
    }
}

/// Ends the session of a mount that is gone already (unmounted from outside, e.g. a plain
/// `umount`): joins nothing and unmounts nothing. fuser would unmount *by path* when the
/// session is dropped, taking down whatever was mounted at that path since.
pub fn forget_session(session: BackgroundSession) {
    std::mem::forget(session);
}

/// Unmounts a cidfs mount by its path (the mount process then exits).
pub fn unmount(path: &Path) -> Result<(), MountError> {
    let (abs, _) = fuse_mount_at(path)?;
    match nix::mount::umount2(&abs, nix::mount::MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => fusermount_unmount(&abs),
        Err(nix::errno::Errno::EBUSY) => {
            Err(io_at(&abs)(io::Error::other("the mount is busy (files open or a shell inside it)")))
        }
        Err(e) => Err(io_at(&abs)(io::Error::from_raw_os_error(e as i32))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse_with_escapes() {
        let line = "36 35 0:48 / /mnt/my\\040drive rw,nosuid shared:1 - fuse.cidfs cidfs ro,user_id=0";
        let e = parse_mountinfo_line(line).unwrap();
        assert_eq!(e.mountpoint, PathBuf::from("/mnt/my drive"));
        assert_eq!(e.device, "0:48");
        assert_eq!(e.fstype, "fuse.cidfs");
        assert_eq!(e.source, "cidfs");
        assert!(parse_mountinfo_line("garbage").is_none());
    }

    #[test]
    fn refusals_have_errnos() {
        assert_eq!(MountError::NotEmpty("/x".into()).errno(), libc::ENOTEMPTY);
        assert_eq!(MountError::Missing("/x".into()).errno(), libc::ENOENT);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        assert!(matches!(prepare_mountpoint(dir.path()), Err(MountError::NotEmpty(_))));
        assert!(matches!(prepare_mountpoint(&dir.path().join("nope")), Err(MountError::Missing(_))));
        assert!(matches!(prepare_mountpoint(&dir.path().join("f")), Err(MountError::NotADirectory(_))));
    }
}
