//! `cidfs import` and `cidfs export`: CAR files in and out.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;

use cid::Cid;

use super::repo::human_bytes;
use super::session::{Session, drive_root};
use super::{CliError, exit, io_error, progress};
use crate::block::{Block, links};
use crate::car::{CarReader, CarWriter};
use crate::fetch::Blocks;
use crate::importer::LinkInfo;
use crate::store::{Batch, Store};

#[derive(Debug, Default)]
pub struct ImportReport {
    pub roots: Vec<Cid>,
    /// Blocks read from the CAR files (a block repeated in them counts each time).
    pub blocks: u64,
    /// Of those, blocks the store did not hold before.
    pub new_blocks: u64,
    pub bytes: u64,
    /// Names the roots got in the drive.
    pub drive_names: Vec<String>,
    pub linked: super::drive::Linked,
}

/// `cidfs import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    #[arg(required = true)]
    files: Vec<std::path::PathBuf>,
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
}

impl ImportArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        let store = session.store()?;
        let r = import(&store, &self.files, !self.no_pin, self.name.as_deref(), self.replace, self.quiet)?;
        for root in &r.roots {
            super::print(&format!("root {root}{}", if self.no_pin { "" } else { " pinned" }));
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
            human_bytes(r.bytes),
            r.new_blocks
        );
        for line in r.linked.report() {
            eprintln!("cidfs: {line}");
        }
        Ok(())
    }
}

/// `cidfs export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// CID[/path], /ipfs/CID[/path], or /path in the drive
    path: String,
    /// Write to this file instead of stdout (removed again if the export fails).
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

impl ExportArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        let store = session.store()?;
        let path = &self.path;
        let (_, resolved) = super::read::resolve(&store, drive_root(&store)?, path)?;
        let cid = match resolved {
            crate::unixfs::path::Resolved::Node { cid, .. } => cid,
            crate::unixfs::path::Resolved::Value { .. } => {
                return Err(CliError::failure(format!(
                    "{path}: names a value inside a dag-cbor block, not a block; export its block instead"
                )));
            }
        };
        match self.output {
            None => {
                export(&store, &cid, &mut std::io::stdout().lock(), self.quiet)?;
            }
            Some(file) => {
                let mut f = File::create(&file).map_err(io_error(&file))?;
                let res = export(&store, &cid, &mut f, self.quiet).and_then(|_| f.sync_all().map_err(io_error(&file)));
                if res.is_err() {
                    let _ = std::fs::remove_file(&file);
                }
                res?;
            }
        }
        Ok(())
    }
}

/// Imports CAR files in one batch: every block is verified and every root's DAG must be
/// complete, or nothing is imported and nothing is pinned.
///
/// With `pin`, each root is also linked into the drive, named after the CAR file (`x.car`
/// gives `x`; several roots give `x-1`, `x-2`, ...), or `name` for a single root.
pub fn import(
    store: &Store,
    files: &[impl AsRef<Path>],
    pin: bool,
    name: Option<&str>,
    replace: bool,
    quiet: bool,
) -> Result<ImportReport, CliError> {
    let mut batch = store.batch();
    let mut report = ImportReport::default();
    let mut drive_entries = Vec::new();
    for path in files {
        let path = path.as_ref();
        let f = File::open(path).map_err(io_error(path))?;
        let total = f.metadata().map(|m| m.len()).ok();
        let bar = progress::bytes(&format!("importing {}", path.display()), total, quiet);
        let mut reader = CarReader::new(BufReader::with_capacity(1 << 20, f))
            .map_err(|e| CliError::from(e).context(path.display()))?;
        let roots = reader.roots().to_vec();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("import").to_string();
        let names: Vec<String> = match (name, files.len() * roots.len()) {
            _ if !pin => Vec::new(),
            (Some(n), 1) => vec![n.to_string()],
            (Some(_), _) => {
                return Err(CliError::new(exit::USAGE, "--name needs exactly one CAR with one root"));
            }
            (None, _) if roots.len() == 1 => vec![stem.clone()],
            (None, _) => (1..=roots.len()).map(|i| format!("{stem}-{i}")).collect(),
        };
        // a name taken by other content is refused before any block is read
        let entries: Vec<(String, Cid)> = names.iter().cloned().zip(roots.iter().copied()).collect();
        super::drive::check_free(store, &entries, replace)?;
        while let Some((_, block)) = reader.next_block().map_err(|e| CliError::from(e).context(path.display()))? {
            report.blocks += 1;
            report.bytes += block.data().len() as u64;
            batch.put_public(&block)?;
            bar.set_position(reader.offset());
        }
        bar.finish_and_clear();
        for root in &roots {
            if let Some(missing) = first_missing(&mut batch, root)? {
                return Err(CliError::new(
                    exit::INVALID_DATA,
                    format!(
                        "{}: root {root} is incomplete: block {missing} is neither in the CAR nor in the store; nothing was imported",
                        path.display()
                    ),
                ));
            }
            if pin {
                batch.pin(*root, &format!("import {}", path.display()));
            }
        }
        for (root, entry) in roots.iter().zip(names) {
            let tsize = batch.get(root)?.map_or(0, |b| b.len() as u64);
            drive_entries.push((entry, LinkInfo { cid: *root, tsize, filesize: 0 }, None));
        }
        report.roots.extend(roots);
    }
    report.new_blocks = batch.new_blocks() as u64;
    if !drive_entries.is_empty() {
        report.drive_names = drive_entries.iter().map(|(n, _, _)| n.clone()).collect();
        report.linked = super::drive::link(store, &mut batch, drive_entries, replace)?;
    }
    batch.commit()?;
    Ok(report)
}

/// The first block reachable from `root` that neither the batch nor the store holds.
fn first_missing(batch: &mut Batch<'_>, root: &Cid) -> Result<Option<Cid>, CliError> {
    let mut seen = HashSet::new();
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        // an identity CID holds its block inline, and that block may link on
        let held = match Block::from_identity(&cid) {
            Some(inline) => Some(inline.into_data()),
            None => batch.get(&cid)?,
        };
        let Some(data) = held else {
            return Ok(Some(cid));
        };
        stack.extend(links(&cid, &data).map_err(|e| CliError::new(exit::INVALID_DATA, format!("{cid}: {e}")))?);
    }
    Ok(None)
}

/// Writes the complete DAG under `root` as a CARv1 (depth-first, each block once, in link
/// order, as `ipfs dag export` does). Returns the bytes written.
pub fn export(blocks: &dyn Blocks, root: &Cid, out: &mut dyn Write, quiet: bool) -> Result<u64, CliError> {
    let bar = progress::bytes("exporting", None, quiet);
    let w = |e: std::io::Error| CliError::failure(format!("writing CAR: {e}"));
    let mut car = CarWriter::new(std::io::BufWriter::with_capacity(1 << 20, out), &[*root]).map_err(w)?;
    let mut seen = HashSet::new();
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        let data = blocks.get(&cid).map_err(|e| CliError::from(e).context(format!("exporting {root}")))?;
        let mut children = links(&cid, &data).map_err(|e| CliError::new(exit::INVALID_DATA, format!("{cid}: {e}")))?;
        children.reverse();
        stack.extend(children);
        car.write(&cid, &data).map_err(w)?;
        bar.set_position(car.bytes_written());
    }
    bar.finish_and_clear();
    let n = car.bytes_written();
    car.finish().map_err(w)?;
    Ok(n)
}
