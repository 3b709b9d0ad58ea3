//! Paid cold retrieval against the real x402 stack, on loopback: anvil (a real EVM), an
//! EIP-3009 token compiled with solc, the reference facilitator (@x402/core + @x402/evm),
//! the reference paywall (@x402/express) and client (@x402/fetch) — see
//! tests/interop/x402_world.mjs. cidfs writes, replicates, evicts, and reads back through
//! the mount, paying per range within its caps; balances on chain are checked against the
//! ledger.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Cli;
use common::provider::ProviderProcess;

/// Who reads are paid to (an anvil dev address; it needs no key here).
const PAYEE: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
/// anvil's dev key #2: the reference client's (funded by the world).
const CLIENT_KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
const CLIENT_ADDR: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
/// What the world mints to each funded address.
const FUNDED: u128 = 1_000_000_000_000_000;

/// The x402 world (anvil, token, facilitator, maybe a paywall); killed when dropped.
struct World {
    child: Child,
    v: serde_json::Value,
}

impl World {
    fn start(fund: &[&str], paywall: Option<(&str, u64)>) -> World {
        let mut cmd = Command::new("node");
        cmd.arg("x402_world.mjs").current_dir(common::interop_dir());
        for a in fund {
            cmd.args(["--fund", a]);
        }
        if let Some((upstream, per_gib)) = paywall {
            cmd.args(["--upstream", upstream, "--price-per-gib", &per_gib.to_string(), "--pay-to", PAYEE]);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("the x402 world printed {line:?}: {e}"));
        World { child, v }
    }

    fn get(&self, k: &str) -> String {
        self.v[k].as_str().unwrap_or_else(|| panic!("no {k} in {}", self.v)).to_string()
    }

    fn balance(&self, addr: &str) -> u128 {
        let url = format!("{}/balance/{addr}", self.get("facilitator"));
        ureq::get(&url).call().unwrap().body_mut().read_to_string().unwrap().trim().parse().unwrap()
    }

    /// `cidfs provider serve` flags that charge `per_gib` for reads, settled here.
    fn provider_pricing(&self, per_gib: u64) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "--price-per-gib".into(),
            per_gib.to_string(),
            "--asset".into(),
            self.get("token"),
            "--asset-name".into(),
            self.get("tokenName"),
            "--asset-version".into(),
            self.get("tokenVersion"),
            "--network".into(),
            self.get("network"),
            "--pay-to".into(),
            PAYEE.into(),
            "--facilitator".into(),
            self.get("facilitator"),
        ];
        v.extend(["--confirm-delay", "100ms", "--proving-period", "1s"].map(String::from));
        v
    }

    /// A config.toml letting cidfs pay on this world's network in its token, with caps.
    fn caps_config(&self, per_request: u64, per_day: u64, total: u64) -> String {
        format!(
            "max-per-request = \"{per_request}\"\nmax-per-day = \"{per_day}\"\nmax-spend = \"{total}\"\n\
             pay-networks = [\"{}\"]\npay-assets = [\"{}\"]\n",
            self.get("network"),
            self.get("token")
        )
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pieces(cli: &Cli) -> Vec<serde_json::Value> {
    cli.ok(&["pieces", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Waits until there are `n` pieces, each held by `replicas` providers.
fn wait_held(cli: &Cli, n: usize, replicas: usize) {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let ps = pieces(cli);
        let held = |p: &serde_json::Value| {
            p["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["state"] == "confirmed" || r["state"] == "proving")
                .count()
        };
        if ps.len() >= n && ps.iter().all(|p| held(p) >= replicas) {
            return;
        }
        assert!(Instant::now() < until, "pieces not held: {ps:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn payments(cli: &Cli) -> Vec<serde_json::Value> {
    cli.ok(&["payments", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn paid(list: &[serde_json::Value]) -> (u128, u64) {
    let amount = list.iter().map(|p| p["amount"].as_str().unwrap().parse::<u128>().unwrap()).sum();
    let bytes = list.iter().map(|p| p["bytes"].as_u64().unwrap()).sum();
    (amount, bytes)
}

fn write_file(path: &std::path::Path, data: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

/// `sha256sum FILE`, the tool (reads through the mount like any program).
fn sha256_file(path: &std::path::Path) -> String {
    let out = common::run_ok(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap_or_default().to_string()
}

const FLAGS: [&str; 4] = ["--seal-after", "1s", "--audit-interval", "1h"];

#[test]
fn an_evicted_file_reads_back_through_the_reference_paywall_and_the_chain_moves_as_the_ledger_says() {
    let cli = Cli::new();
    let wallet = cli.ok(&["wallet"]).trim().to_string();
    let upstream = ProviderProcess::start(&["--confirm-delay", "100ms", "--proving-period", "1s"]);
    // one atomic unit per byte read
    let world = World::start(&[&wallet], Some((&upstream.url, 1 << 30)));
    let paywall = world.get("paywall");
    std::fs::write(cli.home.path().join("config.toml"), world.caps_config(1 << 30, 1 << 40, 1 << 40)).unwrap();
    // (256 MiB, the case, is measured by `cargo bench --bench cold_read`: in a debug
    // build, sealing and the provider's CommP of it take minutes)
    let size = 64 << 20;
    let data = common::noise(size, 402);
    let mut flags = FLAGS.to_vec();
    flags.extend(["--provider", &paywall, "--replicas", "1", "--fetch-timeout", "20"]);
    {
        let m = cli.mount("drive", &flags);
        write_file(&m.dir.join("big.bin"), &data);
        write_file(&m.dir.join("other.bin"), &common::noise(3 << 20, 403));
        wait_held(&cli, 1, 1);
        let hot = |status: &str| status.lines().find(|l| l.starts_with("hot:")).unwrap_or_default().to_string();
        let before = hot(&cli.ok(&["status"]));
        assert!(!before.contains(" 0 files"), "written files have hot copies: {before}");
        // evicted through the running mount; the hot copies of the files go too
        let out = cli.ok(&["evict", "--all-replicated"]);
        assert!(hot(&cli.ok(&["status"])).contains(" 0 files"), "{}", cli.ok(&["status"]));
        assert!(out.starts_with("evicted ") && !out.starts_with("evicted 0 "), "{out}");
        let status = cli.ok(&["status"]);
        assert!(status.contains("cold in") && !status.contains("cold in 0 segments"), "{status}");
    }
    assert!(payments(&cli).is_empty(), "nothing is paid before a cold read");
    let (payer_before, payee_before) = (world.balance(&wallet), world.balance(PAYEE));
    assert_eq!(payer_before, FUNDED);

    let m = cli.mount("drive", &flags);
    assert_eq!(sha256_file(&m.dir.join("big.bin")), common::sha256_hex(&data), "{}", m.log());
    let list = payments(&cli);
    let (amount, bytes) = paid(&list);
    assert!(!list.is_empty());
    assert!(
        list.iter().all(|p| p["state"] == "settled" && p["transaction"].as_str().is_some_and(|t| t.starts_with("0x")))
    );
    let ranges: Vec<_> = list.iter().map(|p| (p["offset"].as_u64().unwrap(), p["bytes"].as_u64().unwrap())).collect();
    assert!(
        bytes >= size as u64 && bytes as f64 <= 1.05 * size as f64,
        "{bytes} bytes paid for a {size}-byte read: {ranges:?}"
    );
    assert!(list.len() < size / (1 << 20), "{} requests for {} MiB: ranges were not coalesced", list.len(), size >> 20);
    assert_eq!(world.balance(&wallet), payer_before - amount, "the payer's balance moved by the ledger's total");
    assert_eq!(world.balance(PAYEE), payee_before + amount, "the payee got the ledger's total");
    // read again: served from the cache, paid once; `cidfs get` reads through the mount
    assert_eq!(sha256_file(&m.dir.join("big.bin")), common::sha256_hex(&data));
    let out = cli.path("got.bin");
    cli.ok(&["get", "/big.bin", out.to_str().unwrap()]);
    assert_eq!(sha256_file(&out), common::sha256_hex(&data));
    assert_eq!(payments(&cli).len(), list.len(), "a second read paid again");
    let status = cli.ok(&["status"]);
    assert!(status.contains(&format!("payments:  {amount} spent today")), "{status}");
    drop(m);

    // readable without the mount: `cidfs cat` reads through the same tier (and pays)
    let out = cli.cmd().args(["cat", "/other.bin"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(common::sha256_hex(&out.stdout), common::sha256_hex(&common::noise(3 << 20, 403)));
    assert!(payments(&cli).len() > list.len(), "the unmounted read paid for its ranges");
}

#[test]
fn the_reference_client_pays_cidfs_provider_and_gets_the_right_bytes() {
    let world = World::start(&[CLIENT_ADDR], None);
    let pricing = world.provider_pricing(1 << 30);
    let p = ProviderProcess::start(&pricing.iter().map(String::as_str).collect::<Vec<_>>());
    let payload = common::noise(100_000, 7);
    let piece = cidfs::filecoin::commp::commp(&payload).cid_v2();
    cidfs::filecoin::pdp::PdpClient::new(&p.url).unwrap().upload_one_shot(&piece, &payload).unwrap();
    let url = format!("{}/piece/{piece}", p.url);

    // unpaid: a version 2 402 priced by the range; HEAD stays free
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let r = agent.get(&url).header("Range", "bytes=1000-1999").call().unwrap();
    assert_eq!(r.status().as_u16(), 402);
    let offer = r.headers().get("PAYMENT-REQUIRED").unwrap().to_str().unwrap().to_string();
    let offers = cidfs::filecoin::x402::parse_required(Some(&offer), b"").unwrap();
    assert_eq!(offers[0].amount.to_string(), "1000");
    assert_eq!(agent.head(&url).call().unwrap().status().as_u16(), 200);

    let out = common::run_ok(
        Command::new("node")
            .arg("x402_fetch.mjs")
            .args([&url, "bytes=1000-1999", CLIENT_KEY, &world.get("token"), "1000000"])
            .current_dir(common::interop_dir()),
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["status"], 206, "{v}");
    assert_eq!(v["sha256"], common::sha256_hex(&payload[1000..2000]));
    assert_eq!(v["paymentResponse"]["success"], true, "{v}");
    assert_eq!(world.balance(PAYEE), 1000);
    assert_eq!(world.balance(CLIENT_ADDR), FUNDED - 1000);
}

#[test]
fn caps_refuse_before_signing_a_lying_provider_is_dropped_and_dead_ones_fail_with_eio() {
    let cli = Cli::new();
    let wallet = cli.ok(&["wallet"]).trim().to_string();
    let world = World::start(&[&wallet], None);
    // 2^30 units a GiB: one unit a byte
    let pricing = world.provider_pricing(1 << 30);
    let pricing: Vec<&str> = pricing.iter().map(String::as_str).collect();
    let mut ps = [ProviderProcess::start(&pricing), ProviderProcess::start(&pricing)];
    ps.sort_by(|a, b| a.url.cmp(&b.url)); // the first is asked first
    let a = common::noise(4 << 20, 11);
    let b = common::noise(4 << 20, 12);
    let urls = [ps[0].url.clone(), ps[1].url.clone()];
    let mut flags = FLAGS.to_vec();
    flags.extend(["--provider", &urls[0], "--provider", &urls[1], "--replicas", "2"]);
    let mut short = flags.clone();
    short.extend(["--fetch-timeout", "5"]);
    {
        // --local-cap 0: whatever is at its replicas goes cold by itself
        let mut capped = flags.clone();
        capped.extend(["--local-cap", "0"]);
        let m = cli.mount("drive", &capped);
        write_file(&m.dir.join("a.bin"), &a);
        write_file(&m.dir.join("b.bin"), &b);
        wait_held(&cli, 1, 2);
        let until = Instant::now() + Duration::from_secs(30);
        while cli.ok(&["status"]).contains("cold in 0 segments") {
            assert!(Instant::now() < until, "--local-cap evicted nothing: {}", m.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(m.log().contains("--local-cap: evicted"), "{}", m.log());
    }
    // unmounted, the rest (a later segment, if any) goes too
    assert!(cli.ok(&["evict", "--all-replicated"]).starts_with("evicted "));
    let before = (world.balance(&wallet), world.balance(PAYEE));

    // (c) every range costs more than --max-per-request: EIO, the cap named, nothing paid
    std::fs::write(cli.home.path().join("config.toml"), world.caps_config(10, 1 << 40, 1 << 40)).unwrap();
    {
        let m = cli.mount("drive", &flags);
        let err = std::fs::read(m.dir.join("a.bin")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
        assert!(m.log().contains("exceeds --max-per-request 10"), "{}", m.log());
    }
    assert!(payments(&cli).is_empty());
    assert_eq!((world.balance(&wallet), world.balance(PAYEE)), before, "a refused price moved money");

    // (d) the first provider changes its bytes (every 32 KiB), and is paid before that is
    // seen: it is dropped, the second serves the read
    std::fs::write(cli.home.path().join("config.toml"), world.caps_config(1 << 30, 1 << 40, 1 << 40)).unwrap();
    for piece in pieces(&cli) {
        let (piece, len) = (piece["piece"].as_str().unwrap(), piece["payload_size"].as_u64().unwrap());
        for offset in (200..len).step_by(32 << 10) {
            let flip = format!("{}/admin/flip?piece={piece}&offset={offset}", ps[0].url);
            assert_eq!(ureq::post(&flip).send_empty().unwrap().status(), 204);
        }
    }
    {
        let m = cli.mount("drive", &flags);
        assert_eq!(sha256_file(&m.dir.join("a.bin")), common::sha256_hex(&a), "{}", m.log());
        assert!(m.log().contains("do not match their CIDs: dropped"), "{}", m.log());
        let list = payments(&cli);
        assert!(list.iter().any(|p| p["provider"] == ps[0].url.as_str()), "the liar was paid, then dropped");
        assert!(list.iter().any(|p| p["provider"] == ps[1].url.as_str()));
        let (amount, _) = paid(&list);
        assert_eq!(world.balance(&wallet), before.0 - amount);
    }

    // (e) every replica down: EIO within the fetch timeout, each tier tried named in the log
    for p in &mut ps {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
    let m = cli.mount("drive", &short);
    let started = Instant::now();
    let err = std::fs::read(m.dir.join("b.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let log = m.log();
    assert!(log.contains("bitswap:") && log.contains("filecoin:"), "{log}");
}
