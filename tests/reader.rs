//! The UnixFS readers fetch only what they need: a range read walks the blocks covering the
//! range, a HAMT lookup walks one path of shards, a listing never fetches its children.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use cid::Cid;
use cidfs::block::Block;
use cidfs::fetch::{Blocks, FetchError};
use cidfs::importer::file::import_bytes;
use cidfs::importer::{DirBuilder, ImportOptions};
use cidfs::unixfs::{Metadata, Node, dir, file, load};

/// In-memory blocks that count every fetch.
#[derive(Default)]
struct Counting {
    blocks: HashMap<Cid, Bytes>,
    fetched: Mutex<Vec<Cid>>,
}

impl Counting {
    fn from(bs: Vec<Block>) -> Counting {
        Counting { blocks: bs.into_iter().map(|b| (*b.cid(), b.into_data())).collect(), ..Default::default() }
    }
    fn take(&self) -> Vec<Cid> {
        std::mem::take(&mut self.fetched.lock().unwrap())
    }
}

impl Blocks for Counting {
    fn get(&self, cid: &Cid) -> Result<Bytes, FetchError> {
        self.fetched.lock().unwrap().push(*cid);
        self.blocks.get(cid).cloned().ok_or(FetchError::NotFound(*cid))
    }
}

fn read(blocks: &dyn Blocks, root: &Cid, offset: u64, len: u64) -> Vec<u8> {
    let Node::File(f) = load(blocks, root).unwrap() else { panic!("not a file") };
    let mut out = Vec::new();
    file::read_range(blocks, root, &f, offset, len, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn a_range_read_fetches_one_block_per_level() {
    // 64 leaves of 1000 bytes under nodes of 4 links: root, 2 inner levels, leaves.
    let opts = ImportOptions { chunk_size: 1000, max_links: 4, ..ImportOptions::kubo_v1() };
    let data = common::noise(64_000, 11);
    let mut sink = Vec::new();
    let root = import_bytes(&opts, Metadata::default(), &data, &mut sink).unwrap();
    let blocks = Counting::from(sink);
    for offset in [0u64, 999, 1000, 31_337, 63_999] {
        blocks.take();
        assert_eq!(read(&blocks, &root.cid, offset, 1), &data[offset as usize..offset as usize + 1]);
        assert_eq!(blocks.take().len(), 4, "root, two inner nodes, one leaf; offset {offset}");
    }
    // a read spanning two leaves fetches both, and nothing else below their parents
    blocks.take();
    assert_eq!(read(&blocks, &root.cid, 1990, 20), &data[1990..2010]);
    assert_eq!(blocks.take().len(), 5, "leaves 1 and 2 share their parents");
}

#[test]
fn random_reads_at_odd_offsets_match_the_source() {
    let opts = ImportOptions { chunk_size: 4093, max_links: 7, ..Default::default() };
    let data = common::noise(1_000_003, 12);
    let mut sink = Vec::new();
    let root = import_bytes(&opts, Metadata::default(), &data, &mut sink).unwrap();
    let blocks = Counting::from(sink);
    let mut x: u64 = 12345;
    for _ in 0..300 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let off = (x >> 20) % (data.len() as u64 + 10);
        let len = (x >> 5) % 20_000;
        let end = (off + len).min(data.len() as u64);
        let want = if off >= data.len() as u64 { &[][..] } else { &data[off as usize..end as usize] };
        assert_eq!(read(&blocks, &root.cid, off, len), want, "offset {off} len {len}");
    }
    assert_eq!(read(&blocks, &root.cid, 0, u64::MAX), data);
}

#[test]
fn hamt_lookup_walks_one_path_and_listing_stays_inside_the_directory() {
    let opts = ImportOptions::default();
    let mut sink = Vec::new();
    let mut d = DirBuilder::new(Metadata::default());
    let mut files = HashMap::new();
    for i in 0..6000 {
        let link = import_bytes(&opts, Metadata::default(), format!("entry {i}\n").as_bytes(), &mut sink).unwrap();
        files.insert(link.cid, ());
        d.insert(format!("entry-{i:04}.txt"), link);
    }
    let root = d.finish(&opts, &mut sink).unwrap();
    let blocks = Counting::from(sink);
    let node = load(&blocks, &root.cid).unwrap();
    assert!(matches!(node, Node::HamtShard(_)));
    blocks.take();
    let hit = dir::lookup(&blocks, &root.cid, &node, "entry-4321.txt").unwrap().unwrap();
    let walked = blocks.take();
    assert!(walked.len() <= 3, "one path of shards, not the whole directory: {}", walked.len());
    assert_eq!(String::from_utf8(read(&blocks, &hit.cid, 0, 100)).unwrap(), "entry 4321\n");
    assert!(dir::lookup(&blocks, &root.cid, &node, "entry-6000.txt").unwrap().is_none());

    blocks.take();
    let mut names = Vec::new();
    dir::list(&blocks, &root.cid, &node, &mut |l| names.push(l.name)).unwrap();
    assert_eq!(names.len(), 6000);
    let fetched = blocks.take();
    assert!(fetched.iter().all(|c| !files.contains_key(c)), "listing fetched an entry's own block");
    assert!(fetched.len() < 600, "only sub-shards: {}", fetched.len());
}

#[test]
fn a_range_read_names_the_blocks_that_come_next_without_fetching_them() {
    // 64 leaves of 1000 bytes under nodes of 4 links: root, 2 inner levels, leaves
    let opts = ImportOptions { chunk_size: 1000, max_links: 4, ..ImportOptions::kubo_v1() };
    let data = common::noise(64_000, 12);
    let mut sink = Vec::new();
    let root = import_bytes(&opts, Metadata::default(), &data, &mut sink).unwrap();
    let leaves: Vec<Cid> = sink.iter().filter(|b| b.data().len() == 1000).map(|b| *b.cid()).collect();
    let blocks = Counting::from(sink);
    let Node::File(f) = load(&blocks, &root.cid).unwrap() else { panic!("not a file") };
    // leaf 5 (the second of its parent's four): next are leaves 6 and 7, then the parent's
    // next sibling (the inner node over leaves 8..12)
    blocks.take();
    let mut out = Vec::new();
    let next = file::read_range_ahead(&blocks, &root.cid, &f, 5000, 1000, 3, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    assert_eq!(out, &data[5000..6000]);
    assert_eq!(&next[..2], &leaves[6..8]);
    assert!(!leaves.contains(&next[2]), "then an inner node: {next:?}");
    assert_eq!(blocks.take().len(), 3, "only the path to leaf 5 was fetched");
    // the last leaf has nothing after it
    let next = file::read_range_ahead(&blocks, &root.cid, &f, 63_500, 500, 8, &mut |_| Ok(())).unwrap();
    assert!(next.is_empty(), "{next:?}");
}
