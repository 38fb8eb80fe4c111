//! Ingest benchmark of the node: how close the whole ingest pipeline (decode → clock check →
//! already-known check → batch verification → `Store::apply` into a real sled store) comes to the
//! bare ed25519 batch verification it is built around.
//!
//! In one run, on real signed listings (about 600 bytes, 5,000 authors, 4 communities):
//! - `raw_verify_batch_{64,256}`: `ed25519_dalek::verify_batch` over the records' signed messages,
//!   keys pre-parsed (the ceiling), on one thread;
//! - `decode_verify_256`: `decode` + `check_time` + our `verify_batch` (the pipeline minus the store);
//! - `store_apply_256`: `Store::apply` alone, of fresh pre-verified records;
//! - `pipeline_local_256`: `NodeHandle::ingest_local` of one batch of 256 at a time on a running
//!   node (no peers): the two stages one after the other (nothing to overlap with), and the flush
//!   that local records get before their answer;
//! - `pipeline_stream_256`: the ingest stages ([`troc_node::ingest::Pipeline`]) fed as catch-up
//!   feeds them: jobs of 64 records from a peer, 16 in flight, so the verification of one batch
//!   overlaps the store write of the previous one (two threads) and nothing is flushed.
//!
//! The stateful benchmarks use fresh records for every iteration: they are signed before each
//! sample (outside the timing), never re-ingested. Then paired measurements alternate a pipeline
//! block and raw batch verifications of as many records, and print the ratio of their rates. Last,
//! `Store::apply` of 100,000 listings into an empty store (the rate as the store grows), and the
//! time to open that store again (rebuilding every index) after a clean close and after a crash.
//!
//! Run: `cargo bench -p troc-node --bench ingest`. Under `cargo test --benches` it runs each
//! benchmark once and the growth figures on 10,000 listings.

// A benchmark: a failure should stop it loudly.
#![allow(clippy::unwrap_used)]

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ed25519_dalek::{Signature, VerifyingKey};
use support::Generator;
use troc_node::config::Limits;
use troc_node::ingest::Pipeline;
use troc_node::store::{Store, StoreConfig};
use troc_node::{Node, NodeConfig, NodeHandle, now_secs};
use troc_protocol::{Identity, PeerId, SignedRecord, decode, signed_message, verify_batch};

/// The troc binary's allocator and settings (`troc_node::alloc`), so the figures are the binary's.
#[global_allocator]
static ALLOC: troc_node::alloc::Allocator = troc_node::alloc::Allocator;

const AUTHORS: usize = 5_000;
/// Records per job in the stream, and jobs in flight.
const STREAM_JOB: usize = 64;
const STREAM_JOBS: usize = 16;

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

fn ingest_local(rt: &tokio::runtime::Runtime, node: &NodeHandle, batch: Vec<Vec<u8>>) {
    let n = batch.len();
    let results = rt.block_on(node.ingest_local(batch)).unwrap();
    assert_eq!(results.len(), n);
    assert!(results.iter().all(|r| r.is_stored()), "{:?}", results.iter().find(|r| !r.is_stored()));
}

/// Feeds `records` to the pipeline as jobs of [`STREAM_JOB`] from `peer`, all in flight at once
/// (the queue holds them), and waits for every answer.
fn stream(rt: &tokio::runtime::Runtime, pipeline: &Pipeline, peer: PeerId, records: Vec<Vec<u8>>) {
    let mut jobs = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(STREAM_JOB));
        jobs.push(std::mem::replace(&mut rest, tail));
    }
    let results = rt.block_on(futures::future::join_all(jobs.into_iter().map(|j| pipeline.ingest(j, Some(peer)))));
    for r in results {
        let r = r.unwrap();
        assert!(r.iter().all(|r| r.is_stored()), "{:?}", r.iter().find(|r| !r.is_stored()));
    }
}

/// CPU time (user + system, in seconds) of each thread of this process, by name.
fn thread_cpu() -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        out.push((name, ticks / 100.0));
    }
    out
}

/// The stream pipeline alone on `blocks` blocks of fresh records: wall time, and the CPU time of
/// each of its threads per record (where the time goes, by stage).
fn stream_cpu(generator: &mut Generator, blocks: usize) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let pipeline = Pipeline::start(
        Store::open(StoreConfig::new(dir.path().join("stream"))).unwrap(),
        Limits::default(),
        *Identity::from_seed(&[0xEF; 32]).public(),
    )
    .unwrap();
    let peer = Identity::from_seed(&[0xAB; 32]).peer_id();
    let block = STREAM_JOB * STREAM_JOBS;
    let inputs: Vec<Vec<Vec<u8>>> = (0..blocks).map(|_| generator.bytes(block)).collect();
    let before = thread_cpu();
    let t = Instant::now();
    for records in inputs {
        stream(&rt, &pipeline, peer, records);
    }
    let wall = t.elapsed().as_secs_f64();
    let n = (blocks * block) as f64;
    println!("stream alone: {n} records in {wall:.2} s: {:.0} records/s, {:.1} µs/record", n / wall, wall * 1e6 / n);
    for (name, cpu) in thread_cpu() {
        let was = before.iter().find(|(b, _)| *b == name).map_or(0.0, |b| b.1);
        if cpu - was > 0.01 {
            println!("  thread {name:<20} {:.1} µs CPU/record", (cpu - was) * 1e6 / n);
        }
    }
    rt.block_on(pipeline.close()).unwrap();
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// `Store::apply` of `count` fresh listings into an empty store (default configuration), in batches
/// of 256, printing the rate per tenth; then the time to open the store again after a clean close,
/// and after a crash (not closed: every record re-verified).
fn growth(count: usize) {
    let mut generator = Generator::new(1_000, 0x77);
    let dir = tempfile::tempdir().unwrap();
    let cfg = || StoreConfig::new(dir.path().join("grow"));
    let store = Store::open(cfg()).unwrap();
    println!("\nStore::apply of {count} fresh listings (1,000 authors) into an empty store, batches of 256:");
    let step = count / 10;
    let (mut done, mut busy) = (0, Duration::ZERO);
    let mut total = Duration::ZERO;
    while done < count {
        let batch = generator.records(256.min(count - done));
        let t = Instant::now();
        let out = store.apply(&batch, now_secs()).unwrap();
        let took = t.elapsed();
        assert!(out.iter().all(|o| o.is_stored()));
        let before = done;
        done += batch.len();
        busy += took;
        total += took;
        if before / step != done / step || done == count {
            println!(
                "  {:>6} to {:>6}: {:>5.1} µs/record ({:.0} records/s)",
                (before / step) * step,
                done,
                busy.as_secs_f64() * 1e6 / (done - (before / step) * step) as f64,
                (done - (before / step) * step) as f64 / busy.as_secs_f64()
            );
            busy = Duration::ZERO;
        }
    }
    println!(
        "  average {:.1} µs/record ({:.0} records/s)",
        total.as_secs_f64() * 1e6 / count as f64,
        count as f64 / total.as_secs_f64()
    );
    let (mem, search) = store.index_memory_bytes();
    let stats = store.stats().unwrap();
    println!(
        "  store: {} records, {:.1} MiB of record bytes, {:.1} MiB on disk; indexes ~{:.1} MiB, search index ~{:.1} MiB (estimates)",
        stats.records,
        mib(stats.record_bytes),
        mib(stats.size_on_disk),
        mib(mem as u64),
        mib(search as u64)
    );
    store.close().unwrap();
    for (what, clean) in [("after a clean close (decode only)", true), ("after a crash (decode and verify)", false)] {
        let t = Instant::now();
        let store = Store::open(cfg()).unwrap();
        let took = t.elapsed();
        assert_eq!(store.stats().unwrap().records, count as u64);
        assert_eq!(store.open_repair().is_some(), !clean);
        println!(
            "  open {what}: {:.2} s ({:.1} µs/record)",
            took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / count as f64
        );
        if clean {
            // Not closed: the next open is the crash case.
            store.flush().unwrap();
            drop(store);
        } else {
            store.close().unwrap();
        }
    }
}

fn main() {
    troc_node::alloc::configure();
    let benching = std::env::args().any(|a| a == "--bench");
    if let Ok(n) = std::env::var("TROC_INGEST_GROWTH_ONLY") {
        // For profiling the store alone: `TROC_INGEST_GROWTH_ONLY=50000 cargo bench ... --bench ingest`.
        growth(n.parse().unwrap());
        return;
    }
    let mut generator = Generator::new(AUTHORS, 0x5A);
    if let Ok(n) = std::env::var("TROC_INGEST_STREAM_CPU") {
        stream_cpu(&mut generator, n.parse().unwrap());
        return;
    }

    let fixed = generator.records(256);
    let avg = fixed.iter().map(|r| r.bytes().len()).sum::<usize>() / fixed.len();
    println!(
        "listings of {avg} bytes on average, {AUTHORS} authors; {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
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
    let peer = Identity::from_seed(&[0xAB; 32]).peer_id();
    let pipeline = Pipeline::start(
        Store::open(StoreConfig::new(dir.path().join("stream"))).unwrap(),
        Limits::default(),
        *Identity::from_seed(&[0xEF; 32]).public(),
    )
    .unwrap();

    let paired_only: Option<usize> = std::env::var("TROC_INGEST_PAIRED_ONLY").ok().map(|n| n.parse().unwrap());
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
        .configure_from_args();
    if paired_only.is_none() {
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
        g.bench_function("pipeline_local_256", |b| {
            b.iter_custom(|iters| {
                let batches: Vec<Vec<Vec<u8>>> = (0..iters).map(|_| generator.bytes(256)).collect();
                let start = Instant::now();
                for batch in batches {
                    ingest_local(&rt, &node, batch);
                }
                start.elapsed()
            })
        });
        g.bench_function("pipeline_stream_256", |b| {
            b.iter_custom(|iters| {
                let records = generator.bytes(256 * iters as usize);
                let start = Instant::now();
                stream(&rt, &pipeline, peer, records);
                start.elapsed()
            })
        });
        g.finish();
    }

    // Paired: alternate one pipeline block (fresh records) and raw batch verifications of as many
    // records, so that a change in the machine's load affects both sides of the ratio alike.
    let rounds = paired_only.unwrap_or(if benching { 200 } else { 2 });
    let block = STREAM_JOB * STREAM_JOBS;
    let (mut streamed, mut local, mut raw) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let records = generator.bytes(block);
        let t = Instant::now();
        stream(&rt, &pipeline, peer, records);
        streamed += t.elapsed();
        let batch = generator.bytes(256);
        let t = Instant::now();
        ingest_local(&rt, &node, batch);
        local += t.elapsed();
        let t = Instant::now();
        for _ in 0..block / 256 + 1 {
            raw256.verify();
        }
        raw += t.elapsed();
    }
    let rate = |records: usize, d: Duration| (rounds * records) as f64 / d.as_secs_f64();
    let (s, l, r) = (rate(block, streamed), rate(256, local), rate(block + 256, raw));
    println!(
        "paired ({rounds} rounds): raw verify_batch 256 (one thread) {r:.0} records/s; \
         stream (jobs of {STREAM_JOB} from a peer, {STREAM_JOBS} in flight, 2 threads) {s:.0} records/s, ratio {:.3} (target >= 0.50); \
         local batches of 256 one at a time (flushed) {l:.0} records/s, ratio {:.3}",
        s / r,
        l / r
    );

    let stats = node.store().stats().unwrap();
    println!(
        "node store after the run: {} records, {:.1} MiB on disk, cache {} MiB; apply store: {} records",
        stats.records,
        mib(stats.size_on_disk),
        cache / (1024 * 1024),
        store.stats().unwrap().records
    );
    rt.block_on(node.shutdown()).unwrap();
    rt.block_on(pipeline.close()).unwrap();
    drop(store);
    c.final_summary();

    growth(if benching { 100_000 } else { 10_000 });
}
