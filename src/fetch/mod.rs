//! One `Blocks` interface with tiers behind it ([`Tiered`]): the local store, then an
//! ordered list of remote [`Tier`]s — bitswap peers, trustless gateways (`tiers.rs`), and
//! Filecoin retrieval of evicted blocks (`crate::filecoin::retrieve`), paid, last. Every
//! block a tier returns is verified against its CID before it is cached or returned.
//!
//! Identity CIDs are answered here, from the CID itself, by every implementation.

use bytes::Bytes;
use cid::Cid;

use crate::block::{Block, Kind, kind};
use crate::store::{Store, StoreError};

mod tiered;
mod tiers;
pub use tiered::{TierStats, Tiered};
pub use tiers::{BitswapTier, GatewayTier};

/// A place blocks come from after the local store. [`Tiered`] asks its tiers in order:
/// each has the block to itself for its [`head_start`](Tier::head_start), then the next
/// is asked too, and the first verified block wins.
pub trait Tier: Send + Sync {
    /// What `cidfs status` and error messages call it.
    fn name(&self) -> &'static str;

    /// `cid`'s block, verified against it, if this tier delivers it by `deadline`;
    /// otherwise why not (said once the others failed too).
    fn get(&self, cid: &Cid, deadline: std::time::Instant) -> Result<Block, String>;

    /// How long this tier has alone before the next one is asked as well; `None`: the next
    /// is asked only once this one has failed.
    fn head_start(&self) -> Option<std::time::Duration> {
        None
    }

    /// Whether asking costs money: such a tier is asked only once every tier before it
    /// failed, never raced against them.
    fn paid(&self) -> bool {
        false
    }

    /// A reader will likely want these blocks soon (they are being prefetched): a tier
    /// that can bring several in one request may join them (the default does nothing).
    fn hint(&self, _cids: &[Cid]) {}

    /// Another tier delivered `block`: stop looking for it (the default does nothing).
    fn delivered_elsewhere(&self, _block: &Block) {}

    /// A line for `cidfs status`, if this tier has one of its own.
    fn report(&self) -> Option<String> {
        None
    }
}

/// Why a block could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("not found locally: {0} (add or import the data that contains it, then retry)")]
    NotFound(Cid),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{cid}: not in the local store, and no remote tier delivered it: {reason}")]
    Unavailable { cid: Cid, reason: String },
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

    /// A reader is about to ask for these blocks itself, in order (a read spanning several
    /// leaves): a remote tier may bring them in one request when the first is asked for.
    /// Nothing is fetched by this call; the default does nothing.
    fn will_need(&self, _cids: &[Cid]) {}

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
