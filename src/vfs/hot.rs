//! Which files get a hot copy, and when the mount may hand one to the kernel.
//!
//! A hot copy (`store::hot`) is a plain local file holding exactly a file's bytes; with
//! FUSE passthrough the kernel reads it directly, at the speed of the local filesystem.
//! This module decides:
//!
//! - **What may use one:** a read-only open of a file whose content is a CID, with nothing
//!   written since (a drive file with uncommitted writes reads through cidfs), at least
//!   [`HOT_MIN_BYTES`] long, whose copy exists and has the file's length.
//! - **When one is made:** `cidfs add` writes it from the bytes it imports; a file
//!   written through the drive keeps its written bytes (the anonymous spill file, linked,
//!   once it is committed and closed); both only into the room left under the cap. The
//!   mount writes one in the background, from the local blocks, for a file read whole through
//!   it (every byte of it reached cidfs, in any order, since the mount started; a file
//!   only sliced by `head` or `tail` gets none). One copy is written at a time, on a
//!   thread of its own; a copy wanted while another is written is wanted again on the
//!   next whole read.
//!
//! Copies are bounded by the store's cap and are only ever a second copy: losing one costs
//! speed, never data.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use cid::Cid;
use lru::LruCache;

use super::{Target, Vfs, VfsError};
use crate::fetch::Blocks;
pub use crate::store::hot::HOT_MIN_BYTES;
use crate::store::hot::HotFiles;
use crate::unixfs::{Node, Nodes, UnixfsError, file};

/// Where hot copies live: a trait so the vfs can be tested without a store.
pub trait HotCopies: Send + Sync {
    /// The copy of the file `cid` (`len` bytes long), opened read-only, if there is one.
    fn open(&self, cid: &Cid, len: u64) -> Option<File>;
    /// Whether a copy of the file would be made now (big enough, fits, not there yet).
    fn wants(&self, cid: &Cid, len: u64) -> bool;
    /// Keeps `file`, which holds exactly the `len` bytes of the file `cid` and will not be
    /// written again, as its copy (if there is room). Returns whether it was kept.
    fn adopt(&self, cid: &Cid, len: u64, file: &File) -> bool;
    /// Makes the copy: `fill` writes the file's bytes, in order, to the writer given.
    fn make(
        &self,
        cid: &Cid,
        len: u64,
        fill: &mut dyn FnMut(&mut dyn Write) -> Result<(), VfsError>,
    ) -> Result<(), VfsError>;
}

impl HotCopies for HotFiles {
    fn open(&self, cid: &Cid, len: u64) -> Option<File> {
        self.get(cid, len)
    }

    fn wants(&self, cid: &Cid, len: u64) -> bool {
        HotFiles::wants(self, cid, len)
    }

    fn adopt(&self, cid: &Cid, len: u64, file: &File) -> bool {
        HotFiles::adopt(self, cid, len, file).unwrap_or_else(|e| {
            log::debug!("keeping the written bytes of {cid} as its hot copy: {e}");
            false
        })
    }

    fn make(
        &self,
        cid: &Cid,
        len: u64,
        fill: &mut dyn FnMut(&mut dyn Write) -> Result<(), VfsError>,
    ) -> Result<(), VfsError> {
        let Some(mut w) = self.writer(cid, len).map_err(VfsError::Io)? else { return Ok(()) };
        fill(&mut w)?;
        w.finish().map_err(VfsError::Io)
    }
}

/// Files being read through the mount whose read ranges are tracked, to notice one read whole.
const TRACKED_FILES: usize = 64;

/// The mount's side of hot copies: the store, the files being read, the copier thread.
pub(super) struct Hot {
    pub(super) copies: Arc<dyn HotCopies>,
    read: std::sync::Mutex<LruCache<Cid, Covered>>,
    copier: SyncSender<(Cid, u64)>,
}

/// The byte ranges of a file read so far: sorted, disjoint, merged when they touch.
#[derive(Default, Debug)]
struct Covered(Vec<(u64, u64)>);

impl Covered {
    fn add(&mut self, start: u64, end: u64) {
        let (mut start, mut end) = (start, end);
        self.0.retain(|&(s, e)| {
            let apart = e < start || s > end;
            if !apart {
                start = start.min(s);
                end = end.max(e);
            }
            apart
        });
        let at = self.0.partition_point(|&(s, _)| s < start);
        self.0.insert(at, (start, end));
    }

    fn covers(&self, len: u64) -> bool {
        self.0.first().is_some_and(|&(s, e)| s == 0 && e >= len)
    }
}

impl Hot {
    pub(super) fn new(copies: Arc<dyn HotCopies>, blocks: Arc<dyn Blocks>) -> Hot {
        let (copier, rx) = std::sync::mpsc::sync_channel(1);
        let store = copies.clone();
        let spawned = std::thread::Builder::new()
            .name("cidfs-hot-copier".into())
            .spawn(move || copier_loop(rx, &*store, &*blocks));
        if let Err(e) = spawned {
            log::warn!("starting the hot copy thread: {e}; no hot copies will be made");
        }
        Hot {
            copies,
            read: std::sync::Mutex::new(LruCache::new(std::num::NonZeroUsize::new(TRACKED_FILES).expect("non-zero"))),
            copier,
        }
    }

    /// Notes that `[offset, end)` of the file `cid` (`len` long) was read through cidfs;
    /// once every byte of it was, asks for a copy.
    pub(super) fn note_read(&self, cid: &Cid, len: u64, offset: u64, end: u64) {
        if len < HOT_MIN_BYTES || offset >= end {
            return;
        }
        let whole = {
            let mut read = self.read.lock().expect("lock poisoned");
            let covered = read.get_or_insert_mut(*cid, Covered::default);
            covered.add(offset, end);
            let whole = covered.covers(len);
            if whole {
                read.pop(cid);
            }
            whole
        };
        if whole && self.copies.wants(cid, len) {
            match self.copier.try_send((*cid, len)) {
                Ok(()) => log::debug!("{cid} was read whole: making its hot copy"),
                Err(TrySendError::Full(_)) => log::debug!("{cid}: another hot copy is being made; not now"),
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }
}

fn copier_loop(rx: Receiver<(Cid, u64)>, copies: &dyn HotCopies, blocks: &dyn Blocks) {
    for (cid, len) in rx {
        if let Err(e) = copy_from_blocks(copies, blocks, &cid, len) {
            log::info!("no hot copy of {cid}: {e} (reads of it keep going through cidfs)");
        }
    }
}

/// Writes the hot copy of the file `cid` from its blocks, leaf by leaf.
fn copy_from_blocks(copies: &dyn HotCopies, blocks: &dyn Blocks, cid: &Cid, len: u64) -> Result<(), VfsError> {
    let node = blocks.node(cid).map_err(VfsError::from)?;
    let Node::File(f) = node.as_ref() else { return Ok(()) };
    if f.size != len {
        return Ok(());
    }
    copies.make(cid, len, &mut |w| {
        file::read_range(blocks, cid, f, 0, len, &mut |b| w.write_all(b).map_err(UnixfsError::Output))
            .map_err(VfsError::from)
    })
}

impl Vfs {
    /// Keeps hot copies in `copies`: opens may be handed to the kernel (see
    /// [`Vfs::hot_copy`]), and files read whole get one, made from the blocks in `local`
    /// (the local store: a copy never fetches anything; a file whose blocks were evicted
    /// meanwhile gets none).
    pub fn with_hot_copies(self, copies: Arc<dyn HotCopies>, local: Arc<dyn Blocks>) -> Vfs {
        let _ = self.content.hot.set(Hot::new(copies, local));
        self
    }

    /// The file (CID and length) whose bytes `ino` shows, if it shows exactly one and
    /// nothing was written to it since its last commit.
    fn clean_content(&self, ino: u64) -> Option<(Cid, u64)> {
        let cid = if let Some(drive) = self.drive_node(ino) {
            drive.clean_content(ino)?
        } else {
            match self.target(ino).ok()? {
                Target::Node(cid) => cid,
                _ => return None,
            }
        };
        match self.node(&cid).ok()?.as_ref() {
            Node::File(f) => Some((cid, f.size)),
            _ => None,
        }
    }

    /// A local file holding exactly the bytes `ino` shows, for the kernel to read from
    /// directly (FUSE passthrough), and the CID of those bytes, if there is one (see the
    /// module docs).
    pub fn hot_copy(&self, ino: u64) -> Option<(File, Cid)> {
        let hot = self.content.hot.get()?;
        let (cid, len) = self.clean_content(ino)?;
        if len < HOT_MIN_BYTES {
            return None;
        }
        Some((hot.copies.open(&cid, len)?, cid))
    }

    /// The CID of what `ino` shows now, if nothing was written to it since its last commit.
    pub fn clean_cid(&self, ino: u64) -> Option<Cid> {
        self.clean_content(ino).map(|(cid, _)| cid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Block;
    use crate::importer::ImportOptions;
    use crate::importer::file::import_bytes;
    use crate::unixfs::Metadata;
    use crate::vfs::RootMode;
    use std::collections::HashMap;
    use std::io::Read;
    use std::time::{Duration, Instant};

    struct Mem(std::sync::Mutex<HashMap<Cid, bytes::Bytes>>);
    impl Blocks for Mem {
        fn get(&self, cid: &Cid) -> Result<bytes::Bytes, crate::fetch::FetchError> {
            self.0.lock().unwrap().get(cid).cloned().ok_or(crate::fetch::FetchError::NotFound(*cid))
        }
    }

    #[test]
    fn covered_ranges_merge() {
        let mut c = Covered::default();
        c.add(10, 20);
        c.add(30, 40);
        assert!(!c.covers(40));
        c.add(0, 10);
        c.add(20, 30);
        assert_eq!(c.0, vec![(0, 40)]);
        assert!(c.covers(40) && !c.covers(41));
        c.add(50, 60);
        c.add(45, 55);
        assert_eq!(c.0, vec![(0, 40), (45, 60)]);
    }

    #[test]
    fn a_file_read_whole_gets_a_copy_with_its_bytes_and_a_file_read_in_part_does_not() {
        let data: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut blocks: Vec<Block> = Vec::new();
        let file = import_bytes(&ImportOptions::default(), Metadata::default(), &data, &mut blocks).unwrap();
        let other = import_bytes(&ImportOptions::default(), Metadata::default(), &data[1..], &mut blocks).unwrap();
        let mem = Mem(std::sync::Mutex::new(blocks.into_iter().map(|b| (*b.cid(), b.into_data())).collect()));
        let dir = tempfile::tempdir().unwrap();
        let copies = Arc::new(HotFiles::open(dir.path()).unwrap());
        let mem: Arc<dyn Blocks> = Arc::new(mem);
        let vfs =
            Vfs::new(mem.clone(), RootMode::Ipfs, Box::new(Default::default)).with_hot_copies(copies.clone(), mem);
        let ino = |cid: &Cid| vfs.lookup(crate::vfs::ROOT_INO, std::ffi::OsStr::new(&cid.to_string())).unwrap().ino;
        let (a, b) = (ino(&file.cid), ino(&other.cid));
        assert!(vfs.hot_copy(a).is_none());
        // the first 2 MiB of `other`, some of it twice: not read whole
        for off in [1 << 20, 0, 0, 1 << 20] {
            vfs.read(b, off, 1 << 20).unwrap();
        }
        // all of `file`, out of order
        for off in [2 << 20, 0, 1 << 20] {
            vfs.read(a, off, 1 << 20).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut copy = loop {
            if let Some((f, cid)) = vfs.hot_copy(a) {
                assert_eq!(cid, file.cid);
                break f;
            }
            assert!(
                Instant::now() < deadline,
                "no hot copy was made: {:?}",
                std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut got = Vec::new();
        copy.read_to_end(&mut got).unwrap();
        assert!(got == data, "the copy holds the file's bytes");
        assert!(vfs.hot_copy(b).is_none(), "a file read in part gets no copy");
        assert_eq!(copies.usage().files, 1);
    }
}
