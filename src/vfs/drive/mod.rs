//! The writable drive: a mutable tree over the immutable drive DAG.
//!
//! Every node of the drive has its own inode, stable while mounted (a file's CID changes
//! on every commit; its inode must not). Nodes load lazily from the DAG: an entry is
//! `Lazy(cid)` until it is looked at. A file that is written is copied once into an
//! anonymous spill file, and all its reads and writes go there until the next commit.
//!
//! [`Drive::commit`] re-imports every changed file with the importer's default options
//! (Kubo's, so unchanged chunks keep their CIDs and only the changed leaves and the nodes
//! above them are new blocks), rebuilds changed directories bottom-up, and makes the new
//! root durable through the [`DriveStore`] in one transaction. Unchanged subtrees keep
//! their CIDs and are not touched.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;

pub mod posix;
mod spill;
mod stream;

use std::sync::{Mutex, MutexGuard, OnceLock};

use super::content::Content as Dag;
use super::inodes::InodeTable;
use super::{Attr, Capacity, DEFAULT_MTIME, DirEntry, FileKind, ROOT_INO, VfsError, unix_time};
use crate::importer::file::{Chunk, ReadError, encode_leaf, import_reader, import_symlink};
use crate::importer::sparse::{has_holes, import_sparse};
use crate::importer::{BlockSink, DirBuilder, FileImporter, ImportOptions, LinkInfo};
use crate::store::StoreError;
use crate::unixfs::pb::UnixTime;
use crate::unixfs::{Metadata, Node, Nodes, dir, file};
use posix::{Extras, Side, SideEntry};
use spill::{MEMORY_MAX, SpillFile};
use stream::Stream;

/// Longest name a drive entry may have, in bytes.
pub const NAME_MAX: usize = 255;
/// The largest file the drive holds: 16 TiB, what the local filesystem under the spill
/// files (ext4 with 4 KiB blocks) allows. Past it, writes and truncates fail `EFBIG`.
pub const MAX_FILE_SIZE: u64 = 1 << 44;

/// Open spill files that trigger an early commit (each holds a file descriptor until the
/// commit turns its file into blocks): extracting a big tarball must not run out of them.
const MAX_OPEN_SPILLS: usize = 256;
/// Spills held in memory (at most [`MEMORY_MAX`] bytes each) that trigger an early commit.
const MAX_MEMORY_SPILLS: usize = 2048;

/// Where commits go: blocks into the store and the new root, durably, in one batch.
pub trait DriveStore: Send + Sync {
    /// Runs `build` with a sink for new blocks; `build` returns the new drive root and
    /// its POSIX sidecar (see [`posix`]), which become durable together with the blocks
    /// before this returns.
    fn commit(&self, build: &mut CommitBuild<'_>) -> Result<(), VfsError>;

    /// Stores blocks ahead of the commit that will reference them (leaves of a file still
    /// being written; see [`stream`](super::stream)): readable at once, durable with the
    /// next commit.
    fn stage(&self, blocks: &[crate::block::Block]) -> Result<(), VfsError>;
}

/// What a commit runs: writes blocks into the sink, returns (drive root, sidecar root).
pub type CommitBuild<'a> = dyn FnMut(&mut dyn BlockSink<Error = StoreError>) -> Result<(Cid, Cid), VfsError> + 'a;

enum DNode {
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

enum Content {
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
struct Overlay {
    base: Cid,
    chunk: u64,
    /// The committed leaves: chunk `i` is `leaves[i]` (all full but the last).
    leaves: Arc<Vec<LinkInfo>>,
    /// Chunks whose bytes live in the spill file.
    dirty: std::collections::BTreeSet<u64>,
}

impl Overlay {
    fn in_base(&self, i: u64) -> bool {
        (i as usize) < self.leaves.len() && !self.dirty.contains(&i)
    }
}

/// Reads `dst.len()` bytes at `pos`, zeros past the end of `f` (spill files are sparse).
fn read_at_zero_fill(f: &SpillFile, dst: &mut [u8], pos: u64) -> Result<(), VfsError> {
    let mut done = 0;
    while done < dst.len() {
        match f.read_at(&mut dst[done..], pos + done as u64) {
            Ok(0) => {
                dst[done..].fill(0);
                return Ok(());
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(VfsError::Io(e)),
        }
    }
    Ok(())
}

struct Tree {
    nodes: std::collections::HashMap<u64, DNode>,
    /// The root's mtime while it stores none (UnixFS metadata): when an entry of the root
    /// last changed, else the drive's last commit, else the store's creation.
    root_time: std::time::SystemTime,
    /// Each node's directory (the root is its own parent).
    parents: std::collections::HashMap<u64, u64>,
    spill_dir: PathBuf,
    /// None: a read-only drive.
    store: Option<Arc<dyn DriveStore>>,
    changed: bool,
    /// Bytes held in spill files (not yet committed), counted against the capacity.
    spill_bytes: u64,
    /// Where files to stream are queued (see [`stream`]).
    streamer: Option<std::sync::mpsc::Sender<u64>>,
    /// Spill files opened since the last commit.
    open_spills: usize,
    /// Spills created in memory since the last commit.
    memory_spills: usize,
    /// Open write handles per file: background commits leave such files for later.
    writers: std::collections::HashMap<u64, usize>,
    /// What UnixFS cannot hold (owner, atime, xattrs), per inode with any (see [`posix`]).
    extras: HashMap<u64, Extras>,
    /// The committed sidecar of each directory (loaded or lazy) that has one.
    sides: HashMap<u64, Cid>,
    /// Directories whose sidecar must be rebuilt at the next commit.
    side_dirty: HashSet<u64>,
    /// Every name of each inode that has more than one (hard links): (directory, name).
    links: HashMap<u64, Vec<(u64, String)>>,
    /// The hard-link groups in the last committed root sidecar.
    groups: Vec<Vec<String>>,
    /// Each changed file's version: bumped by every write, truncate and metadata change.
    versions: HashMap<u64, u64>,
    edits: u64,
    /// Files imported ahead of a commit, outside the drive's lock (see `prebuild`): the
    /// version imported and its link, used by the commit if still current.
    prebuilt: HashMap<u64, (u64, Built)>,
}

impl Tree {
    fn new(root: Option<Cid>, spill_dir: PathBuf, store: Option<Arc<dyn DriveStore>>) -> Tree {
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
}

fn now() -> UnixTime {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    UnixTime { seconds: d.as_secs() as i64, fractional_nanoseconds: Some(d.subsec_nanos()).filter(|n| *n != 0) }
}

/// A name longer than a path component may be is `ENAMETOOLONG` for every call, the ones
/// that only look a name up included (not `ENOENT`: it could never exist).
fn check_len(name: &str) -> Result<(), VfsError> {
    if name.len() > NAME_MAX { Err(VfsError::NameTooLong) } else { Ok(()) }
}

fn check_name(name: &str) -> Result<(), VfsError> {
    check_len(name)?;
    if !dir::is_safe_name(name) || name == super::IPFS_DIR {
        return Err(VfsError::InvalidName(name.to_string()));
    }
    Ok(())
}

impl Tree {
    fn is_writable(&self) -> bool {
        self.store.is_some()
    }

    /// Whether `ino` is a regular file this drive may change (not yet resolved entries
    /// count: they are checked when written).
    fn is_writable_file(&self, ino: u64) -> bool {
        self.is_writable() && matches!(self.nodes.get(&ino), Some(DNode::File { .. } | DNode::Lazy { .. }))
    }
}

/// The drive: its tree under one lock, and what it reads committed content through.
pub(crate) struct Drive {
    tree: Arc<Mutex<Tree>>,
    /// Committed content (the mount's node cache and hot copies).
    dag: Arc<Dag>,
    /// Where the drive's nodes get their inode numbers.
    inodes: Arc<InodeTable>,
    /// Held by a commit from start to end: commits run one at a time.
    commit_serial: Mutex<()>,
    /// Space left, as the mount reports it (writes past it fail with `ENOSPC`).
    capacity: Arc<dyn Fn() -> Capacity + Send + Sync>,
    /// Frees at least this many bytes of second copies (hot copies, fetched blocks) when
    /// a write would not fit otherwise.
    make_room: OnceLock<Box<dyn Fn(u64) + Send + Sync>>,
}

impl Drive {
    /// The drive rooted at `root` (`None`: empty); writable if it has a `store`, with
    /// written files spilling into `spill_dir` until committed.
    pub(super) fn new(
        root: Option<Cid>,
        spill_dir: PathBuf,
        store: Option<Arc<dyn DriveStore>>,
        dag: Arc<Dag>,
        inodes: Arc<InodeTable>,
        capacity: Arc<dyn Fn() -> Capacity + Send + Sync>,
    ) -> Drive {
        let writable = store.is_some();
        let tree = Arc::new(Mutex::new(Tree::new(root, spill_dir, store)));
        if writable {
            let streamer = stream::spawn(Arc::downgrade(&tree));
            tree.lock().expect("lock poisoned").streamer = Some(streamer);
        }
        Drive { tree, dag, inodes, commit_serial: Mutex::new(()), capacity, make_room: OnceLock::new() }
    }

    /// The root's mtime while it stores none (see [`Tree::root_time`]).
    pub(super) fn set_root_time(&self, time: std::time::SystemTime) {
        self.tree.lock().expect("lock poisoned").root_time = time;
    }

    /// Lets writes that would not fit ask for room (see [`Vfs::with_room_maker`](super::Vfs::with_room_maker)).
    pub(super) fn set_room_maker(&self, make_room: Box<dyn Fn(u64) + Send + Sync>) {
        let _ = self.make_room.set(make_room);
    }

    /// The content a dag-cbor node of the drive shows (served read-only from its CID).
    pub(super) fn foreign(&self, ino: u64) -> Option<Cid> {
        match self.tree.lock().expect("lock poisoned").nodes.get(&ino) {
            Some(DNode::Foreign { cid, .. }) => Some(*cid),
            _ => None,
        }
    }

    /// Whether `ino` may be opened for writing: `Ok(true)` a file of a writable drive,
    /// `Ok(false)` another node of it (a directory), `Err` nothing writable.
    pub(super) fn writable_file(&self, ino: u64) -> Result<bool, VfsError> {
        let d = self.tree.lock().expect("lock poisoned");
        if d.is_writable_file(ino) {
            Ok(true)
        } else if d.nodes.contains_key(&ino) && d.is_writable() {
            Ok(false)
        } else {
            Err(VfsError::ReadOnly)
        }
    }

    /// Reads committed content.
    fn read_node(&self, cid: &Cid, offset: u64, size: u32) -> Result<Vec<Bytes>, VfsError> {
        self.dag.read(cid, offset, size)
    }

    /// A file's written bytes (`spill`) were just committed as the file `cid`, `len`
    /// bytes long, and will not be written again: they may become its hot copy.
    fn adopt_written(&self, spill: &SpillFile, cid: &Cid, len: u64) {
        let _ = spill.with_disk_file(|f| self.dag.adopt_written(cid, len, f));
    }
}

impl Nodes for Drive {
    fn node(&self, cid: &Cid) -> Result<Arc<Node>, crate::unixfs::UnixfsError> {
        Nodes::node(self.dag.as_ref(), cid)
    }
}

impl Drive {
    /// The CID a drive node has now (committing pending changes first).
    pub(super) fn cid(&self, ino: u64) -> Result<Option<Cid>, VfsError> {
        self.commit()?;
        let mut d = self.drive()?;
        self.resolve(&mut d, ino)?;
        if let (ROOT_INO, Some(DNode::Dir { base: None, entries, .. })) = (ino, d.nodes.get(&ino))
            && entries.is_empty()
        {
            return Ok(Some(super::empty_dir_cid()));
        }
        Ok(self.base_of(&d, ino).map(|l| l.cid))
    }

    fn drive(&self) -> Result<MutexGuard<'_, Tree>, VfsError> {
        Ok(self.tree.lock().expect("lock poisoned"))
    }

    /// The drive, for a change: refused on a read-only drive.
    fn drive_mut(&self) -> Result<MutexGuard<'_, Tree>, VfsError> {
        let d = self.drive()?;
        if d.store.is_none() {
            return Err(VfsError::ReadOnly);
        }
        Ok(d)
    }

    fn new_drive_ino(&self, parent: u64, name: &str) -> u64 {
        self.inodes.new_drive_ino(parent, name)
    }

    /// Turns a `Lazy` node into what its block is.
    fn resolve(&self, d: &mut Tree, ino: u64) -> Result<(), VfsError> {
        let Some(DNode::Lazy { cid, tsize }) = d.nodes.get(&ino) else { return Ok(()) };
        let (cid, tsize) = (*cid, *tsize);
        let node = Nodes::node(self, &cid)?;
        let base = Some(LinkInfo { cid, tsize, filesize: 0 });
        let resolved = match node.as_ref() {
            Node::Directory { meta, .. } | Node::HamtShard(crate::unixfs::ShardNode { meta, .. }) => {
                let mut links = Vec::new();
                dir::list(self, &cid, &node, &mut |l| links.push(l))?;
                let mut entries = BTreeMap::new();
                for l in links {
                    let child = self.new_drive_ino(ino, &l.name);
                    d.nodes.insert(child, DNode::Lazy { cid: l.cid, tsize: l.tsize.unwrap_or(0) });
                    entries.insert(l.name, child);
                }
                let groups = self.load_side(d, ino, &entries)?;
                if !groups.is_empty() {
                    d.nodes.insert(ino, DNode::Dir { entries: entries.clone(), meta: *meta, base });
                    for child in entries.values() {
                        d.parents.insert(*child, ino);
                    }
                    self.load_links(d, &groups)?;
                    d.groups = groups;
                    return Ok(());
                }
                DNode::Dir { entries, meta: *meta, base }
            }
            Node::File(f) => {
                DNode::File { content: Content::Base { cid, size: f.size }, meta: f.meta, base, committed: base }
            }
            Node::Symlink { target, meta } => DNode::Symlink { target: target.to_vec(), meta: *meta, base },
            Node::Cbor(_) => DNode::Foreign { cid, tsize },
        };
        if let DNode::Dir { entries, .. } = &resolved {
            for child in entries.values() {
                d.parents.insert(*child, ino);
            }
        }
        d.nodes.insert(ino, resolved);
        Ok(())
    }

    fn children<'a>(&self, d: &'a mut Tree, ino: u64) -> Result<&'a mut BTreeMap<String, u64>, VfsError> {
        self.resolve(d, ino)?;
        match d.nodes.get_mut(&ino) {
            Some(DNode::Dir { entries, .. }) => Ok(entries),
            Some(DNode::Foreign { .. }) => Err(VfsError::ReadOnly),
            Some(_) => Err(VfsError::NotADirectory),
            // Not a drive node: content under a CID (`/.ipfs`), which never changes.
            None => Err(VfsError::ReadOnly),
        }
    }

    /// Marks a directory changed (its CID must be recomputed) and sets its mtime.
    fn touch_dir(d: &mut Tree, ino: u64) {
        if let Some(DNode::Dir { base, meta, .. }) = d.nodes.get_mut(&ino) {
            *base = None;
            if meta.mtime.is_some() {
                meta.mtime = Some(now());
            } else if ino == ROOT_INO {
                d.root_time = std::time::SystemTime::now();
            }
        }
        d.side_dirty.insert(ino);
        d.changed = true;
    }

    /// Looks `name` up in directory `parent` (a dag-cbor node's entries are looked up by
    /// the caller, as content: see [`foreign`](Self::foreign)).
    pub(super) fn lookup(&self, parent: u64, name: &str) -> Result<Attr, VfsError> {
        let ino = {
            let mut d = self.drive()?;
            let entries = self.children(&mut d, parent)?;
            let ino = *entries.get(name).ok_or_else(|| VfsError::NotFound(name.to_string()))?;
            if let Some(DNode::Lazy { .. }) = d.nodes.get(&ino) {
                self.resolve(&mut d, ino)?;
            }
            ino
        };
        self.attr(ino)
    }

    /// Attributes of a drive node: from its content and UnixFS metadata, then what the
    /// sidecar adds (owner, atime, the number of names).
    pub(super) fn attr(&self, ino: u64) -> Result<Attr, VfsError> {
        let mut a = self.content_attr(ino)?;
        let d = self.drive()?;
        if let Some(x) = d.extras.get(&ino) {
            a.uid = x.uid;
            a.gid = x.gid;
            a.atime = x.atime.map(|t| unix_time(t.seconds, t.fractional_nanoseconds.unwrap_or(0)));
            // a source's mode and mtime kept by `add`, where UnixFS metadata says nothing
            let meta = match d.nodes.get(&ino) {
                Some(DNode::Dir { meta, .. } | DNode::File { meta, .. } | DNode::Symlink { meta, .. }) => *meta,
                _ => Metadata::default(),
            };
            if let (Some(mode), None) = (x.mode, meta.mode)
                && a.kind != FileKind::Symlink
            {
                a.perm = (mode & 0o7777) as u16;
            }
            if let (Some(t), None) = (x.mtime, meta.mtime) {
                a.mtime = unix_time(t.seconds, t.fractional_nanoseconds.unwrap_or(0));
            }
            a.ctime = x.ctime.map(|t| unix_time(t.seconds, t.fractional_nanoseconds.unwrap_or(0)));
        }
        if let Some(names) = d.links.get(&ino) {
            a.nlink = names.len() as u32;
        }
        Ok(a)
    }

    fn content_attr(&self, ino: u64) -> Result<Attr, VfsError> {
        let mut d = self.drive()?;
        self.resolve(&mut d, ino)?;
        let writable = d.is_writable();
        let (file_perm, dir_perm) = if writable { (0o644, 0o755) } else { (0o444, 0o555) };
        let root_time = d.root_time;
        let node = d.nodes.get(&ino).ok_or(VfsError::StaleInode(ino))?;
        let mtime = |m: &Metadata| {
            m.mtime.map_or(DEFAULT_MTIME, |t| unix_time(t.seconds, t.fractional_nanoseconds.unwrap_or(0)))
        };
        let perm = |m: &Metadata, default: u16| m.mode.map_or(default, |x| (x & 0o7777) as u16);
        Ok(match node {
            DNode::Dir { meta, entries, .. } => Attr {
                ino,
                kind: FileKind::Directory,
                size: entries.len() as u64,
                perm: perm(meta, dir_perm),
                mtime: if ino == ROOT_INO && meta.mtime.is_none() { root_time } else { mtime(meta) },
                nlink: 2,
                blksize: 4096,
                uid: None,
                gid: None,
                atime: None,
                ctime: None,
            },
            // Committed content: its attributes come from its DAG (chunk size, metadata).
            DNode::File { content: Content::Base { cid, .. }, base: Some(_), meta, .. } => {
                let (cid, meta) = (*cid, *meta);
                drop(d);
                let mut a = self.dag.attr(ino, &cid)?;
                a.perm = perm(&meta, file_perm);
                return Ok(a);
            }
            DNode::File { content, meta, .. } => {
                let size = match content {
                    Content::Base { size, .. } | Content::Spill { size, .. } => *size,
                };
                Attr {
                    ino,
                    kind: FileKind::File,
                    size,
                    perm: perm(meta, file_perm),
                    mtime: mtime(meta),
                    nlink: 1,
                    blksize: 262_144,
                    uid: None,
                    gid: None,
                    atime: None,
                    ctime: None,
                }
            }
            DNode::Symlink { target, meta, .. } => Attr {
                ino,
                kind: FileKind::Symlink,
                size: target.len() as u64,
                perm: 0o777,
                mtime: mtime(meta),
                nlink: 1,
                blksize: 4096,
                uid: None,
                gid: None,
                atime: None,
                ctime: None,
            },
            DNode::Foreign { cid, .. } => {
                let cid = *cid;
                drop(d);
                return self.dag.attr(ino, &cid);
            }
            DNode::Lazy { .. } => unreachable!("resolved above"),
        })
    }

    pub(super) fn list(&self, ino: u64) -> Result<Vec<DirEntry>, VfsError> {
        let mut d = self.drive()?;
        if let Some(DNode::Foreign { .. }) = d.nodes.get(&ino) {
            return Err(VfsError::NotADirectory);
        }
        let entries: Vec<(String, u64)> = self.children(&mut d, ino)?.iter().map(|(n, i)| (n.clone(), *i)).collect();
        let mut out = vec![
            DirEntry { ino, name: ".".into(), kind: FileKind::Directory },
            DirEntry { ino: ROOT_INO, name: "..".into(), kind: FileKind::Directory },
        ];
        for (name, child) in entries {
            let kind = match d.nodes.get(&child) {
                Some(DNode::Lazy { cid, .. }) | Some(DNode::Foreign { cid, .. }) => self.dag.kind_hint(cid),
                Some(DNode::Dir { .. }) => FileKind::Directory,
                Some(DNode::Symlink { .. }) => FileKind::Symlink,
                _ => FileKind::File,
            };
            out.push(DirEntry { ino: child, name, kind });
        }
        Ok(out)
    }

    pub(super) fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<Bytes>, VfsError> {
        let content = {
            let mut d = self.drive()?;
            self.resolve(&mut d, ino)?;
            match d.nodes.get(&ino) {
                Some(DNode::File { content: Content::Base { cid, .. }, .. }) => Ok(*cid),
                Some(DNode::File { content: Content::Spill { file, size, overlay, .. }, .. }) => {
                    Err((file.clone(), *size, overlay.clone()))
                }
                Some(DNode::Foreign { cid, .. }) => {
                    let cid = *cid;
                    drop(d);
                    return self.read_node(&cid, offset, size);
                }
                Some(DNode::Dir { .. }) => return Err(VfsError::IsADirectory),
                Some(_) => return Err(VfsError::NotFound("symlink has no content".into())),
                None => return Err(VfsError::StaleInode(ino)),
            }
        };
        match content {
            Ok(cid) => self.read_node(&cid, offset, size),
            Err((file, len, overlay)) => {
                let want = u64::from(size).min(len.saturating_sub(offset));
                Ok(vec![Bytes::from(self.spill_read(&file, len, overlay.as_deref(), offset, want)?)])
            }
        }
    }

    /// The CID of a drive file's content, if it is committed and unchanged since.
    pub(super) fn clean_content(&self, ino: u64) -> Option<Cid> {
        let mut d = self.drive().ok()?;
        self.resolve(&mut d, ino).ok()?;
        match d.nodes.get(&ino)? {
            DNode::File { content: Content::Base { cid, .. }, .. } | DNode::Foreign { cid, .. } => Some(*cid),
            _ => None,
        }
    }

    pub(super) fn readlink(&self, ino: u64) -> Result<Vec<u8>, VfsError> {
        let mut d = self.drive()?;
        self.resolve(&mut d, ino)?;
        match d.nodes.get(&ino) {
            Some(DNode::Symlink { target, .. }) => Ok(target.clone()),
            _ => Err(VfsError::NotASymlink),
        }
    }

    fn insert_new(&self, parent: u64, name: &str, node: DNode) -> Result<Attr, VfsError> {
        check_name(name)?;
        let ino = {
            let mut d = self.drive_mut()?;
            let entries = self.children(&mut d, parent)?;
            if entries.contains_key(name) {
                return Err(VfsError::Exists(name.to_string()));
            }
            let ino = self.new_drive_ino(parent, name);
            entries.insert(name.to_string(), ino);
            d.nodes.insert(ino, node);
            d.parents.insert(ino, parent);
            Self::touch_dir(&mut d, parent);
            ino
        };
        self.attr(ino)
    }

    /// A spill for a new file: in memory until it grows (see [`spill`](super::spill)).
    fn spill(&self) -> Result<Arc<SpillFile>, VfsError> {
        let full = {
            let d = self.drive_mut()?;
            d.open_spills >= MAX_OPEN_SPILLS || d.memory_spills >= MAX_MEMORY_SPILLS
        };
        if full {
            self.commit()?;
        }
        self.drive_mut()?.memory_spills += 1;
        Ok(Arc::new(SpillFile::memory()))
    }

    /// Moves a spill that outgrows memory to disk.
    fn grow_spill(d: &mut Tree, file: &SpillFile, len: u64) -> Result<(), VfsError> {
        if len > MEMORY_MAX && file.in_memory() {
            file.move_to_disk(&d.spill_dir).map_err(VfsError::Io)?;
            d.open_spills += 1;
        }
        Ok(())
    }

    /// Creates an empty regular file.
    pub fn create(&self, parent: u64, name: &str, mode: u32) -> Result<Attr, VfsError> {
        let file = self.spill()?;
        let meta = Metadata { mode: Some(mode & 0o7777), mtime: Some(now()) };
        let node = DNode::File {
            content: Content::Spill { file, size: 0, overlay: None, stream: Stream::fresh() },
            meta,
            base: None,
            committed: None,
        };
        let attr = self.insert_new(parent, name, node)?;
        self.opened_for_write(attr.ino);
        Ok(attr)
    }

    pub fn mkdir(&self, parent: u64, name: &str, mode: u32) -> Result<Attr, VfsError> {
        let meta = Metadata { mode: Some(mode & 0o7777), mtime: Some(now()) };
        self.insert_new(parent, name, DNode::Dir { entries: BTreeMap::new(), meta, base: None })
    }

    pub fn symlink(&self, parent: u64, name: &str, target: &[u8]) -> Result<Attr, VfsError> {
        self.insert_new(
            parent,
            name,
            DNode::Symlink { target: target.to_vec(), meta: Metadata { mode: None, mtime: Some(now()) }, base: None },
        )
    }

    /// Makes a file's content writable: copies its committed bytes into a spill file.
    fn make_spill(&self, d: &mut Tree, ino: u64) -> Result<(Arc<SpillFile>, u64), VfsError> {
        self.resolve(d, ino)?;
        let spill_dir = d.spill_dir.clone();
        match d.nodes.get_mut(&ino) {
            Some(DNode::File { content: Content::Spill { file, size, .. }, base, .. }) => {
                *base = None;
                Ok((file.clone(), *size))
            }
            Some(DNode::File { content: content @ Content::Base { .. }, base, .. }) => {
                let Content::Base { cid, size } = *content else { unreachable!() };
                let leaves = self.base_leaves(&cid, size);
                let f = if leaves.is_none() && size <= MEMORY_MAX {
                    d.memory_spills += 1;
                    Arc::new(SpillFile::memory())
                } else {
                    d.open_spills += 1;
                    Arc::new(SpillFile::disk(&spill_dir).map_err(VfsError::Io)?)
                };
                if let Some(leaves) = leaves {
                    let chunk = ImportOptions::default().chunk_size as u64;
                    let overlay = Overlay { base: cid, chunk, leaves: Arc::new(leaves), dirty: Default::default() };
                    f.set_len(size).map_err(VfsError::Io)?;
                    *content = Content::Spill {
                        file: f.clone(),
                        size,
                        overlay: Some(Box::new(overlay)),
                        stream: Stream::off(),
                    };
                    *base = None;
                    return Ok((f, size));
                }
                if let Node::File(node) = Nodes::node(self, &cid)?.as_ref() {
                    let mut pos = 0u64;
                    file::read_range(self, &cid, node, 0, size, &mut |b| {
                        f.write_all_at(b, pos).map_err(crate::unixfs::UnixfsError::Output)?;
                        pos += b.len() as u64;
                        Ok(())
                    })?;
                }
                *content = Content::Spill { file: f.clone(), size, overlay: None, stream: Stream::off() };
                *base = None;
                Ok((f, size))
            }
            Some(DNode::Dir { .. }) => Err(VfsError::IsADirectory),
            Some(DNode::Foreign { .. }) => Err(VfsError::ReadOnly),
            Some(_) => Err(VfsError::InvalidName("not a regular file".into())),
            None => Err(VfsError::StaleInode(ino)),
        }
    }

    fn set_size(d: &mut Tree, ino: u64, new: u64) {
        if let Some(DNode::File { content: Content::Spill { size, .. }, meta, .. }) = d.nodes.get_mut(&ino) {
            *size = new;
            meta.mtime = Some(now());
        }
        Self::bump(d, ino);
        d.changed = true;
    }

    /// A new version of file `ino` (its bytes or metadata changed).
    fn bump(d: &mut Tree, ino: u64) {
        d.edits += 1;
        d.versions.insert(ino, d.edits);
    }

    /// Refuses growth past the store's capacity (`ENOSPC`), counting uncommitted bytes.
    /// Hot copies and fetched blocks give way first (see `with_room_maker`).
    fn reserve(&self, d: &mut Tree, bytes: u64) -> Result<(), VfsError> {
        let need = d.spill_bytes.saturating_add(bytes);
        let mut free = (self.capacity)().free_bytes;
        if need > free
            && let Some(make_room) = self.make_room.get()
        {
            make_room(need - free);
            free = (self.capacity)().free_bytes;
        }
        if need > free {
            return Err(VfsError::NoSpace);
        }
        d.spill_bytes += bytes;
        Ok(())
    }

    /// Writes `data` at `offset` (past the end leaves a hole that reads as zeros).
    pub fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, VfsError> {
        if offset.saturating_add(data.len() as u64) > MAX_FILE_SIZE {
            return Err(VfsError::FileTooBig);
        }
        let mut d = self.drive_mut()?;
        self.reserve(&mut d, data.len() as u64)?;
        let (file, size) = self.make_spill(&mut d, ino)?;
        Self::grow_spill(&mut d, &file, offset.saturating_add(data.len() as u64))?;
        let chunk = ImportOptions::default().chunk_size as u64;
        let wake = stream_of(&mut d, ino).is_some_and(|s| s.before_write(offset, data.len() as u64, size, chunk));
        if let Some(o) = overlay_of(&mut d, ino) {
            let end = offset + data.len() as u64;
            if end > size && !size.is_multiple_of(o.chunk) {
                self.materialize(&file, o, size / o.chunk)?; // the partial last chunk grows
            }
            if !data.is_empty() {
                for i in offset / o.chunk..=(end - 1) / o.chunk {
                    self.materialize(&file, o, i)?;
                }
            }
        }
        file.write_all_at(data, offset).map_err(VfsError::Io)?;
        let end = offset + data.len() as u64;
        Self::set_size(&mut d, ino, size.max(end));
        Self::stamp_ctime(&mut d, ino, true);
        if wake && let Some(tx) = &d.streamer {
            let _ = tx.send(ino);
        }
        Ok(data.len() as u32)
    }

    /// Sets a file's length (growing reads as zeros).
    /// Growing a file makes a hole, which stores nothing until written: it takes no room.
    pub fn truncate(&self, ino: u64, len: u64) -> Result<(), VfsError> {
        if len > MAX_FILE_SIZE {
            return Err(VfsError::FileTooBig);
        }
        let mut d = self.drive_mut()?;
        let (file, size) = self.make_spill(&mut d, ino)?;
        Self::grow_spill(&mut d, &file, len)?;
        if len == 0
            && let Some(DNode::File { content: Content::Spill { overlay, stream, .. }, .. }) = d.nodes.get_mut(&ino)
            && overlay.is_some()
        {
            // nothing of the old content remains: write the file anew (and stream it)
            *overlay = None;
            *stream = Stream::fresh();
        }
        if let Some(s) = stream_of(&mut d, ino) {
            s.before_truncate(len, ImportOptions::default().chunk_size as u64);
        }
        if let Some(o) = overlay_of(&mut d, ino) {
            if len < size {
                if !len.is_multiple_of(o.chunk) {
                    self.materialize(&file, o, len / o.chunk)?; // cut inside a chunk
                }
                let keep = ((len / o.chunk) as usize).min(o.leaves.len());
                Arc::make_mut(&mut o.leaves).truncate(keep);
            } else if len > size && !size.is_multiple_of(o.chunk) {
                self.materialize(&file, o, size / o.chunk)?;
            }
        }
        file.set_len(len).map_err(VfsError::Io)?;
        Self::set_size(&mut d, ino, len);
        Self::stamp_ctime(&mut d, ino, true);
        Ok(())
    }

    /// Changes mode and/or mtime (stored as UnixFS 1.5 metadata).
    pub fn set_meta(&self, ino: u64, mode: Option<u32>, mtime: Option<std::time::SystemTime>) -> Result<(), VfsError> {
        let mut d = self.drive_mut()?;
        self.resolve(&mut d, ino)?;
        let t = mtime.map(|t| {
            let dur = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            UnixTime {
                seconds: dur.as_secs() as i64,
                fractional_nanoseconds: Some(dur.subsec_nanos()).filter(|n| *n != 0),
            }
        });
        match d.nodes.get_mut(&ino) {
            Some(DNode::Dir { meta, base, .. })
            | Some(DNode::File { meta, base, .. })
            | Some(DNode::Symlink { meta, base, .. }) => {
                if let Some(m) = mode {
                    meta.mode = Some(m & 0o7777);
                }
                if t.is_some() {
                    meta.mtime = t;
                }
                *base = None;
            }
            Some(_) => return Err(VfsError::ReadOnly),
            None => return Err(VfsError::StaleInode(ino)),
        }
        Self::stamp_ctime(&mut d, ino, false);
        Self::bump(&mut d, ino);
        d.changed = true;
        Ok(())
    }

    /// Records that `ino` changed now. After a write the ctime is the mtime (derivable:
    /// nothing stored, so a plain drive gains no sidecar); after a change of metadata
    /// (mode, times, owner, xattrs, a name) it is kept in the sidecar, never behind the
    /// mtime, and survives remounts.
    fn stamp_ctime(d: &mut Tree, ino: u64, written: bool) {
        let stored = d.extras.get(&ino).is_some_and(|x| x.ctime.is_some());
        if written && !stored {
            return;
        }
        let mut x = d.extras.remove(&ino).unwrap_or_default();
        x.ctime = if written { None } else { Some(now()) };
        if !x.is_empty() {
            d.extras.insert(ino, x);
        }
        if ino == ROOT_INO {
            d.side_dirty.insert(ROOT_INO);
        }
        for dir in Self::dirs_of(d, ino) {
            d.side_dirty.insert(dir);
        }
        d.changed = true;
    }

    /// Removes a file or symlink (`rmdir = false`) or an empty directory (`rmdir = true`).
    /// An open handle keeps working: the node lives on, only its name goes.
    pub fn remove(&self, parent: u64, name: &str, rmdir: bool) -> Result<(), VfsError> {
        check_len(name)?;
        let mut d = self.drive_mut()?;
        let ino = *self.children(&mut d, parent)?.get(name).ok_or_else(|| VfsError::NotFound(name.to_string()))?;
        self.resolve(&mut d, ino)?;
        let is_dir = matches!(d.nodes.get(&ino), Some(DNode::Dir { .. }));
        match (rmdir, is_dir) {
            (true, false) => return Err(VfsError::NotADirectory),
            (false, true) => return Err(VfsError::IsADirectory),
            (true, true) => {
                if !self.children(&mut d, ino)?.is_empty() {
                    return Err(VfsError::NotEmpty);
                }
            }
            (false, false) => {}
        }
        self.children(&mut d, parent)?.remove(name);
        Self::forget_name(&mut d, ino, parent, name);
        Self::touch_dir(&mut d, parent);
        Ok(())
    }

    /// Renames, replacing an existing target atomically (POSIX rules for directories).
    pub fn rename(&self, parent: u64, name: &str, new_parent: u64, new_name: &str) -> Result<(), VfsError> {
        self.rename_with(parent, name, new_parent, new_name, false)
    }

    /// `rename`, or with `noreplace` (`RENAME_NOREPLACE`) refused with `EEXIST` if the
    /// target exists — checked and done under one lock, so atomically.
    pub fn rename_with(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        noreplace: bool,
    ) -> Result<(), VfsError> {
        check_len(name)?;
        check_name(new_name)?;
        let mut d = self.drive_mut()?;
        let ino = *self.children(&mut d, parent)?.get(name).ok_or_else(|| VfsError::NotFound(name.to_string()))?;
        self.resolve(&mut d, ino)?;
        let src_dir = matches!(d.nodes.get(&ino), Some(DNode::Dir { .. }));
        if src_dir && Self::is_within(&d, new_parent, ino) {
            return Err(VfsError::InvalidName("cannot move a directory into itself".into()));
        }
        let replaced = self.children(&mut d, new_parent)?.get(new_name).copied();
        if noreplace && replaced.is_some() {
            return Err(VfsError::Exists(new_name.to_string()));
        }
        if let Some(existing) = replaced {
            if existing == ino {
                return Ok(()); // POSIX: two names of one file, nothing to do
            }
            self.resolve(&mut d, existing)?;
            let dst_dir = matches!(d.nodes.get(&existing), Some(DNode::Dir { .. }));
            match (src_dir, dst_dir) {
                (false, true) => return Err(VfsError::IsADirectory),
                (true, false) => return Err(VfsError::NotADirectory),
                (true, true) if !self.children(&mut d, existing)?.is_empty() => return Err(VfsError::NotEmpty),
                _ => {}
            }
        }
        self.children(&mut d, parent)?.remove(name);
        self.children(&mut d, new_parent)?.insert(new_name.to_string(), ino);
        if let Some(existing) = replaced {
            Self::forget_name(&mut d, existing, new_parent, new_name);
        }
        match d.links.get_mut(&ino) {
            Some(names) => {
                for n in names.iter_mut().filter(|(p, n)| *p == parent && n == name) {
                    *n = (new_parent, new_name.to_string());
                }
            }
            None => {
                d.parents.insert(ino, new_parent);
            }
        }
        Self::touch_dir(&mut d, parent);
        Self::touch_dir(&mut d, new_parent);
        Self::stamp_ctime(&mut d, ino, false);
        Ok(())
    }

    /// Swaps two entries atomically (`RENAME_EXCHANGE`): both must exist; neither may end
    /// up below itself.
    pub fn exchange(&self, parent: u64, name: &str, new_parent: u64, new_name: &str) -> Result<(), VfsError> {
        check_len(name)?;
        check_len(new_name)?;
        let mut d = self.drive_mut()?;
        let a = *self.children(&mut d, parent)?.get(name).ok_or_else(|| VfsError::NotFound(name.to_string()))?;
        let b = *self
            .children(&mut d, new_parent)?
            .get(new_name)
            .ok_or_else(|| VfsError::NotFound(new_name.to_string()))?;
        if a == b {
            return Ok(());
        }
        // a directory moving to the other place must not land inside itself
        if Self::is_within(&d, new_parent, a) || Self::is_within(&d, parent, b) {
            return Err(VfsError::InvalidName("cannot move a directory into itself".into()));
        }
        self.children(&mut d, parent)?.insert(name.to_string(), b);
        self.children(&mut d, new_parent)?.insert(new_name.to_string(), a);
        for (ino, from, from_name, to, to_name) in
            [(a, parent, name, new_parent, new_name), (b, new_parent, new_name, parent, name)]
        {
            match d.links.get_mut(&ino) {
                Some(names) => {
                    // (both names may sit in the same directory: match on the old pair only once)
                    if let Some(n) = names.iter_mut().find(|(p, n)| *p == from && n == from_name) {
                        *n = (to, to_name.to_string());
                    }
                }
                None => {
                    d.parents.insert(ino, to);
                }
            }
        }
        Self::touch_dir(&mut d, parent);
        Self::touch_dir(&mut d, new_parent);
        Self::stamp_ctime(&mut d, a, false);
        Self::stamp_ctime(&mut d, b, false);
        Ok(())
    }

    /// Whether directory `dir` is `ancestor` or below it.
    fn is_within(d: &Tree, dir: u64, ancestor: u64) -> bool {
        let mut p = dir;
        loop {
            if p == ancestor {
                return true;
            }
            match d.parents.get(&p) {
                Some(&up) if p != ROOT_INO => p = up,
                _ => return false,
            }
        }
    }

    /// A handle opened `ino` for writing.
    pub fn opened_for_write(&self, ino: u64) {
        *self.tree.lock().expect("lock poisoned").writers.entry(ino).or_default() += 1;
    }

    /// A write handle on `ino` was closed. When it was the last, and every byte of the file
    /// is committed already (a commit ran while it was open, nothing changed since), its
    /// spill goes now: kept, it would hold a second copy of the file on disk until unmount.
    pub fn released_writer(&self, ino: u64) {
        let mut d = self.tree.lock().expect("lock poisoned");
        let Some(n) = d.writers.get_mut(&ino) else { return };
        *n -= 1;
        if *n > 0 {
            return;
        }
        d.writers.remove(&ino);
        if let Some(DNode::File { content, base: Some(link), .. }) = d.nodes.get_mut(&ino)
            && let Content::Spill { size, .. } = content
        {
            let size = *size;
            let old = std::mem::replace(content, Content::Base { cid: link.cid, size });
            let cid = link.cid;
            drop(d);
            if let Content::Spill { file, overlay: None, .. } = old {
                self.adopt_written(&file, &cid, size);
            }
        }
    }

    /// Makes every change durable: new blocks and the new drive root, in one transaction.
    /// Returns the root CID (unchanged if nothing changed). This is what `fsync` runs.
    pub fn commit(&self) -> Result<Option<Cid>, VfsError> {
        self.commit_with(true)
    }

    /// The periodic commit: like [`commit`](Self::commit), but files still open for
    /// writing keep their last committed version (a file being streamed is committed once,
    /// when it is closed or fsync'd, not re-imported every second while it grows).
    pub fn commit_closed(&self) -> Result<Option<Cid>, VfsError> {
        self.commit_with(false)
    }

    fn commit_with(&self, force: bool) -> Result<Option<Cid>, VfsError> {
        let drive = self.tree.as_ref();
        // one commit at a time; everything else goes on while the big files are imported
        let _serial = self.commit_serial.lock().expect("lock poisoned");
        self.prebuild(drive, force)?;
        let mut d = drive.lock().expect("lock poisoned");
        if !d.changed {
            return Ok(None);
        }
        let Some(store) = d.store.clone() else { return Ok(None) };
        // A changed file with several names changes every directory that names it.
        let relinked: Vec<u64> = d.links.keys().copied().filter(|i| self.base_of(&d, *i).is_none()).collect();
        for ino in relinked {
            for (dir, _) in d.links[&ino].clone() {
                if let Some(DNode::Dir { base, .. }) = d.nodes.get_mut(&dir) {
                    *base = None;
                }
            }
        }
        let mut root = None;
        let mut skipped = false;
        store.commit(&mut |sink| {
            let link = self.flush(&mut d, ROOT_INO, sink, force, &mut skipped)?.expect("the root is a directory");
            root = Some(link.cid);
            let side = d.sides.get(&ROOT_INO).copied().unwrap_or_else(|| *posix::empty_side().cid());
            Ok((link.cid, side))
        })?;
        d.changed = skipped;
        d.spill_bytes = 0;
        d.open_spills = 0;
        d.memory_spills = 0;
        Ok(root)
    }

    /// Writes out a node if it changed; returns how its parent links to it (`None`: a new
    /// file still being written, left out of a background commit).
    fn flush(
        &self,
        d: &mut Tree,
        ino: u64,
        sink: &mut dyn BlockSink<Error = StoreError>,
        force: bool,
        skipped: &mut bool,
    ) -> Result<Option<LinkInfo>, VfsError> {
        let opts = ImportOptions::default();
        let writing = d.writers.contains_key(&ino);
        let mut next_overlay = None;
        let node = d.nodes.get(&ino).ok_or(VfsError::StaleInode(ino))?;
        let link = match node {
            DNode::Lazy { cid, tsize } | DNode::Foreign { cid, tsize } => {
                return Ok(Some(LinkInfo { cid: *cid, tsize: *tsize, filesize: 0 }));
            }
            DNode::File { base: None, committed, .. } if writing && !force => {
                *skipped = true;
                return Ok(*committed);
            }
            DNode::Dir { entries, meta, base, .. } => {
                let (entries, meta, base) = (entries.clone(), *meta, *base);
                let mut builder = DirBuilder::new(meta);
                let mut changed = base.is_none();
                let mut side_changed = d.side_dirty.remove(&ino);
                for (name, child) in entries {
                    let before = self.base_of(d, child);
                    let side_before = d.sides.get(&child).copied();
                    let link = self.flush(d, child, sink, force, skipped)?;
                    changed |= before.map(|b| b.cid) != link.map(|l| l.cid);
                    side_changed |= side_before != d.sides.get(&child).copied();
                    if let Some(link) = link {
                        builder.insert(name, link);
                    }
                }
                let groups = if ino == ROOT_INO { Self::link_groups(d) } else { Vec::new() };
                if side_changed || groups != d.groups {
                    let side = Self::build_side(d, ino, groups.clone());
                    if side == Side::default() {
                        d.sides.remove(&ino);
                    } else {
                        let block = posix::encode(&side);
                        d.sides.insert(ino, *block.cid());
                        sink.put(block).map_err(VfsError::Store)?;
                    }
                    if ino == ROOT_INO {
                        d.groups = groups;
                    }
                }
                match (changed, base) {
                    (false, Some(b)) => return Ok(Some(b)),
                    _ => builder.finish(&opts, sink).map_err(VfsError::Store)?,
                }
            }
            DNode::File { base: Some(b), .. } | DNode::Symlink { base: Some(b), .. } => return Ok(Some(*b)),
            DNode::File { content, meta, .. } => {
                let prebuilt = d.prebuilt.get(&ino).filter(|(v, _)| d.versions.get(&ino) == Some(v));
                let built = match prebuilt {
                    Some((_, built)) => built.clone(),
                    None => {
                        let job = FileJob::plan(content);
                        self.build_file(&opts, *meta, job, sink)?
                    }
                };
                next_overlay = built.overlay;
                built.link
            }
            DNode::Symlink { target, meta, .. } => {
                import_symlink(&opts, target, *meta, sink).map_err(VfsError::Store)?
            }
        };
        d.prebuilt.remove(&ino);
        if !writing {
            d.versions.remove(&ino); // committed and closed: the next change starts anew
        }
        match d.nodes.get_mut(&ino) {
            Some(DNode::Dir { base, .. }) | Some(DNode::Symlink { base, .. }) => *base = Some(link),
            Some(DNode::File { base, committed, content, .. }) => {
                // A file still open for writing keeps its spill file: the next write goes
                // on there instead of copying the committed content back out.
                if !writing {
                    let size = match content {
                        Content::Base { size, .. } | Content::Spill { size, .. } => *size,
                    };
                    let old = std::mem::replace(content, Content::Base { cid: link.cid, size });
                    if let Content::Spill { file, overlay: None, .. } = old {
                        self.adopt_written(&file, &link.cid, size);
                    }
                } else if let (Content::Spill { file, overlay, .. }, Some(next)) = (content, next_overlay) {
                    // Every chunk is committed: the spill starts over, empty, on the new base.
                    let len = file.len().unwrap_or(0);
                    file.set_len(0).and_then(|_| file.set_len(len)).map_err(VfsError::Io)?;
                    *overlay = Some(Box::new(next));
                }
                *base = Some(link);
                *committed = Some(link);
            }
            _ => {}
        }
        Ok(Some(link))
    }

    fn base_of(&self, d: &Tree, ino: u64) -> Option<LinkInfo> {
        match d.nodes.get(&ino)? {
            DNode::Lazy { cid, tsize } | DNode::Foreign { cid, tsize } => {
                Some(LinkInfo { cid: *cid, tsize: *tsize, filesize: 0 })
            }
            DNode::Dir { base, .. } | DNode::File { base, .. } | DNode::Symlink { base, .. } => *base,
        }
    }

    /// Reads `[off, off + len)` of a changed file: dirty chunks from the spill file, the
    /// others from the committed DAG.
    fn spill_read(
        &self,
        file: &SpillFile,
        size: u64,
        overlay: Option<&Overlay>,
        off: u64,
        len: u64,
    ) -> Result<Vec<u8>, VfsError> {
        let end = off.saturating_add(len).min(size);
        let mut out = vec![0u8; end.saturating_sub(off) as usize];
        self.spill_read_into(file, size, overlay, off, &mut out)?;
        Ok(out)
    }

    /// Fills `dst` from offset `off` of a changed file (clipped at its size; returns the
    /// bytes filled), without an intermediate buffer.
    fn spill_read_into(
        &self,
        file: &SpillFile,
        size: u64,
        overlay: Option<&Overlay>,
        off: u64,
        dst: &mut [u8],
    ) -> Result<usize, VfsError> {
        let end = off.saturating_add(dst.len() as u64).min(size);
        if off >= end {
            return Ok(0);
        }
        let n = (end - off) as usize;
        let Some(o) = overlay else {
            read_at_zero_fill(file, &mut dst[..n], off)?;
            return Ok(n);
        };
        let mut pos = off;
        while pos < end {
            let i = pos / o.chunk;
            let stop = ((i + 1) * o.chunk).min(end);
            let part_dst = &mut dst[(pos - off) as usize..(stop - off) as usize];
            if o.in_base(i) {
                let mut k = 0;
                for part in self.read_node(&o.base, pos, (stop - pos) as u32)? {
                    part_dst[k..k + part.len()].copy_from_slice(&part);
                    k += part.len();
                }
            } else {
                read_at_zero_fill(file, part_dst, pos)?;
            }
            pos = stop;
        }
        Ok(n)
    }

    /// Copies chunk `i` from the committed DAG into the spill file (before a partial write).
    fn materialize(&self, file: &SpillFile, o: &mut Overlay, i: u64) -> Result<(), VfsError> {
        if o.in_base(i) {
            let leaf = o.leaves[i as usize];
            let mut pos = i * o.chunk;
            for part in self.read_node(&o.base, pos, leaf.filesize as u32)? {
                file.write_all_at(&part, pos).map_err(VfsError::Io)?;
                pos += part.len() as u64;
            }
        }
        o.dirty.insert(i);
        Ok(())
    }

    /// The leaves of a committed file, if it is laid out as this drive's importer lays out
    /// files (default options: full chunks but the last), so chunks can be reused by index.
    fn base_leaves(&self, cid: &Cid, size: u64) -> Option<Vec<LinkInfo>> {
        let opts = ImportOptions::default();
        let chunk = opts.chunk_size as u64;
        if size <= chunk {
            return None;
        }
        let root = Nodes::node(self, cid).ok()?;
        let Node::File(root_file) = root.as_ref() else { return None };
        // depth: follow the first children down to a leaf
        let mut depth = 0;
        let mut cur = root.clone();
        loop {
            let Node::File(f) = cur.as_ref() else { return None };
            if f.children.is_empty() {
                break;
            }
            if !f.data.is_empty() {
                return None;
            }
            let next = Nodes::node(self, &f.children[0].cid).ok()?;
            cur = next;
            depth += 1;
        }
        let mut leaves = Vec::new();
        fn collect(vfs: &Drive, f: &crate::unixfs::FileNode, level: usize, out: &mut Vec<LinkInfo>) -> Option<()> {
            for c in &f.children {
                if level == 1 {
                    out.push(LinkInfo { cid: c.cid, tsize: c.tsize, filesize: c.size });
                } else {
                    let n = Nodes::node(vfs, &c.cid).ok()?;
                    let Node::File(child) = n.as_ref() else { return None };
                    collect(vfs, child, level - 1, out)?;
                }
            }
            Some(())
        }
        collect(self, root_file, depth, &mut leaves)?;
        let count = size.div_ceil(chunk) as usize;
        let uniform = leaves.len() == count
            && leaves[..count - 1].iter().all(|l| l.filesize == chunk)
            && leaves
                .iter()
                .all(|l| l.cid.version() == opts.cid_version && l.cid.codec() == crate::block::DAG_PB && l.tsize > 0);
        uniform.then_some(leaves)
    }

    /// Re-commits a changed file whose unchanged chunks keep their leaves; returns the
    /// file's link and its leaves.
    fn import_overlay(
        &self,
        opts: &ImportOptions,
        meta: Metadata,
        file: &SpillFile,
        size: u64,
        o: &Overlay,
        sink: &mut dyn BlockSink<Error = StoreError>,
    ) -> Result<(LinkInfo, Vec<LinkInfo>), VfsError> {
        let mut importer = FileImporter::new(opts, meta);
        let mut leaves = Vec::new();
        for i in 0..size.div_ceil(o.chunk) {
            let len = o.chunk.min(size - i * o.chunk);
            if o.in_base(i) && o.leaves[i as usize].filesize == len {
                let leaf = o.leaves[i as usize];
                importer.push_stored_leaf(leaf, sink).map_err(VfsError::Store)?;
                leaves.push(leaf);
            } else {
                let mut c = Chunk::with_capacity(len as usize);
                c.extend(&self.spill_read(file, size, Some(o), i * o.chunk, len)?);
                let leaf = encode_leaf(opts, c);
                leaves.push(LinkInfo {
                    cid: *leaf.block.cid(),
                    tsize: leaf.block.data().len() as u64,
                    filesize: leaf.filesize,
                });
                importer.push_leaf(leaf, sink).map_err(VfsError::Store)?;
            }
        }
        Ok((importer.finish(sink).map_err(VfsError::Store)?, leaves))
    }

    /// Imports a streamed file: its staged leaves as they are, then the rest from the spill.
    fn import_streamed(
        &self,
        opts: &ImportOptions,
        meta: Metadata,
        file: Arc<SpillFile>,
        size: u64,
        leaves: &[LinkInfo],
        sink: &mut dyn BlockSink<Error = StoreError>,
    ) -> Result<LinkInfo, VfsError> {
        let mut importer = FileImporter::new(opts, meta);
        for link in leaves {
            importer.push_stored_leaf(*link, sink).map_err(VfsError::Store)?;
        }
        let from = leaves.len() as u64 * opts.chunk_size as u64;
        let mut rest = ContentReader::Spill { drive: self, file, size, overlay: None, pos: from };
        loop {
            let mut c = Chunk::with_capacity(opts.chunk_size);
            if c.fill_from(&mut rest, opts.chunk_size).map_err(VfsError::Io)? == 0 {
                break;
            }
            importer.push_leaf(encode_leaf(opts, c), sink).map_err(VfsError::Store)?;
        }
        importer.finish(sink).map_err(VfsError::Store)
    }

    fn import_content(
        &self,
        opts: &ImportOptions,
        meta: Metadata,
        input: &mut ContentReader<'_>,
        size: u64,
        sink: &mut dyn BlockSink<Error = StoreError>,
    ) -> Result<LinkInfo, VfsError> {
        import_reader(opts, meta, input, Some(size), sink, &mut |_| {}).map_err(|e| match e {
            ReadError::Read(e) => VfsError::Io(e),
            ReadError::Sink(e) => VfsError::Store(e),
        })
    }
}

/// What importing one changed file reads, taken under the drive's lock so the import can
/// run without it.
enum FileJob {
    /// Only its metadata changed: re-imported from the committed content.
    Dag { cid: Cid, size: u64 },
    /// Written in order: its staged leaves as they are, then the rest of the spill.
    Streamed { file: Arc<SpillFile>, size: u64, leaves: Vec<LinkInfo> },
    /// Written anew (holes are not read), or changed in place over its committed leaves.
    Spill { file: Arc<SpillFile>, size: u64, overlay: Option<Box<Overlay>> },
}

impl FileJob {
    fn plan(content: &Content) -> FileJob {
        match content {
            Content::Base { cid, size } => FileJob::Dag { cid: *cid, size: *size },
            Content::Spill { file, size, overlay: None, stream } if stream.leaves.len() >= 2 => {
                FileJob::Streamed { file: file.clone(), size: *size, leaves: stream.leaves.clone() }
            }
            Content::Spill { file, size, overlay, .. } => {
                FileJob::Spill { file: file.clone(), size: *size, overlay: overlay.clone() }
            }
        }
    }
}

/// An imported file: its link, and for a file changed in place the overlay over its new
/// leaves (what it goes on with if still open).
#[derive(Clone)]
struct Built {
    link: LinkInfo,
    overlay: Option<Overlay>,
}

/// Blocks imported outside a commit go to the store in batches, staged (volatile: the
/// commit that links them makes them durable).
struct Staging<'a> {
    store: &'a dyn DriveStore,
    blocks: Vec<crate::block::Block>,
    bytes: usize,
}

impl Staging<'_> {
    fn flush(&mut self) -> Result<(), StoreError> {
        let blocks = std::mem::take(&mut self.blocks);
        self.bytes = 0;
        if blocks.is_empty() {
            return Ok(());
        }
        self.store.stage(&blocks).map_err(|e| match e {
            VfsError::Store(e) => e,
            other => StoreError::Db(other.to_string()),
        })
    }
}

impl BlockSink for Staging<'_> {
    type Error = StoreError;
    fn put(&mut self, block: crate::block::Block) -> Result<(), StoreError> {
        self.bytes += block.data().len();
        self.blocks.push(block);
        if self.bytes >= 16 << 20 { self.flush() } else { Ok(()) }
    }
}

impl Drive {
    /// Plan, build, install. Under the drive's lock: which changed files (closed, unless
    /// `force`) a commit will import, each with its version and what its bytes are (plan).
    /// Without it: their import, blocks staged in the store (build). Under it again, file
    /// by file: the result kept for the commit if the file did not change meanwhile
    /// (install). So a commit holds the lock only to link files and rebuild directories,
    /// and `stat`, `ls`, reads and writes go on while a 2 GiB file (or 10,000 small ones)
    /// is hashed. A file changed during its import is imported again under the lock.
    fn prebuild(&self, drive: &Mutex<Tree>, force: bool) -> Result<(), VfsError> {
        let (store, plans) = {
            let d = drive.lock().expect("lock poisoned");
            let Some(store) = d.store.clone().filter(|_| d.changed) else { return Ok(()) };
            let mut plans = Vec::new();
            for (ino, version) in &d.versions {
                let Some(DNode::File { content, base: None, meta, .. }) = d.nodes.get(ino) else { continue };
                if !d.parents.contains_key(ino) {
                    continue; // unlinked, still open: never committed
                }
                let done = d.prebuilt.get(ino).is_some_and(|(v, _)| v == version);
                let open = d.writers.contains_key(ino);
                if (force || !open) && !done {
                    plans.push((*ino, *version, *meta, FileJob::plan(content)));
                }
            }
            (store, plans)
        };
        let opts = ImportOptions::default();
        let mut sink = Staging { store: store.as_ref(), blocks: Vec::new(), bytes: 0 };
        let mut built = Vec::with_capacity(plans.len());
        for (ino, version, meta, job) in plans {
            built.push((ino, version, self.build_file(&opts, meta, job, &mut sink)?));
            if built.len() >= 256 {
                self.install(drive, &mut sink, &mut built)?;
            }
        }
        self.install(drive, &mut sink, &mut built)
    }

    /// Keeps built files for the commit, once their blocks are in the store, for each file
    /// still at the version built.
    fn install(
        &self,
        drive: &Mutex<Tree>,
        sink: &mut Staging<'_>,
        built: &mut Vec<(u64, u64, Built)>,
    ) -> Result<(), VfsError> {
        sink.flush()?;
        let mut d = drive.lock().expect("lock poisoned");
        for (ino, version, b) in built.drain(..) {
            if d.versions.get(&ino) == Some(&version) {
                d.prebuilt.insert(ino, (version, b));
            }
        }
        Ok(())
    }

    /// Imports one changed file (see [`FileJob`]): its link, and the overlay to go on with
    /// if it was changed in place.
    fn build_file(
        &self,
        opts: &ImportOptions,
        meta: Metadata,
        job: FileJob,
        sink: &mut dyn BlockSink<Error = StoreError>,
    ) -> Result<Built, VfsError> {
        let link = match job {
            FileJob::Dag { cid, size } => {
                let mut input = ContentReader::Dag { drive: self, cid, pos: 0, size };
                self.import_content(opts, meta, &mut input, size, sink)?
            }
            FileJob::Streamed { file, size, leaves } => self.import_streamed(opts, meta, file, size, &leaves, sink)?,
            FileJob::Spill { file, size, overlay: Some(o) } if size > o.chunk => {
                let (link, leaves) = self.import_overlay(opts, meta, &file, size, &o, sink)?;
                let next =
                    Overlay { base: link.cid, chunk: o.chunk, leaves: Arc::new(leaves), dirty: Default::default() };
                return Ok(Built { link, overlay: Some(next) });
            }
            FileJob::Spill { file, size, overlay: None }
                if let Some(link) = self.import_holes(opts, meta, &file, size, sink)? =>
            {
                link
            }
            FileJob::Spill { file, size, overlay } => {
                let mut input = ContentReader::Spill { drive: self, file, size, overlay, pos: 0 };
                self.import_content(opts, meta, &mut input, size, sink)?
            }
        };
        Ok(Built { link, overlay: None })
    }

    /// Imports a file written anew whose spill has holes (a write far past the end, a
    /// truncate up) without reading or hashing them (see `importer::sparse`); `None` if it
    /// has none worth it (it is imported as any other).
    fn import_holes(
        &self,
        opts: &ImportOptions,
        meta: Metadata,
        file: &SpillFile,
        size: u64,
        sink: &mut dyn BlockSink<Error = StoreError>,
    ) -> Result<Option<LinkInfo>, VfsError> {
        let chunk = opts.chunk_size as u64;
        if size < 2 * chunk {
            return Ok(None);
        }
        let imported = file.with_disk_file(|f| -> Result<Option<LinkInfo>, VfsError> {
            let mut input = f;
            if !has_holes(&mut input, size, chunk).map_err(VfsError::Io)? {
                return Ok(None);
            }
            import_sparse(opts, meta, &mut input, size, sink).map(Some).map_err(|e| match e {
                ReadError::Read(e) => VfsError::Io(e),
                ReadError::Sink(e) => VfsError::Store(e),
            })
        });
        imported.unwrap_or(Ok(None))
    }
}

/// The stream of a drive file being written anew, if it has one (see [`stream`]).
fn stream_of(d: &mut Tree, ino: u64) -> Option<&mut Stream> {
    match d.nodes.get_mut(&ino) {
        Some(DNode::File { content: Content::Spill { overlay: None, stream, .. }, .. }) => Some(stream),
        _ => None,
    }
}

/// The overlay of a drive file being changed, if it has one.
fn overlay_of(d: &mut Tree, ino: u64) -> Option<&mut Overlay> {
    match d.nodes.get_mut(&ino) {
        Some(DNode::File { content: Content::Spill { overlay: Some(o), .. }, .. }) => Some(o.as_mut()),
        _ => None,
    }
}

/// File bytes to import: a changed file, or committed content being re-imported.
enum ContentReader<'a> {
    Spill { drive: &'a Drive, file: Arc<SpillFile>, size: u64, overlay: Option<Box<Overlay>>, pos: u64 },
    Dag { drive: &'a Drive, cid: Cid, pos: u64, size: u64 },
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            ContentReader::Spill { drive, file, size, overlay, pos } => {
                let n =
                    drive.spill_read_into(file, *size, overlay.as_deref(), *pos, buf).map_err(std::io::Error::other)?;
                *pos += n as u64;
                Ok(n)
            }
            ContentReader::Dag { drive, cid, pos, size } => {
                let want = (buf.len() as u64).min(size.saturating_sub(*pos)) as u32;
                if want == 0 {
                    return Ok(0);
                }
                let parts = drive.read_node(cid, *pos, want).map_err(std::io::Error::other)?;
                let mut n = 0;
                for p in parts {
                    buf[n..n + p.len()].copy_from_slice(&p);
                    n += p.len();
                }
                *pos += n as u64;
                Ok(n)
            }
        }
    }
}

/// Hard links, owners, atime and extended attributes: what UnixFS cannot store (see
/// [`posix`]).
impl Drive {
    /// Gives the drive its POSIX sidecar (the store's `drive.posix` root; see [`posix`]),
    /// before anything is looked up.
    pub(super) fn set_sidecar(&self, side: Cid) {
        let mut d = self.tree.lock().expect("lock poisoned");
        if matches!(d.nodes.get(&ROOT_INO), Some(DNode::Lazy { .. })) {
            d.sides.insert(ROOT_INO, side);
        }
    }

    /// Loads the sidecar of directory `ino` (if it has one) into the extras of its
    /// `entries`; returns the hard-link groups it lists (the root's only).
    fn load_side(&self, d: &mut Tree, ino: u64, entries: &BTreeMap<String, u64>) -> Result<Vec<Vec<String>>, VfsError> {
        let Some(cid) = d.sides.get(&ino).copied() else { return Ok(Vec::new()) };
        let node = Nodes::node(self, &cid)?;
        let side = match node.as_ref() {
            Node::Cbor(v) => posix::decode(v),
            _ => Err("not dag-cbor".to_string()),
        }
        .map_err(|reason| VfsError::BadSidecar { cid, reason })?;
        for (name, entry) in side.entries {
            let child = match entries.get(&name) {
                Some(&child) => child,
                None if name.is_empty() && ino == ROOT_INO => ROOT_INO, // the root's own
                None => continue,
            };
            if !entry.extras.is_empty() {
                d.extras.insert(child, entry.extras);
            }
            if let Some(sub) = entry.sub {
                d.sides.insert(child, sub);
            }
        }
        Ok(side.groups)
    }

    /// Joins the names of each hard-link group into one inode (loading every member).
    fn load_links(&self, d: &mut Tree, groups: &[Vec<String>]) -> Result<(), VfsError> {
        for group in groups {
            let mut members: Vec<(u64, String, u64)> = Vec::new();
            for path in group {
                match self.walk_path(d, path) {
                    Ok(Some(m)) => members.push(m),
                    Ok(None) => log::warn!("hard-link group: {path} is not in the drive; skipped"),
                    Err(e) => return Err(e),
                }
            }
            let Some(&(_, _, canonical)) = members.first() else { continue };
            self.resolve(d, canonical)?;
            if !matches!(d.nodes.get(&canonical), Some(DNode::File { .. } | DNode::Symlink { .. })) || members.len() < 2
            {
                continue;
            }
            for (dir, name, ino) in &members[1..] {
                if let Some(DNode::Dir { entries, .. }) = d.nodes.get_mut(dir) {
                    entries.insert(name.clone(), canonical);
                }
                if *ino != canonical {
                    d.nodes.remove(ino);
                    d.extras.remove(ino);
                    d.parents.remove(ino);
                }
            }
            d.links.insert(canonical, members.into_iter().map(|(dir, name, _)| (dir, name)).collect());
        }
        Ok(())
    }

    /// Finds `a/b/c` from the drive root: (directory, name, inode), or None if absent.
    fn walk_path(&self, d: &mut Tree, path: &str) -> Result<Option<(u64, String, u64)>, VfsError> {
        let parts: Vec<&str> = path.split('/').collect();
        let mut dir = ROOT_INO;
        for (i, part) in parts.iter().enumerate() {
            let Ok(entries) = self.children(d, dir) else { return Ok(None) };
            let Some(&ino) = entries.get(*part) else { return Ok(None) };
            if i + 1 == parts.len() {
                return Ok(Some((dir, part.to_string(), ino)));
            }
            self.resolve(d, ino)?;
            dir = ino;
        }
        Ok(None)
    }

    /// Every (directory, name) of `ino`: one, none once unlinked, more when hard-linked.
    fn names_of(d: &Tree, ino: u64) -> Vec<(u64, String)> {
        if let Some(names) = d.links.get(&ino) {
            return names.clone();
        }
        let Some(&parent) = d.parents.get(&ino) else { return Vec::new() };
        match d.nodes.get(&parent) {
            Some(DNode::Dir { entries, .. }) if parent != ino => {
                entries.iter().filter(|(_, i)| **i == ino).map(|(n, _)| (parent, n.clone())).take(1).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The directories naming `ino` (cheaper than [`names_of`](Self::names_of): no scan).
    fn dirs_of(d: &Tree, ino: u64) -> Vec<u64> {
        match d.links.get(&ino) {
            Some(names) => names.iter().map(|(dir, _)| *dir).collect(),
            None => d.parents.get(&ino).copied().filter(|p| *p != ino).into_iter().collect(),
        }
    }

    /// Forgets one name of `ino` (it was unlinked or replaced).
    /// An unnamed node lives on for its open handles, but has no directory and nothing
    /// of it is committed.
    fn forget_name(d: &mut Tree, ino: u64, dir: u64, name: &str) {
        let mut rest = d.links.remove(&ino).unwrap_or_default();
        rest.retain(|(p, n)| !(*p == dir && n == name));
        match rest.len() {
            0 => {
                d.parents.remove(&ino);
                d.versions.remove(&ino);
                d.prebuilt.remove(&ino);
            }
            1 => {
                d.parents.insert(ino, rest[0].0);
            }
            _ => {
                d.links.insert(ino, rest);
            }
        }
    }

    /// The paths of every hard-link group, as the root sidecar lists them.
    fn link_groups(d: &Tree) -> Vec<Vec<String>> {
        let mut memo: HashMap<u64, String> = HashMap::new();
        let mut groups: Vec<Vec<String>> = d
            .links
            .values()
            .map(|names| {
                let mut paths: Vec<String> = names
                    .iter()
                    .filter_map(|(dir, name)| {
                        let base = Self::dir_path(d, *dir, &mut memo)?;
                        Some(if base.is_empty() { name.clone() } else { format!("{base}/{name}") })
                    })
                    .collect();
                paths.sort();
                paths
            })
            .filter(|g| g.len() > 1)
            .collect();
        groups.sort();
        groups
    }

    /// The path of a loaded directory from the drive root ("" for the root), if it is
    /// still in the tree.
    fn dir_path(d: &Tree, dir: u64, memo: &mut HashMap<u64, String>) -> Option<String> {
        if dir == ROOT_INO {
            return Some(String::new());
        }
        if let Some(p) = memo.get(&dir) {
            return Some(p.clone());
        }
        let parent = *d.parents.get(&dir)?;
        let Some(DNode::Dir { entries, .. }) = d.nodes.get(&parent) else { return None };
        let name = entries.iter().find(|(_, i)| **i == dir)?.0.clone();
        let base = Self::dir_path(d, parent, memo)?;
        let path = if base.is_empty() { name } else { format!("{base}/{name}") };
        memo.insert(dir, path.clone());
        Some(path)
    }

    /// The sidecar of directory `ino` from its entries' extras and sub-sidecars.
    fn build_side(d: &Tree, ino: u64, groups: Vec<Vec<String>>) -> Side {
        let mut side = Side { groups, ..Default::default() };
        if let Some(x) = d.extras.get(&ino).filter(|_| ino == ROOT_INO) {
            side.entries.insert(String::new(), SideEntry { extras: x.clone(), sub: None });
        }
        if let Some(DNode::Dir { entries, .. }) = d.nodes.get(&ino) {
            for (name, child) in entries {
                let extras = d.extras.get(child).cloned().unwrap_or_default();
                let sub = d.sides.get(child).copied();
                if !extras.is_empty() || sub.is_some() {
                    side.entries.insert(name.clone(), SideEntry { extras, sub });
                }
            }
        }
        side
    }

    /// Changes the extras of `ino` with `change`; its directories' sidecars are rebuilt
    /// at the next commit.
    fn change_extras<T>(
        &self,
        ino: u64,
        change: impl FnOnce(&mut Extras) -> Result<T, VfsError>,
    ) -> Result<T, VfsError> {
        let mut d = self.drive_mut()?;
        self.resolve(&mut d, ino)?;
        match d.nodes.get(&ino) {
            Some(DNode::Dir { .. } | DNode::File { .. } | DNode::Symlink { .. }) => {}
            Some(_) => return Err(VfsError::ReadOnly),
            None => return Err(VfsError::ReadOnly), // content under a CID
        }
        let mut extras = d.extras.remove(&ino).unwrap_or_default();
        let before = extras.clone();
        let out = change(&mut extras);
        let changed = extras != before;
        if changed {
            extras.ctime = Some(now()); // an owner, an xattr or the atime changed
        }
        if !extras.is_empty() {
            d.extras.insert(ino, extras);
        }
        if changed {
            if ino == ROOT_INO {
                d.side_dirty.insert(ROOT_INO); // the root's own extras sit in its sidecar
            }
            for dir in Self::dirs_of(&d, ino) {
                d.side_dirty.insert(dir);
            }
            d.changed = true;
        }
        out
    }

    /// The extended attributes stored on a drive node.
    pub(super) fn xattrs(&self, ino: u64) -> Result<BTreeMap<String, Vec<u8>>, VfsError> {
        let d = self.drive()?;
        Ok(d.extras.get(&ino).map(|x| x.xattrs.clone()).unwrap_or_default())
    }

    /// Sets owner and/or group (`chown`; the caller checked the permission). For each:
    /// `None` leaves it, `Some(None)` makes it the default (the mounting user's, which is
    /// not stored), `Some(Some(id))` stores `id`.
    pub fn set_owner(&self, ino: u64, uid: Option<Option<u32>>, gid: Option<Option<u32>>) -> Result<(), VfsError> {
        self.change_extras(ino, |x| {
            if let Some(uid) = uid {
                x.uid = uid;
            }
            if let Some(gid) = gid {
                x.gid = gid;
            }
            Ok(())
        })
    }

    /// Sets the access time (`utimens`; `None`: the same as the mtime, which is what is
    /// shown when none is stored). Reads never change it: the mount is `noatime`.
    pub fn set_atime(&self, ino: u64, atime: Option<std::time::SystemTime>) -> Result<(), VfsError> {
        let t = atime.map(|atime| {
            let dur = atime.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            UnixTime {
                seconds: dur.as_secs() as i64,
                fractional_nanoseconds: Some(dur.subsec_nanos()).filter(|n| *n != 0),
            }
        });
        self.change_extras(ino, |x| {
            x.atime = t;
            Ok(())
        })
    }

    /// Sets an extended attribute. `create`: fail if it exists (`XATTR_CREATE`);
    /// `replace`: fail if it does not (`XATTR_REPLACE`).
    pub fn set_xattr(&self, ino: u64, name: &str, value: &[u8], create: bool, replace: bool) -> Result<(), VfsError> {
        check_xattr_name(name)?;
        if value.len() > posix::MAX_XATTR_BYTES {
            return Err(VfsError::TooBig);
        }
        self.change_extras(ino, |x| {
            match (x.xattrs.contains_key(name), create, replace) {
                (true, true, _) => return Err(VfsError::Exists(name.to_string())),
                (false, _, true) => return Err(VfsError::NoAttribute),
                _ => {}
            }
            let old = x.xattrs.get(name).map_or(0, |v| name.len() + v.len());
            if x.xattr_bytes() - old + name.len() + value.len() > posix::MAX_XATTR_BYTES {
                return Err(VfsError::NoSpace);
            }
            x.xattrs.insert(name.to_string(), value.to_vec());
            Ok(())
        })
    }

    pub fn remove_xattr(&self, ino: u64, name: &str) -> Result<(), VfsError> {
        check_xattr_name(name)?;
        self.change_extras(ino, |x| x.xattrs.remove(name).map(|_| ()).ok_or(VfsError::NoAttribute))
    }

    /// Adds the name `new_name` in `new_parent` for the file or symlink `ino` (`link(2)`).
    pub fn link(&self, ino: u64, new_parent: u64, new_name: &str) -> Result<Attr, VfsError> {
        check_name(new_name)?;
        {
            let mut d = self.drive_mut()?;
            if !d.nodes.contains_key(&ino) {
                return Err(if self.inodes.is_drive(ino) { VfsError::StaleInode(ino) } else { VfsError::CrossDevice });
            }
            self.resolve(&mut d, ino)?;
            match d.nodes.get(&ino) {
                Some(DNode::File { .. } | DNode::Symlink { .. }) => {}
                Some(DNode::Dir { .. }) => return Err(VfsError::NotPermitted("hard links to directories")),
                _ => return Err(VfsError::NotPermitted("hard links to dag-cbor content")),
            }
            let mut names = Self::names_of(&d, ino);
            if names.is_empty() {
                return Err(VfsError::NotFound("the file was unlinked".into()));
            }
            let entries = self.children(&mut d, new_parent)?;
            if entries.contains_key(new_name) {
                return Err(VfsError::Exists(new_name.to_string()));
            }
            entries.insert(new_name.to_string(), ino);
            names.push((new_parent, new_name.to_string()));
            d.links.insert(ino, names);
            Self::touch_dir(&mut d, new_parent);
            Self::stamp_ctime(&mut d, ino, false);
        }
        self.attr(ino)
    }
}

/// Extended attribute names this drive stores: any but `system.*` (ACLs, which the kernel
/// would have to enforce) and the `ipfs.*` names it computes.
fn check_xattr_name(name: &str) -> Result<(), VfsError> {
    if name.len() > posix::XATTR_NAME_MAX {
        return Err(VfsError::Range);
    }
    if name.starts_with("system.") {
        return Err(VfsError::NotSupported("system.* extended attributes (POSIX ACLs)"));
    }
    if name.starts_with("ipfs.") {
        return Err(VfsError::NotPermitted("ipfs.* extended attributes are computed from the content"));
    }
    Ok(())
}
