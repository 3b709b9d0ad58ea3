//! Content under a CID, as the mount reads it: decoded nodes kept in a bounded cache,
//! file ranges read leaf by leaf (with read-ahead for files that stream from the network),
//! attributes from a node and its metadata, and the hot-copy bookkeeping of what was read.
//!
//! Both the content namespaces (`/.ipfs`, `/.snapshots`) and the drive's committed files
//! read through one [`Content`], so they share its cache and its hot copies.

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use cid::Cid;
use ipld_core::ipld::Ipld;
use lru::LruCache;

use super::hot::Hot;
use super::{Attr, DEFAULT_MTIME, FileKind, VfsError, scalar_attr, slice_text, unix_time};
use crate::block::Kind;
use crate::fetch::Blocks;
use crate::unixfs::{self, Node, Nodes, UnixfsError, file};

/// Blocks fetched ahead of a reader of a file that streams from the network: at first
/// [`PREFETCH_MIN`] (2 MiB of Kubo's 256 KiB leaves), then as many leaves as the reader
/// has read of it so far, up to [`PREFETCH_MAX`] (16 MiB). Like the kernel's read-ahead,
/// it grows with the evidence of a long read: a reader that stops early was fetched
/// ahead of by at most about what it read (what matters when reads are paid for), one
/// that reads on gets large windows (few, large requests).
const PREFETCH_MIN: usize = 8;
const PREFETCH_MAX: usize = 64;
/// Kubo's leaf size: how bytes read become a window in blocks.
const LEAF_GUESS: u64 = 256 << 10;
/// Bytes of decoded nodes kept in memory (weighed by [`node_weight`]).
pub(super) const NODE_CACHE_BYTES: usize = 16 << 20;
/// File leaves larger than this are not cached as decoded nodes: a streamed file would
/// push everything else out, and the store's block cache already holds recent blocks.
const MAX_CACHED_LEAF: usize = 64 << 10;

pub(super) struct Content {
    pub(super) blocks: Arc<dyn Blocks>,
    nodes: Mutex<NodeCache>,
    /// Files whose reads went to the network lately: their reads prefetch ahead.
    /// (and how many bytes of each were read since)
    streaming: Mutex<LruCache<Cid, u64>>,
    /// Hot copies of whole files, if kept (see [`hot`](super::hot)).
    pub(super) hot: OnceLock<Hot>,
}

/// Decoded nodes, bounded by the bytes they hold.
struct NodeCache {
    map: LruCache<Cid, Arc<Node>>,
    bytes: usize,
}

/// Roughly the memory a decoded node holds.
fn node_weight(node: &Node) -> usize {
    64 + match node {
        Node::File(f) => f.data.len() + f.children.len() * 96,
        Node::Directory { links, .. } => links.len() * 128,
        Node::HamtShard(s) => s.links.len() * 128,
        Node::Symlink { target, .. } => target.len(),
        Node::Cbor(_) => 1024,
    }
}

impl Content {
    pub(super) fn new(blocks: Arc<dyn Blocks>) -> Content {
        Content {
            blocks,
            nodes: Mutex::new(NodeCache { map: LruCache::unbounded(), bytes: 0 }),
            streaming: Mutex::new(LruCache::new(std::num::NonZeroUsize::new(64).expect("non-zero"))),
            hot: OnceLock::new(),
        }
    }

    /// Whether blocks may come from the network (reads may wait on it).
    pub(super) fn has_network_tier(&self) -> bool {
        self.blocks.may_wait()
    }

    pub(super) fn node(&self, cid: &Cid) -> Result<Arc<Node>, VfsError> {
        Ok(Nodes::node(self, cid)?)
    }

    /// An entry's type without reading it. Unknown kinds (blocks not held locally) are
    /// shown as files; looking them up gives the truth (or the error).
    pub(super) fn kind_hint(&self, cid: &Cid) -> FileKind {
        match self.blocks.kind_hint(cid) {
            Some(Kind::Directory) => FileKind::Directory,
            Some(Kind::Symlink) => FileKind::Symlink,
            _ => FileKind::File,
        }
    }

    /// Reads from the content-addressed node `cid`.
    pub(super) fn read(&self, cid: &Cid, offset: u64, size: u32) -> Result<Vec<Bytes>, VfsError> {
        let cid = *cid;
        let node = self.node(&cid)?;
        match node.as_ref() {
            Node::File(f) => {
                // (without a network tier, reads skip the read-ahead bookkeeping entirely)
                let network = self.has_network_tier();
                let before = if network { self.blocks.remote_fetches() } else { 0 };
                let window = match network {
                    false => 0,
                    true => {
                        let read = self.streaming.lock().expect("lock poisoned").get(&cid).copied().unwrap_or(0);
                        ((read / LEAF_GUESS) as usize).clamp(PREFETCH_MIN, PREFETCH_MAX)
                    }
                };
                let mut out = Vec::new();
                let next = file::read_range_ahead(self, &cid, f, offset, u64::from(size), window, &mut |b| {
                    out.push(b.clone());
                    Ok(())
                })?;
                if let Some(hot) = self.hot.get() {
                    hot.note_read(&cid, f.size, offset, offset.saturating_add(u64::from(size)).min(f.size));
                }
                if !network {
                    return Ok(out);
                }
                // A file that needed the network streams from it: fetch ahead of the reader.
                let mut streaming = self.streaming.lock().expect("lock poisoned");
                if let Some(read) = streaming.get_mut(&cid) {
                    *read += u64::from(size);
                } else if self.blocks.remote_fetches() > before {
                    streaming.put(cid, u64::from(size));
                }
                if streaming.contains(&cid) {
                    drop(streaming);
                    self.blocks.prefetch(&next);
                }
                Ok(out)
            }
            Node::Cbor(v) if !matches!(v, Ipld::Map(_) | Ipld::List(_)) => slice_text(v, offset, size),
            Node::Symlink { .. } => Err(VfsError::NotFound("symlink has no content".into())),
            _ => Err(VfsError::IsADirectory),
        }
    }

    /// What `stat` shows of the node `cid`, as inode `ino`.
    pub(super) fn attr(&self, ino: u64, cid: &Cid) -> Result<Attr, VfsError> {
        let node = self.node(cid)?;
        let meta = node.meta();
        let mtime = meta.mtime.map_or(DEFAULT_MTIME, |t| unix_time(t.seconds, t.fractional_nanoseconds.unwrap_or(0)));
        let perm = |default: u16| meta.mode.map_or(default, |m| (m & 0o7777) as u16);
        let base = Attr::new(ino, FileKind::Directory, perm(0o555), mtime);
        Ok(match node.as_ref() {
            Node::File(f) => Attr {
                kind: FileKind::File,
                size: f.size,
                perm: perm(0o444),
                nlink: 1,
                blksize: self.chunk_size(f),
                ..base
            },
            Node::Directory { .. } | Node::HamtShard(_) | Node::Cbor(Ipld::Map(_) | Ipld::List(_)) => base,
            Node::Symlink { target, .. } => {
                Attr { kind: FileKind::Symlink, size: target.len() as u64, perm: 0o777, nlink: 1, ..base }
            }
            Node::Cbor(scalar) => scalar_attr(ino, scalar),
        })
    }

    /// The file's chunk size — its first leaf's size, never a subtree's — for
    /// `st_blksize` (programs size their reads by it: `cat` of a 16 GB file must not read
    /// 1 GiB at a time). The first children are followed down to a leaf: raw, or a dag-pb
    /// leaf, known from its link (a leaf's cumulative size is its own bytes plus a few
    /// bytes of framing; a subtree's holds whole nodes of links). Inner nodes are read
    /// anyway to read the file; a leaf never is, just for this.
    fn chunk_size(&self, f: &unixfs::FileNode) -> u32 {
        const LEAF_FRAMING: u64 = 64;
        let clamp = |n: u64| n.clamp(4096, 4 << 20) as u32;
        let mut held: Option<Arc<Node>> = None;
        for _ in 0..unixfs::file::MAX_DEPTH {
            let node = match held.as_deref() {
                Some(Node::File(n)) => n,
                _ => f,
            };
            let Some(first) = node.children.first() else { return clamp(node.data.len() as u64) };
            let leaf = first.cid.codec() == crate::block::RAW
                || (first.tsize >= first.size && first.tsize - first.size < LEAF_FRAMING);
            if leaf {
                return clamp(first.size);
            }
            match Nodes::node(self, &first.cid) {
                Ok(n) if matches!(n.as_ref(), Node::File(_)) => held = Some(n),
                // unreadable now: a guess no larger than any importer's chunk
                _ => return clamp(first.size.min(1 << 20)),
            }
        }
        clamp(1 << 20)
    }

    /// A drive file's written bytes (`file`) were just committed as the file `cid`, `len`
    /// bytes long, and will not be written again: they become its hot copy, if there is
    /// room (a link, nothing copied).
    pub(super) fn adopt_written(&self, cid: &Cid, len: u64, file: &std::fs::File) {
        if let Some(hot) = self.hot.get()
            && len >= super::HOT_MIN_BYTES
            && hot.copies.adopt(cid, len, file)
        {
            log::debug!("the written bytes of {cid} are its hot copy");
        }
    }

    #[cfg(test)]
    pub(super) fn cached_node_bytes(&self) -> usize {
        self.nodes.lock().expect("lock poisoned").bytes
    }
}

impl Nodes for Content {
    fn will_need(&self, cids: &[Cid]) {
        if self.has_network_tier() {
            self.blocks.will_need(cids);
        }
    }

    fn node(&self, cid: &Cid) -> Result<Arc<Node>, UnixfsError> {
        if let Some(n) = self.nodes.lock().expect("lock poisoned").map.get(cid) {
            return Ok(n.clone());
        }
        let node = self.blocks.as_ref().node(cid)?;
        let weight = node_weight(&node);
        let leaf = matches!(node.as_ref(), Node::File(f) if f.children.is_empty() && f.data.len() > MAX_CACHED_LEAF);
        if !leaf {
            let mut cache = self.nodes.lock().expect("lock poisoned");
            if let Some(old) = cache.map.put(*cid, node.clone()) {
                cache.bytes -= node_weight(&old);
            }
            cache.bytes += weight;
            while cache.bytes > NODE_CACHE_BYTES {
                match cache.map.pop_lru() {
                    Some((_, evicted)) => cache.bytes -= node_weight(&evicted),
                    None => break,
                }
            }
        }
        Ok(node)
    }
}
