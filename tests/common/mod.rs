//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The published vectors: `$CIDFS_VECTORS`, else `../shared/vectors` beside the checkout.
pub fn vectors_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CIDFS_VECTORS") {
        return PathBuf::from(d);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    assert!(
        dir.is_dir(),
        "test vectors not found at {} (set CIDFS_VECTORS)",
        dir.display()
    );
    dir
}

/// Rows of a vectors file, comments and blank lines skipped, split on `sep`.
pub fn rows(name: &str, sep: char) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(vectors_dir().join(name)).expect("read vectors");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(sep).map(|s| s.trim().to_string()).collect())
        .collect()
}

/// The generated inputs of unixfs.tsv.
pub fn p251() -> Vec<u8> {
    (0..262_145u32).map(|i| (i % 251) as u8).collect()
}

pub fn p7() -> Vec<u8> {
    (0..10_485_760u32)
        .map(|i| (i.wrapping_mul(7).wrapping_add(3) % 256) as u8)
        .collect()
}

/// Deterministic non-repeating bytes (xorshift), for files whose chunks must all differ.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
