//! The simulated proving clock (which also expires abandoned uploads): every `--proving-period`, each data set is challenged as
//! PDP challenges it, and the provider proves the challenged leaves from the bytes it
//! holds.
//!
//! A challenge: a random seed; for `i` in 0..5, leaf `keccak256(seed ‖ dataSetId ‖ i) mod
//! leaves` (seed and id as 32-byte words, `i` as 8 bytes, as `abi.encodePacked`) across the
//! data set's confirmed pieces in piece-id order. The proof is the leaf and its merkle path
//! to the piece root (the piece CID's), made from the one CommP block that holds the leaf
//! and the block roots kept at upload ([`merkle_path_in_block`]). A piece file that is gone,
//! or a byte changed in the block, fails the check: the period is a fault.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{U256, keccak256};

use super::Provider;
use super::state::{DataSet, now_ms};
use crate::filecoin::commp::{BLOCK_LEAVES, Piece, block_of_leaf, leaf, merkle_path_in_block, verify_path};

/// Challenges per proving period (as PDP).
pub const CHALLENGES: u64 = 5;

pub fn spawn(p: Arc<Provider>) {
    let tick = (p.opts.proving_period / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let spawned = std::thread::Builder::new().name("cidfs-provider-prove".into()).spawn(move || {
        loop {
            std::thread::sleep(tick);
            if let Err(e) = round(&p) {
                log::warn!("provider: proving: {e}");
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("provider: cannot start the proving clock: {e}");
    }
}

/// Proves every data set whose period has ended.
fn round(p: &Provider) -> Result<(), super::state::StateError> {
    let now = now_ms();
    let expired = p.state.expire_uploads(now)?;
    if expired > 0 {
        log::info!("provider: {expired} unfinished uploads expired");
    }
    for ds in p.state.data_sets()? {
        if now < ds.next_challenge_ms {
            continue;
        }
        let outcome = challenge(p, &ds)?;
        let period = p.opts.proving_period.as_millis() as u64;
        p.state.update_data_set(ds.id, |ds| {
            match &outcome {
                Some(Ok(())) => ds.proven_periods += 1,
                Some(Err(why)) => {
                    log::warn!("provider: data set {} fails its proof: {why}", ds.id);
                    ds.faulted_periods += 1;
                    ds.last_fault = Some(why.clone());
                }
                None => {} // nothing to prove yet
            }
            ds.next_challenge_ms = now + period;
            Ok(())
        })?;
    }
    Ok(())
}

/// The leaf index of challenge `i` (PDP's draw).
pub fn challenge_index(seed: &[u8; 32], data_set: u64, i: u64, leaves: u64) -> u64 {
    let mut packed = Vec::with_capacity(72);
    packed.extend_from_slice(seed);
    packed.extend_from_slice(&U256::from(data_set).to_be_bytes::<32>());
    packed.extend_from_slice(&i.to_be_bytes());
    let h = U256::from_be_bytes(keccak256(&packed).0);
    (h % U256::from(leaves)).to::<u64>()
}

/// One period's challenges of a data set: `None` if it holds no confirmed piece.
fn challenge(p: &Provider, ds: &DataSet) -> Result<Option<Result<(), String>>, super::state::StateError> {
    let pieces = super::routes::confirmed_pieces(p, ds)?;
    let mut spans = Vec::new(); // (first leaf, piece CID, piece)
    let mut leaves = 0u64;
    for sp in &pieces {
        let Some(piece) = sp.piece_cid.parse::<cid::Cid>().ok().as_ref().and_then(Piece::from_cid_v2) else { continue };
        spans.push((leaves, sp.piece_cid.clone(), piece));
        leaves += piece.padded_size() / 32;
    }
    if leaves == 0 {
        return Ok(None);
    }
    let seed = crate::filecoin::keys::random_salt()?;
    for i in 0..CHALLENGES {
        let index = challenge_index(&seed, ds.id, i, leaves);
        let (first, cid, piece) = spans.iter().rev().find(|(first, ..)| *first <= index).expect("index < leaves");
        if let Err(why) = prove_leaf(p, cid, piece, index - first) {
            return Ok(Some(Err(format!("challenge {i}: piece {cid}, leaf {}: {why}", index - first))));
        }
    }
    Ok(Some(Ok(())))
}

/// Proves leaf `index` of a held piece from its file; why not, if it cannot.
fn prove_leaf(p: &Provider, cid: &str, piece: &Piece, index: u64) -> Result<(), String> {
    let file = std::fs::File::open(p.state.piece_path(cid)).map_err(|e| format!("the piece file: {e}"))?;
    let tree = std::fs::read(p.state.tree_path(cid)).map_err(|e| format!("the piece's tree: {e}"))?;
    let roots: Vec<[u8; 32]> = tree.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
    let (start, len) = block_of_leaf(index, piece.payload_size, !roots.is_empty());
    let mut block = vec![0u8; len as usize];
    file.read_exact_at(&mut block, start).map_err(|e| format!("reading the piece: {e}"))?;
    let local = if roots.is_empty() { index } else { index % BLOCK_LEAVES };
    let path = merkle_path_in_block(&block, &roots, piece.payload_size, index).ok_or("no such leaf")?;
    match verify_path(&piece.root, index, &leaf(&block, local), &path) {
        true => Ok(()),
        false => Err("the leaf's merkle path does not lead to the piece root".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_fall_inside_the_data_set_and_depend_on_everything_drawn() {
        let seed = [3u8; 32];
        let a = challenge_index(&seed, 1, 0, 1000);
        assert!(a < 1000);
        let all: Vec<u64> = (0..5).map(|i| challenge_index(&seed, 1, i, 1 << 40)).collect();
        assert!(all.windows(2).all(|w| w[0] != w[1]));
        assert_ne!(challenge_index(&seed, 2, 0, 1 << 40), all[0]);
        assert_ne!(challenge_index(&[4; 32], 1, 0, 1 << 40), all[0]);
    }
}
