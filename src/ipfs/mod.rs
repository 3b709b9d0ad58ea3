//! The IPFS tier: an embedded libp2p node that fetches blocks the store does not hold from
//! peers, and serves the store's blocks to them.
//!
//! - [`bitswap`] is the pure wire codec (protobuf, CID prefixes, verification).
//! - [`node`] runs libp2p (TCP, noise, yamux, identify, ping, Kademlia in client mode,
//!   bitswap over our own stream behaviour, [`streams`]) on its own small tokio runtime, so FUSE threads never
//!   run async code: they call [`node::Node::get`], which waits on a channel with a
//!   deadline.
//!
//! Fetching is one want per CID however many readers ask (they share the answer), sent to
//! every connected peer as want-block with send-dont-have; the first verified block wins
//! and the others are cancelled. A peer that sends a block nobody asked for — which is
//! what bytes that do not match the wanted CID look like once re-hashed — is disconnected
//! and not asked again this session. When every connected peer has said don't-have, the
//! read fails at once rather than at the deadline.
//!
//! - [`gateway`] asks trustless HTTP gateways (`GET /ipfs/{cid}?format=raw`) for wants the
//!   peers do not answer within a head start; their blocks are verified the same way, and
//!   a gateway that lies is not asked again.

pub mod bitswap;
pub mod gateway;
pub mod limits;
pub mod node;
pub mod streams;

pub use node::{BlockSource, NetError, Node, NodeConfig, Serve};
