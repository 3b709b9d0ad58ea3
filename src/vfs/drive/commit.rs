//! Commits: plan, build, install. Under the drive's lock, which changed files a commit
//! will import and what their bytes are; without it, their import (blocks staged in the
//! store); under it again, each file's result kept if it did not change meanwhile. The
//! commit itself, under the lock, links those files, re-imports what changed after its
//! import, rebuilds changed directories and their sidecars bottom-up, and makes the new
//! root durable through the [`DriveStore`](super::DriveStore) in one batch.

use std::sync::{Arc, Mutex};

use cid::Cid;

use super::file::ContentReader;
use super::posix::{self, Side};
use super::spill::SpillFile;
use super::tree::{Built, Content, DNode, Overlay, Tree};
use super::{Drive, DriveStore, ROOT_INO};
use crate::importer::file::{Chunk, ReadError, encode_leaf, import_reader, import_symlink};
use crate::importer::sparse::{has_holes, import_sparse};
use crate::importer::{BlockSink, DirBuilder, FileImporter, ImportOptions, LinkInfo};
use crate::store::StoreError;
use crate::unixfs::Metadata;
use crate::vfs::VfsError;

impl Drive {
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
        let relinked: Vec<u64> = d.links.keys().copied().filter(|i| d.base_of(*i).is_none()).collect();
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
                    let before = d.base_of(child);
                    let side_before = d.sides.get(&child).copied();
                    let link = self.flush(d, child, sink, force, skipped)?;
                    changed |= before.map(|b| b.cid) != link.map(|l| l.cid);
                    side_changed |= side_before != d.sides.get(&child).copied();
                    if let Some(link) = link {
                        builder.insert(name, link);
                    }
                }
                let groups = if ino == ROOT_INO { d.link_groups() } else { Vec::new() };
                if side_changed || groups != d.groups {
                    let side = d.build_side(ino, groups.clone());
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
    /// is hashed. A file changed during its import is imported again under the lock — also
    /// when the change broke the import (a truncate cut its spill short mid-read): an
    /// import that fails here is left to the commit, which then reports a real error.
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
            match self.build_file(&opts, meta, job, &mut sink) {
                Ok(b) => built.push((ino, version, b)),
                // changed under the import (a truncate shortened its spill): the commit
                // imports it under the lock, where it holds still (and reports a real error)
                Err(e) => log::debug!("inode {ino} could not be imported ahead of the commit: {e}"),
            }
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
