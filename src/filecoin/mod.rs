//! The Filecoin side of cidfs: what it takes to keep the drive's data in pieces held by
//! storage providers, and to prove and read them back.
//!
//! - [`commp`]: piece commitments (Fr32 + SHA254 binary tree), piece CIDs v1 and v2
//!   (FRC-0069), merkle paths of single leaves. Pure.
//! - [`keys`]: the user's master key and the per-segment keys (HKDF + XChaCha20) that
//!   encrypt pieces, with offsets kept; the key's recovery form.
//! - [`sha254`]: the tree's node hash, a level at a time (two nodes interleaved on the
//!   x86 SHA extensions).
//!
//! Still to come (see DESIGN.md): pieces from sealed segments (encrypted), the PDP client,
//! the provider server, replication and repair, audits, paid retrieval.

pub mod commp;
pub mod fwss;
pub mod keys;
pub mod pdp;
pub mod provider;
pub mod replicate;
pub mod seal;
pub mod sha254;
pub mod wallet;
