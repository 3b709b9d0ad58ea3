//! What the mount benchmarks share: running commands, a cidfs mount in a child process,
//! and its peak RSS.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// What a benchmark needs before it starts: root (for mounts) and the baseline tools,
/// each with the Debian package that provides it. Says what is missing and how to get it,
/// then exits, rather than failing half-way with "No such file or directory".
pub fn require(bench: &str, root: bool, tools: &[(&str, &str)]) {
    let mut missing = Vec::new();
    if root && !nix::unistd::getuid().is_root() {
        missing.push("root (it mounts filesystems and drops the page cache): run it with sudo".to_string());
    }
    for (tool, package) in tools {
        if !on_path(tool) {
            missing.push(format!("`{tool}` for its baseline: apt-get install {package}"));
        }
    }
    if !missing.is_empty() {
        eprintln!("{bench}: cannot run; it needs:");
        for m in &missing {
            eprintln!("  - {m}");
        }
        std::process::exit(2);
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

pub fn sh(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?} failed");
}

/// Seconds `cmd` takes.
pub fn timed(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    sh(cmd);
    t.elapsed().as_secs_f64()
}

/// `cidfs mount` of the store `home` at `dir`, served by a child process until dropped.
pub struct Mount {
    pub child: Child,
    pub dir: PathBuf,
}

pub fn mount(home: &Path, dir: &Path) -> Mount {
    mount_with(home, dir, &[])
}

/// `mount` with extra arguments.
pub fn mount_with(home: &Path, dir: &Path, args: &[&str]) -> Mount {
    std::fs::create_dir_all(dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cidfs"))
        .arg("mount")
        .arg(dir)
        .args(args)
        .env("CIDFS_HOME", home)
        .env("CIDFS_MOUNT_NOTIFY", "1")
        .env("CIDFS_BOOTSTRAP", "none")
        .env("CIDFS_LISTEN", "/ip4/127.0.0.1/tcp/0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "cidfs mount failed");
    Mount { child, dir: dir.to_path_buf() }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = self.child.wait();
    }
}

/// Peak resident memory of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A `cidfs provider serve` over `dir` listening on `listen` (port 0: any), with `extra`
/// flags; (the process, its URL) once it listens.
pub fn provider(dir: &Path, listen: &str, extra: &[String]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cidfs"))
        .env("CIDFS_HOME", dir)
        .args(["provider", "serve", "--listen", listen, "--confirm-delay", "100ms", "--dir"])
        .arg(dir.join("provider"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("http://"), "the provider printed {line:?}");
    (child, line.trim().to_string())
}
