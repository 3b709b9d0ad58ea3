//! The block store: durability, crash recovery, rollback, concurrent readers, segment
//! rollover, gc compaction, and a `kill -9` in the middle of an add.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use cid::Version;
use cidfs::block::{Block, RAW};
use cidfs::store::{Batch, Store, StoreOptions};

fn blocks(n: usize, size: usize, seed: u64) -> Vec<Block> {
    (0..n).map(|i| Block::encode(Version::V1, RAW, common::noise(size, seed * 1000 + i as u64)).unwrap()).collect()
}

fn put_all(store: &Store, bs: &[Block]) {
    commit_all(store.batch(), bs);
}

fn commit_all(mut b: Batch<'_>, bs: &[Block]) {
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

// ---- the fetch cache: its own segments, evicted least recently read first ----

fn cache_all(store: &Store, bs: &[Block]) {
    commit_all(store.cache_batch(), bs);
}

/// Cache segments of at most 10,000 bytes (two 4,000-byte blocks each); no memory cache,
/// so every read goes to disk and stamps its segment.
fn small_cache_store(home: &Path) -> Store {
    let opts = StoreOptions { cache_segment_bytes: 10_000, cache_bytes: 0, ..Default::default() };
    Store::open_with(home, opts).unwrap()
}

#[test]
fn the_cache_evicts_the_least_recently_read_segment_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_cache_store(dir.path());
    let bs = blocks(6, 4000, 40);
    for pair in bs.chunks(2) {
        cache_all(&store, pair); // segments A = {0, 1}, B = {2, 3}, C = {4, 5}
    }
    let usage = store.cache_usage();
    assert_eq!(usage.segments, 3);
    assert_eq!(usage.bytes, segment_files(dir.path()).iter().map(|(_, l)| l).sum::<u64>());
    store.get(bs[0].cid()).unwrap().unwrap(); // A is now the most recently read
    let report = store.evict_cache(usage.bytes * 2 / 3).unwrap();
    assert_eq!((report.segments, report.blocks), (1, 2));
    let held: Vec<bool> = bs.iter().map(|b| store.has(b.cid()).unwrap()).collect();
    assert_eq!(held, [true, true, false, false, true, true], "B (oldest unread) goes first");
    assert_eq!(segment_files(dir.path()).len(), 2, "its file is deleted");
    assert_eq!(store.cache_usage().evicted_segments, 1);
    assert!(store.verify(&mut |_| {}).unwrap().ok());
    // after a reopen the cache is still the cache, ordered by age
    drop(store);
    let store = small_cache_store(dir.path());
    assert_eq!(store.cache_usage().segments, 2);
    store.evict_cache(0).unwrap();
    assert!(bs.iter().all(|b| !store.has(b.cid()).unwrap()));
    assert!(segment_files(dir.path()).is_empty());
}

#[test]
fn the_cache_cap_holds_as_fetched_blocks_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_cache_store(dir.path());
    store.set_cache_cap(30_000);
    for (i, pair) in blocks(40, 4000, 41).chunks(2).enumerate() {
        cache_all(&store, pair);
        store.evict_cache_if_over().unwrap();
        let usage = store.cache_usage();
        assert!(usage.bytes <= 30_000, "after batch {i}: {usage:?}");
    }
    assert!(store.cache_usage().evicted_segments >= 15);
    assert!(store.verify(&mut |_| {}).unwrap().ok());
}

#[test]
fn a_cached_block_the_user_writes_again_leaves_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_cache_store(dir.path());
    let bs = blocks(4, 4000, 42);
    cache_all(&store, &bs);
    // a cache batch does not write what the store holds; a main batch moves it out
    let mut again = store.cache_batch();
    assert!(!again.put(&bs[0]).unwrap());
    drop(again);
    let mut main = store.batch();
    assert!(main.put(&bs[0]).unwrap(), "a cached block is written into the user's segments");
    assert!(!main.put(&bs[0]).unwrap());
    main.commit().unwrap();
    store.evict_cache(0).unwrap();
    assert_eq!(store.get(bs[0].cid()).unwrap().as_ref(), Some(bs[0].data()));
    assert!(!store.has(bs[1].cid()).unwrap());
    drop(store);
    let store = small_cache_store(dir.path());
    assert_eq!(store.get(bs[0].cid()).unwrap().as_ref(), Some(bs[0].data()));
    assert!(store.verify(&mut |_| {}).unwrap().ok());
}

#[test]
fn pinning_a_cached_dag_takes_it_out_of_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_cache_store(dir.path());
    let data = common::noise(5 * 262_144 + 99, 43);
    let mut dag = Vec::new();
    let opts = cidfs::importer::ImportOptions::default();
    let root = cidfs::importer::file::import_bytes(&opts, Default::default(), &data, &mut dag).unwrap().cid;
    let unrelated = blocks(2, 4000, 44);
    cache_all(&store, &dag);
    cache_all(&store, &unrelated);
    store.pin(&root, "kept").unwrap();
    let report = store.evict_cache(0).unwrap();
    assert_eq!(report.blocks, 2, "only the unrelated blocks were still cached");
    assert_eq!(store.cache_usage().segments, 0);
    for b in &dag {
        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
    }
    let v = store.verify(&mut |_| {}).unwrap();
    assert!(v.ok() && v.roots_checked == 1, "{v:?}");
}

#[test]
fn gc_reclaims_the_cache_and_keeps_the_users_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_cache_store(dir.path());
    let cached = blocks(4, 4000, 45);
    cache_all(&store, &cached);
    let mine = blocks(1, 4000, 46);
    put_all(&store, &mine);
    store.pin(mine[0].cid(), "mine").unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report.blocks_removed, 4);
    assert_eq!(store.cache_usage().segments, 0);
    assert!(store.has(mine[0].cid()).unwrap());
    // the cache keeps working after gc took its active segment away
    cache_all(&store, &cached[..2]);
    assert_eq!(store.cache_usage().segments, 1);
    assert!(store.verify(&mut |_| {}).unwrap().ok());
}

// ---- volatile batches: visible at once, durable only with the next durable commit ----

/// Run in a child process (this test binary, filtered to this test): opens the store at
/// `CIDFS_CHILD_STORE`, writes as `CIDFS_CHILD_PLAN` says, then dies without closing it.
#[test]
fn volatile_child() {
    let (Some(home), Some(plan)) = (std::env::var_os("CIDFS_CHILD_STORE"), std::env::var_os("CIDFS_CHILD_PLAN")) else {
        return; // only meaningful as the child of the tests below
    };
    let store = Store::open(Path::new(&home)).unwrap();
    let mut b = store.batch();
    for x in blocks(3, 5000, 60) {
        b.put(&x).unwrap();
    }
    b.commit_volatile().unwrap();
    let mut c = store.cache_batch();
    c.put(&blocks(1, 5000, 61)[0]).unwrap();
    c.commit_volatile().unwrap();
    if plan == "then-durable" {
        put_all(&store, &blocks(1, 5000, 62));
    }
    // like a kill -9: no destructors, nothing flushed or synced on the way out
    unsafe { libc::_exit(0) };
}

fn run_volatile_child(home: &Path, plan: &str) {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "volatile_child", "--test-threads=1"])
        .env("CIDFS_CHILD_STORE", home)
        .env("CIDFS_CHILD_PLAN", plan)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_crash_loses_volatile_batches_whole_and_the_store_verifies() {
    let dir = tempfile::tempdir().unwrap();
    put_all(&Store::open(dir.path()).unwrap(), &blocks(2, 5000, 63));
    run_volatile_child(dir.path(), "crash");
    let store = Store::open(dir.path()).unwrap();
    for b in blocks(3, 5000, 60).iter().chain(&blocks(1, 5000, 61)) {
        assert!(!store.has(b.cid()).unwrap(), "volatile blocks are gone after a crash");
    }
    for b in blocks(2, 5000, 63) {
        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()), "durable blocks stay");
    }
    assert!(store.verify(&mut |_| {}).unwrap().ok());
    // the volatile bytes were cut off the segment, and its cache segment file is gone
    assert_eq!(store.stats().unwrap().segment_bytes, segment_files(dir.path()).iter().map(|(_, l)| l).sum::<u64>());
    assert_eq!(store.cache_usage().segments, 0);
}

#[test]
fn a_durable_commit_makes_earlier_volatile_batches_durable() {
    let dir = tempfile::tempdir().unwrap();
    run_volatile_child(dir.path(), "then-durable");
    let store = Store::open(dir.path()).unwrap();
    for b in blocks(3, 5000, 60).iter().chain(&blocks(1, 5000, 61)).chain(&blocks(1, 5000, 62)) {
        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
    }
    assert_eq!(store.cache_usage().segments, 1);
    assert!(store.verify(&mut |_| {}).unwrap().ok());
}

#[test]
fn closing_the_store_makes_volatile_batches_durable() {
    let dir = tempfile::tempdir().unwrap();
    let bs = blocks(3, 5000, 64);
    {
        let store = Store::open(dir.path()).unwrap();
        let mut b = store.cache_batch();
        for x in &bs {
            b.put(x).unwrap();
        }
        b.commit_volatile().unwrap();
        assert!(store.has(bs[0].cid()).unwrap(), "visible at once");
    }
    let store = Store::open(dir.path()).unwrap();
    assert!(bs.iter().all(|b| store.has(b.cid()).unwrap()));
    assert!(store.verify(&mut |_| {}).unwrap().ok());
}
