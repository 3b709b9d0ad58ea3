//! CommP throughput against SHA-256 of the same bytes, in the same run and in memory (no
//! I/O on either side). CommP hashes about twice the padded bytes (every tree node is a
//! 64-byte SHA-256: two compressions, where SHA-256 spends one per 64 bytes), but a
//! stream's compressions are a chain while a tree level's are independent, so CommP
//! hashes many nodes at once (see `src/filecoin/sha254.rs`); both cores share the blocks
//! of the tree.
//!
//! Run with `cargo bench --bench commp_vs_sha256`; `CIDFS_BENCH_MIB` sets the payload size
//! (default 512). Targets (issue 15): ≥ 0.45× SHA-256 on one thread, ≥ 0.8× on both cores.

use std::time::Instant;

use cidfs::filecoin::commp::Commp;
use sha2::{Digest, Sha256};

fn payload(bytes: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = vec![0u8; bytes];
    for w in out.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
    out
}

/// Best of three, in seconds.
fn best(mut run: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn commp(data: &[u8], threads: usize) -> String {
    let mut c = Commp::with_threads(threads);
    for part in data.chunks(1 << 20) {
        c.update(part);
    }
    c.finish().cid_v2().to_string()
}

fn main() {
    let mib: usize = std::env::var("CIDFS_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    let data = payload(mib << 20);
    let mb = (mib << 20) as f64 / 1e6;
    let sha = best(|| {
        std::hint::black_box(Sha256::digest(&data));
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one = best(|| {
        std::hint::black_box(commp(&data, 1));
    });
    let all = best(|| {
        std::hint::black_box(commp(&data, cores));
    });
    assert_eq!(commp(&data, 1), commp(&data, cores), "the same commitment either way");
    println!("CommP of {mib} MiB in memory (best of 3):");
    println!("  sha256                 {:7.1} MB/s", mb / sha);
    println!("  commp, one thread      {:7.1} MB/s = {:.2}x sha256 (target >= 0.45)", mb / one, sha / one);
    println!("  commp, {cores} threads        {:7.1} MB/s = {:.2}x sha256 (target >= 0.8)", mb / all, sha / all);
}
