//! Writing the drive through a real mount: durability (fsync, kill -9, remount, verify),
//! the kernel caches, snapshots, the capacity cap, spills, holes, commits that never stall.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mount::*;
use common::{Cli, getxattr, run_ok, same_tree};

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
