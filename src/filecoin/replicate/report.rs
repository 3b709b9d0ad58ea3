//! What `cidfs pieces` and `cidfs status` show of the Filecoin side: every piece with its
//! replicas, and the totals. Pure formatting over the store's records.

use serde_json::json;

use super::Progress;
use super::table::{self, Replica, ReplicaState};
use crate::block::human_bytes;
use crate::store::{PieceRecord, Store, StoreError};

fn replicas_of<'a>(all: &'a [Replica], piece: &PieceRecord) -> Vec<&'a Replica> {
    let cid = piece.piece.to_string();
    all.iter().filter(|r| r.piece == cid).collect()
}

/// One JSON object per line, one per piece (see the README for the fields).
pub fn pieces_json(store: &Store) -> Result<String, StoreError> {
    let all = table::replicas(store)?;
    let mut out = String::new();
    for p in store.pieces()? {
        let replicas: Vec<serde_json::Value> = replicas_of(&all, &p)
            .iter()
            .map(|r| {
                json!({
                    "provider": r.provider,
                    "data_set": r.data_set,
                    "piece_id": r.piece_id,
                    "state": r.state.name(),
                    "last_audit": r.last_audit,
                    "last_error": r.last_error,
                    "next_challenge_epoch": r.next_challenge_epoch,
                    "pulled_from": r.pulled_from,
                })
            })
            .collect();
        let v = json!({
            "piece": p.piece.to_string(),
            "payload_size": p.payload_size,
            "padded_size": p.padded_size,
            "segment": p.segment,
            "encrypted": p.salt.is_some(),
            "replicas": replicas,
        });
        out.push_str(&v.to_string());
        out.push('\n');
    }
    Ok(out)
}

/// The human listing: a line per piece, an indented line per replica.
pub fn pieces_text(store: &Store) -> Result<String, StoreError> {
    let all = table::replicas(store)?;
    let pieces = store.pieces()?;
    if pieces.is_empty() {
        return Ok("no pieces yet: a segment becomes a piece when it is full, or after --seal-after of quiet\n".into());
    }
    let mut out = String::new();
    for p in pieces {
        out.push_str(&format!(
            "{}  {}  segment {}{}\n",
            p.piece,
            human_bytes(p.payload_size),
            p.segment,
            if p.salt.is_some() { "" } else { "  (public)" }
        ));
        let mine = replicas_of(&all, &p);
        if mine.is_empty() {
            out.push_str("    no replicas yet\n");
        }
        for r in mine {
            let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            out.push_str(&format!(
                "    {}  data set {}  piece {}  {}  audit: {}  next challenge: {}{}\n",
                r.provider,
                opt(r.data_set),
                opt(r.piece_id),
                r.state.name(),
                r.last_audit.as_deref().unwrap_or("-"),
                r.next_challenge_epoch.map_or("-".to_string(), |e| format!("epoch {e}")),
                r.last_error.as_deref().map(|e| format!("  ({e})")).unwrap_or_default(),
            ));
        }
    }
    Ok(out)
}

/// `cidfs status` lines: sealed, at N, pending; the upload under way.
pub fn status_lines(
    store: &Store,
    replicas: usize,
    providers: usize,
    progress: Option<&Progress>,
) -> Result<String, StoreError> {
    let all = table::replicas(store)?;
    let pieces = store.pieces()?;
    let sealed: u64 = pieces.iter().map(|p| p.payload_size).sum();
    let at_n =
        pieces.iter().filter(|p| replicas_of(&all, p).iter().filter(|r| r.state.is_held()).count() >= replicas).count();
    let at_n_bytes: u64 = pieces
        .iter()
        .filter(|p| replicas_of(&all, p).iter().filter(|r| r.state.is_held()).count() >= replicas)
        .map(|p| p.payload_size)
        .sum();
    let mut out = format!(
        "filecoin:  {} pieces, {} sealed; {at_n} ({}) at {replicas} replicas; {} pending; {} not sealed yet\n",
        pieces.len(),
        human_bytes(sealed),
        human_bytes(at_n_bytes),
        pieces.len() - at_n,
        human_bytes(store.unsealed_bytes()?),
    );
    if providers == 0 {
        out.push_str(
            "           no storage provider configured: nothing leaves this machine. Add one with \
             `cidfs providers add URL` (or --provider URL on mount/daemon)\n",
        );
    }
    let failed = all.iter().filter(|r| r.state == ReplicaState::Failed).count();
    if failed > 0 {
        out.push_str(&format!("           {failed} replicas failed and are being replaced (`cidfs pieces`)\n"));
    }
    if let Some(p) = progress {
        let sent = p.sent.load(std::sync::atomic::Ordering::Relaxed);
        match p.current.lock().expect("lock poisoned").as_ref() {
            Some(u) => {
                let rate = u.sent as f64 / u.started.elapsed().as_secs_f64().max(0.001);
                out.push_str(&format!(
                    "uploads:   piece {} to {}: {} of {} ({}/s); {} sent since start\n",
                    u.piece,
                    u.provider,
                    human_bytes(u.sent),
                    human_bytes(u.total),
                    human_bytes(rate as u64),
                    human_bytes(sent)
                ));
            }
            None => out.push_str(&format!("uploads:   idle; {} sent since start\n", human_bytes(sent))),
        }
    }
    Ok(out)
}

/// `cidfs.pieces` of the DAG under `root`: one line per piece holding some of its blocks
/// (`PIECE bytes`), and a line for bytes not sealed into a piece yet.
pub fn dag_pieces(store: &Store, root: &cid::Cid, replicas: bool) -> Result<String, StoreError> {
    let live = store.reachable(&[*root])?.live;
    let pieces: std::collections::HashMap<u32, PieceRecord> =
        store.pieces()?.into_iter().map(|p| (p.segment, p)).collect();
    let mut per_piece: std::collections::BTreeMap<String, u64> = Default::default();
    let mut unsealed = 0u64;
    for cid in &live {
        let Some(loc) = store.location(cid)? else { continue };
        match pieces.get(&loc.segment) {
            Some(p) => *per_piece.entry(p.piece.to_string()).or_default() += u64::from(loc.len),
            None => unsealed += u64::from(loc.len),
        }
    }
    let mut out = String::new();
    if replicas {
        let all = table::replicas(store)?;
        for piece in per_piece.keys() {
            for r in all.iter().filter(|r| &r.piece == piece) {
                out.push_str(&format!("{piece} {} {}\n", r.provider, r.state.name()));
            }
        }
    } else {
        for (piece, bytes) in &per_piece {
            out.push_str(&format!("{piece} {bytes}\n"));
        }
        if unsealed > 0 {
            out.push_str(&format!("unsealed {unsealed}\n"));
        }
    }
    Ok(out)
}
