//! One `Blocks` interface with tiers behind it: the local store, then IPFS peers
//! ([`Tiered`]); Filecoin retrieval slots in behind the same trait. Every block a tier
//! returns is verified against its CID before it is cached or returned.
//!
//! Identity CIDs are answered here, from the CID itself, by every implementation.

use bytes::Bytes;
use cid::Cid;

use crate::block::{Block, Kind, kind};
use crate::store::{Store, StoreError};

mod tiered;
pub use tiered::{TierStats, Tiered};

/// Why a block could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("not found locally: {0} (add or import the data that contains it, then retry)")]
    NotFound(Cid),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{cid}: not in the local store, and the IPFS network did not deliver it: {reason}")]
    Unavailable { cid: Cid, reason: String },
}

impl FetchError {
    pub fn errno(&self) -> i32 {
        match self {
            FetchError::NotFound(_) | FetchError::Unavailable { .. } => libc::EIO,
            FetchError::Store(e) => e.errno(),
        }
    }
}

/// Source of verified blocks.
pub trait Blocks: Send + Sync {
    /// The bytes of `cid`, verified against it.
    fn get(&self, cid: &Cid) -> Result<Bytes, FetchError>;

    /// What `cid` is, if known without fetching it (from an index, or an identity CID's
    /// inline bytes). Directory listings use this to type their entries.
    fn kind_hint(&self, cid: &Cid) -> Option<Kind> {
        Block::from_identity(cid).map(|b| kind(cid, b.data()))
    }

    /// A hint: these blocks are likely wanted soon. A tier that fetches remotely may start
    /// fetching them in the background; the default does nothing.
    fn prefetch(&self, _cids: &[Cid]) {}

    /// How many blocks came from a remote tier so far (readers use it to notice that a
    /// file streams from the network, and prefetch for it).
    fn remote_fetches(&self) -> u64 {
        0
    }

    /// Whether a `get` may wait on the network (callers keep such waits off threads that
    /// must stay responsive).
    fn may_wait(&self) -> bool {
        false
    }
}

impl Blocks for Store {
    fn get(&self, cid: &Cid) -> Result<Bytes, FetchError> {
        if let Some(b) = Block::from_identity(cid) {
            return Ok(b.into_data());
        }
        Store::get(self, cid)?.ok_or(FetchError::NotFound(*cid))
    }

    fn kind_hint(&self, cid: &Cid) -> Option<Kind> {
        match Block::from_identity(cid) {
            Some(b) => Some(kind(cid, b.data())),
            None => self.kind(cid).ok().flatten(),
        }
    }
}
