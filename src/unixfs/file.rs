//! Reading a byte range of a UnixFS file by walking only the blocks that cover it.
//!
//! Each file node lists its children with their sizes (`blocksizes`), so the walk descends
//! only into children overlapping the range; a 4 KiB read of a 1 TiB file touches one block
//! per tree level. [`covering_children`] is the pure step, also used to know which leaves
//! come next (prefetch).

use bytes::Bytes;
use cid::Cid;

use super::{DecodeError, FileNode, Node, Nodes, UnixfsError};

/// Deepest file DAG we walk. A balanced tree of 174-link nodes is 8 levels deep at 1 PiB.
pub const MAX_DEPTH: usize = 64;

/// A child of a file node that overlaps a byte range, with the part of it to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildRange {
    pub index: usize,
    pub cid: Cid,
    /// Range to read, relative to the child's first byte.
    pub start: u64,
    pub end: u64,
}

/// The children of `node` that overlap `[start, end)` (offsets relative to the node).
pub fn covering_children(node: &FileNode, start: u64, end: u64) -> Vec<ChildRange> {
    let mut out = Vec::new();
    let mut pos = node.data.len() as u64;
    for (index, child) in node.children.iter().enumerate() {
        let child_end = pos + child.size;
        if pos >= end {
            break;
        }
        if child_end > start && child.size > 0 {
            out.push(ChildRange {
                index,
                cid: child.cid,
                start: start.saturating_sub(pos),
                end: end.min(child_end) - pos,
            });
        }
        pos = child_end;
    }
    out
}

/// Calls `out` with the bytes of `[offset, offset + len)` of the file `node` (named `cid`),
/// in order. Ranges past the end of the file are clipped.
pub fn read_range<N: Nodes + ?Sized>(
    blocks: &N,
    cid: &Cid,
    node: &FileNode,
    offset: u64,
    len: u64,
    out: &mut dyn FnMut(&Bytes) -> Result<(), UnixfsError>,
) -> Result<(), UnixfsError> {
    read_range_ahead(blocks, cid, node, offset, len, 0, out).map(|_| ())
}

/// [`read_range`], also returning the CIDs of up to `ahead` blocks that come right after
/// the range (the next leaves first, then the next nodes above them): what a sequential
/// reader needs next, known without fetching anything more.
pub fn read_range_ahead<N: Nodes + ?Sized>(
    blocks: &N,
    cid: &Cid,
    node: &FileNode,
    offset: u64,
    len: u64,
    ahead: usize,
    out: &mut dyn FnMut(&Bytes) -> Result<(), UnixfsError>,
) -> Result<Vec<Cid>, UnixfsError> {
    let end = offset.saturating_add(len).min(node.size);
    let mut next = Vec::new();
    if offset >= end {
        return Ok(next);
    }
    walk(blocks, cid, node, offset, end, 0, out, &mut Ahead { want: ahead, cids: &mut next })?;
    Ok(next)
}

/// Where the walk notes what follows the range, deepest level first.
struct Ahead<'a> {
    want: usize,
    cids: &'a mut Vec<Cid>,
}

#[allow(clippy::too_many_arguments)]
fn walk<N: Nodes + ?Sized>(
    blocks: &N,
    cid: &Cid,
    node: &FileNode,
    start: u64,
    end: u64,
    depth: usize,
    out: &mut dyn FnMut(&Bytes) -> Result<(), UnixfsError>,
    ahead: &mut Ahead<'_>,
) -> Result<(), UnixfsError> {
    if depth > MAX_DEPTH {
        return Err(UnixfsError::TooDeep { cid: *cid });
    }
    let inline = node.data.len() as u64;
    if start < inline {
        out(&node.data.slice(start as usize..end.min(inline) as usize))?;
    }
    let parts = covering_children(node, start, end);
    let after = parts.last().map_or(node.children.len(), |p| p.index + 1);
    if parts.len() > 1 {
        // the read needs them all: a tier may bring them in one request
        blocks.will_need(&parts.iter().map(|p| p.cid).collect::<Vec<_>>());
    }
    for part in parts {
        let child = blocks.node(&part.cid)?;
        let child = match child.as_ref() {
            Node::File(f) => f,
            other => {
                let err = DecodeError::Protobuf(format!("file child is a {}", other.kind_name()));
                return Err(UnixfsError::Decode { cid: part.cid, source: Box::new(err) });
            }
        };
        let declared = node.children[part.index].size;
        if child.size != declared {
            return Err(UnixfsError::Decode {
                cid: *cid,
                source: Box::new(DecodeError::SizeMismatch { claimed: declared, actual: child.size }),
            });
        }
        walk(blocks, &part.cid, child, part.start, part.end, depth + 1, out, ahead)?;
    }
    // after the children's own next siblings (noted as the recursion returned), ours
    let room = ahead.want.saturating_sub(ahead.cids.len());
    ahead.cids.extend(node.children.iter().skip(after).filter(|c| c.size > 0).take(room).map(|c| c.cid));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unixfs::{FileChild, Metadata};

    fn node(inline: usize, sizes: &[u64]) -> FileNode {
        let cid = Cid::default();
        FileNode {
            data: Bytes::from(vec![0u8; inline]),
            children: sizes.iter().map(|s| FileChild { cid, size: *s, tsize: 0 }).collect(),
            size: inline as u64 + sizes.iter().sum::<u64>(),
            meta: Metadata::default(),
        }
    }

    #[test]
    fn only_overlapping_children_are_walked() {
        let n = node(0, &[10, 10, 10]);
        let r = covering_children(&n, 12, 15);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].index, r[0].start, r[0].end), (1, 2, 5));
        let r = covering_children(&n, 5, 25);
        assert_eq!(
            r.iter().map(|c| (c.index, c.start, c.end)).collect::<Vec<_>>(),
            vec![(0, 5, 10), (1, 0, 10), (2, 0, 5)]
        );
    }

    #[test]
    fn inline_data_shifts_children_and_empty_children_are_skipped() {
        let n = node(4, &[0, 6]);
        let r = covering_children(&n, 0, 10);
        assert_eq!(r.iter().map(|c| (c.index, c.start, c.end)).collect::<Vec<_>>(), vec![(1, 0, 6)]);
        assert!(covering_children(&n, 0, 4).is_empty());
    }
}
