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
}

impl Tiered {
    /// Reads from `store`, then from `net`'s peers (waiting at most `timeout` per block).
    pub fn new(store: Arc<Store>, net: Option<Arc<Node>>, timeout: Duration) -> Tiered {
        let pending = Arc::new(Mutex::new(HashMap::new()));
        let (tx, rx) = channel();
        let (s, p) = (store.clone(), pending.clone());
        let writer = std::thread::Builder::new()
            .name("cidfs-cache".into())
            .spawn(move || persist(&s, &p, &rx))
            .expect("spawning the cache writer");
        Tiered {
            store,
            net,
            timeout,
            pending,
            persist: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            stats: Mutex::default(),
        }
    }

    /// Writes every fetched block still in memory into the store, and stops the writer
    /// (fetches after this are not cached).
    pub fn flush(&self) {
        self.persist.lock().expect("lock poisoned").take();
        if let Some(w) = self.writer.lock().expect("lock poisoned").take() {
            let _ = w.join();
        }
    }

    pub fn stats(&self) -> TierStats {
        *self.stats.lock().expect("lock poisoned")
    }

    pub fn node(&self) -> Option<&Arc<Node>> {
        self.net.as_ref()
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
        let mut batch = store.batch();
        let result = blocks.iter().try_for_each(|b| batch.put(b).map(|_| ())).and_then(|_| batch.commit());
        if let Err(e) = result {
            log::warn!("caching {} fetched blocks in the store: {e}", blocks.len());
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
                {
                    let mut st = self.stats.lock().expect("lock poisoned");
                    st.network_blocks += 1;
                    st.network_bytes += data.len() as u64;
                }
                self.pending.lock().expect("lock poisoned").insert(*cid, data.clone());
                if let Some(tx) = self.persist.lock().expect("lock poisoned").as_ref() {
                    let _ = tx.send(block);
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
}

/// The store is what the node serves to peers: only blocks held locally.
impl BlockSource for Store {
    fn local(&self, cid: &Cid) -> Option<Bytes> {
        match Block::from_identity(cid) {
            Some(b) => Some(b.into_data()),
            None => self.get(cid).ok().flatten(),
        }
    }
}
