//! The IPFS tier against real third-party peers on 127.0.0.1, through a real mount:
//! (a) Helia holds a file, cidfs reads it at `/.ipfs/<cid>`; (b) Helia fetches a file
//! written into the drive; (c) the same two with Kubo; (d) a lying peer (an in-process
//! test double) is dropped and the read succeeds from an honest one; (e) with nobody
//! holding a block, the read fails with EIO in bounded time.
//!
//! Also `cidfs id`, `swarm peers`, `swarm connect` and `status` against the live mount.
//! The harness starts every peer itself; nothing bootstraps to the public network.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Cli, json_str, run_ok};

/// A third-party peer serving one file; stopped (stdin closed, then killed) on drop.
struct Peer {
    child: Child,
    cid: String,
    addr: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a harness peer in `mode` over `file`; returns it and the JSON line it printed
/// once ready.
fn start(mut cmd: Command, mode: &str, file: &Path) -> (Child, String) {
    let mut child =
        cmd.arg(mode).arg(file).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("cid"), "the peer did not start ({mode}): {line:?}");
    (child, line)
}

fn serve(cmd: Command, file: &Path) -> Peer {
    let (child, line) = start(cmd, "serve", file);
    let (cid, addr) = (json_str(&line, "cid"), json_str(&line, "addrs"));
    Peer { child, cid, addr }
}

fn helia() -> Command {
    let mut c = Command::new("node");
    c.arg(common::interop_dir().join("helia_peer.mjs"));
    c
}

fn kubo() -> Command {
    let mut c = Command::new("python3");
    c.arg(common::interop_dir().join("kubo_peer.py"));
    c
}

/// The mount's node address, as it wrote it for `cidfs id`.
fn node_addr(cli: &Cli) -> String {
    let path = cli.home.path().join("ipfs/addrs");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().next().expect("a listen address").to_string()
}

/// Reads a file a third-party peer holds through the mount; the peer is given with
/// `--peer`, or connected while mounted with `cidfs swarm connect`.
fn read_through_mount(peer: Command, want: &[u8], swarm_connect: bool) {
    let cli = Cli::new();
    let file = cli.write("held-by-peer.bin", want);
    let peer = serve(peer, &file);
    let peer_id = peer.addr.rsplit('/').next().unwrap().to_string();
    let offline_id = cli.ok(&["id"]).trim().to_string();
    let m = if swarm_connect {
        let m = cli.mount("mnt", &[]);
        assert_eq!(cli.ok(&["swarm", "peers"]).trim(), "");
        assert_eq!(cli.ok(&["swarm", "connect", &peer.addr]).trim(), format!("connected to {peer_id}"));
        m
    } else {
        cli.mount("mnt", &["--peer", &peer.addr])
    };
    assert_eq!(cli.ok(&["swarm", "peers"]).trim(), peer_id);
    let err = cli.fails(&["swarm", "connect", "not-a-multiaddr"], 1);
    assert!(err.contains("is not a multiaddr"), "{err}");
    let err = cli.fails(&["swarm", "connect", "/ip4/127.0.0.1/tcp/1"], 1);
    assert!(err.contains("names no peer"), "{err}");
    let id = cli.ok(&["id"]);
    assert_eq!(id.lines().next(), Some(offline_id.as_str()), "one persistent peer key");
    assert!(id.contains("/ip4/127.0.0.1/tcp/"), "{id}");
    let got = std::fs::read(m.dir.join(".ipfs").join(&peer.cid)).unwrap();
    assert!(got == want, "bytes differ ({} read, {} wanted)", got.len(), want.len());
    let status = cli.ok(&["status"]);
    assert!(status.contains("(1 peers connected)") && status.contains("fetched: "), "{status}");
    assert!(!status.contains("fetched: 0 blocks"), "{status}");
    // the blocks are now cached locally: readable with the peer gone
    let peer_cid = peer.cid.clone();
    drop(peer);
    drop(m);
    let cid = peer_cid;
    let m = cli.mount("mnt", &["--offline"]);
    assert!(std::fs::read(m.dir.join(".ipfs").join(&cid)).unwrap() == want, "served from the cache");
}

/// A third-party peer fetches a file written into the drive. The drive is private by
/// default, so the mount trusts that peer (`--trust`); a stranger gets nothing of it
/// (`a_stranger_gets_published_blocks_but_none_of_the_drive`).
fn fetch_from_drive(mut peer: Command) {
    let cli = Cli::new();
    let want = common::noise(16 << 20 | 12345, 41);
    let mut fetcher = peer
        .arg("fetch-when-told")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(fetcher.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let peer_id = json_str(&line, "peer");
    let m = cli.mount("mnt", &["--trust", &peer_id]);
    std::fs::write(m.dir.join("written.bin"), &want).unwrap();
    std::fs::File::open(m.dir.join("written.bin")).unwrap().sync_all().unwrap();
    let cid = String::from_utf8(common::getxattr(&m.dir.join("written.bin"), "ipfs.cid").unwrap()).unwrap();
    let fetched = cli.path("fetched.bin");
    let order = format!("{cid} {} {}\n", node_addr(&cli), fetched.display());
    std::io::Write::write_all(fetcher.stdin.as_mut().unwrap(), order.as_bytes()).unwrap();
    let mut report = String::new();
    std::io::Read::read_to_string(&mut out, &mut report).unwrap();
    assert!(fetcher.wait().unwrap().success(), "the fetch failed: {report}");
    assert!(std::fs::read(&fetched).unwrap() == want, "bytes differ: {report}");
}

#[test]
fn helia_serves_a_file_cidfs_reads_through_the_mount() {
    read_through_mount(helia(), &common::noise(16 << 20 | 777, 40), true);
}

#[test]
fn the_fetch_cache_stays_under_its_cap_and_evicted_blocks_are_fetched_again() {
    let cli = Cli::new();
    let want = common::noise(16 << 20, 47);
    let peer = serve(helia(), &cli.write("held.bin", &want));
    let segments_bytes = || -> u64 {
        let dir = cli.home.path().join("segments");
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
    };
    for round in 0..2 {
        let m = cli.mount("mnt", &["--peer", &peer.addr, "--cache-size", "4M"]);
        let got = std::fs::read(m.dir.join(".ipfs").join(&peer.cid)).unwrap();
        assert!(got == want, "round {round}: bytes differ");
        // fetched blocks reach the disk in the background: wait for the writer to catch up
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut status = cli.ok(&["status"]);
        while status.contains("0 B evicted") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            status = cli.ok(&["status"]);
        }
        assert!(status.contains(" of 4.0 MiB on disk"), "{status}");
        assert!(!status.contains("0 B evicted"), "16 MiB read through a 4 MiB cache evicts: {status}");
        assert!(!status.contains(" 0 blocks (0 B) fetched"), "round {round} fetched again: {status}");
        drop(m);
        let on_disk = segments_bytes();
        assert!(on_disk <= 4 << 20, "round {round}: {on_disk} bytes of cache on disk");
    }
}

/// Helia serving a file's blocks as a trustless HTTP gateway, and a lying twin.
struct Gateway {
    peer: Peer,
    url: String,
    liar: String,
}

fn helia_gateway(file: &Path) -> Gateway {
    let (child, line) = start(helia(), "gateway", file);
    let (cid, url, liar) = (json_str(&line, "cid"), json_str(&line, "url"), json_str(&line, "liar"));
    let addr = json_str(&line, "addrs");
    Gateway { peer: Peer { child, cid, addr }, url, liar }
}

#[test]
fn a_trustless_gateway_serves_reads_and_a_lying_one_is_dropped() {
    let cli = Cli::new();
    let want = common::noise(16 << 20 | 777, 48);
    let gw = helia_gateway(&cli.write("held.bin", &want));
    // no bitswap peer at all: the gateways are the only source; the liar is asked first
    let m = cli.mount("mnt", &["--gateway", &gw.liar, "--gateway", &gw.url]);
    let got = std::fs::read(m.dir.join(".ipfs").join(&gw.peer.cid)).unwrap();
    assert!(got == want, "bytes differ ({} read, {} wanted)", got.len(), want.len());
    let status = cli.ok(&["status"]);
    assert!(status.contains("gateways dropped for bad blocks: 1;"), "{status}");
    let line = status.lines().find(|l| l.contains("gateways: ")).unwrap();
    let blocks: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(blocks >= 65, "16 MiB is 65 blocks or more, all from the gateway: {status}");
    // a block no gateway has fails with EIO at once (no peers, no DHT): the gateway's
    // 404 is final
    let absent = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    let started = Instant::now();
    let err = std::fs::read(m.dir.join(".ipfs").join(absent)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn gateways_wait_while_a_connected_peer_delivers() {
    let cli = Cli::new();
    let want = common::noise(16 << 20, 49);
    let gw = helia_gateway(&cli.write("held.bin", &want));
    // the same Helia serves the blocks over bitswap and over HTTP
    let m = cli.mount("mnt", &["--peer", &gw.peer.addr, "--gateway", &gw.url]);
    let got = std::fs::read(m.dir.join(".ipfs").join(&gw.peer.cid)).unwrap();
    assert!(got == want, "bytes differ");
    let status = cli.ok(&["status"]);
    let count = |label: &str| -> u64 {
        let line = status.lines().find(|l| l.trim_start().starts_with(label)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let (bitswap, http) = (count("fetched:"), count("gateways:"));
    // a block the peer has is not downloaded twice: the gateway is asked only for blocks
    // the peer did not deliver within its head start (a few, on a loaded machine)
    assert!(bitswap >= 65 && http * 4 < bitswap, "bitswap {bitswap}, gateway {http}: {status}");
}

#[test]
fn an_unreachable_gateway_fails_reads_with_eio_not_a_hang() {
    let cli = Cli::new();
    // nothing listens on port 1
    let m = cli.mount("mnt", &["--gateway", "http://127.0.0.1:1", "--fetch-timeout", "60"]);
    let absent = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    let started = Instant::now();
    let err = std::fs::read(m.dir.join(".ipfs").join(absent)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    let status = cli.ok(&["status"]);
    assert!(status.contains("failed requests: 1\n"), "{status}");
    // the log says what failed, and where to look
    let log = std::fs::read_to_string(cli.path("mnt.log")).unwrap();
    assert!(log.contains(absent) && log.contains("gateways failed: http://127.0.0.1:1: "), "{log}");
    let err = cli.fails(&["mount", "x", "--gateway", "gw.example"], 2);
    assert!(err.contains("not an http:// or https:// URL"), "{err}");
    let err = cli.fails(&["mount", "x", "--cache-size", "10X"], 2);
    assert!(err.contains("unknown size suffix"), "{err}");
}

#[test]
fn with_no_peer_no_gateway_and_no_dht_route_a_read_fails_at_once() {
    let cli = Cli::new();
    // the DHT is in use, but its only bootstrap peer cannot be reached (nothing listens on
    // port 1): once that dial fails, nobody could ever answer
    let nobody = libp2p::identity::Keypair::generate_ed25519().public().to_peer_id();
    let bootstrap = format!("/ip4/127.0.0.1/tcp/1/p2p/{nobody}");
    let m = cli.mount("mnt", &["--bootstrap", &bootstrap, "--fetch-timeout", "60"]);
    let absent = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    let started = Instant::now();
    let err = std::fs::read(m.dir.join(".ipfs").join(absent)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "waited {:?} for nobody", started.elapsed());
    // the log says why, naming the CID once, and suggests --offline for the bootstrap
    let log = std::fs::read_to_string(cli.path("mnt.log")).unwrap();
    let line = log.lines().find(|l| l.contains(absent) && l.contains("ERROR")).unwrap_or_else(|| panic!("{log}"));
    assert_eq!(line.matches(absent).count(), 1, "{line}");
    assert!(line.contains("no IPFS peer is connected") || line.contains("the DHT is unreachable"), "{line}");
    assert!(log.contains("cannot reach DHT bootstrap peer") && log.contains("--offline"), "{log}");
    assert_eq!(log.matches("cannot reach DHT bootstrap peer").count(), 1, "said once: {log}");
    // the CLI, through the running mount, fails at once too, saying the CID once
    let started = Instant::now();
    let err = cli.fails(&["cat", absent], 3);
    assert!(started.elapsed() < Duration::from_secs(20), "waited {:?}", started.elapsed());
    assert_eq!(err.matches(absent).count(), 1, "{err}");
}

#[test]
fn helia_fetches_a_file_written_into_the_drive() {
    fetch_from_drive(helia());
}

#[test]
fn kubo_serves_a_file_cidfs_reads_through_the_mount() {
    read_through_mount(kubo(), &common::noise(16 << 20 | 999, 42), false);
}

#[test]
fn kubo_fetches_a_file_written_into_the_drive() {
    fetch_from_drive(kubo());
}

/// An in-process node serving `source` on loopback (a fault-injecting test double).
fn test_double(cli: &Cli, name: &str, source: Arc<dyn cidfs::ipfs::BlockSource>) -> cidfs::ipfs::Node {
    let config = cidfs::ipfs::NodeConfig {
        key_path: cli.path(&format!("{name}.key")),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        peers: vec![],
        bootstrap: vec![],
        addrs_file: None,
        provide: vec![],
        dht_server: false,
        serve: cidfs::ipfs::Serve::All,
    };
    let node = cidfs::ipfs::Node::start(config, source).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.listen_addrs().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    node
}

/// Claims every block, answers with wrong bytes.
struct Liar;

impl cidfs::ipfs::BlockSource for Liar {
    fn local(&self, _cid: &cid::Cid) -> Option<bytes::Bytes> {
        Some(bytes::Bytes::from_static(b"forged"))
    }
}

#[test]
fn a_lying_peer_is_dropped_and_the_read_succeeds_from_helia() {
    let cli = Cli::new();
    let want = common::noise(2 << 20 | 5, 43);
    let file = cli.write("held.bin", &want);
    let honest = serve(helia(), &file);
    let liar = test_double(&cli, "liar", Arc::new(Liar));
    let liar_addr = liar.listen_addrs()[0].to_string();
    let m = cli.mount("mnt", &["--peer", &liar_addr, "--peer", &honest.addr]);
    assert!(std::fs::read(m.dir.join(".ipfs").join(&honest.cid)).unwrap() == want);
    drop(m);
    let log = std::fs::read_to_string(cli.path("mnt.log")).unwrap();
    assert!(log.contains(&format!("{} sent", liar.peer_id())) && log.contains("dropping the peer"), "{log}");
}

#[test]
fn with_nobody_holding_a_block_reads_fail_with_eio_in_bounded_time() {
    let cli = Cli::new();
    // a CID that only another store holds
    let elsewhere = Cli::new();
    let cid = elsewhere.add_q(&elsewhere.write("only-there.bin", &common::noise(300_000, 44)), &[]);
    let empty = serve(helia(), &cli.write("other.bin", b"something else"));
    for args in [vec!["--offline"], vec!["--peer", &empty.addr, "--fetch-timeout", "3"]] {
        let m = cli.mount("mnt", &args);
        let t = Instant::now();
        let err = std::fs::read(m.dir.join(".ipfs").join(&cid)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{args:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "{args:?}: {:?}", t.elapsed());
        drop(m);
        let log = std::fs::read_to_string(cli.path("mnt.log")).unwrap();
        assert!(log.contains(&cid), "the log names the CID: {log}");
    }
}

#[test]
fn swarm_commands_need_a_running_mount_and_status_says_the_node_is_off() {
    let cli = Cli::new();
    let out = cli.run(&["swarm", "peers"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cidfs mount is running"), "{out:?}");
    assert!(cli.ok(&["status"]).contains("ipfs:      not running"));
    let m = cli.mount("mnt", &["--offline"]);
    let out =
        cli.run(&["swarm", "connect", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWHcpPEh6i5Tyni2jnGJMJV8dsRYqV4HhAm2jGJM9Bogk9"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--offline"), "{out:?}");
    assert!(cli.ok(&["status"]).contains("ipfs:      off (--offline)"));
    drop(m);
    let err = cli.fails(&["daemon", "--offline"], 1);
    assert!(err.contains("drop --offline"), "{err}");
    // a peer key that is not one is named, and nothing starts
    std::fs::create_dir_all(cli.home.path().join("ipfs")).unwrap();
    std::fs::write(cli.home.path().join("ipfs/peer.key"), b"not a key").unwrap();
    let err = cli.fails(&["daemon"], 1);
    assert!(err.contains("peer.key"), "{err}");
}

/// Holds every block the test asks for, but takes its time to answer each want.
struct Sluggish(std::collections::HashMap<cid::Cid, bytes::Bytes>);

impl cidfs::ipfs::BlockSource for Sluggish {
    fn local(&self, cid: &cid::Cid) -> Option<bytes::Bytes> {
        std::thread::sleep(Duration::from_millis(400));
        self.0.get(cid).cloned()
    }
}

#[test]
fn reads_waiting_on_the_network_do_not_stall_the_rest_of_the_mount() {
    let cli = Cli::new();
    // eight small files only a slow peer holds (one raw block each)
    let blocks: Vec<cidfs::block::Block> = (0..8u8)
        .map(|i| cidfs::block::Block::encode(cid::Version::V1, cidfs::block::RAW, vec![i; 1000]).unwrap())
        .collect();
    let source = Sluggish(blocks.iter().map(|b| (*b.cid(), b.data().clone())).collect());
    let slow = test_double(&cli, "slow", Arc::new(source));
    let m = cli.mount("mnt", &["--peer", &slow.listen_addrs()[0].to_string(), "--threads", "2"]);
    std::fs::write(m.dir.join("local.txt"), b"here").unwrap();
    let readers: Vec<_> = blocks
        .iter()
        .map(|b| {
            let path = m.dir.join(".ipfs").join(b.cid().to_string());
            std::thread::spawn(move || std::fs::read(path))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // the slow reads are in flight
    let t = Instant::now();
    assert_eq!(std::fs::read(m.dir.join("local.txt")).unwrap(), b"here");
    assert!(std::fs::read_dir(&m.dir).unwrap().count() >= 1);
    assert!(t.elapsed() < Duration::from_secs(2), "the mount stalled for {:?}", t.elapsed());
    for (r, b) in readers.into_iter().zip(&blocks) {
        assert_eq!(r.join().unwrap().unwrap(), b.data().as_ref());
    }
}

#[test]
fn the_daemon_serves_the_store_to_helia_without_a_mount() {
    let cli = Cli::new();
    let want = common::noise(3 << 20 | 17, 45);
    let cid = cli.add_q(&cli.write("shared.bin", &want), &[]);
    let mut daemon = cli
        .cmd()
        .arg("daemon")
        .env("CIDFS_MOUNT_NOTIFY", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(cli.path("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "{}", std::fs::read_to_string(cli.path("daemon.log")).unwrap_or_default());
    let id = cli.ok(&["id"]);
    let addr = id.lines().find(|l| l.starts_with("/ip4/127.0.0.1/")).expect("a loopback address").to_string();
    let out = cli.path("fetched.bin");
    run_ok(helia().arg("fetch").arg(&cid).arg(&addr).arg(&out));
    assert!(std::fs::read(&out).unwrap() == want);
    let status = cli.ok(&["status"]);
    assert!(!status.contains("served: 0 blocks"), "{status}");
    // SIGTERM stops it cleanly, and the store is free again
    // SAFETY: a plain kill(2) of our child.
    assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) }, 0);
    assert!(daemon.wait().unwrap().success());
    cli.ok(&["pin", "ls"]);
}

#[test]
fn cat_ls_and_get_run_in_the_daemon_through_the_network() {
    let cli = Cli::new();
    let want = common::noise(1 << 20 | 3, 46);
    let peer = serve(helia(), &cli.write("remote.bin", &want));
    let mut daemon = cli
        .cmd()
        .args(["daemon", "--peer", &peer.addr])
        .env("CIDFS_MOUNT_NOTIFY", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    // the store is the daemon's, so these run in it and fetch from Helia
    let out = cli.run(&["cat", &peer.cid]);
    assert!(out.status.success() && out.stdout == want, "{:?}", String::from_utf8_lossy(&out.stderr));
    let out = cli.run(&["cat", "-o", "1000", "-l", "10", &peer.cid]);
    assert_eq!(out.stdout, &want[1000..1010]);
    cli.ok(&["get", &peer.cid, "got.bin"]);
    assert!(std::fs::read(cli.path("got.bin")).unwrap() == want);
    // `ls` too (the empty directory, an identity CID, lists nothing; a file lists itself)
    assert_eq!(cli.ok(&["ls", "bafyaabakaieac"]).trim(), "");
    assert!(cli.ok(&["ls", &peer.cid]).contains(&format!("\t{}", want.len())));
    // errors keep their exit codes: a CID nobody has is "not found" (3)
    let elsewhere = Cli::new();
    let missing = elsewhere.add_q(&elsewhere.write("x", b"only here"), &[]);
    let err = cli.fails(&["cat", &missing], 3);
    assert!(err.contains(&missing), "{err}");
    // SAFETY: a plain kill(2) of our child.
    assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) }, 0);
    assert!(daemon.wait().unwrap().success());
}

/// Serves what it holds, and counts what it is asked for.
struct CountingSource(std::collections::HashMap<cid::Cid, bytes::Bytes>, std::sync::atomic::AtomicUsize);

impl cidfs::ipfs::BlockSource for CountingSource {
    fn local(&self, cid: &cid::Cid) -> Option<bytes::Bytes> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.get(cid).cloned()
    }
}

#[test]
fn listing_a_directory_held_by_a_peer_fetches_only_the_directory() {
    use cidfs::importer::{DirBuilder, ImportOptions};
    let cli = Cli::new();
    let opts = ImportOptions::default();
    let mut blocks = Vec::new();
    let mut dir = DirBuilder::new(Default::default());
    for i in 0..20 {
        let data = format!("file {i}\n").into_bytes();
        let link = cidfs::importer::file::import_bytes(&opts, Default::default(), &data, &mut blocks).unwrap();
        dir.insert(format!("f{i:02}"), link);
    }
    let root = dir.finish(&opts, &mut blocks).unwrap();
    let asked = Arc::new(CountingSource(
        blocks.iter().map(|b| (*b.cid(), b.data().clone())).collect(),
        std::sync::atomic::AtomicUsize::new(0),
    ));
    let peer = test_double(&cli, "holder", asked.clone());
    let m = cli.mount("mnt", &["--peer", &peer.listen_addrs()[0].to_string()]);
    let names: Vec<String> = std::fs::read_dir(m.dir.join(".ipfs").join(root.cid.to_string()))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 20);
    assert_eq!(asked.1.load(std::sync::atomic::Ordering::SeqCst), 1, "the directory block only");
    // reading a file fetches it then
    let f05 = std::fs::read(m.dir.join(".ipfs").join(root.cid.to_string()).join("f05")).unwrap();
    assert_eq!(f05, b"file 5\n");
}

#[test]
fn a_stranger_gets_published_blocks_but_none_of_the_drive() {
    let cli = Cli::new();
    let published = common::noise(300_000, 61);
    let added = cli.add_q(&cli.write("published.bin", &published), &["--cid-version", "1"]);
    // two in-process peers: a stranger, and a friend the mount trusts
    let stranger = test_double(&cli, "stranger", Arc::new(NoBlocks));
    let friend = test_double(&cli, "friend", Arc::new(NoBlocks));
    let m = cli.mount("mnt", &["--trust", &friend.peer_id().to_string()]);
    let secret = common::noise(300_000, 62);
    std::fs::write(m.dir.join("secret.bin"), &secret).unwrap();
    std::fs::File::open(m.dir.join("secret.bin")).unwrap().sync_all().unwrap();
    let drive_file: cid::Cid =
        String::from_utf8(common::getxattr(&m.dir.join("secret.bin"), "ipfs.cid").unwrap()).unwrap().parse().unwrap();
    let addr: libp2p::Multiaddr = node_addr(&cli).parse().unwrap();
    for peer in [&stranger, &friend] {
        peer.connect(addr.clone());
        assert!(peer.wait_for_peers(1, Duration::from_secs(10)));
    }
    let timeout = Duration::from_secs(10);
    // the stranger: don't-have for the drive's block (at once), the published block served
    let t = Instant::now();
    let err = stranger.get(&drive_file, timeout).unwrap_err();
    assert!(matches!(err, cidfs::ipfs::NetError::NotFound { .. }), "{err}");
    assert!(t.elapsed() < timeout, "answered don't-have, not silence");
    let root: cid::Cid = added.parse().unwrap();
    assert!(stranger.get(&root, timeout).is_ok(), "published content is served to everyone");
    // the friend gets the drive's block
    assert!(friend.get(&drive_file, timeout).is_ok());
    drop(m);

    // --serve all: the stranger gets the drive too; --serve none: nobody gets anything
    let m = cli.mount("mnt", &["--serve", "all"]);
    let addr: libp2p::Multiaddr = node_addr(&cli).parse().unwrap();
    let late = test_double(&cli, "late", Arc::new(NoBlocks));
    late.connect(addr);
    assert!(late.wait_for_peers(1, Duration::from_secs(10)));
    assert!(late.get(&drive_file, timeout).is_ok());
    drop(m);
    let m = cli.mount("mnt", &["--serve", "none", "--trust", &friend.peer_id().to_string()]);
    let addr: libp2p::Multiaddr = node_addr(&cli).parse().unwrap();
    let last = test_double(&cli, "last", Arc::new(NoBlocks));
    last.connect(addr);
    assert!(last.wait_for_peers(1, Duration::from_secs(10)));
    assert!(last.get(&root, timeout).is_err(), "--serve none serves nothing");
    drop(m);
    let err = cli.fails(&["mount", "x", "--trust", "not-a-peer"], 2);
    assert!(err.contains("is not a peer ID"), "{err}");
}

/// A peer that holds nothing.
struct NoBlocks;

impl cidfs::ipfs::BlockSource for NoBlocks {
    fn local(&self, _cid: &cid::Cid) -> Option<bytes::Bytes> {
        None
    }
}

/// A hostile peer (a test double built on cidfs's own stream behaviour): many connections,
/// hundreds of streams each carrying a 4 MiB want-list (or holding one half-sent), and it
/// never reads what it is sent.
struct Hostile {
    runtime: tokio::runtime::Runtime,
    opener: cidfs::ipfs::streams::Opener,
    streams: Vec<libp2p::Stream>,
}

impl Hostile {
    fn start(target: &libp2p::Multiaddr, connections: usize) -> Hostile {
        use futures::StreamExt;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let _guard = runtime.enter();
        let (behaviour, mut inbound, opener) = cidfs::ipfs::streams::Behaviour::new();
        let mut behaviour = Some(behaviour);
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(libp2p::tcp::Config::default(), libp2p::noise::Config::new, libp2p::yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| behaviour.take().unwrap())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build();
        let peer = match target.iter().last() {
            Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
            _ => panic!("{target} names no peer"),
        };
        for _ in 0..connections {
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(vec![target.clone()])
                .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
                .build();
            let _ = swarm.dial(opts);
        }
        runtime.spawn(async move {
            loop {
                tokio::select! {
                    _ = swarm.select_next_some() => {}
                    // what the mount sends is accepted and never read
                    Some(stream) = inbound.recv() => std::mem::forget(stream),
                }
            }
        });
        drop(_guard);
        Hostile { runtime, opener, streams: Vec::new() }
    }

    /// Opens `n` streams and writes `message` on each (or, `partly`, its length and half of
    /// it), keeping them open. How many could be opened.
    fn flood(&mut self, peer: libp2p::PeerId, n: usize, message: &[u8], partly: bool) -> usize {
        use futures::AsyncWriteExt;
        let message = if partly { &message[..message.len() / 2] } else { message };
        let opener = self.opener.clone();
        let opened: Vec<libp2p::Stream> = self.runtime.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..n {
                let (opener, message) = (opener.clone(), message.to_vec());
                tasks.push(tokio::spawn(async move {
                    let (mut s, _) = opener.open(peer).await.ok()?;
                    let wrote = tokio::time::timeout(Duration::from_secs(5), s.write_all(&message)).await;
                    matches!(wrote, Ok(Ok(()))).then_some(s)
                }));
            }
            let mut out = Vec::new();
            for t in tasks {
                if let Ok(Some(s)) = t.await {
                    out.push(s);
                }
            }
            out
        });
        let n = opened.len();
        self.streams.extend(opened);
        n
    }
}

#[test]
fn a_hostile_peer_cannot_exhaust_the_mounts_memory_nor_stop_it_serving() {
    use cidfs::importer::{ImportOptions, file::import_bytes};
    let cli = Cli::new();
    let published = common::noise(8 << 20, 70);
    cli.add_q(&cli.write("published.bin", &published), &["--cid-version", "1"]);
    let mut blocks = Vec::new();
    let root = import_bytes(&ImportOptions::kubo_v1(), Default::default(), &published, &mut blocks).unwrap().cid;
    let leaves: Vec<cid::Cid> = blocks.iter().map(|b| *b.cid()).collect();
    let m = cli.mount("mnt", &[]);
    let target: libp2p::Multiaddr = node_addr(&cli).parse().unwrap();
    let mount_peer = match target.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
        _ => unreachable!(),
    };
    // a want-list of ~4 MiB: 90,000 wants for the published blocks (each 256 KiB)
    let wants: Vec<cid::Cid> = leaves.iter().cycle().take(90_000).copied().collect();
    let message = cidfs::ipfs::bitswap::frame(&cidfs::ipfs::bitswap::want_message(
        &wants,
        cidfs::ipfs::bitswap::WANT_BLOCK,
        false,
    ));
    assert!(message.len() > 3 << 20 && message.len() < cidfs::ipfs::bitswap::MAX_MESSAGE);

    let mut hostile = Hostile::start(&target, 2000);
    std::thread::sleep(Duration::from_secs(2));
    let sent = hostile.flood(mount_peer, 300, &message, false);
    let held = hostile.flood(mount_peer, 300, &message, true);
    eprintln!("hostile: {sent} streams of full want-lists, {held} held half-sent");

    // an honest peer is still served, and the drive still works
    let honest = test_double(&cli, "honest", Arc::new(NoBlocks));
    honest.connect(target.clone());
    assert!(honest.wait_for_peers(1, Duration::from_secs(20)), "an honest peer can still connect");
    for cid in std::iter::once(root).chain(leaves.iter().copied()) {
        assert!(honest.get(&cid, Duration::from_secs(30)).is_ok(), "the honest peer got {cid}");
    }
    let local = common::noise(1 << 20, 71);
    std::fs::write(m.dir.join("local.bin"), &local).unwrap();
    assert!(std::fs::read(m.dir.join("local.bin")).unwrap() == local);

    let rss = common::peak_rss_mib(m.child.id());
    eprintln!("peak RSS of the mount: {rss} MiB");
    assert!(rss < 200, "peak RSS of the mount: {rss} MiB");
    let status = cli.ok(&["status"]);
    let limits = status.lines().find(|l| l.contains("limits:")).unwrap().to_string();
    eprintln!("{limits}");
    let numbers: Vec<u64> = limits.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    assert!(numbers.iter().any(|n| *n > 0), "the flooder was throttled or dropped: {limits}");
    drop(hostile);
}
