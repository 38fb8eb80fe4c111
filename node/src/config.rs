//! How a node is configured: where it keeps its data, how it reaches the network, which communities
//! it follows, and every bound it enforces. Defaults suit a person's node on a home network; tests
//! shorten the timers and listen on loopback only.

use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;
use troc_protocol::Identity;

use crate::limits::Rate;

/// Everything [`crate::Node::spawn`] needs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's home: the store lives in `<home>/db`.
    pub home: PathBuf,
    /// The person's identity: the PeerId and the signer of their records.
    pub identity: Identity,
    /// Addresses to listen on (TCP and QUIC). Port 0 picks a free port.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and keep connected (each address must end in `/p2p/<PeerId>`).
    pub bootstrap: Vec<Multiaddr>,
    /// The communities (slugs) this node follows. Every node also follows the global scope.
    pub communities: Vec<String>,
    /// Find neighbours on the local network with mDNS.
    pub mdns: bool,
    /// Serve as a relay for peers behind NAT (for nodes with a public address).
    pub relay_server: bool,
    /// Run Kademlia in server mode from the start (on a LAN or in tests, where no external address is
    /// ever confirmed); otherwise it switches to server mode once autonat confirms reachability.
    pub kad_server: bool,
    /// sled's page cache, in bytes. It only caches record bytes (every index is in memory), so a
    /// small one costs little: see `docs/performance.md`, section Memory.
    pub store_cache_bytes: u64,
    /// The store's quotas (per author and in all): what bounds the store against spam that passes
    /// every other check.
    pub quotas: crate::store::Quotas,
    pub limits: Limits,
    pub timing: Timing,
    /// Tests and benchmarks only: simulated links (latency, bandwidth, partitions, byte counts) on a
    /// TCP-only transport (`crate::link`). Always `None` in the `troc` binary.
    pub link_shaper: Option<crate::link::LinkShaper>,
}

/// Bounds on everything that arrives from outside.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Gossip messages accepted per peer.
    pub peer_gossip: Rate,
    /// Records accepted from gossip per author. The burst is what a person publishes at once (a
    /// handful of listings); a node paces its own gossip below it (`own_gossip_pace`), so a larger
    /// import waits in the node's queue instead of spreading as one burst. A larger burst only
    /// lets a spamming author push more records through every node before its rate stops it.
    pub author_gossip: Rate,
    /// Gossip by authors that are new to this node (first met less than `new_author_settle` ago, or
    /// never) also takes a token from this one bucket, shared by all of them
    /// (`crate::limits::NewAuthors`); beyond it, `new_author_rate_limited` (ignored, no penalty:
    /// catch-up brings the record later). A flood of fresh keys gets this far and no further.
    pub new_author_gossip: Rate,
    /// How long an author stays new after this node first met their records (by gossip or
    /// catch-up). Authors whose records the store held when the node started are settled, and so
    /// are those that catch-up brings in the first ten minutes of a node that started with an empty
    /// store (`crate::ingest`, joining). Zero turns the shared budget off.
    pub new_author_settle: Duration,
    /// New authors remembered at most (an author first met while this is full waits).
    pub max_new_authors: usize,
    /// Records by new authors that one peer's catch-up may bring, per peer (a node joining its
    /// communities takes everything). Beyond it, `new_author_rate_limited`, no penalty: the next
    /// round of catch-up asks again. Without it a peer could push any number of fresh keys' records
    /// by catch-up, around the gossip budget.
    pub new_author_sync: Rate,
    /// Strikes (invalid records, rate-limit hits) a peer may collect, and how fast they are forgiven,
    /// before it is disconnected.
    pub strikes: f64,
    pub strikes_forgiven_per_sec: f64,
    /// Ingest jobs queued between the network and the writer; beyond this gossip is ignored (catch-up
    /// brings it later) and local publishing waits.
    pub ingest_queue: usize,
    /// Records verified and written together.
    pub ingest_batch: usize,
    /// Largest gossip message (one record and its framing).
    pub max_gossip_bytes: usize,
    /// Concurrent catch-up sessions this node runs or serves.
    pub max_sync_sessions: usize,
    /// Established connections at most, and direct connections per peer (besides them, one relayed
    /// connection while a peer has no other: `crate::paths`).
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    /// Records kept waiting to be published when no peer follows their topic yet.
    pub max_pending_publish: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            peer_gossip: Rate::new(50.0, 500.0),
            author_gossip: Rate::new(2.0, 10.0),
            new_author_gossip: Rate::new(0.5, 5.0),
            new_author_settle: Duration::from_secs(3600),
            max_new_authors: 65_536,
            new_author_sync: Rate::new(2.0, 200.0),
            strikes: 20.0,
            strikes_forgiven_per_sec: 0.1,
            ingest_queue: 4096,
            ingest_batch: 256,
            max_gossip_bytes: troc_protocol::limits::MAX_RECORD_BYTES + 1024,
            max_sync_sessions: 8,
            max_connections: 256,
            max_connections_per_peer: 2,
            max_pending_publish: 1024,
        }
    }
}

/// Timers.
#[derive(Debug, Clone)]
pub struct Timing {
    pub gossip_heartbeat: Duration,
    /// How often a node reconciles with one of its connected peers.
    pub sync_interval: Duration,
    /// How often expired records are pruned.
    pub prune_interval: Duration,
    /// How long an idle connection stays open (bootstrap peers are kept open regardless).
    pub idle_timeout: Duration,
    /// How often the node looks for more peers of its communities in the DHT.
    pub discovery_interval: Duration,
    pub request_timeout: Duration,
    /// How often the deal service retries undelivered deal messages and looks at reveals and
    /// reminders.
    pub deal_retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            gossip_heartbeat: Duration::from_secs(1),
            sync_interval: Duration::from_secs(60),
            prune_interval: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(300),
            discovery_interval: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            deal_retry: Duration::from_secs(30),
        }
    }
}

impl Timing {
    /// Fast timers for tests on loopback.
    pub fn fast() -> Self {
        Timing {
            gossip_heartbeat: Duration::from_millis(100),
            sync_interval: Duration::from_secs(2),
            prune_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            discovery_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            deal_retry: Duration::from_secs(1),
        }
    }
}

/// A timer for one of the node's periodic duties (catch-up, discovery, pruning, deal retries): it
/// ticks every `period`, the first time at a random moment between half a period and one and a half
/// from now. Nodes that start together (after a power cut in a street, or in a simulation) would
/// otherwise reconcile and walk the DHT in step, all at once, every period: the 100-node simulation
/// saw propagation p50 go from 25 ms to 210 ms during such a storm (`docs/reliability.md` section 4).
/// A tick missed while the node was busy is not made up in a burst.
pub(crate) fn spread_interval(period: Duration) -> tokio::time::Interval {
    // tokio refuses a zero period.
    let period = period.max(Duration::from_millis(1));
    let mut bytes = [0u8; 8];
    // Without randomness (never seen in practice) the first tick is at one period, as before.
    let r = match getrandom::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    };
    let first = first_tick(period, r);
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

/// When a spread timer first ticks, for `r` drawn uniformly from `[0, 1)`.
fn first_tick(period: Duration, r: f64) -> Duration {
    period / 2 + period.mul_f64(r.clamp(0.0, 1.0))
}

/// The default port of a troc node, for TCP and QUIC.
pub const DEFAULT_PORT: u16 = 7710;

impl NodeConfig {
    /// A node listening on every interface at the default port, with mDNS on.
    pub fn new(home: PathBuf, identity: Identity) -> Self {
        let listen = vec![
            format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}").parse().expect("valid multiaddr"),
            format!("/ip4/0.0.0.0/udp/{DEFAULT_PORT}/quic-v1").parse().expect("valid multiaddr"),
        ];
        NodeConfig {
            home,
            identity,
            listen,
            bootstrap: Vec::new(),
            communities: Vec::new(),
            mdns: true,
            relay_server: false,
            kad_server: false,
            store_cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
            quotas: crate::store::Quotas::default(),
            limits: Limits::default(),
            timing: Timing::default(),
            link_shaper: None,
        }
    }

    /// A node for tests: loopback TCP on a free port, no mDNS, Kademlia server mode, fast timers.
    pub fn for_test(home: PathBuf, identity: Identity) -> Self {
        NodeConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")],
            mdns: false,
            kad_server: true,
            timing: Timing::fast(),
            // Nodes in a test meet everyone for the first time, within seconds: the shared budget
            // of new authors is tested on its own (`tests/integration/flood.rs`).
            limits: Limits { new_author_settle: Duration::ZERO, ..Limits::default() },
            ..NodeConfig::new(home, identity)
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.home.join("db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_timers_first_tick_within_half_a_period_of_one_period() {
        let p = Duration::from_secs(60);
        assert_eq!(first_tick(p, 0.0), Duration::from_secs(30));
        assert_eq!(first_tick(p, 0.5), Duration::from_secs(60));
        assert!(first_tick(p, 0.999_999) < Duration::from_secs(90));
        assert_eq!(first_tick(p, 7.0), Duration::from_secs(90), "r is clamped");
    }

    #[tokio::test]
    async fn a_spread_timer_does_not_tick_at_once() {
        let period = Duration::from_millis(40);
        let start = tokio::time::Instant::now();
        let mut timer = spread_interval(period);
        timer.tick().await;
        assert!(start.elapsed() >= period / 2, "first tick after {:?}", start.elapsed());
        // A zero period is refused by tokio; the timer takes the smallest one instead.
        spread_interval(Duration::ZERO).tick().await;
    }
}
