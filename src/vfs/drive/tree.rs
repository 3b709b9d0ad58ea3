//! The drive's tree: what each node is ([`DNode`]: not yet looked at, a directory, a file
//! with its content, a symlink, dag-cbor shown read-only), a changed file's bytes
//! ([`Content`], [`Overlay`]), and [`Tree`], everything the drive's one lock guards. The
//! small operations here change the tree and nothing else: they mark what a commit must
//! rebuild (a directory's CID, a file's version) and keep ctimes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use cid::Cid;

use super::persist::DriveStore;
use super::posix::Extras;
use super::spill::{MEMORY_MAX, SpillFile};
use super::stream::Stream;
use crate::importer::LinkInfo;
use crate::unixfs::Metadata;
use crate::unixfs::pb::UnixTime;
use crate::vfs::ROOT_INO;
use crate::vfs::VfsError;

pub(super) enum DNode {
    /// Not looked at yet: the entry's CID and the size its parent's link records.
    Lazy {
        cid: Cid,
        tsize: u64,
    },
    Dir {
        entries: BTreeMap<String, u64>,
        meta: Metadata,
        base: Option<LinkInfo>,
    },
    /// `base`: the link to this exact content, if committed; `committed`: the last
    /// committed version, even if changed since (what a background commit keeps while the
    /// file is still open for writing).
    File {
        content: Content,
        meta: Metadata,
        base: Option<LinkInfo>,
        committed: Option<LinkInfo>,
    },
    Symlink {
        target: Vec<u8>,
        meta: Metadata,
        base: Option<LinkInfo>,
    },
    /// Content the drive cannot change (dag-cbor): served read-only from its CID.
    Foreign {
        cid: Cid,
        tsize: u64,
    },
}

pub(super) enum Content {
    Base {
        cid: Cid,
        size: u64,
    },
    /// Changed since the last commit: written bytes live in `file`; with an overlay, the
    /// chunks nobody wrote are still read from the committed DAG. Without one, the leaves
    /// of a file written in order are made as it grows (`stream`).
    Spill {
        file: Arc<SpillFile>,
        size: u64,
        overlay: Option<Box<Overlay>>,
        stream: Stream,
    },
}

/// Chunk-granular copy-on-write over a committed file: reopening a 1 GiB file copies
/// nothing, writing 4 KiB copies one 256 KiB chunk into the spill file, and the commit
/// re-hashes only the written chunks (the others keep their leaf links).
#[derive(Clone, Debug)]
pub(super) struct Overlay {
    pub(super) base: Cid,
    pub(super) chunk: u64,
    /// The committed leaves: chunk `i` is `leaves[i]` (all full but the last).
    pub(super) leaves: Arc<Vec<LinkInfo>>,
    /// Chunks whose bytes live in the spill file.
    pub(super) dirty: std::collections::BTreeSet<u64>,
}

impl Overlay {
    pub(super) fn in_base(&self, i: u64) -> bool {
        (i as usize) < self.leaves.len() && !self.dirty.contains(&i)
    }
}

pub(super) struct Tree {
    pub(super) nodes: std::collections::HashMap<u64, DNode>,
    /// The root's mtime while it stores none (UnixFS metadata): when an entry of the root
    /// last changed, else the drive's last commit, else the store's creation.
    pub(super) root_time: std::time::SystemTime,
    /// Each node's directory (the root is its own parent).
    pub(super) parents: std::collections::HashMap<u64, u64>,
    pub(super) spill_dir: PathBuf,
    /// None: a read-only drive.
    pub(super) store: Option<Arc<dyn DriveStore>>,
    pub(super) changed: bool,
    /// Bytes held in spill files (not yet committed), counted against the capacity.
    pub(super) spill_bytes: u64,
    /// Where files to stream are queued (see [`stream`]).
    pub(super) streamer: Option<std::sync::mpsc::Sender<u64>>,
    /// Spill files opened since the last commit.
    pub(super) open_spills: usize,
    /// Spills created in memory since the last commit.
    pub(super) memory_spills: usize,
    /// Open write handles per file: background commits leave such files for later.
    pub(super) writers: std::collections::HashMap<u64, usize>,
    /// What UnixFS cannot hold (owner, atime, xattrs), per inode with any (see [`posix`]).
    pub(super) extras: HashMap<u64, Extras>,
    /// The committed sidecar of each directory (loaded or lazy) that has one.
    pub(super) sides: HashMap<u64, Cid>,
    /// Directories whose sidecar must be rebuilt at the next commit.
    pub(super) side_dirty: HashSet<u64>,
    /// Every name of each inode that has more than one (hard links): (directory, name).
    pub(super) links: HashMap<u64, Vec<(u64, String)>>,
    /// The hard-link groups in the last committed root sidecar.
    pub(super) groups: Vec<Vec<String>>,
    /// Each changed file's version: bumped by every write, truncate and metadata change.
    pub(super) versions: HashMap<u64, u64>,
    pub(super) edits: u64,
    /// Files imported ahead of a commit, outside the drive's lock (see `prebuild`): the
    /// version imported and its link, used by the commit if still current.
    pub(super) prebuilt: HashMap<u64, (u64, Built)>,
}

impl Tree {
    pub(super) fn new(root: Option<Cid>, spill_dir: PathBuf, store: Option<Arc<dyn DriveStore>>) -> Tree {
        let mut nodes = std::collections::HashMap::new();
        let root_node = match root {
            Some(cid) => DNode::Lazy { cid, tsize: 0 },
            None => DNode::Dir { entries: BTreeMap::new(), meta: Metadata::default(), base: None },
        };
        nodes.insert(ROOT_INO, root_node);
        let parents = [(ROOT_INO, ROOT_INO)].into();
        let writers = std::collections::HashMap::new();
        Tree {
            nodes,
            parents,
            spill_dir,
            store,
            changed: false,
            spill_bytes: 0,
            streamer: None,
            open_spills: 0,
            memory_spills: 0,
            writers,
            extras: HashMap::new(),
            sides: HashMap::new(),
            side_dirty: HashSet::new(),
            links: HashMap::new(),
            groups: Vec::new(),
            root_time: std::time::UNIX_EPOCH,
            versions: HashMap::new(),
            edits: 0,
            prebuilt: HashMap::new(),
        }
    }

    pub(super) fn is_writable(&self) -> bool {
        self.store.is_some()
    }

    /// Whether `ino` is a regular file this drive may change (not yet resolved entries
    /// count: they are checked when written).
    pub(super) fn is_writable_file(&self, ino: u64) -> bool {
        self.is_writable() && matches!(self.nodes.get(&ino), Some(DNode::File { .. } | DNode::Lazy { .. }))
    }

    /// Marks a directory changed (its CID must be recomputed) and sets its mtime.
    pub(super) fn touch_dir(&mut self, ino: u64) {
        if let Some(DNode::Dir { base, meta, .. }) = self.nodes.get_mut(&ino) {
            *base = None;
            if meta.mtime.is_some() {
                meta.mtime = Some(now());
            } else if ino == ROOT_INO {
                self.root_time = std::time::SystemTime::now();
            }
        }
        self.side_dirty.insert(ino);
        self.changed = true;
    }

    /// Moves a spill that outgrows memory to disk.
    pub(super) fn grow_spill(&mut self, file: &SpillFile, len: u64) -> Result<(), VfsError> {
        if len > MEMORY_MAX && file.in_memory() {
            file.move_to_disk(&self.spill_dir).map_err(VfsError::Io)?;
            self.open_spills += 1;
        }
        Ok(())
    }

    pub(super) fn set_size(&mut self, ino: u64, new: u64) {
        if let Some(DNode::File { content: Content::Spill { size, .. }, meta, .. }) = self.nodes.get_mut(&ino) {
            *size = new;
            meta.mtime = Some(now());
        }
        self.bump(ino);
        self.changed = true;
    }

    /// A new version of file `ino` (its bytes or metadata changed).
    pub(super) fn bump(&mut self, ino: u64) {
        self.edits += 1;
        self.versions.insert(ino, self.edits);
    }

    /// Records that `ino` changed now. After a write the ctime is the mtime (derivable:
    /// nothing stored, so a plain drive gains no sidecar); after a change of metadata
    /// (mode, times, owner, xattrs, a name) it is kept in the sidecar, never behind the
    /// mtime, and survives remounts.
    pub(super) fn stamp_ctime(&mut self, ino: u64, written: bool) {
        let stored = self.extras.get(&ino).is_some_and(|x| x.ctime.is_some());
        if written && !stored {
            return;
        }
        let mut x = self.extras.remove(&ino).unwrap_or_default();
        x.ctime = if written { None } else { Some(now()) };
        if !x.is_empty() {
            self.extras.insert(ino, x);
        }
        if ino == ROOT_INO {
            self.side_dirty.insert(ROOT_INO);
        }
        for dir in self.dirs_of(ino) {
            self.side_dirty.insert(dir);
        }
        self.changed = true;
    }

    /// Whether directory `dir` is `ancestor` or below it.
    pub(super) fn is_within(&self, dir: u64, ancestor: u64) -> bool {
        let mut p = dir;
        loop {
            if p == ancestor {
                return true;
            }
            match self.parents.get(&p) {
                Some(&up) if p != ROOT_INO => p = up,
                _ => return false,
            }
        }
    }

    pub(super) fn base_of(&self, ino: u64) -> Option<LinkInfo> {
        match self.nodes.get(&ino)? {
            DNode::Lazy { cid, tsize } | DNode::Foreign { cid, tsize } => {
                Some(LinkInfo { cid: *cid, tsize: *tsize, filesize: 0 })
            }
            DNode::Dir { base, .. } | DNode::File { base, .. } | DNode::Symlink { base, .. } => *base,
        }
    }
}

/// The stream of a drive file being written anew, if it has one (see [`stream`]).
pub(super) fn stream_of(d: &mut Tree, ino: u64) -> Option<&mut Stream> {
    match d.nodes.get_mut(&ino) {
        Some(DNode::File { content: Content::Spill { overlay: None, stream, .. }, .. }) => Some(stream),
        _ => None,
    }
}

/// The overlay of a drive file being changed, if it has one.
pub(super) fn overlay_of(d: &mut Tree, ino: u64) -> Option<&mut Overlay> {
    match d.nodes.get_mut(&ino) {
        Some(DNode::File { content: Content::Spill { overlay: Some(o), .. }, .. }) => Some(o.as_mut()),
        _ => None,
    }
}

/// An imported file: its link, and for a file changed in place the overlay over its new
/// leaves (what it goes on with if still open).
#[derive(Clone)]
pub(super) struct Built {
    pub(super) link: LinkInfo,
    pub(super) overlay: Option<Overlay>,
}

pub(super) fn now() -> UnixTime {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    UnixTime { seconds: d.as_secs() as i64, fractional_nanoseconds: Some(d.subsec_nanos()).filter(|n| *n != 0) }
}
