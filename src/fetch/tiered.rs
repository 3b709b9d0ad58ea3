//! The read path's tiers: the local store (hot), then IPFS peers over bitswap.
//!
//! A block fetched from the network was verified by the node; it is returned at once and
//! written to the store in the background, in batches (unpinned: a cache that `gc` may
//! reclaim), so a sequential read does not wait for an fsync per block. Until a batch
//! lands, the block is served from memory.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;

use super::{Blocks, FetchError};
use crate::block::{Block, Kind, kind};
use crate::ipfs::{BlockSource, Node};
use crate::store::Store;

/// Most fetched blocks written to the store in one batch.
const PERSIST_BATCH: usize = 64;
/// Threads fetching prefetch hints, and most hints in flight (more are dropped).
const PREFETCH_THREADS: usize = 4;
const PREFETCH_MAX: usize = 64;

/// Counters for `cidfs status`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TierStats {
    pub store_hits: u64,
    pub network_blocks: u64,
    pub network_bytes: u64,
    pub misses: u64,
}

pub struct Tiered {
    store: Arc<Store>,
    net: Option<Arc<Node>>,
    timeout: Duration,
    pending: Arc<Mutex<HashMap<Cid, Bytes>>>,
    persist: Mutex<Option<Sender<Block>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Mutex<TierStats>,
    /// Hints being fetched, and where the prefetch threads take them from.
    prefetching: Mutex<std::collections::HashSet<Cid>>,
    hints: Mutex<Option<Sender<Cid>>>,
}

impl Tiered {
    /// Reads from `store`, then from `net`'s peers (waiting at most `timeout` per block).
    pub fn new(store: Arc<Store>, net: Option<Arc<Node>>, timeout: Duration) -> Arc<Tiered> {
        let pending = Arc::new(Mutex::new(HashMap::new()));
        let (tx, rx) = channel();
        let (s, p) = (store.clone(), pending.clone());
        let writer = std::thread::Builder::new()
            .name("cidfs-cache".into())
            .spawn(move || persist(&s, &p, &rx))
            .expect("spawning the cache writer");
        let tiered = Arc::new(Tiered {
            store,
            net,
            timeout,
            pending,
            persist: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            stats: Mutex::default(),
            prefetching: Mutex::default(),
            hints: Mutex::new(None),
        });
        if tiered.net.is_some() {
            let (hint_tx, hint_rx) = channel::<Cid>();
            let hint_rx = Arc::new(Mutex::new(hint_rx));
            for i in 0..PREFETCH_THREADS {
                let (weak, rx) = (Arc::downgrade(&tiered), hint_rx.clone());
                std::thread::Builder::new()
                    .name(format!("cidfs-prefetch-{i}"))
                    .spawn(move || prefetch_worker(&weak, &rx))
                    .expect("spawning a prefetch thread");
            }
            *tiered.hints.lock().expect("lock poisoned") = Some(hint_tx);
        }
        tiered
    }

    /// Writes every fetched block still in memory into the store, and stops the writer
    /// (fetches after this are not cached).
    pub fn flush(&self) {
        self.hints.lock().expect("lock poisoned").take();
        self.persist.lock().expect("lock poisoned").take();
        if let Some(w) = self.writer.lock().expect("lock poisoned").take() {
            let _ = w.join();
        }
        if let Err(e) = self.store.sync() {
            log::warn!("making the fetch cache durable: {e}");
        }
    }

    pub fn stats(&self) -> TierStats {
        *self.stats.lock().expect("lock poisoned")
    }

    pub fn node(&self) -> Option<&Arc<Node>> {
        self.net.as_ref()
    }
}

/// Fetches hinted blocks (through [`Blocks::get`], so they are cached like any fetch),
/// until the hints stop or the tiers are gone.
fn prefetch_worker(tiered: &std::sync::Weak<Tiered>, hints: &Mutex<Receiver<Cid>>) {
    loop {
        let next = hints.lock().expect("lock poisoned").recv();
        let (Ok(cid), Some(t)) = (next, tiered.upgrade()) else { return };
        if let Err(e) = t.get(&cid) {
            log::debug!("prefetching {cid}: {e}");
        }
        t.prefetching.lock().expect("lock poisoned").remove(&cid);
    }
}

/// Writes fetched blocks into the store in batches, until the sender goes away.
fn persist(store: &Store, pending: &Mutex<HashMap<Cid, Bytes>>, rx: &Receiver<Block>) {
    while let Ok(first) = rx.recv() {
        let mut blocks = vec![first];
        while blocks.len() < PERSIST_BATCH {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(b) => blocks.push(b),
                Err(_) => break,
            }
        }
        let mut batch = store.cache_batch();
        // volatile: a fetched block can be fetched again, so it is not worth an fsync; the
        // next durable commit (or closing the store) makes it durable
        let result = blocks.iter().try_for_each(|b| batch.put(b).map(|_| ())).and_then(|_| batch.commit_volatile());
        if let Err(e) = result {
            log::warn!("caching {} fetched blocks in the store: {e}", blocks.len());
        }
        if let Err(e) = store.evict_cache_if_over() {
            log::warn!("evicting from the fetch cache: {e}");
        }
        let mut p = pending.lock().expect("lock poisoned");
        for b in &blocks {
            p.remove(b.cid());
        }
    }
}

impl Drop for Tiered {
    fn drop(&mut self) {
        self.persist.lock().expect("lock poisoned").take(); // the writer drains and exits
    }
}

impl Blocks for Tiered {
    fn get(&self, cid: &Cid) -> Result<Bytes, FetchError> {
        match Blocks::get(self.store.as_ref(), cid) {
            Ok(b) => {
                self.stats.lock().expect("lock poisoned").store_hits += 1;
                return Ok(b);
            }
            Err(FetchError::NotFound(_)) => {}
            // evicted from the fetch cache between the index lookup and the read
            Err(FetchError::Store(_)) if self.net.is_some() && !self.store.has(cid).unwrap_or(true) => {}
            Err(e) => return Err(e),
        }
        if let Some(b) = self.pending.lock().expect("lock poisoned").get(cid) {
            return Ok(b.clone());
        }
        let Some(net) = &self.net else {
            self.stats.lock().expect("lock poisoned").misses += 1;
            return Err(FetchError::NotFound(*cid));
        };
        match net.get(cid, self.timeout) {
            Ok(block) => {
                let data = block.data().clone();
                // two readers of one CID share one fetch: count and cache it once
                if self.pending.lock().expect("lock poisoned").insert(*cid, data.clone()).is_none() {
                    let mut st = self.stats.lock().expect("lock poisoned");
                    st.network_blocks += 1;
                    st.network_bytes += data.len() as u64;
                    drop(st);
                    if let Some(tx) = self.persist.lock().expect("lock poisoned").as_ref() {
                        let _ = tx.send(block);
                    }
                }
                Ok(data)
            }
            Err(e) => {
                self.stats.lock().expect("lock poisoned").misses += 1;
                Err(FetchError::Unavailable { cid: *cid, reason: e.to_string() })
            }
        }
    }

    fn kind_hint(&self, cid: &Cid) -> Option<Kind> {
        self.store.kind_hint(cid).or_else(|| self.pending.lock().expect("lock poisoned").get(cid).map(|d| kind(cid, d)))
    }

    fn prefetch(&self, cids: &[Cid]) {
        let hints = self.hints.lock().expect("lock poisoned");
        let Some(tx) = hints.as_ref() else { return };
        for cid in cids {
            if self.pending.lock().expect("lock poisoned").contains_key(cid) || self.store.has(cid).unwrap_or(true) {
                continue;
            }
            let mut inflight = self.prefetching.lock().expect("lock poisoned");
            if inflight.len() >= PREFETCH_MAX || !inflight.insert(*cid) {
                continue;
            }
            let _ = tx.send(*cid);
        }
    }

    fn may_wait(&self) -> bool {
        self.net.is_some()
    }

    fn remote_fetches(&self) -> u64 {
        self.stats.lock().expect("lock poisoned").network_blocks
    }
}

/// The store is what the node serves to peers: only blocks held locally.
impl BlockSource for Store {
    fn local(&self, cid: &Cid) -> Option<Bytes> {
        match Block::from_identity(cid) {
            Some(b) => Some(b.into_data()),
            None => self.get(cid).ok().flatten(),
        }
    }

    fn is_public(&self, cid: &Cid) -> bool {
        Store::is_public(self, cid).unwrap_or(false)
    }
}
