//! The running mount's control socket, `$CIDFS_HOME/control.sock` (mode 0600).
//!
//! While a mount holds the store, other `cidfs` processes cannot open it; commands that
//! report on or steer the live process (`status`, `id`, `swarm peers`, `swarm connect`)
//! ask it here instead, and reads (`cat`, `ls`, `get`) run in it, through all its tiers.
//! One request line, then the reply: a first line `ok` or `error: <message>`, then the
//! body; the connection closes after each request. `cat` streams instead: frames of a
//! tag byte and a u32 length — `d` data, `e` an error (exit code byte first), `k` done.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::CliError;
use super::repo::human_bytes;
use crate::fetch::Tiered;
use crate::ipfs::Node;
use crate::store::Store;

pub fn socket_path(home: &Path) -> PathBuf {
    home.join("control.sock")
}

/// What the socket reports on.
pub struct Live {
    pub store: Arc<Store>,
    pub blocks: Arc<Tiered>,
    /// The IPFS node (none with `--offline`).
    pub node: Option<Arc<Node>>,
    /// Commits the mounted drive's pending changes (set once the drive is mounted), so
    /// that a drive path read here sees what was written through the mount.
    pub commit_drive: std::sync::OnceLock<Box<dyn Fn() -> Result<(), String> + Send + Sync>>,
    /// The Filecoin side's replicator (set once it runs), for `status`.
    pub replicator: std::sync::OnceLock<Arc<crate::filecoin::replicate::Replicator>>,
    /// The Filecoin read tier (its ledger and counters), for `status` and `payments`.
    pub filecoin: std::sync::OnceLock<Arc<crate::filecoin::retrieve::FilecoinTier>>,
    /// Connections waiting to hear how this process ends (`await-exit`): `cidfs unmount`.
    exit_waiters: std::sync::Mutex<Vec<UnixStream>>,
}

impl Live {
    pub fn new(store: Arc<Store>, blocks: Arc<Tiered>, node: Option<Arc<Node>>) -> Live {
        Live {
            store,
            blocks,
            node,
            commit_drive: std::sync::OnceLock::new(),
            replicator: std::sync::OnceLock::new(),
            filecoin: std::sync::OnceLock::new(),
            exit_waiters: Default::default(),
        }
    }

    /// Tells everyone waiting how the process ends (its final commit), just before it
    /// exits and releases the store.
    pub fn tell_exit(&self, result: &Result<(), CliError>) {
        let line = match result {
            Ok(()) => "ok\n".to_string(),
            Err(e) => format!("error: {} {}\n", e.code, e.message.replace('\n', " ")),
        };
        for mut w in self.exit_waiters.lock().expect("lock poisoned").drain(..) {
            let _ = w.write_all(line.as_bytes());
        }
    }

    /// The drive's root for a path in it: pending changes committed first.
    fn drive_root(&self, spec: &str) -> Result<Option<cid::Cid>, CliError> {
        if super::read::in_drive(spec)
            && let Some(commit) = self.commit_drive.get()
        {
            commit().map_err(|e| CliError::failure(format!("committing the drive: {e}")))?;
        }
        Ok(self.store.root_cid(super::drive::DRIVE_ROOT)?)
    }
}

/// Serves requests on a background thread until the process exits; removes a socket file
/// left by a killed mount first.
pub fn serve(home: &Path, live: Arc<Live>) -> Result<(), CliError> {
    let path = socket_path(home);
    if UnixStream::connect(&path).is_ok() {
        return Err(CliError::failure(format!("{}: another cidfs process answers there", path.display())));
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(super::io_error(&path))?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(super::io_error(&path))?;
    std::thread::Builder::new()
        .name("cidfs-control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let live = live.clone();
                std::thread::spawn(move || answer(conn, &live));
            }
        })
        .map_err(|e| CliError::failure(format!("starting the control socket: {e}")))?;
    Ok(())
}

fn answer(conn: UnixStream, live: &Live) {
    let mut line = String::new();
    if BufReader::new(&conn).read_line(&mut line).is_err() {
        return;
    }
    if let Some(args) = line.trim_end_matches('\n').strip_prefix("cat ") {
        stream_cat(&conn, live, args);
        return;
    }
    if line.trim() == "await-exit" {
        // answered now that it is registered, and again when the process ends
        if (&conn).write_all(format!("registered {}\n", std::process::id()).as_bytes()).is_ok() {
            live.exit_waiters.lock().expect("lock poisoned").push(conn);
        }
        return;
    }
    let reply = match handle(line.trim(), live) {
        Ok(body) => format!("ok\n{body}"),
        Err(e) => format!("error: {} {}\n", e.code, e.message.replace('\n', " ")),
    };
    let _ = (&conn).write_all(reply.as_bytes());
}

fn handle(request: &str, live: &Live) -> Result<String, CliError> {
    let (verb, arg) = request.split_once(' ').unwrap_or((request, ""));
    let node = live.node.as_ref();
    match verb {
        "status" => Ok(status(live)),
        "pieces" => Ok(crate::filecoin::replicate::report::pieces_text(&live.store)?),
        "pieces-json" => Ok(crate::filecoin::replicate::report::pieces_json(&live.store)?),
        "providers" => super::pieces::providers_request(&live.store, arg),
        "payments" => Ok(crate::filecoin::ledger::payments_text(&crate::filecoin::ledger::payments(&live.store)?)),
        "payments-json" => Ok(crate::filecoin::ledger::payments_json(&crate::filecoin::ledger::payments(&live.store)?)),
        "evict-all" => {
            let replicas = live.replicator.get().map_or(usize::MAX, |r| r.policy().replicas);
            Ok(crate::filecoin::cold::evict_all_replicated(&live.store, replicas, &mut |_| {})?.text())
        }
        "ls" => {
            let entries = super::read::ls(live.blocks.as_ref(), live.drive_root(arg)?, arg)?;
            Ok(entries.iter().map(|e| format!("{}\n", super::read::ls_line(e))).collect())
        }
        "get" => {
            // `get OUT<TAB>SPEC[<TAB>preserve-special]`: the output path is the caller's,
            // resolved by the caller
            let mut parts = arg.split('\t');
            let (Some(out), Some(spec)) = (parts.next(), parts.next()) else {
                return Err(CliError::failure("get needs OUT<TAB>SPEC"));
            };
            let opts = super::read::GetOptions { preserve_special: parts.next() == Some("preserve-special") };
            let written = super::read::get(live.blocks.as_ref(), live.drive_root(spec)?, spec, Path::new(out), opts)?;
            Ok(format!("{}\n", written.display()))
        }
        "id" => {
            let node = node.ok_or_else(offline)?;
            let mut out = format!("{}\n", node.peer_id());
            for a in node.listen_addrs() {
                out.push_str(&format!("{a}\n"));
            }
            Ok(out)
        }
        "peers" => {
            let node = node.ok_or_else(offline)?;
            Ok(node.peers().iter().map(|p| format!("{p}\n")).collect())
        }
        "connect" => {
            let node = node.ok_or_else(offline)?;
            let addr: libp2p::Multiaddr =
                arg.parse().map_err(|e| CliError::failure(format!("{arg:?} is not a multiaddr: {e}")))?;
            let peer = match addr.iter().last() {
                Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
                _ => return Err(CliError::failure(format!("{addr} names no peer: end it with /p2p/<peer id>"))),
            };
            node.connect(addr.clone());
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if node.peers().contains(&peer) {
                    return Ok(format!("connected to {peer}\n"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(CliError::failure(format!("could not connect to {addr} within 10 s (see the mount log)")))
        }
        _ => Err(CliError::failure(format!("unknown request {verb:?}"))),
    }
}

fn offline() -> CliError {
    CliError::failure("the IPFS node is off (--offline)")
}

fn status(live: &Live) -> String {
    let mut out = super::repo::store_status(&live.store).unwrap_or_else(|e| format!("store: {e}\n"));
    let t = live.blocks.stats();
    let asked = t.store_hits + t.network_blocks + t.misses;
    let rate = if asked == 0 { "-".to_string() } else { format!("{:.1}%", 100.0 * t.store_hits as f64 / asked as f64) };
    out.push_str(&format!("reads:     {asked} blocks; local hit rate {rate}; {} not found anywhere\n", t.misses));
    if let Some(r) = live.replicator.get() {
        let lines = crate::filecoin::replicate::report::status_lines(
            &live.store,
            r.policy().replicas,
            r.provider_count(),
            Some(&r.progress),
        );
        out.push_str(&lines.unwrap_or_else(|e| format!("filecoin:  {e}\n")));
    }
    if let Some(f) = live.filecoin.get() {
        match f.ledger().spend() {
            Ok(spend) => {
                out.push_str(&format!("{}\n", crate::filecoin::ledger::status_line(&spend, f.ledger().caps())))
            }
            Err(e) => out.push_str(&format!("payments:  {e}\n")),
        }
    }
    match &live.node {
        Some(node) => {
            let n = node.stats();
            out.push_str(&format!("ipfs:      {} ({} peers connected)\n", node.peer_id(), node.peers().len()));
            out.push_str(&match node.serving() {
                crate::ipfs::Serve::Published { trusted } => format!(
                    "  serving: what you published to every peer; the drive to {} trusted peers (--trust)\n",
                    trusted.len()
                ),
                crate::ipfs::Serve::All => "  serving: everything in the store to every peer (--serve all)\n".into(),
                crate::ipfs::Serve::Nothing => "  serving: nothing (--serve none)\n".into(),
            });
            out.push_str(&format!(
                "  fetched: {} blocks ({}); served: {} blocks ({}); peers dropped for bad blocks: {}\n",
                n.blocks_fetched,
                human_bytes(n.bytes_fetched),
                n.blocks_served,
                human_bytes(n.bytes_served),
                n.peers_dropped.saturating_sub(n.peers_flooding)
            ));
            out.push_str(&format!(
                "  limits:  {} replies throttled; {} streams refused; {} peers dropped for flooding\n",
                n.replies_throttled, n.streams_refused, n.peers_flooding
            ));
            for line in live.blocks.reports() {
                out.push_str(&format!("  {line}\n"));
            }
            let c = live.store.cache_usage();
            out.push_str(&format!(
                "  cache:   {} of {} on disk in {} segments; {} blocks ({}) fetched this session; \
                 {} evicted ({} segments)\n",
                human_bytes(c.bytes),
                human_bytes(c.cap),
                c.segments,
                t.network_blocks,
                human_bytes(t.network_bytes),
                human_bytes(c.evicted_bytes),
                c.evicted_segments
            ));
        }
        None => out.push_str("ipfs:      off (--offline)\n"),
    }
    out
}

/// `cat OFFSET LENGTH|- SPEC`: the bytes, framed, so an error after some bytes is told.
fn stream_cat(conn: &UnixStream, live: &Live, args: &str) {
    let mut out = Frames(conn);
    let mut parts = args.splitn(3, ' ');
    let (offset, length, spec) = (parts.next(), parts.next(), parts.next());
    let parsed = match (offset.and_then(|o| o.parse::<u64>().ok()), length, spec) {
        (Some(o), Some("-"), Some(spec)) => Ok((o, None, spec)),
        (Some(o), Some(l), Some(spec)) => l.parse::<u64>().map(|l| (o, Some(l), spec)).map_err(|_| ()),
        _ => Err(()),
    };
    let result = match parsed {
        Ok((offset, length, spec)) => live
            .drive_root(spec)
            .and_then(|drive| super::read::cat(live.blocks.as_ref(), drive, spec, offset, length, &mut out)),
        Err(()) => Err(CliError::failure(format!("bad cat request {args:?}"))),
    };
    let _ = match result {
        Ok(()) => out.frame(b'k', &[]),
        Err(e) => {
            let mut body = vec![e.code as u8];
            body.extend_from_slice(e.message.as_bytes());
            out.frame(b'e', &body)
        }
    };
}

/// Writes each chunk as a `d` frame.
struct Frames<'a>(&'a UnixStream);

impl Frames<'_> {
    fn frame(&mut self, tag: u8, body: &[u8]) -> std::io::Result<()> {
        let mut head = [tag, 0, 0, 0, 0];
        head[1..].copy_from_slice(&(body.len() as u32).to_le_bytes());
        let mut w = self.0;
        w.write_all(&head)?;
        w.write_all(body)
    }
}

impl Write for Frames<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1 << 20);
        self.frame(b'd', &buf[..n])?;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `cat` in the running mount or daemon, copying the bytes to `out`; `None` if none
/// answers at `home`.
pub fn cat(
    home: &Path,
    spec: &str,
    offset: u64,
    length: Option<u64>,
    out: &mut dyn Write,
) -> Option<Result<(), CliError>> {
    let mut conn = UnixStream::connect(socket_path(home)).ok()?;
    let length = length.map_or("-".to_string(), |l| l.to_string());
    if conn.write_all(format!("cat {offset} {length} {spec}\n").as_bytes()).is_err() {
        return None;
    }
    let mut conn = std::io::BufReader::new(conn);
    let stopped = || CliError::failure("the running cidfs stopped in the middle of the reply".to_string());
    Some((|| loop {
        let mut head = [0u8; 5];
        std::io::Read::read_exact(&mut conn, &mut head).map_err(|_| stopped())?;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len];
        std::io::Read::read_exact(&mut conn, &mut body).map_err(|_| stopped())?;
        match head[0] {
            b'd' => out.write_all(&body).map_err(|e| CliError::failure(format!("writing the output: {e}")))?,
            b'k' => return Ok(()),
            b'e' if !body.is_empty() => {
                return Err(CliError::new(i32::from(body[0]), String::from_utf8_lossy(&body[1..]).into_owned()));
            }
            _ => return Err(stopped()),
        }
    })())
}

/// Registers to hear how the process serving `home` ends; `None` if none answers. Read
/// the result with [`exit_result`] once it was told to stop. The process's id comes with
/// the connection (to wait for it to let go of the store).
pub fn await_exit(home: &Path) -> Option<(UnixStream, u32)> {
    let mut conn = UnixStream::connect(socket_path(home)).ok()?;
    conn.write_all(b"await-exit\n").ok()?;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).ok()?;
    let pid = line.trim().strip_prefix("registered ")?.parse().ok()?;
    Some((conn, pid))
}

/// How the process ended, as it said: its final commit's result (`None` if it ended
/// without saying, e.g. killed).
pub fn exit_result(conn: UnixStream, wait: Duration) -> Option<Result<(), CliError>> {
    let _ = conn.set_read_timeout(Some(wait));
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).ok()?;
    match line.trim_end().strip_prefix("error: ") {
        None if line.trim() == "ok" => Some(Ok(())),
        None => None,
        Some(err) => Some(Err(match err.split_once(' ').and_then(|(c, m)| Some((c.parse::<i32>().ok()?, m))) {
            Some((code, msg)) => CliError::new(code, msg),
            None => CliError::failure(err.to_string()),
        })),
    }
}

/// Asks a running mount; `None` if none answers at `home`.
pub fn ask(home: &Path, request: &str) -> Option<Result<String, CliError>> {
    let mut conn = UnixStream::connect(socket_path(home)).ok()?;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    if conn.write_all(format!("{request}\n").as_bytes()).is_err() {
        return None;
    }
    let mut reply = String::new();
    if std::io::Read::read_to_string(&mut conn, &mut reply).is_err() {
        return Some(Err(CliError::failure("the mount did not answer in time".to_string())));
    }
    Some(match reply.split_once('\n') {
        Some(("ok", body)) => Ok(body.to_string()),
        Some((err, _)) => {
            let err = err.trim_start_matches("error: ");
            match err.split_once(' ').and_then(|(code, msg)| Some((code.parse::<i32>().ok()?, msg))) {
                Some((code, msg)) => Err(CliError::new(code, msg)),
                None => Err(CliError::failure(err.to_string())),
            }
        }
        None => Err(CliError::failure(format!("unreadable reply from the mount: {reply:?}"))),
    })
}
