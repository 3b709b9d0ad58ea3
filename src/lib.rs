//! cidfs: a FUSE filesystem for content-addressed data.
//!
//! The layers, top to bottom (see DESIGN.md): `unixfs` and `importer` (pure codecs),
//! `fetch` (one `Blocks` interface with tiers behind it), `store` (redb index over CARv1
//! segment files), `ipfs` (the libp2p node behind the network tier). `car` reads and
//! writes CAR files; `commands` implements the CLI; `context` keeps error messages from
//! naming one thing twice.

pub mod block;
pub mod car;
pub mod commands;
pub mod config;
pub mod context;
pub mod fetch;
pub mod fuse;
pub mod importer;
pub mod ipfs;
pub mod store;
pub mod unixfs;
pub mod vfs;
