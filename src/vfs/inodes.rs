//! The inode table: what each inode number stands for, handed out once per target and
//! never reused while mounted, so an inode is stable for the life of the mount and equal
//! content shares one. The drive is given the table to number its own nodes
//! ([`InodeTable::new_drive_ino`]); it never learns what other inodes stand for.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use cid::Cid;

use super::{ROOT_INO, VfsError};

/// What an inode stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Target {
    Root,
    IpfsDir,
    /// A node of the drive tree (see [`drive`]), by its serial number.
    Drive(u64),
    /// `/.snapshots`: one read-only directory per commit, by sequence number.
    Snapshots,
    /// `/.snapshots/latest`: a symlink to the newest sequence number.
    Latest,
    Node(Cid),
    /// A map, list or scalar at `path` inside the dag-cbor block `cid`.
    Value {
        cid: Cid,
        path: Vec<String>,
    },
}

#[derive(Default)]
struct Inodes {
    targets: Vec<Target>,
    /// The first path each inode was reached by (for messages; content may have many).
    paths: Vec<String>,
    by_target: HashMap<Target, u64>,
}

pub(crate) struct InodeTable {
    inodes: RwLock<Inodes>,
    /// Serial numbers of drive nodes.
    serials: AtomicU64,
}

impl InodeTable {
    pub(super) fn new() -> InodeTable {
        let mut inodes = Inodes::default();
        inodes.targets.push(Target::Root);
        inodes.paths.push("/".into());
        inodes.by_target.insert(Target::Root, ROOT_INO);
        InodeTable { inodes: RwLock::new(inodes), serials: AtomicU64::new(1) }
    }

    pub(super) fn target(&self, ino: u64) -> Result<Target, VfsError> {
        let inodes = self.inodes.read().expect("lock poisoned");
        ino.checked_sub(1).and_then(|i| inodes.targets.get(i as usize)).cloned().ok_or(VfsError::StaleInode(ino))
    }

    /// A path by which `ino` was reached, for messages (`?` if unknown).
    pub(super) fn path_of(&self, ino: u64) -> String {
        let inodes = self.inodes.read().expect("lock poisoned");
        ino.checked_sub(1).and_then(|i| inodes.paths.get(i as usize)).cloned().unwrap_or_else(|| "?".into())
    }

    /// The inode of `target`, reached as `name` in directory `parent` (a new one the first
    /// time).
    pub(super) fn ino_for(&self, target: Target, parent: u64, name: &str) -> u64 {
        if let Some(ino) = self.inodes.read().expect("lock poisoned").by_target.get(&target) {
            return *ino;
        }
        let parent_path = self.path_of(parent);
        let mut inodes = self.inodes.write().expect("lock poisoned");
        if let Some(ino) = inodes.by_target.get(&target) {
            return *ino;
        }
        inodes.paths.push(if parent_path == "/" { format!("/{name}") } else { format!("{parent_path}/{name}") });
        inodes.targets.push(target.clone());
        let ino = inodes.targets.len() as u64;
        inodes.by_target.insert(target, ino);
        ino
    }

    /// A new inode for a node of the drive, named `name` in directory `parent`.
    pub(super) fn new_drive_ino(&self, parent: u64, name: &str) -> u64 {
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        self.ino_for(Target::Drive(serial), parent, name)
    }

    /// Whether `ino` is a node of the drive (mutable), rather than content under a CID.
    pub(super) fn is_drive(&self, ino: u64) -> bool {
        ino == ROOT_INO || matches!(self.target(ino), Ok(Target::Drive(_)))
    }
}
