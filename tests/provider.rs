//! `cidfs provider serve` over raw HTTP: what it refuses (with Curio's status codes), what
//! `/piece/` serves, what a restart keeps, and the simulated proving clock catching a lost
//! or changed piece. synapse-core's client against it is in `interop.rs`.

mod common;

use std::time::{Duration, Instant};

use alloy_primitives::U256;
use cidfs::filecoin::commp::commp;
use cidfs::filecoin::fwss::{self, Chain};
use cidfs::filecoin::wallet::Wallet;
use common::provider::ProviderProcess;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

fn done(r: ureq::http::Response<ureq::Body>) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = r.into_body().read_to_vec().unwrap_or_default();
    Resp { status, headers, body }
}

fn get(url: &str, range: Option<&str>) -> Resp {
    let mut req = agent().get(url);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    done(req.call().unwrap())
}

fn head(url: &str) -> Resp {
    done(agent().head(url).call().unwrap())
}

fn post(url: &str, body: &serde_json::Value) -> Resp {
    done(agent().post(url).header("Content-Type", "application/json").send(body.to_string().as_bytes()).unwrap())
}

fn put(url: &str, body: &[u8]) -> Resp {
    done(agent().put(url).send(body).unwrap())
}

/// Uploads `data` one-shot; the PUT's response.
fn upload(p: &ProviderProcess, data: &[u8], declared: &str) -> Resp {
    let r = post(&format!("{}/pdp/piece", p.url), &serde_json::json!({ "pieceCid": declared }));
    if r.status != 201 {
        return r;
    }
    put(&format!("{}{}", p.url, r.header("Location").unwrap()), data)
}

#[test]
fn an_upload_is_kept_only_if_its_bytes_are_its_piece_and_bad_cids_are_refused() {
    let p = ProviderProcess::start(&[]);
    let data = common::noise(100_000, 1);
    let piece = commp(&data).cid_v2().to_string();
    let other = commp(&common::noise(100_000, 2)).cid_v2().to_string();
    // the bytes of another piece: 400, nothing kept
    let r = upload(&p, &data, &other);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("nothing was kept"), "{}", r.text());
    assert_eq!(get(&format!("{}/pdp/piece?pieceCid={other}", p.url), None).status, 404);
    assert_eq!(head(&format!("{}/piece/{other}", p.url)).status, 404);
    // too many bytes for the declared piece: refused before they are all read
    let r = upload(&p, &[data.clone(), vec![1; 10]].concat(), &piece);
    assert!(r.status == 413 || r.status == 400, "{} {}", r.status, r.text());
    // the right bytes: kept, found
    assert_eq!(upload(&p, &data, &piece).status, 204);
    let found = get(&format!("{}/pdp/piece?pieceCid={piece}", p.url), None);
    assert_eq!((found.status, found.json()["pieceCid"].as_str().unwrap().to_string()), (200, piece.clone()));
    // and announced as held when declared again
    let again = post(&format!("{}/pdp/piece", p.url), &serde_json::json!({ "pieceCid": piece }));
    assert_eq!(again.status, 200);
    // v1 CIDs, non-CIDs and tiny pieces: 400
    let v1 = commp(&data).cid_v1().to_string();
    for bad in [v1.as_str(), "hello", &commp(&[1; 100]).cid_v2().to_string()] {
        let r = post(&format!("{}/pdp/piece", p.url), &serde_json::json!({ "pieceCid": bad }));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    // an unknown upload id: 404
    assert_eq!(put(&format!("{}/pdp/piece/upload/00000000-0000-0000-0000-000000000000", p.url), b"x").status, 404);
    // a streaming upload finalized with the wrong CID: 400, nothing kept
    let r = post(&format!("{}/pdp/piece/uploads", p.url), &serde_json::json!({}));
    assert_eq!(r.status, 201);
    let at = format!("{}{}", p.url, r.header("Location").unwrap());
    let more = common::noise(5000, 3);
    assert_eq!(put(&at, &more).status, 204);
    let r = post(&at, &serde_json::json!({ "pieceCid": other }));
    assert_eq!(r.status, 400, "{}", r.text());
    let right = commp(&more).cid_v2().to_string();
    assert_eq!(get(&format!("{}/pdp/piece?pieceCid={right}", p.url), None).status, 404);
}

#[test]
fn piece_retrieval_serves_ranges_immutably_and_survives_a_restart() {
    let p = ProviderProcess::start(&[]);
    let data = common::noise(1_000_000, 4);
    let piece = commp(&data);
    let cid = piece.cid_v2().to_string();
    assert_eq!(upload(&p, &data, &cid).status, 204);
    let url = format!("{}/piece/{cid}", p.url);
    let whole = get(&url, None);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, data);
    assert_eq!(whole.header("ETag"), Some(format!("\"{cid}\"").as_str()));
    assert_eq!(whole.header("Accept-Ranges"), Some("bytes"));
    assert!(whole.header("Cache-Control").unwrap().contains("immutable"));
    let part = get(&url, Some("bytes=1000-1999"));
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &data[1000..2000], "just the range");
    assert_eq!(part.header("Content-Range"), Some("bytes 1000-1999/1000000"));
    let tail = get(&url, Some("bytes=-10"));
    assert_eq!((tail.status, tail.body.as_slice()), (206, &data[data.len() - 10..]));
    let past = get(&url, Some("bytes=1000000-"));
    assert_eq!(past.status, 416);
    assert_eq!(past.header("Content-Range"), Some("bytes */1000000"));
    let h = head(&url);
    assert_eq!((h.status, h.header("Content-Length")), (200, Some("1000000")));
    // by its v1 CID too
    assert_eq!(get(&format!("{}/piece/{}", p.url, piece.cid_v1()), Some("bytes=0-9")).body, &data[..10]);
    // a restart keeps it
    let dir = p.stop();
    let p = ProviderProcess::start_in(dir, &[]);
    assert_eq!(get(&format!("{}/piece/{cid}", p.url), Some("bytes=5-9")).body, &data[5..10]);
}

fn wait_json(url: &str, key: &str) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(url, None);
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        let v = r.json();
        if v[key] == serde_json::json!(true) {
            return v;
        }
        assert!(Instant::now() < until, "{url} never had {key}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes a data set holding `pieces` for `wallet`; its id.
fn data_set_with(p: &ProviderProcess, wallet: &Wallet, pieces: &[String]) -> u64 {
    let chain = Chain::CALIBRATION;
    let payee = p.payee().parse().unwrap();
    let extra = fwss::create_data_set(wallet, &chain, U256::from(5), payee, &[]);
    let body = serde_json::json!({ "recordKeeper": chain.fwss.to_string(), "extraData": fwss::to_hex(&extra) });
    let r = post(&format!("{}/pdp/data-sets", p.url), &body);
    assert_eq!(r.status, 201, "{}", r.text());
    let created = wait_json(&format!("{}{}", p.url, r.header("Location").unwrap()), "dataSetCreated");
    let id = created["dataSetId"].as_u64().unwrap();
    let cids: Vec<(Vec<u8>, fwss::Metadata)> =
        pieces.iter().map(|c| (c.parse::<cid::Cid>().unwrap().to_bytes(), vec![])).collect();
    let extra = fwss::add_pieces(wallet, &chain, U256::from(5), U256::from(id * 1000 + 1), &cids);
    let list: Vec<serde_json::Value> =
        pieces.iter().map(|c| serde_json::json!({ "pieceCid": c, "subPieces": [] })).collect();
    let body = serde_json::json!({ "pieces": list, "extraData": fwss::to_hex(&extra) });
    let r = post(&format!("{}/pdp/data-sets/{id}/pieces", p.url), &body);
    assert_eq!(r.status, 201, "{}", r.text());
    wait_json(&format!("{}{}", p.url, r.header("Location").unwrap()), "piecesAdded");
    // the same nonce again: a replay, refused
    let r = post(&format!("{}/pdp/data-sets/{id}/pieces", p.url), &body);
    assert_eq!(r.status, 409, "{}", r.text());
    id
}

#[test]
fn signatures_are_checked_and_the_proving_clock_catches_a_changed_or_lost_piece() {
    let p = ProviderProcess::start(&["--confirm-delay", "200ms", "--proving-period", "300ms"]);
    let (a, b) = (common::noise(200_000, 5), common::noise(3_000_000, 6));
    let (ca, cb) = (commp(&a).cid_v2().to_string(), commp(&b).cid_v2().to_string());
    assert_eq!(upload(&p, &a, &ca).status, 204);
    assert_eq!(upload(&p, &b, &cb).status, 204);
    let wallet = Wallet::parse(&format!("0x{}", "42".repeat(32)), "t").unwrap();
    // a create signed for another payee, or on another chain: 403; garbage: 400
    let chain = Chain::CALIBRATION;
    let wrong = fwss::create_data_set(
        &wallet,
        &chain,
        U256::from(1),
        "0x0000000000000000000000000000000000000001".parse().unwrap(),
        &[],
    );
    let body =
        |extra: &[u8]| serde_json::json!({ "recordKeeper": chain.fwss.to_string(), "extraData": fwss::to_hex(extra) });
    assert_eq!(post(&format!("{}/pdp/data-sets", p.url), &body(&wrong)).status, 403);
    let mainnet = fwss::create_data_set(&wallet, &Chain::MAINNET, U256::from(1), p.payee().parse().unwrap(), &[]);
    assert_eq!(post(&format!("{}/pdp/data-sets", p.url), &body(&mainnet)).status, 403);
    assert_eq!(post(&format!("{}/pdp/data-sets", p.url), &body(b"junk")).status, 400);

    let id = data_set_with(&p, &wallet, &[ca.clone(), cb.clone()]);
    let ds_url = format!("{}/pdp/data-sets/{id}", p.url);
    let proven = |v: &serde_json::Value| v["provenPeriods"].as_u64().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while proven(&get(&ds_url, None).json()) < 2 {
        assert!(Instant::now() < until, "never proven");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&ds_url, None).json()["faultedPeriods"], 0);
    // another wallet cannot remove a piece; the payer can
    let stranger = Wallet::parse(&format!("0x{}", "43".repeat(32)), "t").unwrap();
    let del = |w: &Wallet, piece: u64| {
        let extra = fwss::schedule_removals(w, &chain, U256::from(5), &[piece]);
        done(
            agent()
                .delete(&format!("{ds_url}/pieces/{piece}"))
                .force_send_body()
                .send(serde_json::json!({ "extraData": fwss::to_hex(&extra) }).to_string().as_bytes())
                .unwrap(),
        )
    };
    assert_eq!(del(&stranger, 0).status, 403);
    // a lost piece: every challenge on it fails, and the data set holds only it
    let r = del(&wallet, 1);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(&ds_url, None).json()["pieces"].as_array().unwrap().len(), 1);
    assert_eq!(post(&format!("{}/admin/drop?piece={ca}", p.url), &serde_json::json!({})).status, 204);
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let v = get(&ds_url, None).json();
        if v["faultedPeriods"].as_u64().unwrap() > 0 {
            assert!(v["lastFault"].as_str().unwrap().contains(&ca), "{v}");
            break;
        }
        assert!(Instant::now() < until, "a lost piece was never caught: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn test_knobs_refuse_uploads_fail_requests_and_go_offline() {
    let p = ProviderProcess::start(&["--max-requests", "4"]);
    let knob = |path: &str| post(&format!("{}/admin/{path}", p.url), &serde_json::json!({})).status;
    assert_eq!(knob("refuse-uploads?on=true"), 204);
    let data = common::noise(1000, 7);
    assert_eq!(upload(&p, &data, &commp(&data).cid_v2().to_string()).status, 503);
    assert_eq!(knob("refuse-uploads?on=false"), 204);
    assert_eq!(knob("errors?n=2"), 204);
    assert_eq!(get(&format!("{}/pdp/ping", p.url), None).status, 500);
    assert_eq!(get(&format!("{}/pdp/ping", p.url), None).status, 500);
    assert_eq!(get(&format!("{}/pdp/ping", p.url), None).status, 200);
    assert_eq!(knob("offline?on=true"), 204);
    assert_eq!(get(&format!("{}/pdp/ping", p.url), None).status, 503);
    assert_eq!(knob("offline?on=false"), 204);
    assert_eq!(knob("no-such-knob"), 404);
    // more than --max-requests at once: the rest are told the provider is busy
    assert_eq!(knob("slow?ms=1500"), 204);
    let url = format!("{}/pdp/ping", p.url);
    let answers: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..24).map(|_| s.spawn(|| get(&url, None).status)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.contains(&503) && answers.contains(&200), "{answers:?}");
    assert_eq!(knob("slow?ms=0"), 204);
    // a piece larger than a provider takes: 413 before any byte is sent
    let huge = cidfs::filecoin::commp::Piece { root: [1; 32], payload_size: 2_000_000_000 }.cid_v2().to_string();
    assert_eq!(post(&format!("{}/pdp/piece", p.url), &serde_json::json!({ "pieceCid": huge })).status, 413);
    // a flipped byte: /piece/ serves it changed (the client's audit must catch it)
    let cid = commp(&data).cid_v2().to_string();
    assert_eq!(upload(&p, &data, &cid).status, 204);
    assert_eq!(knob(&format!("flip?piece={cid}&offset=3")), 204);
    let got = get(&format!("{}/piece/{cid}", p.url), None).body;
    assert_eq!(got[3], data[3] ^ 0xff);
    assert_eq!(got[4..], data[4..]);
    // upload sessions anyone may open are bounded: past 1024 open, 429
    let open: Vec<u16> =
        (0..1030).map(|_| post(&format!("{}/pdp/piece/uploads", p.url), &serde_json::json!({})).status).collect();
    assert_eq!(open.iter().filter(|s| **s == 201).count(), 1024, "{:?}", &open[1020..]);
    assert_eq!(*open.last().unwrap(), 429);
}

/// The whole path of a piece, with cidfs's own client: a file added to a store, its
/// segment sealed into an encrypted piece, streamed to a provider, put in a data set; the
/// provider's copy holds no plaintext of the file, and a block read back by range decrypts
/// to its CID.
#[test]
fn a_sealed_piece_travels_encrypted_and_its_blocks_come_back_by_range() {
    use cidfs::filecoin::pdp::PdpClient;
    use cidfs::filecoin::seal::{PiecePayload, SealPolicy, Sealer};
    use std::sync::Arc;
    let p = ProviderProcess::start(&["--confirm-delay", "200ms"]);
    let cli = common::Cli::new();
    let text: Vec<u8> = (0..300_000u32).flat_map(|i| format!("line {i} of a private file\n").into_bytes()).collect();
    let file = cli.write("private.txt", &text);
    cli.add_q(&file, &[]);
    let store = Arc::new(cidfs::store::Store::open(cli.home.path()).unwrap());
    let policy = SealPolicy { seal_after: Duration::ZERO, min_bytes: 0, public: false };
    let made = Sealer::new(store.clone(), policy).unwrap().step().unwrap();
    assert_eq!(made.len(), 1);
    let record = &made[0];

    let client = PdpClient::new(&p.url).unwrap();
    client.ping().unwrap();
    // one-shot upload too (and a second time: the provider has it, nothing is sent)
    let small = common::noise(5000, 8);
    let small_piece = commp(&small).cid_v2();
    client.upload_one_shot(&small_piece, &small).unwrap();
    client.upload_one_shot(&small_piece, &small).unwrap();
    assert!(client.find(&small_piece).unwrap());
    assert!(!client.find(&record.piece).unwrap());
    let payload = PiecePayload::open(&store, record, None).unwrap();
    let len = payload.len();
    client.upload(&record.piece, payload.reader(0), len).unwrap();
    assert!(client.find(&record.piece).unwrap());
    let held = std::fs::read(p.dir.path().join("provider/pieces").join(record.piece.to_string())).unwrap();
    assert_eq!(held.len() as u64, record.payload_size);
    // every line of the file says this: not one of them reached the provider in clear
    let needle = b"of a private file";
    assert!(!held.windows(needle.len()).any(|w| w == needle), "plaintext of the file at the provider");
    let segment = std::fs::read(cli.home.path().join(format!("segments/{:08}.car", record.segment))).unwrap();
    assert!(segment.windows(needle.len()).any(|w| w == needle), "the check can fail: the segment has it");

    let wallet = Wallet::load_or_create(cli.home.path()).unwrap();
    let chain = Chain::CALIBRATION;
    let tx = client.create_data_set(&wallet, &chain, U256::from(9), p.payee().parse().unwrap(), &vec![]).unwrap();
    let id = client.wait_data_set(&tx, Duration::from_secs(20)).unwrap();
    let tx = client.add_pieces(&wallet, &chain, id, U256::from(9), &[(record.piece, vec![])]).unwrap();
    let ids = client.wait_pieces_added(id, &tx, Duration::from_secs(20)).unwrap();
    assert_eq!(ids.len(), 1);
    let ds = client.data_set(id).unwrap().unwrap();
    assert_eq!(ds.pieces, vec![(ids[0], record.piece.to_string())]);

    // a block of the file, by range, decrypted, checked against its CID
    let key = cidfs::filecoin::keys::MasterKey::load_or_create(cli.home.path()).unwrap();
    let (cid, loc) =
        store.blocks().unwrap().into_iter().find(|(_, l)| l.segment == record.segment && l.len > 1000).unwrap();
    let mut bytes = client.read_range(&record.piece, loc.offset, u64::from(loc.len)).unwrap();
    key.piece_key(record.salt.as_ref().unwrap()).apply(loc.offset, &mut bytes);
    cidfs::block::Block::verified(cid, bytes).expect("the block decrypts to its CID");

    // an audit: blocks by range, and leaves proved against the piece root with paths made
    // from the local copy; a byte changed at the provider fails the leaf that holds it
    use cidfs::filecoin::replicate::audit::{AuditError, audit, check_leaf};
    assert!(audit(&store, &client, record, &key).unwrap() > 0);
    let last = record.payload_size.div_ceil(127) * 4 - 1;
    for leaf in [0, 5, 70_000, last] {
        check_leaf(&store, &client, record, &key, leaf).unwrap_or_else(|e| panic!("leaf {leaf}: {e}"));
    }
    let offset = 127 * 1000 + 50;
    let r = post(&format!("{}/admin/flip?piece={}&offset={offset}", p.url, record.piece), &serde_json::json!({}));
    assert_eq!(r.status, 204);
    let failed: Vec<u64> = (4000..4004)
        .filter(|l| matches!(check_leaf(&store, &client, record, &key, *l), Err(AuditError::BadLeaf { .. })))
        .collect();
    assert!(!failed.is_empty(), "no leaf of unit 1000 caught the flipped byte");
    check_leaf(&store, &client, record, &key, 8000).unwrap();

    // removal by the payer
    client.remove_piece(&wallet, &chain, id, U256::from(9), ids[0]).unwrap();
    assert!(client.data_set(id).unwrap().unwrap().pieces.is_empty());
}

#[test]
fn an_unreachable_malformed_or_failing_provider_is_a_clear_error() {
    use cidfs::filecoin::pdp::{PdpClient, PdpError};
    let err = PdpClient::new("localhost:8402").err().unwrap();
    assert!(err.to_string().contains("not a provider URL"), "{err}");
    // nothing listens there
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = PdpClient::new(&format!("http://127.0.0.1:{port}")).unwrap().ping().unwrap_err();
    assert!(matches!(err, PdpError::Unreachable { .. }) && err.is_transient(), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    // a provider failing with 500s: transient, and says what it answered
    let p = ProviderProcess::start(&[]);
    post(&format!("{}/admin/errors?n=1", p.url), &serde_json::json!({}));
    let err = PdpClient::new(&p.url).unwrap().ping().unwrap_err();
    assert!(matches!(err, PdpError::Status { status: 500, .. }) && err.is_transient(), "{err}");
    PdpClient::new(&p.url).unwrap().ping().unwrap();
}
