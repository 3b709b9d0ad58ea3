//! The CommP tree's node hash, SHA254 (SHA-256 of the two 32-byte children with the top
//! two bits of the digest's last byte cleared), for a whole tree level at a time.
//!
//! Every node hashes exactly 64 bytes, so each is two SHA-256 compressions: the data,
//! and a padding block that is the same for every node (its message schedule, plus the
//! round constants, is computed once, at compile time). A tree has about four times the
//! compressions of a plain SHA-256 of the same bytes, but its nodes are independent where
//! a stream's blocks are a chain, so a level is hashed many nodes at once:
//!
//! - with AVX-512 ([`wide`]): sixteen nodes, one per 32-bit lane, SHA-256 written out in
//!   vector instructions (messages and digests transposed in registers). Measured on AMD
//!   EPYC (Zen 4, which also has the SHA extensions): CommP at 0.50x SHA-256 on one
//!   thread, against 0.26x with the SHA extensions (`cargo bench --bench commp_vs_sha256`);
//! - with the x86 SHA extensions: four nodes side by side, their rounds interleaved so
//!   the unit works on one while another waits (and for what is left of a level);
//! - otherwise one node at a time with the `sha2` crate.
//!
//! Mixing the two (sixteen lanes and four SHA-extension nodes interleaved) was slower on
//! that CPU: they share its vector pipes.

use sha2::block_api::compress256;

const IV: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
];

/// The padding block of a 64-byte message: 0x80, zeros, the length (512 bits).
const PAD: [u8; 64] = {
    let mut p = [0u8; 64];
    p[0] = 0x80;
    p[62] = 0x02;
    p
};

/// The padding block's message schedule plus the round constants: W[i] + K[i].
const PAD_WK: [u32; 64] = {
    let mut w = [0u32; 64];
    w[0] = 0x8000_0000;
    w[15] = 512;
    let mut i = 16;
    while i < 64 {
        let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
        let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        i += 1;
    }
    let mut wk = [0u32; 64];
    let mut j = 0;
    while j < 64 {
        wk[j] = w[j].wrapping_add(K[j]);
        j += 1;
    }
    wk
};

fn digest(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, w) in state.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
    }
    out[31] &= 0x3f;
    out
}

/// One node: SHA254(left ‖ right).
pub fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(left);
    block[32..].copy_from_slice(right);
    let mut state = IV;
    compress256(&mut state, &[block, PAD]);
    digest(&state)
}

/// Nodes hashed side by side on the SHA extensions (measured on AMD EPYC: CommP at
/// 0.24-0.28x SHA-256 per thread this way, 0.22x hashing nodes one at a time).
#[cfg(target_arch = "x86_64")]
const LANES: usize = 4;

/// Hashes one tree level in place: the first `parents` nodes become SHA254 of the
/// children `nodes[2i]` ‖ `nodes[2i+1]`.
pub fn level(nodes: &mut [[u8; 32]], parents: usize) {
    assert!(nodes.len() >= 2 * parents, "two children per node");
    let pair = |nodes: &[[u8; 32]], i: usize| -> [u8; 64] {
        let mut m = [0u8; 64];
        m[..32].copy_from_slice(&nodes[2 * i]);
        m[32..].copy_from_slice(&nodes[2 * i + 1]);
        m
    };
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    if wide::available() {
        while i + wide::LANES <= parents {
            // SAFETY: the CPU has AVX-512 F and BW (`available`); the 16 messages are
            // `nodes[2i..2i + 32]`, read whole before their parents are written
            let out = unsafe { wide::lanes(&nodes[2 * i..2 * i + 2 * wide::LANES]) };
            nodes[i..i + wide::LANES].copy_from_slice(&out);
            i += wide::LANES;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        while i + LANES <= parents {
            let msgs: [[u8; 64]; LANES] = std::array::from_fn(|j| pair(nodes, i + j));
            // SAFETY: the CPU has the SHA extensions, SSE4.1 and SSSE3 (`available`)
            let out = unsafe { x86::lanes(&msgs) };
            nodes[i..i + LANES].copy_from_slice(&out);
            i += LANES;
        }
    }
    while i < parents {
        let m = pair(nodes, i);
        nodes[i] = node(m[..32].try_into().expect("32 bytes"), m[32..].try_into().expect("32 bytes"));
        i += 1;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{IV, K, PAD_WK, digest};

    /// Whether the CPU has what [`lanes`] needs.
    pub(super) fn available() -> bool {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            is_x86_feature_detected!("sha") && is_x86_feature_detected!("sse4.1") && is_x86_feature_detected!("ssse3")
        })
    }

    /// Two lanes' state, as the SHA instructions hold it.
    struct Lane {
        abef: __m128i,
        cdgh: __m128i,
    }

    #[inline]
    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn initial() -> Lane {
        let dcba = _mm_set_epi32(IV[3] as i32, IV[2] as i32, IV[1] as i32, IV[0] as i32);
        let hgfe = _mm_set_epi32(IV[7] as i32, IV[6] as i32, IV[5] as i32, IV[4] as i32);
        let cdab = _mm_shuffle_epi32(dcba, 0xB1);
        let efgh = _mm_shuffle_epi32(hgfe, 0x1B);
        Lane { abef: _mm_alignr_epi8(cdab, efgh, 8), cdgh: _mm_blend_epi16(efgh, cdab, 0xF0) }
    }

    #[inline]
    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn finish(l: &Lane) -> [u8; 32] {
        let feba = _mm_shuffle_epi32(l.abef, 0x1B);
        let dchg = _mm_shuffle_epi32(l.cdgh, 0xB1);
        let dcba = _mm_blend_epi16(feba, dchg, 0xF0);
        let hgef = _mm_alignr_epi8(dchg, feba, 8);
        let mut state = [0u32; 8];
        // SAFETY: `state` is 32 bytes, two unaligned 16-byte stores
        unsafe {
            _mm_storeu_si128(state.as_mut_ptr().cast(), dcba);
            _mm_storeu_si128(state.as_mut_ptr().add(4).cast(), hgef);
        }
        digest(&state)
    }

    #[inline]
    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn load(block: &[u8; 64]) -> [__m128i; 4] {
        let mask = _mm_set_epi64x(0x0C0D_0E0F_0809_0A0B, 0x0405_0607_0001_0203);
        std::array::from_fn(|i| {
            // SAFETY: 16 bytes at offset 16·i of a 64-byte block
            let w = unsafe { _mm_loadu_si128(block.as_ptr().add(16 * i).cast()) };
            _mm_shuffle_epi8(w, mask)
        })
    }

    /// Four rounds of every lane, with `wk[i]` = W + K of those rounds for lane `i`.
    #[inline]
    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn rounds4<const N: usize>(l: &mut [Lane; N], wk: [__m128i; N]) {
        for i in 0..N {
            l[i].cdgh = _mm_sha256rnds2_epu32(l[i].cdgh, l[i].abef, wk[i]);
        }
        for i in 0..N {
            l[i].abef = _mm_sha256rnds2_epu32(l[i].abef, l[i].cdgh, _mm_shuffle_epi32(wk[i], 0x0E));
        }
    }

    #[inline]
    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn k(r: usize) -> __m128i {
        _mm_set_epi32(K[4 * r + 3] as i32, K[4 * r + 2] as i32, K[4 * r + 1] as i32, K[4 * r] as i32)
    }

    /// The next four words of a message schedule.
    #[inline]
    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn schedule(w: &mut [__m128i; 4], i: usize) -> __m128i {
        let (w0, w1, w2, w3) = (w[i], w[(i + 1) % 4], w[(i + 2) % 4], w[(i + 3) % 4]);
        let t = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
        w[i] = _mm_sha256msg2_epu32(t, w3);
        w[i]
    }

    /// SHA254 of `N` 64-byte messages (nodes' children), side by side: their rounds
    /// interleaved, so the SHA unit works on one while another waits.
    ///
    /// # Safety
    /// The CPU must have the SHA extensions, SSE4.1 and SSSE3 ([`available`]).
    #[target_feature(enable = "sha,sse4.1,ssse3")]
    pub(super) unsafe fn lanes<const N: usize>(msgs: &[[u8; 64]; N]) -> [[u8; 32]; N] {
        let mut l: [Lane; N] = std::array::from_fn(|_| initial());
        let (iv_abef, iv_cdgh) = (l[0].abef, l[0].cdgh);
        // the data blocks
        let mut w: [[__m128i; 4]; N] = std::array::from_fn(|i| load(&msgs[i]));
        // the first 16 words are the message itself, then its schedule
        for (r, kr) in (0..4).map(|r| (r, k(r))) {
            rounds4(&mut l, std::array::from_fn(|i| _mm_add_epi32(w[i][r], kr)));
        }
        for r in 4..16 {
            let next: [__m128i; N] = std::array::from_fn(|i| schedule(&mut w[i], r % 4));
            rounds4(&mut l, std::array::from_fn(|i| _mm_add_epi32(next[i], k(r))));
        }
        for lane in l.iter_mut() {
            lane.abef = _mm_add_epi32(lane.abef, iv_abef);
            lane.cdgh = _mm_add_epi32(lane.cdgh, iv_cdgh);
        }
        // the padding blocks: their W + K is a constant
        let saved: [(__m128i, __m128i); N] = std::array::from_fn(|i| (l[i].abef, l[i].cdgh));
        for r in 0..16 {
            let wk = _mm_set_epi32(
                PAD_WK[4 * r + 3] as i32,
                PAD_WK[4 * r + 2] as i32,
                PAD_WK[4 * r + 1] as i32,
                PAD_WK[4 * r] as i32,
            );
            rounds4(&mut l, [wk; N]);
        }
        for (lane, (abef, cdgh)) in l.iter_mut().zip(saved) {
            lane.abef = _mm_add_epi32(lane.abef, abef);
            lane.cdgh = _mm_add_epi32(lane.cdgh, cdgh);
        }
        std::array::from_fn(|i| finish(&l[i]))
    }
}

/// Sixteen nodes at once in the lanes of AVX-512 registers: SHA-256 written out in
/// vector instructions, one 32-bit lane per node. Where the SHA extensions run one
/// compression's rounds back to back, this runs sixteen compressions' rounds as one, and
/// on a CPU with both it is the faster way to hash many independent 64-byte messages.
#[cfg(target_arch = "x86_64")]
mod wide {
    use std::arch::x86_64::*;

    use super::{IV, K, PAD_WK};

    /// Nodes hashed per call.
    pub(super) const LANES: usize = 16;

    type V = __m512i;

    /// Whether the CPU has what [`lanes`] needs.
    pub(super) fn available() -> bool {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw"))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn xor3(a: V, b: V, c: V) -> V {
        _mm512_ternarylogic_epi32::<0x96>(a, b, c)
    }

    /// Round `R` of a group of eight: the working variables stay in place and their
    /// names move (`a` of round `R` is `s[(8 - R) % 8]`, `b` the next, and so on).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn round<const R: usize>(s: &mut [V; 8], wk: V) {
        let var = |i: usize| (8 + i - R) % 8;
        let (a, b, c, e, f, g) = (s[var(0)], s[var(1)], s[var(2)], s[var(4)], s[var(5)], s[var(6)]);
        let big_sigma1 = xor3(_mm512_ror_epi32::<6>(e), _mm512_ror_epi32::<11>(e), _mm512_ror_epi32::<25>(e));
        let choose = _mm512_ternarylogic_epi32::<0xCA>(e, f, g);
        let t1 = _mm512_add_epi32(_mm512_add_epi32(s[var(7)], big_sigma1), _mm512_add_epi32(choose, wk));
        let big_sigma0 = xor3(_mm512_ror_epi32::<2>(a), _mm512_ror_epi32::<13>(a), _mm512_ror_epi32::<22>(a));
        let majority = _mm512_ternarylogic_epi32::<0xE8>(a, b, c);
        s[var(3)] = _mm512_add_epi32(s[var(3)], t1);
        s[var(7)] = _mm512_add_epi32(t1, _mm512_add_epi32(big_sigma0, majority));
    }

    /// Eight rounds; the working variables come back to their own names after eight.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn rounds8(s: &mut [V; 8], wk: [V; 8]) {
        round::<0>(s, wk[0]);
        round::<1>(s, wk[1]);
        round::<2>(s, wk[2]);
        round::<3>(s, wk[3]);
        round::<4>(s, wk[4]);
        round::<5>(s, wk[5]);
        round::<6>(s, wk[6]);
        round::<7>(s, wk[7]);
    }

    /// Word `t` (≥ 16) of the message schedule, in a ring of the last 16.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn schedule(w: &mut [V; 16], t: usize) -> V {
        let (w15, w7, w2) = (w[(t + 1) & 15], w[(t + 9) & 15], w[(t + 14) & 15]);
        let sigma0 = xor3(_mm512_ror_epi32::<7>(w15), _mm512_ror_epi32::<18>(w15), _mm512_srli_epi32::<3>(w15));
        let sigma1 = xor3(_mm512_ror_epi32::<17>(w2), _mm512_ror_epi32::<19>(w2), _mm512_srli_epi32::<10>(w2));
        let j = t & 15;
        w[j] = _mm512_add_epi32(_mm512_add_epi32(w[j], sigma0), _mm512_add_epi32(w7, sigma1));
        w[j]
    }

    /// W + K of rounds 8·R .. 8·R + 8 (R < 2), the message's own words.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn given<const R: usize>(w: &[V; 16]) -> [V; 8] {
        std::array::from_fn(|i| _mm512_add_epi32(w[8 * R + i], _mm512_set1_epi32(K[8 * R + i] as i32)))
    }

    /// W + K of rounds 8·R .. 8·R + 8 (R ≥ 2), scheduled.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn scheduled<const R: usize>(w: &mut [V; 16]) -> [V; 8] {
        std::array::from_fn(|i| _mm512_add_epi32(schedule(w, 8 * R + i), _mm512_set1_epi32(K[8 * R + i] as i32)))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn add(s: &mut [V; 8], other: &[V; 8]) {
        for (x, y) in s.iter_mut().zip(other) {
            *x = _mm512_add_epi32(*x, *y);
        }
    }

    /// SHA254 of sixteen 64-byte messages laid end to end in `msgs`.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and BW ([`available`]).
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn lanes(msgs: &[[u8; 32]]) -> [[u8; 32]; LANES] {
        assert_eq!(msgs.len(), 2 * LANES, "two children per node");
        // big-endian words, byte-swapped within each 32-bit lane
        let swap = _mm512_broadcast_i32x4(_mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3));
        let rows: [V; 16] = std::array::from_fn(|l| {
            // SAFETY: message `l` is the 64 bytes at 64·l of `msgs` (checked above)
            unsafe { _mm512_loadu_si512(msgs.as_ptr().add(2 * l).cast()) }
        });
        // word j of every message in register j
        let mut w = transpose(rows).map(|column| _mm512_shuffle_epi8(column, swap));
        let iv: [V; 8] = std::array::from_fn(|i| _mm512_set1_epi32(IV[i] as i32));
        let mut s = iv;
        // written out, so that every index into the schedule is a constant
        rounds8(&mut s, given::<0>(&w));
        rounds8(&mut s, given::<1>(&w));
        rounds8(&mut s, scheduled::<2>(&mut w));
        rounds8(&mut s, scheduled::<3>(&mut w));
        rounds8(&mut s, scheduled::<4>(&mut w));
        rounds8(&mut s, scheduled::<5>(&mut w));
        rounds8(&mut s, scheduled::<6>(&mut w));
        rounds8(&mut s, scheduled::<7>(&mut w));
        add(&mut s, &iv);
        // the padding block: its W + K is a constant
        let mid = s;
        for r in 0..8 {
            rounds8(&mut s, std::array::from_fn(|i| _mm512_set1_epi32(PAD_WK[8 * r + i] as i32)));
        }
        add(&mut s, &mid);
        // the top two bits of the digest's last byte cleared: the low byte of word 7
        s[7] = _mm512_and_si512(s[7], _mm512_set1_epi32(0xFFFF_FF3Fu32 as i32));
        let mut out = [[0u8; 32]; LANES];
        for (l, pair) in digests(s.map(|v| _mm512_shuffle_epi8(v, swap))).into_iter().enumerate() {
            // SAFETY: two 32-byte stores into the 32-byte digests `l` and `l + 8`
            unsafe {
                _mm256_storeu_si256(out[l].as_mut_ptr().cast(), _mm512_castsi512_si256(pair));
                _mm256_storeu_si256(out[l + 8].as_mut_ptr().cast(), _mm512_extracti64x4_epi64::<1>(pair));
            }
        }
        out
    }

    /// Within each group of four rows, word `4k + m` of the four (`m` < 4) gathered in
    /// 128-bit lane `k` of row `4·group + m`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose4(rows: [V; 4]) -> [V; 4] {
        let [a, b, c, d] = rows;
        let (ab_lo, ab_hi) = (_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
        let (cd_lo, cd_hi) = (_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
        [
            _mm512_unpacklo_epi64(ab_lo, cd_lo),
            _mm512_unpackhi_epi64(ab_lo, cd_lo),
            _mm512_unpacklo_epi64(ab_hi, cd_hi),
            _mm512_unpackhi_epi64(ab_hi, cd_hi),
        ]
    }

    /// A 16×16 matrix of words transposed: row `l`, word `j` becomes row `j`, word `l`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose(rows: [V; 16]) -> [V; 16] {
        let mut u = rows;
        for group in u.chunks_exact_mut(4) {
            let t = transpose4([group[0], group[1], group[2], group[3]]);
            group.copy_from_slice(&t);
        }
        // u[4g + m], lane k: word 4k + m of rows 4g..4g+3; gather the four groups' lanes
        let mut columns = u;
        for m in 0..4 {
            let even01 = _mm512_shuffle_i32x4::<0x88>(u[m], u[4 + m]);
            let even23 = _mm512_shuffle_i32x4::<0x88>(u[8 + m], u[12 + m]);
            let odd01 = _mm512_shuffle_i32x4::<0xDD>(u[m], u[4 + m]);
            let odd23 = _mm512_shuffle_i32x4::<0xDD>(u[8 + m], u[12 + m]);
            columns[m] = _mm512_shuffle_i32x4::<0x88>(even01, even23);
            columns[8 + m] = _mm512_shuffle_i32x4::<0xDD>(even01, even23);
            columns[4 + m] = _mm512_shuffle_i32x4::<0x88>(odd01, odd23);
            columns[12 + m] = _mm512_shuffle_i32x4::<0xDD>(odd01, odd23);
        }
        columns
    }

    /// The eight state words of 16 lanes, regrouped by lane: register `l` holds lane
    /// `l`'s eight words in its low 256 bits and lane `l + 8`'s in its high 256.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn digests(state: [V; 8]) -> [V; 8] {
        let [s0, s1, s2, s3, s4, s5, s6, s7] = state;
        let u = [transpose4([s0, s1, s2, s3]), transpose4([s4, s5, s6, s7])];
        // u[g][m], lane k: word 4g..4g+3 of lane 4k + m
        let mut out = [_mm512_setzero_si512(); 8];
        for m in 0..4 {
            // [u0.L0, u0.L2, u1.L0, u1.L2] then reordered to [u0.L0, u1.L0, u0.L2, u1.L2]
            let even = _mm512_shuffle_i32x4::<0x88>(u[0][m], u[1][m]);
            let odd = _mm512_shuffle_i32x4::<0xDD>(u[0][m], u[1][m]);
            out[m] = _mm512_shuffle_i32x4::<0xD8>(even, even);
            out[4 + m] = _mm512_shuffle_i32x4::<0xD8>(odd, odd);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn reference(data: &[u8]) -> [u8; 32] {
        let mut d: [u8; 32] = sha2::Sha256::digest(data).into();
        d[31] &= 0x3f;
        d
    }

    #[test]
    fn a_level_equals_sha256_of_each_pair_truncated() {
        for parents in [1usize, 2, 3, 8, 23, 33] {
            let children: Vec<[u8; 32]> =
                (0..2 * parents).map(|n| std::array::from_fn(|i| ((n * 32 + i) * 31 % 251) as u8)).collect();
            let mut nodes = children.clone();
            level(&mut nodes, parents);
            for i in 0..parents {
                assert_eq!(nodes[i], reference(&[children[2 * i], children[2 * i + 1]].concat()), "{i} of {parents}");
            }
        }
    }

    #[test]
    fn one_node_equals_the_reference() {
        assert_eq!(node(&[7; 32], &[9; 32]), reference(&[[7u8; 32], [9u8; 32]].concat()));
    }
}
