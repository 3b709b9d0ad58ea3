//! Files: fixed-size chunking and the balanced layout, streaming.
//!
//! The balanced layout (go-unixfs `balanced.Layout`) fills each internal node with
//! `max_links` children before starting the next, and grows the tree upward: level by level,
//! that is exactly "group every `max_links` links of a level under one parent". We keep one
//! pending link list per level and emit a parent as soon as a level overflows, so a 1 TiB
//! file needs a few KiB of link state.
//!
//! Leaves are the hot path (every file byte passes through one), so a [`Chunk`] is a buffer
//! with room reserved in front and behind: file bytes are read straight into it, and
//! [`encode_leaf`] writes the dag-pb/UnixFS framing around them in place. The bytes are
//! copied once (from the kernel) and hashed once. `encode_leaf` is pure, so callers can
//! run it on worker threads and feed the results, in order, to [`FileImporter::push_leaf`].

use std::io::{self, Read};

use bytes::Bytes;
use cid::Version;
use ipld_dagpb::{PbLink, PbNode};

use super::{BlockSink, ImportOptions, LinkInfo};
use crate::block::{Block, DAG_PB, RAW};
use crate::car::{put_varint, varint_len};
use crate::unixfs::pb::{Data, DataType};
use crate::unixfs::{Metadata, decode};

/// Bytes reserved before a chunk's data for the dag-pb + UnixFS leaf header (at most
/// 1 + 10 + 2 + 1 + 10 bytes for any chunk size we accept; 16 is plenty for <= 2 MiB).
const HEADROOM: usize = 16;
/// Bytes reserved after the data for the UnixFS `filesize` field.
const TAILROOM: usize = 11;

/// File bytes destined to become one leaf.
pub struct Chunk {
    buf: Vec<u8>,
}

impl Chunk {
    pub fn with_capacity(size: usize) -> Chunk {
        let mut buf = Vec::with_capacity(HEADROOM + size + TAILROOM);
        buf.resize(HEADROOM, 0);
        Chunk { buf }
    }

    pub fn len(&self) -> usize {
        self.buf.len() - HEADROOM
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[HEADROOM..]
    }

    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Reads from `r` until the chunk holds `size` bytes or `r` ends; returns bytes added.
    ///
    /// The space read into must be zeroed first (safe `Read` needs initialised memory), so
    /// it is offered in doubling steps from 16 KiB: a small file costs a few KiB of
    /// zeroing, not a whole chunk's (which dominated extracting thousands of small files).
    pub fn fill_from(&mut self, r: &mut dyn Read, size: usize) -> io::Result<usize> {
        let start = self.len();
        let want = HEADROOM + size;
        if self.buf.capacity() < want + TAILROOM {
            self.buf.reserve(want + TAILROOM - self.buf.len());
        }
        while self.buf.len() < want {
            let filled = self.buf.len();
            let step = (filled - HEADROOM).max(16 << 10);
            self.buf.resize(want.min(filled + step), 0);
            match r.read(&mut self.buf[filled..]) {
                Ok(0) => {
                    self.buf.truncate(filled);
                    break;
                }
                Ok(n) => self.buf.truncate(filled + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.truncate(filled),
                Err(e) => {
                    self.buf.truncate(filled);
                    return Err(e);
                }
            }
        }
        Ok(self.len() - start)
    }
}

/// A leaf block and the number of file bytes it holds.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub block: Block,
    pub filesize: u64,
}

/// Encodes a chunk as a leaf: a raw block, or a dag-pb node with UnixFS `File` data, framed
/// in place around the chunk's bytes. Byte-identical to encoding through [`Data`] and
/// `PbNode` (a test checks).
pub fn encode_leaf(opts: &ImportOptions, chunk: Chunk) -> Leaf {
    let n = chunk.len();
    let filesize = n as u64;
    let mut buf = chunk.buf;
    let block = if opts.raw_leaves {
        Block::encode(Version::V1, RAW, Bytes::from(buf).slice(HEADROOM..))
    } else if n == 0 {
        Block::encode(opts.cid_version, DAG_PB, leaf_node(Bytes::new(), Metadata::default()))
    } else {
        // PBNode{Data: 0x0a L [Type 0x08 0x02] [Data 0x12 n <bytes>] [filesize 0x18 n]}
        let unixfs_len = 2 + 1 + varint_len(filesize) + n + 1 + varint_len(filesize);
        let mut header = Vec::with_capacity(HEADROOM);
        header.push(0x0a);
        put_varint(unixfs_len as u64, &mut header);
        header.extend_from_slice(&[0x08, 0x02, 0x12]);
        put_varint(filesize, &mut header);
        let start = HEADROOM - header.len();
        buf[start..HEADROOM].copy_from_slice(&header);
        buf.push(0x18);
        let mut tail = Vec::with_capacity(TAILROOM);
        put_varint(filesize, &mut tail);
        buf.extend_from_slice(&tail);
        Block::encode(opts.cid_version, DAG_PB, Bytes::from(buf).slice(start..))
    }
    .expect("importer options are validated");
    Leaf { block, filesize }
}

/// A dag-pb UnixFS file leaf holding `data`, through the general encoder.
fn leaf_node(data: Bytes, meta: Metadata) -> Vec<u8> {
    let mut d = Data::new(DataType::File);
    d.filesize = Some(data.len() as u64);
    d.data = (!data.is_empty()).then_some(data);
    d.mode = meta.mode;
    d.mtime = meta.mtime;
    dag_pb(d, vec![])
}

pub struct FileImporter<'a> {
    opts: &'a ImportOptions,
    meta: Metadata,
    chunk: Chunk,
    /// The first leaf, held back until we know whether it is the whole file (a one-leaf
    /// file with metadata gets the metadata in, or around, its only leaf).
    first: Option<Leaf>,
    levels: Vec<Vec<LinkInfo>>,
    leaves: u64,
    /// The all-zero leaf and the all-zero full subtrees of each height, once made.
    zeros: Vec<LinkInfo>,
}

impl<'a> FileImporter<'a> {
    pub fn new(opts: &'a ImportOptions, meta: Metadata) -> Self {
        FileImporter {
            opts,
            meta,
            chunk: Chunk::with_capacity(opts.chunk_size),
            first: None,
            levels: vec![vec![]],
            leaves: 0,
            zeros: Vec::new(),
        }
    }

    /// Adds `count` full chunks of zeros — a hole — without reading or hashing a byte of
    /// them: the all-zero leaf and the all-zero full subtree of each height have fixed
    /// CIDs, made once, and a whole subtree is linked wherever the balanced layout would
    /// have built one. The result equals pushing the zeros, block for block; the cost is
    /// proportional to the number of subtrees, not of bytes.
    pub fn push_zeros<S: BlockSink + ?Sized>(&mut self, mut count: u64, sink: &mut S) -> Result<(), S::Error> {
        let k = self.opts.max_links as u64;
        while count > 0 {
            if !self.chunk.is_empty() {
                // behind bytes that did not fill a chunk: the zeros are bytes like any other
                self.push(&vec![0; self.opts.chunk_size], sink)?;
                count -= 1;
                continue;
            }
            if self.leaves == 0 {
                // the first leaf is held back like any first leaf (it may be the whole file)
                let mut chunk = Chunk::with_capacity(self.opts.chunk_size);
                chunk.buf.resize(HEADROOM + self.opts.chunk_size, 0);
                self.push_leaf(encode_leaf(self.opts, chunk), sink)?;
                count -= 1;
                continue;
            }
            if let Some(first) = self.first.take() {
                self.put_leaf(first, sink)?;
            }
            // more follows: full levels may be closed now rather than at the next link
            let mut l = 0;
            while l < self.levels.len() && self.levels[l].len() == self.opts.max_links {
                let full = std::mem::take(&mut self.levels[l]);
                let parent = self.parent(full, Metadata::default(), sink)?;
                self.push_link(l + 1, parent, sink)?;
                l += 1;
            }
            // the tallest full zero subtree that fits here: every level below it empty
            let (mut h, mut span) = (0usize, 1u64);
            while self.levels.get(h).is_none_or(Vec::is_empty) && span.saturating_mul(k) <= count {
                h += 1;
                span *= k;
            }
            let subtree = self.zero_subtree(h, sink)?;
            self.push_link(h, subtree, sink)?;
            self.leaves += span;
            count -= span;
        }
        Ok(())
    }

    /// The all-zero full subtree of height `h` (0: the leaf), its blocks stored once.
    fn zero_subtree<S: BlockSink + ?Sized>(&mut self, h: usize, sink: &mut S) -> Result<LinkInfo, S::Error> {
        while self.zeros.len() <= h {
            let link = match self.zeros.last() {
                None => {
                    let mut chunk = Chunk::with_capacity(self.opts.chunk_size);
                    chunk.buf.resize(HEADROOM + self.opts.chunk_size, 0);
                    let leaf = encode_leaf(self.opts, chunk);
                    let info = LinkInfo {
                        cid: *leaf.block.cid(),
                        tsize: leaf.block.data().len() as u64,
                        filesize: leaf.filesize,
                    };
                    sink.put(leaf.block)?;
                    info
                }
                Some(below) => self.parent(vec![*below; self.opts.max_links], Metadata::default(), sink)?,
            };
            self.zeros.push(link);
        }
        Ok(self.zeros[h])
    }

    /// Adds file bytes (chunking them here). For speed, read into [`Chunk`]s and use
    /// [`encode_leaf`] + [`push_leaf`](Self::push_leaf) instead.
    pub fn push<S: BlockSink + ?Sized>(&mut self, mut data: &[u8], sink: &mut S) -> Result<(), S::Error> {
        while !data.is_empty() {
            let take = (self.opts.chunk_size - self.chunk.len()).min(data.len());
            self.chunk.extend(&data[..take]);
            data = &data[take..];
            if self.chunk.len() == self.opts.chunk_size {
                let chunk = std::mem::replace(&mut self.chunk, Chunk::with_capacity(self.opts.chunk_size));
                self.push_leaf(encode_leaf(self.opts, chunk), sink)?;
            }
        }
        Ok(())
    }

    /// Adds the next leaf, in file order. Every leaf but the last must hold a full chunk.
    pub fn push_leaf<S: BlockSink + ?Sized>(&mut self, leaf: Leaf, sink: &mut S) -> Result<(), S::Error> {
        self.leaves += 1;
        if let Some(first) = self.first.take() {
            self.put_leaf(first, sink)?;
        }
        if self.leaves == 1 {
            self.first = Some(leaf);
            return Ok(());
        }
        self.put_leaf(leaf, sink)
    }

    /// Adds the next leaf as a link to a block that is already stored (an unchanged chunk
    /// of a file being re-committed). Not for files that may end up one leaf long: their
    /// only leaf may need the file's metadata, which a stored leaf cannot get.
    pub fn push_stored_leaf<S: BlockSink + ?Sized>(&mut self, link: LinkInfo, sink: &mut S) -> Result<(), S::Error> {
        self.leaves += 1;
        if let Some(first) = self.first.take() {
            self.put_leaf(first, sink)?;
        }
        self.push_link(0, link, sink)
    }

    fn put_leaf<S: BlockSink + ?Sized>(&mut self, leaf: Leaf, sink: &mut S) -> Result<(), S::Error> {
        let info = LinkInfo { cid: *leaf.block.cid(), tsize: leaf.block.data().len() as u64, filesize: leaf.filesize };
        sink.put(leaf.block)?;
        self.push_link(0, info, sink)
    }

    /// Finishes the file and returns its root.
    pub fn finish<S: BlockSink + ?Sized>(mut self, sink: &mut S) -> Result<LinkInfo, S::Error> {
        if !self.chunk.is_empty() || self.leaves == 0 {
            let chunk = std::mem::replace(&mut self.chunk, Chunk::with_capacity(0));
            self.push_leaf(encode_leaf(self.opts, chunk), sink)?;
        }
        if let Some(only) = self.first.take() {
            return self.single_leaf_root(only, sink);
        }
        let mut level = 0;
        loop {
            let top = level == self.levels.len() - 1;
            if top && self.levels[level].len() == 1 {
                return Ok(self.levels[level][0]);
            }
            if !top && self.levels[level].is_empty() {
                level += 1; // a zero subtree above an empty level (see `push_zeros`)
                continue;
            }
            let links = std::mem::take(&mut self.levels[level]);
            let meta = if top { self.meta } else { Metadata::default() };
            let parent = self.parent(links, meta, sink)?;
            self.push_link(level + 1, parent, sink)?;
            level += 1;
        }
    }

    /// The whole file is one leaf: the leaf is the root, carrying the metadata if any (a
    /// raw leaf cannot, so it gets a one-link parent, as Kubo does).
    fn single_leaf_root<S: BlockSink + ?Sized>(mut self, leaf: Leaf, sink: &mut S) -> Result<LinkInfo, S::Error> {
        if self.meta == Metadata::default() {
            self.put_leaf(leaf, sink)?;
            return Ok(self.levels[0][0]);
        }
        if self.opts.raw_leaves {
            self.put_leaf(leaf, sink)?;
            let only = std::mem::take(&mut self.levels[0]);
            return self.parent(only, self.meta, sink);
        }
        let data = match decode(leaf.block.cid(), leaf.block.data()) {
            Ok(crate::unixfs::Node::File(f)) => f.data,
            _ => unreachable!("encode_leaf makes UnixFS file leaves"),
        };
        let block = Block::encode(self.opts.cid_version, DAG_PB, leaf_node(data, self.meta))
            .expect("importer options are validated");
        let info = LinkInfo { cid: *block.cid(), tsize: block.data().len() as u64, filesize: leaf.filesize };
        sink.put(block)?;
        Ok(info)
    }

    fn push_link<S: BlockSink + ?Sized>(&mut self, level: usize, link: LinkInfo, sink: &mut S) -> Result<(), S::Error> {
        if self.levels.len() == level {
            self.levels.push(Vec::new());
        }
        if self.levels[level].len() == self.opts.max_links {
            let full = std::mem::take(&mut self.levels[level]);
            let parent = self.parent(full, Metadata::default(), sink)?;
            self.push_link(level + 1, parent, sink)?;
        }
        self.levels[level].push(link);
        Ok(())
    }

    fn parent<S: BlockSink + ?Sized>(
        &self,
        children: Vec<LinkInfo>,
        meta: Metadata,
        sink: &mut S,
    ) -> Result<LinkInfo, S::Error> {
        let filesize = children.iter().map(|c| c.filesize).sum();
        let mut data = Data::new(DataType::File);
        data.filesize = Some(filesize);
        data.blocksizes = children.iter().map(|c| c.filesize).collect();
        data.mode = meta.mode;
        data.mtime = meta.mtime;
        let links =
            children.iter().map(|c| PbLink { cid: c.cid, name: Some(String::new()), size: Some(c.tsize) }).collect();
        let block =
            Block::encode(self.opts.cid_version, DAG_PB, dag_pb(data, links)).expect("importer options are validated");
        let info = LinkInfo {
            cid: *block.cid(),
            tsize: block.data().len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>(),
            filesize,
        };
        sink.put(block)?;
        Ok(info)
    }
}

/// Encodes a dag-pb node holding UnixFS `data`.
pub(crate) fn dag_pb(data: Data, links: Vec<PbLink>) -> Vec<u8> {
    PbNode { links, data: Some(data.to_bytes().into()) }.into_bytes()
}

/// Why [`import_reader`] stopped.
#[derive(Debug)]
pub enum ReadError<E> {
    /// Reading the input failed.
    Read(io::Error),
    /// The sink refused a block.
    Sink(E),
}

/// Imports everything `input` yields as one file. Leaves are hashed on worker threads
/// while this thread reads chunks and stores finished leaves, in file order, so hashing
/// (the costly part) runs on every core; `progress` hears of every byte read. Inputs of at
/// most two chunks (`len_hint`) skip the threads.
pub fn import_reader<S: BlockSink + ?Sized>(
    opts: &ImportOptions,
    meta: Metadata,
    input: &mut dyn Read,
    len_hint: Option<u64>,
    sink: &mut S,
    progress: &mut dyn FnMut(u64),
) -> Result<LinkInfo, ReadError<S::Error>> {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, mpsc};

    let size = opts.chunk_size;
    let mut importer = FileImporter::new(opts, meta);
    let mut read_chunk = |input: &mut dyn Read| -> Result<Option<Chunk>, ReadError<S::Error>> {
        let mut c = Chunk::with_capacity(size);
        let n = c.fill_from(input, size).map_err(ReadError::Read)?;
        progress(n as u64);
        Ok((n > 0).then_some(c))
    };
    if len_hint.is_some_and(|len| len <= 2 * size as u64) {
        while let Some(c) = read_chunk(input)? {
            importer.push_leaf(encode_leaf(opts, c), sink).map_err(ReadError::Sink)?;
        }
        return importer.finish(sink).map_err(ReadError::Sink);
    }
    let hashers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    let window = 4 * hashers;
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Chunk)>(window);
    let job_rx = Mutex::new(job_rx);
    std::thread::scope(|s| {
        let (done_tx, done_rx) = mpsc::channel::<(u64, Leaf)>();
        for _ in 0..hashers {
            let (job_rx, done_tx) = (&job_rx, done_tx.clone());
            s.spawn(move || {
                while let Ok((seq, chunk)) = job_rx.lock().expect("lock poisoned").recv() {
                    if done_tx.send((seq, encode_leaf(opts, chunk))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let (mut sent, mut pushed, mut eof) = (0u64, 0u64, false);
        let mut ready = BTreeMap::new();
        loop {
            while !eof && sent - pushed < window as u64 {
                match read_chunk(input)? {
                    Some(c) => {
                        eof = c.len() < size;
                        job_tx.send((sent, c)).expect("hashers outlive the job queue");
                        sent += 1;
                    }
                    None => eof = true,
                }
            }
            if eof && pushed == sent {
                break;
            }
            let (seq, leaf) = done_rx.recv().expect("hashers outlive the job queue");
            ready.insert(seq, leaf);
            while let Some(leaf) = ready.remove(&pushed) {
                importer.push_leaf(leaf, sink).map_err(ReadError::Sink)?;
                pushed += 1;
            }
        }
        drop(job_tx);
        importer.finish(sink).map_err(ReadError::Sink)
    })
}

/// Imports a whole in-memory file (convenience for small inputs and tests).
pub fn import_bytes<S: BlockSink + ?Sized>(
    opts: &ImportOptions,
    meta: Metadata,
    bytes: &[u8],
    sink: &mut S,
) -> Result<LinkInfo, S::Error> {
    let mut f = FileImporter::new(opts, meta);
    f.push(bytes, sink)?;
    f.finish(sink)
}

/// Imports a symlink pointing at `target`.
pub fn import_symlink<S: BlockSink + ?Sized>(
    opts: &ImportOptions,
    target: &[u8],
    meta: Metadata,
    sink: &mut S,
) -> Result<LinkInfo, S::Error> {
    let mut data = Data::new(DataType::Symlink);
    data.data = Some(Bytes::copy_from_slice(target));
    data.mode = meta.mode;
    data.mtime = meta.mtime;
    let block = Block::encode(opts.cid_version, DAG_PB, dag_pb(data, vec![])).expect("importer options are validated");
    let info = LinkInfo { cid: *block.cid(), tsize: block.data().len() as u64, filesize: 0 };
    sink.put(block)?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_place_leaf_framing_equals_the_general_encoder() {
        let opts = ImportOptions::default();
        for n in [0usize, 1, 127, 128, 16_383, 16_384, 262_144, 1 << 20, 2 << 20] {
            let data: Vec<u8> = (0..n).map(|i| (i * 31 % 256) as u8).collect();
            let mut chunk = Chunk::with_capacity(n);
            chunk.extend(&data);
            let fast = encode_leaf(&opts, chunk);
            let slow = leaf_node(Bytes::from(data), Metadata::default());
            assert_eq!(fast.block.data().as_ref(), &slow[..], "size {n}");
            assert_eq!(fast.filesize, n as u64);
        }
    }

    #[test]
    fn fill_from_reads_up_to_size_across_short_reads() {
        struct Trickle(Vec<u8>);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(3).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Ok(n)
            }
        }
        let mut r = Trickle((0..20).collect());
        let mut c = Chunk::with_capacity(8);
        assert_eq!(c.fill_from(&mut r, 8).unwrap(), 8);
        assert_eq!(c.data(), &[0, 1, 2, 3, 4, 5, 6, 7]);
        let mut c = Chunk::with_capacity(100);
        c.fill_from(&mut r, 100).unwrap();
        assert_eq!(c.data(), &(8..20).collect::<Vec<u8>>()[..]);
    }

    #[test]
    fn the_threaded_reader_import_equals_byte_pushing() {
        let opts = ImportOptions { chunk_size: 1000, max_links: 3, ..Default::default() };
        let data: Vec<u8> = (0..25_500u32).map(|i| (i % 251) as u8).collect();
        let mut a = Vec::new();
        let want = import_bytes(&opts, Metadata::default(), &data, &mut a).unwrap();
        for hint in [None, Some(data.len() as u64), Some(1)] {
            let mut b = Vec::new();
            let mut read = 0;
            let got =
                import_reader(&opts, Metadata::default(), &mut &data[..], hint, &mut b, &mut |n| read += n).unwrap();
            assert_eq!(got, want, "{hint:?}");
            assert_eq!(a, b, "same blocks in the same order");
            assert_eq!(read, data.len() as u64);
        }
    }

    #[test]
    fn leaf_by_leaf_equals_byte_pushing() {
        let opts = ImportOptions { chunk_size: 1000, max_links: 3, ..Default::default() };
        let data: Vec<u8> = (0..10_500u32).map(|i| (i % 253) as u8).collect();
        let mut a = Vec::new();
        let want = import_bytes(&opts, Metadata::default(), &data, &mut a).unwrap();
        let mut b = Vec::new();
        let mut f = FileImporter::new(&opts, Metadata::default());
        for piece in data.chunks(1000) {
            let mut c = Chunk::with_capacity(1000);
            c.extend(piece);
            f.push_leaf(encode_leaf(&opts, c), &mut b).unwrap();
        }
        assert_eq!(f.finish(&mut b).unwrap(), want);
        assert_eq!(a, b);
    }
}
