//! The drive: the directory DAG a mount shows at its root, kept as the store's `drive`
//! root. `add` and `import` link what they bring into it, in the same batch, so the drive
//! and its contents change together or not at all.

use std::path::Path;

use std::sync::Arc;

use cid::Cid;

use super::{CliError, StoreSink};
use crate::importer::{DirBuilder, ImportOptions, LinkInfo};
use crate::store::{Batch, Store};
use crate::unixfs::{self, Node, dir};
use crate::vfs::{CommitBuild, DriveStore, VfsError, posix};

/// Name of the store root that holds the drive.
pub const DRIVE_ROOT: &str = "drive";
/// The store root naming the drive's POSIX sidecar (owners, xattrs, hard links; see
/// [`crate::vfs::posix`]).
pub const DRIVE_POSIX_ROOT: &str = "drive.posix";

/// The name an added path gets in the drive: its base name.
pub fn base_name(path: &Path) -> Result<String, CliError> {
    let abs = std::fs::canonicalize(path).map_err(super::io_error(path))?;
    let name = abs.file_name().and_then(|n| n.to_str()).map(str::to_string);
    name.ok_or_else(|| CliError::failure(format!("{}: has no usable base name; give one with --name", path.display())))
}

/// Links `entries` into the drive root (replacing entries of the same name); the new root
/// is set when `batch` commits.
pub fn link(store: &Store, batch: &mut Batch<'_>, entries: Vec<(String, LinkInfo)>) -> Result<Cid, CliError> {
    let mut d = DirBuilder::new(unixfs::Metadata::default());
    if let Some(old) = store.root_cid(DRIVE_ROOT)? {
        let node = unixfs::load(store, &old)?;
        if !matches!(node, Node::Directory { .. } | Node::HamtShard(_)) {
            return Err(CliError::failure(format!("drive root {old} is not a directory")));
        }
        let mut links = Vec::new();
        dir::list(store, &old, &node, &mut |l| links.push(l))?;
        for l in links {
            d.insert(l.name, LinkInfo { cid: l.cid, tsize: l.tsize.unwrap_or(0), filesize: 0 });
        }
    }
    for (name, link) in &entries {
        if !dir::is_safe_name(name) || name == crate::vfs::IPFS_DIR {
            return Err(CliError::failure(format!("{name:?} cannot be a name in the drive")));
        }
        d.insert(name.clone(), *link);
    }
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let root = d.finish(&ImportOptions::default(), &mut StoreSink { batch })?;
    if let Some(side_cid) = store.root_cid(DRIVE_POSIX_ROOT)? {
        let side = match unixfs::load(store, &side_cid)? {
            Node::Cbor(v) => posix::decode(&v),
            _ => Err("not dag-cbor".into()),
        }
        .map_err(|e| CliError::failure(format!("drive sidecar {side_cid}: {e}; run `cidfs verify`")))?;
        let kept = posix::encode(&posix::without_root_names(&side, &names));
        batch.put(&kept)?;
        batch.set_root(DRIVE_POSIX_ROOT, *kept.cid());
    }
    batch.set_root(DRIVE_ROOT, root.cid);
    batch.log_commit(root.cid);
    Ok(root.cid)
}

/// A mounted drive commits into the store: new blocks, the new `drive` root and a commit
/// log entry, in one durable batch.
pub struct StoreDrive(pub Arc<Store>);

impl DriveStore for StoreDrive {
    fn commit(&self, build: &mut CommitBuild<'_>) -> Result<(), VfsError> {
        let mut batch = self.0.batch();
        let (root, side) = build(&mut StoreSink { batch: &mut batch })?;
        batch.set_root(DRIVE_ROOT, root);
        batch.set_root(DRIVE_POSIX_ROOT, side);
        batch.log_commit(root);
        batch.commit()?;
        log::info!("committed drive root {root}");
        Ok(())
    }

    fn stage(&self, blocks: &[crate::block::Block]) -> Result<(), VfsError> {
        let mut batch = self.0.batch();
        for b in blocks {
            batch.put(b)?;
        }
        // volatile: the commit that links these leaves makes them durable
        batch.commit_volatile()?;
        Ok(())
    }
}
