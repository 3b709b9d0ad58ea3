//! One in-memory block store for the vfs's unit tests and the model test: blocks by CID
//! (counting fetches, knowing each block's kind as the store's index does), and the
//! drive's commits (the root, the sidecar, how many blocks each commit added).

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use cid::Cid;

use super::VfsError;
use super::drive::{CommitBuild, DriveStore};
use crate::block::{Block, Kind, kind};
use crate::fetch::{Blocks, FetchError};
use crate::importer::BlockSink;
use crate::store::StoreError;

#[derive(Default)]
pub struct MemStore {
    pub blocks: Mutex<HashMap<Cid, Bytes>>,
    pub root: Mutex<Option<Cid>>,
    pub side: Mutex<Option<Cid>>,
    /// Blocks that each commit added (not already held).
    pub added: Mutex<Vec<usize>>,
    /// Blocks fetched.
    pub gets: Mutex<usize>,
    /// Blocks staged ahead of a commit (streamed leaves).
    pub staged: Mutex<usize>,
}

impl Blocks for MemStore {
    fn get(&self, cid: &Cid) -> Result<Bytes, FetchError> {
        if let Some(b) = Block::from_identity(cid) {
            return Ok(b.into_data());
        }
        *self.gets.lock().unwrap() += 1;
        self.blocks.lock().unwrap().get(cid).cloned().ok_or(FetchError::NotFound(*cid))
    }
    fn kind_hint(&self, cid: &Cid) -> Option<Kind> {
        self.blocks.lock().unwrap().get(cid).map(|d| kind(cid, d))
    }
}

struct Sink<'a>(&'a MemStore, usize);

impl BlockSink for Sink<'_> {
    type Error = StoreError;
    fn put(&mut self, block: Block) -> Result<(), StoreError> {
        let mut m = self.0.blocks.lock().unwrap();
        if !m.contains_key(block.cid()) {
            self.1 += 1;
            m.insert(*block.cid(), block.into_data());
        }
        Ok(())
    }
}

impl DriveStore for MemStore {
    fn commit(&self, build: &mut CommitBuild<'_>) -> Result<(), VfsError> {
        let mut sink = Sink(self, 0);
        let (root, side) = build(&mut sink)?;
        self.added.lock().unwrap().push(sink.1);
        *self.root.lock().unwrap() = Some(root);
        *self.side.lock().unwrap() = Some(side);
        Ok(())
    }

    fn stage(&self, blocks: &[Block]) -> Result<(), VfsError> {
        let mut m = self.blocks.lock().unwrap();
        for b in blocks {
            m.insert(*b.cid(), b.data().clone());
        }
        *self.staged.lock().unwrap() += blocks.len();
        Ok(())
    }
}

impl MemStore {
    /// A store holding `blocks`.
    pub fn with(blocks: Vec<Block>) -> MemStore {
        let store = MemStore::default();
        store.blocks.lock().unwrap().extend(blocks.into_iter().map(|b| (*b.cid(), b.into_data())));
        store
    }

    /// Blocks fetched since the last call.
    pub fn fetches(&self) -> usize {
        std::mem::take(&mut self.gets.lock().unwrap())
    }
}
