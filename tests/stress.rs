//! A stress test of our own: several workers doing thousands of random operations on one
//! mount at once — creates, writes in order, out of order and far past the end, truncates,
//! renames across directories, hard links, chmods, unlinks and fsyncs — each against a
//! model of what it did. At the end: unmount, remount, `cidfs verify`, and the tree must
//! be exactly what the workers last fsync'd (everything, since they fsync all at the end).
//!
//! The counts are fixed (`CIDFS_STRESS_OPS` raises them for a longer local run); the seeds
//! are too, so a failure reproduces.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::Cli;

/// xorshift: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// What one worker believes its subtree holds: names -> inode, inode -> (bytes, mode).
#[derive(Default)]
struct Model {
    names: BTreeMap<PathBuf, usize>,
    inodes: Vec<(Vec<u8>, u32)>,
}

const DIRS: [&str; 3] = ["a", "b", "c/deep"];

fn worker(root: &Path, seed: u64, ops: usize) -> Model {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut m = Model::default();
    for d in DIRS {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let mut serial = 0;
    for _ in 0..ops {
        let names: Vec<PathBuf> = m.names.keys().cloned().collect();
        let pick = |rng: &mut Rng| names[rng.below(names.len() as u64) as usize].clone();
        match rng.below(10) {
            // create, written in order
            0 | 1 => {
                serial += 1;
                let name = Path::new(DIRS[rng.below(3) as usize]).join(format!("f{serial}"));
                let n = rng.below(300_000) as usize;
                let data = rng.bytes(n);
                fs::write(root.join(&name), &data).unwrap();
                m.inodes.push((data, 0o644));
                m.names.insert(name, m.inodes.len() - 1);
            }
            _ if names.is_empty() => {}
            // a write somewhere inside, out of order
            2 => {
                let name = pick(&mut rng);
                let ino = m.names[&name];
                let len = m.inodes[ino].0.len() as u64;
                let at = rng.below(len + 1);
                let n = rng.below(70_000) as usize + 1;
                let data = rng.bytes(n);
                fs::OpenOptions::new().write(true).open(root.join(&name)).unwrap().write_all_at(&data, at).unwrap();
                let content = &mut m.inodes[ino].0;
                let end = at as usize + data.len();
                if content.len() < end {
                    content.resize(end, 0);
                }
                content[at as usize..end].copy_from_slice(&data);
            }
            // far past the end: a hole
            3 => {
                let name = pick(&mut rng);
                let ino = m.names[&name];
                let at = m.inodes[ino].0.len() + 1_000_000 + rng.below(3_000_000) as usize;
                fs::OpenOptions::new()
                    .write(true)
                    .open(root.join(&name))
                    .unwrap()
                    .write_all_at(b"end", at as u64)
                    .unwrap();
                let content = &mut m.inodes[ino].0;
                content.resize(at, 0);
                content.extend_from_slice(b"end");
            }
            4 => {
                let name = pick(&mut rng);
                let ino = m.names[&name];
                let len = rng.below(m.inodes[ino].0.len() as u64 + 100_000);
                fs::OpenOptions::new().write(true).open(root.join(&name)).unwrap().set_len(len).unwrap();
                m.inodes[ino].0.resize(len as usize, 0);
            }
            // a rename across directories (replacing what is there)
            5 => {
                let from = pick(&mut rng);
                serial += 1;
                let to = match rng.below(3) {
                    0 if names.len() > 1 => pick(&mut rng),
                    _ => Path::new(DIRS[rng.below(3) as usize]).join(format!("r{serial}")),
                };
                if from == to {
                    continue;
                }
                fs::rename(root.join(&from), root.join(&to)).unwrap();
                // (two names of one file: POSIX says rename does nothing)
                if m.names.get(&to) != m.names.get(&from) {
                    let ino = m.names.remove(&from).unwrap();
                    m.names.insert(to, ino);
                }
            }
            6 => {
                let from = pick(&mut rng);
                serial += 1;
                let to = Path::new(DIRS[rng.below(3) as usize]).join(format!("l{serial}"));
                fs::hard_link(root.join(&from), root.join(&to)).unwrap();
                let ino = m.names[&from];
                m.names.insert(to, ino);
            }
            7 => {
                let name = pick(&mut rng);
                let mode = [0o600, 0o640, 0o644, 0o755][rng.below(4) as usize];
                fs::set_permissions(root.join(&name), fs::Permissions::from_mode(mode)).unwrap();
                let ino = m.names[&name];
                m.inodes[ino].1 = mode;
            }
            8 => {
                let name = pick(&mut rng);
                fs::remove_file(root.join(&name)).unwrap();
                m.names.remove(&name);
            }
            _ => {
                let name = pick(&mut rng);
                fs::File::open(root.join(&name)).unwrap().sync_all().unwrap();
            }
        }
    }
    // everything fsync'd: files, then the directories holding them
    for name in m.names.keys() {
        fs::File::open(root.join(name)).unwrap().sync_all().unwrap();
    }
    for d in DIRS {
        fs::File::open(root.join(d)).unwrap().sync_all().unwrap();
    }
    m
}

/// Every regular file under `dir`, relative to it.
fn files(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir.join(rel)).unwrap() {
        let e = e.unwrap();
        let p = rel.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            files(dir, &p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn many_workers_at_once_leave_exactly_what_they_fsyncd() {
    let ops: usize = std::env::var("CIDFS_STRESS_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
    let cli = Cli::new();
    let m = cli.mount("mnt", &[]);
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let root = m.dir.join(format!("w{w}"));
            std::thread::spawn(move || worker(&root, w + 1, ops))
        })
        .collect();
    let models: Vec<Model> = workers
        .into_iter()
        .map(|w| w.join().unwrap_or_else(|_| panic!("a worker failed; the mount's log:\n{}", m.log())))
        .collect();
    drop(m);
    cli.ok(&["verify"]);
    let m = cli.mount("mnt", &[]);
    for (w, model) in models.iter().enumerate() {
        let root = m.dir.join(format!("w{w}"));
        let mut found = Vec::new();
        files(&root, Path::new(""), &mut found);
        found.sort();
        let want: Vec<PathBuf> = model.names.keys().cloned().collect();
        assert_eq!(found, want, "worker {w}: the names");
        for (name, ino) in &model.names {
            let (data, mode) = &model.inodes[*ino];
            let md = fs::metadata(root.join(name)).unwrap();
            assert_eq!(md.len(), data.len() as u64, "worker {w}: {name:?}");
            assert_eq!(md.mode() & 0o7777, *mode, "worker {w}: {name:?}");
            assert!(fs::read(root.join(name)).unwrap() == *data, "worker {w}: {name:?} bytes");
        }
        // the names of one inode are hard links of one file
        let mut by_ino: BTreeMap<usize, Vec<&PathBuf>> = BTreeMap::new();
        for (name, ino) in &model.names {
            by_ino.entry(*ino).or_default().push(name);
        }
        for names in by_ino.values().filter(|n| n.len() > 1) {
            let inos: Vec<u64> = names.iter().map(|n| fs::metadata(root.join(n)).unwrap().ino()).collect();
            assert!(inos.windows(2).all(|w| w[0] == w[1]), "worker {w}: {names:?} are one file");
            assert_eq!(fs::metadata(root.join(names[0])).unwrap().nlink(), names.len() as u64);
        }
    }
}
