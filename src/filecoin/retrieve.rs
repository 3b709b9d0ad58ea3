//! The Filecoin read tier: cold blocks read back from the providers holding their piece.
//!
//! A block whose segment went cold (see `store::cold`) has a cold location: its segment,
//! hence its piece, and its offset and length there (a piece's payload is its segment's
//! bytes). [`FilecoinTier::get`] reads exactly those bytes with `GET /piece/{cid}` and a
//! `Range`, from one provider holding the piece (`confirmed`/`proving` replicas, fewest
//! failures first, then by URL), decrypts them with the piece's key at their own
//! offset, and checks them against the CID. A provider whose bytes do not match is
//! dropped for the life of the process (and said so in the log) and the next one is asked.
//!
//! **Coalescing.** Readers hint the blocks they will need next (`Tier::hint`, fed by
//! `Blocks::prefetch`: a sequential reader's next leaves). When a block is fetched, the
//! hinted blocks that follow it in the same piece join its request, as long as the bytes
//! between them are few ([`MAX_GAP`]) and the range stays under [`MAX_RANGE`]. One ranged
//! request then brings many blocks; the extra ones wait in a small stash until their
//! readers ask (a request for a block already on its way waits for that request instead
//! of making another). Only hinted blocks are fetched this way, so a sequential read pays
//! for little more than the bytes it reads.
//!
//! **Payment.** A provider may answer `402 Payment Required` (x402). The offer is checked
//! by the [`Ledger`] — allow-lists and caps, *before* anything is signed — then paid with
//! an EIP-3009 authorization signed by the wallet and the request is sent again; the
//! ledger records the payment and what the server said of its settlement. A refused
//! payment fails the request with the cap named (the next replica may be cheaper). A
//! provider that takes a payment and still does not serve is dropped like a liar.

use std::collections::HashSet;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cid::Cid;

use super::keys::MasterKey;
use super::ledger::{Ledger, Purchase};
use super::replicate::table;
use super::wallet::Wallet;
use super::x402;
use crate::block::{Block, human_bytes};
use crate::fetch::Tier;
use crate::store::{Location, PieceRecord, Store};

/// Most bytes one ranged request asks for.
pub const MAX_RANGE: u64 = 16 << 20;
/// Most bytes between two blocks joined into one request (section prefixes and local
/// blocks between a file's leaves are paid for; more than this is not worth it).
pub const MAX_GAP: u64 = 64 << 10;
/// Hinted blocks remembered, and bytes of fetched blocks waiting for their readers.
const MAX_WANTED: usize = 4096;
/// Cold segments whose block lists are kept (a list is read from the index once).
const SEGMENT_LISTS: std::num::NonZeroUsize = std::num::NonZeroUsize::new(16).expect("non-zero");
const MAX_STASH: usize = 64 << 20;

/// Counters for `cidfs status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetrieveStats {
    /// Ranged requests that returned bytes.
    pub ranges: u64,
    pub bytes: u64,
    pub blocks: u64,
    /// Requests paid for.
    pub paid: u64,
    /// Providers dropped for wrong bytes.
    pub dropped: u64,
}

/// A cold segment's blocks with their places in its piece, in piece order.
type SegmentBlocks = Arc<Vec<(Cid, Location)>>;

pub struct FilecoinTier {
    store: Arc<Store>,
    /// Loaded at the first cold read (a store that never evicts never needs it here).
    key: std::sync::OnceLock<MasterKey>,
    ledger: Arc<Ledger>,
    wallet: Mutex<Option<Wallet>>,
    agent: ureq::Agent,
    wanted: Mutex<HashSet<Cid>>,
    /// Blocks requests brought, for the readers that asked for them (bounded in bytes; the
    /// least recently used go first). Taking a block leaves it here, and the block a
    /// request was made for is kept too: a reader racing the first one's caching, or one
    /// that waited on the request, finds it here instead of paying for it again.
    stash: Mutex<(lru::LruCache<Cid, Block>, usize)>,
    inflight: Mutex<HashSet<Cid>>,
    landed: Condvar,
    dropped: Mutex<HashSet<String>>,
    /// Cold segments' block lists, the most recently read [`SEGMENT_LISTS`] of them.
    segments: Mutex<lru::LruCache<u32, SegmentBlocks>>,
    stats: Mutex<RetrieveStats>,
}

impl FilecoinTier {
    pub fn new(store: Arc<Store>, ledger: Arc<Ledger>) -> FilecoinTier {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("cidfs/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        FilecoinTier {
            store,
            key: std::sync::OnceLock::new(),
            ledger,
            wallet: Mutex::new(None),
            agent,
            wanted: Mutex::default(),
            stash: Mutex::new((lru::LruCache::unbounded(), 0)),
            inflight: Mutex::default(),
            landed: Condvar::new(),
            dropped: Mutex::default(),
            segments: Mutex::new(lru::LruCache::new(SEGMENT_LISTS)),
            stats: Mutex::default(),
        }
    }

    pub fn stats(&self) -> RetrieveStats {
        *self.stats.lock().expect("lock poisoned")
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The block if a request already brought it; waits while one that will is under way.
    fn stashed_or_wait(&self, cid: &Cid, deadline: Instant) -> Option<Block> {
        let mut inflight = self.inflight.lock().expect("lock poisoned");
        loop {
            if let Some(b) = self.stashed(cid) {
                return Some(b);
            }
            if !inflight.contains(cid) {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            inflight = self.landed.wait_timeout(inflight, left).expect("lock poisoned").0;
        }
    }

    fn stashed(&self, cid: &Cid) -> Option<Block> {
        // (left in place: another reader may ask before the first one's copy is cached)
        self.stash.lock().expect("lock poisoned").0.get(cid).cloned()
    }

    /// The cold blocks of `segment` in piece order (read once per segment).
    fn segment_blocks(&self, segment: u32) -> Result<SegmentBlocks, String> {
        if let Some(list) = self.segments.lock().expect("lock poisoned").get(&segment) {
            return Ok(list.clone());
        }
        let list = Arc::new(self.store.cold_blocks_of(segment).map_err(|e| e.to_string())?);
        self.segments.lock().expect("lock poisoned").put(segment, list.clone());
        Ok(list)
    }

    /// Claims `cid` and the hinted blocks after it in its piece that one request should
    /// bring (marked in flight, so no other request asks for them); `None` if another
    /// request has claimed `cid` meanwhile or already brought it.
    fn claim(&self, cid: &Cid, loc: Location) -> Result<Option<Vec<(Cid, Location)>>, String> {
        let list = self.segment_blocks(loc.segment)?;
        let mut inflight = self.inflight.lock().expect("lock poisoned");
        if inflight.contains(cid) || self.stash.lock().expect("lock poisoned").0.contains(cid) {
            return Ok(None);
        }
        let run = plan(cid, loc, &list, &self.wanted.lock().expect("lock poisoned"), &inflight);
        inflight.extend(run.iter().map(|(c, _)| *c));
        Ok(Some(run))
    }

    /// Fetches `run` (one range of `record`'s piece) from the first holder that returns
    /// the right bytes; every block of it, verified.
    fn fetch_run(
        &self,
        record: &PieceRecord,
        run: &[(Cid, Location)],
        deadline: Instant,
    ) -> Result<Vec<Block>, String> {
        let piece = record.piece.to_string();
        let start = run[0].1.offset;
        let end = run.iter().map(|(_, l)| l.offset + u64::from(l.len)).max().unwrap_or(start);
        let holders: Vec<String> = {
            let dropped = self.dropped.lock().expect("lock poisoned");
            let mut rs: Vec<_> = table::replicas(&self.store)
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|r| r.piece == piece && r.state.is_held() && !dropped.contains(&r.provider))
                .collect();
            rs.sort_by(|a, b| (a.failures, &a.provider).cmp(&(b.failures, &b.provider)));
            rs.into_iter().map(|r| r.provider).collect()
        };
        if holders.is_empty() {
            return Err(format!("no provider holding piece {piece} is left to ask"));
        }
        let mut reasons = Vec::new();
        for provider in holders {
            if Instant::now() >= deadline {
                reasons.push("out of time".to_string());
                break;
            }
            let mut bytes = match self.read_range(&provider, &piece, start, end - start, deadline) {
                Ok(b) => b,
                Err(why) => {
                    log::info!("piece {piece} bytes {start}+{}: {provider}: {why}", end - start);
                    reasons.push(format!("{provider}: {why}"));
                    continue;
                }
            };
            if let Some(salt) = &record.salt {
                self.key()?.piece_key(salt).apply(start, &mut bytes);
            }
            let bytes = bytes::Bytes::from(bytes);
            let mut blocks = Vec::with_capacity(run.len());
            for (cid, loc) in run {
                let at = (loc.offset - start) as usize;
                match Block::verified(*cid, bytes.slice(at..at + loc.len as usize)) {
                    Ok(b) => blocks.push(b),
                    Err(_) => break,
                }
            }
            if blocks.len() != run.len() {
                log::warn!(
                    "{provider} returned bytes of piece {piece} that do not match their CIDs: dropped; asking the next replica"
                );
                self.dropped.lock().expect("lock poisoned").insert(provider.clone());
                self.stats.lock().expect("lock poisoned").dropped += 1;
                reasons.push(format!("{provider}: wrong bytes (dropped)"));
                continue;
            }
            let mut st = self.stats.lock().expect("lock poisoned");
            st.ranges += 1;
            st.bytes += end - start;
            st.blocks += blocks.len() as u64;
            return Ok(blocks);
        }
        Err(format!("piece {piece}: {}", reasons.join("; ")))
    }

    /// Exactly `len` bytes of `piece` from `offset` at `provider`, paying if asked to.
    fn read_range(
        &self,
        provider: &str,
        piece: &str,
        offset: u64,
        len: u64,
        deadline: Instant,
    ) -> Result<Vec<u8>, String> {
        if len == 0 {
            return Ok(Vec::new()); // (a run of empty blocks: nothing to ask for)
        }
        let url = format!("{provider}/piece/{piece}");
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let send = |payment: Option<(&str, String)>| {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            let mut req = self.agent.get(&url).header("Range", &range);
            if let Some((name, value)) = payment {
                req = req.header(name, value);
            }
            req.config().timeout_global(Some(left)).build().call().map_err(|e| format!("unreachable: {e}"))
        };
        let mut resp = send(None)?;
        if resp.status().as_u16() == 402 {
            let header = resp.headers().get("PAYMENT-REQUIRED").and_then(|h| h.to_str().ok()).map(str::to_string);
            let mut body = Vec::new();
            let _ = resp.body_mut().as_reader().take(64 << 10).read_to_end(&mut body);
            let offers = x402::parse_required(header.as_deref(), &body)?;
            let offer = offers.iter().find(|o| self.ledger.allows(o)).unwrap_or(&offers[0]);
            // everything that can fail before signing, before the ledger records a payment
            let mut wallet = self.wallet.lock().expect("lock poisoned");
            if wallet.is_none() {
                *wallet = Some(Wallet::load_or_create(self.store.root()).map_err(|e| e.to_string())?);
            }
            let nonce = super::keys::random_salt().map_err(|e| e.to_string())?;
            offer.chain_id().ok_or_else(|| format!("network {} is not an EVM chain (eip155:N)", offer.network))?;
            let what = Purchase { provider, piece, offset, bytes: len };
            let id = self.ledger.authorize(offer, &what).map_err(|refusal| {
                log::warn!("not paying {provider} for {len} bytes of piece {piece}: {refusal}");
                format!("payment refused: {refusal}")
            })?;
            let signed = x402::sign_exact(wallet.as_ref().expect("set above"), offer, crate::store::unix_now(), nonce);
            drop(wallet);
            let payment = signed.inspect_err(|why| self.ledger.unconfirmed(id, why))?;
            resp = match send(Some((offer.header_name(), x402::encode_header(&payment)))) {
                Ok(r) => r,
                Err(why) => {
                    self.ledger.unconfirmed(id, &why);
                    return Err(why);
                }
            };
            let settlement = ["PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE"]
                .iter()
                .find_map(|h| resp.headers().get(*h).and_then(|v| v.to_str().ok()).map(x402::parse_settlement));
            match settlement {
                Some(Ok(s)) if resp.status().is_success() => self.ledger.settled(id, &s),
                _ => self.ledger.unconfirmed(id, &format!("HTTP {} without a settlement", resp.status())),
            }
            self.stats.lock().expect("lock poisoned").paid += 1;
            if !resp.status().is_success() {
                // paid (the signature is out) and still not served: never paid again
                log::warn!("{provider} answered HTTP {} to a paid request: dropped", resp.status());
                self.dropped.lock().expect("lock poisoned").insert(provider.to_string());
                self.stats.lock().expect("lock poisoned").dropped += 1;
            }
        }
        let status = resp.status().as_u16();
        if status != 206 && status != 200 {
            let mut body = String::new();
            let _ = resp.body_mut().as_reader().take(512).read_to_string(&mut body);
            return Err(format!("HTTP {status}: {}", body.trim()));
        }
        let skip = if status == 200 { offset } else { 0 }; // a server that ignored the range
        let mut reader = resp.into_body().into_reader();
        std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink()).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(len as usize);
        reader.take(len).read_to_end(&mut out).map_err(|e| format!("reading the range: {e}"))?;
        if out.len() as u64 != len {
            return Err(format!("{} bytes for a range of {len}", out.len()));
        }
        Ok(out)
    }

    fn key(&self) -> Result<&MasterKey, String> {
        if let Some(k) = self.key.get() {
            return Ok(k);
        }
        let k = MasterKey::load_or_create(self.store.root()).map_err(|e| format!("the master key: {e}"))?;
        Ok(self.key.get_or_init(|| k))
    }

    /// Keeps fetched blocks for the readers that hinted or waited for them (bounded: the
    /// oldest are dropped).
    fn stash(&self, blocks: &[Block]) {
        let mut stash = self.stash.lock().expect("lock poisoned");
        for b in blocks {
            stash.1 += b.data().len();
            if let Some(old) = stash.0.put(*b.cid(), b.clone()) {
                stash.1 -= old.data().len();
            }
        }
        while stash.1 > MAX_STASH {
            let Some((_, old)) = stash.0.pop_lru() else { break };
            stash.1 -= old.data().len();
        }
    }
}

/// `cid` (at `loc`) and the wanted blocks that follow it in `list` (its segment's blocks in
/// piece order) and are not in flight, as long as gaps stay under [`MAX_GAP`] and the
/// whole under [`MAX_RANGE`].
fn plan(
    cid: &Cid,
    loc: Location,
    list: &[(Cid, Location)],
    wanted: &HashSet<Cid>,
    inflight: &HashSet<Cid>,
) -> Vec<(Cid, Location)> {
    let mut run = vec![(*cid, loc)];
    let Ok(at) = list.binary_search_by_key(&loc.offset, |(_, l)| l.offset) else { return run };
    let start = loc.offset;
    let mut end = loc.offset + u64::from(loc.len);
    for (c, l) in &list[at + 1..] {
        if l.offset.saturating_sub(end) > MAX_GAP {
            break;
        }
        let new_end = l.offset + u64::from(l.len);
        if new_end - start > MAX_RANGE {
            break;
        }
        if wanted.contains(c) && !inflight.contains(c) {
            run.push((*c, *l));
            end = new_end;
        }
    }
    run
}

impl Tier for FilecoinTier {
    fn name(&self) -> &'static str {
        "filecoin"
    }

    fn get(&self, cid: &Cid, deadline: Instant) -> Result<Block, String> {
        let loc = self
            .store
            .cold_location(cid)
            .map_err(|e| e.to_string())?
            .ok_or("not in any piece of this drive's (only evicted data is read from Filecoin)")?;
        let record = self
            .store
            .piece_of_segment(loc.segment)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("segment {} has no piece record", loc.segment))?;
        let run = loop {
            if let Some(b) = self.stashed_or_wait(cid, deadline) {
                return Ok(b);
            }
            if let Some(run) = self.claim(cid, loc)? {
                break run;
            }
            if Instant::now() >= deadline {
                return Err("out of time waiting for a request under way".into());
            }
        };
        let result = self.fetch_run(&record, &run, deadline);
        {
            let mut wanted = self.wanted.lock().expect("lock poisoned");
            for (c, _) in &run {
                wanted.remove(c);
            }
        }
        let out = result.map(|blocks| {
            self.stash(&blocks);
            // (the caller's block stays stashed too, for readers that waited on this request)
            blocks.into_iter().next().expect("a run holds its first block")
        });
        let mut inflight = self.inflight.lock().expect("lock poisoned");
        for (c, _) in &run {
            inflight.remove(c);
        }
        drop(inflight);
        self.landed.notify_all();
        out
    }

    fn paid(&self) -> bool {
        true
    }

    fn hint(&self, cids: &[Cid]) {
        let mut wanted = self.wanted.lock().expect("lock poisoned");
        if wanted.len() + cids.len() > MAX_WANTED {
            wanted.clear(); // stale hints of reads long done; the next ones come soon
        }
        wanted.extend(cids.iter().copied());
    }

    fn delivered_elsewhere(&self, block: &Block) {
        self.wanted.lock().expect("lock poisoned").remove(block.cid());
    }

    fn report(&self) -> Option<String> {
        let s = self.stats();
        Some(format!(
            "filecoin reads: {} ranges ({}), {} blocks, {} paid requests, {} providers dropped for wrong bytes",
            s.ranges,
            human_bytes(s.bytes),
            s.blocks,
            s.paid,
            s.dropped
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filecoin::ledger::Caps;
    use crate::filecoin::pdp::PdpClient;
    use crate::filecoin::provider::{Provider, ProviderOptions};
    use crate::filecoin::seal::{PiecePayload, SealPolicy, Sealer};
    use crate::store::StoreOptions;

    /// A store at `root` whose segments hold a whole test file (64 MiB).
    fn open_store(root: &std::path::Path) -> Arc<Store> {
        Arc::new(Store::open_with(root, StoreOptions { segment_max_bytes: 64 << 20, ..Default::default() }).unwrap())
    }

    /// A `cidfs provider` in this process, on loopback (a real HTTP server).
    fn provider(dir: &std::path::Path) -> String {
        let p = Provider::open(ProviderOptions {
            dir: dir.to_path_buf(),
            chain: crate::filecoin::fwss::Chain::CALIBRATION,
            payee: None,
            confirm_delay: Duration::ZERO,
            proving_period: Duration::from_secs(3600),
            max_requests: 16,
            pricing: None,
        })
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || p.serve("127.0.0.1:0", |a| tx.send(a).unwrap()).unwrap());
        format!("http://{}", rx.recv().unwrap())
    }

    /// A file of `n` 50 kB raw leaves under one dag-pb node, sealed into one piece.
    fn sealed_file(store: &Arc<Store>, n: usize) -> (Vec<Block>, Block, PieceRecord) {
        let leaves: Vec<Block> = (0..n)
            .map(|i| Block::encode(cid::Version::V1, crate::block::RAW, vec![i as u8 ^ 0x5a; 50_000]).unwrap())
            .collect();
        let links: Vec<ipld_dagpb::PbLink> =
            leaves.iter().map(|b| ipld_dagpb::PbLink { cid: *b.cid(), name: None, size: Some(50_000) }).collect();
        let node = ipld_dagpb::PbNode { links, data: None }.into_bytes();
        let root = Block::encode(cid::Version::V1, crate::block::DAG_PB, node).unwrap();
        let mut batch = store.batch();
        for b in leaves.iter().chain([&root]) {
            batch.put(b).unwrap();
        }
        batch.pin(*root.cid(), "file");
        batch.commit().unwrap();
        assert!(store.seal_quiet(1).unwrap().is_some());
        let made = Sealer::new(store.clone(), SealPolicy::default()).unwrap().step().unwrap();
        (leaves, root, made[0].clone())
    }

    fn place(store: &Store, record: &PieceRecord, url: &str, state: table::ReplicaState) {
        let payload = PiecePayload::open(store, record, None).unwrap();
        let mut bytes = vec![0u8; payload.len() as usize];
        payload.read_at(0, &mut bytes).unwrap();
        PdpClient::new(url).unwrap().upload_one_shot(&record.piece, &bytes).unwrap();
        let mut r = table::Replica::new(record.piece.to_string(), record.segment, url.to_string());
        r.state = state;
        table::put_replica(store, &r).unwrap();
    }

    /// A hostile provider (fault injection): asks for a payment, takes it, then answers
    /// 500. Counts the requests it gets.
    fn hostile_provider(asked: Arc<std::sync::atomic::AtomicUsize>) -> String {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        std::thread::spawn(move || {
            for req in server.incoming_requests() {
                asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let paid = req.headers().iter().any(|h| h.field.equiv("PAYMENT-SIGNATURE"));
                let offer = x402::required_document(
                    "http://hostile/piece",
                    "a range",
                    "eip155:31337",
                    alloy_primitives::U256::from(10u64),
                    alloy_primitives::Address::repeat_byte(1),
                    alloy_primitives::Address::repeat_byte(2),
                    "T",
                    "1",
                );
                let reply = match paid {
                    true => tiny_http::Response::from_string("taken, not served").with_status_code(500),
                    false => tiny_http::Response::from_string("pay").with_status_code(402).with_header(
                        tiny_http::Header::from_bytes("PAYMENT-REQUIRED", x402::encode_header(&offer)).unwrap(),
                    ),
                };
                let _ = req.respond(reply);
            }
        });
        url
    }

    #[test]
    fn a_provider_that_takes_a_payment_and_does_not_serve_is_dropped_and_the_payment_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir.path().join("store"));
        let (leaves, _, record) = sealed_file(&store, 3);
        let honest = provider(&dir.path().join("p"));
        place(&store, &record, &honest, table::ReplicaState::Confirmed);
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hostile = hostile_provider(asked.clone());
        let mut r = table::Replica::new(record.piece.to_string(), record.segment, hostile.clone());
        r.state = table::ReplicaState::Confirmed;
        table::put_replica(&store, &r).unwrap();
        // the honest one has failed once before: the hostile one is asked first
        let mut h = table::replicas(&store).unwrap().into_iter().find(|r| r.provider == honest).unwrap();
        h.failures = 1;
        table::put_replica(&store, &h).unwrap();
        assert_eq!(crate::filecoin::cold::evict_all_replicated(&store, 2, &mut |_| {}).unwrap().segments, 1);

        let caps = Caps {
            max_per_request: Some(100),
            max_per_day: Some(1000),
            max_total: Some(1000),
            networks: vec!["eip155:31337".into()],
            assets: vec![alloy_primitives::Address::repeat_byte(1)],
        };
        let tier = FilecoinTier::new(store.clone(), Arc::new(Ledger::new(store.clone(), caps)));
        let deadline = || Instant::now() + Duration::from_secs(10);
        assert_eq!(tier.get(leaves[0].cid(), deadline()).unwrap().data(), leaves[0].data(), "the next replica served");
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2, "asked, then paid");
        let paid = crate::filecoin::ledger::payments(&store).unwrap();
        assert_eq!(paid.len(), 1);
        assert_eq!(
            (paid[0].state.as_str(), paid[0].amount.as_str()),
            ("unconfirmed", "10"),
            "the signature is out: counted"
        );
        assert_eq!(tier.stats().dropped, 1);
        assert_eq!(tier.get(leaves[1].cid(), deadline()).unwrap().data(), leaves[1].data());
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2, "a dropped provider is not asked again");
    }

    #[test]
    fn a_cold_segment_survives_a_restart_and_gc_forgets_it_once_nothing_reaches_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = open_store(&root);
        let (leaves, file, record) = sealed_file(&store, 4);
        let url = provider(&dir.path().join("p"));
        place(&store, &record, &url, table::ReplicaState::Confirmed);
        // an unsealed segment (the next write's) never goes cold, whatever asks
        let mut batch = store.batch();
        let late = Block::encode(cid::Version::V1, crate::block::RAW, &b"written after the seal"[..]).unwrap();
        batch.put(&late).unwrap();
        batch.commit().unwrap();
        let open_segment = store.location(late.cid()).unwrap().unwrap().segment;
        assert!(store.make_cold(open_segment).unwrap_err().to_string().contains("not sealed"));
        // under-replicated for 2: nothing; at 1: the segment goes
        assert_eq!(crate::filecoin::cold::evict_to_cap(&store, 0, 2).unwrap().segments, 0);
        assert_eq!(crate::filecoin::cold::evict_to_cap(&store, 0, 1).unwrap().segments, 1);
        // a process stopped before the unlink left the file: the next open deletes it
        let seg_file = root.join("segments").join(format!("{:08}.car", record.segment));
        std::fs::write(&seg_file, b"stale").unwrap();
        drop(store);
        let store = open_store(&root);
        assert!(!seg_file.exists(), "the cold segment's file outlived a restart");
        assert!(store.cold_location(leaves[0].cid()).unwrap().is_some());
        assert_eq!(store.cold_usage().unwrap().cold_segments, 1);
        // unpinned: gc drops the cold entries and retires the piece
        store.unpin(file.cid()).unwrap();
        let report = store.gc().unwrap();
        assert!(report.blocks_removed >= 4, "{report:?}");
        assert!(store.cold_location(leaves[0].cid()).unwrap().is_none());
        assert_eq!(store.cold_usage().unwrap().cold_segments, 0);
        assert_eq!(store.retired_pieces().unwrap(), vec![record]);
    }

    #[test]
    fn evicted_blocks_come_back_verified_in_coalesced_ranges_and_a_lying_provider_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir.path().join("store"));
        let (leaves, root, record) = sealed_file(&store, 20);
        let liar = provider(&dir.path().join("p1"));
        let honest = provider(&dir.path().join("p2"));

        // one replica is not enough for two: nothing may go cold yet
        // (the liar's URL sorts first: it is asked first)
        let (liar, honest) = if liar < honest { (liar, honest) } else { (honest, liar) };
        place(&store, &record, &liar, table::ReplicaState::Proving);
        assert!(crate::filecoin::cold::evict_all_replicated(&store, 2, &mut |_| {}).unwrap().segments == 0);
        place(&store, &record, &honest, table::ReplicaState::Confirmed);
        let sum = crate::filecoin::cold::evict_all_replicated(&store, 2, &mut |_| {}).unwrap();
        assert_eq!((sum.segments, sum.blocks), (1, 20));
        assert!(store.is_cold(record.segment).unwrap());
        assert!(store.get(leaves[0].cid()).unwrap().is_none(), "a cold block is not held");
        assert!(store.get(root.cid()).unwrap().is_some(), "linking blocks stay local");
        assert_eq!(store.kind(leaves[0].cid()).unwrap(), Some(crate::block::Kind::File));
        assert!(store.verify(&mut |_| {}).unwrap().ok(), "cold blocks are not missing");
        assert_eq!(store.gc().unwrap().blocks_removed, 0, "gc keeps cold blocks of a pin");
        assert!(store.cold_usage().unwrap().cold_bytes > 1_000_000);

        // the liar flips a byte of the first leaf: it is dropped, the next replica serves
        let first = store.cold_location(leaves[0].cid()).unwrap().unwrap();
        let flip = format!("{liar}/admin/flip?piece={}&offset={}", record.piece, first.offset + 10);
        assert_eq!(ureq::post(&flip).send_empty().unwrap().status(), 204);
        let ledger = Arc::new(Ledger::new(store.clone(), Caps::default()));
        let tier = FilecoinTier::new(store.clone(), ledger);
        let deadline = || Instant::now() + Duration::from_secs(10);
        let cids: Vec<Cid> = leaves.iter().map(|b| *b.cid()).collect();
        tier.hint(&cids[1..]);
        assert_eq!(tier.get(&cids[0], deadline()).unwrap().data(), leaves[0].data());
        for (cid, leaf) in cids.iter().zip(&leaves).skip(1) {
            assert_eq!(tier.get(cid, deadline()).unwrap().data(), leaf.data());
        }
        let s = tier.stats();
        assert_eq!(s.blocks, 20);
        assert_eq!(s.ranges, 1, "one request for the hinted run: {s:?}");
        assert!(s.bytes < 20 * 50_000 + 20 * 64, "{} bytes for 1 MB of blocks", s.bytes);
        assert_eq!(s.dropped, 1);
        // not a cold block: said so
        let other = Block::encode(cid::Version::V1, crate::block::RAW, &b"x"[..]).unwrap();
        assert!(tier.get(other.cid(), deadline()).unwrap_err().contains("not in any piece"));
    }
}
