//! Propagation benchmark: N real nodes in one process on loopback TCP, joined in a random topology
//! (each node bootstraps to 3 or 4 random earlier nodes), one community. Once gossip flows (probe
//! messages reach every node) and their own-gossip paces have filled, M listings are published one
//! after the other by the nodes in turn from a random one, each node signing its own record, and the benchmark records when every other node emits
//! `NodeEvent::Stored` for it. Prints, per N: delivery ratio, p50 / p99 / max latency from the
//! publish call to `Stored` on a receiving node, the time until the last node has it, and the
//! duplicate gossip copies received per node per message (from the `gossip_received` and
//! `gossip_delivered` counters).
//!
//! Run: `cargo bench -p troc-node --bench propagation` (N = 10, 30, 50; 50 messages each).
//! Environment: `TROC_PROP_SIZES=10,30,50`, `TROC_PROP_MESSAGES=50`, `TROC_PROP_HEARTBEAT_MS=1000`
//! (gossipsub heartbeat; the default is the production one, `Timing::default()`),
//! `TROC_PROP_SEED=1`, `TROC_PROP_IDLE_MS=1000` (how long the idle load is measured before the
//! messages). Under `cargo test --benches` (no `--bench` argument) it runs 5 nodes and 5
//! messages, as a check that it works.

// A benchmark: a failure should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::sync::{broadcast, mpsc};
use troc_node::config::{NodeConfig, Timing};
use troc_node::events::NodeEvent;
use troc_node::metrics::Source;
use troc_node::node::{Node, NodeHandle};
use troc_protocol::{Identity, RecordId, Signed};

#[path = "support/sim.rs"]
mod sim;
use sim::{Rng, cpu_time, env_or, identity, listing, ms, quantile};

/// The troc binary's allocator and settings (`troc_node::alloc`), so the figures are the binary's.
#[global_allocator]
static ALLOC: troc_node::alloc::Allocator = troc_node::alloc::Allocator;

const COMMUNITY: &str = "north-end";
/// How long one message may take to reach every node before the next one is published.
const MESSAGE_WINDOW: Duration = Duration::from_secs(2);
/// How long gossip may take to start flowing after the nodes are spawned.
const WARMUP_LIMIT: Duration = Duration::from_secs(60);

/// Connections opened or closed and catch-up sessions finished, on any node: activity that is not
/// the benchmark's gossip, waited out before measuring.
static CHURN: AtomicU64 = AtomicU64::new(0);

struct BenchNode {
    handle: NodeHandle,
    identity: Identity,
    _home: TempDir,
}

/// A `Stored` event seen by the benchmark: which node, which record, when, from where.
struct Seen {
    node: usize,
    id: RecordId,
    at: Instant,
    source: Source,
}

struct Settings {
    sizes: Vec<usize>,
    messages: usize,
    heartbeat: Duration,
    /// How long the idle load is measured, between the warm-up and the messages.
    idle: Duration,
    seed: u64,
}

fn settings() -> Settings {
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes = match std::env::var("TROC_PROP_SIZES") {
        Ok(s) => s.split(',').map(|n| n.trim().parse().unwrap()).collect(),
        Err(_) if bench => vec![10, 30, 50],
        Err(_) => vec![5],
    };
    Settings {
        sizes,
        messages: env_or("TROC_PROP_MESSAGES", if bench { 50 } else { 5 }),
        // The production heartbeat by default; `Timing::fast()` (tests) uses 100 ms.
        heartbeat: match env_or("TROC_PROP_HEARTBEAT_MS", 0u64) {
            0 => Timing::default().gossip_heartbeat,
            ms => Duration::from_millis(ms),
        },
        idle: Duration::from_millis(env_or("TROC_PROP_IDLE_MS", 1000)),
        seed: env_or("TROC_PROP_SEED", 1),
    }
}

/// Spawns `n` nodes; node `i > 0` bootstraps to 3 or 4 distinct random earlier nodes (all of them
/// when there are fewer). Returns the nodes and the number of bootstrap links.
async fn spawn_nodes(
    n: usize,
    heartbeat: Duration,
    rng: &mut Rng,
    seen: &mpsc::UnboundedSender<Seen>,
) -> (Vec<BenchNode>, usize) {
    let mut nodes: Vec<BenchNode> = Vec::with_capacity(n);
    let mut links = 0;
    for i in 0..n {
        let home = tempfile::tempdir().unwrap();
        let identity = identity(0x5A, i);
        let mut cfg = NodeConfig::for_test(home.path().to_path_buf(), identity.clone());
        cfg.communities = vec![COMMUNITY.to_owned()];
        // The test configuration (loopback, no mDNS), with the chosen heartbeat, and catch-up and DHT
        // discovery at their production pace so that every delivery measured is gossip's.
        let production = Timing::default();
        cfg.timing.gossip_heartbeat = heartbeat;
        cfg.timing.sync_interval = production.sync_interval;
        cfg.timing.discovery_interval = production.discovery_interval;
        let want = (3 + rng.below(2)).min(i);
        let mut chosen: Vec<usize> = Vec::with_capacity(want);
        while chosen.len() < want {
            let j = rng.below(i);
            if !chosen.contains(&j) {
                chosen.push(j);
            }
        }
        for j in chosen {
            cfg.bootstrap.extend(nodes[j].handle.dial_addrs().await.unwrap());
            links += 1;
        }
        let (handle, events) = Node::spawn(cfg).await.unwrap();
        tokio::spawn(forward_events(i, events, seen.clone()));
        nodes.push(BenchNode { handle, identity, _home: home });
    }
    (nodes, links)
}

/// Timestamps every `Stored` event of node `node` as soon as this task sees it.
async fn forward_events(node: usize, mut rx: broadcast::Receiver<NodeEvent>, out: mpsc::UnboundedSender<Seen>) {
    loop {
        match rx.recv().await {
            Ok(NodeEvent::Stored { id, source, .. }) => {
                let at = Instant::now();
                if out.send(Seen { node, id, at, source }).is_err() {
                    return;
                }
            }
            Ok(NodeEvent::PeerConnected { .. } | NodeEvent::PeerDisconnected { .. } | NodeEvent::SyncDone { .. }) => {
                CHURN.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(k)) => eprintln!("node {node}: lost {k} events"),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Where each node first stored each record, and how.
#[derive(Default)]
struct Arrivals {
    first: HashMap<RecordId, HashMap<usize, (Instant, Source)>>,
}

impl Arrivals {
    fn add(&mut self, s: Seen) {
        self.first.entry(s.id).or_default().entry(s.node).or_insert((s.at, s.source));
    }

    fn count(&self, id: &RecordId) -> usize {
        self.first.get(id).map_or(0, HashMap::len)
    }

    /// Takes every event already queued, without waiting.
    fn drain(&mut self, rx: &mut mpsc::UnboundedReceiver<Seen>) {
        while let Ok(s) = rx.try_recv() {
            self.add(s);
        }
    }

    /// Collects events until `n` nodes stored `id` or `deadline`; true if they all did.
    async fn wait_for(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Seen>,
        id: &RecordId,
        n: usize,
        deadline: tokio::time::Instant,
    ) -> bool {
        self.drain(rx);
        while self.count(id) < n {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => self.add(s),
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }
}

/// Signs a fresh listing as node `author` and publishes it there. Returns its id and when the
/// publish call started.
async fn publish(nodes: &[BenchNode], author: usize, n: usize) -> (RecordId, Instant) {
    let node = &nodes[author];
    let record = Signed::sign(&node.identity, troc_node::now_secs(), listing(author, n, COMMUNITY)).unwrap().into_any();
    let id = record.id();
    let t0 = Instant::now();
    let result = node.handle.publish(&record).await.unwrap();
    assert!(result.is_stored(), "{result:?}");
    (id, t0)
}

/// Per node: (gossip copies received, first copies delivered).
fn gossip_counters(nodes: &[BenchNode]) -> Vec<(u64, u64)> {
    nodes
        .iter()
        .map(|n| {
            let m = n.handle.metrics();
            (m.gossip_received, m.gossip_delivered)
        })
        .collect()
}

/// Waits until no node receives any more gossip (copies still in flight, IHAVE/IWANT answers), no
/// connection opens or closes and no catch-up session ends anywhere, and the process uses less than
/// `IDLE_CORES` of CPU, all over the last `quiet`; polls the counters, for at most `limit`. Returns
/// false at the limit. After the nodes start, Kademlia walks connect every node to every other and
/// each connection's noise handshake and catch-up session take CPU for several seconds.
async fn wait_quiet(nodes: &[BenchNode], quiet: Duration, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let state = || (gossip_counters(nodes), CHURN.load(Ordering::Relaxed));
    let mut last = state();
    let mut since = (Instant::now(), cpu_time());
    while Instant::now() < deadline {
        // A poll interval, not a synchronisation: the condition is re-checked until the deadline.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = state();
        if now != last {
            last = now;
            since = (Instant::now(), cpu_time());
        } else if since.0.elapsed() >= quiet {
            let cores = (cpu_time() - since.1).as_secs_f64() / since.0.elapsed().as_secs_f64();
            if cores < IDLE_CORES {
                return true;
            }
            since = (Instant::now(), cpu_time());
        }
    }
    false
}

/// How long an empty own-gossip pace takes to fill (burst 8 at 1.6 a second, `own_gossip_pace`).
const PACE_FILL: Duration = Duration::from_secs(5);
/// Below this CPU use (in cores) the nodes count as idle.
const IDLE_CORES: f64 = 0.5;

struct Outcome {
    n: usize,
    links: usize,
    degree: (usize, f64, usize),
    messages: usize,
    delivered: usize,
    expected: usize,
    late: usize,
    by_sync: usize,
    latencies: Vec<Duration>,
    /// From the publish call to `Stored` on the author's own node.
    local: Vec<Duration>,
    to_all: Vec<Duration>,
    dup_per_node_msg: f64,
    dup_max_node: f64,
    received_per_node_msg: f64,
    cpu_cores: f64,
    idle_cores: f64,
    warmup: Duration,
    probes: usize,
}

async fn run_one(n: usize, s: &Settings) -> Outcome {
    let mut rng = Rng(s.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n as u64 | 1);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (nodes, links) = spawn_nodes(n, s.heartbeat, &mut rng, &tx).await;
    let mut arrivals = Arrivals::default();

    // Warm-up: probes from random nodes until three in a row reach every node by gossip within the
    // message window (meshes formed, subscriptions known). Bounded by WARMUP_LIMIT.
    let warm_start = Instant::now();
    let mut probes = 0;
    let mut in_a_row = 0;
    while in_a_row < 3 {
        assert!(warm_start.elapsed() < WARMUP_LIMIT, "gossip did not reach all {n} nodes within {WARMUP_LIMIT:?}");
        let author = rng.below(n);
        let (id, _) = publish(&nodes, author, 1_000_000 + probes).await;
        probes += 1;
        let deadline = tokio::time::Instant::now() + MESSAGE_WINDOW;
        let all = arrivals.wait_for(&mut rx, &id, n, deadline).await;
        let by_gossip =
            all && arrivals.first[&id].iter().all(|(node, (_, source))| *node == author || *source == Source::Gossip);
        in_a_row = if by_gossip { in_a_row + 1 } else { 0 };
    }
    // Connections keep opening for a while (Kademlia walks, each followed by a catch-up session).
    if !wait_quiet(&nodes, Duration::from_secs(1), Duration::from_secs(120)).await {
        eprintln!("N={n}: the nodes were still busy after two minutes; measuring anyway");
    }
    let warmup = warm_start.elapsed();

    // The background load of N idle nodes (heartbeats, pings, the DHT), measured over a while.
    let cpu_before = cpu_time();
    let idle_start = Instant::now();
    tokio::time::sleep(s.idle).await;
    let idle_cores = (cpu_time() - cpu_before).as_secs_f64() / idle_start.elapsed().as_secs_f64();

    // A node paces its own gossip (`own_gossip_pace`: 8 at once, then 1.6 a second, empty at
    // start), as every peer's per-author count requires. The listings below stay within it, as an
    // honest author's do: the paces are let fill, as on nodes that have been up a while, and the
    // nodes publish in turn from a random one (at N = 10, 50 listings are 5 a node in well under a
    // second; drawn at random, some node would get more than its 8). The figures are then
    // propagation, not the pace's queue.
    tokio::time::sleep(PACE_FILL.saturating_sub(s.idle)).await;
    let turn = rng.below(n);

    // Measurement.
    let before = gossip_counters(&nodes);
    let cpu_before = cpu_time();
    let wall_before = Instant::now();
    let mut sent = Vec::with_capacity(s.messages);
    for m in 0..s.messages {
        let author = (turn + m) % n;
        let (id, t0) = publish(&nodes, author, m).await;
        let deadline = tokio::time::Instant::now() + MESSAGE_WINDOW;
        arrivals.wait_for(&mut rx, &id, n, deadline).await;
        // Deliveries after the window are counted as late, not as delivered.
        let window_end = Instant::now();
        sent.push((id, author, t0, window_end));
    }
    let cpu_cores = (cpu_time() - cpu_before).as_secs_f64() / wall_before.elapsed().as_secs_f64();
    wait_quiet(&nodes, Duration::from_secs(1).max(s.heartbeat * 3), Duration::from_secs(20)).await;
    arrivals.drain(&mut rx);
    let after = gossip_counters(&nodes);

    let mut latencies = Vec::new();
    let mut local = Vec::new();
    let mut to_all = Vec::new();
    let (mut delivered, mut late, mut by_sync) = (0, 0, 0);
    for (id, author, t0, window_end) in &sent {
        let got = arrivals.first.get(id).cloned().unwrap_or_default();
        if let Some((at, _)) = got.get(author) {
            local.push(at.duration_since(*t0));
        }
        let mut last = Duration::ZERO;
        let mut complete = true;
        for node in (0..n).filter(|i| i != author) {
            match got.get(&node) {
                Some((at, source)) if *at <= *window_end => {
                    delivered += 1;
                    if *source != Source::Gossip {
                        by_sync += 1;
                    }
                    let l = at.duration_since(*t0);
                    last = last.max(l);
                    latencies.push(l);
                }
                Some(_) => {
                    late += 1;
                    complete = false;
                }
                None => complete = false,
            }
        }
        if complete {
            to_all.push(last);
        }
    }
    latencies.sort();
    local.sort();
    to_all.sort();

    let dups: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|((r0, d0), (r1, d1))| ((r1 - r0) - (d1 - d0)) as f64 / s.messages as f64)
        .collect();
    let received: u64 = before.iter().zip(&after).map(|((r0, _), (r1, _))| r1 - r0).sum();

    let mut degrees = Vec::with_capacity(n);
    for node in &nodes {
        degrees.push(node.handle.peers().await.map(|p| p.len()).unwrap_or(0));
    }
    futures::future::join_all(nodes.iter().map(|node| node.handle.shutdown())).await;

    Outcome {
        n,
        links,
        degree: (
            degrees.iter().copied().min().unwrap_or(0),
            degrees.iter().sum::<usize>() as f64 / n as f64,
            degrees.iter().copied().max().unwrap_or(0),
        ),
        messages: s.messages,
        delivered,
        expected: s.messages * (n - 1),
        late,
        by_sync,
        latencies,
        local,
        to_all,
        dup_per_node_msg: dups.iter().sum::<f64>() / n as f64,
        dup_max_node: dups.iter().copied().fold(0.0, f64::max),
        received_per_node_msg: received as f64 / (n * s.messages) as f64,
        cpu_cores,
        idle_cores,
        warmup,
        probes,
    }
}

fn main() {
    troc_node::alloc::configure();
    let s = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "propagation: {} messages per size, gossip heartbeat {:?}, window {:?} per message, seed {}, {cores} cores",
        s.messages, s.heartbeat, MESSAGE_WINDOW, s.seed
    );
    let mut outcomes = Vec::new();
    for &n in &s.sizes {
        let o = runtime.block_on(run_one(n, &s));
        println!(
            "N={n}: {} bootstrap links, degree min/mean/max {}/{:.1}/{}, warm-up {:.1} s ({} probes), \
             {} late, {} by catch-up, author's own Stored p50 {} ms, CPU (this process) {:.2} cores busy idle, \
             {:.2} during the messages",
            o.links,
            o.degree.0,
            o.degree.1,
            o.degree.2,
            o.warmup.as_secs_f64(),
            o.probes,
            o.late,
            o.by_sync,
            ms(quantile(&o.local, 0.5)),
            o.idle_cores,
            o.cpu_cores
        );
        outcomes.push(o);
    }

    println!();
    println!(
        "| N | messages | delivery | p50 (ms) | p99 (ms) | max (ms) | last node p50 / p99 (ms) | received / node / msg | duplicates / node / msg (max node) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {} | {}/{} ({:.1} %) | {} | {} | {} | {} / {} | {:.2} | {:.2} ({:.2}) |",
            o.n,
            o.messages,
            o.delivered,
            o.expected,
            100.0 * o.delivered as f64 / o.expected as f64,
            ms(quantile(&o.latencies, 0.5)),
            ms(quantile(&o.latencies, 0.99)),
            ms(o.latencies.last().copied().unwrap_or_default()),
            ms(quantile(&o.to_all, 0.5)),
            ms(quantile(&o.to_all, 0.99)),
            o.received_per_node_msg,
            o.dup_per_node_msg,
            o.dup_max_node,
        );
    }
}
