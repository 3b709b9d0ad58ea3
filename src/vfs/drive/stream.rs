//! Hashing a file while it is written, so that `fsync` and `close` find it mostly imported:
//! the per-file state ([`Stream`]); the thread that does the hashing is in `streamer.rs`.
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

use crate::importer::LinkInfo;

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
    pub(super) claimed: u64,
    /// Bumped whenever streaming stops: the thread's in-flight results are then dropped.
    pub(super) generation: u64,
    /// Every write so far landed at the end of the file.
    pub(super) in_order: bool,
    /// The thread has this file queued or in hand.
    pub(super) queued: bool,
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

    pub(super) fn stop(&mut self) {
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
    pub(super) fn claim(&mut self, size: u64, chunk: u64) -> Option<(u64, u64)> {
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
