//! The embedded libp2p node: connections, the bitswap client and server.
//!
//! One tokio runtime (two worker threads) owns the swarm. Everything else talks to it
//! through [`Node`], whose methods are synchronous: a FUSE thread that needs a block calls
//! [`Node::get`], which registers a waiter and blocks on a channel with a deadline, so the
//! kernel side never runs async code and never waits longer than the deadline.
//!
//! Bitswap streams come from [`super::streams`]: we accept inbound streams in every
//! version (1.2.0, 1.1.0, 1.0.0) and read length-prefixed messages from them; what we send
//! to a peer goes through one writer task per peer, which opens one outbound stream (newest
//! version the peer speaks) and writes messages in order. Replies to a peer's wants go
//! the same way: bitswap answers on a stream the answering side opens.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cid::Cid;
use futures::StreamExt;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, identify, identity, kad, noise, ping, tcp, yamux};
use tokio::sync::mpsc;

use super::bitswap::{self, Message, WANT_BLOCK};
use super::limits::{self, Admit};
use super::streams;
use crate::block::Block;

/// Received blocks kept in memory for readers racing the cache (at most ~8 MiB of Kubo's
/// leaves).
const RECEIVED_KEPT: usize = 32;

/// First wait before a want is sent again; it doubles up to [`REBROADCAST_MAX`].
const REBROADCAST_FIRST: Duration = Duration::from_secs(1);
const REBROADCAST_MAX: Duration = Duration::from_secs(8);

/// How long after start a bootstrap peer still being dialled counts as a route into the
/// DHT. Past it, with no DHT peer connected, the DHT is taken to have no route, and a want
/// nobody else can answer fails at once instead of at the deadline.
const BOOTSTRAP_GRACE: Duration = Duration::from_secs(10);

/// Where the node gets the blocks it serves (the local store).
pub trait BlockSource: Send + Sync {
    /// The block `cid`, if held locally (never fetched from the network).
    fn local(&self, cid: &Cid) -> Option<Bytes>;

    /// Whether the user published `cid` (added, imported or pinned what holds it), so any
    /// peer may have it under [`Serve::Published`]. A source that is all public says so.
    fn is_public(&self, _cid: &Cid) -> bool {
        true
    }
}

/// Which blocks the node gives to which peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serve {
    /// The default: what the user published (`add`, `import`, `pin`) to every peer;
    /// everything else held (the drive, its snapshots, fetched blocks) to trusted peers
    /// only.
    Published { trusted: HashSet<PeerId> },
    /// Everything held, to every peer (`--serve all`).
    All,
    /// Nothing, to anyone (`--serve none`).
    Nothing,
}

impl Serve {
    /// Whether `peer` may have `cid` (held by `source`).
    fn allows(&self, peer: &PeerId, cid: &Cid, source: &dyn BlockSource) -> bool {
        match self {
            Serve::All => true,
            Serve::Nothing => false,
            Serve::Published { trusted } => trusted.contains(peer) || source.is_public(cid),
        }
    }
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The peer key (created, mode 0600, if missing).
    pub key_path: PathBuf,
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start (and whenever `connect` is asked).
    pub peers: Vec<Multiaddr>,
    /// DHT bootstrap peers (`/…/p2p/<id>`): dialled and added to the routing table. With
    /// none, the DHT is not used: blocks come only from connected peers.
    pub bootstrap: Vec<Multiaddr>,
    /// CIDs to announce as provided (provider records in the DHT, republished by it).
    pub provide: Vec<Cid>,
    /// Answer DHT queries from other peers (a DHT server); cidfs is a client by default.
    pub dht_server: bool,
    /// Where a running node writes its listen addresses, one per line (for `cidfs id`).
    pub addrs_file: Option<PathBuf>,
    /// Which blocks are given to which peers.
    pub serve: Serve,
}

/// How long connected peers have to deliver a block before the next tier (a gateway) is
/// asked too, so a block a peer has is not downloaded twice.
pub const HEAD_START: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
/// Why the network did not deliver a block. The messages leave the CID out: whoever
/// reports the failure names it once (see `FetchError::Unavailable`).
pub enum NetError {
    #[error("no connected peer has it{why}")]
    NotFound { cid: Cid, why: Box<str> },
    #[error(
        "no IPFS peer is connected to ask and the DHT has no route to any (connect one with --peer or `cidfs swarm \
         connect`, add a --gateway, or check the network)"
    )]
    NoPeers { cid: Cid },
    #[error("no peer sent it within {timeout:?} ({peers} peers connected)")]
    Timeout { cid: Cid, timeout: Duration, peers: usize },
    #[error("peer key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("starting the IPFS node: {0}")]
    Start(String),
}

/// Counters shown by `cidfs status`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetStats {
    pub blocks_fetched: u64,
    pub bytes_fetched: u64,
    pub blocks_served: u64,
    pub bytes_served: u64,
    pub peers_dropped: u64,
    /// Replies not queued because the peer's (or everyone's) queue was full.
    pub replies_throttled: u64,
    /// Inbound streams reset unread: over a peer's (or the total) bound.
    pub streams_refused: u64,
    /// Peers disconnected for being throttled too long.
    pub peers_flooding: u64,
}

/// What a writer task sends a peer, made into a message for the protocol it negotiated.
#[derive(Default)]
struct Outgoing {
    wants: Vec<Cid>,
    cancels: Vec<Cid>,
    blocks: Vec<(Cid, Bytes)>,
    have: Vec<Cid>,
    dont_have: Vec<Cid>,
}

impl Outgoing {
    /// What it holds in memory while queued, roughly: its blocks and a CID's worth per entry.
    fn size(&self) -> usize {
        let entries = self.wants.len() + self.cancels.len() + self.have.len() + self.dont_have.len();
        self.blocks.iter().map(|(_, d)| d.len() + 64).sum::<usize>() + 64 * entries
    }
}

/// A reader waiting for a block: its id (to leave on timeout) and its channel; `Err`
/// means every source said don't-have (with what else went wrong, for the message).
type Waiter = (u64, std::sync::mpsc::Sender<Result<Block, String>>);

struct Want {
    waiters: Vec<Waiter>,
    asked: HashSet<PeerId>,
    dont_have: HashSet<PeerId>,
    /// A DHT provider lookup for it may still name a provider (it is running, or it named
    /// one that is being dialled).
    lookup: bool,
}

struct State {
    peers: HashMap<PeerId, Option<mpsc::UnboundedSender<Outgoing>>>,
    wants: HashMap<Cid, Want>,
    /// CIDs recently received or given up on, so a late or duplicate block is not taken
    /// for a lie.
    recent: lru::LruCache<Cid, ()>,
    /// The last blocks received: a reader that asks right after another reader's want
    /// was answered (before the block reached the cache) gets it here, not from a peer
    /// that already sent it.
    received: lru::LruCache<Cid, Block>,
    /// Peers that sent blocks nobody asked for (bytes not matching any want): never asked
    /// again this session.
    bad: HashSet<PeerId>,
    listen: Vec<Multiaddr>,
    stats: NetStats,
    next_waiter: u64,
    /// Connected peers that speak the DHT: the node's routes into it.
    dht_peers: HashSet<PeerId>,
    /// Bootstrap peers whose dial has not failed or succeeded yet.
    bootstrap_pending: HashSet<PeerId>,
    /// Configured peers whose dial failed since they last connected (each is warned about
    /// once).
    unreachable: HashSet<PeerId>,
    /// Provider lookups running: which CID, and whether they named a provider yet.
    lookups: HashMap<kad::QueryId, (Cid, bool)>,
    /// What is queued for each peer's writer (see [`limits`]).
    queues: limits::Queues,
    /// Inbound streams being read.
    inbound: limits::InboundGate,
    /// Each reading peer's share of the inbound bytes (see [`limits::INBOUND_BYTES_PER_PEER`]).
    inbound_share: HashMap<PeerId, Arc<tokio::sync::Semaphore>>,
    /// Blocks each peer asked for that are not queued yet (at most
    /// [`limits::PENDING_WANTS_PER_PEER`] each), served as its queue drains.
    pending_wants: HashMap<PeerId, std::collections::VecDeque<(Cid, bool)>>,
}

enum Command {
    Dial(Multiaddr),
    Disconnect(PeerId),
    FindProviders(Cid),
}

struct Inner {
    state: Mutex<State>,
    opener: streams::Opener,
    commands: mpsc::UnboundedSender<Command>,
    source: Arc<dyn BlockSource>,
    handle: tokio::runtime::Handle,
    /// Whether the DHT is in use (bootstrap peers were given).
    dht: bool,
    started: Instant,
    serve: Serve,
    /// Bytes of inbound message bodies being read, all peers together.
    inbound_bytes: Arc<tokio::sync::Semaphore>,
    /// Peers named in the configuration, and as what (their dial failures are the user's
    /// business; a DHT provider's are not).
    configured: HashMap<PeerId, &'static str>,
}

/// A running node. Dropping it stops the node.
pub struct Node {
    inner: Arc<Inner>,
    peer_id: PeerId,
    _runtime: tokio::runtime::Runtime,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    bitswap: streams::Behaviour,
    limits: libp2p::connection_limits::Behaviour,
}

/// The DHT key of a CID: its multihash (as Kubo and Helia announce and look up).
fn dht_key(cid: &Cid) -> kad::RecordKey {
    kad::RecordKey::new(&cid.hash().to_bytes())
}

fn multihash_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads the peer key at `path`, or makes one (ed25519, file mode 0600).
/// How long starting the node waits for its first listen address.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

pub fn load_or_create_key(path: &Path) -> Result<identity::Keypair, NetError> {
    let err = |reason: String| NetError::Key { path: path.to_path_buf(), reason };
    match std::fs::read(path) {
        Ok(bytes) => identity::Keypair::from_protobuf_encoding(&bytes).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let key = identity::Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| err(e.to_string()))?;
            if let Some(dir) = path.parent() {
                // the node's key is the store owner's alone, like the rest of the store
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| err(e.to_string()))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| err(e.to_string()))?;
            f.write_all(&bytes).and_then(|_| f.sync_all()).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

impl Node {
    /// Starts a node: listens, dials the configured peers, serves `source`'s blocks.
    pub fn start(config: NodeConfig, source: Arc<dyn BlockSource>) -> Result<Node, NetError> {
        let key = load_or_create_key(&config.key_path)?;
        let peer_id = key.public().to_peer_id();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cidfs-ipfs")
            .enable_all()
            .build()
            .map_err(|e| NetError::Start(e.to_string()))?;
        let start = |e: &dyn std::fmt::Display| NetError::Start(e.to_string());
        let (bitswap, mut inbound, opener) = streams::Behaviour::new();
        let mut bitswap = Some(bitswap);
        // listening and dialling register with the runtime's reactor
        let _guard = runtime.enter();
        let mut swarm = {
            libp2p::SwarmBuilder::with_existing_identity(key)
                .with_tokio()
                .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, || {
                    let mut c = yamux::Config::default();
                    c.set_max_num_streams(limits::STREAMS_PER_CONNECTION);
                    c
                })
                .map_err(|e| start(&e))?
                .with_behaviour(|key| {
                    let id = key.public().to_peer_id();
                    let mut kad = kad::Behaviour::new(id, kad::store::MemoryStore::new(id));
                    kad.set_mode(Some(if config.dht_server { kad::Mode::Server } else { kad::Mode::Client }));
                    Behaviour {
                        identify: identify::Behaviour::new(
                            identify::Config::new("ipfs/0.1.0".into(), key.public())
                                .with_agent_version(format!("cidfs/{}", env!("CARGO_PKG_VERSION"))),
                        ),
                        ping: ping::Behaviour::default(),
                        kad,
                        bitswap: bitswap.take().expect("built once"),
                        limits: libp2p::connection_limits::Behaviour::new(
                            libp2p::connection_limits::ConnectionLimits::default()
                                .with_max_established_per_peer(Some(limits::CONNECTIONS_PER_PEER))
                                .with_max_established_incoming(Some(limits::CONNECTIONS_INCOMING))
                                .with_max_pending_incoming(Some(limits::CONNECTIONS_INCOMING / 2))
                                .with_max_established(Some(limits::CONNECTIONS_TOTAL)),
                        ),
                    }
                })
                .map_err(|e| start(&e))?
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
                .build()
        };
        for addr in &config.listen {
            swarm.listen_on(addr.clone()).map_err(|e| start(&format!("listening on {addr}: {e}")))?;
        }
        let (commands, mut command_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                peers: HashMap::new(),
                wants: HashMap::new(),
                recent: lru::LruCache::new(std::num::NonZeroUsize::new(4096).expect("non-zero")),
                received: lru::LruCache::new(std::num::NonZeroUsize::new(RECEIVED_KEPT).expect("non-zero")),
                bad: HashSet::new(),
                listen: Vec::new(),
                stats: NetStats::default(),
                next_waiter: 0,
                dht_peers: HashSet::new(),
                bootstrap_pending: configured_peers(&config)
                    .into_iter()
                    .filter(|(_, what)| *what == "bootstrap")
                    .map(|(p, _)| p)
                    .collect(),
                lookups: HashMap::new(),
                unreachable: HashSet::new(),
                queues: limits::Queues::default(),
                inbound: limits::InboundGate::default(),
                inbound_share: HashMap::new(),
                pending_wants: HashMap::new(),
            }),
            opener,
            commands,
            source,
            handle: runtime.handle().clone(),
            dht: !config.bootstrap.is_empty(),
            started: Instant::now(),
            serve: config.serve.clone(),
            inbound_bytes: Arc::new(tokio::sync::Semaphore::new(limits::INBOUND_BYTES)),
            configured: configured_peers(&config),
        });
        let reader_inner = inner.clone();
        runtime.spawn(async move {
            while let Some((peer, stream, _version)) = inbound.recv().await {
                let mut st = reader_inner.state.lock().expect("lock poisoned");
                if !st.inbound.admit(peer) {
                    st.stats.streams_refused += 1;
                    drop(st);
                    drop(stream); // reset unread: neither we nor yamux hold its bytes
                    continue;
                }
                drop(st);
                let inner = reader_inner.clone();
                tokio::spawn(async move {
                    read_messages(inner.clone(), peer, stream).await;
                    let mut st = inner.state.lock().expect("lock poisoned");
                    st.inbound.leave(&peer);
                    if !st.inbound.reading(&peer) {
                        st.inbound_share.remove(&peer);
                    }
                });
            }
        });
        for addr in config.peers.iter().chain(&config.bootstrap) {
            if let Err(e) = swarm.dial(addr.clone()) {
                log::warn!("dialling {addr}: {e}");
            }
        }
        for addr in &config.bootstrap {
            if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            }
        }
        if inner.dht {
            for cid in &config.provide {
                if let Err(e) = swarm.behaviour_mut().kad.start_providing(dht_key(cid)) {
                    log::warn!("announcing {cid}: {e}");
                }
            }
        }
        if inner.dht {
            // past the grace, a bootstrap peer still being dialled is no route any more
            let grace_inner = inner.clone();
            runtime.spawn(async move {
                tokio::time::sleep(BOOTSTRAP_GRACE).await;
                settle_all(&grace_inner);
            });
        }
        let swarm_inner = inner.clone();
        let addrs_file = config.addrs_file.clone();
        runtime.spawn(async move {
            loop {
                tokio::select! {
                    event = swarm.select_next_some() => on_event(&swarm_inner, &mut swarm, event, addrs_file.as_deref()),
                    command = command_rx.recv() => match command {
                        Some(Command::Dial(addr)) => {
                            if let Err(e) = swarm.dial(addr.clone()) {
                                log::warn!("dialling {addr}: {e}");
                            }
                        }
                        Some(Command::Disconnect(peer)) => {
                            let _ = swarm.disconnect_peer_id(peer);
                        }
                        Some(Command::FindProviders(cid)) => {
                            let query = swarm.behaviour_mut().kad.get_providers(dht_key(&cid));
                            swarm_inner.state.lock().expect("lock poisoned").lookups.insert(query, (cid, false));
                        }
                        None => break,
                    },
                }
            }
        });
        drop(_guard);
        // ready means reachable: `cidfs id` (and whoever reads the addresses file) sees
        // where the node listens as soon as the mount or daemon says it is up
        let until = std::time::Instant::now() + LISTEN_WAIT;
        while !config.listen.is_empty()
            && inner.state.lock().expect("lock poisoned").listen.is_empty()
            && std::time::Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Node { inner, peer_id, _runtime: runtime })
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Which blocks the node gives to which peers.
    pub fn serving(&self) -> &Serve {
        &self.inner.serve
    }

    /// Addresses the node listens on (with `/p2p/<id>`), once it has bound them.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.inner.state.lock().expect("lock poisoned").listen.clone()
    }

    pub fn peers(&self) -> Vec<PeerId> {
        self.inner.state.lock().expect("lock poisoned").peers.keys().copied().collect()
    }

    /// `block` came from another tier: the readers waiting for it get it, and the peers
    /// asked are told to stop looking.
    pub fn delivered_elsewhere(&self, block: &Block) {
        let cid = *block.cid();
        let mut st = self.inner.state.lock().expect("lock poisoned");
        let Some(w) = st.wants.remove(&cid) else { return }; // bitswap was first
        let asked: Vec<PeerId> = w.asked.iter().copied().collect();
        deliver(&mut st, w, block.clone());
        drop(st);
        for peer in asked {
            send_ours(&self.inner, peer, Outgoing { cancels: vec![cid], ..Default::default() });
        }
    }

    pub fn stats(&self) -> NetStats {
        self.inner.state.lock().expect("lock poisoned").stats
    }

    /// Dials `addr` (`/ip4/…/tcp/…[/p2p/<id>]`).
    pub fn connect(&self, addr: Multiaddr) {
        let _ = self.inner.commands.send(Command::Dial(addr));
    }

    /// Waits until at least `n` peers are connected or `timeout` passes.
    pub fn wait_for_peers(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.peers().len() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Fetches `cid` from connected peers: verified, or an error within `timeout`.
    /// Concurrent calls for one CID share one request.
    pub fn get(&self, cid: &Cid, timeout: Duration) -> Result<Block, NetError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (id, targets, new_want) = {
            let mut st = self.inner.state.lock().expect("lock poisoned");
            if let Some(block) = st.received.get(cid) {
                return Ok(block.clone());
            }
            st.next_waiter += 1;
            let id = st.next_waiter;
            let peers: Vec<PeerId> = st.peers.keys().filter(|p| !st.bad.contains(p)).copied().collect();
            let dht = dht_reachable(&self.inner, &st);
            match st.wants.get_mut(cid) {
                Some(w) => {
                    w.waiters.push((id, tx));
                    (id, Vec::new(), false)
                }
                None if peers.is_empty() && !dht => {
                    return Err(NetError::NoPeers { cid: *cid });
                }
                None => {
                    let asked = peers.iter().copied().collect();
                    let lookup = self.inner.dht;
                    let want = Want { waiters: vec![(id, tx)], asked, dont_have: HashSet::new(), lookup };
                    st.wants.insert(*cid, want);
                    (id, peers, true)
                }
            }
        };
        for peer in targets {
            send_ours(&self.inner, peer, Outgoing { wants: vec![*cid], ..Default::default() });
        }
        if new_want && self.inner.dht {
            // peers we are not connected to may have it: ask the DHT who provides it
            let _ = self.inner.commands.send(Command::FindProviders(*cid));
        }
        // A want can be lost (a peer restarts, a stream is dropped under load): ask again,
        // backing off, until the deadline.
        let deadline = Instant::now() + timeout;
        let mut interval = REBROADCAST_FIRST;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(interval)) {
                Ok(Ok(block)) => return Ok(block),
                Ok(Err(why)) => return Err(NetError::NotFound { cid: *cid, why: why.into() }),
                Err(_) if left > interval => {
                    self.rebroadcast(cid);
                    interval = (interval * 2).min(REBROADCAST_MAX);
                }
                Err(_) => {
                    self.give_up(cid, id);
                    return Err(NetError::Timeout { cid: *cid, timeout, peers: self.peers().len() });
                }
            }
        }
    }

    /// Sends a still-open want for `cid` again to every usable connected peer.
    fn rebroadcast(&self, cid: &Cid) {
        let peers: Vec<PeerId> = {
            let mut st = self.inner.state.lock().expect("lock poisoned");
            let peers: Vec<PeerId> = st.peers.keys().filter(|p| !st.bad.contains(p)).copied().collect();
            let Some(w) = st.wants.get_mut(cid) else { return };
            w.asked.extend(peers.iter().copied());
            w.dont_have.clear();
            peers
        };
        log::debug!("asking {} peers again for {cid}", peers.len());
        for peer in peers {
            send_ours(&self.inner, peer, Outgoing { wants: vec![*cid], ..Default::default() });
        }
    }

    /// Waiter `id` stopped waiting for `cid`; the last one to go withdraws the want.
    fn give_up(&self, cid: &Cid, id: u64) {
        let asked = {
            let mut st = self.inner.state.lock().expect("lock poisoned");
            let Some(w) = st.wants.get_mut(cid) else { return };
            w.waiters.retain(|(i, _)| *i != id);
            if !w.waiters.is_empty() {
                return;
            }
            match st.wants.remove(cid) {
                Some(w) => {
                    // a peer may still be sending it: that is late, not a lie
                    st.recent.put(*cid, ());
                    w.asked
                }
                None => return,
            }
        };
        for peer in asked {
            send_ours(&self.inner, peer, Outgoing { cancels: vec![*cid], ..Default::default() });
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // waiters see their channel close and fail at once
        self.inner.state.lock().expect("lock poisoned").wants.clear();
    }
}

fn on_event(
    inner: &Arc<Inner>,
    swarm: &mut libp2p::Swarm<Behaviour>,
    event: SwarmEvent<BehaviourEvent>,
    addrs_file: Option<&Path>,
) {
    match event {
        SwarmEvent::NewListenAddr { address, .. } => {
            // announced as reachable (as Kubo announces its listen addresses by default):
            // the DHT's provider records carry these, so peers can dial us back
            swarm.add_external_address(address.clone());
            let full = address.with_p2p(*swarm.local_peer_id()).unwrap_or_else(|a| a);
            log::info!("IPFS node listening on {full}");
            let mut st = inner.state.lock().expect("lock poisoned");
            st.listen.push(full);
            if let Some(path) = addrs_file {
                let text: String = st.listen.iter().map(|a| format!("{a}\n")).collect();
                use std::os::unix::fs::OpenOptionsExt;
                let written = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(path)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
                if let Err(e) = written {
                    log::warn!("writing {}: {e}", path.display());
                }
            }
        }
        SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
            log::info!("connected to {peer_id} at {}", endpoint.get_remote_address());
            let wants: Vec<Cid> = {
                let mut st = inner.state.lock().expect("lock poisoned");
                if st.bad.contains(&peer_id) {
                    drop(st);
                    let _ = swarm.disconnect_peer_id(peer_id);
                    return;
                }
                st.peers.entry(peer_id).or_insert(None);
                st.bootstrap_pending.remove(&peer_id);
                st.unreachable.remove(&peer_id);
                let wants: Vec<Cid> = st.wants.keys().copied().collect();
                for cid in &wants {
                    if let Some(w) = st.wants.get_mut(cid) {
                        w.asked.insert(peer_id);
                    }
                }
                wants
            };
            if !wants.is_empty() {
                send_ours(inner, peer_id, Outgoing { wants, ..Default::default() });
            }
        }
        SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
            log::info!("disconnected from {peer_id}");
            let mut st = inner.state.lock().expect("lock poisoned");
            st.peers.remove(&peer_id);
            st.dht_peers.remove(&peer_id);
            st.pending_wants.remove(&peer_id);
            drop(st);
            // wants that only it could still answer (or, if it was the last DHT peer, only
            // the DHT) have nobody left
            settle_all(inner);
        }
        SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
            let (was_pending, first) = match peer_id {
                Some(p) => {
                    let mut st = inner.state.lock().expect("lock poisoned");
                    // (only configured peers are remembered: the set stays as small as the config)
                    let first = !inner.configured.contains_key(&p) || st.unreachable.insert(p);
                    (st.bootstrap_pending.remove(&p), first)
                }
                None => (false, true),
            };
            if was_pending {
                settle_all(inner);
            }
            // a configured peer that cannot be reached is the user's business: said once
            // (the DHT and reconnects dial it again and again)
            let configured = peer_id.and_then(|p| inner.configured.get(&p).map(|what| (p, *what)));
            match configured.filter(|_| first) {
                Some((p, "bootstrap")) => log::warn!(
                    "cannot reach DHT bootstrap peer {p}: {error} (until one is reachable, blocks come only from \
                     connected peers and gateways; check the network, pass --bootstrap, or mount with --offline to \
                     read only what is stored here)"
                ),
                Some((p, what)) => log::warn!("cannot reach {what} {p}: {error}"),
                None => {
                    log::debug!("connecting to {}: {error}", peer_id.map_or("a peer".to_string(), |p| p.to_string()))
                }
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
            id,
            result: kad::QueryResult::GetProviders(result),
            step,
            ..
        })) => {
            let found = match result {
                Ok(kad::GetProvidersOk::FoundProviders { key, providers }) => {
                    dial_providers(inner, swarm, &key, providers)
                }
                _ => false,
            };
            let finished = {
                let mut st = inner.state.lock().expect("lock poisoned");
                if let Some(lookup) = st.lookups.get_mut(&id) {
                    lookup.1 |= found;
                }
                if step.last { st.lookups.remove(&id) } else { None }
            };
            // a lookup that named nobody leaves only the connected peers to wait for
            if let Some((cid, false)) = finished {
                let mut st = inner.state.lock().expect("lock poisoned");
                if let Some(w) = st.wants.get_mut(&cid) {
                    w.lookup = false;
                }
                settle(inner, &mut st, cid, "");
            }
        }
        // peers that answer DHT queries join the routing table at the addresses they listen on
        SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }))
            if info.protocols.iter().any(|p| p.as_ref() == "/ipfs/kad/1.0.0") =>
        {
            inner.state.lock().expect("lock poisoned").dht_peers.insert(peer_id);
            for addr in info.listen_addrs {
                swarm.behaviour_mut().kad.add_address(&peer_id, addr);
            }
        }
        _ => {}
    }
}

/// Dials the providers a DHT lookup named; whether it named any we could ask.
fn dial_providers(
    inner: &Arc<Inner>,
    swarm: &mut libp2p::Swarm<Behaviour>,
    key: &kad::RecordKey,
    providers: HashSet<PeerId>,
) -> bool {
    let local = *swarm.local_peer_id();
    let (connected, bad): (HashSet<PeerId>, HashSet<PeerId>) = {
        let st = inner.state.lock().expect("lock poisoned");
        (st.peers.keys().copied().collect(), st.bad.clone())
    };
    let mut named = false;
    for peer in providers {
        if peer == local || bad.contains(&peer) {
            continue;
        }
        named = true;
        if connected.contains(&peer) {
            continue; // asked already
        }
        log::info!("the DHT names {peer} as a provider of {}; connecting", multihash_hex(key.as_ref()));
        // the query just learnt the provider's addresses: dialling by peer ID finds them
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = swarm.dial(opts) {
            log::debug!("dialling provider {peer}: {e}");
        }
    }
    named
}

/// Queues our own request `out` for `peer` (never throttled).
fn send_ours(inner: &Arc<Inner>, peer: PeerId, out: Outgoing) {
    send(inner, peer, out, true);
}

/// Queues `out` for `peer`, starting its writer task if needed, within the peer's and the
/// total queue bounds unless `ours` (see [`limits`]).
fn send(inner: &Arc<Inner>, peer: PeerId, out: Outgoing, ours: bool) -> Admit {
    let mut st = inner.state.lock().expect("lock poisoned");
    if st.bad.contains(&peer) {
        // dropped (a liar, a flooder): nothing more goes to it, and nothing brings it back
        return Admit::Queued;
    }
    let admit = st.queues.reserve(peer, out.size(), ours);
    if admit != Admit::Queued {
        st.stats.replies_throttled += 1;
        return admit;
    }
    let slot = st.peers.entry(peer).or_insert(None);
    let tx = match slot {
        Some(tx) if !tx.is_closed() => tx.clone(),
        _ => {
            let (tx, rx) = mpsc::unbounded_channel();
            *slot = Some(tx.clone());
            inner.handle.spawn(write_messages(inner.clone(), peer, rx));
            tx
        }
    };
    drop(st);
    let _ = tx.send(out);
    Admit::Queued
}

/// One peer's outbound stream: opened with the newest protocol it supports, then every
/// queued message in order.
async fn write_messages(inner: Arc<Inner>, peer: PeerId, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    write_queue(&inner, peer, &mut rx).await;
    // what is left goes with this writer: its room in the queues is given back
    rx.close();
    let mut st = inner.state.lock().expect("lock poisoned");
    while let Ok(out) = rx.try_recv() {
        st.queues.release(&peer, out.size());
    }
}

async fn write_queue(inner: &Arc<Inner>, peer: PeerId, rx: &mut mpsc::UnboundedReceiver<Outgoing>) {
    let (mut stream, proto) = match inner.opener.open(peer).await {
        Ok(opened) => opened,
        Err(e) => {
            log::debug!("bitswap stream to {peer}: {e}");
            return;
        }
    };
    while let Some(out) = rx.recv().await {
        let size = out.size();
        let mut msg = bitswap::reply_message(proto, out.blocks, &out.have, &out.dont_have);
        if !out.wants.is_empty() || !out.cancels.is_empty() {
            let mut entries = bitswap::want_message(&out.wants, WANT_BLOCK, false).wantlist.unwrap_or_default().entries;
            entries.extend(bitswap::want_message(&out.cancels, WANT_BLOCK, true).wantlist.unwrap_or_default().entries);
            msg.wantlist = Some(bitswap::Wantlist { entries, full: false });
        }
        log::trace!(
            "to {peer} over {proto}: want {:?} cancel {:?}, {} blocks, {} have, {} don't-have",
            out.wants,
            out.cancels,
            msg.payload.len() + msg.blocks.len(),
            out.have.len(),
            out.dont_have.len()
        );
        let written = stream.write_all(&bitswap::frame(&msg)).await;
        drop(msg);
        inner.state.lock().expect("lock poisoned").queues.release(&peer, size);
        if let Err(e) = written {
            log::debug!("writing to {peer}: {e}");
            return; // the next send starts a new writer
        }
        let _ = stream.flush().await;
        pump(inner, peer); // room for what the peer waits for
    }
}

/// Reads messages a peer sends us on one inbound stream, until it closes.
async fn read_messages(inner: Arc<Inner>, peer: PeerId, mut stream: libp2p::Stream) {
    loop {
        // (the permit keeps the body's bytes counted until the message is handled)
        let (body, _permit) = match read_frame(&inner, peer, &mut stream).await {
            Ok(Some(read)) => read,
            Ok(None) => return,
            Err(e) => {
                log::debug!("reading from {peer}: {e}");
                return;
            }
        };
        let msg = match bitswap::decode(&body) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("{peer}: {e}; dropping the peer");
                drop_peer(&inner, peer);
                return;
            }
        };
        if !on_message(&inner, peer, &msg) {
            return;
        }
    }
}

/// The inbound bytes a message holds: the peer's share and the node's.
type InboundPermits = (tokio::sync::OwnedSemaphorePermit, tokio::sync::OwnedSemaphorePermit);

/// One length-prefixed message. Its body is allocated and read only once the bytes it
/// claims are granted from the peer's and the node's inbound budgets (held until the body
/// is handled), so what peers claim never adds up past them. (Reading through
/// `take().read_to_end()` instead made yamux reset busy connections under load.)
async fn read_frame(
    inner: &Inner,
    peer: PeerId,
    stream: &mut libp2p::Stream,
) -> std::io::Result<Option<(Vec<u8>, InboundPermits)>> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        if stream.read(&mut b).await? == 0 {
            return if i == 0 { Ok(None) } else { Err(std::io::ErrorKind::UnexpectedEof.into()) };
        }
        len |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    if len as usize > bitswap::MAX_MESSAGE {
        return Err(std::io::Error::other(format!("message of {len} bytes is over the limit")));
    }
    let stopping = |_| std::io::Error::other("the node is stopping");
    // the peer's share first: one peer holding all it may never blocks the others
    let share = inner
        .state
        .lock()
        .expect("lock poisoned")
        .inbound_share
        .entry(peer)
        .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(limits::INBOUND_BYTES_PER_PEER)))
        .clone();
    let own = share.acquire_many_owned(len.max(1) as u32).await.map_err(stopping)?;
    let all = inner.inbound_bytes.clone().acquire_many_owned(len.max(1) as u32).await.map_err(stopping)?;
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).await?;
    Ok(Some((body, (own, all))))
}

/// Hands `block` to everyone waiting on want `w` (already removed from the wants).
fn deliver(st: &mut State, w: Want, block: Block) {
    let cid = *block.cid();
    for (_, tx) in w.waiters {
        let _ = tx.send(Ok(block.clone()));
    }
    st.recent.put(cid, ());
    st.received.put(cid, block);
}

/// The peer IDs named by `--peer` and `--bootstrap` addresses.
fn configured_peers(config: &NodeConfig) -> HashMap<PeerId, &'static str> {
    let named = |addrs: &[Multiaddr], what: &'static str| -> Vec<(PeerId, &'static str)> {
        addrs
            .iter()
            .filter_map(|a| match a.iter().last() {
                Some(libp2p::multiaddr::Protocol::P2p(p)) => Some((p, what)),
                _ => None,
            })
            .collect()
    };
    named(&config.bootstrap, "bootstrap").into_iter().chain(named(&config.peers, "--peer")).collect()
}

/// Whether a DHT lookup could still reach a provider: a DHT peer is connected, or a
/// bootstrap peer is still being dialled within [`BOOTSTRAP_GRACE`] of the start.
fn dht_reachable(inner: &Inner, st: &State) -> bool {
    inner.dht
        && (!st.dht_peers.is_empty() || (!st.bootstrap_pending.is_empty() && inner.started.elapsed() < BOOTSTRAP_GRACE))
}

/// Fails want `cid` at once if nobody is left who could answer it: every usable connected
/// peer said don't-have (or none is connected), and no DHT lookup for it can still name a
/// provider. `extra` adds to the reason.
fn settle(inner: &Inner, st: &mut State, cid: Cid, extra: &str) {
    let dht = dht_reachable(inner, st);
    let connected: Vec<PeerId> = st.peers.keys().filter(|p| !st.bad.contains(p)).copied().collect();
    let Some(w) = st.wants.get(&cid) else { return };
    if (w.lookup && dht) || !connected.iter().all(|p| w.dont_have.contains(p)) {
        return;
    }
    let mut why = if connected.is_empty() {
        " (no peer connected".to_string()
    } else {
        format!(" ({} connected peers said don't-have", connected.len())
    };
    if inner.dht {
        why.push_str(if dht { "; the DHT found no provider" } else { "; the DHT is unreachable" });
    }
    why.push_str(extra);
    why.push(')');
    nobody_has(st, cid, &why);
}

/// [`settle`] for every open want (after something that was waited for went away).
fn settle_all(inner: &Inner) {
    let mut st = inner.state.lock().expect("lock poisoned");
    let cids: Vec<Cid> = st.wants.keys().copied().collect();
    for cid in cids {
        settle(inner, &mut st, cid, "");
    }
}

/// Fails want `cid` at once: every peer asked said it does not have the block (`why`:
/// anything else worth telling).
fn nobody_has(st: &mut State, cid: Cid, why: &str) {
    if let Some(w) = st.wants.remove(&cid) {
        for (_, tx) in w.waiters {
            let _ = tx.send(Err(why.to_string()));
        }
    }
    st.recent.put(cid, ());
}

fn drop_peer(inner: &Arc<Inner>, peer: PeerId) {
    let mut st = inner.state.lock().expect("lock poisoned");
    if st.bad.insert(peer) {
        st.stats.peers_dropped += 1;
    }
    st.peers.remove(&peer);
    st.pending_wants.remove(&peer);
    for w in st.wants.values_mut() {
        w.asked.remove(&peer);
    }
    drop(st);
    let _ = inner.commands.send(Command::Disconnect(peer));
}

/// Handles one message; false if the peer was dropped.
fn on_message(inner: &Arc<Inner>, peer: PeerId, msg: &Message) -> bool {
    let blocks = match bitswap::blocks_of(msg) {
        Ok(b) => b,
        Err(e) => {
            log::warn!("{peer} sent a bad block ({e}); dropping the peer");
            drop_peer(inner, peer);
            return false;
        }
    };
    log::trace!(
        "from {peer}: blocks {:?}, presences {}, wants {}",
        blocks.iter().map(|b| *b.cid()).collect::<Vec<_>>(),
        msg.block_presences.len(),
        msg.wantlist.as_ref().map_or(0, |w| w.entries.len())
    );
    let mut cancels = Vec::new();
    {
        let mut st = inner.state.lock().expect("lock poisoned");
        for block in blocks {
            let cid = *block.cid();
            match st.wants.remove(&cid) {
                Some(w) => {
                    st.stats.blocks_fetched += 1;
                    st.stats.bytes_fetched += block.data().len() as u64;
                    // the sender too: peers (Helia) keep a sent want open until cancelled,
                    // and would not send the block again if it were wanted again
                    let mut asked = w.asked.clone();
                    asked.insert(peer);
                    cancels.extend(asked.into_iter().map(|p| (p, cid)));
                    deliver(&mut st, w, block);
                }
                None if st.recent.contains(&cid) => {} // a late duplicate
                None => {
                    drop(st);
                    log::warn!(
                        "{peer} sent {cid}, which nobody asked for (bytes not matching a want); dropping the peer"
                    );
                    drop_peer(inner, peer);
                    return false;
                }
            }
        }
        let (_, dont_have) = bitswap::presences_of(msg);
        let connected: HashSet<PeerId> = st.peers.keys().filter(|p| !st.bad.contains(p)).copied().collect();
        for cid in dont_have {
            if let Some(w) = st.wants.get_mut(&cid) {
                w.dont_have.insert(peer);
                if connected.iter().all(|p| w.dont_have.contains(p)) {
                    settle(inner, &mut st, cid, "");
                }
            }
        }
    }
    for (p, cid) in cancels {
        send_ours(inner, p, Outgoing { cancels: vec![cid], ..Default::default() });
    }
    serve(inner, peer, msg);
    true
}

/// Answers a peer's wants from the local store.
fn serve(inner: &Arc<Inner>, peer: PeerId, msg: &Message) {
    let wants = bitswap::wants_of(msg);
    // a block this peer may not have is answered as one we lack: its presence is private too
    let may_have = |cid: &Cid| inner.serve.allows(&peer, cid, inner.source.as_ref());
    let mut reply = Outgoing::default();
    {
        let mut st = inner.state.lock().expect("lock poisoned");
        let State { pending_wants, stats, .. } = &mut *st;
        let pending = pending_wants.entry(peer).or_default();
        if !wants.cancels.is_empty() {
            pending.retain(|(c, _)| !wants.cancels.contains(c));
        }
        // a message may name any number of wants: the first ones are looked at
        for (cid, send_dont_have) in wants.blocks.into_iter().take(limits::WANTS_PER_MESSAGE) {
            if !may_have(&cid) {
                if send_dont_have {
                    reply.dont_have.push(cid);
                }
            } else if pending.len() < limits::PENDING_WANTS_PER_PEER {
                pending.push_back((cid, send_dont_have));
            } else {
                stats.replies_throttled += 1; // asked again later, if it still wants it
            }
        }
        if pending.is_empty() {
            pending_wants.remove(&peer);
        }
    }
    for (cid, send_dont_have) in wants.haves.into_iter().take(limits::WANTS_PER_MESSAGE) {
        match may_have(&cid) && inner.source.local(&cid).is_some() {
            true => reply.have.push(cid),
            false if send_dont_have => reply.dont_have.push(cid),
            false => {}
        }
    }
    let answers = !(reply.have.is_empty() && reply.dont_have.is_empty());
    if answers && !queue_reply(inner, peer, reply) {
        return;
    }
    pump(inner, peer);
}

/// Sends `peer` the blocks it is waiting for, as long as its queue has room; the writer
/// calls it again each time a message leaves the queue.
fn pump(inner: &Arc<Inner>, peer: PeerId) {
    loop {
        let next = {
            let mut st = inner.state.lock().expect("lock poisoned");
            if !st.queues.has_room(&peer, 1) {
                return;
            }
            let Some(queue) = st.pending_wants.get_mut(&peer) else { return };
            let next = queue.pop_front();
            if queue.is_empty() {
                st.pending_wants.remove(&peer);
            }
            match next {
                Some(next) => next,
                None => return,
            }
        };
        let (cid, send_dont_have) = next;
        let reply = match inner.source.local(&cid) {
            Some(data) => Outgoing { blocks: vec![(cid, data)], ..Default::default() },
            None if send_dont_have => Outgoing { dont_have: vec![cid], ..Default::default() },
            None => continue,
        };
        let bytes = reply.blocks.first().map(|(_, d)| d.len() as u64);
        if !queue_reply(inner, peer, reply) {
            // no room after all: the want waits for the next message to leave the queue
            let mut st = inner.state.lock().expect("lock poisoned");
            st.pending_wants.entry(peer).or_default().push_front((cid, send_dont_have));
            return;
        }
        if let Some(bytes) = bytes {
            let mut st = inner.state.lock().expect("lock poisoned");
            st.stats.blocks_served += 1;
            st.stats.bytes_served += bytes;
        }
    }
}

/// Queues a reply to `peer`'s wants; false if it was not queued (throttled, or the peer
/// was dropped for flooding).
fn queue_reply(inner: &Arc<Inner>, peer: PeerId, reply: Outgoing) -> bool {
    match send(inner, peer, reply, false) {
        Admit::Queued => true,
        Admit::Throttled => false,
        Admit::Drop => {
            log::warn!("{peer} keeps asking faster than it reads the answers; dropping the peer");
            inner.state.lock().expect("lock poisoned").stats.peers_flooding += 1;
            drop_peer(inner, peer);
            false
        }
    }
}
