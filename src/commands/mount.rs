//! `cidfs mount` and `cidfs unmount`.
//!
//! In the foreground the command serves the mount until SIGINT/SIGTERM/SIGHUP (then
//! unmounts cleanly) or until someone unmounts it. `--background` starts the same command
//! as a detached child, waits until it reports the mount ready, and returns; the child logs
//! to `$CIDFS_HOME/mount.log`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use nix::sys::signal::{SigSet, Signal};

use super::CliError;
use super::session::Session;
use crate::config::{Config, ServeMode, Settings};
use crate::fetch::{BitswapTier, GatewayTier, Tier, Tiered};
use crate::filecoin::retrieve::FilecoinTier;
use crate::fuse::mount::{self, MountError, MountOptions};
use crate::ipfs::gateway::Gateways;
use crate::ipfs::{Node, NodeConfig, Serve};
use crate::store::Store;
use crate::vfs::{Capacity, RootMode, Vfs};
use crate::vfs::{DRIVE_POSIX_ROOT, DRIVE_ROOT, StoreDrive};
use libp2p::Multiaddr;

/// Set in the environment of a background child: print `ready` on stdout once mounted,
/// or `error <exit code>` and the message if it fails.
const NOTIFY_ENV: &str = "CIDFS_MOUNT_NOTIFY";
/// Set in the environment of a background child: the log to write to once it holds the
/// store (never before: another mount of the same store may be writing it).
const LOG_ENV: &str = "CIDFS_MOUNT_LOG";
/// How long `--background` waits for the child to mount.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

impl From<MountError> for CliError {
    fn from(e: MountError) -> Self {
        CliError::failure(e.to_string())
    }
}

/// How long the mount waits for `--peer` peers to connect before it reports ready.
const PEER_WAIT: Duration = Duration::from_secs(5);

/// `cidfs mount`.
#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// An empty directory to mount the drive at.
    pub mountpoint: PathBuf,
    /// Return once the mount is ready, leaving it served in the background.
    #[arg(long)]
    pub background: bool,
    #[command(flatten)]
    pub settings: Settings,
}

impl MountArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        // a background child (told so by NOTIFY_ENV) runs the same arguments in the foreground
        if self.background && std::env::var_os(NOTIFY_ENV).is_none() {
            let log = background(session.home())?;
            eprintln!("cidfs: mounted at {} (log: {})", self.mountpoint.display(), log.display());
            return Ok(());
        }
        foreground(&self.mountpoint, session)
    }
}

/// `cidfs daemon`.
#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub settings: Settings,
}

impl DaemonArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        daemon(session)
    }
}

/// `cidfs unmount`.
#[derive(clap::Args, Debug)]
pub struct UnmountArgs {
    pub mountpoint: PathBuf,
}

impl UnmountArgs {
    /// Needs no session: the mount's source names the store it serves.
    pub fn run(self) -> Result<(), CliError> {
        unmount(&self.mountpoint)
    }
}

/// What the node announces: every pinned root; with `--serve all` the drive root too;
/// with `--serve none` nothing (it would only send peers to a node that refuses them).
fn announced(store: &Store, serve: ServeMode) -> Result<Vec<Cid>, CliError> {
    let mut cids: Vec<Cid> = match serve {
        ServeMode::None => return Ok(Vec::new()),
        _ => store.pins()?.into_iter().map(|(c, _)| c).collect(),
    };
    if serve == ServeMode::All {
        cids.extend(store.root_cid(DRIVE_ROOT)?);
    }
    cids.sort();
    cids.dedup();
    Ok(cids)
}

/// How long a read waits for a block from the network.
fn fetch_timeout(config: &Config) -> Duration {
    Duration::try_from_secs_f64(config.fetch_timeout).unwrap_or(Duration::from_secs(30))
}

/// The remote tiers reads go to after the store, in order: the node's bitswap peers, then
/// the `--gateway`s (none with `--offline`), then, last and paid, the Filecoin providers
/// holding the pieces of evicted data.
fn tiers(
    config: &Config,
    node: &Option<Arc<Node>>,
    filecoin: &Arc<FilecoinTier>,
) -> Result<Vec<Arc<dyn Tier>>, CliError> {
    let mut tiers: Vec<Arc<dyn Tier>> = Vec::new();
    if let Some(node) = node {
        tiers.push(Arc::new(BitswapTier(node.clone())));
        if !config.gateways.is_empty() {
            let gateways =
                Gateways::new(&config.gateways, crate::ipfs::gateway::REQUEST_TIMEOUT).map_err(CliError::failure)?;
            tiers.push(Arc::new(GatewayTier(gateways)));
        }
    }
    if may_go_cold(config, filecoin.store())? {
        tiers.push(filecoin.clone());
    }
    Ok(tiers)
}

/// Whether any of the store's data is, or may become, only at storage providers: it has
/// pieces, cold segments, or providers to place pieces with. A drive that never leaves
/// the machine reads with no Filecoin tier behind it.
fn may_go_cold(config: &Config, store: &Store) -> Result<bool, CliError> {
    Ok(!config.providers.is_empty()
        || !store.pieces()?.is_empty()
        || !crate::filecoin::replicate::table::stored_providers(store)?.is_empty())
}

/// The Filecoin read tier for `store`, paying within the configured caps.
pub fn filecoin_tier(config: &Config, store: &Arc<Store>) -> Result<Arc<FilecoinTier>, CliError> {
    let caps = config.caps().map_err(|e| CliError::new(super::exit::USAGE, e))?;
    let ledger = Arc::new(crate::filecoin::ledger::Ledger::new(store.clone(), caps));
    Ok(Arc::new(FilecoinTier::new(store.clone(), ledger)))
}

/// Starts the node (unless `--offline`), serving `store`; waits for `--peer` peers.
fn start_node(config: &Config, store: &Arc<Store>) -> Result<Option<Arc<Node>>, CliError> {
    store.set_cache_cap(config.cache_size.0);
    store.hot_files().set_cap(config.hot_size.0);
    store.set_reserve(config.reserve);
    if config.offline {
        return Ok(None);
    }
    let addrs = |list: &[String], what: &str| -> Result<Vec<Multiaddr>, CliError> {
        list.iter()
            .filter(|a| !a.is_empty() && a.as_str() != "none")
            .map(|a| a.parse().map_err(|e| CliError::failure(format!("{what} {a:?}: {e}"))))
            .collect()
    };
    let dir = config.home.join("ipfs");
    let node_config = NodeConfig {
        key_path: dir.join("peer.key"),
        listen: addrs(&config.listen, "--listen")?,
        peers: addrs(&config.peers, "--peer")?,
        bootstrap: addrs(&config.bootstrap, "--bootstrap")?,
        addrs_file: Some(dir.join("addrs")),
        provide: if config.no_announce { Vec::new() } else { announced(store, config.serve)? },
        dht_server: false,
        serve: match config.serve {
            ServeMode::Published => Serve::Published { trusted: config.trusted().into_iter().collect() },
            ServeMode::All => Serve::All,
            ServeMode::None => Serve::Nothing,
        },
    };
    let wanted = node_config.peers.len();
    let node = Node::start(node_config, store.clone()).map_err(|e| CliError::failure(e.to_string()))?;
    if wanted > 0 && !node.wait_for_peers(wanted, PEER_WAIT) {
        log::warn!("only {} of {wanted} --peer peers connected so far", node.peers().len());
    }
    log::info!("IPFS node {} started", node.peer_id());
    Ok(Some(Arc::new(node)))
}

/// The Filecoin side's background work (pieces made of sealed segments, kept at N
/// replicas), stopped and joined when dropped.
struct Background {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(config: &Config, store: &Arc<Store>, live: &super::control::Live) -> Result<Background, CliError> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sealer = crate::filecoin::seal::Sealer::new(store.clone(), config.seal_policy())
            .map_err(|e| CliError::failure(format!("starting the sealer: {e}")))?;
        let replicator =
            crate::filecoin::replicate::Replicator::new(store.clone(), config.replication_policy(), stop.clone())
                .map_err(|e| CliError::failure(format!("starting replication: {e}")))?;
        let replicator = Arc::new(replicator);
        let _ = live.replicator.set(replicator.clone());
        let mut threads = vec![sealer.spawn(SEAL_CHECK, stop.clone()), replicator.spawn(SEAL_CHECK)];
        if config.local_cap != crate::config::Size::UNLIMITED {
            let (store, stop, cap, replicas) = (store.clone(), stop.clone(), config.local_cap.0, config.replicas);
            threads.push(std::thread::spawn(move || keep_under_local_cap(&store, cap, replicas, &stop)));
        }
        Ok(Background { stop, threads })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `--local-cap`: makes replicated segments cold while the drive's local data is over the
/// cap (checked every [`SEAL_CHECK`]), until `stop`.
fn keep_under_local_cap(store: &Store, cap: u64, replicas: usize, stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match crate::filecoin::cold::evict_to_cap(store, cap, replicas) {
            Ok(s) if s.segments > 0 => log::info!("--local-cap: {}", s.text()),
            Ok(_) => {}
            Err(e) => log::warn!("--local-cap: {e}"),
        }
        crate::filecoin::seal::sleep_unless(stop, SEAL_CHECK);
    }
}

/// How often the sealer looks for segments to seal and make pieces of.
const SEAL_CHECK: Duration = Duration::from_secs(1);

/// Serves the mount in this process until a signal or an unmount.
fn foreground(mountpoint: &Path, session: &Session) -> Result<(), CliError> {
    let config = &session.config;
    let (ipfs, read_only, allow_other, threads, cap) =
        (config.ipfs, config.read_only, config.allow_other, config.threads, config.cap());
    let commit_interval = Duration::try_from_secs_f64(config.commit_interval).unwrap_or(Duration::from_secs(1));
    // Block the signals before fuser starts its threads, so they all inherit the mask and
    // the signals wait for us in sigtimedwait below.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().map_err(|e| CliError::failure(format!("blocking signals: {e}")))?;

    raise_open_files_limit();
    let mountpoint = mount::prepare_mountpoint(mountpoint)?;
    let store = Arc::new(open_store_after_unmount(session)?);
    log_to_file_if_asked()?;
    let mode = if ipfs { RootMode::Ipfs } else { RootMode::Drive(store.root_cid(DRIVE_ROOT)?) };
    let what = match &mode {
        RootMode::Ipfs => "the /ipfs namespace".to_string(),
        RootMode::Drive(Some(cid)) => format!("drive {cid}"),
        RootMode::Drive(None) => "an empty drive".to_string(),
    };
    let cap_store = store.clone();
    let capacity = Box::new(move || capacity(&cap_store, cap));
    let writable = !ipfs && !read_only;
    let home = session.home().to_path_buf();
    let node = start_node(config, &store)?;
    let filecoin = filecoin_tier(config, &store)?;
    let blocks = Tiered::new(store.clone(), tiers(config, &node, &filecoin)?, fetch_timeout(config));
    let live = Arc::new(super::control::Live::new(store.clone(), blocks.clone(), node));
    let _ = live.filecoin.set(filecoin);
    super::control::serve(&home, live.clone())?;
    let _background = Background::start(config, &store, &live)?;
    let log_store = store.clone();
    let commits =
        Box::new(move || log_store.commits().unwrap_or_default().into_iter().map(|c| (c.seq, c.root)).collect());
    let vfs = Arc::new(
        match mode {
            RootMode::Drive(root) if writable => {
                let spill = store.root().join("tmp");
                crate::store::private_dir(&spill).map_err(super::io_error(&spill))?;
                Vfs::writable(blocks.clone(), root, Arc::new(StoreDrive(store.clone())), spill, capacity)
            }
            mode => Vfs::new(blocks.clone(), mode, capacity),
        }
        .with_posix_sidecar(store.root_cid(DRIVE_POSIX_ROOT)?)
        .with_drive_time(drive_time(&store)?)
        .with_room_maker(room_maker(store.clone()))
        .with_snapshots(commits)
        .with_piece_report(piece_report(store.clone()))
        .with_hot_copies(store.hot_files().clone(), store.clone()),
    );
    if writable {
        let vfs = vfs.clone();
        let _ = live.commit_drive.set(Box::new(move || vfs.commit().map(|_| ()).map_err(|e| e.to_string())));
    }
    let opts = MountOptions {
        mountpoint: mountpoint.clone(),
        allow_other,
        threads,
        read_only: !writable,
        store: store.root().to_path_buf(),
    };
    let session = mount::mount(vfs.clone(), &opts)?;
    store.set_mountpoint(&mountpoint);
    log::info!("mounted {what} at {}", mountpoint.display());
    if std::env::var_os(NOTIFY_ENV).is_some() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    } else {
        eprintln!("cidfs: mounted {what} at {} (Ctrl-C or `cidfs unmount` to stop)", mountpoint.display());
    }
    let timeout = libc::timespec { tv_sec: 0, tv_nsec: 200_000_000 };
    let mut last_commit = std::time::Instant::now();
    loop {
        // Changes nobody fsync'd become durable within the commit interval.
        if writable && last_commit.elapsed() >= commit_interval {
            if let Err(e) = vfs.commit_closed() {
                log::error!("committing the drive: {e} (will retry)");
            }
            last_commit = std::time::Instant::now();
        }
        // SAFETY: sigtimedwait on a valid, initialised signal set.
        let sig = unsafe { libc::sigtimedwait(signals.as_ref(), std::ptr::null_mut(), &timeout) };
        if sig > 0 {
            log::info!("signal {sig}: unmounting {}", mountpoint.display());
            break;
        }
        if session.guard.is_finished() {
            log::info!("{} was unmounted", mountpoint.display());
            // gone already: nothing to unmount (by path, which might be someone else's now)
            mount::forget_session(session);
            return finish(&home, &blocks, &live, final_commit(&vfs));
        }
    }
    let unmounted =
        session.umount_and_join().map_err(|e| CliError::failure(format!("unmounting {}: {e}", mountpoint.display())));
    let committed = final_commit(&vfs);
    finish(&home, &blocks, &live, unmounted.and(committed))
}

/// The commit that makes everything written durable before the process lets go.
fn final_commit(vfs: &Vfs) -> Result<(), CliError> {
    vfs.commit().map(|_| ()).map_err(|e| {
        CliError::failure(format!("the final commit failed: {e}; what was written since the last commit is lost"))
    })
}

/// The end: fetched blocks made durable, the control socket closed, and whoever waits
/// (`cidfs unmount`) told how it went. The store is released when the process exits.
fn finish(
    home: &Path,
    blocks: &Tiered,
    live: &super::control::Live,
    result: Result<(), CliError>,
) -> Result<(), CliError> {
    shutdown(home, blocks);
    if let Err(e) = &result {
        log::error!("{e}");
    }
    live.tell_exit(&result);
    result
}

/// How long `mount` waits for a process that was unmounted to let go of the store.
const RELEASE_WAIT: Duration = Duration::from_secs(15);

/// Opens the store; if it is held by a mount process whose mount is gone already (a
/// plain `umount` just now: it is making its last commit), waits for it to let go.
fn open_store_after_unmount(session: &Session) -> Result<Store, CliError> {
    let deadline = std::time::Instant::now() + RELEASE_WAIT;
    loop {
        match session.store() {
            Err(e) if e.code == super::exit::BUSY && std::time::Instant::now() < deadline => {
                let home = session.home();
                let leaving = crate::store::owner::read(home)
                    .and_then(|h| h.mountpoint)
                    .is_some_and(|m| !mount::mount_entry(&m).is_some_and(|e| e.fstype.starts_with("fuse")));
                if !leaving {
                    return Err(e);
                }
                log::info!("waiting for the process that served {} to let go of the store", home.display());
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

/// `cidfs.pieces` / `cidfs.replicas` of a DAG, from the store's records.
fn piece_report(store: Arc<Store>) -> crate::vfs::PieceReport {
    Box::new(move |cid, replicas| {
        crate::filecoin::replicate::report::dag_pieces(&store, cid, replicas).map_err(|e| e.to_string())
    })
}

/// How a write that would not fit makes room: second copies give way.
fn room_maker(store: Arc<Store>) -> Box<dyn Fn(u64) + Send + Sync> {
    Box::new(move |need| match store.make_room(need) {
        Ok(0) => {}
        Ok(freed) => log::info!(
            "made room for a write: {} of hot copies and fetched blocks dropped",
            super::repo::human_bytes(freed)
        ),
        Err(e) => log::warn!("making room for a write: {e}"),
    })
}

/// When the drive last changed: its last commit, else the store's creation.
fn drive_time(store: &Store) -> Result<std::time::SystemTime, CliError> {
    let secs = match store.last_commit()? {
        Some(c) => c.time,
        None => store.created()?,
    };
    Ok(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

/// `cidfs daemon`: the IPFS node and the control socket without a mount — serves the
/// store to peers and answers `status`, `id` and `swarm` until SIGINT/SIGTERM/SIGHUP.
fn daemon(session: &Session) -> Result<(), CliError> {
    let config = &session.config;
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().map_err(|e| CliError::failure(format!("blocking signals: {e}")))?;
    if config.offline {
        return Err(CliError::failure("`cidfs daemon` runs the IPFS node: drop --offline".to_string()));
    }
    let store = Arc::new(session.store()?);
    let home = session.home().to_path_buf();
    let node = start_node(config, &store)?;
    let filecoin = filecoin_tier(config, &store)?;
    let blocks = Tiered::new(store.clone(), tiers(config, &node, &filecoin)?, fetch_timeout(config));
    let live = Arc::new(super::control::Live::new(store.clone(), blocks.clone(), node.clone()));
    let _ = live.filecoin.set(filecoin);
    super::control::serve(&home, live.clone())?;
    let background = Background::start(config, &store, &live)?;
    if std::env::var_os(NOTIFY_ENV).is_some() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    } else if let Some(n) = &node {
        eprintln!(
            "cidfs: IPFS node {} serving {} (Ctrl-C to stop; `cidfs id` for its addresses)",
            n.peer_id(),
            home.display()
        );
    }
    let sig = signals.wait().map_err(|e| CliError::failure(format!("waiting for a signal: {e}")))?;
    log::info!("{sig}: stopping");
    drop(background);
    shutdown(&home, &blocks);
    Ok(())
}

/// After the last commit: cache what was fetched, stop answering on the control socket.
fn shutdown(home: &Path, blocks: &Tiered) {
    blocks.flush();
    let _ = std::fs::remove_file(super::control::socket_path(home));
    let _ = std::fs::remove_file(home.join("ipfs/addrs"));
}

/// A mount holds descriptors for segments and uncommitted files: use all we may.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        log::debug!("could not raise the open files limit: {e}");
    }
}

/// Space as the mount reports it: the disk holding the store, or the configured cap
/// (then used = the store's segment bytes but the fetch cache's, which is evicted as
/// needed and has a cap of its own), whichever leaves less.
fn capacity(store: &crate::store::Store, cap: Option<u64>) -> Capacity {
    let files = store.block_count().unwrap_or(0);
    let disk = match nix::sys::statvfs::statvfs(store.root()) {
        Ok(s) => {
            let frag = s.fragment_size();
            Capacity { total_bytes: s.blocks() * frag, free_bytes: s.blocks_available() * frag, files }
        }
        Err(_) => Capacity { files, total_bytes: u64::MAX, free_bytes: u64::MAX },
    };
    match cap {
        Some(cap) => {
            let used = store.disk_usage().unwrap_or(0).saturating_sub(store.cache_usage().bytes);
            Capacity { total_bytes: cap, free_bytes: cap.saturating_sub(used).min(disk.free_bytes), files }
        }
        None => disk,
    }
}

/// Starts the mount as a detached child running this command's own arguments, and returns
/// once it is ready. If it fails, the error is the child's own (its message and exit
/// code), not a log's tail.
fn background(home: &Path) -> Result<PathBuf, CliError> {
    std::fs::create_dir_all(home).map_err(super::io_error(home))?;
    let log_path = home.join("mount.log");
    let exe = std::env::current_exe().map_err(|e| CliError::failure(format!("finding the cidfs binary: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env(NOTIFY_ENV, "1")
        .env(LOG_ENV, &log_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info,fuser::mnt=error");
    }
    // SAFETY: setsid is async-signal-safe; it detaches the child from our terminal.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().map_err(|e| CliError::failure(format!("starting the mount process: {e}")))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reply = String::new();
        let mut reader = BufReader::new(stdout);
        let _ = reader.read_line(&mut reply);
        if reply.starts_with("error ") {
            let _ = std::io::Read::read_to_string(&mut reader, &mut reply);
        }
        let _ = tx.send(reply);
    });
    let reply = rx.recv_timeout(READY_TIMEOUT);
    if matches!(&reply, Ok(line) if line.trim() == "ready") {
        return Ok(log_path);
    }
    let _ = child.kill();
    let status = child.wait();
    Err(match reply {
        Ok(reply) => match parse_failure(&reply) {
            Some(e) => e,
            None => CliError::failure(format!(
                "the mount process exited ({}) before it was ready; see {}",
                status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                log_path.display()
            )),
        },
        Err(_) => CliError::failure(format!(
            "the mount was not ready within {} s and was stopped; see {}",
            READY_TIMEOUT.as_secs(),
            log_path.display()
        )),
    })
}

/// In a background child: from now on, log to the file the parent named. Called once the
/// child holds the store, so it never writes into the log of another mount of it.
fn log_to_file_if_asked() -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(path) = std::env::var_os(LOG_ENV).map(PathBuf::from) else { return Ok(()) };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(super::io_error(&path))?;
    nix::unistd::dup2_stderr(&log).map_err(|e| CliError::failure(format!("logging to {}: {e}", path.display())))?;
    Ok(())
}

/// In a background child that failed: tells the waiting parent why, and with which exit
/// code (it prints them as its own).
pub fn report_failure(e: &CliError) {
    if std::env::var_os(NOTIFY_ENV).is_some() {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "error {}\n{}", e.code, e.message);
        let _ = out.flush();
    }
}

/// The failure a background child reported (`error <code>` and the message).
fn parse_failure(reply: &str) -> Option<CliError> {
    let (head, message) = reply.split_once('\n')?;
    let code = head.strip_prefix("error ")?.trim().parse().ok()?;
    Some(CliError::new(code, message.trim_end()))
}

/// `cidfs unmount`: unmounts, then waits until the process that served the mount has made
/// its final commit (its failure is this command's) and let go of the store.
pub fn unmount(mountpoint: &Path) -> Result<(), CliError> {
    let (abs, entry) = mount::fuse_mount_at(mountpoint)?;
    // the mount's source is the store it serves; its owner file names the process
    let store = PathBuf::from(&entry.source);
    // The store's owner file names the process serving this mount. If it names another
    // (a daemon holding the store under a stale mount), there is nobody to wait for; if it
    // names nobody (it could not be written: a full disk), the process answering on the
    // store's control socket is the one (one process holds a store), and it names itself.
    let owner = crate::store::owner::read(&store);
    let serves_this = owner.as_ref().is_none_or(|h| h.mountpoint.as_deref() == Some(abs.as_path()));
    let waiter = if serves_this { super::control::await_exit(&store) } else { None };
    mount::unmount(&abs)?;
    let pid = match (owner.filter(|_| serves_this), &waiter) {
        (Some(h), _) => h.pid,
        (None, Some((_, pid))) => *pid,
        (None, None) => return Ok(()),
    };
    let told = waiter.and_then(|(w, _)| super::control::exit_result(w, UNMOUNT_WAIT));
    // failed or not, the process lets go of the store before this returns
    let deadline = std::time::Instant::now() + UNMOUNT_WAIT;
    while crate::store::owner::running(pid) {
        if std::time::Instant::now() > deadline {
            return Err(CliError::failure(format!(
                "{} is unmounted, but cidfs process {} still holds the store after {} s (see its log)",
                abs.display(),
                pid,
                UNMOUNT_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    told.unwrap_or(Ok(())).map_err(|e| e.context(format!("unmounting {}", abs.display())))
}

/// How long `unmount` waits for the mount process's final commit and exit.
const UNMOUNT_WAIT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::parse_failure;

    #[test]
    fn a_background_child_reports_its_own_failure() {
        let e = parse_failure("error 5\nstore at /s: in use by cidfs process 9\nmore\n").unwrap();
        assert_eq!((e.code, e.message.as_str()), (5, "store at /s: in use by cidfs process 9\nmore"));
        assert!(parse_failure("").is_none());
        assert!(parse_failure("ready\n").is_none());
    }
}
