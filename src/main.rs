//! The `cidfs` command line. This file only parses arguments and hands each subcommand to
//! `cidfs::commands`; see `cidfs --help`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cid::Version;
use clap::{Parser, Subcommand, ValueEnum};

use cidfs::commands::{self, CliError, add::AddOptions, exit, read, repo};
use cidfs::importer::ImportOptions;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure (I/O error, bad argument, ...)
  2  command-line usage error
  3  a block needed is not in the local store (\"not found locally: CID\")
  4  invalid data: corrupt CAR, block not matching its CID, malformed node, failed verify
  5  the store is in use by another cidfs process (the message says which, and how to stop it)
  6  a name add/import would give in the drive is taken (nothing was added; --replace)

Environment:
  CIDFS_HOME  where the store lives (default $XDG_DATA_HOME/cidfs, i.e. ~/.local/share/cidfs)
  RUST_LOG    log level (default: warn)";

#[derive(Parser)]
#[command(name = "cidfs", version, about = "A filesystem for content-addressed data (IPFS UnixFS, Filecoin)", after_help = EXIT_CODES)]
struct Cli {
    /// Store directory (overrides CIDFS_HOME).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Profile {
    /// Kubo `ipfs add` defaults (CIDv0, 256 KiB chunks, 174 links).
    Kubo,
    /// CIDv1, raw leaves, 1 MiB chunks, 1024 links per node.
    #[value(name = "unixfs-v1-2025")]
    UnixfsV12025,
}

#[derive(Subcommand)]
enum Command {
    /// Add files and directories to the store, pin them, print their CIDs.
    ///
    /// Files of 1 MiB or more also get a hot copy, which mounts hand to the kernel to read
    /// directly, while there is room under `CIDFS_HOT_SIZE` (default 4G; 0 for none).
    Add {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print only the root CID of each path.
        #[arg(short = 'Q', long)]
        quieter: bool,
        /// Print only CIDs, and no progress bar.
        #[arg(short, long)]
        quiet: bool,
        /// CID version (1 implies --raw-leaves, as in Kubo).
        #[arg(long, value_parser = ["0", "1"])]
        cid_version: Option<String>,
        /// Store file data in raw leaves.
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        raw_leaves: Option<bool>,
        /// Chunker: size-N (fixed N-byte chunks).
        #[arg(long)]
        chunker: Option<String>,
        /// Import profile; explicit options override it.
        #[arg(long, value_enum)]
        profile: Option<Profile>,
        /// Include hidden files (names starting with '.') inside directories.
        #[arg(short = 'H', long)]
        hidden: bool,
        /// Store file permissions (UnixFS 1.5 mode).
        #[arg(long)]
        preserve_mode: bool,
        /// Store modification times (UnixFS 1.5 mtime).
        #[arg(long)]
        preserve_mtime: bool,
        /// Pin the added roots and link them into the drive (false: store only).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        pin: bool,
        /// Name in the drive (one path only; default: the path's base name).
        #[arg(long)]
        name: Option<String>,
        /// Replace a drive entry of the same name (the previous snapshot keeps the old one);
        /// without it, a name the drive has is refused (exit 6).
        #[arg(long)]
        replace: bool,
    },
    /// Write the bytes of a file to stdout.
    Cat {
        /// CID[/path]
        path: String,
        /// Byte offset to start at.
        #[arg(short, long, default_value_t = 0)]
        offset: u64,
        /// Maximum number of bytes to write.
        #[arg(short, long)]
        length: Option<u64>,
    },
    /// List a directory: name, type, size, CID.
    Ls {
        /// CID[/path], /ipfs/CID[/path], or /path in the drive
        path: String,
        /// Print names as they are, even on a terminal (by default control characters in
        /// names are escaped there, so a name cannot forge a row).
        #[arg(long)]
        raw: bool,
    },
    /// Write a file or directory tree to the local filesystem.
    Get {
        /// CID[/path], /ipfs/CID[/path], or /path in the drive
        path: String,
        /// Output path (if an existing directory, the tree is written inside it).
        out: PathBuf,
        /// Restore setuid, setgid and sticky bits too (by default they are dropped).
        #[arg(long)]
        preserve_special: bool,
    },
    /// Import CAR files (CARv1, or CARv2 payloads); all-or-nothing, roots pinned.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Do not pin the CAR roots (nor link them into the drive).
        #[arg(long)]
        no_pin: bool,
        /// Name in the drive (one CAR with one root; default: the CAR's file name).
        #[arg(long)]
        name: Option<String>,
        /// Replace a drive entry of the same name (the previous snapshot keeps the old one);
        /// without it, a name the drive has is refused (exit 6).
        #[arg(long)]
        replace: bool,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Export the complete DAG under CID[/path] as a CARv1 (to stdout unless -o).
    Export {
        /// CID[/path]
        path: String,
        /// Write to this file instead of stdout (removed again if the export fails).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Manage pins (roots protected from gc).
    Pin {
        #[command(subcommand)]
        action: PinAction,
    },
    /// Remove blocks not reachable from any pin; report what was freed.
    Gc,
    /// Re-hash every block and check that every pinned DAG is complete.
    Verify {
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show what the store holds; with a mount running, also the IPFS node, its peers and
    /// what each tier served.
    Status,
    /// Show this node's peer ID (and, while mounted, its listen addresses).
    Id,
    /// Run the IPFS node without a mount: serve the store to peers until Ctrl-C.
    Daemon {
        #[command(flatten)]
        net: commands::mount::NetArgs,
    },
    /// The IPFS node's connections (needs a running mount).
    Swarm {
        #[command(subcommand)]
        action: SwarmAction,
    },
    /// Mount the drive at an empty directory; `/.ipfs/<CID>` reaches any CID.
    Mount {
        mountpoint: PathBuf,
        /// Present the /ipfs namespace itself at the root: MOUNTPOINT/<CID>/... (read-only)
        #[arg(long)]
        ipfs: bool,
        /// Mount the drive read-only.
        #[arg(long)]
        read_only: bool,
        /// Return once the mount is ready, leaving it served in the background.
        #[arg(long)]
        background: bool,
        /// Let other users read the mount.
        #[arg(long)]
        allow_other: bool,
        /// Threads serving filesystem requests.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Most bytes the store may hold (e.g. 500G); writes past it fail with ENOSPC.
        #[arg(long, value_parser = commands::mount::parse_size)]
        cap: Option<u64>,
        /// How often changes nobody fsync'd are committed (seconds; fsync and unmount
        /// always commit).
        #[arg(long, value_name = "SECONDS", env = "CIDFS_COMMIT_INTERVAL", default_value_t = 1.0)]
        commit_interval: f64,
        #[command(flatten)]
        net: commands::mount::NetArgs,
    },
    /// Unmount a cidfs mount.
    Unmount { mountpoint: PathBuf },
    /// List the drive's commits: sequence, time, root CID, size; or prune old ones.
    Log {
        /// Keep only the newest N commits (older snapshots become collectable by gc).
        #[arg(long, value_name = "N")]
        prune: Option<usize>,
    },
}

#[derive(Subcommand)]
enum SwarmAction {
    /// List connected peers.
    Peers,
    /// Connect to a peer: /ip4/…/tcp/…/p2p/<peer id>.
    Connect { multiaddr: String },
}

#[derive(Subcommand)]
enum PinAction {
    /// Pin a CID whose DAG is complete in the store.
    Add { cid: String },
    /// Remove a pin.
    Rm { cid: String },
    /// List pins.
    Ls,
}

fn main() -> ExitCode {
    let logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,fuser::mnt=error"))
        .format_timestamp(None)
        .build();
    let max_level = logger.filter();
    // fuser's failed replies are told with the operation they answered (see `oplog`)
    if log::set_boxed_logger(Box::new(cidfs::fuse::oplog::ReplyLog::new(logger))).is_ok() {
        log::set_max_level(max_level);
    }
    commands::tune_allocator();
    let cli = Cli::parse();
    if let Some(home) = &cli.home {
        // SAFETY: set before any thread is started.
        unsafe { std::env::set_var("CIDFS_HOME", home) };
    }
    match run(cli.command) {
        Ok(()) => ExitCode::from(exit::OK as u8),
        Err(e) if e.message.contains("Broken pipe") => ExitCode::from(exit::OK as u8),
        Err(e) => {
            eprintln!("cidfs: {e}");
            commands::mount::report_failure(&e);
            ExitCode::from(e.code as u8)
        }
    }
}

fn drive_root(store: &cidfs::store::Store) -> Result<Option<cid::Cid>, CliError> {
    Ok(store.root_cid(commands::drive::DRIVE_ROOT)?)
}

fn parse_cid(s: &str) -> Result<cid::Cid, CliError> {
    cid::Cid::try_from(s).map_err(|e| CliError::failure(format!("{s:?} is not a CID: {e}")))
}

fn run(command: Command) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    let mut print = |line: &str| {
        let _ = writeln!(stdout, "{line}");
    };
    match command {
        Command::Add {
            paths,
            quieter,
            quiet,
            cid_version,
            raw_leaves,
            chunker,
            profile,
            hidden,
            preserve_mode,
            preserve_mtime,
            pin,
            name,
            replace,
        } => {
            let mut import = match profile {
                Some(Profile::UnixfsV12025) => ImportOptions::unixfs_v1_2025(),
                Some(Profile::Kubo) | None => ImportOptions::default(),
            };
            if cid_version.as_deref() == Some("1") {
                import.cid_version = Version::V1;
                import.raw_leaves = true;
            } else if cid_version.as_deref() == Some("0") {
                import.cid_version = Version::V0;
                import.raw_leaves = false;
            }
            if let Some(raw) = raw_leaves {
                import.raw_leaves = raw;
            }
            if let Some(spec) = chunker {
                import.chunk_size = ImportOptions::parse_chunker(&spec).map_err(CliError::failure)?;
            }
            let opts = AddOptions {
                import,
                hidden,
                preserve_mode,
                preserve_mtime,
                quiet_roots: quieter,
                quiet,
                pin,
                name,
                replace,
            };
            let store = commands::open_store()?;
            commands::add::run(&store, &paths, &opts, &mut print)?;
        }
        // With a mount or daemon running, reads run there, through its network tier.
        Command::Cat { path, offset, length } => {
            let home = cidfs::store::Store::default_home();
            let mut stdout = std::io::stdout().lock();
            match commands::control::cat(&home, &path, offset, length, &mut stdout) {
                Some(r) => r?,
                None => {
                    let store = commands::open_store()?;
                    read::cat(&store, drive_root(&store)?, &path, offset, length, &mut stdout)?
                }
            }
        }
        Command::Ls { path, raw } => {
            let home = cidfs::store::Store::default_home();
            let lines: Vec<String> = match commands::control::ask(&home, &format!("ls {path}")) {
                Some(reply) => reply?.lines().map(str::to_string).collect(),
                None => {
                    let store = commands::open_store()?;
                    read::ls(&store, drive_root(&store)?, &path)?.iter().map(read::ls_line).collect()
                }
            };
            // names arrive escaped; a terminal shows them so, anything else gets them as they are
            let escaped = !raw && std::io::IsTerminal::is_terminal(&std::io::stdout());
            for line in lines {
                print(&if escaped { line } else { read::raw_line(&line) });
            }
        }
        Command::Get { path, out, preserve_special } => {
            let home = cidfs::store::Store::default_home();
            let abs = std::path::absolute(&out).map_err(|e| CliError::failure(format!("{}: {e}", out.display())))?;
            let opts = read::GetOptions { preserve_special };
            let special = if preserve_special { "\tpreserve-special" } else { "" };
            let written = match commands::control::ask(&home, &format!("get {}\t{path}{special}", abs.display())) {
                Some(reply) => PathBuf::from(reply?.trim_end()),
                None => {
                    let store = commands::open_store()?;
                    read::get(&store, drive_root(&store)?, &path, &out, opts)?
                }
            };
            eprintln!("saved {path} to {}", written.display());
        }
        Command::Import { files, no_pin, name, replace, quiet } => {
            let store = commands::open_store()?;
            let r = commands::car::import(&store, &files, !no_pin, name.as_deref(), replace, quiet)?;
            for root in &r.roots {
                print(&format!("root {root}{}", if no_pin { "" } else { " pinned" }));
            }
            let linked = if r.drive_names.is_empty() {
                String::new()
            } else {
                let names: Vec<String> = r.drive_names.iter().map(|n| format!("/{n}")).collect();
                format!("; in the drive as {}", names.join(", "))
            };
            eprintln!(
                "imported {} blocks ({}), {} of them new to the store{linked}",
                r.blocks,
                repo::human_bytes(r.bytes),
                r.new_blocks
            );
            for line in r.linked.report() {
                eprintln!("cidfs: {line}");
            }
        }
        Command::Export { path, output, quiet } => {
            let store = commands::open_store()?;
            let (_, resolved) = read::resolve(&store, drive_root(&store)?, &path)?;
            let cid = match resolved {
                cidfs::unixfs::path::Resolved::Node { cid, .. } => cid,
                cidfs::unixfs::path::Resolved::Value { .. } => {
                    return Err(CliError::failure(format!(
                        "{path}: names a value inside a dag-cbor block, not a block; export its block instead"
                    )));
                }
            };
            match output {
                None => {
                    commands::car::export(&store, &cid, &mut std::io::stdout().lock(), quiet)?;
                }
                Some(file) => {
                    let mut f = std::fs::File::create(&file).map_err(commands::io_error(&file))?;
                    let res = commands::car::export(&store, &cid, &mut f, quiet)
                        .and_then(|_| f.sync_all().map_err(commands::io_error(&file)));
                    if res.is_err() {
                        let _ = std::fs::remove_file(&file);
                    }
                    res?;
                }
            }
        }
        Command::Pin { action } => {
            let store = commands::open_store()?;
            match action {
                PinAction::Add { cid } => {
                    let cid = parse_cid(&cid)?;
                    repo::pin_add(&store, &cid, "pin add")?;
                    print(&format!("pinned {cid}"));
                }
                PinAction::Rm { cid } => {
                    let cid = parse_cid(&cid)?;
                    repo::pin_rm(&store, &cid)?;
                    print(&format!("unpinned {cid}"));
                }
                PinAction::Ls => {
                    for (cid, label) in store.pins()? {
                        print(&format!("{cid}\t{label}"));
                    }
                }
            }
        }
        Command::Gc => {
            let store = commands::open_store()?;
            let r = repo::gc(&store)?;
            print(&format!(
                "removed {} blocks ({} of data); freed {} on disk",
                r.blocks_removed,
                repo::human_bytes(r.block_bytes_removed),
                repo::human_bytes(r.disk_bytes_freed)
            ));
            if r.hot_copies_removed > 0 {
                print(&format!(
                    "removed {} hot copies of deleted files ({})",
                    r.hot_copies_removed,
                    repo::human_bytes(r.hot_bytes_removed)
                ));
            }
        }
        Command::Verify { quiet } => {
            let store = commands::open_store()?;
            let (r, hot) = repo::verify(&store, quiet)?;
            for (cid, why) in &r.bad {
                print(&format!("bad block {cid}: {why}"));
            }
            for (root, cid) in &r.missing {
                print(&format!("missing block {cid} (reachable from pin {root})"));
            }
            for (cid, why) in &hot.bad {
                print(&format!("bad hot copy of {cid}: {why} (deleted; reads of it go through its blocks)"));
            }
            // the DAGs checked are those gc keeps: pins, the drive (and its sidecar), and
            // every snapshot in the drive's log; say which, so the count adds up
            let (pins, snapshots) = (store.pins()?.len(), store.commits()?.len());
            let drive = match store.roots()?.len() {
                0 => "",
                1 => "the drive, ",
                _ => "the drive and its sidecar, ",
            };
            print(&format!(
                "checked {} blocks ({}), the DAGs under {} roots ({pins} pins, {drive}{snapshots} snapshots; a \
                 root that is several of these counts once) and {} hot copies ({})",
                r.blocks_checked,
                repo::human_bytes(r.bytes_checked),
                r.roots_checked,
                hot.checked,
                repo::human_bytes(hot.bytes)
            ));
            if !r.ok() || !hot.bad.is_empty() {
                return Err(CliError::new(
                    exit::INVALID_DATA,
                    format!(
                        "store verification failed: {} bad, {} missing blocks, {} bad hot copies",
                        r.bad.len(),
                        r.missing.len(),
                        hot.bad.len()
                    ),
                ));
            }
        }
        Command::Status => {
            let home = cidfs::store::Store::default_home();
            match commands::control::ask(&home, "status") {
                Some(reply) => print(reply?.trim_end()),
                None => {
                    let store = commands::open_store()?;
                    print(repo::store_status(&store)?.trim_end());
                    print("ipfs:      not running (it runs with `cidfs mount`)");
                }
            }
        }
        Command::Daemon { net } => commands::mount::daemon(&net)?,
        Command::Id => {
            let home = cidfs::store::Store::default_home();
            match commands::control::ask(&home, "id") {
                Some(reply) => print(reply?.trim_end()),
                None => {
                    let key = cidfs::ipfs::node::load_or_create_key(&home.join("ipfs/peer.key"))
                        .map_err(|e| CliError::failure(e.to_string()))?;
                    print(&key.public().to_peer_id().to_string());
                }
            }
        }
        Command::Swarm { action } => {
            let home = cidfs::store::Store::default_home();
            let request = match &action {
                SwarmAction::Peers => "peers".to_string(),
                SwarmAction::Connect { multiaddr } => format!("connect {multiaddr}"),
            };
            match commands::control::ask(&home, &request) {
                Some(reply) => print(reply?.trim_end()),
                None => {
                    return Err(CliError::failure(
                        "no cidfs mount is running for this store (the IPFS node runs with `cidfs mount`)".to_string(),
                    ));
                }
            }
        }
        Command::Mount { mountpoint, ipfs, read_only, background, allow_other, threads, cap, commit_interval, net } => {
            if background {
                let mut args = vec![
                    "mount".to_string(),
                    mountpoint.display().to_string(),
                    format!("--threads={threads}"),
                    format!("--commit-interval={commit_interval}"),
                ];
                args.extend(ipfs.then(|| "--ipfs".to_string()));
                args.extend(read_only.then(|| "--read-only".to_string()));
                args.extend(cap.map(|c| format!("--cap={c}")));
                args.extend(allow_other.then(|| "--allow-other".to_string()));
                args.extend(net.to_args());
                let home = cidfs::store::Store::default_home();
                let log = commands::mount::background(&args, &home)?;
                eprintln!("cidfs: mounted at {} (log: {})", mountpoint.display(), log.display());
                return Ok(());
            }
            let every = Duration::try_from_secs_f64(commit_interval)
                .map_err(|e| CliError::new(exit::USAGE, format!("--commit-interval {commit_interval}: {e}")))?;
            let settings =
                commands::mount::MountSettings { ipfs, read_only, allow_other, threads, cap, commit_interval: every };
            commands::mount::foreground(&mountpoint, &settings, &net)?;
        }
        Command::Log { prune: Some(keep) } => {
            let store = commands::open_store()?;
            let n = store.prune_commits(keep.max(1))?;
            print(&format!("pruned {n} commits; run `cidfs gc` to reclaim their space"));
        }
        Command::Log { prune: None } => {
            let store = commands::open_store()?;
            for c in store.commits()? {
                let size = repo::dag_size(&store, &c.root).map_or_else(|| "-".to_string(), repo::human_bytes);
                print(&format!("{}\t{}\t{}\t{}", c.seq, repo::format_time(c.time), c.root, size));
            }
        }
        Command::Unmount { mountpoint } => {
            commands::mount::unmount(&mountpoint)?;
        }
    }
    Ok(())
}
