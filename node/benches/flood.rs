//! Flood benchmark: honest propagation among N real nodes (one process, loopback TCP, random
//! topology as in `propagation.rs`) without and with flooders in the same run. Each flooder is a
//! real node that connects to 3 random honest nodes and publishes on the community's topic with
//! `NodeHandle::gossip_raw` (no checks) at a fixed rate, just under the per-peer gossip rate
//! (50 a second): what a flooder does when it wants to stay connected.
//!
//! Three phases, each measured from the flood's first message with M honest listings published by
//! the honest nodes in turn, one every `SPACING` (latency from the publish call to `Stored` on each
//! other honest node):
//! 1. **quiet**: no flood;
//! 2. **spam**: every flooder publishes valid listings of its own at `RATE` a second. The flooders'
//!    keys are new to every node, so their records share the new authors' budget (burst 5, then
//!    one every 2 s, per node: the rest are `new_author_rate_limited`); what passes it spreads like
//!    honest gossip. Past the author's burst (10) the rest exceed the author's rate, sent by the
//!    author's own node: `own_rate_exceeded`, a strike each, and the flooder is disconnected;
//! 3. **invalid**: a second set of flooders publishes forged listings at `RATE` a second (each one
//!    rejected and penalised; the flooders are graylisted and disconnected within a few messages).
//!
//! The honest nodes run the production limits and already hold one listing by every honest
//! neighbour when they start (as a node that has been up for weeks does): the neighbours are
//! settled, the flooders are not.
//!
//! Prints p50 / p99 / max per phase and the ratio of each phase's p99 to the quiet one (the
//! target: at most 2), the delivery ratio, and how many flooders were disconnected for abuse.
//!
//! Run: `cargo bench -p troc-node --bench flood`. Environment: `TROC_FLOOD_NODES=10`,
//! `TROC_FLOOD_MESSAGES=40`, `TROC_FLOOD_FLOODERS=3`, `TROC_FLOOD_RATE=45`,
//! `TROC_FLOOD_HEARTBEAT_MS=1000` (the production heartbeat), `TROC_FLOOD_SPACING_MS=100`,
//! `TROC_FLOOD_SEED=1` (`TROC_FLOOD_TRACE=1` prints every message's worst latency, the CPU used;
//! `TROC_FLOOD_SETTLED=1` makes the flooders settled authors too, known to every node from before). Under
//! `cargo test --benches` it runs 4 nodes, 1 flooder and 4 messages a phase, as a check that it works.

// A benchmark: a failure should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::sync::{broadcast, mpsc};
use troc_node::config::{NodeConfig, Timing};
use troc_node::events::NodeEvent;
use troc_node::metrics::Source;
use troc_node::node::{Node, NodeHandle};
use troc_node::store::{Store, StoreConfig};
use troc_protocol::{Identity, RecordId, Signed};

#[path = "support/sim.rs"]
mod sim;
use sim::{Rng, cpu_time, env_or, identity, listing, ms, quantile};

/// The troc binary's allocator and settings (`troc_node::alloc`), so the figures are the binary's.
#[global_allocator]
static ALLOC: troc_node::alloc::Allocator = troc_node::alloc::Allocator;

const COMMUNITY: &str = "north-end";
const SCOPE: &str = "community/north-end";
/// How long one message may take to reach every honest node before the next one is published.
const MESSAGE_WINDOW: Duration = Duration::from_secs(3);
/// How long gossip may take to start flowing after the nodes are spawned.
const WARMUP_LIMIT: Duration = Duration::from_secs(60);

struct BenchNode {
    handle: NodeHandle,
    identity: Identity,
    _home: TempDir,
}

struct Seen {
    node: usize,
    id: RecordId,
    at: Instant,
}

struct Settings {
    nodes: usize,
    messages: usize,
    flooders: usize,
    rate: f64,
    heartbeat: Duration,
    spacing: Duration,
    seed: u64,
    /// `TROC_FLOOD_TRACE`: print each message's worst latency and the CPU used.
    trace: bool,
    /// `TROC_FLOOD_SETTLED=1`: the honest nodes know the flooders' keys from before too (neighbours
    /// of long standing turned spammers): only the per-author rate holds them.
    settled: bool,
}

fn settings() -> Settings {
    let bench = std::env::args().any(|a| a == "--bench");
    Settings {
        nodes: env_or("TROC_FLOOD_NODES", if bench { 10 } else { 4 }),
        messages: env_or("TROC_FLOOD_MESSAGES", if bench { 40 } else { 4 }),
        flooders: env_or("TROC_FLOOD_FLOODERS", if bench { 3 } else { 1 }),
        rate: env_or("TROC_FLOOD_RATE", 45.0),
        heartbeat: match env_or("TROC_FLOOD_HEARTBEAT_MS", 0u64) {
            0 => Timing::default().gossip_heartbeat,
            ms => Duration::from_millis(ms),
        },
        spacing: Duration::from_millis(env_or("TROC_FLOOD_SPACING_MS", 100)),
        seed: env_or("TROC_FLOOD_SEED", 1),
        trace: std::env::var_os("TROC_FLOOD_TRACE").is_some(),
        settled: env_or("TROC_FLOOD_SETTLED", 0u8) == 1,
    }
}

fn config(identity: &Identity, home: &TempDir, heartbeat: Duration) -> NodeConfig {
    let mut cfg = NodeConfig::for_test(home.path().to_path_buf(), identity.clone());
    cfg.communities = vec![COMMUNITY.to_owned()];
    // Catch-up and discovery at their production pace, so that every delivery measured is gossip's.
    let production = Timing::default();
    cfg.timing.gossip_heartbeat = heartbeat;
    cfg.timing.sync_interval = production.sync_interval;
    cfg.timing.discovery_interval = production.discovery_interval;
    // The production budget of new authors (tests turn it off).
    cfg.limits.new_author_settle = troc_node::config::Limits::default().new_author_settle;
    cfg
}

/// Puts one listing by each honest neighbour (and with `TROC_FLOOD_SETTLED`, each flooder) in the
/// store at `home` before its node starts: the people a node has known for weeks, settled from its
/// start.
fn know_the_neighbours(home: &TempDir, s: &Settings) {
    let store = Store::open(StoreConfig::new(home.path().join("db"))).unwrap();
    let now = troc_node::now_secs();
    let flooders = if s.settled { 2 * s.flooders } else { 0 };
    let known = (0..s.nodes).chain((0..flooders).map(|f| 10_000 + f));
    let records: Vec<_> = known
        .map(|i| Signed::sign(&identity(0x6B, i), now, listing(i, 3_000_000, COMMUNITY)).unwrap().into_any())
        .collect();
    for outcome in store.apply(&records, now).unwrap() {
        assert!(matches!(outcome, troc_node::store::Outcome::Stored { .. }), "{outcome:?}");
    }
    store.close().unwrap();
}

/// Honest node `i > 0` bootstraps to 3 or 4 random earlier ones; each flooder to 3 random honest ones.
async fn spawn_nodes(
    s: &Settings,
    rng: &mut Rng,
    seen: &mpsc::UnboundedSender<Seen>,
) -> (Vec<BenchNode>, Vec<BenchNode>) {
    let mut nodes: Vec<BenchNode> = Vec::with_capacity(s.nodes);
    for i in 0..s.nodes {
        let home = tempfile::tempdir().unwrap();
        know_the_neighbours(&home, s);
        let identity = identity(0x6B, i);
        let mut cfg = config(&identity, &home, s.heartbeat);
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
        }
        let (handle, events) = Node::spawn(cfg).await.unwrap();
        tokio::spawn(forward_events(i, events, seen.clone()));
        nodes.push(BenchNode { handle, identity, _home: home });
    }
    // One set of flooders per flood phase: the spam phase's are disconnected and banned by its end.
    let mut flooders = Vec::with_capacity(2 * s.flooders);
    for f in 0..2 * s.flooders {
        let home = tempfile::tempdir().unwrap();
        let identity = identity(0x6B, 10_000 + f);
        let mut cfg = config(&identity, &home, s.heartbeat);
        let mut chosen: Vec<usize> = Vec::new();
        while chosen.len() < 3.min(s.nodes) {
            let j = rng.below(s.nodes);
            if !chosen.contains(&j) {
                chosen.push(j);
            }
        }
        for j in chosen {
            cfg.bootstrap.extend(nodes[j].handle.dial_addrs().await.unwrap());
        }
        let (handle, _events) = Node::spawn(cfg).await.unwrap();
        flooders.push(BenchNode { handle, identity, _home: home });
    }
    (nodes, flooders)
}

async fn forward_events(node: usize, mut rx: broadcast::Receiver<NodeEvent>, out: mpsc::UnboundedSender<Seen>) {
    loop {
        match rx.recv().await {
            Ok(NodeEvent::Stored { id, source: Source::Gossip | Source::Local, .. }) => {
                if out.send(Seen { node, id, at: Instant::now() }).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(k)) => eprintln!("node {node}: lost {k} events"),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[derive(Default)]
struct Arrivals {
    first: HashMap<RecordId, HashMap<usize, Instant>>,
}

impl Arrivals {
    fn add(&mut self, s: Seen) {
        self.first.entry(s.id).or_default().entry(s.node).or_insert(s.at);
    }

    async fn wait_for(&mut self, rx: &mut mpsc::UnboundedReceiver<Seen>, id: &RecordId, n: usize) -> bool {
        let deadline = tokio::time::Instant::now() + MESSAGE_WINDOW;
        while let Ok(s) = rx.try_recv() {
            self.add(s);
        }
        while self.first.get(id).map_or(0, HashMap::len) < n {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => self.add(s),
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }
}

async fn publish(nodes: &[BenchNode], author: usize, n: usize) -> (RecordId, Instant) {
    let node = &nodes[author];
    let record = Signed::sign(&node.identity, troc_node::now_secs(), listing(author, n, COMMUNITY)).unwrap().into_any();
    let t0 = Instant::now();
    let result = node.handle.publish(&record).await.unwrap();
    assert!(result.is_stored(), "{result:?}");
    (record.id(), t0)
}

#[derive(Clone, Copy, PartialEq)]
enum Flood {
    Quiet,
    Spam,
    Invalid,
}

impl Flood {
    fn name(self) -> &'static str {
        match self {
            Flood::Quiet => "quiet",
            Flood::Spam => "spam (valid, own author)",
            Flood::Invalid => "invalid (forged)",
        }
    }
}

/// Runs the flooders until `stop`; returns the messages they managed to publish.
fn start_flood(
    flooders: &[BenchNode],
    first: usize,
    kind: Flood,
    rate: f64,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    flooders
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let f = first + i;
            let (handle, identity, stop) = (node.handle.clone(), node.identity.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                let (mut n, mut sent) = (0usize, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    n += 1;
                    let mut bytes = Signed::sign(
                        &identity,
                        troc_node::now_secs(),
                        listing(10_000 + f, 1_000_000 * (kind as usize) + n, COMMUNITY),
                    )
                    .unwrap()
                    .bytes()
                    .to_vec();
                    if kind == Flood::Invalid {
                        let last = bytes.len() - 1;
                        bytes[last] ^= 1;
                    }
                    if handle.gossip_raw(SCOPE, bytes).await.is_ok() {
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect()
}

struct Phase {
    kind: Flood,
    latencies: Vec<Duration>,
    delivered: usize,
    expected: usize,
    flood_sent: u64,
    disconnected: u64,
}

fn main() {
    troc_node::alloc::configure();
    let s = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "flood: {} honest nodes, {} {} flooders per flood phase at {} messages/s each, {} messages per phase, heartbeat {:?}, seed {}, {cores} cores",
        s.nodes,
        s.flooders,
        if s.settled { "settled" } else { "new" },
        s.rate,
        s.messages,
        s.heartbeat,
        s.seed
    );
    let phases = runtime.block_on(async {
        let mut rng = Rng(s.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (nodes, flooders) = spawn_nodes(&s, &mut rng, &tx).await;
        let n = s.nodes;
        let mut arrivals = Arrivals::default();

        // Warm-up: probes until three in a row reach every honest node within the window.
        let warm = Instant::now();
        let (mut probes, mut in_a_row) = (0, 0);
        while in_a_row < 3 {
            assert!(warm.elapsed() < WARMUP_LIMIT, "gossip did not reach all {n} nodes within {WARMUP_LIMIT:?}");
            let (id, _) = publish(&nodes, rng.below(n), 2_000_000 + probes).await;
            probes += 1;
            in_a_row = if arrivals.wait_for(&mut rx, &id, n).await { in_a_row + 1 } else { 0 };
        }
        println!("warm-up {:.1} s ({probes} probes)", warm.elapsed().as_secs_f64());
        // A node paces its own gossip (`own_gossip_pace`: 80% of the per-author rate and burst,
        // empty at start). The honest listings stay within it, as an honest author's do: the paces
        // are let fill first, as on nodes that have been up a while, then the nodes publish in turn,
        // one listing every `spacing` (100 ms: one a second per node, half the per-author rate).
        // The figures are then propagation, not the pace's queue.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let turn = rng.below(n);
        if s.trace {
            let (t, c) = (Instant::now(), cpu_time());
            tokio::time::sleep(Duration::from_secs(2)).await;
            eprintln!("idle: {:.2} cores", (cpu_time() - c).as_secs_f64() / t.elapsed().as_secs_f64());
        }

        let mut phases = Vec::new();
        let abused =
            |nodes: &[BenchNode]| nodes.iter().map(|x| x.handle.metrics().peers_disconnected_for_abuse).sum::<u64>();
        for (p, kind) in [Flood::Quiet, Flood::Spam, Flood::Invalid].into_iter().enumerate() {
            let stop = Arc::new(AtomicBool::new(false));
            let tasks = match kind {
                Flood::Quiet => Vec::new(),
                Flood::Spam => start_flood(&flooders[..s.flooders], 0, kind, s.rate, stop.clone()),
                Flood::Invalid => start_flood(&flooders[s.flooders..], s.flooders, kind, s.rate, stop.clone()),
            };
            let abused_before = abused(&nodes);
            // Measured from the flood's first message: its first moments (an author's burst, before
            // the flooders are cut off) are the worst of it.
            let mut latencies = Vec::new();
            let mut delivered = 0;
            let (phase_start, phase_cpu) = (Instant::now(), cpu_time());
            for m in 0..s.messages {
                let author = (turn + m) % n;
                let (id, t0) = publish(&nodes, author, 100_000 * (p + 1) + m).await;
                arrivals.wait_for(&mut rx, &id, n).await;
                // The next one `spacing` after this one (not a synchronisation: the honest load).
                tokio::time::sleep_until((t0 + s.spacing).into()).await;
                let got = arrivals.first.get(&id).cloned().unwrap_or_default();
                if s.trace {
                    let worst = got.values().map(|at| at.duration_since(t0)).max().unwrap_or_default();
                    eprintln!(
                        "{} m{m} author {author}: at {} ms, worst {}, cpu {:.0} ms",
                        kind.name(),
                        phase_start.elapsed().as_millis(),
                        ms(worst),
                        (cpu_time() - phase_cpu).as_secs_f64() * 1000.0
                    );
                }
                for node in (0..n).filter(|i| *i != author) {
                    if let Some(at) = got.get(&node) {
                        delivered += 1;
                        latencies.push(at.duration_since(t0));
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            let mut flood_sent = 0;
            for t in tasks {
                flood_sent += t.await.unwrap();
            }
            latencies.sort();
            phases.push(Phase {
                kind,
                latencies,
                delivered,
                expected: s.messages * (n - 1),
                flood_sent,
                disconnected: abused(&nodes) - abused_before,
            });
        }
        let m = nodes.iter().map(|x| x.handle.metrics()).fold(HashMap::<&str, u64>::new(), |mut acc, m| {
            for code in [
                "author_rate_limited",
                "new_author_rate_limited",
                "own_rate_exceeded",
                "bad_signature",
                "peer_rate_limited",
            ] {
                *acc.entry(code).or_default() += m.rejected_total(code);
            }
            acc
        });
        println!("refusals on the honest nodes: {m:?}");
        futures::future::join_all(nodes.iter().chain(&flooders).map(|x| x.handle.shutdown())).await;
        phases
    });

    let quiet_p99 = quantile(&phases[0].latencies, 0.99);
    println!();
    println!(
        "| phase | flood messages sent | delivery | p50 (ms) | p99 (ms) | max (ms) | p99 / quiet p99 | flooders disconnected |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for p in &phases {
        let p99 = quantile(&p.latencies, 0.99);
        println!(
            "| {} | {} | {}/{} ({:.1} %) | {} | {} | {} | {:.2} | {} |",
            p.kind.name(),
            p.flood_sent,
            p.delivered,
            p.expected,
            100.0 * p.delivered as f64 / p.expected.max(1) as f64,
            ms(quantile(&p.latencies, 0.5)),
            ms(p99),
            ms(p.latencies.last().copied().unwrap_or_default()),
            p99.as_secs_f64() / quiet_p99.as_secs_f64().max(1e-9),
            p.disconnected,
        );
    }
}
