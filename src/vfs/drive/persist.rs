//! Where the drive is kept: the [`DriveStore`] a commit goes into, and [`StoreDrive`],
//! the store's: the drive is its `drive` root (and its sidecar the `drive.posix` root),
//! and every commit is a durable batch that also logs the commit.

use std::sync::Arc;

use cid::Cid;

use crate::importer::BlockSink;
use crate::store::{Store, StoreError};
use crate::vfs::VfsError;

/// Name of the store root that holds the drive.
pub const DRIVE_ROOT: &str = "drive";
/// The store root naming the drive's POSIX sidecar (owners, xattrs, hard links; see
/// [`posix`](super::posix)).
pub const DRIVE_POSIX_ROOT: &str = "drive.posix";

/// Where commits go: blocks into the store and the new root, durably, in one batch.
pub trait DriveStore: Send + Sync {
    /// Runs `build` with a sink for new blocks; `build` returns the new drive root and
    /// its POSIX sidecar (see [`posix`]), which become durable together with the blocks
    /// before this returns.
    fn commit(&self, build: &mut CommitBuild<'_>) -> Result<(), VfsError>;

    /// Stores blocks ahead of the commit that will reference them (leaves of a file still
    /// being written; see [`stream`](super::stream)): readable at once, durable with the
    /// next commit.
    fn stage(&self, blocks: &[crate::block::Block]) -> Result<(), VfsError>;
}

/// What a commit runs: writes blocks into the sink, returns (drive root, sidecar root).
pub type CommitBuild<'a> = dyn FnMut(&mut dyn BlockSink<Error = StoreError>) -> Result<(Cid, Cid), VfsError> + 'a;

/// A mounted drive commits into the store: new blocks, the new `drive` root and a commit
/// log entry, in one durable batch.
pub struct StoreDrive(pub Arc<Store>);

/// The drive's blocks go into a batch as its own (served to trusted peers only).
struct Own<'a, 's>(&'a mut crate::store::Batch<'s>);

impl BlockSink for Own<'_, '_> {
    type Error = StoreError;
    fn put(&mut self, block: crate::block::Block) -> Result<(), StoreError> {
        self.0.put(&block).map(|_| ())
    }
}

impl DriveStore for StoreDrive {
    fn commit(&self, build: &mut CommitBuild<'_>) -> Result<(), VfsError> {
        let mut batch = self.0.batch();
        let (root, side) = build(&mut Own(&mut batch))?;
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
