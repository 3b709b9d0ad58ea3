//! POSIX behaviour of the drive on a real mount: O_DIRECT, locks, fallocate, xattrs,
//! ownership by the creating user, ctime, name and size limits.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::mount::*;
use common::{Cli, run_ok};

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
    // a second name and its removal change the link count: both move the ctime
    std::thread::sleep(Duration::from_millis(20));
    fs::hard_link(m.dir.join("g"), m.dir.join("h")).unwrap();
    let (_, linked) = times(&m.dir.join("g"));
    assert!(linked > c5, "link moves the ctime");
    std::thread::sleep(Duration::from_millis(20));
    fs::remove_file(m.dir.join("h")).unwrap();
    let (_, c5) = times(&m.dir.join("g"));
    assert!(c5 > linked, "unlinking another name moves the ctime");
    drop(m);
    let m = cli.mount("mnt", &[]);
    assert_eq!(times(&m.dir.join("g")), (m3, c5), "kept across a remount");
    fs::write(m.dir.join("g"), b"two").unwrap();
    let (m6, c6) = times(&m.dir.join("g"));
    assert_eq!(m6, c6, "a write: the ctime is the mtime again");
    assert!(c6 > c5);
}

#[test]
fn link_counts_follow_subdirectories_and_open_unlinked_files() {
    use std::io::{Read, Seek, Write};
    let cli = Cli::new();
    let m = cli.mount("mnt", &[]);
    let nlink = |p: &Path| fs::symlink_metadata(p).unwrap().nlink();
    let (a, b) = (m.dir.join("a"), m.dir.join("b"));
    fs::create_dir_all(a.join("s1")).unwrap();
    fs::create_dir(a.join("s2")).unwrap();
    fs::write(a.join("file"), b"x").unwrap();
    fs::create_dir(&b).unwrap();
    assert_eq!(nlink(&a), 4, "2 + two subdirectories (a file does not count)");
    assert_eq!(nlink(&b), 2);
    fs::rename(a.join("s2"), b.join("s2")).unwrap();
    assert_eq!((nlink(&a), nlink(&b)), (3, 3), "a directory moved takes its '..' along");
    fs::remove_dir(b.join("s2")).unwrap();
    assert_eq!(nlink(&b), 2);
    // '..' in a listing is the parent
    let dotdot = Command::new("ls").arg("-ai").arg(a.join("s1")).output().unwrap();
    let listing = String::from_utf8(dotdot.stdout).unwrap();
    let parent_ino = listing.lines().find(|l| l.ends_with(" ..")).unwrap().split_whitespace().next().unwrap();
    assert_eq!(parent_ino, fs::metadata(&a).unwrap().ino().to_string(), "{listing}");

    // a file unlinked while open: no links, still readable and writable
    let mut f =
        fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(m.dir.join("tmp")).unwrap();
    f.write_all(b"kept").unwrap();
    fs::remove_file(m.dir.join("tmp")).unwrap();
    assert_eq!(f.metadata().unwrap().nlink(), 0, "fstat of an unlinked file");
    f.write_all(b" open").unwrap();
    f.rewind().unwrap();
    let mut back = String::new();
    f.read_to_string(&mut back).unwrap();
    assert_eq!(back, "kept open");
    drop(f);

    // the counts come from the store's index after a remount (nothing looked at yet)
    drop(m);
    let m = cli.mount("mnt", &[]);
    assert_eq!(nlink(&m.dir.join("a")), 3);
    assert_eq!(nlink(&m.dir), 4, "the root: a and b");
}
