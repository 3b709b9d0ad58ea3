//! Real tools on the drive: editors and logs, rsync, git, sqlite, restic, borg, rsync -aHAX.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use common::mount::*;
use common::{Cli, run_ok, same_tree};

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
