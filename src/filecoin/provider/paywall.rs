//! x402 in front of `/piece/` GETs (`cidfs provider serve --price-per-gib …`).
//!
//! An unpaid GET is answered `402` with a version 2 `PAYMENT-REQUIRED` (and the same
//! document as a JSON body, for version 1 clients) priced by the bytes the request asks
//! for: `ceil(bytes × price-per-GiB / 2^30)`, at least 1. A request carrying
//! `PAYMENT-SIGNATURE` (or version 1's `X-PAYMENT`) is checked here first — it must
//! answer this very offer and be signed by the payer it names — then verified and settled
//! through the facilitator's `POST /verify` and `POST /settle`; only a settled payment
//! is served, with `PAYMENT-RESPONSE`. HEAD stays free (it is how clients find pieces).

use std::time::Duration;

use alloy_primitives::{Address, U256};
use serde_json::{Value, json};

use super::http::Reply;
use crate::filecoin::x402;

/// What `/piece/` reads cost, and who settles them.
#[derive(Clone, Debug)]
pub struct Pricing {
    /// Atomic units of `asset` per GiB read.
    pub per_gib: u128,
    pub asset: Address,
    /// The token's EIP-712 name and version (what payers sign over).
    pub token_name: String,
    pub token_version: String,
    /// `eip155:N`.
    pub network: String,
    pub pay_to: Address,
    /// The facilitator's base URL (`/verify` and `/settle` under it).
    pub facilitator: String,
}

impl Pricing {
    /// The price of `bytes` bytes.
    pub fn price(&self, bytes: u64) -> U256 {
        let atomic = (U256::from(bytes) * U256::from(self.per_gib)).div_ceil(U256::from(1u64 << 30));
        atomic.max(U256::from(1u64))
    }

    fn document(&self, url: &str, start: u64, end: u64) -> Value {
        x402::required_document(
            url,
            &format!("bytes {start}-{} of a piece", end.saturating_sub(1)),
            &self.network,
            self.price(end - start),
            self.asset,
            self.pay_to,
            &self.token_name,
            &self.token_version,
        )
    }
}

/// The answer to a GET of `[start, end)` at `url`: `Ok(Some(header))` — paid and settled,
/// serve with this `PAYMENT-RESPONSE`; `Err(reply)` — a 402 (or the facilitator's
/// refusal) to send instead.
pub fn charge(pricing: &Pricing, url: &str, payment: Option<&str>, start: u64, end: u64) -> Result<String, Reply> {
    let doc = pricing.document(url, start, end);
    let required = || Reply::json(402, &doc).header("PAYMENT-REQUIRED", x402::encode_header(&doc));
    let Some(payment) = payment else { return Err(required()) };
    let offer = x402::parse_required(Some(&x402::encode_header(&doc)), b"")
        .ok()
        .and_then(|mut o| o.pop())
        .ok_or_else(|| Reply::error(500, "cannot read our own offer"))?;
    let mut payment = x402::decode_header(payment).map_err(|e| Reply::error(400, format!("payment header: {e}")))?;
    if payment["x402Version"].as_u64() == Some(1) {
        // version 1 names no `accepted` offer: it pays the one this request was priced at
        payment["accepted"] = offer.raw.clone();
        payment["resource"] = doc["resource"].clone();
    }
    if let Err(why) = x402::check_payment(&payment, &offer) {
        log::info!("paywall: refusing a payment for {url}: {why}");
        return Err(required());
    }
    let facilitator = Facilitator(&pricing.facilitator);
    let body = json!({ "x402Version": 2, "paymentPayload": payment, "paymentRequirements": offer.raw });
    let verified = facilitator.post("verify", &body)?;
    if verified["isValid"].as_bool() != Some(true) {
        let why = verified["invalidReason"].as_str().unwrap_or("no reason given").to_string();
        log::info!("paywall: the facilitator says the payment for {url} is invalid: {why}");
        return Err(required());
    }
    let settled = facilitator.post("settle", &body)?;
    if settled["success"].as_bool() != Some(true) {
        let why = settled["errorReason"].as_str().unwrap_or("no reason given");
        return Err(Reply::error(402, format!("settlement failed: {why}")));
    }
    let response = json!({
        "success": true,
        "payer": settled["payer"],
        "transaction": settled["transaction"],
        "network": settled["network"],
    });
    Ok(x402::encode_header(&response))
}

struct Facilitator<'a>(&'a str);

impl Facilitator<'_> {
    fn post(&self, route: &str, body: &Value) -> Result<Value, Reply> {
        let url = format!("{}/{route}", self.0.trim_end_matches('/'));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        let fail = |why: String| {
            log::warn!("paywall: facilitator {url}: {why}");
            Reply::error(502, format!("the facilitator failed: {why}"))
        };
        let mut r = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .map_err(|e| fail(e.to_string()))?;
        let text = r.body_mut().with_config().limit(1 << 20).read_to_string().map_err(|e| fail(e.to_string()))?;
        serde_json::from_str(&text).map_err(|_| fail(format!("HTTP {}: {text}", r.status())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pricing() -> Pricing {
        Pricing {
            per_gib: 1 << 30,
            asset: Address::repeat_byte(1),
            token_name: "T".into(),
            token_version: "1".into(),
            network: "eip155:31337".into(),
            pay_to: Address::repeat_byte(2),
            facilitator: "http://127.0.0.1:9".into(),
        }
    }

    #[test]
    fn prices_follow_the_bytes_asked_for_and_never_round_to_zero() {
        let p = pricing();
        assert_eq!(p.price(1000), U256::from(1000u64), "one unit a byte at 2^30 per GiB");
        let cheap = Pricing { per_gib: 10, ..pricing() };
        assert_eq!(cheap.price(1), U256::from(1u64));
        assert_eq!(cheap.price(1 << 30), U256::from(10u64));
        assert_eq!(cheap.price((1 << 29) + 1), U256::from(6u64), "rounded up");
    }

    #[test]
    fn an_unpaid_or_mispaid_read_gets_a_402_with_the_offer() {
        let p = pricing();
        let reply = charge(&p, "http://h/piece/x", None, 0, 100).unwrap_err();
        assert_eq!(reply.status, 402);
        let header = reply.headers.iter().find(|(k, _)| k == "PAYMENT-REQUIRED").unwrap();
        let offers = x402::parse_required(Some(&header.1), b"").unwrap();
        assert_eq!(offers[0].amount, U256::from(100u64));
        // a payment for another range (another amount) is refused before any facilitator
        let w = crate::filecoin::wallet::Wallet::parse(&format!("0x{}", "11".repeat(32)), "t").unwrap();
        let other = charge(&p, "http://h/piece/x", None, 0, 50).unwrap_err();
        let h = other.headers.iter().find(|(k, _)| k == "PAYMENT-REQUIRED").unwrap();
        let cheaper = x402::sign_exact(&w, &x402::parse_required(Some(&h.1), b"").unwrap()[0], 1, [1; 32]).unwrap();
        let reply = charge(&p, "http://h/piece/x", Some(&x402::encode_header(&cheaper)), 0, 100).unwrap_err();
        assert_eq!(reply.status, 402);
    }
}
