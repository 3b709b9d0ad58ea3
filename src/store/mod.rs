//! The durable block store: append-only CARv1 segment files, indexed by redb.
//!
//! ```text
//!  $CIDFS_HOME/
//!    cidfs.redb            blocks_v1:   CID -> (segment, offset of data, length)
//!                          segments_v1: segment -> (committed length, live bytes, sealed)
//!                          pins_v1:     CID -> label
//!    segments/00000001.car CARv1: header, then `varint CID bytes` sections
//!    hot/<file CID>        plain copies of whole files, a bounded cache (see [`hot`])
//! ```
//!
//! Writes go through a [`Batch`]: blocks are appended to the active segment, and on
//! [`Batch::commit`] the segment is fsync'd *before* one redb transaction makes the index
//! entries and pins visible. A crash between the two leaves bytes past the committed length,
//! which the next open truncates away: fsync'd data is never lost and half-written data never
//! becomes visible. A batch dropped without commit (a failed import) is rolled back the
//! same way, so imports are all-or-nothing.
//!
//! A batch may also commit *volatile* ([`Batch::commit_volatile`]): visible at once, but
//! neither its segment bytes nor its index entries are forced to disk. The next durable
//! commit (any of them: a batch, a pin, gc) first syncs every segment byte written since
//! the last one, then makes the index durable, volatile entries included; a crash before
//! that loses the volatile entries *and* (by the truncation on open) their bytes, together.
//! Blocks nobody needs durably yet use it: fetched blocks, and leaves of a file still
//! being written (the file's own commit makes them durable).
//!
//! A segment is a Filecoin piece payload as it stands: a block's offset in its segment is
//! its offset in the piece, which is what a ranged cold read needs. Segments roll over
//! before [`SEGMENT_MAX_BYTES`] so that they fit a 512 MiB piece.
//!
//! Readers never block on the writer: redb gives every read a consistent snapshot, and
//! segment bytes below the committed length never change. Hot blocks are served from an
//! in-memory LRU bounded in bytes.
//!
//! Blocks fetched from the network go to *cache segments* of their own (see
//! [`Store::cache_batch`] and the `evict` module): they are not the user's data, are never
//! packed into pieces, and are dropped a whole segment at a time when the cache outgrows
//! its cap.

mod cache;
mod cold;
mod evict;
mod gc;
pub mod hot;
pub mod owner;
mod pieces;
pub mod reserve;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, IoSlice, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use cid::Cid;
use multihash::Multihash;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::block::{Block, IDENTITY, Kind, RAW};
use crate::car;
pub use cold::{ColdReport, ColdUsage};
pub use evict::{CacheUsage, DEFAULT_CACHE_CAP, EvictReport};
pub use gc::{GcReport, Reachable, VerifyReport};
pub use hot::{HotFiles, HotUsage};
pub use pieces::{PieceRecord, SealedSegment};

/// CID -> (segment, data offset, data length, [`Kind`] as u8).
const BLOCKS: TableDefinition<&[u8], (u32, u64, u32, u8)> = TableDefinition::new("blocks_v1");
const SEGMENTS: TableDefinition<u32, (u64, u64, bool)> = TableDefinition::new("segments_v1");
const PINS: TableDefinition<&[u8], &str> = TableDefinition::new("pins_v1");
/// Named roots (the drive root is `drive`): name -> CID. Protected from gc like pins.
const ROOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("roots_v1");
/// The drive's commit log: sequence -> (unix time in seconds, root CID).
const COMMITS: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("commits_v1");
/// Which segments are cache segments (fetched blocks): segment -> ().
const CACHE_SEGMENTS: TableDefinition<u32, ()> = TableDefinition::new("cache_segments_v1");
/// Facts about the store itself: `created` -> unix time in seconds; `public_built` -> 1
/// once `public_v1` covers every pin (stores made before it existed are walked once);
/// `next_segment` -> the number the next new segment gets (numbers are never reused, even
/// after gc or eviction removed the newest segment).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta_v1");
/// Blocks the user published — added, imported, or reachable from a pin — which the IPFS
/// node gives to any peer (the drive's other blocks go to trusted peers only): CID -> ().
/// A mark outlives an unpin (the content was published) until gc removes the block.
const PUBLIC: TableDefinition<&[u8], ()> = TableDefinition::new("public_v1");

/// One entry of the drive's commit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub seq: u64,
    pub time: u64,
    pub root: Cid,
}

/// Segments roll over before this many bytes: a 512 MiB piece holds 127/128 of that in
/// payload after Fr32 padding.
pub const SEGMENT_MAX_BYTES: u64 = (512 << 20) / 128 * 127;

/// Default byte budget of the in-memory block cache.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}", in_use_message(path, holder.as_ref()))]
    InUse { path: PathBuf, holder: Option<owner::Holder> },
    #[error("store I/O on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("store database: {0}")]
    Db(String),
    #[error("store is damaged: {0} (run `cidfs verify`)")]
    Corrupt(String),
}

fn in_use_message(path: &Path, holder: Option<&owner::Holder>) -> String {
    match holder {
        Some(h) => {
            format!("store at {}: in use by {h}; {} (or point CIDFS_HOME elsewhere)", path.display(), h.advice())
        }
        None => format!(
            "store at {}: in use by another cidfs process; stop it, or point CIDFS_HOME elsewhere",
            path.display()
        ),
    }
}

macro_rules! db_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
        }
    )*};
}
db_errors!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError, redb::DatabaseError);

/// Options that create a file only its owner can read or write (0600), whatever the umask:
/// the store holds the bytes of files their owner may have kept from everyone else.
pub(crate) fn private_file() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.mode(0o600);
    o
}

/// Writes `bytes` to `path` atomically (a temporary file beside it, synced, renamed), as a
/// file only its owner can read (0600) in a directory only its owner can enter (0700):
/// how keys are kept.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("a file needs a directory"))?;
    private_dir(dir)?;
    let name = path.file_name().ok_or_else(|| std::io::Error::other("a file needs a name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut f = private_file().write(true).create(true).truncate(true).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// Creates `dir` (and its parents) if needed, and makes it its owner's alone (0700).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let md = fs::metadata(dir)?;
    if md.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes the store at `root` its owner's alone: the directory 0700, created so if new. A
/// store made before this was enforced (the directory readable by others) has everything
/// in it tightened once — directories 0700, files 0600 — and says so in the log.
fn make_private(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let loose = match fs::metadata(root) {
        Ok(md) => md.permissions().mode() & 0o077 != 0,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    private_dir(root)?;
    if loose {
        let n = tighten(root)?;
        log::info!("{}: made the store private (0700, files 0600): tightened {n} entries", root.display());
    }
    Ok(())
}

/// Takes group and other access away from everything below `dir`; how many entries changed.
fn tighten(dir: &Path) -> std::io::Result<usize> {
    use std::os::unix::fs::PermissionsExt;
    let mut changed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let md = entry.metadata()?; // not followed: a symlink's own mode means nothing
        let mode = md.permissions().mode();
        let want = if md.is_dir() { 0o700 } else { mode & 0o700 };
        if md.file_type().is_symlink() {
            continue;
        }
        if mode & 0o077 != 0 {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(want))?;
            changed += 1;
        }
        if md.is_dir() {
            changed += tighten(&entry.path())?;
        }
    }
    Ok(changed)
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// Where a block's bytes sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub segment: u32,
    /// Offset of the block's data (after its section prefix) in the segment file.
    pub offset: u64,
    pub len: u32,
    /// What the block is to a filesystem (so listings need not read it).
    pub kind: Kind,
}

/// What the store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub blocks: u64,
    pub block_bytes: u64,
    pub segments: u64,
    pub segment_bytes: u64,
    pub pins: u64,
}

/// The segments being appended to: one for the user's data, one for the fetch cache.
#[derive(Default)]
pub(crate) struct Writers {
    main: Option<Active>,
    cache: Option<Active>,
    /// A volatile batch created a segment file whose directory entry is not yet synced.
    dir_unsynced: bool,
    /// Volatile batches committed since the last durable commit.
    volatile: bool,
}

/// What a batch writes: the user's data, or blocks fetched into the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SegmentKind {
    Main,
    Cache,
}

pub(crate) struct Active {
    id: u32,
    out: BufWriter<File>,
    /// Bytes in the file that the index knows about.
    committed: u64,
    /// Bytes written (committed + pending).
    len: u64,
    /// Bytes whose writeback to disk has been started (see [`WRITEBACK_STEP`]).
    writeback_started: u64,
    /// Bytes known to be on disk (synced).
    synced: u64,
}

/// Every this many bytes appended, writeback of the new range is started in the background
/// (`sync_file_range`), so the fsync at commit finds little left to write.
const WRITEBACK_STEP: u64 = 32 << 20;

/// Blocks at least this large bypass the write buffer (one `writev` of prefix and data).
const DIRECT_WRITE: usize = 64 << 10;

impl Active {
    fn append(&mut self, prefix: &[u8], data: &[u8]) -> std::io::Result<()> {
        if data.len() < DIRECT_WRITE {
            self.out.write_all(prefix)?;
            self.out.write_all(data)?;
        } else {
            self.out.flush()?;
            write_all_vectored(self.out.get_mut(), prefix, data)?;
        }
        self.len += (prefix.len() + data.len()) as u64;
        if self.len - self.writeback_started >= WRITEBACK_STEP {
            self.out.flush()?;
            let from = self.writeback_started;
            // A hint only: failure just means the fsync at commit does all the work.
            // SAFETY: plain syscall on a file descriptor we own.
            unsafe {
                libc::sync_file_range(
                    self.out.get_ref().as_raw_fd(),
                    from as i64,
                    (self.len - from) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.writeback_started = self.len;
        }
        Ok(())
    }
}

fn write_all_vectored(f: &mut File, a: &[u8], b: &[u8]) -> std::io::Result<()> {
    let mut bufs = [IoSlice::new(a), IoSlice::new(b)];
    let mut bufs = &mut bufs[..];
    while !bufs.is_empty() {
        match f.write_vectored(bufs) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Tunables of a store; the defaults suit real use, tests shrink them.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// A segment is sealed before it would grow past this many bytes.
    pub segment_max_bytes: u64,
    /// Byte budget of the in-memory block cache.
    pub cache_bytes: usize,
    /// A cache segment (fetched blocks) is sealed before it would grow past this many
    /// bytes; it is also the unit of eviction.
    pub cache_segment_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_max_bytes: SEGMENT_MAX_BYTES,
            cache_bytes: DEFAULT_CACHE_BYTES,
            cache_segment_bytes: CACHE_SEGMENT_BYTES,
        }
    }
}

/// Default size of a cache segment: small enough that evicting one frees little more than
/// needed, large enough that the cache is a few hundred files at most.
pub const CACHE_SEGMENT_BYTES: u64 = 32 << 20;

pub struct Store {
    opts: StoreOptions,
    root: PathBuf,
    db: Database,
    files: RwLock<HashMap<u32, Arc<File>>>,
    writer: Mutex<Writers>,
    cache: Mutex<cache::BlockCache>,
    /// The fetch cache on disk: its segments, their sizes and recency, and its cap.
    fetched: evict::FetchCache,
    /// Plain copies of whole files, for FUSE passthrough (see [`hot`]).
    hot: Arc<HotFiles>,
    /// The free space caches leave on the store's disk (see [`reserve`]).
    disk: Arc<reserve::Disk>,
    /// When a batch last wrote the user's data (unix milliseconds), else when the store was opened.
    last_write: std::sync::atomic::AtomicU64,
    /// When each main segment was last read (see `cold`: least recently read goes cold first).
    segment_reads: Mutex<HashMap<u32, u64>>,
    read_clock: std::sync::atomic::AtomicU64,
}

impl Store {
    /// The default store location: `$CIDFS_HOME`, else `$XDG_DATA_HOME/cidfs`, else
    /// `~/.local/share/cidfs`.
    pub fn default_home() -> PathBuf {
        if let Some(h) = std::env::var_os("CIDFS_HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(h);
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(x).join("cidfs");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        PathBuf::from(home).join(".local/share/cidfs")
    }

    /// Opens (creating if needed) the store at `root`, repairing an interrupted write.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        Store::open_with(root, StoreOptions::default())
    }

    pub fn open_with(root: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        make_private(root).map_err(io_err(root))?;
        private_dir(&root.join("segments")).map_err(io_err(root))?;
        let db_path = root.join("cidfs.redb");
        // made 0600 before redb opens it (an empty file becomes a new database)
        private_file().write(true).create(true).truncate(false).open(&db_path).map_err(io_err(&db_path))?;
        let db = Database::create(&db_path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                StoreError::InUse { path: root.to_path_buf(), holder: owner::read(root) }
            }
            e => StoreError::Db(format!("{}: {e}", db_path.display())),
        })?;
        let txn = db.begin_write()?;
        {
            txn.open_table(BLOCKS)?;
            txn.open_table(SEGMENTS)?;
            txn.open_table(PINS)?;
            txn.open_table(ROOTS)?;
            txn.open_table(COMMITS)?;
            txn.open_table(CACHE_SEGMENTS)?;
            txn.open_table(PUBLIC)?;
            txn.open_table(pieces::PIECES)?;
            txn.open_table(pieces::RETIRED)?;
            txn.open_table(cold::COLD_BLOCKS)?;
            txn.open_table(cold::COLD_SEGMENTS)?;
            let mut meta = txn.open_table(META)?;
            if meta.get("created")?.is_none() {
                meta.insert("created", unix_now())?;
            }
        }
        txn.commit()?;
        let disk = Arc::new(reserve::Disk::default());
        let store = Store {
            root: root.to_path_buf(),
            db,
            files: RwLock::new(HashMap::new()),
            writer: Mutex::new(Writers::default()),
            cache: Mutex::new(cache::BlockCache::new(opts.cache_bytes)),
            fetched: evict::FetchCache::default(),
            hot: Arc::new(HotFiles::open_on(&root.join("hot"), disk.clone()).map_err(io_err(&root.join("hot")))?),
            disk,
            opts,
            last_write: std::sync::atomic::AtomicU64::new(unix_millis()),
            segment_reads: Mutex::default(),
            read_clock: std::sync::atomic::AtomicU64::new(1 << 32),
        };
        owner::write(root, &owner::this_process(None));
        store.recover()?;
        store.load_cache_segments()?;
        store.build_public_marks()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How long since a batch last wrote the user's data (since the open, if none has).
    pub fn quiet_for(&self) -> std::time::Duration {
        let last = self.last_write.load(std::sync::atomic::Ordering::Relaxed);
        std::time::Duration::from_millis(unix_millis().saturating_sub(last).min(u64::MAX / 2))
    }

    /// Keeps `r` free on the store's disk: hot copies and the fetch cache never take it.
    pub fn set_reserve(&self, r: reserve::Reserve) {
        self.disk.set_reserve(r);
    }

    /// Whether the store's disk has its reserve free.
    pub fn disk_has_reserve(&self) -> bool {
        self.disk.fits(&self.root, 0)
    }

    /// Tells processes refused by the store's lock where this one serves a mount.
    pub fn set_mountpoint(&self, mountpoint: &Path) {
        owner::write(&self.root, &owner::this_process(Some(mountpoint)));
    }

    /// The hot copies of whole files (see [`hot`]).
    pub fn hot_files(&self) -> &Arc<HotFiles> {
        &self.hot
    }

    fn segment_path(&self, id: u32) -> PathBuf {
        self.root.join("segments").join(format!("{id:08}.car"))
    }

    /// Cuts every segment back to its committed length and removes segment files the
    /// index does not know (left by a crash during a batch or a gc).
    fn recover(&self) -> Result<(), StoreError> {
        let (known, cold): (HashMap<u32, u64>, HashSet<u32>) = {
            let txn = self.db.begin_read()?;
            let t = txn.open_table(SEGMENTS)?;
            let known = t.iter()?.map(|r| r.map(|(k, v)| (k.value(), v.value().0))).collect::<Result<_, _>>()?;
            let c = txn.open_table(cold::COLD_SEGMENTS)?;
            (known, c.iter()?.map(|r| r.map(|(k, _)| k.value())).collect::<Result<_, _>>()?)
        };
        let dir = self.root.join("segments");
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = entry.map_err(io_err(&dir))?.path();
            let id = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u32>().ok());
            match id.and_then(|id| known.get(&id)) {
                // a segment made cold, its file not yet deleted when the process stopped
                Some(_) if id.is_some_and(|id| cold.contains(&id)) => {
                    log::info!("{}: removing the file of a cold segment", path.display());
                    fs::remove_file(&path).map_err(io_err(&path))?;
                }
                Some(&committed) => {
                    let f = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
                    let len = f.metadata().map_err(io_err(&path))?.len();
                    if len > committed {
                        log::warn!("{}: discarding {} uncommitted bytes", path.display(), len - committed);
                        f.set_len(committed).map_err(io_err(&path))?;
                        f.sync_all().map_err(io_err(&path))?;
                    } else if len < committed {
                        return Err(StoreError::Corrupt(format!(
                            "{} is {len} bytes, index expects {committed}",
                            path.display()
                        )));
                    }
                }
                None if path.extension().is_some_and(|e| e == "car") => {
                    log::warn!("{}: removing segment unknown to the index", path.display());
                    fs::remove_file(&path).map_err(io_err(&path))?;
                }
                None => {}
            }
        }
        Ok(())
    }

    fn file(&self, id: u32) -> Result<Arc<File>, StoreError> {
        if let Some(f) = self.files.read().expect("lock poisoned").get(&id) {
            return Ok(f.clone());
        }
        let path = self.segment_path(id);
        let f = Arc::new(File::open(&path).map_err(io_err(&path))?);
        self.files.write().expect("lock poisoned").insert(id, f.clone());
        Ok(f)
    }

    pub fn location(&self, cid: &Cid) -> Result<Option<Location>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(BLOCKS)?;
        Ok(t.get(key(cid).as_slice())?.map(|v| {
            let (segment, offset, len, kind) = v.value();
            Location { segment, offset, len, kind: Kind::from_u8(kind) }
        }))
    }

    /// The kind of a stored block, from the index alone (no block read); cold blocks too.
    pub fn kind(&self, cid: &Cid) -> Result<Option<Kind>, StoreError> {
        match self.location(cid)? {
            Some(l) => Ok(Some(l.kind)),
            None => Ok(self.cold_location(cid)?.map(|l| l.kind)),
        }
    }

    pub fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.location(cid)?.is_some())
    }

    /// The bytes of `cid` if the store holds them.
    pub fn get(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        if let Some(b) = self.cache.lock().expect("lock poisoned").get(cid) {
            return Ok(Some(b));
        }
        let Some(loc) = self.location(cid)? else {
            return Ok(None);
        };
        let data = self.read_at(loc)?;
        if !self.fetched.touch(loc.segment) {
            self.touch_segment(loc.segment);
        }
        self.cache.lock().expect("lock poisoned").put(*cid, data.clone());
        Ok(Some(data))
    }

    fn read_at(&self, loc: Location) -> Result<Bytes, StoreError> {
        let f = self.file(loc.segment)?;
        read_exact_uninit(&f, loc.len as usize, loc.offset)
            .map(Bytes::from)
            .map_err(io_err(&self.segment_path(loc.segment)))
    }

    /// Starts a write batch of the user's data. Only one batch (of either kind) is open at
    /// a time; others wait.
    pub fn batch(&self) -> Batch<'_> {
        self.batch_of(SegmentKind::Main)
    }

    /// Starts a batch of blocks fetched from elsewhere: they go to cache segments, which
    /// [`Store::evict_cache`] drops when the cache outgrows its cap. A cached block that a
    /// later [`Store::batch`] puts (the user wrote the same bytes) or [`Store::pin`] covers
    /// is copied into a main segment then, so eviction never touches what the user keeps.
    pub fn cache_batch(&self) -> Batch<'_> {
        self.batch_of(SegmentKind::Cache)
    }

    fn batch_of(&self, kind: SegmentKind) -> Batch<'_> {
        Batch {
            store: self,
            kind,
            relocated: Vec::new(),
            writer: self.writer.lock().expect("lock poisoned"),
            pending: HashMap::new(),
            published: Vec::new(),
            pins: Vec::new(),
            roots: Vec::new(),
            logged: None,
            touched: HashSet::new(),
            new_segments: Vec::new(),
            sealed: Vec::new(),
            committed: false,
        }
    }

    /// Records `cid` as a pinned root, protecting everything reachable from it from `gc`
    /// (and from cache eviction: blocks of the DAG sitting in the fetch cache are copied
    /// into the user's segments first), and publishing it (see [`PUBLIC`]).
    pub fn pin(&self, cid: &Cid, label: &str) -> Result<(), StoreError> {
        let live = self.reachable(&[*cid])?.live;
        let mut b = self.batch();
        b.keep_cached_dag(cid)?;
        b.pin(*cid, label);
        b.published.extend(live.into_iter().filter(|c| !crate::block::is_identity(c)));
        b.commit()
    }

    /// Removes a pin; returns whether it existed.
    pub fn unpin(&self, cid: &Cid) -> Result<bool, StoreError> {
        let mut writer = self.lock_writer();
        self.settle(&mut writer)?;
        let txn = self.db.begin_write()?;
        let existed = txn.open_table(PINS)?.remove(key(cid).as_slice())?.is_some();
        txn.commit()?;
        Ok(existed)
    }

    pub fn pins(&self) -> Result<Vec<(Cid, String)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PINS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((cid_from_key(k.value())?, v.value().to_string()));
        }
        Ok(out)
    }

    /// The CID of a named root.
    pub fn root_cid(&self, name: &str) -> Result<Option<Cid>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ROOTS)?;
        t.get(name)?.map(|v| cid_from_key(v.value())).transpose()
    }

    /// The drive's commit log, oldest first.
    pub fn commits(&self) -> Result<Vec<Commit>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(COMMITS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let (time, root) = v.value();
            out.push(Commit { seq: k.value(), time, root: cid_from_key(root)? });
        }
        Ok(out)
    }

    /// Whether the user published `cid` (see [`PUBLIC`]).
    pub fn is_public(&self, cid: &Cid) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(PUBLIC)?.get(key(cid).as_slice())?.is_some())
    }

    /// Marks `cids` published.
    pub fn publish(&self, cids: impl IntoIterator<Item = Cid>) -> Result<(), StoreError> {
        let mut writer = self.lock_writer();
        self.settle(&mut writer)?;
        let txn = self.db.begin_write()?;
        {
            let mut public = txn.open_table(PUBLIC)?;
            for cid in cids {
                public.insert(key(&cid).as_slice(), ())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// For a store made before published blocks were marked: marks every block reachable
    /// from a pin, once.
    fn build_public_marks(&self) -> Result<(), StoreError> {
        let built = {
            let txn = self.db.begin_read()?;
            txn.open_table(META)?.get("public_built")?.is_some()
        };
        if built {
            return Ok(());
        }
        let pins: Vec<Cid> = self.pins()?.into_iter().map(|(c, _)| c).collect();
        let live = self.reachable(&pins)?.live;
        if !pins.is_empty() {
            log::info!("marking the {} blocks reachable from {} pins as published", live.len(), pins.len());
        }
        self.publish(live)?;
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert("public_built", 1)?;
        txn.commit()?;
        Ok(())
    }

    /// The newest entry of the drive's commit log.
    pub fn last_commit(&self) -> Result<Option<Commit>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(COMMITS)?;
        let Some(row) = t.last()? else { return Ok(None) };
        let (k, v) = row;
        let (time, root) = v.value();
        Ok(Some(Commit { seq: k.value(), time, root: cid_from_key(root)? }))
    }

    /// When the store was created (unix seconds; for a store made before this was
    /// recorded, when it was first opened since).
    pub fn created(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(META)?;
        Ok(t.get("created")?.map_or(0, |v| v.value()))
    }

    /// Drops all but the newest `keep` commits from the log (their snapshots become
    /// collectable by `gc` unless still reachable otherwise). Returns how many were dropped.
    pub fn prune_commits(&self, keep: usize) -> Result<usize, StoreError> {
        let mut writer = self.lock_writer();
        self.settle(&mut writer)?;
        let txn = self.db.begin_write()?;
        let dropped = {
            let mut log = txn.open_table(COMMITS)?;
            let seqs: Vec<u64> = log.iter()?.map(|r| r.map(|(k, _)| k.value())).collect::<Result<_, _>>()?;
            let drop_n = seqs.len().saturating_sub(keep);
            for seq in &seqs[..drop_n] {
                log.remove(*seq)?;
            }
            drop_n
        };
        txn.commit()?;
        Ok(dropped)
    }

    /// Every named root.
    pub fn roots(&self) -> Result<Vec<(String, Cid)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ROOTS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), cid_from_key(v.value())?));
        }
        Ok(out)
    }

    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let txn = self.db.begin_read()?;
        let blocks = txn.open_table(BLOCKS)?;
        let mut s = StoreStats { blocks: blocks.len()?, pins: txn.open_table(PINS)?.len()?, ..Default::default() };
        for row in blocks.iter()? {
            s.block_bytes += u64::from(row?.1.value().2);
        }
        let cold = txn.open_table(cold::COLD_SEGMENTS)?;
        for row in txn.open_table(SEGMENTS)?.iter()? {
            let (id, v) = row?;
            if cold.get(id.value())?.is_none() {
                s.segments += 1;
                s.segment_bytes += v.value().0;
            }
        }
        Ok(s)
    }

    /// Bytes the store's segment files hold (cheap: one row per segment; cold segments
    /// have no file).
    pub fn disk_usage(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let cold = txn.open_table(cold::COLD_SEGMENTS)?;
        let mut total = 0;
        for row in txn.open_table(SEGMENTS)?.iter()? {
            let (id, v) = row?;
            if cold.get(id.value())?.is_none() {
                total += v.value().0;
            }
        }
        Ok(total)
    }

    /// Every block in the store with its location.
    pub fn blocks(&self) -> Result<Vec<(Cid, Location)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(BLOCKS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let (segment, offset, len, kind) = v.value();
            out.push((cid_from_key(k.value())?, Location { segment, offset, len, kind: Kind::from_u8(kind) }));
        }
        Ok(out)
    }
}

/// `len` bytes at `offset`, read into fresh memory without zeroing it first (zeroing a
/// 256 KiB buffer that `pread` then overwrites cost as much as the read itself).
fn read_exact_uninit(f: &File, len: usize, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    let mut filled = 0;
    while filled < len {
        // SAFETY: pread writes at most `len - filled` bytes into the spare capacity starting
        // at `filled`; no reference to uninitialised memory is created.
        let n = unsafe {
            libc::pread(
                f.as_raw_fd(),
                buf.as_mut_ptr().add(filled).cast(),
                len - filled,
                (offset + filled as u64) as libc::off_t,
            )
        };
        match n {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n if n < 0 => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            n => filled += n as usize,
        }
    }
    // SAFETY: the first `len` bytes were all written by pread above.
    unsafe { buf.set_len(len) };
    Ok(buf)
}

fn key(cid: &Cid) -> Vec<u8> {
    cid.to_bytes()
}

fn cid_from_key(k: &[u8]) -> Result<Cid, StoreError> {
    Cid::try_from(k).map_err(|e| StoreError::Corrupt(format!("bad CID in index: {e}")))
}

/// The CID written as the single root of every segment's CAR header: an identity CID with
/// the same encoded length (36 bytes) as a CIDv1 sha2-256 root, so a later packer can write
/// the piece's real root in place without moving any block.
pub fn segment_placeholder_root() -> Cid {
    Cid::new_v1(RAW, Multihash::wrap(IDENTITY, &[0u8; 32]).expect("32 bytes fit"))
}

/// A set of blocks and pins that become visible together, or not at all.
pub struct Batch<'s> {
    store: &'s Store,
    kind: SegmentKind,
    /// Cached blocks this (main) batch copied into a main segment: (cache segment, section
    /// bytes), so the cache segment's live bytes drop at commit.
    relocated: Vec<(u32, u64)>,
    writer: MutexGuard<'s, Writers>,
    pending: HashMap<Cid, Location>,
    /// Blocks to mark published when the batch commits (see [`PUBLIC`]).
    published: Vec<Cid>,
    pins: Vec<(Cid, String)>,
    roots: Vec<(String, Cid)>,
    logged: Option<Cid>,
    touched: HashSet<u32>,
    new_segments: Vec<u32>,
    /// Segments filled during this batch (sealed at commit).
    sealed: Vec<(u32, u64)>,
    committed: bool,
}

impl Batch<'_> {
    /// Adds a block; returns false if the store already had it. A block the fetch cache
    /// holds is written again by a main batch (see [`Store::cache_batch`]).
    pub fn put(&mut self, block: &Block) -> Result<bool, StoreError> {
        self.put_or_move(block, false)
    }

    /// Writes `block` into this (main) batch's segment even though the store holds it
    /// elsewhere; the index follows at commit (how a segment going cold keeps its linking
    /// blocks local).
    pub(super) fn relocate(&mut self, block: &Block) -> Result<bool, StoreError> {
        debug_assert_eq!(self.kind, SegmentKind::Main);
        self.put_or_move(block, true)
    }

    fn put_or_move(&mut self, block: &Block, relocate: bool) -> Result<bool, StoreError> {
        let cid = block.cid();
        if crate::block::is_identity(cid) || self.pending.contains_key(cid) {
            return Ok(false);
        }
        let data = block.data();
        let prefix = car::section_prefix(cid, data.len());
        let section = (prefix.len() + data.len()) as u64;
        if let Some(held) = self.store.location(cid)? {
            let cached = self.store.fetched.contains(held.segment);
            if !relocate && (self.kind == SegmentKind::Cache || !cached) {
                return Ok(false);
            }
            self.relocated.push((held.segment, section));
        }
        let active = self.active_with_room(section)?;
        let path = active.id;
        let offset = active.len + prefix.len() as u64;
        let w = |e| StoreError::Io { path: PathBuf::from(format!("segment {path}")), source: e };
        active.append(&prefix, data).map_err(w)?;
        let kind = crate::block::kind(cid, data);
        let loc = Location { segment: active.id, offset, len: data.len() as u32, kind };
        self.touched.insert(loc.segment);
        self.pending.insert(*cid, loc);
        Ok(true)
    }

    /// [`put`](Self::put), and marks the block published (see [`PUBLIC`]): what `add` and
    /// `import` bring is the user's to publish, whether or not the store had it.
    pub fn put_public(&mut self, block: &Block) -> Result<bool, StoreError> {
        let new = self.put(block)?;
        if !crate::block::is_identity(block.cid()) {
            self.published.push(*block.cid());
        }
        Ok(new)
    }

    /// Bytes of a block written in this batch or already in the store.
    pub fn get(&mut self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        if let Some(b) = Block::from_identity(cid) {
            return Ok(Some(b.into_data()));
        }
        match self.pending.get(cid).copied() {
            Some(loc) => {
                let store = self.store;
                if let Some(a) = self.slot().as_mut() {
                    a.out.flush().map_err(io_err(&store.segment_path(a.id)))?;
                }
                self.store.read_at(loc).map(Some)
            }
            None => self.store.get(cid),
        }
    }

    pub fn pin(&mut self, cid: Cid, label: &str) {
        self.pins.push((cid, label.to_string()));
    }

    /// Points the named root at `cid` when the batch commits.
    pub fn set_root(&mut self, name: &str, cid: Cid) {
        self.roots.push((name.to_string(), cid));
    }

    /// Appends `root` to the drive's commit log when the batch commits.
    pub fn log_commit(&mut self, root: Cid) {
        self.logged = Some(root);
    }

    /// Blocks newly written by this batch.
    pub fn new_blocks(&self) -> usize {
        self.pending.len()
    }

    /// The active segment of this batch's kind.
    fn slot(&mut self) -> &mut Option<Active> {
        match self.kind {
            SegmentKind::Main => &mut self.writer.main,
            SegmentKind::Cache => &mut self.writer.cache,
        }
    }

    fn slot_ref(&self) -> &Option<Active> {
        match self.kind {
            SegmentKind::Main => &self.writer.main,
            SegmentKind::Cache => &self.writer.cache,
        }
    }

    fn active_with_room(&mut self, section: u64) -> Result<&mut Active, StoreError> {
        let max = match self.kind {
            SegmentKind::Main => self.store.opts.segment_max_bytes,
            SegmentKind::Cache => self.store.fetched.segment_limit(self.store.opts.cache_segment_bytes),
        };
        let full = self.slot_ref().as_ref().is_some_and(|a| a.len + section > max && a.len > car_header_len());
        if full {
            let a = self.slot().take().expect("checked above");
            self.finish_segment(a)?;
        }
        if self.slot_ref().is_none() {
            let a = self.open_active()?;
            *self.slot() = Some(a);
        }
        Ok(self.slot().as_mut().expect("set above"))
    }

    fn finish_segment(&mut self, mut a: Active) -> Result<(), StoreError> {
        let path = self.store.segment_path(a.id);
        a.out.flush().map_err(io_err(&path))?;
        a.out.get_ref().sync_data().map_err(io_err(&path))?;
        a.synced = a.len;
        self.sealed.push((a.id, a.len));
        Ok(())
    }

    /// The segment to append to: the newest unsealed one of this batch's kind, or a new one.
    fn open_active(&mut self) -> Result<Active, StoreError> {
        let store = self.store;
        let (newest, newest_of_kind, counter) = {
            let txn = store.db.begin_read()?;
            let counter = txn.open_table(META)?.get("next_segment")?.map_or(1, |v| v.value());
            let t = txn.open_table(SEGMENTS)?;
            let newest = t.last()?.map(|(k, v)| (k.value(), v.value()));
            let mut of_kind = None;
            for row in t.iter()?.rev() {
                let (k, v) = row?;
                if store.fetched.contains(k.value()) == (self.kind == SegmentKind::Cache) {
                    of_kind = Some((k.value(), v.value()));
                    break;
                }
            }
            (newest, of_kind, u32::try_from(counter).unwrap_or(u32::MAX))
        };
        if let Some((id, (committed, _, sealed))) = newest_of_kind
            && !sealed
            && !self.sealed.iter().any(|(s, _)| *s == id)
        {
            let path = store.segment_path(id);
            let f = OpenOptions::new().append(true).open(&path).map_err(io_err(&path))?;
            return Ok(Active {
                id,
                out: BufWriter::with_capacity(1 << 20, f),
                committed,
                len: committed,
                writeback_started: committed,
                synced: committed,
            });
        }
        let id = newest
            .map_or(1, |(id, _)| id + 1)
            .max(counter)
            .max(self.new_segments.iter().map(|s| s + 1).max().unwrap_or(1))
            .max(self.sealed.iter().map(|(s, _)| s + 1).max().unwrap_or(1));
        let path = store.segment_path(id);
        let create = || private_file().create_new(true).append(true).open(&path);
        let mut f = match create() {
            // a file the index does not know (a batch that failed before it could write a
            // header, e.g. on a full disk): garbage, as the next open would find it
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                log::debug!("{}: removing a segment file the index does not know", path.display());
                fs::remove_file(&path).and_then(|_| create()).map_err(io_err(&path))?
            }
            r => r.map_err(io_err(&path))?,
        };
        let header = car::encode_header(&[segment_placeholder_root()]);
        if let Err(e) = f.write_all(&header) {
            let _ = fs::remove_file(&path);
            return Err(io_err(&path)(e));
        }
        self.new_segments.push(id);
        self.touched.insert(id);
        Ok(Active {
            id,
            out: BufWriter::with_capacity(1 << 20, f),
            committed: 0,
            len: header.len() as u64,
            writeback_started: 0,
            synced: 0,
        })
    }

    /// Makes the batch durable and visible: fsync the segment data (this batch's and any
    /// volatile batch's before it), then commit the index.
    pub fn commit(self) -> Result<(), StoreError> {
        self.finish(true)
    }

    /// Makes the batch visible but not durable (see the module docs): no fsync; a crash
    /// before the next durable commit loses it whole.
    pub fn commit_volatile(self) -> Result<(), StoreError> {
        self.finish(false)
    }

    fn finish(mut self, durable: bool) -> Result<(), StoreError> {
        let store = self.store;
        if let Some(a) = self.slot().as_mut() {
            a.out.flush().map_err(io_err(&store.segment_path(a.id)))?;
        }
        self.writer.dir_unsynced |= !self.new_segments.is_empty();
        if durable {
            store.settle(&mut self.writer)?;
        }
        self.writer.volatile = !durable;
        let mut lengths: Vec<(u32, u64, bool)> = self.sealed.iter().map(|(id, len)| (*id, *len, true)).collect();
        if let Some(a) = self.slot_ref().as_ref() {
            lengths.push((a.id, a.len, false));
        }
        let mut txn = self.store.db.begin_write()?;
        if !durable {
            txn.set_durability(redb::Durability::None).map_err(|e| StoreError::Db(e.to_string()))?;
        }
        {
            let mut blocks = txn.open_table(BLOCKS)?;
            let mut live: HashMap<u32, u64> = HashMap::new();
            for (cid, loc) in &self.pending {
                blocks.insert(key(cid).as_slice(), (loc.segment, loc.offset, loc.len, loc.kind as u8))?;
                *live.entry(loc.segment).or_default() += car::section_len(cid, loc.len as usize);
            }
            let mut segs = txn.open_table(SEGMENTS)?;
            for (id, len, sealed) in &lengths {
                let prev_live = segs.get(*id)?.map_or(0, |v| v.value().1);
                segs.insert(*id, (*len, prev_live + live.get(id).copied().unwrap_or(0), *sealed))?;
            }
            for (id, section) in &self.relocated {
                let current = segs.get(*id)?.map(|v| v.value());
                if let Some((len, live, sealed)) = current {
                    segs.insert(*id, (len, live.saturating_sub(*section), sealed))?;
                }
            }
            if let Some(last) = self.new_segments.iter().max() {
                txn.open_table(META)?.insert("next_segment", u64::from(*last) + 1)?;
            }
            if self.kind == SegmentKind::Cache {
                let mut cache = txn.open_table(CACHE_SEGMENTS)?;
                for id in &self.new_segments {
                    cache.insert(*id, ())?;
                }
            }
            let mut pins = txn.open_table(PINS)?;
            for (cid, label) in &self.pins {
                pins.insert(key(cid).as_slice(), label.as_str())?;
            }
            let mut public = txn.open_table(PUBLIC)?;
            for cid in &self.published {
                public.insert(key(cid).as_slice(), ())?;
            }
            let mut roots = txn.open_table(ROOTS)?;
            for (name, cid) in &self.roots {
                roots.insert(name.as_str(), key(cid).as_slice())?;
            }
            if let Some(root) = &self.logged {
                let mut log = txn.open_table(COMMITS)?;
                let seq = log.last()?.map_or(1, |(k, _)| k.value() + 1);
                log.insert(seq, (unix_now(), key(root).as_slice()))?;
            }
        }
        txn.commit()?;
        if let Some(a) = self.slot().as_mut() {
            a.committed = a.len;
        }
        if self.kind == SegmentKind::Main && !self.pending.is_empty() {
            self.store.last_write.store(unix_millis(), std::sync::atomic::Ordering::Relaxed);
        }
        if self.kind == SegmentKind::Cache {
            for (id, len, _) in lengths {
                self.store.fetched.grown(id, len);
            }
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Batch<'_> {
    /// An uncommitted batch is rolled back: its bytes are cut off the segment files.
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let Some(mut a) = self.slot().take() else {
            return;
        };
        let _ = a.out.flush();
        let path = self.store.segment_path(a.id);
        let f = a.out.get_ref();
        if self.new_segments.contains(&a.id) {
            let _ = fs::remove_file(&path);
        } else if let Err(e) = f.set_len(a.committed) {
            log::error!("{}: rollback failed ({e}); the next open repairs it", path.display());
        }
        for (id, _) in &self.sealed {
            if self.new_segments.contains(id) {
                let _ = fs::remove_file(self.store.segment_path(*id));
            } else {
                // A pre-existing segment filled by this batch: cut back to its committed length.
                let committed = self.store.db.begin_read().ok().and_then(|t| {
                    let t = t.open_table(SEGMENTS).ok()?;
                    t.get(*id).ok().flatten().map(|v| v.value().0)
                });
                if let (Some(len), Ok(f)) =
                    (committed, OpenOptions::new().write(true).open(self.store.segment_path(*id)))
                {
                    let _ = f.set_len(len);
                }
            }
        }
    }
}

fn car_header_len() -> u64 {
    car::encode_header(&[segment_placeholder_root()]).len() as u64
}

impl Store {
    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, Writers> {
        self.writer.lock().expect("lock poisoned")
    }

    /// Syncs every segment byte that volatile batches wrote, and the segment directory if
    /// they created files: what must precede any durable index commit (which makes their
    /// index entries durable too).
    pub(crate) fn settle(&self, w: &mut Writers) -> Result<(), StoreError> {
        for a in [w.main.as_mut(), w.cache.as_mut()].into_iter().flatten() {
            if a.len > a.synced {
                let path = self.segment_path(a.id);
                a.out.flush().map_err(io_err(&path))?;
                a.out.get_ref().sync_data().map_err(io_err(&path))?;
                a.synced = a.len;
            }
        }
        if w.dir_unsynced {
            let dir = self.root.join("segments");
            File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err(&dir))?;
            w.dir_unsynced = false;
        }
        Ok(())
    }

    /// A write transaction that may commit durably: with the writer lock held and every
    /// volatile batch's segment bytes synced first (a durable commit makes the volatile
    /// index entries before it durable too, so their bytes must be on disk by then). For
    /// the small records kept beside the index (replicas, payments, pieces).
    pub(crate) fn begin_durable(&self) -> Result<(MutexGuard<'_, Writers>, redb::WriteTransaction), StoreError> {
        let mut w = self.lock_writer();
        self.settle(&mut w)?;
        let txn = self.db.begin_write()?;
        Ok((w, txn))
    }

    /// Makes everything committed so far durable, volatile batches included (also done
    /// when the store is dropped).
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut w = self.lock_writer();
        if !w.volatile {
            return Ok(());
        }
        self.settle(&mut w)?;
        self.db.begin_write()?.commit()?;
        w.volatile = false;
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            log::warn!("{}: making the last fetched blocks durable: {e}", self.root.display());
        }
    }
}

impl Store {
    pub(crate) fn forget_file(&self, id: u32) {
        self.files.write().expect("lock poisoned").remove(&id);
    }

    pub(crate) fn clear_cache(&self) {
        self.cache.lock().expect("lock poisoned").clear();
    }
}
