//! The `cidfs` command line: one variant per subcommand, each owning its arguments (an
//! `Args` type beside the code that runs it) and a `run` that gets the [`Session`].
//! The [`Config`] is made once, here, from `--home`, the settings flags of `mount` and
//! `daemon`, the environment and `config.toml`.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use super::session::Session;
use super::{CliError, add, car, cold, commp, exit, key, mount, node, pieces, provider, read, repo, wallet};
use crate::config::{self, Config, Settings};

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  failure (I/O error, bad argument, ...)
  2  command-line usage error
  3  a block needed is not in the local store (\"not found locally: CID\")
  4  invalid data: corrupt CAR, block not matching its CID, malformed node, failed verify
  5  the store is in use by another cidfs process (the message says which, and how to stop it)
  6  a name add/import would give in the drive is taken (nothing was added; --replace)

Configuration: every `cidfs mount` flag can also be set in $CIDFS_HOME/config.toml (the
flag's name without dashes in front, e.g. hot-size = \"8G\"; lists as peers = [\"…\"]) or in
the environment (CIDFS_HOT_SIZE=8G; lists comma-separated); flags override the
environment, which overrides the file.

Environment:
  CIDFS_HOME  where the store lives (default $XDG_DATA_HOME/cidfs, i.e. ~/.local/share/cidfs)
  RUST_LOG    log level (default: warn)";

#[derive(Parser, Debug)]
#[command(name = "cidfs", version, about = "A filesystem for content-addressed data (IPFS UnixFS, Filecoin)", after_help = AFTER_HELP)]
pub struct Cli {
    /// Store directory (overrides CIDFS_HOME).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Add files and directories to the store, pin them, print their CIDs.
    ///
    /// Files of 1 MiB or more also get a hot copy, which mounts hand to the kernel to read
    /// directly, while there is room under the hot-copy cap (--hot-size of `mount`, default
    /// 4G; 0 for none).
    Add(add::AddArgs),
    /// Write the bytes of a file to stdout.
    Cat(read::CatArgs),
    /// List a directory: name, type, size, CID.
    Ls(read::LsArgs),
    /// Write a file or directory tree to the local filesystem.
    Get(read::GetArgs),
    /// Import CAR files (CARv1, or CARv2 payloads); all-or-nothing, roots pinned.
    Import(car::ImportArgs),
    /// Export the complete DAG under CID[/path] as a CARv1 (to stdout unless -o).
    Export(car::ExportArgs),
    /// Manage pins (roots protected from gc).
    #[command(subcommand)]
    Pin(repo::PinArgs),
    /// Remove blocks not reachable from any pin; report what was freed.
    Gc(repo::GcArgs),
    /// Re-hash every block and check that every pinned DAG is complete.
    Verify(repo::VerifyArgs),
    /// Show what the store holds; with a mount running, also the IPFS node, its peers and
    /// what each tier served.
    Status(repo::StatusArgs),
    /// Show this node's peer ID (and, while mounted, its listen addresses).
    Id(node::IdArgs),
    /// Run the IPFS node without a mount: serve the store to peers until Ctrl-C.
    Daemon(mount::DaemonArgs),
    /// The IPFS node's connections (needs a running mount).
    #[command(subcommand)]
    Swarm(node::SwarmArgs),
    /// Mount the drive at an empty directory; `/.ipfs/<CID>` reaches any CID.
    Mount(mount::MountArgs),
    /// Unmount a cidfs mount.
    Unmount(mount::UnmountArgs),
    /// List the drive's commits: sequence, time, root CID, size; or prune old ones.
    Log(repo::LogArgs),
    /// Print the Filecoin piece commitment of a file (piece CID v2; --v1, --json).
    Commp(commp::CommpArgs),
    /// The master key that encrypts this store's pieces: export it to keep it safe, import
    /// it to restore it. Losing it loses the copies held by storage providers.
    #[command(subcommand)]
    Key(key::KeyArgs),
    /// The wallet that signs requests to storage providers: prints its 0x address; `import
    /// FILE` takes an existing key (hex).
    Wallet(wallet::WalletArgs),
    /// Every piece made of the store's data: its size, segment and replicas (provider, data
    /// set, piece id, state, last audit).
    Pieces(pieces::PiecesArgs),
    /// Delete local copies of data whose pieces are at their replicas (--all-replicated);
    /// reads then come from the providers.
    Evict(cold::EvictArgs),
    /// Every payment for reads from Filecoin (x402): time, provider, piece, range, amount,
    /// transaction; --json for one object per payment.
    Payments(cold::PaymentsArgs),
    /// The storage providers pieces are kept with: add, ls, rm.
    #[command(subcommand)]
    Providers(pieces::ProvidersArgs),
    /// A storage provider of cidfs's own (Curio's PDP HTTP API, /piece/ retrieval; the
    /// chain simulated): for tests and self-hosting.
    #[command(subcommand)]
    Provider(provider::ProviderArgs),
    /// mount(8)'s helper call, `SOURCE MOUNTPOINT [-o OPTIONS]` (what
    /// `mount-scripts/mount.fuse.cidfs` runs for fstab): `cidfs mount --background` with
    /// the options as its flags.
    #[command(name = "mount.fuse", hide = true)]
    MountFuse {
        #[arg(allow_hyphen_values = true, num_args = 0.., trailing_var_arg = true)]
        args: Vec<String>,
    },
}

impl Cli {
    /// The configuration this command line gives (see [`Config::load`]).
    pub fn config(&self) -> Result<Config, CliError> {
        let flags = match &self.command {
            Command::Mount(m) => m.settings.clone(),
            Command::Daemon(d) => d.settings.clone(),
            _ => Settings::default(),
        };
        Config::load(self.home.as_deref(), flags).map_err(|e| CliError::new(exit::USAGE, e))
    }

    pub fn run(self) -> Result<(), CliError> {
        if let Command::MountFuse { args } = &self.command {
            return Cli::from_fstab(args)?.run();
        }
        // unmounting needs no settings: a broken config.toml must not keep a drive mounted
        if let Command::Unmount(a) = self.command {
            return a.run();
        }
        let session = Session::new(self.config()?);
        match self.command {
            Command::Add(a) => a.run(&session),
            Command::Cat(a) => a.run(&session),
            Command::Ls(a) => a.run(&session),
            Command::Get(a) => a.run(&session),
            Command::Import(a) => a.run(&session),
            Command::Export(a) => a.run(&session),
            Command::Pin(a) => a.run(&session),
            Command::Gc(a) => a.run(&session),
            Command::Verify(a) => a.run(&session),
            Command::Status(a) => a.run(&session),
            Command::Id(a) => a.run(&session),
            Command::Daemon(a) => a.run(&session),
            Command::Swarm(a) => a.run(&session),
            Command::Mount(a) => a.run(&session),
            Command::Unmount(_) => unreachable!("handled above"),
            Command::Log(a) => a.run(&session),
            Command::Commp(a) => a.run(&session),
            Command::Key(a) => a.run(&session),
            Command::Wallet(a) => a.run(&session),
            Command::Provider(a) => a.run(&session),
            Command::Pieces(a) => a.run(&session),
            Command::Providers(a) => a.run(&session),
            Command::Evict(a) => a.run(&session),
            Command::Payments(a) => a.run(&session),
            Command::MountFuse { .. } => unreachable!("handled above"),
        }
    }

    /// The command line an fstab entry means (see [`config::fstab_args`]).
    pub fn from_fstab(args: &[String]) -> Result<Cli, CliError> {
        let cmd = Cli::command();
        let known: Vec<String> = cmd
            .find_subcommand("mount")
            .expect("mount is a subcommand")
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        let args = config::fstab_args(args, &known).map_err(|e| CliError::new(exit::USAGE, e))?;
        Cli::try_parse_from(std::iter::once("cidfs".to_string()).chain(args))
            .map_err(|e| CliError::new(exit::USAGE, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_fstab_line_and_the_same_flags_give_the_same_config() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path().to_str().unwrap();
        let opts = "rw,allow_other,nofail,_netdev,hot_size=8G,cap=500G,offline,peer=/ip4/10.0.0.2/tcp/4001,\
                    peer=/ip4/10.0.0.3/tcp/4001,serve=none,reserve=10%,commit_interval=2.5,x-systemd.automount";
        let fstab = Cli::from_fstab(&args(&[h, "/mnt/d", "-o", opts])).unwrap();
        let flags = Cli::try_parse_from(args(&[
            "cidfs",
            "--home",
            h,
            "mount",
            "--background",
            "/mnt/d",
            "--allow-other",
            "--hot-size",
            "8G",
            "--cap=500G",
            "--offline",
            "--peer",
            "/ip4/10.0.0.2/tcp/4001,/ip4/10.0.0.3/tcp/4001",
            "--serve",
            "none",
            "--reserve",
            "10%",
            "--commit-interval",
            "2.5",
        ]))
        .unwrap();
        let (a, b) = (fstab.config().unwrap(), flags.config().unwrap());
        assert_eq!(a, b);
        assert_eq!(a.hot_size, config::Size(8 << 30));
        assert!(a.allow_other && a.offline && a.peers.len() == 2);
        let Command::Mount(m) = fstab.command else { panic!("fstab runs mount") };
        assert!(m.background, "fstab mounts return once ready");
        assert_eq!(m.mountpoint, PathBuf::from("/mnt/d"));
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn an_unknown_fstab_option_is_a_usage_error() {
        let e = Cli::from_fstab(&args(&["cidfs", "/mnt/d", "-o", "hot_sise=1"])).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(e.message.contains("hot_sise"), "{}", e.message);
    }

    #[test]
    fn a_flag_without_a_value_does_not_take_the_mountpoint() {
        let cli = Cli::try_parse_from(args(&["cidfs", "mount", "--offline", "/mnt/d"])).unwrap();
        let Command::Mount(m) = &cli.command else { panic!() };
        assert_eq!(m.mountpoint, PathBuf::from("/mnt/d"));
        assert_eq!(m.settings.offline, Some(true));
    }
}
