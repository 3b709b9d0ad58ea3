//! Mounting and unmounting, for real (root and /dev/fuse, as in CI): foreground, background,
//! fstab, signals, kill -9 and stale mounts, other users, remounts.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::mount::*;
use common::{Cli, run_ok};

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

#[test]
fn config_toml_sets_what_flags_set_and_a_broken_one_never_blocks_unmount() {
    let cli = Cli::new();
    let config = cli.home.path().join("config.toml");
    fs::write(&config, "hot-size = \"3M\"\noffline = true\n").unwrap();
    let m = cli.mount("mnt", &[]);
    let status = cli.ok(&["status"]);
    assert!(status.contains("of 3.0 MiB cap"), "hot-size from the file: {status}");
    assert!(status.contains("off (--offline)"), "offline from the file: {status}");
    // a flag overrides the file
    drop(m);
    let m = cli.mount("mnt", &["--offline=false", "--bootstrap", "none"]);
    assert!(!cli.ok(&["status"]).contains("off (--offline)"));
    // a key the file must not have: every command says which, with a usage error...
    fs::write(&config, "hot_sise = 1\n").unwrap();
    let err = cli.fails(&["status"], 2);
    assert!(err.contains("hot_sise") && err.contains("config.toml"), "{err}");
    // ...but unmount needs no settings
    cli.ok(&["unmount", m.dir.to_str().unwrap()]);
    wait_for_mount_process_to_exit(&cli);
}
