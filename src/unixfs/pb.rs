//! The UnixFS `Data` protobuf (proto2), as carried in a dag-pb node's `Data` field.
//!
//! Field order and encoding match go-unixfs byte for byte: `blocksizes` is *not* packed,
//! optional fields are written only when set, and fields are written in tag order. That is
//! what makes our CIDs equal Kubo's.

use bytes::Bytes;
use prost::Message;

/// UnixFS node types (the `Type` enum of unixfs.proto).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    Raw = 0,
    Directory = 1,
    File = 2,
    Metadata = 3,
    Symlink = 4,
    HamtShard = 5,
}

impl DataType {
    pub fn from_i32(v: i32) -> Option<DataType> {
        Some(match v {
            0 => DataType::Raw,
            1 => DataType::Directory,
            2 => DataType::File,
            3 => DataType::Metadata,
            4 => DataType::Symlink,
            5 => DataType::HamtShard,
            _ => return None,
        })
    }
}

/// unixfs.proto `Data`, including the UnixFS 1.5 `mode` and `mtime` fields.
#[derive(Clone, PartialEq, Message)]
pub struct Data {
    #[prost(int32, required, tag = "1")]
    pub r#type: i32,
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub data: Option<Bytes>,
    #[prost(uint64, optional, tag = "3")]
    pub filesize: Option<u64>,
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub blocksizes: Vec<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub hash_type: Option<u64>,
    #[prost(uint64, optional, tag = "6")]
    pub fanout: Option<u64>,
    #[prost(uint32, optional, tag = "7")]
    pub mode: Option<u32>,
    #[prost(message, optional, tag = "8")]
    pub mtime: Option<UnixTime>,
}

/// unixfs.proto `UnixTime`.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct UnixTime {
    #[prost(int64, required, tag = "1")]
    pub seconds: i64,
    #[prost(fixed32, optional, tag = "2")]
    pub fractional_nanoseconds: Option<u32>,
}

impl Data {
    pub fn new(kind: DataType) -> Data {
        Data { r#type: kind as i32, ..Default::default() }
    }

    pub fn kind(&self) -> Option<DataType> {
        DataType::from_i32(self.r#type)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    pub fn from_bytes(bytes: Bytes) -> Result<Data, prost::DecodeError> {
        Data::decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_matches_go_unixfs_bytes() {
        let mut d = Data::new(DataType::File);
        d.filesize = Some(0);
        assert_eq!(d.to_bytes(), [0x08, 0x02, 0x18, 0x00]);
    }

    #[test]
    fn blocksizes_are_not_packed() {
        let mut d = Data::new(DataType::File);
        d.filesize = Some(3);
        d.blocksizes = vec![1, 2];
        assert_eq!(d.to_bytes(), [0x08, 0x02, 0x18, 0x03, 0x20, 0x01, 0x20, 0x02]);
    }

    #[test]
    fn mode_and_mtime_round_trip() {
        let mut d = Data::new(DataType::File);
        d.mode = Some(0o644);
        d.mtime = Some(UnixTime { seconds: 1_700_000_000, fractional_nanoseconds: Some(5) });
        let back = Data::from_bytes(d.to_bytes().into()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&[0xffu8, 0xff, 0xff][..], &[0x12, 0x10, 0x00], &[0x0a]] {
            assert!(Data::from_bytes(Bytes::copy_from_slice(bad)).is_err());
        }
    }
}
