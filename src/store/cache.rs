//! An LRU of hot blocks, bounded by the bytes it holds rather than by a count.

use bytes::Bytes;
use cid::Cid;
use lru::LruCache;

pub struct BlockCache {
    map: LruCache<Cid, Bytes>,
    bytes: usize,
    budget: usize,
}

impl BlockCache {
    pub fn new(budget: usize) -> Self {
        BlockCache { map: LruCache::unbounded(), bytes: 0, budget }
    }

    pub fn get(&mut self, cid: &Cid) -> Option<Bytes> {
        self.map.get(cid).cloned()
    }

    pub fn put(&mut self, cid: Cid, data: Bytes) {
        if data.len() > self.budget / 4 {
            return; // one huge block must not flush everything else
        }
        self.bytes += data.len();
        if let Some(old) = self.map.put(cid, data) {
            self.bytes -= old.len();
        }
        while self.bytes > self.budget {
            match self.map.pop_lru() {
                Some((_, evicted)) => self.bytes -= evicted.len(),
                None => break,
            }
        }
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{Block, RAW};
    use cid::Version;

    #[test]
    fn stays_within_budget_and_evicts_least_recent() {
        let mut c = BlockCache::new(400);
        let blocks: Vec<Block> = (0..5u8).map(|i| Block::encode(Version::V1, RAW, vec![i; 100]).unwrap()).collect();
        for b in &blocks[..4] {
            c.put(*b.cid(), b.data().clone());
        }
        assert!(c.get(blocks[0].cid()).is_some()); // 0 is now most recent
        c.put(*blocks[4].cid(), blocks[4].data().clone());
        assert!(c.bytes() <= 400);
        assert!(c.get(blocks[1].cid()).is_none(), "least recently used goes first");
        assert!(c.get(blocks[0].cid()).is_some());
    }
}
