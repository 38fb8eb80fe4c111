//! The checks of the node's fuzz targets (`fuzz/fuzz_targets/{catchup,deal,api}.rs`), here in the
//! library so that the targets and the corpus replay test (`fuzz_corpus_replays` below) run the very
//! same code, and so that they can reach the node's crate-private functions without copies.
//!
//! Every check takes arbitrary bytes; the first byte picks what the rest is (a wire message, a raw
//! payload, an API endpoint's body), so one corpus covers every message type of a target. A check
//! panics only on a broken invariant (a bound not respected, a round trip that differs, a 5xx for
//! a client's body): any panic is a finding.
//!
//! Not part of the node's API: `#[doc(hidden)]`, and nothing in the node calls it.

use std::sync::OnceLock;

use futures::executor::block_on;
use libp2p::StreamProtocol;
use libp2p::request_response::{Codec as _, cbor};
use troc_protocol::{Identity, Profile, Signed, SignedRecord, Timestamp};

/// The fixed clock of every check: the `created_at` of the fixtures and of the seed corpora.
pub const NOW: Timestamp = 1_700_000_000;

const DAY: u64 = 86_400;

fn identity(seed: u8) -> Identity {
    Identity::from_seed(&[seed; 32])
}

fn profile_record(who: &Identity, name: &str, created_at: Timestamp) -> SignedRecord {
    let body = Profile {
        name: name.into(),
        community: "north-end".into(),
        area: "u09tv".into(),
        about: String::new(),
        contact: String::new(),
    };
    Signed::sign(who, created_at, body).expect("a fixture profile signs").into_any()
}

/// A request or a response of a request-response protocol.
enum Either<Req, Resp> {
    Left(Req),
    Right(Resp),
}

/// Encodes with the libp2p `cbor` codec the swarm uses, with its size limits.
fn encode<Req, Resp>(protocol: &'static str, limits: (u64, u64), msg: Either<Req, Resp>) -> std::io::Result<Vec<u8>>
where
    Req: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    Resp: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let mut codec = cbor::codec::Codec::<Req, Resp>::default()
        .set_request_size_maximum(limits.0)
        .set_response_size_maximum(limits.1);
    let proto = StreamProtocol::new(protocol);
    let mut buf = Vec::new();
    match msg {
        Either::Left(req) => block_on(codec.write_request(&proto, &mut buf, req))?,
        Either::Right(resp) => block_on(codec.write_response(&proto, &mut buf, resp))?,
    }
    Ok(buf)
}

fn decode_request<Req, Resp>(protocol: &'static str, limits: (u64, u64), bytes: &[u8]) -> std::io::Result<Req>
where
    Req: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    Resp: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let mut codec = cbor::codec::Codec::<Req, Resp>::default()
        .set_request_size_maximum(limits.0)
        .set_response_size_maximum(limits.1);
    block_on(codec.read_request(&StreamProtocol::new(protocol), &mut &bytes[..]))
}

fn decode_response<Req, Resp>(protocol: &'static str, limits: (u64, u64), bytes: &[u8]) -> std::io::Result<Resp>
where
    Req: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    Resp: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let mut codec = cbor::codec::Codec::<Req, Resp>::default()
        .set_request_size_maximum(limits.0)
        .set_response_size_maximum(limits.1);
    block_on(codec.read_response(&StreamProtocol::new(protocol), &mut &bytes[..]))
}

// -------------------------------------------------------------------------------------------------

/// The catch-up protocol (`/troc/sync/2`): wire decoding, the responder and the initiator.
pub mod catchup {
    use std::collections::{HashMap, HashSet};

    use sha2::{Digest, Sha256};
    use troc_protocol::RecordId;

    use super::*;
    use crate::network::{MAX_SYNC_REQUEST, MAX_SYNC_RESPONSE};
    use crate::sync::{self, IdPrefix, Reconciler, Responder, Step, SyncRequest, SyncResponse};

    const LIMITS: (u64, u64) = (MAX_SYNC_REQUEST, MAX_SYNC_RESPONSE);
    const SCOPE: &str = "global";

    /// The first byte of an input: what the rest is.
    pub const REQUEST: u8 = 0;
    pub const RESPONSE: u8 = 1;
    /// A compact reconciliation message, straight to the responder.
    pub const RAW_TO_RESPONDER: u8 = 2;
    /// A compact reconciliation message, straight to a fresh initiator.
    pub const RAW_TO_INITIATOR: u8 = 3;

    /// A small fixed world: the responder's scope (real records and ids it no longer holds), the
    /// initiator's items, and the records the responder can serve.
    pub(crate) struct Fixture {
        pub(crate) responder: Responder,
        pub(crate) ours: Vec<(u64, RecordId)>,
        pub(crate) records: HashMap<RecordId, Vec<u8>>,
    }

    fn synthetic(n: u64) -> RecordId {
        RecordId(Sha256::digest(n.to_be_bytes()).into())
    }

    pub(crate) fn fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            let mut theirs = Vec::new();
            let mut ours = Vec::new();
            let mut records = HashMap::new();
            for i in 0..24u8 {
                let created = NOW - u64::from(i) * 600;
                let r = profile_record(&identity(i + 1), &format!("Neighbour {i}"), created);
                records.insert(r.id(), r.bytes().to_vec());
                // Both hold the first half; the responder alone the rest.
                if i < 12 {
                    ours.push((created, r.id()));
                }
                theirs.push((created, r.id()));
            }
            for n in 0..200u64 {
                let item = (NOW - n * 97, synthetic(n));
                // Ids the responder lists but no longer holds (lookups give None), and ids only we hold.
                match n % 3 {
                    0 => theirs.push(item),
                    1 => ours.push(item),
                    _ => {
                        theirs.push(item);
                        ours.push(item);
                    }
                }
            }
            let responder = Responder::new(theirs).expect("the fixture's responder builds");
            Fixture { responder, ours, records }
        })
    }

    fn encode_request(req: &SyncRequest) -> std::io::Result<Vec<u8>> {
        encode::<SyncRequest, SyncResponse>(sync::PROTOCOL, LIMITS, Either::Left(req.clone()))
    }

    fn encode_response(resp: &SyncResponse) -> std::io::Result<Vec<u8>> {
        encode::<SyncRequest, SyncResponse>(sync::PROTOCOL, LIMITS, Either::Right(resp.clone()))
    }

    /// One input: see the selector constants.
    pub fn check(data: &[u8]) {
        let Some((&selector, rest)) = data.split_first() else { return };
        let f = fixture();
        match selector % 4 {
            REQUEST => {
                if let Ok(req) = decode_request::<SyncRequest, SyncResponse>(sync::PROTOCOL, LIMITS, rest) {
                    let again = encode_request(&req).expect("a decoded request encodes");
                    let back = decode_request::<SyncRequest, SyncResponse>(sync::PROTOCOL, LIMITS, &again)
                        .expect("an encoded request decodes");
                    assert_eq!(back, req, "request round trip");
                    serve(f, req);
                }
            }
            RESPONSE => {
                if let Ok(resp) = decode_response::<SyncRequest, SyncResponse>(sync::PROTOCOL, LIMITS, rest) {
                    let again = encode_response(&resp).expect("a decoded response encodes");
                    let back = decode_response::<SyncRequest, SyncResponse>(sync::PROTOCOL, LIMITS, &again)
                        .expect("an encoded response decodes");
                    assert_eq!(back, resp, "response round trip");
                    initiate(f, resp);
                }
            }
            RAW_TO_RESPONDER => answer_reconcile(f, rest),
            _ => {
                let (mut r, _) = Reconciler::start(SCOPE, f.ours.clone()).expect("a session starts");
                on_reconcile(f, &mut r, Some(rest.to_vec()));
            }
        }
    }

    /// The responder's side, as `catchup::serve` runs it (without the store and the network).
    fn serve(f: &Fixture, req: SyncRequest) {
        if let Err(e) = sync::validate_request(&req) {
            let refusal = e.to_refusal();
            assert!(sync::validate_response(&refusal).is_ok(), "our refusal must pass the peer's checks");
            encode_response(&refusal).expect("a refusal fits a response");
            return;
        }
        match req {
            SyncRequest::Reconcile { msg, .. } => answer_reconcile(f, &msg),
            SyncRequest::Fetch { prefixes, .. } => {
                let resp = sync::answer_fetch(&f.responder, &prefixes, |id| {
                    Ok::<_, std::convert::Infallible>(f.records.get(id).cloned())
                })
                .unwrap_or_else(|e| match e {});
                let SyncResponse::Records { records, missing } = &resp else {
                    panic!("a fetch is answered with records")
                };
                assert!(sync::validate_response(&resp).is_ok(), "our answer to a fetch is out of bounds");
                let asked: HashSet<IdPrefix> = prefixes.iter().copied().collect();
                let mut sent = HashSet::new();
                for r in records {
                    let id = troc_protocol::id_of_bytes(r).expect("we serve records");
                    assert!(asked.contains(&sync::prefix_of(&id)), "a record nobody asked for");
                    sent.insert(sync::prefix_of(&id));
                }
                for m in missing {
                    assert!(asked.contains(m), "a missing prefix nobody asked for");
                    assert!(!sent.contains(m), "a prefix both sent and missing");
                }
                encode_response(&resp).expect("an answer to a fetch fits a response");
            }
            SyncRequest::Push { records } => {
                assert!(records.len() <= sync::MAX_PUSH_RECORDS);
                // What ingest does first with each record.
                for r in &records {
                    if let Ok(u) = troc_protocol::decode(r) {
                        let _ = u.check_time(NOW);
                    }
                }
            }
        }
    }

    /// The responder answers one compact message.
    fn answer_reconcile(f: &Fixture, msg: &[u8]) {
        match sync::respond(&f.responder, msg) {
            Ok(Some(out)) => {
                assert!(out.len() <= sync::RESPONSE_FRAME_SIZE_LIMIT, "an answer over the frame");
                let resp = SyncResponse::Reconcile { msg: Some(out) };
                assert!(sync::validate_response(&resp).is_ok(), "our answer must pass the peer's checks");
                encode_response(&resp).expect("an answer fits a response");
            }
            Ok(None) => {}
            Err(e) => assert!(!e.code().is_empty()),
        }
    }

    /// The initiator's side, as `catchup::one_session` runs it: a session's first response, or the
    /// answer to a fetch of the first prefixes of the fixture.
    fn initiate(f: &Fixture, resp: SyncResponse) {
        if sync::validate_response(&resp).is_err() {
            return;
        }
        match resp {
            SyncResponse::Reconcile { msg } => {
                let (mut r, _) = Reconciler::start(SCOPE, f.ours.clone()).expect("a session starts");
                on_reconcile(f, &mut r, msg);
            }
            SyncResponse::Records { records, missing } => {
                let asked: Vec<IdPrefix> =
                    f.ours.iter().take(sync::MAX_FETCH_IDS).map(|(_, id)| sync::prefix_of(id)).collect();
                let received: Vec<RecordId> = records.iter().filter_map(|r| troc_protocol::id_of_bytes(r)).collect();
                let again = sync::not_sent(&asked, &received, &missing);
                assert!(again.len() <= asked.len());
                assert!(again.iter().all(|p| asked.contains(p)), "re-asking what was never asked");
            }
            SyncResponse::Pushed { .. } | SyncResponse::Refused { .. } => {}
        }
    }

    /// Feeds a response to the initiator; what it asks next must be a valid request.
    fn on_reconcile(f: &Fixture, r: &mut Reconciler, msg: Option<Vec<u8>>) {
        match r.on_response(msg) {
            Ok(Step::Continue(next)) => {
                assert!(sync::validate_request(&next).is_ok(), "our next request is out of bounds");
                encode_request(&next).expect("our next request fits a request");
            }
            Ok(Step::Done { have, need, .. }) => {
                let ours: HashSet<RecordId> = f.ours.iter().map(|(_, id)| *id).collect();
                assert!(have.iter().all(|id| ours.contains(id)), "`have` holds an id we do not have");
                assert!(have.windows(2).all(|w| w[0] < w[1]), "`have` sorted, no duplicates");
                assert!(need.windows(2).all(|w| w[0] < w[1]), "`need` sorted, no duplicates");
                for req in sync::fetch_requests(SCOPE, &need) {
                    assert!(sync::validate_request(&req).is_ok(), "a fetch out of bounds");
                }
            }
            Err(e) => assert!(!e.code().is_empty()),
        }
    }

    /// Valid inputs for the corpus: every message of a real session between a fresh initiator and
    /// the fixture's responder (reconcile rounds, fetch, push), a refusal and a push answer, and the
    /// raw compact messages.
    pub fn seeds() -> Vec<Vec<u8>> {
        let f = fixture();
        let mut out = Vec::new();
        let with = |selector: u8, bytes: &[u8]| [&[selector][..], bytes].concat();
        let (mut r, mut req) = Reconciler::start(SCOPE, f.ours.clone()).expect("a session starts");
        let (have, need) = loop {
            out.push(with(REQUEST, &encode_request(&req).expect("encodes")));
            let SyncRequest::Reconcile { msg, .. } = &req else { unreachable!("reconcile requests") };
            out.push(with(RAW_TO_RESPONDER, msg));
            let answer = sync::respond(&f.responder, msg).expect("the responder answers");
            if let Some(a) = &answer {
                out.push(with(RAW_TO_INITIATOR, a));
            }
            let resp = SyncResponse::Reconcile { msg: answer.clone() };
            out.push(with(RESPONSE, &encode_response(&resp).expect("encodes")));
            match r.on_response(answer).expect("the session goes on") {
                Step::Continue(next) => req = next,
                Step::Done { have, need, .. } => break (have, need),
            }
        };
        for fetch in sync::fetch_requests(SCOPE, &need) {
            out.push(with(REQUEST, &encode_request(&fetch).expect("encodes")));
            let SyncRequest::Fetch { prefixes, .. } = &fetch else { unreachable!("fetch requests") };
            let resp = sync::answer_fetch(&f.responder, prefixes, |id| {
                Ok::<_, std::convert::Infallible>(f.records.get(id).cloned())
            })
            .unwrap_or_else(|e| match e {});
            out.push(with(RESPONSE, &encode_response(&resp).expect("encodes")));
        }
        let pushed: Vec<Vec<u8>> = f.records.values().take(4).cloned().collect();
        for push in sync::push_requests(pushed) {
            out.push(with(REQUEST, &encode_request(&push).expect("encodes")));
        }
        let _ = have;
        for resp in [
            SyncResponse::Pushed { accepted: 3 },
            SyncResponse::refused(sync::codes::BUSY, "too many catch-up sessions"),
            SyncResponse::Records { records: Vec::new(), missing: vec![[7; 8]] },
        ] {
            out.push(with(RESPONSE, &encode_response(&resp).expect("encodes")));
        }
        out
    }
}

// -------------------------------------------------------------------------------------------------

/// The direct deal protocol (`/troc/deal/1`): wire decoding and the checks a node makes before it
/// acts on a message.
pub mod deal {
    use std::path::PathBuf;

    use troc_protocol::{Agreement, Extension, PartiallySigned};

    use super::*;
    use crate::deals::service::{CosignPlan, check_cosign};
    use crate::deals::{DealAnswer, DealMessage, DealRequest, DealResponse, MAX_DEAL_REQUEST, MAX_DEAL_RESPONSE};
    use crate::deals::{PROTOCOL, is_transient};
    use crate::ingest::check_deal_sender;
    use crate::store::{Store, StoreConfig};

    const LIMITS: (u64, u64) = (MAX_DEAL_REQUEST, MAX_DEAL_RESPONSE);

    /// The first byte of an input: what the rest is.
    pub const REQUEST: u8 = 0;
    pub const RESPONSE: u8 = 1;
    /// The bytes of a `Record` message.
    pub const RAW_RECORD: u8 = 2;
    /// The bytes of a `Cosign` message.
    pub const RAW_COSIGN: u8 = 3;

    /// This node (`me`), the peer that sends (`peer`), and a store holding a deal between them.
    pub(crate) struct Fixture {
        me: Identity,
        peer: Identity,
        store: Store,
        /// A partially signed agreement of ours, waiting for `peer`'s countersignature.
        ours: Vec<u8>,
        seeds: Vec<Vec<u8>>,
    }

    /// The fixture's store directory (one per process, removed once the fixture is written).
    fn fixture_dir() -> PathBuf {
        std::env::temp_dir().join(format!("troc-fuzz-deal-{}", std::process::id()))
    }

    fn proposal(from: &Identity, to: &Identity, key: u8, created_at: u64) -> SignedRecord {
        let body = troc_protocol::Proposal {
            counterparty: *to.public(),
            listing_author: *to.public(),
            listing_key: troc_protocol::ListingKey([key; 16]),
            listing_revision: 1,
            kind: troc_protocol::Kind::Lend,
            start: created_at + DAY,
            end: Some(created_at + 3 * DAY),
            message: "May I?".into(),
            in_return: String::new(),
            supersedes: None,
        };
        Signed::sign(from, created_at, body).expect("a fixture proposal signs").into_any()
    }

    /// The agreement `author` proposes to `counterparty` for `proposal` (made by `proposal()`).
    fn agreement(author: &Identity, counterparty: &Identity, p: &SignedRecord) -> PartiallySigned<Agreement> {
        let troc_protocol::Body::Proposal(b) = p.body() else { unreachable!("a proposal") };
        let body = Agreement {
            counterparty: *counterparty.public(),
            proposal: p.id(),
            listing_author: b.listing_author,
            listing_key: b.listing_key,
            kind: b.kind,
            start: b.start,
            due: b.end,
        };
        PartiallySigned::sign(author, p.created_at(), body).expect("a fixture agreement signs")
    }

    fn request(msg: u64, body: DealMessage) -> Vec<u8> {
        let bytes = encode::<DealRequest, DealResponse>(PROTOCOL, LIMITS, Either::Left(DealRequest { msg, body }))
            .expect("encodes");
        [&[REQUEST][..], &bytes].concat()
    }

    fn response(msg: u64, answer: DealAnswer) -> Vec<u8> {
        let bytes = encode::<DealRequest, DealResponse>(PROTOCOL, LIMITS, Either::Right(DealResponse { msg, answer }))
            .expect("encodes");
        [&[RESPONSE][..], &bytes].concat()
    }

    pub(crate) fn fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            let (me, peer) = (identity(0xA1), identity(0xB2));
            let dir = fixture_dir();
            let _ = std::fs::remove_dir_all(&dir);
            let mut cfg = StoreConfig::new(&dir);
            cfg.cache_bytes = 4 * 1024 * 1024;
            let store = Store::open(cfg).expect("the fixture store opens");
            // Two proposals of ours to `peer`: the first agreed (both signed), the second open.
            let p1 = proposal(&me, &peer, 1, NOW - 3600);
            let p2 = proposal(&me, &peer, 2, NOW - 1800);
            let agreed = agreement(&peer, &me, &p1).countersign(&me).expect("countersigns").into_any();
            let outcomes = store.apply(&[p1.clone(), p2.clone(), agreed.clone()], NOW).expect("the fixture stores");
            assert!(outcomes.iter().all(|o| o.is_stored()), "fixture not stored: {outcomes:?}");
            store.flush().expect("the fixture store flushes");
            // Only read from now on: the open files are enough, so nothing is left behind on disk.
            let _ = std::fs::remove_dir_all(&dir);

            let open = agreement(&peer, &me, &p2).to_bytes();
            let again = agreement(&peer, &me, &p1).to_bytes();
            let extension = Extension { agreement: agreed.id(), counterparty: *me.public(), new_due: NOW + 10 * DAY };
            let extension = PartiallySigned::sign(&peer, NOW, extension).expect("signs").to_bytes();
            let ours_partial = agreement(&me, &peer, &proposal(&peer, &me, 3, NOW - 600));
            let handover =
                Signed::sign(&peer, NOW, troc_protocol::Handover { agreement: agreed.id(), note: "Here".into() })
                    .expect("signs")
                    .into_any();
            let to_me = proposal(&peer, &me, 4, NOW - 60);
            let countersignature = {
                let done = ours_partial.clone().countersign(&peer).expect("countersigns");
                done.signatures().nth(1).map(<[u8]>::to_vec).expect("two signatures")
            };
            let seeds = vec![
                request(1, DealMessage::Cosign { bytes: open.clone() }),
                request(2, DealMessage::Cosign { bytes: again.clone() }),
                request(3, DealMessage::Cosign { bytes: extension.clone() }),
                request(4, DealMessage::Record { bytes: handover.bytes().to_vec() }),
                request(5, DealMessage::Record { bytes: to_me.bytes().to_vec() }),
                [&[RAW_COSIGN][..], &open].concat(),
                [&[RAW_COSIGN][..], &extension].concat(),
                [&[RAW_RECORD][..], handover.bytes()].concat(),
                [&[RAW_RECORD][..], agreed.bytes()].concat(),
                response(1, DealAnswer::Countersigned { signature: countersignature }),
                response(2, DealAnswer::Stored),
                response(3, DealAnswer::Pending),
                response(4, DealAnswer::Refused { code: "unknown_deal".into(), message: "not here yet".into() }),
            ];
            Fixture { me, peer, store, ours: ours_partial.to_bytes(), seeds }
        })
    }

    /// What `check_cosign` makes of the first three seeds (for the test that they are valid).
    #[cfg(test)]
    pub(crate) fn plans() -> Vec<&'static str> {
        let f = fixture();
        f.seeds[..3]
            .iter()
            .map(|seed| {
                let req = decode_request::<DealRequest, DealResponse>(PROTOCOL, LIMITS, &seed[1..]).expect("decodes");
                let DealMessage::Cosign { bytes } = req.body else { return "record" };
                match check_cosign(&f.store, f.me.public(), f.peer.public(), &bytes, NOW) {
                    Ok(CosignPlan::Agreement(_)) => "agreement",
                    Ok(CosignPlan::Again { .. }) => "again",
                    Ok(CosignPlan::Extension { .. }) => "extension",
                    Err(_) => "refused",
                }
            })
            .collect()
    }

    /// Valid inputs for the corpus: real messages about the fixture's deal.
    pub fn seeds() -> Vec<Vec<u8>> {
        fixture().seeds.clone()
    }

    /// One input: see the selector constants.
    pub fn check(data: &[u8]) {
        let Some((&selector, rest)) = data.split_first() else { return };
        let f = fixture();
        match selector % 4 {
            REQUEST => {
                if let Ok(req) = decode_request::<DealRequest, DealResponse>(PROTOCOL, LIMITS, rest) {
                    let again = encode::<DealRequest, DealResponse>(PROTOCOL, LIMITS, Either::Left(req.clone()))
                        .expect("a decoded request encodes");
                    let back = decode_request::<DealRequest, DealResponse>(PROTOCOL, LIMITS, &again)
                        .expect("an encoded request decodes");
                    assert_eq!(back, req, "request round trip");
                    answer(f, req.msg, &req.body);
                }
            }
            RESPONSE => {
                if let Ok(resp) = decode_response::<DealRequest, DealResponse>(PROTOCOL, LIMITS, rest) {
                    let again = encode::<DealRequest, DealResponse>(PROTOCOL, LIMITS, Either::Right(resp.clone()))
                        .expect("a decoded response encodes");
                    let back = decode_response::<DealRequest, DealResponse>(PROTOCOL, LIMITS, &again)
                        .expect("an encoded response decodes");
                    assert_eq!(back, resp, "response round trip");
                    answered(f, &resp.answer);
                }
            }
            RAW_RECORD => answer(f, 0, &DealMessage::Record { bytes: rest.to_vec() }),
            _ => answer(f, 0, &DealMessage::Cosign { bytes: rest.to_vec() }),
        }
    }

    /// The receiver's checks before it acts (`deals::service::answer`): for a record, the ingest
    /// path's decode, clock and sender checks then the signature; for a partial, `check_cosign`.
    /// The answer it would send must fit a response.
    fn answer(f: &Fixture, msg: u64, body: &DealMessage) {
        let refuse = |code: &str, message: String| DealAnswer::Refused { code: code.to_owned(), message };
        let answer = match body {
            DealMessage::Record { bytes } => match troc_protocol::decode(bytes) {
                Err(e) => refuse(e.code(), e.to_string()),
                Ok(u) => match u.check_time(NOW) {
                    Err(e) => refuse(e.code(), e.to_string()),
                    Ok(()) => match check_deal_sender(&u, &f.peer.public().to_peer_id(), f.me.public()) {
                        Err((code, why)) => refuse(code, why),
                        Ok(()) => match u.verify() {
                            Ok(r) => {
                                let from_party = r.author() == f.peer.public()
                                    || r.cosigner().is_some_and(|c| c.to_peer_id() == f.peer.public().to_peer_id());
                                assert!(from_party, "a deal record let through from someone else");
                                DealAnswer::Stored
                            }
                            Err(e) => refuse(e.code(), e.to_string()),
                        },
                    },
                },
            },
            DealMessage::Cosign { bytes } => match check_cosign(&f.store, f.me.public(), f.peer.public(), bytes, NOW) {
                Err(answer) => answer,
                Ok(CosignPlan::Again { signature }) => {
                    assert_eq!(signature.len(), 64);
                    DealAnswer::Countersigned { signature }
                }
                Ok(CosignPlan::Agreement(typed)) => {
                    assert_eq!(typed.body().counterparty, *f.me.public());
                    assert_eq!(typed.header().author, *f.peer.public());
                    match typed.countersign(&f.me) {
                        Ok(r) => DealAnswer::Countersigned { signature: r.signatures().nth(1).unwrap_or(&[]).to_vec() },
                        Err(e) => refuse(e.code(), e.to_string()),
                    }
                }
                Ok(CosignPlan::Extension { .. }) => DealAnswer::Pending,
            },
        };
        if let DealAnswer::Refused { code, .. } = &answer {
            assert!(!code.is_empty());
        }
        // The swarm drops an answer it cannot encode within the limit: the sender would retry forever.
        encode::<DealRequest, DealResponse>(PROTOCOL, LIMITS, Either::Right(DealResponse { msg, answer }))
            .expect("our answer fits a deal response");
    }

    /// The sender's handling of an answer (`deals::service::deliver` and `completed`).
    fn answered(f: &Fixture, answer: &DealAnswer) {
        match answer {
            DealAnswer::Countersigned { signature } => {
                let Ok(sig) = <[u8; 64]>::try_from(signature.as_slice()) else { return };
                let partial = PartiallySigned::from_bytes(&f.ours, NOW).expect("our partial decodes");
                if let Ok(done) = partial.add_countersignature(&sig) {
                    assert!(done.clone().into_any().bytes().len() > f.ours.len());
                }
            }
            DealAnswer::Refused { code, .. } => {
                let _ = is_transient(code);
            }
            DealAnswer::Stored | DealAnswer::Pending => {}
        }
    }
}

// -------------------------------------------------------------------------------------------------

/// The API's request bodies: every JSON body an endpoint takes, read by the extractor the handler
/// uses and converted by the handler's own functions up to where it would sign or store.
pub mod api {
    use axum::body::Body;
    use axum::extract::{FromRequest, Query};
    use axum::http::{Request, header};
    use serde::de::DeserializeOwned;
    use troc_protocol::{Kind, Listing, Signed};

    use super::*;
    use crate::api::deals::{Ack, Cancel, Counter, Extend, NewDeal, NewReview, Note, Person, end_of, optional};
    use crate::api::listings::{ListingEdit, NewListing, Renew, Withdraw, renewed, withdrawal};
    use crate::api::reputation::{MAX_REASON, NewVouch, Revoke, parse_peer};
    use crate::api::routes::{
        ApiJson, ConnectBody, ImportBody, JoinBody, NewAlert, decode_invite, import_items, optional_json, search_query,
        with_distance_defaults,
    };
    use crate::api::{ApiError, LocalProfile};

    /// The endpoints, by the first byte of an input (modulo their number).
    pub const ENDPOINTS: &[&str] = &[
        "POST /v1/peers",
        "POST /v1/join",
        "POST /v1/listings",
        "PATCH /v1/listings/{listing}",
        "POST /v1/listings/{listing}/renew",
        "POST /v1/listings/{listing}/withdraw",
        "POST /v1/alerts",
        "POST /v1/import",
        "POST /v1/deals",
        "POST /v1/deals/{deal}/counter",
        "POST /v1/deals/{deal}/{decline,withdraw,handover,return,complete}",
        "POST /v1/deals/{deal}/acknowledge",
        "POST /v1/deals/{deal}/cancel",
        "POST /v1/deals/{deal}/extend",
        "POST /v1/deals/{deal}/review",
        "POST /v1/blocked",
        "POST /v1/vouches",
        "POST /v1/records/{id}/revoke",
        "GET /v1/search",
        "GET /v1/events",
    ];

    struct Fixture {
        /// Two node settings: with a community and a location, and without.
        profiles: [LocalProfile; 2],
        current: Signed<Listing>,
    }

    fn fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            let listing = Listing {
                key: troc_protocol::ListingKey([9; 16]),
                revision: 3,
                kind: Kind::Lend,
                category: troc_protocol::Category::Tools,
                title: "Ladder".into(),
                description: "Three metres.".into(),
                tags: vec!["ladder".into()],
                terms: troc_protocol::Terms::default(),
                community: "north-end".into(),
                location: "u09tv".into(),
                available_from: None,
                available_until: None,
                valid_until: NOW + 10 * DAY,
            };
            let current = Signed::sign(&identity(0xC3), NOW - DAY, listing).expect("a fixture listing signs");
            let full = LocalProfile {
                name: "Ada".into(),
                community: Some("north-end".into()),
                location: Some("u09tv".into()),
            };
            Fixture { profiles: [full, LocalProfile::default()], current }
        })
    }

    /// Reads a body as the handler's `ApiJson<T>` extractor does (content type, then JSON).
    fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
        let req = Request::builder()
            .method("POST")
            .uri("/")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_vec()))
            .expect("a request builds");
        block_on(ApiJson::<T>::from_request(req, &())).map(|ApiJson(t)| t)
    }

    fn query(rest: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
        let q = String::from_utf8_lossy(rest);
        let uri: axum::http::Uri = format!("/v1/search?{q}").parse().map_err(|_| ApiError::bad_request("not a URI"))?;
        Query::<Vec<(String, String)>>::try_from_uri(&uri).map(|Query(p)| p).map_err(ApiError::from)
    }

    /// One input: the first byte picks the endpoint ([`ENDPOINTS`]) and the node's settings, the
    /// rest is the body (the query string for the two `GET`s).
    pub fn check(data: &[u8]) {
        if let Some((endpoint, Err(e))) = run(data) {
            // A client's body is the client's fault: never a server error.
            assert!(e.status.is_client_error(), "{endpoint} answered {} ({}): {}", e.status, e.code, e.message);
        }
    }

    /// The endpoint an input goes to, and what its handler would make of it (`Ok`: a valid request,
    /// up to where the handler signs or stores).
    pub(crate) fn run(data: &[u8]) -> Option<(&'static str, Result<(), ApiError>)> {
        let (&selector, body) = data.split_first()?;
        let f = fixture();
        let n = ENDPOINTS.len();
        let endpoint = usize::from(selector) % n;
        let profile = &f.profiles[(usize::from(selector) / n) % 2];
        let home = profile.location.as_deref();
        let current = f.current.body();
        let result: Result<(), ApiError> = (|| {
            match endpoint {
                0 => {
                    let b: ConnectBody = json(body)?;
                    b.address.parse::<libp2p::Multiaddr>().map_err(|e| ApiError::bad_request(e.to_string()))?;
                }
                1 => {
                    let b: JoinBody = json(body)?;
                    decode_invite(&b.invite)?;
                }
                2 => {
                    let b: NewListing = json(body)?;
                    let l = b.into_listing(profile, NOW)?;
                    assert!(l.valid_until > NOW && l.revision == 1);
                    assert!(l.location.len() <= troc_protocol::limits::MAX_GEOHASH_LEN);
                }
                3 => {
                    let b: ListingEdit = json(body)?;
                    let l = b.apply(current, NOW)?;
                    assert_eq!(l.revision, current.revision + 1);
                    assert_eq!(l.key, current.key);
                }
                4 => {
                    let days = optional_json::<Renew>(body)?.valid_for_days;
                    let l = renewed(current, days, NOW)?;
                    assert!(l.valid_until > NOW);
                }
                5 => {
                    let reason = optional_json::<Withdraw>(body)?.reason;
                    let w = withdrawal(&f.current, reason);
                    assert_eq!(w.listing_key, current.key);
                }
                6 => {
                    let b: NewAlert = json(body)?;
                    let mut q = b.query;
                    with_distance_defaults(&mut q, home)?;
                    q.prepare().map_err(|e| ApiError::bad_request(e.to_string()))?;
                }
                7 => {
                    let b: ImportBody = json(body)?;
                    let items = import_items(&b)?;
                    // What the ingest path does first with each.
                    for item in &items {
                        if let Ok(u) = troc_protocol::decode(item) {
                            let _ = u.check_time(NOW);
                        }
                    }
                }
                8 => {
                    let b: NewDeal = json(body)?;
                    let start = b.start.unwrap_or(NOW);
                    end_of(start, b.end, b.days)?;
                }
                9 => {
                    let c = optional::<Counter>(body)?;
                    end_of(c.start.unwrap_or(NOW), c.end, c.days)?;
                }
                10 => {
                    optional::<Note>(body)?;
                }
                11 => {
                    optional::<Ack>(body)?;
                }
                12 => {
                    json::<Cancel>(body)?;
                }
                13 => {
                    json::<Extend>(body)?;
                }
                14 => {
                    json::<NewReview>(body)?;
                }
                15 => {
                    json::<Person>(body)?;
                }
                16 => {
                    let b: NewVouch = json(body)?;
                    parse_peer(&b.subject)?;
                }
                17 => {
                    // As the handler reads it: an optional body, then the length of the reason.
                    if !body.iter().all(u8::is_ascii_whitespace) {
                        let r: Revoke =
                            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
                        if r.reason.chars().count() > MAX_REASON {
                            return Err(ApiError::bad_request("reason too long"));
                        }
                    }
                }
                18 => {
                    let q = search_query(&query(body)?, &[], home)?;
                    q.prepare().map_err(|e| ApiError::bad_request(e.to_string()))?;
                }
                _ => {
                    let q = search_query(&query(body)?, &["types"], home)?;
                    q.prepare().map_err(|e| ApiError::bad_request(e.to_string()))?;
                }
            }
            Ok(())
        })();
        Some((ENDPOINTS[endpoint], result))
    }

    /// Valid bodies for the corpus, from `docs/api.md`.
    pub fn seeds() -> Vec<Vec<u8>> {
        let key = identity(0xD4).public().to_string();
        let peer = identity(0xD4).public().to_peer_id().to_base58();
        let invite = {
            use base64::Engine;
            let body = serde_json::json!({
                "v": 1, "peer_id": peer,
                "addresses": [format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")],
                "communities": ["north-end"],
            });
            format!("troc1{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body.to_string()))
        };
        let record = hex::encode(fixture().current.bytes());
        let bodies: Vec<(usize, String)> = vec![
            (0, r#"{"address": "/ip4/127.0.0.1/tcp/4001"}"#.into()),
            (1, serde_json::json!({ "invite": invite }).to_string()),
            (2, r#"{"kind": "lend", "category": "tools", "title": "Cordless drill", "description": "18V, two batteries", "tags": ["drill", "diy"], "terms": {"max_loan_days": 7, "deposit": {"amount_minor": 2000, "currency": "EUR"}}, "location": "52.37,4.89", "valid_for_days": 30}"#.into()),
            (2, r#"{"kind": "want", "category": "garden", "title": "Lawn mower", "community": "north-end", "location": "u173z"}"#.into()),
            (3, r#"{"title": "Cordless drill (2 batteries)", "tags": ["drill"], "valid_for_days": 14}"#.into()),
            (4, r#"{"valid_for_days": 30}"#.into()),
            (4, String::new()),
            (5, r#"{"reason": "Sold"}"#.into()),
            (6, r#"{"name": "drills", "query": {"text": "drill", "kinds": ["lend"], "within_km": 5}}"#.into()),
            (7, serde_json::json!({ "records": [record] }).to_string()),
            (8, r#"{"listing": "3fa85f64aa", "start": 1700086400, "days": 3, "message": "May I borrow it?"}"#.into()),
            (9, r#"{"days": 2, "message": "Two days?"}"#.into()),
            (10, r#"{"note": "Thanks"}"#.into()),
            (11, r#"{"condition": "as_expected", "note": "All good"}"#.into()),
            (12, r#"{"reason": "cancelled", "note": "Plans changed"}"#.into()),
            (13, r#"{"days": 3}"#.into()),
            (14, r#"{"rating": "positive", "facets": [{"facet": "punctuality", "rating": "positive"}], "text": "Great"}"#.into()),
            (15, serde_json::json!({ "person": key }).to_string()),
            (16, serde_json::json!({ "subject": peer, "context": "Neighbour", "days": 365 }).to_string()),
            (17, r#"{"reason": "Mistake"}"#.into()),
            (18, "text=drill&kind=lend&category=tools&within_km=5&near=u09tv&sort=distance&limit=20".into()),
            (19, "types=listing,deal&text=ladder".into()),
        ];
        bodies.into_iter().map(|(e, b)| [&[e as u8][..], b.as_bytes()].concat()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a corpus entry").path();
            out.push(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        }
        out
    }

    /// Every committed input of the three node targets (and the seeds), through the targets' checks:
    /// a crash the fuzzer once found stays fixed.
    #[test]
    fn fuzz_corpus_replays() {
        let mut counts = Vec::new();
        for (target, check, seeds) in [
            ("catchup", catchup::check as fn(&[u8]), catchup::seeds as fn() -> Vec<Vec<u8>>),
            ("deal", deal::check, deal::seeds),
            ("api", api::check, api::seeds),
        ] {
            let inputs = corpus(target);
            assert!(!inputs.is_empty(), "the {target} corpus is empty");
            for input in inputs.iter().chain(seeds().iter()) {
                check(input);
            }
            counts.push((target, inputs.len()));
        }
        eprintln!("replayed: {counts:?}");
    }

    /// The seeds are valid requests: the fuzzer starts from the accepting paths, not only the errors.
    #[test]
    fn api_seeds_are_valid_requests() {
        for seed in api::seeds() {
            let (endpoint, result) = api::run(&seed).expect("a seed has a selector");
            assert!(result.is_ok(), "{endpoint}: {result:?}");
        }
    }

    /// The deal seeds reach every plan of `check_cosign` and the sender check lets the peer's
    /// records through.
    #[test]
    fn deal_seeds_reach_every_plan() {
        assert_eq!(deal::plans(), ["agreement", "again", "extension"]);
    }

    /// Writes the seed corpora (`fuzz/corpus/{catchup,deal,api}/seed-*`):
    /// `cargo test -p troc-node --lib -- --ignored write_fuzz_corpus`.
    #[test]
    #[ignore = "writes files in fuzz/corpus"]
    fn write_fuzz_corpus() {
        for (target, seeds) in [("catchup", catchup::seeds()), ("deal", deal::seeds()), ("api", api::seeds())] {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
            std::fs::create_dir_all(&dir).expect("mkdir");
            for (i, s) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i:03}")), s).expect("write");
            }
        }
    }
}
