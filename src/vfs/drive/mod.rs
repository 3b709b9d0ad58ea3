//! The writable drive: a mutable tree over the immutable drive DAG, as an object of its
//! own. [`Drive`] owns its lock (the [`Tree`] under it) and reads committed content through
//! the mount's shared [`Content`](super::content::Content); the vfs reaches it only through
//! the methods below and never sees a node.
//!
//! Every node of the drive has its own inode, from the mount's inode table, stable while
//! mounted (a file's CID changes on every commit; its inode must not). Nodes load lazily
//! from the DAG: an entry is `Lazy(cid)` until it is looked at. A file that is written is
//! copied into a spill (only the chunks written, for a committed file changed in place),
//! and its reads and writes go there until the next commit.
//!
//! [`Drive::commit`] re-imports every changed file with the importer's default options
//! (Kubo's, so unchanged chunks keep their CIDs and only the changed leaves and the nodes
//! above them are new blocks), rebuilds changed directories bottom-up, and makes the new
//! root durable through the [`DriveStore`] in one transaction. Unchanged subtrees keep
//! their CIDs and are not touched.
//!
//! The files: this one holds the drive and its namespace operations (lookup, create,
//! write, rename, ...); `file.rs` a changed file's bytes, `commit.rs` commits (plan,
//! build, install), `sidecar.rs` owners, xattrs and hard links, `streamer.rs` the thread
//! that hashes files written in order — each adding the [`Drive`] methods of its concern.
//! The data they share is in `tree.rs` (nodes, contents, the tree), `stream.rs`,
//! `spill.rs`, `posix.rs` (the sidecar codec) and `persist.rs` (where commits go).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;

mod commit;
mod file;
pub mod persist;
pub mod posix;
mod sidecar;
mod spill;
mod stream;
mod streamer;
mod tree;

use std::sync::{Mutex, MutexGuard, OnceLock};

use super::content::Content as Dag;
use super::inodes::InodeTable;
use super::{Attr, Capacity, DEFAULT_MTIME, DirEntry, FileKind, ROOT_INO, VfsError, unix_time};
use crate::importer::{ImportOptions, LinkInfo};
use crate::unixfs::pb::UnixTime;
use crate::unixfs::{Metadata, Node, Nodes, dir};
pub use persist::{CommitBuild, DriveStore};
use spill::SpillFile;
use stream::Stream;
use tree::{Content, DNode, Tree, now, overlay_of, stream_of};

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
            let streamer = streamer::spawn(Arc::downgrade(&tree));
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
        Ok(d.base_of(ino).map(|l| l.cid))
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
        } else if !d.is_named(ino) {
            // unlinked, kept alive by an open handle (`fstat` says 0 links, as POSIX does)
            a.nlink = 0;
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
            DNode::Dir { meta, entries, .. } => {
                let time = if ino == ROOT_INO && meta.mtime.is_none() { root_time } else { mtime(meta) };
                // "." and the parent's entry, and each subdirectory's ".."
                let subdirs = entries.values().filter(|child| self.kind_of(&d, **child) == FileKind::Directory);
                let nlink = 2 + subdirs.count();
                Attr {
                    size: entries.len() as u64,
                    nlink: u32::try_from(nlink).unwrap_or(u32::MAX),
                    ..Attr::new(ino, FileKind::Directory, perm(meta, dir_perm), time)
                }
            }
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
                Attr { size, blksize: 262_144, ..Attr::new(ino, FileKind::File, perm(meta, file_perm), mtime(meta)) }
            }
            DNode::Symlink { target, meta, .. } => {
                Attr { size: target.len() as u64, ..Attr::new(ino, FileKind::Symlink, 0o777, mtime(meta)) }
            }
            DNode::Foreign { cid, .. } => {
                let cid = *cid;
                drop(d);
                return self.dag.attr(ino, &cid);
            }
            DNode::Lazy { .. } => unreachable!("resolved above"),
        })
    }

    /// What drive node `ino` is, without reading a block: a node not yet looked at is
    /// judged by the store's index (a block it lacks counts as a file).
    fn kind_of(&self, d: &Tree, ino: u64) -> FileKind {
        match d.nodes.get(&ino) {
            Some(DNode::Lazy { cid, .. }) | Some(DNode::Foreign { cid, .. }) => self.dag.kind_hint(cid),
            Some(DNode::Dir { .. }) => FileKind::Directory,
            Some(DNode::Symlink { .. }) => FileKind::Symlink,
            _ => FileKind::File,
        }
    }

    pub(super) fn list(&self, ino: u64) -> Result<Vec<DirEntry>, VfsError> {
        let mut d = self.drive()?;
        if let Some(DNode::Foreign { .. }) = d.nodes.get(&ino) {
            return Err(VfsError::NotADirectory);
        }
        let entries: Vec<(String, u64)> = self.children(&mut d, ino)?.iter().map(|(n, i)| (n.clone(), *i)).collect();
        let mut out = vec![
            DirEntry { ino, name: ".".into(), kind: FileKind::Directory },
            DirEntry {
                ino: d.parents.get(&ino).copied().unwrap_or(ROOT_INO),
                name: "..".into(),
                kind: FileKind::Directory,
            },
        ];
        for (name, child) in entries {
            out.push(DirEntry { ino: child, name, kind: self.kind_of(&d, child) });
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
            d.touch_dir(parent);
            ino
        };
        self.attr(ino)
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
        d.grow_spill(&file, offset.saturating_add(data.len() as u64))?;
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
        d.set_size(ino, size.max(end));
        d.stamp_ctime(ino, true);
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
        d.grow_spill(&file, len)?;
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
        d.set_size(ino, len);
        d.stamp_ctime(ino, true);
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
        d.stamp_ctime(ino, false);
        d.bump(ino);
        d.changed = true;
        Ok(())
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
        d.forget_name(ino, parent, name);
        if d.is_named(ino) {
            // one name of a hard-linked file went: its link count changed
            d.stamp_ctime(ino, false);
        }
        d.touch_dir(parent);
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
        if src_dir && d.is_within(new_parent, ino) {
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
            d.forget_name(existing, new_parent, new_name);
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
        d.touch_dir(parent);
        d.touch_dir(new_parent);
        d.stamp_ctime(ino, false);
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
        if d.is_within(new_parent, a) || d.is_within(parent, b) {
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
        d.touch_dir(parent);
        d.touch_dir(new_parent);
        d.stamp_ctime(a, false);
        d.stamp_ctime(b, false);
        Ok(())
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
}
