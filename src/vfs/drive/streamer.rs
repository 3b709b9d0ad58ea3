//! The streaming thread (see [`stream`](super::stream)): takes the chunks a file written
//! in order has ready, hashes them into leaves outside the drive's lock, stages them in
//! the store, and records them on the file if nothing changed meanwhile.

use std::io::Read;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, Weak};

use super::spill::SpillFile;
use super::stream::Stream;
use super::tree::{Content, DNode, Tree};
use crate::importer::file::{Chunk, encode_leaf};
use crate::importer::{ImportOptions, LinkInfo};

/// Starts the streaming thread for a drive; it ends when the drive is dropped.
pub(super) fn spawn(drive: Weak<Mutex<Tree>>) -> Sender<u64> {
    let (tx, rx) = channel();
    std::thread::Builder::new()
        .name("cidfs-stream".into())
        .spawn(move || worker(&drive, &rx))
        .expect("spawning the streaming thread");
    tx
}

fn worker(drive: &Weak<Mutex<Tree>>, queue: &Receiver<u64>) {
    while let Ok(ino) = queue.recv() {
        let Some(drive) = drive.upgrade() else { return };
        while stream_some(&drive, ino) {}
    }
}

/// The spill file and stream of a file being streamed.
fn streaming(d: &mut Tree, ino: u64) -> Option<(&Arc<SpillFile>, u64, &mut Stream)> {
    match d.nodes.get_mut(&ino) {
        Some(DNode::File { content: Content::Spill { file, size, overlay: None, stream }, .. }) => {
            Some((file, *size, stream))
        }
        _ => None,
    }
}

/// Streams the next claimable chunks of `ino`; false when there is nothing to do.
fn stream_some(drive: &Mutex<Tree>, ino: u64) -> bool {
    let opts = ImportOptions::default();
    let chunk = opts.chunk_size as u64;
    let (file, generation, first, count, store) = {
        let mut d = drive.lock().expect("lock poisoned");
        let Some(store) = d.store.clone() else { return false };
        let Some((file, size, s)) = streaming(&mut d, ino) else { return false };
        let file = file.clone();
        match s.claim(size, chunk) {
            Some((first, count)) => (file, s.generation, first, count, store),
            None => {
                s.queued = false;
                return false;
            }
        }
    };
    let mut blocks = Vec::with_capacity(count as usize);
    let mut links = Vec::with_capacity(count as usize);
    let mut read_error = None;
    for i in first..first + count {
        let mut c = Chunk::with_capacity(opts.chunk_size);
        let mut input = ReadAt { file: &file, pos: i * chunk };
        match c.fill_from(&mut input, opts.chunk_size) {
            Ok(n) if n == opts.chunk_size => {}
            Ok(n) => {
                read_error = Some(format!("chunk {i} is {n} bytes short"));
                break;
            }
            Err(e) => {
                read_error = Some(e.to_string());
                break;
            }
        }
        let leaf = encode_leaf(&opts, c);
        links.push(LinkInfo { cid: *leaf.block.cid(), tsize: leaf.block.data().len() as u64, filesize: leaf.filesize });
        blocks.push(leaf.block);
    }
    let staged = match read_error {
        Some(e) => Err(e),
        None => store.stage(&blocks).map_err(|e| e.to_string()),
    };
    let mut d = drive.lock().expect("lock poisoned");
    let Some((now_file, _, s)) = streaming(&mut d, ino) else { return false };
    if !Arc::ptr_eq(now_file, &file) || s.generation != generation {
        return true; // changed under us: what we made is unused; go on from where it is now
    }
    match staged {
        Ok(()) if s.leaves.len() as u64 == first => {
            s.leaves.extend(links);
            // those bytes are in the store now, no longer only in the spill file
            d.spill_bytes = d.spill_bytes.saturating_sub(count * chunk);
            true
        }
        Ok(()) => {
            s.stop();
            false
        }
        Err(e) => {
            log::warn!("streaming inode {ino} into the store: {e}; it is imported when committed instead");
            s.stop();
            false
        }
    }
}

/// Reads a file from a position on, with `pread`.
struct ReadAt<'a> {
    file: &'a SpillFile,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
