//! A client of Curio's PDP HTTP API: what cidfs says to a storage provider.
//!
//! One [`PdpClient`] per provider URL. Every call is one HTTP exchange (the `wait_*` calls
//! poll), bounded in time, and its error says which provider, which route and what came
//! back ([`PdpError`]), so the scheduler can tell a provider that is down
//! ([`PdpError::Unreachable`]) from one that refused ([`PdpError::Status`]) or one that
//! answered nonsense ([`PdpError::Malformed`]). Requests that change data sets carry
//! extraData signed by the [`Wallet`] (see [`super::fwss`]); nonces come from the system's
//! random source and are never reused.
//!
//! | call | route |
//! |---|---|
//! | [`ping`](PdpClient::ping) | `GET /pdp/ping` |
//! | [`upload`](PdpClient::upload) | `POST /pdp/piece/uploads`, `PUT` the bytes (streamed), `POST` to finalize |
//! | [`upload_one_shot`](PdpClient::upload_one_shot) | `POST /pdp/piece`, `PUT /pdp/piece/upload/{id}` |
//! | [`find`](PdpClient::find) | `GET /pdp/piece?pieceCid=` |
//! | [`create_data_set`](PdpClient::create_data_set) / [`wait_data_set`](PdpClient::wait_data_set) | `POST /pdp/data-sets`, `GET …/created/{tx}` |
//! | [`add_pieces`](PdpClient::add_pieces) / [`wait_pieces_added`](PdpClient::wait_pieces_added) | `POST /pdp/data-sets/{id}/pieces`, `GET …/added/{tx}` |
//! | [`data_set`](PdpClient::data_set) | `GET /pdp/data-sets/{id}` |
//! | [`remove_piece`](PdpClient::remove_piece) | `DELETE /pdp/data-sets/{id}/pieces/{pieceId}` |
//! | [`pull`](PdpClient::pull) | `POST /pdp/piece/pull` |
//! | [`read_range`](PdpClient::read_range) | `GET /piece/{cid}` with `Range` |

use std::io::Read;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use cid::Cid;
use serde_json::{Value, json};

use super::fwss::{self, Chain, Metadata};
use super::wallet::Wallet;

#[derive(Debug, thiserror::Error)]
pub enum PdpError {
    #[error("{url}: not a provider URL ({why}); expected http://HOST:PORT or https://HOST")]
    BadUrl { url: String, why: String },
    #[error("{url}: unreachable: {why}")]
    Unreachable { url: String, why: String },
    #[error("{url}: HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url}: unexpected answer: {why}")]
    Malformed { url: String, why: String },
    #[error("{url}: still {what} after {waited:?}")]
    Timeout { url: String, what: String, waited: Duration },
    #[error("{url}: the transaction was rejected: {body}")]
    Rejected { url: String, body: String },
}

impl PdpError {
    /// Whether trying again later may help (the provider was down, slow or failing).
    pub fn is_transient(&self) -> bool {
        match self {
            PdpError::Unreachable { .. } | PdpError::Timeout { .. } => true,
            PdpError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// A data set as the provider reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSetInfo {
    pub id: u64,
    /// (piece id, piece CID)
    pub pieces: Vec<(u64, String)>,
    pub next_challenge_epoch: u64,
}

/// How long one request may take (uploads: per byte they send, see [`PdpClient::upload`]).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct PdpClient {
    base: String,
    agent: ureq::Agent,
    upload_agent: ureq::Agent,
}

/// Checks a provider URL: http(s), a host, nothing after the path.
pub fn parse_provider_url(url: &str) -> Result<String, PdpError> {
    let bad = |why: &str| PdpError::BadUrl { url: url.to_string(), why: why.to_string() };
    let rest =
        url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).ok_or_else(|| bad("not http(s)"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) || rest.contains(['?', '#']) {
        return Err(bad("no host, or a query"));
    }
    if let Some((_, port)) = host.rsplit_once(':')
        && !host.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(bad("a bad port"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

impl PdpClient {
    pub fn new(url: &str) -> Result<PdpClient, PdpError> {
        PdpClient::with_timeout(url, REQUEST_TIMEOUT)
    }

    /// A client whose requests wait at most `timeout` for an answer (an upload's bytes
    /// take as long as they take; its answer then waits `timeout` at most).
    pub fn with_timeout(url: &str, timeout: Duration) -> Result<PdpClient, PdpError> {
        let base = parse_provider_url(url)?;
        let agent = |total: Option<Duration>| -> ureq::Agent {
            ureq::Agent::config_builder()
                .timeout_global(total)
                // uploads stream in 1 MiB writes (the default 128 KiB costs ~15% of the rate)
                .output_buffer_size(1 << 20)
                .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
                .timeout_recv_response(Some(timeout))
                .http_status_as_error(false)
                .user_agent(concat!("cidfs/", env!("CARGO_PKG_VERSION")))
                .build()
                .into()
        };
        Ok(PdpClient { base, agent: agent(Some(timeout)), upload_agent: agent(None) })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: ureq::Error) -> PdpError {
        PdpError::Unreachable { url: self.base.clone(), why: e.to_string() }
    }

    fn malformed(&self, why: impl Into<String>) -> PdpError {
        PdpError::Malformed { url: self.base.clone(), why: why.into() }
    }

    /// The status, `Location` and body of an answer; a status not in `ok` is an error.
    fn answer(
        &self,
        route: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        ok: &[u16],
    ) -> Result<(u16, Option<String>, Vec<u8>), PdpError> {
        let mut r = r.map_err(|e| self.unreachable(e))?;
        let status = r.status().as_u16();
        let location = r.headers().get("Location").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = r.body_mut().with_config().limit(1 << 20).read_to_vec().unwrap_or_default();
        if !ok.contains(&status) {
            let text = String::from_utf8_lossy(&body).trim().chars().take(500).collect();
            return Err(PdpError::Status { url: format!("{}{route}", self.base), status, body: text });
        }
        Ok((status, location, body))
    }

    fn json(&self, body: &[u8]) -> Result<Value, PdpError> {
        serde_json::from_slice(body).map_err(|e| self.malformed(format!("not JSON: {e}")))
    }

    fn post_json(&self, route: &str, body: &Value, ok: &[u16]) -> Result<(u16, Option<String>, Vec<u8>), PdpError> {
        let r = self
            .agent
            .post(format!("{}{route}", self.base))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes());
        self.answer(route, r, ok)
    }

    fn get(&self, route: &str, ok: &[u16]) -> Result<(u16, Option<String>, Vec<u8>), PdpError> {
        self.answer(route, self.agent.get(format!("{}{route}", self.base)).call(), ok)
    }

    pub fn ping(&self) -> Result<(), PdpError> {
        self.get("/pdp/ping", &[200]).map(|_| ())
    }

    /// The payee a provider announces on ping (`X-Payee`, as `cidfs provider` does); a
    /// Curio provider's comes from the chain's registry instead, so configure it there.
    pub fn announced_payee(&self) -> Result<Option<Address>, PdpError> {
        let r = self.agent.get(format!("{}/pdp/ping", self.base)).call().map_err(|e| self.unreachable(e))?;
        if r.status().as_u16() != 200 {
            return Err(PdpError::Status {
                url: format!("{}/pdp/ping", self.base),
                status: r.status().as_u16(),
                body: String::new(),
            });
        }
        Ok(r.headers().get("X-Payee").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()))
    }

    /// Streams `payload` (`len` bytes) as a streaming upload and finalizes it as `piece`.
    pub fn upload(&self, piece: &Cid, payload: impl Read + Send + 'static, len: u64) -> Result<(), PdpError> {
        let (_, location, _) = self.post_json("/pdp/piece/uploads", &json!({}), &[201])?;
        let location = location.ok_or_else(|| self.malformed("no Location for the upload"))?;
        let route = location.strip_prefix(&self.base).unwrap_or(&location).to_string();
        if !route.starts_with("/pdp/piece/uploads/") {
            return Err(self.malformed(format!("upload Location {location}")));
        }
        let r = self
            .upload_agent
            .put(format!("{}{route}", self.base))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", len.to_string())
            .send(ureq::SendBody::from_owned_reader(payload));
        self.answer(&route, r, &[204])?;
        self.post_json(&route, &json!({ "pieceCid": piece.to_string() }), &[200]).map(|_| ())
    }

    /// One-shot upload: declares `piece`, then sends its bytes (nothing if the provider
    /// has it already).
    pub fn upload_one_shot(&self, piece: &Cid, payload: &[u8]) -> Result<(), PdpError> {
        let (status, location, _) =
            self.post_json("/pdp/piece", &json!({ "pieceCid": piece.to_string() }), &[200, 201])?;
        if status == 200 {
            return Ok(());
        }
        let location = location.ok_or_else(|| self.malformed("no Location for the upload"))?;
        let route = location.strip_prefix(&self.base).unwrap_or(&location).to_string();
        if !route.starts_with("/pdp/piece/upload/") {
            return Err(self.malformed(format!("upload Location {location}")));
        }
        let r = self.upload_agent.put(format!("{}{route}", self.base)).send(payload);
        self.answer(&route, r, &[204]).map(|_| ())
    }

    /// Whether the provider holds `piece`.
    pub fn find(&self, piece: &Cid) -> Result<bool, PdpError> {
        let (status, _, _) = self.get(&format!("/pdp/piece?pieceCid={piece}"), &[200, 404])?;
        Ok(status == 200)
    }

    /// Asks for a data set owned by `wallet`, paying `payee`; the creation's tx hash.
    pub fn create_data_set(
        &self,
        wallet: &Wallet,
        chain: &Chain,
        client_data_set_id: U256,
        payee: Address,
        metadata: &Metadata,
    ) -> Result<String, PdpError> {
        let extra = fwss::create_data_set(wallet, chain, client_data_set_id, payee, metadata);
        let body = json!({ "recordKeeper": chain.fwss.to_string(), "extraData": fwss::to_hex(&extra) });
        let (_, location, _) = self.post_json("/pdp/data-sets", &body, &[201])?;
        tx_from_location(location.as_deref()).ok_or_else(|| self.malformed(format!("creation Location {location:?}")))
    }

    /// Polls a data set's creation until it is confirmed (its id) or `patience` runs out.
    pub fn wait_data_set(&self, tx: &str, patience: Duration) -> Result<u64, PdpError> {
        let route = format!("/pdp/data-sets/created/{tx}");
        let v = self.poll(&route, patience, "creating a data set", |v| {
            v["txStatus"] != "pending" && v["dataSetCreated"] != false
        })?;
        if v["txStatus"] == "rejected" || v["ok"] == false {
            return Err(PdpError::Rejected { url: self.base.clone(), body: v.to_string() });
        }
        v["dataSetId"].as_u64().ok_or_else(|| self.malformed(format!("no dataSetId in {v}")))
    }

    /// Adds held pieces to a data set; the transaction hash.
    pub fn add_pieces(
        &self,
        wallet: &Wallet,
        chain: &Chain,
        data_set: u64,
        client_data_set_id: U256,
        pieces: &[(Cid, Metadata)],
    ) -> Result<String, PdpError> {
        let nonce =
            U256::from_be_bytes(super::keys::random_salt().map_err(|e| self.malformed(format!("no nonce: {e}")))?);
        let signed: Vec<(Vec<u8>, Metadata)> = pieces.iter().map(|(c, m)| (c.to_bytes(), m.clone())).collect();
        let extra = fwss::add_pieces(wallet, chain, client_data_set_id, nonce, &signed);
        let list: Vec<Value> = pieces
            .iter()
            .map(|(c, _)| json!({ "pieceCid": c.to_string(), "subPieces": [{ "subPieceCid": c.to_string() }] }))
            .collect();
        let body = json!({ "pieces": list, "extraData": fwss::to_hex(&extra) });
        let (_, location, _) = self.post_json(&format!("/pdp/data-sets/{data_set}/pieces"), &body, &[201])?;
        tx_from_location(location.as_deref()).ok_or_else(|| self.malformed(format!("add Location {location:?}")))
    }

    /// Polls an add until confirmed: the piece ids given, in order.
    pub fn wait_pieces_added(&self, data_set: u64, tx: &str, patience: Duration) -> Result<Vec<u64>, PdpError> {
        let route = format!("/pdp/data-sets/{data_set}/pieces/added/{tx}");
        let v = self.poll(&route, patience, "adding pieces", |v| v["txStatus"] != "pending")?;
        if v["txStatus"] == "rejected" || v["addMessageOk"] == false {
            return Err(PdpError::Rejected { url: self.base.clone(), body: v.to_string() });
        }
        let ids =
            v["confirmedPieceIds"].as_array().ok_or_else(|| self.malformed(format!("no confirmedPieceIds in {v}")))?;
        ids.iter().map(|i| i.as_u64().ok_or_else(|| self.malformed(format!("piece id {i}")))).collect()
    }

    pub fn data_set(&self, id: u64) -> Result<Option<DataSetInfo>, PdpError> {
        let (status, _, body) = self.get(&format!("/pdp/data-sets/{id}"), &[200, 404])?;
        if status == 404 {
            return Ok(None);
        }
        let v = self.json(&body)?;
        let pieces = v["pieces"]
            .as_array()
            .ok_or_else(|| self.malformed("no pieces in the data set"))?
            .iter()
            .map(|p| match (p["pieceId"].as_u64(), p["pieceCid"].as_str()) {
                (Some(id), Some(cid)) => Ok((id, cid.to_string())),
                _ => Err(self.malformed(format!("a data set piece {p}"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(DataSetInfo { id, pieces, next_challenge_epoch: v["nextChallengeEpoch"].as_u64().unwrap_or(0) }))
    }

    /// Schedules the removal of one piece from a data set; the transaction hash.
    pub fn remove_piece(
        &self,
        wallet: &Wallet,
        chain: &Chain,
        data_set: u64,
        client_data_set_id: U256,
        piece_id: u64,
    ) -> Result<String, PdpError> {
        let extra = fwss::schedule_removals(wallet, chain, client_data_set_id, &[piece_id]);
        let route = format!("/pdp/data-sets/{data_set}/pieces/{piece_id}");
        let r = self
            .agent
            .delete(format!("{}{route}", self.base))
            .header("Content-Type", "application/json")
            .force_send_body()
            .send(json!({ "extraData": fwss::to_hex(&extra) }).to_string().as_bytes());
        let (_, _, body) = self.answer(&route, r, &[200])?;
        let v = self.json(&body)?;
        v["txHash"].as_str().map(str::to_string).ok_or_else(|| self.malformed(format!("no txHash in {v}")))
    }

    /// Asks the provider to fetch pieces from `source` URLs into a data set (repair
    /// without sending the bytes ourselves); the pull's status (`pending`, `complete`,
    /// `failed`). Ask again with the same arguments (and `extra`) to follow it.
    pub fn pull(&self, data_set: u64, pieces: &[(Cid, String)], extra: &[u8]) -> Result<String, PdpError> {
        let list: Vec<Value> =
            pieces.iter().map(|(c, url)| json!({ "pieceCid": c.to_string(), "sourceUrl": url })).collect();
        let body = json!({ "extraData": fwss::to_hex(extra), "dataSetId": data_set, "pieces": list });
        let (_, _, body) = self.post_json("/pdp/piece/pull", &body, &[200])?;
        let v = self.json(&body)?;
        v["status"].as_str().map(str::to_string).ok_or_else(|| self.malformed(format!("no status in {v}")))
    }

    /// `len` bytes of a piece from `offset` (`GET /piece/{cid}` with `Range`); exactly
    /// those bytes, or an error.
    pub fn read_range(&self, piece: &Cid, offset: u64, len: u64) -> Result<Vec<u8>, PdpError> {
        let route = format!("/piece/{piece}");
        let end = offset + len.max(1) - 1;
        let r = self.agent.get(format!("{}{route}", self.base)).header("Range", format!("bytes={offset}-{end}")).call();
        let mut r = r.map_err(|e| self.unreachable(e))?;
        let status = r.status().as_u16();
        if status != 206 && status != 200 {
            let body = r.body_mut().read_to_string().unwrap_or_default();
            return Err(PdpError::Status { url: format!("{}{route}", self.base), status, body });
        }
        let skip = if status == 200 { offset } else { 0 }; // a server that ignored the range
        let mut reader = r.into_body().into_reader();
        std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink())
            .map_err(|e| self.malformed(e.to_string()))?;
        let mut out = Vec::new();
        reader.take(len).read_to_end(&mut out).map_err(|e| self.malformed(format!("reading {route}: {e}")))?;
        if out.len() as u64 != len {
            return Err(self.malformed(format!("{route}: {} bytes for a range of {len}", out.len())));
        }
        Ok(out)
    }

    fn poll(
        &self,
        route: &str,
        patience: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value, PdpError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let (_, _, body) = self.get(route, &[200])?;
            let v = self.json(&body)?;
            if done(&v) {
                return Ok(v);
            }
            if start.elapsed() >= patience {
                return Err(PdpError::Timeout {
                    url: self.base.clone(),
                    what: what.to_string(),
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

/// The tx hash at the end of a `Location`, if it is one (`0x` + 64 hex digits).
fn tx_from_location(location: Option<&str>) -> Option<String> {
    let tx = location?.rsplit('/').next()?;
    let hex = tx.strip_prefix("0x")?;
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then(|| tx.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_urls_are_checked() {
        assert_eq!(parse_provider_url("http://127.0.0.1:8402/").unwrap(), "http://127.0.0.1:8402");
        assert_eq!(parse_provider_url("https://sp.example.com/base").unwrap(), "https://sp.example.com/base");
        for bad in ["127.0.0.1:8402", "ftp://x", "http://", "http://host:port", "http://h/?q=1", "http://a b"] {
            assert!(matches!(parse_provider_url(bad), Err(PdpError::BadUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn transaction_hashes_are_taken_from_locations_only_when_well_formed() {
        let tx = format!("0x{}", "ab".repeat(32));
        assert_eq!(tx_from_location(Some(&format!("/pdp/data-sets/created/{tx}"))), Some(tx));
        assert_eq!(tx_from_location(Some("/pdp/data-sets/created/0x12")), None);
        assert_eq!(tx_from_location(None), None);
    }
}
