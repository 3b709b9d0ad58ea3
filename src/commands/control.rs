//! The running mount's control socket, `$CIDFS_HOME/control.sock` (mode 0600).
//!
//! While a mount holds the store, other `cidfs` processes cannot open it; commands that
//! report on or steer the live process (`status`, `id`, `swarm peers`, `swarm connect`)
//! ask it here instead. One request line, then the reply: a first line `ok` or
//! `error: <message>`, then the body; the connection closes after each request.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::CliError;
use super::repo::human_bytes;
use crate::fetch::Tiered;
use crate::store::Store;

pub fn socket_path(home: &Path) -> PathBuf {
    home.join("control.sock")
}

/// What the socket reports on.
pub struct Live {
    pub store: Arc<Store>,
    pub blocks: Arc<Tiered>,
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
    let reply = match handle(line.trim(), live) {
        Ok(body) => format!("ok\n{body}"),
        Err(e) => format!("error: {e}\n"),
    };
    let _ = (&conn).write_all(reply.as_bytes());
}

fn handle(request: &str, live: &Live) -> Result<String, String> {
    let (verb, arg) = request.split_once(' ').unwrap_or((request, ""));
    let node = live.blocks.node();
    match verb {
        "status" => Ok(status(live)),
        "id" => {
            let node = node.ok_or("the IPFS node is off (--offline)")?;
            let mut out = format!("{}\n", node.peer_id());
            for a in node.listen_addrs() {
                out.push_str(&format!("{a}\n"));
            }
            Ok(out)
        }
        "peers" => {
            let node = node.ok_or("the IPFS node is off (--offline)")?;
            Ok(node.peers().iter().map(|p| format!("{p}\n")).collect())
        }
        "connect" => {
            let node = node.ok_or("the IPFS node is off (--offline)")?;
            let addr: libp2p::Multiaddr = arg.parse().map_err(|e| format!("{arg:?} is not a multiaddr: {e}"))?;
            let peer = match addr.iter().last() {
                Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
                _ => return Err(format!("{addr} names no peer: end it with /p2p/<peer id>")),
            };
            node.connect(addr.clone());
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if node.peers().contains(&peer) {
                    return Ok(format!("connected to {peer}\n"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(format!("could not connect to {addr} within 10 s (see the mount log)"))
        }
        _ => Err(format!("unknown request {verb:?}")),
    }
}

fn status(live: &Live) -> String {
    let mut out = super::repo::store_status(&live.store).unwrap_or_else(|e| format!("store: {e}\n"));
    let t = live.blocks.stats();
    let asked = t.store_hits + t.network_blocks + t.misses;
    let rate = if asked == 0 { "-".to_string() } else { format!("{:.1}%", 100.0 * t.store_hits as f64 / asked as f64) };
    out.push_str(&format!("reads:     {asked} blocks; local hit rate {rate}; {} not found anywhere\n", t.misses));
    match live.blocks.node() {
        Some(node) => {
            let n = node.stats();
            out.push_str(&format!("ipfs:      {} ({} peers connected)\n", node.peer_id(), node.peers().len()));
            out.push_str(&format!(
                "  fetched: {} blocks ({}); served: {} blocks ({}); peers dropped for bad blocks: {}\n",
                n.blocks_fetched,
                human_bytes(n.bytes_fetched),
                n.blocks_served,
                human_bytes(n.bytes_served),
                n.peers_dropped
            ));
            out.push_str(&format!(
                "  cache:   {} blocks ({}) fetched into the store this session (unpinned; gc reclaims)\n",
                t.network_blocks,
                human_bytes(t.network_bytes)
            ));
        }
        None => out.push_str("ipfs:      off (--offline)\n"),
    }
    out
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
        Some((err, _)) => Err(CliError::failure(err.trim_start_matches("error: ").to_string())),
        None => Err(CliError::failure(format!("unreadable reply from the mount: {reply:?}"))),
    })
}
