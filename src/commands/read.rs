//! Reading commands: `cat`, `ls`, `get` (and the path resolution `export` shares).
//!
//! A path is `CID[/path]`, `/ipfs/CID[/path]` (Kubo's form), or `/path` in the drive (as
//! last committed; the running mount commits before it answers).

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::session::Session;
use super::{CliError, io_error};
use crate::fetch::Blocks;
use crate::unixfs::path::{self, Resolved};
use crate::unixfs::{FileNode, Metadata, Node, UnixfsError, dag_json, dir, file, load};

/// Whether `spec` names a path in the drive (`/path`) rather than content under a CID
/// (`CID/path`, or Kubo's `/ipfs/CID/path`).
pub fn in_drive(spec: &str) -> bool {
    spec.starts_with('/') && !spec.starts_with("/ipfs/")
}

/// Splits a path into its root CID and segments; `drive` is the drive's root (`None`: an
/// empty drive).
pub fn parse(spec: &str, drive: Option<Cid>) -> Result<(Cid, Vec<String>), CliError> {
    if in_drive(spec) {
        let segs: Vec<String> = spec.split('/').filter(|p| !p.is_empty()).map(str::to_string).collect();
        let root = drive.unwrap_or_else(crate::vfs::empty_dir_cid);
        return Ok((root, segs));
    }
    path::parse(spec).map_err(|e| {
        CliError::failure(format!("{e} (give CID[/path], /ipfs/CID[/path], or /path for a path in the drive)"))
    })
}

pub fn resolve(blocks: &dyn Blocks, drive: Option<Cid>, spec: &str) -> Result<(Cid, Resolved), CliError> {
    let (root, segs) = parse(spec, drive)?;
    let in_drive = in_drive(spec);
    if drive.is_none() && in_drive {
        // the empty drive has no block of its own to load
        return match segs.first() {
            None => Ok((
                root,
                Resolved::Node {
                    cid: root,
                    node: Node::Directory { links: Vec::new(), meta: Metadata::default(), sorted: true },
                },
            )),
            Some(_) => Err(CliError::new(
                super::exit::NOT_FOUND,
                format!("{spec}: no such file or directory (the drive is empty)"),
            )),
        };
    }
    let resolved = path::resolve(blocks, &root, &segs).map_err(|e| match e {
        // a path in the drive is told as the user wrote it, not below the root's CID
        UnixfsError::NoSuchEntry { path } if in_drive => {
            CliError::failure(format!("{}: no such file or directory in the drive", &path[root.to_string().len()..]))
        }
        // These already name the path or CID concerned.
        e @ (UnixfsError::NoSuchEntry { .. } | UnixfsError::NotADirectory { .. }) => CliError::from(e),
        e => CliError::from(e).context(spec),
    })?;
    Ok((root, resolved))
}

/// `cidfs cat`.
#[derive(clap::Args, Debug)]
pub struct CatArgs {
    /// CID[/path], /ipfs/CID[/path], or /path in the drive
    path: String,
    /// Byte offset to start at.
    #[arg(short, long, default_value_t = 0)]
    offset: u64,
    /// Maximum number of bytes to write.
    #[arg(short, long)]
    length: Option<u64>,
}

impl CatArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        session.cat(&self.path, self.offset, self.length, &mut std::io::stdout().lock())
    }
}

/// `cidfs ls`.
#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// CID[/path], /ipfs/CID[/path], or /path in the drive
    path: String,
    /// Print names as they are, even on a terminal (by default control characters in
    /// names are escaped there, so a name cannot forge a row).
    #[arg(long)]
    raw: bool,
}

impl LsArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        // names arrive escaped; a terminal shows them so, anything else gets them as they are
        let escaped = !self.raw && std::io::IsTerminal::is_terminal(&std::io::stdout());
        for line in session.ls(&self.path)? {
            super::print(&if escaped { line } else { raw_line(&line) });
        }
        Ok(())
    }
}

/// `cidfs get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// CID[/path], /ipfs/CID[/path], or /path in the drive
    path: String,
    /// Output path (if an existing directory, the tree is written inside it).
    out: PathBuf,
    /// Restore setuid, setgid and sticky bits too (by default they are dropped).
    #[arg(long)]
    preserve_special: bool,
}

impl GetArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        let opts = GetOptions { preserve_special: self.preserve_special };
        let written = session.get(&self.path, &self.out, opts)?;
        eprintln!("saved {} to {}", self.path, written.display());
        Ok(())
    }
}

/// `cidfs cat`: writes the bytes of a file (optionally a range) to `out`.
pub fn cat(
    blocks: &dyn Blocks,
    drive: Option<Cid>,
    spec: &str,
    offset: u64,
    length: Option<u64>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match resolve(blocks, drive, spec)?.1 {
        Resolved::Node { cid, node: Node::File(f) } => {
            write_file_range(blocks, &cid, &f, offset, length.unwrap_or(u64::MAX), out)
        }
        Resolved::Node { node: Node::Cbor(v), .. } | Resolved::Value { value: v, .. } => out
            .write_all(dag_json(&v).as_bytes())
            .and_then(|_| out.write_all(b"\n"))
            .map_err(|e| CliError::failure(format!("writing output: {e}"))),
        Resolved::Node { node: Node::Symlink { target, .. }, .. } => Err(CliError::failure(format!(
            "{spec}: is a symlink to {:?}; cat its target instead",
            String::from_utf8_lossy(&target)
        ))),
        Resolved::Node { cid, .. } => {
            Err(CliError::failure(format!("{spec}: is a directory ({cid}); use `cidfs ls` or `cidfs get`")))
        }
    }
}

fn write_file_range(
    blocks: &dyn Blocks,
    cid: &Cid,
    f: &FileNode,
    offset: u64,
    len: u64,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut out = BufWriter::with_capacity(1 << 20, out);
    file::read_range(blocks, cid, f, offset, len, &mut |bytes| out.write_all(bytes).map_err(UnixfsError::Output))?;
    out.flush().map_err(|e| CliError::failure(format!("writing output: {e}")))
}

/// One row of `cidfs ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: String,
    pub size: Option<u64>,
    pub cid: Cid,
}

/// `cidfs ls`: the entries of a directory (or the file itself). Types and sizes come from
/// each entry's own block; an entry whose block is not local shows type `?`.
pub fn ls(blocks: &dyn Blocks, drive: Option<Cid>, spec: &str) -> Result<Vec<Entry>, CliError> {
    let (_, resolved) = resolve(blocks, drive, spec)?;
    let mut links = Vec::new();
    match &resolved {
        Resolved::Node { cid, node: node @ (Node::Directory { .. } | Node::HamtShard(_)) } => {
            dir::list(blocks, cid, node, &mut |l| links.push(l))?;
        }
        Resolved::Node { cid, node: Node::Cbor(v) } | Resolved::Value { cid, value: v } => {
            return Ok(dir::cbor_entries(v)
                .into_iter()
                .filter(|(n, _)| dir::is_safe_name(n))
                .map(|(name, v)| match v {
                    Ipld::Link(c) => entry_for(blocks, name, *c, None),
                    v => Entry { name, kind: cbor_kind(v).into(), size: None, cid: *cid },
                })
                .collect());
        }
        Resolved::Node { cid, node } => {
            let name = spec.rsplit('/').next().unwrap_or(spec).to_string();
            return Ok(vec![Entry { name, kind: node.kind_name().into(), size: node_size(node), cid: *cid }]);
        }
    }
    Ok(links.into_iter().map(|l| entry_for(blocks, l.name, l.cid, l.tsize)).collect())
}

fn entry_for(blocks: &dyn Blocks, name: String, cid: Cid, tsize: Option<u64>) -> Entry {
    match load(blocks, &cid) {
        Ok(node) => Entry { name, kind: node.kind_name().into(), size: node_size(&node), cid },
        Err(_) => Entry { name, kind: "?".into(), size: tsize, cid },
    }
}

fn node_size(node: &Node) -> Option<u64> {
    match node {
        Node::File(f) => Some(f.size),
        Node::Symlink { target, .. } => Some(target.len() as u64),
        _ => None,
    }
}

fn cbor_kind(v: &Ipld) -> &'static str {
    match v {
        Ipld::Null => "null",
        Ipld::Bool(_) => "bool",
        Ipld::Integer(_) => "integer",
        Ipld::Float(_) => "float",
        Ipld::String(_) => "string",
        Ipld::Bytes(_) => "bytes",
        Ipld::List(_) => "list",
        Ipld::Map(_) => "map",
        Ipld::Link(_) => "link",
    }
}

/// `cidfs get`: writes the tree at `spec` to `out`. If `out` is an existing directory the
/// tree is written inside it, named after the last path segment (or the CID).
/// What `get` restores beyond the bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct GetOptions {
    /// Restore setuid, setgid and sticky bits too (off: a DAG from anywhere must not make
    /// a setuid program when root runs `get`).
    pub preserve_special: bool,
}

pub fn get(
    blocks: &dyn Blocks,
    drive: Option<Cid>,
    spec: &str,
    out: &Path,
    opts: GetOptions,
) -> Result<PathBuf, CliError> {
    let (root, resolved) = resolve(blocks, drive, spec)?;
    let target = if out.is_dir() {
        let (_, segs) = parse(spec, drive)?;
        let whole = if in_drive(spec) { "drive".to_string() } else { root.to_string() };
        out.join(segs.last().cloned().unwrap_or(whole))
    } else {
        out.to_path_buf()
    };
    write_tree(blocks, resolved, &target, 0, opts)?;
    Ok(target)
}

fn write_tree(
    blocks: &dyn Blocks,
    resolved: Resolved,
    target: &Path,
    depth: usize,
    opts: GetOptions,
) -> Result<(), CliError> {
    if depth > 4096 {
        return Err(CliError::failure(format!("{}: tree is deeper than 4096 levels", target.display())));
    }
    match resolved {
        Resolved::Node { cid, node: Node::File(f) } => {
            let file =
                OpenOptions::new().write(true).create_new(true).mode(0o644).open(target).map_err(io_error(target))?;
            let mut w = BufWriter::new(&file);
            write_file_range(blocks, &cid, &f, 0, u64::MAX, &mut w).map_err(|e| e.context(target.display()))?;
            drop(w);
            apply_meta(&file, target, f.meta, opts)?;
        }
        Resolved::Node { node: Node::Symlink { target: to, .. }, .. } => {
            let to = std::ffi::OsStr::new(
                std::str::from_utf8(&to)
                    .map_err(|_| CliError::failure(format!("{}: symlink target is not UTF-8", target.display())))?,
            );
            std::os::unix::fs::symlink(to, target).map_err(io_error(target))?;
        }
        Resolved::Node { cid, node: node @ (Node::Directory { .. } | Node::HamtShard(_)) } => {
            fs::create_dir(target).map_err(io_error(target))?;
            let mut links = Vec::new();
            dir::list(blocks, &cid, &node, &mut |l| links.push(l))?;
            for l in links {
                let child =
                    load(blocks, &l.cid).map_err(|e| CliError::from(e).context(target.join(&l.name).display()))?;
                write_tree(blocks, Resolved::Node { cid: l.cid, node: child }, &target.join(&l.name), depth + 1, opts)?;
            }
            apply_meta(&File::open(target).map_err(io_error(target))?, target, node.meta(), opts)?;
        }
        Resolved::Node { cid, node: Node::Cbor(v) } | Resolved::Value { cid, value: v } => match &v {
            Ipld::Map(_) | Ipld::List(_) => {
                fs::create_dir(target).map_err(io_error(target))?;
                for (name, child) in dir::cbor_entries(&v).into_iter().filter(|(n, _)| dir::is_safe_name(n)) {
                    let next = match child {
                        Ipld::Link(c) => Resolved::Node { cid: *c, node: load(blocks, c)? },
                        other => Resolved::Value { cid, value: other.clone() },
                    };
                    write_tree(blocks, next, &target.join(name), depth + 1, opts)?;
                }
            }
            scalar => {
                let text = format!("{}\n", dag_json(scalar));
                fs::write(target, text).map_err(io_error(target))?;
            }
        },
    }
    Ok(())
}

fn apply_meta(file: &File, path: &Path, meta: Metadata, opts: GetOptions) -> Result<(), CliError> {
    if let Some(mode) = meta.mode {
        let keep = if opts.preserve_special { 0o7777 } else { 0o777 };
        file.set_permissions(fs::Permissions::from_mode(mode & keep)).map_err(io_error(path))?;
    }
    if let Some(t) = meta.mtime {
        let when = clamped_time(t.seconds, t.fractional_nanoseconds.unwrap_or(0));
        // a time the filesystem cannot hold is no reason to lose the file
        if let Err(e) = file.set_modified(when) {
            log::warn!("{}: mtime not restored ({e})", path.display());
        }
    }
    Ok(())
}

/// Latest and earliest mtimes `get` restores: what ext4 and most filesystems can hold.
/// A DAG may say anything (`i64::MAX` seconds); beyond these it is clamped.
const MTIME_MAX_SECS: i64 = (1 << 34) - 1;
const MTIME_MIN_SECS: i64 = -(1 << 31);

/// A UnixFS mtime as a `SystemTime`, clamped to what a filesystem can hold.
fn clamped_time(seconds: i64, nanos: u32) -> std::time::SystemTime {
    let secs = seconds.clamp(MTIME_MIN_SECS, MTIME_MAX_SECS);
    let nanos = Duration::from_nanos(u64::from(nanos.min(999_999_999)));
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos
    }
}

/// A name as `ls` shows it on a terminal: control characters and backslashes escaped
/// (`\n`, `\t`, `\x1b`, `\\`), so a name cannot forge rows or move the cursor.
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The name [`escape_name`] escaped.
pub fn unescape_name(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(c) => out.push(c),
                    None => out.push_str(&format!("\\x{hex}")),
                }
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// One `ls` entry as the CLI prints it: name, type, size, CID (tab-separated), the name
/// escaped (see [`escape_name`]; the control socket always sends it so).
pub fn ls_line(e: &Entry) -> String {
    let size = e.size.map_or_else(|| "-".to_string(), |s| s.to_string());
    format!("{}\t{}\t{}\t{}", escape_name(&e.name), e.kind, size, e.cid)
}

/// An [`ls_line`] with its name as it is (`--raw`, or output that is not a terminal).
pub fn raw_line(line: &str) -> String {
    match line.split_once('\t') {
        Some((name, rest)) => format!("{}\t{rest}", unescape_name(name)),
        None => unescape_name(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_for_a_terminal_and_come_back_whole() {
        for name in ["plain", "two\nrows", "tab\there", "bell\x07\x1b[2J", "back\\slash", "\\x41 literal", "ü\u{85}"] {
            let escaped = escape_name(name);
            assert!(!escaped.chars().any(char::is_control), "{escaped:?}");
            assert_eq!(unescape_name(&escaped), name);
        }
        assert_eq!(escape_name("a\nb"), "a\\nb");
        let line = ls_line(&Entry {
            name: "x\ty".into(),
            kind: "file".into(),
            size: Some(1),
            cid: crate::vfs::empty_dir_cid(),
        });
        assert_eq!(line.split('\t').count(), 4, "a tab in a name does not add a column");
        assert!(raw_line(&line).starts_with("x\ty\tfile\t1\t"));
    }

    #[test]
    fn absurd_mtimes_are_clamped_not_a_panic() {
        let far = clamped_time(i64::MAX, u32::MAX);
        assert_eq!(far, UNIX_EPOCH + Duration::from_secs(MTIME_MAX_SECS as u64) + Duration::from_nanos(999_999_999));
        let early = clamped_time(i64::MIN, 0);
        assert_eq!(early, UNIX_EPOCH - Duration::from_secs(MTIME_MIN_SECS.unsigned_abs()));
        assert_eq!(clamped_time(1_600_000_000, 5), UNIX_EPOCH + Duration::new(1_600_000_000, 5));
    }
}
