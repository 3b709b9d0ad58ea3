//! Interoperability with real third-party IPFS implementations:
//! - real Kubo computes the same CIDs as `cidfs add` for the same trees (including the
//!   exact HAMT sharding threshold, where Kubo and the JS importer differ);
//! - Helia imports CARs exported by cidfs and reads every file back byte for byte;
//! - cidfs imports CARs written by Helia;
//! - `cidfs commp` gives the piece CIDs of `@filoz/synapse-core` (v2) and
//!   `@web3-storage/data-segment` (v1) at every Fr32 boundary size.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Cli, run_ok, sha256_hex};

/// A tree with the chunking and layout edge cases.
fn edge_tree(cli: &Cli) -> std::path::PathBuf {
    let sizes = [0usize, 1, 262_143, 262_144, 262_145, 3 * 262_144 + 1];
    for (i, size) in sizes.iter().enumerate() {
        cli.write(&format!("tree/size-{size}.bin"), &common::noise(*size, 20 + i as u64));
    }
    // 175 leaves: the first file whose DAG needs a second level of internal nodes
    cli.write("tree/deep/175-leaves.bin", &common::noise(174 * 262_144 + 10, 30));
    cli.write("tree/deep/nested/ünïcödé name.txt", "ünïcödé\n".as_bytes());
    std::os::unix::fs::symlink("../size-1.bin", cli.path("tree/deep/link")).unwrap();
    cli.path("tree")
}

/// A directory whose links estimate (name bytes + 34-byte CIDv0) is exactly `total`.
fn estimate_dir(cli: &Cli, name: &str, total: usize) -> std::path::PathBuf {
    let n = 2048;
    let per = total.div_ceil(n);
    for i in 0..n {
        let len = if i == 0 { total - per * (n - 1) - 34 } else { per - 34 };
        cli.write(&format!("{name}/{i:0>len$}"), format!("{i}\n").as_bytes());
    }
    cli.path(name)
}

fn kubo_cids(paths: &[&Path]) -> Vec<String> {
    let script = common::interop_dir().join("kubo_add.py");
    let out = run_ok(Command::new("python3").arg(script).args(paths));
    out.lines().map(|l| l.split('\t').next().unwrap().to_string()).collect()
}

#[test]
fn real_kubo_and_cidfs_give_the_same_cids() {
    let cli = Cli::new();
    let tree = edge_tree(&cli);
    let exact = estimate_dir(&cli, "hamt-exact", 262_144);
    let under = estimate_dir(&cli, "hamt-under", 262_143);
    let kubo = kubo_cids(&[&tree, &exact, &under]);
    let ours: Vec<String> = [&tree, &exact, &under].iter().map(|p| cli.add_q(p, &[])).collect();
    assert_eq!(ours, kubo);
    // and the threshold really is where sharding starts
    let ls_exact = cli.ok(&["ls", &ours[1]]);
    let names: Vec<&str> = ls_exact.lines().map(|l| l.split('\t').next().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_ne!(names, sorted, "a HAMT lists in hash order");
    let ls_under = cli.ok(&["ls", &ours[2]]);
    let names: Vec<&str> = ls_under.lines().map(|l| l.split('\t').next().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "a plain directory lists in name order");
}

/// What Helia should report for `root` over the source tree: path, type, size, sha256.
fn expected_listing(root: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let rel = dir.strip_prefix(base).unwrap().to_string_lossy().into_owned();
        out.push(format!("{rel}\tdir\t-\t-"));
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let ft = std::fs::symlink_metadata(&p).unwrap().file_type();
            if ft.is_symlink() {
                out.push(format!("{rel}\tsymlink\t-\t{}", std::fs::read_link(&p).unwrap().display()));
            } else if ft.is_dir() {
                walk(base, &p, out);
            } else {
                let data = std::fs::read(&p).unwrap();
                out.push(format!("{rel}\tfile\t{}\t{}", data.len(), sha256_hex(&data)));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn helia_check(car: &Path) -> (String, Vec<String>) {
    let dir = common::interop_dir();
    let out = run_ok(Command::new("node").arg(dir.join("helia_car.mjs")).arg("check").arg(car));
    let mut lines = out.lines();
    let root = lines.next().unwrap().strip_prefix("root\t").unwrap().to_string();
    let mut rest: Vec<String> = lines.map(str::to_string).collect();
    rest.sort();
    (root, rest)
}

#[test]
fn helia_imports_cidfs_exports_and_reads_every_file() {
    let cli = Cli::new();
    let tree = edge_tree(&cli);
    let want = expected_listing(&tree);
    // (stored only: each variant would otherwise take the drive name `tree`)
    for flags in
        [&["--pin=false"][..], &["--pin=false", "--cid-version", "1"], &["--pin=false", "--profile", "unixfs-v1-2025"]]
    {
        let root = cli.add_q(&tree, flags);
        cli.ok(&["export", &root, "-o", "tree.car"]);
        let (helia_root, listing) = helia_check(&cli.path("tree.car"));
        assert_eq!(helia_root, root, "{flags:?}");
        assert_eq!(listing, want, "{flags:?}");
    }
    // a HAMT-sharded directory too
    let hamt = estimate_dir(&cli, "hamt", 262_144);
    let root = cli.add_q(&hamt, &[]);
    cli.ok(&["export", &root, "-o", "hamt.car"]);
    let (_, listing) = helia_check(&cli.path("hamt.car"));
    assert_eq!(listing, expected_listing(&hamt));
}

#[test]
fn cidfs_imports_cars_written_by_helia() {
    let cli = Cli::new();
    let data = common::noise(3 << 20, 40);
    let file = cli.write("input.bin", &data);
    let dir = common::interop_dir();
    let helia_root =
        run_ok(Command::new("node").arg(dir.join("helia_car.mjs")).arg("make").arg(&file).arg(cli.path("helia.car")));
    let helia_root = helia_root.trim();
    let out = cli.ok(&["import", "helia.car"]);
    assert_eq!(out.trim(), format!("root {helia_root} pinned"));
    assert_eq!(cli.cmd().args(["cat", helia_root]).output().unwrap().stdout, data);
    // Helia with Kubo's parameters, Kubo's defaults in cidfs: the same DAG
    assert_eq!(cli.add_q(&file, &[]), helia_root);
    cli.ok(&["verify"]);
}

#[test]
fn commp_matches_synapse_core_and_data_segment_at_every_fr32_boundary() {
    let cli = Cli::new();
    let sizes = [127usize, 128, 254, 1016, 1017, 2032, 65024, 65025, (1 << 20) + 3, (16 << 20) + 7];
    let files: Vec<std::path::PathBuf> =
        sizes.iter().map(|n| cli.write(&format!("payload-{n}.bin"), &common::noise(*n, *n as u64))).collect();
    let script = common::interop_dir().join("commp.mjs");
    let theirs = run_ok(Command::new("node").arg(script).args(&files));
    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(theirs.len(), sizes.len());
    for ((file, size), line) in files.iter().zip(sizes).zip(theirs) {
        let json = cli.ok(&["commp", "-q", "--json", file.to_str().unwrap()]);
        let mine = format!(
            "{} {} {}",
            common::json_str(&json, "piece"),
            common::json_str(&json, "piece_v1"),
            json.split("\"padded_size\":").nth(1).unwrap().trim_end_matches(|c: char| !c.is_ascii_digit())
        );
        assert_eq!(mine, line, "a payload of {size} bytes");
    }
}

/// Our FWSS extraData (create a data set, add pieces, schedule removals) equals what
/// `@filoz/synapse-core/typed-data` signs, byte for byte, for the same key and inputs.
#[test]
fn fwss_extra_data_equals_synapse_core_typed_data_byte_for_byte() {
    use alloy_primitives::{Address, U256};
    use cidfs::filecoin::{fwss, wallet::Wallet};
    let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let wallet = Wallet::parse(key, "test").unwrap();
    let payee: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".parse().unwrap();
    let piece = cidfs::filecoin::commp::commp(&common::noise(5000, 1)).cid_v2();
    let other = cidfs::filecoin::commp::commp(&common::noise(300, 2)).cid_v2();
    let meta = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    let set_meta = meta(&[("withCDN", ""), ("source", "cidfs")]);
    let piece_meta = [meta(&[("segment", "12")]), meta(&[])];
    for chain in [fwss::Chain::CALIBRATION, fwss::Chain::MAINNET] {
        let input = format!(
            r#"{{"key":"{key}","chain":{},"payee":"{payee}","clientDataSetId":"123456789012345678901234567890","metadata":[["withCDN",""],["source","cidfs"]],"nonce":"42424242424242","pieces":[["{piece}",[["segment","12"]]],["{other}",[]]],"pieceIds":["3","17"]}}"#,
            chain.id
        );
        let theirs = run_ok(Command::new("node").arg(common::interop_dir().join("fwss_sign.mjs")).arg(&input));
        let id: U256 = "123456789012345678901234567890".parse().unwrap();
        let create = fwss::to_hex(&fwss::create_data_set(&wallet, &chain, id, payee, &set_meta));
        let pieces = vec![(piece.to_bytes(), piece_meta[0].clone()), (other.to_bytes(), piece_meta[1].clone())];
        let add = fwss::to_hex(&fwss::add_pieces(&wallet, &chain, id, U256::from(42424242424242u64), &pieces));
        let removals = fwss::to_hex(&fwss::schedule_removals(&wallet, &chain, id, &[3, 17]));
        assert_eq!(common::json_str(&theirs, "address"), wallet.address().to_string(), "chain {}", chain.id);
        assert_eq!(common::json_str(&theirs, "create"), create, "CreateDataSet on chain {}", chain.id);
        assert_eq!(common::json_str(&theirs, "add"), add, "AddPieces on chain {}", chain.id);
        assert_eq!(common::json_str(&theirs, "removals"), removals, "SchedulePieceRemovals on chain {}", chain.id);
    }
}

/// synapse-core's own PDP client (`@filoz/synapse-core/sp` and `/piece`) against `cidfs
/// provider serve`: ping, one-shot and streaming uploads, findPiece, downloadAndValidate,
/// then a data set created, pieces added, read back and removed, and a stranger's
/// signature refused.
#[test]
fn synapse_core_uploads_finds_downloads_and_manages_data_sets_on_cidfs_provider() {
    let provider = common::provider::ProviderProcess::start(&["--confirm-delay", "300ms"]);
    let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let out = run_ok(Command::new("node").arg(common::interop_dir().join("provider_client.mjs")).args([
        provider.url.as_str(),
        &provider.payee(),
        key,
    ]));
    for step in [
        "ping",
        "uploadPieceStreaming",
        "downloadAndValidate",
        "addPieces",
        "schedulePieceDeletion",
        "a stranger is refused",
    ] {
        assert!(out.contains(&format!("ok {step}")), "{step} missing from:\n{out}");
    }
}
