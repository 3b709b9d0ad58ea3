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
//! close it. The adapter tracks, per inode, the open handles of each kind (it learns of a
//! close only from `release`, which the kernel sends after it dropped the handle's mode:
//! the counts here are never lower than the kernel's):
//!
//! - a read-only open while passthrough handles are open: passes through to the same
//!   backing file (the content cannot have changed since);
//! - a read-only open with no page-cache handle open and a hot copy of the content:
//!   registers the copy as the inode's backing file and passes through;
//! - any other open: the page cache, kept across opens (`FOPEN_KEEP_CACHE`), as before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Per-inode I/O modes of a mount (see the module docs).
#[derive(Default)]
pub(super) struct IoModes {
    inodes: Mutex<HashMap<u64, InodeIo>>,
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
        let mut inodes = self.inodes.lock().expect("lock poisoned");
        let io = inodes.entry(ino).or_default();
        let r = if write && io.passthrough > 0 { Err(VfsError::Busy) } else { prepare() };
        if let Err(e) = r {
            if io.cached == 0 && io.passthrough == 0 {
                inodes.remove(&ino);
            }
            drop(inodes);
            return refuse(e, reply);
        }
        if !write && io.cached == 0 && io.backing.is_none() && self.enabled.load(Ordering::Relaxed) {
            self.register(vfs, ino, io, &reply);
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

    /// Registers the hot copy of `ino` (if it has one) as its backing file.
    fn register(&self, vfs: &Vfs, ino: u64, io: &mut InodeIo, reply: &ReplyOpen) {
        let Some(file) = vfs.hot_copy(ino) else { return };
        match reply.open_backing(&file) {
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
        let inodes = self.inodes.lock().expect("lock poisoned");
        if inodes.get(&ino).is_some_and(|io| io.passthrough > 0) {
            return Err(VfsError::Busy);
        }
        change()
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
            }
            _ => {}
        }
        if io.cached == 0 && io.passthrough == 0 {
            inodes.remove(&ino);
        }
    }
}
