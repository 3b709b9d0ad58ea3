//! A cold read over the network, against a third-party peer doing the same, in one run.
//!
//! Needs root, /dev/fuse, Node and the Helia harness (`scripts/setup-test-deps`). Run
//! with `cargo bench --bench network_read`. A Helia peer on 127.0.0.1 holds a 64 MiB file
//! of non-repeating bytes (Kubo's layout, 256 KiB dag-pb leaves); then, best of 3 runs
//! each, every run cold:
//!
//! - Helia: a second Helia dials it and reads the file over bitswap (time from the dial);
//! - cidfs: a fresh store is mounted with the peer (`--peer`), and the file is read
//!   sequentially through the mount at `/.ipfs/<cid>` (time from `open`).
//!
//! Target: cidfs >= 1.0x Helia's throughput; time to first byte under 100 ms.
//! `CIDFS_BENCH_NET_MIB` sizes the file.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

fn json_num(line: &str, key: &str) -> f64 {
    let at = line.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("no {key} in {line}")) + key.len() + 3;
    let end = line[at..].find([',', '}']).unwrap() + at;
    line[at..end].trim().parse().unwrap()
}

fn main() {
    support::require("network_read", true, &[("node", "nodejs")]);
    if !std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/node_modules/helia").is_dir() {
        eprintln!("network_read: cannot run; it needs the Helia harness: run scripts/setup-test-deps");
        std::process::exit(2);
    }
    let mib: usize = std::env::var("CIDFS_BENCH_NET_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    let input = b.join("input.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for i in 0..mib {
            f.write_all(&common::noise(1 << 20, 1000 + i as u64)).unwrap();
        }
    }
    let script = common::interop_dir().join("helia_peer.mjs");
    let mut server = Command::new("node")
        .arg(&script)
        .arg("serve")
        .arg(&input)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let (cid, addr) = (common::json_str(&line, "cid"), common::json_str(&line, "addrs"));
    let bytes = (mib << 20) as f64;

    let mut helia = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let out =
            Command::new("node").arg(&script).args(["fetch", &cid, &addr]).arg(b.join("out.bin")).output().unwrap();
        assert!(out.status.success(), "helia fetch: {}", String::from_utf8_lossy(&out.stderr));
        let report = String::from_utf8_lossy(&out.stdout).to_string();
        let (ms, ttfb) = (json_num(&report, "ms"), json_num(&report, "first_byte_ms"));
        if ms < helia.0 {
            helia = (ms, ttfb);
        }
    }

    let mut cidfs = (f64::MAX, f64::MAX);
    for run in 0..3 {
        let home = b.join(format!("home{run}"));
        let m = support::mount_with(&home, &b.join(format!("mnt{run}")), &["--peer", &addr]);
        let t = Instant::now();
        let mut f = std::fs::File::open(m.dir.join(".ipfs").join(&cid)).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut first = None;
        let mut total = 0usize;
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            first.get_or_insert_with(|| t.elapsed().as_secs_f64() * 1e3);
            total += n;
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(total, mib << 20);
        if ms < cidfs.0 {
            cidfs = (ms, first.unwrap_or(ms));
        }
    }
    drop(server.stdin.take());
    let _ = server.wait();

    let mbps = |ms: f64| bytes / (ms / 1e3) / 1e6;
    println!("cold read of {mib} MiB held by a Helia peer on 127.0.0.1 (best of 3):");
    println!("  helia -> helia   {:7.1} MB/s   first byte {:6.1} ms", mbps(helia.0), helia.1);
    println!(
        "  cidfs mount      {:7.1} MB/s   first byte {:6.1} ms   = {:.2}x helia (target >= 1.0), ttfb target < 100 ms",
        mbps(cidfs.0),
        cidfs.1,
        helia.0 / cidfs.0
    );
}
