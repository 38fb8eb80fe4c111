//! Trust benchmark: one viewer's trust over 10,000 identities and 100,000 reviews (the issue's
//! target: under 100 ms), and separately the fact extraction from the signed records.
//!
//! The world is seeded: 10,000 identities in neighbourhoods of 50, 50,000 deals (85% within the
//! neighbourhood, partners drawn by a heavy-tailed activity), spread over the last year, each
//! reviewed by both parties (about 3% negative), so 100,000 reviews. It prints: the time to build
//! the graph from typed facts, to prepare the model (`TrustModel::new`, viewer-independent), and
//! one viewer's view (`TrustModel::view`) for 20 viewers (median and max), with the figures of
//! the view; then it signs the same deals as real records (agreements co-signed, reviews) and
//! times `TrustGraph::from_records`; then criterion times the view, the preparation and the
//! extraction.
//!
//! Run: `cargo bench -p troc-node --bench trust`. Under `cargo test --benches` (no `--bench`
//! argument) it uses a tenth of the size so that the check stays quick.

// A benchmark: a failure should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use troc_node::trust::sim::SimRng;
use troc_node::trust::{Deal, DealOutcome, Opinion, OpinionSource, TrustGraph, TrustModel, TrustParams, Verdict};
use troc_protocol::{
    Agreement, Identity, Kind, ListingKey, Nonce, PartiallySigned, Rating, RecordId, Review, Signed, SignedRecord,
};

const NOW: u64 = 1_780_000_000;
const DAY: u64 = 86_400;
const HOOD: usize = 50;

struct DealSpec {
    a: usize,
    b: usize,
    at: u64,
    ratings: [Rating; 2],
}

fn world(identities: usize, deals: usize, rng: &mut SimRng) -> Vec<DealSpec> {
    let activity: Vec<f64> = (0..identities).map(|_| (1.0 - rng.unit()).powf(-1.0 / 1.5).min(60.0)).collect();
    let cum = |range: std::ops::Range<usize>| {
        let mut acc = 0.0;
        range
            .map(|i| {
                acc += activity[i];
                acc
            })
            .collect::<Vec<f64>>()
    };
    let all = cum(0..identities);
    let hoods: Vec<Vec<f64>> =
        (0..identities.div_ceil(HOOD)).map(|h| cum(h * HOOD..((h + 1) * HOOD).min(identities))).collect();
    let pick = |c: &[f64], rng: &mut SimRng| {
        let x = rng.unit() * c.last().copied().unwrap_or(0.0);
        c.partition_point(|&y| y <= x).min(c.len() - 1)
    };
    (0..deals)
        .map(|k| {
            let a = if k < identities { k } else { pick(&all, rng) };
            let b = loop {
                let b = if rng.unit() < 0.85 {
                    let h = a / HOOD;
                    h * HOOD + pick(&hoods[h], rng)
                } else {
                    pick(&all, rng)
                };
                if b != a {
                    break b;
                }
            };
            let mut ratings = [Rating::Positive, Rating::Positive];
            if rng.unit() < 0.03 {
                ratings[rng.below(2)] = Rating::Negative;
            }
            let at = NOW - DAY - (rng.unit() * 364.0 * DAY as f64) as u64;
            DealSpec { a, b, at, ratings }
        })
        .collect()
}

fn typed_facts(keys: &[troc_protocol::PublicKey], specs: &[DealSpec]) -> (Vec<Deal>, Vec<Opinion>) {
    let mut deals = Vec::with_capacity(specs.len());
    let mut opinions = Vec::with_capacity(specs.len() * 2);
    for (i, d) in specs.iter().enumerate() {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let id = RecordId(id);
        let (ka, kb) = (keys[d.a], keys[d.b]);
        deals.push(Deal { id, parties: [ka, kb], at: d.at, ended_at: Some(d.at), outcome: DealOutcome::Completed });
        for (from, about, r) in [(ka, kb, d.ratings[0]), (kb, ka, d.ratings[1])] {
            opinions.push(Opinion {
                deal: id,
                from,
                about,
                at: d.at,
                verdict: Verdict::from(r),
                source: OpinionSource::Review,
            });
        }
    }
    (deals, opinions)
}

fn sign(ids: &[Identity], specs: &[DealSpec]) -> Vec<SignedRecord> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
    let chunk = specs.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = specs
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                s.spawn(move || {
                    let mut rng = SimRng::new(c as u64 + 1);
                    let mut out = Vec::with_capacity(part.len() * 3);
                    for d in part {
                        let (a, b) = (&ids[d.a], &ids[d.b]);
                        let body = Agreement {
                            counterparty: *b.public(),
                            proposal: RecordId(rng.bytes()),
                            listing_author: *a.public(),
                            listing_key: ListingKey(rng.bytes()),
                            kind: Kind::Give,
                            start: d.at,
                            due: None,
                        };
                        let ag = PartiallySigned::sign(a, d.at, body).unwrap().countersign(b).unwrap();
                        let deal = ag.id();
                        out.push(ag.into_any());
                        for (who, subject, rating) in [(a, b, d.ratings[0]), (b, a, d.ratings[1])] {
                            let review = Review {
                                agreement: deal,
                                subject: *subject.public(),
                                rating,
                                facets: Vec::new(),
                                text: String::new(),
                                nonce: Nonce(rng.bytes()),
                            };
                            out.push(Signed::sign(who, d.at + 3600, review).unwrap().into_any());
                        }
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, deals) = if full { (10_000, 50_000) } else { (1_000, 5_000) };
    let mut rng = SimRng::new(2026);
    let ids: Vec<Identity> = (0..n).map(|_| Identity::from_seed(&rng.bytes())).collect();
    let keys: Vec<_> = ids.iter().map(|i| *i.public()).collect();
    let specs = world(n, deals, &mut rng);
    let (deal_facts, opinion_facts) = typed_facts(&keys, &specs);
    println!("trust: {n} identities, {} deals, {} reviews", deal_facts.len(), opinion_facts.len());

    let t = Instant::now();
    let graph = TrustGraph::from_facts(deal_facts.clone(), opinion_facts.clone(), []).unwrap();
    println!("graph from typed facts: {:.1} ms", ms(t.elapsed()));
    let t = Instant::now();
    let model = TrustModel::new(&graph, NOW, TrustParams::default());
    let prepare = t.elapsed();
    println!("model (viewer-independent): {:.1} ms, {} edges", ms(prepare), model.edge_count());
    let viewers: Vec<usize> = (0..20).map(|_| rng.below(n)).collect();
    let mut times = Vec::new();
    for &v in &viewers {
        let t = Instant::now();
        let view = black_box(model.view(&keys[v], &[]));
        times.push(t.elapsed());
        let s = view.stats();
        println!(
            "  viewer {v}: {:.1} ms, {} iterations, {} established, {} ranked",
            ms(*times.last().unwrap()),
            s.iterations,
            s.established,
            view.ranked().len()
        );
    }
    times.sort();
    println!(
        "one viewer's view: median {:.1} ms, max {:.1} ms; with the model prepared each time: {:.1} ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        ms(times[times.len() / 2] + prepare)
    );

    let t = Instant::now();
    let records = sign(&ids, &specs);
    println!("signed {} records in {:.1} s", records.len(), t.elapsed().as_secs_f64());
    let t = Instant::now();
    let from_records = TrustGraph::from_records(&records, NOW);
    println!(
        "facts from records (TrustGraph::from_records): {:.1} ms ({} deals, {} opinions)",
        ms(t.elapsed()),
        from_records.deals().len(),
        from_records.opinions().len()
    );
    assert_eq!(from_records.opinions().len(), graph.opinions().len());

    let mut c = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).configure_from_args();
    let mut i = 0usize;
    c.bench_function(&format!("trust view ({n} identities, {} reviews)", opinion_facts.len()), |b| {
        b.iter(|| {
            i = (i + 1) % viewers.len();
            black_box(model.view(&keys[viewers[i]], &[]))
        })
    });
    c.bench_function("trust model prepare", |b| {
        b.iter(|| black_box(TrustModel::new(&graph, NOW, TrustParams::default())))
    });
    c.bench_function("trust facts from records", |b| b.iter(|| black_box(TrustGraph::from_records(&records, NOW))));
    c.final_summary();
}
