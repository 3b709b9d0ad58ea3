//! Uploads to a storage provider, against `curl -T` of the same bytes to the same server
//! in the same run, and the time from `cidfs add` of 1 GiB to every piece at N replicas.
//!
//! 1. A `cidfs provider serve` on loopback; a piece of `CIDFS_BENCH_MIB` (default 256)
//!    MiB. cidfs's client streams it (`POST /pdp/piece/uploads`, `PUT`, finalize); the
//!    baseline is `curl -T FILE` to an upload session of the same server (the server's
//!    work, CommP included, is the same for both). Best of three each. Target (issue 15):
//!    cidfs ≥ 0.9× curl.
//! 2. `cidfs add` of `CIDFS_BENCH_ADD_MIB` (default 1024) MiB, then `cidfs daemon` with
//!    two providers and `--seal-after 1s`: the time until `cidfs pieces --json` shows every
//!    piece at 2 replicas (sealing, CommP, encryption and uploads all included).
//!
//! Run with `cargo bench --bench upload_vs_curl` (needs `curl`: `apt-get install curl`).
//! `CIDFS_BENCH_DIR` sets where the files go (default: the system's temp directory).

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cidfs::filecoin::commp::Commp;
use cidfs::filecoin::pdp::PdpClient;

fn noise_file(path: &Path, bytes: u64, seed: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

fn best(mut run: impl FnMut() -> f64) -> f64 {
    (0..3).map(|_| run()).fold(f64::MAX, f64::min)
}

fn main() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("this benchmark compares against curl: install it (`apt-get install curl`)");
        std::process::exit(2);
    }
    let base = std::env::var_os("CIDFS_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let work = tempfile::tempdir_in(&base).unwrap();
    let mib: u64 = std::env::var("CIDFS_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let file = work.path().join("piece.bin");
    noise_file(&file, mib << 20, 7);
    let mut c = Commp::with_threads(2);
    let bytes = std::fs::read(&file).unwrap();
    c.update(&bytes);
    let piece = c.finish().cid_v2();
    drop(bytes);
    let (mut server, url) = support::provider(work.path(), "127.0.0.1:0", &[]);
    let client = PdpClient::new(&url).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();

    // both timed from the session's creation to its finalization (the same three requests)
    let curl = best(|| {
        let t = Instant::now();
        let r = agent.post(format!("{url}/pdp/piece/uploads")).send_empty().unwrap();
        let location = r.headers().get("Location").unwrap().to_str().unwrap().to_string();
        let out =
            Command::new("curl").args(["-sS", "-f", "-T"]).arg(&file).arg(format!("{url}{location}")).output().unwrap();
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
        let body = format!("{{\"pieceCid\":\"{piece}\"}}");
        let done = agent
            .post(format!("{url}{location}"))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        assert_eq!(done.status().as_u16(), 200);
        t.elapsed().as_secs_f64()
    });
    let ours = best(|| {
        let f = std::fs::File::open(&file).unwrap();
        let t = Instant::now();
        client.upload(&piece, f, mib << 20).unwrap();
        t.elapsed().as_secs_f64()
    });
    let mb = (mib << 20) as f64 / 1e6;
    println!("upload of a {mib} MiB piece to a local `cidfs provider` (best of 3):");
    println!("  curl -T (with the session's POST and finalize)  {:.2} s  {:.0} MB/s", curl, mb / curl);
    println!(
        "  cidfs client                                    {:.2} s  {:.0} MB/s   = {:.2}x curl",
        ours,
        mb / ours,
        curl / ours
    );
    let _ = server.kill();
    let _ = server.wait();

    // add of 1 GiB, then the daemon takes it to 2 replicas
    let add_mib: u64 = std::env::var("CIDFS_BENCH_ADD_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let big = work.path().join("big.bin");
    noise_file(&big, add_mib << 20, 11);
    let home = work.path().join("home");
    let (mut p1, u1) = support::provider(&work.path().join("p1"), "127.0.0.1:0", &[]);
    let (mut p2, u2) = support::provider(&work.path().join("p2"), "127.0.0.1:0", &[]);
    let cidfs = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cidfs")).env("CIDFS_HOME", &home).args(args).output().unwrap();
        assert!(out.status.success(), "cidfs {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let t = Instant::now();
    cidfs(&["add", "-Q", big.to_str().unwrap()]);
    let added = t.elapsed().as_secs_f64();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_cidfs"))
        .env("CIDFS_HOME", &home)
        .args(["daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", "none", "--seal-after", "1s"])
        .args(["--replicas", "2", "--provider", &u1, "--provider", &u2])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(3600);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let Ok(out) =
            Command::new(env!("CARGO_BIN_EXE_cidfs")).env("CIDFS_HOME", &home).args(["pieces", "--json"]).output()
        else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let pieces: Vec<&str> = text.lines().collect();
        let at_n =
            |l: &&str| l.matches("\"state\":\"proving\"").count() + l.matches("\"state\":\"confirmed\"").count() >= 2;
        if !pieces.is_empty() && pieces.iter().all(at_n) {
            break;
        }
        assert!(Instant::now() < until, "never at 2 replicas");
    }
    let total = t.elapsed().as_secs_f64();
    println!("cidfs add of {add_mib} MiB: {added:.1} s; every piece at 2 replicas {total:.1} s after the add began");
    for c in [&mut daemon, &mut p1, &mut p2] {
        let _ = c.kill();
        let _ = c.wait();
    }
}
