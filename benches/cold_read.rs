//! A cold read of evicted data through the mount, from a local storage provider, free and
//! paid (x402), against `curl` of the same ranges from the same server, in one run.
//!
//! Needs root, /dev/fuse, `curl`, Node and the test harness (`scripts/setup-test-deps`:
//! the x402 world of tests/interop). Run with `cargo bench --bench cold_read`.
//!
//! 1. `cidfs add` of a `CIDFS_BENCH_COLD_MIB` (default 256) MiB file of non-repeating
//!    bytes; `cidfs daemon` places its piece on two `cidfs provider`s, one free and one
//!    charging one unit a byte (`--price-per-gib`, settled through the reference x402
//!    facilitator on anvil); `cidfs evict --all-replicated`. The store, now without the
//!    file's bytes, is kept as a template.
//! 2. Free: with the charging provider down (refused at once), a copy of the template is
//!    mounted and the file read sequentially (time from `open`; first byte noted). Best of
//!    3, each cold (a fresh copy, an empty cache).
//! 3. Paid: with the free provider down, the same; the ledger gives the exact ranges read.
//! 4. Baseline: `curl` fetching those same ranges, in order, over one connection, from the
//!    free provider. Target (issue 16): cidfs free ≥ 0.8× curl; paid is reported.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cidfs(home: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cidfs"))
        .env("CIDFS_HOME", home)
        .env("CIDFS_REPLICAS", "1")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "cidfs {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Reads `path` sequentially in 1 MiB reads: (seconds, seconds to the first byte).
fn read_all(path: &Path, expect: usize) -> (f64, f64) {
    let t = Instant::now();
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let (mut total, mut first) = (0, None);
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        first.get_or_insert_with(|| t.elapsed().as_secs_f64());
        total += n;
    }
    assert_eq!(total, expect, "short read of {}", path.display());
    let s = t.elapsed().as_secs_f64();
    (s, first.unwrap_or(s))
}

fn copy_store(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    support::sh(Command::new("cp").arg("-a").arg(from).arg(to));
}

fn main() {
    support::require("cold_read", true, &[("curl", "curl"), ("node", "nodejs")]);
    if !Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/node_modules/@x402/core").is_dir() {
        eprintln!("cold_read: cannot run; it needs the x402 test world: run scripts/setup-test-deps");
        std::process::exit(2);
    }
    let mib: usize = std::env::var("CIDFS_BENCH_COLD_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let size = mib << 20;
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    let input = b.join("input.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for i in 0..mib {
            f.write_all(&common::noise(1 << 20, 5000 + i as u64)).unwrap();
        }
    }

    // the x402 world: anvil, the token, the reference facilitator
    let template = b.join("template");
    let wallet = cidfs(&template, &["wallet"]).trim().to_string();
    let mut world = Command::new("node")
        .arg("x402_world.mjs")
        .args(["--fund", &wallet])
        .current_dir(common::interop_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(world.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let get = |k: &str| common::json_str(&line, k);
    let pricing: Vec<String> = [
        "--price-per-gib",
        "1073741824",
        "--asset",
        &get("token"),
        "--asset-name",
        &get("tokenName"),
        "--asset-version",
        &get("tokenVersion"),
        "--network",
        &get("network"),
        "--pay-to",
        "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
        "--facilitator",
        &get("facilitator"),
    ]
    .map(String::from)
    .to_vec();

    // 1. stored, placed at a free provider and at one that charges (one unit a byte), evicted
    let (mut free, free_url) = support::provider(&b.join("free"), "127.0.0.1:0", &[]);
    let (mut paid, paid_url) = support::provider(&b.join("paid"), "127.0.0.1:0", &pricing);
    let cid = cidfs(&template, &["add", "-Q", input.to_str().unwrap()]).trim().to_string();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_cidfs"))
        .env("CIDFS_HOME", &template)
        .args(["daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", "none", "--seal-after", "1s"])
        .args(["--replicas", "2", "--provider", &free_url, "--provider", &paid_url, "--audit-interval", "1h"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(600);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let out =
            Command::new(env!("CARGO_BIN_EXE_cidfs")).env("CIDFS_HOME", &template).args(["pieces", "--json"]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        let held =
            |l: &str| l.matches("\"state\":\"proving\"").count() + l.matches("\"state\":\"confirmed\"").count() >= 2;
        if !text.trim().is_empty() && text.lines().all(held) {
            break;
        }
        assert!(Instant::now() < until, "the piece never reached its providers");
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = daemon.wait();
    let out = Command::new(env!("CARGO_BIN_EXE_cidfs"))
        .env("CIDFS_HOME", &template)
        .env("CIDFS_REPLICAS", "2")
        .args(["evict", "--all-replicated"])
        .output()
        .unwrap();
    let evicted = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(evicted.starts_with("evicted ") && !evicted.starts_with("evicted 0 "), "{evicted}");
    let piece = common::json_str(cidfs(&template, &["pieces", "--json"]).lines().next().unwrap(), "piece");
    let caps = format!(
        "max-per-request = \"{size}\"\nmax-per-day = \"{}\"\nmax-spend = \"{}\"\npay-networks = [\"{}\"]\npay-assets = [\"{}\"]\naudit-interval = \"1h\"\n",
        size * 4,
        size * 4,
        get("network"),
        get("token")
    );
    std::fs::write(template.join("config.toml"), caps).unwrap();

    // 2. free: the paying provider is down (refused at once), the free one serves
    let _ = paid.kill();
    let _ = paid.wait();
    let mut ours = (f64::MAX, f64::MAX);
    for run in 0..3 {
        let home = b.join(format!("free{run}"));
        copy_store(&template, &home);
        let m = support::mount_with(&home, &b.join(format!("mnt-free{run}")), &[]);
        let r = read_all(&m.dir.join(".ipfs").join(&cid), size);
        if r.0 < ours.0 {
            ours = r;
        }
    }

    // 3. paid: the free provider is down, the charging one serves; the ledger says what
    // ranges were read
    let _ = free.kill();
    let _ = free.wait();
    let (mut paid, _) = support::provider(&b.join("paid"), paid_url.trim_start_matches("http://"), &pricing);
    let home = b.join("paid-home");
    copy_store(&template, &home);
    let m = support::mount_with(&home, &b.join("mnt-paid"), &[]);
    let paid_read = read_all(&m.dir.join(".ipfs").join(&cid), size);
    drop(m);
    let ledger = cidfs(&home, &["payments", "--json"]);
    let ranges: Vec<(u64, u64)> = ledger
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["offset"].as_u64().unwrap(), v["bytes"].as_u64().unwrap())
        })
        .collect();
    assert!(!ranges.is_empty(), "the paid read paid nothing");
    let paid_bytes: u64 = ranges.iter().map(|r| r.1).sum();
    let _ = paid.kill();
    let _ = paid.wait();
    let _ = world.kill();
    let _ = world.wait();

    // 4. curl of the same ranges, in order, over one connection, from the free server
    let (mut free, _) = support::provider(&b.join("free"), free_url.trim_start_matches("http://"), &[]);
    let url = format!("{free_url}/piece/{piece}");
    let mut curl = f64::MAX;
    for _ in 0..3 {
        let mut cmd = Command::new("curl");
        for (i, (off, len)) in ranges.iter().enumerate() {
            if i > 0 {
                cmd.arg("--next");
            }
            cmd.args(["-sS", "-f", "-o", "/dev/null", "-r", &format!("{off}-{}", off + len - 1), &url]);
        }
        curl = curl.min(support::timed(&mut cmd));
    }
    let _ = free.kill();
    let _ = free.wait();

    let mbps = |s: f64| size as f64 / s / 1e6;
    println!("cold read of a {mib} MiB evicted file through the mount, from a local provider:");
    println!("  curl, the same {} ranges      {:7.1} MB/s", ranges.len(), mbps(curl));
    println!(
        "  cidfs, free (best of 3)       {:7.1} MB/s   first byte {:6.1} ms   = {:.2}x curl (target >= 0.8)",
        mbps(ours.0),
        ours.1 * 1e3,
        curl / ours.0
    );
    println!(
        "  cidfs, x402-paid              {:7.1} MB/s   first byte {:6.1} ms   = {:.2}x curl; {} payments, {:.3} bytes paid a byte read",
        mbps(paid_read.0),
        paid_read.1 * 1e3,
        curl / paid_read.0,
        ranges.len(),
        paid_bytes as f64 / size as f64
    );
}
