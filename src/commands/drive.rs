//! The drive: the directory DAG a mount shows at its root, kept as the store's `drive`
//! root. `add` and `import` link what they bring into it, in the same batch, so the drive
//! and its contents change together or not at all.

use std::path::Path;

use cid::Cid;

use super::{CliError, StoreSink};
use crate::importer::{DirBuilder, ImportOptions, LinkInfo};
use crate::store::{Batch, Store};
use crate::unixfs::{self, Node, dir};
use crate::vfs::posix;
use crate::vfs::posix::SideEntry;

pub use crate::vfs::{DRIVE_POSIX_ROOT, DRIVE_ROOT};

/// The name an added path gets in the drive: its base name.
pub fn base_name(path: &Path) -> Result<String, CliError> {
    let abs = std::fs::canonicalize(path).map_err(super::io_error(path))?;
    let name = abs.file_name().and_then(|n| n.to_str()).map(str::to_string);
    name.ok_or_else(|| CliError::failure(format!("{}: has no usable base name; give one with --name", path.display())))
}

fn taken(name: &str, old: &Cid) -> CliError {
    CliError::new(
        super::exit::EXISTS,
        format!(
            "/{name} already exists in the drive ({old}); nothing was added. Give another name with --name, \
             or pass --replace to replace it (the current snapshot keeps the old one)"
        ),
    )
}

/// Refuses names the drive already has for other content (unless `replace`): what `link`
/// would refuse, checked before any work is done where the CIDs are known up front.
pub fn check_free(store: &Store, entries: &[(String, Cid)], replace: bool) -> Result<(), CliError> {
    let Some(root) = store.root_cid(DRIVE_ROOT)?.filter(|_| !replace) else { return Ok(()) };
    let node = unixfs::load(store, &root)?;
    for (name, cid) in entries {
        if let Some(l) = dir::lookup(store, &root, &node, name)?.filter(|l| l.cid != *cid) {
            return Err(taken(name, &l.cid));
        }
    }
    Ok(())
}

/// What [`link`] did to the drive.
#[derive(Debug, Default)]
pub struct Linked {
    /// Entries that were there before under the same names, now replaced: name, old CID.
    pub replaced: Vec<(String, Cid)>,
    /// The drive's last commit before this one: the snapshot that still holds what was
    /// replaced (until it is pruned).
    pub previous: Option<u64>,
}

impl Linked {
    /// One line per replaced entry, for stderr.
    pub fn report(&self) -> Vec<String> {
        let snapshot = match self.previous {
            Some(seq) => format!("snapshot {seq} (/.snapshots/{seq} on the mount) still holds it"),
            None => "no snapshot holds it".to_string(),
        };
        self.replaced
            .iter()
            .map(|(name, old)| format!("replaced /{name} in the drive (was {old}); {snapshot}"))
            .collect()
    }
}

/// Links `entries` into the drive root; the new root is set when `batch` commits. A name
/// the drive already has for other content (or that two entries share) is refused with
/// [`exit::EXISTS`](super::exit::EXISTS) unless `replace`; then the old entry goes, and
/// what went is reported. The same content under its own name again is no change.
pub fn link(
    store: &Store,
    batch: &mut Batch<'_>,
    entries: Vec<(String, LinkInfo, Option<SideEntry>)>,
    replace: bool,
) -> Result<Linked, CliError> {
    let mut d = DirBuilder::new(unixfs::Metadata::default());
    let mut existing = std::collections::HashMap::new();
    if let Some(old) = store.root_cid(DRIVE_ROOT)? {
        let node = unixfs::load(store, &old)?;
        if !matches!(node, Node::Directory { .. } | Node::HamtShard(_)) {
            return Err(CliError::failure(format!("drive root {old} is not a directory")));
        }
        let mut links = Vec::new();
        dir::list(store, &old, &node, &mut |l| links.push(l))?;
        for l in links {
            existing.insert(l.name.clone(), l.cid);
            d.insert(l.name, LinkInfo { cid: l.cid, tsize: l.tsize.unwrap_or(0), filesize: 0 });
        }
    }
    let mut linked = Linked::default();
    let mut seen = std::collections::HashSet::new();
    // what the sidecar says of entries new to the drive, or replacing others
    let mut said = Vec::new();
    for (name, link, side) in &entries {
        if !dir::is_safe_name(name) || name == crate::vfs::IPFS_DIR {
            return Err(CliError::failure(format!("{name:?} cannot be a name in the drive")));
        }
        if !seen.insert(name.as_str()) {
            return Err(CliError::new(
                super::exit::EXISTS,
                format!("two of the paths would both be /{name} in the drive; add them one at a time with --name"),
            ));
        }
        // the same content again under its name replaces nothing
        if let Some(old) = existing.get(name).filter(|old| **old != link.cid) {
            if !replace {
                return Err(taken(name, old));
            }
            linked.replaced.push((name.clone(), *old));
        }
        let changed = existing.get(name).is_none_or(|old| *old != link.cid);
        if let Some(side) = side.clone().filter(|s| changed && (!s.extras.is_empty() || s.sub.is_some())) {
            said.push((name.clone(), side));
        }
        d.insert(name.clone(), *link);
    }
    if !linked.replaced.is_empty() {
        linked.previous = store.last_commit()?.map(|c| c.seq);
    }
    // what was said of replaced entries (owners, xattrs, links) does not apply to their
    // replacements; an entry linked again with the same content keeps it
    let names: Vec<&str> = linked.replaced.iter().map(|(n, _)| n.as_str()).collect();
    let root = d.finish(&ImportOptions::default(), &mut StoreSink { batch, public: false })?;
    let old_side = match store.root_cid(DRIVE_POSIX_ROOT)? {
        Some(side_cid) => Some(
            match unixfs::load(store, &side_cid)? {
                Node::Cbor(v) => posix::decode(&v),
                _ => Err("not dag-cbor".into()),
            }
            .map_err(|e| CliError::failure(format!("drive sidecar {side_cid}: {e}; run `cidfs verify`")))?,
        ),
        None => None,
    };
    if old_side.is_some() || !said.is_empty() {
        let mut side = posix::without_root_names(&old_side.unwrap_or_default(), &names);
        side.entries.extend(said);
        let block = posix::encode(&side);
        batch.put(&block)?;
        batch.set_root(DRIVE_POSIX_ROOT, *block.cid());
    }
    batch.set_root(DRIVE_ROOT, root.cid);
    batch.log_commit(root.cid);
    Ok(linked)
}
