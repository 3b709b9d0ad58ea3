//! Bitswap 1.0.0 / 1.1.0 / 1.2.0 messages: the protobuf, CID prefixes, and the pure
//! functions that turn messages into what a peer wants or sent (no I/O here).
//!
//! A message carries a want-list (CIDs a peer wants, as a whole block or just "have?"),
//! blocks (1.0.0: bare bytes, named by their sha2-256 CIDv0; 1.1.0+: a CID *prefix* and
//! the bytes, so the receiver rebuilds the CID by hashing) and, since 1.2.0, presences
//! (have / don't-have). Every message is length-prefixed (unsigned varint) on a stream;
//! replies travel on a stream the *answering* peer opens.
//!
//! Received blocks are never trusted: [`blocks_of`] rebuilds each CID from the prefix and
//! the bytes, and [`crate::block::Block::verified`] checks it, so a peer that sends bytes
//! that do not hash to what it claims is caught here.

use bytes::Bytes;
use cid::Cid;
use prost::Message as _;

use crate::block::{Block, DAG_PB};

/// The protocols we speak, newest first (peers pick the first they share).
pub const PROTOCOLS: [&str; 4] = ["/ipfs/bitswap/1.2.0", "/ipfs/bitswap/1.1.0", "/ipfs/bitswap/1.0.0", "/ipfs/bitswap"];

/// Largest message accepted from a peer: one 4 MiB block plus framing (go-bitswap's limit).
pub const MAX_MESSAGE: usize = 4 << 20 | 64 << 10;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    #[prost(message, optional, tag = "1")]
    pub wantlist: Option<Wantlist>,
    /// Bitswap 1.0.0 blocks: bytes only, CIDv0 implied.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub blocks: Vec<Bytes>,
    #[prost(message, repeated, tag = "3")]
    pub payload: Vec<PayloadBlock>,
    #[prost(message, repeated, tag = "4")]
    pub block_presences: Vec<BlockPresence>,
    #[prost(int32, tag = "5")]
    pub pending_bytes: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Wantlist {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    #[prost(bool, tag = "2")]
    pub full: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// The wanted CID, as bytes.
    #[prost(bytes = "bytes", tag = "1")]
    pub block: Bytes,
    #[prost(int32, tag = "2")]
    pub priority: i32,
    #[prost(bool, tag = "3")]
    pub cancel: bool,
    /// 0: the block; 1: only whether the peer has it.
    #[prost(int32, tag = "4")]
    pub want_type: i32,
    #[prost(bool, tag = "5")]
    pub send_dont_have: bool,
}

pub const WANT_BLOCK: i32 = 0;
pub const WANT_HAVE: i32 = 1;
pub const HAVE: i32 = 0;
pub const DONT_HAVE: i32 = 1;

#[derive(Clone, PartialEq, prost::Message)]
pub struct PayloadBlock {
    /// CID version, codec, multihash code and digest length, each an unsigned varint.
    #[prost(bytes = "bytes", tag = "1")]
    pub prefix: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockPresence {
    #[prost(bytes = "bytes", tag = "1")]
    pub cid: Bytes,
    #[prost(int32, tag = "2")]
    pub r#type: i32,
}

/// What a peer asked of us in one message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wants {
    pub blocks: Vec<(Cid, bool)>,
    pub haves: Vec<(Cid, bool)>,
    pub cancels: Vec<Cid>,
}

/// The prefix of `cid`: everything but the digest.
pub fn prefix(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    let mut put = |v: u64| crate::car::put_varint(v, &mut out);
    put(u64::from(cid.version()));
    put(cid.codec());
    put(cid.hash().code());
    put(u64::from(cid.hash().size()));
    out
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The CID a block with `prefix` and `data` has (hashing `data`), if the prefix is sound
/// and its hash function is one we support.
pub fn cid_from_prefix(prefix: &[u8], data: &[u8]) -> Option<Cid> {
    let mut pos = 0;
    let version = read_varint(prefix, &mut pos)?;
    let codec = read_varint(prefix, &mut pos)?;
    let code = read_varint(prefix, &mut pos)?;
    let len = read_varint(prefix, &mut pos)?;
    if pos != prefix.len() {
        return None;
    }
    let full = crate::block::hash_with(code, data)?;
    // a declared length under the digest's is a truncated hash
    let digest = full.digest().get(..usize::try_from(len).ok()?)?;
    let mh = multihash::Multihash::<64>::wrap(code, digest).ok()?;
    match version {
        0 if codec == DAG_PB => Cid::new_v0(mh).ok(),
        1 => Some(Cid::new_v1(codec, mh)),
        _ => None,
    }
}

/// Every block in a message, each verified; `Err` names the first block whose bytes do not
/// match the CID its prefix claims (or whose prefix is malformed): the sender lied.
pub fn blocks_of(msg: &Message) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    for data in &msg.blocks {
        let cid = cid_from_prefix(&[0, 0x70, 0x12, 32], data).ok_or("bitswap 1.0.0 block")?;
        out.push(Block::verified(cid, data.clone()).map_err(|e| e.to_string())?);
    }
    for b in &msg.payload {
        let cid = cid_from_prefix(&b.prefix, &b.data).ok_or_else(|| format!("bad block prefix {:02x?}", b.prefix))?;
        out.push(Block::verified(cid, b.data.clone()).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// What a peer wants, from its want-list (entries with unreadable CIDs are skipped).
pub fn wants_of(msg: &Message) -> Wants {
    let mut w = Wants::default();
    for e in msg.wantlist.iter().flat_map(|l| &l.entries) {
        let Ok(cid) = Cid::try_from(&e.block[..]) else { continue };
        if e.cancel {
            w.cancels.push(cid);
        } else if e.want_type == WANT_HAVE {
            w.haves.push((cid, e.send_dont_have));
        } else {
            w.blocks.push((cid, e.send_dont_have));
        }
    }
    w
}

/// (have, don't-have) CIDs a peer told us about.
pub fn presences_of(msg: &Message) -> (Vec<Cid>, Vec<Cid>) {
    let (mut have, mut dont) = (Vec::new(), Vec::new());
    for p in &msg.block_presences {
        if let Ok(cid) = Cid::try_from(&p.cid[..]) {
            if p.r#type == DONT_HAVE { dont.push(cid) } else { have.push(cid) }
        }
    }
    (have, dont)
}

/// A message wanting `cids` (whole blocks, or only presence), or cancelling them.
pub fn want_message(cids: &[Cid], want_type: i32, cancel: bool) -> Message {
    let entries = cids
        .iter()
        .map(|c| Entry { block: c.to_bytes().into(), priority: 1, cancel, want_type, send_dont_have: !cancel })
        .collect();
    Message { wantlist: Some(Wantlist { entries, full: false }), ..Default::default() }
}

/// A reply carrying `blocks` (each as its CID and the bytes we hold for it: the store
/// verified them on the way in, and the receiver verifies them again) and presences, for
/// a peer speaking `protocol`.
pub fn reply_message(protocol: &str, blocks: Vec<(Cid, Bytes)>, have: &[Cid], dont_have: &[Cid]) -> Message {
    let mut m = Message::default();
    let legacy = protocol == "/ipfs/bitswap/1.0.0" || protocol == "/ipfs/bitswap";
    for (cid, data) in blocks {
        if legacy {
            if cid.version() == cid::Version::V0 {
                m.blocks.push(data);
            }
        } else {
            m.payload.push(PayloadBlock { prefix: prefix(&cid).into(), data });
        }
    }
    if protocol == PROTOCOLS[0] {
        let p = |c: &Cid, t| BlockPresence { cid: c.to_bytes().into(), r#type: t };
        m.block_presences.extend(have.iter().map(|c| p(c, HAVE)).chain(dont_have.iter().map(|c| p(c, DONT_HAVE))));
    }
    m
}

/// A message framed for the wire: varint length, then the protobuf.
pub fn frame(msg: &Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = Vec::with_capacity(body.len() + 5);
    crate::car::put_varint(body.len() as u64, &mut out);
    out.extend_from_slice(&body);
    out
}

/// Decodes one message body (after the length prefix).
pub fn decode(body: &[u8]) -> Result<Message, String> {
    Message::decode(body).map_err(|e| format!("malformed bitswap message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(data: &'static [u8], v0: bool) -> Block {
        if v0 {
            Block::encode(cid::Version::V0, DAG_PB, data).unwrap()
        } else {
            Block::encode(cid::Version::V1, crate::block::RAW, data).unwrap()
        }
    }

    #[test]
    fn blocks_round_trip_through_every_protocol_version() {
        let (a, b) = (block(b"\x0a\x02\x08\x01", true), block(b"raw bytes", false));
        for proto in PROTOCOLS {
            let blocks = [&a, &b].map(|x| (*x.cid(), x.data().clone())).to_vec();
            let framed = frame(&reply_message(proto, blocks, &[], &[]));
            let mut pos = 0;
            let len = read_varint(&framed, &mut pos).unwrap() as usize;
            let got = blocks_of(&decode(&framed[pos..pos + len]).unwrap()).unwrap();
            let want = if proto.ends_with("1.0.0") || proto == "/ipfs/bitswap" {
                vec![a.clone()]
            } else {
                vec![a.clone(), b.clone()]
            };
            assert_eq!(got, want, "{proto}");
        }
    }

    #[test]
    fn a_block_that_does_not_match_its_prefix_is_caught() {
        let b = block(b"honest", false);
        let mut m = reply_message(PROTOCOLS[0], vec![(*b.cid(), b.data().clone())], &[], &[]);
        // a liar: right prefix, wrong bytes, so the CID the receiver computes differs;
        // what it wanted never arrives
        m.payload[0].data = Bytes::from_static(b"forged");
        let got = blocks_of(&m).unwrap();
        assert!(got.iter().all(|g| g.cid() != b.cid()));
        // a malformed prefix or an unknown hash is an error, not a panic
        m.payload[0].prefix = Bytes::from_static(&[1, 0x55, 0x99, 0x01, 32]);
        assert!(blocks_of(&m).is_err());
        m.payload[0].prefix = Bytes::from_static(&[0xff]);
        assert!(blocks_of(&m).is_err());
        assert!(decode(&[0x0a, 0xff]).is_err());
    }

    #[test]
    fn wants_and_presences_are_read_back() {
        let (a, b) = (*block(b"a", false).cid(), *block(b"b", false).cid());
        let mut m = want_message(&[a], WANT_BLOCK, false);
        m.wantlist.as_mut().unwrap().entries.extend(want_message(&[b], WANT_HAVE, false).wantlist.unwrap().entries);
        m.wantlist.as_mut().unwrap().entries.extend(want_message(&[a], WANT_BLOCK, true).wantlist.unwrap().entries);
        m.wantlist.as_mut().unwrap().entries.push(Entry { block: Bytes::from_static(b"junk"), ..Default::default() });
        let m = decode(&m.encode_to_vec()).unwrap();
        assert_eq!(wants_of(&m), Wants { blocks: vec![(a, true)], haves: vec![(b, true)], cancels: vec![a] });
        let r = reply_message(PROTOCOLS[0], vec![], &[a], &[b]);
        assert_eq!(presences_of(&r), (vec![a], vec![b]));
        assert!(reply_message(PROTOCOLS[1], vec![], &[a], &[b]).block_presences.is_empty(), "1.1.0 has none");
    }
}
