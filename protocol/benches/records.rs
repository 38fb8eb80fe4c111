//! What a record costs: signing, the raw ed25519 check, our full validation pipeline, batch
//! verification (raw and ours) and decoding alone, all on the same typical listing (~570 bytes).
//!
//! Every benchmark reports `Throughput::Elements` (records or signatures), so the rates compare
//! directly: `docs/performance.md` has the figures and the ratios that matter (full validation vs
//! raw `verify_strict`, our batch vs single `verify_strict`).
//!
//! Run: `cargo bench -p troc-protocol --bench records`

// Benchmarks are not tests for clippy's `allow-unwrap-in-tests`; a failed setup should just stop.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signature, VerifyingKey};
use troc_protocol::*;

const NOW: Timestamp = 1_700_000_000;
const DAY: u64 = 24 * 3600;
const BATCH: usize = 64;

/// A typical lend listing, made distinct by `n`.
fn listing(n: usize) -> Listing {
    Listing {
        key: ListingKey([n as u8; 16]),
        revision: 1 + n as u32,
        kind: Kind::Lend,
        category: Category::Tools,
        title: "Cordless drill (18 V) with two batteries".into(),
        description: "Bosch cordless drill with two 2 Ah batteries, a charger and a box of wood and metal \
                      bits. Works fine for shelves, flat-pack furniture and the odd hole in concrete. Please \
                      bring it back charged.\nI can show you how to use it."
            .into(),
        tags: vec!["drill".into(), "diy".into(), "power-tools".into()],
        terms: Terms {
            max_loan_days: Some(7),
            deposit: Some(Money { amount_minor: 2000, currency: "EUR".parse().unwrap() }),
            conditions: "Not for masonry drilling all day long; return clean.".into(),
            availability: "Weekends, and weekday evenings after 6".into(),
            in_return: String::new(),
            hours: None,
        },
        community: "north-end".into(),
        location: "u09tvw".into(),
        available_from: Some(NOW),
        available_until: Some(NOW + 90 * DAY),
        valid_until: NOW + 30 * DAY,
    }
}

/// `BATCH` listings by 8 different authors.
fn records() -> Vec<SignedRecord> {
    let ids: Vec<Identity> = (1..=8u8).map(|i| Identity::from_seed(&[i; 32])).collect();
    (0..BATCH).map(|n| Signed::sign(&ids[n % ids.len()], NOW, listing(n)).unwrap().into_any()).collect()
}

/// The raw ed25519 inputs of a record: its signed message, its signature, its author's key.
fn raw(record: &SignedRecord) -> (Vec<u8>, Signature, VerifyingKey) {
    let message = signed_message(record.record_type(), record.content());
    let sig = Signature::from_slice(record.signatures().next().unwrap()).unwrap();
    let key = VerifyingKey::from_bytes(record.author().as_bytes()).unwrap();
    (message, sig, key)
}

fn bench_records(c: &mut Criterion) {
    let alice = Identity::from_seed(&[1; 32]);
    let records = records();
    let record = &records[0];
    let bytes = record.bytes().to_vec();
    eprintln!("typical listing: {} bytes", bytes.len());

    let mut g = c.benchmark_group("records");

    g.throughput(Throughput::Elements(1));
    g.bench_function("sign", |b| {
        b.iter_batched(|| listing(0), |l| Signed::sign(&alice, NOW, l).unwrap(), BatchSize::SmallInput)
    });

    let (message, sig, key) = raw(record);
    g.bench_function("raw_verify_strict", |b| {
        b.iter(|| black_box(&key).verify_strict(black_box(&message), black_box(&sig)).unwrap())
    });

    g.bench_function("from_bytes", |b| b.iter(|| SignedRecord::from_bytes(black_box(&bytes), NOW).unwrap()));

    g.bench_function("decode", |b| b.iter(|| decode(black_box(&bytes)).unwrap()));

    g.throughput(Throughput::Elements(BATCH as u64));
    let raws: Vec<_> = records.iter().map(raw).collect();
    let messages: Vec<&[u8]> = raws.iter().map(|r| &r.0[..]).collect();
    let sigs: Vec<Signature> = raws.iter().map(|r| r.1).collect();
    let keys: Vec<VerifyingKey> = raws.iter().map(|r| r.2).collect();
    g.bench_function("raw_verify_batch_64", |b| {
        b.iter(|| ed25519_dalek::verify_batch(black_box(&messages), black_box(&sigs), black_box(&keys)).unwrap())
    });

    let decoded: Vec<Unverified> = records.iter().map(|r| decode(r.bytes()).unwrap()).collect();
    g.bench_function("verify_batch_64", |b| {
        b.iter_batched(
            || decoded.clone(),
            |batch| {
                let out = verify_batch(batch);
                assert!(out.iter().all(Result::is_ok));
                out
            },
            BatchSize::SmallInput,
        )
    });

    g.finish();

    // Paired ratios: on a shared machine the load changes between criterion's benchmarks, which run
    // one after the other. Alternating short blocks of the two things compared, and summing each
    // one's time, cancels a load that varies slowly.
    let rounds = 2000;
    let (full, raw_single) = paired(
        rounds,
        2,
        || drop(black_box(SignedRecord::from_bytes(black_box(&bytes), NOW).unwrap())),
        || black_box(&key).verify_strict(black_box(&message), black_box(&sig)).unwrap(),
    );
    let (ours, singles) = paired(
        rounds / 20,
        1,
        || assert!(verify_batch(decoded.clone()).iter().all(Result::is_ok)),
        || {
            for (m, s, k) in &raws {
                k.verify_strict(m, s).unwrap();
            }
        },
    );
    // Cloning the decoded batch is part of `ours` here; measure it to take it out.
    let (clones, _) = paired(rounds / 20, 1, || drop(black_box(decoded.clone())), || ());
    let ours = ours - clones;
    eprintln!("paired: from_bytes / raw verify_strict rate = {:.3}", raw_single.as_secs_f64() / full.as_secs_f64());
    eprintln!(
        "paired: our verify_batch per record / single verify_strict rate = {:.3}",
        singles.as_secs_f64() / ours.as_secs_f64()
    );
}

/// Runs `a` and `b` in alternating blocks of `block` calls, `rounds` times each, and returns their
/// total times.
fn paired(
    rounds: usize,
    block: usize,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> (std::time::Duration, std::time::Duration) {
    use std::time::{Duration, Instant};
    let (mut ta, mut tb) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        for first in [round % 2 == 0, round % 2 == 1] {
            let start = Instant::now();
            for _ in 0..block {
                if first { a() } else { b() }
            }
            if first { ta += start.elapsed() } else { tb += start.elapsed() }
        }
    }
    (ta, tb)
}

criterion_group!(benches, bench_records);
criterion_main!(benches);
