//! The writable drive, driven without a kernel: an in-memory store takes the commits.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cid::Cid;

use super::*;
use crate::block::{Block, kind};
use crate::fetch::FetchError;
use crate::importer::file::import_bytes;
use crate::importer::{BlockSink, ImportOptions};
use crate::store::StoreError;
use crate::unixfs::Metadata;

#[derive(Default)]
struct MemStore {
    blocks: Mutex<HashMap<Cid, Bytes>>,
    root: Mutex<Option<Cid>>,
    /// Blocks that each commit added (not already held).
    added: Mutex<Vec<usize>>,
}

impl Blocks for MemStore {
    fn get(&self, cid: &Cid) -> Result<Bytes, FetchError> {
        self.blocks.lock().unwrap().get(cid).cloned().ok_or(FetchError::NotFound(*cid))
    }
    fn kind_hint(&self, cid: &Cid) -> Option<Kind> {
        self.blocks.lock().unwrap().get(cid).map(|d| kind(cid, d))
    }
}

struct Sink<'a>(&'a MemStore, usize);

impl BlockSink for Sink<'_> {
    type Error = StoreError;
    fn put(&mut self, block: Block) -> Result<(), StoreError> {
        let mut m = self.0.blocks.lock().unwrap();
        if !m.contains_key(block.cid()) {
            self.1 += 1;
            m.insert(*block.cid(), block.into_data());
        }
        Ok(())
    }
}

impl DriveStore for MemStore {
    fn commit(
        &self,
        build: &mut dyn FnMut(&mut dyn BlockSink<Error = StoreError>) -> Result<Cid, VfsError>,
    ) -> Result<(), VfsError> {
        let mut sink = Sink(self, 0);
        let root = build(&mut sink)?;
        self.added.lock().unwrap().push(sink.1);
        *self.root.lock().unwrap() = Some(root);
        Ok(())
    }
}

fn mount(store: &Arc<MemStore>) -> Vfs {
    let root = *store.root.lock().unwrap();
    Vfs::writable(store.clone(), root, store.clone(), std::env::temp_dir(), Box::new(Capacity::default))
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
    vfs.write(f, 5 * 262_144 + 1000, b"CHANGED!").unwrap();
    vfs.commit().unwrap();
    assert_eq!(*store.added.lock().unwrap().last().unwrap(), 3, "one leaf, the file root, the drive root");
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
