//! Decoding a block into what it means to a filesystem: a file, a directory, a HAMT shard,
//! a symlink, or a dag-cbor value. Pure: bytes in, a [`Node`] or a precise error out.
//!
//! Decoding validates everything a reader will later trust: a file's `blocksizes` must
//! account for its `filesize` (so a node claiming 2^63 bytes with no data is refused here,
//! not discovered by a reader looping through holes), HAMT parameters must be ones we can
//! walk, and names are kept as given: it is the directory code that refuses unsafe names.

use bytes::Bytes;
use cid::Cid;
use ipld_core::ipld::Ipld;
use ipld_dagpb::PbNode;

use super::hamt;
use super::pb::{Data, DataType, UnixTime};
use crate::block::{DAG_CBOR, DAG_PB, RAW};

/// UnixFS 1.5 metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    pub mode: Option<u32>,
    pub mtime: Option<UnixTime>,
}

/// One child of a file node: its CID and how many file bytes it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChild {
    pub cid: Cid,
    /// File bytes below this child.
    pub size: u64,
    /// The link's cumulative block size (dag-pb `Tsize`; 0 if absent).
    pub tsize: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileNode {
    /// Bytes held in this node itself (the whole content of a leaf).
    pub data: Bytes,
    /// Children in file order; their bytes follow `data`.
    pub children: Vec<FileChild>,
    /// Total file size: `data.len()` plus the children's sizes.
    pub size: u64,
    pub meta: Metadata,
}

/// A named link in a directory or HAMT shard, as written in the block (unvalidated name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub cid: Cid,
    pub tsize: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardNode {
    pub bit_width: u32,
    pub links: Vec<Link>,
    pub meta: Metadata,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    File(FileNode),
    /// A plain directory. `sorted`: its links are in name order (as dag-pb's canonical
    /// form and every importer writes them), so a lookup is a binary search; a foreign
    /// DAG's unsorted links are searched in order.
    Directory {
        links: Vec<Link>,
        meta: Metadata,
        sorted: bool,
    },
    HamtShard(ShardNode),
    Symlink {
        target: Bytes,
        meta: Metadata,
    },
    Cbor(Ipld),
}

/// What was wrong with a block, as a UnixFS/IPLD node.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("malformed dag-pb: {0}")]
    DagPb(String),
    #[error("malformed UnixFS data: {0}")]
    Protobuf(String),
    #[error("malformed dag-cbor: {0}")]
    DagCbor(String),
    #[error("dag-pb node has no UnixFS data")]
    NotUnixfs,
    #[error("unknown UnixFS type {0}")]
    UnknownType(i32),
    #[error("unsupported UnixFS type {0:?}")]
    UnsupportedType(DataType),
    #[error("unsupported codec {0:#x}")]
    UnsupportedCodec(u64),
    #[error("file node has {links} links but {sizes} blocksizes")]
    BlocksizeCount { links: usize, sizes: usize },
    #[error("file node claims {claimed} bytes but its data and blocksizes total {actual}")]
    SizeMismatch { claimed: u64, actual: u64 },
    #[error("file sizes overflow 64 bits")]
    SizeOverflow,
    #[error("HAMT shard: {0}")]
    Hamt(String),
}

impl Node {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Node::File(_) => "file",
            Node::Directory { .. } | Node::HamtShard(_) => "dir",
            Node::Symlink { .. } => "symlink",
            Node::Cbor(Ipld::Map(_) | Ipld::List(_)) => "dag-cbor",
            Node::Cbor(_) => "dag-cbor value",
        }
    }

    pub fn meta(&self) -> Metadata {
        match self {
            Node::File(f) => f.meta,
            Node::Directory { meta, .. } | Node::Symlink { meta, .. } => *meta,
            Node::HamtShard(s) => s.meta,
            Node::Cbor(_) => Metadata::default(),
        }
    }
}

/// Decodes the block `data` named by `cid`.
pub fn decode(cid: &Cid, data: &Bytes) -> Result<Node, DecodeError> {
    match cid.codec() {
        RAW => Ok(Node::File(FileNode {
            size: data.len() as u64,
            data: data.clone(),
            children: vec![],
            meta: Metadata::default(),
        })),
        DAG_PB => decode_dag_pb(data),
        DAG_CBOR => serde_ipld_dagcbor::from_slice::<Ipld>(data)
            .map(Node::Cbor)
            .map_err(|e| DecodeError::DagCbor(e.to_string())),
        other => Err(DecodeError::UnsupportedCodec(other)),
    }
}

fn decode_dag_pb(data: &Bytes) -> Result<Node, DecodeError> {
    let pb = PbNode::from_bytes(data.clone()).map_err(|e| DecodeError::DagPb(e.to_string()))?;
    let Some(raw) = pb.data else {
        return Err(DecodeError::NotUnixfs);
    };
    let d = Data::from_bytes(raw).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    let kind = d.kind().ok_or(DecodeError::UnknownType(d.r#type))?;
    let meta = Metadata { mode: d.mode, mtime: d.mtime };
    let links = || {
        pb.links
            .iter()
            .map(|l| Link { name: l.name.clone().unwrap_or_default(), cid: l.cid, tsize: l.size })
            .collect::<Vec<_>>()
    };
    match kind {
        DataType::File | DataType::Raw => {
            if pb.links.len() != d.blocksizes.len() {
                return Err(DecodeError::BlocksizeCount { links: pb.links.len(), sizes: d.blocksizes.len() });
            }
            let inline = d.data.unwrap_or_default();
            let mut actual = inline.len() as u64;
            for s in &d.blocksizes {
                actual = actual.checked_add(*s).ok_or(DecodeError::SizeOverflow)?;
            }
            if let Some(claimed) = d.filesize
                && claimed != actual
            {
                return Err(DecodeError::SizeMismatch { claimed, actual });
            }
            let children = pb
                .links
                .iter()
                .zip(&d.blocksizes)
                .map(|(l, s)| FileChild { cid: l.cid, size: *s, tsize: l.size.unwrap_or(0) })
                .collect();
            Ok(Node::File(FileNode { data: inline, children, size: actual, meta }))
        }
        DataType::Directory => {
            let links = links();
            let sorted = links.is_sorted_by(|a, b| a.name <= b.name);
            Ok(Node::Directory { links, meta, sorted })
        }
        DataType::Symlink => Ok(Node::Symlink { target: d.data.unwrap_or_default(), meta }),
        DataType::HamtShard => {
            if d.hash_type != Some(hamt::MURMUR3_X64_64) {
                return Err(DecodeError::Hamt(format!("unsupported hash type {:?}", d.hash_type)));
            }
            let fanout = d.fanout.ok_or_else(|| DecodeError::Hamt("no fanout".into()))?;
            let bit_width =
                hamt::bit_width(fanout).ok_or_else(|| DecodeError::Hamt(format!("unsupported fanout {fanout}")))?;
            Ok(Node::HamtShard(ShardNode { bit_width, links: links(), meta }))
        }
        DataType::Metadata => Err(DecodeError::UnsupportedType(kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Block;
    use cid::Version;
    use ipld_dagpb::PbLink;

    fn pb(data: Data, links: Vec<PbLink>) -> Bytes {
        PbNode { links, data: Some(data.to_bytes().into()) }.into_bytes().into()
    }

    fn some_cid() -> Cid {
        *Block::encode(Version::V1, RAW, &b"x"[..]).unwrap().cid()
    }

    #[test]
    fn absurd_filesize_is_refused() {
        let mut d = Data::new(DataType::File);
        d.filesize = Some(1 << 63);
        let err = decode(&some_cid_pb(), &pb(d, vec![])).unwrap_err();
        assert_eq!(err, DecodeError::SizeMismatch { claimed: 1 << 63, actual: 0 });
    }

    fn some_cid_pb() -> Cid {
        Cid::new_v1(DAG_PB, *some_cid().hash())
    }

    #[test]
    fn blocksizes_must_match_links() {
        let mut d = Data::new(DataType::File);
        d.blocksizes = vec![1, 2];
        let link = PbLink { cid: some_cid(), name: Some(String::new()), size: Some(1) };
        assert!(matches!(decode(&some_cid_pb(), &pb(d, vec![link])), Err(DecodeError::BlocksizeCount { .. })));
    }

    #[test]
    fn overflowing_blocksizes_are_refused() {
        let mut d = Data::new(DataType::File);
        d.blocksizes = vec![u64::MAX, 1];
        let link = |_| PbLink { cid: some_cid(), name: Some(String::new()), size: Some(1) };
        let links = (0..2).map(link).collect();
        assert_eq!(decode(&some_cid_pb(), &pb(d, links)), Err(DecodeError::SizeOverflow));
    }

    #[test]
    fn garbage_is_an_error() {
        let cid = some_cid_pb();
        for bad in [&b"\xff\xff\xff"[..], b"", b"\x0a\x05\x08", b"\x12\x00"] {
            assert!(decode(&cid, &Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
        let cbor = Cid::new_v1(DAG_CBOR, *cid.hash());
        assert!(matches!(decode(&cbor, &Bytes::from_static(b"\xff")), Err(DecodeError::DagCbor(_))));
    }

    #[test]
    fn unknown_type_and_bad_hamt_are_refused() {
        let d = Data { r#type: 9, ..Default::default() };
        assert_eq!(decode(&some_cid_pb(), &pb(d, vec![])), Err(DecodeError::UnknownType(9)));
        let mut d = Data::new(DataType::HamtShard);
        d.hash_type = Some(hamt::MURMUR3_X64_64);
        d.fanout = Some(3);
        assert!(matches!(decode(&some_cid_pb(), &pb(d, vec![])), Err(DecodeError::Hamt(_))));
    }
}
