//! Where the bytes of a changed file wait for their commit: in memory while the file is
//! small, in an anonymous temporary file once it grows past [`MEMORY_MAX`].
//!
//! Most files people write are small, and extracting a tarball writes thousands of them.
//! Giving each its own temporary file cost more than everything else together: ext4 spends
//! most of an `O_TMPFILE` open searching for an inode number that was not recently freed,
//! and every such file holds a descriptor until the commit. Small files therefore start in
//! memory, and move to disk (once, keeping their bytes) only when they outgrow it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::RwLock;

/// Largest file kept in memory before its commit.
pub const MEMORY_MAX: u64 = 64 << 10;

/// The bytes of one changed file (sparse: unwritten ranges read as zeros).
pub struct SpillFile {
    inner: RwLock<Inner>,
}

enum Inner {
    Memory(Vec<u8>),
    Disk(File),
}

impl SpillFile {
    /// An empty spill held in memory.
    pub fn memory() -> SpillFile {
        SpillFile { inner: RwLock::new(Inner::Memory(Vec::new())) }
    }

    /// An empty spill in an anonymous temporary file under `dir`.
    pub fn disk(dir: &Path) -> io::Result<SpillFile> {
        Ok(SpillFile { inner: RwLock::new(Inner::Disk(tempfile::tempfile_in(dir)?)) })
    }

    /// Runs `f` on the temporary file, if the bytes are in one.
    pub fn with_disk_file<R>(&self, f: impl FnOnce(&File) -> R) -> Option<R> {
        match &*self.inner.read().expect("lock poisoned") {
            Inner::Disk(file) => Some(f(file)),
            Inner::Memory(_) => None,
        }
    }

    pub fn in_memory(&self) -> bool {
        matches!(*self.inner.read().expect("lock poisoned"), Inner::Memory(_))
    }

    /// Moves the bytes to a temporary file under `dir` (no-op if already there).
    pub fn move_to_disk(&self, dir: &Path) -> io::Result<()> {
        let mut inner = self.inner.write().expect("lock poisoned");
        if let Inner::Memory(bytes) = &*inner {
            let f = tempfile::tempfile_in(dir)?;
            f.write_all_at(bytes, 0)?;
            *inner = Inner::Disk(f);
        }
        Ok(())
    }

    /// Reads at `pos` like `pread`: fewer bytes at the end, 0 past it.
    pub fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        match &*self.inner.read().expect("lock poisoned") {
            Inner::Disk(f) => f.read_at(buf, pos),
            Inner::Memory(bytes) => {
                let start = usize::try_from(pos).unwrap_or(usize::MAX).min(bytes.len());
                let n = buf.len().min(bytes.len() - start);
                buf[..n].copy_from_slice(&bytes[start..start + n]);
                Ok(n)
            }
        }
    }

    pub fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        match &mut *self.inner.write().expect("lock poisoned") {
            Inner::Disk(f) => f.write_all_at(data, pos),
            Inner::Memory(bytes) => {
                let start = usize::try_from(pos).map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
                let end = start.checked_add(data.len()).ok_or(io::ErrorKind::FileTooLarge)?;
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[start..end].copy_from_slice(data);
                Ok(())
            }
        }
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        match &mut *self.inner.write().expect("lock poisoned") {
            Inner::Disk(f) => f.set_len(len),
            Inner::Memory(bytes) => {
                let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
                bytes.resize(len, 0);
                Ok(())
            }
        }
    }

    pub fn len(&self) -> io::Result<u64> {
        match &*self.inner.read().expect("lock poisoned") {
            Inner::Disk(f) => f.metadata().map(|m| m.len()),
            Inner::Memory(bytes) => Ok(bytes.len() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(s: &SpillFile) -> Vec<u8> {
        let mut buf = vec![0u8; s.len().unwrap() as usize + 10];
        let n = s.read_at(&mut buf, 0).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn memory_and_disk_spills_behave_alike() {
        let dir = tempfile::tempdir().unwrap();
        let mem = SpillFile::memory();
        let disk = SpillFile::disk(dir.path()).unwrap();
        for s in [&mem, &disk] {
            s.write_all_at(b"hello", 0).unwrap();
            s.write_all_at(b"world", 8).unwrap(); // a hole reads as zeros
            assert_eq!(contents(s), b"hello\0\0\0world");
            let mut two = [0u8; 2];
            assert_eq!(s.read_at(&mut two, 12).unwrap(), 1, "short at the end");
            assert_eq!(s.read_at(&mut two, 100).unwrap(), 0, "nothing past it");
            s.set_len(3).unwrap();
            assert_eq!(contents(s), b"hel");
            s.set_len(5).unwrap();
            assert_eq!(contents(s), b"hel\0\0");
        }
        assert!(mem.in_memory() && !disk.in_memory());
        mem.move_to_disk(dir.path()).unwrap();
        assert!(!mem.in_memory());
        assert_eq!(contents(&mem), b"hel\0\0", "moving keeps the bytes");
        mem.write_all_at(b"!", 5).unwrap();
        assert_eq!(contents(&mem), b"hel\0\0!");
    }
}
