//! Client-side audits: does a provider still hold the piece, byte for byte?
//!
//! A few blocks of the piece's segment, chosen at random, are read back from the provider
//! by `Range` on `/piece/{cid}`, decrypted with the piece's key, and checked against their
//! CIDs. Each block is an independent check of the bytes where it lies, so a provider that
//! lost or changed the piece is caught with a probability that grows with every audit.
//!
//! Then one 32-byte leaf, at random, is checked against the piece root: the provider sends
//! the 127 bytes of its Fr32 unit (a `Range` read), the leaf is expanded from them, and its
//! merkle path is made here from the local segment's block and the block roots kept when
//! the piece was made. The provider's bytes must lead to the root the piece CID names.
//!
//! A cold segment (no local copy) is audited by its blocks only. A provider that charges
//! for reads (HTTP 402) is not audited this way: audits never pay, and its PDP proofs
//! are what vouch for it.

use crate::block::Block;
use crate::filecoin::keys::MasterKey;
use crate::filecoin::pdp::{PdpClient, PdpError};
use crate::store::{PieceRecord, Store};

/// Blocks read back per audit.
pub const BLOCKS_PER_AUDIT: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The provider could not be asked: not (yet) a verdict on the piece.
    #[error("{0}")]
    Unreachable(PdpError),
    #[error("the provider does not serve the piece: {0}")]
    Missing(PdpError),
    #[error("block {cid} at offset {offset} does not match its CID: the provider's bytes changed")]
    Corrupt { cid: cid::Cid, offset: u64 },
    #[error("leaf {leaf}: the provider's bytes do not lead to the piece root")]
    BadLeaf { leaf: u64 },
    #[error("reading the local index: {0}")]
    Local(String),
}

/// Audits one replica; the number of blocks checked.
pub fn audit(store: &Store, client: &PdpClient, record: &PieceRecord, key: &MasterKey) -> Result<usize, AuditError> {
    let local = |e: crate::store::StoreError| AuditError::Local(e.to_string());
    let cold = store.is_cold(record.segment).map_err(local)?;
    let blocks: Vec<_> = match cold {
        true => store.cold_blocks_of(record.segment).map_err(local)?,
        false => store.blocks().map_err(local)?.into_iter().filter(|(_, l)| l.segment == record.segment).collect(),
    };
    if blocks.is_empty() {
        return Ok(0);
    }
    let seed = crate::filecoin::keys::random_salt().map_err(|e| AuditError::Local(e.to_string()))?;
    let cipher = record.salt.as_ref().map(|s| key.piece_key(s));
    let mut checked = 0;
    for i in 0..BLOCKS_PER_AUDIT.min(blocks.len()) {
        let pick = u64::from_le_bytes(seed[i * 8..i * 8 + 8].try_into().expect("8 bytes")) as usize % blocks.len();
        let (cid, loc) = &blocks[pick];
        let Some(mut bytes) = read_back(client, record, loc.offset, u64::from(loc.len))? else { return Ok(checked) };
        if let Some(c) = &cipher {
            c.apply(loc.offset, &mut bytes);
        }
        if Block::verified(*cid, bytes).is_err() {
            return Err(AuditError::Corrupt { cid: *cid, offset: loc.offset });
        }
        checked += 1;
    }
    if cold {
        return Ok(checked); // the leaf's path needs the local copy
    }
    let data_leaves = record.payload_size.div_ceil(127) * 4;
    let leaf = u64::from_le_bytes(seed[24..32].try_into().expect("8 bytes")) % data_leaves;
    check_leaf(store, client, record, key, leaf)?;
    Ok(checked)
}

/// Checks leaf `leaf` of the provider's copy against the piece root (see the module docs).
/// Skipped (`Ok`) for a piece whose block roots were not kept.
pub fn check_leaf(
    store: &Store,
    client: &PdpClient,
    record: &PieceRecord,
    key: &MasterKey,
    leaf: u64,
) -> Result<(), AuditError> {
    use crate::filecoin::commp::{self, Piece};
    let Some(roots) = crate::filecoin::seal::block_roots(store, record.segment) else { return Ok(()) };
    let piece = Piece::from_cid_v2(&record.piece)
        .ok_or_else(|| AuditError::Local(format!("{} is not a piece CID", record.piece)))?;
    let local = crate::filecoin::seal::PiecePayload::open(store, record, Some(key))
        .map_err(|e| AuditError::Local(e.to_string()))?;
    let (start, len) = commp::block_of_leaf(leaf, record.payload_size, !roots.is_empty());
    let mut block = vec![0u8; len as usize];
    local.read_at(start, &mut block).map_err(|e| AuditError::Local(e.to_string()))?;
    let path = commp::merkle_path_in_block(&block, &roots, record.payload_size, leaf)
        .ok_or_else(|| AuditError::Local(format!("no leaf {leaf}")))?;
    // the provider's 127 bytes of the leaf's Fr32 unit
    let unit_start = (leaf / 4) * 127;
    let unit_len = 127.min(record.payload_size.saturating_sub(unit_start));
    let Some(unit) = read_back(client, record, unit_start, unit_len)? else { return Ok(()) };
    match commp::verify_path(&piece.root, leaf, &commp::leaf(&unit, leaf % 4), &path) {
        true => Ok(()),
        false => Err(AuditError::BadLeaf { leaf }),
    }
}

/// A range of the provider's copy; `None` if the provider charges for reads (x402): an
/// audit never pays, and a priced read is no verdict on the piece.
fn read_back(client: &PdpClient, record: &PieceRecord, offset: u64, len: u64) -> Result<Option<Vec<u8>>, AuditError> {
    match client.read_range(&record.piece, offset, len) {
        Ok(b) => Ok(Some(b)),
        Err(PdpError::Status { status: 402, .. }) => {
            log::debug!("piece {}: the provider charges for reads; audit skipped", record.piece);
            Ok(None)
        }
        Err(e @ PdpError::Status { status: 404 | 416, .. }) => Err(AuditError::Missing(e)),
        Err(e) if e.is_transient() => Err(AuditError::Unreachable(e)),
        Err(e) => Err(AuditError::Missing(e)),
    }
}
