//! Scale simulation: N real nodes (default 100) in one process across C communities (default 5),
//! on simulated links (`troc_node::link`): each node has its own loopback address and a shared
//! uplink (default 20 Mbit/s); each link a one-way latency drawn from the seed, 5-20 ms within a
//! community and 30-120 ms across. Node i belongs to community i mod C and bootstraps to 3 random
//! earlier nodes of its community and, one time in three, to one random earlier node of another.
//!
//! Measures: propagation of M listings (each by a random node, in its community) from the publish
//! call to `Stored` on every other node of the community (p50, p99, max), duplicate gossip copies per
//! node per message, TCP bytes per node per second (idle, and while the messages flow), and catch-up
//! after churn: a tenth of the nodes shut down, records are published, they come back (same home,
//! same identity): time until each has every record it missed, and the bytes it exchanged meanwhile.
//!
//! Run: `cargo bench -p troc-node --bench scale`. Environment: `TROC_SCALE_NODES=100`,
//! `TROC_SCALE_COMMUNITIES=5`, `TROC_SCALE_MESSAGES=50`, `TROC_SCALE_SEED=1`,
//! `TROC_SCALE_UPLINK_MBIT=20`, `TROC_SCALE_HEARTBEAT_MS=1000`, `TROC_SCALE_IDLE_SECS=60`. Under `cargo test --benches` (no
//! `--bench` argument) it runs 10 nodes in 2 communities and 5 messages, as a check that it works.

// A benchmark: a failure should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::sync::broadcast;
use troc_node::config::{NodeConfig, Timing};
use troc_node::events::NodeEvent;
use troc_node::link::{self, LinkProfile, LinkShaper, Traffic, Uplink};
use troc_node::node::{Node, NodeHandle};
use troc_protocol::{Identity, RecordId, Signed};

#[path = "support/sim.rs"]
mod sim;
use sim::{Rng, cpu_time, env_or, identity, listing, ms, quantile};

/// The troc binary's allocator and settings (`troc_node::alloc`), so the figures are the binary's.
#[global_allocator]
static ALLOC: troc_node::alloc::Allocator = troc_node::alloc::Allocator;

/// How long one message may take to reach its whole community.
const MESSAGE_WINDOW: Duration = Duration::from_secs(5);
const WARMUP_LIMIT: Duration = Duration::from_secs(180);
const CATCHUP_LIMIT: Duration = Duration::from_secs(180);
/// The connections are settled once no node's number of peers changed for this long.
const SETTLED_AFTER: Duration = Duration::from_secs(10);
const SETTLE_LIMIT: Duration = Duration::from_secs(300);

struct Settings {
    nodes: usize,
    communities: usize,
    messages: usize,
    seed: u64,
    uplink_bits: u64,
    heartbeat: Duration,
    /// The window of the idle measurement: by default one catch-up interval (each node reconciles
    /// with one peer per interval), so that the figure includes it.
    idle: Duration,
}

fn settings() -> Settings {
    let bench = std::env::args().any(|a| a == "--bench");
    Settings {
        nodes: env_or("TROC_SCALE_NODES", if bench { 100 } else { 10 }),
        communities: env_or("TROC_SCALE_COMMUNITIES", if bench { 5 } else { 2 }),
        messages: env_or("TROC_SCALE_MESSAGES", if bench { 50 } else { 5 }),
        seed: env_or("TROC_SCALE_SEED", 1),
        uplink_bits: env_or("TROC_SCALE_UPLINK_MBIT", 20u64) * 1_000_000,
        heartbeat: Duration::from_millis(env_or("TROC_SCALE_HEARTBEAT_MS", 1000)),
        idle: Duration::from_secs(env_or("TROC_SCALE_IDLE_SECS", if bench { 60 } else { 5 })),
    }
}

fn community(c: usize) -> String {
    format!("neighbourhood-{c}")
}

/// The simulated network: who is in which community, the latency of each link, each node's uplink.
struct Net {
    communities: usize,
    seed: u64,
    uplinks: Vec<Arc<Uplink>>,
}

impl Net {
    fn community_of(&self, i: usize) -> usize {
        i % self.communities
    }

    /// One way, the same both ways, from the seed and the pair.
    fn latency(&self, i: usize, j: usize) -> Duration {
        let (a, b) = (i.min(j) as u64, i.max(j) as u64);
        let mut rng = Rng((self.seed ^ (a << 32 | b)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        rng.next();
        let (lo, hi) = if self.community_of(i) == self.community_of(j) { (5, 20) } else { (30, 120) };
        Duration::from_millis(lo + rng.next() % (hi - lo + 1))
    }

    fn shaper(self: &Arc<Self>, i: usize) -> LinkShaper {
        let net = self.clone();
        LinkShaper::new(move |addr| {
            let j = link::node_of(addr).filter(|j| *j < net.uplinks.len()).ok_or(io::ErrorKind::ConnectionRefused)?;
            Ok(LinkProfile {
                latency: net.latency(i, j),
                local_uplink: Some(net.uplinks[i].clone()),
                remote_uplink: Some(net.uplinks[j].clone()),
                cut: None,
            })
        })
    }
}

struct SimNode {
    handle: Option<NodeHandle>,
    identity: Identity,
    home: TempDir,
    traffic: Arc<Traffic>,
}

/// Every `Stored` event, by record: which node stored it, and when.
type Arrivals = Arc<Mutex<HashMap<RecordId, HashMap<usize, Instant>>>>;

async fn forward(i: usize, mut rx: broadcast::Receiver<NodeEvent>, arrivals: Arrivals) {
    loop {
        match rx.recv().await {
            Ok(NodeEvent::Stored { id, .. }) => {
                let at = Instant::now();
                arrivals.lock().unwrap().entry(id).or_default().entry(i).or_insert(at);
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(k)) => eprintln!("node {i}: lost {k} events"),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn config(s: &Settings, net: &Arc<Net>, i: usize, node: &SimNode) -> NodeConfig {
    let mut cfg = NodeConfig::for_test(node.home.path().to_path_buf(), node.identity.clone());
    cfg.communities = vec![community(net.community_of(i))];
    cfg.listen = vec![link::listen_addr(i)];
    cfg.link_shaper = Some(net.shaper(i));
    let production = Timing::default();
    cfg.timing.gossip_heartbeat = s.heartbeat;
    cfg.timing.sync_interval = production.sync_interval;
    cfg.timing.discovery_interval = production.discovery_interval;
    cfg.timing.idle_timeout = production.idle_timeout;
    cfg
}

async fn start(s: &Settings, net: &Arc<Net>, i: usize, nodes: &mut [SimNode], boot: &[usize], arrivals: &Arrivals) {
    let mut cfg = config(s, net, i, &nodes[i]);
    nodes[i].traffic = cfg.link_shaper.as_ref().unwrap().traffic();
    for &j in boot {
        cfg.bootstrap.extend(nodes[j].handle.as_ref().unwrap().dial_addrs().await.unwrap());
    }
    let (handle, events) = Node::spawn(cfg).await.unwrap();
    tokio::spawn(forward(i, events, arrivals.clone()));
    nodes[i].handle = Some(handle);
}

/// Publishes a fresh listing of node `author` in its community; returns its id and the publish time.
async fn publish(nodes: &[SimNode], net: &Net, author: usize, n: usize) -> (RecordId, Instant) {
    let node = &nodes[author];
    let body = listing(author, n, &community(net.community_of(author)));
    let record = Signed::sign(&node.identity, troc_node::now_secs(), body).unwrap().into_any();
    let t0 = Instant::now();
    let result = node.handle.as_ref().unwrap().publish(&record).await.unwrap();
    assert!(result.is_stored(), "{result:?}");
    (record.id(), t0)
}

/// Polls until every node of `who` stored `id`, or `deadline`.
async fn wait_stored(arrivals: &Arrivals, id: &RecordId, who: &[usize], deadline: Instant) -> bool {
    loop {
        let done = arrivals.lock().unwrap().get(id).is_some_and(|m| who.iter().all(|i| m.contains_key(i)));
        if done {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // A poll interval, not a synchronisation: the condition is re-checked until the deadline.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn bytes(nodes: &[SimNode]) -> Vec<u64> {
    nodes.iter().map(|n| n.traffic.sent() + n.traffic.received()).collect()
}

fn per_node_rate(before: &[u64], after: &[u64], secs: f64) -> (f64, f64) {
    let rates: Vec<f64> = before.iter().zip(after).map(|(b, a)| (a - b) as f64 / secs).collect();
    (rates.iter().sum::<f64>() / rates.len() as f64, rates.iter().copied().fold(0.0, f64::max))
}

/// Each node's number of connected peers, in node order.
async fn degrees(nodes: &[SimNode]) -> Vec<usize> {
    let mut d = Vec::with_capacity(nodes.len());
    for node in nodes.iter().filter_map(|n| n.handle.as_ref()) {
        d.push(node.peers().await.map(|p| p.len()).unwrap_or(0));
    }
    d
}

/// Catch-up sessions run by all the nodes so far.
fn sessions(nodes: &[SimNode]) -> u64 {
    nodes.iter().filter_map(|n| n.handle.as_ref()).map(|h| h.metrics().sync_sessions).sum()
}

fn min_mean_max(d: &[usize]) -> String {
    let mean = d.iter().sum::<usize>() as f64 / d.len().max(1) as f64;
    format!("{}/{mean:.1}/{}", d.iter().min().unwrap_or(&0), d.iter().max().unwrap_or(&0))
}

fn kib(x: f64) -> String {
    format!("{:.1} KiB", x / 1024.0)
}

async fn run(s: Settings) {
    let n = s.nodes;
    let net = Arc::new(Net {
        communities: s.communities,
        seed: s.seed,
        uplinks: (0..n).map(|_| Arc::new(Uplink::new(s.uplink_bits))).collect(),
    });
    let mut rng = Rng(s.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let arrivals: Arrivals = Arc::default();
    let mut nodes: Vec<SimNode> = (0..n)
        .map(|i| SimNode {
            handle: None,
            identity: identity(0x3C, i),
            home: tempfile::tempdir().unwrap(),
            traffic: Arc::default(),
        })
        .collect();
    let members = |c: usize| (0..n).filter(|i| i % s.communities == c).collect::<Vec<_>>();

    let t = Instant::now();
    let mut boots = Vec::with_capacity(n);
    for i in 0..n {
        let same: Vec<usize> = (0..i).filter(|j| net.community_of(*j) == net.community_of(i)).collect();
        let mut boot = Vec::new();
        while boot.len() < 3.min(same.len()) {
            let j = same[rng.below(same.len())];
            if !boot.contains(&j) {
                boot.push(j);
            }
        }
        let other: Vec<usize> = (0..i).filter(|j| net.community_of(*j) != net.community_of(i)).collect();
        if !other.is_empty() && rng.below(3) == 0 {
            boot.push(other[rng.below(other.len())]);
        }
        start(&s, &net, i, &mut nodes, &boot, &arrivals).await;
        boots.push(boot);
    }
    println!("{n} nodes spawned in {:.1} s", t.elapsed().as_secs_f64());

    // Warm-up: a probe per community, again, until a whole round reaches every member in the window.
    let warm = Instant::now();
    let mut probes = 0;
    loop {
        assert!(warm.elapsed() < WARMUP_LIMIT, "gossip did not reach every community within {WARMUP_LIMIT:?}");
        let mut all = true;
        for c in 0..s.communities {
            let who = members(c);
            let author = who[rng.below(who.len())];
            let (id, _) = publish(&nodes, &net, author, 1_000_000 + probes).await;
            probes += 1;
            all &= wait_stored(&arrivals, &id, &who, Instant::now() + MESSAGE_WINDOW).await;
        }
        if all {
            break;
        }
    }
    println!("warm-up: {:.1} s, {probes} probes", warm.elapsed().as_secs_f64());

    // Settling: the nodes find more peers through the DHT, and each new connection starts a catch-up
    // session per scope; the steady state begins when the connections stop changing.
    let settle = Instant::now();
    let (b0, c0) = (bytes(&nodes), cpu_time());
    let mut last = degrees(&nodes).await;
    let mut stable_since = Instant::now();
    while stable_since.elapsed() < SETTLED_AFTER {
        assert!(settle.elapsed() < SETTLE_LIMIT, "the connections did not settle within {SETTLE_LIMIT:?}");
        // A poll interval, not a synchronisation: the degrees are compared until they stay unchanged.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = degrees(&nodes).await;
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
    let settle_secs = settle.elapsed().as_secs_f64();
    let settle_rate = per_node_rate(&b0, &bytes(&nodes), settle_secs);
    let settle_cores = (cpu_time() - c0).as_secs_f64() / settle_secs;
    let settled = last;

    eprintln!("settled after {:.1} s; idle for {:?}", settle.elapsed().as_secs_f64(), s.idle);
    // Idle load, in the steady state.
    let (b0, c0, t0, m0) = (bytes(&nodes), cpu_time(), Instant::now(), sessions(&nodes));
    tokio::time::sleep(s.idle).await;
    let idle_secs = t0.elapsed().as_secs_f64();
    let idle_rate = per_node_rate(&b0, &bytes(&nodes), idle_secs);
    let idle_cores = (cpu_time() - c0).as_secs_f64() / idle_secs;
    let idle_sessions = (sessions(&nodes) - m0) as f64 / n as f64 / idle_secs * 60.0;

    eprintln!("publishing {} listings", s.messages);
    // Propagation.
    let gossip = |nodes: &[SimNode]| -> Vec<(u64, u64)> {
        nodes
            .iter()
            .map(|n| {
                let m = n.handle.as_ref().unwrap().metrics();
                (m.gossip_received, m.gossip_delivered)
            })
            .collect()
    };
    let g0 = gossip(&nodes);
    let (b0, c0, t0) = (bytes(&nodes), cpu_time(), Instant::now());
    let mut latencies = Vec::new();
    let mut to_all = Vec::new();
    let (mut delivered, mut expected) = (0, 0);
    for m in 0..s.messages {
        let author = rng.below(n);
        let who: Vec<usize> = members(net.community_of(author)).into_iter().filter(|i| *i != author).collect();
        let (id, sent) = publish(&nodes, &net, author, m).await;
        wait_stored(&arrivals, &id, &who, Instant::now() + MESSAGE_WINDOW).await;
        let got = arrivals.lock().unwrap().get(&id).cloned().unwrap_or_default();
        expected += who.len();
        let mut last = Duration::ZERO;
        for i in &who {
            if let Some(at) = got.get(i) {
                delivered += 1;
                latencies.push(at.duration_since(sent));
                last = last.max(at.duration_since(sent));
            }
        }
        to_all.push(last);
    }
    let run_secs = t0.elapsed().as_secs_f64();
    let run_rate = per_node_rate(&b0, &bytes(&nodes), run_secs);
    let run_cores = (cpu_time() - c0).as_secs_f64() / run_secs;
    let g1 = gossip(&nodes);
    let dups: f64 = g0.iter().zip(&g1).map(|((r0, d0), (r1, d1))| ((r1 - r0) - (d1 - d0)) as f64).sum::<f64>()
        / (n * s.messages) as f64;
    latencies.sort();
    to_all.sort();

    // Churn: a tenth of the nodes go away, each community publishes meanwhile, they come back.
    let away: Vec<usize> = {
        let mut v = Vec::new();
        while v.len() < (n / 10).max(1) {
            let i = 1 + rng.below(n - 1);
            if !v.contains(&i) {
                v.push(i);
            }
        }
        v
    };
    for &i in &away {
        nodes[i].handle.take().unwrap().shutdown().await.unwrap();
    }
    let present: Vec<usize> = (0..n).filter(|i| !away.contains(i)).collect();
    let mut missed: Vec<RecordId> = Vec::new();
    let mut authors: HashMap<RecordId, usize> = HashMap::new();
    for k in 0..2 * s.communities {
        let author = present[rng.below(present.len())];
        let (id, _) = publish(&nodes, &net, author, 2_000_000 + k).await;
        missed.push(id);
        authors.insert(id, author);
    }
    // Each missed record must reach the members that stayed before the others come back.
    for id in &missed {
        let author = authors[id];
        let who: Vec<usize> = members(net.community_of(author)).into_iter().filter(|i| present.contains(i)).collect();
        assert!(wait_stored(&arrivals, id, &who, Instant::now() + MESSAGE_WINDOW * 4).await);
    }
    let back = Instant::now();
    for &i in &away {
        // Back with its own bootstrap peers that are present.
        let boot: Vec<usize> = boots[i].iter().copied().filter(|j| present.contains(j)).collect();
        let boot = if boot.is_empty() { vec![present[0]] } else { boot };
        start(&s, &net, i, &mut nodes, &boot, &arrivals).await;
    }
    let mut catchup = Vec::new();
    for &i in &away {
        let mine: Vec<RecordId> =
            missed.iter().filter(|id| net.community_of(authors[*id]) == net.community_of(i)).copied().collect();
        let deadline = back + CATCHUP_LIMIT;
        for id in &mine {
            assert!(wait_stored(&arrivals, id, &[i], deadline).await, "node {i} did not catch up");
        }
        let last = mine.iter().map(|id| arrivals.lock().unwrap()[id][&i]).max().unwrap_or(back);
        let m = nodes[i].handle.as_ref().unwrap().metrics();
        catchup.push((
            i,
            mine.len(),
            last.duration_since(back),
            nodes[i].traffic.sent() + nodes[i].traffic.received(),
            m,
        ));
    }

    let at_end = degrees(&nodes).await;
    let peers_of_away: HashSet<usize> = away.iter().copied().collect();
    for node in nodes.iter().filter_map(|n| n.handle.as_ref()) {
        node.shutdown().await.unwrap();
    }

    println!(
        "links: one way 5-20 ms within a community, 30-120 ms across; uplink {} Mbit/s per node; heartbeat {:?}; seed {}",
        s.uplink_bits / 1_000_000,
        s.heartbeat,
        s.seed
    );
    println!(
        "connections settled {settle_secs:.1} s after the warm-up (no change for {:?}), meanwhile {}/s per node, \
         CPU {settle_cores:.2} cores",
        SETTLED_AFTER,
        kib(settle_rate.0)
    );
    println!(
        "degree (connected peers) min/mean/max: settled {}, at the end {}",
        min_mean_max(&settled),
        min_mean_max(&at_end)
    );
    println!();
    println!(
        "| N | communities | messages | delivery | p50 (ms) | p99 (ms) | max (ms) | whole community p50 / p99 (ms) | duplicates / node / msg |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {n} | {} | {} | {delivered}/{expected} ({:.1} %) | {} | {} | {} | {} / {} | {dups:.2} |",
        s.communities,
        s.messages,
        100.0 * delivered as f64 / expected.max(1) as f64,
        ms(quantile(&latencies, 0.5)),
        ms(quantile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        ms(quantile(&to_all, 0.5)),
        ms(quantile(&to_all, 0.99)),
    );
    println!();
    println!(
        "bandwidth per node (TCP bytes in + out): idle {}/s mean, {}/s max; during the messages ({:.1} s) {}/s mean, {}/s max",
        kib(idle_rate.0),
        kib(idle_rate.1),
        run_secs,
        kib(run_rate.0),
        kib(run_rate.1)
    );
    println!("CPU of the process: {idle_cores:.2} cores idle, {run_cores:.2} during the messages");
    println!("catch-up sessions per node per minute, idle: {idle_sessions:.2}");
    println!();
    println!("churn: {} of {n} nodes away while {} records were published; back:", away.len(), missed.len());
    println!(
        "| node | records missed | caught up after (ms) | TCP bytes since restart | catch-up sessions | fetched |"
    );
    println!("|---|---|---|---|---|---|");
    let mut times = Vec::new();
    for (i, k, d, b, m) in &catchup {
        println!("| {i} | {k} | {} | {} | {} | {} |", ms(*d), kib(*b as f64), m.sync_sessions, m.sync_fetched);
        times.push(*d);
    }
    times.sort();
    println!(
        "catch-up after churn: p50 {} ms, max {} ms ({} nodes back)",
        ms(quantile(&times, 0.5)),
        ms(times.last().copied().unwrap_or_default()),
        peers_of_away.len()
    );
}

fn main() {
    troc_node::alloc::configure();
    let s = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run(s));
}
