//! The embedded IPFS node against other nodes on 127.0.0.1: fetching, serving, a lying
//! peer (fault injection: a block source that returns wrong bytes), and bounded failure.
//! Interop with real third-party peers (Helia, Kubo) is in `interop.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cid::Cid;
use cidfs::block::{Block, RAW};
use cidfs::ipfs::{BlockSource, NetError, Node, NodeConfig};

#[derive(Default)]
struct Blocks(Mutex<HashMap<Cid, Bytes>>);

impl BlockSource for Blocks {
    fn local(&self, cid: &Cid) -> Option<Bytes> {
        self.0.lock().unwrap().get(cid).cloned()
    }
}

/// A test double: claims to hold every block, answers with the wrong bytes.
struct Liar;

impl BlockSource for Liar {
    fn local(&self, _cid: &Cid) -> Option<Bytes> {
        Some(Bytes::from_static(b"not what you asked for"))
    }
}

/// A test double for a peer that takes long to look anything up.
struct Slow;

impl BlockSource for Slow {
    fn local(&self, _cid: &Cid) -> Option<Bytes> {
        std::thread::sleep(Duration::from_secs(3));
        None
    }
}

fn node(dir: &tempfile::TempDir, name: &str, peers: Vec<libp2p::Multiaddr>, source: Arc<dyn BlockSource>) -> Node {
    node_with(dir, name, peers, source, |_| {})
}

fn node_with(
    dir: &tempfile::TempDir,
    name: &str,
    peers: Vec<libp2p::Multiaddr>,
    source: Arc<dyn BlockSource>,
    tweak: impl FnOnce(&mut NodeConfig),
) -> Node {
    let mut config = NodeConfig {
        key_path: dir.path().join(name).join("peer.key"),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        peers,
        bootstrap: vec![],
        addrs_file: None,
        provide: vec![],
        dht_server: false,
        serve: cidfs::ipfs::Serve::All,
    };
    tweak(&mut config);
    let n = Node::start(config, source).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while n.listen_addrs().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    n
}

fn block(data: &[u8]) -> Block {
    Block::encode(cid::Version::V1, RAW, Bytes::copy_from_slice(data)).unwrap()
}

#[test]
fn a_block_is_fetched_verified_and_concurrent_readers_share_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let held = Arc::new(Blocks::default());
    let b = block(b"hello from a peer");
    held.0.lock().unwrap().insert(*b.cid(), b.data().clone());
    let server = node(&dir, "server", vec![], held);
    let client = node(&dir, "client", server.listen_addrs(), Arc::new(Blocks::default()));
    assert!(client.wait_for_peers(1, Duration::from_secs(10)));
    let got: Vec<Block> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| client.get(b.cid(), Duration::from_secs(10)))).collect();
        handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
    });
    assert!(got.iter().all(|g| g == &b));
    assert_eq!(server.stats().blocks_served, 1, "four readers, one request");
    assert_eq!(client.stats().blocks_fetched, 1);
    // the key persists: same peer id on restart
    let id = client.peer_id();
    drop(client);
    let again = node(&dir, "client", vec![], Arc::new(Blocks::default()));
    assert_eq!(again.peer_id(), id);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("client/peer.key")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_lying_peer_is_dropped_and_the_read_succeeds_from_an_honest_one() {
    let dir = tempfile::tempdir().unwrap();
    let b = block(b"the real bytes");
    let honest_blocks = Arc::new(Blocks::default());
    honest_blocks.0.lock().unwrap().insert(*b.cid(), b.data().clone());
    let liar = node(&dir, "liar", vec![], Arc::new(Liar));
    let honest = node(&dir, "honest", vec![], honest_blocks);
    let mut peers = liar.listen_addrs();
    peers.extend(honest.listen_addrs());
    let client = node(&dir, "client", peers, Arc::new(Blocks::default()));
    assert!(client.wait_for_peers(2, Duration::from_secs(10)));
    assert_eq!(client.get(b.cid(), Duration::from_secs(10)).unwrap(), b);
    // the liar's answer may arrive before or after the honest one: it is caught either way
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.stats().peers_dropped == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(client.stats().peers_dropped, 1);
    assert!(!client.peers().contains(&liar.peer_id()), "the liar is disconnected");
    // and not asked again: the next block comes from the honest peer only
    let c = block(b"another");
    assert!(matches!(client.get(c.cid(), Duration::from_secs(5)), Err(NetError::NotFound { .. })));
}

#[test]
fn missing_blocks_fail_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let b = block(b"nobody has this");
    // no peers at all: nobody to ask, at once
    let alone = node(&dir, "alone", vec![], Arc::new(Blocks::default()));
    assert!(matches!(alone.get(b.cid(), Duration::from_secs(30)), Err(NetError::NoPeers { .. })));
    // a peer that is too slow to answer: the deadline
    let slow = node(&dir, "slow", vec![], Arc::new(Slow));
    let client = node(&dir, "waiting", slow.listen_addrs(), Arc::new(Blocks::default()));
    assert!(client.wait_for_peers(1, Duration::from_secs(10)));
    let t = Instant::now();
    let r = client.get(b.cid(), Duration::from_millis(700));
    assert!(matches!(r, Err(NetError::Timeout { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    // a peer that says don't-have: at once
    let empty = node(&dir, "empty", vec![], Arc::new(Blocks::default()));
    let client = node(&dir, "client", empty.listen_addrs(), Arc::new(Blocks::default()));
    assert!(client.wait_for_peers(1, Duration::from_secs(10)));
    let t = Instant::now();
    let err = client.get(b.cid(), Duration::from_secs(30)).unwrap_err();
    assert!(matches!(err, NetError::NotFound { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5), "don't-have answers fail fast: {:?}", t.elapsed());
    // the error holds the CID; its message leaves it to whoever reports it, to say it once
    assert!(matches!(&err, NetError::NotFound { cid, .. } if cid == b.cid()), "{err}");
    assert!(!err.to_string().contains(&b.cid().to_string()), "{err}");
}

/// A test double for an honest peer that answers late.
struct Late(Bytes);

impl BlockSource for Late {
    fn local(&self, _cid: &Cid) -> Option<Bytes> {
        std::thread::sleep(Duration::from_millis(1500));
        Some(self.0.clone())
    }
}

#[test]
fn a_block_arriving_after_the_reader_gave_up_is_late_not_a_lie() {
    let dir = tempfile::tempdir().unwrap();
    let b = block(b"worth the wait");
    let late = node(&dir, "late", vec![], Arc::new(Late(b.data().clone())));
    let client = node(&dir, "client", late.listen_addrs(), Arc::new(Blocks::default()));
    assert!(client.wait_for_peers(1, Duration::from_secs(10)));
    assert!(matches!(client.get(b.cid(), Duration::from_millis(400)), Err(NetError::Timeout { .. })));
    std::thread::sleep(Duration::from_secs(4)); // the answers arrive
    assert_eq!(client.stats().peers_dropped, 0);
    assert_eq!(client.peers(), vec![late.peer_id()]);
}

#[test]
fn a_file_streaming_from_the_network_is_fetched_ahead_of_its_reader() {
    use cidfs::vfs::{Capacity, RootMode, Vfs};
    let dir = tempfile::tempdir().unwrap();
    // 12 leaves of 256 KiB under one root, held by a peer
    let data: Vec<u8> = (0..12 * 262_144u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut sink = Vec::new();
    let opts = cidfs::importer::ImportOptions::default();
    let root = cidfs::importer::file::import_bytes(&opts, Default::default(), &data, &mut sink).unwrap();
    let held = Arc::new(Blocks::default());
    held.0.lock().unwrap().extend(sink.into_iter().map(|b| (*b.cid(), b.into_data())));
    let server = node(&dir, "server", vec![], held);
    let client = Arc::new(node(&dir, "client", server.listen_addrs(), Arc::new(Blocks::default())));
    assert!(client.wait_for_peers(1, Duration::from_secs(10)));
    let store = Arc::new(cidfs::store::Store::open(&dir.path().join("store")).unwrap());
    let bitswap: Arc<dyn cidfs::fetch::Tier> = Arc::new(cidfs::fetch::BitswapTier(client));
    let tiers = cidfs::fetch::Tiered::new(store, vec![bitswap], Duration::from_secs(10));
    let vfs = Vfs::new(tiers.clone(), RootMode::Ipfs, Box::new(Capacity::default));
    let file = vfs.lookup(1, std::ffi::OsStr::new(&root.cid.to_string())).unwrap().ino;
    // the first read needs the root and leaf 0; it starts fetching the next 8 leaves
    assert_eq!(vfs.read(file, 0, 4096).unwrap().concat(), &data[..4096]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tiers.stats().network_blocks < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(tiers.stats().network_blocks, 10, "root, leaf 0, and 8 leaves ahead");
    // so leaf 8 is here: readable with the peer gone
    drop(server);
    assert_eq!(vfs.read(file, 8 * 262_144, 4096).unwrap().concat(), &data[8 * 262_144..8 * 262_144 + 4096]);
    tiers.flush();
}

#[test]
fn a_block_held_by_an_unconnected_peer_is_found_through_the_dht() {
    let dir = tempfile::tempdir().unwrap();
    let b = block(b"found by its provider record");
    // a DHT server everyone bootstraps from; the holder announces the block to it
    let dht = node_with(&dir, "dht", vec![], Arc::new(Blocks::default()), |c| c.dht_server = true);
    let bootstrap = dht.listen_addrs();
    let held = Arc::new(Blocks::default());
    held.0.lock().unwrap().insert(*b.cid(), b.data().clone());
    let holder = node_with(&dir, "holder", vec![], held, |c| {
        c.bootstrap = bootstrap.clone();
        c.provide = vec![*b.cid()];
    });
    let client = node_with(&dir, "client", vec![], Arc::new(Blocks::default()), |c| c.bootstrap = bootstrap.clone());
    // the client is connected to the DHT node only, which does not hold the block
    assert!(client.wait_for_peers(1, Duration::from_secs(10)));
    assert!(!client.peers().contains(&holder.peer_id()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        // (the holder's announcement may still be on its way)
        match client.get(b.cid(), Duration::from_secs(5)) {
            Ok(got) => break got,
            Err(e) if Instant::now() < deadline => eprintln!("not yet: {e}"),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(got, b);
    assert!(client.peers().contains(&holder.peer_id()), "connected to the provider the DHT named");
}
