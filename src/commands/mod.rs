//! What each `cidfs` subcommand does. [`cli::Cli`] is the command line: each command owns
//! its arguments and a `run` that reaches the store through one [`session::Session`];
//! everything that prints or touches the local filesystem lives here, on top of the pure
//! layers.
//!
//! Every failure becomes a [`CliError`] with a message that says what failed (CID, path or
//! byte offset) and an exit code from [`exit`].

pub mod add;
pub mod car;
pub mod cli;
pub mod cold;
pub mod commp;
pub mod control;
pub mod drive;
pub mod key;
pub mod mount;
pub mod node;
pub mod pieces;
pub mod progress;
pub mod provider;
pub mod read;
pub mod repo;
pub mod session;
pub mod wallet;

use std::fmt;

use crate::car::CarError;
use crate::fetch::FetchError;
use crate::store::StoreError;
use crate::unixfs::UnixfsError;

/// Exit codes, as listed in `cidfs --help`.
pub mod exit {
    pub const OK: i32 = 0;
    /// Any other failure (I/O, bad arguments found after parsing, ...).
    pub const FAILURE: i32 = 1;
    /// Command-line usage error (reported by the argument parser).
    pub const USAGE: i32 = 2;
    /// A block needed is not in the local store.
    pub const NOT_FOUND: i32 = 3;
    /// Input data is invalid: a corrupt CAR, a block that does not match its CID, a
    /// malformed node, or a store that failed verification.
    pub const INVALID_DATA: i32 = 4;
    /// The store is in use by another cidfs process.
    pub const BUSY: i32 = 5;
    /// A name `add` or `import` would give in the drive is taken (and `--replace` was not
    /// given): nothing was added.
    pub const EXISTS: i32 = 6;
}

#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError { message: message.into(), code }
    }

    pub fn failure(message: impl Into<String>) -> Self {
        CliError::new(exit::FAILURE, message)
    }

    /// Prefixes the message with what was being worked on (unless it starts with it
    /// already: a CID or path is said once).
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = crate::context::with_context(&what.to_string(), &self.message);
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        let code = match e {
            StoreError::InUse { .. } => exit::BUSY,
            StoreError::Corrupt(_) => exit::INVALID_DATA,
            _ => exit::FAILURE,
        };
        CliError::new(code, e.to_string())
    }
}

impl From<FetchError> for CliError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::NotFound(_) | FetchError::Unavailable { .. } => CliError::new(exit::NOT_FOUND, e.to_string()),
            FetchError::Store(s) => s.into(),
        }
    }
}

impl From<UnixfsError> for CliError {
    fn from(e: UnixfsError) -> Self {
        match e {
            UnixfsError::Fetch(f) => f.into(),
            UnixfsError::Decode { .. } | UnixfsError::TooDeep { .. } => {
                CliError::new(exit::INVALID_DATA, e.to_string())
            }
            _ => CliError::failure(e.to_string()),
        }
    }
}

impl From<CarError> for CliError {
    fn from(e: CarError) -> Self {
        match e {
            CarError::Io(_) => CliError::failure(e.to_string()),
            _ => CliError::new(exit::INVALID_DATA, e.to_string()),
        }
    }
}

/// Keeps freed large buffers in the heap for reuse. With glibc's defaults every 256 KiB
/// chunk buffer is a fresh mmap (or a trimmed heap top), and touching its pages again costs
/// more than hashing them.
pub fn tune_allocator() {
    // SAFETY: mallopt only adjusts allocator thresholds; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// The importer's blocks go into a store batch; `public`: as published content (what
/// `add` brings), served to every peer, or as the drive's own (trusted peers only).
pub(crate) struct StoreSink<'a, 's> {
    pub batch: &'a mut crate::store::Batch<'s>,
    pub public: bool,
}

impl crate::importer::BlockSink for StoreSink<'_, '_> {
    type Error = StoreError;
    fn put(&mut self, block: crate::block::Block) -> Result<(), StoreError> {
        if self.public { self.batch.put_public(&block) } else { self.batch.put(&block) }.map(|_| ())
    }
}

/// Prints a line of a command's output (a closed pipe ends the output quietly).
pub fn print(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Maps an I/O error on `path` to a CliError naming the path.
pub fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |e| CliError::failure(format!("{}: {e}", path.display()))
}
