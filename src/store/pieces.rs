//! Sealed segments and the pieces made of them: what the store knows of its Filecoin side.
//!
//! A *main* segment (the user's data, never a cache segment) is **sealed** when it is full
//! (a batch rolls over to a new one) or when the drive has been quiet for a while with
//! enough unsealed bytes ([`Store::seal_quiet`]). A sealed segment never changes again, so
//! it can become a piece: the Filecoin side (`crate::filecoin::seal`) encrypts it, computes
//! its CommP and records the result here with [`Store::record_piece`]:
//!
//! ```text
//!  pieces_v1:         segment -> (piece CID v2, payload size, padded size, salt)
//!  retired_pieces_v1: piece CID v2 -> (segment it was, payload size, padded size, salt)
//! ```
//!
//! Beside them, `pieces/<segment>.tree` keeps the root of each 2 MiB CommP block of the
//! piece (what proves one leaf from one block, for audits).
//!
//! The salt is what the piece's key is derived from (empty for a `--public-pieces`
//! plaintext piece). A piece's payload is its segment's bytes, so a block's offset in the
//! piece is its offset in the segment.
//!
//! `gc` may rewrite a sealed segment that has a piece (its live blocks move to a new
//! segment, which becomes a new piece in turn); the old piece's record then moves to
//! `retired_pieces_v1`, where it stays, key salt included, until the Filecoin side has the
//! new piece at its replicas and removes the old one from its providers. The local file
//! goes at once: the providers' copy is what protects those blocks meanwhile.

use cid::Cid;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{CACHE_SEGMENTS, SEGMENTS, Store, StoreError, cid_from_key, key};

/// A piece row: (piece CID, payload size, padded size, key salt or empty).
type PieceRow<'a> = (&'a [u8], u64, u64, &'a [u8]);

pub(super) const PIECES: TableDefinition<u32, PieceRow> = TableDefinition::new("pieces_v1");
pub(super) const RETIRED: TableDefinition<&[u8], (u32, u64, u64, &[u8])> = TableDefinition::new("retired_pieces_v1");

/// What the store records of a piece made from a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieceRecord {
    /// The segment whose bytes (encrypted unless `salt` is `None`) the piece is.
    pub segment: u32,
    /// Piece CID v2 (FRC-0069).
    pub piece: Cid,
    pub payload_size: u64,
    pub padded_size: u64,
    /// What the piece's key is derived from; `None` for a plaintext (public) piece.
    pub salt: Option<[u8; 32]>,
}

impl PieceRecord {
    fn row(&self) -> (Vec<u8>, u64, u64, Vec<u8>) {
        (key(&self.piece), self.payload_size, self.padded_size, self.salt.map_or(Vec::new(), |s| s.to_vec()))
    }

    fn from_row(
        segment: u32,
        piece: &[u8],
        payload_size: u64,
        padded_size: u64,
        salt: &[u8],
    ) -> Result<Self, StoreError> {
        let salt = match salt.len() {
            0 => None,
            32 => Some(salt.try_into().expect("32 bytes")),
            n => return Err(StoreError::Corrupt(format!("piece of segment {segment}: a {n}-byte key salt"))),
        };
        Ok(PieceRecord { segment, piece: cid_from_key(piece)?, payload_size, padded_size, salt })
    }
}

/// A sealed segment of the user's data that is not a piece yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedSegment {
    pub segment: u32,
    /// Bytes in the segment file: the piece's payload size.
    pub len: u64,
}

impl Store {
    /// Seals the segment being filled with the user's data if it holds at least
    /// `min_bytes`, so that it can become a piece although it is not full; the next write
    /// starts a new segment. Returns the segment sealed, if any.
    pub fn seal_quiet(&self, min_bytes: u64) -> Result<Option<u32>, StoreError> {
        let mut writer = self.lock_writer();
        let newest_main = {
            let txn = self.db().begin_read()?;
            let segs = txn.open_table(SEGMENTS)?;
            let cache = txn.open_table(CACHE_SEGMENTS)?;
            let mut found = None;
            for row in segs.iter()?.rev() {
                let (k, v) = row?;
                if cache.get(k.value())?.is_none() {
                    found = Some((k.value(), v.value()));
                    break;
                }
            }
            found
        };
        let Some((id, (len, live, sealed))) = newest_main else { return Ok(None) };
        if sealed || len < min_bytes {
            return Ok(None);
        }
        self.settle(&mut writer)?;
        if writer.main.as_ref().is_some_and(|a| a.id == id) {
            writer.main = None; // nothing uncommitted: the writer lock is ours, no batch is open
        }
        let txn = self.db().begin_write()?;
        txn.open_table(SEGMENTS)?.insert(id, (len, live, true))?;
        txn.commit()?;
        log::info!("sealed segment {id} ({len} bytes) after a quiet spell");
        Ok(Some(id))
    }

    /// Sealed segments of the user's data that have no piece yet, oldest first.
    pub fn sealed_without_piece(&self) -> Result<Vec<SealedSegment>, StoreError> {
        let txn = self.db().begin_read()?;
        let segs = txn.open_table(SEGMENTS)?;
        let cache = txn.open_table(CACHE_SEGMENTS)?;
        let pieces = txn.open_table(PIECES)?;
        let mut out = Vec::new();
        for row in segs.iter()? {
            let (k, v) = row?;
            let (len, _, sealed) = v.value();
            let id = k.value();
            if sealed && cache.get(id)?.is_none() && pieces.get(id)?.is_none() {
                out.push(SealedSegment { segment: id, len });
            }
        }
        Ok(out)
    }

    /// Bytes of the user's data not sealed yet (the newest main segment, unsealed).
    pub fn unsealed_bytes(&self) -> Result<u64, StoreError> {
        let txn = self.db().begin_read()?;
        let segs = txn.open_table(SEGMENTS)?;
        let cache = txn.open_table(CACHE_SEGMENTS)?;
        let mut total = 0;
        for row in segs.iter()? {
            let (k, v) = row?;
            let (len, _, sealed) = v.value();
            if !sealed && cache.get(k.value())?.is_none() {
                total += len;
            }
        }
        Ok(total)
    }

    /// Records the piece made of a sealed segment. Refused (as corrupt) if the segment is
    /// unknown, unsealed, a cache segment, or already a different piece: a sealed piece
    /// never changes.
    pub fn record_piece(&self, record: &PieceRecord) -> Result<(), StoreError> {
        let (_writer, txn) = self.begin_durable()?; // (the lock: against a gc removing the segment meanwhile)
        {
            let segs = txn.open_table(SEGMENTS)?;
            let Some((len, _, sealed)) = segs.get(record.segment)?.map(|v| v.value()) else {
                return Err(StoreError::Corrupt(format!("no segment {} to make a piece of", record.segment)));
            };
            if !sealed || txn.open_table(CACHE_SEGMENTS)?.get(record.segment)?.is_some() {
                return Err(StoreError::Corrupt(format!("segment {} is not a sealed segment of data", record.segment)));
            }
            if len != record.payload_size {
                return Err(StoreError::Corrupt(format!(
                    "segment {} is {len} bytes, the piece says {}",
                    record.segment, record.payload_size
                )));
            }
            let mut pieces = txn.open_table(PIECES)?;
            if let Some(v) = pieces.get(record.segment)? {
                let (cid, ..) = v.value();
                if cid != key(&record.piece).as_slice() {
                    return Err(StoreError::Corrupt(format!("segment {} is a piece already", record.segment)));
                }
                return Ok(());
            }
            let (cid, payload, padded, salt) = record.row();
            pieces.insert(record.segment, (cid.as_slice(), payload, padded, salt.as_slice()))?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Every current piece, by segment.
    pub fn pieces(&self) -> Result<Vec<PieceRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let mut out = Vec::new();
        for row in txn.open_table(PIECES)?.iter()? {
            let (k, v) = row?;
            let (cid, payload, padded, salt) = v.value();
            out.push(PieceRecord::from_row(k.value(), cid, payload, padded, salt)?);
        }
        Ok(out)
    }

    /// The piece a segment became, if it did.
    pub fn piece_of_segment(&self, segment: u32) -> Result<Option<PieceRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(PIECES)?;
        let Some(v) = t.get(segment)? else { return Ok(None) };
        let (cid, payload, padded, salt) = v.value();
        PieceRecord::from_row(segment, cid, payload, padded, salt).map(Some)
    }

    /// Pieces whose segment `gc` rewrote: still at their providers until the Filecoin side
    /// removes them (see the module docs).
    pub fn retired_pieces(&self) -> Result<Vec<PieceRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let mut out = Vec::new();
        for row in txn.open_table(RETIRED)?.iter()? {
            let (k, v) = row?;
            let (segment, payload, padded, salt) = v.value();
            out.push(PieceRecord::from_row(segment, k.value(), payload, padded, salt)?);
        }
        Ok(out)
    }

    /// Forgets a retired piece (its providers no longer hold it).
    pub fn forget_retired_piece(&self, piece: &Cid) -> Result<(), StoreError> {
        let (_writer, txn) = self.begin_durable()?;
        let segment = txn.open_table(RETIRED)?.remove(key(piece).as_slice())?.map(|v| v.value().0);
        txn.commit()?;
        if let Some(segment) = segment {
            let _ = std::fs::remove_file(self.piece_tree_path(segment));
        }
        Ok(())
    }

    /// Where the roots of a piece's CommP blocks are kept (see `filecoin::seal`).
    pub fn piece_tree_path(&self, segment: u32) -> std::path::PathBuf {
        self.root().join("pieces").join(format!("{segment:08}.tree"))
    }

    /// The file of a segment, to read a piece's payload from (its bytes below the
    /// committed length never change).
    pub fn segment_file(&self, segment: u32) -> Result<std::sync::Arc<std::fs::File>, StoreError> {
        self.file(segment)
    }
}

/// Inside gc's index transaction: the piece of each removed segment moves to the retired
/// table (see the module docs).
pub(super) fn retire(txn: &redb::WriteTransaction, segments: &[u32]) -> Result<usize, StoreError> {
    let mut pieces = txn.open_table(PIECES)?;
    let mut retired = txn.open_table(RETIRED)?;
    let mut n = 0;
    for id in segments {
        let row = pieces.remove(*id)?.map(|v| {
            let (cid, payload, padded, salt) = v.value();
            (cid.to_vec(), payload, padded, salt.to_vec())
        });
        if let Some((cid, payload, padded, salt)) = row {
            retired.insert(cid.as_slice(), (*id, payload, padded, salt.as_slice()))?;
            n += 1;
        }
    }
    Ok(n)
}
