//! The FUSE adapter: fuser callbacks in, [`Vfs`] calls, replies out. No semantics live
//! here; errors become errno through [`VfsError::errno`], and every refusal is logged with
//! the inode and what failed.
//!
//! Content under a CID never changes, so entries and attributes get long TTLs and open
//! files keep the kernel page cache across opens (`FOPEN_KEEP_CACHE`): a second read of a
//! file is served by the kernel at memory speed without calling us.
//!
//! fuser runs several event-loop threads (see [`mount`]), so a slow read (a cold disk,
//! later a network fetch) never stalls other callbacks.

pub mod mount;
pub mod oplog;
mod passthrough;

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use fuser::{
    BsdFileFlags, IoctlFlags, PollEvents, PollFlags, PollNotifier, RenameFlags, ReplyCreate, ReplyIoctl, ReplyPoll,
    ReplyWrite, TimeOrNow, WriteFlags,
};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use crate::vfs::{Attr, FileKind, ROOT_INO, ToErrno, Vfs, VfsError};

/// How long the kernel may cache entries and attributes of content under a CID: forever,
/// really; it is immutable.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// Drive entries change only through this mount (the mount holds the store's lock, so no
/// other process can change the drive), and the kernel updates or drops what it caches
/// for every change it passes on: a minute, so that walking a large directory (`ls -l`,
/// `find`, `rsync`) is not a lookup per entry.
const DRIVE_TTL: Duration = Duration::from_secs(60);
/// The root and the virtual entries (`/.snapshots`, its `latest`), which change on every
/// commit without the kernel seeing why: short.
const SHORT_TTL: Duration = Duration::from_secs(1);
/// Largest readahead we ask the kernel for.
const MAX_READAHEAD: u32 = 4 << 20;

/// Threads that serve reads which may wait on the network, so the kernel's request
/// threads stay free for everything else (DESIGN principle 6).
const NETWORK_READERS: usize = 16;

type Job = Box<dyn FnOnce() + Send>;

/// The adapter; cheap to clone (a request handed to a network thread takes a clone).
#[derive(Clone)]
pub struct CidFs {
    vfs: Arc<Vfs>,
    uid: u32,
    gid: u32,
    /// Where requests that may wait on the network go (none without a network tier).
    network_reads: Option<Arc<std::sync::Mutex<std::sync::mpsc::Sender<Job>>>>,
    /// Which opens pass through to hot copies (see [`passthrough`]).
    io: Arc<passthrough::IoModes>,
}

impl CidFs {
    pub fn new(vfs: Arc<Vfs>, uid: u32, gid: u32) -> CidFs {
        let network_reads = vfs.has_network_tier().then(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            let rx = Arc::new(std::sync::Mutex::new(rx));
            for i in 0..NETWORK_READERS {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new().name(format!("cidfs-netread-{i}")).spawn(move || {
                    loop {
                        let job = rx.lock().expect("lock poisoned").recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
                if let Err(e) = spawned {
                    log::warn!("starting a network read thread: {e}");
                }
            }
            Arc::new(std::sync::Mutex::new(tx))
        });
        CidFs { vfs, uid, gid, network_reads, io: Arc::default() }
    }

    /// Runs `job` on a network thread if serving `ino` may wait on the network, else here.
    fn offload(&self, ino: u64, job: impl FnOnce() + Send + 'static) {
        match &self.network_reads {
            Some(pool) if self.vfs.may_wait(ino) => {
                // the request's scope goes along, for whatever the reply logs
                let op = oplog::current();
                let job = move || {
                    let _op = oplog::Scope::restore(op);
                    job()
                };
                if let Err(refused) = pool.lock().expect("lock poisoned").send(Box::new(job)) {
                    (refused.0)(); // no threads left: serve it here
                }
            }
            _ => job(),
        }
    }

    fn file_attr(&self, a: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.blocks(),
            atime: a.atime.unwrap_or(a.mtime),
            mtime: a.mtime,
            ctime: a.ctime.map_or(a.mtime, |c| c.max(a.mtime)),
            crtime: a.mtime,
            kind: file_type(a.kind),
            perm: a.perm,
            nlink: a.nlink,
            uid: a.uid.unwrap_or(self.uid),
            gid: a.gid.unwrap_or(self.gid),
            rdev: 0,
            blksize: a.blksize,
            flags: 0,
        }
    }
}

impl CidFs {
    fn ttl(&self, ino: u64) -> &'static Duration {
        if ino == ROOT_INO {
            &SHORT_TTL
        } else if self.vfs.is_immutable(ino) {
            &TTL
        } else if self.vfs.is_drive(ino) {
            &DRIVE_TTL
        } else {
            &SHORT_TTL
        }
    }

    fn entry(&self, r: Result<Attr, VfsError>, op: impl std::fmt::Display, parent: u64, reply: ReplyEntry) {
        match r {
            Ok(a) => reply.entry(self.ttl(a.ino), &self.file_attr(&a), Generation(0)),
            Err(e) => reply.error(self.errno(op, parent, &e)),
        }
    }

    fn empty(&self, r: Result<(), VfsError>, op: impl std::fmt::Display, ino: u64, reply: ReplyEmpty) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.errno(op, ino, &e)),
        }
    }

    /// Makes changes durable now (fsync); failures are reported to the caller.
    fn commit(&self) -> Result<(), VfsError> {
        self.vfs.commit().map(|_| ())
    }
}

fn name_str(name: &OsStr) -> Result<&str, VfsError> {
    name.to_str().ok_or_else(|| VfsError::InvalidName(name.to_string_lossy().into_owned()))
}

fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
    }
}

impl CidFs {
    /// Logs a refusal (errors worth a user's attention loudly, with the path and what
    /// failed) and returns its errno.
    fn errno(&self, op: impl std::fmt::Display, ino: u64, e: &VfsError) -> Errno {
        errno_of(&self.vfs, op, ino, e)
    }
}

impl Filesystem for CidFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(max) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(max);
        }
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_ASYNC_READ,
        ] {
            if config.add_capabilities(cap).is_err() {
                log::debug!("kernel does not offer {cap:?}");
            }
        }
        // Backing files live on an ordinary filesystem (stack depth 0), so one level is enough.
        if config.set_max_stack_depth(1).is_ok() && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok() {
            self.io.enable();
        } else {
            log::debug!("kernel does not offer FUSE passthrough");
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _op = oplog::Scope::enter("lookup", parent.0);
        let (fs, name) = (self.clone(), name.to_os_string());
        self.offload(parent.0, move || match fs.vfs.lookup(parent.0, &name) {
            Ok(a) => reply.entry(fs.ttl(a.ino), &fs.file_attr(&a), Generation(0)),
            Err(e) => {
                // told as the path looked up, so an error naming that entry (a CID under
                // /.ipfs) names it once
                let path = format!("{}/{}", fs.vfs.path_of(parent.0).trim_end_matches('/'), name.to_string_lossy());
                reply.error(errno_logged(format_args!("lookup"), &path, &e))
            }
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _op = oplog::Scope::enter("getattr", ino.0);
        let fs = self.clone();
        self.offload(ino.0, move || match fs.vfs.getattr(ino.0) {
            Ok(a) => reply.attr(fs.ttl(a.ino), &fs.file_attr(&a)),
            Err(e) => reply.error(fs.errno("getattr", ino.0, &e)),
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _op = oplog::Scope::enter("readlink", ino.0);
        let fs = self.clone();
        self.offload(ino.0, move || match fs.vfs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(fs.errno("readlink", ino.0, &e)),
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _op = oplog::Scope::enter("open", ino.0);
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let prepare = || {
            self.vfs.open(ino.0, write)?;
            if write && flags.0 & libc::O_TRUNC != 0 {
                self.vfs.truncate(ino.0, 0)?;
            }
            Ok(())
        };
        self.io.open(&self.vfs, ino.0, write, prepare, reply, |e, reply| reply.error(self.errno("open", ino.0, &e)));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let _op = oplog::Scope::enter("create", parent.0);
        let made = name_str(name).and_then(|n| self.vfs.create(parent.0, n, mode & !umask));
        match made.and_then(|a| self.own_new(req, parent.0, a, false)) {
            Ok(a) => {
                self.io.created(a.ino);
                let fh = FileHandle(passthrough::FH_CACHED);
                reply.created(self.ttl(a.ino), &self.file_attr(&a), Generation(0), fh, FopenFlags::empty())
            }
            Err(e) => reply.error(self.errno(format_args!("create {name:?} in"), parent.0, &e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let _op = oplog::Scope::enter("mknod", parent.0);
        // Only regular files have a UnixFS form; devices, FIFOs and sockets do not.
        let r = if mode & libc::S_IFMT == libc::S_IFREG {
            let r = name_str(name).and_then(|n| self.vfs.create(parent.0, n, mode & !umask));
            if let Ok(a) = &r {
                self.vfs.released_writer(a.ino); // mknod opens no handle
            }
            r.and_then(|a| self.own_new(req, parent.0, a, false))
        } else {
            Err(VfsError::NotPermitted("UnixFS has no device, FIFO or socket nodes")) // mknod(2): EPERM
        };
        self.entry(r, format_args!("mknod {name:?} in"), parent.0, reply);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let _op = oplog::Scope::enter("mkdir", parent.0);
        let r = name_str(name).and_then(|n| self.vfs.mkdir(parent.0, n, mode & !umask));
        let r = r.and_then(|a| self.own_new(req, parent.0, a, true));
        self.entry(r, format_args!("mkdir {name:?} in"), parent.0, reply);
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &std::path::Path, reply: ReplyEntry) {
        let _op = oplog::Scope::enter("symlink", parent.0);
        use std::os::unix::ffi::OsStrExt;
        let r = name_str(link_name).and_then(|n| self.vfs.symlink(parent.0, n, target.as_os_str().as_bytes()));
        let r = r.and_then(|a| self.own_new(req, parent.0, a, false));
        self.entry(r, format_args!("symlink {link_name:?} in"), parent.0, reply);
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let _op = oplog::Scope::enter("link", ino.0);
        let r = name_str(newname).and_then(|n| self.vfs.link(ino.0, newparent.0, n));
        self.entry(r, format_args!("link {newname:?} to"), ino.0, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _op = oplog::Scope::enter("unlink", parent.0);
        let r = name_str(name).and_then(|n| self.vfs.remove(parent.0, n, false));
        self.empty(r, format_args!("unlink {name:?} in"), parent.0, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _op = oplog::Scope::enter("rmdir", parent.0);
        let r = name_str(name).and_then(|n| self.vfs.remove(parent.0, n, true));
        self.empty(r, format_args!("rmdir {name:?} in"), parent.0, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _op = oplog::Scope::enter("rename", parent.0);
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
        let known = RenameFlags::RENAME_NOREPLACE | RenameFlags::RENAME_EXCHANGE;
        let r = if !(flags - known).is_empty() || (noreplace && exchange) {
            Err(VfsError::InvalidName("rename flags other than RENAME_NOREPLACE or RENAME_EXCHANGE".into()))
        } else {
            name_str(name).and_then(|n| {
                name_str(newname).and_then(|nn| match exchange {
                    true => self.vfs.exchange(parent.0, n, newparent.0, nn),
                    false => self.vfs.rename_with(parent.0, n, newparent.0, nn, noreplace),
                })
            })
        };
        self.empty(r, format_args!("rename {name:?} to {newname:?} in"), parent.0, reply);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _op = oplog::Scope::enter("write", ino.0);
        match self.vfs.write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(self.errno(format_args!("write at {offset}"), ino.0, &e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _op = oplog::Scope::enter("setattr", ino.0);
        let result = (|| {
            if uid.is_some() || gid.is_some() {
                let now = self.file_attr(&self.vfs.getattr(ino.0)?);
                if !may_chown(req, now.uid, now.gid, uid, gid) {
                    return Err(VfsError::NotPermitted("only root may give a file away (chown(2))"));
                }
                let uid = uid.map(|u| Some(u).filter(|u| *u != self.uid));
                let gid = gid.map(|g| Some(g).filter(|g| *g != self.gid));
                self.vfs.set_owner(ino.0, uid, gid)?;
            }
            if let Some(len) = size {
                self.io.change_content(ino.0, || self.vfs.truncate(ino.0, len))?;
            }
            let time = |t: TimeOrNow| match t {
                TimeOrNow::SpecificTime(t) => t,
                TimeOrNow::Now => std::time::SystemTime::now(),
            };
            let mtime = mtime.map(time);
            if mode.is_some() || mtime.is_some() {
                self.vfs.set_meta(ino.0, mode, mtime)?;
            }
            if let Some(atime) = atime.map(time) {
                // stored only when it differs from the mtime (shown when none is stored)
                let mtime = self.vfs.getattr(ino.0)?.mtime;
                self.vfs.set_atime(ino.0, Some(atime).filter(|a| *a != mtime))?;
            }
            self.vfs.getattr(ino.0)
        })();
        match result {
            Ok(a) => reply.attr(self.ttl(a.ino), &self.file_attr(&a)),
            Err(e) => reply.error(self.errno("setattr", ino.0, &e)),
        }
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let _op = oplog::Scope::enter("fsync", ino.0);
        self.empty(self.commit(), "fsync", ino.0, reply);
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let _op = oplog::Scope::enter("fsyncdir", ino.0);
        self.empty(self.commit(), "fsyncdir", ino.0, reply);
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _op = oplog::Scope::enter("setxattr", ino.0);
        let (create, replace) = (flags & libc::XATTR_CREATE != 0, flags & libc::XATTR_REPLACE != 0);
        let r = xattr_name(name).and_then(|n| self.vfs.set_xattr(ino.0, n, value, create, replace));
        self.empty(r, format_args!("setxattr {name:?}"), ino.0, reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _op = oplog::Scope::enter("removexattr", ino.0);
        let r = xattr_name(name).and_then(|n| self.vfs.remove_xattr(ino.0, n));
        self.empty(r, format_args!("removexattr {name:?}"), ino.0, reply);
    }

    /// No ioctls: the standard answer, without fuser's per-call warning.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        let _op = oplog::Scope::enter("ioctl", _ino.0);
        reply.error(Errno::from_i32(libc::ENOTTY));
    }

    /// Regular files are always ready; ENOSYS tells the kernel to stop asking.
    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        let _op = oplog::Scope::enter("poll", _ino.0);
        reply.error(Errno::from_i32(libc::ENOSYS));
    }

    fn destroy(&mut self) {
        if let Err(e) = self.vfs.commit() {
            log::error!("final commit at unmount failed: {e}");
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _op = oplog::Scope::enter("read", ino.0);
        let fs = self.clone();
        self.offload(ino.0, move || match fs.vfs.read(ino.0, offset, size) {
            Ok(parts) if parts.len() == 1 => reply.data(&parts[0]),
            Ok(parts) => reply.data(&parts.concat()),
            Err(e) => reply.error(fs.errno(format_args!("read at {offset}"), ino.0, &e)),
        });
    }

    /// Nothing is buffered here: writes reach the drive as they come.
    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        let _op = oplog::Scope::enter("flush", _ino.0);
        reply.ok();
    }

    /// A closed write handle lets the next periodic commit include the file.
    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _op = oplog::Scope::enter("release", ino.0);
        self.io.release(ino.0, fh.0);
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            self.vfs.released_writer(ino.0);
        }
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _op = oplog::Scope::enter("opendir", ino.0);
        let fs = self.clone();
        self.offload(ino.0, move || match fs.vfs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR),
            Err(e) => reply.error(fs.errno("opendir", ino.0, &e)),
        });
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let _op = oplog::Scope::enter("readdir", ino.0);
        let entries = match self.vfs.dir_entries(fh.0) {
            Ok(e) => e,
            Err(e) => return reply.error(self.errno("readdir", ino.0, &e)),
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), i as u64 + 1, file_type(e.kind), &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, reply: ReplyDirectoryPlus) {
        let _op = oplog::Scope::enter("readdirplus", ino.0);
        let fs = self.clone();
        self.offload(ino.0, move || fs.readdirplus_now(ino, fh, offset, reply));
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        let _op = oplog::Scope::enter("releasedir", _ino.0);
        self.vfs.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _op = oplog::Scope::enter("statfs", _ino.0);
        const BSIZE: u64 = 4096;
        let c = self.vfs.statfs();
        let free = c.free_bytes / BSIZE;
        reply.statfs(c.total_bytes / BSIZE, free, free, c.files, 0, BSIZE as u32, 255, BSIZE as u32);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _op = oplog::Scope::enter("getxattr", ino.0);
        match self.vfs.getxattr(ino.0, name) {
            Ok(v) => reply_xattr(v, size, reply),
            Err(e) => reply.error(self.errno(format_args!("getxattr {name:?}"), ino.0, &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _op = oplog::Scope::enter("listxattr", ino.0);
        match self.vfs.listxattr(ino.0) {
            Ok(v) => reply_xattr(v, size, reply),
            Err(e) => reply.error(self.errno("listxattr", ino.0, &e)),
        }
    }
}

/// chown(2) rules, as Linux applies them (the kernel checks too, with
/// `default_permissions`): root may set anything; the owner may keep the owner and set the
/// group to any group they belong to (supplementary groups included); nobody else may.
fn may_chown(req: &Request, uid_now: u32, gid_now: u32, uid: Option<u32>, gid: Option<u32>) -> bool {
    if req.uid() == 0 {
        return true;
    }
    let owner = req.uid() == uid_now;
    uid.is_none_or(|u| owner && u == uid_now) && gid.is_none_or(|g| owner && (g == gid_now || in_group(req, g)))
}

/// Whether the process making `req` belongs to group `g` (its own, or a supplementary one,
/// which FUSE does not pass: they are read from /proc while the caller waits for us).
fn in_group(req: &Request, g: u32) -> bool {
    if req.gid() == g {
        return true;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", req.pid())) else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|groups| groups.split_whitespace().any(|x| x.parse() == Ok(g)))
}

impl CidFs {
    /// Makes the node just created belong to whoever created it, as a local filesystem
    /// does: the caller's uid, and its gid — or, in a setgid directory, the directory's
    /// (and a directory made there is setgid too). The mounting user's ownership is the
    /// default and costs no sidecar entry.
    fn own_new(
        &self,
        req: &Request,
        parent: u64,
        new: crate::vfs::Attr,
        dir: bool,
    ) -> Result<crate::vfs::Attr, VfsError> {
        let parent = self.file_attr(&self.vfs.getattr(parent)?);
        let setgid = parent.perm & 0o2000 != 0;
        let (uid, gid) = (req.uid(), if setgid { parent.gid } else { req.gid() });
        if setgid && dir {
            self.vfs.set_meta(new.ino, Some(u32::from(new.perm) | 0o2000), None)?;
        }
        if (uid, gid) == (self.uid, self.gid) && !(setgid && dir) {
            return Ok(new);
        }
        self.vfs.set_owner(new.ino, Some((uid != self.uid).then_some(uid)), Some((gid != self.gid).then_some(gid)))?;
        self.vfs.getattr(new.ino)
    }
}

fn xattr_name(name: &OsStr) -> Result<&str, VfsError> {
    name.to_str().ok_or_else(|| VfsError::InvalidName(name.to_string_lossy().into_owned()))
}

impl CidFs {
    fn readdirplus_now(&self, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let entries = match self.vfs.dir_entries(fh.0) {
            Ok(e) => e,
            Err(e) => return reply.error(self.errno("readdirplus", ino.0, &e)),
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            let (attr, ttl) = match self.vfs.getattr_if_local(e.ino) {
                Some(Ok(a)) => (a, self.ttl(e.ino)),
                // An entry we cannot stat (missing block), or could only by fetching it from
                // a peer, is still listed; the kernel looks it up again (TTL 0) when asked,
                // and the lookup fetches it or reports the error.
                Some(Err(_)) | None => (placeholder(e.ino, e.kind), &Duration::ZERO),
            };
            if reply.add(INodeNo(e.ino), i as u64 + 1, &e.name, ttl, &self.file_attr(&attr), Generation(0)) {
                break;
            }
        }
        reply.ok();
    }
}

/// The errno for `e`, logged with the operation and the path (as errors when data is
/// missing or broken).
fn errno_of(vfs: &Vfs, op: impl std::fmt::Display, ino: u64, e: &VfsError) -> Errno {
    errno_logged(op, &vfs.path_of(ino), e)
}

/// [`errno_of`] for a path given as text.
fn errno_logged(op: impl std::fmt::Display, path: &str, e: &VfsError) -> Errno {
    let n = e.errno();
    let level = match n {
        libc::EIO | libc::ESTALE => log::Level::Error,
        // unusual enough that whoever meets it wants to know why (see `passthrough`)
        libc::ETXTBSY => log::Level::Info,
        _ => log::Level::Debug,
    };
    if log::log_enabled!(level) {
        log::log!(level, "{op} {}", crate::context::with_context(path, &e.to_string()));
    }
    Errno::from_i32(n)
}

/// xattr protocol: size 0 asks for the length; a too-small buffer is `ERANGE`.
fn reply_xattr(value: Vec<u8>, size: u32, reply: ReplyXattr) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if (size as usize) < value.len() {
        reply.error(Errno::from_i32(VfsError::Range.errno()));
    } else {
        reply.data(&value);
    }
}

fn placeholder(ino: u64, kind: FileKind) -> Attr {
    Attr { nlink: 1, ..Attr::new(ino, kind, 0o444, crate::vfs::DEFAULT_MTIME) }
}
