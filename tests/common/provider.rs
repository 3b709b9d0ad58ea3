//! A `cidfs provider serve` process on loopback, for tests; killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct ProviderProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl ProviderProcess {
    /// Starts a provider on a free port with `extra` flags; waits until it listens.
    pub fn start(extra: &[&str]) -> ProviderProcess {
        let dir = tempfile::tempdir().unwrap();
        ProviderProcess::start_in(dir, extra)
    }

    /// Starts a provider over an existing directory (a restart).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> ProviderProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cidfs"))
            .env("CIDFS_HOME", dir.path())
            .args(["provider", "serve", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path().join("provider"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("http://"), "the provider printed {line:?}");
        ProviderProcess { child, url: line.trim().to_string(), dir }
    }

    /// The provider's payee address (its wallet in its directory).
    pub fn payee(&self) -> String {
        let key = std::fs::read_to_string(self.dir.path().join("provider/filecoin/wallet.key")).unwrap();
        cidfs::filecoin::wallet::Wallet::parse(&key, "provider").unwrap().address().to_string()
    }

    /// Stops it, keeping its directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
