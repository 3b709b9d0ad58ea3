//! The `cidfs` command line against a real store in a temp directory: add, cat, ls, get,
//! import, export, pin, gc, verify, status, and what they do with bad input.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use cid::{Cid, Version};
use cidfs::block::{Block, DAG_CBOR, DAG_PB, RAW};
use cidfs::unixfs::pb::{Data, DataType};
use common::{Cli, car_bytes, same_tree};
use ipld_core::ipld::Ipld;
use ipld_dagpb::{PbLink, PbNode};

fn sample_tree(cli: &Cli) -> std::path::PathBuf {
    cli.write("tree/hello.txt", b"hello\n");
    cli.write("tree/sub/big.bin", &common::noise(3 * 262_144 + 17, 1));
    cli.write("tree/sub/empty", b"");
    std::os::unix::fs::symlink("../hello.txt", cli.path("tree/sub/link")).unwrap();
    cli.path("tree")
}

#[test]
fn add_then_read_back_every_way() {
    let cli = Cli::new();
    let tree = sample_tree(&cli);
    let root = cli.add_q(&tree, &[]);
    assert!(root.starts_with("Qm"), "default is CIDv0: {root}");

    assert_eq!(cli.ok(&["cat", &format!("{root}/hello.txt")]), "hello\n");
    let big = std::fs::read(tree.join("sub/big.bin")).unwrap();
    let out = cli.cmd().args(["cat", &format!("{root}/sub/big.bin")]).output().unwrap();
    assert_eq!(out.stdout, big);
    let range =
        cli.cmd().args(["cat", "-o", "262140", "-l", "10", &format!("/ipfs/{root}/sub/big.bin")]).output().unwrap();
    assert_eq!(range.stdout, &big[262_140..262_150]);

    let ls = cli.ok(&["ls", &format!("{root}/sub")]);
    let rows: Vec<Vec<&str>> = ls.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(
        rows.iter().map(|r| (r[0], r[1])).collect::<Vec<_>>(),
        vec![("big.bin", "file"), ("empty", "file"), ("link", "symlink")]
    );
    assert_eq!(rows[0][2], big.len().to_string());

    cli.ok(&["get", &root, "out"]);
    assert!(same_tree(&tree, &cli.path("out")));
    // into an existing directory: written inside it, named after the last segment
    std::fs::create_dir(cli.path("into")).unwrap();
    cli.ok(&["get", &format!("{root}/sub"), "into"]);
    assert!(same_tree(&tree.join("sub"), &cli.path("into/sub")));
}

#[test]
fn quiet_flags_and_per_entry_output() {
    let cli = Cli::new();
    let tree = sample_tree(&cli);
    let full = cli.ok(&["add", tree.to_str().unwrap()]);
    let last = full.lines().last().unwrap();
    assert!(last.starts_with("added Qm") && last.ends_with(" tree"), "{full}");
    assert_eq!(full.lines().count(), 6, "one line per file, symlink and directory: {full}");
    let q = cli.ok(&["add", "-q", tree.to_str().unwrap()]);
    assert!(q.lines().all(|l| l.starts_with("Qm") && !l.contains(' ')));
    let root = cli.add_q(&tree, &[]);
    assert_eq!(q.lines().last().unwrap(), root);
}

#[test]
fn import_options_match_the_vectors_from_the_cli() {
    let cli = Cli::new();
    let f = cli.write("p251", &common::p251());
    let want: std::collections::HashMap<String, String> = common::rows("unixfs.tsv", '\t')
        .into_iter()
        .filter(|r| r[0] == "p251")
        .map(|r| (r[1].clone(), r[2].clone()))
        .collect();
    assert_eq!(cli.add_q(&f, &[]), want["kubo-v0"]);
    // (the drive has /p251 now: the variants are stored, not linked into it)
    assert_eq!(cli.add_q(&f, &["--pin=false", "--cid-version", "1"]), want["kubo-v1"]);
    assert_eq!(cli.add_q(&f, &["--pin=false", "--profile", "unixfs-v1-2025"]), want["v1-2025"]);
    // explicit options override a profile / imply what Kubo implies
    let explicit = ["--pin=false", "--raw-leaves", "--cid-version", "1", "--chunker", "size-262144"];
    assert_eq!(cli.add_q(&f, &explicit), want["kubo-v1"]);
    let small = cli.add_q(&f, &["--pin=false", "--chunker", "size-1000"]);
    assert_ne!(small, want["kubo-v0"]);
    assert_eq!(cli.cmd().args(["cat", &small]).output().unwrap().stdout, common::p251());
    cli.fails(&["add", "--chunker", "rabin", f.to_str().unwrap()], 1);
}

#[test]
fn hidden_files_follow_kubo() {
    let cli = Cli::new();
    cli.write("d/.secret", b"s");
    cli.write("d/plain", b"p");
    let without = cli.add_q(&cli.path("d"), &[]);
    let with = cli.add_q(&cli.path("d"), &["-H", "--name", "d-hidden"]);
    assert_ne!(without, with);
    assert!(!cli.ok(&["ls", &without]).contains(".secret"));
    assert!(cli.ok(&["ls", &with]).contains(".secret"));
}

#[test]
fn preserved_mode_and_mtime_are_restored_by_get() {
    let cli = Cli::new();
    let f = cli.write("d/script.sh", b"#!/bin/sh\n");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o751)).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_600_000_000, 123);
    std::fs::File::options().write(true).open(&f).unwrap().set_modified(when).unwrap();
    let plain = cli.add_q(&cli.path("d"), &[]);
    let root = cli.add_q(&cli.path("d"), &["--preserve-mode", "--preserve-mtime", "--replace"]);
    assert_ne!(plain, root, "metadata changes the CID");
    cli.ok(&["get", &root, "out"]);
    let md = std::fs::metadata(cli.path("out/script.sh")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o751);
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_600_000_000, 123));
}

#[test]
fn export_import_round_trip_into_a_fresh_store() {
    let a = Cli::new();
    let tree = sample_tree(&a);
    let root = a.add_q(&tree, &[]);
    a.ok(&["export", &root, "-o", "x.car"]);
    let stdout_car = a.cmd().args(["export", &root]).output().unwrap().stdout;
    assert_eq!(std::fs::read(a.path("x.car")).unwrap(), stdout_car, "-o and stdout give the same CAR");

    let b = Cli::new();
    std::fs::copy(a.path("x.car"), b.path("x.car")).unwrap();
    let out = b.ok(&["import", "x.car"]);
    assert_eq!(out.trim(), format!("root {root} pinned"));
    b.ok(&["get", &root, "out"]);
    assert!(same_tree(&tree, &b.path("out")));
    assert!(b.ok(&["pin", "ls"]).contains(&root));
    b.ok(&["verify"]);
    // the export of a sub-path has that node as its root
    let sub =
        a.ok(&["ls", &root]).lines().find(|l| l.starts_with("sub\t")).unwrap().split('\t').nth(3).unwrap().to_string();
    a.ok(&["export", &format!("{root}/sub"), "-o", "sub.car"]);
    let mut r = cidfs::car::CarReader::new(std::fs::File::open(a.path("sub.car")).unwrap()).unwrap();
    assert_eq!(r.roots()[0].to_string(), sub);
    assert_eq!(r.next_block().unwrap().unwrap().1.cid().to_string(), sub, "root block first");
}

fn store_blocks(cli: &Cli) -> u64 {
    let status = cli.ok(&["status"]);
    let line = status.lines().find(|l| l.starts_with("blocks:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn corrupt_car_is_rejected_whole_naming_cid_and_offset() {
    let a = Cli::new();
    let root = a.add_q(&sample_tree(&a), &[]);
    let mut car = a.cmd().args(["export", &root]).output().unwrap().stdout;
    let n = car.len();
    car[n - 1] ^= 0xff; // last byte of the last block
    let b = Cli::new();
    b.write("bad.car", &car);
    let err = b.fails(&["import", "bad.car"], 4);
    assert!(err.contains("at byte") && err.contains("do not hash to this CID"), "{err}");
    assert_eq!(store_blocks(&b), 0, "no block of a rejected CAR is kept");
    assert_eq!(b.ok(&["pin", "ls"]), "");

    car[n - 1] ^= 0xff;
    b.write("cut.car", &car[..n - 100]);
    let err = b.fails(&["import", "cut.car"], 4);
    assert!(err.contains("truncated"), "{err}");
    assert_eq!(store_blocks(&b), 0);

    // one good CAR and one bad in the same import: nothing is imported
    b.write("good.car", &car);
    b.fails(&["import", "good.car", "cut.car"], 4);
    assert_eq!(store_blocks(&b), 0);
    b.ok(&["import", "good.car"]);
    assert!(store_blocks(&b) > 0);
}

#[test]
fn car_with_an_incomplete_root_is_rejected() {
    let leaf = Block::encode(Version::V1, RAW, &b"leaf"[..]).unwrap();
    let mut data = Data::new(DataType::File);
    data.filesize = Some(4);
    data.blocksizes = vec![4];
    let pb = PbNode {
        links: vec![PbLink { cid: *leaf.cid(), name: Some(String::new()), size: Some(4) }],
        data: Some(data.to_bytes().into()),
    };
    let root = Block::encode(Version::V1, DAG_PB, pb.into_bytes()).unwrap();
    let cli = Cli::new();
    cli.write("partial.car", &car_bytes(&[*root.cid()], std::slice::from_ref(&root)));
    let err = cli.fails(&["import", "partial.car"], 4);
    assert!(err.contains(&leaf.cid().to_string()) && err.contains("incomplete"), "{err}");
    assert_eq!(store_blocks(&cli), 0);
    // with the leaf in the store already, the same CAR is complete
    cli.write("leaf.car", &car_bytes(&[*leaf.cid()], std::slice::from_ref(&leaf)));
    cli.ok(&["import", "leaf.car"]);
    cli.ok(&["import", "partial.car"]);
    assert_eq!(cli.ok(&["cat", &root.cid().to_string()]), "leaf");
}

#[test]
fn missing_blocks_give_not_found_locally() {
    let cli = Cli::new();
    let cid = "QmUSjGawaz4ptvREcMKSMJneWCa5j8dAz2wSAAvHtW2rnB";
    let err = cli.fails(&["cat", cid], 3);
    assert!(err.contains(&format!("not found locally: {cid}")), "{err}");
    cli.fails(&["ls", cid], 3);
    cli.fails(&["export", cid, "-o", "x.car"], 3);
    assert!(!cli.path("x.car").exists(), "a failed export leaves no partial file");
    cli.fails(&["pin", "add", cid], 3);
    cli.fails(&["cat", "not-a-cid"], 1);
}

/// Imports `blocks` without roots (so nothing checks or pins them) for read tests.
fn import_loose(cli: &Cli, blocks: &[Block]) {
    cli.write("loose.car", &car_bytes(&[], blocks));
    cli.ok(&["import", "loose.car"]);
}

fn pb_block(data: Data, links: Vec<PbLink>) -> Block {
    Block::encode(Version::V1, DAG_PB, PbNode { links, data: Some(data.to_bytes().into()) }.into_bytes()).unwrap()
}

#[test]
fn malformed_and_absurd_nodes_get_clear_errors() {
    let cli = Cli::new();
    let garbage = Block::encode(Version::V1, DAG_PB, &b"\xff\xff\xff\xff"[..]).unwrap();
    let not_unixfs =
        Block::encode(Version::V1, DAG_PB, PbNode { links: vec![], data: Some(b"\x08\x09"[..].into()) }.into_bytes())
            .unwrap();
    let mut huge = Data::new(DataType::File);
    huge.filesize = Some(1 << 63);
    let huge = pb_block(huge, vec![]);
    // a chain 1000 deep: each node one link to the next, 1 byte at the bottom
    let mut chain = vec![Block::encode(Version::V1, RAW, &b"x"[..]).unwrap()];
    for _ in 0..1000 {
        let mut d = Data::new(DataType::File);
        d.filesize = Some(1);
        d.blocksizes = vec![1];
        let below = *chain.last().unwrap().cid();
        chain.push(pb_block(d, vec![PbLink { cid: below, name: Some(String::new()), size: Some(1) }]));
    }
    let mut all = vec![garbage.clone(), not_unixfs.clone(), huge.clone()];
    all.extend(chain.iter().cloned());
    import_loose(&cli, &all);

    let err = cli.fails(&["cat", &garbage.cid().to_string()], 4);
    assert!(err.contains(&garbage.cid().to_string()) && err.contains("malformed dag-pb"), "{err}");
    let err = cli.fails(&["cat", &not_unixfs.cid().to_string()], 4);
    assert!(err.contains("unknown UnixFS type 9"), "{err}");
    let err = cli.fails(&["cat", &huge.cid().to_string()], 4);
    assert!(err.contains("claims 9223372036854775808 bytes"), "{err}");
    let err = cli.fails(&["cat", &chain.last().unwrap().cid().to_string()], 4);
    assert!(err.contains("deeper than 64 levels"), "{err}");
    cli.fails(&["ls", &garbage.cid().to_string()], 4);
}

#[test]
fn a_node_with_a_million_links_is_refused_at_the_door() {
    let leaf = Block::encode(Version::V1, RAW, &b"x"[..]).unwrap();
    let mut d = Data::new(DataType::File);
    d.blocksizes = vec![1; 1_000_000];
    d.filesize = Some(1_000_000);
    let links = (0..1_000_000).map(|_| PbLink { cid: *leaf.cid(), name: Some(String::new()), size: Some(1) }).collect();
    let big = pb_block(d, links);
    let cli = Cli::new();
    cli.write("big.car", &car_bytes(&[], &[leaf, big.clone()]));
    let err = cli.fails(&["import", "big.car"], 4);
    assert!(err.contains(&big.cid().to_string()) && err.contains("block limit"), "{err}");
}

#[test]
fn unsafe_link_names_never_become_paths() {
    let file = Block::encode(Version::V1, RAW, &b"payload"[..]).unwrap();
    let link = |name: &str| PbLink { cid: *file.cid(), name: Some(name.to_string()), size: Some(7) };
    let names = ["..", ".", "a/b", "../escape", "nul\0byte", "", "ok"];
    let dir = pb_block(Data::new(DataType::Directory), names.iter().map(|n| link(n)).collect());
    let cli = Cli::new();
    cli.write("d.car", &car_bytes(&[*dir.cid()], &[dir.clone(), file]));
    cli.ok(&["import", "d.car"]);
    let d = dir.cid().to_string();
    let ls = cli.ok(&["ls", &d]);
    assert_eq!(ls.lines().map(|l| l.split('\t').next().unwrap()).collect::<Vec<_>>(), vec!["ok"]);
    cli.ok(&["get", &d, "out"]);
    let written: Vec<_> = std::fs::read_dir(cli.path("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(written, vec!["ok"]);
    assert!(!cli.path("escape").exists());
    cli.fails(&["cat", &format!("{d}/..")], 1);
}

#[test]
fn dag_cbor_maps_and_lists_browse_as_directories() {
    let cli = Cli::new();
    let f = cli.write("f.txt", b"linked file\n");
    let file_cid: Cid = cli.add_q(&f, &[]).parse().unwrap();
    let value = Ipld::Map(
        [
            ("name".to_string(), Ipld::String("cidfs".into())),
            ("file".to_string(), Ipld::Link(file_cid)),
            ("list".to_string(), Ipld::List(vec![Ipld::Integer(7), Ipld::Link(file_cid)])),
        ]
        .into(),
    );
    let block = Block::encode(Version::V1, DAG_CBOR, serde_ipld_dagcbor::to_vec(&value).unwrap()).unwrap();
    cli.write("c.car", &car_bytes(&[*block.cid()], std::slice::from_ref(&block)));
    cli.ok(&["import", "c.car"]);
    let c = block.cid().to_string();
    let ls = cli.ok(&["ls", &c]);
    let kinds: Vec<(String, String)> =
        ls.lines().map(|l| l.split('\t')).map(|mut p| (p.next().unwrap().into(), p.next().unwrap().into())).collect();
    assert_eq!(
        kinds,
        vec![("file".into(), "file".into()), ("list".into(), "list".into()), ("name".into(), "string".into())]
    );
    assert_eq!(cli.ok(&["cat", &format!("{c}/file")]), "linked file\n");
    assert_eq!(cli.ok(&["cat", &format!("{c}/list/1")]), "linked file\n");
    assert_eq!(cli.ok(&["cat", &format!("{c}/name")]), "\"cidfs\"\n");
    assert_eq!(cli.ok(&["cat", &format!("{c}/list/0")]), "7\n");
    cli.ok(&["get", &c, "out"]);
    assert_eq!(std::fs::read(cli.path("out/file")).unwrap(), b"linked file\n");
    assert_eq!(std::fs::read(cli.path("out/list/0")).unwrap(), b"7\n");
    // export follows the link into the UnixFS file
    cli.ok(&["export", &c, "-o", "c2.car"]);
    let fresh = Cli::new();
    std::fs::copy(cli.path("c2.car"), fresh.path("c2.car")).unwrap();
    fresh.ok(&["import", "c2.car"]);
    assert_eq!(fresh.ok(&["cat", &format!("{c}/file")]), "linked file\n");
}

#[test]
fn gc_frees_unpinned_blocks_and_keeps_pinned_ones() {
    let cli = Cli::new();
    let keep = cli.write("keep.bin", &common::noise(600_000, 2));
    let drop = cli.write("drop.bin", &common::noise(900_000, 3));
    let keep_cid = cli.add_q(&keep, &[]);
    let drop_cid = cli.add_q(&drop, &["--pin=false"]); // stored, neither pinned nor in the drive
    let before = store_blocks(&cli);
    let report = cli.ok(&["gc"]);
    assert!(report.starts_with("removed 5 blocks"), "{report}"); // 4 leaves + root
    assert!(report.contains("freed 878.") || report.contains("freed 879."), "about 900 kB freed: {report}");
    assert_eq!(store_blocks(&cli), before - 5);
    assert_eq!(cli.cmd().args(["cat", &keep_cid]).output().unwrap().stdout, std::fs::read(&keep).unwrap());
    cli.fails(&["cat", &drop_cid], 3);
    cli.ok(&["verify"]);
    assert!(cli.ok(&["gc"]).starts_with("removed 0 blocks"));
    // Without its pin, what is in the drive is still protected by the drive root.
    cli.ok(&["pin", "rm", &keep_cid]);
    cli.fails(&["pin", "rm", &keep_cid], 1);
    assert!(cli.ok(&["gc"]).starts_with("removed 0 blocks"));
    assert_eq!(cli.cmd().args(["cat", &keep_cid]).output().unwrap().stdout, std::fs::read(&keep).unwrap());
    // Adding again replaces the drive root; the old root stays, as a snapshot in the log.
    cli.add_q(&drop, &[]);
    assert!(cli.ok(&["gc"]).starts_with("removed 0 blocks"));
    assert_eq!(cli.ok(&["log"]).lines().count(), 2);
    assert_eq!(cli.cmd().args(["cat", &drop_cid]).output().unwrap().stdout, std::fs::read(&drop).unwrap());
    let status = cli.ok(&["status"]);
    assert!(status.contains("drive:"), "{status}");
}

#[test]
fn verify_detects_a_flipped_byte_on_disk() {
    let cli = Cli::new();
    let f = cli.write("f.bin", &common::noise(100_000, 4));
    cli.add_q(&f, &[]);
    cli.ok(&["verify"]);
    let seg = std::fs::read_dir(cli.home.path().join("segments")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let out = cli.run(&["verify"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bad block"));
}

#[test]
fn progress_shows_on_a_terminal_only() {
    let cli = Cli::new();
    let f = cli.write("big.bin", &common::noise(8 << 20, 5));
    let out = cli.run(&["add", f.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "no progress when not on a terminal: {:?}", String::from_utf8_lossy(&out.stderr));
    // under a pseudo-terminal (script(1)), the bar is drawn
    let bin = env!("CARGO_BIN_EXE_cidfs");
    let cmd = format!("{bin} add --pin=false --cid-version 1 {}", f.display());
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("CIDFS_HOME", cli.home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("adding") && screen.contains("MiB"), "{screen}");
}

#[test]
fn a_store_in_use_is_reported() {
    let cli = Cli::new();
    let _held = cidfs::store::Store::open(cli.home.path()).unwrap();
    let err = cli.fails(&["status"], 5);
    assert!(err.contains("in use by another cidfs process"), "{err}");
}

#[test]
fn help_documents_exit_codes() {
    let cli = Cli::new();
    let help = cli.ok(&["--help"]);
    for needle in ["Exit codes:", "not found locally", "invalid data", "CIDFS_HOME"] {
        assert!(help.contains(needle), "{needle}");
    }
}

#[test]
fn reads_refuse_directories_and_paths_through_files() {
    let cli = Cli::new();
    let root = cli.add_q(&sample_tree(&cli), &[]);
    let err = cli.fails(&["cat", &root], 1);
    assert!(err.contains("is a directory"), "{err}");
    let err = cli.fails(&["cat", &format!("{root}/hello.txt/deeper")], 1);
    assert!(err.contains("not a directory"), "{err}");
    let err = cli.fails(&["cat", &format!("{root}/sub/link")], 1);
    assert!(err.contains("is a symlink to \"../hello.txt\""), "{err}");
}

#[test]
fn add_refuses_what_unixfs_cannot_hold_and_adds_nothing() {
    use std::os::unix::ffi::OsStrExt;
    let cli = Cli::new();
    cli.write("d/ok.txt", b"ok");
    let fifo = cli.path("d/pipe");
    nix_mkfifo(&fifo);
    let err = cli.fails(&["add", cli.path("d").to_str().unwrap()], 1);
    assert!(err.contains("pipe") && err.contains("unsupported file type"), "{err}");
    assert_eq!(store_blocks(&cli), 0, "a failed add leaves nothing behind");
    std::fs::remove_file(&fifo).unwrap();
    let bad = cli.path("d").join(std::ffi::OsStr::from_bytes(b"latin1-\xe9"));
    std::fs::write(&bad, b"x").unwrap();
    let err = cli.fails(&["add", cli.path("d").to_str().unwrap()], 1);
    assert!(err.contains("not valid UTF-8"), "{err}");
    assert_eq!(store_blocks(&cli), 0);
}

fn nix_mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

#[test]
fn identity_cids_read_without_any_store() {
    let cli = Cli::new();
    let mh = multihash::Multihash::<64>::wrap(cidfs::block::IDENTITY, b"inline bytes").unwrap();
    let cid = Cid::new_v1(RAW, mh).to_string();
    assert_eq!(cli.ok(&["cat", &cid]), "inline bytes");
    assert_eq!(store_blocks(&cli), 0);
    // a directory linking to an identity CID imports and reads without storing it
    let dir = pb_block(
        Data::new(DataType::Directory),
        vec![PbLink { cid: cid.parse().unwrap(), name: Some("inline.txt".into()), size: Some(12) }],
    );
    cli.write("d.car", &car_bytes(&[*dir.cid()], std::slice::from_ref(&dir)));
    cli.ok(&["import", "--no-pin", "d.car"]);
    assert_eq!(cli.ok(&["cat", &format!("{}/inline.txt", dir.cid())]), "inline bytes");
    assert_eq!(store_blocks(&cli), 1, "only the directory; the identity CID is never stored");
}

#[test]
fn add_never_replaces_a_drive_entry_unless_asked() {
    let cli = Cli::new();
    cli.write("doc/a.txt", b"first\n");
    let first = cli.add_q(&cli.path("doc"), &[]);
    // the same name again, with other content: refused, nothing added, the drive unchanged
    cli.write("doc/a.txt", b"second\n");
    let err = cli.fails(&["add", "-Q", cli.path("doc").to_str().unwrap()], 6);
    assert!(err.contains("/doc already exists in the drive") && err.contains("--replace"), "{err}");
    assert_eq!(cli.ok(&["cat", "/doc/a.txt"]), "first\n");
    let refused = cli.run(&["add", cli.path("doc").to_str().unwrap()]);
    assert!(refused.stdout.is_empty(), "a refused add says only why, not what it would have added");
    let one_file = cli.write("one.txt", b"one\n");
    let err = cli.fails(&["add", "--name", "doc", one_file.to_str().unwrap()], 6);
    assert!(err.contains("/doc already exists"), "{err}");
    assert_eq!(cli.ok(&["cat", "/doc/a.txt"]), "first\n", "--name does not replace either");
    // two paths that would share a name are refused before anything is added
    cli.write("other/doc/x", b"x");
    let err = cli.fails(&["add", "--name", "d", "a", "b"], 2);
    assert!(err.contains("--name needs exactly one path"), "{err}");
    let err = cli.fails(&["add", cli.path("other/doc").to_str().unwrap(), cli.path("doc").to_str().unwrap()], 6);
    assert!(err.contains("doc"), "{err}");

    // --replace: says what it replaced and which snapshot still holds it
    let before = cli.ok(&["log"]);
    let last_seq = before.lines().last().unwrap().split('\t').next().unwrap().to_string();
    let out = cli.run(&["add", "-Q", "--replace", cli.path("doc").to_str().unwrap()]);
    assert!(out.status.success());
    let second = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("replaced /doc in the drive (was {first})")), "{err}");
    assert!(err.contains(&format!("snapshot {last_seq}")), "{err}");
    assert_eq!(cli.ok(&["cat", "/doc/a.txt"]), "second\n");
    assert_eq!(
        cli.ok(&["ls", "/"]).lines().find(|l| l.starts_with("doc\t")).unwrap().split('\t').nth(3),
        Some(&*second)
    );
    // the snapshot named still holds the old tree
    let old_root = before.lines().last().unwrap().split('\t').nth(2).unwrap().to_string();
    assert_eq!(cli.ok(&["cat", &format!("{old_root}/doc/a.txt")]), "first\n");
    let help = cli.ok(&["--help"]);
    assert!(help.contains("6  a name add/import would give in the drive is taken"), "{help}");
}

#[test]
fn import_refuses_a_taken_drive_name_too_and_its_counts_add_up() {
    let cli = Cli::new();
    let root = cli.add_q(&sample_tree(&cli), &["--pin=false"]);
    cli.ok(&["export", &root, "-o", "tree.car"]);
    let out = cli.run(&["import", "tree.car"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // the blocks read, those new to the store (not more than read), and the drive name
    assert!(err.contains("in the drive as /tree"), "{err}");
    assert!(err.contains("0 of them new to the store"), "all were added before: {err}");
    // the same CAR again: the same content under its name, no change
    cli.ok(&["import", "tree.car"]);
    // another DAG in a CAR of the same name: refused before any block is read
    cli.write("other/x.txt", b"other\n");
    let other = cli.add_q(&cli.path("other"), &["--pin=false"]);
    std::fs::create_dir(cli.path("elsewhere")).unwrap();
    cli.ok(&["export", &other, "-o", "elsewhere/tree.car"]);
    let err = cli.fails(&["import", "elsewhere/tree.car"], 6);
    assert!(err.contains("/tree already exists in the drive"), "{err}");
    assert_eq!(cli.ok(&["cat", "/tree/hello.txt"]), "hello\n");
    let out = cli.run(&["import", "--replace", "elsewhere/tree.car"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("replaced /tree in the drive (was {root})")));
    assert_eq!(cli.ok(&["cat", "/tree/x.txt"]), "other\n");
}

#[test]
fn ls_cat_and_get_take_kubo_paths_and_drive_paths() {
    let cli = Cli::new();
    // an empty drive lists as empty
    assert_eq!(cli.ok(&["ls", "/"]), "");
    let err = cli.fails(&["cat", "/nothing.txt"], 3);
    assert!(err.contains("the drive is empty"), "{err}");
    let root = cli.add_q(&sample_tree(&cli), &[]);
    // Kubo's /ipfs/CID/path form and the bare CID/path form name the same thing
    assert_eq!(cli.ok(&["cat", &format!("/ipfs/{root}/hello.txt")]), "hello\n");
    assert_eq!(cli.ok(&["ls", &format!("/ipfs/{root}/sub")]), cli.ok(&["ls", &format!("{root}/sub")]));
    // a path in the drive
    let top = cli.ok(&["ls", "/"]);
    assert!(top.starts_with(&format!("tree\tdir\t-\t{root}")), "{top}");
    assert_eq!(cli.ok(&["cat", "/tree/hello.txt"]), "hello\n");
    assert_eq!(cli.ok(&["ls", "/tree/sub"]), cli.ok(&["ls", &format!("{root}/sub")]));
    cli.ok(&["get", "/tree/sub", cli.path("out").to_str().unwrap()]);
    assert!(same_tree(&cli.path("tree/sub"), &cli.path("out")));
    let err = cli.fails(&["cat", "/tree/missing.txt"], 1);
    assert!(err.contains("/tree/missing.txt: no such file or directory in the drive"), "{err}");
    let err = cli.fails(&["ls", "not-a-cid"], 1);
    assert!(err.contains("/path for a path in the drive"), "{err}");
}

#[test]
fn verify_says_which_roots_it_checked() {
    let cli = Cli::new();
    cli.add_q(&sample_tree(&cli), &[]);
    cli.write("second/x", b"x");
    cli.add_q(&cli.path("second"), &[]);
    let pins = cli.ok(&["pin", "ls"]).lines().count();
    assert_eq!(pins, 2);
    let out = cli.ok(&["verify"]);
    // two pins, the drive root and its sidecar (what add kept of the sources' mtimes), and
    // two snapshots (the second is the drive root itself)
    assert!(out.contains("the DAGs under 5 roots (2 pins, the drive and its sidecar, 2 snapshots;"), "{out}");
}

/// A dag-pb directory node linking `name` -> `cid`.
fn pb_dir(entries: &[(&str, Cid)]) -> Vec<u8> {
    let links = entries.iter().map(|(n, c)| PbLink { cid: *c, name: Some(n.to_string()), size: Some(1) }).collect();
    PbNode { links, data: Some(Data::new(DataType::Directory).to_bytes().into()) }.into_bytes().to_vec()
}

#[test]
fn a_truncated_digest_names_no_block_anywhere() {
    use multihash::Multihash;
    let cli = Cli::new();
    // a sha2-512 CID with a 0-byte digest would match any bytes: one root, two files
    let empty_digest = Cid::new_v1(RAW, Multihash::<64>::wrap(0x13, &[]).unwrap());
    for content in [&b"one file"[..], b"another file"] {
        let car = car_bytes_raw(&empty_digest, content);
        cli.write("trunc.car", &car);
        let err = cli.fails(&["import", "--no-pin", "trunc.car"], 4);
        assert!(err.contains("digest is 0 bytes, not the 64"), "{err}");
    }
    assert_eq!(store_blocks(&cli), 0);

    // one already in a store (from before this check) is reported by verify
    let good = cli.write("good.txt", b"hello");
    let cid: Cid = cli.add_q(&good, &["--cid-version", "1", "--pin=false"]).parse().unwrap();
    let truncated = Cid::new_v1(RAW, Multihash::<64>::wrap(cid.hash().code(), &cid.hash().digest()[..4]).unwrap());
    {
        use redb::ReadableTable;
        const BLOCKS: redb::TableDefinition<&[u8], (u32, u64, u32, u8)> = redb::TableDefinition::new("blocks_v1");
        let db = redb::Database::create(cli.home.path().join("cidfs.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(BLOCKS).unwrap();
            let loc = t.get(cid.to_bytes().as_slice()).unwrap().unwrap().value();
            t.insert(truncated.to_bytes().as_slice(), loc).unwrap();
        }
        txn.commit().unwrap();
    }
    let out = cli.run(&["verify"]);
    assert_eq!(out.status.code(), Some(4));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("bad block {truncated}")) && stdout.contains("digest is 4 bytes"), "{stdout}");
}

/// A CARv1 holding one raw block `data` under `cid`, whatever `cid` says.
fn car_bytes_raw(cid: &Cid, data: &[u8]) -> Vec<u8> {
    let mut w = cidfs::car::CarWriter::new(Vec::new(), &[*cid]).unwrap();
    w.write(cid, &bytes::Bytes::copy_from_slice(data)).unwrap();
    w.finish().unwrap()
}

#[test]
fn links_inside_identity_cids_are_followed_like_any_other() {
    use multihash::Multihash;
    // root -> an inline (identity) directory -> a leaf block, as `ipfs add --inline` makes
    let leaf = Block::encode(Version::V1, RAW, &b"below the inline node"[..]).unwrap();
    let inline = Cid::new_v1(DAG_PB, Multihash::<64>::wrap(0, &pb_dir(&[("leaf", *leaf.cid())])).unwrap());
    let root = Block::encode(Version::V1, DAG_PB, pb_dir(&[("inline", inline)])).unwrap();
    let cli = Cli::new();
    // import: the leaf below the inline node must be there
    cli.write("partial.car", &car_bytes(&[*root.cid()], std::slice::from_ref(&root)));
    let err = cli.fails(&["import", "partial.car"], 4);
    assert!(err.contains(&leaf.cid().to_string()) && err.contains("incomplete"), "{err}");
    cli.write("whole.car", &car_bytes(&[*root.cid()], &[root.clone(), leaf.clone()]));
    cli.ok(&["import", "whole.car"]);
    assert_eq!(cli.ok(&["cat", &format!("{}/inline/leaf", root.cid())]), "below the inline node");
    // gc keeps it (the DAG is pinned), and verify walks through the inline node
    cli.ok(&["gc"]);
    assert_eq!(cli.ok(&["cat", &format!("{}/inline/leaf", root.cid())]), "below the inline node");
    cli.ok(&["verify"]);
    // export carries it
    cli.ok(&["export", &root.cid().to_string(), "-o", "out.car"]);
    let other = Cli::new();
    std::fs::copy(cli.path("out.car"), other.path("out.car")).unwrap();
    other.ok(&["import", "out.car"]);
    assert_eq!(other.ok(&["cat", &format!("{}/inline/leaf", root.cid())]), "below the inline node");
}

#[test]
fn the_store_is_its_owners_alone_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let cli = Cli::new();
    // with a umask that would leave everything open to everyone
    let out = std::process::Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" add \"$1\""])
        .arg(env!("CARGO_BIN_EXE_cidfs"))
        .arg(sample_tree(&cli))
        .env("CIDFS_HOME", cli.home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    let walk = |root: &std::path::Path| {
        let mut bad = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(p) = stack.pop() {
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                if mode(&p) != 0o700 {
                    bad.push(format!("{} {:o}", p.display(), mode(&p)));
                }
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else if mode(&p) & 0o077 != 0 {
                bad.push(format!("{} {:o}", p.display(), mode(&p)));
            }
        }
        bad
    };
    assert_eq!(walk(cli.home.path()), Vec::<String>::new());
    // a store made loose (as before) is tightened on open
    std::fs::set_permissions(cli.home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let seg = std::fs::read_dir(cli.home.path().join("segments")).unwrap().next().unwrap().unwrap().path();
    std::fs::set_permissions(&seg, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(cli.home.path().join("cidfs.redb"), std::fs::Permissions::from_mode(0o644)).unwrap();
    cli.ok(&["pin", "ls"]);
    assert_eq!(walk(cli.home.path()), Vec::<String>::new());
}

#[test]
fn get_drops_setuid_bits_unless_asked_and_ls_escapes_names_on_a_terminal() {
    use std::os::unix::fs::PermissionsExt;
    let cli = Cli::new();
    let f = cli.write("d/tool", b"#!/bin/sh\n");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let root = cli.add_q(&cli.path("d"), &["--preserve-mode"]);
    cli.ok(&["get", &root, "plain"]);
    assert_eq!(std::fs::metadata(cli.path("plain/tool")).unwrap().mode() & 0o7777, 0o755);
    cli.ok(&["get", "--preserve-special", &root, "special"]);
    assert_eq!(std::fs::metadata(cli.path("special/tool")).unwrap().mode() & 0o7777, 0o4755);

    // a name with a newline: escaped on a terminal, as it is with --raw or in a pipe
    cli.write("n/two\nrows", b"x");
    let root = cli.add_q(&cli.path("n"), &["--pin=false"]);
    let piped = cli.ok(&["ls", &root]);
    assert!(piped.starts_with("two\nrows\tfile"), "{piped:?}");
    let bin = env!("CARGO_BIN_EXE_cidfs");
    let on_terminal = |args: &str| {
        let out = std::process::Command::new("script")
            .args(["-qec", &format!("{bin} ls {args}"), "/dev/null"])
            .env("CIDFS_HOME", cli.home.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let screen = on_terminal(&root);
    assert!(screen.contains("two\\nrows\tfile"), "{screen:?}");
    assert!(on_terminal(&format!("--raw {root}")).contains("two\r\nrows"), "--raw prints it as it is");
}

#[test]
fn commp_prints_piece_cids_of_files_and_stdin() {
    let cli = Cli::new();
    let data = common::noise(70_000, 5);
    let f = cli.write("payload.bin", &data);
    let piece = cidfs::filecoin::commp::commp(&data);
    let f = f.to_str().unwrap();
    assert_eq!(cli.ok(&["commp", "-q", f]).trim(), piece.cid_v2().to_string());
    assert_eq!(cli.ok(&["commp", "-q", "--v1", f]).trim(), piece.cid_v1().to_string());
    let json = cli.ok(&["commp", "-q", "--json", f]);
    assert_eq!(common::json_str(&json, "piece"), piece.cid_v2().to_string());
    assert_eq!(common::json_str(&json, "piece_v1"), piece.cid_v1().to_string());
    assert!(json.contains("\"payload_size\":70000,\"padded_size\":131072"), "{json}");
    // from stdin, the same
    let mut c = cli.cmd();
    c.args(["commp", "-q", "-"]).stdin(std::fs::File::open(f).unwrap());
    assert_eq!(String::from_utf8(c.output().unwrap().stdout).unwrap().trim(), piece.cid_v2().to_string());
    // a file that is not there: says which
    let err = cli.fails(&["commp", "nope.bin"], 1);
    assert!(err.contains("nope.bin"), "{err}");
}

#[test]
fn the_master_key_exports_and_imports_and_is_never_replaced_silently() {
    let (a, b) = (Cli::new(), Cli::new());
    let form = a.ok(&["key", "export"]);
    assert!(form.starts_with("cidfs-master-key-v1:"), "{form}");
    assert_eq!(a.ok(&["key", "export"]), form, "made once, then kept");
    let path = a.home.path().join("filecoin/master.key");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    // another store takes it back, from the argument or from stdin
    b.ok(&["key", "import", form.trim()]);
    assert_eq!(b.ok(&["key", "export"]), form);
    // a store with another key refuses it, unless told
    let c = Cli::new();
    c.ok(&["key", "export"]);
    let err = c.fails(&["key", "import", form.trim()], 6);
    assert!(err.contains("different master key"), "{err}");
    let mut cmd = c.cmd();
    cmd.args(["key", "import", "--replace"]).stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), form.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(c.ok(&["key", "export"]), form);
    // a mistyped form: invalid data, nothing written
    let mut bad = form.trim().to_string();
    let at = bad.len() - 12;
    let digit = if &bad[at..at + 1] == "0" { "1" } else { "0" };
    bad.replace_range(at..at + 1, digit);
    let err = Cli::new().fails(&["key", "import", &bad], 4);
    assert!(err.contains("checksum") || err.contains("hex"), "{err}");
}

#[test]
fn the_wallet_prints_its_address_and_imports_a_key_only_when_told_to_replace() {
    let a = Cli::new();
    let addr = a.ok(&["wallet"]);
    assert!(addr.trim().starts_with("0x") && addr.trim().len() == 42, "{addr}");
    assert_eq!(a.ok(&["wallet", "address"]), addr, "made once, then kept");
    let path = a.home.path().join("filecoin/wallet.key");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    // anvil's first dev key, as Ethereum tools write it
    let key = a.write("dev.key", b"0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80\n");
    let err = a.fails(&["wallet", "import", key.to_str().unwrap()], 6);
    assert!(err.contains("different wallet"), "{err}");
    assert_eq!(a.ok(&["wallet"]), addr, "unchanged");
    let b = Cli::new();
    assert_eq!(b.ok(&["wallet", "import", key.to_str().unwrap()]).trim(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    assert_eq!(b.ok(&["wallet"]).trim(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    a.ok(&["wallet", "import", "--replace", key.to_str().unwrap()]);
    assert_eq!(a.ok(&["wallet"]).trim(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    // not a key: invalid data, named
    let bad = a.write("bad.key", b"hello");
    let err = a.fails(&["wallet", "import", bad.to_str().unwrap()], 4);
    assert!(err.contains("bad.key") && err.contains("not a wallet key"), "{err}");
}

#[test]
fn evict_says_what_to_evict_and_payments_start_empty() {
    let a = Cli::new();
    let err = a.fails(&["evict"], 2);
    assert!(err.contains("--all-replicated"), "{err}");
    // nothing replicated yet: nothing evicted, nothing lost
    let data = a.write("f.bin", &common::noise(2 << 20, 3));
    let cid = a.add_q(&data, &[]);
    assert_eq!(a.ok(&["evict", "--all-replicated"]).trim(), "evicted 0 segments (0 blocks, 0 B); 0 hot copies dropped");
    assert_eq!(a.run(&["cat", &cid]).stdout.len(), 2 << 20);
    assert_eq!(a.ok(&["payments"]).trim(), "no payments\n0 payments, 0 atomic units in all");
    assert_eq!(a.ok(&["payments", "--json"]), "");
    let status = a.ok(&["status"]);
    assert!(status.contains("0 B cold in 0 segments") && status.contains("payments are off"), "{status}");
    // caps and allow-lists are checked wherever they come from
    for (key, value) in [("CIDFS_MAX_PER_REQUEST", "ten"), ("CIDFS_PAY_ASSETS", "0x12"), ("CIDFS_PAY_NETWORKS", "base")]
    {
        let out = a.cmd().arg("status").env(key, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{key}={value}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(&key[6..].to_ascii_lowercase().replace('_', "-")[..7]));
    }
    // a provider that charges needs everything a payer must be told
    let err = a.fails(&["provider", "serve", "--listen", "127.0.0.1:0", "--price-per-gib", "10"], 2);
    assert!(err.contains("needs --network"), "{err}");
    let payee = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
    let err = a.fails(&["provider", "serve", "--listen", "127.0.0.1:0", "--pay-to", payee], 2);
    assert!(err.contains("need --price-per-gib"), "{err}");
}
