//! The replication records, in the store's redb beside the pieces they are about:
//!
//! ```text
//!  replicas_v1:          "<piece CID> <provider URL>" -> Replica (JSON)
//!  client_data_sets_v1:  provider URL -> ClientDataSet (JSON): our data set there
//!  providers_v1:         provider URL -> StoredProvider (JSON: payee, price)
//! ```
//!
//! Every state change is written before the action it leads to is taken (an upload, an
//! add), so a process killed at any point resumes from the last state: a confirmed piece
//! is never uploaded again, a data set whose creation was sent is waited for, not made
//! twice.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

const REPLICAS: TableDefinition<&str, &[u8]> = TableDefinition::new("replicas_v1");
const CLIENT_DATA_SETS: TableDefinition<&str, &[u8]> = TableDefinition::new("client_data_sets_v1");
const PROVIDERS: TableDefinition<&str, &str> = TableDefinition::new("providers_v1");

/// Where a replica stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaState {
    /// Chosen, nothing sent yet.
    Queued,
    /// Bytes being sent.
    Uploading,
    /// The provider holds the piece.
    Uploaded,
    /// The add to our data set is sent, not yet confirmed.
    Adding,
    /// In our data set.
    Confirmed,
    /// In our data set and passing audits.
    Proving,
    /// Given up on (unreachable too long, piece missing, failed audit): replaced.
    Failed,
    /// Taken out of the provider's data set (replaced, or the piece retired).
    Removed,
}

impl ReplicaState {
    pub fn name(self) -> &'static str {
        match self {
            ReplicaState::Queued => "queued",
            ReplicaState::Uploading => "uploading",
            ReplicaState::Uploaded => "uploaded",
            ReplicaState::Adding => "adding",
            ReplicaState::Confirmed => "confirmed",
            ReplicaState::Proving => "proving",
            ReplicaState::Failed => "failed",
            ReplicaState::Removed => "removed",
        }
    }

    /// Counts toward the replication factor (on its way, or there).
    pub fn is_live(self) -> bool {
        !matches!(self, ReplicaState::Failed | ReplicaState::Removed)
    }

    /// Held in a data set.
    pub fn is_held(self) -> bool {
        matches!(self, ReplicaState::Confirmed | ReplicaState::Proving)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    pub piece: String,
    pub segment: u32,
    pub provider: String,
    pub state: ReplicaState,
    pub data_set: Option<u64>,
    pub piece_id: Option<u64>,
    pub add_tx: Option<String>,
    /// Failures in a row (reset by a success).
    pub failures: u32,
    /// Not tried again before this (unix ms).
    pub next_try_ms: u64,
    pub last_error: Option<String>,
    pub last_audit_ms: u64,
    /// `ok`, or what failed.
    pub last_audit: Option<String>,
    /// The data set's next challenge, as the provider last said (30 s epochs).
    #[serde(default)]
    pub next_challenge_epoch: Option<u64>,
    /// A pull from another provider asked for (repair without sending the bytes).
    #[serde(default)]
    pub pull: Option<Pull>,
    /// A pull failed: the bytes go from the local segment instead.
    #[serde(default)]
    pub pull_failed: bool,
    /// Where the provider got the piece, if it pulled it.
    #[serde(default)]
    pub pulled_from: Option<String>,
    pub updated_ms: u64,
}

impl Replica {
    pub fn new(piece: String, segment: u32, provider: String) -> Replica {
        Replica {
            piece,
            segment,
            provider,
            state: ReplicaState::Queued,
            data_set: None,
            piece_id: None,
            add_tx: None,
            failures: 0,
            next_try_ms: 0,
            last_error: None,
            last_audit_ms: 0,
            last_audit: None,
            next_challenge_epoch: None,
            pull: None,
            pull_failed: false,
            pulled_from: None,
            updated_ms: now_ms(),
        }
    }

    fn key(&self) -> String {
        format!("{} {}", self.piece, self.provider)
    }
}

/// A pull asked of a provider: the same request is sent again to follow it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Pull {
    /// `/piece/{cid}` at the healthy provider.
    pub source: String,
    pub data_set: u64,
    /// The signed AddPieces extraData (hex) the pull carries.
    pub extra: String,
}

/// Our data set at one provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ClientDataSet {
    pub client_data_set_id: String,
    /// The creation transaction, once sent.
    pub create_tx: Option<String>,
    pub data_set: Option<u64>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("a replication record: {e}"))
}

/// Opens a table for reading; `None` if no record was ever written to it (the tables
/// are made on first write, not when the store opens).
fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every replica record.
pub fn replicas(store: &Store) -> Result<Vec<Replica>, StoreError> {
    let txn = store.db().begin_read()?;
    let Some(t) = read_table(&txn, REPLICAS)? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for row in t.iter()? {
        out.push(serde_json::from_slice(row?.1.value()).map_err(json_err)?);
    }
    Ok(out)
}

pub fn put_replica(store: &Store, r: &Replica) -> Result<(), StoreError> {
    let mut r = r.clone();
    r.updated_ms = now_ms();
    let (_writer, txn) = store.begin_durable()?;
    txn.open_table(REPLICAS)?.insert(r.key().as_str(), serde_json::to_vec(&r).map_err(json_err)?.as_slice())?;
    txn.commit()?;
    Ok(())
}

pub fn client_data_set(store: &Store, provider: &str) -> Result<Option<ClientDataSet>, StoreError> {
    let txn = store.db().begin_read()?;
    let Some(t) = read_table(&txn, CLIENT_DATA_SETS)? else { return Ok(None) };
    t.get(provider)?.map(|v| serde_json::from_slice(v.value()).map_err(json_err)).transpose()
}

pub fn put_client_data_set(store: &Store, provider: &str, ds: &ClientDataSet) -> Result<(), StoreError> {
    let (_writer, txn) = store.begin_durable()?;
    txn.open_table(CLIENT_DATA_SETS)?.insert(provider, serde_json::to_vec(ds).map_err(json_err)?.as_slice())?;
    txn.commit()?;
    Ok(())
}

/// A provider kept in the store (`cidfs providers add`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct StoredProvider {
    #[serde(skip)]
    pub url: String,
    /// Its payee address, if given (else it is asked for).
    pub payee: Option<String>,
    /// What it charges, in any unit the user keeps to (e.g. USDFC per TiB-month): the
    /// cheapest is chosen first among equally reliable providers.
    pub price: Option<f64>,
}

/// The providers kept in the store.
pub fn stored_providers(store: &Store) -> Result<Vec<StoredProvider>, StoreError> {
    let txn = store.db().begin_read()?;
    let Some(t) = read_table(&txn, PROVIDERS)? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for row in t.iter()? {
        let (k, v) = row?;
        let mut p: StoredProvider = serde_json::from_str(v.value()).map_err(json_err)?;
        p.url = k.value().to_string();
        out.push(p);
    }
    Ok(out)
}

pub fn add_provider(store: &Store, p: &StoredProvider) -> Result<(), StoreError> {
    let value = serde_json::to_string(p).map_err(json_err)?;
    let (_writer, txn) = store.begin_durable()?;
    txn.open_table(PROVIDERS)?.insert(p.url.as_str(), value.as_str())?;
    txn.commit()?;
    Ok(())
}

/// Returns whether it was there.
pub fn remove_provider(store: &Store, url: &str) -> Result<bool, StoreError> {
    let (_writer, txn) = store.begin_durable()?;
    let had = txn.open_table(PROVIDERS)?.remove(url)?.is_some();
    txn.commit()?;
    Ok(had)
}
