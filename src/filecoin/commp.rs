//! Piece commitments (CommP), as Filecoin computes them: the payload is zero-padded to
//! 127·2^k bytes (at least 127), Fr32-expanded (two zero bits after every 254 bits, so 127
//! bytes become 128), cut into 32-byte leaves and hashed as a binary tree with SHA254
//! (SHA-256 with the top two bits of its last byte cleared). The root is the CommP.
//!
//! [`Commp`] streams: bytes are Fr32-expanded into leaves as they come (straight from
//! the caller's buffer, one copy), full *blocks* of 127·2^14 bytes (2 MiB once expanded,
//! a subtree of height 16) are hashed in place as they fill — on other threads when asked
//! ([`Commp::with_threads`]), their buffers handed back for the next blocks — and their
//! roots are folded into a stack of partial roots, one per tree level, as in an
//! append-only merkle tree. Missing padding is never hashed: the root of an all-zero
//! subtree of each height is a constant.
//!
//! Pure: no I/O. `merkle_path`/`verify_path` give and check the proof of one leaf, which
//! is what a proving period asks a provider for.

use std::sync::mpsc;

use cid::Cid;
use multihash::Multihash;

/// Bytes of payload in one Fr32 unit (expanded to [`FR32_OUT`]).
pub const FR32_IN: usize = 127;
/// Bytes one Fr32 unit expands to.
pub const FR32_OUT: usize = 128;
/// Payload bytes of one streamed block: 2^14 Fr32 units (2 MiB expanded, 2^16 leaves).
const BLOCK_UNITS: usize = 1 << 14;
const BLOCK_IN: usize = FR32_IN * BLOCK_UNITS;
/// Height of a block's subtree (2^16 leaves of 32 bytes).
const BLOCK_HEIGHT: u32 = 16;
/// Tallest tree computed: 2^50 leaves, 32 PiB padded (a 64 GiB sector is height 31).
const MAX_HEIGHT: usize = 50;

/// The multicodec of a v1 piece CID: `fil-commitment-unsealed`.
pub const FIL_COMMITMENT_UNSEALED: u64 = 0xf101;
/// The multihash of a v1 piece CID's digest (the bare root).
pub const SHA2_256_TRUNC254_PADDED: u64 = 0x1012;
/// The multihash of a v2 piece CID (FRC-0069): padding, height and root.
pub const FR32_SHA256_TRUNC254_PADBINTREE: u64 = 0x1011;
/// The codec of a v2 piece CID: raw.
const RAW: u64 = 0x55;

/// The node hash: SHA-256 of the two children, truncated to 254 bits.
pub use super::sha254::node as sha254;

/// The root of an all-zero subtree of each height (height 0: a zero leaf).
fn zero_roots() -> &'static [[u8; 32]; MAX_HEIGHT + 1] {
    static ZEROS: std::sync::OnceLock<[[u8; 32]; MAX_HEIGHT + 1]> = std::sync::OnceLock::new();
    ZEROS.get_or_init(|| {
        let mut z = [[0u8; 32]; MAX_HEIGHT + 1];
        for h in 1..=MAX_HEIGHT {
            z[h] = sha254(&z[h - 1], &z[h - 1]);
        }
        z
    })
}

/// Expands one 127-byte unit to 128 bytes: two zero bits after each 254 bits.
///
/// Read as a little-endian bit string, quarter `k` of the output (32 bytes) is the input
/// shifted up by `2k` bits with its top two bits cleared; done in 64-bit words.
pub fn fr32_expand(input: &[u8; FR32_IN], out: &mut [u8; FR32_OUT]) {
    let word = |at: usize| -> u64 {
        match input.get(at..at + 8) {
            Some(w) => u64::from_le_bytes(w.try_into().expect("8 bytes")),
            // the last word has only seven bytes: the missing top one is zero
            None => u64::from_le_bytes(input[at - 1..at + 7].try_into().expect("8 bytes")) >> 8,
        }
    };
    const TOP_TWO_BITS_CLEAR: u64 = u64::MAX >> 2;
    for quarter in 0..4 {
        let shift = 2 * quarter as u32;
        for m in 0..4 {
            let at = 32 * quarter + 8 * m;
            let mut w = word(at);
            if shift > 0 {
                w = (w << shift) | (word(at - 8) >> (64 - shift));
            }
            if m == 3 {
                w &= TOP_TWO_BITS_CLEAR;
            }
            out[at..at + 8].copy_from_slice(&w.to_le_bytes());
        }
    }
}

/// Expands up to one unit's bytes, zero-padded to a whole unit.
fn fr32_expand_padded(bytes: &[u8], out: &mut [u8; FR32_OUT]) {
    let mut input = [0u8; FR32_IN];
    input[..bytes.len()].copy_from_slice(bytes);
    fr32_expand(&input, out);
}

/// Fr32 unit `unit` of `payload`, expanded (zero past the payload's end).
fn expand_unit(payload: &[u8], unit: usize) -> [u8; FR32_OUT] {
    let start = unit.saturating_mul(FR32_IN).min(payload.len());
    let bytes = &payload[start..payload.len().min(start + FR32_IN)];
    let mut out = [0u8; FR32_OUT];
    fr32_expand_padded(bytes, &mut out);
    out
}

/// Appends the leaves of `payload`, Fr32-expanded, to `leaves`: four per 127-byte unit,
/// a short last unit zero-padded.
fn expand_into(payload: &[u8], leaves: &mut Vec<[u8; 32]>) {
    let start = leaves.len();
    leaves.resize(start + 4 * payload.len().div_ceil(FR32_IN), [0; 32]);
    let out = leaves[start..].as_flattened_mut();
    for (unit, expanded) in payload.chunks(FR32_IN).zip(out.chunks_exact_mut(FR32_OUT)) {
        let expanded: &mut [u8; FR32_OUT] = expanded.try_into().expect("128 bytes");
        match unit.try_into() {
            Ok(whole) => fr32_expand(whole, expanded),
            Err(_) => fr32_expand_padded(unit, expanded),
        }
    }
}

/// The root of a subtree of height `height` whose first leaves are `nodes` and the rest
/// zero. Hashed a level at a time, in place (see [`sha254`](super::sha254)); what lies
/// past the leaves is made of zero subtrees, never hashed.
fn tree_root(nodes: &mut Vec<[u8; 32]>, height: usize) -> [u8; 32] {
    let zeros = zero_roots();
    debug_assert!(nodes.len() <= 1 << height);
    if nodes.is_empty() {
        return zeros[height];
    }
    let mut n = nodes.len();
    for zero in zeros.iter().take(height) {
        if n % 2 == 1 {
            // the rest of this level is zero subtrees
            if nodes.len() == n {
                nodes.push(*zero);
            } else {
                nodes[n] = *zero;
            }
            n += 1;
        }
        super::sha254::level(nodes, n / 2);
        n /= 2;
    }
    nodes[0]
}

/// The root of `units` Fr32 units of `payload` (zero beyond its end; `units` a power of
/// two).
fn subtree_root(payload: &[u8], units: usize) -> [u8; 32] {
    debug_assert!(units.is_power_of_two());
    thread_local! {
        /// Leaves and inner nodes of the subtree being hashed (2 MiB for a block), kept.
        static NODES: std::cell::RefCell<Vec<[u8; 32]>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    NODES.with_borrow_mut(|nodes| {
        nodes.clear();
        expand_into(&payload[..payload.len().min(units.saturating_mul(FR32_IN))], nodes);
        tree_root(nodes, (units * 4).trailing_zeros() as usize)
    })
}

/// Pushes the next subtree root (every pushed subtree has the same height) and merges
/// equal-height neighbours. `count`: subtrees pushed so far.
fn push(stack: &mut Vec<[u8; 32]>, count: &mut u64, mut node: [u8; 32]) {
    let mut n = *count;
    while n & 1 == 1 {
        let left = stack.pop().expect("a left sibling");
        node = sha254(&left, &node);
        n >>= 1;
    }
    stack.push(node);
    *count += 1;
}

/// Completes a tree whose first `count` subtrees of height `h` are in `stack` (as
/// [`push`] left it) with zero subtrees, up to `leaves` leaves in all.
fn fold(stack: &mut Vec<[u8; 32]>, count: u64, h: u32, leaves: u64) -> [u8; 32] {
    let zeros = zero_roots();
    let total = leaves >> h; // subtrees of height h in the whole tree
    if count == 0 {
        return zeros[(h + total.trailing_zeros()) as usize];
    }
    let mut n = count;
    let mut level = h;
    // the node under construction at `level`, with zero subtrees to its right
    let mut node: Option<[u8; 32]> = None;
    while (1u64 << (level - h)) < total {
        let bit = n & 1;
        node = Some(match (bit, node) {
            (1, None) => {
                let left = stack.pop().expect("a partial root");
                sha254(&left, &zeros[level as usize])
            }
            (1, Some(right)) => {
                let left = stack.pop().expect("a partial root");
                sha254(&left, &right)
            }
            (_, None) => {
                n >>= 1;
                level += 1;
                continue;
            }
            (_, Some(left)) => sha254(&left, &zeros[level as usize]),
        });
        n >>= 1;
        level += 1;
    }
    match node {
        Some(root) => root,
        None => stack.pop().expect("a full tree"),
    }
}

/// The smallest padded payload size (127·2^k, at least 127) that holds `len` bytes.
pub fn padded_payload(len: u64) -> u64 {
    let units = len.div_ceil(FR32_IN as u64).max(1).next_power_of_two();
    units * FR32_IN as u64
}

/// A piece commitment: its root, and the sizes it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub root: [u8; 32],
    /// Payload bytes committed to.
    pub payload_size: u64,
}

impl Piece {
    /// The padded piece size: 128/127 of the padded payload (a power of two).
    pub fn padded_size(&self) -> u64 {
        padded_payload(self.payload_size) / FR32_IN as u64 * FR32_OUT as u64
    }

    /// The tree's height: log2 of its 32-byte leaves.
    pub fn height(&self) -> u8 {
        (self.padded_size() / 32).trailing_zeros() as u8
    }

    /// Zero bytes added to the payload to fill the tree (FRC-0069's padding).
    pub fn padding(&self) -> u64 {
        padded_payload(self.payload_size) - self.payload_size
    }

    /// Piece CID v1: `fil-commitment-unsealed` over `sha2-256-trunc254-padded` (`baga…`).
    pub fn cid_v1(&self) -> Cid {
        let mh = Multihash::<64>::wrap(SHA2_256_TRUNC254_PADDED, &self.root).expect("32 bytes fit");
        Cid::new_v1(FIL_COMMITMENT_UNSEALED, mh)
    }

    /// Piece CID v2 (FRC-0069): raw over `fr32-sha256-trunc254-padbintree`, whose digest
    /// is uvarint(padding) ‖ height ‖ root (`bafkzcib…`).
    pub fn cid_v2(&self) -> Cid {
        let mut digest = Vec::with_capacity(42);
        crate::car::put_varint(self.padding(), &mut digest);
        digest.push(self.height());
        digest.extend_from_slice(&self.root);
        let mh = Multihash::<64>::wrap(FR32_SHA256_TRUNC254_PADBINTREE, &digest).expect("42 bytes fit");
        Cid::new_v1(RAW, mh)
    }

    /// Reads a v2 piece CID back: root, payload size (v1 CIDs carry no size: `None`).
    pub fn from_cid_v2(cid: &Cid) -> Option<Piece> {
        let mh = cid.hash();
        if cid.codec() != RAW || mh.code() != FR32_SHA256_TRUNC254_PADBINTREE {
            return None;
        }
        let d = mh.digest();
        let (padding, used) = read_varint(d)?;
        let (&height, root) = d.get(used..)?.split_first()?;
        let root: [u8; 32] = root.try_into().ok()?;
        if !(2..=MAX_HEIGHT as u8).contains(&height) {
            return None;
        }
        let padded_payload = (1u64 << height) * 32 / FR32_OUT as u64 * FR32_IN as u64;
        let payload_size = padded_payload.checked_sub(padding)?;
        let piece = Piece { root, payload_size };
        (piece.height() == height).then_some(piece)
    }
}

fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The CommP of a whole payload held in memory.
pub fn commp(payload: &[u8]) -> Piece {
    let mut c = Commp::new();
    c.update(payload);
    c.finish()
}

/// Streaming CommP (see the module doc).
pub struct Commp {
    /// The leaves of the block being filled, expanded as the bytes come.
    leaves: Vec<[u8; 32]>,
    /// The start of a unit not yet whole (`unit_len` bytes of it).
    unit: [u8; FR32_IN],
    unit_len: usize,
    /// Roots of full blocks, folded: one partial root per level above the block height.
    stack: Vec<[u8; 32]>,
    blocks: u64,
    /// The root of every block so far, in order (kept: a provider proves leaves with them).
    block_roots: Vec<[u8; 32]>,
    len: u64,
    /// Blocks hashed on worker threads: results come back in order.
    workers: Option<Workers>,
}

struct Workers {
    jobs: Vec<mpsc::SyncSender<(u64, Vec<[u8; 32]>)>>,
    /// Each block's root, and its leaves' buffer to fill again.
    results: mpsc::Receiver<(u64, [u8; 32], Vec<[u8; 32]>)>,
    spare: Vec<Vec<[u8; 32]>>,
    /// Roots that came back ahead of their turn.
    early: std::collections::BTreeMap<u64, [u8; 32]>,
    sent: u64,
}

impl Default for Commp {
    fn default() -> Self {
        Commp::new()
    }
}

impl Commp {
    pub fn new() -> Commp {
        Commp {
            leaves: Vec::new(),
            unit: [0; FR32_IN],
            unit_len: 0,
            stack: Vec::new(),
            blocks: 0,
            block_roots: Vec::new(),
            len: 0,
            workers: None,
        }
    }

    /// Hashes full blocks on `threads` worker threads (the caller's thread reads and
    /// folds). At most two blocks per thread are in flight.
    pub fn with_threads(threads: usize) -> Commp {
        let mut c = Commp::new();
        if threads < 2 {
            return c;
        }
        let (res_tx, results) = mpsc::channel();
        let jobs = (0..threads)
            .map(|i| {
                let (tx, rx) = mpsc::sync_channel::<(u64, Vec<[u8; 32]>)>(2);
                let res_tx = res_tx.clone();
                std::thread::Builder::new()
                    .name(format!("cidfs-commp-{i}"))
                    .spawn(move || {
                        for (n, mut leaves) in rx {
                            let root = tree_root(&mut leaves, BLOCK_HEIGHT as usize);
                            if res_tx.send((n, root, leaves)).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawning a CommP thread");
                tx
            })
            .collect();
        c.workers = Some(Workers { jobs, results, spare: Vec::new(), early: Default::default(), sent: 0 });
        c
    }

    /// Payload bytes taken so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.unit_len > 0 {
            // finish the unit begun by the last call
            let take = (FR32_IN - self.unit_len).min(data.len());
            self.unit[self.unit_len..self.unit_len + take].copy_from_slice(&data[..take]);
            self.unit_len += take;
            data = &data[take..];
            if self.unit_len < FR32_IN {
                return;
            }
            let unit = self.unit;
            self.unit_len = 0;
            self.expand(&unit);
        }
        // whole units straight from the caller's bytes, up to the end of the block
        loop {
            let room = BLOCK_UNITS - self.leaves.len() / 4;
            let whole = (data.len() / FR32_IN).min(room);
            if whole == 0 {
                break;
            }
            self.expand(&data[..whole * FR32_IN]);
            data = &data[whole * FR32_IN..];
        }
        self.unit[..data.len()].copy_from_slice(data);
        self.unit_len = data.len();
    }

    /// Expands whole units into the block, and hashes the block once it is full.
    fn expand(&mut self, units: &[u8]) {
        if self.leaves.capacity() == 0 {
            let spare = self.workers.as_mut().and_then(|w| w.spare.pop());
            self.leaves = spare.unwrap_or_else(|| Vec::with_capacity(BLOCK_UNITS * 4));
        }
        expand_into(units, &mut self.leaves);
        if self.leaves.len() == BLOCK_UNITS * 4 {
            self.block_done();
        }
    }

    fn block_done(&mut self) {
        match &mut self.workers {
            None => {
                let root = tree_root(&mut self.leaves, BLOCK_HEIGHT as usize);
                self.leaves.clear();
                self.fold_in(root);
            }
            Some(w) => {
                let n = w.sent;
                w.sent += 1;
                let worker = &w.jobs[(n % w.jobs.len() as u64) as usize];
                if worker.send((n, std::mem::take(&mut self.leaves))).is_err() {
                    unreachable!("CommP threads live as long as the hasher");
                }
                self.collect(false);
            }
        }
    }

    /// Folds in the roots the workers returned, in order (all of them if `all`).
    fn collect(&mut self, all: bool) {
        let Some(w) = &mut self.workers else { return };
        loop {
            while let Some(root) = w.early.remove(&self.blocks) {
                self.block_roots.push(root);
                push(&mut self.stack, &mut self.blocks, root);
            }
            if self.blocks == w.sent {
                return;
            }
            let next = if all { w.results.recv().ok() } else { w.results.try_recv().ok() };
            match next {
                Some((n, root, mut leaves)) => {
                    w.early.insert(n, root);
                    leaves.clear();
                    w.spare.push(leaves);
                }
                None => return,
            }
        }
    }

    fn fold_in(&mut self, root: [u8; 32]) {
        self.block_roots.push(root);
        push(&mut self.stack, &mut self.blocks, root);
    }

    /// The commitment of everything given.
    pub fn finish(self) -> Piece {
        self.finish_with_blocks().0
    }

    /// The commitment, and the root of each block of [`BLOCK_PAYLOAD`] bytes (the last
    /// one partial; none for a payload smaller than one block): what
    /// [`merkle_path_in_block`] proves a leaf with, reading one block instead of the piece.
    pub fn finish_with_blocks(mut self) -> (Piece, Vec<[u8; 32]>) {
        self.collect(true);
        let len = self.len;
        let padded_units = padded_payload(len) / FR32_IN as u64;
        // the unit begun last, zero-padded
        let tail = self.unit;
        expand_into(&tail[..self.unit_len], &mut self.leaves);
        let root = if self.blocks == 0 {
            // smaller than one block: one subtree of the padded size
            tree_root(&mut self.leaves, (padded_units * 4).trailing_zeros() as usize)
        } else {
            if !self.leaves.is_empty() {
                let root = tree_root(&mut self.leaves, BLOCK_HEIGHT as usize);
                self.fold_in(root);
            }
            let leaves = padded_units * 4;
            let blocks = self.blocks;
            fold(&mut self.stack, blocks, BLOCK_HEIGHT, leaves)
        };
        (Piece { root, payload_size: len }, self.block_roots)
    }
}

/// The proof of leaf `index` (its 32 bytes at offset `32·index` of the expanded payload):
/// the sibling of each node on the way to the root, bottom up.
pub fn merkle_path(payload: &[u8], index: u64) -> Option<Vec<[u8; 32]>> {
    let padded_units = padded_payload(payload.len() as u64) / FR32_IN as u64;
    let leaves = padded_units * 4;
    if index >= leaves {
        return None;
    }
    let mut path = Vec::new();
    let mut level = 0u32;
    while (1u64 << level) < leaves {
        let sibling = (index >> level) ^ 1;
        path.push(subtree_at(payload, level, sibling));
        level += 1;
    }
    Some(path)
}

/// Payload bytes of one block of a piece's tree (see [`Commp::finish_with_blocks`]).
pub const BLOCK_PAYLOAD: usize = BLOCK_IN;
/// Leaves under one block.
pub const BLOCK_LEAVES: u64 = 1 << BLOCK_HEIGHT;

/// Where the payload that proves leaf `index` lies: (offset, length) of its block, or of the
/// whole payload for a piece smaller than one block (one kept without block roots).
pub fn block_of_leaf(index: u64, payload_size: u64, has_block_roots: bool) -> (u64, u64) {
    if !has_block_roots {
        return (0, payload_size);
    }
    let start = (index / BLOCK_LEAVES) * BLOCK_PAYLOAD as u64;
    (start, (BLOCK_PAYLOAD as u64).min(payload_size.saturating_sub(start)))
}

/// The proof of leaf `index` of a piece of `payload_size` bytes, from the payload of the
/// block that holds it (`block_payload`, block `index / BLOCK_LEAVES`, short at the end)
/// and the roots of all the piece's blocks. For a piece smaller than one block
/// (`block_roots` empty) `block_payload` is the whole payload. `None` if `index` is past
/// the tree or the roots do not fit the size.
pub fn merkle_path_in_block(
    block_payload: &[u8],
    block_roots: &[[u8; 32]],
    payload_size: u64,
    index: u64,
) -> Option<Vec<[u8; 32]>> {
    let leaves = padded_payload(payload_size) / FR32_IN as u64 * 4;
    if block_roots.is_empty() {
        return merkle_path(block_payload, index).filter(|_| index < leaves);
    }
    if index >= leaves || (block_roots.len() as u64) > leaves / BLOCK_LEAVES {
        return None;
    }
    let block = index / BLOCK_LEAVES;
    let local = index % BLOCK_LEAVES;
    let mut path: Vec<[u8; 32]> =
        (0..BLOCK_HEIGHT).map(|level| subtree_at(block_payload, level, (local >> level) ^ 1)).collect();
    // above the blocks: their roots, zero subtrees past the last, folded a level at a time
    let zeros = zero_roots();
    let mut level: Vec<[u8; 32]> = block_roots.to_vec();
    let mut width = leaves / BLOCK_LEAVES;
    let mut at = block;
    let mut h = BLOCK_HEIGHT as usize;
    while width > 1 {
        let sibling = at ^ 1;
        path.push(level.get(sibling as usize).copied().unwrap_or(zeros[h]));
        level = level.chunks(2).map(|p| sha254(&p[0], p.get(1).unwrap_or(&zeros[h]))).collect();
        width /= 2;
        at /= 2;
        h += 1;
    }
    Some(path)
}

/// The root of the subtree of height `h` numbered `n` (from the left) in the tree of
/// `payload`.
fn subtree_at(payload: &[u8], h: u32, n: u64) -> [u8; 32] {
    if h >= 2 {
        // whole Fr32 units: 2^(h-2) of them, from unit n·2^(h-2)
        let units = 1usize << (h - 2);
        let start = (n as usize).saturating_mul(units).saturating_mul(FR32_IN);
        return subtree_root(payload.get(start..).unwrap_or(&[]), units);
    }
    // inside one unit: expand it and hash the leaves asked for
    let per_unit = 4 >> h; // subtrees of height h in one unit
    let out = expand_unit(payload, (n / per_unit) as usize);
    let leaf = |i: usize| -> [u8; 32] { out[i * 32..i * 32 + 32].try_into().expect("32 bytes") };
    let i = (n % per_unit) as usize;
    match h {
        0 => leaf(i),
        _ => sha254(&leaf(2 * i), &leaf(2 * i + 1)),
    }
}

/// The 32 bytes of leaf `index` of the expanded payload.
pub fn leaf(payload: &[u8], index: u64) -> [u8; 32] {
    subtree_at(payload, 0, index)
}

/// Whether `path` proves that `leaf` is leaf `index` of the tree with `root`.
pub fn verify_path(root: &[u8; 32], index: u64, leaf: &[u8; 32], path: &[[u8; 32]]) -> bool {
    let mut node = *leaf;
    for (level, sibling) in path.iter().enumerate() {
        node = if (index >> level) & 1 == 0 { sha254(&node, sibling) } else { sha254(sibling, &node) };
    }
    (index >> path.len()) == 0 && node == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_is_proved_from_its_block_and_the_block_roots() {
        for len in [2 * BLOCK_IN + 1000, 5000] {
            let payload = noise(len, len as u32);
            let mut c = Commp::with_threads(2);
            c.update(&payload);
            let (piece, roots) = c.finish_with_blocks();
            assert_eq!(piece, commp(&payload));
            let leaves = piece.padded_size() / 32;
            for index in [1, 70_000, leaves - 1] {
                let index = index.min(leaves - 1);
                let block = (index / BLOCK_LEAVES) as usize;
                let slice = if roots.is_empty() {
                    &payload[..]
                } else {
                    &payload[(block * BLOCK_IN).min(len)..((block + 1) * BLOCK_IN).min(len)]
                };
                let path = merkle_path_in_block(slice, &roots, len as u64, index).unwrap();
                assert_eq!(Some(path.clone()), merkle_path(&payload, index), "len {len} leaf {index}");
                assert!(verify_path(&piece.root, index, &leaf(&payload, index), &path));
            }
            assert_eq!(merkle_path_in_block(&[], &roots, len as u64, leaves), None);
        }
    }

    /// The tree computed the plain way: expand everything, hash level by level.
    fn naive(payload: &[u8]) -> [u8; 32] {
        let units = (padded_payload(payload.len() as u64) / FR32_IN as u64) as usize;
        let mut leaves = Vec::new();
        for u in 0..units {
            let out = expand_unit(payload, u);
            for i in 0..4 {
                leaves.push(<[u8; 32]>::try_from(&out[i * 32..i * 32 + 32]).unwrap());
            }
        }
        while leaves.len() > 1 {
            leaves = leaves.chunks(2).map(|p| sha254(&p[0], &p[1])).collect();
        }
        leaves[0]
    }

    fn noise(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8).collect()
    }

    #[test]
    fn sha254_is_sha256_with_two_bits_cleared() {
        use sha2::Digest;
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let mut want: [u8; 32] = sha2::Sha256::digest([a, b].concat()).into();
        want[31] &= 0x3f;
        assert_eq!(sha254(&a, &b), want);
    }

    #[test]
    fn fr32_inserts_two_zero_bits_after_every_254() {
        let input = [0xffu8; FR32_IN];
        let mut out = [0u8; FR32_OUT];
        fr32_expand(&input, &mut out);
        for q in 0..4 {
            assert_eq!(out[q * 32 + 31] & 0xc0, 0, "quad {q} ends in two zero bits");
        }
        let ones: u32 = out.iter().map(|b| b.count_ones()).sum();
        assert_eq!(ones, 127 * 8, "every input bit kept");
    }

    #[test]
    fn fr32_equals_inserting_the_bits_one_at_a_time() {
        for seed in 1..20 {
            let input: [u8; FR32_IN] = noise(FR32_IN, seed).try_into().unwrap();
            let bit = |i: usize| (input[i / 8] >> (i % 8)) & 1;
            let mut want = [0u8; FR32_OUT];
            for q in 0..4 {
                for b in 0..254 {
                    let out_bit = q * 256 + b;
                    want[out_bit / 8] |= bit(q * 254 + b) << (out_bit % 8);
                }
            }
            let mut out = [0u8; FR32_OUT];
            fr32_expand(&input, &mut out);
            assert_eq!(out, want, "seed {seed}");
        }
    }

    #[test]
    fn streaming_equals_the_plain_tree_at_every_boundary() {
        for len in [0, 1, 126, 127, 128, 254, 255, 1016, 1017, 2032, 65024, 65025, BLOCK_IN - 1, BLOCK_IN, BLOCK_IN + 1]
        {
            let data = noise(len, len as u32);
            let want = naive(&data);
            assert_eq!(commp(&data).root, want, "len {len}");
            // fed in odd pieces, and on threads
            for threads in [1, 2] {
                let mut c = Commp::with_threads(threads);
                for part in data.chunks(1000 + len % 7) {
                    c.update(part);
                }
                assert_eq!(c.finish().root, want, "len {len}, {threads} threads, in parts");
            }
        }
    }

    #[test]
    fn several_blocks_fold_with_zero_subtrees() {
        let data = noise(3 * BLOCK_IN + 5, 9);
        let mut c = Commp::with_threads(2);
        c.update(&data);
        let piece = c.finish();
        assert_eq!(piece.root, naive(&data));
        assert_eq!(piece.padded_size(), 8 << 20, "3 blocks and a bit pad to 4 blocks of 2 MiB");
    }

    #[test]
    fn every_leaf_has_a_path_that_verifies_and_a_wrong_one_does_not() {
        let data = noise(1017, 3); // 2032 padded: 64 leaves
        let piece = commp(&data);
        for i in 0..64 {
            let path = merkle_path(&data, i).unwrap();
            assert_eq!(path.len(), 6);
            assert!(verify_path(&piece.root, i, &leaf(&data, i), &path), "leaf {i}");
            if leaf(&data, i) != leaf(&data, i ^ 1) {
                assert!(!verify_path(&piece.root, i ^ 1, &leaf(&data, i), &path), "leaf {i} at the wrong index");
            }
            let mut bad = leaf(&data, i);
            bad[0] ^= 1;
            assert!(!verify_path(&piece.root, i, &bad, &path), "a flipped leaf {i}");
        }
        assert!(merkle_path(&data, 64).is_none());
    }

    #[test]
    fn v2_cids_read_back() {
        for len in [0, 127, 508, 100_000] {
            let p = commp(&noise(len, 1));
            assert_eq!(Piece::from_cid_v2(&p.cid_v2()), Some(p), "len {len}");
        }
        assert_eq!(Piece::from_cid_v2(&commp(b"x").cid_v1()), None);
    }
}
