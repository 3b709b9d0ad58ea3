//! Who holds the store: `$CIDFS_HOME/owner`, so that a second process refused by the
//! store's lock can say which process holds it and how to stop it.
//!
//! redb's file lock decides who owns the store; this file only describes the owner. The
//! process that got the lock writes it (pid, command line, and a mountpoint once it
//! mounts); one refused by the lock reads it. A stale file (its process gone) is never
//! read as anything but a hint: it is rewritten by the next owner, and a holder whose pid
//! is no longer alive is not named.

use std::fmt;
use std::path::{Path, PathBuf};

const FILE: &str = "owner";

/// The process holding a store, as it described itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command line, e.g. `cidfs mount /home/u/cidfs`.
    pub command: String,
    /// Where it serves a mount, if it does.
    pub mountpoint: Option<PathBuf>,
}

impl Holder {
    /// Parses the file's `key value` lines.
    fn parse(text: &str) -> Option<Holder> {
        let mut pid = None;
        let mut command = String::new();
        let mut mountpoint = None;
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("pid", v)) => pid = v.trim().parse().ok(),
                Some(("command", v)) => command = v.to_string(),
                Some(("mountpoint", v)) => mountpoint = Some(PathBuf::from(v)),
                _ => {}
            }
        }
        Some(Holder { pid: pid?, command, mountpoint })
    }

    fn render(&self) -> String {
        let mut out = format!("pid {}\ncommand {}\n", self.pid, self.command);
        if let Some(m) = &self.mountpoint {
            out.push_str(&format!("mountpoint {}\n", m.display()));
        }
        out
    }

    /// What the refused process should do about it.
    pub fn advice(&self) -> String {
        match &self.mountpoint {
            Some(m) => format!("stop it with `cidfs unmount {}`", m.display()),
            None if self.command.contains(" daemon") => format!("stop it with `kill {}`", self.pid),
            None => "wait for it to finish".to_string(),
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cidfs process {}", self.pid)?;
        match &self.mountpoint {
            Some(m) => write!(f, " (mounted at {})", m.display()),
            None if !self.command.is_empty() => write!(f, " (`{}`)", self.command),
            None => Ok(()),
        }
    }
}

/// This process, as it describes itself.
pub fn this_process(mountpoint: Option<&Path>) -> Holder {
    let command = std::env::args()
        .enumerate()
        .map(|(i, a)| if i == 0 { "cidfs".to_string() } else { a })
        .collect::<Vec<_>>()
        .join(" ");
    Holder { pid: std::process::id(), command, mountpoint: mountpoint.map(Path::to_path_buf) }
}

/// Records `holder` as the store's owner (best effort: it only serves messages).
pub fn write(root: &Path, holder: &Holder) {
    let path = root.join(FILE);
    let tmp = root.join(format!(".{FILE}.{}", std::process::id()));
    let written = super::private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, holder.render().as_bytes()))
        .and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        log::debug!("writing {}: {e}", path.display());
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Whether process `pid` is running (a zombie, exited but not yet reaped, is not: it holds
/// nothing any more).
pub fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // `pid (comm) state ...`: comm may hold anything, so the state follows the last ')'
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// The store's owner, if the file names a process that is still alive.
pub fn read(root: &Path) -> Option<Holder> {
    let holder = Holder::parse(&std::fs::read_to_string(root.join(FILE)).ok()?)?;
    // alive, and a cidfs (a pid reused by another program since is not the holder)
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", holder.pid)).ok()?;
    (comm.starts_with("cidfs") && running(holder.pid)).then_some(holder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_round_trips_and_says_how_to_stop_it() {
        let mount = Holder { pid: 42, command: "cidfs mount /m".into(), mountpoint: Some("/m".into()) };
        assert_eq!(Holder::parse(&mount.render()), Some(mount.clone()));
        assert_eq!(mount.to_string(), "cidfs process 42 (mounted at /m)");
        assert_eq!(mount.advice(), "stop it with `cidfs unmount /m`");
        let daemon = Holder { pid: 7, command: "cidfs daemon".into(), mountpoint: None };
        assert_eq!(daemon.advice(), "stop it with `kill 7`");
        let gc = Holder { pid: 9, command: "cidfs gc".into(), mountpoint: None };
        assert_eq!(gc.to_string(), "cidfs process 9 (`cidfs gc`)");
        assert_eq!(gc.advice(), "wait for it to finish");
        assert_eq!(Holder::parse("command x\n"), None);
    }

    #[test]
    fn a_dead_holder_is_not_named() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &this_process(None));
        assert_eq!(read(dir.path()).map(|h| h.pid), Some(std::process::id()));
        assert!(running(std::process::id()));
        // a child that exited but was not reaped yet is a zombie: not running
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while running(child.id()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!running(child.id()));
        child.wait().unwrap();
        // pid 0 is never a process of ours; /proc/0 does not exist
        write(dir.path(), &Holder { pid: 0, command: "cidfs gc".into(), mountpoint: None });
        assert_eq!(read(dir.path()), None);
    }
}
