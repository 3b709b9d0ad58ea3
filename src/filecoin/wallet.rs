//! The wallet that signs requests to storage providers: one secp256k1 key, kept in
//! `$CIDFS_HOME/filecoin/wallet.key` (0600, made on first use), written as `0x` and 64 hex
//! digits — the form Ethereum tools export, so `cidfs wallet import FILE` takes a key from
//! any of them. Its address (`0x…`, 20 bytes) is who pays for and owns the data sets.
//!
//! Signing is EIP-712 over a 32-byte hash (see [`super::fwss`]); signatures are the usual
//! 65 bytes `r ‖ s ‖ v` with `v` 27 or 28, deterministic (RFC 6979), low `s`.

use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256, Signature};
use k256::ecdsa::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{what}: not a wallet key ({why}); expected 0x and 64 hex digits")]
    Malformed { what: String, why: String },
}

/// Where the wallet key lives in a store directory.
pub fn wallet_path(home: &Path) -> PathBuf {
    home.join("filecoin").join("wallet.key")
}

/// A secp256k1 signing key.
#[derive(Clone)]
pub struct Wallet {
    key: SigningKey,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wallet({})", self.address()) // never the key
    }
}

impl Wallet {
    /// The wallet of the store at `home`, made (from the system's random source) if it has
    /// none.
    pub fn load_or_create(home: &Path) -> Result<Wallet, WalletError> {
        let path = wallet_path(home);
        match std::fs::read_to_string(&path) {
            Ok(text) => Wallet::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let io = |source| WalletError::Io { path: path.clone(), source };
                let wallet = loop {
                    let bytes = super::keys::random_salt().map_err(io)?;
                    if let Ok(key) = SigningKey::from_slice(&bytes) {
                        break Wallet { key };
                    }
                };
                wallet.save(home)?;
                Ok(wallet)
            }
            Err(source) => Err(WalletError::Io { path, source }),
        }
    }

    /// A key written as hex (`0x` optional, surrounding whitespace ignored); `what` names
    /// where it came from in errors.
    pub fn parse(text: &str, what: &str) -> Result<Wallet, WalletError> {
        let bad = |why: &str| WalletError::Malformed { what: what.to_string(), why: why.to_string() };
        let t = text.trim();
        let hex = t.strip_prefix("0x").unwrap_or(t);
        if hex.len() != 64 {
            return Err(bad(&format!("{} hex digits", hex.len())));
        }
        let bytes = decode_hex(hex).ok_or_else(|| bad("not hex"))?;
        let key = SigningKey::from_slice(&bytes).map_err(|_| bad("out of range for secp256k1"))?;
        Ok(Wallet { key })
    }

    /// Writes the key as the store's (0600 in a 0700 directory), atomically.
    pub fn save(&self, home: &Path) -> Result<(), WalletError> {
        let path = wallet_path(home);
        let text = format!("0x{}\n", encode_hex(&self.key.to_bytes()));
        crate::store::write_private(&path, text.as_bytes()).map_err(|source| WalletError::Io { path, source })
    }

    /// The account's address.
    pub fn address(&self) -> Address {
        Address::from_private_key(&self.key)
    }

    /// Signs a 32-byte hash (an EIP-712 signing hash): 65 bytes, `v` 27 or 28.
    pub fn sign_hash(&self, hash: &B256) -> [u8; 65] {
        let (sig, recid) = self.key.sign_prehash_recoverable(hash.as_slice()).expect("a 32-byte hash signs");
        Signature::from_signature_and_parity(sig, recid.is_y_odd()).as_bytes()
    }
}

/// Who signed `hash`, from a 65-byte signature (`None` if it is not a valid one).
pub fn recover(hash: &B256, signature: &[u8]) -> Option<Address> {
    Signature::from_raw(signature).ok()?.recover_address_from_prehash(hash).ok()
}

pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Anvil's first dev account, known everywhere.
    const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    #[test]
    fn a_known_key_has_its_known_address_and_signatures_recover_it() {
        let w = Wallet::parse(DEV_KEY, "test").unwrap();
        assert_eq!(w.address().to_string(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
        let hash = alloy_primitives::keccak256(b"hello");
        let sig = w.sign_hash(&hash);
        assert!(sig[64] == 27 || sig[64] == 28);
        assert_eq!(recover(&hash, &sig), Some(w.address()));
        assert_eq!(sig, w.sign_hash(&hash), "deterministic");
        let mut bad = sig;
        bad[10] ^= 1;
        assert_ne!(recover(&hash, &bad), Some(w.address()));
        assert_eq!(recover(&hash, &sig[..64]), None);
    }

    #[test]
    fn the_wallet_is_made_once_private_and_bad_keys_are_named() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let a = Wallet::load_or_create(home.path()).unwrap();
        let b = Wallet::load_or_create(home.path()).unwrap();
        assert_eq!(a.address(), b.address());
        let mode = std::fs::metadata(wallet_path(home.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(Wallet::parse("0x1234", "k").unwrap_err().to_string().contains("4 hex digits"));
        assert!(Wallet::parse(&"0".repeat(64), "k").unwrap_err().to_string().contains("out of range"));
        assert!(Wallet::parse(&"zz".repeat(32), "k").unwrap_err().to_string().contains("not hex"));
    }
}
