//! Blocks: bytes together with the CID that names them.
//!
//! A [`Block`] can only be built in two ways, and both hash the bytes exactly once:
//! [`Block::encode`] derives the CID from bytes we produced ourselves (the importer), and
//! [`Block::verified`] checks bytes that came from outside (a CAR file, a peer) against the
//! CID they claim. Every layer that stores or serves blocks takes a `Block`, so "every block
//! is verified on the way in" holds by construction rather than by convention.
//!
//! Identity CIDs (multihash code 0x00) carry their bytes inline; they are never stored.

use bytes::Bytes;
use cid::{Cid, Version};
use multihash::Multihash;
use multihash_codetable::{Code, MultihashDigest};
use sha2::{Digest, Sha256};

/// Multicodec code of dag-pb.
pub const DAG_PB: u64 = 0x70;
/// Multicodec code of raw bytes (raw leaves).
pub const RAW: u64 = 0x55;
/// Multicodec code of dag-cbor.
pub const DAG_CBOR: u64 = 0x71;
/// Multihash code of the identity "hash".
pub const IDENTITY: u64 = 0x00;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

/// Largest block cidfs accepts from anywhere. Bitswap peers refuse blocks over 2 MiB and
/// Kubo's importer never makes them; 4 MiB leaves room for foreign DAGs while keeping a
/// hostile "node with 10^6 links" from being decoded at all.
pub const MAX_BLOCK_SIZE: usize = 4 << 20;

/// Largest identity CID digest accepted (Kubo's default limit is 128 bytes).
pub const MAX_IDENTITY_SIZE: usize = 128;

/// Why bytes were refused as the block of a CID.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BlockError {
    #[error("block {cid}: bytes do not hash to this CID")]
    HashMismatch { cid: Cid },
    #[error("block {cid}: unsupported multihash code {code:#x}")]
    UnsupportedHash { cid: Cid, code: u64 },
    #[error("block {cid}: its multihash digest is {len} bytes, not the {want} its hash function makes")]
    TruncatedDigest { cid: Cid, len: u8, want: u8 },
    #[error("block {cid}: {size} bytes is larger than the {max}-byte block limit")]
    TooLarge { cid: Cid, size: usize, max: usize },
    #[error("CIDv0 requires dag-pb and sha2-256")]
    InvalidV0,
}

/// A verified block: its bytes hash to its CID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    cid: Cid,
    data: Bytes,
}

impl Block {
    /// Hashes `data` with sha2-256 and names it with a CID of `version` and `codec`.
    pub fn encode(version: Version, codec: u64, data: impl Into<Bytes>) -> Result<Block, BlockError> {
        let data = data.into();
        let mh = sha256_multihash(&data);
        let cid = match version {
            Version::V0 => {
                if codec != DAG_PB {
                    return Err(BlockError::InvalidV0);
                }
                Cid::new_v0(mh).map_err(|_| BlockError::InvalidV0)?
            }
            Version::V1 => Cid::new_v1(codec, mh),
        };
        Ok(Block { cid, data })
    }

    /// Checks that `data` hashes to `cid`, with the hash function the CID names.
    pub fn verified(cid: Cid, data: impl Into<Bytes>) -> Result<Block, BlockError> {
        let data = data.into();
        if data.len() > MAX_BLOCK_SIZE {
            return Err(BlockError::TooLarge { cid, size: data.len(), max: MAX_BLOCK_SIZE });
        }
        if hash_matches(&cid, &data)? { Ok(Block { cid, data }) } else { Err(BlockError::HashMismatch { cid }) }
    }

    /// The block an identity CID carries inline, if `cid` is one.
    pub fn from_identity(cid: &Cid) -> Option<Block> {
        if cid.hash().code() == IDENTITY {
            Some(Block { cid: *cid, data: Bytes::copy_from_slice(cid.hash().digest()) })
        } else {
            None
        }
    }

    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    pub fn data(&self) -> &Bytes {
        &self.data
    }

    pub fn into_data(self) -> Bytes {
        self.data
    }
}

/// Whether `cid` is an identity CID (its bytes are inline; nothing to store or fetch).
pub fn is_identity(cid: &Cid) -> bool {
    cid.hash().code() == IDENTITY
}

fn sha256_multihash(data: &[u8]) -> Multihash<64> {
    let digest = Sha256::digest(data);
    Multihash::wrap(SHA2_256, &digest).expect("a 32-byte digest fits a 64-byte multihash")
}

/// The multihash of `data` with the hash function `code` (identity included), if supported.
pub fn hash_with(code: u64, data: &[u8]) -> Option<Multihash<64>> {
    match code {
        IDENTITY => Multihash::wrap(IDENTITY, data).ok(),
        SHA2_256 => Some(sha256_multihash(data)),
        code => Some(Code::try_from(code).ok()?.digest(data)),
    }
}

/// Whether `data` hashes to the multihash inside `cid`. A digest shorter (or longer) than
/// its function's output is refused outright: a truncated digest matches more than one
/// content (a 0-byte one matches every content), so a CID would no longer name one.
fn hash_matches(cid: &Cid, data: &[u8]) -> Result<bool, BlockError> {
    let mh = cid.hash();
    let computed = match mh.code() {
        IDENTITY => return Ok(mh.digest() == data),
        SHA2_256 => sha256_multihash(data),
        code => Code::try_from(code).map_err(|_| BlockError::UnsupportedHash { cid: *cid, code })?.digest(data),
    };
    let (len, want) = (mh.digest().len(), computed.digest().len());
    if len != want {
        // (both are at most 64: a multihash here holds at most 64 bytes)
        return Err(BlockError::TruncatedDigest { cid: *cid, len: len as u8, want: want as u8 });
    }
    Ok(mh.digest() == computed.digest())
}

/// What a block is to a filesystem, known from the block alone. Recorded in the store's
/// index when a block is written, so a directory listing can give each entry its type
/// without reading the entry's block.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Unknown = 0,
    File = 1,
    Directory = 2,
    Symlink = 3,
}

impl Kind {
    pub fn from_u8(v: u8) -> Kind {
        match v {
            1 => Kind::File,
            2 => Kind::Directory,
            3 => Kind::Symlink,
            _ => Kind::Unknown,
        }
    }
}

/// Classifies a block: raw leaves are files; dag-pb by its UnixFS type; dag-cbor maps and
/// lists are directories and scalars files. Malformed blocks are `Unknown`.
pub fn kind(cid: &Cid, data: &Bytes) -> Kind {
    match cid.codec() {
        RAW => Kind::File,
        DAG_CBOR => match data.first().map(|b| b >> 5) {
            Some(4 | 5) => Kind::Directory, // CBOR major types array, map
            Some(_) => Kind::File,
            None => Kind::Unknown,
        },
        DAG_PB => {
            let Ok(node) = ipld_dagpb::PbNode::from_bytes(data.clone()) else { return Kind::Unknown };
            // UnixFS Data starts with its required Type field: tag 0x08, then a varint.
            match node.data.as_deref() {
                Some([0x08, 0 | 2, ..]) => Kind::File,
                Some([0x08, 1 | 5, ..]) => Kind::Directory,
                Some([0x08, 4, ..]) => Kind::Symlink,
                _ => Kind::Unknown,
            }
        }
        _ => Kind::Unknown,
    }
}

/// The CIDs a block links to (dag-pb links, dag-cbor links anywhere in the value; raw and
/// other codecs have none).
pub fn links(cid: &Cid, data: &Bytes) -> Result<Vec<Cid>, String> {
    use ipld_core::ipld::Ipld;
    match cid.codec() {
        DAG_PB => {
            let node = ipld_dagpb::PbNode::from_bytes(data.clone()).map_err(|e| e.to_string())?;
            Ok(node.links.into_iter().map(|l| l.cid).collect())
        }
        DAG_CBOR => {
            let value: Ipld = serde_ipld_dagcbor::from_slice(data).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            let mut stack = vec![&value];
            while let Some(v) = stack.pop() {
                match v {
                    Ipld::Link(c) => out.push(*c),
                    Ipld::List(l) => stack.extend(l.iter().rev()),
                    Ipld::Map(m) => stack.extend(m.values().rev()),
                    _ => {}
                }
            }
            Ok(out)
        }
        _ => Ok(vec![]),
    }
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
    use super::*;

    #[test]
    fn encode_then_verify_round_trips() {
        let b = Block::encode(Version::V1, RAW, &b"a"[..]).unwrap();
        assert_eq!(b.cid().to_string(), "bafkreigks6arfsq3xxfpvqrrwonchxcnu6do76auprhhfomao6c273sixm");
        let again = Block::verified(*b.cid(), &b"a"[..]).unwrap();
        assert_eq!(again, b);
    }

    #[test]
    fn wrong_bytes_are_refused() {
        let b = Block::encode(Version::V1, RAW, &b"a"[..]).unwrap();
        assert_eq!(Block::verified(*b.cid(), &b"b"[..]), Err(BlockError::HashMismatch { cid: *b.cid() }));
    }

    #[test]
    fn v0_requires_dag_pb() {
        assert_eq!(Block::encode(Version::V0, RAW, &b"a"[..]), Err(BlockError::InvalidV0));
    }

    #[test]
    fn identity_cids_carry_their_bytes() {
        let cid = Cid::new_v1(RAW, Multihash::wrap(IDENTITY, b"hi").unwrap());
        assert!(is_identity(&cid));
        assert_eq!(Block::from_identity(&cid).unwrap().data().as_ref(), b"hi");
        assert!(Block::verified(cid, &b"hi"[..]).is_ok());
        assert!(Block::verified(cid, &b"ho"[..]).is_err());
    }

    #[test]
    fn other_hash_functions_verify() {
        let mh = Code::Blake3_256.digest(b"x");
        let cid = Cid::new_v1(RAW, mh);
        assert!(Block::verified(cid, &b"x"[..]).is_ok());
        assert!(Block::verified(cid, &b"y"[..]).is_err());
    }

    #[test]
    fn a_truncated_digest_names_no_block() {
        // the multihash codes of every supported function, with 0-byte and shortened digests
        for code in [SHA2_256, 0x13, 0x14, 0x16, 0xb220, 0xb240, 0x1e] {
            let full = hash_with(code, b"x").unwrap();
            for len in [0, 1, full.digest().len() - 1] {
                let cid = Cid::new_v1(RAW, Multihash::wrap(code, &full.digest()[..len]).unwrap());
                let err = Block::verified(cid, &b"x"[..]).unwrap_err();
                assert!(matches!(err, BlockError::TruncatedDigest { .. }), "{code:#x}/{len}: {err}");
                assert!(Block::verified(cid, &b"anything else"[..]).is_err());
            }
            assert!(Block::verified(Cid::new_v1(RAW, full), &b"x"[..]).is_ok(), "{code:#x}");
        }
    }

    #[test]
    fn kinds_come_from_the_block_alone() {
        let raw = Block::encode(Version::V1, RAW, &b"x"[..]).unwrap();
        assert_eq!(kind(raw.cid(), raw.data()), Kind::File);
        let map = Block::encode(Version::V1, DAG_CBOR, &[0xa0u8][..]).unwrap();
        assert_eq!(kind(map.cid(), map.data()), Kind::Directory);
        let num = Block::encode(Version::V1, DAG_CBOR, &[0x07u8][..]).unwrap();
        assert_eq!(kind(num.cid(), num.data()), Kind::File);
        let garbage = Block::encode(Version::V1, DAG_PB, &[0xffu8, 0xff][..]).unwrap();
        assert_eq!(kind(garbage.cid(), garbage.data()), Kind::Unknown);
    }

    #[test]
    fn oversized_blocks_are_refused() {
        let data = vec![0u8; MAX_BLOCK_SIZE + 1];
        let cid = Block::encode(Version::V1, RAW, data.clone()).unwrap().cid;
        assert!(matches!(Block::verified(cid, data), Err(BlockError::TooLarge { .. })));
    }
}
