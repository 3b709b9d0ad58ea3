//! Which of the user's segments go cold, and when.
//!
//! A segment may go cold (its file deleted, see `store::cold`) only when its piece is
//! *held* — `confirmed` or `proving` in our data set — by at least `replicas` distinct
//! providers. Never an unsealed segment, one without a piece, or an under-replicated one.
//!
//! Two ways in: `--local-cap SIZE` (the mount and daemon keep the user's local segment
//! bytes under it, least recently read segment first, after each replication round), and
//! `cidfs evict --all-replicated` (every eligible segment, now; through a running mount's
//! control socket when mounted).

use std::collections::{HashMap, HashSet};

use super::replicate::table;
use crate::store::{ColdReport, Store, StoreError};

/// Segments that may go cold now, least recently read first: (segment, bytes).
pub fn eligible(store: &Store, replicas: usize) -> Result<Vec<(u32, u64)>, StoreError> {
    let mut holders: HashMap<String, HashSet<String>> = HashMap::new();
    for r in table::replicas(store)? {
        if r.state.is_held() {
            holders.entry(r.piece).or_default().insert(r.provider);
        }
    }
    let cold = store.cold_segments()?;
    let mut out: Vec<(u32, u64)> = store
        .pieces()?
        .into_iter()
        .filter(|p| !cold.contains(&p.segment))
        .filter(|p| holders.get(&p.piece.to_string()).is_some_and(|h| h.len() >= replicas.max(1)))
        .map(|p| (p.segment, p.payload_size))
        .collect();
    out.sort_by_key(|(s, _)| store.segment_read_stamp(*s));
    Ok(out)
}

/// What an eviction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvictSummary {
    pub segments: u64,
    pub blocks: u64,
    pub bytes: u64,
    pub hot_copies: u64,
}

impl EvictSummary {
    fn add(&mut self, r: ColdReport) {
        self.segments += 1;
        self.blocks += r.blocks;
        self.bytes += r.bytes;
        self.hot_copies += r.hot_copies;
    }

    pub fn text(&self) -> String {
        format!(
            "evicted {} segments ({} blocks, {}); {} hot copies dropped",
            self.segments,
            self.blocks,
            crate::block::human_bytes(self.bytes),
            self.hot_copies
        )
    }
}

/// Makes every eligible segment cold; `progress` hears of each one's bytes, out of the
/// total it was told first.
pub fn evict_all_replicated(
    store: &Store,
    replicas: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<EvictSummary, StoreError> {
    let mut sum = EvictSummary::default();
    let segments = eligible(store, replicas)?;
    progress(Progress::Total(segments.iter().map(|(_, b)| b).sum()));
    for (segment, bytes) in segments {
        sum.add(store.make_cold(segment)?);
        progress(Progress::Done(bytes));
    }
    Ok(sum)
}

/// How far an eviction pass is.
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    /// Bytes of the segments it will evict.
    Total(u64),
    /// One more segment's bytes evicted.
    Done(u64),
}

/// Makes eligible segments cold, least recently read first, until the user's local
/// segment bytes are at most `cap` (or nothing more may go).
pub fn evict_to_cap(store: &Store, cap: u64, replicas: usize) -> Result<EvictSummary, StoreError> {
    let mut sum = EvictSummary::default();
    let mut local = store.cold_usage()?.local_bytes;
    if local <= cap {
        return Ok(sum);
    }
    for (segment, _) in eligible(store, replicas)? {
        if local <= cap {
            break;
        }
        let r = store.make_cold(segment)?;
        local = local.saturating_sub(r.bytes);
        sum.add(r);
    }
    if local > cap {
        log::debug!(
            "local data is {} over --local-cap: the rest is not yet at its replicas",
            crate::block::human_bytes(local - cap)
        );
    }
    Ok(sum)
}
