//! UnixFS over dag-pb, raw leaves and dag-cbor: the pure codec, and readers that walk DAGs
//! through the [`Blocks`](crate::fetch::Blocks) interface without doing I/O of their own.
//!
//! - [`pb`]: the UnixFS `Data` protobuf, byte-compatible with go-unixfs.
//! - [`node`]: a block decoded into a [`Node`] (file, directory, HAMT shard, symlink,
//!   dag-cbor), validated so readers can trust sizes.
//! - [`file`]: range reads that visit only the blocks covering the range.
//! - [`dir`]: listing and lookup in plain and HAMT directories and dag-cbor values.
//! - [`path`]: resolving `CID/a/b` paths.

pub mod dir;
pub mod file;
pub mod hamt;
pub mod json;
pub mod node;
pub mod path;
pub mod pb;

use std::sync::Arc;

use cid::Cid;

use crate::fetch::{Blocks, FetchError};
pub use json::dag_json;
pub use node::{DecodeError, FileChild, FileNode, Link, Metadata, Node, ShardNode, decode};

/// Errors from reading UnixFS DAGs, each naming the CID or path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum UnixfsError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{cid}: {source}")]
    Decode { cid: Cid, source: Box<DecodeError> },
    /// The consumer of a read (an output file, a pipe) failed.
    #[error("writing output: {0}")]
    Output(std::io::Error),
    #[error("{cid}: DAG is deeper than {} levels", file::MAX_DEPTH)]
    TooDeep { cid: Cid },
    #[error("{path}: no such file or directory")]
    NoSuchEntry { path: String },
    #[error("{cid}: not a directory")]
    NotADirectory { cid: Cid },
    #[error("{cid}: is a directory")]
    IsADirectory { cid: Cid },
}

/// Fetches and decodes the block `cid`.
pub fn load(blocks: &dyn Blocks, cid: &Cid) -> Result<Node, UnixfsError> {
    let data = blocks.get(cid)?;
    decode(cid, &data).map_err(|source| UnixfsError::Decode { cid: *cid, source: Box::new(source) })
}

/// Where readers get decoded nodes. Every [`Blocks`] is one (decoding on each call); a
/// cache of decoded nodes (the mount's) is another, so hot directory shards and internal
/// file nodes are parsed once.
pub trait Nodes {
    fn node(&self, cid: &Cid) -> Result<Arc<Node>, UnixfsError>;

    /// A reader is about to ask for these nodes, in this order (see [`Blocks::will_need`]).
    fn will_need(&self, _cids: &[Cid]) {}
}

impl<B: Blocks + ?Sized> Nodes for B {
    fn node(&self, cid: &Cid) -> Result<Arc<Node>, UnixfsError> {
        let data = self.get(cid)?;
        let node = decode(cid, &data).map_err(|source| UnixfsError::Decode { cid: *cid, source: Box::new(source) })?;
        Ok(Arc::new(node))
    }

    fn will_need(&self, cids: &[Cid]) {
        Blocks::will_need(self, cids);
    }
}
