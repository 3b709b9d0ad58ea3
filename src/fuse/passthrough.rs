//! FUSE passthrough: handing the kernel a hot copy to read from directly.
//!
//! A read-only open of a file that has a hot copy (see `vfs::hot`) is answered with
//! `FOPEN_PASSTHROUGH` and a backing file registered with the kernel: its reads and mmaps
//! then go to the copy on the local filesystem, never through cidfs, at that filesystem's
//! speed. Registering a backing file needs `CAP_SYS_ADMIN`; without it (a mount by an
//! ordinary user) the first refusal turns passthrough off for the mount, and every open is
//! served as before.
//!
//! The kernel keeps one I/O mode per inode: while any open file of an inode passes
//! through, every other open of it must pass through too, to the same backing file, and
//! none may use the page cache (the open fails with `EIO`). A writer passing through would
//! write into the hot copy, behind cidfs's back. So while a file is open for passthrough
//! reads its content cannot change: opening it for writing, or truncating it, fails with
//! `ETXTBSY` ("text file busy", as writing a running program does) until those readers
//! close it. The adapter tracks, per inode, the open handles of each kind. It learns of a
//! close only from `release`, which the kernel sends after `close` returns and after it
//! dropped the handle's mode, so the counts here are never lower than the kernel's, and a
//! writer waits up to [`RELEASE_WAIT`] for a reader that just closed to be counted out.
//!
//! - a read-only open while passthrough handles are open: passes through to the same
//!   backing file (the content cannot have changed since);
//! - a read-only open with no page-cache handle open and a hot copy of the content:
//!   registers the copy as the inode's backing file and passes through;
//! - any other open: the page cache, kept across opens (`FOPEN_KEEP_CACHE`), as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fuser::{BackingId, FileHandle, FopenFlags, ReplyOpen};

use crate::vfs::{Vfs, VfsError};

/// File handles say how a file was opened (released handles are counted by kind).
pub(super) const FH_CACHED: u64 = 0;
pub(super) const FH_PASSTHROUGH: u64 = 1;

#[derive(Default)]
struct InodeIo {
    /// Open handles using the page cache.
    cached: u32,
    /// Open handles passing through, and the backing file they share.
    passthrough: u32,
    backing: Option<BackingId>,
}

/// How long a writer waits for passthrough readers to go before `ETXTBSY`: the kernel
/// sends `release` after `close` returns, so a reader that just closed may not be counted
/// out yet.
const RELEASE_WAIT: Duration = Duration::from_secs(1);

type Inodes = HashMap<u64, InodeIo>;

/// Per-inode I/O modes of a mount (see the module docs).
#[derive(Default)]
pub(super) struct IoModes {
    inodes: Mutex<Inodes>,
    /// Signalled whenever a passthrough handle is released.
    released: Condvar,
    /// Whether the kernel took passthrough at init and we may register backing files.
    enabled: AtomicBool,
}

impl IoModes {
    pub(super) fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Opens `ino`: `prepare` does what the vfs does for the open (refusals, `O_TRUNC`),
    /// unless a writer meets passthrough readers; a refusal goes to `refuse`.
    pub(super) fn open(
        &self,
        vfs: &Vfs,
        ino: u64,
        write: bool,
        prepare: impl FnOnce() -> Result<(), VfsError>,
        reply: ReplyOpen,
        refuse: impl FnOnce(VfsError, ReplyOpen),
    ) {
        // Found before taking the lock (it may read the file's root block); checked again
        // under it, where the content cannot change (no writer is open, truncates wait).
        let copy = (!write && self.enabled.load(Ordering::Relaxed)).then(|| vfs.hot_copy(ino)).flatten();
        let mut inodes = self.inodes.lock().expect("lock poisoned");
        if write {
            let free;
            (inodes, free) = self.wait_for_readers(inodes, ino);
            if !free {
                drop(inodes);
                return refuse(VfsError::Busy, reply);
            }
        }
        let io = inodes.entry(ino).or_default();
        if let Err(e) = prepare() {
            if io.cached == 0 && io.passthrough == 0 {
                inodes.remove(&ino);
            }
            drop(inodes);
            return refuse(e, reply);
        }
        if let Some((file, cid)) = copy
            && io.cached == 0
            && io.backing.is_none()
            && vfs.clean_cid(ino) == Some(cid)
        {
            self.register(&file, io, &reply);
        }
        match &io.backing {
            Some(id) if !write => {
                io.passthrough += 1;
                log::debug!("open of inode {ino} passes through to its hot copy");
                reply.opened_passthrough(FileHandle(FH_PASSTHROUGH), FopenFlags::empty(), id);
            }
            _ => {
                io.cached += 1;
                reply.opened(FileHandle(FH_CACHED), FopenFlags::FOPEN_KEEP_CACHE);
            }
        }
    }

    /// Registers `file` (a hot copy) as the inode's backing file.
    fn register(&self, file: &std::fs::File, io: &mut InodeIo, reply: &ReplyOpen) {
        match reply.open_backing(file) {
            Ok(id) => io.backing = Some(id),
            Err(e) => {
                log::info!(
                    "FUSE passthrough is not available ({e}; it needs CAP_SYS_ADMIN): reads of hot copies \
                     go through cidfs"
                );
                self.enabled.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Runs `change` (a truncate) on the content of `ino`, unless it is open for
    /// passthrough reads.
    pub(super) fn change_content(
        &self,
        ino: u64,
        change: impl FnOnce() -> Result<(), VfsError>,
    ) -> Result<(), VfsError> {
        let (_inodes, free) = self.wait_for_readers(self.inodes.lock().expect("lock poisoned"), ino);
        if !free {
            return Err(VfsError::Busy);
        }
        change()
    }

    /// Waits (up to [`RELEASE_WAIT`]) until no passthrough handle of `ino` is open; says
    /// whether none is.
    fn wait_for_readers<'a>(&self, mut inodes: MutexGuard<'a, Inodes>, ino: u64) -> (MutexGuard<'a, Inodes>, bool) {
        let deadline = Instant::now() + RELEASE_WAIT;
        while inodes.get(&ino).is_some_and(|io| io.passthrough > 0) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (inodes, false);
            }
            inodes = self.released.wait_timeout(inodes, left).expect("lock poisoned").0;
        }
        (inodes, true)
    }

    /// A file created (and opened) through the page cache.
    pub(super) fn created(&self, ino: u64) {
        self.inodes.lock().expect("lock poisoned").entry(ino).or_default().cached += 1;
    }

    /// The kernel closed handle `fh` of `ino`.
    pub(super) fn release(&self, ino: u64, fh: u64) {
        let mut inodes = self.inodes.lock().expect("lock poisoned");
        let Some(io) = inodes.get_mut(&ino) else { return };
        match fh {
            FH_CACHED => io.cached = io.cached.saturating_sub(1),
            FH_PASSTHROUGH => {
                io.passthrough = io.passthrough.saturating_sub(1);
                if io.passthrough == 0 {
                    io.backing = None; // unregisters the backing file
                }
                self.released.notify_all();
            }
            _ => {}
        }
        if io.cached == 0 && io.passthrough == 0 {
            inodes.remove(&ino);
        }
    }
}
