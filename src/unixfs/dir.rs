//! Directories: plain UnixFS directories, HAMT shards, and dag-cbor maps/lists browsed as
//! directories.
//!
//! Listing uses only the directory's own blocks (a HAMT's sub-shards are part of the
//! directory): a link carries name, CID and size, and the type of an entry is learnt only
//! when the entry itself is looked up. Looking up one name in a HAMT walks one path of
//! shards, never the whole directory.
//!
//! Names inside foreign DAGs are untrusted: [`is_safe_name`] decides which may become a path
//! component; the others are skipped (and logged) everywhere.
//!
//! Shapes are untrusted too. A HAMT whose shard links all name one child would expand four
//! blocks into 256³ entries; a shard reached twice in one directory cannot occur in a real
//! HAMT (every shard covers its own slice of the hash space), so it is refused, and no
//! listing holds more than [`MAX_DIR_ENTRIES`].

use std::sync::Arc;

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::{DecodeError, Link, Node, Nodes, ShardNode, UnixfsError, hamt};

/// Deepest HAMT we walk (a 64-bit hash at 8 bits a level is used up after 8 levels).
const MAX_SHARD_DEPTH: usize = 64;

/// Most entries one directory listing holds. A listing is kept whole while a directory is
/// open (readdir offsets index into it), so a DAG must not be able to make it any size: a
/// directory claiming more is refused, not listed. About 100 MiB of names at most.
pub const MAX_DIR_ENTRIES: usize = 1 << 20;

/// Whether a link name may become a path component.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Calls `f` with every entry of the directory `node` (named `cid`), with safe names only.
pub fn list<N: Nodes + ?Sized>(blocks: &N, cid: &Cid, node: &Node, f: &mut dyn FnMut(Link)) -> Result<(), UnixfsError> {
    match node {
        Node::Directory { links, .. } => {
            for link in links {
                emit_if_safe(cid, link.clone(), f);
            }
            Ok(())
        }
        Node::HamtShard(shard) => {
            let mut walk = ShardWalk { seen: std::collections::HashSet::new(), entries: 0, dir: *cid };
            walk.list(blocks, cid, shard, 0, f)
        }
        Node::Cbor(value) => {
            for (name, value) in cbor_entries(value) {
                let cid = match value {
                    Ipld::Link(c) => *c,
                    _ => *cid,
                };
                emit_if_safe(&cid, Link { name, cid, tsize: None }, f);
            }
            Ok(())
        }
        _ => Err(UnixfsError::NotADirectory { cid: *cid }),
    }
}

fn emit_if_safe(dir: &Cid, link: Link, f: &mut dyn FnMut(Link)) {
    if is_safe_name(&link.name) {
        f(link)
    } else {
        log::warn!("directory {dir}: skipping entry with unsafe name {:?}", link.name);
    }
}

/// One listing of a HAMT directory: the shards met so far and the entries given.
struct ShardWalk {
    seen: std::collections::HashSet<Cid>,
    entries: usize,
    /// The directory's root shard, for messages.
    dir: Cid,
}

impl ShardWalk {
    fn list<N: Nodes + ?Sized>(
        &mut self,
        blocks: &N,
        cid: &Cid,
        shard: &ShardNode,
        depth: usize,
        f: &mut dyn FnMut(Link),
    ) -> Result<(), UnixfsError> {
        if depth > MAX_SHARD_DEPTH {
            return Err(UnixfsError::TooDeep { cid: *cid });
        }
        let plen = hamt::prefix_len(shard.bit_width);
        for link in &shard.links {
            if link.name.len() < plen || !link.name.is_char_boundary(plen) {
                return Err(shard_error(cid, format!("link name {:?} has no bucket prefix", link.name)));
            }
            if link.name.len() == plen {
                if !self.seen.insert(link.cid) || link.cid == self.dir {
                    return Err(shard_error(
                        &self.dir,
                        format!("shard {} is reached twice: not a valid HAMT directory", link.cid),
                    ));
                }
                let child = load_shard(blocks, &link.cid, shard.bit_width)?;
                self.list(blocks, &link.cid, shard_of(&child), depth + 1, f)?;
            } else {
                self.entries += 1;
                if self.entries > MAX_DIR_ENTRIES {
                    return Err(shard_error(
                        &self.dir,
                        format!("more than {MAX_DIR_ENTRIES} entries: too many to list"),
                    ));
                }
                let entry = Link { name: link.name[plen..].to_string(), cid: link.cid, tsize: link.tsize };
                emit_if_safe(cid, entry, f);
            }
        }
        Ok(())
    }
}

fn load_shard<N: Nodes + ?Sized>(blocks: &N, cid: &Cid, bit_width: u32) -> Result<Arc<Node>, UnixfsError> {
    let node = blocks.node(cid)?;
    match node.as_ref() {
        Node::HamtShard(s) if s.bit_width == bit_width => Ok(node),
        _ => Err(shard_error(cid, "child of a HAMT shard is not a shard of the same fanout".into())),
    }
}

fn shard_error(cid: &Cid, msg: String) -> UnixfsError {
    UnixfsError::Decode { cid: *cid, source: Box::new(DecodeError::Hamt(msg)) }
}

/// The entry called `name` in directory `node`, if any. Unsafe names are never found.
pub fn lookup<N: Nodes + ?Sized>(blocks: &N, cid: &Cid, node: &Node, name: &str) -> Result<Option<Link>, UnixfsError> {
    if !is_safe_name(name) {
        return Ok(None);
    }
    match node {
        Node::Directory { links, sorted: true, .. } => {
            // the first of equal names, as the scan below finds it
            let at = links.partition_point(|l| l.name.as_str() < name);
            Ok(links.get(at).filter(|l| l.name == name).cloned())
        }
        Node::Directory { links, .. } => Ok(links.iter().find(|l| l.name == name).cloned()),
        Node::HamtShard(shard) => lookup_shard(blocks, cid, shard, name),
        Node::Cbor(_) => Err(UnixfsError::NotADirectory { cid: *cid }), // see path::step_cbor
        _ => Err(UnixfsError::NotADirectory { cid: *cid }),
    }
}

fn lookup_shard<N: Nodes + ?Sized>(
    blocks: &N,
    cid: &Cid,
    root: &ShardNode,
    name: &str,
) -> Result<Option<Link>, UnixfsError> {
    let hash = hamt::hash_name(name.as_bytes());
    let mut held: Option<Arc<Node>> = None; // the current child shard, once we descend
    let mut shard_cid = *cid;
    for depth in 0.. {
        let shard = held.as_deref().map_or(root, shard_of);
        let Some(bucket) = hamt::bucket(hash, depth, shard.bit_width) else {
            return Err(shard_error(&shard_cid, "HAMT deeper than its hash".into()));
        };
        let prefix = hamt::prefix(bucket, shard.bit_width);
        let Some(link) = shard.links.iter().find(|l| l.name.starts_with(&prefix)) else { return Ok(None) };
        if link.name.len() == prefix.len() {
            let (next, bit_width) = (link.cid, shard.bit_width);
            held = Some(load_shard(blocks, &next, bit_width)?);
            shard_cid = next;
            continue;
        }
        return Ok((link.name[prefix.len()..] == *name).then(|| Link {
            name: name.to_string(),
            cid: link.cid,
            tsize: link.tsize,
        }));
    }
    unreachable!("the loop only ends by returning")
}

/// The shard inside a node [`load_shard`] returned.
fn shard_of(node: &Node) -> &ShardNode {
    match node {
        Node::HamtShard(s) => s,
        _ => unreachable!("load_shard only returns shards"),
    }
}

/// The entries of a dag-cbor map or list, as (name, value); empty for scalars.
pub fn cbor_entries(value: &Ipld) -> Vec<(String, &Ipld)> {
    match value {
        Ipld::Map(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Ipld::List(l) => l.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_refused() {
        for bad in ["", ".", "..", "a/b", "/", "a\0b"] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
        for good in ["a", "...", ".hidden", "a b", "ünï"] {
            assert!(is_safe_name(good), "{good:?}");
        }
    }

    #[test]
    fn plain_directories_are_searched_by_name_sorted_or_not() {
        use crate::block::{Block, DAG_PB};
        use crate::unixfs::pb::{Data, DataType};
        let target = *Block::encode(cid::Version::V1, crate::block::RAW, &b"x"[..]).unwrap().cid();
        // encoded by hand, link by link, so that the links stay in the order given (the
        // encoder would sort them; a foreign DAG may not be)
        let dir = |names: &[&str]| {
            let mut bytes = Vec::new();
            for n in names {
                let link = ipld_dagpb::PbLink { cid: target, name: Some(n.to_string()), size: Some(1) };
                bytes.extend(ipld_dagpb::PbNode { links: vec![link], data: None }.into_bytes());
            }
            let data = Data::new(DataType::Directory).to_bytes();
            bytes.extend(ipld_dagpb::PbNode { links: vec![], data: Some(data.into()) }.into_bytes());
            let block = Block::encode(cid::Version::V1, DAG_PB, bytes).unwrap();
            (*block.cid(), crate::unixfs::decode(block.cid(), block.data()).unwrap())
        };
        // a plain directory is searched in its own block: nothing else is read
        struct NoBlocks;
        impl crate::fetch::Blocks for NoBlocks {
            fn get(&self, cid: &Cid) -> Result<bytes::Bytes, crate::fetch::FetchError> {
                Err(crate::fetch::FetchError::NotFound(*cid))
            }
        }
        let blocks = NoBlocks;
        let mut names: Vec<String> = (0..2000).map(|i| format!("entry-{i:05}")).collect();
        for sorted in [true, false] {
            if !sorted {
                names.reverse();
            }
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let (cid, node) = dir(&refs);
            assert!(matches!(node, Node::Directory { sorted: s, .. } if s == sorted));
            for n in &names {
                assert_eq!(lookup(&blocks, &cid, &node, n).unwrap().map(|l| l.name), Some(n.clone()));
            }
            for absent in ["entry-", "entry-99999", "a", "zzz"] {
                assert!(lookup(&blocks, &cid, &node, absent).unwrap().is_none(), "{absent}");
            }
        }
    }
}
