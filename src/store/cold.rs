//! Cold segments: the user's data whose only full copy is its Filecoin piece.
//!
//! Once a sealed segment's piece is held by enough providers (the Filecoin side decides;
//! see `crate::filecoin::cold`), [`Store::make_cold`] deletes the segment file and keeps
//! where each of its blocks lies in the piece:
//!
//! ```text
//!  cold_blocks_v1:   CID -> (segment, data offset, length, kind)   as blocks_v1 had it
//!  cold_segments_v1: segment -> unix time it went cold
//! ```
//!
//! A cold block has no `blocks_v1` entry, so [`Store::get`] does not hold it and the read
//! path asks its tiers, the Filecoin tier last, which finds the block's piece range with
//! [`Store::cold_location`]. A fetched copy is cached like any fetched block (a cache
//! segment, a `blocks_v1` entry) and may be evicted again; the cold entry stays, so the
//! piece location is never lost.
//!
//! Blocks that link to others (directories, files' inner nodes) are not made cold: they
//! are copied into the active main segment first. They are a sliver of the bytes, and
//! keeping them means listings, `stat`, gc's reachability walk and audits never need a
//! paid read; only file contents are cold.
//!
//! Order of a [`Store::make_cold`]: (1) a main batch copies the linking blocks (durable
//! commit); (2) one transaction moves the segment's remaining entries to `cold_blocks_v1`
//! and marks the segment cold; (3) the file is unlinked. A crash after (1) leaves a
//! segment that is simply made cold again later; after (2), a file the index no longer
//! reads, which the next open deletes.

use std::collections::HashSet;
use std::fs;

use cid::Cid;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{BLOCKS, Location, SEGMENTS, Store, StoreError, cid_from_key, io_err, key, unix_now};
use crate::block::{Block, Kind, links};

pub(super) const COLD_BLOCKS: TableDefinition<&[u8], (u32, u64, u32, u8)> = TableDefinition::new("cold_blocks_v1");
pub(super) const COLD_SEGMENTS: TableDefinition<u32, u64> = TableDefinition::new("cold_segments_v1");

/// What [`Store::make_cold`] did to one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ColdReport {
    /// Blocks now only in the piece.
    pub blocks: u64,
    /// Linking blocks copied into the active segment to stay local.
    pub kept: u64,
    /// Bytes of the segment file deleted.
    pub bytes: u64,
    /// Hot copies of files with blocks in the segment, deleted.
    pub hot_copies: u64,
}

/// Local versus cold bytes of the user's data, for `cidfs status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ColdUsage {
    /// Segment files of the user's data on disk (cache segments excluded).
    pub local_bytes: u64,
    pub cold_segments: u64,
    /// Payload bytes of cold segments (held by providers only).
    pub cold_bytes: u64,
}

impl Store {
    /// Where a cold block lies in its segment's piece (`None`: not cold).
    pub fn cold_location(&self, cid: &Cid) -> Result<Option<Location>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(COLD_BLOCKS)?;
        Ok(t.get(key(cid).as_slice())?.map(|v| {
            let (segment, offset, len, kind) = v.value();
            Location { segment, offset, len, kind: Kind::from_u8(kind) }
        }))
    }

    /// Whether `segment` is cold (its file deleted, its piece the only copy).
    pub fn is_cold(&self, segment: u32) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(COLD_SEGMENTS)?.get(segment)?.is_some())
    }

    /// Every cold segment.
    pub fn cold_segments(&self) -> Result<HashSet<u32>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(COLD_SEGMENTS)?;
        t.iter()?.map(|r| r.map(|(k, _)| k.value()).map_err(StoreError::from)).collect()
    }

    /// Every cold block of `segment`, in piece order.
    pub fn cold_blocks_of(&self, segment: u32) -> Result<Vec<(Cid, Location)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(COLD_BLOCKS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let (seg, offset, len, kind) = v.value();
            if seg == segment {
                out.push((cid_from_key(k.value())?, Location { segment, offset, len, kind: Kind::from_u8(kind) }));
            }
        }
        out.sort_by_key(|(_, l)| l.offset);
        Ok(out)
    }

    pub fn cold_usage(&self) -> Result<ColdUsage, StoreError> {
        let txn = self.db.begin_read()?;
        let cold = txn.open_table(COLD_SEGMENTS)?;
        let cache = txn.open_table(super::CACHE_SEGMENTS)?;
        let mut u = ColdUsage::default();
        for row in txn.open_table(SEGMENTS)?.iter()? {
            let (id, v) = row?;
            let (id, len) = (id.value(), v.value().0);
            if cold.get(id)?.is_some() {
                u.cold_segments += 1;
                u.cold_bytes += len;
            } else if cache.get(id)?.is_none() {
                u.local_bytes += len;
            }
        }
        Ok(u)
    }

    /// Makes a sealed main segment cold (see the module docs). The caller has checked that
    /// its piece is safely held elsewhere; this refuses a segment that is not sealed, is a
    /// cache segment, or has no piece.
    pub fn make_cold(&self, segment: u32) -> Result<ColdReport, StoreError> {
        let refuse = |why: &str| Err(StoreError::Db(format!("segment {segment} cannot go cold: {why}")));
        {
            let txn = self.db.begin_read()?;
            match txn.open_table(SEGMENTS)?.get(segment)?.map(|v| v.value()) {
                None => return refuse("no such segment"),
                Some((_, _, false)) => return refuse("not sealed"),
                Some(_) => {}
            }
            if txn.open_table(super::CACHE_SEGMENTS)?.get(segment)?.is_some() {
                return refuse("a cache segment");
            }
            if txn.open_table(COLD_SEGMENTS)?.get(segment)?.is_some() {
                return Ok(ColdReport::default());
            }
            if txn.open_table(super::pieces::PIECES)?.get(segment)?.is_none() {
                return refuse("no piece");
            }
        }
        // the segment's own sections say which blocks to look up (no scan of the index)
        let here: Vec<(Cid, Location)> = match super::evict::segment_cids(&self.segment_path(segment)) {
            Ok(cids) => {
                let mut here = Vec::with_capacity(cids.len());
                for cid in cids {
                    if let Some(loc) = self.location(&cid)?.filter(|l| l.segment == segment) {
                        here.push((cid, loc));
                    }
                }
                here
            }
            Err(e) => {
                log::warn!("segment {segment}: cannot list its blocks ({e}); scanning the index instead");
                self.blocks()?.into_iter().filter(|(_, l)| l.segment == segment).collect()
            }
        };
        let mut report = ColdReport::default();
        // (1) linking blocks stay local
        let mut batch = self.batch();
        let mut cold_cids = HashSet::new();
        for (cid, loc) in &here {
            let data = self.read_at(*loc)?;
            if cid.codec() != crate::block::RAW && links(cid, &data).is_ok_and(|l| !l.is_empty()) {
                let block = Block::verified(*cid, data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                batch.relocate(&block)?;
                report.kept += 1;
            } else {
                cold_cids.insert(*cid);
            }
        }
        batch.commit()?;
        // (2) the rest is only in the piece from now on
        let (writers, txn) = self.begin_durable()?;
        {
            let mut blocks = txn.open_table(BLOCKS)?;
            let mut cold = txn.open_table(COLD_BLOCKS)?;
            for cid in &cold_cids {
                let k = key(cid);
                let v = blocks.get(k.as_slice())?.map(|v| v.value());
                if let Some(v) = v.filter(|v| v.0 == segment) {
                    cold.insert(k.as_slice(), v)?;
                    blocks.remove(k.as_slice())?;
                    report.blocks += 1;
                }
            }
            txn.open_table(COLD_SEGMENTS)?.insert(segment, unix_now())?;
        }
        txn.commit()?;
        drop(writers);
        // (3) the file goes
        let path = self.segment_path(segment);
        report.bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        self.forget_file(segment);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&path)(e)),
            _ => {}
        }
        self.segment_reads.lock().expect("lock poisoned").remove(&segment);
        // hot copies of files with blocks in it go too: the drive is meant to be lighter
        let touches = |file: &Cid| self.dag_has_any(file, &cold_cids);
        report.hot_copies = self.hot.retain(|c| !touches(c)).0;
        log::info!(
            "segment {segment} is cold: {} blocks only in its piece, {} linking blocks kept, {} bytes freed",
            report.blocks,
            report.kept,
            report.bytes
        );
        Ok(report)
    }

    /// Whether the DAG under `root`, walked through the blocks held locally, reaches any
    /// of `cids`.
    fn dag_has_any(&self, root: &Cid, cids: &HashSet<Cid>) -> bool {
        let mut stack = vec![*root];
        let mut seen = HashSet::new();
        while let Some(c) = stack.pop() {
            if cids.contains(&c) {
                return true;
            }
            if !seen.insert(c) || c.codec() == crate::block::RAW {
                continue;
            }
            if let Ok(Some(data)) = self.get(&c) {
                stack.extend(links(&c, &data).unwrap_or_default());
            }
        }
        false
    }

    /// Stamps a read from a main segment (for least-recently-read eviction).
    pub(super) fn touch_segment(&self, segment: u32) {
        let stamp = self.read_clock.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.segment_reads.lock().expect("lock poisoned").insert(segment, stamp);
    }

    /// When `segment` was last read: a stamp that grows with every read since the open;
    /// a segment not read since sorts by its number (older first).
    pub fn segment_read_stamp(&self, segment: u32) -> u64 {
        self.segment_reads.lock().expect("lock poisoned").get(&segment).copied().unwrap_or(u64::from(segment))
    }
}
