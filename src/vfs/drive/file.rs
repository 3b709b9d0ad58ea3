//! A changed file's bytes: a spill file (memory while small, an anonymous file once
//! large), over the committed DAG when the file was changed in place (an [`Overlay`]:
//! only the chunks written are copied out), and the reader a commit imports them from.

use std::io::Read;
use std::sync::Arc;

use cid::Cid;

use super::spill::{MEMORY_MAX, SpillFile};
use super::stream::Stream;
use super::tree::{Content, DNode, Overlay, Tree};
use super::{Drive, MAX_MEMORY_SPILLS, MAX_OPEN_SPILLS};
use crate::importer::{ImportOptions, LinkInfo};
use crate::unixfs::{Node, Nodes, file};
use crate::vfs::VfsError;

/// Reads `dst.len()` bytes at `pos`, zeros past the end of `f` (spill files are sparse).
pub(super) fn read_at_zero_fill(f: &SpillFile, dst: &mut [u8], pos: u64) -> Result<(), VfsError> {
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

impl Drive {
    /// A spill for a new file: in memory until it grows (see [`spill`](super::spill)).
    pub(super) fn spill(&self) -> Result<Arc<SpillFile>, VfsError> {
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

    /// Makes a file's content writable: copies its committed bytes into a spill file.
    pub(super) fn make_spill(&self, d: &mut Tree, ino: u64) -> Result<(Arc<SpillFile>, u64), VfsError> {
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

    /// Reads `[off, off + len)` of a changed file: dirty chunks from the spill file, the
    /// others from the committed DAG.
    pub(super) fn spill_read(
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
    pub(super) fn spill_read_into(
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
    pub(super) fn materialize(&self, file: &SpillFile, o: &mut Overlay, i: u64) -> Result<(), VfsError> {
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
    pub(super) fn base_leaves(&self, cid: &Cid, size: u64) -> Option<Vec<LinkInfo>> {
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
        fn collect(drive: &Drive, f: &crate::unixfs::FileNode, level: usize, out: &mut Vec<LinkInfo>) -> Option<()> {
            for c in &f.children {
                if level == 1 {
                    out.push(LinkInfo { cid: c.cid, tsize: c.tsize, filesize: c.size });
                } else {
                    let n = Nodes::node(drive, &c.cid).ok()?;
                    let Node::File(child) = n.as_ref() else { return None };
                    collect(drive, child, level - 1, out)?;
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
}

/// File bytes to import: a changed file, or committed content being re-imported.
pub(super) enum ContentReader<'a> {
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
