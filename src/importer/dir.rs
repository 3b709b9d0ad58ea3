//! Directories: a plain UnixFS directory, or a HAMT shard tree once the links estimate
//! reaches the threshold (Kubo's rule: sum of UTF-8 name bytes + CID bytes).
//!
//! A freshly built HAMT is canonical: a bucket holding one entry links to it directly
//! (named `XX` + entry name), a bucket holding several links to a child shard (named `XX`)
//! that sorts them by the next 8 bits of their hash.

use std::collections::BTreeMap;

use bytes::Bytes;
use ipld_dagpb::PbLink;

use super::file::dag_pb;
use super::{BlockSink, ImportOptions, LinkInfo, ShardRule};
use crate::block::{Block, DAG_PB};
use crate::unixfs::pb::{Data, DataType};
use crate::unixfs::{Metadata, hamt};

#[derive(Default)]
pub struct DirBuilder {
    entries: BTreeMap<String, LinkInfo>,
    meta: Metadata,
}

impl DirBuilder {
    pub fn new(meta: Metadata) -> Self {
        DirBuilder { entries: BTreeMap::new(), meta }
    }

    /// Adds (or replaces) an entry. The caller guarantees `name` is a safe path component.
    pub fn insert(&mut self, name: String, link: LinkInfo) {
        self.entries.insert(name, link);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The estimate Kubo compares with the sharding threshold.
    pub fn links_estimate(&self) -> usize {
        self.entries.iter().map(|(name, l)| name.len() + l.cid.encoded_len()).sum()
    }

    fn should_shard(&self, opts: &ImportOptions) -> bool {
        let est = self.links_estimate();
        match opts.shard_rule {
            ShardRule::AtLeast => est >= opts.hamt_threshold,
            ShardRule::MoreThan => est > opts.hamt_threshold,
        }
    }

    pub fn finish<S: BlockSink + ?Sized>(self, opts: &ImportOptions, sink: &mut S) -> Result<LinkInfo, S::Error> {
        if self.should_shard(opts) {
            let mut entries: Vec<(u64, &String, &LinkInfo)> =
                self.entries.iter().map(|(n, l)| (hamt::hash_name(n.as_bytes()), n, l)).collect();
            entries.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            return build_shard(opts, &entries, 0, self.meta, sink);
        }
        let mut data = Data::new(DataType::Directory);
        data.mode = self.meta.mode;
        data.mtime = self.meta.mtime;
        let links = self
            .entries
            .iter()
            .map(|(name, l)| PbLink { cid: l.cid, name: Some(name.clone()), size: Some(l.tsize) })
            .collect();
        emit(opts, data, links, self.entries.values().map(|l| l.tsize).sum(), sink)
    }
}

fn emit<S: BlockSink + ?Sized>(
    opts: &ImportOptions,
    data: Data,
    links: Vec<PbLink>,
    child_tsize: u64,
    sink: &mut S,
) -> Result<LinkInfo, S::Error> {
    let block = Block::encode(opts.cid_version, DAG_PB, dag_pb(data, links)).expect("importer options are validated");
    let info = LinkInfo { cid: *block.cid(), tsize: block.data().len() as u64 + child_tsize, filesize: 0 };
    sink.put(block)?;
    Ok(info)
}

/// Builds the shard at `depth` over `entries` (sorted by hash, so buckets are contiguous).
fn build_shard<S: BlockSink + ?Sized>(
    opts: &ImportOptions,
    entries: &[(u64, &String, &LinkInfo)],
    depth: usize,
    meta: Metadata,
    sink: &mut S,
) -> Result<LinkInfo, S::Error> {
    let bits = hamt::bit_width(opts.hamt_fanout).expect("importer options are validated");
    let mut bitfield = vec![0u8; (opts.hamt_fanout as usize).div_ceil(8)];
    let mut links = Vec::new();
    let mut child_tsize = 0;
    let mut rest = entries;
    while let Some(first) = rest.first() {
        let bucket_of = |e: &(u64, &String, &LinkInfo)| hamt::bucket(e.0, depth, bits);
        let bucket = bucket_of(first).expect("distinct names with equal 64-bit hashes need a deeper hash");
        let n = rest.iter().take_while(|e| bucket_of(e) == Some(bucket)).count();
        let (group, tail) = rest.split_at(n);
        rest = tail;
        let last = bitfield.len() - 1;
        bitfield[last - bucket / 8] |= 1 << (bucket % 8);
        let prefix = hamt::prefix(bucket, bits);
        let (name, link) = if let [(_, name, link)] = group {
            (format!("{prefix}{name}"), **link)
        } else {
            (prefix, build_shard(opts, group, depth + 1, Metadata::default(), sink)?)
        };
        child_tsize += link.tsize;
        links.push(PbLink { cid: link.cid, name: Some(name), size: Some(link.tsize) });
    }
    let mut data = Data::new(DataType::HamtShard);
    data.data = Some(Bytes::from(trim_leading_zeros(bitfield)));
    data.hash_type = Some(hamt::MURMUR3_X64_64);
    data.fanout = Some(opts.hamt_fanout);
    data.mode = meta.mode;
    data.mtime = meta.mtime;
    emit(opts, data, links, child_tsize, sink)
}

/// go-bitfield's `Bytes()` drops leading zero bytes (it mirrors `big.Int.Bytes()`).
fn trim_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}
