//! The keys that keep pieces private: what leaves the machine is encrypted with a key only
//! the user holds.
//!
//! One **master key** (32 random bytes) lives in `$CIDFS_HOME/filecoin/master.key` (0600,
//! made on first use). Each piece gets its own key and nonce, derived from the master key
//! with HKDF-SHA256 and 32 random bytes drawn when the piece is made (its *salt*, kept in
//! the store's piece record), so no two pieces share a keystream — not even pieces of two
//! stores that share a master key (a store rebuilt after `cidfs key import`).
//! The cipher is XChaCha20, a stream cipher: byte `i` of a piece is byte `i` of its
//! segment XORed with keystream byte `i`, so a block's offset in the piece is its offset
//! in the segment and a ranged read decrypts just that range ([`PieceKey::apply`]).
//! Integrity is not the cipher's job: every block read back is checked against its CID.
//!
//! Losing the master key loses the cold copies: [`MasterKey::export`] gives a recovery
//! form to keep somewhere else, [`MasterKey::import`] takes it back.

use std::path::{Path, PathBuf};

use chacha20::XChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

/// Where the master key lives in a store directory.
pub fn master_key_path(home: &Path) -> PathBuf {
    home.join("filecoin").join("master.key")
}

/// The prefix of the recovery form.
const EXPORT_PREFIX: &str = "cidfs-master-key-v1:";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a cidfs master key ({why})")]
    Malformed { path: PathBuf, why: String },
    #[error("not a cidfs master key recovery form ({0})")]
    BadExport(String),
}

/// The user's master key.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)") // never printed by accident
    }
}

impl MasterKey {
    /// The store's master key, made (from the system's random source) if it has none.
    pub fn load_or_create(home: &Path) -> Result<MasterKey, KeyError> {
        let path = master_key_path(home);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| KeyError::Malformed {
                    path: path.clone(),
                    why: format!("{} bytes, not 32", b.len()),
                })?;
                Ok(MasterKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                let io = |source| KeyError::Io { path: path.clone(), source };
                std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").map_err(io)?, &mut key)
                    .map_err(io)?;
                let key = MasterKey(key);
                key.save(home)?;
                Ok(key)
            }
            Err(source) => Err(KeyError::Io { path, source }),
        }
    }

    /// Writes the key as the store's (0600, in a 0700 directory), atomically.
    pub fn save(&self, home: &Path) -> Result<(), KeyError> {
        let path = master_key_path(home);
        crate::store::write_private(&path, &self.0).map_err(|source| KeyError::Io { path, source })
    }

    /// The recovery form: a prefix, the key in hex (groups of 8), and a checksum.
    pub fn export(&self) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        let groups: Vec<&str> = (0..hex.len()).step_by(8).map(|i| &hex[i..i + 8]).collect();
        format!("{EXPORT_PREFIX}{}-{}", groups.join("-"), checksum(&self.0))
    }

    /// Reads a recovery form back (whitespace and case do not matter).
    pub fn import(text: &str) -> Result<MasterKey, KeyError> {
        let text: String = text.split_whitespace().collect::<String>().to_ascii_lowercase();
        let body = text.strip_prefix(EXPORT_PREFIX).ok_or_else(|| KeyError::BadExport("no prefix".into()))?;
        let hex: String = body.chars().filter(|c| *c != '-').collect();
        if hex.len() != 64 + 8 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(KeyError::BadExport("expected 72 hex digits".into()));
        }
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex digits");
        }
        if hex[64..] != checksum(&key) {
            return Err(KeyError::BadExport("the checksum does not match: a digit is wrong".into()));
        }
        Ok(MasterKey(key))
    }

    /// The key and nonce of the piece made with `salt`.
    pub fn piece_key(&self, salt: &[u8; 32]) -> PieceKey {
        let hk = Hkdf::<Sha256>::new(Some(b"cidfs pieces"), &self.0);
        let mut okm = [0u8; 56];
        let mut info = b"piece v1 ".to_vec();
        info.extend_from_slice(salt);
        hk.expand(&info, &mut okm).expect("56 bytes is a valid HKDF length");
        let mut key = [0u8; 32];
        let mut nonce = [0u8; 24];
        key.copy_from_slice(&okm[..32]);
        nonce.copy_from_slice(&okm[32..]);
        PieceKey { key, nonce }
    }
}

/// 4 bytes of SHA-256 of the key, in hex: catches a mistyped digit.
fn checksum(key: &[u8; 32]) -> String {
    Sha256::digest(key)[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from the system's random source: a new piece's salt.
pub fn random_salt() -> std::io::Result<[u8; 32]> {
    let mut salt = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut salt)?;
    Ok(salt)
}

/// One piece's key and nonce.
pub struct PieceKey {
    key: [u8; 32],
    nonce: [u8; 24],
}

impl PieceKey {
    /// Encrypts or decrypts (the same operation) `buf`, which sits at byte `offset` of the
    /// piece (the same offset in its segment).
    pub fn apply(&self, offset: u64, buf: &mut [u8]) {
        let mut cipher = XChaCha20::new(&self.key.into(), &self.nonce.into());
        cipher.seek(offset);
        cipher.apply_keystream(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_decrypts_on_its_own_at_its_offset() {
        let key = MasterKey([7; 32]).piece_key(&[3; 32]);
        let plain: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut piece = plain.clone();
        key.apply(0, &mut piece);
        assert_ne!(piece, plain);
        for (start, end) in [(0, 10), (63, 65), (4097, 9999)] {
            let mut range = piece[start..end].to_vec();
            key.apply(start as u64, &mut range);
            assert_eq!(range, plain[start..end], "bytes {start}..{end}");
        }
    }

    #[test]
    fn pieces_and_masters_never_share_a_keystream() {
        let stream = |k: &PieceKey| {
            let mut b = vec![0u8; 64];
            k.apply(0, &mut b);
            b
        };
        let m = MasterKey([1; 32]);
        assert_ne!(stream(&m.piece_key(&[1; 32])), stream(&m.piece_key(&[2; 32])));
        assert_ne!(stream(&m.piece_key(&[1; 32])), stream(&MasterKey([2; 32]).piece_key(&[1; 32])));
        assert_eq!(stream(&m.piece_key(&[1; 32])), stream(&m.piece_key(&[1; 32])), "derived, not random");
    }

    #[test]
    fn the_recovery_form_round_trips_and_a_wrong_digit_is_caught() {
        let key = MasterKey(std::array::from_fn(|i| (i * 9) as u8));
        let text = key.export();
        assert!(text.starts_with(EXPORT_PREFIX));
        assert_eq!(MasterKey::import(&text).unwrap(), key);
        assert_eq!(MasterKey::import(&format!("  {}\n", text.to_uppercase())).unwrap(), key, "case and spaces");
        let at = EXPORT_PREFIX.len() + 3;
        let mut wrong = text.clone();
        wrong.replace_range(at..at + 1, if &text[at..at + 1] == "0" { "1" } else { "0" });
        assert!(MasterKey::import(&wrong).unwrap_err().to_string().contains("checksum"));
        assert!(MasterKey::import("hello").is_err());
    }

    #[test]
    fn the_key_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let a = MasterKey::load_or_create(home.path()).unwrap();
        let b = MasterKey::load_or_create(home.path()).unwrap();
        assert_eq!(a, b);
        let mode = std::fs::metadata(master_key_path(home.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(master_key_path(home.path()), b"short").unwrap();
        assert!(MasterKey::load_or_create(home.path()).unwrap_err().to_string().contains("5 bytes"));
    }
}
