//! The one ledger every payment goes through, with the user's hard caps.
//!
//! Nothing in cidfs signs a payment except through [`Ledger::authorize`], which, under one
//! lock and in one redb transaction, checks the offer against the allow-lists
//! (`--pay-network`, `--pay-asset`) and the caps (`--max-per-request`, `--max-per-day`,
//! `--max-spend`, in the asset's atomic units) and *records the payment before it is
//! signed*. So a crash between signing and hearing back can never hide a spend, and two
//! readers paying at once can never jointly pass a cap. The totals the caps are checked
//! against are read from the table once, then kept up to date in memory. A payment the server did not
//! confirm still counts (the signature stays valid until it expires, and whoever holds it
//! may settle it): the ledger errs on the side of the cap.
//!
//! ```text
//!  payments_v1: id -> JSON {time_ms, provider, piece, offset, bytes, amount, asset,
//!                           network, pay_to, state, transaction, error}
//! ```
//!
//! No cap set means nothing is paid: spending is something the user turns on, with all
//! three caps and at least one network and asset named.

use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, U256};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::x402::{Offer, Settlement};
use crate::store::{Store, StoreError};

const PAYMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("payments_v1");

/// What the user allows to be spent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    pub max_per_request: Option<u128>,
    pub max_per_day: Option<u128>,
    pub max_total: Option<u128>,
    /// `eip155:N` networks payments may be made on.
    pub networks: Vec<String>,
    /// Token contracts payments may be made in.
    pub assets: Vec<Address>,
}

impl Caps {
    /// Whether any payment could pass these caps.
    pub fn may_pay(&self) -> bool {
        self.max_per_request.is_some()
            && self.max_per_day.is_some()
            && self.max_total.is_some()
            && !self.networks.is_empty()
            && !self.assets.is_empty()
    }
}

/// Why a payment was not made (nothing was signed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("payments are off: set --max-per-request, --max-per-day, --max-spend, --pay-network and --pay-asset")]
    Off,
    #[error("network {0} is not allowed (--pay-network)")]
    Network(String),
    #[error("asset {0} is not allowed (--pay-asset)")]
    Asset(Address),
    #[error("price {price} exceeds --max-per-request {cap}")]
    PerRequest { price: U256, cap: u128 },
    #[error("price {price} would take today's spend past --max-per-day {cap} ({spent} spent today)")]
    PerDay { price: u128, cap: u128, spent: u128 },
    #[error("price {price} would take the total spend past --max-spend {cap} ({spent} spent)")]
    Total { price: u128, cap: u128, spent: u128 },
    #[error("the ledger cannot record the payment: {0}")]
    Ledger(String),
}

/// One payment, as recorded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub id: u64,
    pub time_ms: u64,
    pub provider: String,
    pub piece: String,
    pub offset: u64,
    pub bytes: u64,
    /// Atomic units of `asset` (a decimal string: amounts may exceed 2^64).
    pub amount: String,
    pub asset: String,
    pub network: String,
    pub pay_to: String,
    /// `signed` (not yet confirmed), `settled`, or `unconfirmed` (the server did not say
    /// it settled; still counted against the caps).
    pub state: String,
    pub transaction: Option<String>,
    pub error: Option<String>,
}

impl Payment {
    fn amount(&self) -> u128 {
        self.amount.parse().unwrap_or(u128::MAX)
    }
}

/// What a payment is for.
#[derive(Clone, Debug)]
pub struct Purchase<'a> {
    pub provider: &'a str,
    pub piece: &'a str,
    pub offset: u64,
    pub bytes: u64,
}

/// Spend so far, for `cidfs status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spend {
    pub today: u128,
    pub total: u128,
    pub payments: u64,
}

pub struct Ledger {
    store: Arc<Store>,
    caps: Caps,
    /// Held while a payment is checked and recorded; the running totals (read from the
    /// table once, then kept up to date here: this process is the store's only writer).
    totals: Mutex<Option<Totals>>,
}

/// Spend so far, as of `day` (unix days, UTC).
#[derive(Clone, Copy, Debug)]
struct Totals {
    day: u64,
    spend: (u128, u128, u64),
}

fn day_of(ms: u64) -> u64 {
    ms / 86_400_000
}

impl Ledger {
    pub fn new(store: Arc<Store>, caps: Caps) -> Ledger {
        Ledger { store, caps, totals: Mutex::new(None) }
    }

    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// Whether this ledger would consider `offer` at all (network and asset allowed).
    pub fn allows(&self, offer: &Offer) -> bool {
        self.caps.networks.contains(&offer.network) && self.caps.assets.contains(&offer.asset)
    }

    /// Checks `offer` against the allow-lists and caps and records it as `signed`; the id
    /// to report the outcome under. Refused: nothing recorded, nothing to sign.
    pub fn authorize(&self, offer: &Offer, what: &Purchase) -> Result<u64, Refusal> {
        let caps = &self.caps;
        if !caps.may_pay() {
            return Err(Refusal::Off);
        }
        if !caps.networks.contains(&offer.network) {
            return Err(Refusal::Network(offer.network.clone()));
        }
        if !caps.assets.contains(&offer.asset) {
            return Err(Refusal::Asset(offer.asset));
        }
        let per_request = caps.max_per_request.unwrap_or(0);
        let price = match u128::try_from(offer.amount) {
            Ok(p) if p <= per_request => p,
            _ => return Err(Refusal::PerRequest { price: offer.amount, cap: per_request }),
        };
        let mut totals = self.totals.lock().expect("lock poisoned"); // one payment at a time
        let now = super::replicate::table::now_ms();
        let spend = self.current(&mut totals, now).map_err(|e| Refusal::Ledger(e.to_string()))?;
        let (day_cap, total_cap) = (caps.max_per_day.unwrap_or(0), caps.max_total.unwrap_or(0));
        if spend.today.saturating_add(price) > day_cap {
            return Err(Refusal::PerDay { price, cap: day_cap, spent: spend.today });
        }
        if spend.total.saturating_add(price) > total_cap {
            return Err(Refusal::Total { price, cap: total_cap, spent: spend.total });
        }
        let record = |id| Payment {
            id,
            time_ms: now,
            provider: what.provider.to_string(),
            piece: what.piece.to_string(),
            offset: what.offset,
            bytes: what.bytes,
            amount: price.to_string(),
            asset: offer.asset.to_checksum(None),
            network: offer.network.clone(),
            pay_to: offer.pay_to.to_checksum(None),
            state: "signed".into(),
            transaction: None,
            error: None,
        };
        let id = self.insert_new(record).map_err(|e| Refusal::Ledger(e.to_string()))?;
        *totals = Some(Totals {
            day: day_of(now),
            spend: (spend.today + price, spend.total.saturating_add(price), spend.payments + 1),
        });
        Ok(id)
    }

    /// The spend as of `now`, from the running totals (read from the table the first time).
    fn current(&self, totals: &mut Option<Totals>, now: u64) -> Result<Spend, StoreError> {
        let t = match *totals {
            Some(t) => t,
            None => {
                let s = self.spend_at(now)?;
                Totals { day: day_of(now), spend: (s.today, s.total, s.payments) }
            }
        };
        let today = if t.day == day_of(now) { t.spend.0 } else { 0 };
        *totals = Some(Totals { day: day_of(now), spend: (today, t.spend.1, t.spend.2) });
        Ok(Spend { today, total: t.spend.1, payments: t.spend.2 })
    }

    fn insert_new(&self, record: impl FnOnce(u64) -> Payment) -> Result<u64, StoreError> {
        let (_writer, txn) = self.store.begin_durable()?;
        let id;
        {
            let mut t = txn.open_table(PAYMENTS)?;
            id = t.last()?.map_or(1, |(k, _)| k.value() + 1);
            let json = serde_json::to_vec(&record(id)).expect("a payment serializes");
            t.insert(id, json.as_slice())?;
        }
        txn.commit()?;
        Ok(id)
    }

    /// The server confirmed payment `id` (its `PAYMENT-RESPONSE`).
    pub fn settled(&self, id: u64, s: &Settlement) {
        self.update(id, |p| {
            p.state = if s.success { "settled" } else { "unconfirmed" }.into();
            p.transaction = Some(s.transaction.clone()).filter(|t| !t.is_empty());
        });
    }

    /// The server did not confirm payment `id`; it still counts (see the module docs).
    pub fn unconfirmed(&self, id: u64, why: &str) {
        self.update(id, |p| {
            p.state = "unconfirmed".into();
            p.error = Some(why.to_string());
        });
    }

    fn update(&self, id: u64, change: impl FnOnce(&mut Payment)) {
        let result = (|| -> Result<(), StoreError> {
            let (_writer, txn) = self.store.begin_durable()?;
            {
                let mut t = txn.open_table(PAYMENTS)?;
                let current = t.get(id)?.and_then(|v| serde_json::from_slice::<Payment>(v.value()).ok());
                let Some(mut p) = current else { return Ok(()) };
                change(&mut p);
                let json = serde_json::to_vec(&p).expect("a payment serializes");
                t.insert(id, json.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            log::warn!("recording the outcome of payment {id}: {e}");
        }
    }

    pub fn spend(&self) -> Result<Spend, StoreError> {
        let mut totals = self.totals.lock().expect("lock poisoned");
        self.current(&mut totals, super::replicate::table::now_ms())
    }

    fn spend_at(&self, now_ms: u64) -> Result<Spend, StoreError> {
        let mut s = Spend::default();
        for p in payments(&self.store)? {
            let a = p.amount();
            s.total = s.total.saturating_add(a);
            if day_of(p.time_ms) == day_of(now_ms) {
                s.today = s.today.saturating_add(a);
            }
            s.payments += 1;
        }
        Ok(s)
    }
}

/// Every payment recorded in `store`, oldest first.
pub fn payments(store: &Store) -> Result<Vec<Payment>, StoreError> {
    let txn = store.db().begin_read()?;
    let t = match txn.open_table(PAYMENTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for row in t.iter()? {
        let (_, v) = row?;
        match serde_json::from_slice::<Payment>(v.value()) {
            Ok(p) => out.push(p),
            Err(e) => return Err(StoreError::Corrupt(format!("a payment record: {e}"))),
        }
    }
    Ok(out)
}

/// `cidfs payments`: one line per payment, then the totals.
pub fn payments_text(list: &[Payment]) -> String {
    let mut out = String::new();
    if list.is_empty() {
        out.push_str("no payments\n");
    }
    let mut total: u128 = 0;
    for p in list {
        total = total.saturating_add(p.amount());
        let secs = p.time_ms / 1000;
        out.push_str(&format!(
            "{:>4}  {}  {}  {} bytes at {} of {}  {} of {} on {}  {}{}\n",
            p.id,
            crate::commands::repo::format_time(secs),
            p.provider,
            p.bytes,
            p.offset,
            p.piece,
            p.amount,
            p.asset,
            p.network,
            p.state,
            p.transaction.as_deref().map(|t| format!(" tx {t}")).unwrap_or_default()
        ));
    }
    out.push_str(&format!("{} payments, {total} atomic units in all\n", list.len()));
    out
}

/// `cidfs payments --json`: one JSON object per line.
pub fn payments_json(list: &[Payment]) -> String {
    list.iter().map(|p| serde_json::to_string(p).expect("a payment serializes") + "\n").collect()
}

/// The line `cidfs status` shows.
pub fn status_line(spend: &Spend, caps: &Caps) -> String {
    let cap = |c: Option<u128>| c.map_or("unset".to_string(), |c| c.to_string());
    format!(
        "payments:  {} spent today (cap {}), {} in all (cap {}), {} payments; per request cap {}{}",
        spend.today,
        cap(caps.max_per_day),
        spend.total,
        cap(caps.max_total),
        spend.payments,
        cap(caps.max_per_request),
        if caps.may_pay() { "" } else { "; payments are off" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn offer(amount: u64) -> Offer {
        Offer {
            version: 2,
            network: "eip155:31337".into(),
            amount: U256::from(amount),
            asset: Address::repeat_byte(1),
            pay_to: Address::repeat_byte(2),
            max_timeout_seconds: 60,
            token_name: "T".into(),
            token_version: "1".into(),
            raw: json!({}),
            resource: json!({}),
        }
    }

    fn caps() -> Caps {
        Caps {
            max_per_request: Some(100),
            max_per_day: Some(250),
            max_total: Some(1000),
            networks: vec!["eip155:31337".into()],
            assets: vec![Address::repeat_byte(1)],
        }
    }

    const WHAT: Purchase = Purchase { provider: "http://p", piece: "bafk", offset: 0, bytes: 10 };

    #[test]
    fn caps_are_checked_before_anything_is_recorded_and_are_never_passed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let off = Ledger::new(store.clone(), Caps::default());
        assert_eq!(off.authorize(&offer(1), &WHAT), Err(Refusal::Off));
        let l = Ledger::new(store.clone(), caps());
        assert!(matches!(l.authorize(&offer(101), &WHAT), Err(Refusal::PerRequest { .. })));
        let mut other = offer(1);
        other.network = "eip155:1".into();
        assert_eq!(l.authorize(&other, &WHAT), Err(Refusal::Network("eip155:1".into())));
        let mut other = offer(1);
        other.asset = Address::repeat_byte(9);
        assert!(matches!(l.authorize(&other, &WHAT), Err(Refusal::Asset(_))));
        assert!(payments(&store).unwrap().is_empty(), "refusals record nothing");
        let a = l.authorize(&offer(100), &WHAT).unwrap();
        let b = l.authorize(&offer(100), &WHAT).unwrap();
        assert!(matches!(l.authorize(&offer(51), &WHAT), Err(Refusal::PerDay { spent: 200, .. })));
        l.settled(a, &Settlement { success: true, transaction: "0xaa".into(), ..Default::default() });
        l.unconfirmed(b, "HTTP 500");
        let list = payments(&store).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].state.as_str(), list[0].transaction.as_deref()), ("settled", Some("0xaa")));
        assert_eq!(list[1].state, "unconfirmed", "an unconfirmed payment still counts");
        assert_eq!(l.spend().unwrap(), Spend { today: 200, total: 200, payments: 2 });
        assert!(payments_json(&list).lines().all(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["amount"] == "100" && v["bytes"] == 10
        }));
        // the total cap counts every day
        let tight = Ledger::new(store, Caps { max_total: Some(250), max_per_day: Some(10_000), ..caps() });
        assert!(matches!(tight.authorize(&offer(51), &WHAT), Err(Refusal::Total { spent: 200, .. })));
    }

    #[test]
    fn concurrent_payers_never_jointly_pass_a_cap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let l = Arc::new(Ledger::new(store.clone(), Caps { max_per_day: Some(1000), ..caps() }));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || (0..10).filter(|_| l.authorize(&offer(30), &WHAT).is_ok()).count())
            })
            .collect();
        let ok: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(ok, 33, "1000 / 30 payments fit the cap");
        assert_eq!(l.spend().unwrap().total, 990);
    }
}
