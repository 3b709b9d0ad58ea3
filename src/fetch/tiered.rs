//! The read path: the local store (hot), then the remote [`Tier`]s in order.
//!
//! Remote tiers race in order: the first has the block to itself for its head start
//! (bitswap: 250 ms, so a block a peer has is not also downloaded from a gateway), then
//! the next is asked as well, and so on; a tier that fails passes on at once; the first
//! verified block wins and the others are told to stop looking. A tier without a head
//! start passes on only when it fails; a paid tier is asked only once every tier before it
//! failed.
//!
//! A block fetched from the network was verified by its tier; it is returned at once and
//! written to the store in the background, in batches (unpinned: a cache that `gc` may
//! reclaim), so a sequential read does not wait for an fsync per block. Until a batch
//! lands, the block is served from memory.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cid::Cid;

use super::{Blocks, FetchError, Tier};
use crate::block::{Block, Kind, kind};
use crate::ipfs::BlockSource;
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
    /// The remote tiers, in the order they are asked.
    tiers: Vec<Arc<dyn Tier>>,
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
    /// Reads from `store`, then from `tiers` in order (waiting at most `timeout` per block).
    pub fn new(store: Arc<Store>, tiers: Vec<Arc<dyn Tier>>, timeout: Duration) -> Arc<Tiered> {
        let pending = Arc::new(Mutex::new(HashMap::new()));
        let (tx, rx) = channel();
        let (s, p) = (store.clone(), pending.clone());
        let writer = std::thread::Builder::new()
            .name("cidfs-cache".into())
            .spawn(move || persist(&s, &p, &rx))
            .expect("spawning the cache writer");
        let tiered = Arc::new(Tiered {
            store,
            tiers,
            timeout,
            pending,
            persist: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            stats: Mutex::default(),
            prefetching: Mutex::default(),
            hints: Mutex::new(None),
        });
        if !tiered.tiers.is_empty() {
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

    /// The local store behind the tiers.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn stats(&self) -> TierStats {
        *self.stats.lock().expect("lock poisoned")
    }

    /// What each remote tier has to say in `cidfs status`.
    pub fn reports(&self) -> Vec<String> {
        self.tiers.iter().filter_map(|t| t.report()).collect()
    }

    /// Asks the remote tiers for `cid` (see the module doc); the block, or why each failed.
    fn fetch_remote(&self, cid: &Cid) -> Result<Block, String> {
        let deadline = Instant::now() + self.timeout;
        let (tx, rx) = channel::<(usize, Result<Block, String>)>();
        let mut reasons: Vec<String> = Vec::new();
        let (mut next, mut running) = (0, 0);
        // when the newest tier running hands over to the next, if it does by itself
        let mut hand_over: Option<Instant> = None;
        loop {
            if running == 0 {
                let Some(tier) = self.tiers.get(next) else { return Err(reasons.join("; ")) };
                next += 1;
                if next == self.tiers.len() || tier.head_start().is_none() {
                    // nothing to race it against: ask it here
                    match tier.get(cid, deadline) {
                        Ok(block) => return Ok(self.won(next - 1, block)),
                        Err(why) => reasons.push(format!("{}: {why}", tier.name())),
                    }
                    continue;
                }
                hand_over = self.start(next - 1, cid, deadline, &tx);
                running += 1;
            }
            let wait = hand_over.unwrap_or(deadline).min(deadline);
            match rx.recv_timeout(wait.saturating_duration_since(Instant::now())) {
                Ok((i, Ok(block))) => return Ok(self.won(i, block)),
                Ok((i, Err(why))) => {
                    running -= 1;
                    reasons.push(format!("{}: {why}", self.tiers[i].name()));
                    // the newest failed before its head start ran out: the next goes now
                    if i + 1 == next && running > 0 && self.tiers.get(next).is_some_and(|t| !t.paid()) {
                        hand_over = self.start(next, cid, deadline, &tx);
                        next += 1;
                        running += 1;
                    }
                }
                Err(_) if Instant::now() >= deadline => {
                    reasons.push(format!("nothing within {:?}", self.timeout));
                    return Err(reasons.join("; "));
                }
                Err(_) => match self.tiers.get(next) {
                    // the head start is over: the next tier is asked as well
                    Some(t) if !t.paid() => {
                        hand_over = self.start(next, cid, deadline, &tx);
                        next += 1;
                        running += 1;
                    }
                    _ => hand_over = None,
                },
            }
        }
    }

    /// Starts tier `i` on a thread of its own; returns when it hands over to the next.
    fn start(
        &self,
        i: usize,
        cid: &Cid,
        deadline: Instant,
        tx: &Sender<(usize, Result<Block, String>)>,
    ) -> Option<Instant> {
        let (tier, cid, to_us) = (self.tiers[i].clone(), *cid, tx.clone());
        let spawned = std::thread::Builder::new().name(format!("cidfs-{}", tier.name())).spawn(move || {
            let _ = to_us.send((i, tier.get(&cid, deadline)));
        });
        if let Err(e) = spawned {
            let _ = tx.send((i, Err(format!("no thread to ask it: {e}"))));
        }
        let more = i + 1 < self.tiers.len();
        self.tiers[i].head_start().filter(|_| more).map(|h| Instant::now() + h)
    }

    /// Tier `i` delivered `block`: the others stop looking for it.
    fn won(&self, i: usize, block: Block) -> Block {
        for (j, t) in self.tiers.iter().enumerate() {
            if j != i {
                t.delivered_elsewhere(&block);
            }
        }
        block
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
            Err(FetchError::Store(_)) if !self.tiers.is_empty() && !self.store.has(cid).unwrap_or(true) => {}
            Err(e) => return Err(e),
        }
        if let Some(b) = self.pending.lock().expect("lock poisoned").get(cid) {
            return Ok(b.clone());
        }
        if self.tiers.is_empty() {
            self.stats.lock().expect("lock poisoned").misses += 1;
            return Err(FetchError::NotFound(*cid));
        }
        match self.fetch_remote(cid) {
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
                Err(FetchError::Unavailable { cid: *cid, reason: e })
            }
        }
    }

    fn kind_hint(&self, cid: &Cid) -> Option<Kind> {
        self.store.kind_hint(cid).or_else(|| self.pending.lock().expect("lock poisoned").get(cid).map(|d| kind(cid, d)))
    }

    fn prefetch(&self, cids: &[Cid]) {
        let hints = self.hints.lock().expect("lock poisoned");
        let Some(tx) = hints.as_ref() else { return };
        let mut sent = Vec::new();
        for cid in cids {
            if self.pending.lock().expect("lock poisoned").contains_key(cid) || self.store.has(cid).unwrap_or(true) {
                continue;
            }
            let mut inflight = self.prefetching.lock().expect("lock poisoned");
            if inflight.len() >= PREFETCH_MAX || !inflight.insert(*cid) {
                continue;
            }
            sent.push(*cid);
        }
        // the tiers hear of the whole window before any of it is asked for
        for t in &self.tiers {
            t.hint(&sent);
        }
        for cid in sent {
            let _ = tx.send(cid);
        }
    }

    fn will_need(&self, cids: &[Cid]) {
        // a local file's read: one index lookup says so (its blocks are all here)
        if self.tiers.is_empty() || cids.first().is_none_or(|c| self.store.has(c).unwrap_or(true)) {
            return;
        }
        let pending = self.pending.lock().expect("lock poisoned");
        let remote: Vec<Cid> =
            cids.iter().filter(|c| !pending.contains_key(c) && !self.store.has(c).unwrap_or(true)).copied().collect();
        drop(pending);
        if !remote.is_empty() {
            for t in &self.tiers {
                t.hint(&remote);
            }
        }
    }

    fn may_wait(&self) -> bool {
        !self.tiers.is_empty()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A tier that answers after `delay`, with the block or a failure (fault injection).
    struct Scripted {
        name: &'static str,
        delay: Duration,
        block: Option<Block>,
        head_start: Option<Duration>,
        paid: bool,
        asked: AtomicUsize,
        told: AtomicUsize,
    }

    fn scripted(name: &'static str, delay_ms: u64, block: Option<&Block>, head_start_ms: Option<u64>) -> Scripted {
        Scripted {
            name,
            delay: Duration::from_millis(delay_ms),
            block: block.cloned(),
            head_start: head_start_ms.map(Duration::from_millis),
            paid: false,
            asked: AtomicUsize::new(0),
            told: AtomicUsize::new(0),
        }
    }

    impl Tier for Scripted {
        fn name(&self) -> &'static str {
            self.name
        }
        fn get(&self, _cid: &Cid, _deadline: Instant) -> Result<Block, String> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.delay);
            self.block.clone().ok_or_else(|| "not here".to_string())
        }
        fn head_start(&self) -> Option<Duration> {
            self.head_start
        }
        fn paid(&self) -> bool {
            self.paid
        }
        fn delivered_elsewhere(&self, _block: &Block) {
            self.told.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn tiered(tiers: Vec<Arc<Scripted>>) -> (tempfile::TempDir, Arc<Tiered>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let tiers = tiers.into_iter().map(|t| t as Arc<dyn Tier>).collect();
        (dir, Tiered::new(store, tiers, Duration::from_secs(5)))
    }

    fn block() -> Block {
        Block::encode(cid::Version::V1, crate::block::RAW, &b"a block only remote tiers hold"[..]).unwrap()
    }

    #[test]
    fn a_slow_tier_hands_over_after_its_head_start_and_the_winner_stops_the_rest() {
        let b = block();
        let slow = Arc::new(scripted("slow", 2000, Some(&b), Some(50)));
        let fast = Arc::new(scripted("fast", 0, Some(&b), None));
        let (_dir, t) = tiered(vec![slow.clone(), fast.clone()]);
        assert_eq!(Blocks::get(t.as_ref(), b.cid()).unwrap(), b.data().clone());
        // the fast tier won (the winner tells the others): the slow one was not waited for
        assert_eq!(slow.told.load(Ordering::SeqCst), 1, "the slow tier is told to stop looking");
        assert_eq!(fast.told.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_tier_that_fails_passes_on_at_once_and_every_reason_is_told() {
        let b = block();
        let first = Arc::new(scripted("first", 0, None, Some(10_000)));
        let second = Arc::new(scripted("second", 0, None, None));
        let (_dir, t) = tiered(vec![first.clone(), second.clone()]);
        let started = Instant::now();
        let err = Blocks::get(t.as_ref(), b.cid()).unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(5), "waited out a head start");
        assert!(err.contains("first: not here") && err.contains("second: not here"), "{err}");
        assert_eq!(t.stats().misses, 1);
    }

    #[test]
    fn a_paid_tier_is_asked_only_once_every_free_tier_failed() {
        let b = block();
        // the free tier delivers after its head start: the paid one is never asked
        let free = Arc::new(scripted("free", 300, Some(&b), Some(20)));
        let mut paid = scripted("paid", 0, Some(&b), None);
        paid.paid = true;
        let paid = Arc::new(paid);
        let (_dir, t) = tiered(vec![free.clone(), paid.clone()]);
        assert_eq!(Blocks::get(t.as_ref(), b.cid()).unwrap(), b.data().clone());
        assert_eq!(paid.asked.load(Ordering::SeqCst), 0, "a paid tier raced a free one");
        // when the free tier fails, it is
        let none = Arc::new(scripted("free", 100, None, Some(20)));
        let (_dir, t) = tiered(vec![none, paid.clone()]);
        assert_eq!(Blocks::get(t.as_ref(), b.cid()).unwrap(), b.data().clone());
        assert_eq!(paid.asked.load(Ordering::SeqCst), 1);
    }
}
