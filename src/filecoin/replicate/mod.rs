//! Keeping every piece at N replicas on distinct providers, in the background.
//!
//! Each round ([`Replicator::step`]):
//! 1. **Place.** A piece with fewer than N live replicas gets a new one, `queued`, on a
//!    provider that has none of it and never failed it, the most reliable first (fewest
//!    failed replicas, then the order configured).
//! 2. **Advance.** Each replica takes its next step: `queued`/`uploading` → the piece
//!    streamed (encrypted, at most `--upload-limit` bytes a second) unless the provider
//!    has it → `uploaded` → our data set there made (once, see [`table`]) and the piece
//!    added → `adding` → the add confirmed → `confirmed` → listed by the data set →
//!    `proving`. A step that fails is retried with backoff; a replica that fails
//!    [`MAX_FAILURES`] times in a row, or fails with an answer that will not change (a 4xx),
//!    is `failed`.
//! 3. **Audit.** A held replica is audited every `--audit-interval` ([`audit`]): blocks
//!    read back by range must decrypt to their CIDs. A wrong byte or a missing piece fails
//!    it at once; an unreachable provider after [`MAX_FAILURES`] audits in a row.
//! 4. **Repair** follows: a failed replica no longer counts, so step 1 places another on a
//!    provider that has none (uploaded from the local segment), and the failed one is
//!    taken out of its data set when the provider answers.
//! 5. **Retire.** Pieces gc replaced are removed from their providers once every current
//!    piece is at N held replicas.
//!
//! Nothing here runs on a FUSE thread; with no provider configured nothing is sent.

pub mod audit;
pub mod report;
pub mod table;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use cid::Cid;

use super::fwss::Chain;
use super::keys::MasterKey;
use super::pdp::{PdpClient, PdpError};
use super::seal::PiecePayload;
use super::wallet::Wallet;
use crate::store::{PieceRecord, Store, StoreError};
use table::{ClientDataSet, Replica, ReplicaState, now_ms};

/// Failures in a row before a replica is given up on.
pub const MAX_FAILURES: u32 = 4;

/// How long a poll for a transaction waits within one round.
const POLL_PATIENCE: Duration = Duration::from_millis(500);

/// How replication runs.
#[derive(Clone, Debug)]
pub struct ReplicationPolicy {
    /// Provider URLs, in order of preference.
    pub providers: Vec<String>,
    pub replicas: usize,
    pub chain: Chain,
    /// Most bytes a second sent to providers (0: no limit).
    pub upload_limit: u64,
    pub audit_interval: Duration,
    /// Delay before a failed step is retried the first time (doubling after).
    pub backoff: Duration,
    /// How long a request waits for a provider's answer.
    pub request_timeout: Duration,
}

/// What uploads are doing, for `cidfs status`.
#[derive(Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub current: Mutex<Option<Upload>>,
}

/// The upload under way.
#[derive(Clone, Debug)]
pub struct Upload {
    pub piece: String,
    pub provider: String,
    pub sent: u64,
    pub total: u64,
    pub started: Instant,
}

pub struct Replicator {
    store: Arc<Store>,
    policy: ReplicationPolicy,
    wallet: Wallet,
    /// Decrypts blocks read back in audits.
    key: MasterKey,
    /// Every provider's client: the configured ones and those kept in the store (read
    /// again each round, so `cidfs providers add` takes effect while mounted).
    clients: Mutex<HashMap<String, Arc<PdpClient>>>,
    /// Providers in order of preference (configured first).
    providers: Mutex<Vec<String>>,
    /// Prices given with `cidfs providers add --price`.
    prices: Mutex<HashMap<String, f64>>,
    /// Payees learned from the providers (or configured).
    payees: Mutex<HashMap<String, Address>>,
    pub progress: Arc<Progress>,
    /// Set when the process is stopping: an upload under way gives up at once (its
    /// replica stays `uploading` and resumes at the next start).
    stop: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pdp(#[from] PdpError),
    #[error("{0}")]
    Other(String),
}

impl Replicator {
    /// A replicator for `store` with the configured providers and those kept in the store;
    /// the wallet and master key are loaded (made if need be).
    pub fn new(
        store: Arc<Store>,
        policy: ReplicationPolicy,
        stop: Arc<AtomicBool>,
    ) -> Result<Replicator, ReplicateError> {
        for url in &policy.providers {
            PdpClient::new(url)?; // a bad URL is an error now, not a log line later
        }
        let wallet = Wallet::load_or_create(store.root()).map_err(|e| ReplicateError::Other(e.to_string()))?;
        let key = MasterKey::load_or_create(store.root()).map_err(|e| ReplicateError::Other(e.to_string()))?;
        let r = Replicator {
            store,
            policy,
            wallet,
            key,
            clients: Mutex::default(),
            providers: Mutex::default(),
            prices: Mutex::default(),
            payees: Mutex::default(),
            progress: Default::default(),
            stop,
        };
        r.refresh()?;
        Ok(r)
    }

    /// Reads the providers again: the configured ones, then those kept in the store.
    fn refresh(&self) -> Result<(), ReplicateError> {
        let mut list = self.policy.providers.clone();
        let mut prices = HashMap::new();
        for p in table::stored_providers(&self.store)? {
            if let Some(a) = p.payee.as_deref().and_then(|a| a.parse::<Address>().ok()) {
                self.payees.lock().expect("lock poisoned").insert(p.url.clone(), a);
            }
            if let Some(price) = p.price {
                prices.insert(p.url.clone(), price);
            }
            if !list.contains(&p.url) {
                list.push(p.url);
            }
        }
        *self.prices.lock().expect("lock poisoned") = prices;
        let mut clients = self.clients.lock().expect("lock poisoned");
        for url in &list {
            if !clients.contains_key(url) {
                match PdpClient::with_timeout(url, self.policy.request_timeout) {
                    Ok(c) => {
                        clients.insert(url.clone(), Arc::new(c));
                    }
                    Err(e) => log::warn!("{e}"),
                }
            }
        }
        *self.providers.lock().expect("lock poisoned") = list;
        Ok(())
    }

    /// How many providers pieces may go to.
    pub fn provider_count(&self) -> usize {
        self.providers.lock().expect("lock poisoned").len()
    }

    fn client(&self, url: &str) -> Option<Arc<PdpClient>> {
        self.clients.lock().expect("lock poisoned").get(url).cloned()
    }

    pub fn policy(&self) -> &ReplicationPolicy {
        &self.policy
    }

    /// Runs [`step`](Self::step) every `every` until the stop flag given to
    /// [`new`](Self::new) is set.
    pub fn spawn(self: Arc<Self>, every: Duration) -> std::thread::JoinHandle<()> {
        let stop = self.stop.clone();
        std::thread::Builder::new()
            .name("cidfs-replicator".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = self.step(&stop) {
                        log::warn!("replication: {e} (will retry)");
                    }
                    super::seal::sleep_unless(&stop, every);
                }
            })
            .expect("spawning the replicator thread")
    }

    /// One round (see the module docs).
    pub fn step(&self, stop: &AtomicBool) -> Result<(), ReplicateError> {
        self.refresh()?;
        if self.provider_count() == 0 {
            return Ok(());
        }
        let pieces = self.store.pieces()?;
        self.place(&pieces)?;
        let by_segment: HashMap<u32, &PieceRecord> = pieces.iter().map(|p| (p.segment, p)).collect();
        let retired: HashMap<String, PieceRecord> =
            self.store.retired_pieces()?.into_iter().map(|p| (p.piece.to_string(), p)).collect();
        for mut r in table::replicas(&self.store)? {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if now_ms() < r.next_try_ms {
                continue;
            }
            match by_segment.get(&r.segment).filter(|p| p.piece.to_string() == r.piece) {
                Some(record) => self.advance(&mut r, record)?,
                None if retired.contains_key(&r.piece) => self.retire(&mut r)?,
                None => {}
            }
        }
        self.forget_retired(&retired)?;
        Ok(())
    }

    /// Step 1: new replicas for pieces short of N.
    fn place(&self, pieces: &[PieceRecord]) -> Result<(), ReplicateError> {
        let all = table::replicas(&self.store)?;
        let mut failed_by_provider: HashMap<&str, usize> = HashMap::new();
        for r in &all {
            if r.state == ReplicaState::Failed {
                *failed_by_provider.entry(r.provider.as_str()).or_default() += 1;
            }
        }
        for piece in pieces {
            let cid = piece.piece.to_string();
            let mine: Vec<&Replica> = all.iter().filter(|r| r.piece == cid).collect();
            let live = mine.iter().filter(|r| r.state.is_live()).count();
            let used: HashSet<&str> = mine.iter().map(|r| r.provider.as_str()).collect();
            let providers = self.providers.lock().expect("lock poisoned").clone();
            let prices = self.prices.lock().expect("lock poisoned").clone();
            let ranked = rank_providers(&providers, &used, &failed_by_provider, &prices);
            for url in ranked.into_iter().take(self.policy.replicas.saturating_sub(live)) {
                log::info!("piece {cid}: new replica on {url}");
                table::put_replica(&self.store, &Replica::new(cid.clone(), piece.segment, url.clone()))?;
            }
        }
        Ok(())
    }

    /// Step 2 (and 3) for one replica: one transition, its failure recorded.
    fn advance(&self, r: &mut Replica, record: &PieceRecord) -> Result<(), ReplicateError> {
        let Some(client) = self.client(&r.provider) else { return Ok(()) };
        let client = client.as_ref();
        let result = match r.state {
            ReplicaState::Queued | ReplicaState::Uploading => self.upload(client, r, record),
            ReplicaState::Uploaded => self.add(client, r),
            ReplicaState::Adding => self.confirm(client, r),
            ReplicaState::Confirmed => self.listed(client, r),
            ReplicaState::Proving => {
                match now_ms() >= r.last_audit_ms + self.policy.audit_interval.as_millis() as u64 {
                    true => self.audit(client, r, record),
                    false => return Ok(()),
                }
            }
            // taken out of its data set once the provider answers
            ReplicaState::Failed => self.remove(client, r),
            ReplicaState::Removed => return Ok(()),
        };
        match result {
            Ok(()) => {
                r.failures = 0;
                r.last_error = None;
            }
            Err(e) => {
                r.failures += 1;
                r.last_error = Some(e.to_string());
                let permanent = matches!(&e, ReplicateError::Pdp(p) if !p.is_transient());
                if r.state.is_live() && (permanent || r.failures >= MAX_FAILURES) {
                    log::warn!("piece {} on {}: {e}; replaced on another provider", r.piece, r.provider);
                    r.state = ReplicaState::Failed;
                    r.failures = 0;
                } else {
                    log::info!("piece {} on {}: {e} (retrying)", r.piece, r.provider);
                }
                // doubling, at most the audit interval (a held replica is looked at that often
                // anyway) and at most 5 minutes
                let cap = (self.policy.audit_interval.as_millis() as u64).clamp(1000, 300_000);
                let backoff = self.policy.backoff.as_millis() as u64 * (1 << r.failures.min(8));
                r.next_try_ms = now_ms() + backoff.min(cap);
            }
        }
        table::put_replica(&self.store, r)?;
        Ok(())
    }

    fn upload(&self, client: &PdpClient, r: &mut Replica, record: &PieceRecord) -> Result<(), ReplicateError> {
        // a cold segment has no local copy to send: a pull is the only way, retried
        let cold = self.store.is_cold(record.segment)?;
        let only_at_providers = format!(
            "piece {} is only at its providers (evicted here): {} must pull it from one of them",
            r.piece, r.provider
        );
        if (cold || !r.pull_failed) && (r.pull.is_some() || self.healthy_source(r)?.is_some()) {
            match self.pull(client, r, record) {
                Ok(true) => return Ok(()), // pulled, or under way
                Ok(false) => {}
                Err(e) if cold => {
                    r.pull = None;
                    return Err(ReplicateError::Other(format!("{only_at_providers}; the pull failed: {e}")));
                }
                Err(e) => log::info!("piece {} to {}: a pull failed ({e}); sending it from here", r.piece, r.provider),
            }
            r.pull = None;
            r.pull_failed = !cold;
        }
        if cold {
            return Err(ReplicateError::Other(only_at_providers));
        }
        if !client.find(&record.piece)? {
            r.state = ReplicaState::Uploading;
            table::put_replica(&self.store, r)?;
            let payload = PiecePayload::open(&self.store, record, Some(&self.key))
                .map_err(|e| ReplicateError::Other(format!("segment {}: {e}", record.segment)))?;
            let len = payload.len();
            *self.progress.current.lock().expect("lock poisoned") = Some(Upload {
                piece: r.piece.clone(),
                provider: r.provider.clone(),
                sent: 0,
                total: len,
                started: Instant::now(),
            });
            let reader = Metered {
                stop: self.stop.clone(),
                inner: payload.reader(0),
                progress: self.progress.clone(),
                limit: self.policy.upload_limit,
                start: Instant::now(),
                sent: 0,
            };
            let sent = client.upload(&record.piece, reader, len);
            *self.progress.current.lock().expect("lock poisoned") = None;
            sent?;
        }
        r.state = ReplicaState::Uploaded;
        Ok(())
    }

    /// A provider holding the piece in our data set (not `r`'s), to pull from.
    fn healthy_source(&self, r: &Replica) -> Result<Option<String>, ReplicateError> {
        Ok(table::replicas(&self.store)?
            .into_iter()
            .find(|o| o.piece == r.piece && o.provider != r.provider && o.state == ReplicaState::Proving)
            .map(|o| o.provider))
    }

    /// Repair by pull: the provider fetches the piece from a healthy one and adds it to our
    /// data set there. `Ok(true)` while under way or once done; `Ok(false)` if it failed
    /// (the caller sends the bytes itself).
    fn pull(&self, client: &PdpClient, r: &mut Replica, record: &PieceRecord) -> Result<bool, ReplicateError> {
        let pull = match &r.pull {
            Some(p) => p.clone(),
            None => {
                let Some(source) = self.healthy_source(r)? else { return Ok(false) };
                let Some((id, client_id)) = self.data_set(client)? else { return Ok(true) }; // being made
                let nonce =
                    U256::from_be_bytes(super::keys::random_salt().map_err(|e| ReplicateError::Other(e.to_string()))?);
                let extra = super::fwss::add_pieces(
                    &self.wallet,
                    &self.policy.chain,
                    client_id,
                    nonce,
                    &[(record.piece.to_bytes(), vec![])],
                );
                let pull = table::Pull {
                    source: format!("{source}/piece/{}", record.piece),
                    data_set: id,
                    extra: super::fwss::to_hex(&extra),
                };
                r.pull = Some(pull.clone());
                table::put_replica(&self.store, r)?;
                pull
            }
        };
        let extra =
            super::fwss::from_hex(&pull.extra).ok_or_else(|| ReplicateError::Other("a bad pull record".into()))?;
        match client.pull(pull.data_set, &[(record.piece, pull.source.clone())], &extra)?.as_str() {
            "complete" => {
                log::info!("piece {} pulled by {} from {}", r.piece, r.provider, pull.source);
                r.data_set = Some(pull.data_set);
                r.pulled_from = Some(pull.source);
                r.pull = None;
                r.state = ReplicaState::Confirmed; // the provider adds it; `listed` finds its id
                Ok(true)
            }
            "failed" => Ok(false),
            _ => Ok(true),
        }
    }

    /// Our data set at this provider: made once (the creation is recorded before it is
    /// sent), waited for across rounds.
    fn data_set(&self, client: &PdpClient) -> Result<Option<(u64, U256)>, ReplicateError> {
        let url = client.url().to_string();
        let mut ds = match table::client_data_set(&self.store, &url)? {
            Some(ds) => ds,
            None => {
                let id =
                    U256::from_be_bytes(super::keys::random_salt().map_err(|e| ReplicateError::Other(e.to_string()))?);
                let ds = ClientDataSet { client_data_set_id: id.to_string(), create_tx: None, data_set: None };
                table::put_client_data_set(&self.store, &url, &ds)?;
                ds
            }
        };
        let client_id: U256 =
            ds.client_data_set_id.parse().map_err(|_| ReplicateError::Other("a bad client data set id".into()))?;
        if let Some(id) = ds.data_set {
            return Ok(Some((id, client_id)));
        }
        let tx = match &ds.create_tx {
            Some(tx) => tx.clone(),
            None => {
                let payee = self.payee(client)?;
                let tx = client.create_data_set(
                    &self.wallet,
                    &self.policy.chain,
                    client_id,
                    payee,
                    &vec![("source".into(), "cidfs".into())],
                )?;
                ds.create_tx = Some(tx.clone());
                table::put_client_data_set(&self.store, &url, &ds)?;
                tx
            }
        };
        match client.wait_data_set(&tx, POLL_PATIENCE) {
            Ok(id) => {
                ds.data_set = Some(id);
                table::put_client_data_set(&self.store, &url, &ds)?;
                log::info!("data set {id} made on {url}");
                Ok(Some((id, client_id)))
            }
            Err(PdpError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn payee(&self, client: &PdpClient) -> Result<Address, ReplicateError> {
        if let Some(a) = self.payees.lock().expect("lock poisoned").get(client.url()) {
            return Ok(*a);
        }
        let a = client.announced_payee()?.ok_or_else(|| {
            ReplicateError::Other(format!(
                "{} does not announce its payee address: add it with `cidfs providers add {} --payee 0x…`",
                client.url(),
                client.url()
            ))
        })?;
        self.payees.lock().expect("lock poisoned").insert(client.url().to_string(), a);
        Ok(a)
    }

    fn add(&self, client: &PdpClient, r: &mut Replica) -> Result<(), ReplicateError> {
        let Some((id, client_id)) = self.data_set(client)? else { return Ok(()) }; // still being made
        let piece: Cid = r.piece.parse().map_err(|_| ReplicateError::Other(format!("bad piece CID {}", r.piece)))?;
        let tx = client.add_pieces(&self.wallet, &self.policy.chain, id, client_id, &[(piece, vec![])])?;
        r.data_set = Some(id);
        r.add_tx = Some(tx);
        r.state = ReplicaState::Adding;
        Ok(())
    }

    fn confirm(&self, client: &PdpClient, r: &mut Replica) -> Result<(), ReplicateError> {
        let (Some(id), Some(tx)) = (r.data_set, r.add_tx.clone()) else {
            r.state = ReplicaState::Uploaded; // a record from before the add was sent
            return Ok(());
        };
        match client.wait_pieces_added(id, &tx, POLL_PATIENCE) {
            Ok(ids) => {
                r.piece_id = ids.first().copied();
                r.state = ReplicaState::Confirmed;
                Ok(())
            }
            Err(PdpError::Timeout { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn listed(&self, client: &PdpClient, r: &mut Replica) -> Result<(), ReplicateError> {
        let id = r.data_set.ok_or_else(|| ReplicateError::Other("no data set".into()))?;
        let ds = client.data_set(id)?.ok_or_else(|| ReplicateError::Other(format!("data set {id} is gone")))?;
        if r.piece_id.is_none() {
            // pulled: the provider added it; its id is what the data set lists
            match ds.pieces.iter().find(|(_, cid)| *cid == r.piece) {
                Some((pid, _)) => r.piece_id = Some(*pid),
                None => return Ok(()), // the add is not confirmed yet
            }
        }
        if ds.pieces.iter().any(|(pid, cid)| Some(*pid) == r.piece_id && *cid == r.piece) {
            r.state = ReplicaState::Proving;
            r.next_challenge_epoch = Some(ds.next_challenge_epoch);
            Ok(())
        } else {
            Err(ReplicateError::Other(format!("data set {id} does not list piece {}", r.piece)))
        }
    }

    fn audit(&self, client: &PdpClient, r: &mut Replica, record: &PieceRecord) -> Result<(), ReplicateError> {
        r.last_audit_ms = now_ms();
        match audit::audit(&self.store, client, record, &self.key) {
            Ok(n) => {
                r.last_audit = Some(format!("ok ({n} blocks)"));
                if let Some(ds) = r.data_set.and_then(|id| client.data_set(id).ok().flatten()) {
                    r.next_challenge_epoch = Some(ds.next_challenge_epoch);
                }
                Ok(())
            }
            Err(audit::AuditError::Unreachable(e)) => {
                r.last_audit = Some(format!("unreachable: {e}"));
                Err(e.into())
            }
            Err(e) => {
                log::warn!("piece {} on {} fails its audit: {e}; replaced", r.piece, r.provider);
                r.last_audit = Some(format!("failed: {e}"));
                r.state = ReplicaState::Failed;
                Ok(())
            }
        }
    }

    fn remove(&self, client: &PdpClient, r: &mut Replica) -> Result<(), ReplicateError> {
        if let (Some(id), Some(pid)) = (r.data_set, r.piece_id) {
            let client_id = table::client_data_set(&self.store, client.url())?
                .and_then(|d| d.client_data_set_id.parse::<U256>().ok())
                .ok_or_else(|| ReplicateError::Other("no data set record".into()))?;
            client.remove_piece(&self.wallet, &self.policy.chain, id, client_id, pid)?;
        }
        r.state = ReplicaState::Removed;
        Ok(())
    }

    /// Step 5 for one replica of a retired piece: removed once every current piece is at
    /// N held replicas.
    fn retire(&self, r: &mut Replica) -> Result<(), ReplicateError> {
        if r.state == ReplicaState::Removed || !self.all_at_n()? {
            return Ok(());
        }
        let Some(client) = self.client(&r.provider) else { return Ok(()) };
        match self.remove(&client, r) {
            Ok(()) => log::info!("retired piece {} removed from {}", r.piece, r.provider),
            Err(e) => {
                r.last_error = Some(e.to_string());
                r.next_try_ms = now_ms() + self.policy.backoff.as_millis() as u64 * 4;
            }
        }
        table::put_replica(&self.store, r)?;
        Ok(())
    }

    fn forget_retired(&self, retired: &HashMap<String, PieceRecord>) -> Result<(), ReplicateError> {
        let all = table::replicas(&self.store)?;
        for (cid, p) in retired {
            if all.iter().filter(|r| &r.piece == cid).all(|r| r.state == ReplicaState::Removed) {
                self.store.forget_retired_piece(&p.piece)?;
            }
        }
        Ok(())
    }

    /// Whether every current piece has N replicas held.
    fn all_at_n(&self) -> Result<bool, ReplicateError> {
        let all = table::replicas(&self.store)?;
        Ok(self.store.pieces()?.iter().all(|p| {
            let cid = p.piece.to_string();
            all.iter().filter(|r| r.piece == cid && r.state.is_held()).count() >= self.policy.replicas
        }))
    }
}

/// The providers a piece may go to, best first: those without a replica of it, the most
/// reliable (fewest failed replicas) first, then the cheapest (unpriced last), then in the
/// order configured.
pub fn rank_providers(
    providers: &[String],
    used: &HashSet<&str>,
    failed: &HashMap<&str, usize>,
    prices: &HashMap<String, f64>,
) -> Vec<String> {
    let mut candidates: Vec<(usize, f64, usize, &String)> = providers
        .iter()
        .enumerate()
        .filter(|(_, u)| !used.contains(u.as_str()))
        .map(|(i, u)| {
            (failed.get(u.as_str()).copied().unwrap_or(0), prices.get(u).copied().unwrap_or(f64::INFINITY), i, u)
        })
        .collect();
    candidates.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    candidates.into_iter().map(|c| c.3.clone()).collect()
}

/// A payload reader that counts what it sends and keeps to a rate.
struct Metered<R> {
    stop: Arc<AtomicBool>,
    inner: R,
    progress: Arc<Progress>,
    limit: u64,
    start: Instant,
    sent: u64,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("cidfs is stopping; the upload resumes at the next start"));
        }
        if self.limit > 0 {
            let allowed = self.limit as f64 * self.start.elapsed().as_secs_f64();
            if self.sent as f64 > allowed {
                // in short naps, so a stop is heard
                let wait = Duration::from_secs_f64((self.sent as f64 - allowed) / self.limit as f64);
                let until = Instant::now() + wait;
                while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                    std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
                }
            }
        }
        let cap = if self.limit > 0 { buf.len().min((self.limit / 10).max(4096) as usize) } else { buf.len() };
        let n = self.inner.read(&mut buf[..cap])?;
        self.sent += n as u64;
        self.progress.sent.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(c) = self.progress.current.lock().expect("lock poisoned").as_mut() {
            c.sent = self.sent;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_are_ranked_by_reliability_then_price_then_order() {
        let ps: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let used: HashSet<&str> = ["d"].into_iter().collect();
        let none = HashMap::new();
        assert_eq!(rank_providers(&ps, &used, &none, &HashMap::new()), ["a", "b", "c"]);
        let prices: HashMap<String, f64> = [("c".to_string(), 1.0), ("b".to_string(), 2.0)].into();
        assert_eq!(rank_providers(&ps, &used, &none, &prices), ["c", "b", "a"], "cheapest first, unpriced last");
        let failed: HashMap<&str, usize> = [("c", 1)].into();
        assert_eq!(rank_providers(&ps, &used, &failed, &prices), ["b", "a", "c"], "a provider that failed goes last");
    }
}
