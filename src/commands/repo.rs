//! Store maintenance: `pin`, `gc`, `verify`, `status`.

use cid::Cid;

use super::{CliError, exit, progress};
use crate::store::{GcReport, Store, VerifyReport};

/// Pins `cid` after checking its whole DAG is in the store.
pub fn pin_add(store: &Store, cid: &Cid, label: &str) -> Result<(), CliError> {
    let missing = store.reachable(&[*cid])?.missing;
    if let Some((_, m)) = missing.first() {
        return Err(CliError::new(
            exit::NOT_FOUND,
            format!("cannot pin {cid}: block {m} is not found locally ({} missing)", missing.len()),
        ));
    }
    Ok(store.pin(cid, label)?)
}

pub fn pin_rm(store: &Store, cid: &Cid) -> Result<(), CliError> {
    if store.unpin(cid)? { Ok(()) } else { Err(CliError::failure(format!("{cid} is not pinned"))) }
}

pub fn gc(store: &Store) -> Result<GcReport, CliError> {
    Ok(store.gc()?)
}

pub fn verify(store: &Store, quiet: bool) -> Result<VerifyReport, CliError> {
    let total = store.stats()?.block_bytes;
    let bar = progress::bytes("verifying", Some(total), quiet);
    let report = store.verify(&mut |n| bar.inc(n))?;
    bar.finish_and_clear();
    Ok(report)
}

/// Human-readable byte counts (binary units).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes() {
        assert_eq!(super::human_bytes(5), "5 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }
}
