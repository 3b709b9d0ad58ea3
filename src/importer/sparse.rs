//! Importing a file with holes in time proportional to its data, not its size.
//!
//! A hole reads as zeros, and a chunk of zeros is always the same leaf, a full subtree of
//! them always the same subtree ([`FileImporter::push_zeros`]). So whole chunks inside a
//! hole are linked, never read or hashed; chunks holding any data are read and hashed as
//! usual. The CIDs are exactly those of importing every byte: a file with a 1 TiB hole
//! commits in milliseconds and equals `cidfs add` of the same bytes.
//!
//! Where the holes are is the input's business ([`SparseInput`]): a local file answers
//! with `lseek(SEEK_DATA)` (the one adapter here that does I/O); anything else may say
//! "no holes" and is imported byte by byte.

use std::io;

use super::file::{Chunk, FileImporter, ReadError, encode_leaf};
use super::{BlockSink, ImportOptions, LinkInfo};
use crate::unixfs::Metadata;

/// A file's bytes, read at offsets, and where its data is.
pub trait SparseInput {
    /// The first offset at or after `from` that holds data (`size` if none does).
    fn next_data(&mut self, from: u64, size: u64) -> io::Result<u64>;
    /// Reads bytes at `offset` (holes read as zeros).
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

/// Whether `input` has a hole of at least one chunk within its first `size` bytes.
pub fn has_holes(input: &mut dyn SparseInput, size: u64, chunk: u64) -> io::Result<bool> {
    let mut pos = 0;
    while pos < size {
        let data = input.next_data(pos, size)?;
        if data.min(size) - pos >= chunk {
            return Ok(true);
        }
        if data >= size {
            return Ok(false);
        }
        // skip the data run: the next hole starts where the next SEEK_DATA lands past it
        pos = data + chunk;
    }
    Ok(false)
}

/// Imports the first `size` bytes of `input` as one file, linking whole chunks of holes.
pub fn import_sparse<S: BlockSink + ?Sized>(
    opts: &ImportOptions,
    meta: Metadata,
    input: &mut dyn SparseInput,
    size: u64,
    sink: &mut S,
) -> Result<LinkInfo, ReadError<S::Error>> {
    let chunk = opts.chunk_size as u64;
    let mut importer = FileImporter::new(opts, meta);
    let mut pos = 0;
    while pos < size {
        let data = input.next_data(pos, size).map_err(ReadError::Read)?.clamp(pos, size);
        let hole_chunks = (data - pos) / chunk;
        if hole_chunks > 0 {
            importer.push_zeros(hole_chunks, sink).map_err(ReadError::Sink)?;
            pos += hole_chunks * chunk;
            continue;
        }
        let len = chunk.min(size - pos) as usize;
        let mut c = Chunk::with_capacity(len);
        let mut reader = At { input: &mut *input, offset: pos };
        let n = c.fill_from(&mut reader, len).map_err(ReadError::Read)?;
        if n < len {
            return Err(ReadError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ended at {} of {size} bytes", pos + n as u64),
            )));
        }
        importer.push_leaf(encode_leaf(opts, c), sink).map_err(ReadError::Sink)?;
        pos += len as u64;
    }
    importer.finish(sink).map_err(ReadError::Sink)
}

/// A [`SparseInput`] read from an offset on, as a `Read`.
struct At<'a> {
    input: &'a mut dyn SparseInput,
    offset: u64,
}

impl io::Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// A local file: `SEEK_DATA` says where its data is (a filesystem without hole support
/// says "everywhere", and the file is read whole).
impl SparseInput for &std::fs::File {
    fn next_data(&mut self, from: u64, size: u64) -> io::Result<u64> {
        use nix::unistd::{Whence, lseek};
        let Ok(from_off) = i64::try_from(from) else { return Ok(size) };
        // SEEK_DATA moves the file's offset: put it back, for whoever reads it in order next
        let offset = lseek(*self, 0, Whence::SeekCur)?;
        let found = match lseek(*self, from_off, Whence::SeekData) {
            Ok(at) => Ok((at as u64).min(size)),
            Err(nix::errno::Errno::ENXIO) => Ok(size), // nothing but hole from here on
            Err(nix::errno::Errno::EINVAL) => Ok(from), // no SEEK_DATA: all data
            Err(e) => Err(e.into()),
        };
        lseek(*self, offset, Whence::SeekSet)?;
        found
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(*self, buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Block;
    use crate::importer::file::import_bytes;

    /// Bytes with holes where they are zero, as a map of data runs.
    struct Mem {
        bytes: Vec<u8>,
        /// (start, end) of each run that holds data
        runs: Vec<(u64, u64)>,
    }

    impl SparseInput for Mem {
        fn next_data(&mut self, from: u64, size: u64) -> io::Result<u64> {
            Ok(self.runs.iter().find(|(_, e)| *e > from).map_or(size, |(s, _)| (*s).max(from)))
        }
        fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let start = (offset as usize).min(self.bytes.len());
            let n = buf.len().min(self.bytes.len() - start);
            buf[..n].copy_from_slice(&self.bytes[start..start + n]);
            Ok(n)
        }
    }

    fn sparse(size: usize, data: &[(usize, &[u8])]) -> Mem {
        let mut bytes = vec![0u8; size];
        let mut runs = Vec::new();
        for (at, d) in data {
            bytes[*at..at + d.len()].copy_from_slice(d);
            runs.push((*at as u64, (at + d.len()) as u64));
        }
        Mem { bytes, runs }
    }

    #[test]
    fn holes_give_the_cids_every_byte_gives() {
        for raw_leaves in [false, true] {
            // small chunks and fan-out, so holes span whole subtrees of several heights
            let opts = ImportOptions { chunk_size: 1024, max_links: 4, raw_leaves, ..Default::default() };
            let cases: Vec<Mem> = vec![
                sparse(1 << 20, &[((1 << 20) - 1, b"x")]),
                sparse(1 << 20, &[(0, b"head"), (700_000, b"middle"), ((1 << 20) - 3, b"end")]),
                sparse(5000, &[]),
                sparse(100_000, &[(1023, b"ab"), (65_536, &[7u8; 3000])]),
                sparse(1024, &[]),
                sparse(1000, &[]),
                sparse(64 * 1024 + 17, &[]),
            ];
            for mut m in cases {
                let size = m.bytes.len() as u64;
                let (mut a, mut b) = (Vec::<Block>::new(), Vec::<Block>::new());
                let want = import_bytes(&opts, Metadata::default(), &m.bytes, &mut a).unwrap();
                let got = import_sparse(&opts, Metadata::default(), &mut m, size, &mut b).unwrap();
                assert_eq!(got, want, "{size} bytes, raw leaves {raw_leaves}");
                let stored: std::collections::HashSet<_> = b.iter().map(|b| *b.cid()).collect();
                for block in &a {
                    assert!(stored.contains(block.cid()), "every block the plain import makes is there");
                }
            }
        }
    }

    #[test]
    fn a_terabyte_hole_costs_a_few_blocks() {
        let opts = ImportOptions::default();
        let size = 1u64 << 40;
        let mut m = Mem { bytes: vec![], runs: vec![] };
        struct Count(usize);
        impl BlockSink for Count {
            type Error = std::convert::Infallible;
            fn put(&mut self, _: Block) -> Result<(), Self::Error> {
                self.0 += 1;
                Ok(())
            }
        }
        let mut sink = Count(0);
        let root = import_sparse(&opts, Metadata::default(), &mut m, size, &mut sink).unwrap();
        assert_eq!(root.filesize, size);
        assert!(sink.0 < 2000, "{} blocks", sink.0);
    }

    #[test]
    fn holes_are_found_only_when_a_whole_chunk_is_one() {
        assert!(has_holes(&mut sparse(10_000, &[(9000, b"x")]), 10_000, 1024).unwrap());
        assert!(!has_holes(&mut sparse(2000, &[(0, &[1u8; 1500])]), 2000, 1024).unwrap());
    }
}
