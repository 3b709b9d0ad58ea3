//! Property tests ("fuzzing") of every decoder that reads bytes from outside: dag-pb and
//! UnixFS nodes, the UnixFS `Data` protobuf, dag-cbor, CARv1 and CARv2 files, and bitswap
//! messages. Each gets arbitrary bytes and mutations of valid encodings (bytes flipped,
//! cut, inserted, varints made huge), and must return an error or a value — never panic —
//! while allocating in proportion to its input, never to what the input claims.
//!
//! CI runs a fixed number of cases per decoder (`PROPTEST_CASES`, default 1000). To run
//! millions locally:
//!
//! ```sh
//! PROPTEST_CASES=1000000 cargo test --release --test fuzz
//! ```

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use cid::{Cid, Version};
use cidfs::block::{Block, DAG_CBOR, DAG_PB, RAW};
use cidfs::unixfs::pb::{Data, DataType};
use ipld_dagpb::{PbLink, PbNode};
use proptest::prelude::*;

/// Counts what each thread allocates, so one test's decoding is measured alone while
/// others run beside it.
struct PerThread;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call goes straight to `System`; the counters only observe.
unsafe impl GlobalAlloc for PerThread {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|l| {
            let now = l.get() + layout.size();
            l.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(layout.size())));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LIVE.try_with(|l| {
            let now = l.get().saturating_sub(layout.size()) + new_size;
            l.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: PerThread = PerThread;

/// Most a decoder may allocate for `input_len` bytes: a multiple of the input (decoded
/// values are bigger than their encoding), plus the fixed buffers a reader keeps (a CAR
/// header of at most 1 MiB, a block of at most the trusted 1 MiB before its bytes arrive).
fn allowance(input_len: usize) -> usize {
    256 * input_len + (3 << 20)
}

/// Runs `decode` on `input` and checks what it allocated at its peak.
fn bounded<T>(what: &str, input: &[u8], decode: impl FnOnce(&[u8]) -> T) -> T {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = decode(input);
    let peak = PEAK.with(Cell::get) - base;
    assert!(peak <= allowance(input.len()), "{what}: {peak} bytes allocated for {} bytes of input", input.len());
    out
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

fn raw(data: &[u8]) -> Block {
    Block::encode(Version::V1, RAW, data.to_vec()).unwrap()
}

/// Valid encodings the mutations start from.
fn seeds() -> Vec<(Cid, Vec<u8>)> {
    let leaf = raw(b"leaf bytes");
    let mut file = Data::new(DataType::File);
    file.filesize = Some(20);
    file.blocksizes = vec![10, 10];
    let links = vec![
        PbLink { cid: *leaf.cid(), name: Some(String::new()), size: Some(10) },
        PbLink { cid: *leaf.cid(), name: Some(String::new()), size: Some(10) },
    ];
    let file = PbNode { links, data: Some(file.to_bytes().into()) }.into_bytes();
    let dir = PbNode {
        links: vec![PbLink { cid: *leaf.cid(), name: Some("a.txt".into()), size: Some(10) }],
        data: Some(Data::new(DataType::Directory).to_bytes().into()),
    }
    .into_bytes();
    let mut shard = Data::new(DataType::HamtShard);
    shard.data = Some(vec![0x80, 0, 0, 0].into());
    shard.fanout = Some(32);
    shard.hash_type = Some(0x22);
    let shard = PbNode {
        links: vec![PbLink { cid: *leaf.cid(), name: Some("00a.txt".into()), size: Some(10) }],
        data: Some(shard.to_bytes().into()),
    }
    .into_bytes();
    let cbor =
        serde_ipld_dagcbor::to_vec(&ipld_core::ipld!({"a": [1, 2.5, "x", null, true], "l": *leaf.cid()})).unwrap();
    [(DAG_PB, file), (DAG_PB, dir), (DAG_PB, shard), (DAG_CBOR, cbor)]
        .into_iter()
        .map(|(codec, bytes)| (*Block::encode(Version::V1, codec, bytes.clone()).unwrap().cid(), bytes))
        .collect()
}

/// A mutation of `seed`: some bytes flipped, a cut, an insertion, or a varint made huge.
fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len().max(1);
    (0..4u8, prop::collection::vec((0..len, any::<u8>()), 1..8)).prop_map(move |(how, edits)| {
        let mut b = seed.clone();
        match how {
            0 if !b.is_empty() => edits.iter().for_each(|(i, v)| {
                let n = b.len();
                b[*i % n] ^= v | 1
            }),
            0 | 1 => b.truncate(edits[0].0),
            2 => edits.iter().for_each(|(i, v)| b.insert(*i % (b.len() + 1), *v)),
            _ => {
                let at = edits[0].0 % (b.len() + 1);
                b.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
            }
        }
        b
    })
}

/// Arbitrary bytes, or a mutation of one of the seeds.
fn input() -> impl Strategy<Value = (usize, Vec<u8>)> {
    let seeds = seeds();
    let n = seeds.len();
    prop_oneof![
        (0..n, prop::collection::vec(any::<u8>(), 0..2048)),
        (0..n).prop_flat_map(move |i| mutated(seeds[i].1.clone()).prop_map(move |b| (i, b))),
    ]
}

/// A CARv1 holding the seeds (their own CIDs), and the same as a CARv2.
fn car_seeds() -> (Vec<u8>, Vec<u8>) {
    let blocks: Vec<Block> = seeds().into_iter().map(|(c, b)| Block::verified(c, b).unwrap()).collect();
    let v1 = common::car_bytes(&[*blocks[0].cid()], &blocks);
    let mut v2 = vec![0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02];
    let mut header = [0u8; 40];
    let data_offset = (v2.len() + 40) as u64;
    header[16..24].copy_from_slice(&data_offset.to_le_bytes());
    header[24..32].copy_from_slice(&(v1.len() as u64).to_le_bytes());
    v2.extend_from_slice(&header);
    v2.extend_from_slice(&v1);
    (v1, v2)
}

/// Reads a whole CAR; the number of blocks, or the error's text.
fn read_car(bytes: &[u8]) -> Result<usize, String> {
    let mut r = cidfs::car::CarReader::new(bytes).map_err(|e| e.to_string())?;
    let mut n = 0;
    while r.next_block().map_err(|e| e.to_string())?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// A bitswap message with wants, cancels, blocks (both versions) and presences.
fn bitswap_seed() -> Vec<u8> {
    use cidfs::ipfs::bitswap;
    let b = raw(b"block");
    let mut msg = bitswap::reply_message("/ipfs/bitswap/1.2.0", vec![(*b.cid(), b.data().clone())], &[*b.cid()], &[]);
    msg.wantlist = bitswap::want_message(&[*b.cid()], bitswap::WANT_BLOCK, false).wantlist;
    let framed = bitswap::frame(&msg);
    // the body, after its length prefix
    let prefix = cidfs::car::varint_len(framed.len() as u64 - 1).min(framed.len());
    framed[prefix..].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn nodes_decode_or_refuse((seed, bytes) in input()) {
        let cid = seeds()[seed].0;
        let data = Bytes::from(bytes.clone());
        let _ = bounded("unixfs node", &bytes, |_| cidfs::unixfs::decode(&cid, &data));
        let _ = bounded("links", &bytes, |_| cidfs::block::links(&cid, &data));
        let _ = bounded("kind", &bytes, |_| cidfs::block::kind(&cid, &data));
        // the same bytes as the other codecs
        for codec in [DAG_PB, DAG_CBOR, RAW] {
            let other = Cid::new_v1(codec, *cid.hash());
            let _ = bounded("node as another codec", &bytes, |_| cidfs::unixfs::decode(&other, &data));
        }
    }

    #[test]
    fn unixfs_data_decodes_or_refuses(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = bounded("UnixFS Data", &bytes, |b| Data::from_bytes(Bytes::copy_from_slice(b)));
    }

    #[test]
    fn dag_cbor_decodes_or_refuses((_, bytes) in input()) {
        let _ = bounded("dag-cbor", &bytes, |b| serde_ipld_dagcbor::from_slice::<ipld_core::ipld::Ipld>(b));
    }

    #[test]
    fn cars_read_or_refuse(v2 in any::<bool>(), how in 0..4u8, edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let (car1, car2) = car_seeds();
        let mut b = if v2 { car2 } else { car1 };
        match how {
            0 => edits.iter().for_each(|(i, v)| { let n = b.len(); b[*i % n] ^= v | 1 }),
            1 => b.truncate(edits[0].0 % b.len()),
            2 => edits.iter().for_each(|(i, v)| { let n = b.len(); b.insert(*i % (n + 1), *v) }),
            _ => { let at = edits[0].0 % (b.len() + 1); b.splice(at..at, [0xff; 9].into_iter().chain([0x7f])); }
        }
        let _ = bounded("CAR", &b, read_car);
    }

    #[test]
    fn arbitrary_bytes_are_no_car(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = bounded("CAR", &bytes, read_car);
    }

    #[test]
    fn bitswap_messages_decode_or_refuse(how in 0..4u8, edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        use cidfs::ipfs::bitswap;
        let mut b = bitswap_seed();
        match how {
            0 => edits.iter().for_each(|(i, v)| { let n = b.len(); b[*i % n] ^= v | 1 }),
            1 => b.truncate(edits[0].0 % b.len()),
            2 => edits.iter().for_each(|(i, v)| { let n = b.len(); b.insert(*i % (n + 1), *v) }),
            _ => b = edits.iter().map(|(_, v)| *v).collect(),
        }
        bounded("bitswap message", &b, |b| {
            if let Ok(msg) = bitswap::decode(b) {
                let _ = bitswap::blocks_of(&msg);
                let _ = bitswap::wants_of(&msg);
                let _ = bitswap::presences_of(&msg);
            }
        });
    }
}

#[test]
fn the_seeds_are_valid_so_mutations_start_from_real_encodings() {
    for (cid, bytes) in seeds() {
        cidfs::unixfs::decode(&cid, &Bytes::from(bytes)).unwrap();
    }
    let (v1, v2) = car_seeds();
    assert_eq!(read_car(&v1), Ok(4));
    assert_eq!(read_car(&v2), Ok(4));
    let msg = cidfs::ipfs::bitswap::decode(&bitswap_seed()).unwrap();
    assert_eq!(cidfs::ipfs::bitswap::blocks_of(&msg).unwrap().len(), 1);
    // the allowance catches what it is there for: allocating what a length field claims
    let claimed = std::panic::catch_unwind(|| bounded("claim", &[0u8; 8], |_| vec![0u8; 64 << 20]));
    assert!(claimed.is_err());
}
