//! Pieces from sealed segments, made in the background.
//!
//! The store seals a segment of the user's data when it is full, or (through
//! [`Sealer::step`]) when the drive has been quiet for `--seal-after` with at least
//! [`MIN_QUIET_SEAL`] unsealed, so a small drive is protected too. Each sealed segment then
//! becomes a piece: its bytes, encrypted with a key derived from the master key and a
//! fresh random salt ([`crate::filecoin::keys`]) unless pieces are public, streamed once
//! through CommP; the store records segment → piece CID v2, sizes and salt, and the root of
//! each 2 MiB CommP block is kept beside it ([`block_roots`], 32 bytes per block) so an
//! audit can prove any leaf from one block.
//!
//! [`PiecePayload`] gives a piece's bytes back, encrypted on the fly from the segment file,
//! for uploads: nothing but the segment is kept on disk.
//!
//! This all runs on a thread of its own ([`Sealer::spawn`]), never on a FUSE thread; CommP
//! takes one core at most.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::commp::Commp;
use super::keys::{KeyError, MasterKey, PieceKey, random_salt};
use crate::store::{PieceRecord, SealedSegment, Store, StoreError};

/// A quiet drive's segment is sealed only once it holds this much: smaller pieces are not
/// worth a provider's while.
pub const MIN_QUIET_SEAL: u64 = 1 << 20;

/// Default `--seal-after`: how long the drive must be quiet before a partly filled segment
/// is sealed.
pub const DEFAULT_SEAL_AFTER: Duration = Duration::from_secs(600);

/// Read size while hashing a segment.
const CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("reading segment {segment}: {source}")]
    Read { segment: u32, source: std::io::Error },
    #[error("drawing a piece key salt: {0}")]
    Salt(std::io::Error),
}

/// How pieces are made.
#[derive(Clone, Debug)]
pub struct SealPolicy {
    /// Seal a partly filled segment after the drive was quiet this long.
    pub seal_after: Duration,
    /// ...if it holds at least this many bytes.
    pub min_bytes: u64,
    /// Plaintext pieces (`--public-pieces`): for data meant to be published.
    pub public: bool,
}

impl Default for SealPolicy {
    fn default() -> Self {
        SealPolicy { seal_after: DEFAULT_SEAL_AFTER, min_bytes: MIN_QUIET_SEAL, public: false }
    }
}

/// Makes pieces of a store's sealed segments.
pub struct Sealer {
    store: Arc<Store>,
    policy: SealPolicy,
    /// `None` with public pieces.
    key: Option<MasterKey>,
}

impl Sealer {
    /// A sealer for `store`; loads (or makes) the master key unless pieces are public.
    pub fn new(store: Arc<Store>, policy: SealPolicy) -> Result<Sealer, SealError> {
        let key = if policy.public { None } else { Some(MasterKey::load_or_create(store.root())?) };
        Ok(Sealer { store, policy, key })
    }

    /// One round: seals the open segment if the drive has been quiet long enough, then
    /// makes a piece of every sealed segment that has none. Returns the pieces made.
    pub fn step(&self) -> Result<Vec<PieceRecord>, SealError> {
        if self.store.quiet_for() >= self.policy.seal_after {
            self.store.seal_quiet(self.policy.min_bytes)?;
        }
        let mut made = Vec::new();
        for segment in self.store.sealed_without_piece()? {
            let record = make_piece(&self.store, segment, self.key.as_ref())?;
            self.store.record_piece(&record)?;
            log::info!(
                "segment {} is piece {} ({} bytes{})",
                record.segment,
                record.piece,
                record.payload_size,
                if record.salt.is_some() { ", encrypted" } else { ", public" }
            );
            made.push(record);
        }
        Ok(made)
    }

    /// Runs [`step`](Self::step) every `every` until `stop` is set.
    pub fn spawn(self, every: Duration, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("cidfs-sealer".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = self.step() {
                        log::warn!("making pieces: {e} (will retry)");
                    }
                    sleep_unless(&stop, every);
                }
            })
            .expect("spawning the sealer thread")
    }
}

/// Sleeps `d`, waking early if `stop` is set.
pub(crate) fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = std::time::Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50).min(d));
    }
}

/// The piece of one sealed segment: reads it once, encrypting (with a fresh salt) unless
/// `key` is `None`, through CommP.
pub fn make_piece(store: &Store, segment: SealedSegment, key: Option<&MasterKey>) -> Result<PieceRecord, SealError> {
    let salt = key.map(|_| random_salt().map_err(SealError::Salt)).transpose()?;
    let cipher = key.zip(salt.as_ref()).map(|(k, s)| k.piece_key(s));
    let payload = PiecePayload { file: store.segment_file(segment.segment)?, len: segment.len, key: cipher };
    let mut commp = Commp::new();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0;
    while offset < segment.len {
        let n =
            payload.read_at(offset, &mut buf).map_err(|source| SealError::Read { segment: segment.segment, source })?;
        commp.update(&buf[..n]);
        offset += n as u64;
    }
    let (piece, block_roots) = commp.finish_with_blocks();
    save_block_roots(store, segment.segment, &block_roots)
        .map_err(|source| SealError::Read { segment: segment.segment, source })?;
    Ok(PieceRecord {
        segment: segment.segment,
        piece: piece.cid_v2(),
        payload_size: segment.len,
        padded_size: piece.padded_size(),
        salt,
    })
}

/// Keeps the root of each CommP block of a piece (32 bytes per 2 MiB), so an audit can
/// prove one leaf from one block ([`crate::filecoin::commp::merkle_path_in_block`]).
fn save_block_roots(store: &Store, segment: u32, roots: &[[u8; 32]]) -> std::io::Result<()> {
    let bytes: Vec<u8> = roots.iter().flatten().copied().collect();
    crate::store::write_private(&store.piece_tree_path(segment), &bytes)
}

/// The block roots kept for a piece (`None` if none were kept).
pub fn block_roots(store: &Store, segment: u32) -> Option<Vec<[u8; 32]>> {
    let bytes = std::fs::read(store.piece_tree_path(segment)).ok()?;
    (bytes.len() % 32 == 0).then(|| bytes.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect())
}

/// A piece's payload, read from its segment file and encrypted on the fly.
pub struct PiecePayload {
    file: Arc<std::fs::File>,
    len: u64,
    key: Option<PieceKey>,
}

impl PiecePayload {
    /// The payload of a recorded piece (`master` is needed unless the piece is public).
    pub fn open(store: &Store, record: &PieceRecord, master: Option<&MasterKey>) -> Result<PiecePayload, SealError> {
        let key = match (&record.salt, master) {
            (Some(salt), Some(m)) => Some(m.piece_key(salt)),
            (Some(salt), None) => Some(MasterKey::load_or_create(store.root())?.piece_key(salt)),
            (None, _) => None,
        };
        Ok(PiecePayload { file: store.segment_file(record.segment)?, len: record.payload_size, key })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `buf` from `offset` (short only at the end); returns the bytes read.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (self.len.saturating_sub(offset)).min(buf.len() as u64) as usize;
        self.file.read_exact_at(&mut buf[..want], offset)?;
        if let Some(k) = &self.key {
            k.apply(offset, &mut buf[..want]);
        }
        Ok(want)
    }

    /// A reader from `offset` to the end.
    pub fn reader(self, offset: u64) -> PayloadReader {
        PayloadReader { payload: self, offset }
    }
}

/// [`PiecePayload`] as a [`std::io::Read`].
pub struct PayloadReader {
    payload: PiecePayload,
    offset: u64,
}

impl std::io::Read for PayloadReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.payload.read_at(self.offset, buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Block;
    use crate::store::StoreOptions;

    fn store_with(segment_max: u64) -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { segment_max_bytes: segment_max, ..Default::default() };
        let store = Arc::new(Store::open_with(dir.path(), opts).unwrap());
        (dir, store)
    }

    fn write_blocks(store: &Store, n: usize, size: usize, seed: u8) -> Vec<Block> {
        let mut batch = store.batch();
        let blocks: Vec<Block> = (0..n)
            .map(|i| {
                let data: Vec<u8> = (0..size).map(|j| (j as u8).wrapping_mul(31) ^ (i as u8) ^ seed).collect();
                Block::encode(cid::Version::V1, crate::block::RAW, data).unwrap()
            })
            .collect();
        for b in &blocks {
            batch.put(b).unwrap();
        }
        batch.commit().unwrap();
        blocks
    }

    #[test]
    fn a_full_segment_becomes_an_encrypted_piece_whose_blocks_decrypt_at_their_offsets() {
        let (_dir, store) = store_with(300_000);
        let blocks = write_blocks(&store, 6, 50_000, 1); // five fill a segment
        let sealer =
            Sealer::new(store.clone(), SealPolicy { seal_after: Duration::from_secs(3600), ..Default::default() })
                .unwrap();
        let made = sealer.step().unwrap();
        assert_eq!(made.len(), 1, "one full segment, one still open");
        let record = &made[0];
        assert!(record.salt.is_some());
        assert_eq!(store.pieces().unwrap(), made);
        assert!(sealer.step().unwrap().is_empty(), "a piece is made once");

        let payload = PiecePayload::open(&store, record, None).unwrap();
        let mut bytes = vec![0u8; payload.len() as usize];
        assert_eq!(payload.read_at(0, &mut bytes).unwrap(), bytes.len());
        assert_eq!(super::super::commp::commp(&bytes).cid_v2(), record.piece, "the CID covers the encrypted bytes");
        let key = MasterKey::load_or_create(store.root()).unwrap().piece_key(record.salt.as_ref().unwrap());
        let mut in_piece = 0;
        for b in &blocks {
            let loc = store.location(b.cid()).unwrap().unwrap();
            if loc.segment != record.segment {
                continue;
            }
            in_piece += 1;
            let range = loc.offset as usize..loc.offset as usize + loc.len as usize;
            assert_ne!(&bytes[range.clone()], b.data().as_ref(), "no plaintext in the piece");
            let mut got = bytes[range].to_vec();
            key.apply(loc.offset, &mut got);
            Block::verified(*b.cid(), got).expect("decrypts to the block");
        }
        assert!(in_piece >= 4);
    }

    #[test]
    fn a_quiet_drive_is_sealed_once_it_holds_enough_and_public_pieces_are_plaintext() {
        let (_dir, store) = store_with(1 << 30);
        let policy = SealPolicy { seal_after: Duration::ZERO, min_bytes: 100_000, public: true };
        let sealer = Sealer::new(store.clone(), policy).unwrap();
        write_blocks(&store, 1, 50_000, 2);
        assert!(sealer.step().unwrap().is_empty(), "below the minimum: left open");
        assert!(store.unsealed_bytes().unwrap() > 50_000);
        write_blocks(&store, 1, 60_000, 3);
        let made = sealer.step().unwrap();
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].salt, None);
        assert_eq!(store.unsealed_bytes().unwrap(), 0);
        let payload = PiecePayload::open(&store, &made[0], None).unwrap();
        let mut head = [0u8; 64];
        payload.read_at(0, &mut head).unwrap();
        assert!(crate::car::CarReader::new(std::io::Cursor::new(head.to_vec())).is_ok(), "a plaintext CAR");
        // the next write goes to a new segment; the piece never changes
        write_blocks(&store, 1, 10_000, 4);
        assert_eq!(store.piece_of_segment(made[0].segment).unwrap(), Some(made[0].clone()));
        assert_eq!(store.sealed_without_piece().unwrap(), vec![]);
    }

    #[test]
    fn segment_numbers_are_never_reused_after_gc() {
        let (_dir, store) = store_with(150_000);
        let keep = write_blocks(&store, 1, 10_000, 5);
        store.pin(keep[0].cid(), "keep").unwrap();
        write_blocks(&store, 6, 50_000, 6); // unpinned: gc drops them
        let before: Vec<u32> = store.blocks().unwrap().iter().map(|(_, l)| l.segment).collect();
        let newest = *before.iter().max().unwrap();
        store.gc().unwrap();
        let after = write_blocks(&store, 1, 10_000, 7);
        let seg = store.location(after[0].cid()).unwrap().unwrap().segment;
        assert!(seg > newest, "segment {seg} reuses a number up to {newest}");
    }

    #[test]
    fn gc_retires_the_piece_of_a_mostly_dead_segment_and_keeps_its_salt() {
        let (_dir, store) = store_with(300_000);
        let blocks = write_blocks(&store, 6, 50_000, 8); // five fill a segment
        let sealer = Sealer::new(store.clone(), SealPolicy::default()).unwrap();
        let made = sealer.step().unwrap();
        let piece = made[0].clone();
        // keep one block of the piece: the rest is dead, so gc rewrites it
        let kept = blocks.iter().find(|b| store.location(b.cid()).unwrap().unwrap().segment == piece.segment).unwrap();
        store.pin(kept.cid(), "kept").unwrap();
        store.gc().unwrap();
        assert_eq!(store.piece_of_segment(piece.segment).unwrap(), None);
        assert_eq!(store.retired_pieces().unwrap(), vec![piece.clone()]);
        assert_ne!(store.location(kept.cid()).unwrap().unwrap().segment, piece.segment);
        assert!(store.get(kept.cid()).unwrap().is_some());
        store.forget_retired_piece(&piece.piece).unwrap();
        assert!(store.retired_pieces().unwrap().is_empty());
    }
}
