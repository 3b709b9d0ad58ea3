//! `cidfs add`: import files, directories and symlinks from the local filesystem.
//!
//! Like Kubo's `ipfs add -r`, hidden entries (names starting with `.`) inside directories
//! are skipped unless `--hidden` is given, and mode/mtime are stored in the DAG only when
//! asked for (`--preserve-mode`, `--preserve-mtime`), so default CIDs equal Kubo's.
//!
//! What is linked into the drive keeps who may read it, as `cp -a` would: each entry's
//! mode, owner and mtime go into the drive's POSIX sidecar (not the DAG, whose CIDs stay
//! Kubo's), so a 0600 file stays 0600 on the mount.

use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cid::Cid;
use indicatif::ProgressBar;

use super::{CliError, StoreSink, drive, io_error, progress};
use crate::importer::file::{ReadError, import_reader, import_symlink};
use crate::importer::sparse::{has_holes, import_sparse};
use crate::importer::{DirBuilder, ImportOptions, LinkInfo};
use crate::store::{HotFiles, Store, hot::HotWriter};
use crate::unixfs::Metadata;
use crate::unixfs::pb::UnixTime;
use crate::vfs::posix::{self, Extras, Side, SideEntry};

/// `cidfs add`.
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    #[arg(required = true)]
    paths: Vec<std::path::PathBuf>,
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
}

/// `add --profile`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Profile {
    /// Kubo `ipfs add` defaults (CIDv0, 256 KiB chunks, 174 links).
    Kubo,
    /// CIDv1, raw leaves, 1 MiB chunks, 1024 links per node.
    #[value(name = "unixfs-v1-2025")]
    UnixfsV12025,
}

impl AddArgs {
    pub fn run(self, session: &super::session::Session) -> Result<(), CliError> {
        let mut import = match self.profile {
            Some(Profile::UnixfsV12025) => ImportOptions::unixfs_v1_2025(),
            Some(Profile::Kubo) | None => ImportOptions::default(),
        };
        match self.cid_version.as_deref() {
            Some("1") => (import.cid_version, import.raw_leaves) = (cid::Version::V1, true),
            Some("0") => (import.cid_version, import.raw_leaves) = (cid::Version::V0, false),
            _ => {}
        }
        if let Some(raw) = self.raw_leaves {
            import.raw_leaves = raw;
        }
        if let Some(spec) = &self.chunker {
            import.chunk_size = ImportOptions::parse_chunker(spec).map_err(CliError::failure)?;
        }
        let opts = AddOptions {
            import,
            hidden: self.hidden,
            preserve_mode: self.preserve_mode,
            preserve_mtime: self.preserve_mtime,
            quiet_roots: self.quieter,
            quiet: self.quiet,
            pin: self.pin,
            name: self.name,
            replace: self.replace,
        };
        let store = session.store()?;
        run(&store, &self.paths, &opts, &mut |line| super::print(line))?;
        Ok(())
    }
}

#[derive(Clone, Debug, Default)]
pub struct AddOptions {
    pub import: ImportOptions,
    pub hidden: bool,
    pub preserve_mode: bool,
    pub preserve_mtime: bool,
    /// Print only the root CIDs.
    pub quiet_roots: bool,
    /// Print only CIDs (one per entry), and no progress bar.
    pub quiet: bool,
    /// Pin the roots and link them into the drive root.
    pub pin: bool,
    /// Name in the drive (one path only); default: the path's base name.
    pub name: Option<String>,
    /// Replace drive entries of the same name (else such a name is refused).
    pub replace: bool,
}

struct Adder<'a, 's> {
    opts: &'a AddOptions,
    /// Who runs `add`: an owner the mount shows by default needs no sidecar entry.
    me: (u32, u32),
    /// Where hot copies of added files go (it takes none when its cap is 0).
    hot: &'a HotFiles,
    sink: StoreSink<'a, 's>,
    bar: ProgressBar,
    out: &'a mut dyn FnMut(&str),
}

/// Adds every path, pins the roots, and prints like `ipfs add`. All paths land in one batch:
/// if one fails, nothing is added.
pub fn run(
    store: &Store,
    paths: &[impl AsRef<Path>],
    opts: &AddOptions,
    out: &mut dyn FnMut(&str),
) -> Result<Vec<LinkInfo>, CliError> {
    opts.import.validate().map_err(CliError::failure)?;
    // (a taken name is refused once the content is known: the same content is no change)
    let names = if opts.pin { drive_names(paths, opts.name.as_deref())? } else { Vec::new() };
    let total = paths.iter().map(|p| tree_size(p.as_ref(), opts.hidden)).sum();
    let bar = progress::bytes("adding", Some(total), opts.quiet);
    let mut batch = store.batch();
    let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let sink = StoreSink { batch: &mut batch, public: true };
    // what was added is said once it is: a refused add (a taken name) says only why
    let mut said = Vec::new();
    let mut say = |line: &str| said.push(line.to_string());
    let mut adder = Adder { opts, me, hot: store.hot_files(), sink, bar, out: &mut say };
    let mut roots = Vec::new();
    for path in paths {
        let path = path.as_ref();
        // Like `ipfs add`, entries print relative to the added path's base name.
        let display = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let (root, side) = adder.add(path, &display)?;
        if opts.quiet_roots {
            (adder.out)(&root.cid.to_string());
        }
        roots.push((root, side, path));
    }
    adder.bar.finish_and_clear();
    let mut linked = drive::Linked::default();
    if opts.pin {
        let mut entries = Vec::new();
        for ((root, side, path), name) in roots.iter().zip(names) {
            batch.pin(root.cid, &format!("add {}", path.display()));
            entries.push((name, *root, Some(side.clone())));
        }
        linked = drive::link(store, &mut batch, entries, opts.replace)?;
    }
    batch.commit()?;
    for line in &said {
        out(line);
    }
    for line in linked.report() {
        eprintln!("cidfs: {line}");
    }
    Ok(roots.into_iter().map(|(r, _, _)| r).collect())
}

/// The names the added paths get in the drive: `--name` (one path only), else base names.
fn drive_names(paths: &[impl AsRef<Path>], name: Option<&str>) -> Result<Vec<String>, CliError> {
    match (name, paths.len()) {
        (Some(n), 1) => Ok(vec![n.to_string()]),
        (Some(_), _) => Err(CliError::new(super::exit::USAGE, "--name needs exactly one path")),
        (None, _) => paths.iter().map(|p| drive::base_name(p.as_ref())).collect(),
    }
}

impl Adder<'_, '_> {
    /// Adds `path`; returns its link and what the drive's sidecar says of it.
    fn add(&mut self, path: &Path, display: &str) -> Result<(LinkInfo, SideEntry), CliError> {
        let md = fs::symlink_metadata(path).map_err(io_error(path))?;
        let meta = self.metadata(&md);
        let ft = md.file_type();
        let mut side = SideEntry { extras: self.extras(&md), sub: None };
        let link = if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io_error(path))?;
            import_symlink(&self.opts.import, target.as_os_str().as_bytes(), meta, &mut self.sink)?
        } else if ft.is_file() {
            self.add_file(path, meta)?
        } else if ft.is_dir() {
            let (link, sub) = self.add_dir(path, display, meta)?;
            side.sub = sub;
            link
        } else {
            return Err(CliError::failure(format!(
                "{}: unsupported file type (only files, directories and symlinks can be added)",
                path.display()
            )));
        };
        if !self.opts.quiet_roots {
            let line = if self.opts.quiet { link.cid.to_string() } else { format!("added {} {display}", link.cid) };
            self.bar.suspend(|| (self.out)(&line));
        }
        Ok((link, side))
    }

    /// The source's mode, owner and mtime, as the drive's sidecar keeps them: only what
    /// the mount would not show anyway (a default mode, the user running `add`).
    fn extras(&self, md: &fs::Metadata) -> Extras {
        let default_mode = if md.is_dir() { 0o755 } else { 0o644 };
        let mode = md.mode() & 0o7777;
        Extras {
            uid: (md.uid() != self.me.0).then_some(md.uid()),
            gid: (md.gid() != self.me.1).then_some(md.gid()),
            mode: (mode != default_mode && !md.file_type().is_symlink()).then_some(mode),
            mtime: Some(UnixTime {
                seconds: md.mtime(),
                fractional_nanoseconds: (md.mtime_nsec() != 0).then_some(md.mtime_nsec() as u32),
            }),
            ..Default::default()
        }
    }

    fn add_file(&mut self, path: &Path, meta: Metadata) -> Result<LinkInfo, CliError> {
        let mut f = File::open(path).map_err(io_error(path))?;
        let len = f.metadata().map_err(io_error(path))?.len();
        let bar = &self.bar;
        // a sparse file: its holes are linked, not read (and it gets no hot copy)
        let chunk = self.opts.import.chunk_size as u64;
        if len >= 2 * chunk && has_holes(&mut &f, len, chunk).map_err(io_error(path))? {
            let link = import_sparse(&self.opts.import, meta, &mut &f, len, &mut self.sink).map_err(|e| match e {
                ReadError::Read(e) => io_error(path)(e),
                ReadError::Sink(e) => e.into(),
            })?;
            bar.inc(len);
            return Ok(link);
        }
        // The hot copy is written from the very bytes the importer hashes (the file may
        // change while it is read; a copy of it afterwards could differ from the CID).
        let copy = self.hot.anonymous_writer(len).ok().flatten();
        let mut input = Tee { src: &mut f, copy };
        let link = import_reader(&self.opts.import, meta, &mut input, Some(len), &mut self.sink, &mut |n| bar.inc(n))
            .map_err(|e| match e {
            ReadError::Read(e) => io_error(path)(e),
            ReadError::Sink(e) => e.into(),
        })?;
        if let Some(copy) = input.copy
            && let Err(e) = copy.finish_as(&link.cid)
        {
            log::warn!("{}: no hot copy kept ({e}); reads of it go through cidfs", path.display());
        }
        Ok(link)
    }

    /// A directory's link, and its sidecar (what it says of the entries) if it says anything.
    fn add_dir(&mut self, path: &Path, display: &str, meta: Metadata) -> Result<(LinkInfo, Option<Cid>), CliError> {
        let mut dir = DirBuilder::new(meta);
        let mut side = Side::default();
        let mut entries: Vec<_> =
            fs::read_dir(path).map_err(io_error(path))?.collect::<Result<_, _>>().map_err(io_error(path))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let os_name = entry.file_name();
            let Some(name) = os_name.to_str() else {
                return Err(CliError::failure(format!(
                    "{}: name is not valid UTF-8; UnixFS names must be",
                    entry.path().display()
                )));
            };
            if name.starts_with('.') && !self.opts.hidden {
                continue;
            }
            let (link, entry_side) = self.add(&entry.path(), &format!("{display}/{name}"))?;
            dir.insert(name.to_string(), link);
            if !entry_side.extras.is_empty() || entry_side.sub.is_some() {
                side.entries.insert(name.to_string(), entry_side);
            }
        }
        let link = dir.finish(&self.opts.import, &mut self.sink)?;
        let sub = if side == Side::default() || !self.opts.pin {
            None
        } else {
            // the drive's own, like every sidecar block: not published with the content
            let block = posix::encode(&side);
            self.sink.batch.put(&block)?;
            Some(*block.cid())
        };
        Ok((link, sub))
    }

    fn metadata(&self, md: &fs::Metadata) -> Metadata {
        Metadata {
            mode: self.opts.preserve_mode.then_some(md.mode() & 0o7777),
            mtime: self.opts.preserve_mtime.then(|| UnixTime {
                seconds: md.mtime(),
                fractional_nanoseconds: (md.mtime_nsec() != 0).then_some(md.mtime_nsec() as u32),
            }),
        }
    }
}

/// A reader that also writes what it reads to a hot copy (given up on a write error: the
/// copy is only ever a second one).
struct Tee<'a, 'h> {
    src: &'a mut File,
    copy: Option<HotWriter<'h>>,
}

impl std::io::Read for Tee<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.src.read(buf)?;
        if let Some(copy) = &mut self.copy
            && let Err(e) = std::io::Write::write_all(copy, &buf[..n])
        {
            log::warn!("writing a hot copy: {e}; going on without it");
            self.copy = None;
        }
        Ok(n)
    }
}

/// Bytes of regular files under `path` (for the progress bar; errors count as 0).
fn tree_size(path: &Path, hidden: bool) -> u64 {
    let Ok(md) = fs::symlink_metadata(path) else {
        return 0;
    };
    if md.is_file() {
        return md.len();
    }
    if !md.is_dir() {
        return 0;
    }
    fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .filter(|e| hidden || !e.file_name().as_bytes().starts_with(b"."))
                .map(|e| tree_size(&e.path(), hidden))
                .sum()
        })
        .unwrap_or(0)
}
