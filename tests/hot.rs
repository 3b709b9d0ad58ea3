//! Hot copies on a real mount: the kernel reads them directly (FUSE passthrough), they
//! never go stale, and they give way before a write would fail.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::process::Command;

use common::mount::*;
use common::{Cli, getxattr, run_ok};

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
