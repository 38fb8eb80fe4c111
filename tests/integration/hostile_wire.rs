//! The hostile input table, wire rows (`docs/reliability.md`, section 6.1): every row is one hostile
//! input on gossip, catch-up or the deal protocol, sent to a real node by a hostile peer
//! (`hostile_peer.rs`, a fresh identity for each row so that one row's ban does not hide the next),
//! with the error or counter it must get. After every row the node still answers and every record
//! it held beforehand is still there.
//!
//! The table printed by the test (`--nocapture`) is the one in the document.

use std::time::{Duration, Instant};

use libp2p::StreamProtocol;
use troc_node::deals::{DealAnswer, DealMessage, DealRequest, DealResponse};
use troc_node::metrics::Source;
use troc_node::sync::{SyncRequest, SyncResponse};
use troc_protocol::{Identity, Kind, RecordId, Signed};

use crate::hostile_peer::HostilePeer;
use crate::support::*;

const LIMIT: Duration = Duration::from_secs(20);
const COMMUNITY: &str = "wire";
const SCOPE: &str = "community/wire";
/// How long the node may take to answer after a row: a functional bound, not a speed figure.
const ANSWERS_WITHIN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
enum Input {
    ForgedSignature,
    Truncated,
    TrailingBytes,
    TooLarge,
    UnknownType,
    UnknownVersion,
    WrongTopic,
    FromFuture,
    WrongPublisher,
    PrivateOnGossip,
    Replayed,
    SyncPushForged,
    SyncPushPrivate,
    SyncPushTooMany,
    SyncFetchTooMany,
    SyncBadScope,
    SyncTooManyRounds,
    SyncBadReconcile,
    SyncUnknownScope,
    SyncNotCbor,
    SyncOversized,
    SyncUnasked,
    DealNotCbor,
    DealOversized,
    DealNonParty,
    DealNotForUs,
    DealForged,
    DealBurst,
}

/// What a row must produce.
#[derive(Debug, Clone, Copy)]
enum Counter {
    /// `rejected[source][code]` goes up.
    Rejected(Source, &'static str),
    /// `outcomes[source][code]` goes up (not a rejection: an honest peer can send it).
    Outcome(Source, &'static str),
    /// No counter: the answer's refusal code says it all.
    Answer,
}

struct Row {
    input: Input,
    what: &'static str,
    channel: &'static str,
    counter: Counter,
    /// The refusal code in the node's answer (catch-up and deal requests).
    refusal: Option<&'static str>,
}

const fn row(
    input: Input,
    channel: &'static str,
    what: &'static str,
    counter: Counter,
    refusal: Option<&'static str>,
) -> Row {
    Row { input, what, channel, counter, refusal }
}

use Counter::*;
use Input::*;
use Source::{Deal, Gossip, Sync};

const ROWS: &[Row] = &[
    row(
        ForgedSignature,
        "gossip",
        "a listing whose signature does not verify",
        Rejected(Gossip, "bad_signature"),
        None,
    ),
    row(Truncated, "gossip", "a record cut in half", Rejected(Gossip, "malformed"), None),
    row(TrailingBytes, "gossip", "a record with 3 bytes after its signature", Rejected(Gossip, "malformed"), None),
    row(TooLarge, "gossip", "a record over 16 KiB (in a frame gossipsub accepts)", Rejected(Gossip, "too_large"), None),
    row(UnknownType, "gossip", "a record of an unknown type (0xee)", Rejected(Gossip, "unknown_type"), None),
    row(UnknownVersion, "gossip", "a record of an unknown format version", Rejected(Gossip, "unknown_version"), None),
    row(WrongTopic, "gossip", "a listing on the global topic", Rejected(Gossip, "wrong_topic"), None),
    row(FromFuture, "gossip", "a listing dated an hour ahead", Rejected(Gossip, "from_future"), None),
    row(
        WrongPublisher,
        "gossip",
        "someone else's listing, published by the hostile peer",
        Rejected(Gossip, "wrong_publisher"),
        None,
    ),
    row(PrivateOnGossip, "gossip", "a proposal (private) on a topic", Rejected(Gossip, "not_public"), None),
    row(
        Replayed,
        "gossip",
        "a stored record replayed with its author's gossip signature",
        Outcome(Gossip, "duplicate"),
        None,
    ),
    row(SyncPushForged, "catch-up", "a push of 5 forged listings", Rejected(Sync, "bad_signature"), None),
    row(SyncPushPrivate, "catch-up", "a push of a proposal", Rejected(Sync, "not_public"), None),
    row(
        SyncPushTooMany,
        "catch-up",
        "a push of 300 records (at most 256)",
        Rejected(Sync, "bad_sync_message"),
        Some("too_many_records"),
    ),
    row(
        SyncFetchTooMany,
        "catch-up",
        "a fetch of 300 prefixes (at most 256)",
        Rejected(Sync, "bad_sync_message"),
        Some("too_many_ids"),
    ),
    row(
        SyncBadScope,
        "catch-up",
        "a reconcile for a scope with a control character",
        Rejected(Sync, "bad_sync_message"),
        Some("bad_scope"),
    ),
    row(
        SyncTooManyRounds,
        "catch-up",
        "a reconcile at round 60 (at most 50)",
        Rejected(Sync, "bad_sync_message"),
        Some("too_many_rounds"),
    ),
    row(
        SyncBadReconcile,
        "catch-up",
        "a reconcile whose negentropy message is garbage",
        Rejected(Sync, "bad_sync_message"),
        Some("bad_message"),
    ),
    row(SyncUnknownScope, "catch-up", "a fetch in a scope the node does not follow", Answer, Some("unknown_scope")),
    row(SyncNotCbor, "catch-up", "a request that is not CBOR", Rejected(Sync, "bad_sync_message"), None),
    row(
        SyncOversized,
        "catch-up",
        "a request of 1.5 MiB (codec limit 1 MiB)",
        Rejected(Sync, "bad_sync_message"),
        None,
    ),
    row(
        SyncUnasked,
        "catch-up",
        "a fetch answered with records not asked for",
        Rejected(Sync, "bad_sync_message"),
        None,
    ),
    row(DealNotCbor, "deal", "a deal request that is not CBOR", Rejected(Deal, "bad_deal_message"), None),
    row(DealOversized, "deal", "a deal request of 100 KiB (at most 40 KiB)", Rejected(Deal, "bad_deal_message"), None),
    row(
        DealNonParty,
        "deal",
        "a proposal sent by someone who is not its author",
        Rejected(Deal, "author_mismatch"),
        Some("author_mismatch"),
    ),
    row(DealNotForUs, "deal", "a proposal addressed to someone else", Rejected(Deal, "not_for_us"), Some("not_for_us")),
    row(
        DealForged,
        "deal",
        "a proposal whose signature does not verify",
        Rejected(Deal, "bad_signature"),
        Some("bad_signature"),
    ),
    row(
        DealBurst,
        "deal",
        "80 deal requests in a second (burst 50, 5 a second)",
        Rejected(Deal, "deal_rate_limited"),
        Some("deal_rate_limited"),
    ),
];

fn count(node: &TestNode, counter: Counter) -> u64 {
    let m = node.handle.metrics();
    match counter {
        Rejected(s, c) => m.rejected.get(&s).and_then(|r| r.get(c)).copied().unwrap_or(0),
        Outcome(s, c) => m.outcomes.get(&s).and_then(|r| r.get(c)).copied().unwrap_or(0),
        Answer => 0,
    }
}

fn forge(mut bytes: Vec<u8>) -> Vec<u8> {
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    bytes
}

fn a_listing(who: &Identity, key: u8, title: &str) -> Vec<u8> {
    sign_listing(who, listing(key, 1, COMMUNITY, title)).bytes().to_vec()
}

fn a_proposal(from: &Identity, to: &Identity) -> Vec<u8> {
    let p = crate::deals::proposal(to.public(), to.public(), Kind::Lend, Some(now() + 3 * 24 * 3600));
    Signed::sign(from, now(), p).expect("sign").bytes().to_vec()
}

fn refusal_of_sync(r: Result<SyncResponse, String>) -> Option<String> {
    match r {
        Ok(SyncResponse::Refused { code, .. }) => Some(code),
        _ => None,
    }
}

fn refusal_of_deal(r: Result<DealResponse, String>) -> Option<String> {
    match r {
        Ok(DealResponse { answer: DealAnswer::Refused { code, .. }, .. }) => Some(code),
        _ => None,
    }
}

fn deal_record(bytes: Vec<u8>) -> DealRequest {
    DealRequest { msg: 1, body: DealMessage::Record { bytes } }
}

/// Sends one row's input; returns the refusal code of the node's answer, if there is one, and ids
/// that must not be stored.
async fn send(
    input: Input,
    hostile: &HostilePeer,
    victim: &TestNode,
    stored: &[(Identity, Vec<u8>)],
) -> (Option<String>, Vec<RecordId>) {
    let me = &hostile.identity;
    let v = victim.handle.peer_id();
    let gossip = |scope: &'static str, bytes: Vec<u8>| async move {
        hostile.gossip(scope, &bytes).await.expect("gossip");
        (None, troc_protocol::id_of_bytes(&bytes).into_iter().collect())
    };
    let sync_proto = StreamProtocol::new(troc_node::sync::PROTOCOL);
    let deal_proto = StreamProtocol::new(troc_node::deals::PROTOCOL);
    match input {
        ForgedSignature => gossip(SCOPE, forge(a_listing(me, 1, "Forged"))).await,
        Truncated => {
            let b = a_listing(me, 2, "Truncated");
            gossip(SCOPE, b[..b.len() / 2].to_vec()).await
        }
        TrailingBytes => {
            let mut b = a_listing(me, 3, "Trailing");
            b.extend_from_slice(&[1, 2, 3]);
            gossip(SCOPE, b).await
        }
        TooLarge => {
            let mut b = a_listing(me, 4, "Too large")[..42].to_vec();
            b.resize(troc_protocol::limits::MAX_RECORD_BYTES + 200, 0x41);
            gossip(SCOPE, b).await
        }
        UnknownType => {
            let mut b = a_listing(me, 5, "Unknown type");
            b[1] = 0xee;
            gossip(SCOPE, b).await
        }
        UnknownVersion => {
            let mut b = a_listing(me, 6, "Unknown version");
            b[0] = 0x7f;
            gossip(SCOPE, b).await
        }
        WrongTopic => gossip("global", a_listing(me, 7, "Wrong topic")).await,
        FromFuture => {
            let l = listing(8, 1, COMMUNITY, "From the future");
            gossip(SCOPE, Signed::sign(me, now() + 3600, l).expect("sign").bytes().to_vec()).await
        }
        WrongPublisher => gossip(SCOPE, a_listing(&person(7001), 9, "Not the publisher's")).await,
        PrivateOnGossip => gossip("global", a_proposal(me, &victim.identity)).await,
        Replayed => {
            let (author, bytes) = &stored[0];
            hostile.gossip_as(author, SCOPE, bytes).await.expect("gossip");
            (None, Vec::new())
        }
        SyncPushForged => {
            let records: Vec<Vec<u8>> = (20..25).map(|k| forge(a_listing(me, k, "Forged push"))).collect();
            let ids = records.iter().filter_map(|r| troc_protocol::id_of_bytes(r)).collect();
            (refusal_of_sync(hostile.sync(v, SyncRequest::Push { records }).await), ids)
        }
        SyncPushPrivate => {
            let records = vec![a_proposal(me, &victim.identity)];
            (refusal_of_sync(hostile.sync(v, SyncRequest::Push { records }).await), Vec::new())
        }
        SyncPushTooMany => {
            let records = vec![vec![0u8; 8]; 300];
            (refusal_of_sync(hostile.sync(v, SyncRequest::Push { records }).await), Vec::new())
        }
        SyncFetchTooMany => {
            let prefixes = vec![[7u8; 8]; 300];
            let r = hostile.sync(v, SyncRequest::Fetch { scope: SCOPE.into(), prefixes }).await;
            (refusal_of_sync(r), Vec::new())
        }
        SyncBadScope => {
            let r = hostile
                .sync(
                    v,
                    SyncRequest::Reconcile { scope: "community/\u{7}".into(), session: 1, round: 0, msg: vec![0x61] },
                )
                .await;
            (refusal_of_sync(r), Vec::new())
        }
        SyncTooManyRounds => {
            let r = hostile
                .sync(v, SyncRequest::Reconcile { scope: SCOPE.into(), session: 1, round: 60, msg: vec![0x61] })
                .await;
            (refusal_of_sync(r), Vec::new())
        }
        SyncBadReconcile => {
            let msg = vec![0x61, 0xff, 0xff, 0xff, 0xff, 0x01];
            let r = hostile.sync(v, SyncRequest::Reconcile { scope: SCOPE.into(), session: 1, round: 0, msg }).await;
            (refusal_of_sync(r), Vec::new())
        }
        SyncUnknownScope => {
            let r = hostile
                .sync(v, SyncRequest::Fetch { scope: "community/elsewhere".into(), prefixes: vec![[1; 8]] })
                .await;
            (refusal_of_sync(r), Vec::new())
        }
        SyncNotCbor => {
            let _ = hostile.raw_request(v, sync_proto, &[0xff; 64]).await;
            (None, Vec::new())
        }
        SyncOversized => {
            let _ = hostile.raw_request(v, sync_proto, &vec![0x41; 1536 * 1024]).await;
            (None, Vec::new())
        }
        SyncUnasked => {
            // Set before the connection (see `run_row`): the node's own catch-up with the hostile
            // peer fetches, and gets these.
            (
                None,
                hostile
                    .serving
                    .lock()
                    .expect("serving")
                    .fetch_answer
                    .iter()
                    .flatten()
                    .filter_map(|r| troc_protocol::id_of_bytes(r))
                    .collect(),
            )
        }
        DealNotCbor => {
            let _ = hostile.raw_request(v, deal_proto, &[0xff; 64]).await;
            (None, Vec::new())
        }
        DealOversized => {
            let _ = hostile.raw_request(v, deal_proto, &vec![0x41; 100 * 1024]).await;
            (None, Vec::new())
        }
        DealNonParty => {
            let bytes = a_proposal(&person(7002), &victim.identity);
            let id = troc_protocol::id_of_bytes(&bytes).into_iter().collect();
            (refusal_of_deal(hostile.deal(v, deal_record(bytes)).await), id)
        }
        DealNotForUs => {
            let bytes = a_proposal(me, &person(7003));
            let id = troc_protocol::id_of_bytes(&bytes).into_iter().collect();
            (refusal_of_deal(hostile.deal(v, deal_record(bytes)).await), id)
        }
        DealForged => {
            let bytes = forge(a_proposal(me, &victim.identity));
            let id = troc_protocol::id_of_bytes(&bytes).into_iter().collect();
            (refusal_of_deal(hostile.deal(v, deal_record(bytes)).await), id)
        }
        DealBurst => {
            // In waves of 8: the node reads at most 16 deal streams at once per connection and drops
            // the others unread, which bounds it too, but here every request should reach the limiter.
            let mut limited = None;
            for wave in 0..10u64 {
                let requests = (0..8).map(|i| {
                    hostile
                        .deal(v, DealRequest { msg: wave * 8 + i, body: DealMessage::Record { bytes: vec![1, 2, 3] } })
                });
                let answers = futures::future::join_all(requests).await;
                limited =
                    limited.or(answers.into_iter().filter_map(refusal_of_deal).find(|c| c == "deal_rate_limited"));
            }
            (limited, Vec::new())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_wire_input_gets_its_error_and_the_node_loses_nothing() {
    assert!(ROWS.len() >= 12);
    let victim = spawn(70, &[COMMUNITY], &[]).await;
    // What the node holds beforehand: listings of two neighbours.
    let neighbours = [person(71), person(72)];
    let mut stored: Vec<(Identity, Vec<u8>)> = Vec::new();
    for (n, who) in neighbours.iter().enumerate() {
        for key in 0..5u8 {
            stored.push((who.clone(), a_listing(who, key, &format!("Neighbour {n} thing {key}"))));
        }
    }
    let results = victim.handle.ingest_local(stored.iter().map(|(_, b)| b.clone()).collect()).await.expect("ingest");
    assert!(results.iter().all(|r| r.is_stored()), "{results:?}");
    let ids: Vec<RecordId> = stored.iter().filter_map(|(_, b)| troc_protocol::id_of_bytes(b)).collect();
    let addr = victim.handle.dial_addrs().await.expect("addrs")[0].clone();

    let mut table = vec![
        "| # | channel | hostile input | error (counter; answer) |".to_owned(),
        "| --- | --- | --- | --- |".to_owned(),
    ];
    for (i, row) in ROWS.iter().enumerate() {
        let hostile = HostilePeer::spawn(person(5000 + i as u32));
        if matches!(row.input, SyncUnasked) {
            // Claim to hold records the node lacks, then answer its fetch with others.
            let claimed: Vec<(u64, RecordId)> = (0..4u8).map(|k| (now(), RecordId([k + 1; 32]))).collect();
            let unasked: Vec<Vec<u8>> = (30..34).map(|k| a_listing(&person(7004), k, "Not asked for")).collect();
            let mut s = hostile.serving.lock().expect("serving");
            s.items = claimed;
            s.fetch_answer = Some(unasked);
        }
        let before = count(&victim, row.counter);
        hostile.attack(addr.clone(), &[SCOPE, "global"]).await.expect("the hostile peer connects");
        let (refusal, not_stored) = send(row.input, &hostile, &victim, &stored).await;
        if let Some(expected) = row.refusal {
            assert_eq!(refusal.as_deref(), Some(expected), "row {i} ({}): the answer", row.what);
        }
        if !matches!(row.counter, Answer) {
            wait_until(LIMIT, &format!("row {i} ({}): {:?} counted", row.what, row.counter), || async {
                count(&victim, row.counter) > before
            })
            .await;
        }
        // The node survives: it answers promptly, and lost nothing.
        let t = Instant::now();
        victim.handle.peers().await.expect("the node answers");
        assert!(t.elapsed() < ANSWERS_WITHIN, "row {i}: the node took {:?} to answer", t.elapsed());
        for id in &ids {
            assert!(victim.handle.store().contains(id).expect("read"), "row {i}: a stored record was lost");
        }
        for id in &not_stored {
            assert!(!victim.handle.store().contains(id).expect("read"), "row {i}: a hostile record was stored");
        }
        let counter = match row.counter {
            Rejected(s, c) => format!("`{c}` ({s:?} rejections)").to_lowercase(),
            Outcome(s, c) => format!("`{c}` ({s:?} outcomes, no penalty)").to_lowercase(),
            Answer => "no counter".to_owned(),
        };
        let answer = refusal.map(|c| format!("; answer `Refused {{ code: \"{c}\" }}`")).unwrap_or_default();
        table.push(format!("| {} | {} | {} | {counter}{answer} |", i + 1, row.channel, row.what));
    }
    println!("{}", table.join("\n"));
    assert_eq!(victim.handle.store().stats().expect("stats").records as usize, ids.len(), "nothing hostile was stored");
    victim.handle.shutdown().await.expect("clean shutdown");
}
