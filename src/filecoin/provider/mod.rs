//! `cidfs provider serve`: a storage provider speaking Curio's PDP HTTP API and FRC-0066
//! `/piece/` retrieval, for tests, the embedded default and self-hosting.
//!
//! What is real: the HTTP API (routes, bodies, status codes as Curio answers them), the
//! pieces (every upload is checked against its declared piece CID and kept only if it
//! matches), the signatures (every extraData is decoded and its EIP-712 signer recovered;
//! a wrong one is refused with 403), and the state (its own redb, see [`state`]: a restart
//! loses nothing).
//!
//! What is **simulated**: the chain. Transactions get random hashes and are `pending` until
//! `--confirm-delay` has passed, then `confirmed`; no contract is called and no payment
//! made. Proving runs on an accelerated clock: every `--proving-period` each data set is
//! challenged at 5 leaves drawn as PDP draws them (`keccak256(seed ‖ dataSetId ‖ i) mod
//! leaves`), and the provider answers with the leaf and its merkle path from the bytes it
//! holds (see [`prove`]); a missing piece or a wrong byte in the challenged block is a
//! fault, counted on the data set. `nextChallengeEpoch` is the end of the period in 30 s
//! epochs of unix time.
//!
//! Reads may be charged for (`--price-per-gib`, see [`paywall`]): x402 version 2, with the
//! payment verified and settled through a real facilitator before the bytes go out.
//!
//! Test knobs, on loopback only (`POST /admin/...`, see [`Knobs`]): drop a piece, flip a
//! byte, refuse uploads, answer slowly, fail the next requests with 500, go offline.

pub mod http;
pub mod paywall;
mod prove;
mod routes;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use alloy_primitives::Address;

use super::fwss::Chain;
use state::State;

/// Largest piece payload Curio accepts.
pub const MAX_PIECE_PAYLOAD: u64 = 1_065_353_216;

/// Requests served at once by default; more get 503.
pub const MAX_IN_FLIGHT: usize = 64;

/// How a provider runs.
#[derive(Clone, Debug)]
pub struct ProviderOptions {
    pub dir: PathBuf,
    pub chain: Chain,
    /// The address data sets must name as payee (the provider's); by default the address
    /// of a wallet kept in `DIR`.
    pub payee: Option<Address>,
    /// How long a simulated transaction stays pending.
    pub confirm_delay: Duration,
    /// How often each data set is challenged.
    pub proving_period: Duration,
    /// Requests served at once; more get 503.
    pub max_requests: usize,
    /// What `/piece/` GETs cost (none: free).
    pub pricing: Option<paywall::Pricing>,
}

/// Faults to inject, set through `/admin/...` on loopback.
#[derive(Default)]
pub struct Knobs {
    /// Uploads get 503.
    pub refuse_uploads: AtomicBool,
    /// Every reply waits this long first.
    pub slow_ms: AtomicU64,
    /// The next this many requests get 500.
    pub errors: AtomicU64,
    /// Everything but `/admin` gets 503.
    pub offline: AtomicBool,
}

/// A running provider's shared state.
pub struct Provider {
    pub(crate) state: State,
    pub(crate) opts: ProviderOptions,
    pub(crate) payee: Address,
    pub(crate) knobs: Knobs,
    pub(crate) pulls: routes::Pulls,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("{0}")]
    Wallet(#[from] super::wallet::WalletError),
    #[error("listening on {addr}: {why}")]
    Listen { addr: String, why: String },
}

impl Provider {
    pub fn open(opts: ProviderOptions) -> Result<Arc<Provider>, ProviderError> {
        crate::store::private_dir(&opts.dir).map_err(state::StateError::from)?;
        let state = State::open(&opts.dir)?;
        let payee = match opts.payee {
            Some(p) => p,
            None => super::wallet::Wallet::load_or_create(&opts.dir)?.address(),
        };
        Ok(Arc::new(Provider { state, opts, payee, knobs: Knobs::default(), pulls: Default::default() }))
    }

    pub fn payee(&self) -> Address {
        self.payee
    }

    /// Listens on `addr` and serves until the process ends; the proving clock runs
    /// beside it. Returns the address bound (port 0 picks one) once listening, through
    /// `ready`.
    pub fn serve(self: &Arc<Provider>, addr: &str, ready: impl FnOnce(SocketAddr)) -> Result<(), ProviderError> {
        let listen_err = |why: String| ProviderError::Listen { addr: addr.to_string(), why };
        let server = tiny_http::Server::http(addr).map_err(|e| listen_err(e.to_string()))?;
        let bound = server.server_addr().to_ip().ok_or_else(|| listen_err("not an IP address".into()))?;
        prove::spawn(self.clone());
        ready(bound);
        let in_flight = Arc::new(AtomicUsize::new(0));
        for request in server.incoming_requests() {
            if in_flight.load(Ordering::Relaxed) >= self.opts.max_requests {
                http::Reply::error(503, "busy: too many requests at once").send(request);
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (me, count) = (self.clone(), in_flight.clone());
            let spawned = std::thread::Builder::new().name("cidfs-provider".into()).spawn(move || {
                routes::handle(&me, request);
                count.fetch_sub(1, Ordering::Relaxed);
            });
            if let Err(e) = spawned {
                in_flight.fetch_sub(1, Ordering::Relaxed);
                log::error!("provider: cannot start a request thread: {e}");
            }
        }
        Ok(())
    }
}
