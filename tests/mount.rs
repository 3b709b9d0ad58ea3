//! Real FUSE mounts (root and /dev/fuse, as in CI) driven by ordinary tools: cp, diff,
//! tar, find, du, sha256sum, random reads, xattrs; refusals; kill -9 and remount.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cid::{Cid, Version};
use cidfs::block::{Block, DAG_PB, RAW};
use common::{Cli, getxattr, run_ok, same_tree};

fn sample(cli: &Cli) -> std::path::PathBuf {
    cli.write("tree/hello.txt", b"hello\n");
    cli.write("tree/empty", b"");
    cli.write("tree/a/b/c/deep.txt", b"deep\n");
    cli.write("tree/big.bin", &common::noise(5_000_000, 50));
    std::os::unix::fs::symlink("a/b/c/deep.txt", cli.path("tree/link")).unwrap();
    cli.path("tree")
}

/// After an unmount, the mount process exits and releases the store.
fn wait_for_mount_process_to_exit(cli: &Cli) {
    let deadline = Instant::now() + Duration::from_secs(10);
    // `status` asks a running mount, so ask something only the store's owner can answer
    while cli.run(&["pin", "ls"]).status.code() == Some(5) {
        assert!(Instant::now() < deadline, "the mount process did not exit after unmount");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Unmounts a background mount even when the test fails half-way.
struct UnmountOnDrop(std::path::PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        let _ = common::nix_umount(&self.0);
    }
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

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
fn kill_9_leaves_a_stale_mount_that_the_next_mount_clears() {
    let cli = Cli::new();
    cli.add_q(&sample(&cli), &[]);
    let mut m = cli.mount("mnt", &[]);
    assert_eq!(fs::read(m.dir.join("tree/hello.txt")).unwrap(), b"hello\n");
    m.child.kill().unwrap();
    m.child.wait().unwrap();
    assert_eq!(fs::read_dir(&m.dir).unwrap_err().raw_os_error(), Some(libc::ENOTCONN));
    let again = cli.mount("mnt", &[]);
    assert_eq!(fs::read(again.dir.join("tree/hello.txt")).unwrap(), b"hello\n");
    assert!(again.log().contains("clearing a stale mount"));
}

#[test]
fn mountpoints_must_exist_be_empty_and_not_in_use() {
    let cli = Cli::new();
    cli.write("full/x", b"x");
    let err = cli.fails(&["mount", cli.path("full").to_str().unwrap()], 1);
    assert!(err.contains("is not empty"), "{err}");
    let err = cli.fails(&["mount", cli.path("nope").to_str().unwrap()], 1);
    assert!(err.contains("does not exist"), "{err}");
    let m = cli.mount("mnt", &[]);
    let other = Cli::new();
    let err = other.fails(&["mount", m.dir.to_str().unwrap()], 1);
    assert!(err.contains("already mounted"), "{err}");
    let err = cli.fails(&["pin", "ls"], 5);
    // names the process holding the store, where it is mounted, and how to stop it
    let pid = m.child.id();
    assert!(err.contains(&format!("in use by cidfs process {pid} (mounted at {})", m.dir.display())), "{err}");
    assert!(err.contains(&format!("stop it with `cidfs unmount {}`", m.dir.display())), "{err}");
    assert!(cli.ok(&["status"]).contains("peers connected"), "status asks the running mount");
}

#[test]
fn a_failed_background_mount_says_why_with_its_exit_code_and_leaves_the_other_log_alone() {
    let cli = Cli::new();
    fs::create_dir(cli.path("bg")).unwrap();
    let _guard = UnmountOnDrop(cli.path("bg"));
    cli.ok(&["mount", "--background", cli.path("bg").to_str().unwrap()]);
    let log = cli.home.path().join("mount.log");
    let before = fs::read(&log).unwrap();
    // the same store again, elsewhere: refused by the first mount's hold on the store
    fs::create_dir(cli.path("bg2")).unwrap();
    let err = cli.fails(&["mount", "--background", cli.path("bg2").to_str().unwrap()], 5);
    assert!(err.contains(&format!("mounted at {}", cli.path("bg").display())), "{err}");
    assert!(!err.contains("INFO") && !err.contains(" says:"), "only this attempt's reason: {err}");
    assert_eq!(err.matches("in use by").count(), 1, "said once: {err}");
    assert_eq!(fs::read(&log).unwrap(), before, "nothing written into the running mount's log");
    cli.ok(&["unmount", cli.path("bg").to_str().unwrap()]);
    wait_for_mount_process_to_exit(&cli);
}

#[test]
fn the_empty_drive_root_shows_when_the_store_was_made() {
    let cli = Cli::new();
    let m = cli.mount("mnt", &[]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let mtime = fs::metadata(&m.dir).unwrap().mtime();
    assert!((now - 120..=now + 5).contains(&mtime), "root mtime {mtime}, now {now}");
}

#[test]
fn background_mount_and_unmount() {
    let cli = Cli::new();
    cli.add_q(&sample(&cli), &[]);
    fs::create_dir(cli.path("bg")).unwrap();
    let _guard = UnmountOnDrop(cli.path("bg"));
    let out = cli.run(&["mount", "--background", cli.path("bg").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(cli.path("bg/tree/hello.txt")).unwrap(), b"hello\n");
    cli.ok(&["unmount", cli.path("bg").to_str().unwrap()]);
    wait_for_mount_process_to_exit(&cli);
    assert_eq!(fs::read_dir(cli.path("bg")).unwrap().count(), 0, "unmounted");
    let err = cli.fails(&["unmount", cli.path("bg").to_str().unwrap()], 1);
    assert!(err.contains("is not mounted"), "{err}");
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
fn the_fstab_helper_mounts_as_mount_8_calls_it() {
    let cli = Cli::new();
    let root = cli.add_q(&sample(&cli), &[]);
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("mount-scripts/mount.fuse.cidfs");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_cidfs")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    fs::create_dir(cli.path("fstab")).unwrap();
    let _guard = UnmountOnDrop(cli.path("fstab"));
    let mount_like = |mp: &Path, opts: &str| {
        let mut c = Command::new(&helper);
        common::hermetic(&mut c);
        c.arg(cli.home.path()).arg(mp).args(["-o", opts]).env("PATH", &path).env_remove("CIDFS_HOME").output().unwrap()
    };
    let out = mount_like(&cli.path("fstab"), "rw,nofail,_netdev,allow_other,x-systemd.automount");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(cli.path("fstab/tree/hello.txt")).unwrap(), b"hello\n");
    let entry = cidfs::fuse::mount::mount_entry(&fs::canonicalize(cli.path("fstab")).unwrap()).unwrap();
    // fuser's mount(2) passes type "fuse" (the subtype goes in the options only)
    assert!(entry.fstype.starts_with("fuse"), "{entry:?}");
    cli.ok(&["unmount", cli.path("fstab").to_str().unwrap()]);
    // `ipfs` presents the /ipfs namespace at the root
    wait_for_mount_process_to_exit(&cli);
    let out = mount_like(&cli.path("fstab"), "ipfs,threads=2,offline");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(cli.path("fstab").join(&root).join("hello.txt")).unwrap(), b"hello\n");
    assert!(cli.ok(&["status"]).contains("off (--offline)"), "IPFS node options pass through");
    cli.ok(&["unmount", cli.path("fstab").to_str().unwrap()]);
    let bad = Command::new(&helper).arg("only-one-arg").env("PATH", &path).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("usage: mount.fuse.cidfs"));
}

#[test]
fn sigterm_unmounts_cleanly() {
    let cli = Cli::new();
    cli.add_q(&sample(&cli), &[]);
    let mut m = cli.mount("mnt", &[]);
    assert_eq!(fs::read(m.dir.join("tree/hello.txt")).unwrap(), b"hello\n");
    nix_kill(m.child.id(), libc::SIGTERM);
    let status = m.child.wait().unwrap();
    assert!(status.success(), "{status:?}: {}", m.log());
    assert_eq!(fs::read_dir(&m.dir).unwrap().count(), 0, "unmounted, not stale");
    assert!(m.log().contains("unmounting"), "{}", m.log());
}

fn nix_kill(pid: u32, sig: i32) {
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// Runs `cmd` as the unprivileged user `nobody`.
fn as_nobody(cmd: &str) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", cmd])
        .output()
        .unwrap()
}

#[test]
fn other_users_need_allow_other() {
    let cli = Cli::new();
    cli.add_q(&sample(&cli), &[]);
    // nobody must be able to reach the mountpoints themselves
    fs::set_permissions(cli.work.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let private = cli.mount("private", &[]);
    let out = as_nobody(&format!("cat {}/tree/hello.txt", private.dir.display()));
    assert!(!out.status.success(), "another user read a mount without --allow-other");
    drop(private);
    let shared = cli.mount("shared", &["--allow-other"]);
    let out = as_nobody(&format!("cat {}/tree/hello.txt", shared.dir.display()));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n", "{}", String::from_utf8_lossy(&out.stderr));
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

#[test]
fn files_copied_into_the_drive_survive_remount_and_verify() {
    let cli = Cli::new();
    let src = sample(&cli);
    let m = cli.mount("mnt", &[]);
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(m.dir.join("copy")));
    assert!(same_tree(&src, &m.dir.join("copy")), "read back through the mount");
    fs::create_dir(m.dir.join("untar")).unwrap();
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "tar cf - -C {} . | tar xf - -C {}",
        src.display(),
        m.dir.join("untar").display()
    )));
    drop(m); // unmount commits whatever is left
    let out = cli.ok(&["verify"]);
    assert!(
        out.contains("the DAGs under 2 roots (0 pins, the drive and its sidecar, "),
        "the drive and its POSIX sidecar: {out}"
    );
    let m = cli.mount("mnt", &[]);
    assert!(same_tree(&src, &m.dir.join("copy")), "after remount");
    assert!(same_tree(&src, &m.dir.join("untar")), "tar extracted into the mount");
    let meta = fs::symlink_metadata(m.dir.join("copy/link")).unwrap();
    assert!(meta.file_type().is_symlink());
    drop(m);
    assert!(cli.ok(&["log"]).lines().count() >= 1);
}

#[test]
fn what_fsync_returned_for_survives_kill_9() {
    use std::io::Write;
    let cli = Cli::new();
    let mut m = cli.mount("mnt", &[]);
    let data = common::noise(3_000_000, 70);
    let mut f = fs::File::create(m.dir.join("synced.bin")).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::create_dir(m.dir.join("dir")).unwrap();
    let mut g = fs::File::create(m.dir.join("dir/also.txt")).unwrap();
    g.write_all(b"also durable").unwrap();
    g.sync_data().unwrap();
    m.child.kill().unwrap(); // SIGKILL: no final commit
    m.child.wait().unwrap();
    let again = cli.mount("mnt", &[]);
    assert_eq!(fs::read(again.dir.join("synced.bin")).unwrap(), data);
    assert_eq!(fs::read(again.dir.join("dir/also.txt")).unwrap(), b"also durable");
    drop(again);
    cli.ok(&["verify"]);
}

/// Drive entries and attributes are cached by the kernel for a minute: every change must
/// show at once through every name, as the kernel learns of each change it passes on.
#[test]
fn what_the_kernel_caches_of_the_drive_follows_every_change() {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let cli = Cli::new();
    let m = cli.mount("mnt", &[]);
    let d = &m.dir;
    fs::create_dir(d.join("dir")).unwrap();
    fs::write(d.join("dir/a"), b"12345").unwrap();
    fs::hard_link(d.join("dir/a"), d.join("b")).unwrap();
    let stat = |p: &str| fs::symlink_metadata(d.join(p)).unwrap();
    assert_eq!((stat("b").len(), stat("b").nlink()), (5, 2)); // both cached now
    let mut f = fs::OpenOptions::new().append(true).open(d.join("dir/a")).unwrap();
    f.write_all(b"678").unwrap();
    assert_eq!(stat("b").len(), 8, "a write through one name shows through the other");
    drop(f);
    fs::File::options().write(true).open(d.join("b")).unwrap().set_len(2).unwrap();
    assert_eq!(stat("dir/a").len(), 2, "truncate");
    fs::set_permissions(d.join("b"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(stat("dir/a").mode() & 0o777, 0o600, "chmod");
    fs::remove_file(d.join("b")).unwrap();
    assert_eq!(stat("dir/a").nlink(), 1, "unlink of the other name");
    fs::write(d.join("c"), b"new content").unwrap();
    let c_ino = stat("c").ino();
    fs::rename(d.join("c"), d.join("dir/a")).unwrap();
    assert_eq!((stat("dir/a").ino(), stat("dir/a").len()), (c_ino, 11), "rename over");
    assert!(fs::symlink_metadata(d.join("c")).is_err());
    fs::rename(d.join("dir"), d.join("moved")).unwrap();
    assert_eq!(fs::read(d.join("moved/a")).unwrap(), b"new content");
    assert!(fs::symlink_metadata(d.join("dir/a")).is_err(), "no stale entry under the old name");
    let before = stat("moved").modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(d.join("moved/z"), b"z").unwrap();
    assert!(stat("moved").modified().unwrap() > before, "a directory's mtime follows a create");
}

#[test]
fn editor_and_log_patterns_work() {
    use std::io::Write;
    let cli = Cli::new();
    let m = cli.mount("mnt", &[]);
    let d = &m.dir;
    // vim: write a temp file, fsync, rename it over the original
    fs::write(d.join("doc.txt"), b"version 1\n").unwrap();
    let mut tmp = fs::File::create(d.join(".doc.txt.swp")).unwrap();
    tmp.write_all(b"version 2\n").unwrap();
    tmp.sync_all().unwrap();
    drop(tmp);
    fs::rename(d.join(".doc.txt.swp"), d.join("doc.txt")).unwrap();
    assert_eq!(fs::read(d.join("doc.txt")).unwrap(), b"version 2\n");
    // O_APPEND logs
    for i in 0..5 {
        let mut log = fs::OpenOptions::new().create(true).append(true).open(d.join("app.log")).unwrap();
        writeln!(log, "line {i}").unwrap();
    }
    assert_eq!(fs::read_to_string(d.join("app.log")).unwrap().lines().count(), 5);
    // an unlinked open file keeps working
    let mut open =
        fs::OpenOptions::new().create(true).read(true).write(true).truncate(true).open(d.join("gone")).unwrap();
    open.write_all(b"still readable").unwrap();
    fs::remove_file(d.join("gone")).unwrap();
    let mut back = String::new();
    use std::io::{Read, Seek};
    open.seek(std::io::SeekFrom::Start(0)).unwrap();
    open.read_to_string(&mut back).unwrap();
    assert_eq!(back, "still readable");
    // truncate and holes
    let f = fs::OpenOptions::new().create(true).write(true).truncate(true).open(d.join("sparse")).unwrap();
    f.set_len(1 << 20).unwrap();
    f.write_at(b"end", (1 << 20) - 3).unwrap();
    let bytes = fs::read(d.join("sparse")).unwrap();
    assert_eq!(bytes.len(), 1 << 20);
    assert!(bytes[..(1 << 20) - 3].iter().all(|b| *b == 0));
    // hard links: one file, two names
    fs::hard_link(d.join("doc.txt"), d.join("hard")).unwrap();
    assert_eq!(fs::metadata(d.join("hard")).unwrap().nlink(), 2);
    assert_eq!(fs::read(d.join("hard")).unwrap(), b"version 2\n");
    // refusals that need their own errno
    assert_eq!(fs::hard_link(d, d.join("dirlink")).unwrap_err().raw_os_error(), Some(libc::EPERM));
    let renameat2 = |from: &str, to: &str, flags: u32| {
        let (a, b) = (std::ffi::CString::new(from).unwrap(), std::ffi::CString::new(to).unwrap());
        // SAFETY: valid C strings; AT_FDCWD with absolute paths.
        let r = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), flags) };
        if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error().raw_os_error()) }
    };
    let (doc, app) = (d.join("doc.txt").display().to_string(), d.join("app.log").display().to_string());
    assert_eq!(renameat2(&doc, &app, libc::RENAME_NOREPLACE), Err(Some(libc::EEXIST)));
    renameat2(&doc, &app, libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(d.join("app.log")).unwrap(), b"version 2\n", "swapped");
    renameat2(&doc, &app, libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(renameat2(&doc, &app, libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE), Err(Some(libc::EINVAL)));
    let moved = d.join("moved.txt").display().to_string();
    renameat2(&doc, &moved, libc::RENAME_NOREPLACE).unwrap();
    renameat2(&moved, &doc, 0).unwrap();
    assert_eq!(fs::write(d.join("x".repeat(256)), b"x").unwrap_err().raw_os_error(), Some(libc::ENAMETOOLONG));
    fs::create_dir(d.join("full")).unwrap();
    fs::write(d.join("full/x"), b"x").unwrap();
    assert_eq!(fs::remove_dir(d.join("full")).unwrap_err().raw_os_error(), Some(libc::ENOTEMPTY));
    let status = Command::new("mkfifo").arg(d.join("fifo")).status().unwrap();
    assert!(!status.success(), "UnixFS has no FIFOs");
    // a shared writable mmap, msync'd and fsync'd
    let script = "import mmap,os,sys\np=sys.argv[1]\nopen(p,'wb').write(bytes(8192))\nfd=os.open(p,os.O_RDWR)\n\
                  m=mmap.mmap(fd,8192,mmap.MAP_SHARED)\nm[100:105]=b'hello'\nm.flush()\nos.fsync(fd)\nm.close()\nos.close(fd)";
    run_ok(Command::new("python3").arg("-c").arg(script).arg(d.join("mapped.bin")));
    assert_eq!(&fs::read(d.join("mapped.bin")).unwrap()[100..105], b"hello");
}

#[test]
fn rsync_git_and_sqlite_work_on_the_drive() {
    let cli = Cli::new();
    let src = sample(&cli);
    for i in 0..50 {
        cli.write(&format!("tree/many/f{i}.txt"), format!("file {i}\n").as_bytes());
    }
    let m = cli.mount("mnt", &[]);
    // rsync in (temp file + rename per file), then a checksum dry run finds nothing to do
    let dst = format!("{}/", m.dir.join("backup").display());
    run_ok(Command::new("rsync").arg("-a").arg(format!("{}/", src.display())).arg(&dst));
    let dry = run_ok(
        Command::new("rsync")
            .args(["-a", "--checksum", "--dry-run", "--itemize-changes"])
            .arg(format!("{}/", src.display()))
            .arg(&dst),
    );
    assert_eq!(dry.trim(), "", "rsync sees differences: {dry}");
    assert!(same_tree(&src, &m.dir.join("backup")));

    // git: clone a repository into the drive, fsck it
    let repo = cli.path("repo");
    run_ok(Command::new("git").arg("init").arg("-q").arg(&repo));
    fs::write(repo.join("README"), b"hello git\n").unwrap();
    let git = |dir: &Path, args: &[&str]| {
        run_ok(Command::new("git").arg("-C").arg(dir).args(["-c", "user.name=t", "-c", "user.email=t@t"]).args(args))
    };
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    run_ok(Command::new("git").args(["clone", "-q"]).arg(&repo).arg(m.dir.join("clone")));
    git(&m.dir.join("clone"), &["fsck", "--strict"]);
    git(&m.dir.join("clone"), &["gc", "-q"]);
    assert_eq!(fs::read(m.dir.join("clone/README")).unwrap(), b"hello git\n");

    // sqlite: a journaled database written with fsync, then checked
    let db = m.dir.join("data.db");
    let sql = "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL; CREATE TABLE t(x); \
               WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<2000) INSERT INTO t SELECT i FROM c;";
    run_ok(Command::new("sqlite3").arg(&db).arg(sql));
    let check = run_ok(Command::new("sqlite3").arg(&db).arg("PRAGMA integrity_check; SELECT count(*) FROM t;"));
    assert_eq!(check.split_whitespace().collect::<Vec<_>>(), vec!["ok", "2000"]);
    drop(m);
    let m = cli.mount("mnt", &[]);
    let check =
        run_ok(Command::new("sqlite3").arg(m.dir.join("data.db")).arg("PRAGMA integrity_check; SELECT sum(x) FROM t;"));
    assert_eq!(check.split_whitespace().collect::<Vec<_>>(), vec!["ok", "2001000"]);
    git(&m.dir.join("clone"), &["fsck", "--strict"]);
}

#[test]
fn every_commit_is_a_read_only_snapshot() {
    use std::io::Write;
    let cli = Cli::new();
    let m = cli.mount("mnt", &[]);
    let write_synced = |name: &str, data: &[u8]| {
        let mut f = fs::File::create(m.dir.join(name)).unwrap();
        f.write_all(data).unwrap();
        f.sync_all().unwrap();
    };
    write_synced("doc.txt", b"first draft\n");
    write_synced("doc.txt", b"second draft\n");
    let snaps = m.dir.join(".snapshots");
    let mut names: Vec<String> =
        fs::read_dir(&snaps).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let seqs: Vec<&String> = names.iter().filter(|n| n.parse::<u64>().is_ok()).collect();
    assert!(seqs.len() >= 2, "{names:?}");
    assert!(names.contains(&"latest".to_string()));
    let latest = fs::read_link(snaps.join("latest")).unwrap();
    assert_eq!(fs::read(snaps.join("latest/doc.txt")).unwrap(), b"second draft\n");
    let contents: Vec<Vec<u8>> = seqs.iter().map(|s| fs::read(snaps.join(s).join("doc.txt")).unwrap()).collect();
    assert!(contents.contains(&b"first draft\n".to_vec()), "an earlier snapshot keeps the first draft");
    assert_eq!(latest.to_str().unwrap(), seqs.iter().map(|s| s.parse::<u64>().unwrap()).max().unwrap().to_string());
    assert_eq!(fs::write(snaps.join("latest/doc.txt"), b"x").unwrap_err().raw_os_error(), Some(libc::EROFS));
    assert_eq!(fs::create_dir(snaps.join("new")).unwrap_err().raw_os_error(), Some(libc::EROFS));
    let top: Vec<String> =
        fs::read_dir(&m.dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(top, vec!["doc.txt"], ".snapshots and .ipfs are not listed");
}

#[test]
fn snapshots_keep_deleted_data_until_pruned() {
    use std::io::Write;
    let cli = Cli::new();
    let data = common::noise(700_000, 80);
    {
        let m = cli.mount("mnt", &[]);
        let mut f = fs::File::create(m.dir.join("old.bin")).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        fs::remove_file(m.dir.join("old.bin")).unwrap();
        fs::File::create(m.dir.join("keep.txt")).unwrap().sync_all().unwrap();
    }
    let log = cli.ok(&["log"]);
    assert!(log.lines().count() >= 2, "{log}");
    let first = log.lines().next().unwrap();
    assert_eq!(first.split('\t').count(), 4, "seq, time, root, size: {first}");
    assert!(cli.ok(&["gc"]).starts_with("removed 0 blocks"), "the deleted file lives on in a snapshot");
    let out = cli.ok(&["log", "--prune", "1"]);
    assert!(out.starts_with("pruned "), "{out}");
    assert_eq!(cli.ok(&["log"]).lines().count(), 1);
    let gc = cli.ok(&["gc"]);
    assert!(!gc.starts_with("removed 0 blocks"), "{gc}");
    cli.ok(&["verify"]);
    let m = cli.mount("mnt", &[]);
    assert!(m.dir.join("keep.txt").exists() && !m.dir.join("old.bin").exists());
}

#[test]
fn restic_and_borg_back_up_into_the_drive_and_restore_byte_for_byte() {
    let cli = Cli::new();
    let src = sample(&cli);
    let m = cli.mount("mnt", &[]);
    let restic = |args: &[&str]| {
        let repo = m.dir.join("restic");
        run_ok(
            Command::new("restic")
                .arg("-q")
                .arg("-r")
                .arg(&repo)
                .args(args)
                .env("RESTIC_PASSWORD", "test")
                .env("RESTIC_CACHE_DIR", cli.path("restic-cache")),
        )
    };
    restic(&["init"]);
    restic(&["backup", src.to_str().unwrap()]);
    restic(&["check", "--read-data"]);
    restic(&["restore", "latest", "--target", cli.path("restic-out").to_str().unwrap()]);
    assert!(same_tree(&src, &cli.path("restic-out").join(src.strip_prefix("/").unwrap())));

    let borg = |args: &[&str], dir: &Path| {
        run_ok(
            Command::new("borg")
                .args(args)
                .current_dir(dir)
                .env("BORG_PASSPHRASE", "")
                .env("BORG_BASE_DIR", cli.path("borg-home")),
        )
    };
    let repo = m.dir.join("borg");
    let repo = repo.to_str().unwrap();
    borg(&["init", "-e", "none", repo], cli.work.path());
    borg(&["create", &format!("{repo}::one"), src.to_str().unwrap()], cli.work.path());
    borg(&["check", "--verify-data", repo], cli.work.path());
    fs::create_dir(cli.path("borg-out")).unwrap();
    borg(&["extract", &format!("{repo}::one")], &cli.path("borg-out"));
    assert!(same_tree(&src, &cli.path("borg-out").join(src.strip_prefix("/").unwrap())));
    drop(m);
    // and the repositories are still sound after a remount
    let m = cli.mount("mnt", &[]);
    let repo = m.dir.join("borg");
    borg(&["check", repo.to_str().unwrap()], cli.work.path());
    run_ok(
        Command::new("restic")
            .args(["-q", "-r"])
            .arg(m.dir.join("restic"))
            .arg("check")
            .env("RESTIC_PASSWORD", "test")
            .env("RESTIC_CACHE_DIR", cli.path("restic-cache")),
    );
}

#[test]
fn the_capacity_cap_refuses_writes_with_enospc_and_df_shows_it() {
    use std::io::Write;
    let cli = Cli::new();
    let m = cli.mount("mnt", &["--cap", "4M"]);
    let mut f = fs::File::create(m.dir.join("fits.bin")).unwrap();
    f.write_all(&common::noise(1 << 20, 90)).unwrap();
    f.sync_all().unwrap();
    let mut g = fs::File::create(m.dir.join("too-big.bin")).unwrap();
    let err = g.write_all(&common::noise(8 << 20, 91)).and_then(|_| g.sync_all()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    let df = run_ok(Command::new("df").arg("-k").arg(&m.dir));
    let total_k: u64 = df.lines().nth(1).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(total_k, 4096, "{df}");
    drop((f, g));
    drop(m);
    let m = cli.mount("mnt", &[]);
    assert_eq!(fs::read(m.dir.join("fits.bin")).unwrap(), common::noise(1 << 20, 90), "committed data is intact");
    drop(m);
    cli.ok(&["verify"]);
}

#[test]
fn kill_9_during_a_write_workload_loses_nothing_that_was_fsynced() {
    use std::io::Write;
    let cli = Cli::new();
    let mut durable: Vec<usize> = Vec::new();
    let mut next = 0usize;
    for (round, delay_ms) in [40u64, 90, 150, 220, 310, 60].into_iter().enumerate() {
        let mut m = cli.mount("mnt", &[]);
        let dir = m.dir.clone();
        let start = next;
        let writer = std::thread::spawn(move || {
            let mut done = Vec::new();
            for i in start..start + 10_000 {
                let write = || -> std::io::Result<()> {
                    let mut f = fs::File::create(dir.join(format!("f{i}")))?;
                    f.write_all(&common::noise(20_000 + i * 37 % 50_000, i as u64))?;
                    f.sync_all()
                };
                if write().is_err() {
                    break; // the mount is gone
                }
                done.push(i);
            }
            done
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        m.child.kill().unwrap();
        m.child.wait().unwrap();
        let done = writer.join().unwrap();
        next = done.last().map_or(next, |l| l + 1) + 1;
        durable.extend(done);
        let again = cli.mount("mnt", &[]);
        for i in &durable {
            let got = fs::read(again.dir.join(format!("f{i}"))).unwrap_or_else(|e| panic!("round {round}: f{i}: {e}"));
            assert_eq!(got, common::noise(20_000 + i * 37 % 50_000, *i as u64), "round {round}: f{i}");
        }
        drop(again);
        cli.ok(&["verify"]);
    }
    assert!(durable.len() > 10, "the workload made progress: {}", durable.len());
}

#[test]
fn o_direct_locks_fallocate_xattrs_and_chown_behave_as_documented() {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let cli = Cli::new();
    let m = cli.mount("mnt", &[]);
    let p = m.dir.join("f");
    fs::write(&p, vec![b'x'; 4096]).unwrap();
    // O_DIRECT opens and reads
    let f = fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(&p).unwrap();
    drop(f);
    let f = fs::OpenOptions::new().read(true).write(true).open(&p).unwrap();
    // flock and POSIX locks are kept by the kernel (local to this machine)
    // SAFETY: plain syscalls on an open descriptor.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    // fallocate(2) is not supported (glibc's posix_fallocate then writes zeros instead)
    // SAFETY: as above.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 1 << 20) };
    assert_eq!((r, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EOPNOTSUPP)));
    // ACLs (system.*) are not stored; user xattrs are
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // an access ACL granting uid 1000 read (what `setfacl -m u:1000:r` sets)
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in
        [(1u16, 6u16, u32::MAX), (2, 4, 1000), (4, 4, u32::MAX), (0x10, 4, u32::MAX), (0x20, 4, u32::MAX)]
    {
        acl.extend(tag.to_le_bytes().into_iter().chain(perm.to_le_bytes()).chain(id.to_le_bytes()));
    }
    // SAFETY: valid C strings and buffer.
    let r =
        unsafe { libc::setxattr(c.as_ptr(), c"system.posix_acl_access".as_ptr(), acl.as_ptr().cast(), acl.len(), 0) };
    assert_eq!((r, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::ENOTSUP)));
    // SAFETY: as above.
    let r = unsafe { libc::setxattr(c.as_ptr(), c"user.x".as_ptr(), b"1".as_ptr().cast(), 1, libc::XATTR_REPLACE) };
    assert_eq!((r, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::ENODATA)));
    // reading an ACL, or an SELinux label nobody set, is "not supported" (what makes `ls
    // -l` stop asking every file), in the drive and under /.ipfs alike; other missing
    // names are ENODATA
    let xattr = |path: &Path, name: &str| String::from_utf8(common::getxattr(path, name).unwrap()).unwrap();
    let xattr_err = |path: &Path, name: &str| common::getxattr(path, name).unwrap_err().raw_os_error().unwrap();
    let cid = xattr(&p, "ipfs.cid");
    for path in [p.clone(), m.dir.join(".ipfs").join(&cid)] {
        for (name, errno) in [
            ("system.posix_acl_access", libc::EOPNOTSUPP),
            ("system.posix_acl_default", libc::EOPNOTSUPP),
            ("security.selinux", libc::EOPNOTSUPP),
            ("user.unset", libc::ENODATA),
        ] {
            let err = xattr_err(&path, name);
            assert_eq!(err, errno, "getxattr {name} on {}", path.display());
        }
    }
    // a label a tool stores (rsync -X as root copies them) reads back
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::setxattr(c.as_ptr(), c"security.selinux".as_ptr(), b"x_t".as_ptr().cast(), 3, 0) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    assert_eq!(xattr(&p, "security.selinux"), "x_t");
    drop(f);
    drop(m);
    // chown: root gives files away; anyone else gets EPERM
    fs::set_permissions(cli.work.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let m = cli.mount("mnt", &["--allow-other"]);
    let p = m.dir.join("f");
    std::os::unix::fs::chown(&p, Some(1000), Some(1000)).unwrap();
    let meta = fs::metadata(&p).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    let out = as_nobody(&format!("chown 65534 {}", p.display()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"), "{out:?}");
    std::os::unix::fs::chown(&p, Some(0), Some(0)).unwrap();
}

/// Files with every POSIX attribute a backup cares about: modes, mtimes, owners, user
/// xattrs, hard links (also across directories), symlinks.
fn posix_sample(cli: &Cli) -> std::path::PathBuf {
    let src = sample(cli);
    cli.write("tree/owned/by-1234", b"owned\n");
    cli.write("tree/xattrs.txt", b"has attributes\n");
    cli.write("tree/many-links", b"linked\n");
    fs::hard_link(src.join("many-links"), src.join("a/link-2")).unwrap();
    fs::hard_link(src.join("many-links"), src.join("owned/link-3")).unwrap();
    fs::hard_link(src.join("hello.txt"), src.join("hello-twin")).unwrap();
    std::os::unix::fs::chown(src.join("owned/by-1234"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::chown(src.join("owned"), Some(1234), None).unwrap();
    fs::set_permissions(src.join("owned/by-1234"), std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    for (name, value) in [("user.comment", &b"hello"[..]), ("user.bin", &[0u8, 255, 10][..])] {
        run_ok(
            Command::new("setfattr")
                .args(["-n", name, "-v"])
                .arg(format!("0x{}", hex(value)))
                .arg(src.join("xattrs.txt")),
        );
    }
    run_ok(Command::new("setfattr").args(["-n", "user.dir", "-v", "d"]).arg(src.join("a")));
    run_ok(Command::new("touch").args(["-h", "-d", "2001-02-03 04:05:06.789"]).arg(src.join("link")));
    src
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `rsync -aHAX --checksum --dry-run` from `a` to `b`: what it would change.
fn rsync_differences(a: &Path, b: &Path) -> String {
    let out = run_ok(
        Command::new("rsync")
            .args(["-aHAX", "--checksum", "--dry-run", "--itemize-changes"])
            .arg(format!("{}/", a.display()))
            .arg(format!("{}/", b.display())),
    );
    out.trim().to_string()
}

/// (inode groups by path, xattrs by path) of a tree, as `find` and `getfattr` see it.
fn links_and_xattrs(dir: &Path) -> (Vec<String>, Vec<String>) {
    let find = run_ok(
        Command::new("find").arg(".").args(["-type", "f", "-links", "+1", "-printf", "%n %p\n"]).current_dir(dir),
    );
    let mut links: Vec<String> = find.lines().map(str::to_string).collect();
    links.sort();
    let xattrs = run_ok(Command::new("getfattr").args(["-R", "-d", "-m", "-", "-e", "hex", "."]).current_dir(dir));
    let mut by_file: Vec<String> =
        xattrs.split("\n\n").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    by_file.sort();
    (links, by_file)
}

#[test]
fn rsync_ahax_round_trips_hard_links_xattrs_owners_and_modes() {
    let cli = Cli::new();
    let src = posix_sample(&cli);
    let want = links_and_xattrs(&src);
    assert_eq!(want.0.len(), 5, "the sample has hard links: {want:?}");
    assert!(
        want.1.iter().any(|f| f.contains("user.comment")),
        "the sample has xattrs (needs a filesystem with user xattrs)"
    );
    let m = cli.mount("mnt", &[]);
    let dst = m.dir.join("backup");
    run_ok(Command::new("rsync").arg("-aHAX").arg(format!("{}/", src.display())).arg(format!("{}/", dst.display())));
    assert_eq!(rsync_differences(&src, &dst), "", "right after rsync");
    assert_eq!(links_and_xattrs(&dst), want);
    drop(m);

    // everything is still there after a remount: it was committed, not just cached
    let m = cli.mount("mnt", &[]);
    let dst = m.dir.join("backup");
    assert_eq!(rsync_differences(&src, &dst), "", "after a remount");
    assert_eq!(links_and_xattrs(&dst), want);
    let owned = fs::metadata(dst.join("owned/by-1234")).unwrap();
    assert_eq!((owned.uid(), owned.gid(), owned.mode() & 0o7777), (1234, 5678, 0o640));
    // a change through one name shows through the others
    fs::write(dst.join("a/link-2"), b"changed\n").unwrap();
    assert_eq!(fs::read(dst.join("owned/link-3")).unwrap(), b"changed\n");
    fs::write(dst.join("a/link-2"), b"linked\n").unwrap();
    run_ok(Command::new("touch").arg("-r").arg(src.join("many-links")).arg(dst.join("a/link-2")));

    // and back out, byte for byte, with every attribute
    let out = cli.path("restored");
    run_ok(Command::new("rsync").arg("-aHAX").arg(format!("{}/", dst.display())).arg(format!("{}/", out.display())));
    assert_eq!(rsync_differences(&src, &out), "", "restored copy");
    assert_eq!(links_and_xattrs(&out), want);
    assert!(same_tree(&src, &out));
    // tar with xattrs through the mount, too
    let tarball = cli.path("t.tar");
    run_ok(
        Command::new("tar")
            .args(["--xattrs", "--xattrs-include=user.*", "-cf"])
            .arg(&tarball)
            .arg("-C")
            .arg(&dst)
            .arg("."),
    );
    let untar = cli.path("untar");
    fs::create_dir(&untar).unwrap();
    run_ok(
        Command::new("tar").args(["--xattrs", "--xattrs-include=user.*", "-xpf"]).arg(&tarball).arg("-C").arg(&untar),
    );
    assert_eq!(links_and_xattrs(&untar), want);
}

#[test]
fn thousands_of_new_files_do_not_exhaust_file_descriptors() {
    let cli = Cli::new();
    let m = cli.mount_with("mnt", &[], Some(300));
    for i in 0..2000 {
        fs::write(m.dir.join(format!("f{i}")), format!("{i}")).unwrap_or_else(|e| panic!("file {i}: {e}"));
    }
    assert_eq!(fs::read_dir(&m.dir).unwrap().count(), 2000);
    assert_eq!(fs::read(m.dir.join("f1999")).unwrap(), b"1999");
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

/// Bytes the process `pid` has read (all its threads, any file).
fn rchar(pid: u32) -> u64 {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).unwrap().trim().parse().unwrap()
}

fn drop_page_cache() {
    run_ok(&mut Command::new("sync"));
    fs::write("/proc/sys/vm/drop_caches", "1").expect("dropping the page cache needs root");
}

fn wait_for_file(path: &Path, len: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::metadata(path).map(|m| m.len()).ok() != Some(len) {
        assert!(Instant::now() < deadline, "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hot_copies_are_read_by_the_kernel_directly_and_never_go_stale() {
    let cli = Cli::new();
    let data = common::noise(8 << 20, 71);
    let src = cli.write("big.bin", &data);
    let cid = cli.add_q(&src, &[]);
    let hot = cli.home.path().join("hot");
    assert_eq!(fs::metadata(hot.join(&cid)).unwrap().len(), data.len() as u64, "add keeps a hot copy");
    let m = cli.mount("mnt", &[]);
    let pid = m.child.id();
    let file = m.dir.join("big.bin");

    // Ordinary tools read the right bytes, and none of them pass through the mount process.
    let before = rchar(pid);
    let sum = run_ok(Command::new("sha256sum").arg(&file));
    assert!(sum.starts_with(&common::sha256_hex(&data)), "{sum}");
    run_ok(Command::new("cp").arg(&file).arg(cli.path("out.bin")));
    assert!(fs::read(cli.path("out.bin")).unwrap() == data, "cp out of the mount differs");
    let f = fs::File::open(&file).unwrap();
    for (off, len) in [(0u64, 1usize), (4095, 8193), (3_000_001, 100_000), ((8 << 20) - 7, 100)] {
        let mut buf = vec![0u8; len];
        let n = f.read_at(&mut buf, off).unwrap();
        let end = (off as usize + len).min(data.len());
        assert!(buf[..n] == data[off as usize..end], "read at {off} of {len}");
    }
    // mmap too (the kernel maps the copy)
    {
        use std::os::fd::AsRawFd;
        let len = data.len();
        // SAFETY: a read-only private mapping of an open file, unmapped below.
        let map =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, f.as_raw_fd(), 0) };
        assert_ne!(map, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        // SAFETY: `map` is `len` readable bytes until munmap.
        let mapped = unsafe { std::slice::from_raw_parts(map as *const u8, len) };
        assert!(mapped[5_000_000..5_001_000] == data[5_000_000..5_001_000], "mmap'd bytes");
        // SAFETY: unmapping what was mapped above.
        unsafe { libc::munmap(map, len) };
    }
    let through = rchar(pid) - before;
    assert!(through < 1 << 20, "{through} bytes were read by the mount process for 24 MiB of reads");
    let status = cli.ok(&["status"]);
    assert!(status.contains("hot:       1 files (8.0 MiB) of 4.0 GiB cap"), "{status}");

    // While it is open for such reads, the file cannot change; more readers share the copy.
    let err = fs::OpenOptions::new().write(true).open(&file).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ETXTBSY), "open for writing");
    let err = fs::OpenOptions::new().write(true).truncate(true).open(&file).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ETXTBSY), "O_TRUNC");
    let out = Command::new("truncate").args(["-s", "10"]).arg(&file).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Text file busy"));
    assert!(fs::read(&file).unwrap() == data, "a second reader");
    assert!(m.log().contains("hot copy"), "the refusal is logged: {}", m.log());
    drop(f);

    // A reader that closed never keeps a writer out (the kernel tells cidfs of the close
    // only after `close` returns).
    for _ in 0..20 {
        let mut r = fs::File::open(&file).unwrap();
        std::io::Read::read_exact(&mut r, &mut [0u8; 4096]).unwrap();
        drop(r);
        drop(fs::OpenOptions::new().write(true).open(&file).expect("open for writing after the reader closed"));
    }

    // Closed: writable again, and reads see the change at once (through cidfs).
    let w = fs::OpenOptions::new().write(true).open(&file).unwrap();
    w.write_all_at(b"changed", 0).unwrap();
    let mut changed = data.clone();
    changed[..7].copy_from_slice(b"changed");
    assert!(fs::read(&file).unwrap() == changed, "a reader after the write");
    w.sync_all().unwrap();
    drop(w);
    let new_cid = String::from_utf8(getxattr(&file, "ipfs.cid").unwrap()).unwrap();
    assert_ne!(new_cid, cid);

    // Read whole through cidfs, the new content gets a copy of its own, then used.
    drop_page_cache();
    assert!(fs::read(&file).unwrap() == changed);
    wait_for_file(&hot.join(&new_cid), data.len() as u64);
    drop_page_cache();
    let before = rchar(pid);
    assert!(fs::read(&file).unwrap() == changed, "read from the new copy");
    assert!(rchar(pid) - before < 1 << 20, "the new copy is read by the kernel directly");
    drop(m);

    // gc drops the copy of content nothing keeps (no pin, no snapshot).
    cli.ok(&["pin", "rm", &cid]);
    cli.ok(&["log", "--prune", "1"]);
    let gc = cli.ok(&["gc"]);
    assert!(gc.contains("removed 1 hot copies"), "{gc}");
    assert!(!hot.join(&cid).exists() && hot.join(&new_cid).exists());
}

#[test]
fn a_hot_copy_of_the_wrong_length_is_dropped_and_reads_go_through_cidfs() {
    let cli = Cli::new();
    let data = common::noise(4 << 20, 72);
    let src = cli.write("a.bin", &data);
    let out = cli.cmd().args(["add", "-Q"]).arg(&src).env("CIDFS_HOT_SIZE", "0").output().unwrap();
    let cid = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let hot = cli.home.path().join("hot");
    assert!(!hot.join(&cid).exists(), "CIDFS_HOT_SIZE=0: no copy");
    fs::write(hot.join(&cid), b"too short").unwrap();
    let m = cli.mount("mnt", &[]);
    let before = rchar(m.child.id());
    assert!(fs::read(m.dir.join("a.bin")).unwrap() == data);
    assert!(rchar(m.child.id()) - before >= data.len() as u64, "read through cidfs");
    assert!(m.log().contains("not 4194304 bytes long: dropped"), "{}", m.log());
    // read whole, it gets a good copy
    wait_for_file(&hot.join(&cid), data.len() as u64);
    assert!(fs::read(hot.join(&cid)).unwrap() == data);
    drop(m);

    // A copy that no longer matches its blocks is found by `verify`, and deleted.
    assert!(cli.ok(&["verify"]).contains("and 1 hot copies"));
    let mut flipped = data.clone();
    flipped[3_000_000] ^= 1;
    fs::write(hot.join(&cid), &flipped).unwrap();
    let out = cli.run(&["verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}");
    assert!(stdout.contains(&format!("bad hot copy of {cid}: differs from the blocks at byte 3000000")), "{stdout}");
    assert!(!hot.join(&cid).exists());
    assert!(cli.ok(&["verify"]).contains("and 0 hot copies"));
}

#[test]
fn a_file_written_through_the_drive_keeps_its_written_bytes_as_its_hot_copy() {
    let cli = Cli::new();
    let m = cli.mount("mnt", &[]);
    let data = common::noise(3 << 20, 73);
    let file = m.dir.join("written.bin");
    fs::write(&file, &data).unwrap();
    fs::File::open(&file).unwrap().sync_all().unwrap();
    let cid = String::from_utf8(getxattr(&file, "ipfs.cid").unwrap()).unwrap();
    let hot = cli.home.path().join("hot").join(&cid);
    wait_for_file(&hot, data.len() as u64);
    assert!(fs::read(&hot).unwrap() == data);
    drop_page_cache();
    let before = rchar(m.child.id());
    assert!(fs::read(&file).unwrap() == data);
    assert!(rchar(m.child.id()) - before < 1 << 20, "read by the kernel from the kept bytes");
    drop(m);
    assert!(cli.ok(&["verify"]).contains("and 1 hot copies"));
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

/// Descriptors the process `pid` holds on anonymous spill files in the store's `tmp/`.
fn open_spills(pid: u32, home: &Path) -> usize {
    let tmp = home.join("tmp");
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(&tmp))
        .count()
}

#[test]
fn a_committed_file_lets_go_of_its_spill_when_closed() {
    let cli = Cli::new();
    let m = cli.mount("mnt", &["--hot-size", "0"]);
    let mut f = fs::File::create(m.dir.join("big.bin")).unwrap();
    std::io::Write::write_all(&mut f, &common::noise(2 << 20, 80)).unwrap();
    f.sync_all().unwrap(); // committed while still open
    assert!(open_spills(m.child.id(), cli.home.path()) >= 1, "an open writer keeps its spill");
    drop(f);
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_spills(m.child.id(), cli.home.path()) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(open_spills(m.child.id(), cli.home.path()), 0, "closed and committed: no second copy on disk");
    assert!(fs::read(m.dir.join("big.bin")).unwrap() == common::noise(2 << 20, 80));
}

#[test]
fn unmount_returns_once_the_store_is_free_and_a_remount_after_any_unmount_works() {
    let cli = Cli::new();
    let dir = cli.path("bg");
    fs::create_dir(&dir).unwrap();
    let _guard = UnmountOnDrop(dir.clone());
    let bg = dir.to_str().unwrap();
    // `cidfs unmount`: when it returns, the store is free at once
    cli.ok(&["mount", "--background", bg]);
    fs::write(dir.join("a.txt"), b"a\n").unwrap();
    cli.ok(&["unmount", bg]);
    assert_eq!(cli.run(&["pin", "ls"]).status.code(), Some(0), "the store is released");
    assert_eq!(cli.ok(&["cat", "/a.txt"]), "a\n", "and the last write committed");
    // a plain umount (and fusermount3 -u) then an immediate mount: it waits for the old
    // process to let go, and the old process never takes the new mount down with it
    for how in [&["umount"][..], &["fusermount3", "-u"]] {
        if Command::new(how[0]).arg("--version").output().is_err() {
            continue; // fuse3 not installed: umount alone
        }
        cli.ok(&["mount", "--background", bg]);
        run_ok(Command::new(how[0]).args(&how[1..]).arg(&dir));
        cli.ok(&["mount", "--background", bg]);
        std::thread::sleep(Duration::from_secs(2)); // the old process is long gone by now
        let entry = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(entry.contains(&format!(" {} ", dir.display())), "the new mount is still there ({how:?})");
        fs::write(dir.join("b.txt"), b"b\n").unwrap();
        assert_eq!(fs::read(dir.join("b.txt")).unwrap(), b"b\n");
        cli.ok(&["unmount", bg]);
    }
    // mount --background on a store in use exits 5
    cli.ok(&["mount", "--background", bg]);
    fs::create_dir(cli.path("bg2")).unwrap();
    cli.fails(&["mount", "--background", cli.path("bg2").to_str().unwrap()], 5);
    cli.ok(&["unmount", bg]);
}

#[test]
fn a_final_commit_that_fails_fails_the_unmount_saying_why() {
    // a store on a 16 MiB tmpfs, filled from outside after a write through the mount
    let cli = Cli::new();
    let (home, _disk) = small_disk(&cli, 16);
    let dir = cli.path("mnt");
    fs::create_dir(&dir).unwrap();
    let _guard = UnmountOnDrop(dir.clone());
    let run = |args: &[&str]| cli.cmd().env("CIDFS_HOME", &home).args(args).output().unwrap();
    // no periodic commit: the unmount's is the one that meets the full disk
    let out = run(&["mount", "--background", "--hot-size", "0", "--commit-interval", "3600", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // written out of order, so that nothing of it is hashed and stored while it is written:
    // the final commit has all 4 MiB to store
    let data = common::noise(4 << 20, 90);
    let f = fs::File::create(dir.join("data.bin")).unwrap();
    f.write_all_at(&data[2 << 20..], 2 << 20).unwrap();
    f.write_all_at(&data[..2 << 20], 0).unwrap();
    drop(f);
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", home.join("filler").display()))
        .arg("bs=1M")
        .output();
    let out = run(&["unmount", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("final commit failed") && err.contains("No space left"), "{err}");
    // the store is free at once, and consistent
    fs::remove_file(home.join("filler")).unwrap();
    let verify = run(&["verify"]);
    assert!(verify.status.success(), "{verify:?}");
}

/// A directory on a tmpfs of `mib` MiB, for a store on a small disk (unmounted on drop).
fn small_disk(cli: &Cli, mib: u32) -> (std::path::PathBuf, UnmountOnDrop) {
    let home = cli.path("small-disk");
    fs::create_dir(&home).unwrap();
    run_ok(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"]).arg(&home));
    (home.clone(), UnmountOnDrop(home))
}

/// Free and total bytes of the filesystem holding `path`.
fn disk_space(path: &Path) -> (u64, u64) {
    let s = nix::sys::statvfs::statvfs(path).unwrap();
    (s.blocks_available() * s.fragment_size(), s.blocks() * s.fragment_size())
}

#[test]
fn hot_copies_give_way_before_a_write_fails_and_never_take_the_reserve() {
    let cli = Cli::new();
    let (home, _disk) = small_disk(&cli, 64);
    let run = |args: &[&str]| {
        let out = cli.cmd().env("CIDFS_HOME", &home).env("CIDFS_RESERVE", "10%").args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    for i in 0..3 {
        let f = cli.write(&format!("in/{i}.bin"), &common::noise(8 << 20, 100 + i));
        run(&["add", "-Q", f.to_str().unwrap()]);
    }
    let copies = fs::read_dir(home.join("hot"))
        .unwrap()
        .filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
        .count();
    assert!(copies >= 2, "hot copies were made ({copies})");
    let (free, total) = disk_space(&home);
    assert!(free >= total / 10, "copies never take the reserve: {free} of {total} free");
    // a write needing more than is free: the copies give way, the write succeeds
    let dir = cli.path("mnt");
    fs::create_dir(&dir).unwrap();
    let _guard = UnmountOnDrop(dir.clone());
    run(&["mount", "--background", dir.to_str().unwrap()]);
    let data = common::noise(14 << 20, 110);
    if let Err(e) = fs::write(dir.join("new.bin"), &data) {
        let log = fs::read_to_string(home.join("mount.log")).unwrap_or_default();
        panic!("{e}: {log} {:?} hot: {:?}", disk_space(&home), fs::read_dir(home.join("hot")).unwrap().count());
    }
    fs::File::open(dir.join("new.bin")).unwrap().sync_all().unwrap();
    assert!(fs::read(dir.join("new.bin")).unwrap() == data);
    run(&["unmount", dir.to_str().unwrap()]);
    run(&["verify"]);
}

#[test]
fn names_too_long_and_files_too_large_get_the_errors_posix_names() {
    let cli = Cli::new();
    let m = cli.mount("mnt", &[]);
    let long = "x".repeat(256);
    let errno = |r: std::io::Result<()>| r.unwrap_err().raw_os_error();
    assert_eq!(errno(fs::metadata(m.dir.join(&long)).map(|_| ())), Some(libc::ENAMETOOLONG));
    assert_eq!(errno(fs::File::open(m.dir.join(&long)).map(|_| ())), Some(libc::ENAMETOOLONG));
    assert_eq!(errno(fs::remove_file(m.dir.join(&long))), Some(libc::ENAMETOOLONG));
    assert_eq!(errno(fs::remove_dir(m.dir.join(&long))), Some(libc::ENAMETOOLONG));
    assert_eq!(errno(fs::rename(m.dir.join(&long), m.dir.join("short"))), Some(libc::ENAMETOOLONG));
    assert_eq!(errno(fs::File::create(m.dir.join(&long)).map(|_| ())), Some(libc::ENAMETOOLONG));
    let within = "y".repeat(255);
    fs::write(m.dir.join(&within), b"ok").unwrap();
    assert_eq!(fs::read(m.dir.join(&within)).unwrap(), b"ok");
    // past the largest file size: EFBIG, for truncate and for write
    let f = fs::OpenOptions::new().create(true).truncate(true).write(true).open(m.dir.join("big")).unwrap();
    assert_eq!(errno(f.set_len(999_999_999_999_999)), Some(libc::EFBIG));
    assert_eq!(errno(f.write_all_at(b"x", 1 << 45)), Some(libc::EFBIG));
    // a hole within it takes no room: a truncate far beyond the free space succeeds
    f.set_len(1 << 40).unwrap();
    assert_eq!(fs::metadata(m.dir.join("big")).unwrap().len(), 1 << 40);
}

#[test]
fn a_terabyte_hole_costs_nothing_to_commit_and_reads_back() {
    let cli = Cli::new();
    let m = cli.mount("mnt", &[]);
    let f = fs::OpenOptions::new().create(true).truncate(true).write(true).open(m.dir.join("sparse")).unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"!", 1 << 40).unwrap();
    let started = Instant::now();
    f.sync_all().unwrap(); // the commit: no zero is read or hashed
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "committing a 1 TiB hole took {took:?}");
    drop(f);
    let md = fs::metadata(m.dir.join("sparse")).unwrap();
    assert_eq!(md.len(), (1 << 40) + 1);
    let r = fs::File::open(m.dir.join("sparse")).unwrap();
    let mut buf = [9u8; 8];
    r.read_exact_at(&mut buf, (1 << 40) - 7).unwrap();
    assert_eq!(&buf, b"\0\0\0\0\0\0\0!");
    r.read_exact_at(&mut buf[..4], 0).unwrap();
    assert_eq!(&buf[..4], b"head");
    r.read_exact_at(&mut buf, 123 << 30).unwrap();
    assert_eq!(buf, [0u8; 8]);
    let cid = String::from_utf8(getxattr(&m.dir.join("sparse"), "ipfs.cid").unwrap()).unwrap();
    drop(r);
    drop(m);
    // the same bytes (and the mode and mtime the drive keeps in the DAG), added from a
    // sparse file: the same CID (also without reading zeros)
    let src = fs::File::create(cli.path("same")).unwrap();
    src.write_all_at(b"head", 0).unwrap();
    src.write_all_at(b"!", 1 << 40).unwrap();
    src.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(md.mode() & 0o7777)).unwrap();
    src.set_modified(md.modified().unwrap()).unwrap();
    assert_eq!(cli.add_q(&cli.path("same"), &["--pin=false", "--preserve-mode", "--preserve-mtime"]), cid);
}

/// Runs `cmd` in a shell as uid/gid 65534 with the supplementary group 4321.
fn as_nobody_in_4321(cmd: &str) -> std::process::Output {
    Command::new("setpriv").args(["--reuid=65534", "--regid=65534", "--groups=4321", "sh", "-c", cmd]).output().unwrap()
}

#[test]
fn files_belong_to_whoever_made_them() {
    use std::os::unix::fs::PermissionsExt;
    let cli = Cli::new();
    fs::set_permissions(cli.work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let m = cli.mount("mnt", &["--allow-other"]);
    fs::create_dir(m.dir.join("shared")).unwrap();
    fs::set_permissions(m.dir.join("shared"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::create_dir(m.dir.join("sg")).unwrap();
    std::os::unix::fs::chown(m.dir.join("sg"), None, Some(1234)).unwrap();
    fs::set_permissions(m.dir.join("sg"), fs::Permissions::from_mode(0o2777)).unwrap();
    let shared = m.dir.join("shared");
    let out = as_nobody_in_4321(&format!(
        "set -e; cd {0}; echo mine > mine; chmod 600 mine; cat mine; mkdir d; mv d d2; chgrp 4321 mine; \
         touch {1}/sgfile; mkdir {1}/sgdir",
        shared.display(),
        m.dir.join("sg").display()
    ));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"mine\n", "the creator reopens its own 0600 file");
    let md = fs::metadata(shared.join("mine")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (65534, 4321, 0o600));
    assert_eq!(fs::metadata(shared.join("d2")).unwrap().uid(), 65534);
    // in a setgid directory, the directory's group, and new directories are setgid too
    let f = fs::metadata(m.dir.join("sg/sgfile")).unwrap();
    assert_eq!((f.uid(), f.gid()), (65534, 1234));
    let d = fs::metadata(m.dir.join("sg/sgdir")).unwrap();
    assert_eq!((d.gid(), d.mode() & 0o2000), (1234, 0o2000));
    // a group the caller is not in: refused
    let out = as_nobody_in_4321(&format!("chgrp 777 {}", shared.join("mine").display()));
    assert!(!out.status.success());
    // kept across a remount, like any owner
    drop(m);
    let m = cli.mount("mnt", &["--allow-other"]);
    let md = fs::metadata(m.dir.join("shared/mine")).unwrap();
    assert_eq!((md.uid(), md.gid()), (65534, 4321));
    // root's own files cost no sidecar entry: still the mounting user's by default
    fs::write(m.dir.join("rootfile"), b"r").unwrap();
    assert_eq!(fs::metadata(m.dir.join("rootfile")).unwrap().uid(), 0);
}

#[test]
fn ctime_follows_every_change_and_survives_a_remount() {
    use std::os::unix::fs::PermissionsExt;
    let cli = Cli::new();
    let m = cli.mount("mnt", &[]);
    let f = m.dir.join("f");
    let times = |p: &Path| {
        let md = fs::symlink_metadata(p).unwrap();
        ((md.mtime(), md.mtime_nsec()), (md.ctime(), md.ctime_nsec()))
    };
    fs::write(&f, b"one").unwrap();
    let (mtime, ctime) = times(&f);
    assert_eq!(mtime, ctime, "after a write the ctime is the mtime");
    std::thread::sleep(Duration::from_millis(20));
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    let (m2, c2) = times(&f);
    assert_eq!(m2, mtime, "chmod leaves the mtime");
    assert!(c2 > ctime, "chmod moves the ctime");
    // an mtime set into the past never takes the ctime back
    run_ok(Command::new("touch").args(["-d", "2001-01-01 00:00:00"]).arg(&f));
    let (m3, c3) = times(&f);
    assert_eq!(m3.0, 978_307_200);
    assert!(c3 >= c2, "touch -d moves the ctime forward");
    std::thread::sleep(Duration::from_millis(20));
    run_ok(Command::new("setfattr").args(["-n", "user.k", "-v", "v"]).arg(&f));
    let (_, c4) = times(&f);
    assert!(c4 > c3, "an xattr moves the ctime");
    std::thread::sleep(Duration::from_millis(20));
    fs::rename(&f, m.dir.join("g")).unwrap();
    let (_, c5) = times(&m.dir.join("g"));
    assert!(c5 > c4, "a rename moves the ctime");
    drop(m);
    let m = cli.mount("mnt", &[]);
    assert_eq!(times(&m.dir.join("g")), (m3, c5), "kept across a remount");
    fs::write(m.dir.join("g"), b"two").unwrap();
    let (m6, c6) = times(&m.dir.join("g"));
    assert_eq!(m6, c6, "a write: the ctime is the mtime again");
    assert!(c6 > c5);
}

/// Commits `f` (fsync) while stat, ls and a write go on elsewhere on the mount: none may
/// wait for the commit.
fn commit_without_stalling(m: &common::Mounted, f: fs::File) {
    let started = Instant::now();
    let committing = std::thread::spawn(move || f.sync_all());
    let (mut slowest, mut asked) = (Duration::ZERO, 0);
    while !committing.is_finished() {
        let t = Instant::now();
        fs::metadata(m.dir.join("dir")).unwrap();
        fs::read_dir(&m.dir).unwrap().count();
        fs::write(m.dir.join("dir/small"), b"x").unwrap();
        slowest = slowest.max(t.elapsed());
        asked += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    committing.join().unwrap().unwrap();
    let took = started.elapsed();
    assert!(slowest < Duration::from_millis(500), "stat/ls/write waited {slowest:?} during a {took:?} commit");
    assert!(asked >= 3, "the commit took {took:?}: too short to tell");
}

#[test]
fn a_large_commit_does_not_stall_the_mount() {
    let cli = Cli::new();
    let m = cli.mount("mnt", &["--hot-size", "0"]);
    fs::create_dir(m.dir.join("dir")).unwrap();
    // 384 MiB written out of order (second half first): nothing is hashed while written,
    // so the commit has it all to import
    let f = fs::File::create(m.dir.join("big.bin")).unwrap();
    let chunk = common::noise(8 << 20, 120);
    for i in (0..48u64).rev() {
        f.write_all_at(&chunk, i * (8 << 20)).unwrap();
    }
    commit_without_stalling(&m, f);
    // then changed in place, every chunk of it: the commit re-hashes them over the
    // committed leaves, and that too goes on outside the drive's lock
    let other = common::noise(8 << 20, 121);
    let f = fs::OpenOptions::new().write(true).open(m.dir.join("big.bin")).unwrap();
    for i in 0..48u64 {
        f.write_all_at(if i == 17 { &chunk } else { &other }, i * (8 << 20)).unwrap();
    }
    commit_without_stalling(&m, f);
    let r = fs::File::open(m.dir.join("big.bin")).unwrap();
    let mut buf = vec![0u8; 8 << 20];
    r.read_exact_at(&mut buf, 17 << 23).unwrap();
    assert!(buf == chunk);
    r.read_exact_at(&mut buf, 40 << 23).unwrap();
    assert!(buf == other);
}
