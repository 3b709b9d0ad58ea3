//! Resolving `CID/a/b/c` paths through UnixFS directories, HAMT shards and dag-cbor values.

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::{Node, UnixfsError, dir, load};
use crate::fetch::Blocks;

/// What a path names: a whole node, or a value inside a dag-cbor block.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    Node {
        cid: Cid,
        node: Node,
    },
    /// A map, list or scalar inside the dag-cbor block `cid`.
    Value {
        cid: Cid,
        value: Ipld,
    },
}

/// Splits `CID[/path]` (optionally prefixed by `/ipfs/`) into the CID and its path segments.
pub fn parse(s: &str) -> Result<(Cid, Vec<String>), String> {
    let s = s.strip_prefix("/ipfs/").unwrap_or(s);
    let mut parts = s.split('/').filter(|p| !p.is_empty());
    let first = parts.next().ok_or_else(|| "empty path: expected CID[/path]".to_string())?;
    let cid = Cid::try_from(first).map_err(|e| format!("{first:?} is not a CID: {e}"))?;
    Ok((cid, parts.map(str::to_string).collect()))
}

/// Resolves `path` below `root`.
pub fn resolve(blocks: &dyn Blocks, root: &Cid, path: &[String]) -> Result<Resolved, UnixfsError> {
    let mut cur = Resolved::Node { cid: *root, node: load(blocks, root)? };
    for (i, seg) in path.iter().enumerate() {
        let here = || format!("{root}/{}", path[..=i].join("/"));
        cur = match cur {
            Resolved::Node { cid, node: node @ (Node::Directory { .. } | Node::HamtShard(_)) } => {
                let link =
                    dir::lookup(blocks, &cid, &node, seg)?.ok_or_else(|| UnixfsError::NoSuchEntry { path: here() })?;
                Resolved::Node { cid: link.cid, node: load(blocks, &link.cid)? }
            }
            Resolved::Node { cid, node: Node::Cbor(value) } | Resolved::Value { cid, value } => {
                step_cbor(blocks, cid, &value, seg).ok_or_else(|| UnixfsError::NoSuchEntry { path: here() })??
            }
            Resolved::Node { cid, .. } => return Err(UnixfsError::NotADirectory { cid }),
        };
    }
    Ok(cur)
}

fn step_cbor(blocks: &dyn Blocks, cid: Cid, value: &Ipld, seg: &str) -> Option<Result<Resolved, UnixfsError>> {
    let next = match value {
        Ipld::Map(m) => m.get(seg)?,
        Ipld::List(l) => l.get(seg.parse::<usize>().ok()?)?,
        _ => return None,
    };
    Some(match next {
        Ipld::Link(c) => load(blocks, c).map(|node| Resolved::Node { cid: *c, node }),
        v => Ok(Resolved::Value { cid, value: v.clone() }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_ipfs_prefix_and_paths() {
        let (c, p) = parse("/ipfs/QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH/a//b/").unwrap();
        assert_eq!(c.to_string(), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH");
        assert_eq!(p, vec!["a", "b"]);
        assert!(parse("nope").is_err());
        assert!(parse("").is_err());
    }
}
