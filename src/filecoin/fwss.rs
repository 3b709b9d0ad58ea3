//! The signed requests of Filecoin Warm Storage Service (FWSS): what a client sends a
//! provider as `extraData` to create a data set, add pieces to it, or remove some, and what
//! a provider checks before acting on it.
//!
//! Each is an EIP-712 signature (domain `FilecoinWarmStorageService`, version `1`, the
//! chain's id, the FWSS contract as verifying contract) over a typed message, ABI-encoded
//! with the message's fields the contract needs:
//!
//! | request | typed message | extraData (ABI parameters) |
//! |---|---|---|
//! | create a data set | `CreateDataSet(clientDataSetId, payee, metadata[])` | `(address payer, uint256 clientDataSetId, string[] keys, string[] values, bytes signature)` |
//! | add pieces | `AddPieces(clientDataSetId, nonce, Cid[] pieceData, PieceMetadata[])` | `(uint256 nonce, string[][] keys, string[][] values, bytes signature)` |
//! | remove pieces | `SchedulePieceRemovals(clientDataSetId, uint256[] pieceIds)` | `(bytes signature)` |
//!
//! The bytes equal those of `@filoz/synapse-core/typed-data` for the same key and inputs
//! (a test runs it). Encoding and hashing are alloy's (`sol!` structs); signing is
//! [`Wallet`]'s.

use alloy_primitives::{Address, B256, Bytes, U256, address};
use alloy_sol_types::{Eip712Domain, SolStruct, SolValue};

use super::wallet::{Wallet, recover};

mod typed {
    alloy_sol_types::sol! {
        struct MetadataEntry { string key; string value; }
        struct CreateDataSet { uint256 clientDataSetId; address payee; MetadataEntry[] metadata; }
        struct Cid { bytes data; }
        struct PieceMetadata { uint256 pieceIndex; MetadataEntry[] metadata; }
        struct AddPieces { uint256 clientDataSetId; uint256 nonce; Cid[] pieceData; PieceMetadata[] pieceMetadata; }
        struct SchedulePieceRemovals { uint256 clientDataSetId; uint256[] pieceIds; }
    }
}

/// The chain the contracts live on: its id and the FWSS contract's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    pub id: u64,
    pub fwss: Address,
}

impl Chain {
    /// Filecoin mainnet (chain 314).
    pub const MAINNET: Chain = Chain { id: 314, fwss: address!("8408502033C418E1bbC97cE9ac48E5528F371A9f") };
    /// Filecoin calibration, the test network (chain 314159): the default.
    pub const CALIBRATION: Chain = Chain { id: 314_159, fwss: address!("02925630df557F957f70E112bA06e50965417CA0") };

    /// A chain by name (`calibration`, `mainnet`) or as `ID:0xFWSS` (a local chain).
    pub fn parse(text: &str) -> Result<Chain, String> {
        match text.trim() {
            "calibration" | "314159" => Ok(Chain::CALIBRATION),
            "mainnet" | "314" => Ok(Chain::MAINNET),
            t => {
                let bad = || format!("{t:?}: expected calibration, mainnet, or CHAIN_ID:0xFWSS_ADDRESS");
                let (id, fwss) = t.split_once(':').ok_or_else(bad)?;
                Ok(Chain { id: id.parse().map_err(|_| bad())?, fwss: fwss.parse().map_err(|_| bad())? })
            }
        }
    }

    fn domain(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some("FilecoinWarmStorageService".into()),
            Some("1".into()),
            Some(U256::from(self.id)),
            Some(self.fwss),
            None,
        )
    }
}

/// Key-value metadata of a data set or a piece.
pub type Metadata = Vec<(String, String)>;

fn entries(m: &[(String, String)]) -> Vec<typed::MetadataEntry> {
    m.iter().map(|(key, value)| typed::MetadataEntry { key: key.clone(), value: value.clone() }).collect()
}

fn split(m: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    m.iter().cloned().unzip()
}

fn zip(keys: Vec<String>, values: Vec<String>) -> Result<Metadata, FwssError> {
    if keys.len() != values.len() {
        return Err(FwssError::Malformed(format!("{} metadata keys, {} values", keys.len(), values.len())));
    }
    Ok(keys.into_iter().zip(values).collect())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FwssError {
    #[error("extraData is malformed: {0}")]
    Malformed(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("signed by {signer}, not by {expected}")]
    WrongSigner { signer: Address, expected: Address },
}

/// extraData creating a data set with `payee` (the provider's address).
pub fn create_data_set(
    wallet: &Wallet,
    chain: &Chain,
    client_data_set_id: U256,
    payee: Address,
    metadata: &[(String, String)],
) -> Vec<u8> {
    let msg = typed::CreateDataSet { clientDataSetId: client_data_set_id, payee, metadata: entries(metadata) };
    let signature = wallet.sign_hash(&msg.eip712_signing_hash(&chain.domain()));
    let (keys, values) = split(metadata);
    (wallet.address(), client_data_set_id, keys, values, Bytes::from(signature.to_vec())).abi_encode_params()
}

/// A create request as a provider reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateRequest {
    pub payer: Address,
    pub client_data_set_id: U256,
    pub metadata: Metadata,
}

/// Reads and checks a create request's extraData: signed by its payer, for `payee`.
pub fn verify_create(chain: &Chain, payee: Address, extra: &[u8]) -> Result<CreateRequest, FwssError> {
    let (payer, client_data_set_id, keys, values, signature) =
        <(Address, U256, Vec<String>, Vec<String>, Bytes)>::abi_decode_params(extra)
            .map_err(|e| FwssError::Malformed(e.to_string()))?;
    let metadata = zip(keys, values)?;
    let msg = typed::CreateDataSet { clientDataSetId: client_data_set_id, payee, metadata: entries(&metadata) };
    check(&msg.eip712_signing_hash(&chain.domain()), &signature, payer)?;
    Ok(CreateRequest { payer, client_data_set_id, metadata })
}

/// extraData adding `pieces` (piece CID v2 bytes and each piece's metadata) to a data set.
pub fn add_pieces(
    wallet: &Wallet,
    chain: &Chain,
    client_data_set_id: U256,
    nonce: U256,
    pieces: &[(Vec<u8>, Metadata)],
) -> Vec<u8> {
    let signature = wallet.sign_hash(&add_pieces_hash(chain, client_data_set_id, nonce, pieces));
    let (keys, values): (Vec<Vec<String>>, Vec<Vec<String>>) = pieces.iter().map(|(_, m)| split(m)).unzip();
    (nonce, keys, values, Bytes::from(signature.to_vec())).abi_encode_params()
}

fn add_pieces_hash(chain: &Chain, client_data_set_id: U256, nonce: U256, pieces: &[(Vec<u8>, Metadata)]) -> B256 {
    let msg = typed::AddPieces {
        clientDataSetId: client_data_set_id,
        nonce,
        pieceData: pieces.iter().map(|(cid, _)| typed::Cid { data: Bytes::from(cid.clone()) }).collect(),
        pieceMetadata: pieces
            .iter()
            .enumerate()
            .map(|(i, (_, m))| typed::PieceMetadata { pieceIndex: U256::from(i), metadata: entries(m) })
            .collect(),
    };
    msg.eip712_signing_hash(&chain.domain())
}

/// Reads and checks an add request's extraData for `pieces` (CID bytes, in order): signed
/// by `payer`. Returns the nonce and each piece's metadata.
pub fn verify_add_pieces(
    chain: &Chain,
    payer: Address,
    client_data_set_id: U256,
    pieces: &[Vec<u8>],
    extra: &[u8],
) -> Result<(U256, Vec<Metadata>), FwssError> {
    let (nonce, keys, values, signature) =
        <(U256, Vec<Vec<String>>, Vec<Vec<String>>, Bytes)>::abi_decode_params(extra)
            .map_err(|e| FwssError::Malformed(e.to_string()))?;
    if keys.len() != pieces.len() || values.len() != pieces.len() {
        return Err(FwssError::Malformed(format!("metadata for {} pieces, {} pieces sent", keys.len(), pieces.len())));
    }
    let metadata = keys.into_iter().zip(values).map(|(k, v)| zip(k, v)).collect::<Result<Vec<_>, _>>()?;
    let signed: Vec<(Vec<u8>, Metadata)> = pieces.iter().cloned().zip(metadata.iter().cloned()).collect();
    check(&add_pieces_hash(chain, client_data_set_id, nonce, &signed), &signature, payer)?;
    Ok((nonce, metadata))
}

/// extraData scheduling the removal of `piece_ids` from a data set.
pub fn schedule_removals(wallet: &Wallet, chain: &Chain, client_data_set_id: U256, piece_ids: &[u64]) -> Vec<u8> {
    let signature = wallet.sign_hash(&removals_hash(chain, client_data_set_id, piece_ids));
    (Bytes::from(signature.to_vec()),).abi_encode_params()
}

fn removals_hash(chain: &Chain, client_data_set_id: U256, piece_ids: &[u64]) -> B256 {
    let msg = typed::SchedulePieceRemovals {
        clientDataSetId: client_data_set_id,
        pieceIds: piece_ids.iter().map(|i| U256::from(*i)).collect(),
    };
    msg.eip712_signing_hash(&chain.domain())
}

/// Checks a removal request's extraData: signed by `payer`.
pub fn verify_removals(
    chain: &Chain,
    payer: Address,
    client_data_set_id: U256,
    piece_ids: &[u64],
    extra: &[u8],
) -> Result<(), FwssError> {
    let (signature,) = <(Bytes,)>::abi_decode_params(extra).map_err(|e| FwssError::Malformed(e.to_string()))?;
    check(&removals_hash(chain, client_data_set_id, piece_ids), &signature, payer)
}

fn check(hash: &B256, signature: &[u8], expected: Address) -> Result<(), FwssError> {
    match recover(hash, signature) {
        None => Err(FwssError::BadSignature),
        Some(signer) if signer == expected => Ok(()),
        Some(signer) => Err(FwssError::WrongSigner { signer, expected }),
    }
}

/// `0x`-prefixed hex, as the PDP API carries extraData.
pub fn to_hex(bytes: &[u8]) -> String {
    format!("0x{}", super::wallet::encode_hex(bytes))
}

/// Bytes from `0x`-prefixed (or bare) hex.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    super::wallet::decode_hex(text.strip_prefix("0x").unwrap_or(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet(n: u8) -> Wallet {
        Wallet::parse(&format!("0x{}", format!("{n:02x}").repeat(32)), "test").unwrap()
    }

    #[test]
    fn a_create_request_verifies_for_its_payee_only_and_a_forgery_is_refused() {
        let (w, chain, payee) = (wallet(1), Chain::CALIBRATION, Address::repeat_byte(9));
        let meta = vec![("withCDN".to_string(), String::new())];
        let extra = create_data_set(&w, &chain, U256::from(7), payee, &meta);
        let req = verify_create(&chain, payee, &extra).unwrap();
        assert_eq!((req.payer, req.client_data_set_id, req.metadata.clone()), (w.address(), U256::from(7), meta));
        assert!(matches!(verify_create(&chain, Address::repeat_byte(8), &extra), Err(FwssError::WrongSigner { .. })));
        assert!(matches!(verify_create(&Chain::MAINNET, payee, &extra), Err(FwssError::WrongSigner { .. })));
        assert!(matches!(verify_create(&chain, payee, &extra[..40]), Err(FwssError::Malformed(_))));
    }

    #[test]
    fn add_and_remove_requests_verify_against_the_payer_and_the_exact_pieces() {
        let (w, chain) = (wallet(2), Chain::CALIBRATION);
        let pieces = vec![(vec![1, 2, 3], vec![]), (vec![4, 5], vec![("k".to_string(), "v".to_string())])];
        let extra = add_pieces(&w, &chain, U256::from(1), U256::from(99), &pieces);
        let cids: Vec<Vec<u8>> = pieces.iter().map(|(c, _)| c.clone()).collect();
        let (nonce, meta) = verify_add_pieces(&chain, w.address(), U256::from(1), &cids, &extra).unwrap();
        assert_eq!(nonce, U256::from(99));
        assert_eq!(meta[1], pieces[1].1);
        let swapped = vec![cids[1].clone(), cids[0].clone()];
        assert!(verify_add_pieces(&chain, w.address(), U256::from(1), &swapped, &extra).is_err());
        assert!(verify_add_pieces(&chain, wallet(3).address(), U256::from(1), &cids, &extra).is_err());

        let extra = schedule_removals(&w, &chain, U256::from(1), &[4]);
        verify_removals(&chain, w.address(), U256::from(1), &[4], &extra).unwrap();
        assert!(verify_removals(&chain, w.address(), U256::from(1), &[5], &extra).is_err());
    }
}
