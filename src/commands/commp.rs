//! `cidfs commp FILE`: the piece commitment of a file (or of stdin, `-`), as Filecoin
//! storage providers compute it, without storing anything: the v2 piece CID (FRC-0069),
//! `--v1` the v1 CID, `--json` both with the sizes. Both cores hash (see
//! [`filecoin::commp`](crate::filecoin::commp)).

use std::io::Read;
use std::path::PathBuf;

use super::session::Session;
use super::{CliError, io_error, print, progress};
use crate::filecoin::commp::Commp;

/// `cidfs commp`.
#[derive(clap::Args, Debug)]
pub struct CommpArgs {
    /// The payload: a file, or `-` for standard input.
    file: PathBuf,
    /// Print the v1 piece CID (`baga…`) instead of the v2 one (`bafkzcib…`).
    #[arg(long, conflicts_with = "json")]
    v1: bool,
    /// Print one JSON object: both CIDs, the payload size and the padded piece size.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

impl CommpArgs {
    /// Needs no store: the commitment is of the bytes given.
    pub fn run(self, _session: &Session) -> Result<(), CliError> {
        let stdin = self.file.as_os_str() == "-";
        let (mut input, total): (Box<dyn Read>, Option<u64>) = if stdin {
            (Box::new(std::io::stdin().lock()), None)
        } else {
            let f = std::fs::File::open(&self.file).map_err(io_error(&self.file))?;
            let len = f.metadata().map(|m| m.len()).ok();
            (Box::new(f), len)
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut commp = Commp::with_threads(threads);
        let bar = progress::bytes("commp", total, self.quiet);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CliError::failure(format!("{}: {e}", self.file.display()))),
            };
            commp.update(&buf[..n]);
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
        let piece = commp.finish();
        if self.json {
            print(&format!(
                "{{\"piece\":\"{}\",\"piece_v1\":\"{}\",\"payload_size\":{},\"padded_size\":{}}}",
                piece.cid_v2(),
                piece.cid_v1(),
                piece.payload_size,
                piece.padded_size()
            ));
        } else if self.v1 {
            print(&piece.cid_v1().to_string());
        } else {
            print(&piece.cid_v2().to_string());
        }
        Ok(())
    }
}
