//! The writable drive, driven without a kernel: an in-memory store takes the commits.

use std::ffi::OsStr;
use std::sync::Arc;

use cid::Cid;

use super::mem_store::MemStore;
use super::*;
use crate::block::Block;
use crate::importer::ImportOptions;
use crate::importer::file::import_bytes;
use crate::unixfs::Metadata;

fn mount(store: &Arc<MemStore>) -> Vfs {
    let root = *store.root.lock().unwrap();
    let space = || Capacity { total_bytes: u64::MAX, free_bytes: u64::MAX, files: 0 };
    let side = *store.side.lock().unwrap();
    Vfs::writable(store.clone(), root, store.clone(), std::env::temp_dir(), Box::new(space)).with_posix_sidecar(side)
}

fn read_all(vfs: &Vfs, ino: u64) -> Vec<u8> {
    vfs.read(ino, 0, u32::MAX).unwrap().concat()
}

fn ino(vfs: &Vfs, parent: u64, name: &str) -> u64 {
    vfs.lookup(parent, OsStr::new(name)).unwrap().ino
}

#[test]
fn writes_read_back_before_and_after_commit_and_remount() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    let f = vfs.create(ROOT_INO, "notes.txt", 0o600).unwrap().ino;
    vfs.write(f, 0, b"hello").unwrap();
    vfs.write(f, 10, b"world").unwrap(); // a hole of 5 bytes
    assert_eq!(read_all(&vfs, f), b"hello\0\0\0\0\0world");
    assert_eq!(vfs.getattr(f).unwrap().size, 15);
    let root = vfs.commit().unwrap().expect("something changed");
    assert_eq!(vfs.commit().unwrap(), None, "nothing left to commit");
    assert_eq!(read_all(&vfs, f), b"hello\0\0\0\0\0world", "still readable after commit");
    let again = mount(&store);
    let f2 = ino(&again, ROOT_INO, "notes.txt");
    assert_eq!(read_all(&again, f2), b"hello\0\0\0\0\0world");
    assert_eq!(again.getattr(f2).unwrap().perm, 0o600, "mode is stored as UnixFS metadata");
    assert_eq!(again.cid_of(ROOT_INO).unwrap(), Some(root));
}

#[test]
fn an_edit_in_the_middle_stores_only_the_path_to_the_root() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    let data: Vec<u8> = (0..10 * 262_144u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let f = vfs.create(ROOT_INO, "big.bin", 0o644).unwrap().ino;
    vfs.write(f, 0, &data).unwrap();
    vfs.commit().unwrap();
    let vfs = mount(&store);
    let f = ino(&vfs, ROOT_INO, "big.bin");
    *store.gets.lock().unwrap() = 0;
    vfs.write(f, 5 * 262_144 + 1000, b"CHANGED!").unwrap();
    // what the commit stores, staged ahead of it or in it
    let held_before = store.blocks.lock().unwrap().len();
    vfs.commit().unwrap();
    let stored = store.blocks.lock().unwrap().len() - held_before;
    assert_eq!(stored, 3, "one leaf, the file root, the drive root");
    // and the edit read only what it touched: not the other nine leaves
    let reads = std::mem::take(&mut *store.gets.lock().unwrap());
    assert!(reads < 8, "an 8-byte edit fetched {reads} blocks");
    let mut want = data.clone();
    want[5 * 262_144 + 1000..5 * 262_144 + 1008].copy_from_slice(b"CHANGED!");
    let again = mount(&store);
    assert_eq!(read_all(&again, ino(&again, ROOT_INO, "big.bin")), want);
    // the leaves are the ones `cidfs add` makes for the same bytes
    let mut sink = Vec::new();
    import_bytes(&ImportOptions::default(), Metadata::default(), &want, &mut sink).unwrap();
    let held = store.blocks.lock().unwrap();
    assert!(sink.iter().filter(|b| b.data().len() > 200_000).all(|leaf| held.contains_key(leaf.cid())));
}

#[test]
fn truncate_grows_with_zeros_and_shrinks() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    let f = vfs.create(ROOT_INO, "t", 0o644).unwrap().ino;
    vfs.write(f, 0, b"abcdef").unwrap();
    vfs.truncate(f, 3).unwrap();
    assert_eq!(read_all(&vfs, f), b"abc");
    vfs.truncate(f, 6).unwrap();
    assert_eq!(read_all(&vfs, f), b"abc\0\0\0");
    vfs.commit().unwrap();
    vfs.truncate(f, 0).unwrap();
    vfs.commit().unwrap();
    let again = mount(&store);
    assert_eq!(read_all(&again, ino(&again, ROOT_INO, "t")), b"");
}

#[test]
fn directories_unlink_and_rename_follow_posix() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    let d = vfs.mkdir(ROOT_INO, "d", 0o755).unwrap().ino;
    let a = vfs.create(d, "a", 0o644).unwrap().ino;
    vfs.write(a, 0, b"A").unwrap();
    let b = vfs.create(ROOT_INO, "b", 0o644).unwrap().ino;
    vfs.write(b, 0, b"B").unwrap();
    assert_eq!(vfs.remove(ROOT_INO, "d", true).unwrap_err().errno(), libc::ENOTEMPTY);
    assert_eq!(vfs.remove(ROOT_INO, "d", false).unwrap_err().errno(), libc::EISDIR);
    assert_eq!(vfs.remove(ROOT_INO, "b", true).unwrap_err().errno(), libc::ENOTDIR);
    assert_eq!(vfs.create(ROOT_INO, "b", 0o644).unwrap_err().errno(), libc::EEXIST);
    assert_eq!(vfs.create(ROOT_INO, &"x".repeat(256), 0o644).unwrap_err().errno(), libc::ENAMETOOLONG);
    vfs.create(ROOT_INO, &"x".repeat(255), 0o644).unwrap();
    assert_eq!(vfs.create(ROOT_INO, IPFS_DIR, 0o644).unwrap_err().errno(), libc::EINVAL);
    // rename over an existing file replaces it
    vfs.rename(ROOT_INO, "b", d, "a").unwrap();
    assert_eq!(read_all(&vfs, ino(&vfs, d, "a")), b"B");
    assert_eq!(vfs.lookup(ROOT_INO, OsStr::new("b")).unwrap_err().errno(), libc::ENOENT);
    // a file cannot replace a directory, a directory cannot go inside itself
    let e = vfs.mkdir(ROOT_INO, "e", 0o755).unwrap().ino;
    vfs.create(ROOT_INO, "f", 0o644).unwrap();
    assert_eq!(vfs.rename(ROOT_INO, "f", ROOT_INO, "e").unwrap_err().errno(), libc::EISDIR);
    assert_eq!(vfs.rename(ROOT_INO, "e", ROOT_INO, "f").unwrap_err().errno(), libc::ENOTDIR);
    let inner = vfs.mkdir(e, "inner", 0o755).unwrap().ino;
    assert_eq!(vfs.rename(ROOT_INO, "e", inner, "loop").unwrap_err().errno(), libc::EINVAL);
    vfs.rename(ROOT_INO, "d", e, "moved").unwrap();
    vfs.commit().unwrap();
    let again = mount(&store);
    let e2 = ino(&again, ROOT_INO, "e");
    let moved = ino(&again, e2, "moved");
    assert_eq!(read_all(&again, ino(&again, moved, "a")), b"B");
    let names: Vec<String> = again.list(ROOT_INO).unwrap().into_iter().map(|e| e.name).skip(2).collect();
    assert_eq!(names, vec!["e".to_string(), "f".to_string(), "x".repeat(255)]);
}

#[test]
fn an_unlinked_open_file_keeps_working() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    let f = vfs.create(ROOT_INO, "tmp", 0o644).unwrap().ino;
    vfs.write(f, 0, b"still here").unwrap();
    vfs.remove(ROOT_INO, "tmp", false).unwrap();
    assert_eq!(read_all(&vfs, f), b"still here");
    vfs.write(f, 0, b"STILL").unwrap();
    assert_eq!(read_all(&vfs, f), b"STILL here");
    vfs.commit().unwrap();
    assert_eq!(vfs.lookup(ROOT_INO, OsStr::new("tmp")).unwrap_err().errno(), libc::ENOENT);
}

#[test]
fn symlinks_modes_and_mtimes_persist() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    vfs.symlink(ROOT_INO, "l", b"target/path").unwrap();
    let f = vfs.create(ROOT_INO, "f", 0o644).unwrap().ino;
    let when = UNIX_EPOCH + Duration::new(1_600_000_000, 5);
    vfs.set_meta(f, Some(0o751), Some(when)).unwrap();
    vfs.commit().unwrap();
    let again = mount(&store);
    assert_eq!(again.readlink(ino(&again, ROOT_INO, "l")).unwrap(), b"target/path");
    let a = again.lookup(ROOT_INO, OsStr::new("f")).unwrap();
    assert_eq!((a.perm, a.mtime), (0o751, when));
}

#[test]
fn writes_past_the_capacity_fail_with_enospc_and_keep_what_was_committed() {
    let store = Arc::new(MemStore::default());
    let root = *store.root.lock().unwrap();
    let space = || Capacity { total_bytes: 1 << 20, free_bytes: 1 << 20, files: 0 };
    let vfs = Vfs::writable(store.clone(), root, store.clone(), std::env::temp_dir(), Box::new(space));
    let f = vfs.create(ROOT_INO, "f", 0o644).unwrap().ino;
    vfs.write(f, 0, &[7u8; 600_000]).unwrap();
    vfs.commit().unwrap();
    let g = vfs.create(ROOT_INO, "g", 0o644).unwrap().ino;
    vfs.write(g, 0, &[1u8; 500_000]).unwrap();
    assert_eq!(vfs.write(g, 500_000, &[1u8; 600_000]).unwrap_err().errno(), libc::ENOSPC);
    // a hole stores nothing: growing a file by truncate takes no room
    vfs.truncate(g, 5 << 20).unwrap();
    assert_eq!(vfs.getattr(g).unwrap().size, 5 << 20);
    assert_eq!(read_all(&vfs, f).len(), 600_000);
}

#[test]
fn periodic_commits_leave_files_open_for_writing_for_later() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    let done = vfs.create(ROOT_INO, "done.txt", 0o644).unwrap().ino;
    vfs.write(done, 0, b"v1").unwrap();
    vfs.released_writer(done);
    let open = vfs.create(ROOT_INO, "open.txt", 0o644).unwrap().ino;
    vfs.write(open, 0, b"streaming").unwrap();
    vfs.commit_closed().unwrap();
    let seen = mount(&store);
    assert!(seen.lookup(ROOT_INO, OsStr::new("done.txt")).is_ok());
    assert_eq!(seen.lookup(ROOT_INO, OsStr::new("open.txt")).unwrap_err().errno(), libc::ENOENT, "still being written");
    // a committed file reopened and changed keeps its committed version meanwhile
    vfs.opened_for_write(done);
    vfs.write(done, 0, b"v2").unwrap();
    vfs.commit_closed().unwrap();
    let seen = mount(&store);
    assert_eq!(read_all(&seen, ino(&seen, ROOT_INO, "done.txt")), b"v1");
    // closing (or an fsync) brings everything in
    vfs.released_writer(done);
    vfs.released_writer(open);
    vfs.commit_closed().unwrap();
    let seen = mount(&store);
    assert_eq!(read_all(&seen, ino(&seen, ROOT_INO, "done.txt")), b"v2");
    assert_eq!(read_all(&seen, ino(&seen, ROOT_INO, "open.txt")), b"streaming");
    assert_eq!(vfs.commit_closed().unwrap(), None, "nothing left");
}

#[test]
fn a_read_only_drive_refuses_changes() {
    let store = Arc::new(MemStore::default());
    let vfs = Vfs::new(store.clone(), RootMode::Drive(None), Box::new(Capacity::default));
    assert_eq!(vfs.create(ROOT_INO, "x", 0o644).unwrap_err().errno(), libc::EROFS);
    assert_eq!(vfs.mkdir(ROOT_INO, "x", 0o755).unwrap_err().errno(), libc::EROFS);
}

#[test]
fn the_ipfs_namespace_stays_read_only_on_a_writable_drive() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    let f = vfs.create(ROOT_INO, "x", 0o644).unwrap().ino;
    vfs.write(f, 0, b"x").unwrap();
    let root = vfs.commit().unwrap().unwrap();
    let ipfs = ino(&vfs, ROOT_INO, IPFS_DIR);
    let r = ino(&vfs, ipfs, &root.to_string());
    let x = ino(&vfs, r, "x");
    assert_eq!(vfs.open(x, true).unwrap_err().errno(), libc::EROFS);
    assert_eq!(vfs.create(r, "y", 0o644).unwrap_err().errno(), libc::EROFS);
    assert_eq!(vfs.mkdir(ipfs, "y", 0o755).unwrap_err().errno(), libc::EROFS);
}

/// Model-based test: random operations on the drive, compared with a plain in-memory tree.
mod model {
    use std::cell::RefCell;
    use std::collections::{BTreeMap, BTreeSet};
    use std::rc::Rc;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    enum R {
        /// Shared by its hard links.
        File(Rc<RefCell<Vec<u8>>>),
        Dir(BTreeMap<String, R>),
    }

    fn file(bytes: Vec<u8>) -> R {
        R::File(Rc::new(RefCell::new(bytes)))
    }

    #[derive(Clone, Debug)]
    enum Op {
        Create(Vec<String>, String),
        Mkdir(Vec<String>, String),
        Write(Vec<String>, u64, Vec<u8>),
        /// Appends this many bytes (made from the seed) in 128 KiB writes, as `cp` does: long
        /// enough to be streamed (see `stream.rs`) while other operations go on.
        Append(Vec<String>, u32, u32),
        Truncate(Vec<String>, u64),
        Unlink(Vec<String>, String),
        Rmdir(Vec<String>, String),
        Rename(Vec<String>, String, Vec<String>, String),
        Link(Vec<String>, Vec<String>, String),
        Exchange(Vec<String>, String, Vec<String>, String),
        Commit,
        Remount,
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![Just("a".to_string()), Just("b".to_string()), Just("c".to_string())]
    }

    fn dir() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(name(), 0..2)
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (dir(), name()).prop_map(|(d, n)| Op::Create(d, n)),
            2 => (dir(), name()).prop_map(|(d, n)| Op::Mkdir(d, n)),
            4 => (prop::collection::vec(name(), 1..3), 0u64..600_000, prop::collection::vec(any::<u8>(), 0..3000)).prop_map(|(p, o, d)| Op::Write(p, o, d)),
            // (mostly top-level names, which exist more often)
            3 => (prop::collection::vec(name(), 1..2), any::<u32>(), 300_000u32..2_000_000).prop_map(|(p, s, n)| Op::Append(p, s, n)),
            1 => (prop::collection::vec(name(), 1..3), 0u64..600_000).prop_map(|(p, l)| Op::Truncate(p, l)),
            1 => (dir(), name()).prop_map(|(d, n)| Op::Unlink(d, n)),
            1 => (dir(), name()).prop_map(|(d, n)| Op::Rmdir(d, n)),
            2 => (dir(), name(), dir(), name()).prop_map(|(a, b, c, d)| Op::Rename(a, b, c, d)),
            2 => (prop::collection::vec(name(), 1..3), dir(), name()).prop_map(|(a, b, c)| Op::Link(a, b, c)),
            1 => (dir(), name(), dir(), name()).prop_map(|(a, b, c, d)| Op::Exchange(a, b, c, d)),
            1 => Just(Op::Commit),
            1 => Just(Op::Remount),
        ]
    }

    /// The reference: a directory tree in memory, with POSIX's answers.
    fn get<'a>(root: &'a mut R, path: &[String]) -> Result<&'a mut R, i32> {
        let mut cur = root;
        for p in path {
            cur = match cur {
                R::Dir(m) => m.get_mut(p).ok_or(libc::ENOENT)?,
                R::File(_) => return Err(libc::ENOTDIR),
            };
        }
        Ok(cur)
    }

    fn dir_of<'a>(root: &'a mut R, path: &[String]) -> Result<&'a mut BTreeMap<String, R>, i32> {
        match get(root, path)? {
            R::Dir(m) => Ok(m),
            R::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn apply_ref(root: &mut R, op: &Op) -> Result<(), i32> {
        match op {
            Op::Create(d, n) | Op::Mkdir(d, n) => {
                let m = dir_of(root, d)?;
                if m.contains_key(n) {
                    return Err(libc::EEXIST);
                }
                m.insert(n.clone(), if matches!(op, Op::Create(..)) { file(vec![]) } else { R::Dir(BTreeMap::new()) });
                Ok(())
            }
            Op::Write(p, off, data) => match get(root, p)? {
                R::File(f) => {
                    let mut f = f.borrow_mut();
                    let end = *off as usize + data.len();
                    if data.is_empty() {
                        return Ok(());
                    }
                    if f.len() < end {
                        f.resize(end, 0);
                    }
                    f[*off as usize..end].copy_from_slice(data);
                    Ok(())
                }
                R::Dir(_) => Err(libc::EISDIR),
            },
            Op::Append(p, seed, len) => match get(root, p)? {
                R::File(f) => {
                    f.borrow_mut().extend(noise(*len as usize, *seed));
                    Ok(())
                }
                R::Dir(_) => Err(libc::EISDIR),
            },
            Op::Truncate(p, len) => match get(root, p)? {
                R::File(f) => {
                    f.borrow_mut().resize(*len as usize, 0);
                    Ok(())
                }
                R::Dir(_) => Err(libc::EISDIR),
            },
            Op::Unlink(d, n) | Op::Rmdir(d, n) => {
                let m = dir_of(root, d)?;
                match (m.get(n), matches!(op, Op::Rmdir(..))) {
                    (None, _) => Err(libc::ENOENT),
                    (Some(R::Dir(_)), false) => Err(libc::EISDIR),
                    (Some(R::File(_)), true) => Err(libc::ENOTDIR),
                    (Some(R::Dir(c)), true) if !c.is_empty() => Err(libc::ENOTEMPTY),
                    _ => {
                        m.remove(n);
                        Ok(())
                    }
                }
            }
            Op::Rename(sd, sn, td, tn) => {
                // both parents resolve before the source entry is looked up
                dir_of(root, sd)?;
                dir_of(root, td)?;
                let src = dir_of(root, sd)?.get(sn).cloned().ok_or(libc::ENOENT)?;
                let src_is_dir = matches!(src, R::Dir(_));
                let mut src_path = sd.clone();
                src_path.push(sn.clone());
                let target_dir = dir_of(root, td)?;
                if src_is_dir && td.len() >= src_path.len() && td[..src_path.len()] == src_path[..] {
                    return Err(libc::EINVAL);
                }
                if sd == td && sn == tn {
                    return Ok(());
                }
                match (target_dir.get(tn), src_is_dir) {
                    (Some(R::File(t)), false) if matches!(&src, R::File(s) if Rc::ptr_eq(s, t)) => return Ok(()),
                    (Some(R::Dir(_)), false) => return Err(libc::EISDIR),
                    (Some(R::File(_)), true) => return Err(libc::ENOTDIR),
                    (Some(R::Dir(c)), true) if !c.is_empty() => return Err(libc::ENOTEMPTY),
                    _ => {}
                }
                dir_of(root, sd)?.remove(sn);
                dir_of(root, td)?.insert(tn.clone(), src);
                Ok(())
            }
            Op::Link(p, td, tn) => {
                let src = get(root, p)?.clone();
                let target = dir_of(root, td)?;
                if target.contains_key(tn) {
                    return Err(libc::EEXIST);
                }
                if let R::Dir(_) = src {
                    return Err(libc::EPERM);
                }
                target.insert(tn.clone(), src);
                Ok(())
            }
            Op::Exchange(sd, sn, td, tn) => {
                // like renameat2: both parents resolve, then both names must exist
                dir_of(root, sd)?;
                dir_of(root, td)?;
                let a = dir_of(root, sd)?.get(sn).cloned().ok_or(libc::ENOENT)?;
                let b = dir_of(root, td)?.get(tn).cloned().ok_or(libc::ENOENT)?;
                if sd == td && sn == tn {
                    return Ok(());
                }
                // neither may end up below itself: a directory moving into its own subtree
                let mut a_path = sd.clone();
                a_path.push(sn.clone());
                let mut b_path = td.clone();
                b_path.push(tn.clone());
                let below = |dir: &[String], p: &[String]| dir.len() >= p.len() && dir[..p.len()] == p[..];
                if (matches!(a, R::Dir(_)) && below(td, &a_path)) || (matches!(b, R::Dir(_)) && below(sd, &b_path)) {
                    return Err(libc::EINVAL);
                }
                dir_of(root, sd)?.insert(sn.clone(), b);
                dir_of(root, td)?.insert(tn.clone(), a);
                Ok(())
            }
            Op::Commit | Op::Remount => Ok(()),
        }
    }

    /// Which paths name the same file (groups of two or more).
    fn link_groups_ref(root: &R) -> BTreeSet<Vec<String>> {
        fn walk(r: &R, path: &str, out: &mut Vec<(usize, String)>) {
            match r {
                R::File(f) => out.push((Rc::as_ptr(f) as usize, path.to_string())),
                R::Dir(m) => m.iter().for_each(|(n, c)| walk(c, &format!("{path}/{n}"), out)),
            }
        }
        let mut all = Vec::new();
        walk(root, "", &mut all);
        group(all)
    }

    fn group<K: Ord>(all: Vec<(K, String)>) -> BTreeSet<Vec<String>> {
        let mut by: BTreeMap<K, Vec<String>> = BTreeMap::new();
        for (k, p) in all {
            by.entry(k).or_default().push(p);
        }
        by.into_values()
            .filter(|g| g.len() > 1)
            .map(|mut g| {
                g.sort();
                g
            })
            .collect()
    }

    /// Which paths share an inode in the vfs, checking each one's `st_nlink`.
    fn link_groups_vfs(vfs: &Vfs) -> BTreeSet<Vec<String>> {
        fn walk(vfs: &Vfs, ino: u64, path: &str, out: &mut Vec<(u64, String)>) {
            for e in vfs.list(ino).unwrap().into_iter().skip(2) {
                let a = vfs.lookup(ino, OsStr::new(&e.name)).unwrap();
                let p = format!("{path}/{}", e.name);
                match a.kind {
                    FileKind::Directory => walk(vfs, a.ino, &p, out),
                    _ => out.push((a.ino, p)),
                }
            }
        }
        let mut all = Vec::new();
        walk(vfs, ROOT_INO, "", &mut all);
        let groups = group(all.clone());
        for (ino, p) in all {
            let want = groups.iter().find(|g| g.contains(&p)).map_or(1, |g| g.len());
            assert_eq!(vfs.getattr(ino).unwrap().nlink as usize, want, "st_nlink of {p}");
        }
        groups
    }

    fn resolve(vfs: &Vfs, path: &[String]) -> Result<u64, i32> {
        let mut ino = ROOT_INO;
        for p in path {
            ino = vfs.lookup(ino, OsStr::new(p)).map_err(|e| e.errno())?.ino;
        }
        Ok(ino)
    }

    /// `path`, which must be a directory (`ENOTDIR` otherwise).
    fn resolve_dir(vfs: &Vfs, path: &[String]) -> Result<u64, i32> {
        let ino = resolve(vfs, path)?;
        if vfs.getattr(ino).map_err(|e| e.errno())?.kind != FileKind::Directory {
            return Err(libc::ENOTDIR);
        }
        Ok(ino)
    }

    fn apply_vfs(vfs: &Vfs, op: &Op) -> Result<(), i32> {
        let e = |e: VfsError| e.errno();
        match op {
            Op::Create(d, n) => vfs.create(resolve(vfs, d)?, n, 0o644).map(|_| ()).map_err(e),
            Op::Mkdir(d, n) => vfs.mkdir(resolve(vfs, d)?, n, 0o755).map(|_| ()).map_err(e),
            Op::Write(p, off, data) => {
                let ino = resolve(vfs, p)?;
                if vfs.getattr(ino).map_err(e)?.kind == FileKind::Directory {
                    return Err(libc::EISDIR); // the kernel refuses to open a directory for writing
                }
                if data.is_empty() {
                    return Ok(());
                }
                vfs.write(ino, *off, data).map(|_| ()).map_err(e)
            }
            Op::Append(p, seed, len) => {
                let ino = resolve(vfs, p)?;
                let attr = vfs.getattr(ino).map_err(e)?;
                if attr.kind == FileKind::Directory {
                    return Err(libc::EISDIR);
                }
                let mut at = attr.size;
                for piece in noise(*len as usize, *seed).chunks(128 << 10) {
                    vfs.write(ino, at, piece).map_err(e)?;
                    at += piece.len() as u64;
                }
                Ok(())
            }
            Op::Truncate(p, len) => {
                let ino = resolve(vfs, p)?;
                vfs.truncate(ino, *len).map_err(e)
            }
            Op::Unlink(d, n) => vfs.remove(resolve(vfs, d)?, n, false).map_err(e),
            Op::Rmdir(d, n) => vfs.remove(resolve(vfs, d)?, n, true).map_err(e),
            // like the kernel: each parent path resolves to a directory, source first
            Op::Rename(sd, sn, td, tn) => {
                let s = resolve_dir(vfs, sd)?;
                vfs.rename(s, sn, resolve_dir(vfs, td)?, tn).map_err(e)
            }
            Op::Link(p, td, tn) => {
                // like the kernel: the source resolves, then the new parent, then the name
                let src = resolve(vfs, p)?;
                let t = resolve_dir(vfs, td)?;
                if vfs.lookup(t, OsStr::new(tn)).is_ok() {
                    return Err(libc::EEXIST);
                }
                vfs.link(src, t, tn).map(|_| ()).map_err(e)
            }
            Op::Exchange(sd, sn, td, tn) => {
                let s = resolve_dir(vfs, sd)?;
                vfs.exchange(s, sn, resolve_dir(vfs, td)?, tn).map_err(e)
            }
            Op::Commit => vfs.commit().map(|_| ()).map_err(e),
            Op::Remount => Ok(()),
        }
    }

    /// The whole tree as the vfs shows it.
    fn snapshot(vfs: &Vfs, ino: u64) -> R {
        let attr = vfs.getattr(ino).unwrap();
        if attr.kind == FileKind::File {
            return file(vfs.read(ino, 0, u32::MAX).unwrap().concat());
        }
        let mut m = BTreeMap::new();
        for e in vfs.list(ino).unwrap().into_iter().skip(2) {
            let child = vfs.lookup(ino, OsStr::new(&e.name)).unwrap().ino;
            m.insert(e.name, snapshot(vfs, child));
        }
        R::Dir(m)
    }

    proptest! {
        // 256 cases in the suite; PROPTEST_CASES=5000 for a longer hunt.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn the_drive_behaves_like_a_plain_tree(ops in prop::collection::vec(op(), 1..40)) {
            let store = Arc::new(MemStore::default());
            let mut vfs = mount(&store);
            let mut reference = R::Dir(BTreeMap::new());
            for (i, op) in ops.iter().enumerate() {
                if let Op::Remount = op {
                    vfs.commit().unwrap();
                    vfs = mount(&store);
                }
                let want = apply_ref(&mut reference, op);
                let got = apply_vfs(&vfs, op);
                prop_assert_eq!(got, want, "step {}: {:?}", i, op);
            }
            prop_assert_eq!(snapshot(&vfs, ROOT_INO), reference.clone());
            prop_assert_eq!(link_groups_vfs(&vfs), link_groups_ref(&reference));
            vfs.commit().unwrap();
            let again = mount(&store);
            prop_assert_eq!(snapshot(&again, ROOT_INO), reference.clone());
            prop_assert_eq!(link_groups_vfs(&again), link_groups_ref(&reference));
        }
    }
}

#[test]
fn hard_links_share_one_inode_and_survive_remounts_and_renames() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    let dir = vfs.mkdir(ROOT_INO, "d", 0o755).unwrap().ino;
    let f = vfs.create(ROOT_INO, "a", 0o644).unwrap().ino;
    vfs.write(f, 0, b"one").unwrap();
    let linked = vfs.link(f, dir, "b").unwrap();
    assert_eq!((linked.ino, linked.nlink), (f, 2));
    assert_eq!(vfs.getattr(f).unwrap().nlink, 2);
    vfs.write(ino(&vfs, dir, "b"), 0, b"two").unwrap();
    assert_eq!(read_all(&vfs, f), b"two", "one file, two names");
    vfs.commit().unwrap();
    // both directories name the new content
    let file_cid = vfs.cid_of(f).unwrap();
    assert_eq!(vfs.cid_of(ino(&vfs, dir, "b")).unwrap(), file_cid);

    let again = mount(&store);
    let dir2 = ino(&again, ROOT_INO, "d");
    let (a, b) = (ino(&again, ROOT_INO, "a"), ino(&again, dir2, "b"));
    assert_eq!(a, b, "the link is one inode after a remount");
    assert_eq!(again.getattr(a).unwrap().nlink, 2);
    again.write(b, 3, b"!").unwrap();
    again.commit().unwrap();
    let root_before = again.cid_of(ROOT_INO).unwrap();
    assert_eq!(again.cid_of(a).unwrap(), again.cid_of(b).unwrap(), "a change through one name changes both");
    // renaming a directory on the path keeps the group
    again.rename(ROOT_INO, "d", ROOT_INO, "e").unwrap();
    again.commit().unwrap();
    assert_ne!(again.cid_of(ROOT_INO).unwrap(), root_before);

    let third = mount(&store);
    let e = ino(&third, ROOT_INO, "e");
    let (a, b) = (ino(&third, ROOT_INO, "a"), ino(&third, e, "b"));
    assert_eq!((a, third.getattr(a).unwrap().nlink), (b, 2));
    assert_eq!(read_all(&third, a), b"two!");
    // removing a name leaves one; rename over the other name of the same file is a no-op
    third.rename(e, "b", ROOT_INO, "a").unwrap();
    assert_eq!(third.getattr(a).unwrap().nlink, 2, "POSIX: renaming a link over its twin does nothing");
    third.remove(e, "b", false).unwrap();
    assert_eq!(third.getattr(a).unwrap().nlink, 1);
    third.commit().unwrap();
    let fourth = mount(&store);
    assert_eq!(fourth.getattr(ino(&fourth, ROOT_INO, "a")).unwrap().nlink, 1);
    assert_eq!(read_all(&fourth, ino(&fourth, ROOT_INO, "a")), b"two!");
}

#[test]
fn hard_link_refusals() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    let dir = vfs.mkdir(ROOT_INO, "d", 0o755).unwrap().ino;
    let f = vfs.create(ROOT_INO, "f", 0o644).unwrap().ino;
    let errno = |r: Result<Attr, VfsError>| r.err().map(|e| e.errno());
    assert_eq!(errno(vfs.link(dir, ROOT_INO, "d2")), Some(libc::EPERM), "directories");
    assert_eq!(errno(vfs.link(f, ROOT_INO, "d")), Some(libc::EEXIST));
    assert_eq!(errno(vfs.link(f, ROOT_INO, &"x".repeat(256))), Some(libc::ENAMETOOLONG));
    let ipfs = ino(&vfs, ROOT_INO, ".ipfs");
    assert_eq!(errno(vfs.link(f, ipfs, "x")), Some(libc::EROFS), "into /.ipfs");
    vfs.commit().unwrap();
    let cid = vfs.cid_of(dir).unwrap().unwrap();
    let under_cid = vfs.lookup(ipfs, OsStr::new(&cid.to_string())).unwrap().ino;
    assert_eq!(errno(vfs.link(under_cid, ROOT_INO, "y")), Some(libc::EXDEV), "from content under a CID");
    vfs.remove(ROOT_INO, "f", false).unwrap();
    assert_eq!(errno(vfs.link(f, ROOT_INO, "back")), Some(libc::ENOENT), "an unlinked file");
}

#[test]
fn owners_atimes_and_xattrs_live_beside_the_dag_and_persist() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    let dir = vfs.mkdir(ROOT_INO, "d", 0o755).unwrap().ino;
    let sub = vfs.mkdir(dir, "sub", 0o755).unwrap().ino;
    let f = vfs.create(sub, "f", 0o644).unwrap().ino;
    vfs.write(f, 0, b"same bytes").unwrap();
    vfs.commit().unwrap();
    let plain_cid = vfs.cid_of(f).unwrap();
    let t = UNIX_EPOCH + Duration::new(1_000_000, 5);
    vfs.set_owner(f, Some(Some(1234)), Some(Some(99))).unwrap();
    vfs.set_atime(f, Some(t)).unwrap();
    vfs.set_xattr(f, "user.note", b"\0binary\xff", false, false).unwrap();
    vfs.set_xattr(ROOT_INO, "user.root", b"r", false, false).unwrap();
    vfs.set_xattr(dir, "trusted.t", b"", false, false).unwrap();
    vfs.commit().unwrap();
    assert_eq!(vfs.cid_of(f).unwrap(), plain_cid, "the DAG stays what `cidfs add` makes");

    let again = mount(&store);
    let d = ino(&again, ROOT_INO, "d");
    let f = ino(&again, ino(&again, d, "sub"), "f");
    let a = again.getattr(f).unwrap();
    assert_eq!((a.uid, a.gid, a.atime), (Some(1234), Some(99), Some(t)));
    assert_eq!(again.getxattr(f, OsStr::new("user.note")).unwrap(), b"\0binary\xff");
    assert_eq!(again.getxattr(ROOT_INO, OsStr::new("user.root")).unwrap(), b"r");
    assert_eq!(again.getxattr(d, OsStr::new("trusted.t")).unwrap(), b"");
    let names = again.listxattr(f).unwrap();
    assert_eq!(names, b"user.note\0", "stored attributes are listed; ipfs.cid is not");
    // XATTR_CREATE / XATTR_REPLACE, removal, and refusals
    let errno = |r: Result<(), VfsError>| r.err().map(|e| e.errno());
    assert_eq!(errno(again.set_xattr(f, "user.note", b"x", true, false)), Some(libc::EEXIST));
    assert_eq!(errno(again.set_xattr(f, "user.new", b"x", false, true)), Some(libc::ENODATA));
    assert_eq!(errno(again.set_xattr(f, "system.posix_acl_access", b"x", false, false)), Some(libc::ENOTSUP));
    assert_eq!(errno(again.set_xattr(f, CID_XATTR, b"x", false, false)), Some(libc::EPERM));
    for computed in [crate::vfs::PIECES_XATTR, crate::vfs::REPLICAS_XATTR, "cidfs.future"] {
        assert_eq!(errno(again.set_xattr(f, computed, b"x", false, false)), Some(libc::EPERM), "{computed}");
    }
    assert_eq!(errno(again.set_xattr(f, "user.big", &vec![0; 70_000], false, false)), Some(libc::E2BIG));
    assert_eq!(errno(again.set_xattr(f, &format!("user.{}", "n".repeat(300)), b"", false, false)), Some(libc::ERANGE));
    for i in 0..3 {
        again.set_xattr(f, &format!("user.fill{i}"), &vec![0; 20_000], false, false).unwrap();
    }
    assert_eq!(errno(again.set_xattr(f, "user.fill3", &vec![0; 20_000], false, false)), Some(libc::ENOSPC));
    again.remove_xattr(f, "user.note").unwrap();
    assert_eq!(errno(again.remove_xattr(f, "user.note")), Some(libc::ENODATA));
    for i in 0..3 {
        again.remove_xattr(f, &format!("user.fill{i}")).unwrap();
    }
    again.set_owner(f, Some(None), Some(None)).unwrap();
    again.set_atime(f, None).unwrap();
    again.remove_xattr(ROOT_INO, "user.root").unwrap();
    again.remove_xattr(d, "trusted.t").unwrap();
    again.commit().unwrap();
    // nothing left to say but when each node last changed (its ctime)
    let side = store.side.lock().unwrap().unwrap();
    assert_eq!(only_ctimes(&store, &side), 3, "f, d and the root changed; nothing else is said");
    let ipfs = ino(&again, ROOT_INO, ".ipfs");
    assert_eq!(errno(again.set_xattr(ipfs, "user.x", b"", false, false)), Some(libc::EROFS));
}

/// Entries of the sidecar `side` (and its subdirectories'), asserting they hold nothing but
/// a ctime; how many there are.
fn only_ctimes(store: &MemStore, side: &Cid) -> usize {
    let data = Blocks::get(store, side).unwrap();
    let side = posix::decode(&serde_ipld_dagcbor::from_slice(&data).unwrap()).unwrap();
    assert!(side.groups.is_empty());
    let mut n = 0;
    for (name, e) in side.entries {
        let posix::Extras { ctime, .. } = e.extras.clone();
        assert_eq!(e.extras, posix::Extras { ctime, ..Default::default() }, "{name:?}");
        n += usize::from(ctime.is_some()) + e.sub.map_or(0, |s| only_ctimes(store, &s));
    }
    n
}

#[test]
fn a_malformed_sidecar_is_eio_naming_its_cid() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    vfs.mkdir(ROOT_INO, "d", 0o755).unwrap();
    vfs.commit().unwrap();
    let bad = Block::encode(cid::Version::V1, crate::block::DAG_CBOR, &b"\x82\x01\x02"[..]).unwrap();
    store.blocks.lock().unwrap().insert(*bad.cid(), bad.data().clone());
    *store.side.lock().unwrap() = Some(*bad.cid());
    let again = mount(&store);
    let err = again.lookup(ROOT_INO, OsStr::new("d")).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert!(err.to_string().contains(&bad.cid().to_string()), "{err}");
}

#[test]
fn rename_exchange_swaps_two_entries_atomically() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    let d = vfs.mkdir(ROOT_INO, "d", 0o755).unwrap().ino;
    let sub = vfs.mkdir(d, "sub", 0o755).unwrap().ino;
    let a = vfs.create(ROOT_INO, "a", 0o644).unwrap().ino;
    vfs.write(a, 0, b"A").unwrap();
    let b = vfs.create(d, "b", 0o644).unwrap().ino;
    vfs.write(b, 0, b"B").unwrap();
    vfs.exchange(ROOT_INO, "a", d, "b").unwrap();
    assert_eq!(read_all(&vfs, ino(&vfs, ROOT_INO, "a")), b"B");
    assert_eq!(read_all(&vfs, ino(&vfs, d, "b")), b"A");
    // a file and a directory swap too; a directory cannot go below itself
    vfs.exchange(ROOT_INO, "a", d, "sub").unwrap();
    assert_eq!(vfs.getattr(ino(&vfs, ROOT_INO, "a")).unwrap().ino, sub);
    let errno = |r: Result<(), VfsError>| r.err().map(|e| e.errno());
    let f = vfs.create(sub, "deep", 0o644).unwrap().ino;
    assert_eq!(errno(vfs.exchange(ROOT_INO, "a", sub, "deep")), Some(libc::EINVAL));
    assert_eq!(errno(vfs.exchange(ROOT_INO, "a", d, "nope")), Some(libc::ENOENT));
    assert_eq!(vfs.getattr(f).unwrap().kind, FileKind::File);
    vfs.commit().unwrap();
    let again = mount(&store);
    let d = ino(&again, ROOT_INO, "d");
    assert_eq!(read_all(&again, ino(&again, d, "b")), b"A");
    assert_eq!(read_all(&again, ino(&again, d, "sub")), b"B");
    assert!(again.lookup(ino(&again, ROOT_INO, "a"), OsStr::new("deep")).is_ok());
}

/// Waits (bounded) until the streaming thread has staged at least `n` blocks.
fn wait_staged(store: &MemStore, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while *store.staged.lock().unwrap() < n {
        assert!(std::time::Instant::now() < deadline, "only {} blocks staged", store.staged.lock().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Sets a file's mtime to a fixed time; returns the metadata its UnixFS root then has.
fn fixed_meta(vfs: &Vfs, ino: u64) -> Metadata {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    vfs.set_meta(ino, None, Some(t)).unwrap();
    let mode = u32::from(vfs.getattr(ino).unwrap().perm);
    let mtime = crate::unixfs::pb::UnixTime { seconds: 1_000_000, fractional_nanoseconds: None };
    Metadata { mode: Some(mode), mtime: Some(mtime) }
}

fn kubo_cid(meta: Metadata, data: &[u8]) -> Cid {
    import_bytes(&ImportOptions::default(), meta, data, &mut Vec::new()).unwrap().cid
}

fn noise(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8).collect()
}

#[test]
fn a_file_written_in_order_is_hashed_while_it_is_written() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    let data = noise(20 * 262_144 + 12_345, 1);
    let f = vfs.create(ROOT_INO, "stream.bin", 0o644).unwrap().ino;
    for (i, piece) in data.chunks(1 << 20).enumerate() {
        vfs.write(f, (i << 20) as u64, piece).unwrap();
    }
    wait_staged(&store, 20); // every full chunk, while the file is still open
    assert_eq!(read_all(&vfs, f), data, "reads come from the spill file meanwhile");
    let meta = fixed_meta(&vfs, f);
    vfs.commit().unwrap();
    assert_eq!(vfs.cid_of(f).unwrap(), Some(kubo_cid(meta, &data)), "the CID `cidfs add` gives");
    // the commit stored the tail leaf, the file's inner node and root, and the drive root
    let added = *store.added.lock().unwrap().last().unwrap();
    assert!(added <= 4, "the commit re-stored streamed leaves: {added} blocks");
    let again = mount(&store);
    assert_eq!(read_all(&again, ino(&again, ROOT_INO, "stream.bin")), data);
}

#[test]
fn writes_out_of_order_stop_streaming_and_the_cid_stays_right() {
    let store = Arc::new(MemStore::default());
    let vfs = mount(&store);
    let mut data = noise(12 * 262_144, 2);
    let f = vfs.create(ROOT_INO, "edited.bin", 0o600).unwrap().ino;
    vfs.write(f, 0, &data[..8 * 262_144]).unwrap();
    wait_staged(&store, 8);
    // a write into a streamed chunk: the staged leaves no longer fit
    data[262_144 + 7] ^= 0xff;
    vfs.write(f, 262_144 + 7, &data[262_144 + 7..262_144 + 8]).unwrap();
    vfs.write(f, 8 * 262_144, &data[8 * 262_144..]).unwrap();
    let meta = fixed_meta(&vfs, f);
    vfs.commit().unwrap();
    assert_eq!(vfs.cid_of(f).unwrap(), Some(kubo_cid(meta, &data)));
    // truncating into streamed chunks, then appending, likewise
    let g = vfs.create(ROOT_INO, "cut.bin", 0o600).unwrap().ino;
    let mut other = noise(10 * 262_144, 3);
    vfs.write(g, 0, &other).unwrap();
    wait_staged(&store, 8 + 10);
    vfs.truncate(g, 3 * 262_144 + 5).unwrap();
    other.truncate(3 * 262_144 + 5);
    let more = noise(6 * 262_144, 4);
    vfs.write(g, other.len() as u64, &more).unwrap();
    other.extend_from_slice(&more);
    let meta = fixed_meta(&vfs, g);
    vfs.commit().unwrap();
    assert_eq!(vfs.cid_of(g).unwrap(), Some(kubo_cid(meta, &other)));
    // and truncating to zero starts a fresh stream
    vfs.truncate(g, 0).unwrap();
    let fresh = noise(9 * 262_144 + 1, 5);
    let before = *store.staged.lock().unwrap();
    vfs.write(g, 0, &fresh).unwrap();
    wait_staged(&store, before + 9);
    let meta = fixed_meta(&vfs, g);
    vfs.commit().unwrap();
    assert_eq!(vfs.cid_of(g).unwrap(), Some(kubo_cid(meta, &fresh)));
    let again = mount(&store);
    assert_eq!(read_all(&again, ino(&again, ROOT_INO, "edited.bin")), data);
    assert_eq!(read_all(&again, ino(&again, ROOT_INO, "cut.bin")), fresh);
}

#[test]
fn a_file_cut_short_while_a_commit_imports_it_is_imported_again_not_an_error() {
    let store = Arc::new(MemStore::default());
    let vfs = Arc::new(mount(&store));
    let f = vfs.create(ROOT_INO, "sparse.bin", 0o644).unwrap().ino;
    vfs.released_writer(f); // closed: the commit imports it ahead, outside the lock
    let cutter = {
        let vfs = vfs.clone();
        std::thread::spawn(move || {
            let data = vec![1u8; 8 << 20];
            for i in 0..40u64 {
                // data, a hole, more data: imported by the sparse importer, reading the spill
                vfs.write(f, 0, &data[..1 << 20]).unwrap();
                vfs.write(f, (16 << 20) + i, &data).unwrap();
                // cut it short once a commit is likely importing it
                std::thread::sleep(std::time::Duration::from_millis(i % 8));
                vfs.truncate(f, 4096 + i).unwrap();
            }
        })
    };
    while !cutter.is_finished() {
        vfs.commit().expect("a file changed under the commit is the commit's business, not an error");
    }
    cutter.join().unwrap();
    vfs.commit().unwrap();
    let again = mount(&store);
    let data = read_all(&again, ino(&again, ROOT_INO, "sparse.bin"));
    assert_eq!(data.len(), 4096 + 39);
    assert!(data.iter().all(|b| *b == 1), "the last write, cut at its last length");
}
