//! The drive's operations as the mount offers them: each goes to the [`Drive`] (a mount
//! without one — `--ipfs` — refuses them with `EROFS`). Inodes are the drive's own node
//! numbers (it takes them from the inode table), so nothing is translated here.

use std::time::SystemTime;

use cid::Cid;

use super::drive::Drive;
use super::{Attr, Vfs, VfsError};

impl Vfs {
    /// The drive, for an operation on it (`EROFS` without one).
    pub(super) fn drive(&self) -> Result<&Drive, VfsError> {
        self.drive.as_deref().ok_or(VfsError::ReadOnly)
    }

    /// The drive, if `ino` is one of its nodes.
    pub(super) fn drive_node(&self, ino: u64) -> Option<&Drive> {
        self.drive.as_deref().filter(|_| self.inodes.is_drive(ino))
    }

    /// Whether `ino` is a node of the drive (mutable), rather than content under a CID.
    /// Asks the inode table, not the drive: content reads must not wait on a commit.
    pub fn is_drive(&self, ino: u64) -> bool {
        self.drive_node(ino).is_some()
    }

    /// Creates an empty regular file, open for writing.
    pub fn create(&self, parent: u64, name: &str, mode: u32) -> Result<Attr, VfsError> {
        self.drive()?.create(parent, name, mode)
    }

    pub fn mkdir(&self, parent: u64, name: &str, mode: u32) -> Result<Attr, VfsError> {
        self.drive()?.mkdir(parent, name, mode)
    }

    pub fn symlink(&self, parent: u64, name: &str, target: &[u8]) -> Result<Attr, VfsError> {
        self.drive()?.symlink(parent, name, target)
    }

    /// Writes `data` at `offset` (past the end leaves a hole that reads as zeros).
    pub fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, VfsError> {
        self.drive()?.write(ino, offset, data)
    }

    /// Sets a file's length (growing reads as zeros, and takes no room).
    pub fn truncate(&self, ino: u64, len: u64) -> Result<(), VfsError> {
        self.drive()?.truncate(ino, len)
    }

    /// Changes mode and/or mtime.
    pub fn set_meta(&self, ino: u64, mode: Option<u32>, mtime: Option<SystemTime>) -> Result<(), VfsError> {
        self.drive()?.set_meta(ino, mode, mtime)
    }

    /// Removes a file or symlink (`rmdir = false`) or an empty directory (`rmdir = true`).
    pub fn remove(&self, parent: u64, name: &str, rmdir: bool) -> Result<(), VfsError> {
        self.drive()?.remove(parent, name, rmdir)
    }

    pub fn rename(&self, parent: u64, name: &str, new_parent: u64, new_name: &str) -> Result<(), VfsError> {
        self.drive()?.rename(parent, name, new_parent, new_name)
    }

    /// `rename`; with `noreplace`, refused with `EEXIST` if the target exists.
    pub fn rename_with(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        noreplace: bool,
    ) -> Result<(), VfsError> {
        self.drive()?.rename_with(parent, name, new_parent, new_name, noreplace)
    }

    /// Swaps two entries atomically (`RENAME_EXCHANGE`).
    pub fn exchange(&self, parent: u64, name: &str, new_parent: u64, new_name: &str) -> Result<(), VfsError> {
        self.drive()?.exchange(parent, name, new_parent, new_name)
    }

    /// Adds the name `new_name` in `new_parent` for the file or symlink `ino` (`link(2)`).
    pub fn link(&self, ino: u64, new_parent: u64, new_name: &str) -> Result<Attr, VfsError> {
        self.drive()?.link(ino, new_parent, new_name)
    }

    /// Sets owner and/or group (see [`Drive::set_owner`]).
    pub fn set_owner(&self, ino: u64, uid: Option<Option<u32>>, gid: Option<Option<u32>>) -> Result<(), VfsError> {
        self.drive()?.set_owner(ino, uid, gid)
    }

    /// Sets the access time (`None`: the mtime's).
    pub fn set_atime(&self, ino: u64, atime: Option<SystemTime>) -> Result<(), VfsError> {
        self.drive()?.set_atime(ino, atime)
    }

    /// Sets an extended attribute (`XATTR_CREATE` / `XATTR_REPLACE` as `create` / `replace`).
    pub fn set_xattr(&self, ino: u64, name: &str, value: &[u8], create: bool, replace: bool) -> Result<(), VfsError> {
        self.drive()?.set_xattr(ino, name, value, create, replace)
    }

    pub fn remove_xattr(&self, ino: u64, name: &str) -> Result<(), VfsError> {
        self.drive()?.remove_xattr(ino, name)
    }

    /// A handle opened `ino` for writing.
    pub fn opened_for_write(&self, ino: u64) {
        if let Some(d) = &self.drive {
            d.opened_for_write(ino);
        }
    }

    /// A write handle on `ino` was closed.
    pub fn released_writer(&self, ino: u64) {
        if let Some(d) = &self.drive {
            d.released_writer(ino);
        }
    }

    /// Makes every change durable (what `fsync` runs); the drive's root CID if it changed.
    pub fn commit(&self) -> Result<Option<Cid>, VfsError> {
        match &self.drive {
            Some(d) => d.commit(),
            None => Ok(None),
        }
    }

    /// The periodic commit: files still open for writing keep their last committed version.
    pub fn commit_closed(&self) -> Result<Option<Cid>, VfsError> {
        match &self.drive {
            Some(d) => d.commit_closed(),
            None => Ok(None),
        }
    }
}
