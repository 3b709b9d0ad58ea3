//! The fetch cache on disk, and its eviction.
//!
//! Blocks fetched from peers are written by [`Store::cache_batch`] into *cache segments*:
//! ordinary CAR segment files, listed in the `cache_segments_v1` table, that hold nothing
//! but fetched blocks. That separation is what makes a size cap cheap and safe:
//!
//! - **Cheap.** Eviction drops a whole segment: one index transaction removing the entries
//!   that still point into it, then one `unlink`. No live block is ever rewritten to free
//!   space, and the user's segments (future Filecoin pieces) never hold cache bytes.
//! - **Safe.** Whatever the user keeps leaves the cache first. A main batch that puts a
//!   block the cache holds (the user wrote or imported the same bytes) writes it again into
//!   a main segment and the index follows; [`Store::pin`] does the same for every cached
//!   block of the pinned DAG. Both run under the store's writer lock, as eviction does, so
//!   eviction never removes a block a root can reach, without walking any DAG.
//! - **LRU, by segment.** Every read from a cache segment stamps it; the least recently
//!   read segment goes first (after a restart, the oldest). With 32 MiB segments that is a
//!   close approximation of block-level LRU at a fraction of the bookkeeping.
//!
//! Eviction runs after each cache batch once the cache exceeds its cap, and takes it down
//! to three quarters of the cap, so it runs once per quarter-cap fetched, not per block.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::BufReader;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use cid::Cid;
use redb::{ReadableDatabase, ReadableTable};

use super::{BLOCKS, Batch, CACHE_SEGMENTS, SEGMENTS, SegmentKind, Store, StoreError, io_err, key};
use crate::block::{Block, RAW, links};
use crate::car::CarReader;

/// Default cap of the fetch cache on disk.
pub const DEFAULT_CACHE_CAP: u64 = 10 << 30;

/// One cache segment: its committed size and when it was last read.
#[derive(Clone, Copy, Debug)]
struct Segment {
    bytes: u64,
    used: u64,
}

/// In-memory view of the cache segments (the table is the truth; this is rebuilt at open).
pub(crate) struct FetchCache {
    segments: Mutex<BTreeMap<u32, Segment>>,
    clock: AtomicU64,
    cap: AtomicU64,
    evicted_segments: AtomicU64,
    evicted_bytes: AtomicU64,
}

impl Default for FetchCache {
    fn default() -> Self {
        FetchCache {
            segments: Mutex::default(),
            // Stamps start above every segment id, so a segment read since the open is
            // always more recent than one that was not (those are ordered by age).
            clock: AtomicU64::new(1 << 32),
            cap: AtomicU64::new(DEFAULT_CACHE_CAP),
            evicted_segments: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
        }
    }
}

impl FetchCache {
    pub(crate) fn contains(&self, segment: u32) -> bool {
        self.segments.lock().expect("lock poisoned").contains_key(&segment)
    }

    /// A block was read from `segment`; whether it is a cache segment (a main segment is
    /// left alone).
    pub(crate) fn touch(&self, segment: u32) -> bool {
        match self.segments.lock().expect("lock poisoned").get_mut(&segment) {
            Some(s) => {
                s.used = self.clock.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// A cache batch committed `segment` at `bytes` long.
    pub(crate) fn grown(&self, segment: u32, bytes: u64) {
        let used = self.clock.fetch_add(1, Ordering::Relaxed);
        self.segments.lock().expect("lock poisoned").insert(segment, Segment { bytes, used });
    }

    pub(crate) fn forget(&self, segment: u32) {
        self.segments.lock().expect("lock poisoned").remove(&segment);
    }

    /// How large a cache segment may grow: `configured`, but at most an eighth of the cap
    /// (at least 1 MiB), so that a small cap is not one segment evicted all at once.
    pub(crate) fn segment_limit(&self, configured: u64) -> u64 {
        configured.min((self.cap.load(Ordering::Relaxed) / 8).max(1 << 20))
    }

    fn bytes(&self) -> u64 {
        self.segments.lock().expect("lock poisoned").values().map(|s| s.bytes).sum()
    }

    fn least_recent(&self) -> Option<u32> {
        let segments = self.segments.lock().expect("lock poisoned");
        segments.iter().min_by_key(|(_, s)| s.used).map(|(id, _)| *id)
    }
}

/// The fetch cache as `cidfs status` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheUsage {
    /// Bytes of cache segment files.
    pub bytes: u64,
    pub segments: u64,
    pub cap: u64,
    /// Segments (and their bytes) evicted since the store was opened.
    pub evicted_segments: u64,
    pub evicted_bytes: u64,
}

/// What one eviction pass dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvictReport {
    pub segments: u64,
    pub blocks: u64,
    pub bytes: u64,
}

impl Store {
    /// Rebuilds the in-memory view of the cache segments from the index.
    pub(super) fn load_cache_segments(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let cache = txn.open_table(CACHE_SEGMENTS)?;
        let segments = txn.open_table(SEGMENTS)?;
        let mut map = self.fetched.segments.lock().expect("lock poisoned");
        for row in cache.iter()? {
            let id = row?.0.value();
            if let Some(v) = segments.get(id)? {
                map.insert(id, Segment { bytes: v.value().0, used: u64::from(id) });
            }
        }
        Ok(())
    }

    /// Caps the fetch cache at `bytes` (takes effect at the next cache batch).
    pub fn set_cache_cap(&self, bytes: u64) {
        self.fetched.cap.store(bytes, Ordering::Relaxed);
    }

    pub fn cache_usage(&self) -> CacheUsage {
        let f = &self.fetched;
        let segments = f.segments.lock().expect("lock poisoned");
        CacheUsage {
            bytes: segments.values().map(|s| s.bytes).sum(),
            segments: segments.len() as u64,
            cap: f.cap.load(Ordering::Relaxed),
            evicted_segments: f.evicted_segments.load(Ordering::Relaxed),
            evicted_bytes: f.evicted_bytes.load(Ordering::Relaxed),
        }
    }

    /// Frees `bytes` on the store's disk for a write that needs them (the write may use
    /// the reserve: it is kept for exactly this): hot copies go first, then fetched
    /// blocks, least recently used first. Returns the bytes freed.
    pub fn make_room(&self, bytes: u64) -> Result<u64, StoreError> {
        let Some(start) = self.disk.free(&self.root) else { return Ok(0) };
        let target = start.saturating_add(bytes);
        let enough = || self.disk.free(&self.root).is_none_or(|f| f >= target);
        while !enough() {
            if self.hot.drop_least_used().is_some() {
                continue;
            }
            let cached = self.fetched.bytes();
            if cached == 0 || self.evict_cache(cached.saturating_sub(self.opts.cache_segment_bytes))?.bytes == 0 {
                break;
            }
        }
        Ok(self.disk.free(&self.root).map_or(0, |f| f.saturating_sub(start)))
    }

    /// Makes the caches give way until `need` more bytes fit on the disk above its
    /// reserve: hot copies, then fetched blocks, least recently used first. Returns the
    /// bytes freed.
    pub fn give_way(&self, need: u64) -> Result<u64, StoreError> {
        let mut freed = self.hot.give_way(need);
        while !self.disk.fits(&self.root, need) {
            let before = self.fetched.bytes();
            if before == 0 {
                break;
            }
            let report = self.evict_cache(before.saturating_sub(self.opts.cache_segment_bytes))?;
            if report.bytes == 0 {
                break;
            }
            freed += report.bytes;
        }
        Ok(freed)
    }

    /// Evicts down to three quarters of the cap if the cache has grown past it.
    pub fn evict_cache_if_over(&self) -> Result<EvictReport, StoreError> {
        let cap = self.fetched.cap.load(Ordering::Relaxed);
        if self.fetched.bytes() > cap {
            return self.evict_cache(cap - cap / 4);
        }
        // nor does the cache grow into the disk's reserve
        if !self.disk_has_reserve() {
            let before = self.fetched.bytes();
            self.give_way(0)?;
            return Ok(EvictReport { bytes: before.saturating_sub(self.fetched.bytes()), ..Default::default() });
        }
        Ok(EvictReport::default())
    }

    /// Drops least recently read cache segments until the cache holds at most `target`
    /// bytes. A crash part-way leaves either the segment indexed or its file unknown to
    /// the index (which the next open deletes).
    pub fn evict_cache(&self, target: u64) -> Result<EvictReport, StoreError> {
        let mut writers = self.lock_writer();
        self.settle(&mut writers)?;
        let mut report = EvictReport::default();
        while self.fetched.bytes() > target {
            let Some(victim) = self.fetched.least_recent() else { break };
            if writers.cache.as_ref().is_some_and(|a| a.id == victim)
                && let Some(mut active) = writers.cache.take()
            {
                // No batch is open (we hold the writer lock): everything written is committed.
                let _ = std::io::Write::flush(&mut active.out);
            }
            let path = self.segment_path(victim);
            let cids = match segment_cids(&path) {
                Ok(cids) => cids,
                Err(e) => {
                    log::warn!("{}: cannot list its blocks ({e}); scanning the index instead", path.display());
                    self.blocks()?.into_iter().filter(|(_, l)| l.segment == victim).map(|(c, _)| c).collect()
                }
            };
            let txn = self.db.begin_write()?;
            {
                let mut blocks = txn.open_table(BLOCKS)?;
                for cid in &cids {
                    let k = key(cid);
                    let here = blocks.get(k.as_slice())?.is_some_and(|v| v.value().0 == victim);
                    if here {
                        blocks.remove(k.as_slice())?;
                        report.blocks += 1;
                    }
                }
                txn.open_table(SEGMENTS)?.remove(victim)?;
                txn.open_table(CACHE_SEGMENTS)?.remove(victim)?;
            }
            txn.commit()?;
            let freed = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            self.forget_file(victim);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&path)(e)),
                _ => {}
            }
            self.fetched.forget(victim);
            report.segments += 1;
            report.bytes += freed;
            self.fetched.evicted_segments.fetch_add(1, Ordering::Relaxed);
            self.fetched.evicted_bytes.fetch_add(freed, Ordering::Relaxed);
            log::debug!("evicted cache segment {victim}: {} blocks, {freed} bytes", cids.len());
        }
        Ok(report)
    }
}

/// The CIDs of a segment's sections, in order (block bytes are skipped, not verified).
pub(super) fn segment_cids(path: &std::path::Path) -> Result<Vec<Cid>, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let mut car = CarReader::new(BufReader::with_capacity(1 << 20, f)).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some((_, cid)) = car.next_cid().map_err(|e| e.to_string())? {
        out.push(cid);
    }
    Ok(out)
}

impl Batch<'_> {
    /// Copies every block of the DAG under `root` that sits in the fetch cache into this
    /// (main) batch, so that pinning it takes it out of eviction's reach.
    pub(super) fn keep_cached_dag(&mut self, root: &Cid) -> Result<(), StoreError> {
        debug_assert_eq!(self.kind, SegmentKind::Main);
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![*root];
        while let Some(cid) = stack.pop() {
            if !seen.insert(cid) {
                continue;
            }
            if let Some(inline) = Block::from_identity(&cid) {
                stack.extend(links(&cid, inline.data()).unwrap_or_default());
                continue;
            }
            let Some(loc) = self.store.location(&cid)? else { continue };
            let cached = self.store.fetched.contains(loc.segment);
            if !cached && cid.codec() == RAW {
                continue;
            }
            let data = self.store.read_at(loc)?;
            if cached {
                let block = Block::verified(cid, data.clone()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                self.put(&block)?;
            }
            if let Ok(children) = links(&cid, &data) {
                stack.extend(children);
            }
        }
        Ok(())
    }
}
