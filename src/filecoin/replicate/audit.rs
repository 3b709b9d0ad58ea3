//! Client-side audits: does a provider still hold the piece, byte for byte?
//!
//! A few blocks of the piece's segment, chosen at random, are read back from the provider
//! by `Range` on `/piece/{cid}`, decrypted with the piece's key, and checked against their
//! CIDs. Each block is an independent check of the bytes where it lies, so a provider that
//! lost or changed the piece is caught with a probability that grows with every audit.
//! (Leaf checks against the piece root with a merkle path would need the piece's tree,
//! which the client does not keep; the provider's own proofs cover that.)

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
    #[error("reading the local index: {0}")]
    Local(String),
}

/// Audits one replica; the number of blocks checked.
pub fn audit(store: &Store, client: &PdpClient, record: &PieceRecord, key: &MasterKey) -> Result<usize, AuditError> {
    let blocks: Vec<_> = store
        .blocks()
        .map_err(|e| AuditError::Local(e.to_string()))?
        .into_iter()
        .filter(|(_, l)| l.segment == record.segment)
        .collect();
    if blocks.is_empty() {
        return Ok(0);
    }
    let seed = crate::filecoin::keys::random_salt().map_err(|e| AuditError::Local(e.to_string()))?;
    let cipher = record.salt.as_ref().map(|s| key.piece_key(s));
    let mut checked = 0;
    for i in 0..BLOCKS_PER_AUDIT.min(blocks.len()) {
        let pick = u64::from_le_bytes(seed[i * 8..i * 8 + 8].try_into().expect("8 bytes")) as usize % blocks.len();
        let (cid, loc) = &blocks[pick];
        let mut bytes = match client.read_range(&record.piece, loc.offset, u64::from(loc.len)) {
            Ok(b) => b,
            Err(e @ PdpError::Status { status: 404 | 416, .. }) => return Err(AuditError::Missing(e)),
            Err(e) if e.is_transient() => return Err(AuditError::Unreachable(e)),
            Err(e) => return Err(AuditError::Missing(e)),
        };
        if let Some(c) = &cipher {
            c.apply(loc.offset, &mut bytes);
        }
        if Block::verified(*cid, bytes).is_err() {
            return Err(AuditError::Corrupt { cid: *cid, offset: loc.offset });
        }
        checked += 1;
    }
    Ok(checked)
}
