//! The provider's routes: Curio's PDP API under `/pdp/`, FRC-0066 `/piece/{cid}`, and
//! the loopback-only `/admin/` knobs. Each route is a function from the request to a
//! [`Reply`]; errors are plain text with Curio's status codes.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, U256};
use cid::Cid;
use serde_json::json;
use tiny_http::{Method, Request};

use super::http::{Body, Range, Reply, header, json_body, new_uuid, parse_range, str_field};
use super::state::{DataSet, PieceInfo, SetPiece, StateError, Tx, TxKind, Upload, now_ms};
use super::{MAX_PIECE_PAYLOAD, Provider};
use crate::filecoin::commp::{Commp, Piece};
use crate::filecoin::fwss;

/// Pulls in progress (`POST /pdp/piece/pull`), by the request's extraData.
#[derive(Default)]
pub struct Pulls(Mutex<HashMap<String, Job>>);

impl From<StateError> for Reply {
    fn from(e: StateError) -> Reply {
        log::error!("provider: {e}");
        Reply::error(500, e.to_string())
    }
}

/// Serves one request.
pub fn handle(p: &Arc<Provider>, mut request: Request) {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let path = path.to_string();
    let query = query.to_string();
    let admin = path.starts_with("/admin/");
    let reply = if admin {
        let loopback = request.remote_addr().is_some_and(|a| a.ip().is_loopback());
        if loopback { admin_route(p, &path, &query) } else { Reply::error(403, "admin routes answer on loopback only") }
    } else if p.knobs.offline.load(Ordering::Relaxed) {
        Reply::error(503, "offline (test knob)")
    } else if p.knobs.errors.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
        Reply::error(500, "injected failure (test knob)")
    } else {
        let slow = p.knobs.slow_ms.load(Ordering::Relaxed);
        if slow > 0 {
            std::thread::sleep(Duration::from_millis(slow));
        }
        route(p, &mut request, &path, &query).unwrap_or_else(|r| r)
    };
    reply.send(request);
}

fn route(p: &Arc<Provider>, req: &mut Request, path: &str, query: &str) -> Result<Reply, Reply> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    match (&method, parts.as_slice()) {
        // the payee rides along, so a cidfs client needs no registry to sign for it
        (Method::Get, ["pdp", "ping"]) => Ok(Reply::status(200).header("X-Payee", p.payee.to_string())),
        (Method::Post, ["pdp", "piece"]) => post_piece(p, req),
        (Method::Get, ["pdp", "piece"]) => find_piece(p, query),
        (Method::Put, ["pdp", "piece", "upload", id]) => put_upload(p, req, id),
        (Method::Post, ["pdp", "piece", "uploads"]) => new_streaming_upload(p),
        (Method::Put, ["pdp", "piece", "uploads", id]) => put_streaming(p, req, id),
        (Method::Post, ["pdp", "piece", "uploads", id]) => finalize_streaming(p, req, id),
        (Method::Get, ["pdp", "piece", cid, "status"]) => piece_status(p, cid),
        (Method::Post, ["pdp", "piece", "pull"]) => pull(p, req),
        (Method::Post, ["pdp", "data-sets"]) => create_data_set(p, req, false),
        (Method::Post, ["pdp", "data-sets", "create-and-add"]) => create_data_set(p, req, true),
        (Method::Get, ["pdp", "data-sets", "created", tx]) => created_status(p, tx),
        (Method::Get, ["pdp", "data-sets", id]) => get_data_set(p, id),
        (Method::Post, ["pdp", "data-sets", id, "pieces"]) => add_pieces(p, req, id),
        (Method::Get, ["pdp", "data-sets", id, "pieces", "added", tx]) => added_status(p, id, tx),
        (Method::Delete, ["pdp", "data-sets", id, "pieces", piece_id]) => delete_piece(p, req, id, piece_id),
        (Method::Get | Method::Head, ["piece", cid]) => get_piece(p, req, cid),
        _ => Err(Reply::error(404, format!("no route {method} {path}"))),
    }
}

// ---- pieces -------------------------------------------------------------------------

/// A v2 piece CID from text: 400 unless it is one.
fn piece_cid(text: &str) -> Result<(Cid, Piece), Reply> {
    let cid = Cid::try_from(text).map_err(|e| Reply::error(400, format!("{text:?} is not a CID: {e}")))?;
    let piece = Piece::from_cid_v2(&cid).ok_or_else(|| {
        Reply::error(400, format!("{cid} is not a piece CID v2 (bafkzcib…); v1 CIDs are not taken here"))
    })?;
    if piece.payload_size < 127 {
        return Err(Reply::error(400, format!("{cid}: a piece holds at least 127 bytes")));
    }
    if piece.payload_size > MAX_PIECE_PAYLOAD {
        return Err(Reply::error(413, format!("{cid}: larger than {MAX_PIECE_PAYLOAD} bytes")));
    }
    Ok((cid, piece))
}

fn post_piece(p: &Provider, req: &mut Request) -> Result<Reply, Reply> {
    let body = json_body(req)?;
    let (cid, _) = piece_cid(str_field(&body, "pieceCid")?)?;
    if p.state.piece(&cid.to_string())?.is_some() {
        return Ok(Reply::json(200, &json!({ "pieceCid": cid.to_string() })));
    }
    room_for_upload(p)?;
    let id = new_uuid();
    p.state.put_upload(&id, &Upload { declared: Some(cid.to_string()), received: None, created_ms: now_ms() })?;
    Ok(Reply::status(201).header("Location", format!("/pdp/piece/upload/{id}")))
}

fn refuse_uploads(p: &Provider) -> Result<(), Reply> {
    match p.knobs.refuse_uploads.load(Ordering::Relaxed) {
        true => Err(Reply::error(503, "not taking uploads (test knob)")),
        false => Ok(()),
    }
}

/// Upload sessions open at once (anyone may open one): more are refused with 429 until
/// some finish or expire (see [`super::state::UPLOAD_TTL`]).
pub const MAX_OPEN_UPLOADS: u64 = 1024;

/// A new upload session may be opened.
fn room_for_upload(p: &Provider) -> Result<(), Reply> {
    refuse_uploads(p)?;
    match p.state.upload_count()? >= MAX_OPEN_UPLOADS {
        true => Err(Reply::error(429, format!("{MAX_OPEN_UPLOADS} uploads are open already: try again later"))),
        false => Ok(()),
    }
}

/// Streams a request body into the upload file, through CommP; at most `limit` bytes.
fn receive(p: &Provider, reader: &mut dyn Read, id: &str, limit: u64) -> Result<(Piece, Vec<[u8; 32]>), Reply> {
    let path = p.state.upload_path(id);
    let mut file = crate::store::private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| Reply::error(500, format!("upload file: {e}")))?;
    let mut commp = Commp::with_threads(2);
    let mut buf = vec![0u8; 1 << 20];
    let fail = |r: Reply| {
        let _ = std::fs::remove_file(&path);
        r
    };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(Reply::error(400, format!("reading the upload: {e}")))),
        };
        if commp.len() + n as u64 > limit {
            return Err(fail(Reply::error(413, format!("the upload is larger than {limit} bytes"))));
        }
        commp.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| fail(Reply::error(500, format!("writing the upload: {e}"))))?;
    }
    file.sync_data().map_err(|e| fail(Reply::error(500, format!("writing the upload: {e}"))))?;
    Ok(commp.finish_with_blocks())
}

/// Moves a verified upload into the pieces held.
fn keep_piece(p: &Provider, id: &str, piece: &Piece, roots: &[[u8; 32]]) -> Result<(), Reply> {
    let cid = piece.cid_v2().to_string();
    let io = |e: std::io::Error| Reply::error(500, format!("keeping piece {cid}: {e}"));
    let tree: Vec<u8> = roots.iter().flatten().copied().collect();
    let tmp = p.state.upload_path(&format!("{id}.tree"));
    std::fs::write(&tmp, tree).map_err(io)?;
    std::fs::rename(&tmp, p.state.tree_path(&cid)).map_err(io)?;
    std::fs::rename(p.state.upload_path(id), p.state.piece_path(&cid)).map_err(io)?;
    let info = PieceInfo { payload_size: piece.payload_size, v1: piece.cid_v1().to_string(), stored_ms: now_ms() };
    p.state.put_piece(&cid, &info)?;
    p.state.remove_upload(id)?;
    log::info!("provider: holding piece {cid} ({} bytes)", piece.payload_size);
    Ok(())
}

fn put_upload(p: &Provider, req: &mut Request, id: &str) -> Result<Reply, Reply> {
    let upload = p.state.upload(id)?.ok_or_else(|| Reply::error(404, format!("no upload {id}")))?;
    let Some(declared) = upload.declared.filter(|_| upload.received.is_none()) else {
        return Err(Reply::error(409, format!("upload {id} is a streaming upload or done already")));
    };
    refuse_uploads(p)?;
    let (_, want) = piece_cid(&declared)?;
    let (piece, roots) = receive(p, req.as_reader(), id, want.payload_size)?;
    if piece != want {
        let _ = std::fs::remove_file(p.state.upload_path(id));
        return Err(Reply::error(
            400,
            format!(
                "the bytes sent ({} bytes) are piece {}, not {declared}: nothing was kept",
                piece.payload_size,
                piece.cid_v2()
            ),
        ));
    }
    keep_piece(p, id, &piece, &roots)?;
    Ok(Reply::status(204))
}

fn new_streaming_upload(p: &Provider) -> Result<Reply, Reply> {
    room_for_upload(p)?;
    let id = new_uuid();
    p.state.put_upload(&id, &Upload { created_ms: now_ms(), ..Default::default() })?;
    Ok(Reply::status(201).header("Location", format!("/pdp/piece/uploads/{id}")))
}

fn put_streaming(p: &Provider, req: &mut Request, id: &str) -> Result<Reply, Reply> {
    let mut upload = p.state.upload(id)?.ok_or_else(|| Reply::error(404, format!("no upload {id}")))?;
    if upload.declared.is_some() {
        return Err(Reply::error(409, format!("upload {id} is not a streaming upload")));
    }
    refuse_uploads(p)?;
    let (piece, roots) = receive(p, req.as_reader(), id, MAX_PIECE_PAYLOAD)?;
    if piece.payload_size < 127 {
        let _ = std::fs::remove_file(p.state.upload_path(id));
        return Err(Reply::error(400, "a piece holds at least 127 bytes"));
    }
    let tree: Vec<u8> = roots.iter().flatten().copied().collect();
    std::fs::write(p.state.upload_path(&format!("{id}.tree")), tree)
        .map_err(|e| Reply::error(500, format!("upload {id}: {e}")))?;
    upload.received = Some(piece.cid_v2().to_string());
    p.state.put_upload(id, &upload)?;
    Ok(Reply::status(204))
}

fn finalize_streaming(p: &Provider, req: &mut Request, id: &str) -> Result<Reply, Reply> {
    let body = json_body(req)?;
    let upload = p.state.upload(id)?.ok_or_else(|| Reply::error(404, format!("no upload {id}")))?;
    let (cid, want) = piece_cid(str_field(&body, "pieceCid")?)?;
    let Some(received) = upload.received else {
        return Err(Reply::error(400, format!("upload {id} has received no bytes yet")));
    };
    if received != cid.to_string() {
        p.state.remove_upload(id)?;
        let _ = std::fs::remove_file(p.state.upload_path(&format!("{id}.tree")));
        return Err(Reply::error(400, format!("the bytes sent are piece {received}, not {cid}: nothing was kept")));
    }
    let tree = std::fs::read(p.state.upload_path(&format!("{id}.tree")))
        .map_err(|e| Reply::error(500, format!("upload {id}: {e}")))?;
    let roots: Vec<[u8; 32]> = tree.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
    let _ = std::fs::remove_file(p.state.upload_path(&format!("{id}.tree")));
    keep_piece(p, id, &want, &roots)?;
    Ok(Reply::json(200, &json!({ "pieceCid": cid.to_string() })))
}

fn find_piece(p: &Provider, query: &str) -> Result<Reply, Reply> {
    let cid = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("pieceCid="))
        .ok_or_else(|| Reply::error(400, "missing the pieceCid parameter"))?;
    let (cid, _) = piece_cid(cid)?;
    match p.state.piece(&cid.to_string())? {
        Some(_) => Ok(Reply::json(200, &json!({ "pieceCid": cid.to_string() }))),
        None => Err(Reply::error(404, format!("piece {cid} is not held here"))),
    }
}

fn piece_status(p: &Provider, cid: &str) -> Result<Reply, Reply> {
    let (cid, _) = piece_cid(cid)?;
    match p.state.piece(&cid.to_string())? {
        Some(_) => Ok(Reply::json(
            200,
            &json!({ "pieceCid": cid.to_string(), "status": "complete", "indexed": true, "advertised": false, "retrieved": false }),
        )),
        None => Err(Reply::error(404, format!("piece {cid} is not held here"))),
    }
}

/// `GET|HEAD /piece/{cid}` (FRC-0066): the payload, ranged, immutable.
fn get_piece(p: &Provider, req: &Request, text: &str) -> Result<Reply, Reply> {
    let not_found = || Reply::error(404, format!("piece {text} is not held here"));
    let cid = p.state.resolve(text)?.ok_or_else(not_found)?;
    let info = p.state.piece(&cid)?.ok_or_else(not_found)?;
    let mut file = std::fs::File::open(p.state.piece_path(&cid)).map_err(|_| not_found())?;
    let len = info.payload_size;
    let (status, start, end) = match parse_range(header(req, "Range"), len) {
        Range::Whole => (200, 0, len),
        Range::Part(a, b) => (206, a, b),
        Range::Unsatisfiable => {
            return Err(Reply::error(416, format!("range not satisfiable: the piece is {len} bytes"))
                .header("Content-Range", format!("bytes */{len}")));
        }
    };
    let paid = match (&p.opts.pricing, req.method()) {
        (Some(pricing), Method::Get) => {
            let host = header(req, "Host").unwrap_or("localhost");
            let url = format!("http://{host}/piece/{text}");
            let payment = header(req, "PAYMENT-SIGNATURE").or_else(|| header(req, "X-PAYMENT"));
            Some(super::paywall::charge(pricing, &url, payment, start, end)?)
        }
        _ => None,
    };
    file.seek(SeekFrom::Start(start)).map_err(|e| Reply::error(500, e.to_string()))?;
    let mut reply = Reply::status(status)
        .header("Accept-Ranges", "bytes")
        .header("ETag", format!("\"{cid}\""))
        .header("Cache-Control", "public, max-age=29030400, immutable")
        .header("Content-Type", "application/octet-stream");
    if status == 206 {
        reply = reply.header("Content-Range", format!("bytes {start}-{}/{len}", end - 1));
    }
    if let Some(settlement) = paid {
        reply = reply.header("PAYMENT-RESPONSE", settlement.clone()).header("X-PAYMENT-RESPONSE", settlement);
    }
    reply.body = Body::Reader(Box::new(file.take(end - start)), (end - start) as usize);
    Ok(reply)
}

// ---- data sets ----------------------------------------------------------------------

fn new_tx_hash() -> String {
    fwss::to_hex(&crate::filecoin::keys::random_salt().unwrap_or([7; 32]))
}

fn confirmed(p: &Provider, tx: &Tx) -> bool {
    now_ms() >= tx.created_ms + p.opts.confirm_delay.as_millis() as u64
}

fn record_keeper(p: &Provider, body: &serde_json::Value) -> Result<(), Reply> {
    let rk = str_field(body, "recordKeeper")?;
    match rk.parse::<Address>() {
        Ok(a) if a == p.opts.chain.fwss => Ok(()),
        _ => Err(Reply::error(400, format!("recordKeeper {rk} is not the FWSS contract {}", p.opts.chain.fwss))),
    }
}

fn extra_data(body: &serde_json::Value) -> Result<Vec<u8>, Reply> {
    let text = str_field(body, "extraData")?;
    fwss::from_hex(text).ok_or_else(|| Reply::error(400, "extraData is not hex"))
}

fn signature_error(e: fwss::FwssError) -> Reply {
    match e {
        fwss::FwssError::Malformed(_) => Reply::error(400, e.to_string()),
        _ => Reply::error(403, e.to_string()),
    }
}

/// The piece CIDs of a request's `pieces` array, each held here (400 otherwise).
fn request_pieces(p: &Provider, body: &serde_json::Value) -> Result<Vec<Cid>, Reply> {
    let list = body.get("pieces").and_then(|v| v.as_array()).ok_or_else(|| Reply::error(400, "missing pieces"))?;
    if list.is_empty() || list.len() > 40 {
        return Err(Reply::error(400, format!("{} pieces: between 1 and 40 per request", list.len())));
    }
    let mut out = Vec::new();
    for item in list {
        let (cid, _) = piece_cid(str_field(item, "pieceCid")?)?;
        if p.state.piece(&cid.to_string())?.is_none() {
            return Err(Reply::error(400, format!("piece {cid} is not held here: upload it first")));
        }
        out.push(cid);
    }
    Ok(out)
}

fn create_data_set(p: &Provider, req: &mut Request, and_add: bool) -> Result<Reply, Reply> {
    let body = json_body(req)?;
    record_keeper(p, &body)?;
    let extra = extra_data(&body)?;
    let (create_extra, add_extra) = if and_add {
        let (c, a) = create_and_add_parts(&extra)?;
        (c, Some(a))
    } else {
        (extra, None)
    };
    let create = fwss::verify_create(&p.opts.chain, p.payee, &create_extra).map_err(signature_error)?;
    let pieces = match &add_extra {
        Some(add) => {
            let cids = request_pieces(p, &body)?;
            let bytes: Vec<Vec<u8>> = cids.iter().map(Cid::to_bytes).collect();
            let (nonce, _) =
                fwss::verify_add_pieces(&p.opts.chain, create.payer, create.client_data_set_id, &bytes, add)
                    .map_err(signature_error)?;
            if !p.state.take_nonce(&create.payer.to_string(), &nonce.to_string())? {
                return Err(Reply::error(409, format!("nonce {nonce} was used before")));
            }
            cids
        }
        None => Vec::new(),
    };
    let payer = create.payer;
    let (id, tx) = new_data_set(p, create)?;
    if !pieces.is_empty() {
        append_pieces(p, id, &pieces, &tx)?;
    }
    log::info!("provider: data set {id} for {payer} (tx {tx})");
    Ok(Reply::status(201).header("Location", format!("/pdp/data-sets/created/{tx}")))
}

/// Records a data set a verified create request asks for, with its (simulated) creation
/// transaction: (id, tx hash).
fn new_data_set(p: &Provider, create: fwss::CreateRequest) -> Result<(u64, String), Reply> {
    let tx = new_tx_hash();
    let ds = DataSet {
        payer: create.payer.to_string(),
        client_data_set_id: create.client_data_set_id.to_string(),
        metadata: create.metadata,
        create_tx: tx.clone(),
        next_challenge_ms: now_ms() + p.opts.proving_period.as_millis() as u64,
        ..Default::default()
    };
    Ok((p.state.create_data_set(ds, &tx)?, tx))
}

/// The two extraData of a create-and-add request: `abi.encode(bytes create, bytes add)`.
fn create_and_add_parts(extra: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Reply> {
    let (c, a) =
        <(alloy_primitives::Bytes, alloy_primitives::Bytes) as alloy_sol_types::SolValue>::abi_decode_params(extra)
            .map_err(|e| Reply::error(400, format!("extraData is malformed: {e}")))?;
    Ok((c.to_vec(), a.to_vec()))
}

/// Adds pieces to a data set under transaction `tx`; their ids.
fn append_pieces(p: &Provider, id: u64, cids: &[Cid], tx: &str) -> Result<Vec<u64>, Reply> {
    let ids = p
        .state
        .update_data_set(id, |ds| {
            let mut ids = Vec::new();
            for cid in cids {
                ds.pieces.push(SetPiece { piece_id: ds.next_piece_id, piece_cid: cid.to_string(), tx: tx.to_string() });
                ids.push(ds.next_piece_id);
                ds.next_piece_id += 1;
            }
            Ok(ids)
        })?
        .ok_or_else(|| Reply::error(404, format!("no data set {id}")))?;
    Ok(ids)
}

fn created_status(p: &Provider, hash: &str) -> Result<Reply, Reply> {
    let tx = p.state.tx(hash)?.filter(|t| t.kind == TxKind::Create);
    let tx = tx.ok_or_else(|| Reply::error(404, format!("no data set creation {hash}")))?;
    let done = confirmed(p, &tx);
    let mut v = json!({
        "createMessageHash": hash,
        "dataSetCreated": done,
        "service": "cidfs",
        "txStatus": if done { "confirmed" } else { "pending" },
        "ok": if done { json!(true) } else { serde_json::Value::Null },
    });
    if done {
        v["dataSetId"] = json!(tx.data_set);
    }
    Ok(Reply::json(200, &v))
}

/// A data set whose creation is confirmed, by its id in the path.
fn live_data_set(p: &Provider, id: &str) -> Result<DataSet, Reply> {
    let not_found = || Reply::error(404, format!("no data set {id}"));
    let id: u64 = id.parse().map_err(|_| not_found())?;
    let ds = p.state.data_set(id)?.ok_or_else(not_found)?;
    match p.state.tx(&ds.create_tx)? {
        Some(tx) if confirmed(p, &tx) => Ok(ds),
        _ => Err(not_found()),
    }
}

/// The pieces of a data set whose add transaction is confirmed.
pub(super) fn confirmed_pieces(p: &Provider, ds: &DataSet) -> Result<Vec<SetPiece>, StateError> {
    let mut out = Vec::new();
    for piece in &ds.pieces {
        if p.state.tx(&piece.tx)?.is_some_and(|t| confirmed(p, &t)) {
            out.push(piece.clone());
        }
    }
    Ok(out)
}

fn get_data_set(p: &Provider, id: &str) -> Result<Reply, Reply> {
    let ds = live_data_set(p, id)?;
    let pieces: Vec<serde_json::Value> = confirmed_pieces(p, &ds)?
        .iter()
        .map(|sp| json!({ "pieceId": sp.piece_id, "pieceCid": sp.piece_cid, "subPieceCid": sp.piece_cid, "subPieceOffset": 0 }))
        .collect();
    Ok(Reply::json(
        200,
        &json!({
            "id": ds.id,
            "nextChallengeEpoch": ds.next_challenge_ms / 30_000,
            "pieces": pieces,
            "provenPeriods": ds.proven_periods,
            "faultedPeriods": ds.faulted_periods,
            "lastFault": ds.last_fault,
        }),
    ))
}

fn client_id(ds: &DataSet) -> Result<U256, Reply> {
    ds.client_data_set_id.parse().map_err(|_| Reply::error(500, "a data set with a bad client id"))
}

fn payer(ds: &DataSet) -> Result<Address, Reply> {
    ds.payer.parse().map_err(|_| Reply::error(500, "a data set with a bad payer"))
}

fn add_pieces(p: &Provider, req: &mut Request, id: &str) -> Result<Reply, Reply> {
    let body = json_body(req)?;
    let ds = live_data_set(p, id)?;
    let cids = request_pieces(p, &body)?;
    let bytes: Vec<Vec<u8>> = cids.iter().map(Cid::to_bytes).collect();
    let extra = extra_data(&body)?;
    let (nonce, _) = fwss::verify_add_pieces(&p.opts.chain, payer(&ds)?, client_id(&ds)?, &bytes, &extra)
        .map_err(signature_error)?;
    if !p.state.take_nonce(&ds.payer, &nonce.to_string())? {
        return Err(Reply::error(409, format!("nonce {nonce} was used before")));
    }
    let tx = new_tx_hash();
    let ids = append_pieces(p, ds.id, &cids, &tx)?;
    p.state.put_tx(&tx, &Tx { kind: TxKind::Add { piece_ids: ids }, data_set: ds.id, created_ms: now_ms() })?;
    Ok(Reply::status(201).header("Location", format!("/pdp/data-sets/{}/pieces/added/{tx}", ds.id)))
}

fn added_status(p: &Provider, id: &str, hash: &str) -> Result<Reply, Reply> {
    let tx = p.state.tx(hash)?.ok_or_else(|| Reply::error(404, format!("no transaction {hash}")))?;
    let TxKind::Add { piece_ids } = &tx.kind else {
        return Err(Reply::error(404, format!("{hash} added no pieces")));
    };
    if id.parse::<u64>().ok() != Some(tx.data_set) {
        return Err(Reply::error(404, format!("{hash} is not a transaction of data set {id}")));
    }
    let done = confirmed(p, &tx);
    let mut v = json!({
        "txHash": hash,
        "txStatus": if done { "confirmed" } else { "pending" },
        "dataSetId": tx.data_set,
        "pieceCount": piece_ids.len(),
        "addMessageOk": if done { json!(true) } else { serde_json::Value::Null },
        "piecesAdded": done,
    });
    if done {
        v["confirmedPieceIds"] = json!(piece_ids);
    }
    Ok(Reply::json(200, &v))
}

fn delete_piece(p: &Provider, req: &mut Request, id: &str, piece_id: &str) -> Result<Reply, Reply> {
    let body = json_body(req)?;
    let ds = live_data_set(p, id)?;
    let piece_id: u64 = piece_id.parse().map_err(|_| Reply::error(400, format!("{piece_id:?} is not a piece id")))?;
    if !ds.pieces.iter().any(|sp| sp.piece_id == piece_id) {
        return Err(Reply::error(404, format!("data set {id} has no piece {piece_id}")));
    }
    let extra = extra_data(&body)?;
    fwss::verify_removals(&p.opts.chain, payer(&ds)?, client_id(&ds)?, &[piece_id], &extra).map_err(signature_error)?;
    p.state.update_data_set(ds.id, |ds| {
        ds.pieces.retain(|sp| sp.piece_id != piece_id);
        Ok(())
    })?;
    let tx = new_tx_hash();
    p.state.put_tx(&tx, &Tx { kind: TxKind::Remove { piece_id }, data_set: ds.id, created_ms: now_ms() })?;
    log::info!("provider: piece {piece_id} removed from data set {id}");
    Ok(Reply::json(200, &json!({ "txHash": tx })))
}

// ---- pull (provider to provider) ------------------------------------------------------

/// `POST /pdp/piece/pull`: fetch pieces from other providers' `/piece/` URLs, check
/// them, and add them to a data set (the one named, or one the extraData creates).
/// Asked again with the same body, it reports progress: `pending`, then `complete` (or
/// `failed`).
fn pull(p: &Arc<Provider>, req: &mut Request) -> Result<Reply, Reply> {
    let body = json_body(req)?;
    let extra_text = str_field(&body, "extraData")?.to_string();
    let list = body.get("pieces").and_then(|v| v.as_array()).ok_or_else(|| Reply::error(400, "missing pieces"))?;
    let mut wanted = Vec::new();
    for item in list {
        let (cid, piece) = piece_cid(str_field(item, "pieceCid")?)?;
        let url = str_field(item, "sourceUrl")?.to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Reply::error(400, format!("sourceUrl {url:?} is not an HTTP URL")));
        }
        wanted.push((cid, piece, url));
    }
    if wanted.is_empty() || wanted.len() > 40 {
        return Err(Reply::error(400, format!("{} pieces: between 1 and 40 per request", wanted.len())));
    }
    let existing = p.pulls.0.lock().expect("lock poisoned").get(&extra_text).cloned();
    let job = match existing {
        Some(job) => job,
        None => {
            let data_set = pull_target(p, &body, &wanted)?;
            let job = Arc::new(Mutex::new(HashMap::new()));
            p.pulls.0.lock().expect("lock poisoned").insert(extra_text, job.clone());
            start_pull(p.clone(), wanted.clone(), data_set, job.clone());
            job
        }
    };
    // progress: what the pull thread reported
    let statuses = job.lock().expect("lock poisoned").clone();
    let mut all = "complete";
    let pieces: Vec<serde_json::Value> = wanted
        .iter()
        .map(|(cid, _, _)| {
            let s = statuses.get(&cid.to_string()).map_or("pending", String::as_str).to_string();
            if s == "failed" {
                all = "failed";
            } else if s != "complete" && all != "failed" {
                all = "pending";
            }
            json!({ "pieceCid": cid.to_string(), "status": s })
        })
        .collect();
    Ok(Reply::json(200, &json!({ "status": all, "pieces": pieces })))
}

/// Checks a pull's signature; the data set the pieces go to (made now if the extraData
/// creates one).
fn pull_target(p: &Provider, body: &serde_json::Value, wanted: &[(Cid, Piece, String)]) -> Result<u64, Reply> {
    let extra = extra_data(body)?;
    let bytes: Vec<Vec<u8>> = wanted.iter().map(|(c, _, _)| c.to_bytes()).collect();
    let (id, payer, nonce) = match body.get("dataSetId").and_then(|v| v.as_u64()) {
        Some(id) => {
            let ds = live_data_set(p, &id.to_string())?;
            let (nonce, _) = fwss::verify_add_pieces(&p.opts.chain, payer(&ds)?, client_id(&ds)?, &bytes, &extra)
                .map_err(signature_error)?;
            (id, ds.payer.clone(), nonce)
        }
        None => {
            let (c, a) = create_and_add_parts(&extra)?;
            let create = fwss::verify_create(&p.opts.chain, p.payee, &c).map_err(signature_error)?;
            let (nonce, _) =
                fwss::verify_add_pieces(&p.opts.chain, create.payer, create.client_data_set_id, &bytes, &a)
                    .map_err(signature_error)?;
            let payer = create.payer.to_string();
            (new_data_set(p, create)?.0, payer, nonce)
        }
    };
    if !p.state.take_nonce(&payer, &nonce.to_string())? {
        return Err(Reply::error(409, format!("nonce {nonce} was used before")));
    }
    Ok(id)
}

/// How long one pull of a piece may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);

type Job = Arc<Mutex<HashMap<String, String>>>;

fn start_pull(p: Arc<Provider>, wanted: Vec<(Cid, Piece, String)>, data_set: u64, job: Job) {
    let spawned = std::thread::Builder::new().name("cidfs-provider-pull".into()).spawn(move || {
        let mut cids = Vec::new();
        for (cid, piece, url) in &wanted {
            let status = match fetch_piece(&p, piece, url) {
                Ok(()) => {
                    cids.push(*cid);
                    "complete"
                }
                Err(e) => {
                    log::warn!("provider: pulling {cid} from {url}: {e}");
                    "failed"
                }
            };
            job.lock().expect("lock poisoned").insert(cid.to_string(), status.to_string());
        }
        if cids.len() == wanted.len() {
            let tx = new_tx_hash();
            let added = append_pieces(&p, data_set, &cids, &tx).map(|ids| {
                let kind = TxKind::Add { piece_ids: ids };
                p.state.put_tx(&tx, &Tx { kind, data_set, created_ms: now_ms() })
            });
            if !matches!(added, Ok(Ok(()))) {
                log::error!("provider: adding pulled pieces to data set {data_set} failed");
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("provider: cannot start a pull: {e}");
    }
}

/// Downloads a piece from another provider, checks its CommP and keeps it.
fn fetch_piece(p: &Provider, piece: &Piece, url: &str) -> Result<(), String> {
    if p.state.piece(&piece.cid_v2().to_string()).map_err(|e| e.to_string())?.is_some() {
        return Ok(());
    }
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(PULL_TIMEOUT)).build().into();
    let resp = agent.get(url).call().map_err(|e| e.to_string())?;
    let mut body = resp.into_body().into_reader();
    let id = new_uuid();
    let (got, roots) = receive(p, &mut body, &id, piece.payload_size).map_err(|r| r.text())?;
    if got != *piece {
        let _ = std::fs::remove_file(p.state.upload_path(&id));
        return Err(format!("{url} sent piece {}, not {}", got.cid_v2(), piece.cid_v2()));
    }
    keep_piece(p, &id, piece, &roots).map_err(|r| r.text())
}

// ---- test knobs ---------------------------------------------------------------------

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// `POST /admin/{drop,flip,refuse-uploads,slow,errors,offline}` (loopback only):
/// `drop?piece=CID` deletes a piece's file (the records stay: it is *lost*);
/// `flip?piece=CID&offset=N` flips one byte of it; `refuse-uploads?on=BOOL`;
/// `slow?ms=N` delays every reply; `errors?n=N` fails the next N requests with 500;
/// `offline?on=BOOL` answers 503 to everything but `/admin`.
fn admin_route(p: &Provider, path: &str, query: &str) -> Reply {
    let on = || param(query, "on").is_none_or(|v| v == "true" || v == "1");
    let num = |name: &str| param(query, name).and_then(|v| v.parse::<u64>().ok());
    let piece_file = || -> Result<std::path::PathBuf, Reply> {
        let cid = param(query, "piece").ok_or_else(|| Reply::error(400, "missing piece="))?;
        let cid = p.state.resolve(cid)?.ok_or_else(|| Reply::error(404, format!("no piece {cid}")))?;
        Ok(p.state.piece_path(&cid))
    };
    let result = match path.trim_start_matches("/admin/") {
        "drop" => piece_file().and_then(|f| std::fs::remove_file(f).map_err(|e| Reply::error(500, e.to_string()))),
        "flip" => piece_file().and_then(|f| {
            let offset = num("offset").unwrap_or(0);
            flip_byte(&f, offset).map_err(|e| Reply::error(500, format!("flipping byte {offset}: {e}")))
        }),
        "refuse-uploads" => {
            p.knobs.refuse_uploads.store(on(), Ordering::Relaxed);
            Ok(())
        }
        "slow" => {
            p.knobs.slow_ms.store(num("ms").unwrap_or(0), Ordering::Relaxed);
            Ok(())
        }
        "errors" => {
            p.knobs.errors.store(num("n").unwrap_or(0), Ordering::Relaxed);
            Ok(())
        }
        "offline" => {
            p.knobs.offline.store(on(), Ordering::Relaxed);
            Ok(())
        }
        other => Err(Reply::error(404, format!("no knob {other:?}"))),
    };
    match result {
        Ok(()) => Reply::status(204),
        Err(r) => r,
    }
}

fn flip_byte(path: &std::path::Path, offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset)?;
    b[0] ^= 0xff;
    f.write_all_at(&b, offset)?;
    f.sync_data()
}
