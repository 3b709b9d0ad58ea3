//! Filesystem semantics over content-addressed DAGs, independent of FUSE.
//!
//! The `fuse` module is a thin adapter over [`Vfs`]; tests drive `Vfs` directly, without a
//! kernel mount. Everything a mount shows is decided here:
//!
//! - **Namespace.** Inode 1 is the drive root: the directory DAG named by the store's
//!   `drive` root (empty until something is added). `/.ipfs/<CID>[/path]` reaches any CID
//!   and is looked up by name but never listed (like ZFS's `.zfs`). In `--ipfs` mode the
//!   root *is* that namespace (`/<CID>/...`, Kubo's `ipfs mount`).
//! - **Inodes** are handed out per target (a CID, or a value inside a dag-cbor block) and
//!   never reused while mounted, so an inode number is stable for the life of the mount
//!   and equal content shares an inode.
//! - **Listings never fetch children.** A directory's entries come from its own blocks
//!   (links carry name and CID); each entry's type comes from [`Blocks::kind_hint`] (the
//!   store's index), never from reading the entry.
//! - **Immutable means cacheable.** Nothing under a CID changes, so the adapter may use
//!   long TTLs and keep the page cache across opens.
//!
//! Every error carries its errno, from the one table in [`errno`] (SEMANTICS.md lists them).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::fetch::Blocks;
use crate::unixfs::{self, Node, Nodes, UnixfsError, dag_json, dir};
use content::Content;
pub use errno::ToErrno;
use inodes::{InodeTable, Target};

/// Inode of the mount root.
pub const ROOT_INO: u64 = 1;
/// Name of the hidden directory that reaches any CID.
pub const IPFS_DIR: &str = ".ipfs";
/// Name of the hidden directory of past commits of the drive.
pub const SNAPSHOTS_DIR: &str = ".snapshots";
/// The entry of [`SNAPSHOTS_DIR`] that points at the newest commit.
pub const LATEST: &str = "latest";
/// Modification time shown for nodes that store none (the Unix epoch).
pub const DEFAULT_MTIME: SystemTime = UNIX_EPOCH;
/// Name of the extended attribute holding a node's CID (Kubo's name).
pub const CID_XATTR: &str = "ipfs.cid";
/// Virtual attribute: the Filecoin pieces holding a file's (or directory's) blocks.
pub const PIECES_XATTR: &str = "cidfs.pieces";
/// Virtual attribute: where those pieces' replicas stand (piece, provider, state).
pub const REPLICAS_XATTR: &str = "cidfs.replicas";

/// Answers [`PIECES_XATTR`] (`false`) or [`REPLICAS_XATTR`] (`true`) for the DAG under a
/// CID: the store's records, formatted (see `filecoin::replicate::report`).
pub type PieceReport = Box<dyn Fn(&Cid, bool) -> Result<String, String> + Send + Sync>;

/// The SELinux label attribute.
const SELINUX_XATTR: &str = "security.selinux";

/// The extended attributes that hold POSIX ACLs, which cidfs does not support.
fn is_posix_acl(name: &OsStr) -> bool {
    name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
}

/// What `stat` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileKind,
    pub size: u64,
    pub perm: u16,
    pub mtime: SystemTime,
    pub nlink: u32,
    /// Preferred I/O size: the file's chunk size.
    pub blksize: u32,
    /// Owner and group, when set by `chown` (else: the mounting user's).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Access time, when set by `utimens` (else: the mtime).
    pub atime: Option<SystemTime>,
    /// Change time, when it differs from the mtime (a metadata change since the last
    /// write, or an mtime set into the past).
    pub ctime: Option<SystemTime>,
}

impl Attr {
    /// A node of `kind` with nothing stored about it beyond its permissions and mtime:
    /// empty, one name (two for a directory), 4 KiB preferred I/O, the mounting user's.
    pub fn new(ino: u64, kind: FileKind, perm: u16, mtime: SystemTime) -> Attr {
        Attr {
            ino,
            kind,
            size: 0,
            perm,
            mtime,
            nlink: if kind == FileKind::Directory { 2 } else { 1 },
            blksize: 4096,
            uid: None,
            gid: None,
            atime: None,
            ctime: None,
        }
    }

    /// 512-byte blocks, as `st_blocks` counts them.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(512)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub name: String,
    pub kind: FileKind,
}

/// Space as `statfs` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub files: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    #[error(transparent)]
    Unixfs(#[from] UnixfsError),
    #[error("inode {0} is not known to this mount")]
    StaleInode(u64),
    #[error("{0}: no such entry")]
    NotFound(String),
    #[error("not a directory")]
    NotADirectory,
    #[error("is a directory")]
    IsADirectory,
    #[error("not a symlink")]
    NotASymlink,
    #[error("read-only: content under a CID never changes")]
    ReadOnly,
    #[error("no such extended attribute")]
    NoAttribute,
    #[error("buffer too small")]
    Range,
    #[error("no such open handle {0}")]
    BadHandle(u64),
    #[error("name longer than {} bytes", drive::NAME_MAX)]
    NameTooLong,
    #[error("{0:?} cannot be a name here")]
    InvalidName(String),
    #[error("{0}: already exists")]
    Exists(String),
    #[error("directory not empty")]
    NotEmpty,
    #[error("local I/O: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("not supported: {0}")]
    NotSupported(&'static str),
    #[error("not permitted: {0}")]
    NotPermitted(&'static str),
    #[error("no space left: the store's capacity is reached")]
    NoSpace,
    #[error("hard links cannot cross from content under a CID into the drive")]
    CrossDevice,
    #[error("{cid}: malformed POSIX sidecar: {reason}")]
    BadSidecar { cid: Cid, reason: String },
    #[error("extended attribute value over {} bytes", posix::MAX_XATTR_BYTES)]
    TooBig,
    #[error("the file is open for reading straight from its hot copy; close those readers first")]
    Busy,
    #[error("past the largest file size ({} bytes)", drive::MAX_FILE_SIZE)]
    FileTooBig,
}

/// The drive's commits, oldest first, as (sequence, root CID).
pub type CommitLog = Box<dyn Fn() -> Vec<(u64, Cid)> + Send + Sync>;

/// What the mount root is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootMode {
    /// The user's drive: the directory DAG `Some(cid)`, or an empty directory.
    Drive(Option<Cid>),
    /// The `/ipfs` namespace itself: `/<CID>/...`.
    Ipfs,
}

pub struct Vfs {
    /// Content under a CID: what every namespace and the drive's committed files read.
    content: Arc<Content>,
    mode: RootMode,
    inodes: Arc<InodeTable>,
    dirs: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    next_handle: AtomicU64,
    capacity: Arc<dyn Fn() -> Capacity + Send + Sync>,
    /// The drive (drive mode only): its own object, reached through its methods only.
    drive: Option<Arc<Drive>>,
    /// The drive's commits (drive mode only).
    snapshots: Option<CommitLog>,
    /// Where a DAG's blocks are on the Filecoin side (mounts over a store).
    pieces: Option<PieceReport>,
}

impl Vfs {
    /// A read-only view (writes to the drive fail with `EROFS`).
    pub fn new(blocks: Arc<dyn Blocks>, mode: RootMode, capacity: Box<dyn Fn() -> Capacity + Send + Sync>) -> Vfs {
        Vfs::build(blocks, mode, None, std::env::temp_dir(), capacity)
    }

    /// A writable drive rooted at `root`; changes are committed through `store`, and
    /// written files spill into anonymous files in `spill_dir` until committed.
    pub fn writable(
        blocks: Arc<dyn Blocks>,
        root: Option<Cid>,
        store: Arc<dyn DriveStore>,
        spill_dir: std::path::PathBuf,
        capacity: Box<dyn Fn() -> Capacity + Send + Sync>,
    ) -> Vfs {
        Vfs::build(blocks, RootMode::Drive(root), Some(store), spill_dir, capacity)
    }

    fn build(
        blocks: Arc<dyn Blocks>,
        mode: RootMode,
        store: Option<Arc<dyn DriveStore>>,
        spill_dir: std::path::PathBuf,
        capacity: Box<dyn Fn() -> Capacity + Send + Sync>,
    ) -> Vfs {
        let content = Arc::new(Content::new(blocks));
        let inodes = Arc::new(InodeTable::new());
        let capacity: Arc<dyn Fn() -> Capacity + Send + Sync> = Arc::from(capacity);
        let drive = match &mode {
            RootMode::Drive(root) => {
                Some(Arc::new(Drive::new(*root, spill_dir, store, content.clone(), inodes.clone(), capacity.clone())))
            }
            RootMode::Ipfs => None,
        };
        Vfs {
            content,
            mode,
            inodes,
            dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            capacity,
            drive,
            snapshots: None,
            pieces: None,
        }
    }

    /// Answers `cidfs.pieces` and `cidfs.replicas` with `report`.
    pub fn with_piece_report(mut self, report: PieceReport) -> Vfs {
        self.pieces = Some(report);
        self
    }

    /// The drive root's mtime while it stores none: when the drive last changed (its
    /// last commit) or was created. It moves on with every change to the root's entries.
    pub fn with_drive_time(self, time: SystemTime) -> Vfs {
        if let Some(d) = &self.drive {
            d.set_root_time(time);
        }
        self
    }

    /// Lets writes that would not fit ask for room: `make_room(n)` frees `n` bytes of
    /// second copies if it can. A write fails with `ENOSPC` only once they are gone.
    pub fn with_room_maker(self, make_room: Box<dyn Fn(u64) + Send + Sync>) -> Vfs {
        if let Some(d) = &self.drive {
            d.set_room_maker(make_room);
        }
        self
    }

    /// Gives the drive its POSIX sidecar (the store's `drive.posix` root; see [`posix`]),
    /// before anything is looked up.
    pub fn with_posix_sidecar(self, side: Option<Cid>) -> Vfs {
        if let (Some(d), Some(side)) = (&self.drive, side) {
            d.set_sidecar(side);
        }
        self
    }

    /// Serves `/.snapshots` from `commits` (drive mode).
    pub fn with_snapshots(mut self, commits: CommitLog) -> Vfs {
        if self.drive.is_some() {
            self.snapshots = Some(commits);
        }
        self
    }

    /// Whether what `ino` shows can never change (content under a CID), so the kernel may
    /// cache it for long.
    /// Whether reading `ino` may wait on the network: content under a CID, on a mount with
    /// a network tier (the drive's own content is always local).
    pub fn may_wait(&self, ino: u64) -> bool {
        self.has_network_tier() && self.is_immutable(ino)
    }

    /// Whether blocks may come from the network (reads may wait on it).
    pub fn has_network_tier(&self) -> bool {
        self.content.has_network_tier()
    }

    pub fn is_immutable(&self, ino: u64) -> bool {
        matches!(self.target(ino), Ok(Target::Node(_) | Target::Value { .. } | Target::IpfsDir))
    }

    fn commits(&self) -> Vec<(u64, Cid)> {
        self.snapshots.as_ref().map(|f| f()).unwrap_or_default()
    }

    fn target(&self, ino: u64) -> Result<Target, VfsError> {
        self.inodes.target(ino)
    }

    /// A path by which `ino` was reached, for messages (`?` if unknown).
    pub fn path_of(&self, ino: u64) -> String {
        self.inodes.path_of(ino)
    }

    fn ino_for(&self, target: Target, parent: u64, name: &str) -> u64 {
        self.inodes.ino_for(target, parent, name)
    }

    fn node(&self, cid: &Cid) -> Result<Arc<Node>, VfsError> {
        self.content.node(cid)
    }

    fn value_at(&self, cid: &Cid, path: &[String]) -> Result<Ipld, VfsError> {
        let node = self.node(cid)?;
        let Node::Cbor(root) = node.as_ref() else { return Err(VfsError::NotADirectory) };
        let mut v = root;
        for seg in path {
            v = match v {
                Ipld::Map(m) => m.get(seg),
                Ipld::List(l) => seg.parse::<usize>().ok().and_then(|i| l.get(i)),
                _ => None,
            }
            .ok_or_else(|| VfsError::NotFound(seg.clone()))?;
        }
        Ok(v.clone())
    }

    fn is_ipfs_namespace(&self, t: &Target) -> bool {
        matches!(t, Target::IpfsDir) || (matches!(t, Target::Root) && self.mode == RootMode::Ipfs)
    }

    /// Looks up `name` in the directory `parent`.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, VfsError> {
        if name.len() > drive::NAME_MAX {
            return Err(VfsError::NameTooLong);
        }
        let name = name.to_str().ok_or_else(|| VfsError::NotFound(name.to_string_lossy().into_owned()))?;
        let parent_t = self.target(parent)?;
        if matches!(parent_t, Target::Root) && name == IPFS_DIR && self.drive.is_some() {
            let ino = self.ino_for(Target::IpfsDir, parent, name);
            return self.attr_of(ino, &Target::IpfsDir);
        }
        if matches!(parent_t, Target::Root) && name == SNAPSHOTS_DIR && self.snapshots.is_some() {
            let ino = self.ino_for(Target::Snapshots, parent, name);
            return self.attr_of(ino, &Target::Snapshots);
        }
        if matches!(parent_t, Target::Snapshots) {
            let target = if name == LATEST {
                Target::Latest
            } else {
                let seq: u64 = name.parse().map_err(|_| VfsError::NotFound(name.to_string()))?;
                let (_, root) = self
                    .commits()
                    .into_iter()
                    .find(|(s, _)| *s == seq)
                    .ok_or_else(|| VfsError::NotFound(name.to_string()))?;
                Target::Node(root)
            };
            let ino = self.ino_for(target.clone(), parent, name);
            return self.attr_of(ino, &target);
        }
        if let Some(drive) = self.drive_node(parent) {
            return match drive.lookup(parent, name) {
                // dag-cbor inside the drive has no entries of the drive's own (one lock per
                // lookup: only this refusal asks again): its entries are content under a CID
                Err(VfsError::ReadOnly) if let Some(cid) = drive.foreign(parent) => {
                    let child = self.child_of_node(&cid, name)?;
                    let ino = self.ino_for(child.clone(), parent, name);
                    self.attr_of(ino, &child)
                }
                found => found,
            };
        }
        let child = if self.is_ipfs_namespace(&parent_t) {
            let cid = Cid::try_from(name).map_err(|_| VfsError::NotFound(name.to_string()))?;
            Target::Node(cid)
        } else {
            match parent_t {
                Target::Root if name == IPFS_DIR => Target::IpfsDir,
                Target::Node(cid) => self.child_of_node(&cid, name)?,
                Target::Value { cid, path } => {
                    let v = self.value_at(&cid, &path)?;
                    child_of_value(&cid, &path, &v, name)?
                }
                Target::Root | Target::IpfsDir => unreachable!("the ipfs namespace or a drive node"),
                Target::Drive(_) | Target::Snapshots | Target::Latest => unreachable!("handled above"),
            }
        };
        let ino = self.ino_for(child.clone(), parent, name);
        self.attr_of(ino, &child)
    }

    fn child_of_node(&self, cid: &Cid, name: &str) -> Result<Target, VfsError> {
        let node = self.node(cid)?;
        match node.as_ref() {
            Node::Directory { .. } | Node::HamtShard(_) => {
                let link = dir::lookup(self.content.blocks.as_ref(), cid, &node, name)?
                    .ok_or_else(|| VfsError::NotFound(name.to_string()))?;
                Ok(Target::Node(link.cid))
            }
            Node::Cbor(v) => child_of_value(cid, &[], v, name),
            _ => Err(VfsError::NotADirectory),
        }
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr, VfsError> {
        if let Some(drive) = self.drive_node(ino) {
            return drive.attr(ino);
        }
        let t = self.target(ino)?;
        self.attr_of(ino, &t)
    }

    /// Attributes when they need no network fetch; `None` for content under a CID whose
    /// block is not held locally (a listing must not fetch every child from peers).
    pub fn getattr_if_local(&self, ino: u64) -> Option<Result<Attr, VfsError>> {
        if self.has_network_tier()
            && let Ok(Target::Node(cid)) = self.target(ino)
            && self.content.blocks.kind_hint(&cid).is_none()
        {
            return None;
        }
        Some(self.getattr(ino))
    }

    fn attr_of(&self, ino: u64, t: &Target) -> Result<Attr, VfsError> {
        let dir = |perm, mtime| Attr::new(ino, FileKind::Directory, perm, mtime);
        match t {
            // (in drive mode the root is a drive node; this is the --ipfs root)
            Target::Root => Ok(dir(0o555, DEFAULT_MTIME)),
            Target::IpfsDir => Ok(dir(0o555, DEFAULT_MTIME)),
            Target::Drive(_) => self.drive()?.attr(ino),
            Target::Snapshots => Ok(dir(0o555, DEFAULT_MTIME)),
            Target::Latest => {
                let size = self.commits().last().map_or(0, |(s, _)| s.to_string().len() as u64);
                Ok(Attr { size, ..Attr::new(ino, FileKind::Symlink, 0o777, DEFAULT_MTIME) })
            }
            Target::Node(cid) => self.content.attr(ino, cid),
            Target::Value { cid, path } => Ok(match self.value_at(cid, path)? {
                Ipld::Map(_) | Ipld::List(_) => dir(0o555, DEFAULT_MTIME),
                scalar => scalar_attr(ino, &scalar),
            }),
        }
    }

    /// Opens a directory: its entries are listed once, here, and served from the handle.
    pub fn opendir(&self, ino: u64) -> Result<u64, VfsError> {
        let entries = Arc::new(self.list(ino)?);
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.dirs.lock().expect("lock poisoned").insert(fh, entries);
        Ok(fh)
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.lock().expect("lock poisoned").remove(&fh);
    }

    /// The entries of an open directory (`.` and `..` first); callers page through them.
    pub fn dir_entries(&self, fh: u64) -> Result<Arc<Vec<DirEntry>>, VfsError> {
        self.dirs.lock().expect("lock poisoned").get(&fh).cloned().ok_or(VfsError::BadHandle(fh))
    }

    /// All entries of directory `ino`, without fetching any entry's own block.
    pub fn list(&self, ino: u64) -> Result<Vec<DirEntry>, VfsError> {
        if let Some(drive) = self.drive_node(ino) {
            return drive.list(ino);
        }
        let t = self.target(ino)?;
        let mut out = vec![
            DirEntry { ino, name: ".".into(), kind: FileKind::Directory },
            DirEntry { ino: ROOT_INO, name: "..".into(), kind: FileKind::Directory },
        ];
        let cid = match &t {
            _ if self.is_ipfs_namespace(&t) => return Ok(out), // any CID, none listed
            Target::Root => return Ok(out),
            Target::Node(cid) => *cid,
            Target::Value { cid, path } => {
                let v = self.value_at(cid, path)?;
                self.list_value(ino, cid, path, &v, &mut out)?;
                return Ok(out);
            }
            Target::IpfsDir => unreachable!("handled as the ipfs namespace"),
            Target::Drive(_) => return Err(VfsError::StaleInode(ino)),
            Target::Latest => return Err(VfsError::NotADirectory),
            Target::Snapshots => {
                let commits = self.commits();
                for (seq, root) in &commits {
                    let name = seq.to_string();
                    out.push(DirEntry {
                        ino: self.ino_for(Target::Node(*root), ino, &name),
                        name,
                        kind: FileKind::Directory,
                    });
                }
                if !commits.is_empty() {
                    out.push(DirEntry {
                        ino: self.ino_for(Target::Latest, ino, LATEST),
                        name: LATEST.into(),
                        kind: FileKind::Symlink,
                    });
                }
                return Ok(out);
            }
        };
        let node = self.node(&cid)?;
        match node.as_ref() {
            Node::Directory { .. } | Node::HamtShard(_) => {
                let mut links = Vec::new();
                dir::list(self, &cid, &node, &mut |l| links.push(l))?;
                for l in links {
                    let kind = self.kind_hint(&l.cid);
                    out.push(DirEntry { ino: self.ino_for(Target::Node(l.cid), ino, &l.name), name: l.name, kind });
                }
            }
            Node::Cbor(v) => self.list_value(ino, &cid, &[], v, &mut out)?,
            _ => return Err(VfsError::NotADirectory),
        }
        Ok(out)
    }

    fn list_value(
        &self,
        dir_ino: u64,
        cid: &Cid,
        path: &[String],
        v: &Ipld,
        out: &mut Vec<DirEntry>,
    ) -> Result<(), VfsError> {
        if !matches!(v, Ipld::Map(_) | Ipld::List(_)) {
            return Err(VfsError::NotADirectory);
        }
        for (name, child) in dir::cbor_entries(v) {
            if !dir::is_safe_name(&name) {
                continue;
            }
            let (target, kind) = match child {
                Ipld::Link(c) => (Target::Node(*c), self.kind_hint(c)),
                Ipld::Map(_) | Ipld::List(_) => (value_target(cid, path, &name), FileKind::Directory),
                _ => (value_target(cid, path, &name), FileKind::File),
            };
            out.push(DirEntry { ino: self.ino_for(target, dir_ino, &name), name, kind });
        }
        Ok(())
    }

    /// An entry's type without reading it. Unknown kinds (blocks not held locally) are
    /// shown as files; looking them up gives the truth (or the error).
    pub(crate) fn kind_hint(&self, cid: &Cid) -> FileKind {
        self.content.kind_hint(cid)
    }

    /// Reads up to `size` bytes at `offset`, as the slices of the blocks that hold them (a
    /// read inside one leaf is one slice of that leaf, copied by nobody).
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<Bytes>, VfsError> {
        if let Some(drive) = self.drive_node(ino) {
            return drive.read(ino, offset, size);
        }
        let t = self.target(ino)?;
        match &t {
            Target::Node(cid) => self.read_node(cid, offset, size),
            Target::Value { cid, path } => {
                let v = self.value_at(cid, path)?;
                slice_text(&v, offset, size)
            }
            _ => Err(VfsError::IsADirectory),
        }
    }

    /// Reads from the content-addressed node `cid`.
    pub(crate) fn read_node(&self, cid: &Cid, offset: u64, size: u32) -> Result<Vec<Bytes>, VfsError> {
        self.content.read(cid, offset, size)
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, VfsError> {
        if let Some(drive) = self.drive_node(ino) {
            return drive.readlink(ino);
        }
        match self.target(ino)? {
            Target::Latest => {
                self.commits().last().map(|(s, _)| s.to_string().into_bytes()).ok_or(VfsError::NotFound(LATEST.into()))
            }
            Target::Node(cid) => match self.node(&cid)?.as_ref() {
                Node::Symlink { target, .. } => Ok(target.to_vec()),
                _ => Err(VfsError::NotASymlink),
            },
            _ => Err(VfsError::NotASymlink),
        }
    }

    /// Opening for writing is allowed on a writable drive's files only; content under a
    /// CID (`/.ipfs`, dag-cbor values) is immutable.
    pub fn open(&self, ino: u64, write: bool) -> Result<(), VfsError> {
        self.target(ino)?;
        if !write {
            return Ok(());
        }
        let drive = self.drive()?;
        match drive.writable_file(ino)? {
            true => {
                drive.opened_for_write(ino);
                Ok(())
            }
            false => Err(VfsError::IsADirectory),
        }
    }

    /// The CID an inode shows, if it is a whole block.
    pub fn cid_of(&self, ino: u64) -> Result<Option<Cid>, VfsError> {
        if let Some(drive) = self.drive_node(ino) {
            return drive.cid(ino);
        }
        Ok(match self.target(ino)? {
            Target::Root | Target::Drive(_) | Target::Snapshots | Target::Latest => None,
            Target::Node(cid) => Some(cid),
            Target::IpfsDir | Target::Value { .. } => None,
        })
    }

    /// An extended attribute: `ipfs.cid` (computed), or one stored on a drive node.
    pub fn getxattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>, VfsError> {
        if is_posix_acl(name) {
            // as a filesystem mounted without ACL support answers; `ls -l` (coreutils)
            // then stops asking every file of the mount
            return Err(VfsError::NotSupported("POSIX ACLs"));
        }
        if name == PIECES_XATTR || name == REPLICAS_XATTR {
            let (Some(report), Some(cid)) = (&self.pieces, self.cid_of(ino)?) else {
                return Err(VfsError::NoAttribute);
            };
            return match report(&cid, name == REPLICAS_XATTR) {
                Ok(text) => Ok(text.into_bytes()),
                Err(e) => {
                    log::warn!("{}: {e}", name.to_string_lossy());
                    Err(VfsError::NoAttribute)
                }
            };
        }
        if name != CID_XATTR {
            // An unset SELinux label is "not supported" (cidfs does no labelling), as on a
            // filesystem without it; a label a tool stored explicitly is returned.
            let missing =
                if name == SELINUX_XATTR { VfsError::NotSupported("SELinux labels") } else { VfsError::NoAttribute };
            // `ls -l` asks every file; answer what is never stored without any work: only
            // drive nodes store attributes, and never system.* ones
            if !self.is_drive(ino) || name.as_encoded_bytes().starts_with(b"system.") {
                return Err(missing);
            }
            let name = name.to_str().ok_or(VfsError::NoAttribute)?;
            return self.drive()?.xattrs(ino)?.remove(name).ok_or(missing);
        }
        self.cid_of(ino)?.map(|c| c.to_string().into_bytes()).ok_or(VfsError::NoAttribute)
    }

    /// NUL-separated attribute names, as `listxattr` returns them: the attributes stored
    /// on a drive node. `ipfs.cid` (and `cidfs.pieces`, `cidfs.replicas`) are *virtual* (as CephFS's `ceph.*` are): readable by
    /// name everywhere, never listed, because copying tools (`rsync -X`, `cp -a`, `tar
    /// --xattrs`) replicate every listed attribute and no other filesystem can store it.
    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>, VfsError> {
        self.target(ino)?;
        let mut out = Vec::new();
        if let Some(drive) = self.drive_node(ino) {
            for name in drive.xattrs(ino)?.keys() {
                out.extend_from_slice(name.as_bytes());
                out.push(0);
            }
        }
        Ok(out)
    }

    #[cfg(test)]
    fn cached_node_bytes(&self) -> usize {
        self.content.cached_node_bytes()
    }

    pub fn statfs(&self) -> Capacity {
        (self.capacity)()
    }
}

fn child_of_value(cid: &Cid, path: &[String], v: &Ipld, name: &str) -> Result<Target, VfsError> {
    let child = match v {
        Ipld::Map(m) => m.get(name),
        Ipld::List(l) => name.parse::<usize>().ok().and_then(|i| l.get(i)),
        _ => return Err(VfsError::NotADirectory),
    };
    match child {
        _ if !dir::is_safe_name(name) => Err(VfsError::NotFound(name.to_string())),
        Some(Ipld::Link(c)) => Ok(Target::Node(*c)),
        Some(_) => Ok(value_target(cid, path, name)),
        None => Err(VfsError::NotFound(name.to_string())),
    }
}

fn value_target(cid: &Cid, path: &[String], name: &str) -> Target {
    let mut path = path.to_vec();
    path.push(name.to_string());
    Target::Value { cid: *cid, path }
}

/// A dag-cbor scalar reads as its DAG-JSON text and a newline.
fn scalar_text(v: &Ipld) -> String {
    format!("{}\n", dag_json(v))
}

fn scalar_attr(ino: u64, v: &Ipld) -> Attr {
    Attr { size: scalar_text(v).len() as u64, ..Attr::new(ino, FileKind::File, 0o444, DEFAULT_MTIME) }
}

fn slice_text(v: &Ipld, offset: u64, size: u32) -> Result<Vec<Bytes>, VfsError> {
    if matches!(v, Ipld::Map(_) | Ipld::List(_)) {
        return Err(VfsError::IsADirectory);
    }
    let text = scalar_text(v).into_bytes();
    let start = (offset as usize).min(text.len());
    let end = start.saturating_add(size as usize).min(text.len());
    Ok(vec![Bytes::copy_from_slice(&text[start..end])])
}

impl Nodes for Vfs {
    fn node(&self, cid: &Cid) -> Result<Arc<Node>, UnixfsError> {
        Nodes::node(self.content.as_ref(), cid)
    }
}

pub(crate) fn unix_time(seconds: i64, nanos: u32) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(nanos.min(999_999_999)));
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()) + nanos
    }
}

/// The CID of an empty UnixFS directory (what an empty drive is).
pub fn empty_dir_cid() -> Cid {
    let mut blocks = Vec::new();
    crate::importer::DirBuilder::new(unixfs::Metadata::default())
        .finish(&crate::importer::ImportOptions::default(), &mut blocks)
        .expect("a Vec sink cannot fail")
        .cid
}

mod content;
mod drive;
pub mod errno;
mod hot;
mod inodes;
mod writes;
use drive::Drive;
pub use drive::persist::{DRIVE_POSIX_ROOT, DRIVE_ROOT, StoreDrive};
pub use drive::{CommitBuild, DriveStore, NAME_MAX, posix};
pub use hot::{HOT_MIN_BYTES, HotCopies};

#[cfg(test)]
mod drive_tests;
#[cfg(test)]
mod mem_store;
#[cfg(test)]
mod tests;
