//! What a provider keeps: piece files and its records, in a redb of its own.
//!
//! ```text
//!  DIR/provider.redb   pieces_v1:    piece CID v2 -> PieceInfo (JSON)
//!                      aliases_v1:   piece CID v1 -> piece CID v2
//!                      uploads_v1:   upload id -> Upload (JSON)
//!                      data_sets_v1: id -> DataSet (JSON)
//!                      txs_v1:       tx hash -> Tx (JSON)
//!                      nonces_v1:    "payer/nonce" -> () (AddPieces nonces are never reused)
//!                      counters_v1:  "data_set" -> last id
//!  DIR/pieces/<CID>         the payload, exactly as uploaded
//!  DIR/pieces/<CID>.tree    the root of each CommP block (32 bytes each): leaf proofs
//!  DIR/uploads/<id>         an upload in progress
//! ```
//!
//! A piece file is written under its upload id and renamed into `pieces/` only once its
//! CommP matched, and only then recorded: a crash leaves at most a stray upload file.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// A table of JSON records by a string key.
type JsonTable = TableDefinition<'static, &'static str, &'static [u8]>;

const PIECES: JsonTable = TableDefinition::new("pieces_v1");
const ALIASES: TableDefinition<&str, &str> = TableDefinition::new("aliases_v1");
const UPLOADS: JsonTable = TableDefinition::new("uploads_v1");
const DATA_SETS: TableDefinition<u64, &[u8]> = TableDefinition::new("data_sets_v1");
const TXS: JsonTable = TableDefinition::new("txs_v1");
const NONCES: TableDefinition<&str, ()> = TableDefinition::new("nonces_v1");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters_v1");

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PieceInfo {
    pub payload_size: u64,
    pub v1: String,
    pub stored_ms: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Upload {
    /// The piece CID the client declared first (`POST /pdp/piece`); none for a streaming
    /// upload until it is finalized.
    pub declared: Option<String>,
    /// The piece CID of the bytes received (streaming uploads, before finalizing).
    pub received: Option<String>,
    pub created_ms: u64,
}

/// A piece in a data set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SetPiece {
    pub piece_id: u64,
    pub piece_cid: String,
    /// The add transaction; the piece counts once it is confirmed.
    pub tx: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct DataSet {
    pub id: u64,
    pub payer: String,
    pub client_data_set_id: String,
    pub metadata: Vec<(String, String)>,
    pub create_tx: String,
    pub next_piece_id: u64,
    pub pieces: Vec<SetPiece>,
    /// Proving periods passed with every challenge answered, and failed.
    pub proven_periods: u64,
    pub faulted_periods: u64,
    pub last_fault: Option<String>,
    /// When the next proving period ends (unix ms).
    pub next_challenge_ms: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum TxKind {
    Create,
    Add { piece_ids: Vec<u64> },
    Remove { piece_id: u64 },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Tx {
    pub kind: TxKind,
    pub data_set: u64,
    pub created_ms: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("provider state: {0}")]
pub struct StateError(pub String);

macro_rules! state_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StateError {
            fn from(e: $t) -> Self { StateError(e.to_string()) }
        }
    )*};
}
state_errors!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError,
    serde_json::Error,
    std::io::Error
);

pub struct State {
    db: Database,
    dir: PathBuf,
}

/// An upload session not finished within this is dropped, bytes and all.
pub const UPLOAD_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl State {
    pub fn open(dir: &Path) -> Result<State, StateError> {
        for sub in ["pieces", "uploads"] {
            crate::store::private_dir(&dir.join(sub))?;
        }
        let db = Database::create(dir.join("provider.redb"))?;
        let txn = db.begin_write()?;
        {
            txn.open_table(PIECES)?;
            txn.open_table(ALIASES)?;
            txn.open_table(UPLOADS)?;
            txn.open_table(DATA_SETS)?;
            txn.open_table(TXS)?;
            txn.open_table(NONCES)?;
            txn.open_table(COUNTERS)?;
        }
        txn.commit()?;
        Ok(State { db, dir: dir.to_path_buf() })
    }

    pub fn piece_path(&self, cid: &str) -> PathBuf {
        self.dir.join("pieces").join(cid)
    }

    pub fn tree_path(&self, cid: &str) -> PathBuf {
        self.dir.join("pieces").join(format!("{cid}.tree"))
    }

    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.dir.join("uploads").join(id)
    }

    /// The JSON record under `key` in a string-keyed table.
    fn get_json<T: serde::de::DeserializeOwned>(&self, table: JsonTable, key: &str) -> Result<Option<T>, StateError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table)?;
        Ok(match t.get(key)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    /// Writes a JSON record under `key` in a string-keyed table (one transaction).
    fn put_json<T: Serialize>(&self, table: JsonTable, key: &str, value: &T) -> Result<(), StateError> {
        let txn = self.db.begin_write()?;
        txn.open_table(table)?.insert(key, serde_json::to_vec(value)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    pub fn piece(&self, cid: &str) -> Result<Option<PieceInfo>, StateError> {
        self.get_json(PIECES, cid)
    }

    /// The v2 CID of a piece named by its v1 or v2 CID.
    pub fn resolve(&self, cid: &str) -> Result<Option<String>, StateError> {
        if self.piece(cid)?.is_some() {
            return Ok(Some(cid.to_string()));
        }
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(ALIASES)?.get(cid)?.map(|v| v.value().to_string()))
    }

    pub fn put_piece(&self, cid: &str, info: &PieceInfo) -> Result<(), StateError> {
        let txn = self.db.begin_write()?;
        txn.open_table(PIECES)?.insert(cid, serde_json::to_vec(info)?.as_slice())?;
        txn.open_table(ALIASES)?.insert(info.v1.as_str(), cid)?;
        txn.commit()?;
        Ok(())
    }

    /// Every piece held.
    pub fn pieces(&self) -> Result<Vec<(String, PieceInfo)>, StateError> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in txn.open_table(PIECES)?.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    pub fn upload(&self, id: &str) -> Result<Option<Upload>, StateError> {
        self.get_json(UPLOADS, id)
    }

    pub fn put_upload(&self, id: &str, u: &Upload) -> Result<(), StateError> {
        self.put_json(UPLOADS, id, u)
    }

    /// Upload sessions open.
    pub fn upload_count(&self) -> Result<u64, StateError> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(UPLOADS)?.len()?)
    }

    /// Drops upload sessions opened more than [`UPLOAD_TTL`] ago, and their files; how many.
    pub fn expire_uploads(&self, now_ms: u64) -> Result<usize, StateError> {
        let stale: Vec<String> = {
            let txn = self.db.begin_read()?;
            let mut out = Vec::new();
            for row in txn.open_table(UPLOADS)?.iter()? {
                let (k, v) = row?;
                let u: Upload = serde_json::from_slice(v.value())?;
                if now_ms.saturating_sub(u.created_ms) > UPLOAD_TTL.as_millis() as u64 {
                    out.push(k.value().to_string());
                }
            }
            out
        };
        for id in &stale {
            self.remove_upload(id)?;
            let _ = std::fs::remove_file(self.upload_path(&format!("{id}.tree")));
        }
        Ok(stale.len())
    }

    pub fn remove_upload(&self, id: &str) -> Result<(), StateError> {
        let txn = self.db.begin_write()?;
        txn.open_table(UPLOADS)?.remove(id)?;
        txn.commit()?;
        let _ = std::fs::remove_file(self.upload_path(id));
        Ok(())
    }

    pub fn data_set(&self, id: u64) -> Result<Option<DataSet>, StateError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(DATA_SETS)?;
        Ok(match t.get(id)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    pub fn data_sets(&self) -> Result<Vec<DataSet>, StateError> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in txn.open_table(DATA_SETS)?.iter()? {
            out.push(serde_json::from_slice(row?.1.value())?);
        }
        Ok(out)
    }

    /// Changes a data set in one transaction (`f` may refuse by returning an error).
    pub fn update_data_set<T>(
        &self,
        id: u64,
        f: impl FnOnce(&mut DataSet) -> Result<T, StateError>,
    ) -> Result<Option<T>, StateError> {
        let txn = self.db.begin_write()?;
        let out = {
            let mut t = txn.open_table(DATA_SETS)?;
            let Some(mut ds): Option<DataSet> = t.get(id)?.map(|v| serde_json::from_slice(v.value())).transpose()?
            else {
                return Ok(None);
            };
            let out = f(&mut ds)?;
            t.insert(id, serde_json::to_vec(&ds)?.as_slice())?;
            out
        };
        txn.commit()?;
        Ok(Some(out))
    }

    /// Records a new data set under the next id, with its creating transaction.
    pub fn create_data_set(&self, mut ds: DataSet, tx_hash: &str) -> Result<u64, StateError> {
        let txn = self.db.begin_write()?;
        let id = {
            let mut counters = txn.open_table(COUNTERS)?;
            let id = counters.get("data_set")?.map_or(0, |v| v.value()) + 1;
            counters.insert("data_set", id)?;
            id
        };
        ds.id = id;
        txn.open_table(DATA_SETS)?.insert(id, serde_json::to_vec(&ds)?.as_slice())?;
        let tx = Tx { kind: TxKind::Create, data_set: id, created_ms: now_ms() };
        txn.open_table(TXS)?.insert(tx_hash, serde_json::to_vec(&tx)?.as_slice())?;
        txn.commit()?;
        Ok(id)
    }

    pub fn tx(&self, hash: &str) -> Result<Option<Tx>, StateError> {
        self.get_json(TXS, hash)
    }

    pub fn put_tx(&self, hash: &str, tx: &Tx) -> Result<(), StateError> {
        self.put_json(TXS, hash, tx)
    }

    /// Takes a nonce for `payer`; false if it was used before.
    pub fn take_nonce(&self, payer: &str, nonce: &str) -> Result<bool, StateError> {
        let key = format!("{payer}/{nonce}");
        let txn = self.db.begin_write()?;
        let fresh = txn.open_table(NONCES)?.insert(key.as_str(), ())?.is_none();
        if fresh {
            txn.commit()?;
        }
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_uploads_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(dir.path()).unwrap();
        let now = now_ms();
        s.put_upload("old", &Upload { created_ms: now - 2 * UPLOAD_TTL.as_millis() as u64, ..Default::default() })
            .unwrap();
        std::fs::write(s.upload_path("old"), b"partial").unwrap();
        s.put_upload("new", &Upload { created_ms: now, ..Default::default() }).unwrap();
        assert_eq!(s.upload_count().unwrap(), 2);
        assert_eq!(s.expire_uploads(now).unwrap(), 1);
        assert_eq!(s.upload_count().unwrap(), 1);
        assert!(s.upload("new").unwrap().is_some());
        assert!(!s.upload_path("old").exists(), "its bytes go too");
    }
}
