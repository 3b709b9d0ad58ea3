//! x402 (HTTP 402 pay-per-request), version 2, as the reference packages (`@x402/*`)
//! speak it: small pure functions for both sides of the wire.
//!
//! ```text
//!  client                         server                          facilitator
//!   GET /piece/… Range  ───────▶   402  PAYMENT-REQUIRED: b64{x402Version:2, resource,
//!                                        accepts:[{scheme:"exact", network, amount,
//!                                        asset, payTo, maxTimeoutSeconds, extra}]}
//!   GET … PAYMENT-SIGNATURE: b64{x402Version:2, payload:{authorization, signature},
//!                                resource, accepted}  ──▶  POST /verify, POST /settle
//!                                 206 + PAYMENT-RESPONSE: b64{success, payer, transaction, network}
//! ```
//!
//! The "exact" EVM scheme pays with an EIP-3009 `TransferWithAuthorization` signed
//! (EIP-712) by the payer's key over the token's domain `{name, version, chainId,
//! verifyingContract: asset}`; whoever holds the signature (the facilitator) submits it.
//! Version 1 put the requirements in a JSON body (`maxAmountRequired`, network names) and
//! the payment in `X-PAYMENT`; [`parse_required`] reads both, [`Offer::header_name`] says
//! which header to answer with.
//!
//! Nothing here decides whether to pay: that is the ledger's (`super::ledger`), which
//! checks its caps before [`sign_exact`] is ever called.

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{Eip712Domain, SolStruct};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::wallet::{Wallet, encode_hex};

alloy_sol_types::sol! {
    /// EIP-3009's signed transfer (what the "exact" EVM scheme signs).
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}

/// One way to pay that a server accepts, as the client needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// 1 or 2: the protocol version of the 402 it came from.
    pub version: u8,
    /// `eip155:<chain id>` (a version 1 network name is kept as given).
    pub network: String,
    pub amount: U256,
    pub asset: Address,
    pub pay_to: Address,
    pub max_timeout_seconds: u64,
    /// The token's EIP-712 name and version (`extra`).
    pub token_name: String,
    pub token_version: String,
    /// The accepts entry as the server wrote it (echoed back as `accepted`).
    pub raw: Value,
    /// The server's `resource` object (version 2) or URL (version 1).
    pub resource: Value,
}

impl Offer {
    /// The request header a payment for this offer goes in.
    pub fn header_name(&self) -> &'static str {
        if self.version == 1 { "X-PAYMENT" } else { "PAYMENT-SIGNATURE" }
    }

    /// The EVM chain id, if the network is `eip155:N`.
    pub fn chain_id(&self) -> Option<u64> {
        self.network.strip_prefix("eip155:")?.parse().ok()
    }
}

/// Reads a 402: version 2's `PAYMENT-REQUIRED` header, else version 1's JSON body. Every
/// "exact" offer that parses; an error says why none could be read.
pub fn parse_required(header: Option<&str>, body: &[u8]) -> Result<Vec<Offer>, String> {
    let doc: Value = match header {
        Some(h) => {
            let raw = B64.decode(h.trim()).map_err(|e| format!("PAYMENT-REQUIRED is not base64: {e}"))?;
            serde_json::from_slice(&raw).map_err(|e| format!("PAYMENT-REQUIRED is not JSON: {e}"))?
        }
        None => serde_json::from_slice(body).map_err(|_| "a 402 with neither PAYMENT-REQUIRED nor a JSON body")?,
    };
    let version = doc["x402Version"].as_u64().unwrap_or(1).min(2) as u8;
    let accepts = doc["accepts"].as_array().ok_or("the 402 lists no accepted payments")?;
    let offers: Vec<Offer> =
        accepts.iter().filter_map(|a| offer(version, a, doc.get("resource").cloned().unwrap_or(Value::Null))).collect();
    if offers.is_empty() {
        return Err(format!("the 402 offers no payment this client can make (exact scheme, EVM token): {doc}"));
    }
    Ok(offers)
}

fn offer(version: u8, a: &Value, resource: Value) -> Option<Offer> {
    if a["scheme"].as_str()? != "exact" {
        return None;
    }
    let amount = a.get("amount").or_else(|| a.get("maxAmountRequired"))?.as_str()?;
    Some(Offer {
        version,
        network: a["network"].as_str()?.to_string(),
        amount: amount.parse().ok()?,
        asset: a["asset"].as_str()?.parse().ok()?,
        pay_to: a["payTo"].as_str()?.parse().ok()?,
        max_timeout_seconds: a["maxTimeoutSeconds"].as_u64().unwrap_or(60).clamp(1, 3600),
        token_name: a["extra"]["name"].as_str()?.to_string(),
        token_version: a["extra"]["version"].as_str()?.to_string(),
        raw: a.clone(),
        resource: match (version, resource) {
            (1, _) => a.get("resource").cloned().unwrap_or(Value::Null),
            (_, r) => r,
        },
    })
}

/// The EIP-712 hash a payer signs for `auth` on `offer`'s token.
pub fn authorization_hash(offer: &Offer, chain_id: u64, auth: &TransferWithAuthorization) -> B256 {
    let domain = Eip712Domain::new(
        Some(offer.token_name.clone().into()),
        Some(offer.token_version.clone().into()),
        Some(U256::from(chain_id)),
        Some(offer.asset),
        None,
    );
    auth.eip712_signing_hash(&domain)
}

/// A signed payment for `offer` (the JSON that goes, base64'd, in
/// [`Offer::header_name`]); valid from a minute ago (clock skew) for the offer's timeout.
pub fn sign_exact(wallet: &Wallet, offer: &Offer, now_secs: u64, nonce: [u8; 32]) -> Result<Value, String> {
    let chain = offer.chain_id().ok_or_else(|| format!("network {} is not an EVM chain (eip155:N)", offer.network))?;
    let auth = TransferWithAuthorization {
        from: wallet.address(),
        to: offer.pay_to,
        value: offer.amount,
        validAfter: U256::from(now_secs.saturating_sub(60)),
        validBefore: U256::from(now_secs + offer.max_timeout_seconds),
        nonce: B256::from(nonce),
    };
    let signature = wallet.sign_hash(&authorization_hash(offer, chain, &auth));
    let authorization = json!({
        "from": auth.from.to_checksum(None),
        "to": auth.to.to_checksum(None),
        "value": auth.value.to_string(),
        "validAfter": auth.validAfter.to_string(),
        "validBefore": auth.validBefore.to_string(),
        "nonce": format!("0x{}", encode_hex(&nonce)),
    });
    let payload = json!({ "authorization": authorization, "signature": format!("0x{}", encode_hex(&signature)) });
    Ok(match offer.version {
        1 => json!({ "x402Version": 1, "scheme": "exact", "network": offer.network, "payload": payload }),
        _ => json!({ "x402Version": 2, "payload": payload, "resource": offer.resource, "accepted": offer.raw }),
    })
}

/// Base64 of a JSON document, as x402 headers carry it.
pub fn encode_header(doc: &Value) -> String {
    B64.encode(doc.to_string())
}

/// A base64 JSON header's document.
pub fn decode_header(header: &str) -> Result<Value, String> {
    let raw = B64.decode(header.trim()).map_err(|e| format!("not base64: {e}"))?;
    serde_json::from_slice(&raw).map_err(|e| format!("not JSON: {e}"))
}

/// What a server says of a settled payment (`PAYMENT-RESPONSE`, or v1's `X-PAYMENT-RESPONSE`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settlement {
    pub success: bool,
    pub transaction: String,
    pub network: String,
    pub payer: String,
}

pub fn parse_settlement(header: &str) -> Result<Settlement, String> {
    let v = decode_header(header)?;
    Ok(Settlement {
        success: v["success"].as_bool().unwrap_or(false),
        transaction: v["transaction"].as_str().unwrap_or("").to_string(),
        network: v["network"].as_str().unwrap_or("").to_string(),
        payer: v["payer"].as_str().unwrap_or("").to_string(),
    })
}

/// The `PAYMENT-REQUIRED` document a server sends for one priced resource.
#[allow(clippy::too_many_arguments)]
pub fn required_document(
    url: &str,
    description: &str,
    network: &str,
    amount: U256,
    asset: Address,
    pay_to: Address,
    token_name: &str,
    token_version: &str,
) -> Value {
    json!({
        "x402Version": 2,
        "error": "Payment required",
        "resource": { "url": url, "description": description, "mimeType": "application/octet-stream" },
        "accepts": [{
            "scheme": "exact",
            "network": network,
            "amount": amount.to_string(),
            "asset": asset.to_checksum(None),
            "payTo": pay_to.to_checksum(None),
            "maxTimeoutSeconds": 300,
            "extra": { "name": token_name, "version": token_version },
        }],
    })
}

/// What a server checks of a payment before it asks the facilitator: that it answers its
/// own offer (same network, asset, payee and amount), recovers to the `from` it claims,
/// and is for the exact amount. The facilitator checks balance, time and nonce on chain.
pub fn check_payment(payment: &Value, offer: &Offer) -> Result<Address, String> {
    let accepted = &payment["accepted"];
    for field in ["network", "asset", "payTo", "amount", "scheme"] {
        if !same(&accepted[field], &offer.raw[field]) {
            return Err(format!("the payment accepts a different {field} than offered"));
        }
    }
    let a = &payment["payload"]["authorization"];
    let field = |k: &str| a[k].as_str().ok_or_else(|| format!("authorization.{k} missing"));
    let auth = TransferWithAuthorization {
        from: field("from")?.parse().map_err(|_| "authorization.from is not an address")?,
        to: field("to")?.parse().map_err(|_| "authorization.to is not an address")?,
        value: field("value")?.parse().map_err(|_| "authorization.value is not a number")?,
        validAfter: field("validAfter")?.parse().map_err(|_| "validAfter is not a number")?,
        validBefore: field("validBefore")?.parse().map_err(|_| "validBefore is not a number")?,
        nonce: field("nonce")?.parse().map_err(|_| "nonce is not 32 bytes")?,
    };
    if auth.to != offer.pay_to || auth.value != offer.amount {
        return Err("the authorization pays someone else or another amount".into());
    }
    let sig = payment["payload"]["signature"].as_str().ok_or("no signature")?;
    let sig = super::wallet::decode_hex(sig.trim_start_matches("0x")).ok_or("the signature is not hex")?;
    let chain = offer.chain_id().ok_or("not an EVM network")?;
    match super::wallet::recover(&authorization_hash(offer, chain, &auth), &sig) {
        Some(who) if who == auth.from => Ok(who),
        _ => Err("the signature is not the payer's".into()),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet() -> Wallet {
        // anvil's first dev key (well known, holds nothing real)
        Wallet::parse("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80", "test").unwrap()
    }

    fn offer_doc() -> Value {
        required_document(
            "http://127.0.0.1/piece/x",
            "bytes 0-99",
            "eip155:31337",
            U256::from(1234u64),
            "0x5FbDB2315678afecb367f032d93F642f64180aa3".parse().unwrap(),
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".parse().unwrap(),
            "Test USD",
            "1",
        )
    }

    #[test]
    fn a_version_2_offer_round_trips_and_its_payment_verifies() {
        let doc = offer_doc();
        let offers = parse_required(Some(&encode_header(&doc)), b"").unwrap();
        assert_eq!(offers.len(), 1);
        let o = &offers[0];
        assert_eq!((o.version, o.chain_id(), o.amount), (2, Some(31337), U256::from(1234u64)));
        assert_eq!(o.header_name(), "PAYMENT-SIGNATURE");
        let w = wallet();
        let payment = sign_exact(&w, o, 1_800_000_000, [7; 32]).unwrap();
        assert_eq!(payment["accepted"], doc["accepts"][0]);
        assert_eq!(payment["payload"]["authorization"]["value"], "1234");
        assert_eq!(check_payment(&payment, o).unwrap(), w.address());
        // a payment for less, or by a forged signer, is refused
        let mut cheaper = payment.clone();
        cheaper["payload"]["authorization"]["value"] = json!("1");
        assert!(check_payment(&cheaper, o).is_err());
        let mut forged = payment.clone();
        forged["payload"]["authorization"]["from"] = json!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
        assert!(check_payment(&forged, o).unwrap_err().contains("not the payer"));
    }

    #[test]
    fn a_version_1_body_is_understood_and_bad_402s_are_named() {
        let body = json!({"x402Version":1,"accepts":[{"scheme":"exact","network":"eip155:31337",
            "maxAmountRequired":"5","asset":"0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "payTo":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8","resource":"http://x/piece/y",
            "extra":{"name":"T","version":"2"}}]});
        let o = &parse_required(None, body.to_string().as_bytes()).unwrap()[0];
        assert_eq!((o.version, o.amount, o.header_name()), (1, U256::from(5u64), "X-PAYMENT"));
        assert_eq!(sign_exact(&wallet(), o, 1, [0; 32]).unwrap()["x402Version"], 1);
        assert!(parse_required(Some("%%%"), b"").unwrap_err().contains("base64"));
        assert!(parse_required(None, b"<html>").is_err());
        let other = json!({"x402Version":2,"accepts":[{"scheme":"upto","network":"eip155:1"}]});
        assert!(parse_required(Some(&encode_header(&other)), b"").unwrap_err().contains("no payment"));
    }

    #[test]
    fn settlements_are_read_from_their_header() {
        let h = encode_header(&json!({"success":true,"transaction":"0xab","network":"eip155:31337","payer":"0x1"}));
        let s = parse_settlement(&h).unwrap();
        assert!(s.success);
        assert_eq!(s.transaction, "0xab");
        assert!(parse_settlement("!").is_err());
    }
}
