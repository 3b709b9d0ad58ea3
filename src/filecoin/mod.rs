//! The Filecoin side of cidfs: what it takes to keep the drive's data in pieces held by
//! storage providers, and to prove and read them back.
//!
//! - [`commp`], [`sha254`]: piece commitments (Fr32 + SHA254 binary tree), piece CIDs v1
//!   and v2 (FRC-0069), merkle paths of single leaves. Pure.
//! - [`keys`]: the master key and per-piece keys (HKDF + XChaCha20, offsets kept).
//! - [`seal`]: sealed segments become encrypted pieces, in the background.
//! - [`wallet`], [`fwss`]: the signing key, and the EIP-712 requests it signs.
//! - [`pdp`]: the client of a provider's Curio PDP HTTP API.
//! - [`replicate`]: N replicas per piece, audits, repair.
//! - [`provider`]: `cidfs provider serve`, the same API served (the chain simulated),
//!   optionally charging for `/piece/` reads over x402.
//! - [`cold`]: which segments go cold (deleted locally, their pieces the only copy).
//! - [`retrieve`]: the read tier for cold blocks: exact ranges of pieces, coalesced,
//!   verified, paid for through [`ledger`] (caps, records) with [`x402`] (the wire format).

pub mod cold;
pub mod commp;
pub mod fwss;
pub mod keys;
pub mod ledger;
pub mod pdp;
pub mod provider;
pub mod replicate;
pub mod retrieve;
pub mod seal;
pub mod sha254;
pub mod wallet;
pub mod x402;
