//! The importer: bytes and directory entries in, UnixFS blocks out. Pure: it never touches
//! the filesystem or the store; blocks go to a [`BlockSink`] as soon as they exist, so
//! memory stays bounded by one chunk plus one pending link list per tree level.
//!
//! Defaults reproduce Kubo's `ipfs add` byte for byte (CIDv0, dag-pb leaves, 262144-byte
//! fixed chunks, balanced layout of at most 174 links, HAMT sharding when a directory's
//! links estimate reaches 256 KiB); the vectors in `tests/vectors/unixfs.tsv` prove it.

pub mod dir;
pub mod file;
pub mod sparse;

use cid::{Cid, Version};

use crate::block::Block;
pub use dir::DirBuilder;
pub use file::FileImporter;

/// Where the importer puts the blocks it makes.
pub trait BlockSink {
    type Error;
    fn put(&mut self, block: Block) -> Result<(), Self::Error>;
}

impl BlockSink for Vec<Block> {
    type Error = std::convert::Infallible;
    fn put(&mut self, block: Block) -> Result<(), Self::Error> {
        self.push(block);
        Ok(())
    }
}

/// A finished node as its parent links to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub cid: Cid,
    /// Cumulative size: this block plus every block below it (dag-pb `Tsize`).
    pub tsize: u64,
    /// File bytes below this node (0 for directories).
    pub filesize: u64,
}

/// When a directory becomes a HAMT: Kubo shards at `estimate >= threshold`, the JS
/// importer at `estimate > threshold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardRule {
    AtLeast,
    MoreThan,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    pub cid_version: Version,
    pub raw_leaves: bool,
    pub chunk_size: usize,
    pub max_links: usize,
    /// Links estimate (sum of name bytes + CID bytes) at which a directory is sharded.
    pub hamt_threshold: usize,
    pub hamt_fanout: u64,
    pub shard_rule: ShardRule,
}

/// Largest chunk size accepted: a chunk must fit in a block.
pub const MAX_CHUNK_SIZE: usize = 1 << 21;

impl Default for ImportOptions {
    /// Kubo's `ipfs add` defaults.
    fn default() -> Self {
        ImportOptions {
            cid_version: Version::V0,
            raw_leaves: false,
            chunk_size: 262_144,
            max_links: 174,
            hamt_threshold: 262_144,
            hamt_fanout: 256,
            shard_rule: ShardRule::AtLeast,
        }
    }
}

impl ImportOptions {
    /// Kubo `ipfs add --cid-version=1` (which implies raw leaves).
    pub fn kubo_v1() -> Self {
        ImportOptions { cid_version: Version::V1, raw_leaves: true, ..Default::default() }
    }

    /// The unixfs-v1-2025 profile: CIDv1, raw leaves, 1 MiB chunks, 1024 links per node.
    pub fn unixfs_v1_2025() -> Self {
        ImportOptions {
            cid_version: Version::V1,
            raw_leaves: true,
            chunk_size: 1 << 20,
            max_links: 1024,
            ..Default::default()
        }
    }

    /// Checks the options are ones that produce valid DAGs.
    pub fn validate(&self) -> Result<(), String> {
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return Err(format!("chunk size must be between 1 and {MAX_CHUNK_SIZE} bytes"));
        }
        if self.max_links < 2 {
            return Err("a node needs room for at least 2 links".into());
        }
        if crate::unixfs::hamt::bit_width(self.hamt_fanout) != Some(8) {
            return Err("only HAMT fanout 256 is supported".into());
        }
        Ok(())
    }

    /// Parses a Kubo chunker spec (`size-N`).
    pub fn parse_chunker(spec: &str) -> Result<usize, String> {
        let n = spec
            .strip_prefix("size-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| format!("unsupported chunker {spec:?}: use size-N"))?;
        if n == 0 || n > MAX_CHUNK_SIZE {
            return Err(format!("chunker {spec:?}: size must be between 1 and {MAX_CHUNK_SIZE}"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunker_specs() {
        assert_eq!(ImportOptions::parse_chunker("size-1024"), Ok(1024));
        assert!(ImportOptions::parse_chunker("rabin").is_err());
        assert!(ImportOptions::parse_chunker("size-0").is_err());
        assert!(ImportOptions::parse_chunker("size-99999999").is_err());
    }
}
