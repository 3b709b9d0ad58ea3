//! Reading through a real mount: the drive, `/.ipfs/<CID>`, read-only mounts, HAMT
//! directories, raw leaves and dag-cbor, missing and malformed blocks, DAG bombs.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cid::{Cid, Version};
use cidfs::block::{Block, DAG_PB, RAW};
use common::mount::*;
use common::{Cli, getxattr, run_ok, same_tree};

#[test]
fn ordinary_tools_read_the_drive() {
    let cli = Cli::new();
    let tree = sample(&cli);
    let root = cli.add_q(&tree, &["--chunker", "size-4096"]); // a 3-level DAG for big.bin
    let listing = cli.ok(&["ls", &root]); // (the CLI cannot open the store while it is mounted)
    let file_cid =
        listing.lines().find(|l| l.starts_with("big.bin\t")).unwrap().split('\t').nth(3).unwrap().to_string();
    // no hot copies: every byte read comes through cidfs (they have a test of their own)
    let m = cli.mount("mnt", &["--hot-size", "0"]);
    let t = m.dir.join("tree");

    run_ok(Command::new("cp").arg("-r").arg(&t).arg(cli.path("copy")));
    assert!(same_tree(&tree, &cli.path("copy")), "cp -r out of the mount differs");

    fs::create_dir(cli.path("untar")).unwrap();
    let tar = run_ok(Command::new("sh").arg("-c").arg(format!(
        "tar cf - -C {} tree | tar xf - -C {}",
        m.dir.display(),
        cli.path("untar").display()
    )));
    assert!(tar.is_empty());
    assert!(same_tree(&tree, &cli.path("untar/tree")), "tar of the mount differs");

    let find_src = run_ok(Command::new("find").arg(".").current_dir(&tree));
    let find_mnt = run_ok(Command::new("find").arg(".").current_dir(&t));
    assert_eq!(sorted_lines(&find_mnt), sorted_lines(&find_src));
    let types = run_ok(Command::new("find").args([".", "-type", "d"]).current_dir(&t));
    assert_eq!(sorted_lines(&types), vec![".", "./a", "./a/b", "./a/b/c"]);

    let du = run_ok(Command::new("du").args(["-b", "big.bin"]).current_dir(&t));
    assert!(du.starts_with("5000000\t"), "{du}");
    let sum = run_ok(Command::new("sha256sum").arg(t.join("big.bin")));
    assert!(sum.starts_with(&common::sha256_hex(&fs::read(tree.join("big.bin")).unwrap())));

    let data = fs::read(tree.join("big.bin")).unwrap();
    let f = fs::File::open(t.join("big.bin")).unwrap();
    let mut x: u64 = 99;
    for _ in 0..200 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let off = (x >> 33) % data.len() as u64;
        let len = ((x >> 7) % 70_000) as usize;
        let mut buf = vec![0u8; len];
        let n = f.read_at(&mut buf, off).unwrap();
        let end = (off as usize + len).min(data.len());
        assert_eq!(&buf[..n], &data[off as usize..end], "read at {off} of {len}");
    }

    assert_eq!(getxattr(&t, "ipfs.cid").unwrap(), root.as_bytes());
    assert_eq!(getxattr(&t.join("big.bin"), "ipfs.cid").unwrap(), file_cid.as_bytes());
    assert_eq!(getxattr(&t.join("big.bin"), "user.nope").unwrap_err().raw_os_error(), Some(libc::ENODATA));
    assert_eq!(common::getxattr_sized(&t, "ipfs.cid", 5).unwrap_err().raw_os_error(), Some(libc::ERANGE));
    assert_eq!(common::getxattr_sized(&t, "ipfs.cid", 0).unwrap().len(), 0, "size 0 asks for the length");
    assert_eq!(fs::read_link(t.join("link")).unwrap(), Path::new("a/b/c/deep.txt"));
    assert_eq!(fs::read(t.join("link")).unwrap(), b"deep\n");
    let df = run_ok(Command::new("df").arg("-k").arg(&m.dir));
    // the mount's source is the store it serves
    assert!(df.lines().nth(1).is_some_and(|l| l.starts_with(&cli.home.path().display().to_string())), "{df}");
}

#[test]
fn the_ipfs_namespace_is_hidden_but_reachable() {
    let cli = Cli::new();
    let tree = sample(&cli);
    let root = cli.add_q(&tree, &[]);
    let m = cli.mount("mnt", &[]);
    let names: Vec<String> =
        fs::read_dir(&m.dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, vec!["tree"], ".ipfs is not listed");
    assert_eq!(fs::read(m.dir.join(".ipfs").join(&root).join("hello.txt")).unwrap(), b"hello\n");
    assert_eq!(fs::metadata(m.dir.join(".ipfs/not-a-cid")).unwrap_err().raw_os_error(), Some(libc::ENOENT));
    drop(m);

    let m = cli.mount("ipfs", &["--ipfs"]);
    assert_eq!(fs::read(m.dir.join(&root).join("a/b/c/deep.txt")).unwrap(), b"deep\n");
    assert_eq!(fs::read_dir(&m.dir).unwrap().count(), 0);
}

#[test]
fn a_read_only_mount_and_the_ipfs_namespace_refuse_writes_with_erofs() {
    let cli = Cli::new();
    let root = cli.add_q(&sample(&cli), &[]);
    let erofs = Some(libc::EROFS);
    let m = cli.mount("ro", &["--read-only"]);
    assert_eq!(fs::write(m.dir.join("new.txt"), b"x").unwrap_err().raw_os_error(), erofs);
    assert_eq!(
        fs::OpenOptions::new().write(true).open(m.dir.join("tree/hello.txt")).unwrap_err().raw_os_error(),
        erofs
    );
    assert_eq!(fs::create_dir(m.dir.join("tree/d")).unwrap_err().raw_os_error(), erofs);
    assert_eq!(fs::remove_file(m.dir.join("tree/hello.txt")).unwrap_err().raw_os_error(), erofs);
    drop(m);
    let m = cli.mount("rw", &[]);
    let under = m.dir.join(".ipfs").join(&root);
    assert_eq!(fs::write(under.join("new.txt"), b"x").unwrap_err().raw_os_error(), erofs);
    assert_eq!(fs::OpenOptions::new().write(true).open(under.join("hello.txt")).unwrap_err().raw_os_error(), erofs);
    assert_eq!(fs::create_dir(under.join("d")).unwrap_err().raw_os_error(), erofs);
    assert_eq!(fs::remove_file(under.join("hello.txt")).unwrap_err().raw_os_error(), erofs);
}

#[test]
fn missing_and_malformed_blocks_fail_fast_with_eio_and_the_mount_stays_up() {
    use cid::Version;
    use cidfs::block::{Block, DAG_PB, RAW};
    use cidfs::unixfs::pb::{Data, DataType};
    use ipld_dagpb::{PbLink, PbNode};
    let cli = Cli::new();
    cli.add_q(&sample(&cli), &[]);
    let lost = Block::encode(Version::V1, RAW, &b"never stored"[..]).unwrap();
    let garbage = Block::encode(Version::V1, DAG_PB, &b"\xff\xff\xff"[..]).unwrap();
    let links = vec![
        PbLink { cid: *lost.cid(), name: Some("lost.txt".into()), size: Some(12) },
        PbLink { cid: *garbage.cid(), name: Some("garbage".into()), size: Some(3) },
    ];
    let dir = Block::encode(
        Version::V1,
        DAG_PB,
        PbNode { links, data: Some(Data::new(DataType::Directory).to_bytes().into()) }.into_bytes(),
    )
    .unwrap();
    cli.write("loose.car", &common::car_bytes(&[], &[dir.clone(), garbage.clone()]));
    cli.ok(&["import", "loose.car"]);
    let m = cli.mount("mnt", &[]);
    let d = m.dir.join(".ipfs").join(dir.cid().to_string());
    let start = Instant::now();
    assert_eq!(fs::read(d.join("lost.txt")).unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(fs::metadata(d.join("garbage")).unwrap_err().raw_os_error(), Some(libc::EIO));
    assert!(start.elapsed() < Duration::from_secs(10), "bounded: {:?}", start.elapsed());
    assert_eq!(fs::read(m.dir.join("tree/hello.txt")).unwrap(), b"hello\n", "the mount is still up");
    let log = m.log();
    assert!(log.contains(&lost.cid().to_string()) && log.contains("lost.txt"), "log names CID and path: {log}");
    assert!(log.contains(&garbage.cid().to_string()) && log.contains("malformed dag-pb"), "{log}");
}

#[test]
fn a_hamt_directory_lists_fully_and_names_land_in_the_drive() {
    let cli = Cli::new();
    for i in 0..3000 {
        cli.write(&format!("big-dir/{i:0>60}"), format!("{i}\n").as_bytes());
    }
    cli.add_q(&cli.path("big-dir"), &["--name", "renamed"]);
    let root = cli.add_q(&sample(&cli), &[]);
    cli.ok(&["export", &root, "-o", "exported.car"]);
    cli.ok(&["import", "exported.car"]);
    let m = cli.mount("mnt", &[]);
    let mut top: Vec<String> =
        fs::read_dir(&m.dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    top.sort();
    assert_eq!(top, vec!["exported", "renamed", "tree"]);
    assert_eq!(fs::read_dir(m.dir.join("renamed")).unwrap().count(), 3000);
    assert_eq!(fs::read(m.dir.join("renamed").join(format!("{:0>60}", 1234))).unwrap(), b"1234\n");
}

#[test]
fn raw_leaves_identity_cids_and_dag_cbor_read_through_the_mount() {
    use cid::{Cid, Version};
    use cidfs::block::{Block, DAG_CBOR, IDENTITY, RAW};
    use ipld_core::ipld::Ipld;
    let cli = Cli::new();
    let big = cli.write("v1/big.bin", &common::noise(700_000, 60));
    cli.write("v1/empty", b"");
    let v1 = cli.add_q(&cli.path("v1"), &["--cid-version", "1"]);
    let inline = Cid::new_v1(RAW, multihash::Multihash::<64>::wrap(IDENTITY, b"inline").unwrap());
    let value = Ipld::Map(
        [
            ("n".to_string(), Ipld::Integer(42)),
            ("tree".to_string(), Ipld::Link(v1.parse().unwrap())),
            ("id".to_string(), Ipld::Link(inline)),
        ]
        .into(),
    );
    let cbor = Block::encode(Version::V1, DAG_CBOR, serde_ipld_dagcbor::to_vec(&value).unwrap()).unwrap();
    cli.write("c.car", &common::car_bytes(&[*cbor.cid()], std::slice::from_ref(&cbor)));
    cli.ok(&["import", "c.car", "--name", "doc"]);
    let m = cli.mount("mnt", &[]);
    assert_eq!(fs::read(m.dir.join("v1/big.bin")).unwrap(), fs::read(&big).unwrap());
    assert_eq!(fs::read(m.dir.join("v1/empty")).unwrap(), b"");
    assert_eq!(fs::read(m.dir.join(".ipfs").join(inline.to_string())).unwrap(), b"inline");
    assert_eq!(fs::read(m.dir.join("doc/n")).unwrap(), b"42\n");
    assert_eq!(fs::read(m.dir.join("doc/id")).unwrap(), b"inline");
    assert_eq!(fs::read(m.dir.join("doc/tree/big.bin")).unwrap(), fs::read(&big).unwrap());
    assert!(fs::metadata(m.dir.join("doc")).unwrap().is_dir());
    assert_eq!(getxattr(&m.dir.join("doc"), "ipfs.cid").unwrap(), cbor.cid().to_string().into_bytes());
}

/// A HAMT "bomb": three shard blocks whose 256 links each all name the one shard below,
/// over 256 entries: 256³ entries claimed from four blocks. And a file whose every leaf is
/// one 1 MiB block, 1000 × 1000 times: a terabyte claimed from three blocks.
fn bombs() -> (Vec<Block>, Cid, Cid) {
    use cidfs::unixfs::pb::{Data, DataType};
    use ipld_dagpb::{PbLink, PbNode};
    let shard = |links: Vec<PbLink>| {
        let mut d = Data::new(DataType::HamtShard);
        d.data = Some(vec![0xff; 32].into());
        d.fanout = Some(256);
        d.hash_type = Some(0x22);
        Block::encode(Version::V1, DAG_PB, PbNode { links, data: Some(d.to_bytes().into()) }.into_bytes()).unwrap()
    };
    let leaf = Block::encode(Version::V1, RAW, vec![7u8; 100]).unwrap();
    let bottom = shard(
        (0..256).map(|b| PbLink { cid: *leaf.cid(), name: Some(format!("{b:02X}f{b}")), size: Some(100) }).collect(),
    );
    let middle =
        shard((0..256).map(|b| PbLink { cid: *bottom.cid(), name: Some(format!("{b:02X}")), size: Some(1) }).collect());
    let top =
        shard((0..256).map(|b| PbLink { cid: *middle.cid(), name: Some(format!("{b:02X}")), size: Some(1) }).collect());

    let mib = Block::encode(Version::V1, RAW, vec![1u8; 1 << 20]).unwrap();
    let file = |child: &Cid, each: u64| {
        let mut d = Data::new(DataType::File);
        d.blocksizes = vec![each; 1000];
        d.filesize = Some(each * 1000);
        let links = (0..1000).map(|_| PbLink { cid: *child, name: Some(String::new()), size: Some(each) }).collect();
        Block::encode(Version::V1, DAG_PB, PbNode { links, data: Some(d.to_bytes().into()) }.into_bytes()).unwrap()
    };
    let gig = file(mib.cid(), 1 << 20);
    let tera = file(gig.cid(), 1000 << 20);
    let (dir, big) = (*top.cid(), *tera.cid());
    (vec![top, middle, bottom, leaf, tera, gig, mib], dir, big)
}

#[test]
fn no_dag_can_exhaust_memory_of_the_cli_or_the_mount() {
    let cli = Cli::new();
    let (blocks, dir, big) = bombs();
    cli.write("bombs.car", &common::car_bytes(&[dir, big], &blocks));
    cli.ok(&["import", "--no-pin", "bombs.car"]);
    // the CLI: a clean error for the HAMT bomb, correct output for the terabyte file
    let err = cli.fails(&["ls", &dir.to_string()], 4);
    assert!(err.contains("is reached twice"), "{err}");
    cli.fails(&["get", &dir.to_string(), cli.path("out").to_str().unwrap()], 4);
    let ls = cli.ok(&["ls", &big.to_string()]);
    assert!(ls.contains(&format!("\tfile\t{}\t", 1000u64 * 1000 * (1 << 20))), "{ls}");
    let tail = cli
        .cmd()
        .args(["cat", "-o", &(1000u64 * 1000 * (1 << 20) - 10).to_string(), &big.to_string()])
        .output()
        .unwrap();
    assert_eq!(tail.stdout, vec![1u8; 10]);
    assert_eq!(cli.cmd().args(["cat", "-l", "5", &big.to_string()]).output().unwrap().stdout, vec![1u8; 5]);

    // the mount, --allow-other, the listing asked by another user: EIO, and it lives on
    fs::set_permissions(cli.work.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let m = cli.mount("mnt", &["--allow-other"]);
    let out = as_nobody(&format!("ls {}/.ipfs/{dir} | wc -l", m.dir.display()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Input/output error"), "{out:?}");
    let err = fs::read_dir(m.dir.join(".ipfs").join(dir.to_string())).and_then(|d| d.collect::<Result<Vec<_>, _>>());
    assert_eq!(err.unwrap_err().raw_os_error(), Some(libc::EIO));
    let f = m.dir.join(".ipfs").join(big.to_string());
    assert_eq!(fs::metadata(&f).unwrap().len(), 1000 * 1000 * (1 << 20));
    let mut head = vec![0u8; 1 << 20];
    fs::File::open(&f).unwrap().read_exact_at(&mut head, 999_999 << 20).unwrap();
    assert!(head.iter().all(|b| *b == 1));
    assert!(m.dir.join("..").exists() && fs::read_dir(&m.dir).is_ok(), "the mount is alive");
    let rss = common::peak_rss_mib(m.child.id());
    assert!(rss < 200, "peak RSS of the mount {rss} MiB");
}

#[test]
fn adding_over_a_name_drops_what_was_said_about_the_old_content() {
    let cli = Cli::new();
    let src = sample(&cli);
    let m = cli.mount("mnt", &[]);
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(m.dir.join("tree")));
    run_ok(Command::new("setfattr").args(["-n", "user.old", "-v", "1"]).arg(m.dir.join("tree")));
    fs::hard_link(m.dir.join("tree/hello.txt"), m.dir.join("tree/a/twin")).unwrap();
    run_ok(Command::new("setfattr").args(["-n", "user.keep", "-v", "1"]).arg(m.dir.join("tree/a")));
    drop(m);
    // the same content linked again under its name is no change: what was said of it stays
    let tree_cid =
        cli.ok(&["ls", "/"]).lines().find(|l| l.starts_with("tree\t")).unwrap().split('\t').nth(3).unwrap().to_string();
    cli.ok(&["export", &tree_cid, "-o", "same.car"]);
    cli.ok(&["import", "--name", "tree", "same.car"]);
    let m = cli.mount("mnt", &[]);
    assert_eq!(getxattr(&m.dir.join("tree"), "user.old").unwrap(), b"1");
    assert_eq!(fs::metadata(m.dir.join("tree/hello.txt")).unwrap().nlink(), 2);
    drop(m);
    // a new tree under the same name: none of the old attributes or links apply to it
    cli.write("other/tree/hello.txt", b"new\n");
    cli.write("other/tree/a/twin", b"not a link\n");
    cli.ok(&["add", "-Q", "--replace", cli.path("other/tree").to_str().unwrap()]);
    let m = cli.mount("mnt", &[]);
    assert_eq!(getxattr(&m.dir.join("tree"), "user.old").unwrap_err().raw_os_error(), Some(libc::ENODATA));
    assert_eq!(getxattr(&m.dir.join("tree/a"), "user.keep").unwrap_err().raw_os_error(), Some(libc::ENODATA));
    assert_eq!(fs::metadata(m.dir.join("tree/hello.txt")).unwrap().nlink(), 1);
    assert_eq!(fs::read(m.dir.join("tree/a/twin")).unwrap(), b"not a link\n");
}

#[test]
fn add_keeps_who_may_read_a_file_and_its_cid_stays_kubos() {
    use std::os::unix::fs::PermissionsExt;
    let cli = Cli::new();
    let secret = cli.write("src/secret.txt", b"only mine\n");
    cli.write("src/closed/inner.txt", b"inner\n");
    cli.write("src/open.txt", b"anyone\n");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(cli.path("src/closed"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&secret, Some(1234), Some(4321)).unwrap();
    let when = std::time::UNIX_EPOCH + Duration::new(1_500_000_000, 42);
    fs::File::options().write(true).open(&secret).unwrap().set_modified(when).unwrap();
    let root = cli.add_q(&cli.path("src"), &[]);
    // the CID is Kubo's (what a plain add into another store gives), the attributes aside
    let other = Cli::new();
    run_ok(Command::new("cp").arg("-a").arg(cli.path("src")).arg(other.work.path()));
    assert_eq!(other.add_q(&other.path("src"), &["--pin=false"]), root);

    fs::set_permissions(cli.work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let m = cli.mount("mnt", &["--allow-other"]);
    let md = fs::metadata(m.dir.join("src/secret.txt")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o600);
    assert_eq!((md.uid(), md.gid()), (1234, 4321));
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_500_000_000, 42));
    assert_eq!(fs::metadata(m.dir.join("src/closed")).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(fs::metadata(m.dir.join("src/open.txt")).unwrap().mode() & 0o7777, 0o644);
    // another user cannot read what its owner kept to itself
    let out = as_nobody(&format!("cat {}/src/secret.txt", m.dir.display()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
    let out = as_nobody(&format!("ls {}/src/closed", m.dir.display()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
    assert_eq!(as_nobody(&format!("cat {}/src/open.txt", m.dir.display())).stdout, b"anyone\n");
    // and it stays so across a remount and a change of the file through the mount
    fs::write(m.dir.join("src/secret.txt"), b"changed\n").unwrap();
    drop(m);
    let m = cli.mount("mnt", &["--allow-other"]);
    assert_eq!(fs::metadata(m.dir.join("src/secret.txt")).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(fs::metadata(m.dir.join("src/secret.txt")).unwrap().uid(), 1234);
}
