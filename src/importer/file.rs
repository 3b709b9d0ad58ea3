//! Files: fixed-size chunking and the balanced layout, streaming.
//!
//! The balanced layout (go-unixfs `balanced.Layout`) fills each internal node with
//! `max_links` children before starting the next, and grows the tree upward: level by level,
//! that is exactly "group every `max_links` links of a level under one parent". We keep one
//! pending link list per level and emit a parent as soon as a level overflows, so a 1 TiB
//! file needs a few KiB of link state.

use bytes::Bytes;
use cid::Version;
use ipld_dagpb::{PbLink, PbNode};

use super::{BlockSink, ImportOptions, LinkInfo};
use crate::block::{Block, DAG_PB, RAW};
use crate::unixfs::Metadata;
use crate::unixfs::pb::{Data, DataType};

pub struct FileImporter<'a> {
    opts: &'a ImportOptions,
    meta: Metadata,
    buf: Vec<u8>,
    /// The first chunk, held back until we know whether it is the whole file (a one-chunk
    /// file with metadata gets the metadata in, or around, its only leaf).
    first: Option<Bytes>,
    levels: Vec<Vec<LinkInfo>>,
}

impl<'a> FileImporter<'a> {
    pub fn new(opts: &'a ImportOptions, meta: Metadata) -> Self {
        FileImporter {
            opts,
            meta,
            buf: Vec::with_capacity(opts.chunk_size),
            first: None,
            levels: vec![vec![]],
        }
    }

    /// Adds file bytes.
    pub fn push<S: BlockSink>(&mut self, mut data: &[u8], sink: &mut S) -> Result<(), S::Error> {
        while !data.is_empty() {
            let take = (self.opts.chunk_size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.opts.chunk_size {
                let chunk = Bytes::from(std::mem::replace(
                    &mut self.buf,
                    Vec::with_capacity(self.opts.chunk_size),
                ));
                self.chunk(chunk, sink)?;
            }
        }
        Ok(())
    }

    fn chunk<S: BlockSink>(&mut self, chunk: Bytes, sink: &mut S) -> Result<(), S::Error> {
        if let Some(first) = self.first.take() {
            let leaf = self.leaf(first, Metadata::default(), sink)?;
            self.push_link(0, leaf, sink)?;
        }
        if self.levels[0].is_empty() && self.levels.len() == 1 {
            self.first = Some(chunk);
            return Ok(());
        }
        let leaf = self.leaf(chunk, Metadata::default(), sink)?;
        self.push_link(0, leaf, sink)
    }

    /// Finishes the file and returns its root.
    pub fn finish<S: BlockSink>(mut self, sink: &mut S) -> Result<LinkInfo, S::Error> {
        if !self.buf.is_empty()
            || (self.first.is_none() && self.levels.len() == 1 && self.levels[0].is_empty())
        {
            let chunk = Bytes::from(std::mem::take(&mut self.buf));
            self.chunk(chunk, sink)?;
        }
        if let Some(only) = self.first.take() {
            // The whole file is one chunk: the leaf is the root.
            if self.meta == Metadata::default() || !self.opts.raw_leaves {
                return self.leaf(only, self.meta, sink);
            }
            let leaf = self.leaf(only, Metadata::default(), sink)?;
            return self.parent(vec![leaf], self.meta, sink);
        }
        let mut level = 0;
        loop {
            let top = level == self.levels.len() - 1;
            if top && self.levels[level].len() == 1 {
                return Ok(self.levels[level][0]);
            }
            let links = std::mem::take(&mut self.levels[level]);
            let meta = if top { self.meta } else { Metadata::default() };
            let parent = self.parent(links, meta, sink)?;
            self.push_link(level + 1, parent, sink)?;
            level += 1;
        }
    }

    fn push_link<S: BlockSink>(
        &mut self,
        level: usize,
        link: LinkInfo,
        sink: &mut S,
    ) -> Result<(), S::Error> {
        if self.levels.len() == level {
            self.levels.push(Vec::new());
        }
        if self.levels[level].len() == self.opts.max_links {
            let full = std::mem::take(&mut self.levels[level]);
            let parent = self.parent(full, Metadata::default(), sink)?;
            self.push_link(level + 1, parent, sink)?;
        }
        self.levels[level].push(link);
        Ok(())
    }

    fn leaf<S: BlockSink>(
        &self,
        chunk: Bytes,
        meta: Metadata,
        sink: &mut S,
    ) -> Result<LinkInfo, S::Error> {
        let filesize = chunk.len() as u64;
        let block = if self.opts.raw_leaves {
            Block::encode(Version::V1, RAW, chunk)
        } else {
            let mut data = Data::new(DataType::File);
            data.filesize = Some(filesize);
            data.data = (!chunk.is_empty()).then_some(chunk);
            data.mode = meta.mode;
            data.mtime = meta.mtime;
            Block::encode(self.opts.cid_version, DAG_PB, dag_pb(data, vec![]))
        }
        .expect("importer options are validated");
        let info = LinkInfo {
            cid: *block.cid(),
            tsize: block.data().len() as u64,
            filesize,
        };
        sink.put(block)?;
        Ok(info)
    }

    fn parent<S: BlockSink>(
        &self,
        children: Vec<LinkInfo>,
        meta: Metadata,
        sink: &mut S,
    ) -> Result<LinkInfo, S::Error> {
        let mut data = Data::new(DataType::File);
        data.filesize = Some(children.iter().map(|c| c.filesize).sum());
        data.blocksizes = children.iter().map(|c| c.filesize).collect();
        data.mode = meta.mode;
        data.mtime = meta.mtime;
        let links = children
            .iter()
            .map(|c| PbLink {
                cid: c.cid,
                name: Some(String::new()),
                size: Some(c.tsize),
            })
            .collect();
        let block = Block::encode(self.opts.cid_version, DAG_PB, dag_pb(data, links))
            .expect("importer options are validated");
        let info = LinkInfo {
            cid: *block.cid(),
            tsize: block.data().len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>(),
            filesize: data_filesize(&children),
        };
        sink.put(block)?;
        Ok(info)
    }
}

fn data_filesize(children: &[LinkInfo]) -> u64 {
    children.iter().map(|c| c.filesize).sum()
}

/// Encodes a dag-pb node holding UnixFS `data`.
pub(crate) fn dag_pb(data: Data, links: Vec<PbLink>) -> Vec<u8> {
    PbNode {
        links,
        data: Some(data.to_bytes().into()),
    }
    .into_bytes()
}

/// Imports a whole in-memory file (convenience for small inputs and tests).
pub fn import_bytes<S: BlockSink>(
    opts: &ImportOptions,
    meta: Metadata,
    bytes: &[u8],
    sink: &mut S,
) -> Result<LinkInfo, S::Error> {
    let mut f = FileImporter::new(opts, meta);
    f.push(bytes, sink)?;
    f.finish(sink)
}

/// Imports a symlink pointing at `target`.
pub fn import_symlink<S: BlockSink>(
    opts: &ImportOptions,
    target: &[u8],
    meta: Metadata,
    sink: &mut S,
) -> Result<LinkInfo, S::Error> {
    let mut data = Data::new(DataType::Symlink);
    data.data = Some(Bytes::copy_from_slice(target));
    data.mode = meta.mode;
    data.mtime = meta.mtime;
    let block = Block::encode(opts.cid_version, DAG_PB, dag_pb(data, vec![]))
        .expect("importer options are validated");
    let info = LinkInfo {
        cid: *block.cid(),
        tsize: block.data().len() as u64,
        filesize: 0,
    };
    sink.put(block)?;
    Ok(info)
}
