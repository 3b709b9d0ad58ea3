//! The block store: durability, crash recovery, rollback, concurrent readers, segment
//! rollover, gc compaction, and a `kill -9` in the middle of an add.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use cid::Version;
use cidfs::block::{Block, RAW};
use cidfs::store::{Store, StoreOptions};

fn blocks(n: usize, size: usize, seed: u64) -> Vec<Block> {
    (0..n).map(|i| Block::encode(Version::V1, RAW, common::noise(size, seed * 1000 + i as u64)).unwrap()).collect()
}

fn put_all(store: &Store, bs: &[Block]) {
    let mut b = store.batch();
    for x in bs {
        b.put(x).unwrap();
    }
    b.commit().unwrap();
}

fn segment_files(home: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<_> = fs::read_dir(home.join("segments"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn committed_blocks_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let bs = blocks(20, 5000, 1);
    {
        let store = Store::open(dir.path()).unwrap();
        put_all(&store, &bs);
    }
    let store = Store::open(dir.path()).unwrap();
    for b in &bs {
        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
    }
    assert!(store.verify(&mut |_| {}).unwrap().ok());
}

#[test]
fn bytes_appended_but_never_committed_are_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let bs = blocks(3, 1000, 2);
    {
        let store = Store::open(dir.path()).unwrap();
        put_all(&store, &bs);
    }
    // A crash after appending data but before the index commit leaves a tail like this.
    let (name, len) = segment_files(dir.path())[0].clone();
    let seg = dir.path().join("segments").join(&name);
    fs::OpenOptions::new().append(true).open(&seg).unwrap().write_all(&[0xAB; 777]).unwrap();
    // And a crash right after creating a new segment leaves a file the index never knew.
    fs::write(dir.path().join("segments/00000099.car"), b"partial").unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(segment_files(dir.path()), vec![(name, len)]);
    let more = blocks(3, 1000, 3);
    put_all(&store, &more);
    for b in bs.iter().chain(&more) {
        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
    }
    assert!(store.verify(&mut |_| {}).unwrap().ok());
}

#[test]
fn a_dropped_batch_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), StoreOptions { segment_max_bytes: 20_000, ..Default::default() }).unwrap();
    let kept = blocks(2, 3000, 4);
    put_all(&store, &kept);
    let before = segment_files(dir.path());
    {
        let mut b = store.batch();
        for x in blocks(30, 3000, 5) {
            b.put(&x).unwrap(); // fills the current segment and starts new ones
        }
        b.pin(*kept[0].cid(), "never");
    }
    assert_eq!(segment_files(dir.path()), before);
    assert!(store.pins().unwrap().is_empty());
    assert_eq!(store.block_count().unwrap(), 2);
    put_all(&store, &blocks(2, 3000, 6));
    assert!(store.verify(&mut |_| {}).unwrap().ok());
}

#[test]
fn segments_roll_over_and_gc_compacts_them() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions { segment_max_bytes: 50_000, ..Default::default() };
    let store = Store::open_with(dir.path(), opts.clone()).unwrap();
    let bs = blocks(40, 4000, 7);
    put_all(&store, &bs);
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    assert!(segs.iter().all(|(_, len)| *len <= 50_000), "{segs:?}");
    // Every segment is a CAR that any reader can walk: header, then our blocks.
    let mut seen = 0;
    for (name, _) in &segs {
        let mut r =
            cidfs::car::CarReader::new(fs::File::open(dir.path().join("segments").join(name)).unwrap()).unwrap();
        while r.next_block().unwrap().is_some() {
            seen += 1;
        }
    }
    assert_eq!(seen, 40);
    // pin every other block; gc drops the rest and rewrites partly-dead segments
    for b in bs.iter().step_by(2) {
        store.pin(b.cid(), "keep").unwrap();
    }
    let before: u64 = segs.iter().map(|s| s.1).sum();
    let report = store.gc().unwrap();
    assert_eq!(report.blocks_removed, 20);
    let after: u64 = segment_files(dir.path()).iter().map(|s| s.1).sum();
    assert_eq!(report.disk_bytes_freed, before - after);
    assert!(after < before / 2 + 4000, "{before} -> {after}");
    drop(store);
    let store = Store::open_with(dir.path(), opts).unwrap();
    for (i, b) in bs.iter().enumerate() {
        assert_eq!(store.get(b.cid()).unwrap().is_some(), i % 2 == 0);
    }
    assert!(store.verify(&mut |_| {}).unwrap().ok());
}

#[test]
fn readers_see_committed_data_while_a_writer_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = blocks(10, 2000, 8);
    put_all(&store, &first);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for b in &first {
                            assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
                            reads += 1;
                        }
                    }
                    reads
                })
            })
            .collect();
        for round in 0..20 {
            put_all(&store, &blocks(20, 3000, 100 + round));
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    });
    assert_eq!(store.block_count().unwrap(), 10 + 20 * 20);
}

#[test]
fn kill_9_during_add_loses_nothing_committed_and_keeps_nothing_partial() {
    let cli = common::Cli::new();
    let small = cli.write("small.bin", &common::noise(300_000, 9));
    let small_cid = cli.add_q(&small, &[]);
    let big = cli.write("big.bin", &common::noise(256 << 20, 10));
    for delay_ms in [30, 120, 300] {
        let mut child = cli.cmd().args(["add", "-Q"]).arg(&big).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // verify fails on any missing or corrupt block; the add either committed whole
        // (it can finish before the kill on a fast run) or left nothing
        cli.ok(&["verify"]);
        assert_eq!(cli.cmd().args(["cat", &small_cid]).output().unwrap().stdout, fs::read(&small).unwrap());
    }
    // The store is still writable and the big file adds cleanly afterwards.
    let big_cid = cli.add_q(&big, &[]);
    cli.ok(&["verify"]);
    assert_eq!(
        cli.cmd().args(["cat", "-o", "100000000", "-l", "5", &big_cid]).output().unwrap().stdout,
        &common::noise(256 << 20, 10)[100_000_000..100_000_005]
    );
}
