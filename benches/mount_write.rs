//! Writing through a cidfs mount, against baselines measured in the same run.
//!
//! Needs root, /dev/fuse and bindfs. Run with `cargo bench --bench mount_write`. Sources
//! live on tmpfs; destinations (the local disk, bindfs over the local disk, and cidfs with
//! its store on the local disk) are all under the system temp dir:
//!
//! 1. 1 GiB of non-repeating bytes written with `dd bs=1M conv=fsync`.
//!    Target: cidfs >= 2x bindfs.
//! 2. Extracting a tarball of 10,000 small files. Target: cidfs >= 0.5x bindfs.
//! 3. Peak RSS of the mount process while writing a 10 GiB file. Target: <= 256 MiB.
//!
//! `CIDFS_BENCH_MIB` sizes (1), `CIDFS_BENCH_WRITE_GIB` sizes (3).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use std::time::Instant;
use support::{mount, peak_rss_kib, sh, timed};

fn dd_to(src: &Path, dst: &Path) -> f64 {
    let _ = std::fs::remove_file(dst);
    timed(Command::new("dd").arg(format!("if={}", src.display())).arg(format!("of={}", dst.display())).args([
        "bs=1M",
        "conv=fsync",
        "status=none",
    ]))
}

fn main() {
    support::require("mount_write", true, &[("bindfs", "bindfs"), ("dd", "coreutils"), ("tar", "tar")]);
    let mib: usize = std::env::var("CIDFS_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let gib: usize = std::env::var("CIDFS_BENCH_WRITE_GIB").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let disk = tempfile::tempdir().unwrap();
    let src = shm.path().join("src.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        for i in 0..mib {
            f.write_all(&common::noise(1 << 20, 7000 + i as u64)).unwrap();
        }
    }

    // 1. sequential write with fsync
    let plain = disk.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let bind_src = disk.path().join("bind-backing");
    let bind = disk.path().join("bind");
    std::fs::create_dir_all(&bind_src).unwrap();
    std::fs::create_dir_all(&bind).unwrap();
    sh(Command::new("bindfs").arg(&bind_src).arg(&bind));
    let home = disk.path().join("home");
    let m = mount(&home, &disk.path().join("mnt"));
    let bytes = (mib << 20) as f64;
    let gbps = |s: f64| bytes / s / 1e9;
    let t_disk = (0..3).map(|_| dd_to(&src, &plain.join("f"))).fold(f64::MAX, f64::min);
    let t_bind = (0..3).map(|_| dd_to(&src, &bind.join("f"))).fold(f64::MAX, f64::min);
    let t_cidfs = (0..3).map(|_| dd_to(&src, &m.dir.join("f"))).fold(f64::MAX, f64::min);
    println!("write {mib} MiB with dd bs=1M conv=fsync (best of 3):");
    println!("  local disk           {:6.2} GB/s", gbps(t_disk));
    println!("  bindfs over disk     {:6.2} GB/s", gbps(t_bind));
    println!("  cidfs                {:6.2} GB/s   = {:.2}x bindfs (target >= 2)", gbps(t_cidfs), t_bind / t_cidfs);

    // 2. extracting 10,000 small files
    let tree = shm.path().join("tree");
    for d in 0..100 {
        let dir = tree.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(
                dir.join(format!("f{f:03}.txt")),
                common::noise(200 + (d * 100 + f) % 3000, (d * 100 + f) as u64),
            )
            .unwrap();
        }
    }
    let tarball = shm.path().join("tree.tar");
    sh(Command::new("tar").arg("cf").arg(&tarball).arg("-C").arg(&tree).arg("."));
    let extract = |into: &Path| {
        let dst = into.join(format!("x{}", Instant::now().elapsed().as_nanos()));
        std::fs::create_dir_all(&dst).unwrap();
        timed(Command::new("tar").arg("xf").arg(&tarball).arg("-C").arg(&dst))
    };
    let x_bind = (0..2).map(|_| extract(&bind)).fold(f64::MAX, f64::min);
    let x_cidfs = (0..2).map(|_| extract(&m.dir)).fold(f64::MAX, f64::min);
    println!("extract 10,000 small files (tar xf, best of 2):");
    println!("  bindfs over disk     {x_bind:6.2} s");
    println!("  cidfs                {x_cidfs:6.2} s   = {:.2}x bindfs (target >= 0.5)", x_bind / x_cidfs);
    let _ = Command::new("umount").arg(&bind).status();
    drop(m);

    // 3. peak RSS writing a large file
    let home2 = disk.path().join("home2");
    let m = mount(&home2, &disk.path().join("mnt2"));
    let big = m.dir.join("big.bin");
    let t = Instant::now();
    for i in 0..gib {
        sh(Command::new("dd")
            .arg(format!("if={}", src.display()))
            .arg(format!("of={}", big.display()))
            .args(["bs=1M", "count=1024", "conv=notrunc", "status=none"])
            .arg(format!("seek={}", i * 1024)));
    }
    sh(Command::new("sync").arg(&big));
    let secs = t.elapsed().as_secs_f64();
    let rss = peak_rss_kib(m.child.id());
    drop(m);
    println!(
        "writing {gib} GiB through the mount: {:.2} GB/s, peak RSS of the mount process {:.1} MiB (target <= 256 MiB)",
        (gib << 30) as f64 / secs / 1e9,
        rss as f64 / 1024.0
    );
}
