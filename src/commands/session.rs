//! How a command reaches the store: one [`Session`] per run, holding the [`Config`].
//!
//! While a mount (or `cidfs daemon`) holds the store, no other process can open it; what
//! the live process can answer is asked over its control socket (see [`control`]), and
//! reads run there, through all its tiers. Otherwise the command opens the store itself.
//! Each operation below is written once with both ways, so a command that uses it works
//! mounted and unmounted alike; commands that change the store ([`Session::store`]) are
//! refused while it is held (exit 5, naming the process).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cid::Cid;

use super::{CliError, control, drive::DRIVE_ROOT, exit, read, repo};
use crate::config::Config;
use crate::fetch::Tiered;
use crate::store::Store;

pub struct Session {
    pub config: Config,
}

impl Session {
    pub fn new(config: Config) -> Session {
        Session { config }
    }

    /// The store directory.
    pub fn home(&self) -> &Path {
        &self.config.home
    }

    /// Opens the store here, with this configuration's caps for hot copies and its disk
    /// reserve (what `add` keeps). Fails with exit 5 while another process holds it.
    pub fn store(&self) -> Result<Store, CliError> {
        let store = Store::open(self.home())?;
        store.hot_files().set_cap(self.config.hot_size.0);
        store.set_reserve(self.config.reserve);
        Ok(store)
    }

    /// Reads without a mount: the store, then the Filecoin providers holding the pieces of
    /// evicted data (within the configured caps). Call [`Tiered::flush`] when done, so
    /// what was fetched is cached.
    fn reader(&self) -> Result<Arc<Tiered>, CliError> {
        let store = Arc::new(self.store()?);
        let mut tiers: Vec<Arc<dyn crate::fetch::Tier>> = Vec::new();
        if store.cold_usage()?.cold_segments > 0 {
            tiers.push(super::mount::filecoin_tier(&self.config, &store)?);
        }
        let timeout = std::time::Duration::try_from_secs_f64(self.config.fetch_timeout).unwrap_or_default();
        Ok(Tiered::new(store, tiers, timeout))
    }

    /// Asks the running mount; `None` if none holds this store.
    fn ask(&self, request: &str) -> Option<Result<String, CliError>> {
        control::ask(self.home(), request)
    }

    /// `cidfs ls`: the rows of a directory listing (names escaped).
    pub fn ls(&self, path: &str) -> Result<Vec<String>, CliError> {
        match self.ask(&format!("ls {path}")) {
            Some(reply) => Ok(reply?.lines().map(str::to_string).collect()),
            None => {
                let blocks = self.reader()?;
                let rows = read::ls(blocks.as_ref(), drive_root(blocks.store())?, path);
                blocks.flush();
                Ok(rows?.iter().map(read::ls_line).collect())
            }
        }
    }

    /// `cidfs cat`: the bytes of a file, onto `out`.
    pub fn cat(&self, path: &str, offset: u64, length: Option<u64>, out: &mut dyn Write) -> Result<(), CliError> {
        match control::cat(self.home(), path, offset, length, out) {
            Some(r) => r,
            None => {
                let blocks = self.reader()?;
                let result = read::cat(blocks.as_ref(), drive_root(blocks.store())?, path, offset, length, out);
                blocks.flush();
                result
            }
        }
    }

    /// `cidfs get`: writes a file or tree under `out`; returns where it went.
    pub fn get(&self, path: &str, out: &Path, opts: read::GetOptions) -> Result<PathBuf, CliError> {
        let abs = std::path::absolute(out).map_err(super::io_error(out))?;
        let special = if opts.preserve_special { "\tpreserve-special" } else { "" };
        match self.ask(&format!("get {}\t{path}{special}", abs.display())) {
            Some(reply) => Ok(PathBuf::from(reply?.trim_end())),
            None => {
                let blocks = self.reader()?;
                let result = read::get(blocks.as_ref(), drive_root(blocks.store())?, path, out, opts);
                blocks.flush();
                result
            }
        }
    }

    /// `cidfs status`: the store, and with a mount running its node and tiers.
    pub fn status(&self) -> Result<String, CliError> {
        match self.ask("status") {
            Some(reply) => Ok(reply?.trim_end().to_string()),
            None => {
                let store = self.store()?;
                let mut out = repo::store_status(&store)?;
                let providers = self.config.providers.len()
                    + crate::filecoin::replicate::table::stored_providers(&store)?
                        .iter()
                        .filter(|p| !self.config.providers.contains(&p.url))
                        .count();
                out.push_str(&crate::filecoin::replicate::report::status_lines(
                    &store,
                    self.config.replicas,
                    providers,
                    None,
                )?);
                let caps = self.config.caps().map_err(|e| CliError::new(exit::USAGE, e))?;
                let spend = crate::filecoin::ledger::Ledger::new(Arc::new(store), caps.clone()).spend()?;
                out.push_str(&crate::filecoin::ledger::status_line(&spend, &caps));
                let mut out = out.trim_end().to_string();
                out.push_str("\nipfs:      not running (it runs with `cidfs mount`)");
                Ok(out)
            }
        }
    }

    /// `cidfs id`: the peer ID (and, mounted, the listen addresses).
    pub fn id(&self) -> Result<String, CliError> {
        match self.ask("id") {
            Some(reply) => Ok(reply?.trim_end().to_string()),
            None => {
                let key = crate::ipfs::node::load_or_create_key(&self.home().join("ipfs/peer.key"))
                    .map_err(|e| CliError::failure(e.to_string()))?;
                Ok(key.public().to_peer_id().to_string())
            }
        }
    }

    /// A report the live process can give, else the same made here from the store
    /// (`pieces`, the providers list): the mount's answer when it holds the store.
    pub fn report(
        &self,
        request: &str,
        local: impl FnOnce(&Store) -> Result<String, CliError>,
    ) -> Result<String, CliError> {
        match self.ask(request) {
            Some(reply) => reply,
            None => local(&self.store()?),
        }
    }

    /// A request only the live node can answer (`peers`, `connect ADDR`).
    pub fn node_request(&self, request: &str) -> Result<String, CliError> {
        match self.ask(request) {
            Some(reply) => Ok(reply?.trim_end().to_string()),
            None => Err(CliError::failure(
                "no cidfs mount is running for this store (the IPFS node runs with `cidfs mount`)",
            )),
        }
    }
}

/// The drive's root, if it has one.
pub fn drive_root(store: &Store) -> Result<Option<Cid>, CliError> {
    Ok(store.root_cid(DRIVE_ROOT)?)
}

/// Parses a CID argument.
pub fn parse_cid(s: &str) -> Result<Cid, CliError> {
    Cid::try_from(s).map_err(|e| CliError::new(exit::FAILURE, format!("{s:?} is not a CID: {e}")))
}
