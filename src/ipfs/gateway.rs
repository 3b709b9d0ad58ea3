//! Trustless HTTP gateways as a block source.
//!
//! A trustless gateway answers `GET /ipfs/{cid}?format=raw` (with `Accept:
//! application/vnd.ipld.raw`) with the block's bytes, which we verify against the CID like
//! any peer's. The gateways are a read tier of their own (see `fetch::tiers`), asked for a
//! block the bitswap peers have not delivered within their head start (at once when no
//! peer can have it); whichever answers first wins. Gateways are tried one after another,
//! in the order given, skipping:
//!
//! - a gateway that sent bytes not matching the CID: a liar, never asked again this
//!   session (as a lying bitswap peer is dropped);
//! - a gateway that failed (connection refused, 5xx, timeout) three times in a row: asked
//!   again only after a pause, so a dead gateway does not slow every read.
//!
//! A `404`/`410` is "not here" and costs the gateway nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cid::Cid;

use crate::block::{Block, MAX_BLOCK_SIZE};

/// How long one gateway request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Consecutive failures after which a gateway rests for [`REST`].
const FAILURES_BEFORE_REST: u32 = 3;
const REST: Duration = Duration::from_secs(30);

/// The media type of a raw block.
pub const RAW_BLOCK: &str = "application/vnd.ipld.raw";

/// The URL that asks `base` for the raw block `cid`.
pub fn raw_block_url(base: &str, cid: &Cid) -> String {
    format!("{}/ipfs/{cid}?format=raw", base.trim_end_matches('/'))
}

/// Checks a configured gateway: an `http://` or `https://` URL with a host.
pub fn parse_gateway(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("gateway {url:?}: not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("gateway {url:?}: no host"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!("gateway {url:?}: give the base URL, without a query"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// What one gateway said about one block.
#[derive(Debug)]
pub enum Answer {
    Block(Block),
    /// 404 or 410: it does not have the block.
    NotHere,
    /// The bytes do not hash to the CID (or are not one block's worth).
    Lie(String),
    /// Anything else: unreachable, timed out, 5xx, a redirect loop.
    Failed(String),
}

/// The outcome of asking every usable gateway for one block.
#[derive(Debug)]
pub enum Fetched {
    Block {
        block: Block,
        gateway: String,
    },
    /// Nobody had it; the gateways that failed or lied are named.
    Missing {
        tried: usize,
        errors: Vec<String>,
    },
}

#[derive(Default)]
struct Health {
    liar: bool,
    failures: u32,
    resting_until: Option<Instant>,
}

struct Gateway {
    base: String,
    health: Mutex<Health>,
}

/// Counters for `cidfs status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayStats {
    pub blocks: u64,
    pub bytes: u64,
    pub liars: u64,
    pub failures: u64,
}

/// The configured gateways and one HTTP client (with its connection pool) for them all.
pub struct Gateways {
    list: Vec<Gateway>,
    agent: ureq::Agent,
    stats: Mutex<GatewayStats>,
}

impl Gateways {
    /// Gateways at `bases` (checked with [`parse_gateway`]); each request may take up to
    /// `timeout`.
    pub fn new(bases: &[String], timeout: Duration) -> Result<Gateways, String> {
        let list = bases
            .iter()
            .map(|b| parse_gateway(b).map(|base| Gateway { base, health: Mutex::default() }))
            .collect::<Result<_, _>>()?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
            .http_status_as_error(false)
            .user_agent(concat!("cidfs/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Gateways { list, agent, stats: Mutex::default() })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn stats(&self) -> GatewayStats {
        *self.stats.lock().expect("lock poisoned")
    }

    /// Asks each usable gateway in turn for `cid`; the first verified block wins.
    pub fn fetch(&self, cid: &Cid) -> Fetched {
        let mut errors = Vec::new();
        let mut tried = 0;
        for gw in &self.list {
            if !gw.usable(Instant::now()) {
                continue;
            }
            tried += 1;
            match self.ask(&gw.base, cid) {
                Answer::Block(block) => {
                    gw.health.lock().expect("lock poisoned").failures = 0;
                    let mut st = self.stats.lock().expect("lock poisoned");
                    st.blocks += 1;
                    st.bytes += block.data().len() as u64;
                    return Fetched::Block { block, gateway: gw.base.clone() };
                }
                Answer::NotHere => gw.health.lock().expect("lock poisoned").failures = 0,
                Answer::Lie(why) => {
                    log::warn!("gateway {} sent wrong bytes for {cid} ({why}); not asking it again", gw.base);
                    gw.health.lock().expect("lock poisoned").liar = true;
                    self.stats.lock().expect("lock poisoned").liars += 1;
                    errors.push(format!("{}: {why}", gw.base));
                }
                Answer::Failed(why) => {
                    log::debug!("gateway {} for {cid}: {why}", gw.base);
                    gw.failed(Instant::now());
                    self.stats.lock().expect("lock poisoned").failures += 1;
                    errors.push(format!("{}: {why}", gw.base));
                }
            }
        }
        Fetched::Missing { tried, errors }
    }

    /// One request to one gateway.
    fn ask(&self, base: &str, cid: &Cid) -> Answer {
        let url = raw_block_url(base, cid);
        let mut resp = match self.agent.get(&url).header("Accept", RAW_BLOCK).call() {
            Ok(r) => r,
            Err(e) => return Answer::Failed(e.to_string()),
        };
        let status = resp.status().as_u16();
        match status {
            200 => {}
            404 | 410 => return Answer::NotHere,
            s => return Answer::Failed(format!("HTTP {s}")),
        }
        // one byte over the limit tells an oversized answer from a full-sized block
        let body = resp.body_mut().with_config().limit(MAX_BLOCK_SIZE as u64 + 1).read_to_vec();
        match body {
            Ok(data) if data.len() > MAX_BLOCK_SIZE => Answer::Lie(format!("more than {MAX_BLOCK_SIZE} bytes")),
            Ok(data) => match Block::verified(*cid, data) {
                Ok(block) => Answer::Block(block),
                Err(e) => Answer::Lie(e.to_string()),
            },
            Err(ureq::Error::BodyExceedsLimit(_)) => Answer::Lie(format!("more than {MAX_BLOCK_SIZE} bytes")),
            Err(e) => Answer::Failed(format!("reading the body: {e}")),
        }
    }
}

impl Gateway {
    fn usable(&self, now: Instant) -> bool {
        let h = self.health.lock().expect("lock poisoned");
        !h.liar && h.resting_until.is_none_or(|t| now >= t)
    }

    fn failed(&self, now: Instant) {
        let mut h = self.health.lock().expect("lock poisoned");
        h.failures += 1;
        if h.failures >= FAILURES_BEFORE_REST {
            h.resting_until = Some(now + REST);
            h.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_block_urls_follow_the_trustless_gateway_spec() {
        let cid: Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".parse().unwrap();
        let want = "https://gw.example/ipfs/bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku?format=raw";
        assert_eq!(raw_block_url("https://gw.example", &cid), want);
        assert_eq!(raw_block_url("https://gw.example/", &cid), want);
        let v0: Cid = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH".parse().unwrap();
        assert_eq!(
            raw_block_url("http://127.0.0.1:8080/prefix", &v0),
            "http://127.0.0.1:8080/prefix/ipfs/QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH?format=raw"
        );
    }

    #[test]
    fn gateways_must_be_http_urls_with_a_host() {
        assert_eq!(parse_gateway("https://trustless-gateway.link/").unwrap(), "https://trustless-gateway.link");
        assert_eq!(parse_gateway("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        for bad in ["trustless-gateway.link", "ftp://x", "https://", "http:///ipfs", "https://x/?a=b"] {
            assert!(parse_gateway(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_failing_gateway_rests_and_comes_back() {
        let gw = Gateway { base: "http://x".into(), health: Mutex::default() };
        let t0 = Instant::now();
        for _ in 0..FAILURES_BEFORE_REST - 1 {
            gw.failed(t0);
            assert!(gw.usable(t0));
        }
        gw.failed(t0);
        assert!(!gw.usable(t0));
        assert!(gw.usable(t0 + REST));
        gw.health.lock().unwrap().liar = true;
        assert!(!gw.usable(t0 + REST * 10), "a liar never comes back");
    }
}
