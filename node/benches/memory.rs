//! Memory benchmark of the node: the resident size of a node holding 100,000 listings.
//!
//! Starts a node (`NodeConfig::for_test`, no peers) with a given sled cache, ingests 100,000 fresh
//! real signed listings (1,000 authors × 100, within the 200-live-listings quota) through
//! `NodeHandle::ingest_local` in batches of 256, then reads `VmRSS`, `VmHWM`, `RssAnon` and `RssFile`
//! from `/proc/self/status` (nothing subtracted) and the store's size on disk. The records are
//! generated batch by batch while ingesting (signed on every core), so the process never holds more
//! than one batch of them; the baseline is the process's RSS before the node starts (runtime and
//! the 1,000 author keys).
//!
//! Each cache size runs in its own child process (the high-water mark is per process): 8 MiB (the
//! default of `NodeConfig::new` and `for_test`), 16 MiB and 64 MiB (earlier defaults). The process
//! runs on the `troc` binary's allocator and settings (`troc_node::alloc`). A second
//! child per cache size then starts a node on the same home, as a restart would: its store is
//! opened and every in-memory index and the search index rebuilt from the records; it reports the
//! RSS once the node is up, and how long starting took.
//!
//! Run: `cargo bench -p troc-node --bench memory`. Under `cargo test --benches` it ingests 10,000.

// A benchmark: a failure should stop it loudly.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Instant;

use support::Generator;
use troc_node::{Node, NodeConfig};
use troc_protocol::Identity;

/// The troc binary's allocator and settings (`troc_node::alloc`), so the figures are the binary's.
#[global_allocator]
static ALLOC: troc_node::alloc::Allocator = troc_node::alloc::Allocator;

const AUTHORS: usize = 1_000;
const BATCH: usize = 256;
const CHILD_ENV: &str = "TROC_MEMORY_BENCH_CACHE_MIB";
const COUNT_ENV: &str = "TROC_MEMORY_BENCH_LISTINGS";
const HOME_ENV: &str = "TROC_MEMORY_BENCH_HOME";
const REOPEN_ENV: &str = "TROC_MEMORY_BENCH_REOPEN";

/// `(VmRSS, VmHWM, RssAnon, RssFile)` in KiB.
fn status() -> (u64, u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"), field("RssAnon:"), field("RssFile:"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A node on `home` restarted: RSS once it is up (store opened, indexes rebuilt).
fn reopen(cache_mib: u64, listings: usize, home: std::path::PathBuf) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (base_rss, ..) = status();
    let mut config = NodeConfig::for_test(home, Identity::from_seed(&[0xCE; 32]));
    config.store_cache_bytes = cache_mib << 20;
    let t = Instant::now();
    let (node, events) = rt.block_on(Node::spawn(config)).unwrap();
    let took = t.elapsed();
    drop(events);
    let (rss, hwm, anon, _) = status();
    let stats = node.store().stats().unwrap();
    assert_eq!(stats.records, listings as u64);
    let (mem, search) = node.store().index_memory_bytes();
    println!("  restarted on the same home: started in {:.2} s (store opened, indexes rebuilt)", took.as_secs_f64());
    println!("    RSS before / after the start          {} / {}", mib(base_rss), mib(rss));
    println!("    of which RssAnon                      {}", mib(anon));
    println!("    VmHWM (peak)                          {}", mib(hwm));
    println!(
        "    estimates: indexes {:.1} MiB, search index {:.1} MiB",
        mem as f64 / 1048576.0,
        search as f64 / 1048576.0
    );
    println!(
        "    target: < 150 MB: {} ({:.0} MB)",
        if rss * 1024 < 150_000_000 { "MET" } else { "MISSED" },
        (rss * 1024) as f64 / 1e6
    );
    rt.block_on(node.shutdown()).unwrap();
}

fn child(cache_mib: u64, listings: usize, home: std::path::PathBuf) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut generator = Generator::new(AUTHORS, 0x3C);
    let (base_rss, ..) = status();

    let mut config = NodeConfig::for_test(home, Identity::from_seed(&[0xCE; 32]));
    config.store_cache_bytes = cache_mib << 20;
    let (node, events) = rt.block_on(Node::spawn(config)).unwrap();
    drop(events);
    let (started_rss, ..) = status();

    let t = Instant::now();
    let mut stored = 0;
    while stored < listings {
        let batch = generator.bytes(BATCH.min(listings - stored));
        let n = batch.len();
        let results = rt.block_on(node.ingest_local(batch)).unwrap();
        assert!(results.iter().all(|r| r.is_stored()), "{:?}", results.iter().find(|r| !r.is_stored()));
        stored += n;
    }
    let elapsed = t.elapsed();
    let (rss, hwm, anon, file) = status();
    let stats = node.store().stats().unwrap();
    assert_eq!(stats.records, listings as u64);
    node.store().flush().unwrap();
    let (rss_flushed, ..) = status();
    let disk_flushed = node.store().stats().unwrap().size_on_disk;
    let (mem, search) = node.store().index_memory_bytes();

    println!("\n== sled cache {cache_mib} MiB, {listings} listings by {AUTHORS} authors, batches of {BATCH}");
    println!("  RSS before the node started (baseline)  {}", mib(base_rss));
    println!("  RSS after the node started (empty)      {}", mib(started_rss));
    println!("  VmRSS after ingesting                   {}", mib(rss));
    println!("    of which RssAnon / RssFile            {} / {}", mib(anon), mib(file));
    println!("  VmHWM (peak)                            {}", mib(hwm));
    println!("  VmRSS after a flush                     {}", mib(rss_flushed));
    println!(
        "  estimates: indexes {:.1} MiB, search index {:.1} MiB",
        mem as f64 / 1048576.0,
        search as f64 / 1048576.0
    );
    println!(
        "  store: {} records, {:.1} MiB of record bytes, {:.1} MiB on disk ({:.1} MiB after the flush)",
        stats.records,
        stats.record_bytes as f64 / 1048576.0,
        stats.size_on_disk as f64 / 1048576.0,
        disk_flushed as f64 / 1048576.0
    );
    println!(
        "  generating and ingesting took {:.1} s ({:.0} records/s, signing included: see the ingest bench for rates)",
        elapsed.as_secs_f64(),
        listings as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  target: RSS of a node holding 100,000 listings < 150 MB: {} ({:.0} MB)",
        if rss * 1024 < 150_000_000 { "MET" } else { "MISSED" },
        (rss * 1024) as f64 / 1e6
    );
    rt.block_on(node.shutdown()).unwrap();
}

fn main() {
    troc_node::alloc::configure();
    if let Ok(cache) = std::env::var(CHILD_ENV) {
        let listings = std::env::var(COUNT_ENV).unwrap().parse().unwrap();
        let home = std::env::var(HOME_ENV).unwrap().into();
        if std::env::var(REOPEN_ENV).is_ok() {
            reopen(cache.parse().unwrap(), listings, home);
        } else {
            child(cache.parse().unwrap(), listings, home);
        }
        return;
    }
    let benching = std::env::args().any(|a| a == "--bench");
    let listings: usize = if benching { 100_000 } else { 10_000 };
    let me = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for cache in [8u64, 16, 64] {
        let home = dir.path().join(format!("node-{cache}"));
        for reopen in [false, true] {
            let mut cmd = std::process::Command::new(&me);
            cmd.env(CHILD_ENV, cache.to_string()).env(COUNT_ENV, listings.to_string()).env(HOME_ENV, &home);
            if reopen {
                cmd.env(REOPEN_ENV, "1");
            }
            assert!(cmd.status().unwrap().success());
        }
        std::fs::remove_dir_all(&home).unwrap();
    }
}
