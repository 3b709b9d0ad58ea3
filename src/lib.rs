//! cidfs: a FUSE filesystem for content-addressed data.
//!
//! The layers, top to bottom (see DESIGN.md): `fuse` (a thin adapter), `vfs` (the
//! mount's semantics; `vfs::drive` the writable drive), `unixfs` and `importer` (pure
//! codecs), `fetch` (one `Blocks` interface with an ordered list of tiers behind it),
//! `store` (redb index over CARv1 segment files), `ipfs` (the libp2p node and the gateway
//! client behind the network tiers), `filecoin` (pieces, their replicas at storage
//! providers, and a provider of our own). `car` reads and writes CAR files; `commands` is the
//! CLI, configured by `config`; `context` keeps error messages from naming one thing twice.

pub mod block;
pub mod car;
pub mod commands;
pub mod config;
pub mod context;
pub mod fetch;
pub mod filecoin;
pub mod fuse;
pub mod importer;
pub mod ipfs;
pub mod store;
pub mod unixfs;
pub mod vfs;
