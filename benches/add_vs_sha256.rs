//! `cidfs add` of a 1 GiB file of non-repeating bytes, against SHA-256 of the same bytes in
//! the same run (the physical limit of the job on one core: every byte must be hashed once).
//!
//! Run with `cargo bench --bench add_vs_sha256`. Set `CIDFS_BENCH_MIB` to change the size and
//! `CIDFS_BENCH_DIR` to choose where the input file and the store live (default: the system
//! temp dir, i.e. the local disk). Reports throughputs, the ratio, and the peak RSS of the
//! `cidfs add` process. Targets (issue 2): ratio >= 0.80, peak RSS <= 64 MiB.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use sha2::{Digest, Sha256};

fn write_input(path: &Path, bytes: u64) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..bytes / (1 << 20) {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    f.flush().unwrap();
}

fn sha256_file(path: &Path) -> f64 {
    let mut f = File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut h = Sha256::new();
    let t = Instant::now();
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    std::hint::black_box(h.finalize());
    t.elapsed().as_secs_f64()
}

/// Runs `cidfs add` into a fresh store; returns (seconds, peak RSS in KiB).
fn cidfs_add(path: &Path, home: &Path) -> (f64, i64) {
    let _ = std::fs::remove_dir_all(home);
    let t = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_cidfs"))
        .args(["add", "-Q"])
        .arg(path)
        .env("CIDFS_HOME", home)
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child; rusage is a plain C struct.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = t.elapsed().as_secs_f64();
    assert!(r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "cidfs add failed");
    std::mem::forget(child);
    (secs, usage.ru_maxrss)
}

fn main() {
    let mib: u64 = std::env::var("CIDFS_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let base = std::env::var_os("CIDFS_BENCH_DIR").map(Into::into).unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let input = dir.path().join("input.bin");
    write_input(&input, mib << 20);
    let bytes = (mib << 20) as f64;
    let mut best_sha = f64::MAX;
    let mut best_add = f64::MAX;
    let mut peak_rss = 0;
    for _ in 0..3 {
        best_sha = best_sha.min(sha256_file(&input));
        let (secs, rss) = cidfs_add(&input, &dir.path().join("home"));
        best_add = best_add.min(secs);
        peak_rss = peak_rss.max(rss);
    }
    let mbps = |s: f64| bytes / s / 1e6;
    println!("input: {mib} MiB of non-repeating bytes in {}", dir.path().display());
    println!("sha256:     {:8.1} MB/s (best of 3)", mbps(best_sha));
    println!("cidfs add:  {:8.1} MB/s (best of 3, durable: fsync before commit)", mbps(best_add));
    println!("ratio add/sha256: {:.2}  (target >= 0.80)", best_sha / best_add);
    println!("peak RSS of cidfs add: {:.1} MiB  (target <= 64 MiB)", peak_rss as f64 / 1024.0);
}
