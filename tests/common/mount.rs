//! Helpers of the real-mount tests (`mount.rs`, `drive.rs`, `namespaces.rs`, `posix.rs`,
//! `tools.rs`, `hot.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use std::fs;
use std::process::Command;

use super::{Cli, run_ok};

pub fn sample(cli: &Cli) -> std::path::PathBuf {
    cli.write("tree/hello.txt", b"hello\n");
    cli.write("tree/empty", b"");
    cli.write("tree/a/b/c/deep.txt", b"deep\n");
    cli.write("tree/big.bin", &super::noise(5_000_000, 50));
    std::os::unix::fs::symlink("a/b/c/deep.txt", cli.path("tree/link")).unwrap();
    cli.path("tree")
}

/// After an unmount, the mount process exits and releases the store.
pub fn wait_for_mount_process_to_exit(cli: &Cli) {
    let deadline = Instant::now() + Duration::from_secs(10);
    // `status` asks a running mount, so ask something only the store's owner can answer
    while cli.run(&["pin", "ls"]).status.code() == Some(5) {
        assert!(Instant::now() < deadline, "the mount process did not exit after unmount");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Unmounts a background mount even when the test fails half-way.
pub struct UnmountOnDrop(pub std::path::PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        let _ = super::nix_umount(&self.0);
    }
}

pub fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

pub fn nix_kill(pid: u32, sig: i32) {
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// Runs `cmd` as the unprivileged user `nobody`.
pub fn as_nobody(cmd: &str) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", cmd])
        .output()
        .unwrap()
}

/// Runs `cmd` in a shell as uid/gid 65534 with the supplementary group 4321.
pub fn as_nobody_in_4321(cmd: &str) -> std::process::Output {
    Command::new("setpriv").args(["--reuid=65534", "--regid=65534", "--groups=4321", "sh", "-c", cmd]).output().unwrap()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes the process `pid` has read (all its threads, any file).
pub fn rchar(pid: u32) -> u64 {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).unwrap().trim().parse().unwrap()
}

pub fn drop_page_cache() {
    run_ok(&mut Command::new("sync"));
    fs::write("/proc/sys/vm/drop_caches", "1").expect("dropping the page cache needs root");
}

pub fn wait_for_file(path: &Path, len: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::metadata(path).map(|m| m.len()).ok() != Some(len) {
        assert!(Instant::now() < deadline, "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A directory on a tmpfs of `mib` MiB, for a store on a small disk (unmounted on drop).
pub fn small_disk(cli: &Cli, mib: u32) -> (std::path::PathBuf, UnmountOnDrop) {
    let home = cli.path("small-disk");
    fs::create_dir(&home).unwrap();
    run_ok(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"]).arg(&home));
    (home.clone(), UnmountOnDrop(home))
}

/// Free and total bytes of the filesystem holding `path`.
pub fn disk_space(path: &Path) -> (u64, u64) {
    let s = nix::sys::statvfs::statvfs(path).unwrap();
    (s.blocks_available() * s.fragment_size(), s.blocks() * s.fragment_size())
}

/// Descriptors the process `pid` holds on anonymous spill files in the store's `tmp/`.
pub fn open_spills(pid: u32, home: &Path) -> usize {
    let tmp = home.join("tmp");
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(&tmp))
        .count()
}
