//! CAR (Content Addressable aRchive) files: CARv1 read and write, CARv2 read.
//!
//! A CARv1 is `varint(len) dag-cbor-header` followed by sections `varint(len) CID bytes`.
//! A CARv2 wraps a CARv1 payload behind an 11-byte pragma and a 40-byte header; we read
//! its payload and ignore its index. The reader verifies every block against its CID and
//! reports the byte offset of anything wrong, so an import can name what failed.
//!
//! The store's segment files are CARv1 too, so the functions here also frame segments.

use std::io::{self, Read, Write};

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::block::{Block, BlockError, MAX_BLOCK_SIZE};

/// Header bytes of every CARv2: `varint(10) {"version": 2}`.
pub const CARV2_PRAGMA: [u8; 11] = [0x0a, 0xa1, 0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x02];
const CARV2_HEADER_LEN: u64 = 40;
/// Largest CARv1 header we accept.
const MAX_HEADER_LEN: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CarError {
    #[error("reading CAR: {0}")]
    Io(#[from] io::Error),
    #[error("CAR header: {0}")]
    Header(String),
    #[error("CAR truncated at byte {offset}: {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("CAR section at byte {offset}: {msg}")]
    Section { offset: u64, msg: String },
    #[error("CAR section at byte {offset}: {source}")]
    Block { offset: u64, source: BlockError },
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The CARv1 header for `roots`, with its length prefix.
pub fn encode_header(roots: &[Cid]) -> Vec<u8> {
    // Canonical dag-cbor orders keys by length then bytes: "roots" before "version".
    let map = Ipld::Map(
        [
            ("roots".to_string(), Ipld::List(roots.iter().map(|c| Ipld::Link(*c)).collect())),
            ("version".to_string(), Ipld::Integer(1)),
        ]
        .into(),
    );
    let body = serde_ipld_dagcbor::to_vec(&map).expect("a header of CIDs always encodes");
    let mut out = Vec::with_capacity(body.len() + 2);
    put_varint(body.len() as u64, &mut out);
    out.extend_from_slice(&body);
    out
}

/// The bytes that precede a block's data in a section: `varint(len) CID`.
pub fn section_prefix(cid: &Cid, data_len: usize) -> Vec<u8> {
    let cid_bytes = cid.to_bytes();
    let mut out = Vec::with_capacity(cid_bytes.len() + 10);
    put_varint((cid_bytes.len() + data_len) as u64, &mut out);
    out.extend_from_slice(&cid_bytes);
    out
}

/// Total bytes a block occupies in a CAR: prefix plus data.
pub fn section_len(cid: &Cid, data_len: usize) -> u64 {
    let body = cid.encoded_len() + data_len;
    (varint_len(body as u64) + body) as u64
}

/// Writes a CARv1.
pub struct CarWriter<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> CarWriter<W> {
    pub fn new(mut out: W, roots: &[Cid]) -> io::Result<Self> {
        let header = encode_header(roots);
        out.write_all(&header)?;
        Ok(CarWriter { out, written: header.len() as u64 })
    }

    pub fn write(&mut self, cid: &Cid, data: &[u8]) -> io::Result<()> {
        let prefix = section_prefix(cid, data.len());
        self.out.write_all(&prefix)?;
        self.out.write_all(data)?;
        self.written += (prefix.len() + data.len()) as u64;
        Ok(())
    }

    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// How much of a section's claimed length is allocated before its bytes arrive (every
/// block an importer makes fits: Kubo's 256 KiB leaves, 1 MiB in the 2025 profile).
const CLAIM_TRUSTED: usize = 1 << 20;

/// Reads a CARv1 (or the payload of a CARv2), verifying every block.
pub struct CarReader<R: Read> {
    input: io::Take<R>,
    offset: u64,
    roots: Vec<Cid>,
}

impl<R: Read> CarReader<R> {
    pub fn new(input: R) -> Result<Self, CarError> {
        let mut input = input.take(u64::MAX);
        let mut offset = 0;
        let (version, roots) = read_header(&mut input, &mut offset)?;
        match version {
            1 => Ok(CarReader { input, offset, roots }),
            2 => {
                let mut h = [0u8; CARV2_HEADER_LEN as usize];
                read_exact(&mut input, &mut h, &mut offset, "CARv2 header")?;
                let data_offset = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
                let data_size = u64::from_le_bytes(h[24..32].try_into().expect("8 bytes"));
                let skip = data_offset.checked_sub(offset).ok_or_else(|| {
                    CarError::Header(format!("CARv2 data offset {data_offset} points into its header"))
                })?;
                let skipped = io::copy(&mut (&mut input).take(skip), &mut io::sink())?;
                offset += skipped;
                if skipped < skip {
                    return Err(CarError::Truncated { offset, what: "CARv2 padding" });
                }
                input.set_limit(data_size);
                let (inner, roots) = read_header(&mut input, &mut offset)?;
                if inner != 1 {
                    return Err(CarError::Header(format!("CARv2 payload has version {inner}, expected 1")));
                }
                Ok(CarReader { input, offset, roots })
            }
            v => Err(CarError::Header(format!("unsupported CAR version {v}"))),
        }
    }

    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next block and the byte offset of its section, or `None` at the end.
    pub fn next_block(&mut self) -> Result<Option<(u64, Block)>, CarError> {
        let start = self.offset;
        let Some(len) = read_varint(&mut self.input, &mut self.offset)? else {
            return Ok(None);
        };
        let mut section = Counting { inner: (&mut self.input).take(len), read: 0, ended: false };
        let cid = Cid::read_bytes(&mut section).map_err(|e| {
            // The input ended before the section did (not merely the section's own length).
            if section.ended && section.inner.limit() > 0 {
                CarError::Truncated { offset: self.offset + section.read, what: "CID" }
            } else {
                CarError::Section { offset: start, msg: format!("bad CID: {e}") }
            }
        })?;
        let data_len = len.saturating_sub(section.read);
        if data_len > MAX_BLOCK_SIZE as u64 {
            let source = BlockError::TooLarge { cid, size: data_len as usize, max: MAX_BLOCK_SIZE };
            return Err(CarError::Block { offset: start, source });
        }
        self.offset += section.read;
        // memory follows the bytes that arrive, not the length a section claims
        let mut data = Vec::with_capacity((data_len as usize).min(CLAIM_TRUSTED));
        let got = (&mut self.input).take(data_len).read_to_end(&mut data)?;
        self.offset += got as u64;
        if (got as u64) < data_len {
            return Err(CarError::Truncated { offset: self.offset, what: "block data" });
        }
        let block = Block::verified(cid, data).map_err(|source| CarError::Block { offset: start, source })?;
        Ok(Some((start, block)))
    }
}

impl<R: Read> CarReader<R> {
    /// The next section's offset and CID, skipping its block bytes unread and unverified
    /// (for listing a CAR whose blocks were verified when it was written).
    pub fn next_cid(&mut self) -> Result<Option<(u64, Cid)>, CarError> {
        let start = self.offset;
        let Some(len) = read_varint(&mut self.input, &mut self.offset)? else {
            return Ok(None);
        };
        let mut section = Counting { inner: (&mut self.input).take(len), read: 0, ended: false };
        let cid = Cid::read_bytes(&mut section)
            .map_err(|e| CarError::Section { offset: start, msg: format!("bad CID: {e}") })?;
        let data_len = len.saturating_sub(section.read);
        self.offset += section.read;
        let skipped = io::copy(&mut (&mut self.input).take(data_len), &mut io::sink())?;
        self.offset += skipped;
        if skipped < data_len {
            return Err(CarError::Truncated { offset: self.offset, what: "block data" });
        }
        Ok(Some((start, cid)))
    }
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: u64,
    ended: bool,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.ended |= n == 0 && !buf.is_empty();
        Ok(n)
    }
}

fn read_header<R: Read>(input: &mut R, offset: &mut u64) -> Result<(u64, Vec<Cid>), CarError> {
    let len =
        read_varint(input, offset)?.ok_or(CarError::Truncated { offset: 0, what: "empty file, no CAR header" })?;
    if len == 0 || len > MAX_HEADER_LEN {
        return Err(CarError::Header(format!("header length {len} is out of range")));
    }
    let mut buf = vec![0u8; len as usize];
    read_exact(input, &mut buf, offset, "CAR header")?;
    let header: Ipld =
        serde_ipld_dagcbor::from_slice(&buf).map_err(|e| CarError::Header(format!("not dag-cbor: {e}")))?;
    let Ipld::Map(map) = header else {
        return Err(CarError::Header("not a map".into()));
    };
    let version = match map.get("version") {
        Some(Ipld::Integer(v)) => u64::try_from(*v).map_err(|_| CarError::Header("negative version".into()))?,
        _ => return Err(CarError::Header("no version".into())),
    };
    let roots = match map.get("roots") {
        Some(Ipld::List(l)) => l
            .iter()
            .map(|r| match r {
                Ipld::Link(c) => Ok(*c),
                _ => Err(CarError::Header("a root is not a CID".into())),
            })
            .collect::<Result<Vec<_>, _>>()?,
        None if version == 2 => vec![],
        _ => return Err(CarError::Header("no roots".into())),
    };
    Ok((version, roots))
}

/// Reads a varint; `None` on a clean end of input before its first byte.
fn read_varint<R: Read>(input: &mut R, offset: &mut u64) -> Result<Option<u64>, CarError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        if input.read(&mut b)? == 0 {
            return if i == 0 { Ok(None) } else { Err(CarError::Truncated { offset: *offset, what: "varint" }) };
        }
        *offset += 1;
        v |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
    }
    Err(CarError::Section { offset: *offset, msg: "varint longer than 10 bytes".into() })
}

fn read_exact<R: Read>(input: &mut R, buf: &mut [u8], offset: &mut u64, what: &'static str) -> Result<(), CarError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(CarError::Truncated { offset: *offset + filled as u64, what });
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    *offset += filled as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::RAW;
    use cid::Version;

    fn blocks() -> Vec<Block> {
        (0..3u8).map(|i| Block::encode(Version::V1, RAW, vec![i; 100 * i as usize]).unwrap()).collect()
    }

    fn car(blocks: &[Block]) -> Vec<u8> {
        let mut w = CarWriter::new(Vec::new(), &[*blocks[0].cid()]).unwrap();
        for b in blocks {
            w.write(b.cid(), b.data()).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let bs = blocks();
        let bytes = car(&bs);
        let mut r = CarReader::new(&bytes[..]).unwrap();
        assert_eq!(r.roots(), &[*bs[0].cid()]);
        let mut got = vec![];
        while let Some((_, b)) = r.next_block().unwrap() {
            got.push(b);
        }
        assert_eq!(got, bs);
        assert_eq!(r.offset(), bytes.len() as u64);
    }

    #[test]
    fn section_len_matches_what_is_written() {
        let bs = blocks();
        let header = encode_header(&[*bs[0].cid()]).len() as u64;
        let total: u64 = bs.iter().map(|b| section_len(b.cid(), b.data().len())).sum();
        assert_eq!(header + total, car(&bs).len() as u64);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(0), 1);
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let bytes = car(&blocks());
        for cut in 0..bytes.len() {
            let res = CarReader::new(&bytes[..cut]).and_then(|mut r| {
                while r.next_block()?.is_some() {}
                Ok(())
            });
            // A cut exactly between sections is a valid, shorter CAR.
            if let Err(e) = res {
                assert!(matches!(e, CarError::Truncated { .. } | CarError::Header(_)), "cut {cut}: {e}");
            }
        }
    }

    #[test]
    fn a_flipped_byte_names_the_cid_and_offset() {
        let bs = blocks();
        let mut bytes = car(&bs);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let mut r = CarReader::new(&bytes[..]).unwrap();
        r.next_block().unwrap();
        r.next_block().unwrap();
        let err = r.next_block().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&bs[2].cid().to_string()), "{msg}");
        assert!(matches!(err, CarError::Block { .. }));
    }

    #[test]
    fn carv2_payload_is_read() {
        let bs = blocks();
        let v1 = car(&bs);
        let mut v2 = CARV2_PRAGMA.to_vec();
        let data_offset = 11 + 40 + 5u64; // some padding
        let mut h = [0u8; 40];
        h[16..24].copy_from_slice(&data_offset.to_le_bytes());
        h[24..32].copy_from_slice(&(v1.len() as u64).to_le_bytes());
        v2.extend_from_slice(&h);
        v2.extend_from_slice(&[0; 5]);
        v2.extend_from_slice(&v1);
        v2.extend_from_slice(b"index bytes that must be ignored");
        let mut r = CarReader::new(&v2[..]).unwrap();
        let mut n = 0;
        while r.next_block().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
        assert_eq!(r.roots(), &[*bs[0].cid()]);
    }

    #[test]
    fn hostile_headers_are_refused() {
        for bad in [&[0x05u8, 0xff, 0xff, 0xff, 0xff, 0xff][..], &[0xff, 0xff, 0xff, 0xff, 0x0f], &[0x01, 0xa0]] {
            assert!(CarReader::new(bad).is_err());
        }
    }
}
