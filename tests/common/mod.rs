//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod mount;
pub mod provider;

use std::path::PathBuf;

/// The published vectors (see `tests/vectors/README.md`): `$CIDFS_VECTORS`, else
/// `tests/vectors` in this repository.
pub fn vectors_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CIDFS_VECTORS") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Rows of a vectors file, comments and blank lines skipped, split on `sep`.
pub fn rows(name: &str, sep: char) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(vectors_dir().join(name)).expect("read vectors");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(sep).map(|s| s.trim().to_string()).collect())
        .collect()
}

/// The generated inputs of unixfs.tsv.
pub fn p251() -> Vec<u8> {
    (0..262_145u32).map(|i| (i % 251) as u8).collect()
}

pub fn p7() -> Vec<u8> {
    (0..10_485_760u32).map(|i| (i.wrapping_mul(7).wrapping_add(3) % 256) as u8).collect()
}

/// Deterministic non-repeating bytes (xorshift), for files whose chunks must all differ.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

use std::path::Path;
use std::process::{Command, Output};

/// A private store and a scratch directory, with the `cidfs` binary pointed at the store.
pub struct Cli {
    pub home: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

impl Cli {
    pub fn new() -> Cli {
        Cli { home: tempfile::tempdir().unwrap(), work: tempfile::tempdir().unwrap() }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cidfs"));
        c.env("CIDFS_HOME", self.home.path()).current_dir(self.work.path()).env_remove("RUST_LOG");
        hermetic(&mut c);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cidfs {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs, asserts the exit code, returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "cidfs {args:?}: stderr {stderr}");
        stderr
    }

    pub fn path(&self, rel: &str) -> std::path::PathBuf {
        self.work.path().join(rel)
    }

    pub fn write(&self, rel: &str, data: &[u8]) -> std::path::PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        p
    }

    pub fn add_q(&self, path: &Path, extra: &[&str]) -> String {
        let mut args = vec!["add", "-Q"];
        args.extend_from_slice(extra);
        args.push(path.to_str().unwrap());
        self.ok(&args).trim().to_string()
    }
}

/// `diff -r` of two trees (also compares symlink targets), as a bool.
/// Tests never touch the public IPFS network: no bootstrap peers, listening on loopback
/// only (a random port, so mounts can run side by side).
pub fn hermetic(c: &mut Command) {
    c.env("CIDFS_BOOTSTRAP", "none").env("CIDFS_LISTEN", "/ip4/127.0.0.1/tcp/0").env_remove("CIDFS_PEERS");
}

pub fn same_tree(a: &Path, b: &Path) -> bool {
    Command::new("diff").arg("-r").arg("--no-dereference").arg(a).arg(b).status().unwrap().success()
}

/// Bytes of a CAR with `roots` holding `blocks`.
pub fn car_bytes(roots: &[cid::Cid], blocks: &[cidfs::block::Block]) -> Vec<u8> {
    let mut w = cidfs::car::CarWriter::new(Vec::new(), roots).unwrap();
    for b in blocks {
        w.write(b.cid(), b.data()).unwrap();
    }
    w.finish().unwrap()
}

pub fn output(o: &Output) -> Output {
    o.clone()
}

/// The interop harness directory (tests/interop), with its npm dependencies installed.
pub fn interop_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        dir.join("node_modules/helia").is_dir(),
        "Helia is not installed: run scripts/setup-test-deps (or `npm ci` in {})",
        dir.display()
    );
    dir
}

/// Runs a command and returns its stdout, panicking with its stderr on failure.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Peak resident memory of process `pid`, in MiB.
pub fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib >> 10
}

/// sha256 of bytes, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A `cidfs mount` running in the foreground as a child process.
pub struct Mounted {
    pub child: std::process::Child,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Cli {
    /// Mounts the store at `work/<name>` (created empty) and waits until it is ready.
    pub fn mount(&self, name: &str, extra: &[&str]) -> Mounted {
        self.mount_with(name, extra, None)
    }

    /// Like [`mount`](Self::mount), with the mount process's open files limited to `nofile`.
    pub fn mount_with(&self, name: &str, extra: &[&str], nofile: Option<u32>) -> Mounted {
        assert!(Path::new("/dev/fuse").exists(), "mount tests need /dev/fuse (and root, as in CI)");
        let dir = self.path(name);
        // (a stale mount left by kill -9 fails stat with ENOTCONN: it exists)
        if std::fs::symlink_metadata(&dir).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let log = self.path(&format!("{name}.log"));
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(env!("CARGO_BIN_EXE_cidfs"));
                c.env("CIDFS_HOME", self.home.path()).current_dir(self.work.path()).env_remove("RUST_LOG");
                hermetic(&mut c);
                c
            }
            None => self.cmd(),
        };
        let mut child = cmd
            .arg("mount")
            .arg(&dir)
            .args(extra)
            .env("CIDFS_MOUNT_NOTIFY", "1")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "mount failed: {}", std::fs::read_to_string(&log).unwrap_or_default());
        Mounted { child, dir, log }
    }
}

impl Mounted {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mounted {
    /// Unmounts and lets the mount process finish (its final commit), killing it only if
    /// it does not exit in time.
    fn drop(&mut self) {
        let _ = nix_umount(&self.dir);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn nix_umount(dir: &Path) -> std::io::Result<()> {
    let status = Command::new("umount").arg("-l").arg(dir).stderr(std::process::Stdio::null()).status()?;
    if status.success() { Ok(()) } else { Err(std::io::Error::other("umount failed")) }
}

/// Reads an extended attribute with getxattr(2).
pub fn getxattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    getxattr_sized(path, name, 256)
}

/// getxattr(2) with a buffer of `size` bytes (0 asks for the length only).
pub fn getxattr_sized(path: &Path, name: &str, size: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; size];
    if size == 0 {
        // SAFETY: a null buffer with size 0 asks only for the value's length.
        let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
        return if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(vec![]) };
    }
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

/// The string value of `"key": "…"` (or the first element of `"key": ["…"]`) in a line
/// of JSON the harness scripts print.
pub fn json_str(line: &str, key: &str) -> String {
    let at = line.find(&format!("\"{key}\"")).unwrap_or_else(|| panic!("no {key} in {line}"));
    let rest = &line[at + key.len() + 2..];
    let start = rest.find('"').unwrap() + 1;
    let end = start + rest[start..].find('"').unwrap();
    rest[start..end].to_string()
}
