use std::collections::HashMap;
use std::ffi::OsStr;

use cid::{Cid, Version};
use ipld_core::ipld::Ipld;

use super::content::NODE_CACHE_BYTES;
use super::mem_store::MemStore;
use super::*;
use crate::block::{Block, DAG_CBOR};
use crate::importer::file::{import_bytes, import_symlink};
use crate::importer::{DirBuilder, ImportOptions, LinkInfo};
use crate::unixfs::Metadata;

struct Fixture {
    vfs: Vfs,
    mem: Arc<MemStore>,
    root: LinkInfo,
    big: Vec<u8>,
    big_cid: Cid,
    missing: Cid,
}

fn fixture(mode_ipfs: bool) -> Fixture {
    let opts = ImportOptions { chunk_size: 1000, ..Default::default() };
    let mut sink = Vec::new();
    let big: Vec<u8> = (0..5555u32).map(|i| (i * 7 % 251) as u8).collect();
    let big_link = import_bytes(&opts, Metadata::default(), &big, &mut sink).unwrap();
    let hello = import_bytes(&opts, Metadata::default(), b"hello\n", &mut sink).unwrap();
    let link = import_symlink(&opts, b"hello.txt", Metadata::default(), &mut sink).unwrap();
    let mut sub = DirBuilder::new(Metadata::default());
    for i in 0..100 {
        sub.insert(
            format!("f{i:03}"),
            import_bytes(&opts, Metadata::default(), format!("{i}").as_bytes(), &mut sink).unwrap(),
        );
    }
    let sub = sub.finish(&opts, &mut sink).unwrap();
    // a file whose block we never store
    let mut lost = Vec::new();
    let missing = import_bytes(&opts, Metadata::default(), b"gone", &mut lost).unwrap();
    let cbor = Ipld::Map([("n".to_string(), Ipld::Integer(7)), ("f".to_string(), Ipld::Link(hello.cid))].into());
    let cbor = Block::encode(Version::V1, DAG_CBOR, serde_ipld_dagcbor::to_vec(&cbor).unwrap()).unwrap();
    let cbor_link = LinkInfo { cid: *cbor.cid(), tsize: cbor.data().len() as u64, filesize: 0 };
    sink.push(cbor);
    let mut d = DirBuilder::new(Metadata::default());
    d.insert("big.bin".into(), big_link);
    d.insert("hello.txt".into(), hello);
    d.insert("link".into(), link);
    d.insert("sub".into(), sub);
    d.insert("gone.txt".into(), missing);
    d.insert("data".into(), cbor_link);
    let root = d.finish(&opts, &mut sink).unwrap();
    let mem = Arc::new(MemStore::with(sink));
    let mode = if mode_ipfs { RootMode::Ipfs } else { RootMode::Drive(Some(root.cid)) };
    let cap = Box::new(|| Capacity { total_bytes: 1 << 30, free_bytes: 1 << 29, files: 42 });
    Fixture { vfs: Vfs::new(mem.clone(), mode, cap), mem, root, big, big_cid: big_link.cid, missing: missing.cid }
}

fn read(vfs: &Vfs, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, VfsError> {
    vfs.read(ino, offset, size).map(|parts| parts.concat())
}

fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn files_read_back_with_sizes_and_cids() {
    let f = fixture(false);
    let a = f.vfs.lookup(ROOT_INO, name("big.bin")).unwrap();
    assert_eq!((a.kind, a.size, a.perm, a.blksize, a.mtime), (FileKind::File, 5555, 0o444, 4096, DEFAULT_MTIME));
    assert_eq!(read(&f.vfs, a.ino, 0, 10_000).unwrap(), f.big);
    assert_eq!(read(&f.vfs, a.ino, 999, 3).unwrap(), &f.big[999..1002]);
    assert!(read(&f.vfs, a.ino, 6000, 10).unwrap().is_empty());
    assert_eq!(f.vfs.getxattr(a.ino, name(CID_XATTR)).unwrap(), f.big_cid.to_string().into_bytes());
    assert_eq!(f.vfs.listxattr(a.ino).unwrap(), b"", "ipfs.cid is virtual: read by name, never listed");
    assert_eq!(f.vfs.getxattr(ROOT_INO, name(CID_XATTR)).unwrap(), f.root.cid.to_string().into_bytes());
    assert_eq!(f.vfs.getxattr(a.ino, name("user.x")).unwrap_err().errno(), libc::ENODATA);
    assert_eq!(f.vfs.getattr(ROOT_INO).unwrap().kind, FileKind::Directory);
}

#[test]
fn inode_numbers_are_stable_and_equal_content_shares_them_under_ipfs() {
    let f = fixture(false);
    let a = f.vfs.lookup(ROOT_INO, name("hello.txt")).unwrap().ino;
    let b = f.vfs.lookup(ROOT_INO, name("hello.txt")).unwrap().ino;
    assert_eq!(a, b, "a drive entry keeps its inode");
    let ipfs = f.vfs.lookup(ROOT_INO, name(IPFS_DIR)).unwrap().ino;
    let root = f.vfs.lookup(ipfs, name(&f.root.cid.to_string())).unwrap().ino;
    let hello = f.vfs.lookup(root, name("hello.txt")).unwrap().ino;
    let data = f.vfs.lookup(root, name("data")).unwrap().ino;
    assert_eq!(f.vfs.lookup(data, name("f")).unwrap().ino, hello, "same CID, same inode under /.ipfs");
}

#[test]
fn listing_fetches_no_child_and_types_every_entry() {
    let f = fixture(false);
    let sub = f.vfs.lookup(ROOT_INO, name("sub")).unwrap().ino;
    f.mem.fetches();
    let entries = f.vfs.list(sub).unwrap();
    assert_eq!(entries.len(), 102);
    assert!(f.mem.fetches() <= 1, "only the directory's own block (cached after lookup)");
    let root = f.vfs.list(ROOT_INO).unwrap();
    let kinds: HashMap<&str, FileKind> = root.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(kinds["sub"], FileKind::Directory);
    assert_eq!(kinds["link"], FileKind::Symlink);
    assert_eq!(kinds["big.bin"], FileKind::File);
    assert_eq!(kinds["data"], FileKind::Directory);
    assert!(!kinds.contains_key(IPFS_DIR), ".ipfs is reachable but never listed");
    assert_eq!(f.mem.fetches(), 0);
}

#[test]
fn dir_handles_serve_one_listing() {
    let f = fixture(false);
    let fh = f.vfs.opendir(ROOT_INO).unwrap();
    f.mem.fetches();
    for _ in 0..10 {
        assert_eq!(f.vfs.dir_entries(fh).unwrap().len(), 8);
    }
    assert_eq!(f.mem.fetches(), 0);
    f.vfs.releasedir(fh);
    assert_eq!(f.vfs.dir_entries(fh).unwrap_err().errno(), libc::EBADF);
}

#[test]
fn the_ipfs_namespace_reaches_any_cid() {
    let f = fixture(false);
    let ipfs = f.vfs.lookup(ROOT_INO, name(IPFS_DIR)).unwrap();
    assert_eq!(ipfs.kind, FileKind::Directory);
    assert_eq!(f.vfs.list(ipfs.ino).unwrap().len(), 2, "nothing listed");
    let big = f.vfs.lookup(ipfs.ino, name(&f.big_cid.to_string())).unwrap();
    assert_eq!(read(&f.vfs, big.ino, 0, 100).unwrap(), &f.big[..100]);
    assert_eq!(f.vfs.lookup(ipfs.ino, name("not-a-cid")).unwrap_err().errno(), libc::ENOENT);
    let root = f.vfs.lookup(ipfs.ino, name(&f.root.cid.to_string())).unwrap();
    assert_eq!(f.vfs.lookup(root.ino, name("hello.txt")).unwrap().size, 6);

    let g = fixture(true);
    let big = g.vfs.lookup(ROOT_INO, name(&g.big_cid.to_string())).unwrap();
    assert_eq!(big.size, 5555);
    assert_eq!(g.vfs.lookup(ROOT_INO, name(IPFS_DIR)).unwrap_err().errno(), libc::ENOENT);
}

#[test]
fn symlinks_cbor_and_refusals() {
    let f = fixture(false);
    let link = f.vfs.lookup(ROOT_INO, name("link")).unwrap();
    assert_eq!((link.kind, link.size), (FileKind::Symlink, 9));
    assert_eq!(f.vfs.readlink(link.ino).unwrap(), b"hello.txt");
    let hello = f.vfs.lookup(ROOT_INO, name("hello.txt")).unwrap();
    assert_eq!(f.vfs.readlink(hello.ino).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(f.vfs.open(hello.ino, true).unwrap_err().errno(), libc::EROFS);
    f.vfs.open(hello.ino, false).unwrap();
    assert_eq!(f.vfs.lookup(hello.ino, name("x")).unwrap_err().errno(), libc::ENOTDIR);
    assert_eq!(read(&f.vfs, ROOT_INO, 0, 1).unwrap_err().errno(), libc::EISDIR);
    assert_eq!(f.vfs.lookup(ROOT_INO, name("nope")).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(f.vfs.lookup(ROOT_INO, name("..")).unwrap_err().errno(), libc::ENOENT);
    let data = f.vfs.lookup(ROOT_INO, name("data")).unwrap();
    let n = f.vfs.lookup(data.ino, name("n")).unwrap();
    assert_eq!(read(&f.vfs, n.ino, 0, 100).unwrap(), b"7\n");
    assert_eq!(n.size, 2);
    assert_eq!(f.vfs.getxattr(n.ino, name(CID_XATTR)).unwrap_err().errno(), libc::ENODATA);
}

#[test]
fn a_missing_block_is_eio_naming_nothing_else_broken() {
    let f = fixture(false);
    let err = f.vfs.lookup(ROOT_INO, name("gone.txt")).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert!(err.to_string().contains(&f.missing.to_string()), "{err}");
    // the directory itself still works
    assert_eq!(f.vfs.lookup(ROOT_INO, name("hello.txt")).unwrap().size, 6);
    assert_eq!(f.vfs.statfs().files, 42);
}

#[test]
fn an_empty_drive_is_an_empty_directory() {
    let mem: Arc<dyn Blocks> = Arc::new(MemStore::default());
    let vfs = Vfs::new(mem, RootMode::Drive(None), Box::new(Capacity::default));
    assert_eq!(vfs.list(ROOT_INO).unwrap().len(), 2);
    assert_eq!(vfs.getxattr(ROOT_INO, name(CID_XATTR)).unwrap(), empty_dir_cid().to_string().into_bytes());
    assert_eq!(empty_dir_cid().to_string(), "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn");
}

#[test]
fn the_node_cache_is_bounded_by_bytes_not_count() {
    // 400 one-leaf files of 100 KiB and 400 of 10 KiB: a count-bounded cache of decoded
    // nodes would hold ~40 MiB of file data; leaves over 64 KiB are never kept, small ones
    // are kept within the byte budget.
    let opts = ImportOptions::default();
    let mut sink = Vec::new();
    let mut d = DirBuilder::new(Metadata::default());
    for i in 0..800u32 {
        let size = if i % 2 == 0 { 100 << 10 } else { 10 << 10 };
        let data: Vec<u8> = (0..size).map(|j| (j as u32 ^ i) as u8).collect();
        d.insert(format!("f{i}"), import_bytes(&opts, Metadata::default(), &data, &mut sink).unwrap());
    }
    let root = d.finish(&opts, &mut sink).unwrap();
    let vfs = Vfs::new(Arc::new(MemStore::with(sink)), RootMode::Drive(Some(root.cid)), Box::new(Capacity::default));
    for i in 0..800 {
        let a = vfs.lookup(ROOT_INO, OsStr::new(&format!("f{i}"))).unwrap();
        assert_eq!(read(&vfs, a.ino, 0, 10).unwrap().len(), 10);
    }
    let cached = vfs.cached_node_bytes();
    assert!(cached <= NODE_CACHE_BYTES, "{cached}");
    assert!(cached < 400 * (10 << 10) + (1 << 20), "no 100 KiB leaf is cached: {cached}");
}

#[test]
fn unknown_inodes_are_estale() {
    let f = fixture(false);
    assert_eq!(f.vfs.getattr(999_999).unwrap_err().errno(), libc::ESTALE);
    assert_eq!(f.vfs.lookup(0, name("x")).unwrap_err().errno(), libc::ESTALE);
}

#[test]
fn st_blksize_is_the_leaf_size_however_deep_the_file() {
    for raw_leaves in [false, true] {
        // 8 KiB chunks, 10 links a node: 300 leaves make a tree three levels deep
        let opts = ImportOptions { chunk_size: 8192, max_links: 10, raw_leaves, ..Default::default() };
        let data: Vec<u8> = (0..300 * 8192u32).map(|i| (i % 253) as u8).collect();
        let mut sink = Vec::new();
        let file = import_bytes(&opts, Metadata::default(), &data, &mut sink).unwrap();
        let mem = Arc::new(MemStore::with(sink));
        let vfs = Vfs::new(mem.clone(), RootMode::Ipfs, Box::new(Default::default));
        let a = vfs.lookup(ROOT_INO, name(&file.cid.to_string())).unwrap();
        assert_eq!(a.size, data.len() as u64);
        assert_eq!(a.blksize, 8192, "raw leaves: {raw_leaves}");
    }
}
