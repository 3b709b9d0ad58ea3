//! Hashing a file while it is written, so that `fsync` and `close` find it mostly imported.
//!
//! A new file (or one truncated to zero) that is written strictly in order — every write
//! lands at the current end, as `cp`, `dd`, `rsync`, `tar` and backup tools write — is
//! *streamed*: a background thread reads each full chunk back from the spill file (still
//! in the page cache), encodes it as a leaf exactly as the importer would, and stages the
//! leaf in the store ([`DriveStore::stage`](super::DriveStore::stage): appended to
//! a segment, indexed, not yet synced). The commit then links those leaves as they are and
//! imports only the tail after them. The file gets the same CID either way; what changes
//! is *when* the hashing and the segment writes happen: during the writes, on the core
//! the writer is not using, instead of after them, while `fsync` waits.
//!
//! Anything out of order stops it for that file until it is truncated to zero or
//! committed and closed: a write anywhere but the end, a truncate into streamed chunks. A
//! generation counter makes the thread's in-flight work worthless after such a change, so
//! it never records leaves for bytes that changed under it. Leaves staged and then not
//! used are unreferenced blocks that `gc` reclaims.

use std::io::Read;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, Weak};

use super::spill::SpillFile;
use super::{Content, DNode, Tree};
use crate::importer::file::{Chunk, encode_leaf};
use crate::importer::{ImportOptions, LinkInfo};

/// Chunks a file must have ahead of what is streamed before the thread takes them (so a
/// small file is never streamed: its commit is cheap anyway).
const MIN_CLAIM: u64 = 4;
/// Most chunks taken (hashed, then staged as one store batch) at a time.
const MAX_CLAIM: u64 = 32;

/// Per spill file: how far streaming got.
#[derive(Debug, Clone)]
pub(super) struct Stream {
    /// Leaves staged for the file's first `leaves.len()` chunks, in order.
    pub(super) leaves: Vec<LinkInfo>,
    /// Chunks handed to the thread so far (at least `leaves.len()`).
    claimed: u64,
    /// Bumped whenever streaming stops: the thread's in-flight results are then dropped.
    generation: u64,
    /// Every write so far landed at the end of the file.
    pub(super) in_order: bool,
    /// The thread has this file queued or in hand.
    queued: bool,
}

impl Stream {
    /// A stream for a file written from empty.
    pub(super) fn fresh() -> Stream {
        Stream { leaves: Vec::new(), claimed: 0, generation: 0, in_order: true, queued: false }
    }

    /// A file whose writes will not be streamed (an edit of committed content).
    pub(super) fn off() -> Stream {
        Stream { in_order: false, ..Stream::fresh() }
    }

    fn stop(&mut self) {
        self.in_order = false;
        self.leaves.clear();
        self.claimed = 0;
        self.generation += 1;
    }

    /// A write of `len` bytes at `offset` into a file of `size` bytes is about to land;
    /// returns whether the thread should be woken for it (then counted as queued).
    pub(super) fn before_write(&mut self, offset: u64, len: u64, size: u64, chunk: u64) -> bool {
        if !self.in_order {
            return false;
        }
        if offset != size {
            self.stop();
            return false;
        }
        let full = (size + len) / chunk;
        let wake = !self.queued && full >= self.claimed + MIN_CLAIM;
        self.queued |= wake;
        wake
    }

    /// The file is about to be cut (or grown) to `len` bytes.
    pub(super) fn before_truncate(&mut self, len: u64, chunk: u64) {
        if len == 0 {
            *self = Stream { generation: self.generation + 1, ..Stream::fresh() };
        } else if len < self.claimed * chunk {
            self.stop();
        }
    }

    /// Chunks the thread may take now: `(first, count)`.
    fn claim(&mut self, size: u64, chunk: u64) -> Option<(u64, u64)> {
        let full = size / chunk;
        if !self.in_order || full < self.claimed + MIN_CLAIM {
            return None;
        }
        let first = self.claimed;
        let count = (full - first).min(MAX_CLAIM);
        self.claimed += count;
        Some((first, count))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const C: u64 = 100;

    #[test]
    fn in_order_writes_are_claimed_in_batches() {
        let mut s = Stream::fresh();
        assert!(!s.before_write(0, 3 * C, 0, C), "three chunks are not worth waking the thread");
        assert!(s.before_write(3 * C, C, 3 * C, C));
        assert!(!s.before_write(4 * C, C, 4 * C, C), "already queued");
        assert_eq!(s.claim(5 * C + 7, C), Some((0, 5)));
        assert_eq!(s.claim(5 * C + 7, C), None, "the partial tail waits");
        assert_eq!(s.claim(100 * C, C), Some((5, MAX_CLAIM)));
        assert_eq!(s.claimed, 5 + MAX_CLAIM);
    }

    #[test]
    fn anything_out_of_order_stops_streaming() {
        let mut s = Stream::fresh();
        s.claim(8 * C, C);
        s.leaves.push(LinkInfo { cid: crate::store::segment_placeholder_root(), tsize: 1, filesize: 1 });
        let generation = s.generation;
        assert!(!s.before_write(C, 10, 8 * C, C), "a write before the end");
        assert!(!s.in_order && s.leaves.is_empty() && s.generation > generation);
        assert_eq!(s.claim(100 * C, C), None);
        // truncating to zero starts over
        s.before_truncate(0, C);
        assert!(s.in_order && s.leaves.is_empty());
        assert_eq!(s.claim(8 * C, C), Some((0, 8)));
        // cutting into claimed chunks stops; cutting only the unclaimed tail does not
        s.before_truncate(9 * C, C);
        assert!(s.in_order);
        s.before_truncate(7 * C, C);
        assert!(!s.in_order);
        assert!(!Stream::off().before_write(0, C, 0, C));
    }
}
