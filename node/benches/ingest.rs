//! Ingest benchmark of the node: how close the whole ingest pipeline (decode → clock check → batch
//! verification → `Store::apply` into a real sled store, as the writer thread runs it) comes to the
//! bare ed25519 batch verification it is built around.
//!
//! In one run, on real signed listings (about 600 bytes, 5,000 authors, 4 communities):
//! - `raw_verify_batch_{64,256}`: `ed25519_dalek::verify_batch` over the records' signed messages,
//!   keys pre-parsed (the ceiling);
//! - `decode_verify_256`: `decode` + `check_time` + our `verify_batch` (the pipeline minus the store);
//! - `store_apply_256`: `Store::apply` alone, of fresh pre-verified records;
//! - `pipeline_256`: `NodeHandle::ingest_local` of a batch of 256 on a running node (no peers): the
//!   writer's exact path (decode, precheck, verify_batch, apply, events).
//!
//! The stateful benchmarks (store, pipeline) use fresh records for every iteration: they are
//! signed before each sample (outside the timing), never re-ingested. Then a paired measurement
//! alternates one pipeline batch and one raw batch verification and prints the ratio of their rates.
//!
//! Run: `cargo bench -p troc-node --bench ingest`. Under `cargo test --benches` it runs each
//! benchmark once.

// A benchmark: a failure should stop it loudly.
#![allow(clippy::unwrap_used)]

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ed25519_dalek::{Signature, VerifyingKey};
use support::Generator;
use troc_node::store::{Store, StoreConfig};
use troc_node::{Node, NodeConfig, NodeHandle, now_secs};
use troc_protocol::{Identity, SignedRecord, decode, signed_message, verify_batch};

const AUTHORS: usize = 5_000;

struct Raw {
    messages: Vec<Vec<u8>>,
    sigs: Vec<Signature>,
    keys: Vec<VerifyingKey>,
}

impl Raw {
    fn new(records: &[SignedRecord]) -> Self {
        let mut raw = Raw { messages: Vec::new(), sigs: Vec::new(), keys: Vec::new() };
        for r in records {
            raw.messages.push(signed_message(r.record_type(), r.content()));
            raw.sigs.push(Signature::from_slice(r.signatures().next().unwrap()).unwrap());
            raw.keys.push(VerifyingKey::from_bytes(r.author().as_bytes()).unwrap());
        }
        raw
    }

    fn verify(&self) {
        let messages: Vec<&[u8]> = self.messages.iter().map(Vec::as_slice).collect();
        ed25519_dalek::verify_batch(black_box(&messages), black_box(&self.sigs), black_box(&self.keys)).unwrap();
    }
}

fn decode_verify(batch: &[Vec<u8>], now: u64) -> usize {
    let unverified = batch
        .iter()
        .map(|b| {
            let u = decode(b).unwrap();
            u.check_time(now).unwrap();
            u
        })
        .collect();
    verify_batch(unverified).into_iter().filter(Result::is_ok).count()
}

fn ingest(rt: &tokio::runtime::Runtime, node: &NodeHandle, batch: Vec<Vec<u8>>) {
    let n = batch.len();
    let results = rt.block_on(node.ingest_local(batch)).unwrap();
    assert_eq!(results.len(), n);
    assert!(results.iter().all(|r| r.is_stored()), "{:?}", results.iter().find(|r| !r.is_stored()));
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let mut generator = Generator::new(AUTHORS, 0x5A);

    let fixed = generator.records(256);
    let avg = fixed.iter().map(|r| r.bytes().len()).sum::<usize>() / fixed.len();
    println!("listings of {avg} bytes on average, {AUTHORS} authors");
    let fixed_bytes: Vec<Vec<u8>> = fixed.iter().map(|r| r.bytes().to_vec()).collect();
    let raw64 = Raw::new(&fixed[..64]);
    let raw256 = Raw::new(&fixed);

    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let config = NodeConfig::for_test(dir.path().join("node"), Identity::from_seed(&[0xEE; 32]));
    let cache = config.store_cache_bytes;
    let (node, events) = rt.block_on(Node::spawn(config)).unwrap();
    drop(events);
    let store = Store::open(StoreConfig::new(dir.path().join("apply"))).unwrap();

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("ingest");
        g.throughput(Throughput::Elements(64));
        g.bench_function("raw_verify_batch_64", |b| b.iter(|| raw64.verify()));
        g.throughput(Throughput::Elements(256));
        g.bench_function("raw_verify_batch_256", |b| b.iter(|| raw256.verify()));
        g.bench_function("decode_verify_256", |b| {
            b.iter(|| assert_eq!(decode_verify(black_box(&fixed_bytes), now_secs()), 256))
        });
        g.bench_function("store_apply_256", |b| {
            b.iter_custom(|iters| {
                let batches: Vec<Vec<SignedRecord>> = (0..iters).map(|_| generator.records(256)).collect();
                let start = Instant::now();
                for batch in &batches {
                    let out = store.apply(batch, now_secs()).unwrap();
                    assert!(out.iter().all(|o| o.is_stored()));
                }
                start.elapsed()
            })
        });
        g.bench_function("pipeline_256", |b| {
            b.iter_custom(|iters| {
                let batches: Vec<Vec<Vec<u8>>> = (0..iters).map(|_| generator.bytes(256)).collect();
                let start = Instant::now();
                for batch in batches {
                    ingest(&rt, &node, batch);
                }
                start.elapsed()
            })
        });
        g.finish();
    }

    // Paired: alternate one pipeline batch (fresh records) and one raw batch verification, so that
    // a change in the machine's load affects both sides of the ratio alike.
    let rounds = if benching { 200 } else { 2 };
    let (mut pipeline, mut raw) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let batch = generator.bytes(256);
        let t = Instant::now();
        ingest(&rt, &node, batch);
        pipeline += t.elapsed();
        let t = Instant::now();
        raw256.verify();
        raw += t.elapsed();
    }
    let records = (rounds * 256) as f64;
    let (p, r) = (records / pipeline.as_secs_f64(), records / raw.as_secs_f64());
    println!(
        "paired ({rounds} rounds of 256): pipeline {p:.0} records/s, raw verify_batch {r:.0} records/s, ratio {:.3} (target >= 0.50)",
        p / r
    );

    let stats = node.store().stats().unwrap();
    println!(
        "node store after the run: {} records, {:.1} MiB on disk, cache {} MiB; apply store: {} records",
        stats.records,
        stats.size_on_disk as f64 / (1024.0 * 1024.0),
        cache / (1024 * 1024),
        store.stats().unwrap().records
    );
    rt.block_on(node.shutdown()).unwrap();
    c.final_summary();
}
