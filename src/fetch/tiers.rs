//! The remote tiers: bitswap peers (the embedded IPFS node) and trustless HTTP gateways.
//! Each adapts its client to [`Tier`]; Filecoin retrieval will be one more file here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cid::Cid;

use super::Tier;
use crate::block::Block;
use crate::block::human_bytes;
use crate::ipfs::Node;
use crate::ipfs::gateway::{Fetched, Gateways};

/// Connected IPFS peers, over bitswap (with DHT provider lookups).
pub struct BitswapTier(pub Arc<Node>);

impl Tier for BitswapTier {
    fn name(&self) -> &'static str {
        "bitswap"
    }

    fn get(&self, cid: &Cid, deadline: Instant) -> Result<Block, String> {
        self.0.get(cid, deadline.saturating_duration_since(Instant::now())).map_err(|e| e.to_string())
    }

    /// Peers answer within a round trip when they have a block: a gateway asked at once
    /// would download most blocks twice.
    fn head_start(&self) -> Option<Duration> {
        Some(crate::ipfs::node::HEAD_START)
    }

    fn delivered_elsewhere(&self, block: &Block) {
        self.0.delivered_elsewhere(block);
    }
}

/// Trustless HTTP gateways (`--gateway`), tried in the order given.
pub struct GatewayTier(pub Gateways);

impl Tier for GatewayTier {
    fn name(&self) -> &'static str {
        "gateways"
    }

    fn get(&self, cid: &Cid, _deadline: Instant) -> Result<Block, String> {
        match self.0.fetch(cid) {
            Fetched::Block { block, gateway } => {
                log::debug!("{cid} from gateway {gateway}");
                Ok(block)
            }
            Fetched::Missing { errors, .. } if errors.is_empty() => Err("no gateway has it".into()),
            Fetched::Missing { tried, errors } => {
                log::debug!("{cid}: {tried} gateways asked, none had it: {}", errors.join("; "));
                Err(format!("gateways failed: {} (check --gateway)", errors.join("; ")))
            }
        }
    }

    fn report(&self) -> Option<String> {
        let g = self.0.stats();
        Some(format!(
            "gateways: {} blocks ({}); gateways dropped for bad blocks: {}; failed requests: {}",
            g.blocks,
            human_bytes(g.bytes),
            g.liars,
            g.failures
        ))
    }
}
