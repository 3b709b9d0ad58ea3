//! HAMT-sharded directories as go-unixfs (Kubo) builds them.
//!
//! An entry's name is hashed with murmur3 x64 (the first 64 bits of x64_128, seed 0, taken
//! big-endian); each shard level consumes the next `bit_width` bits of that hash, most
//! significant first, to pick a bucket. A shard's links are named by the bucket index in
//! upper-case hex (two digits for fanout 256), followed by the entry name for an entry, or
//! by nothing for a child shard.

/// Multihash code of murmur3-x64-64, the `hashType` of UnixFS HAMT shards.
pub const MURMUR3_X64_64: u64 = 0x22;

/// The 64-bit name hash go-unixfs uses.
pub fn hash_name(name: &[u8]) -> u64 {
    let mut src = name;
    let h = murmur3::murmur3_x64_128(&mut src, 0).expect("reading from a slice cannot fail");
    h as u64 // the low half of the u128 is h1
}

/// `log2(fanout)` if fanout is a power of two we can walk (2..=256... up to 2^8 bits used per
/// level is what every implementation writes; we accept 1..=8 bits).
pub fn bit_width(fanout: u64) -> Option<u32> {
    if fanout.is_power_of_two() && (2..=256).contains(&fanout) { Some(fanout.trailing_zeros()) } else { None }
}

/// The bucket of a name hash at shard `depth`, or None when the hash is used up.
pub fn bucket(hash: u64, depth: usize, bit_width: u32) -> Option<usize> {
    let start = depth.checked_mul(bit_width as usize)?;
    if start + bit_width as usize > 64 {
        return None;
    }
    let shifted = hash << start;
    Some((shifted >> (64 - bit_width)) as usize)
}

/// Width of the hex prefix for a fanout (2 for 256).
pub fn prefix_len(bit_width: u32) -> usize {
    let max = (1u64 << bit_width) - 1;
    format!("{max:X}").len()
}

pub fn prefix(bucket: usize, bit_width: u32) -> String {
    format!("{bucket:0width$X}", width = prefix_len(bit_width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_reference_values() {
        // Reference: murmur3 x64_128 of "hello" with seed 0 is cbd8a7b341bd9b02 5b1e906a48ae1d19
        assert_eq!(hash_name(b"hello"), 0xcbd8a7b341bd9b02);
        assert_eq!(hash_name(b""), 0);
    }

    #[test]
    fn buckets_take_bits_most_significant_first() {
        let h = 0xAB_CD_00_00_00_00_00_01u64;
        assert_eq!(bucket(h, 0, 8), Some(0xAB));
        assert_eq!(bucket(h, 1, 8), Some(0xCD));
        assert_eq!(bucket(h, 7, 8), Some(0x01));
        assert_eq!(bucket(h, 8, 8), None);
        assert_eq!(bucket(h, 0, 4), Some(0xA));
    }

    #[test]
    fn prefixes_are_upper_hex() {
        assert_eq!(prefix(10, 8), "0A");
        assert_eq!(prefix(255, 8), "FF");
        assert_eq!(prefix_len(4), 1);
        assert_eq!(bit_width(256), Some(8));
        assert_eq!(bit_width(1000), None);
    }
}
