//! Store maintenance: `pin`, `gc`, `verify`, `status`, `log`.

use cid::Cid;

use super::session::{Session, parse_cid};
use super::{CliError, exit, print, progress};
use crate::store::{GcReport, Store, VerifyReport};

/// `cidfs pin`.
#[derive(clap::Subcommand, Debug)]
pub enum PinArgs {
    /// Pin a CID whose DAG is complete in the store.
    Add { cid: String },
    /// Remove a pin.
    Rm { cid: String },
    /// List pins.
    Ls,
}

impl PinArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        let store = session.store()?;
        match self {
            PinArgs::Add { cid } => {
                let cid = parse_cid(&cid)?;
                pin_add(&store, &cid, "pin add")?;
                print(&format!("pinned {cid}"));
            }
            PinArgs::Rm { cid } => {
                let cid = parse_cid(&cid)?;
                pin_rm(&store, &cid)?;
                print(&format!("unpinned {cid}"));
            }
            PinArgs::Ls => {
                for (cid, label) in store.pins()? {
                    print(&format!("{cid}\t{label}"));
                }
            }
        }
        Ok(())
    }
}

/// `cidfs gc`.
#[derive(clap::Args, Debug)]
pub struct GcArgs {}

impl GcArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        let r = gc(&session.store()?)?;
        print(&format!(
            "removed {} blocks ({} of data); freed {} on disk",
            r.blocks_removed,
            human_bytes(r.block_bytes_removed),
            human_bytes(r.disk_bytes_freed)
        ));
        if r.hot_copies_removed > 0 {
            print(&format!(
                "removed {} hot copies of deleted files ({})",
                r.hot_copies_removed,
                human_bytes(r.hot_bytes_removed)
            ));
        }
        Ok(())
    }
}

/// `cidfs verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

impl VerifyArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        let store = session.store()?;
        let (r, hot) = verify(&store, self.quiet)?;
        for (cid, why) in &r.bad {
            print(&format!("bad block {cid}: {why}"));
        }
        for (root, cid) in &r.missing {
            print(&format!("missing block {cid} (reachable from pin {root})"));
        }
        for (cid, why) in &hot.bad {
            print(&format!("bad hot copy of {cid}: {why} (deleted; reads of it go through its blocks)"));
        }
        // the DAGs checked are those gc keeps: pins, the drive (and its sidecar), and
        // every snapshot in the drive's log; say which, so the count adds up
        let (pins, snapshots) = (store.pins()?.len(), store.commits()?.len());
        let drive = match store.roots()?.len() {
            0 => "",
            1 => "the drive, ",
            _ => "the drive and its sidecar, ",
        };
        print(&format!(
            "checked {} blocks ({}), the DAGs under {} roots ({pins} pins, {drive}{snapshots} snapshots; a \
             root that is several of these counts once) and {} hot copies ({})",
            r.blocks_checked,
            human_bytes(r.bytes_checked),
            r.roots_checked,
            hot.checked,
            human_bytes(hot.bytes)
        ));
        if !r.ok() || !hot.bad.is_empty() {
            return Err(CliError::new(
                exit::INVALID_DATA,
                format!(
                    "store verification failed: {} bad, {} missing blocks, {} bad hot copies",
                    r.bad.len(),
                    r.missing.len(),
                    hot.bad.len()
                ),
            ));
        }
        Ok(())
    }
}

/// `cidfs status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {}

impl StatusArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        print(&session.status()?);
        Ok(())
    }
}

/// `cidfs log`.
#[derive(clap::Args, Debug)]
pub struct LogArgs {
    /// Keep only the newest N commits (older snapshots become collectable by gc).
    #[arg(long, value_name = "N")]
    prune: Option<usize>,
}

impl LogArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        let store = session.store()?;
        if let Some(keep) = self.prune {
            let n = store.prune_commits(keep.max(1))?;
            print(&format!("pruned {n} commits; run `cidfs gc` to reclaim their space"));
            return Ok(());
        }
        for c in store.commits()? {
            let size = dag_size(&store, &c.root).map_or_else(|| "-".to_string(), human_bytes);
            print(&format!("{}\t{}\t{}\t{}", c.seq, format_time(c.time), c.root, size));
        }
        Ok(())
    }
}

/// Pins `cid` after checking its whole DAG is in the store.
pub fn pin_add(store: &Store, cid: &Cid, label: &str) -> Result<(), CliError> {
    let missing = store.reachable(&[*cid])?.missing;
    if let Some((_, m)) = missing.first() {
        return Err(CliError::new(
            exit::NOT_FOUND,
            format!("cannot pin {cid}: block {m} is not found locally ({} missing)", missing.len()),
        ));
    }
    Ok(store.pin(cid, label)?)
}

pub fn pin_rm(store: &Store, cid: &Cid) -> Result<(), CliError> {
    if store.unpin(cid)? { Ok(()) } else { Err(CliError::failure(format!("{cid} is not pinned"))) }
}

pub fn gc(store: &Store) -> Result<GcReport, CliError> {
    Ok(store.gc()?)
}

/// What `verify` found of the hot copies: how many were compared with their file's
/// blocks, and those that differed (now deleted).
#[derive(Debug, Default)]
pub struct HotReport {
    pub checked: u64,
    pub bytes: u64,
    pub bad: Vec<(Cid, String)>,
}

pub fn verify(store: &Store, quiet: bool) -> Result<(VerifyReport, HotReport), CliError> {
    let copies = store.hot_files().list();
    let total = store.stats()?.block_bytes + copies.iter().map(|(_, l)| l).sum::<u64>();
    let bar = progress::bytes("verifying", Some(total), quiet);
    let report = store.verify(&mut |n| bar.inc(n))?;
    let mut hot = HotReport::default();
    for (cid, len) in copies {
        hot.checked += 1;
        hot.bytes += len;
        if let Err(why) = hot_copy_matches(store, &cid, len, &mut |n| bar.inc(n)) {
            store.hot_files().discard(&cid);
            hot.bad.push((cid, why));
        }
    }
    bar.finish_and_clear();
    Ok((report, hot))
}

/// Compares the hot copy of the file `cid` with the file's bytes from its blocks.
fn hot_copy_matches(store: &Store, cid: &Cid, len: u64, progress: &mut dyn FnMut(u64)) -> Result<(), String> {
    use crate::unixfs::{Node, Nodes, UnixfsError, file};
    use std::io::Read;
    let node = store.node(cid).map_err(|e| e.to_string())?;
    let Node::File(f) = node.as_ref() else { return Err("not a file".into()) };
    if f.size != len {
        return Err(format!("{len} bytes, the file has {}", f.size));
    }
    let mut copy = store.hot_files().get(cid, len).ok_or("cannot be opened")?;
    let mut buf = Vec::new();
    let mut at = 0u64;
    let mut differs = None;
    let read = file::read_range(store, cid, f, 0, len, &mut |b| {
        buf.resize(b.len(), 0);
        copy.read_exact(&mut buf).map_err(UnixfsError::Output)?;
        if let Some(i) = buf.iter().zip(b.iter()).position(|(x, y)| x != y) {
            differs = Some(at + i as u64);
            return Err(UnixfsError::Output(std::io::ErrorKind::InvalidData.into()));
        }
        at += b.len() as u64;
        progress(b.len() as u64);
        Ok(())
    });
    match (differs, read) {
        (Some(at), _) => Err(format!("differs from the blocks at byte {at}")),
        (None, r) => r.map_err(|e| e.to_string()),
    }
}

/// The cumulative size of the DAG under `cid` as its root block records it (block bytes
/// plus its links' sizes), without walking the DAG.
pub fn dag_size(store: &Store, cid: &Cid) -> Option<u64> {
    let data = store.get(cid).ok()??;
    let node = ipld_dagpb::PbNode::from_bytes(data.clone()).ok()?;
    Some(data.len() as u64 + node.links.iter().map(|l| l.size.unwrap_or(0)).sum::<u64>())
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn format_time(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

pub use crate::block::human_bytes;

/// What the store holds, as `cidfs status` prints it.
pub fn store_status(store: &crate::store::Store) -> Result<String, CliError> {
    let s = store.stats()?;
    let mut out = format!("store:     {}\n", store.root().display());
    out.push_str(&format!("blocks:    {} ({})\n", s.blocks, human_bytes(s.block_bytes)));
    out.push_str(&format!("segments:  {} ({} on disk)\n", s.segments, human_bytes(s.segment_bytes)));
    out.push_str(&format!("pins:      {}\n", s.pins));
    let c = store.cold_usage()?;
    out.push_str(&format!(
        "data:      {} local; {} cold in {} segments (only at storage providers; read back on demand)\n",
        human_bytes(c.local_bytes),
        human_bytes(c.cold_bytes),
        c.cold_segments
    ));
    let h = store.hot_files().usage();
    out.push_str(&format!(
        "hot:       {} files ({}) of {} cap, for reads the kernel serves itself\n",
        h.files,
        human_bytes(h.bytes),
        human_bytes(h.cap)
    ));
    if let Some(drive) = store.root_cid(super::drive::DRIVE_ROOT)? {
        out.push_str(&format!("drive:     {drive}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_format_as_utc() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00:00");
        assert_eq!(super::format_time(1_795_720_509), "2026-11-26 19:15:09");
        assert_eq!(super::format_time(951_782_400), "2000-02-29 00:00:00");
    }

    #[test]
    fn human_bytes() {
        assert_eq!(super::human_bytes(5), "5 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }
}
