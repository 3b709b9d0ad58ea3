//! The Filecoin side end to end: a real mount writing the drive, `cidfs provider serve`
//! processes on loopback as its storage providers. Pieces are sealed, encrypted, placed at
//! two replicas on distinct providers and repaired when a provider dies or changes bytes;
//! a mount killed mid-upload resumes without duplicates; failing providers are retried.

mod common;

use std::time::{Duration, Instant};

use common::Cli;
use common::provider::ProviderProcess;

fn pieces(cli: &Cli) -> Vec<serde_json::Value> {
    cli.ok(&["pieces", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The providers whose replica of `piece` is in `state`.
fn providers_in(piece: &serde_json::Value, state: &str) -> Vec<String> {
    piece["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == state)
        .map(|r| r["provider"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until every piece has `n` replicas proving (at least one piece); the pieces.
fn wait_proving(cli: &Cli, n: usize, what: &str) -> Vec<serde_json::Value> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let ps = pieces(cli);
        if !ps.is_empty() && ps.iter().all(|p| providers_in(p, "proving").len() >= n) {
            return ps;
        }
        assert!(Instant::now() < until, "{what}: not at {n} proving replicas: {ps:#?}\n{}", cli.ok(&["status"]));
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn run_listxattr(path: &std::path::Path) -> Vec<u8> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: a valid C string and a buffer of the length given.
    let n = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "{}", std::io::Error::last_os_error());
    buf.truncate(n as usize);
    buf
}

fn head_status(url: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    agent.head(url).call().map(|r| r.status().as_u16()).unwrap_or(0)
}

fn write_noise(path: &std::path::Path, len: usize, seed: u64) -> Vec<u8> {
    use std::io::Write;
    let data = common::noise(len, seed);
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    data
}

fn mount_flags(providers: &[&ProviderProcess], extra: &[&str]) -> Vec<String> {
    let mut flags: Vec<String> =
        ["--seal-after", "1s", "--replicas", "2", "--audit-interval", "1s"].iter().map(|s| s.to_string()).collect();
    for p in providers {
        flags.push("--provider".into());
        flags.push(p.url.clone());
    }
    flags.extend(extra.iter().map(|s| s.to_string()));
    flags
}

#[test]
fn written_data_reaches_two_providers_encrypted_and_a_dead_provider_is_replaced() {
    let fast = ["--confirm-delay", "200ms", "--proving-period", "1s"];
    let ps = [ProviderProcess::start(&fast), ProviderProcess::start(&fast), ProviderProcess::start(&fast)];
    // the first answers its first requests with 500s: retried, not given up on
    let knob = |p: &ProviderProcess, k: &str| {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        agent.post(format!("{}/admin/{k}", p.url)).send_empty().unwrap().status().as_u16()
    };
    assert_eq!(knob(&ps[0], "errors?n=2"), 204);
    let cli = Cli::new();
    let status = cli.ok(&["status"]);
    assert!(status.contains("no storage provider configured"), "{status}");
    let flags = mount_flags(&[&ps[0], &ps[1], &ps[2]], &[]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let m = cli.mount("mnt", &flags);
    let data = write_noise(&m.dir.join("big.bin"), 64 << 20, 91);
    let pieces = wait_proving(&cli, 2, "after writing");
    assert_eq!(pieces.len(), 1, "one quiet segment, one piece: {pieces:#?}");
    let piece = &pieces[0];
    let cid = piece["piece"].as_str().unwrap().to_string();
    assert!(cid.starts_with("bafkzcib"), "{cid}");
    assert!(piece["payload_size"].as_u64().unwrap() > data.len() as u64);
    assert_eq!(piece["encrypted"], true);
    let holders = providers_in(piece, "proving");
    assert_eq!(holders.len(), 2);
    assert_ne!(holders[0], holders[1], "distinct providers");
    // the providers' own view: HEAD /piece/ on the holders, not on the third
    for p in &ps {
        let want = if holders.contains(&p.url) { 200 } else { 404 };
        assert_eq!(head_status(&format!("{}/piece/{cid}", p.url)), want, "{}", p.url);
    }
    // what a holder has is the piece (its CommP) and none of the file's bytes
    let held = std::fs::read(
        ps.iter().find(|p| holders.contains(&p.url)).unwrap().dir.path().join("provider/pieces").join(&cid),
    )
    .unwrap();
    assert_eq!(cidfs::filecoin::commp::commp(&held).cid_v2().to_string(), cid);
    for window in [&data[1000..1064], &data[10 << 20..(10 << 20) + 64]] {
        assert!(!held.windows(64).any(|w| w == window), "plaintext at the provider");
    }
    // per file, by name (never listed): the pieces holding it and their replicas
    let file = m.dir.join("big.bin");
    let held_in = String::from_utf8(common::getxattr(&file, "cidfs.pieces").unwrap()).unwrap();
    assert!(held_in.starts_with(&format!("{cid} ")), "{held_in}");
    let bytes: u64 = held_in.lines().filter_map(|l| l.split(' ').nth(1)?.parse::<u64>().ok()).sum();
    assert!(bytes >= data.len() as u64, "{held_in}");
    let replicas = String::from_utf8(common::getxattr(&file, "cidfs.replicas").unwrap()).unwrap();
    for h in &holders {
        assert!(replicas.contains(&format!("{cid} {h} proving")), "{replicas}");
    }
    let listed = String::from_utf8_lossy(&run_listxattr(&file)).into_owned();
    assert!(!listed.contains("cidfs."), "{listed}");
    let human = cli.ok(&["pieces"]);
    assert!(human.contains(&cid) && human.contains("proving"), "{human}");
    let status = cli.ok(&["status"]);
    assert!(status.contains("1 pieces") && status.contains("at 2 replicas"), "{status}");

    // a holder dies: its replica fails and the third provider gets one
    let dead = ps.iter().position(|p| p.url == holders[0]).unwrap();
    let [a, b, c] = ps;
    let mut alive = vec![a, b, c];
    let killed = alive.remove(dead);
    drop(killed);
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let p = &crate::pieces(&cli)[0];
        let proving = providers_in(p, "proving");
        if proving.len() == 2 && !proving.contains(&holders[0]) && providers_in(p, "failed").contains(&holders[0]) {
            break;
        }
        assert!(Instant::now() < until, "never repaired: {p:#}");
        std::thread::sleep(Duration::from_millis(250));
    }
    for p in &alive {
        assert_eq!(head_status(&format!("{}/piece/{cid}", p.url)), 200, "{}", p.url);
    }
    // the new replica was pulled by its provider from the surviving one, not sent again
    let p = &crate::pieces(&cli)[0];
    let third = alive.iter().find(|p| !holders.contains(&p.url)).unwrap();
    let new = p["replicas"].as_array().unwrap().iter().find(|r| r["provider"] == third.url.as_str()).unwrap();
    assert_eq!(new["pulled_from"], format!("{}/piece/{cid}", holders[1]), "{new}");
    drop(m);
}

#[test]
fn a_provider_that_changes_bytes_fails_its_audit_and_is_replaced() {
    let fast = ["--confirm-delay", "200ms", "--proving-period", "1s"];
    let ps = [ProviderProcess::start(&fast), ProviderProcess::start(&fast), ProviderProcess::start(&fast)];
    let cli = Cli::new();
    let flags = mount_flags(&[&ps[0], &ps[1], &ps[2]], &[]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let m = cli.mount("mnt", &flags);
    write_noise(&m.dir.join("f.bin"), 4 << 20, 92);
    let piece = wait_proving(&cli, 2, "after writing").remove(0);
    let cid = piece["piece"].as_str().unwrap().to_string();
    let size = piece["payload_size"].as_u64().unwrap();
    let bad = providers_in(&piece, "proving")[0].clone();
    // change a byte every 64 KiB: whatever blocks the audit reads back, they are wrong
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    for offset in (100..size).step_by(64 << 10) {
        let r = agent.post(format!("{bad}/admin/flip?piece={cid}&offset={offset}")).send_empty().unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let p = &pieces(&cli)[0];
        let proving = providers_in(p, "proving");
        let failed = providers_in(p, "failed").into_iter().chain(providers_in(p, "removed")).collect::<Vec<_>>();
        if proving.len() == 2 && !proving.contains(&bad) && failed.contains(&bad) {
            let audit = p["replicas"].as_array().unwrap().iter().find(|r| r["provider"] == bad.as_str()).unwrap();
            assert!(audit["last_audit"].as_str().unwrap().contains("does not match its CID"), "{audit}");
            break;
        }
        assert!(Instant::now() < until, "the changed replica was never replaced: {p:#}");
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(m);
}

#[test]
fn a_mount_killed_mid_upload_resumes_without_duplicate_pieces_or_data_sets() {
    let fast = ["--confirm-delay", "200ms", "--proving-period", "1s"];
    let ps = [ProviderProcess::start(&fast), ProviderProcess::start(&fast)];
    let cli = Cli::new();
    let wait_upload = |cli: &Cli| {
        let until = Instant::now() + Duration::from_secs(60);
        while !cli.ok(&["status"]).contains("uploads:   piece") {
            assert!(Instant::now() < until, "no upload started: {}", cli.ok(&["status"]));
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // slow uploads (6 MiB at 256 KiB/s): an unmount does not wait for them to finish
    let flags = mount_flags(&[&ps[0], &ps[1]], &["--upload-limit", "256K"]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let m = cli.mount("mnt", &flags);
    write_noise(&m.dir.join("f.bin"), 6 << 20, 93);
    wait_upload(&cli);
    let t = Instant::now();
    cli.ok(&["unmount", m.dir.to_str().unwrap()]);
    assert!(t.elapsed() < Duration::from_secs(15), "unmount waited {:?} for an upload", t.elapsed());
    drop(m);
    // and a kill lands while bytes are on their way
    let mut m = cli.mount("mnt", &flags);
    wait_upload(&cli);
    m.child.kill().unwrap(); // SIGKILL, mid-upload
    m.child.wait().unwrap();
    let before = pieces(&cli);
    assert_eq!(before.len(), 1);
    assert!(before[0]["replicas"].as_array().unwrap().iter().any(|r| r["state"] == "uploading"), "{before:#?}");
    let flags = mount_flags(&[&ps[0], &ps[1]], &[]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let again = cli.mount("mnt", &flags);
    let after = wait_proving(&cli, 2, "after the remount");
    assert_eq!(after.len(), 1, "no duplicate piece: {after:#?}");
    assert_eq!(after[0]["piece"], before[0]["piece"]);
    assert_eq!(after[0]["replicas"].as_array().unwrap().len(), 2, "no duplicate replica: {after:#?}");
    // one data set per provider: the first one made, never a second
    for r in after[0]["replicas"].as_array().unwrap() {
        assert_eq!(r["data_set"], 1, "{r}");
        let url = format!("{}/pdp/data-sets/2", r["provider"].as_str().unwrap());
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        assert_eq!(agent.get(&url).call().unwrap().status().as_u16(), 404, "a second data set at {url}");
    }
    drop(again);
}

#[test]
fn a_bad_provider_url_is_refused_at_once() {
    let cli = Cli::new();
    let err = cli.fails(&["mount", "--provider", "localhost:8402", "mnt"], 2);
    assert!(err.contains("not a provider URL"), "{err}");
    let err = cli.fails(&["providers", "add", "ftp://x"], 1);
    assert!(err.contains("not a provider URL"), "{err}");
    cli.ok(&[
        "providers",
        "add",
        "http://127.0.0.1:9",
        "--payee",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "--price",
        "2.5",
    ]);
    let ls = cli.ok(&["providers", "ls"]);
    assert!(ls.contains("http://127.0.0.1:9") && ls.contains("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"), "{ls}");
    assert!(ls.contains("price 2.5"), "{ls}");
    let err = cli.fails(&["providers", "add", "http://127.0.0.1:9", "--price=-1"], 2);
    assert!(err.contains("--price"), "{err}");
    cli.ok(&["providers", "rm", "http://127.0.0.1:9"]);
    assert_eq!(cli.ok(&["providers", "ls"]).trim(), "");
    let err = cli.fails(&["providers", "rm", "http://127.0.0.1:9"], 1);
    assert!(err.contains("not a provider"), "{err}");
}

#[test]
fn a_provider_that_times_out_is_retried_then_replaced_and_nothing_is_lost() {
    let fast = ["--confirm-delay", "200ms", "--proving-period", "1s"];
    let ps = [ProviderProcess::start(&fast), ProviderProcess::start(&fast), ProviderProcess::start(&fast)];
    // the first (chosen first: the order configured) answers every request after 3 s
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let r = agent.post(format!("{}/admin/slow?ms=3000", ps[0].url)).send_empty().unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let cli = Cli::new();
    let flags = mount_flags(&[&ps[0], &ps[1], &ps[2]], &["--provider-timeout", "1s"]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let m = cli.mount("mnt", &flags);
    write_noise(&m.dir.join("f.bin"), 2 << 20, 94);
    let piece = wait_proving(&cli, 2, "with a provider timing out").remove(0);
    let proving = providers_in(&piece, "proving");
    assert!(!proving.contains(&ps[0].url), "{piece:#}");
    let given_up: Vec<String> =
        providers_in(&piece, "failed").into_iter().chain(providers_in(&piece, "removed")).collect();
    assert!(given_up.contains(&ps[0].url), "the slow provider's replica was never given up: {piece:#}");
    let log = m.log();
    assert!(log.contains("timed out") || log.contains("timeout") || log.contains("Timeout"), "{log}");
    drop(m);
}

/// `cidfs daemon` runs the same background work as a mount: what `cidfs add` stored is
/// sealed and replicated with no mount at all; `status` and `pieces` answer through it.
#[test]
fn the_daemon_seals_and_replicates_what_add_stored() {
    use std::io::BufRead;
    let p = ProviderProcess::start(&["--confirm-delay", "200ms"]);
    let cli = Cli::new();
    let data = common::noise(3 << 20, 95);
    cli.add_q(&cli.write("added.bin", &data), &[]);
    let mut daemon = cli
        .cmd()
        .args(["daemon", "--seal-after", "1s", "--replicas", "1", "--audit-interval", "1s", "--provider", &p.url])
        .env("CIDFS_MOUNT_NOTIFY", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let piece = wait_proving(&cli, 1, "through the daemon").remove(0);
    assert_eq!(providers_in(&piece, "proving"), vec![p.url.clone()]);
    assert!(piece["payload_size"].as_u64().unwrap() > data.len() as u64);
    let status = cli.ok(&["status"]);
    assert!(status.contains("at 1 replicas") && status.contains("uploads:   idle"), "{status}");
    // SAFETY: a plain kill(2) of our child.
    assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) }, 0);
    assert!(daemon.wait().unwrap().success());
    // and without it, the records are read from the store
    assert_eq!(pieces(&cli)[0]["piece"], piece["piece"]);
}
