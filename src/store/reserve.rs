//! The disk reserve: free space on the store's disk that caches never take.
//!
//! Hot copies and the fetch cache are second copies, there for speed; what the user
//! writes is not. So neither grows into the last [`DEFAULT_RESERVE`] of the disk
//! (`--reserve`), and when the disk runs low for any reason both give way — least
//! recently used first — before a write through the drive is refused with `ENOSPC`
//! (see [`Store::give_way`](super::Store::give_way)).

use std::path::Path;
use std::sync::Mutex;

/// How much of the disk to keep free.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reserve {
    /// A share of the disk's size (0.05 = 5%).
    Share(f64),
    Bytes(u64),
}

/// The default: 5% of the disk.
pub const DEFAULT_RESERVE: Reserve = Reserve::Share(0.05);

impl Reserve {
    /// Parses `5%` or a size (`2G`, `500M`, bytes).
    pub fn parse(s: &str, parse_size: impl Fn(&str) -> Result<u64, String>) -> Result<Reserve, String> {
        match s.trim().strip_suffix('%') {
            Some(p) => {
                let share: f64 = p.trim().parse().map_err(|_| format!("{s:?} is not a percentage"))?;
                if !(0.0..=50.0).contains(&share) {
                    return Err(format!("{s:?}: a reserve is between 0% and 50% of the disk"));
                }
                Ok(Reserve::Share(share / 100.0))
            }
            None => parse_size(s).map(Reserve::Bytes),
        }
    }

    /// The bytes it keeps free on a disk of `total` bytes.
    pub fn bytes(&self, total: u64) -> u64 {
        match *self {
            Reserve::Share(s) => (total as f64 * s) as u64,
            Reserve::Bytes(b) => b,
        }
    }
}

/// The disk holding a directory, and the reserve kept on it.
pub struct Disk {
    reserve: Mutex<Reserve>,
}

impl Default for Disk {
    fn default() -> Self {
        Disk { reserve: Mutex::new(DEFAULT_RESERVE) }
    }
}

impl Disk {
    pub fn set_reserve(&self, r: Reserve) {
        *self.reserve.lock().expect("lock poisoned") = r;
    }

    /// Bytes free on the disk holding `dir`.
    pub fn free(&self, dir: &Path) -> Option<u64> {
        size_and_free(dir).map(|(_, free)| free)
    }

    /// Bytes free on the disk holding `dir` beyond the reserve (negative: short by that
    /// much); `None` if the disk cannot be asked.
    pub fn spare(&self, dir: &Path) -> Option<i128> {
        let (total, free) = size_and_free(dir)?;
        let reserve = self.reserve.lock().expect("lock poisoned").bytes(total);
        Some(i128::from(free) - i128::from(reserve))
    }

    /// Whether `bytes` more may be put on the disk holding `dir` by a cache.
    pub fn fits(&self, dir: &Path, bytes: u64) -> bool {
        self.spare(dir).is_none_or(|spare| spare >= i128::from(bytes))
    }
}

/// The size of the disk holding `dir`, and the bytes free on it.
fn size_and_free(dir: &Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    let frag = s.fragment_size() as u128;
    Some(((s.blocks() as u128 * frag) as u64, (s.blocks_available() as u128 * frag) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(s: &str) -> Result<u64, String> {
        s.parse().map_err(|_| "no".to_string())
    }

    #[test]
    fn reserves_parse_as_shares_or_sizes() {
        assert_eq!(Reserve::parse("5%", size), Ok(Reserve::Share(0.05)));
        assert_eq!(Reserve::parse("1000", size), Ok(Reserve::Bytes(1000)));
        assert!(Reserve::parse("80%", size).is_err());
        assert!(Reserve::parse("x%", size).is_err());
        assert_eq!(Reserve::Share(0.05).bytes(1000), 50);
    }

    #[test]
    fn a_reserve_larger_than_the_disk_admits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::default();
        disk.set_reserve(Reserve::Bytes(u64::MAX / 2));
        assert!(!disk.fits(dir.path(), 1));
        disk.set_reserve(Reserve::Bytes(0));
        assert!(disk.fits(dir.path(), 1));
    }
}
