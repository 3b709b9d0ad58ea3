//! Garbage collection and verification.
//!
//! `gc` marks every block reachable from a pin, drops the rest from the index, then
//! reclaims disk space: a segment with no live block is deleted, a segment with some dead
//! bytes has its live blocks copied into a fresh segment first. Copies are fsync'd before
//! the index points at them, and old files are deleted only after that commit, so a crash
//! at any point leaves every pinned block readable.
//!
//! A segment that is a Filecoin piece is rewritten only when at least half of it is dead
//! (or all of it): every rewrite makes a new piece to upload, so a few dead blocks are not
//! worth one. Its piece record is retired then, not dropped (see the `pieces` module): the
//! providers' copy is removed only once the new piece is at its replicas.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};

use cid::Cid;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::cold::{COLD_BLOCKS, COLD_SEGMENTS};
use super::{
    BLOCKS, CACHE_SEGMENTS, Location, META, PUBLIC, SEGMENTS, Store, StoreError, io_err, key, segment_placeholder_root,
};
use crate::block::{Block, links};
use crate::car;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub blocks_removed: u64,
    /// Bytes of block data no longer held.
    pub block_bytes_removed: u64,
    /// Disk space given back (segment bytes deleted minus bytes rewritten).
    pub disk_bytes_freed: u64,
    pub segments_removed: u64,
    /// Hot copies of files no longer reachable, deleted (and their bytes).
    pub hot_copies_removed: u64,
    pub hot_bytes_removed: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub blocks_checked: u64,
    pub bytes_checked: u64,
    pub roots_checked: u64,
    /// Blocks whose bytes no longer hash to their CID, or could not be read.
    pub bad: Vec<(Cid, String)>,
    /// (pinned root, missing block) pairs.
    pub missing: Vec<(Cid, Cid)>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.bad.is_empty() && self.missing.is_empty()
    }
}

/// What a walk from some roots found.
#[derive(Debug, Default)]
pub struct Reachable {
    /// Every CID reached (held or not).
    pub live: HashSet<Cid>,
    /// (root, cid) for every reached CID the store does not hold.
    pub missing: Vec<(Cid, Cid)>,
}

impl Store {
    /// Walks every DAG under `roots` through the blocks the store holds.
    pub fn reachable(&self, roots: &[Cid]) -> Result<Reachable, StoreError> {
        let mut seen = HashSet::new();
        let mut missing = Vec::new();
        for root in roots {
            let mut stack = vec![*root];
            while let Some(cid) = stack.pop() {
                if !seen.insert(cid) {
                    continue;
                }
                // an identity CID holds its block inline, and that block may link on
                let held = match crate::block::Block::from_identity(&cid) {
                    Some(inline) => Some(inline.into_data()),
                    None => self.get(&cid)?,
                };
                match held {
                    Some(data) => match links(&cid, &data) {
                        Ok(children) => stack.extend(children),
                        Err(e) => log::warn!("{cid}: cannot read links ({e}); its children are not protected"),
                    },
                    // a cold block is held, by its piece's providers
                    None if self.cold_location(&cid)?.is_some() => {}
                    None => missing.push((*root, cid)),
                }
            }
        }
        Ok(Reachable { live: seen, missing })
    }

    /// Removes every block not reachable from a pin; see the module docs.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let mut writers = self.lock_writer();
        self.settle(&mut writers)?;
        for mut a in [writers.main.take(), writers.cache.take()].into_iter().flatten() {
            let path = self.segment_path(a.id);
            a.out.flush().map_err(io_err(&path))?;
        }
        let live = self.reachable(&self.gc_roots()?)?.live;
        let mut report = GcReport::default();
        (report.hot_copies_removed, report.hot_bytes_removed) = self.hot.retain(|c| live.contains(c));

        // 1. Drop dead blocks from the index.
        let txn = self.db().begin_write()?;
        let mut segs: HashMap<u32, (u64, u64, bool)> = HashMap::new();
        {
            let mut blocks = txn.open_table(BLOCKS)?;
            let (mut dead, mut dead_cold) = (Vec::new(), Vec::new());
            for row in blocks.iter()? {
                let (k, v) = row?;
                let cid = Cid::try_from(k.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if !live.contains(&cid) {
                    dead.push((cid, v.value()));
                }
            }
            let mut table = txn.open_table(SEGMENTS)?;
            for row in table.iter()? {
                let (k, v) = row?;
                segs.insert(k.value(), v.value());
            }
            let mut cold = txn.open_table(COLD_BLOCKS)?;
            for row in cold.iter()? {
                let (k, v) = row?;
                let cid = Cid::try_from(k.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if !live.contains(&cid) {
                    dead_cold.push((cid, v.value()));
                }
            }
            for (cid, _) in &dead_cold {
                cold.remove(key(cid).as_slice())?;
            }
            let mut public = txn.open_table(PUBLIC)?;
            for (cid, (seg, _, len, _)) in dead.into_iter().chain(dead_cold) {
                blocks.remove(key(&cid).as_slice())?;
                public.remove(key(&cid).as_slice())?;
                report.blocks_removed += 1;
                report.block_bytes_removed += u64::from(len);
                if let Some(s) = segs.get_mut(&seg) {
                    s.1 = s.1.saturating_sub(car::section_len(&cid, len as usize));
                }
            }
            for (id, v) in &segs {
                table.insert(*id, *v)?;
            }
        }
        txn.commit()?;

        // 2. Rewrite segments holding dead bytes.
        let header_len = car::encode_header(&[segment_placeholder_root()]).len() as u64;
        let pieced: HashSet<u32> = self.pieces()?.into_iter().map(|p| p.segment).collect();
        let cold = self.cold_segments()?;
        let victims: Vec<u32> = segs
            .iter()
            .filter(|(id, (len, live, _))| match (cold.contains(id), pieced.contains(id)) {
                // a cold segment's bytes are not here to move: it goes only once all dead
                (true, _) => *live == 0,
                (false, true) => *live == 0 || 2 * (header_len + live) <= *len,
                (false, false) => header_len + live < *len,
            })
            .map(|(id, _)| *id)
            .collect();
        if victims.is_empty() {
            return Ok(report);
        }
        let moving: Vec<(Cid, Location)> =
            self.blocks()?.into_iter().filter(|(_, l)| victims.contains(&l.segment)).collect();
        let counter = {
            let txn = self.db().begin_read()?;
            txn.open_table(META)?.get("next_segment")?.map_or(1, |v| v.value())
        };
        let new_id = (segs.keys().max().copied().unwrap_or(0) + 1).max(u32::try_from(counter).unwrap_or(u32::MAX));
        let mut written = 0;
        let mut moved = Vec::new();
        if !moving.is_empty() {
            let path = self.segment_path(new_id);
            let f = super::private_file().create_new(true).append(true).open(&path).map_err(io_err(&path))?;
            let mut out = BufWriter::new(f);
            let header = car::encode_header(&[segment_placeholder_root()]);
            out.write_all(&header).map_err(io_err(&path))?;
            written = header.len() as u64;
            for (cid, loc) in &moving {
                let data = self.read_at(*loc)?;
                let prefix = car::section_prefix(cid, data.len());
                out.write_all(&prefix).and_then(|_| out.write_all(&data)).map_err(io_err(&path))?;
                moved.push((*cid, Location { segment: new_id, offset: written + prefix.len() as u64, ..*loc }));
                written += (prefix.len() + data.len()) as u64;
            }
            let f = out.into_inner().map_err(|e| io_err(&path)(e.into_error()))?;
            f.sync_all().map_err(io_err(&path))?;
            let dir = self.root().join("segments");
            File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err(&dir))?;
        }
        let txn = self.db().begin_write()?;
        {
            let mut blocks = txn.open_table(BLOCKS)?;
            for (cid, loc) in &moved {
                blocks.insert(key(cid).as_slice(), (loc.segment, loc.offset, loc.len, loc.kind as u8))?;
            }
            let mut table = txn.open_table(SEGMENTS)?;
            let mut cache = txn.open_table(CACHE_SEGMENTS)?;
            let mut cold = txn.open_table(COLD_SEGMENTS)?;
            for id in &victims {
                table.remove(*id)?;
                cache.remove(*id)?;
                cold.remove(*id)?;
            }
            if !moved.is_empty() {
                table.insert(new_id, (written, written - header_len, false))?;
                txn.open_table(META)?.insert("next_segment", u64::from(new_id) + 1)?;
            }
        }
        let retired = super::pieces::retire(&txn, &victims)?;
        if retired > 0 {
            log::info!("gc: {retired} pieces retired; their providers keep them until the new pieces are replicated");
        }
        txn.commit()?;
        let mut deleted = 0;
        for id in &victims {
            let path = self.segment_path(*id);
            deleted += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            self.forget_file(*id);
            self.fetched.forget(*id);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&path)(e)),
                _ => {}
            }
            report.segments_removed += 1;
        }
        report.disk_bytes_freed = deleted.saturating_sub(written);
        Ok(report)
    }

    /// Re-hashes every block and checks every pinned DAG is complete.
    pub fn verify(&self, progress: &mut dyn FnMut(u64)) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        for (cid, loc) in self.blocks()? {
            report.blocks_checked += 1;
            report.bytes_checked += u64::from(loc.len);
            progress(u64::from(loc.len));
            match self.read_at(loc) {
                Ok(data) => {
                    if let Err(e) = Block::verified(cid, data) {
                        report.bad.push((cid, e.to_string()));
                    }
                }
                Err(e) => report.bad.push((cid, e.to_string())),
            }
        }
        self.clear_cache();
        let roots = self.gc_roots()?;
        report.roots_checked = roots.len() as u64;
        report.missing = self.reachable(&roots)?.missing;
        Ok(report)
    }

    /// What gc keeps: every pin, every named root, and every commit of the drive's log
    /// (a snapshot stays readable until it is pruned from the log).
    pub fn gc_roots(&self) -> Result<Vec<Cid>, StoreError> {
        let mut roots: Vec<Cid> = self.pins()?.into_iter().map(|(c, _)| c).collect();
        roots.extend(self.roots()?.into_iter().map(|(_, c)| c));
        roots.extend(self.commits()?.into_iter().map(|c| c.root));
        roots.sort();
        roots.dedup();
        Ok(roots)
    }

    /// Number of blocks in the index.
    pub fn block_count(&self) -> Result<u64, StoreError> {
        let txn = self.db().begin_read()?;
        Ok(txn.open_table(BLOCKS)?.len()?)
    }
}
