//! Catch-up benchmark: two nodes whose sets of 100,000 real signed listings (about 600 bytes each)
//! differ by 1%, reconciled in-process with `troc_node::sync`, then the missing records fetched
//! (and pushed). Prints the bytes on the wire, as the libp2p request-response `cbor` codec encodes
//! the messages, against the targets, then times the reconciliation with criterion.
//!
//! Run: `cargo bench -p troc-node --bench catchup`. Under `cargo test --benches` (no `--bench`
//! argument) it uses 10,000 records so that the check stays quick.

// A benchmark: a failure should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use libp2p::StreamProtocol;
use libp2p::request_response::{Codec as _, cbor};
use troc_node::sync::{
    IdPrefix, PROTOCOL, Reconciler, Responder, Step, SyncRequest, SyncResponse, answer_fetch, fetch_requests, not_sent,
    prefix_of, push_requests,
};
use troc_protocol::{Category, Currency, Identity, Kind, Listing, ListingKey, Money, RecordId, Signed, Terms};

/// The troc binary's allocator and settings (`troc_node::alloc`), so the figures are the binary's.
#[global_allocator]
static ALLOC: troc_node::alloc::Allocator = troc_node::alloc::Allocator;

const T0: u64 = 1_700_000_000;
const AUTHORS: usize = 1_000;

type Codec = cbor::codec::Codec<SyncRequest, SyncResponse>;

struct Record {
    created_at: u64,
    id: RecordId,
    bytes: Vec<u8>,
}

/// About 400 characters with the number appended.
const DESCRIPTION: &str = "Bosch cordless drill with two 2 Ah batteries, a charger and a box of wood and metal bits. \
    Works fine for shelves, flat-pack furniture and the odd hole in concrete. Please bring it back charged, \
    and tell me if a bit breaks: no problem, I just want to know. I can show you how to use it, and lend \
    the spirit level and the stud finder too if you need them";

fn listing(n: usize) -> Listing {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&(n as u64).to_be_bytes());
    let created_at = T0 + 60 * n as u64;
    Listing {
        key: ListingKey(key),
        revision: 1,
        kind: Kind::Lend,
        category: Category::Tools,
        title: format!("Cordless drill (18 V) with two batteries, number {n}"),
        description: format!("{DESCRIPTION} (#{n})."),
        tags: vec![],
        terms: Terms {
            max_loan_days: Some(7),
            deposit: Some(Money { amount_minor: 2000, currency: Currency(*b"EUR") }),
            conditions: String::new(),
            availability: String::new(),
            in_return: String::new(),
            hours: None,
        },
        community: "north-end".into(),
        location: "u09tvw".into(),
        available_from: None,
        available_until: None,
        valid_until: created_at + 30 * 24 * 3600,
    }
}

/// `count` real signed listings by `AUTHORS` authors, signed on every core.
fn make_records(count: usize) -> Vec<Record> {
    let authors: Vec<Identity> = (0..AUTHORS)
        .map(|a| {
            let mut seed = [0xA5u8; 32];
            seed[..8].copy_from_slice(&(a as u64).to_le_bytes());
            Identity::from_seed(&seed)
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = count.div_ceil(threads);
    let authors = &authors;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(count))
                        .map(|n| {
                            let created_at = T0 + 60 * n as u64;
                            let signed = Signed::sign(&authors[n % AUTHORS], created_at, listing(n)).unwrap();
                            Record { created_at, id: signed.id(), bytes: signed.bytes().to_vec() }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

fn proto() -> StreamProtocol {
    StreamProtocol::new(PROTOCOL)
}

fn request_len(req: &SyncRequest) -> usize {
    let mut buf = Vec::new();
    futures::executor::block_on(Codec::default().write_request(&proto(), &mut buf, req.clone())).unwrap();
    buf.len()
}

fn response_len(resp: &SyncResponse) -> usize {
    let mut buf = Vec::new();
    futures::executor::block_on(Codec::default().write_response(&proto(), &mut buf, resp.clone())).unwrap();
    buf.len()
}

/// One side: its items and its records by id.
struct Side<'a> {
    items: Vec<(u64, RecordId)>,
    by_id: HashMap<RecordId, &'a Record>,
}

impl<'a> Side<'a> {
    fn new(records: impl Iterator<Item = &'a Record>) -> Self {
        let mut items = Vec::new();
        let mut by_id = HashMap::new();
        for r in records {
            items.push((r.created_at, r.id));
            by_id.insert(r.id, r);
        }
        items.sort_unstable();
        Side { items, by_id }
    }

    fn bytes(&self) -> usize {
        self.by_id.values().map(|r| r.bytes.len()).sum()
    }
}

#[derive(Default)]
struct Figures {
    rounds: u16,
    neg_sent: u64,
    neg_received: u64,
    reconcile_wire: usize,
    fetch_wire: usize,
    push_wire: usize,
    missing_bytes: usize,
    need: usize,
    have: usize,
    fetch_requests: usize,
}

/// Reconciles `a` (initiator) against `b`, returns have/need and counts wire bytes if `count`.
fn reconcile(a: &Side, b: &Responder, figures: Option<&mut Figures>) -> (Vec<RecordId>, Vec<IdPrefix>) {
    let (mut rec, mut req) = Reconciler::start("north-end", a.items.clone()).unwrap();
    let mut wire = 0;
    let counting = figures.is_some();
    loop {
        let SyncRequest::Reconcile { msg, .. } = &req else { unreachable!() };
        let reply = b.respond(msg).unwrap();
        if counting {
            wire += request_len(&req) + response_len(&SyncResponse::Reconcile { msg: reply.clone() });
        }
        match rec.on_response(reply).unwrap() {
            Step::Continue(next) => req = next,
            Step::Done { have, need, complete } => {
                assert!(complete);
                if let Some(f) = figures {
                    let s = rec.stats();
                    f.rounds = s.rounds;
                    f.neg_sent = s.bytes_sent;
                    f.neg_received = s.bytes_received;
                    f.reconcile_wire = wire;
                }
                return (have, need);
            }
        }
    }
}

/// The whole catch-up of `a` from `b`: reconcile, fetch `need` (re-asking what did not fit),
/// push `have`.
fn catch_up(a: &Side, b: &Side, b_responder: &Responder) -> Figures {
    let mut f = Figures::default();
    let (have, need) = reconcile(a, b_responder, Some(&mut f));
    f.have = have.len();
    f.need = need.len();
    // The records b holds and a lacks, found by their prefixes (no two ids share one here).
    let b_by_prefix: HashMap<IdPrefix, &Record> = b.by_id.values().map(|r| (prefix_of(&r.id), *r)).collect();
    f.missing_bytes = have.iter().map(|id| a.by_id[id].bytes.len()).sum::<usize>()
        + need.iter().map(|p| b_by_prefix[p].bytes.len()).sum::<usize>();
    assert!(need.iter().all(|p| !a.by_id.contains_key(&b_by_prefix[p].id)));

    let mut queue: Vec<IdPrefix> = need;
    let mut got = 0;
    while !queue.is_empty() {
        let mut next = Vec::new();
        for req in fetch_requests("north-end", &queue) {
            let SyncRequest::Fetch { prefixes, .. } = &req else { unreachable!() };
            let resp = answer_fetch(b_responder, prefixes, |id| Ok::<_, ()>(b.by_id.get(id).map(|r| r.bytes.clone())))
                .unwrap();
            f.fetch_requests += 1;
            f.fetch_wire += request_len(&req) + response_len(&resp);
            let SyncResponse::Records { records, missing } = &resp else { unreachable!() };
            // The real node decodes and verifies each record to learn its id.
            let received: Vec<RecordId> = records.iter().map(|r| troc_protocol::decode(r).unwrap().id()).collect();
            got += received.len();
            assert!(missing.is_empty());
            next.extend(not_sent(prefixes, &received, missing));
        }
        queue = next;
    }
    assert_eq!(got, f.need);

    let records: Vec<Vec<u8>> = have.iter().map(|id| a.by_id[id].bytes.clone()).collect();
    for req in push_requests(records) {
        let SyncRequest::Push { records } = &req else { unreachable!() };
        f.push_wire += request_len(&req) + response_len(&SyncResponse::Pushed { accepted: records.len() as u32 });
    }
    f
}

fn kib(n: usize) -> String {
    format!("{:.1} KiB", n as f64 / 1024.0)
}

fn report(name: &str, a: &Side, b: &Side, f: &Figures, millis: f64) {
    let everything = b.bytes();
    let total = f.reconcile_wire + f.fetch_wire + f.push_wire;
    let budget = 2 * f.missing_bytes + 64 * 1024;
    println!("\n== {name}: initiator {} records, responder {} records", a.items.len(), b.items.len());
    println!("  have (pushed) / need (fetched)       {} / {}", f.have, f.need);
    println!("  reconciliation rounds (requests)     {}", f.rounds);
    let neg = f.neg_sent + f.neg_received;
    println!(
        "  reconciliation, compact messages     {} ({} B: {} B sent by the initiator, {} B by the responder)",
        kib(neg as usize),
        neg,
        f.neg_sent,
        f.neg_received
    );
    println!("  reconciliation, on the wire (CBOR)   {} ({} B)", kib(f.reconcile_wire), f.reconcile_wire);
    println!("  fetch on the wire ({} requests)       {} ({} B)", f.fetch_requests, kib(f.fetch_wire), f.fetch_wire);
    println!("  push on the wire                     {} ({} B)", kib(f.push_wire), f.push_wire);
    println!("  missing records (their bytes)        {} ({} B)", kib(f.missing_bytes), f.missing_bytes);
    println!("  TOTAL on the wire                    {} ({} B)", kib(total), total);
    println!("  sending everything (responder's set) {} ({} B)", kib(everything), everything);
    println!(
        "  target 1: total <= 2 x missing + 64 KiB = {}: {} ({:.2} of the budget)",
        kib(budget),
        if total <= budget { "MET" } else { "MISSED" },
        total as f64 / budget as f64
    );
    println!(
        "  target 2: >= 20x fewer bytes than everything: {:.1}x, {}",
        everything as f64 / total as f64,
        if everything >= 20 * total { "MET" } else { "MISSED" }
    );
    println!("  whole catch-up in-process (one run, incl. CBOR encoding and decoding records): {millis:.1} ms");
}

fn main() {
    troc_node::alloc::configure();
    let benching = std::env::args().any(|a| a == "--bench");
    let n: usize = if benching { 100_000 } else { 10_000 };
    let diff = n / 100;

    let t = Instant::now();
    let records = make_records(n + diff);
    let avg = records.iter().map(|r| r.bytes.len()).sum::<usize>() / records.len();
    println!(
        "{} real signed listings ({} authors, {avg} bytes on average) signed in {:.2} s",
        records.len(),
        AUTHORS,
        t.elapsed().as_secs_f64()
    );

    // A node that was away misses what was written meanwhile: differences are the newest records
    // ("recent"). Lost gossip leaves holes anywhere in time ("scattered", the worst case for the
    // fingerprint tree: every differing leaf range is sent as a list of id prefixes).
    let half = diff / 2;
    let scenarios: Vec<(String, Side, Side)> = vec![
        (
            format!("recent: {half} only on each side"),
            Side::new(records[..n].iter()),
            Side::new(records[..n - half].iter().chain(&records[n..n + half])),
        ),
        (
            format!("recent: {diff} only on the responder"),
            Side::new(records[..n - diff].iter()),
            Side::new(records[..n].iter()),
        ),
        (
            format!("scattered: {half} only on each side"),
            Side::new(records[..n].iter().enumerate().filter(|(i, _)| i % 200 != 37).map(|(_, r)| r)),
            Side::new(records[..n].iter().enumerate().filter(|(i, _)| i % 200 != 137).map(|(_, r)| r)),
        ),
        (
            format!("scattered: {diff} only on the responder"),
            Side::new(records[..n].iter().enumerate().filter(|(i, _)| i % 100 != 37).map(|(_, r)| r)),
            Side::new(records[..n].iter()),
        ),
    ];

    let t = Instant::now();
    let responders: Vec<Responder> =
        scenarios.iter().map(|(_, _, b)| Responder::new(b.items.clone()).unwrap()).collect();
    println!(
        "Responder::new over {} items: {:.1} ms each",
        scenarios[0].2.items.len(),
        t.elapsed().as_secs_f64() * 1e3 / scenarios.len() as f64
    );
    for ((name, a, b), r) in scenarios.iter().zip(&responders) {
        let t = Instant::now();
        let f = catch_up(a, b, r);
        report(name, a, b, &f, t.elapsed().as_secs_f64() * 1e3);
    }
    println!();

    let mut c = Criterion::default().sample_size(10).configure_from_args();
    for ((name, a, _), r) in scenarios.iter().zip(&responders) {
        c.bench_function(&format!("reconcile {n} records, {name}"), |bench| {
            bench.iter(|| black_box(reconcile(a, r, None)))
        });
    }
    let items = scenarios[0].2.items.clone();
    c.bench_function(&format!("Responder::new over {n} items"), |bench| {
        bench.iter(|| black_box(Responder::new(items.clone()).unwrap()))
    });
    c.final_summary();
}
